//! Samples as the model takes them, and the conversion from raw file arrays.

use super::column::{ByteColumn, Column};
use super::raw::{RawArray, RawData};
use crate::error::{fmt_shape, ErrorKind, RuntimeError};
use crate::tensor::{DType, Tensor};
use ndarray::{ArrayD, IxDyn};
use std::ops::Range;

/// Inputs and targets of a set of samples; every input and target has the same length along
/// axis 0. Inputs read as u8 stay bytes until batches are gathered ([`Column::Bytes`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub inputs: Vec<Column>,
    pub targets: Vec<Tensor>,
}

/// A batch: dense inputs and targets, as a backend takes them.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub inputs: Vec<Tensor>,
    pub targets: Vec<Tensor>,
}

impl Batch {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.inputs
            .first()
            .or(self.targets.first())
            .map(Tensor::len)
            .unwrap_or(0)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Dataset {
    /// A data set of dense inputs and targets.
    pub fn new(inputs: Vec<Tensor>, targets: Vec<Tensor>) -> Dataset {
        Dataset {
            inputs: inputs.into_iter().map(Column::Dense).collect(),
            targets,
        }
    }
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.inputs
            .first()
            .map(Column::len)
            .or(self.targets.first().map(Tensor::len))
            .unwrap_or(0)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Samples `range`, in order (byte inputs share their bytes).
    pub fn slice(&self, range: Range<usize>) -> Dataset {
        Dataset {
            inputs: self.inputs.iter().map(|c| c.slice(range.clone())).collect(),
            targets: self
                .targets
                .iter()
                .map(|t| t.slice_samples(range.clone()))
                .collect(),
        }
    }
    /// Samples `range` as a batch.
    pub fn batch(&self, range: Range<usize>) -> Batch {
        Batch {
            inputs: self
                .inputs
                .iter()
                .map(|c| c.slice_tensor(range.clone()))
                .collect(),
            targets: self
                .targets
                .iter()
                .map(|t| t.slice_samples(range.clone()))
                .collect(),
        }
    }
    /// The samples at `indices`, in that order, as a batch (byte inputs converted here).
    pub fn gather(&self, indices: &[usize]) -> Batch {
        Batch {
            inputs: self.inputs.iter().map(|c| c.gather(indices)).collect(),
            targets: self
                .targets
                .iter()
                .map(|t| t.gather_samples(indices))
                .collect(),
        }
    }
    /// Every input as a dense tensor.
    pub fn input_tensors(&self) -> Vec<Tensor> {
        self.inputs.iter().map(Column::to_tensor).collect()
    }
    /// The first floor(n * (1 - fraction)) samples and the rest: `test: split(f)` and
    /// `validation: split(f)` (Keras takes the validation part before shuffling).
    pub fn split_tail(&self, fraction: f64) -> (Dataset, Dataset) {
        let at = split_point(self.len(), fraction);
        (self.slice(0..at), self.slice(at..self.len()))
    }
}

/// floor(n * (1 - fraction)), as Keras' `int(math.floor(n * (1.0 - f)))`.
pub fn split_point(n: usize, fraction: f64) -> usize {
    ((n as f64 * (1.0 - fraction)).floor().max(0.0) as usize).min(n)
}

/// What the model expects of one input or target, per sample (without the batch axis).
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    /// The input's name; for a target, the name of the output it is compared with.
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// For class-index targets (sparse categorical): the number of classes; labels must lie in
    /// `0..classes`.
    pub classes: Option<usize>,
    /// For token-id inputs: the smallest vocabulary among the `Embedding` layers that read them,
    /// with that layer's name; ids must lie in `0..vocab`.
    pub ids: Option<(usize, String)>,
}

impl TensorSpec {
    pub fn new(name: &str, dtype: DType, shape: &[usize]) -> Self {
        TensorSpec {
            name: name.to_string(),
            dtype,
            shape: shape.to_vec(),
            classes: None,
            ids: None,
        }
    }
    pub fn with_ids(mut self, vocab: usize, layer: &str) -> Self {
        self.ids = Some((vocab, layer.to_string()));
        self
    }
    pub fn with_classes(mut self, classes: usize) -> Self {
        self.classes = Some(classes);
        self
    }
}

fn strip_trailing_ones(shape: &[usize]) -> &[usize] {
    let mut end = shape.len();
    while end > 0 && shape[end - 1] == 1 {
        end -= 1;
    }
    &shape[..end]
}

/// True when a sample of shape `found` can feed `expected`: equal, or equal once trailing
/// 1-dimensions are dropped from both (IDX `[N, 8, 8]` feeds `f32[8, 8, 1]`; labels `[N, 1]`
/// feed a scalar class target).
pub fn sample_shape_fits(found: &[usize], expected: &[usize]) -> bool {
    found == expected || strip_trailing_ones(found) == strip_trailing_ones(expected)
}

/// Checks that every array has the same number of samples; `what` names them in the message.
pub fn check_sample_counts(arrays: &[&RawArray]) -> Result<usize, RuntimeError> {
    let Some(first) = arrays.first() else {
        return Ok(0);
    };
    for other in &arrays[1..] {
        if other.samples() != first.samples() {
            return Err(RuntimeError::in_origin(
                ErrorKind::SampleCount,
                &other.origin,
                format!(
                    "has {} samples (shape {}) but {} has {} (shape {}): inputs and targets must have the same number of samples",
                    other.samples(),
                    fmt_shape(&other.shape),
                    first.origin,
                    first.samples(),
                    fmt_shape(&first.shape)
                ),
            ));
        }
    }
    Ok(first.samples())
}

/// Converts a raw input array to the model input `spec`: checks the sample shape, converts the
/// element type (integers feed f32 unchanged), and rejects NaN/infinity unless `allow_nan`.
///
/// u8 values for an f32 input stay bytes ([`Column::Bytes`]): they are converted as batches
/// are gathered, and need no finite check.
pub fn convert_input(
    raw: &RawArray,
    spec: &TensorSpec,
    allow_nan: bool,
) -> Result<Column, RuntimeError> {
    let shape = conformed_shape(raw, spec, "input")?;
    match (spec.dtype, &raw.data) {
        (DType::F32, RawData::U8(bytes)) if bytes.len() == shape.iter().product::<usize>() => {
            Ok(Column::Bytes(ByteColumn::new(bytes.clone(), shape)))
        }
        (DType::F32, _) => {
            let values = raw.data.to_f32();
            // Integers convert to finite floats: only float files need the check.
            if !allow_nan && raw.data.is_float() {
                check_finite(raw, &values)?;
            }
            Ok(Column::Dense(Tensor::F32(from_vec(raw, shape, values)?)))
        }
        (DType::I32, _) => Ok(Column::Dense(Tensor::I32(from_vec(
            raw,
            shape,
            raw.to_i32()?,
        )?))),
    }
}

/// Converts raw targets to their natural tensor type before target transforms: integer files
/// give i32 (class indices), floating files f32. Shapes are checked later, by [`conform_target`].
pub fn convert_target_raw(raw: &RawArray) -> Result<Tensor, RuntimeError> {
    let shape = IxDyn(&raw.shape);
    if raw.data.is_float() {
        let values = raw.data.to_f32();
        Ok(Tensor::F32(
            ArrayD::from_shape_vec(shape, values).map_err(|e| shape_error(raw, e))?,
        ))
    } else {
        Ok(Tensor::I32(
            ArrayD::from_shape_vec(shape, raw.to_i32()?).map_err(|e| shape_error(raw, e))?,
        ))
    }
}

/// Fits transformed targets to the model's target `spec`: dtype (whole-number floats become
/// class indices), shape (with the trailing-1 rule), and the class range.
pub fn conform_target(
    origin: &str,
    target: Tensor,
    spec: &TensorSpec,
) -> Result<Tensor, RuntimeError> {
    let sample = target.sample_shape().to_vec();
    if !sample_shape_fits(&sample, &spec.shape) {
        // One value per sample for an output with positions: the model, not the data, is
        // usually what is wrong (Flatten forgotten).
        let hint = if sample.len() < spec.shape.len()
            && spec.shape.len() > usize::from(spec.classes.is_none())
        {
            "; for one label per sample the output must be one vector per sample: add Flatten or a global pool before the last Dense"
        } else {
            ""
        };
        return Err(RuntimeError::in_origin(
            ErrorKind::Shape,
            origin,
            format!(
                "the targets of output `{}` must be samples of shape {} (data shape [N, {}]), found samples of shape {} (data shape {}){hint}",
                spec.name,
                fmt_shape(&spec.shape),
                spec.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
                fmt_shape(&sample),
                fmt_shape(target.shape())
            )
            .replace("[N, ]", "[N]"),
        ));
    }
    let mut full_shape = vec![target.len()];
    full_shape.extend_from_slice(&spec.shape);
    let converted = match (target, spec.dtype) {
        (Tensor::F32(a), DType::F32) => Tensor::F32(a),
        (Tensor::I32(a), DType::F32) => Tensor::F32(a.mapv(|v| v as f32)),
        (Tensor::I32(a), DType::I32) => Tensor::I32(a),
        (Tensor::F32(a), DType::I32) => {
            if let Some((i, v)) = a
                .iter()
                .enumerate()
                .find(|(_, v)| v.fract() != 0.0 || !v.is_finite())
            {
                return Err(RuntimeError::in_origin(
                    ErrorKind::DType,
                    origin,
                    format!(
                        "the targets of output `{}` must be integer class indices, found {v} at element {i}",
                        spec.name
                    ),
                ));
            }
            Tensor::I32(a.mapv(|v| v as i32))
        }
    };
    let reshaped = reshape(converted, &full_shape)
        .map_err(|m| RuntimeError::in_origin(ErrorKind::Shape, origin, m))?;
    if let (Some(classes), Tensor::I32(labels)) = (spec.classes, &reshaped) {
        check_label_range(origin, labels.iter().copied(), classes)?;
    }
    Ok(reshaped)
}

/// Checks class labels against `0..classes`.
pub fn check_label_range(
    origin: &str,
    labels: impl Iterator<Item = i32>,
    classes: usize,
) -> Result<(), RuntimeError> {
    for (i, label) in labels.enumerate() {
        if label < 0 || label as i64 >= classes as i64 {
            return Err(RuntimeError::in_origin(
                ErrorKind::LabelOutOfRange,
                origin,
                format!(
                    "label {label} at sample {i} is out of range: the model has {classes} classes, so labels must be 0..={}",
                    classes as i64 - 1
                ),
            ));
        }
    }
    Ok(())
}

fn reshape(t: Tensor, shape: &[usize]) -> Result<Tensor, String> {
    let why = |e: ndarray::ShapeError| format!("cannot reshape to {}: {e}", fmt_shape(shape));
    Ok(match t {
        Tensor::F32(a) => Tensor::F32(
            a.as_standard_layout()
                .into_owned()
                .into_shape_with_order(IxDyn(shape))
                .map_err(why)?,
        ),
        Tensor::I32(a) => Tensor::I32(
            a.as_standard_layout()
                .into_owned()
                .into_shape_with_order(IxDyn(shape))
                .map_err(why)?,
        ),
    })
}

fn conformed_shape(
    raw: &RawArray,
    spec: &TensorSpec,
    role: &str,
) -> Result<Vec<usize>, RuntimeError> {
    if raw.shape.is_empty() || !sample_shape_fits(raw.sample_shape(), &spec.shape) {
        let mut expected = vec!["N".to_string()];
        expected.extend(spec.shape.iter().map(|d| d.to_string()));
        return Err(RuntimeError::in_origin(
            ErrorKind::Shape,
            &raw.origin,
            format!(
                "{role} '{}' expects data of shape [{}] (samples of shape {}), found shape {} (samples of shape {})",
                spec.name,
                expected.join(", "),
                fmt_shape(&spec.shape),
                fmt_shape(&raw.shape),
                fmt_shape(raw.sample_shape())
            ),
        ));
    }
    let mut shape = vec![raw.samples()];
    shape.extend_from_slice(&spec.shape);
    Ok(shape)
}

fn from_vec<T>(
    raw: &RawArray,
    shape: Vec<usize>,
    values: Vec<T>,
) -> Result<ArrayD<T>, RuntimeError> {
    ArrayD::from_shape_vec(IxDyn(&shape), values).map_err(|e| shape_error(raw, e))
}

fn shape_error(raw: &RawArray, e: ndarray::ShapeError) -> RuntimeError {
    RuntimeError::in_origin(
        ErrorKind::Shape,
        &raw.origin,
        format!("inconsistent shape {}: {e}", fmt_shape(&raw.shape)),
    )
}

fn check_finite(raw: &RawArray, values: &[f32]) -> Result<(), RuntimeError> {
    let sample_size: usize = raw.sample_shape().iter().product::<usize>().max(1);
    if let Some((i, v)) = first_non_finite_in(values) {
        return Err(RuntimeError::in_origin(
            ErrorKind::NonFinite,
            &raw.origin,
            format!(
                "{v} in the inputs at sample {}, element {} (pass --allow-nan to accept it)",
                i / sample_size,
                i % sample_size
            )
            .replace("NaN in", "NaN in")
            .replace("inf in", "infinity in"),
        ));
    }
    Ok(())
}

/// Checks transformed samples before the first step: inputs finite (unless `allow_nan`) and
/// token ids inside their vocabulary, targets finite. `input_origins` and `target_origin` name
/// the files in the messages.
pub fn validate(
    data: &Dataset,
    model: &super::ModelData,
    input_origins: &[String],
    target_origin: &str,
    allow_nan: bool,
) -> Result<(), RuntimeError> {
    for (k, (t, spec)) in data.inputs.iter().zip(&model.inputs).enumerate() {
        let origin = input_origins.get(k).map_or("", String::as_str);
        let per = spec.shape.iter().product::<usize>().max(1);
        let non_finite = match t {
            _ if allow_nan => None,
            Column::Dense(Tensor::F32(a)) => first_non_finite(a),
            Column::Bytes(c) => c.first_non_finite(),
            Column::Dense(Tensor::I32(_)) => None,
        };
        if let Some((i, v)) = non_finite {
            return Err(RuntimeError::in_origin(
                ErrorKind::NonFinite,
                origin,
                format!(
                    "input '{}' is {} at sample {}, element {} after the data section's `x` transforms (pass --allow-nan to accept it)",
                    spec.name,
                    describe_non_finite(v),
                    i / per,
                    i % per
                ),
            ));
        }
        if let (Column::Dense(Tensor::I32(a)), Some((vocab, layer))) = (t, &spec.ids) {
            if let Some((i, v)) = a
                .iter()
                .enumerate()
                .find(|(_, &v)| v < 0 || v as i64 >= *vocab as i64)
            {
                return Err(RuntimeError::in_origin(
                            ErrorKind::LabelOutOfRange,
                            origin,
                            format!(
                                "token id {v} at sample {}, element {} of input '{}' is out of range: `{layer}` has a vocabulary of {vocab}, so ids must be 0..={}",
                                i / per,
                                i % per,
                                spec.name,
                                vocab - 1
                            ),
                        ));
            }
        }
    }
    for (t, spec) in data.targets.iter().zip(&model.targets) {
        if let Tensor::F32(a) = t {
            let per = spec.shape.iter().product::<usize>().max(1);
            if let Some((i, v)) = first_non_finite(a) {
                return Err(RuntimeError::in_origin(
                    ErrorKind::NonFinite,
                    target_origin,
                    format!(
                        "target '{}' is {} at sample {}, element {}: the loss would be NaN",
                        spec.name,
                        describe_non_finite(v),
                        i / per,
                        i % per
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The first element (in logical order) that is NaN or infinite, with its index.
fn first_non_finite(a: &ArrayD<f32>) -> Option<(usize, f32)> {
    match a.as_slice() {
        Some(values) => first_non_finite_in(values),
        None => a.iter().copied().enumerate().find(|(_, v)| !v.is_finite()),
    }
}

/// [`first_non_finite`] on a slice: blocks that are all finite are passed over with a loop
/// the compiler vectorizes (the 47 million inputs of MNIST took 50 ms element by element).
fn first_non_finite_in(values: &[f32]) -> Option<(usize, f32)> {
    const BLOCK: usize = 1024;
    values
        .chunks(BLOCK)
        .enumerate()
        .find(|(_, block)| !block.iter().fold(true, |ok, v| ok & v.is_finite()))
        .and_then(|(b, block)| {
            let (i, &v) = block.iter().enumerate().find(|(_, v)| !v.is_finite())?;
            Some((b * BLOCK + i, v))
        })
}

fn describe_non_finite(v: f32) -> &'static str {
    if v.is_nan() {
        "NaN"
    } else if v > 0.0 {
        "infinity"
    } else {
        "-infinity"
    }
}
