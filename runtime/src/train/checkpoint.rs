//! Checkpoints: when the configured one is due (every N epochs or steps, `keep: best|last`),
//! the default `checkpoints/last.safetensors` at each epoch end, writing them with the loop's
//! [`TrainState`], and reading one back for `--resume` (or parameters only, for `--init`).

use super::callbacks::{checkpoint_improves, EarlyStopper};
use super::fit::Run;
use super::record::CHECKPOINTS;
use super::{Backend, TrainState, EARLY_STOPPING_BEST};
use crate::config::{Checkpoint, CheckpointKeep, Every};
use crate::error::{ErrorKind, RuntimeError};
use crate::metrics::MetricSet;
use crate::tensor::Tensor;
use crate::weights::{check_tensors, load_weights, save_weights, WeightsMeta, OPT_PREFIX};
use std::path::Path;

/// The prefix of a lagged copy's tensor name: `lag/CALL/PARAM` (language.md 9.5).
const LAG_PREFIX: &str = "lag/";

/// Which checkpoint file to write.
enum Keep<'m> {
    /// `checkpoints/last.safetensors`; `announce` prints the `saving model to` line (the
    /// default checkpoint is written silently).
    Last { announce: bool },
    /// `checkpoints/best.safetensors`, when `monitor`'s `current` value improved on the best so
    /// far (Keras' `save_best_only`).
    Best {
        monitor: &'m str,
        current: Option<f64>,
    },
}

impl<'m> Keep<'m> {
    /// What the configured checkpoint writes, given the current value of its monitor.
    fn configured(ck: &'m Checkpoint, current: Option<f64>) -> Self {
        match ck.keep {
            CheckpointKeep::Last => Keep::Last { announce: true },
            CheckpointKeep::Best => Keep::Best {
                monitor: &ck.monitor,
                current,
            },
        }
    }
}

impl<B: Backend + ?Sized> Run<'_, B> {
    /// After a step inside an epoch: the configured checkpoint when it is due every `k` steps.
    /// A step checkpoint that falls on an epoch's last batch is written at the epoch's end
    /// instead, after validation, so that resuming starts cleanly at the next epoch.
    pub(super) fn step_checkpoint(
        &mut self,
        epoch: u64,
        batch: u64,
        last_batch: u64,
    ) -> Result<(), RuntimeError> {
        let spec = self.spec;
        let Some(ck) = &spec.checkpoint else {
            return Ok(());
        };
        let Every::Steps(k) = ck.every else {
            return Ok(());
        };
        if self.run_log.is_none()
            || k == 0
            || !self.step.is_multiple_of(k)
            || batch + 1 >= last_batch
        {
            return Ok(());
        }
        let current = super::lookup(&self.metrics.results(), &ck.monitor);
        let running = Some(self.metrics.clone());
        self.write_checkpoint(Keep::configured(ck, current), running, epoch + 1)
    }

    /// At an epoch's end, after the other callbacks: the configured checkpoint when due, and
    /// (unless the file configures `keep: last`) the default `checkpoints/last.safetensors`, so
    /// that every run directory can be resumed from its last epoch (or from where `--steps`
    /// stopped it). `complete` is false for an epoch the run stops inside; `last_epoch` is true
    /// for the run's final epoch (early stopping's included).
    pub(super) fn epoch_checkpoints(
        &mut self,
        epoch: u64,
        complete: bool,
        last_epoch: bool,
        logs: &[(String, f64)],
    ) -> Result<(), RuntimeError> {
        if self.run_log.is_none() {
            return Ok(());
        }
        let spec = self.spec;
        if let Some(ck) = &spec.checkpoint {
            let due = match ck.every {
                Every::Epochs(k) => complete && k > 0 && (epoch + 1).is_multiple_of(k),
                Every::Steps(k) => k > 0 && self.step.is_multiple_of(k),
            };
            let keep_last = ck.keep == CheckpointKeep::Last;
            if (complete || keep_last) && (due || (last_epoch && keep_last)) {
                let current = if keep_last {
                    super::lookup(logs, &ck.monitor)
                } else {
                    self.monitored("checkpoint", &ck.monitor, logs)
                };
                let partial = self.partial.clone();
                self.write_checkpoint(Keep::configured(ck, current), partial, epoch + 1)?;
            }
        }
        let configured_last = spec
            .checkpoint
            .as_ref()
            .is_some_and(|ck| ck.keep == CheckpointKeep::Last);
        if !configured_last {
            let partial = self.partial.clone();
            self.write_checkpoint(Keep::Last { announce: false }, partial, epoch + 1)?;
        }
        Ok(())
    }

    /// Writes a checkpoint into the run directory (none without one) with the loop's state for
    /// `--resume`; `partial` holds the running metrics when the step is inside an epoch. With
    /// `restore_best`, early stopping's best weights go beside it when they changed.
    fn write_checkpoint(
        &mut self,
        keep: Keep<'_>,
        partial: Option<MetricSet>,
        epoch_label: u64,
    ) -> Result<(), RuntimeError> {
        let Some(run) = self.run_log.as_ref() else {
            return Ok(());
        };
        let dir = run.dir().join(CHECKPOINTS);
        let mut state = self.train_state(partial);
        let (path, message) = match keep {
            Keep::Last { announce } => {
                let path = dir.join("last.safetensors");
                let message = announce
                    .then(|| format!("Epoch {epoch_label}: saving model to {}", path.display()));
                (path, message)
            }
            Keep::Best { monitor, current } => {
                let Some(current) = current else {
                    return Ok(());
                };
                if !checkpoint_improves(monitor, current, self.checkpoint_best) {
                    return Ok(());
                }
                let path = dir.join("best.safetensors");
                let from = self
                    .checkpoint_best
                    .map(|b| format!("{b:.5}"))
                    .unwrap_or_else(|| {
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
                self.checkpoint_best = Some(current);
                state.checkpoint_best = self.checkpoint_best;
                (path, Some(message))
            }
        };
        save_state(&path, self.backend.state(), &self.options.meta, &state)?;
        if let Some(es) = self.early.as_mut() {
            save_early_best(es, &dir, &self.options.meta, &state)?;
        }
        if let Some(message) = message {
            self.progress.event(self.log, &message);
        }
        Ok(())
    }

    /// The loop's state after the steps taken so far; `partial` holds the running metrics when
    /// the step is inside an epoch.
    pub(super) fn train_state(&self, partial: Option<MetricSet>) -> TrainState {
        TrainState {
            epoch: self.step / self.steps_per_epoch,
            step: self.step,
            seed: self.spec.seed,
            steps_per_epoch: self.steps_per_epoch,
            plateau: self.schedule.plateau.clone(),
            step_plateaus: self.step_plateaus(),
            early: self.early.as_ref().map(|e| e.state.clone()),
            checkpoint_best: self.checkpoint_best,
            epoch_metrics: partial,
        }
    }
}

/// Early stopping's best weights, beside a checkpoint in `dir`, when they changed since the
/// last checkpoint wrote them.
fn save_early_best(
    es: &mut EarlyStopper,
    dir: &Path,
    meta: &WeightsMeta,
    state: &TrainState,
) -> Result<(), RuntimeError> {
    if !es.best_weights_dirty {
        return Ok(());
    }
    if let Some(weights) = &es.best_weights {
        let es_state = TrainState {
            epoch: es.state.best_epoch.unwrap_or(0) + 1,
            ..state.clone()
        };
        save_state(
            &dir.join(EARLY_STOPPING_BEST),
            weights.clone(),
            meta,
            &es_state,
        )?;
        es.best_weights_dirty = false;
    }
    Ok(())
}

/// Writes a state with its metadata (epoch, step, train state).
pub(super) fn save_state(
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
pub(super) fn resume_from<B: Backend + ?Sized>(
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
/// metadata are ignored). A missing, unknown or mis-shaped tensor is an error naming it, except
/// a lagged copy (`lag/CALL/PARAM`, from `copy(every:)` or `ema`): one the file lacks starts
/// equal to the file's `PARAM`, as the copy starts equal to the initial weights (language.md
/// 9.5). One the file has is used (and shape-checked) like any other tensor.
pub fn load_init<B: Backend + ?Sized>(
    backend: &mut B,
    path: &Path,
) -> Result<WeightsMeta, RuntimeError> {
    let file = load_weights(path)?;
    let mut loaded = file.without_optimizer_state();
    let expected: Vec<(String, Vec<usize>)> = backend
        .state()
        .into_iter()
        .filter(|(n, _)| !n.starts_with(OPT_PREFIX))
        .map(|(n, t)| (n, t.shape().to_vec()))
        .collect();
    let missing_lags: Vec<(String, Tensor)> = expected
        .iter()
        .filter(|(name, _)| !loaded.iter().any(|(n, _)| n == name))
        .filter_map(|(name, _)| {
            let (_call, live) = name.strip_prefix(LAG_PREFIX)?.split_once('/')?;
            let (_, t) = loaded.iter().find(|(n, _)| n == live)?;
            Some((name.clone(), t.clone()))
        })
        .collect();
    loaded.extend(missing_lags);
    check_tensors(path, &loaded, &expected)?;
    backend.set_state(&loaded)?;
    Ok(file.meta)
}
