//! The resolved training setup: what a `train` section and its `data` section mean once checked.
//!
//! The checker (in `fm-compiler`) builds these from the `.fm` file with every default filled in;
//! the training loop, the data loaders and the code generators read them. They live in the runtime
//! because AOT-compiled models train with them too, without the compiler.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A `data NAME { ... }` section, resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataSpec {
    pub name: String,
    pub train: Source,
    /// `test:` as a source, as `split(f)` of the train source, or absent.
    pub test: Option<TestSource>,
    /// Transforms applied to inputs, in order.
    pub x: Vec<Transform>,
    /// Transforms applied to targets, in order.
    pub y: Vec<Transform>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TestSource {
    Source(Source),
    /// The last fraction of the train source (first floor(n * (1 - f)) samples train).
    Split(f64),
}

/// Where samples come from. Paths are already resolved relative to the `.fm` file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Source {
    Idx {
        images: PathBuf,
        labels: PathBuf,
    },
    Npy {
        x: PathBuf,
        y: PathBuf,
    },
    /// `npz(path, x: "key", y: "key")`; a model with several inputs gives one key per input name
    /// (`x: { image: "img", meta: "m" }`), and one with several targets may map each target (an
    /// output or a `target` declaration) to its key (`y: { digit: "labels", size: "sizes" }`;
    /// without a map their keys are their names).
    Npz {
        path: PathBuf,
        x: NpzKeys,
        y: NpzKeys,
    },
    Csv {
        path: PathBuf,
        label: String,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum NpzKeys {
    One(String),
    /// (model value name, key) in the order written: an input's for `x:`, an output's or a
    /// declared target's for `y:`.
    Named(Vec<(String, String)>),
}

impl NpzKeys {
    /// The key of the model value `name`: its entry in a map, else its name (several values
    /// without a map), else the one key.
    pub fn key_of<'a>(&'a self, name: &'a str, several: bool) -> &'a str {
        match self {
            NpzKeys::One(k) if !several => k,
            NpzKeys::One(_) => name,
            NpzKeys::Named(keys) => keys
                .iter()
                .find(|(n, _)| n == name)
                .map_or(name, |(_, k)| k.as_str()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "TransformRepr")]
pub enum Transform {
    /// `x * factor + offset`, as Keras's `Rescaling(scale, offset)`.
    Scale {
        factor: f64,
        offset: f64,
    },
    /// Per feature; statistics from the training split, stored in the weights' metadata.
    Standardize,
    OneHot(usize),
}

/// What a stored [`Transform`] reads back from: weights written before `scale` had an offset
/// store `{"Scale": factor}`.
#[derive(Deserialize)]
enum TransformRepr {
    Scale(ScaleRepr),
    Standardize,
    OneHot(usize),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ScaleRepr {
    Factor(f64),
    Full {
        factor: f64,
        #[serde(default)]
        offset: f64,
    },
}

impl From<TransformRepr> for Transform {
    fn from(r: TransformRepr) -> Self {
        match r {
            TransformRepr::Scale(ScaleRepr::Factor(factor)) => Transform::Scale {
                factor,
                offset: 0.0,
            },
            TransformRepr::Scale(ScaleRepr::Full { factor, offset }) => {
                Transform::Scale { factor, offset }
            }
            TransformRepr::Standardize => Transform::Standardize,
            TransformRepr::OneHot(n) => Transform::OneHot(n),
        }
    }
}

/// A `train` section, resolved, with every default filled in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainSpec {
    pub model: String,
    pub data: Option<DataSpec>,
    /// One loss per model output, in output order, with its weight (1 unless `loss_weights`).
    pub losses: Vec<OutputLoss>,
    pub optimizer: OptimizerSpec,
    pub schedule: Schedule,
    pub epochs: usize,
    pub batch_size: usize,
    pub validation: Validation,
    pub shuffle: bool,
    pub seed: u64,
    /// The metrics of each output, in output order (`metrics: [accuracy]` lists each metric
    /// for every output, resolved against that output's loss; `metrics: { out: [...] }` per
    /// output, language.md 9.3).
    pub metrics: Vec<OutputMetric>,
    pub early_stopping: Option<EarlyStopping>,
    pub checkpoint: Option<Checkpoint>,
    /// `loss:` written as an expression (language.md 9.3): the model graph's node holding the
    /// per-sample objective; training minimises its batch mean. `losses` is then empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective: Option<usize>,
    /// `step NAME { ... }` entries in the order written (9.4). Empty: one step made of
    /// `losses`/`objective` and `optimizer`. Otherwise `losses` is empty, `objective` is
    /// `None` and `optimizer` is the first step's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepSpec>,
    /// Metrics over model values (`metrics: [mean(q)]`): (logged name, graph node of the
    /// per-sample value); reported as batch means.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub value_metrics: Vec<(String, usize)>,
}

impl TrainSpec {
    /// The setup of `model` with these losses and this optimizer and nothing more: no data, a
    /// constant schedule, one epoch of batches of 32, no validation, no shuffling, seed 0, and
    /// no metrics, callbacks, objective or steps. Inference-only runs and tests start from it
    /// (`TrainSpec { epochs: 20, ..TrainSpec::new(...) }`); the checker fills in every field.
    pub fn new(
        model: impl Into<String>,
        losses: Vec<OutputLoss>,
        optimizer: OptimizerSpec,
    ) -> Self {
        TrainSpec {
            model: model.into(),
            data: None,
            losses,
            optimizer,
            schedule: Schedule::Constant,
            epochs: 1,
            batch_size: 32,
            validation: Validation::None,
            shuffle: false,
            seed: 0,
            metrics: vec![],
            early_stopping: None,
            checkpoint: None,
            objective: None,
            steps: vec![],
            value_metrics: vec![],
        }
    }
}

/// One `step NAME { ... }` of a `train` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepSpec {
    pub name: String,
    /// Named losses per output (`loss: mse`), or empty when `objective` is set.
    pub losses: Vec<OutputLoss>,
    /// The graph node of the per-sample objective when `loss:` is an expression.
    pub objective: Option<usize>,
    pub optimizer: OptimizerSpec,
    /// The step's own `schedule:` of its optimizer's rate; `None`: the section's schedule,
    /// scaled to this step's rate (`lr_step = lr_section(t) * step.lr / first_step.lr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// The parameters (indices into the model's parameters) this step updates; `None`: all.
    pub update: Option<Vec<usize>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputLoss {
    pub output: String,
    pub loss: Loss,
    pub weight: f64,
    /// True when the output ends in softmax/sigmoid and the cross-entropy is computed from the
    /// logits in one stable step (the summary says so).
    pub fused_with_activation: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Loss {
    Mse,
    Mae,
    Huber { delta: f64 },
    BinaryCrossentropy { from_logits: bool },
    CategoricalCrossentropy { from_logits: bool },
    SparseCategoricalCrossentropy { from_logits: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum OptimizerKind {
    Sgd {
        momentum: f64,
        nesterov: bool,
    },
    Adam {
        beta1: f64,
        beta2: f64,
        epsilon: f64,
    },
    /// AdamW is Adam with a default `weight_decay` of 0.004 (in [`OptimizerSpec::weight_decay`]).
    AdamW {
        beta1: f64,
        beta2: f64,
        epsilon: f64,
    },
    RmsProp {
        rho: f64,
        momentum: f64,
        epsilon: f64,
    },
    Adagrad {
        initial_accumulator: f64,
        epsilon: f64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimizerSpec {
    pub kind: OptimizerKind,
    pub lr: f64,
    /// Decoupled weight decay (Keras 3): `w -= lr * wd * w` before the update. 0 = none.
    pub weight_decay: f64,
    pub clip: Option<Clip>,
}

impl OptimizerSpec {
    /// `kind` at learning rate `lr`, without weight decay or clipping.
    pub fn new(kind: OptimizerKind, lr: f64) -> Self {
        OptimizerSpec {
            kind,
            lr,
            weight_decay: 0.0,
            clip: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Clip {
    /// Keras `clipnorm`: each variable's gradient scaled to at most this L2 norm.
    Norm(f64),
    /// Keras `global_clipnorm`.
    GlobalNorm(f64),
    /// Keras `clipvalue`.
    Value(f64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Every {
    Epochs(u64),
    Steps(u64),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Schedule {
    Constant,
    Step {
        every: Every,
        gamma: f64,
    },
    /// lr * rate^(step / every), floored when `staircase`.
    Exponential {
        rate: f64,
        every: Every,
        staircase: bool,
    },
    /// Linear warm-up from 0 over `warmup` steps, then cosine from lr to `min_lr`.
    Cosine {
        warmup: Every,
        min_lr: f64,
    },
    ReduceOnPlateau {
        monitor: String,
        factor: f64,
        patience: u64,
        min_lr: f64,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Validation {
    None,
    /// The last fraction of the training data, taken before shuffling (Keras).
    Split(f64),
    /// The data's test split.
    Test,
}

/// One metric on one model output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputMetric {
    pub output: String,
    pub metric: Metric,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Metric {
    /// Resolved from the loss as Keras does.
    Accuracy(AccuracyKind),
    TopK(usize),
    Mse,
    Mae,
    Precision,
    Recall,
    /// Keras 3's `F1Score(average="macro")`: per class, 2 p r / (p + r) with Keras's epsilons,
    /// then the mean over classes. Classes are decided as accuracy's kind says: `Binary` by
    /// the 0.5 threshold on each unit, `Sparse` and `Categorical` by the largest score.
    F1(AccuracyKind),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccuracyKind {
    /// Integer class targets against class scores.
    Sparse,
    /// One-hot targets against class scores.
    Categorical,
    /// Targets in {0, 1} against a probability (threshold 0.5), and, as Keras, also on a logit.
    Binary,
}

impl Metric {
    /// The name Keras logs it under (`accuracy`, `top_k`, ...).
    pub fn name(&self) -> String {
        match self {
            Metric::Accuracy(_) => "accuracy".into(),
            Metric::TopK(k) => format!("top_{k}_accuracy"),
            Metric::Mse => "mse".into(),
            Metric::Mae => "mae".into(),
            Metric::Precision => "precision".into(),
            Metric::Recall => "recall".into(),
            Metric::F1(_) => "f1".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    pub monitor: String,
    pub patience: u64,
    pub min_delta: f64,
    pub restore_best: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub monitor: String,
    pub keep: CheckpointKeep,
    pub every: Every,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckpointKeep {
    Best,
    Last,
}
