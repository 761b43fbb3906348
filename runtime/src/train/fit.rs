//! One training run: setting it up (batches per epoch, the schedule, resuming), the epoch loop,
//! each step, the end of each epoch (validation, logging), and the end of the run (final
//! weights, curves, `run.json`). The callbacks are in `callbacks.rs`, checkpoints and resuming
//! in `checkpoint.rs`.

use super::callbacks::{EarlyDecision, EarlyStopper};
use super::checkpoint::{resume_from, save_state};
use super::progress::Progress;
use super::record::{self, RunInfo, RunLog, RunStatus, CURVES, WEIGHTS};
use super::schedule::LrSchedule;
use super::{evaluate, plot, Backend, EpochRecord, FitOptions, History};
use crate::config::{TrainSpec, Validation};
use crate::data::batch::{batch, batch_count, epoch_order};
use crate::data::Dataset;
use crate::error::{ErrorKind, RuntimeError};
use crate::metrics::{metric_defs, MetricDef, MetricSet};
use std::io::Write;
use std::ops::Range;
use std::time::Instant;

/// A training run in progress: what it trains on and the loop's state.
pub(super) struct Run<'a, B: Backend + ?Sized> {
    pub(super) backend: &'a mut B,
    pub(super) spec: &'a TrainSpec,
    pub(super) options: &'a FitOptions,
    pub(super) log: &'a mut dyn Write,
    train: &'a Dataset,
    validation: Option<&'a Dataset>,
    batch_size: usize,
    pub(super) steps_per_epoch: u64,
    /// Where the run stops: the file's epochs, or `--steps`.
    total_steps: u64,
    pub(super) total_epochs: u64,
    defs: Vec<MetricDef>,
    pub(super) progress: Progress,
    pub(super) schedule: LrSchedule,
    /// The own `schedule:` of each `step` that has one (language.md 9.4), by step index.
    pub(super) step_schedules: Vec<Option<LrSchedule>>,
    pub(super) early: Option<EarlyStopper>,
    /// The best value of `keep: best`'s monitor so far.
    pub(super) checkpoint_best: Option<f64>,
    /// The running metrics of the epoch in progress.
    pub(super) metrics: MetricSet,
    /// Optimizer steps taken, counted from the run's start (before a resume too).
    pub(super) step: u64,
    /// The learning rate of the last step.
    lr: f32,
    /// The running metrics a resumed checkpoint saved inside an epoch, for finishing it.
    resumed_metrics: Option<MetricSet>,
    /// The running metrics of an epoch the run stops inside (`--steps`), saved so that a
    /// resumed run finishes that epoch as the uninterrupted run would.
    pub(super) partial: Option<MetricSet>,
    /// The run directory's logs (none without a run directory).
    pub(super) run_log: Option<RunLog>,
    /// The callbacks already warned about a monitor the logs lack (once per run).
    warned: Vec<String>,
    pub(super) history: History,
}

impl<'a, B: Backend + ?Sized> Run<'a, B> {
    /// Sets up a run over `train` (validating on `validation` after each epoch) and, with
    /// `--resume`, restores the backend and the loop's state from the checkpoint.
    pub(super) fn new(
        backend: &'a mut B,
        spec: &'a TrainSpec,
        options: &'a FitOptions,
        log: &'a mut dyn Write,
        train: &'a Dataset,
        validation: Option<&'a Dataset>,
    ) -> Result<Self, RuntimeError> {
        if train.is_empty() {
            let why = match &spec.validation {
                Validation::Split(f) => format!(": `validation: split({f:?})` takes all of them"),
                _ => String::new(),
            };
            return Err(RuntimeError::without_path(
                ErrorKind::DataSetup,
                format!("no training samples are left{why}"),
            ));
        }
        let batch_size = spec.batch_size.max(1);
        let steps_per_epoch = batch_count(train.len(), batch_size) as u64;
        // The run the file describes is `epochs` long: schedules (Cosine) span it whatever
        // `--steps` says. `--steps N` stops the run at its step N, counted from the run's
        // start, so a resumed run stops where the uninterrupted one does.
        let planned_steps = spec.epochs as u64 * steps_per_epoch;
        let total_steps = options.steps.unwrap_or(planned_steps);
        let defs = metric_defs(spec);
        let schedule = LrSchedule::new(
            spec.optimizer.lr,
            &spec.schedule,
            steps_per_epoch,
            planned_steps,
        );
        let step_schedules = spec
            .steps
            .iter()
            .map(|st| {
                st.schedule.as_ref().map(|sch| {
                    LrSchedule::new(st.optimizer.lr, sch, steps_per_epoch, planned_steps)
                })
            })
            .collect();
        let mut run = Run {
            backend,
            spec,
            options,
            log,
            train,
            validation,
            batch_size,
            steps_per_epoch,
            total_steps,
            total_epochs: total_steps.div_ceil(steps_per_epoch),
            metrics: MetricSet::new(defs.clone()),
            defs,
            progress: Progress::new(options.progress),
            lr: schedule.lr(0, 0),
            schedule,
            step_schedules,
            early: spec.early_stopping.clone().map(EarlyStopper::new),
            checkpoint_best: None,
            step: 0,
            resumed_metrics: None,
            partial: None,
            run_log: None,
            warned: Vec::new(),
            history: History {
                epochs: Vec::new(),
                step: 0,
                stopped_epoch: None,
                restored_epoch: None,
                saved: None,
            },
        };
        if let Some(path) = &options.resume {
            run.resume(path)?;
        }
        Ok(run)
    }

    fn resume(&mut self, path: &std::path::Path) -> Result<(), RuntimeError> {
        let state = resume_from(&mut *self.backend, path, self.early.as_mut())?;
        let spec = self.spec;
        // `--resume` continues one run exactly (cli.md): the same seed and the same data, so
        // the same batches. Changed data (a grown replay) is a new run from the weights.
        if state.steps_per_epoch != self.steps_per_epoch {
            return Err(RuntimeError::at(
                ErrorKind::DataSetup,
                path,
                format!(
                    "`--resume` continues a run on the data it was made with, but the checkpoint has {} steps per epoch and this run {} ({} training samples in batches of {}): the data changed. To train further on changed data (a grown replay), start a new run from these weights with `--init {}` (the optimizer state starts afresh; lagged weights are kept)",
                    state.steps_per_epoch,
                    self.steps_per_epoch,
                    self.train.len(),
                    self.batch_size,
                    path.display()
                ),
            ));
        }
        if state.seed != spec.seed {
            return Err(RuntimeError::at(
                ErrorKind::DataSetup,
                path,
                format!(
                    "`--resume` continues a run with its seed, but the checkpoint was made with seed {} and this run has seed {}",
                    state.seed, spec.seed
                ),
            ));
        }
        // The step decides where the run continues (`epoch` is derived from it: a weights file
        // of an older fm recorded a partly done epoch as completed).
        self.step = state.step;
        self.history.step = state.step;
        if let (Some(p), Some(saved)) = (self.schedule.plateau.as_mut(), state.plateau) {
            *p = saved;
        }
        for (name, saved) in state.step_plateaus {
            let own = spec
                .steps
                .iter()
                .position(|st| st.name == name)
                .and_then(|k| self.step_schedules.get_mut(k))
                .and_then(|s| s.as_mut())
                .and_then(|s| s.plateau.as_mut());
            match own {
                Some(p) => *p = saved,
                None => {
                    return Err(RuntimeError::at(
                        ErrorKind::DataSetup,
                        path,
                        format!(
                            "`--resume` continues a run of the same `train` section, but the checkpoint has the `ReduceOnPlateau` state of a step `{name}` that has none in this file"
                        ),
                    ))
                }
            }
        }
        self.lr = self
            .schedule
            .lr(self.step, self.step / self.steps_per_epoch);
        self.checkpoint_best = state.checkpoint_best;
        if let Some(saved) = state.epoch_metrics {
            if !self.step.is_multiple_of(self.steps_per_epoch) {
                self.partial = Some(saved.clone());
            }
            self.resumed_metrics = Some(saved);
        }
        Ok(())
    }

    /// From here on the run directory holds the run: `run.json` says `running` (which is also
    /// what a killed run leaves), then `finished`, or `failed` (see `record::mark_failed`).
    pub(super) fn open_run_dir(&mut self) -> Result<(), RuntimeError> {
        let options = self.options;
        let Some(dir) = &options.run_dir else {
            return Ok(());
        };
        let run = RunLog::open(
            dir,
            options.steps.is_some(),
            options.resume.as_ref().map(|_| self.step),
            self.steps_per_epoch,
        )?;
        for (name, bytes) in &options.run_files {
            crate::fsutil::atomic_write(&dir.join(name), bytes)?;
        }
        RunInfo {
            status: RunStatus::Running,
            saved: RunInfo::read(dir).and_then(|i| i.saved),
            error: None,
        }
        .write(dir)?;
        self.run_log = Some(run);
        Ok(())
    }

    /// The epochs, then the end of the run.
    pub(super) fn run(mut self) -> Result<History, RuntimeError> {
        for epoch in self.step / self.steps_per_epoch..self.total_epochs {
            let epoch_start = epoch * self.steps_per_epoch;
            let first_batch = self.step.saturating_sub(epoch_start);
            let last_batch = self.steps_per_epoch.min(self.total_steps - epoch_start);
            if first_batch >= last_batch {
                continue;
            }
            let logs = self.epoch(epoch, first_batch..last_batch)?;
            let complete = last_batch == self.steps_per_epoch;
            if let EarlyDecision::Stop { restore } = self.on_epoch_end(epoch, complete, &logs)? {
                self.stop_early(epoch, restore)?;
                break;
            }
        }
        self.finish()
    }

    /// Trains `batches` of `epoch` (all of them, the rest of a resumed epoch, or those before
    /// `--steps`), validates, logs the epoch; returns its logs (validation's as `val_...`).
    fn epoch(
        &mut self,
        epoch: u64,
        batches: Range<u64>,
    ) -> Result<Vec<(String, f64)>, RuntimeError> {
        self.progress
            .begin_epoch(epoch + 1, self.total_epochs, batches.end);
        let clock = Instant::now();
        match self.resumed_metrics.take() {
            Some(saved) if batches.start > 0 => self.metrics = saved,
            _ => self.metrics.reset(),
        }
        let order = epoch_order(self.train.len(), self.spec.shuffle, self.spec.seed, epoch);
        let mut samples = 0usize;
        for b in batches.clone() {
            samples += self.train_step(epoch, &order, b, &clock)?;
            self.step_checkpoint(epoch, b, batches.end)?;
        }
        // A gradient that went non-finite without reaching the loss (a ReLU masks NaN) is
        // caught at the end of the epoch, before anything is saved.
        if first_non_finite(&*self.backend).is_some() {
            return Err(non_finite_stop(&*self.backend, self.step, epoch + 1, None));
        }
        // Throughput of this process's part of the epoch (a resumed epoch counts its own batches).
        let train_seconds = clock.elapsed().as_secs_f64();
        let complete = batches.end == self.steps_per_epoch;
        self.partial = (!complete).then(|| self.metrics.clone());
        let mut logs = self.metrics.results();
        if let Some(val) = self.validation {
            let val_logs = evaluate(&mut *self.backend, val, self.batch_size, &self.defs)?;
            logs.extend(val_logs.into_iter().map(|(k, v)| (format!("val_{k}"), v)));
        }
        let record = EpochRecord {
            epoch: epoch + 1,
            step: self.step,
            logs,
            lr: self.lr,
            seconds: clock.elapsed().as_secs_f64(),
            samples_per_second: if train_seconds > 0.0 {
                samples as f64 / train_seconds
            } else {
                0.0
            },
        };
        self.log_epoch(record, batches.end)
    }

    /// One optimizer step on batch `b` of `epoch` (samples in `order`); returns the batch's
    /// size. A non-finite loss stops the run here.
    fn train_step(
        &mut self,
        epoch: u64,
        order: &[usize],
        b: u64,
        clock: &Instant,
    ) -> Result<usize, RuntimeError> {
        let data = batch(self.train, order, self.batch_size, b as usize);
        self.lr = self.schedule.lr(self.step, epoch);
        let out = if self.spec.steps.is_empty() {
            self.backend
                .train_step(&data.inputs, &data.targets, self.lr)?
        } else {
            let rates = self.step_rates(epoch);
            self.backend
                .train_step_rates(&data.inputs, &data.targets, &rates)?
        };
        if !out.loss.is_finite() {
            return Err(non_finite_stop(
                &*self.backend,
                self.step + 1,
                epoch + 1,
                Some(out.loss),
            ));
        }
        self.metrics.update_loss(out.loss, data.len());
        for (name, v) in &out.extra {
            self.metrics.update_extra(name, *v, data.len());
        }
        self.metrics.update(&out.outputs, &data.targets)?;
        self.step += 1;
        if let Some(run) = self.run_log.as_mut() {
            run.step(epoch + 1, self.step, out.loss as f32, self.lr);
        }
        let seconds = clock.elapsed().as_secs_f64();
        self.progress
            .update(b + 1, seconds, &self.metrics.results());
        Ok(data.len())
    }

    /// The rate of each `step` for the optimizer step about to run (language.md 9.4): its own
    /// schedule's, or the section's scaled to the step's optimizer rate (the section's rate is
    /// the first step's).
    fn step_rates(&self, epoch: u64) -> Vec<f32> {
        let base = self.spec.optimizer.lr;
        self.spec
            .steps
            .iter()
            .zip(&self.step_schedules)
            .map(|(st, own)| match own {
                Some(sch) => sch.lr(self.step, epoch),
                None if base != 0.0 => (self.lr as f64 * st.optimizer.lr / base) as f32,
                None => self.lr,
            })
            .collect()
    }

    /// The `ReduceOnPlateau` state of each step with its own, by step name (for checkpoints).
    pub(super) fn step_plateaus(&self) -> Vec<(String, super::schedule::PlateauState)> {
        self.spec
            .steps
            .iter()
            .zip(&self.step_schedules)
            .filter_map(|(st, own)| Some((st.name.clone(), own.as_ref()?.plateau.clone()?)))
            .collect()
    }

    /// The epoch's line on the progress log, its row in the run directory's metrics, and the
    /// history; returns its logs.
    fn log_epoch(
        &mut self,
        record: EpochRecord,
        batches: u64,
    ) -> Result<Vec<(String, f64)>, RuntimeError> {
        self.progress.end_epoch(
            self.log,
            record.epoch,
            self.total_epochs,
            batches,
            record.seconds,
            &record.logs,
        );
        if let Some(run) = self.run_log.as_mut() {
            run.epoch(&record)?;
        }
        let logs = record.logs.clone();
        self.history.epochs.push(record);
        self.history.step = self.step;
        Ok(logs)
    }

    /// The value of a callback's `monitor` in `logs`. Keras warns when a callback's monitor is
    /// not in the logs; here once per run and callback.
    pub(super) fn monitored(
        &mut self,
        who: &str,
        monitor: &str,
        logs: &[(String, f64)],
    ) -> Option<f64> {
        let current = super::lookup(logs, monitor);
        if current.is_none() && !self.warned.iter().any(|w| w == who) {
            self.warned.push(who.to_string());
            let available: Vec<&str> = logs.iter().map(|(k, _)| k.as_str()).collect();
            self.progress.event(
                self.log,
                &format!(
                    "warning: {who} monitors '{monitor}', which this run does not produce (available: {}); it does nothing",
                    available.join(", ")
                ),
            );
        }
        current
    }

    /// The final weights, with the resume state of the end of the run; the curves and
    /// `run.json` in the run directory.
    fn finish(self) -> Result<History, RuntimeError> {
        let final_state = self.train_state(self.partial.clone());
        let mut history = self.history;
        let options = self.options;
        let save_path = options
            .save
            .clone()
            .or_else(|| options.run_dir.as_ref().map(|d| d.join(WEIGHTS)));
        if let Some(path) = save_path {
            save_state(&path, self.backend.state(), &options.meta, &final_state)?;
            history.saved = Some(path);
        }
        if let Some(dir) = &options.run_dir {
            if dir.join(record::JSONL).exists() {
                plot::run_curves(dir, &dir.join(CURVES))?;
            }
            RunInfo {
                status: RunStatus::Finished,
                saved: options
                    .save
                    .as_ref()
                    .map(|p| p.canonicalize().unwrap_or_else(|_| p.clone())),
                error: None,
            }
            .write(dir)?;
        }
        Ok(history)
    }
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
