//! Learning-rate schedules, computed by the training loop for every step and passed to the
//! backend. Formulas are Keras 3's (`ExponentialDecay`, `CosineDecay` with warm-up,
//! `ReduceLROnPlateau`); `Step` is PyTorch's `StepLR` (Keras has none). Values are computed in
//! f64 and rounded once to the f32 the backend takes.

use crate::config::{Every, Schedule};
use crate::metrics::higher_is_better;
use serde::{Deserialize, Serialize};

/// Keras' `ReduceLROnPlateau` defaults for what the `.fm` schedule does not set.
pub const PLATEAU_MIN_DELTA: f64 = 1e-4;
pub const PLATEAU_COOLDOWN: u64 = 0;

/// The schedule of a run: the base rate, the schedule, and the run's length in steps.
#[derive(Clone, Debug, PartialEq)]
pub struct LrSchedule {
    pub base_lr: f64,
    pub schedule: Schedule,
    pub steps_per_epoch: u64,
    /// Steps of the run the `train` section describes (`epochs * steps_per_epoch`, whatever
    /// `--steps` says): Cosine decays over it.
    pub total_steps: u64,
    /// State of `ReduceOnPlateau` (None for the other schedules).
    pub plateau: Option<PlateauState>,
}

/// `ReduceLROnPlateau`'s variables, saved in checkpoints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlateauState {
    /// The current rate, stored as f32 like Keras' optimizer variable.
    pub lr: f32,
    /// Best monitored value so far (None before the first epoch: Keras' +-inf).
    pub best: Option<f64>,
    pub wait: u64,
    pub cooldown_counter: u64,
}

impl LrSchedule {
    pub fn new(base_lr: f64, schedule: &Schedule, steps_per_epoch: u64, total_steps: u64) -> Self {
        let plateau = match schedule {
            Schedule::ReduceOnPlateau { .. } => Some(PlateauState {
                lr: base_lr as f32,
                best: None,
                wait: 0,
                cooldown_counter: 0,
            }),
            _ => None,
        };
        LrSchedule {
            base_lr,
            schedule: schedule.clone(),
            steps_per_epoch: steps_per_epoch.max(1),
            total_steps,
            plateau,
        }
    }

    fn steps(&self, every: Every) -> f64 {
        match every {
            Every::Steps(n) => n as f64,
            Every::Epochs(n) => (n * self.steps_per_epoch) as f64,
        }
    }

    /// The rate for the optimizer step `step` (0-based: the number of steps taken before it, as
    /// Keras' `optimizer.iterations`), taken in epoch `epoch` (0-based).
    pub fn lr(&self, step: u64, epoch: u64) -> f32 {
        let lr0 = self.base_lr;
        let value = match &self.schedule {
            Schedule::Constant => lr0,
            Schedule::Step { every, gamma } => {
                let periods = match every {
                    Every::Epochs(n) => epoch / (*n).max(1),
                    Every::Steps(n) => step / (*n).max(1),
                };
                lr0 * gamma.powi(periods.min(i32::MAX as u64) as i32)
            }
            Schedule::Exponential {
                rate,
                every,
                staircase,
            } => {
                let mut p = step as f64 / self.steps(*every).max(1.0);
                if *staircase {
                    p = p.floor();
                }
                lr0 * rate.powf(p)
            }
            Schedule::Cosine { warmup, min_lr } => {
                let warmup_steps = self.steps(*warmup);
                let s = step as f64;
                if s < warmup_steps {
                    // Keras' `_warmup_function` from an initial rate of 0 to `lr`.
                    lr0 * s / warmup_steps
                } else {
                    let decay_steps = (self.total_steps as f64 - warmup_steps).max(1.0);
                    let t = (s - warmup_steps).min(decay_steps);
                    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * t / decay_steps).cos());
                    // alpha = min_lr / lr makes min_lr absolute: lr * ((1 - alpha) * c + alpha).
                    let alpha = if lr0 != 0.0 { min_lr / lr0 } else { 0.0 };
                    lr0 * ((1.0 - alpha) * cosine + alpha)
                }
            }
            Schedule::ReduceOnPlateau { .. } => {
                return self.plateau.as_ref().map(|p| p.lr).unwrap_or(lr0 as f32)
            }
        };
        value as f32
    }

    /// `ReduceLROnPlateau.on_epoch_end` (Keras 3). Returns the new rate when it was reduced.
    /// `current` is the monitored value of this epoch (None when the logs lack it).
    pub fn on_epoch_end(&mut self, current: Option<f64>) -> Option<f32> {
        let Schedule::ReduceOnPlateau {
            monitor,
            factor,
            patience,
            min_lr,
        } = &self.schedule
        else {
            return None;
        };
        let state = self.plateau.as_mut()?;
        let current = current?;
        // Keras' ReduceLROnPlateau: mode "auto" maximises when "acc" is in the monitor's name.
        let maximize = monitor.contains("acc");
        let improved = match state.best {
            None => true,
            Some(best) if maximize => current > best + PLATEAU_MIN_DELTA,
            Some(best) => current < best - PLATEAU_MIN_DELTA,
        };
        if state.cooldown_counter > 0 {
            state.cooldown_counter -= 1;
            state.wait = 0;
        }
        if improved {
            state.best = Some(current);
            state.wait = 0;
        } else if state.cooldown_counter == 0 {
            state.wait += 1;
            if state.wait >= *patience {
                let old = state.lr as f64;
                if old > *min_lr as f32 as f64 {
                    let new = (old * factor).max(*min_lr);
                    state.lr = new as f32;
                    state.cooldown_counter = PLATEAU_COOLDOWN;
                    state.wait = 0;
                    return Some(state.lr);
                }
            }
        }
        None
    }

    /// The monitor of `ReduceOnPlateau`, if that is the schedule.
    pub fn plateau_monitor(&self) -> Option<&str> {
        match &self.schedule {
            Schedule::ReduceOnPlateau { monitor, .. } => Some(monitor),
            _ => None,
        }
    }
}

/// Keras' "auto" mode for early stopping and checkpoints (see [`higher_is_better`]).
pub fn improves(monitor: &str, current: f64, best: Option<f64>, min_delta: f64) -> bool {
    match best {
        None => !current.is_nan(),
        Some(best) if higher_is_better(monitor) => current - min_delta > best,
        Some(best) => current + min_delta < best,
    }
}
