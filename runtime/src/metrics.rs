//! Streaming metrics, computed from (model outputs, targets) batch by batch, as Keras 3 does:
//! each metric is a running mean over samples (or, for precision and recall, running counts),
//! and the reported loss is the mean of the batch losses weighted by batch size.

use crate::config::{AccuracyKind, Metric, TrainSpec};
use crate::error::{fmt_shape, ErrorKind, RuntimeError};
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// One metric on one model output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricDef {
    pub metric: Metric,
    /// Index of the model output (and of its target).
    pub output: usize,
    /// The logged name: `accuracy`, or `OUTPUT_accuracy` when the model has several outputs.
    pub name: String,
    /// Decision threshold of binary accuracy, precision and recall: 0.5, as Keras's
    /// `BinaryAccuracy`, `Precision` and `Recall` use even when the loss takes logits
    /// (language.md: "binary at 0.5").
    pub threshold: f32,
}

impl MetricDef {
    pub fn new(metric: Metric, output: usize, name: &str) -> Self {
        MetricDef {
            metric,
            output,
            name: name.to_string(),
            threshold: 0.5,
        }
    }
}

/// The metric definitions of a `train` section: each output's metrics, named after the output
/// when there are several (`digit_accuracy`, Keras's naming).
pub fn metric_defs(spec: &TrainSpec) -> Vec<MetricDef> {
    let several = spec.losses.len() > 1;
    spec.metrics
        .iter()
        .filter_map(|m| {
            let output = spec.losses.iter().position(|l| l.output == m.output)?;
            let name = if several {
                format!("{}_{}", m.output, m.metric.name())
            } else {
                m.metric.name()
            };
            Some(MetricDef::new(m.metric, output, &name))
        })
        .collect()
}

/// Running state of one metric.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Running {
    /// Sum of per-sample (or per-element) values, and their count.
    sum: f64,
    count: f64,
    true_positives: f64,
    false_positives: f64,
    false_negatives: f64,
    /// Per class (F1): true positives, false positives, false negatives.
    #[serde(default)]
    per_class: Vec<[f64; 3]>,
}

/// The loss and metrics of an epoch (or an evaluation), accumulated batch by batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricSet {
    defs: Vec<MetricDef>,
    running: Vec<Running>,
    loss_sum: f64,
    loss_samples: f64,
    /// Further per-batch means reported after the loss (each step's `NAME_loss`, language.md
    /// 9.4): (name, weighted sum, samples).
    #[serde(default)]
    extra: Vec<(String, f64, f64)>,
}

impl MetricSet {
    pub fn new(defs: Vec<MetricDef>) -> Self {
        let running = vec![Running::default(); defs.len()];
        MetricSet {
            defs,
            running,
            loss_sum: 0.0,
            loss_samples: 0.0,
            extra: Vec::new(),
        }
    }

    /// Adds a batch's mean of a named value (a step's loss), weighted by its samples.
    pub fn update_extra(&mut self, name: &str, value: f64, batch_size: usize) {
        let n = batch_size as f64;
        match self.extra.iter_mut().find(|e| e.0 == name) {
            Some(e) => {
                e.1 += value * n;
                e.2 += n;
            }
            None => self.extra.push((name.to_string(), value * n, n)),
        }
    }
    pub fn defs(&self) -> &[MetricDef] {
        &self.defs
    }
    pub fn reset(&mut self) {
        self.running
            .iter_mut()
            .for_each(|r| *r = Running::default());
        self.loss_sum = 0.0;
        self.loss_samples = 0.0;
        self.extra.clear();
    }

    /// Adds a batch's mean loss, weighted by its number of samples.
    pub fn update_loss(&mut self, loss: f64, batch_size: usize) {
        self.loss_sum += loss * batch_size as f64;
        self.loss_samples += batch_size as f64;
    }

    /// Adds a batch's outputs and targets to every metric.
    pub fn update(&mut self, outputs: &[Tensor], targets: &[Tensor]) -> Result<(), RuntimeError> {
        for (def, running) in self.defs.iter().zip(self.running.iter_mut()) {
            let (Some(output), Some(target)) = (outputs.get(def.output), targets.get(def.output))
            else {
                return Err(RuntimeError::backend(format!(
                    "metric '{}' needs output {} and its target; the step gave {} outputs and {} targets",
                    def.name,
                    def.output,
                    outputs.len(),
                    targets.len()
                )));
            };
            accumulate(def, running, output, target)?;
        }
        Ok(())
    }

    /// The mean loss so far (NaN before any batch).
    pub fn loss(&self) -> f64 {
        self.loss_sum / self.loss_samples
    }

    /// `(name, value)` of every metric, in definition order (without the loss).
    pub fn metric_values(&self) -> Vec<(String, f64)> {
        self.defs
            .iter()
            .zip(&self.running)
            .map(|(d, r)| (d.name.clone(), value(&d.metric, r)))
            .collect()
    }

    /// `loss` then every metric.
    pub fn results(&self) -> Vec<(String, f64)> {
        let mut out = vec![("loss".to_string(), self.loss())];
        for (name, sum, n) in &self.extra {
            out.push((name.clone(), if *n > 0.0 { sum / n } else { 0.0 }));
        }
        out.extend(self.metric_values());
        out
    }
}

fn value(metric: &Metric, r: &Running) -> f64 {
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    match metric {
        Metric::Precision => ratio(r.true_positives, r.true_positives + r.false_positives),
        Metric::Recall => ratio(r.true_positives, r.true_positives + r.false_negatives),
        Metric::F1(_) => {
            // Keras's `FBetaScore.result` with beta 1 and `backend.epsilon()`, then the mean.
            const EPS: f64 = 1e-7;
            let f1: Vec<f64> = r
                .per_class
                .iter()
                .map(|&[tp, fp, fneg]| {
                    let p = tp / (tp + fp + EPS);
                    let r = tp / (tp + fneg + EPS);
                    2.0 * p * r / (p + r + EPS)
                })
                .collect();
            ratio(f1.iter().sum(), f1.len() as f64)
        }
        _ => ratio(r.sum, r.count),
    }
}

/// Index of the largest value (the first on ties, as `argmax`).
fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

fn accumulate(
    def: &MetricDef,
    r: &mut Running,
    output: &Tensor,
    target: &Tensor,
) -> Result<(), RuntimeError> {
    let pred = output.to_f32();
    let pred = pred.as_standard_layout();
    let pred = pred.as_slice().unwrap_or(&[]);
    let truth = target.to_f32();
    let truth = truth.as_standard_layout();
    let truth = truth.as_slice().unwrap_or(&[]);
    let mismatch = || {
        RuntimeError::without_path(
            ErrorKind::Shape,
            format!(
                "metric '{}': outputs of shape {} do not fit targets of shape {}",
                def.name,
                fmt_shape(output.shape()),
                fmt_shape(target.shape())
            ),
        )
    };
    let classes = output.shape().last().copied().unwrap_or(1).max(1);
    let rows = pred.len() / classes;
    // Class targets are sparse when there is one per row of scores.
    let sparse_target = truth.len() == rows && classes > 1;
    match def.metric {
        Metric::Accuracy(AccuracyKind::Sparse)
        | Metric::Accuracy(AccuracyKind::Categorical)
        | Metric::TopK(_) => {
            let labels: Vec<usize> = if sparse_target || (truth.len() == rows && classes == 1) {
                truth.iter().map(|&t| t as usize).collect()
            } else if truth.len() == pred.len() {
                truth.chunks(classes).map(argmax).collect()
            } else {
                return Err(mismatch());
            };
            for (scores, &label) in pred.chunks(classes).zip(&labels) {
                let hit = match def.metric {
                    Metric::TopK(k) => match scores.get(label) {
                        // In the top k when fewer than k classes score strictly higher (TF's
                        // `in_top_k`: ties at the boundary count as in).
                        Some(&s) => scores.iter().filter(|&&o| o > s).count() < k,
                        None => false,
                    },
                    _ => argmax(scores) == label,
                };
                r.sum += hit as u8 as f64;
                r.count += 1.0;
            }
        }
        Metric::Accuracy(AccuracyKind::Binary) => {
            if truth.len() != pred.len() {
                return Err(mismatch());
            }
            for (&p, &t) in pred.iter().zip(truth) {
                let decided = if p > def.threshold { 1.0 } else { 0.0 };
                r.sum += (decided == t) as u8 as f64;
                r.count += 1.0;
            }
        }
        Metric::Mse | Metric::Mae => {
            if truth.len() != pred.len() {
                return Err(mismatch());
            }
            for (&p, &t) in pred.iter().zip(truth) {
                let d = p as f64 - t as f64;
                r.sum += if def.metric == Metric::Mse {
                    d * d
                } else {
                    d.abs()
                };
                r.count += 1.0;
            }
        }
        Metric::F1(kind) => {
            // Targets as one-hot rows (or 0/1 per unit), predictions decided per class.
            let onehot: Vec<f32> = if kind != AccuracyKind::Binary && sparse_target {
                let mut rows = vec![0f32; pred.len()];
                for (i, &t) in truth.iter().enumerate() {
                    let c = t as usize;
                    if c >= classes || t < 0.0 {
                        return Err(mismatch());
                    }
                    rows[i * classes + c] = 1.0;
                }
                rows
            } else if truth.len() == pred.len() {
                truth.to_vec()
            } else {
                return Err(mismatch());
            };
            if r.per_class.len() != classes {
                r.per_class = vec![[0.0; 3]; classes];
            }
            for (scores, truth) in pred.chunks(classes).zip(onehot.chunks(classes)) {
                // Keras: `threshold=None` marks every score equal to the row's largest (and
                // not zero); a threshold marks the scores above it.
                let top = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                for (c, (&s, &t)) in scores.iter().zip(truth).enumerate() {
                    let predicted = match kind {
                        AccuracyKind::Binary => s > def.threshold,
                        _ => s >= top && s.abs() > 1e-9,
                    };
                    let counts = &mut r.per_class[c];
                    let (p, t) = (predicted as u8 as f64, t as f64);
                    counts[0] += p * t;
                    counts[1] += p * (1.0 - t);
                    counts[2] += (1.0 - p) * t;
                }
            }
        }
        Metric::Precision | Metric::Recall => {
            if truth.len() != pred.len() {
                return Err(mismatch());
            }
            for (&p, &t) in pred.iter().zip(truth) {
                let predicted = p > def.threshold;
                let actual = t != 0.0;
                match (predicted, actual) {
                    (true, true) => r.true_positives += 1.0,
                    (true, false) => r.false_positives += 1.0,
                    (false, true) => r.false_negatives += 1.0,
                    (false, false) => {}
                }
            }
        }
    }
    Ok(())
}

/// Whether a larger value of `monitor` is better, for early stopping and checkpoints (Keras'
/// `mode="auto"`: accuracies, precision, recall and AUC are maximised; losses and errors
/// minimised).
pub fn higher_is_better(monitor: &str) -> bool {
    let name = monitor.strip_prefix("val_").unwrap_or(monitor);
    ["acc", "precision", "recall", "auc", "f1"]
        .iter()
        .any(|k| name.contains(k))
}
