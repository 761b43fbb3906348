//! The callbacks at the end of each epoch, with Keras 3 semantics: `ReduceLROnPlateau` (its
//! state machine is in `schedule.rs`), `EarlyStopping` and `ModelCheckpoint`'s selection as
//! plain state machines, and the run's `on_epoch_end` that drives them in order.

use super::fit::Run;
use super::schedule::improves;
use super::Backend;
use crate::config::EarlyStopping;
use crate::error::RuntimeError;
use crate::tensor::Tensor;
use crate::weights::OPT_PREFIX;
use serde::{Deserialize, Serialize};

/// `EarlyStopping`'s variables, saved in checkpoints.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EarlyState {
    pub best: Option<f64>,
    pub wait: u64,
    /// 0-based epoch of the best value.
    pub best_epoch: Option<u64>,
}

/// What early stopping decided at the end of an epoch.
#[derive(Clone, Debug, PartialEq)]
pub enum EarlyDecision {
    Continue,
    /// Stop; with `restore_best`, the state to restore and its (0-based) epoch.
    Stop {
        restore: Option<(u64, Vec<(String, Tensor)>)>,
    },
}

/// Keras 3 `EarlyStopping`, with the best weights kept in memory for `restore_best`.
pub struct EarlyStopper {
    pub config: EarlyStopping,
    pub state: EarlyState,
    /// The backend's state at the best epoch (only with `restore_best`).
    pub best_weights: Option<Vec<(String, Tensor)>>,
    /// True when `best_weights` changed since the last checkpoint wrote it.
    pub best_weights_dirty: bool,
}

impl EarlyStopper {
    pub fn new(config: EarlyStopping) -> Self {
        EarlyStopper {
            config,
            state: EarlyState::default(),
            best_weights: None,
            best_weights_dirty: false,
        }
    }

    /// `on_epoch_end` for the 0-based `epoch`. `current` is the monitored value (None: the logs
    /// lack it, so nothing happens, as Keras warns and continues); `weights` gives the backend's
    /// state when it has to be remembered.
    pub fn on_epoch_end(
        &mut self,
        epoch: u64,
        current: Option<f64>,
        weights: impl Fn() -> Vec<(String, Tensor)>,
    ) -> EarlyDecision {
        let Some(current) = current else {
            return EarlyDecision::Continue;
        };
        if self.config.restore_best && self.best_weights.is_none() {
            self.best_weights = Some(weights());
            self.best_weights_dirty = true;
        }
        self.state.wait += 1;
        if improves(
            &self.config.monitor,
            current,
            self.state.best,
            self.config.min_delta,
        ) {
            self.state.best = Some(current);
            self.state.best_epoch = Some(epoch);
            if self.config.restore_best {
                self.best_weights = Some(weights());
                self.best_weights_dirty = true;
            }
            self.state.wait = 0;
            return EarlyDecision::Continue;
        }
        if self.state.wait >= self.config.patience && epoch > 0 {
            let restore = if self.config.restore_best {
                self.best_weights
                    .clone()
                    .map(|w| (self.state.best_epoch.unwrap_or(0), w))
            } else {
                None
            };
            return EarlyDecision::Stop { restore };
        }
        EarlyDecision::Continue
    }
}

/// `ModelCheckpoint(save_best_only=True)`'s comparison: strictly better than the best so far
/// (no min_delta), in the monitor's direction.
pub fn checkpoint_improves(monitor: &str, current: f64, best: Option<f64>) -> bool {
    improves(monitor, current, best, 0.0)
}

impl<B: Backend + ?Sized> Run<'_, B> {
    /// The callbacks at the end of `epoch`, in the order their effects must be saved: the
    /// learning rate (ReduceLROnPlateau), early stopping's decision, then the checkpoints (which
    /// record both). An epoch the run stops inside (`--steps`, `complete` false) is reported and
    /// logged, but the callbacks that judge whole epochs (plateau, early stopping, `keep: best`)
    /// wait for it to complete, so that the run resumed from there ends exactly as the
    /// uninterrupted one.
    pub(super) fn on_epoch_end(
        &mut self,
        epoch: u64,
        complete: bool,
        logs: &[(String, f64)],
    ) -> Result<EarlyDecision, RuntimeError> {
        let decision = if complete {
            self.reduce_on_plateau(epoch, logs);
            self.early_stopping(epoch, logs)
        } else {
            EarlyDecision::Continue
        };
        let last_epoch =
            epoch + 1 == self.total_epochs || matches!(decision, EarlyDecision::Stop { .. });
        self.epoch_checkpoints(epoch, complete, last_epoch, logs)?;
        Ok(decision)
    }

    /// `ReduceLROnPlateau`, when the section's schedule has it, then for each `step` whose
    /// own schedule is one (language.md 9.4; its monitor resolved by the checker: `loss` and
    /// `val_loss` are the step's `NAME_loss` and `val_NAME_loss`).
    fn reduce_on_plateau(&mut self, epoch: u64, logs: &[(String, f64)]) {
        if let Some(monitor) = self.schedule.plateau_monitor().map(str::to_string) {
            let current = self.monitored("ReduceOnPlateau", &monitor, logs);
            if let Some(new_lr) = self.schedule.on_epoch_end(current) {
                self.progress.event(
                    self.log,
                    &format!(
                        "Epoch {}: ReduceLROnPlateau reducing learning rate to {new_lr}.",
                        epoch + 1
                    ),
                );
            }
        }
        for k in 0..self.step_schedules.len() {
            let Some(monitor) = self.step_schedules[k]
                .as_ref()
                .and_then(|s| s.plateau_monitor())
                .map(str::to_string)
            else {
                continue;
            };
            let name = self.spec.steps[k].name.clone();
            let who = format!("the ReduceOnPlateau of step `{name}`");
            let current = self.monitored(&who, &monitor, logs);
            let reduced = self.step_schedules[k]
                .as_mut()
                .and_then(|s| s.on_epoch_end(current));
            if let Some(new_lr) = reduced {
                self.progress.event(
                    self.log,
                    &format!(
                        "Epoch {}: ReduceLROnPlateau reducing learning rate of step `{name}` to {new_lr}.",
                        epoch + 1
                    ),
                );
            }
        }
    }

    /// `EarlyStopping`'s decision, when the file has it.
    fn early_stopping(&mut self, epoch: u64, logs: &[(String, f64)]) -> EarlyDecision {
        let Some(monitor) = self.early.as_ref().map(|es| es.config.monitor.clone()) else {
            return EarlyDecision::Continue;
        };
        let current = self.monitored("early stopping", &monitor, logs);
        let backend = &*self.backend;
        let Some(es) = self.early.as_mut() else {
            return EarlyDecision::Continue;
        };
        // Like Keras' `get_weights`: parameters and BatchNorm statistics, not the optimizer
        // state, are what `restore_best` brings back.
        es.on_epoch_end(epoch, current, || {
            backend
                .state()
                .into_iter()
                .filter(|(n, _)| !n.starts_with(OPT_PREFIX))
                .collect()
        })
    }

    /// Ends the run at `epoch` for early stopping, restoring the best epoch's weights when
    /// `restore_best` kept them.
    pub(super) fn stop_early(
        &mut self,
        epoch: u64,
        restore: Option<(u64, Vec<(String, Tensor)>)>,
    ) -> Result<(), RuntimeError> {
        self.history.stopped_epoch = Some(epoch);
        let mut message = format!("Epoch {}: early stopping", epoch + 1);
        if let Some((best_epoch, weights)) = restore {
            self.backend.set_state(&weights)?;
            self.history.restored_epoch = Some(best_epoch);
            message.push_str(&format!(
                "; restoring model weights from the end of the best epoch: {}.",
                best_epoch + 1
            ));
        }
        self.progress.event(self.log, &message);
        Ok(())
    }
}
