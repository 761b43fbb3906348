//! Progress like Keras' `fit`: `Epoch 3/5`, then a live bar on a terminal; when stderr is not a
//! terminal exactly one line per epoch:
//! `Epoch 3/5 - 1500/1500 - 3s - 2ms/step - loss: 0.0512 - accuracy: 0.9841 - val_loss: 0.0433`.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::Write;
use std::time::Duration;

/// How `fit` reports progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressMode {
    /// A live bar when stderr is a terminal, else one line per epoch.
    Auto,
    /// A live bar on stderr.
    Bar,
    /// One line per epoch on the log writer.
    Lines,
    /// Nothing, not even the lines of early stopping and checkpoints.
    Quiet,
}

impl ProgressMode {
    /// `Auto` resolved against stderr.
    pub fn resolve(self) -> ProgressMode {
        match self {
            ProgressMode::Auto => {
                if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                    ProgressMode::Bar
                } else {
                    ProgressMode::Lines
                }
            }
            other => other,
        }
    }
}

/// A value as Keras' progress bar shows it: 4 decimals, or scientific notation below 1e-3
/// (Python's `f"{v:.4f}"` / `f"{v:.4e}"`).
pub fn format_value(v: f64) -> String {
    if v.abs() > 1e-3 || !v.is_finite() {
        if v.is_nan() {
            "nan".into()
        } else if v.is_infinite() {
            if v > 0.0 {
                "inf".into()
            } else {
                "-inf".into()
            }
        } else {
            format!("{v:.4}")
        }
    } else {
        python_exp(v)
    }
}

/// Python's `.4e`: `1.2345e-05` (sign and at least two exponent digits).
fn python_exp(v: f64) -> String {
    let s = format!("{v:.4e}");
    match s.split_once('e') {
        Some((mantissa, exp)) => {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            format!("{mantissa}e{sign}{digits:0>2}")
        }
        None => s,
    }
}

/// `name: value - name: value` in the given order.
pub fn format_logs(logs: &[(String, f64)]) -> String {
    logs.iter()
        .map(|(k, v)| format!("{k}: {}", format_value(*v)))
        .collect::<Vec<_>>()
        .join(" - ")
}

/// Keras' `_format_time`: time per step in s, ms or us, rounded.
pub fn format_per_step(seconds_per_step: f64) -> String {
    if seconds_per_step >= 1.0 || seconds_per_step == 0.0 {
        format!("{seconds_per_step:.0}s/step")
    } else if seconds_per_step >= 1e-3 {
        format!("{:.0}ms/step", seconds_per_step * 1e3)
    } else {
        format!("{:.0}us/step", seconds_per_step * 1e6)
    }
}

/// The non-terminal line of an epoch.
pub fn epoch_line(
    epoch: u64,
    epochs: u64,
    steps: u64,
    seconds: f64,
    logs: &[(String, f64)],
) -> String {
    let per_step = if steps > 0 {
        seconds / steps as f64
    } else {
        0.0
    };
    let mut line = format!(
        "Epoch {epoch}/{epochs} - {steps}/{steps} - {seconds:.0}s - {}",
        format_per_step(per_step)
    );
    if !logs.is_empty() {
        line.push_str(" - ");
        line.push_str(&format_logs(logs));
    }
    line
}

/// Reports one epoch at a time.
pub struct Progress {
    mode: ProgressMode,
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(mode: ProgressMode) -> Self {
        Progress {
            mode: mode.resolve(),
            bar: None,
        }
    }
    pub fn is_quiet(&self) -> bool {
        self.mode == ProgressMode::Quiet
    }

    /// Starts an epoch of `steps` batches (`epoch` is 1-based).
    pub fn begin_epoch(&mut self, epoch: u64, epochs: u64, steps: u64) {
        if self.mode == ProgressMode::Bar {
            eprintln!("Epoch {epoch}/{epochs}");
            let bar = ProgressBar::with_draw_target(Some(steps), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("{pos}/{len} {bar:20} {elapsed} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("━━ ");
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(200));
            self.bar = Some(bar);
        }
    }

    /// After a batch: `done` batches of this epoch, running logs.
    pub fn update(&mut self, done: u64, seconds: f64, logs: &[(String, f64)]) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            let per_step = if done > 0 { seconds / done as f64 } else { 0.0 };
            bar.set_message(format!(
                "{} - {}",
                format_per_step(per_step),
                format_logs(logs)
            ));
        }
    }

    /// At the end of an epoch, with the final logs (validation included).
    pub fn end_epoch(
        &mut self,
        log: &mut dyn Write,
        epoch: u64,
        epochs: u64,
        steps: u64,
        seconds: f64,
        logs: &[(String, f64)],
    ) {
        match self.mode {
            ProgressMode::Bar => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                let per_step = if steps > 0 {
                    seconds / steps as f64
                } else {
                    0.0
                };
                eprintln!(
                    "{steps}/{steps} {} {seconds:.0}s {} - {}",
                    "━".repeat(20),
                    format_per_step(per_step),
                    format_logs(logs)
                );
            }
            ProgressMode::Lines => {
                let _ = writeln!(log, "{}", epoch_line(epoch, epochs, steps, seconds, logs));
                let _ = log.flush();
            }
            _ => {}
        }
    }

    /// A one-line event (early stopping, checkpoint, learning-rate reduction).
    pub fn event(&mut self, log: &mut dyn Write, message: &str) {
        match self.mode {
            ProgressMode::Quiet => {}
            ProgressMode::Bar => match &self.bar {
                Some(bar) => bar.println(message),
                None => eprintln!("{message}"),
            },
            _ => {
                let _ = writeln!(log, "{message}");
            }
        }
    }
}
