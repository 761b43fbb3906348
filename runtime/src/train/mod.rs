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
pub mod plot;
pub mod progress;
pub mod record;
pub mod schedule;

pub use plot::plot;
pub use progress::{format_logs, ProgressMode};
pub use record::EpochRecord;

use crate::config::{CheckpointKeep, Every, TrainSpec, Validation};
use crate::data::batch::{batch, batch_count, epoch_order, sequential_batches};
use crate::data::Dataset;
use crate::error::{ErrorKind, RuntimeError};
use crate::metrics::{metric_defs, MetricDef, MetricSet};
use crate::tensor::Tensor;
use crate::weights::{check_tensors, load_weights, save_weights, WeightsMeta, OPT_PREFIX};
use callbacks::{checkpoint_improves, EarlyDecision, EarlyState, EarlyStopper};
use progress::Progress;
use record::{RunInfo, RunLog, CHECKPOINTS, CURVES, WEIGHTS};
use schedule::{LrSchedule, PlateauState};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What a backend returns for a batch.
#[derive(Clone, Debug, PartialEq)]
pub struct StepOutput {
    /// The batch's mean loss, including regularisers (what training minimises).
    pub loss: f64,
    /// The model outputs of the forward pass (before the update), one per model output.
    pub outputs: Vec<Tensor>,
    /// Further named losses to report (each step's `NAME_loss`, language.md 9.4).
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

/// The first weight (not optimizer state) holding NaN or infinity: its name, the element's
/// index and value.
fn first_non_finite<B: Backend + ?Sized>(backend: &B) -> Option<(String, usize, f32)> {
    backend.state().into_iter().find_map(|(name, t)| {
        if name.starts_with("opt/") {
            return None;
        }
        let values = t.to_f32();
        values
            .iter()
            .position(|v| !v.is_finite())
            .map(|i| (name, i, values.iter().nth(i).copied().unwrap_or(f32::NAN)))
    })
}

/// E0408 for a run stopped because training went non-finite at `step` (Keras's TerminateOnNaN,
/// naming the step and the first parameter). Nothing is saved after it: the last checkpoint
/// holds the last good weights.
fn non_finite_stop<B: Backend + ?Sized>(
    backend: &B,
    step: u64,
    epoch: u64,
    loss: Option<f64>,
) -> RuntimeError {
    let what = match loss {
        Some(l) => format!("the loss is {l}"),
        None => "a gradient went non-finite".to_string(),
    };
    let param = match first_non_finite(backend) {
        Some((name, i, v)) => {
            format!("; the first parameter that is not finite is `{name}` (element {i} is {v})")
        }
        None => String::new(),
    };
    RuntimeError::without_path(
        ErrorKind::NonFinite,
        format!(
            "training stopped at step {step} (epoch {epoch}): {what}{param}. Nothing was saved after the last checkpoint, which holds the last good weights; lower the learning rate or clip the gradients (`clip_norm`)"
        ),
    )
}

/// Trains; one-line progress (when not on a terminal) and event lines go to `log`.
pub fn fit_with_log<B: Backend + ?Sized>(
    backend: &mut B,
    spec: &TrainSpec,
    train: &Dataset,
    test: Option<&Dataset>,
    options: &FitOptions,
    log: &mut dyn Write,
) -> Result<History, RuntimeError> {
    let (train, validation) = match &spec.validation {
        Validation::None => (train.clone(), None),
        Validation::Split(f) => {
            let (t, v) = train.split_tail(*f);
            (t, (!v.is_empty()).then_some(v))
        }
        Validation::Test => match test {
            Some(t) => (train.clone(), Some(t.clone())),
            None => {
                return Err(RuntimeError::without_path(
                    ErrorKind::DataSetup,
                    "validation: test needs a test split, and the data has none",
                ))
            }
        },
    };
    if train.is_empty() {
        let why = match &spec.validation {
            Validation::Split(f) => format!(": `validation: split({f})` takes all of them"),
            _ => String::new(),
        };
        return Err(RuntimeError::without_path(
            ErrorKind::DataSetup,
            format!("no training samples are left{why}"),
        ));
    }
    let batch_size = spec.batch_size.max(1);
    let n = train.len();
    let steps_per_epoch = batch_count(n, batch_size) as u64;
    // The run the file describes is `epochs` long: schedules (Cosine) span it whatever
    // `--steps` says. `--steps N` stops the run at its step N, counted from the run's start, so
    // a resumed run stops where the uninterrupted one does.
    let planned_steps = spec.epochs as u64 * steps_per_epoch;
    let total_steps = options.steps.unwrap_or(planned_steps);
    let total_epochs = total_steps.div_ceil(steps_per_epoch);
    let defs = metric_defs(spec);
    let mut progress = Progress::new(options.progress);
    let mut schedule = LrSchedule::new(
        spec.optimizer.lr,
        &spec.schedule,
        steps_per_epoch,
        planned_steps,
    );
    let mut early = spec.early_stopping.clone().map(EarlyStopper::new);
    let mut checkpoint_best: Option<f64> = None;
    let mut metrics = MetricSet::new(defs.clone());
    let mut start_epoch = 0u64;
    let mut step = 0u64;
    let mut resumed_metrics: Option<MetricSet> = None;

    if let Some(path) = &options.resume {
        let state = resume_from(backend, path, early.as_mut())?;
        if state.seed != spec.seed || state.steps_per_epoch != steps_per_epoch {
            return Err(RuntimeError::at(
                ErrorKind::DataSetup,
                path,
                format!(
                    "the checkpoint was made with seed {} and {} steps per epoch; this run has seed {} and {} steps per epoch",
                    state.seed, state.steps_per_epoch, spec.seed, steps_per_epoch
                ),
            ));
        }
        // The step decides where the run continues (`epoch` is derived from it: a weights file
        // of an older fm recorded a partly done epoch as completed).
        step = state.step;
        start_epoch = step / steps_per_epoch;
        if let (Some(p), Some(saved)) = (schedule.plateau.as_mut(), state.plateau) {
            *p = saved;
        }
        checkpoint_best = state.checkpoint_best;
        resumed_metrics = state.epoch_metrics;
    }

    // From here on the run directory holds the run: `run.json` says `running` (which is also
    // what a killed run leaves), then `finished`, or `failed` (see `record::mark_failed`).
    let fresh_dir = options.run_dir.as_ref().map(|d| !d.exists());
    let mut run_log = match &options.run_dir {
        Some(dir) => {
            let run = RunLog::open(
                dir,
                options.steps.is_some(),
                options.resume.as_ref().map(|_| step),
                steps_per_epoch,
            )?;
            for (name, bytes) in &options.run_files {
                crate::fsutil::atomic_write(&dir.join(name), bytes)?;
            }
            RunInfo {
                status: "running".into(),
                saved: RunInfo::read(dir).and_then(|i| i.saved),
                error: None,
            }
            .write(dir)?;
            Some(run)
        }
        None => None,
    };
    let result = (|| -> Result<History, RuntimeError> {
        let mut history = History {
            epochs: Vec::new(),
            step,
            stopped_epoch: None,
            restored_epoch: None,
            saved: None,
        };
        let mut warned: Vec<String> = Vec::new();
        let mut lr = schedule.lr(step, start_epoch);
        // The running metrics of an epoch the run stops inside (`--steps`), saved so that a
        // resumed run finishes that epoch as the uninterrupted run would.
        let mut partial: Option<MetricSet> = match &resumed_metrics {
            Some(m) if !step.is_multiple_of(steps_per_epoch) => Some(m.clone()),
            _ => None,
        };

        for epoch in start_epoch..total_epochs {
            let epoch_start_step = epoch * steps_per_epoch;
            let first_batch = step.saturating_sub(epoch_start_step);
            let last_batch = steps_per_epoch.min(total_steps - epoch_start_step);
            if first_batch >= last_batch {
                continue;
            }
            progress.begin_epoch(epoch + 1, total_epochs, last_batch);
            let clock = Instant::now();
            match resumed_metrics.take() {
                Some(saved) if first_batch > 0 => metrics = saved,
                _ => metrics.reset(),
            }
            let order = epoch_order(n, spec.shuffle, spec.seed, epoch);
            let mut samples = 0usize;
            for b in first_batch..last_batch {
                let data = batch(&train, &order, batch_size, b as usize);
                lr = schedule.lr(step, epoch);
                let out = backend.train_step(&data.inputs, &data.targets, lr)?;
                if !out.loss.is_finite() {
                    return Err(non_finite_stop(
                        &*backend,
                        step + 1,
                        epoch + 1,
                        Some(out.loss),
                    ));
                }
                metrics.update_loss(out.loss, data.len());
                for (name, v) in &out.extra {
                    metrics.update_extra(name, *v, data.len());
                }
                metrics.update(&out.outputs, &data.targets)?;
                samples += data.len();
                step += 1;
                if let Some(run) = run_log.as_mut() {
                    run.step(epoch + 1, step, out.loss as f32, lr);
                }
                let seconds = clock.elapsed().as_secs_f64();
                progress.update(b + 1, seconds, &metrics.results());
                if let (Some(ck), Some(run)) = (&spec.checkpoint, run_log.as_ref()) {
                    if let Every::Steps(k) = ck.every {
                        if k > 0 && step.is_multiple_of(k) && b + 1 < last_batch {
                            let current = lookup(&metrics.results(), &ck.monitor);
                            let state = train_state(
                                spec,
                                step,
                                steps_per_epoch,
                                &schedule,
                                &early,
                                checkpoint_best,
                                &Some(metrics.clone()),
                            );
                            let ctx = CheckpointCtx {
                                backend: &*backend,
                                options,
                                run_dir: run.dir(),
                                early: early.as_mut(),
                                announce: true,
                            };
                            checkpoint(
                                ctx,
                                ck.keep,
                                &ck.monitor,
                                current,
                                &mut checkpoint_best,
                                state,
                                epoch + 1,
                                &mut progress,
                                log,
                            )?;
                        }
                    }
                }
            }
            // A gradient that went non-finite without reaching the loss (a ReLU masks NaN) is
            // caught at the end of the epoch, before anything is saved.
            if first_non_finite(&*backend).is_some() {
                return Err(non_finite_stop(&*backend, step, epoch + 1, None));
            }
            // Throughput of this process's part of the epoch (a resumed epoch counts its own batches).
            let train_seconds = clock.elapsed().as_secs_f64();
            // An epoch the run stops inside (`--steps`) is reported and logged, but callbacks that
            // judge whole epochs (plateau, early stopping, `keep: best`) wait for it to complete, so
            // that the run resumed from here ends exactly as the uninterrupted one.
            let complete = last_batch == steps_per_epoch;
            partial = (!complete).then(|| metrics.clone());
            let mut logs = metrics.results();
            if let Some(val) = &validation {
                let val_logs = evaluate(backend, val, batch_size, &defs)?;
                logs.extend(val_logs.into_iter().map(|(k, v)| (format!("val_{k}"), v)));
            }
            let seconds = clock.elapsed().as_secs_f64();
            progress.end_epoch(log, epoch + 1, total_epochs, last_batch, seconds, &logs);
            let record = EpochRecord {
                epoch: epoch + 1,
                step,
                logs: logs.clone(),
                lr,
                seconds,
                samples_per_second: if train_seconds > 0.0 {
                    samples as f64 / train_seconds
                } else {
                    0.0
                },
            };
            if let Some(run) = run_log.as_mut() {
                run.epoch(&record)?;
            }
            history.epochs.push(record);
            history.step = step;

            // Callbacks, in the order their effects must be saved: the learning rate, early
            // stopping's decision, then the checkpoint (which records both), then a restore.
            if let (true, Some(monitor)) =
                (complete, schedule.plateau_monitor().map(str::to_string))
            {
                let current = lookup(&logs, &monitor);
                warn_missing(
                    &mut warned,
                    "ReduceOnPlateau",
                    &monitor,
                    current,
                    &logs,
                    &mut progress,
                    log,
                );
                if let Some(new_lr) = schedule.on_epoch_end(current) {
                    progress.event(
                        log,
                        &format!(
                            "Epoch {}: ReduceLROnPlateau reducing learning rate to {new_lr}.",
                            epoch + 1
                        ),
                    );
                }
            }
            let decision = match early.as_mut() {
                Some(es) if complete => {
                    let current = lookup(&logs, &es.config.monitor);
                    warn_missing(
                        &mut warned,
                        "early stopping",
                        &es.config.monitor.clone(),
                        current,
                        &logs,
                        &mut progress,
                        log,
                    );
                    // Like Keras' `get_weights`: parameters and BatchNorm statistics, not the
                    // optimizer state, are what `restore_best` brings back.
                    es.on_epoch_end(epoch, current, || {
                        backend
                            .state()
                            .into_iter()
                            .filter(|(n, _)| !n.starts_with(OPT_PREFIX))
                            .collect()
                    })
                }
                _ => EarlyDecision::Continue,
            };
            if let Some(run) = run_log.as_ref() {
                let last_epoch =
                    epoch + 1 == total_epochs || matches!(decision, EarlyDecision::Stop { .. });
                // The configured checkpoint, when due.
                if let Some(ck) = &spec.checkpoint {
                    let due = match ck.every {
                        Every::Epochs(k) => complete && k > 0 && (epoch + 1).is_multiple_of(k),
                        // A step checkpoint that falls on an epoch's last batch is written here,
                        // after validation, so that resuming starts cleanly at the next epoch.
                        Every::Steps(k) => k > 0 && step.is_multiple_of(k),
                    };
                    let keep_last = ck.keep == CheckpointKeep::Last;
                    if (complete || keep_last) && (due || (last_epoch && keep_last)) {
                        let current = lookup(&logs, &ck.monitor);
                        if !keep_last {
                            warn_missing(
                                &mut warned,
                                "checkpoint",
                                &ck.monitor,
                                current,
                                &logs,
                                &mut progress,
                                log,
                            );
                        }
                        let state = train_state(
                            spec,
                            step,
                            steps_per_epoch,
                            &schedule,
                            &early,
                            checkpoint_best,
                            &partial,
                        );
                        let ctx = CheckpointCtx {
                            backend: &*backend,
                            options,
                            run_dir: run.dir(),
                            early: early.as_mut(),
                            announce: true,
                        };
                        checkpoint(
                            ctx,
                            ck.keep,
                            &ck.monitor,
                            current,
                            &mut checkpoint_best,
                            state,
                            epoch + 1,
                            &mut progress,
                            log,
                        )?;
                    }
                }
                // Unless the file configures `keep: last` (with its own `every`), the default
                // `checkpoints/last.safetensors` at each epoch end, silently, so that every run
                // directory can be resumed from its last epoch (or from where `--steps` stopped it).
                let configured_last = spec
                    .checkpoint
                    .as_ref()
                    .is_some_and(|ck| ck.keep == CheckpointKeep::Last);
                if !configured_last {
                    let state = train_state(
                        spec,
                        step,
                        steps_per_epoch,
                        &schedule,
                        &early,
                        checkpoint_best,
                        &partial,
                    );
                    let ctx = CheckpointCtx {
                        backend: &*backend,
                        options,
                        run_dir: run.dir(),
                        early: early.as_mut(),
                        announce: false,
                    };
                    checkpoint(
                        ctx,
                        CheckpointKeep::Last,
                        "loss",
                        None,
                        &mut None,
                        state,
                        epoch + 1,
                        &mut progress,
                        log,
                    )?;
                }
            }
            if let EarlyDecision::Stop { restore } = decision {
                history.stopped_epoch = Some(epoch);
                let mut message = format!("Epoch {}: early stopping", epoch + 1);
                if let Some((best_epoch, weights)) = restore {
                    backend.set_state(&weights)?;
                    history.restored_epoch = Some(best_epoch);
                    message.push_str(&format!(
                        "; restoring model weights from the end of the best epoch: {}.",
                        best_epoch + 1
                    ));
                }
                progress.event(log, &message);
                break;
            }
        }

        // The final weights, with the resume state of the end of the run.
        let final_state = train_state(
            spec,
            step,
            steps_per_epoch,
            &schedule,
            &early,
            checkpoint_best,
            &partial,
        );
        let save_path = options
            .save
            .clone()
            .or_else(|| options.run_dir.as_ref().map(|d| d.join(WEIGHTS)));
        if let Some(path) = save_path {
            save_state(&path, backend.state(), &options.meta, &final_state)?;
            history.saved = Some(path);
        }
        if let Some(dir) = &options.run_dir {
            if dir.join(record::JSONL).exists() {
                plot(dir, &dir.join(CURVES))?;
            }
            RunInfo {
                status: "finished".into(),
                saved: options
                    .save
                    .as_ref()
                    .map(|p| p.canonicalize().unwrap_or_else(|_| p.clone())),
                error: None,
            }
            .write(dir)?;
        }
        Ok(history)
    })();
    if let (Err(e), Some(dir), Some(fresh)) = (&result, &options.run_dir, fresh_dir) {
        record::mark_failed(dir, fresh, e);
    }
    result
}

fn lookup(logs: &[(String, f64)], key: &str) -> Option<f64> {
    logs.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
}

/// Keras warns when a callback's monitor is not in the logs; once per run here.
fn warn_missing(
    warned: &mut Vec<String>,
    who: &str,
    monitor: &str,
    current: Option<f64>,
    logs: &[(String, f64)],
    progress: &mut Progress,
    log: &mut dyn Write,
) {
    if current.is_none() && !warned.iter().any(|w| w == who) {
        warned.push(who.to_string());
        let available: Vec<&str> = logs.iter().map(|(k, _)| k.as_str()).collect();
        progress.event(
            log,
            &format!(
                "warning: {who} monitors '{monitor}', which this run does not produce (available: {}); it does nothing",
                available.join(", ")
            ),
        );
    }
}

/// What writing a checkpoint needs from the loop.
struct CheckpointCtx<'a, B: Backend + ?Sized> {
    backend: &'a B,
    options: &'a FitOptions,
    run_dir: &'a Path,
    early: Option<&'a mut EarlyStopper>,
    /// Print the `saving model to` line (the default `last.safetensors` is written silently).
    announce: bool,
}

/// The loop's state after `step` steps; `partial` holds the running metrics when
/// `step` is inside an epoch.
fn train_state(
    spec: &TrainSpec,
    step: u64,
    steps_per_epoch: u64,
    schedule: &LrSchedule,
    early: &Option<EarlyStopper>,
    checkpoint_best: Option<f64>,
    partial: &Option<MetricSet>,
) -> TrainState {
    TrainState {
        epoch: step / steps_per_epoch,
        step,
        seed: spec.seed,
        steps_per_epoch,
        plateau: schedule.plateau.clone(),
        early: early.as_ref().map(|e| e.state.clone()),
        checkpoint_best,
        epoch_metrics: partial.clone(),
    }
}

/// Writes `checkpoints/last.safetensors`, or `checkpoints/best.safetensors` when the monitor
/// improved (Keras' `save_best_only`), with the loop's state for `--resume`.
#[allow(clippy::too_many_arguments)]
fn checkpoint<B: Backend + ?Sized>(
    ctx: CheckpointCtx<'_, B>,
    keep: CheckpointKeep,
    monitor: &str,
    current: Option<f64>,
    best: &mut Option<f64>,
    mut state: TrainState,
    epoch_label: u64,
    progress: &mut Progress,
    log: &mut dyn Write,
) -> Result<(), RuntimeError> {
    let dir = ctx.run_dir.join(CHECKPOINTS);
    let (path, message) = match keep {
        CheckpointKeep::Last => {
            let path = dir.join("last.safetensors");
            let message = format!("Epoch {epoch_label}: saving model to {}", path.display());
            (path, message)
        }
        CheckpointKeep::Best => {
            let Some(current) = current else {
                return Ok(());
            };
            if !checkpoint_improves(monitor, current, *best) {
                return Ok(());
            }
            let path = dir.join("best.safetensors");
            let from = best.map(|b| format!("{b:.5}")).unwrap_or_else(|| {
                if crate::metrics::higher_is_better(monitor) {
                    "-inf".into()
                } else {
                    "inf".into()
                }
            });
            let message = format!(
                "Epoch {epoch_label}: {monitor} improved from {from} to {current:.5}, saving model to {}",
                path.display()
            );
            *best = Some(current);
            state.checkpoint_best = *best;
            (path, message)
        }
    };
    save_state(&path, ctx.backend.state(), &ctx.options.meta, &state)?;
    if let Some(es) = ctx.early {
        if es.best_weights_dirty {
            if let Some(weights) = &es.best_weights {
                let es_state = TrainState {
                    epoch: es.state.best_epoch.unwrap_or(0) + 1,
                    ..state.clone()
                };
                save_state(
                    &dir.join(EARLY_STOPPING_BEST),
                    weights.clone(),
                    &ctx.options.meta,
                    &es_state,
                )?;
                es.best_weights_dirty = false;
            }
        }
    }
    if ctx.announce {
        progress.event(log, &message);
    }
    Ok(())
}

/// Writes a state with its metadata (epoch, step, train state).
fn save_state(
    path: &Path,
    tensors: Vec<(String, Tensor)>,
    meta: &WeightsMeta,
    state: &TrainState,
) -> Result<(), RuntimeError> {
    let mut meta = meta.clone();
    meta.epoch = state.epoch;
    meta.step = state.step;
    meta.train_state = serde_json::to_string(state).ok();
    save_weights(path, &tensors, &meta)
}

/// Loads a checkpoint into the backend and returns the loop's saved state.
fn resume_from<B: Backend + ?Sized>(
    backend: &mut B,
    path: &Path,
    early: Option<&mut EarlyStopper>,
) -> Result<TrainState, RuntimeError> {
    let file = load_weights(path)?;
    let expected: Vec<(String, Vec<usize>)> = backend
        .state()
        .into_iter()
        .map(|(n, t)| (n, t.shape().to_vec()))
        .collect();
    check_tensors(path, &file.tensors, &expected)?;
    let text = file.meta.train_state.as_deref().ok_or_else(|| {
        RuntimeError::at(
            ErrorKind::Weights,
            path,
            "not a checkpoint: its metadata has no train_state (use --init for weights)",
        )
    })?;
    let state: TrainState = serde_json::from_str(text).map_err(|e| {
        RuntimeError::at(
            ErrorKind::Weights,
            path,
            format!("bad train_state metadata: {e}"),
        )
    })?;
    check_step(path, &file.tensors, &state)?;
    backend.set_state(&file.tensors)?;
    if let Some(es) = early {
        es.state = state.early.clone().unwrap_or_default();
        if es.config.restore_best && es.state.best_epoch.is_some() {
            let best_path = path.with_file_name(EARLY_STOPPING_BEST);
            if best_path.exists() {
                es.best_weights = Some(load_weights(&best_path)?.tensors);
            }
        }
    }
    Ok(state)
}

/// A checkpoint's `opt/step` tensor (the optimizer's step count, which drives Adam's bias
/// correction and the learning-rate schedule) must agree with its `train_state` metadata: a file
/// whose parts disagree was edited or mixed from two runs, and resuming from it would continue
/// neither.
fn check_step(
    path: &Path,
    tensors: &[(String, Tensor)],
    state: &TrainState,
) -> Result<(), RuntimeError> {
    let bad = |message: String| Err(RuntimeError::at(ErrorKind::Weights, path, message));
    if let Some((_, t)) = tensors.iter().find(|(n, _)| n == "opt/step") {
        let value = match t {
            Tensor::I32(a) => a.iter().next().map(|&v| v as f64),
            Tensor::F32(a) => a.iter().next().map(|&v| v as f64),
        };
        if t.len() != 1 || value != Some(state.step as f64) {
            let shown = value.map_or("nothing".to_string(), |v| v.to_string());
            return bad(format!(
                "tensor `opt/step` holds {shown}, but the checkpoint's train_state says step {}; the file mixes two runs or was edited, so it cannot be resumed",
                state.step
            ));
        }
    }
    Ok(())
}

/// `--init W`: parameters and BatchNorm statistics from a weights file (optimizer state and
/// metadata are ignored). A missing, unknown or mis-shaped tensor is an error naming it.
pub fn load_init<B: Backend + ?Sized>(
    backend: &mut B,
    path: &Path,
) -> Result<WeightsMeta, RuntimeError> {
    let file = load_weights(path)?;
    let loaded = file.without_optimizer_state();
    let expected: Vec<(String, Vec<usize>)> = backend
        .state()
        .into_iter()
        .filter(|(n, _)| !n.starts_with(OPT_PREFIX))
        .map(|(n, t)| (n, t.shape().to_vec()))
        .collect();
    check_tensors(path, &loaded, &expected)?;
    backend.set_state(&loaded)?;
    Ok(file.meta)
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
        let part = data.slice(range);
        let out = backend.evaluate(&part.inputs, &part.targets)?;
        metrics.update_loss(out.loss, part.len());
        metrics.update(&out.outputs, &part.targets)?;
    }
    Ok(metrics.results())
}

/// Model outputs for `inputs`, computed batch by batch and concatenated (`fmc predict`).
pub fn predict<B: Backend + ?Sized>(
    backend: &mut B,
    inputs: &[Tensor],
    batch_size: usize,
) -> Result<Vec<Tensor>, RuntimeError> {
    let n = inputs.first().map(Tensor::len).unwrap_or(0);
    let mut parts: Vec<Vec<Tensor>> = Vec::new();
    for range in sequential_batches(n, batch_size.max(1)) {
        let batch: Vec<Tensor> = inputs
            .iter()
            .map(|t| t.slice_samples(range.clone()))
            .collect();
        let outputs = backend.predict(&batch)?;
        if parts.is_empty() {
            parts = vec![Vec::new(); outputs.len()];
        }
        for (i, out) in outputs.into_iter().enumerate() {
            match parts.get_mut(i) {
                Some(list) => list.push(out),
                None => {
                    return Err(RuntimeError::backend(
                        "the backend returned a varying number of outputs",
                    ))
                }
            }
        }
    }
    parts
        .iter()
        .map(|list| {
            Tensor::concat_samples(list).ok_or_else(|| {
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
