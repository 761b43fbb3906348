//! The training loop, generic over the [`Backend`] that runs the model (the reference
//! interpreter, the JIT, or an AOT-compiled model).
//!
//! The loop owns everything but the model math: batching and shuffling, learning-rate
//! schedules, metrics, validation, early stopping, checkpoints, resume, the run directory and
//! progress. A run is reproducible from its seed: the sample order of epoch `e` depends only on
//! `(seed, e)` and the rate of step `s` only on `s` and the schedule's saved state, so a run
//! resumed from a checkpoint ends bit-identical to an uninterrupted one (given a deterministic
//! backend whose dropout randomness derives from its seed and `opt/step`).

pub mod callbacks;
mod checkpoint;
mod fit;
pub mod plot;
pub mod progress;
pub mod record;
pub mod schedule;

pub use checkpoint::load_init;
pub use plot::plot;
pub use progress::{format_logs, ProgressMode};
pub use record::EpochRecord;

use crate::config::{TrainSpec, Validation};
use crate::data::batch::sequential_batches;
use crate::data::Dataset;
use crate::error::{ErrorKind, RuntimeError};
use crate::metrics::{MetricDef, MetricSet};
use crate::tensor::Tensor;
use crate::weights::WeightsMeta;
use callbacks::EarlyState;
use fit::Run;
use schedule::PlateauState;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::io::Write;
use std::path::PathBuf;

/// What a backend returns for a batch.
#[derive(Clone, Debug, PartialEq)]
pub struct StepOutput {
    /// The batch's mean loss, including regularisers (what training minimises).
    pub loss: f64,
    /// The model outputs of the forward pass (before the update), one per model output.
    pub outputs: Vec<Tensor>,
    /// Further named batch means to report: each step's `NAME_loss` (language.md 9.4), then
    /// each metric over model values (9.3).
    pub extra: Vec<(String, f64)>,
}

/// A way to run a compiled model. Implemented by the interpreter, the JIT and AOT models.
///
/// Contract:
/// - `inputs` and `targets` are batches (axis 0) in model input / output order, of the dtypes
///   and per-sample shapes the model declares; the last batch of an epoch may be smaller.
/// - `state` names every tensor as language.md section 7 does: parameters
///   (`dense.kernel`), BatchNorm moving statistics, optimizer slots (`opt/dense.kernel/m`) and
///   `opt/step`. `set_state` sets the tensors it is given and leaves the others unchanged
///   (`--init` gives parameters only); it rejects unknown names and wrong shapes.
/// - Randomness (dropout) must derive from the run's seed and `opt/step`, so that restoring a
///   state restores the random stream too.
pub trait Backend {
    /// One optimizer step in training mode; returns the batch's mean loss (incl. regularisers)
    /// and the model outputs of the forward pass (before the update), for the metrics.
    fn train_step(
        &mut self,
        inputs: &[Tensor],
        targets: &[Tensor],
        lr: f32,
    ) -> Result<StepOutput, RuntimeError>;
    /// One batch through every `step` of a `train` section (language.md 9.4), step k at the
    /// rate `rates[k]` (its own `schedule:`). A backend without steps takes the first rate.
    fn train_step_rates(
        &mut self,
        inputs: &[Tensor],
        targets: &[Tensor],
        rates: &[f32],
    ) -> Result<StepOutput, RuntimeError> {
        self.train_step(inputs, targets, rates.first().copied().unwrap_or(0.0))
    }
    /// Inference-mode forward (dropout off, BatchNorm moving statistics) plus the loss.
    fn evaluate(
        &mut self,
        inputs: &[Tensor],
        targets: &[Tensor],
    ) -> Result<StepOutput, RuntimeError>;
    /// Inference-mode forward only.
    fn predict(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError>;
    /// Every named tensor: parameters, BatchNorm moving stats, `opt/...` slots and `opt/step`.
    fn state(&self) -> Vec<(String, Tensor)>;
    fn set_state(&mut self, state: &[(String, Tensor)]) -> Result<(), RuntimeError>;
}

/// Options of a training run beyond the `train` section.
#[derive(Clone, Debug)]
pub struct FitOptions {
    /// Where `metrics.csv`, `metrics.jsonl`, `checkpoints/`, `curves.svg` and the final weights
    /// go. Without it, nothing is written (except `save`) and checkpoints are skipped.
    pub run_dir: Option<PathBuf>,
    /// `--steps N`: stop after the run's step N (counted from its start, so a resumed run stops
    /// where the uninterrupted one does); `epochs` still sets the schedule's length.
    pub steps: Option<u64>,
    pub progress: ProgressMode,
    /// `--resume CKPT`: continue the run saved in this checkpoint.
    pub resume: Option<PathBuf>,
    /// Where the final weights go (default `RUN_DIR/weights.safetensors`).
    pub save: Option<PathBuf>,
    /// Metadata for every weights file written (model, source hash, transforms).
    pub meta: WeightsMeta,
    /// Files written into the run directory when the run starts, once the data and the resume
    /// checkpoint passed their checks (`fmc` writes the resolved `.fm` and `summary.txt`).
    pub run_files: Vec<(String, Vec<u8>)>,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            run_dir: None,
            steps: None,
            progress: ProgressMode::Auto,
            resume: None,
            save: None,
            meta: WeightsMeta::default(),
            run_files: Vec::new(),
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, PartialEq)]
pub struct History {
    pub epochs: Vec<EpochRecord>,
    /// Optimizer steps taken in total (including those before a resume).
    pub step: u64,
    /// 0-based epoch at which early stopping stopped the run.
    pub stopped_epoch: Option<u64>,
    /// 0-based epoch whose weights were restored by early stopping.
    pub restored_epoch: Option<u64>,
    /// The file the final weights were written to.
    pub saved: Option<PathBuf>,
}

/// The loop's resume state, stored as JSON in a checkpoint's `train_state` metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// The epoch in progress (0-based); equal to the completed epochs at an epoch boundary.
    pub epoch: u64,
    pub step: u64,
    pub seed: u64,
    pub steps_per_epoch: u64,
    pub plateau: Option<PlateauState>,
    /// The `ReduceOnPlateau` state of each `step` with its own (language.md 9.4), by step
    /// name, in the order written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub step_plateaus: Vec<(String, PlateauState)>,
    pub early: Option<EarlyState>,
    pub checkpoint_best: Option<f64>,
    /// Running metrics of the epoch in progress (mid-epoch checkpoints). No timings are
    /// saved, so identical runs write identical files; a resumed epoch's `seconds` count the
    /// resumed part only.
    pub epoch_metrics: Option<MetricSet>,
}

/// Name of the file beside a checkpoint that holds early stopping's best state.
pub const EARLY_STOPPING_BEST: &str = "early_stopping_best.safetensors";

/// Trains with progress and event lines on stderr.
pub fn fit<B: Backend + ?Sized>(
    backend: &mut B,
    spec: &TrainSpec,
    train: &Dataset,
    test: Option<&Dataset>,
    options: &FitOptions,
) -> Result<History, RuntimeError> {
    fit_with_log(backend, spec, train, test, options, &mut std::io::stderr())
}

/// Trains; one-line progress (when not on a terminal) and event lines go to `log`.
///
/// The run's parts: setting up and the epoch loop with its steps (`fit.rs`), the callbacks at
/// each epoch's end (`callbacks.rs`), checkpoints and resuming (`checkpoint.rs`), the progress
/// display (`progress.rs`) and the run directory's records (`record.rs`).
pub fn fit_with_log<B: Backend + ?Sized>(
    backend: &mut B,
    spec: &TrainSpec,
    train: &Dataset,
    test: Option<&Dataset>,
    options: &FitOptions,
    log: &mut dyn Write,
) -> Result<History, RuntimeError> {
    let (train, validation) = split_validation(spec, train, test)?;
    let mut run = Run::new(backend, spec, options, log, &train, validation.as_deref())?;
    let fresh_dir = options.run_dir.as_ref().map(|d| !d.exists());
    run.open_run_dir()?;
    let result = run.run();
    if let (Err(e), Some(dir), Some(fresh)) = (&result, &options.run_dir, fresh_dir) {
        record::mark_failed(dir, fresh, e);
    }
    result
}

/// The samples trained on and those validated on, as the `validation` setting says.
fn split_validation<'d>(
    spec: &TrainSpec,
    train: &'d Dataset,
    test: Option<&'d Dataset>,
) -> Result<(Cow<'d, Dataset>, Option<Cow<'d, Dataset>>), RuntimeError> {
    Ok(match &spec.validation {
        Validation::None => (Cow::Borrowed(train), None),
        Validation::Split(f) => {
            let (t, v) = train.split_tail(*f);
            // Keras refuses a split that leaves either side empty; an empty validation set
            // silently gave a run without `val_*` figures (an empty training set is reported
            // when the run starts).
            if v.is_empty() && !t.is_empty() {
                return Err(RuntimeError::without_path(
                    ErrorKind::DataSetup,
                    format!(
                        "no validation samples: `validation: split({f:?})` of {} samples leaves none for validation; use a larger fraction",
                        train.len()
                    ),
                ));
            }
            (Cow::Owned(t), Some(Cow::Owned(v)))
        }
        Validation::Test => match test {
            Some(t) => (Cow::Borrowed(train), Some(Cow::Borrowed(t))),
            None => {
                return Err(RuntimeError::without_path(
                    ErrorKind::DataSetup,
                    "validation: test needs a test split, and the data has none",
                ))
            }
        },
    })
}

/// The value of `key` in epoch logs.
fn lookup(logs: &[(String, f64)], key: &str) -> Option<f64> {
    logs.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
}

/// Loss and metrics of `data` in inference mode, batch by batch (`fmc eval`, validation):
/// `[("loss", ..), (metric, ..), ...]`.
pub fn evaluate<B: Backend + ?Sized>(
    backend: &mut B,
    data: &Dataset,
    batch_size: usize,
    defs: &[MetricDef],
) -> Result<Vec<(String, f64)>, RuntimeError> {
    if data.is_empty() {
        return Err(RuntimeError::without_path(
            ErrorKind::DataSetup,
            "no samples to evaluate",
        ));
    }
    let mut metrics = MetricSet::new(defs.to_vec());
    for range in sequential_batches(data.len(), batch_size.max(1)) {
        let part = data.batch(range);
        let out = backend.evaluate(&part.inputs, &part.targets)?;
        metrics.update_loss(out.loss, part.len());
        for (name, v) in &out.extra {
            metrics.update_extra(name, *v, part.len());
        }
        metrics.update(&out.outputs, &part.targets)?;
    }
    Ok(metrics.results())
}

/// Model outputs for `inputs`, batch by batch: `each` receives every batch's outputs in order
/// (`fmc predict` prints or collects them), so memory holds one batch's outputs at a time.
pub fn predict_batches<B: Backend + ?Sized>(
    backend: &mut B,
    inputs: &[Tensor],
    batch_size: usize,
    mut each: impl FnMut(Vec<Tensor>) -> Result<(), RuntimeError>,
) -> Result<(), RuntimeError> {
    let n = inputs.first().map(Tensor::len).unwrap_or(0);
    for range in sequential_batches(n, batch_size.max(1)) {
        let batch: Vec<Tensor> = inputs
            .iter()
            .map(|t| t.slice_samples(range.clone()))
            .collect();
        each(backend.predict(&batch)?)?;
    }
    Ok(())
}

/// Model outputs for `inputs`, computed batch by batch and concatenated.
pub fn predict<B: Backend + ?Sized>(
    backend: &mut B,
    inputs: &[Tensor],
    batch_size: usize,
) -> Result<Vec<Tensor>, RuntimeError> {
    let mut parts = Vec::new();
    predict_batches(backend, inputs, batch_size, |outputs| {
        parts.push(outputs);
        Ok(())
    })?;
    concat_batches(&parts)
}

/// Joins the outputs of the batches [`predict_batches`] passed on: one tensor per output.
pub fn concat_batches(parts: &[Vec<Tensor>]) -> Result<Vec<Tensor>, RuntimeError> {
    let outputs = parts.first().map_or(0, Vec::len);
    (0..outputs)
        .map(|o| {
            let pieces = parts
                .iter()
                .map(|p| p.get(o).cloned())
                .collect::<Option<Vec<Tensor>>>()
                .ok_or_else(|| {
                    RuntimeError::backend("the backend returned a varying number of outputs")
                })?;
            Tensor::concat_samples(&pieces).ok_or_else(|| {
                RuntimeError::backend("the backend returned outputs of varying shapes or dtypes")
            })
        })
        .collect()
}

/// Logs as one JSON object with full precision, keys in order (`fmc eval --json`); NaN and
/// infinity become `null`.
pub fn logs_json(logs: &[(String, f64)]) -> String {
    let fields: Vec<String> = logs
        .iter()
        .map(|(k, v)| {
            let value = serde_json::Number::from_f64(*v)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null);
            format!("{}:{}", serde_json::Value::String(k.clone()), value)
        })
        .collect();
    format!("{{{}}}", fields.join(","))
}
