//! `fmc predict FILE --weights W --input X [-o Y]`: inference; writes `.npy` (several outputs:
//! one file per output, `Y.NAME.npy`), or prints the results when no `-o` is given.

use super::session::{self, runtime_error, RunOptions};
use super::Global;
use fm_runtime::data::{prepare_inputs, read_array};
use fm_runtime::tensor::Tensor;
use fm_runtime::train;
use fm_runtime::{ErrorKind, RuntimeError};
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct PredictArgs {
    /// The `.fm` file.
    pub file: PathBuf,
    /// Trained weights (safetensors written by `fmc train`).
    #[arg(long, value_name = "W.safetensors")]
    pub weights: PathBuf,
    /// Inputs (IDX, .npy, .npz[:key], .csv); a model with several inputs takes an .npz whose
    /// keys are the input names.
    #[arg(
        long,
        value_name = "X",
        required_unless_present = "samples",
        conflicts_with = "samples"
    )]
    pub input: Option<String>,
    /// Draw N samples instead of reading inputs, when every input the outputs need is sampled
    /// (`input z: f32[32] ~ normal(0, 1)`), e.g. a GAN's generator.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub samples: Option<u64>,
    /// Write the outputs here as .npy (several outputs: `Y.NAME.npy`) instead of printing them;
    /// a `.png` or `.svg` path draws image-shaped outputs as an image grid.
    #[arg(short = 'o', long, value_name = "Y.npy")]
    pub output: Option<PathBuf>,
    /// The model to run when the file has several.
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// Samples per batch (default: the `train` section's `batch_size`, 32 without one); bounds
    /// memory.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: Option<u64>,
    #[command(flatten)]
    pub run: RunOptions,
}

pub fn run(g: &mut Global, args: &PredictArgs) -> i32 {
    args.run.set_threads();
    let sel = match session::select(g, &args.file, args.model.as_deref(), &[]) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if let Some(out) = &args.output {
        if let Err(e) = fm_runtime::fsutil::check_writable(out) {
            return runtime_error(g, &e);
        }
    }
    let mut backend = match session::backend(g, &sel, args.run.backend) {
        Ok(b) => b,
        Err(code) => return code,
    };
    let batch = args
        .batch_size
        .map_or(sel.spec.batch_size, |n| n as usize)
        .max(1);
    // One output printed is streamed batch by batch; a file (or several printed outputs, each
    // printed whole) needs all of them in memory, which must fit the budget.
    let stream = args.output.is_none() && sel.graph.outputs.len() == 1;
    let classes = classifier(&sel, 0);
    let mut parts: Vec<Vec<Tensor>> = Vec::new();
    let mut printed = Ok(());
    let result: Result<(), RuntimeError> = (|| {
        let meta = session::load_weights(&mut backend, &args.weights, &sel.graph.name)?;
        let mut each = |outputs: Vec<Tensor>| {
            if stream {
                if let Some(t) = outputs.first() {
                    printed = print_rows(g.out, t, classes);
                }
                // A closed stdout (`| head`) ends the run.
                return match &printed {
                    Ok(()) => Ok(()),
                    Err(_) => Err(RuntimeError::without_path(ErrorKind::Write, "")),
                };
            }
            parts.push(outputs);
            Ok(())
        };
        if let Some(n) = args.samples {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if !stream {
                fits_in_memory(&sel, n, &g.limits, args.output.as_deref())?;
            }
            return sampled(&backend, n, batch, each);
        }
        let input = args.input.as_deref().unwrap_or_default();
        let transforms = session::stored_transforms(&meta, &sel.spec, &args.weights)?;
        let md = session::model_data(&sel.graph, &sel.spec);
        let raw = if md.inputs.len() == 1 {
            vec![read_array(input)?]
        } else {
            session::read_needed(input, &md, &backend.predict_fn)?
        };
        let inputs = prepare_inputs(&raw, &md, &transforms, args.run.load_options())?;
        if !stream {
            let n = inputs.first().map_or(0, Tensor::len);
            fits_in_memory(&sel, n, &g.limits, args.output.as_deref())?;
        }
        // Outputs trained against transformed targets (`y: standardize`, `y: scale(...)`) are
        // given back in the targets' own units.
        let restore = md.target_names() == output_names(&sel);
        train::predict_batches(&mut backend, &inputs, batch, &mut |outputs: Vec<Tensor>| {
            each(if restore {
                transforms.restore_outputs(outputs)
            } else {
                outputs
            })
        })
    })();
    if let Err(e) = printed {
        return match e.kind() {
            std::io::ErrorKind::BrokenPipe => 0,
            _ => {
                g.fail(&format!("cannot write the predictions: {e}"));
                1
            }
        };
    }
    let outputs = match result.and_then(|()| train::concat_batches(&parts)) {
        Ok(o) => o,
        Err(e) => return runtime_error(g, &e),
    };
    match &args.output {
        Some(path)
            if path.extension().is_some_and(|e| {
                e.eq_ignore_ascii_case("png") || e.eq_ignore_ascii_case("svg")
            }) =>
        {
            // The first image-shaped output, drawn as a grid.
            let found = sel.graph.outputs.iter().zip(&outputs).find_map(|(o, t)| {
                let shape = &sel.graph.nodes[o.node].shape;
                fm_runtime::image::image_shape(shape).map(|s| (t, s))
            });
            let Some((t, shape)) = found else {
                g.fail("`-o` names an image, but no output is image-shaped ([H, W], [H, W, 1] or [H, W, 3]); write `.npy` instead");
                return 1;
            };
            let values: Vec<f32> = t.to_f32().iter().copied().collect();
            match fm_runtime::image::write_grid(path, &values, t.len(), shape) {
                Ok(()) => 0,
                Err(e) => runtime_error(g, &e),
            }
        }
        Some(path) => {
            for (o, t) in sel.graph.outputs.iter().zip(&outputs) {
                let target = if outputs.len() == 1 {
                    path.clone()
                } else {
                    path.with_extension(format!("{}.npy", o.name))
                };
                if let Err(e) = fm_runtime::data::npy::write_npy(&target, t) {
                    return runtime_error(g, &e);
                }
            }
            0
        }
        None if stream => 0,
        None => {
            for (k, (o, t)) in sel.graph.outputs.iter().zip(&outputs).enumerate() {
                let header = writeln!(g.out, "{}:", o.name);
                if let Err(e) = header.and_then(|()| print_rows(g.out, t, classifier(&sel, k))) {
                    if e.kind() != std::io::ErrorKind::BrokenPipe {
                        g.fail(&format!("cannot write the predictions: {e}"));
                        return 1;
                    }
                    break;
                }
            }
            0
        }
    }
}

fn output_names(sel: &session::Selected) -> Vec<String> {
    sel.graph.outputs.iter().map(|o| o.name.clone()).collect()
}

/// Refuses, before the first batch, to collect the outputs of `n` samples when they would not
/// fit in the memory budget (`fmc predict -o`, or several outputs printed).
fn fits_in_memory(
    sel: &session::Selected,
    n: usize,
    limits: &fm_compiler::check::Limits,
    output: Option<&std::path::Path>,
) -> Result<(), RuntimeError> {
    // Every output is f32 (4 bytes an element); shapes are bounded by the checker.
    let per_sample: u64 = sel
        .graph
        .outputs
        .iter()
        .map(|o| {
            let elements: u64 = sel.graph.nodes[o.node]
                .shape
                .iter()
                .map(|&d| d as u64)
                .product();
            elements.saturating_mul(4)
        })
        .fold(0, u64::saturating_add);
    let total = per_sample.saturating_mul(n as u64);
    if total <= limits.memory {
        return Ok(());
    }
    let message = format!(
        "the outputs of {} samples take {} ({} each), more than {}; predict fewer samples at a time{}",
        fm_compiler::summary::thousands(n),
        fm_compiler::summary::readable_bytes(total as f64),
        fm_compiler::summary::readable_bytes(per_sample as f64),
        limits.describe(),
        if output.is_some() { ", or print them (without `-o`, one output is streamed)" } else { "" },
    );
    Err(match output {
        Some(path) => {
            RuntimeError::in_origin(ErrorKind::DataSetup, &path.display().to_string(), message)
        }
        None => RuntimeError::without_path(ErrorKind::DataSetup, message),
    })
}

/// `--samples N`: the outputs for N drawn samples, batch by batch, passed to `each`, with no
/// input file. Refused when an output needs an input that is read from data.
fn sampled(
    backend: &fm_compiler::exec::Session,
    n: usize,
    batch: usize,
    mut each: impl FnMut(Vec<Tensor>) -> Result<(), RuntimeError>,
) -> Result<(), RuntimeError> {
    let needs_data: Vec<&str> = backend
        .predict_fn
        .args
        .iter()
        .filter(|a| a.kind == fm_compiler::ir::ArgKind::Input)
        .map(|a| a.name.as_str())
        .collect();
    if !needs_data.is_empty() {
        return Err(RuntimeError::without_path(
            ErrorKind::DataSetup,
            format!(
                "`--samples` draws only sampled inputs, but the outputs also need {}; give `--input`",
                needs_data
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let mut done = 0;
    let mut part = 0;
    while done < n {
        let k = batch.max(1).min(n - done);
        each(
            backend
                .predict_samples(&[], k, part)
                .map_err(RuntimeError::backend)?,
        )?;
        part += 1;
        done += k;
    }
    Ok(())
}

/// How a classifier's output row names its class.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Classes {
    /// Several classes: the most probable one (softmax or logits alike).
    Argmax,
    /// One unit: class 1 at or past this probability (0.5) or logit (0).
    Threshold(f32),
}

/// Whether output `k` is a classifier's: its loss is a cross-entropy, or (without a `train`
/// section) it ends in softmax or in a one-unit sigmoid. Only per-sample vectors qualify.
fn classifier(sel: &session::Selected, k: usize) -> Option<Classes> {
    use fm_compiler::graph::Activation;
    use fm_runtime::config::Loss;
    let o = sel.graph.outputs.get(k)?;
    let shape = &sel.graph.nodes[o.node].shape;
    let [units] = shape.as_slice() else {
        return None;
    };
    if sel.has_train {
        return match sel.spec.losses.get(k)?.loss {
            Loss::SparseCategoricalCrossentropy { .. } | Loss::CategoricalCrossentropy { .. }
                if *units >= 2 =>
            {
                Some(Classes::Argmax)
            }
            Loss::BinaryCrossentropy { from_logits } if *units == 1 => {
                Some(Classes::Threshold(if from_logits { 0.0 } else { 0.5 }))
            }
            _ => None,
        };
    }
    match fm_compiler::check::train::final_activation(&sel.graph, o.node)? {
        Activation::Softmax { .. } if *units >= 2 => Some(Classes::Argmax),
        Activation::Sigmoid if *units == 1 => Some(Classes::Threshold(0.5)),
        _ => None,
    }
}

/// One line per sample, values separated by spaces; a classifier's line starts with the class:
/// `class 7: 0.000012 ... 0.998104 ...`.
fn print_rows(out: &mut dyn Write, t: &Tensor, classes: Option<Classes>) -> std::io::Result<()> {
    let values = t.to_f32();
    let n = t.len();
    let per = values.len().checked_div(n).unwrap_or(0);
    let flat: Vec<f32> = values.iter().copied().collect();
    for row in flat.chunks(per.max(1)) {
        let cells: Vec<String> = row.iter().map(|v| format!("{v:.6}")).collect();
        let class = match classes {
            Some(Classes::Argmax) => row
                .iter()
                .enumerate()
                .fold(None, |best: Option<(usize, f32)>, (i, &v)| match best {
                    Some((_, b)) if b >= v || v.is_nan() => best,
                    _ => Some((i, v)),
                })
                .map(|(i, _)| i),
            Some(Classes::Threshold(at)) => row.first().map(|&v| usize::from(v >= at)),
            None => None,
        };
        match class {
            Some(c) => writeln!(out, "class {c}: {}", cells.join(" "))?,
            None => writeln!(out, "{}", cells.join(" "))?,
        }
    }
    Ok(())
}
