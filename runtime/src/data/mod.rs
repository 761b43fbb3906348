//! Data: reading files (IDX, gzip, `.npy`, `.npz`, CSV), fitting them to the model's inputs and
//! targets, the `data` section's transforms and splits, and batching.
//!
//! The path from files to batches:
//! 1. [`read`] turns files into [`RawArray`]s in the files' own element types;
//! 2. [`dataset`] converts them to the model's dtypes and shapes (checking counts, shapes, NaN);
//! 3. `test: split(f)` cuts the converted samples; [`transform`] learns `standardize` statistics
//!    from the training part and transforms every part; targets are then fitted to the model
//!    (dtype, shape, class range);
//! 4. [`batch`] splits off validation data and yields shuffled batches.

pub mod batch;
pub mod bytes;
pub mod column;
pub mod csv;
pub mod dataset;
pub mod idx;
pub mod npy;
pub mod raw;
pub mod read;
pub mod transform;

pub use column::{ByteColumn, Column};
pub use dataset::{Batch, Dataset, TensorSpec};
pub use raw::{RawArray, RawData};
pub use read::{read_array, read_source, read_xy, RawSamples};
pub use transform::FittedTransforms;

use crate::config::{DataSpec, TestSource};
use crate::error::{ErrorKind, RuntimeError};
use crate::tensor::Tensor;

/// What the model takes: its inputs and its targets (one per output), per sample.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelData {
    pub inputs: Vec<TensorSpec>,
    pub targets: Vec<TensorSpec>,
}

impl ModelData {
    pub fn input_names(&self) -> Vec<String> {
        self.inputs.iter().map(|s| s.name.clone()).collect()
    }
    pub fn target_names(&self) -> Vec<String> {
        self.targets.iter().map(|s| s.name.clone()).collect()
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Accept NaN and infinity in inputs (`--allow-nan`).
    pub allow_nan: bool,
}

/// A `data` section loaded for a model: the splits, transformed, and the fitted transforms
/// (whose statistics go into the weights' metadata).
#[derive(Clone, Debug)]
pub struct LoadedData {
    pub train: Dataset,
    pub test: Option<Dataset>,
    pub transforms: FittedTransforms,
}

/// Loads a `data` section for `model`.
pub fn load_data(
    spec: &DataSpec,
    model: &ModelData,
    options: LoadOptions,
) -> Result<LoadedData, RuntimeError> {
    let raw = read_source(&spec.train, &model.input_names(), &model.target_names())?;
    let test = test_part(spec.test.as_ref(), model)?;
    assemble(&raw, test, &spec.x, &spec.y, model, options)
}

/// Where the test samples come from.
enum TestPart {
    None,
    Split(f64),
    Raw(RawSamples),
}

fn test_part(test: Option<&TestSource>, model: &ModelData) -> Result<TestPart, RuntimeError> {
    Ok(match test {
        None => TestPart::None,
        Some(TestSource::Split(f)) => TestPart::Split(*f),
        Some(TestSource::Source(source)) => TestPart::Raw(read_source(
            source,
            &model.input_names(),
            &model.target_names(),
        )?),
    })
}

/// Converts, splits, fits the transforms on the training part and applies them everywhere.
fn assemble(
    raw: &RawSamples,
    test: TestPart,
    x_transforms: &[crate::config::Transform],
    y_transforms: &[crate::config::Transform],
    model: &ModelData,
    options: LoadOptions,
) -> Result<LoadedData, RuntimeError> {
    let all = convert_samples(raw, model, options)?;
    let (train, test, test_raw) = match test {
        TestPart::None => (all, None, None),
        TestPart::Split(fraction) => {
            let (train, test) = all.split_tail(fraction);
            if train.is_empty() || test.is_empty() {
                return Err(RuntimeError::without_path(
                    ErrorKind::DataSetup,
                    format!(
                        "test: split({fraction:?}) of {} samples leaves {} for training and {} for testing; both need at least one",
                        train.len() + test.len(),
                        train.len(),
                        test.len()
                    ),
                ));
            }
            (train, Some(test), None)
        }
        TestPart::Raw(raw_test) => {
            let test = convert_samples(&raw_test, model, options)?;
            (all, Some(test), Some(raw_test))
        }
    };
    if train.is_empty() {
        return Err(no_samples(raw, "training"));
    }
    if let Some(t) = &test {
        if t.is_empty() {
            return Err(no_samples(test_raw.as_ref().unwrap_or(raw), "test"));
        }
    }
    let transforms = FittedTransforms::fit(x_transforms, y_transforms, &train)?;
    let train = finish(&transforms, model, raw, options, train)?;
    let test = test
        .map(|t| {
            finish(
                &transforms,
                model,
                test_raw.as_ref().unwrap_or(raw),
                options,
                t,
            )
        })
        .transpose()?;
    Ok(LoadedData {
        train,
        test,
        transforms,
    })
}

/// Converts and transforms samples read from files given on the command line (`--x/--y`,
/// `--test-x/--test-y`, or `eval` data), with transforms already fitted.
pub fn prepare(
    raw: &RawSamples,
    model: &ModelData,
    transforms: &FittedTransforms,
    options: LoadOptions,
) -> Result<Dataset, RuntimeError> {
    let converted = convert_samples(raw, model, options)?;
    if converted.is_empty() {
        return Err(no_samples(raw, "input"));
    }
    finish(transforms, model, raw, options, converted)
}

/// E0409 for a set with no samples, naming its first file.
fn no_samples(raw: &RawSamples, what: &str) -> RuntimeError {
    let origin = raw
        .inputs
        .first()
        .map(|r| r.origin.clone())
        .or_else(|| raw.targets.as_ref().map(|t| t.origin.clone()))
        .unwrap_or_default();
    RuntimeError::in_origin(
        ErrorKind::DataSetup,
        &origin,
        format!("holds no samples: there is nothing to use as {what} data"),
    )
}

/// Converts and transforms inputs only (for `predict`).
pub fn prepare_inputs(
    raw: &[RawArray],
    model: &ModelData,
    transforms: &FittedTransforms,
    options: LoadOptions,
) -> Result<Vec<Tensor>, RuntimeError> {
    check_input_arity(raw, model)?;
    let refs: Vec<&RawArray> = raw.iter().collect();
    if dataset::check_sample_counts(&refs)? == 0 {
        let origin = raw.first().map(|r| r.origin.clone()).unwrap_or_default();
        return Err(RuntimeError::in_origin(
            ErrorKind::DataSetup,
            &origin,
            "holds no samples: there is nothing to predict",
        ));
    }
    let inputs = raw
        .iter()
        .zip(&model.inputs)
        .map(|(r, spec)| dataset::convert_input(r, spec, options.allow_nan))
        .collect::<Result<Vec<_>, _>>()?;
    let data = Dataset {
        inputs,
        targets: Vec::new(),
    };
    let data = transforms.apply("", data)?;
    let origins: Vec<String> = raw.iter().map(|r| r.origin.clone()).collect();
    dataset::validate(&data, model, &origins, "", options.allow_nan)?;
    Ok(data.inputs.into_iter().map(Column::into_tensor).collect())
}

fn target_origin(raw: &RawSamples) -> String {
    raw.targets
        .as_ref()
        .map(|t| t.origin.clone())
        .unwrap_or_default()
}

fn check_input_arity(raw: &[RawArray], model: &ModelData) -> Result<(), RuntimeError> {
    if raw.len() != model.inputs.len() {
        return Err(RuntimeError::without_path(
            ErrorKind::DataSetup,
            format!(
                "the model has {} inputs ({}), the data gives {} arrays",
                model.inputs.len(),
                model.input_names().join(", "),
                raw.len()
            ),
        ));
    }
    Ok(())
}

/// Converts inputs to the model's dtypes and shapes and targets to their natural type, after
/// checking that every array has the same number of samples. No transform is applied.
pub fn convert_samples(
    raw: &RawSamples,
    model: &ModelData,
    options: LoadOptions,
) -> Result<Dataset, RuntimeError> {
    check_input_arity(&raw.inputs, model)?;
    let mut arrays: Vec<&RawArray> = raw.inputs.iter().collect();
    arrays.extend(raw.targets.iter());
    arrays.extend(raw.more_targets.iter());
    dataset::check_sample_counts(&arrays)?;
    let inputs = raw
        .inputs
        .iter()
        .zip(&model.inputs)
        .map(|(r, spec)| dataset::convert_input(r, spec, options.allow_nan))
        .collect::<Result<Vec<_>, _>>()?;
    let targets = match &raw.targets {
        // A model whose losses read no targets (a GAN, a VAE: language.md 9.3) ignores them.
        Some(_) if model.targets.is_empty() => Vec::new(),
        Some(t)
            if !raw.more_targets.is_empty()
                && 1 + raw.more_targets.len() == model.targets.len() =>
        {
            std::iter::once(t)
                .chain(&raw.more_targets)
                .map(dataset::convert_target_raw)
                .collect::<Result<Vec<_>, _>>()?
        }
        Some(t) => {
            if model.targets.len() != 1 {
                return Err(RuntimeError::in_origin(
                    ErrorKind::DataSetup,
                    &t.origin,
                    format!(
                        "the model reads {} targets ({}); this data gives one (an .npz gives \
                         several, with a key named after each)",
                        model.targets.len(),
                        model.target_names().join(", ")
                    ),
                ));
            }
            vec![dataset::convert_target_raw(t)?]
        }
        None => Vec::new(),
    };
    Ok(Dataset { inputs, targets })
}

/// Applies the transforms, fits the targets to the model (dtype, shape, class range), and
/// validates the result (finite values, token ids in range).
fn finish(
    transforms: &FittedTransforms,
    model: &ModelData,
    raw: &RawSamples,
    options: LoadOptions,
    data: Dataset,
) -> Result<Dataset, RuntimeError> {
    let origin = target_origin(raw);
    let data = transforms.apply(&origin, data)?;
    let targets = data
        .targets
        .into_iter()
        .zip(&model.targets)
        .map(|(t, spec)| dataset::conform_target(&origin, t, spec))
        .collect::<Result<Vec<_>, _>>()?;
    let data = Dataset {
        inputs: data.inputs,
        targets,
    };
    let input_origins: Vec<String> = raw.inputs.iter().map(|r| r.origin.clone()).collect();
    dataset::validate(&data, model, &input_origins, &origin, options.allow_nan)?;
    Ok(data)
}
