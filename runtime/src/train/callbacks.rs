//! Early stopping and checkpoint selection with Keras 3 semantics (`EarlyStopping`,
//! `ModelCheckpoint`), as plain state machines the loop drives at the end of each epoch.

use super::schedule::improves;
use crate::config::EarlyStopping;
use crate::tensor::Tensor;
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
