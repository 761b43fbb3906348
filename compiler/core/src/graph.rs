//! The layer graph: a checked model with every block expanded, every name resolved, every
//! attribute defaulted and every shape known. This is what `fmc summary` prints, what shape
//! errors speak of, and what `lower` turns into tensor IR.
//!
//! Shapes are per sample (the batch dimension is implicit and dynamic); axes are non-negative
//! indices into the per-sample shape.

use fm_grammar::ast::Span;
pub use fm_runtime::tensor::DType;

pub type NodeId = usize;
pub type ParamId = usize;

/// A checked model.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ModelGraph {
    pub name: String,
    pub doc: Vec<String>,
    pub span: Span,
    pub inputs: Vec<InputInfo>,
    /// Nodes in a topological order (every node's inputs come before it).
    pub nodes: Vec<Node>,
    pub outputs: Vec<OutputInfo>,
    /// Every weight and state tensor in creation order (the order `summary` counts them).
    pub params: Vec<ParamInfo>,
    /// `target` declarations (version 0.2), read from the data like inputs; each is read by an
    /// `Op::Target` node.
    pub targets: Vec<InputInfo>,
    /// Sampled inputs (`input z: f32[8] ~ normal(0, 1)`): (input index, distribution).
    pub sampled: Vec<(usize, Sampler)>,
    /// Nodes that run a named call again with its weights (language.md 9.1): (node, the
    /// call's name). Their `params` are the named call's (or its lagged copies').
    pub shared: Vec<(NodeId, String)>,
    /// Every named value of the model body (inputs, targets, `let` and named outputs) with
    /// its node, for objective expressions and metrics in `train`.
    pub values: Vec<(String, NodeId)>,
    /// Lagged copies of named calls' weights (9.5).
    pub lags: Vec<Lag>,
}

/// The distribution of a sampled input.
#[derive(Clone, Debug, PartialEq)]
pub enum Sampler {
    Normal {
        mean: f64,
        std: f64,
    },
    Uniform {
        lo: f64,
        hi: f64,
    },
    /// Indices drawn with probability proportional to `weights[i]^power` (already raised and
    /// normalised to sum to 1).
    Categorical {
        probs: Vec<f64>,
    },
}

/// A lagged copy of a named call's weights: stored as `lag/CALL/PARAM`, updated by the
/// session after each step, never by gradients.
#[derive(Clone, Debug, PartialEq)]
pub struct Lag {
    /// The named call.
    pub call: String,
    pub kind: LagKind,
    /// (live parameter, its lagged copy), both indices into `params`.
    pub pairs: Vec<(ParamId, ParamId)>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LagKind {
    /// Refreshed with the live weights after every `every`-th step.
    Copy { every: u64 },
    /// `lag = decay * lag + (1 - decay) * live` after every step.
    Ema { decay: f64 },
}

/// Elementwise functions of objective expressions and version 0.2 `let` expressions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Func {
    Neg,
    Log,
    Exp,
    Abs,
    Square,
    Sqrt,
    Softplus,
    Sigmoid,
    LogSigmoid,
    StopGradient,
}

impl Func {
    pub fn from_name(name: &str) -> Option<Func> {
        Some(match name {
            "log" => Func::Log,
            "exp" => Func::Exp,
            "abs" => Func::Abs,
            "square" => Func::Square,
            "sqrt" => Func::Sqrt,
            "softplus" => Func::Softplus,
            "sigmoid" => Func::Sigmoid,
            "log_sigmoid" => Func::LogSigmoid,
            "stop_gradient" => Func::StopGradient,
            _ => return None,
        })
    }
}

/// Per-sample reductions (`sum`, `mean`, `max`, `min`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    Sum,
    Mean,
    Max,
    Min,
}

#[derive(Clone, Debug, PartialEq)]
pub struct InputInfo {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// The `Op::Input` node that reads it.
    pub node: NodeId,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OutputInfo {
    /// The declared name, or `output`, `output_1`, ... when unnamed.
    pub name: String,
    pub node: NodeId,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub op: Op,
    pub inputs: Vec<NodeId>,
    /// Per-sample output shape.
    pub shape: Vec<usize>,
    pub dtype: DType,
    /// The stage or expression in the source that produced this node (for block expansions,
    /// the span inside the block body).
    pub span: Span,
    /// Layers: the full scoped name (`residual_1/conv2d`). Functions and arithmetic: `None`.
    pub name: Option<String>,
    /// The parameters this node owns, in the order of language.md section 7.
    pub params: Vec<ParamId>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Linear,
    Relu,
    LeakyRelu {
        alpha: f64,
    },
    Elu,
    Gelu,
    Sigmoid,
    Tanh,
    /// `axis` is a resolved non-negative per-sample axis.
    Softmax {
        axis: usize,
    },
    LogSoftmax {
        axis: usize,
    },
    Softplus,
    Silu,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    Valid,
    Same,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    Avg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RnnKind {
    Simple,
    Lstm,
    Gru,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Reads model input number `index`.
    Input {
        index: usize,
    },
    Dense {
        units: usize,
        activation: Activation,
        use_bias: bool,
    },
    /// Conv1D (`kernel.len() == 1`) or Conv2D (`== 2`).
    Conv {
        filters: usize,
        kernel: Vec<usize>,
        stride: Vec<usize>,
        padding: Padding,
        dilation: Vec<usize>,
        activation: Activation,
        use_bias: bool,
    },
    /// MaxPool/AvgPool 1D or 2D (`size.len()`).
    Pool {
        kind: PoolKind,
        size: Vec<usize>,
        stride: Vec<usize>,
        padding: Padding,
    },
    /// GlobalAvg/GlobalMax pooling over all spatial axes (`rank` = 1 or 2).
    GlobalPool {
        kind: PoolKind,
        rank: usize,
    },
    Flatten,
    /// Target per-sample shape with any -1 resolved.
    Reshape {
        shape: Vec<usize>,
    },
    Dropout {
        rate: f64,
    },
    BatchNorm {
        momentum: f64,
        epsilon: f64,
    },
    LayerNorm {
        epsilon: f64,
    },
    /// Normalises each of `groups` channel groups over its channels and all spatial positions
    /// (Keras GroupNormalization); `groups` divides the channels.
    GroupNorm {
        groups: usize,
        epsilon: f64,
    },
    /// Nearest-neighbour upsampling of `[H, W, C]` by `size` = [sh, sw] (Keras UpSampling2D).
    UpSampling {
        size: Vec<usize>,
    },
    Embedding {
        vocab: usize,
        dim: usize,
    },
    /// keras-hub's PositionEmbedding: a trainable `[sequence_length, D]` table whose first L
    /// rows are the output for an `[L, D]` input (the input gives only the shape; add the
    /// result to it).
    PositionEmbedding {
        sequence_length: usize,
    },
    Rescale {
        scale: f64,
        offset: f64,
    },
    Rnn {
        kind: RnnKind,
        units: usize,
        return_sequences: bool,
        activation: Activation,
    },
    /// Inputs: query, value, key (value = query and key = value when fewer are given; the
    /// `inputs` vector always has exactly 3 entries).
    Attention {
        heads: usize,
        key_dim: usize,
        causal: bool,
    },
    /// An activation function applied as a stage or call (`relu`, `softmax(axis: 0)`).
    Activation(Activation),
    Concat {
        axis: usize,
    },
    /// Elementwise with NumPy broadcasting over per-sample dims.
    Add,
    Sub,
    Mul,
    Div,
    /// Reads `target` declaration number `index` (version 0.2).
    Target {
        index: usize,
    },
    /// A number used as an operand of a tensor expression (per-sample shape `[]`).
    Const {
        value: f64,
    },
    /// An elementwise function (`log`, `exp`, ..., unary minus).
    Func(Func),
    /// `clip(x, lo, hi)`.
    Clip {
        lo: f64,
        hi: f64,
    },
    /// `sum/mean/max/min(x, axis: ...)` over the (sorted, per-sample) `axes`.
    Reduce {
        op: Reduction,
        axes: Vec<usize>,
    },
    /// A loss called as a function: inputs (prediction, target); the per-sample loss (Keras's
    /// reduction over the last axis, then the mean over the other per-sample axes).
    Loss(fm_runtime::config::Loss),
    /// `dot(a, b)`: the sum of `a * b` over the last axis.
    Dot,
    /// `pick(x, i)`: the element of the last axis of `x` at the i32 index `i`.
    Pick,
    /// A metric over model values (language.md 9.3), `accuracy(prediction, target)` or
    /// `top_k(prediction, target, k: K)`: 1 per sample where it hits, 0 where it misses
    /// (averaged over any further per-sample axes). Never differentiated: metrics only.
    Hit(HitKind),
}

/// What a [`Op::Hit`] node compares, as Keras's accuracy metrics do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HitKind {
    /// `binary_accuracy`: the prediction above 0.5 equals the 0/1 target.
    Binary,
    /// `categorical_accuracy`: the largest prediction is where the one-hot target is 1.
    Categorical,
    /// `sparse_categorical_accuracy`: the largest prediction is at the i32 class index.
    Sparse,
    /// `sparse_top_k_categorical_accuracy`: fewer than k predictions exceed the class's.
    TopK(usize),
}

impl Op {
    /// The Keras class name shown by `summary` (`Conv2D`), or the function name.
    pub fn type_name(&self) -> String {
        match self {
            Op::Input { .. } => "InputLayer".into(),
            Op::Dense { .. } => "Dense".into(),
            Op::Conv { kernel, .. } => format!("Conv{}D", kernel.len()),
            Op::Pool { kind, size, .. } => format!(
                "{}Pooling{}D",
                if *kind == PoolKind::Max {
                    "Max"
                } else {
                    "Average"
                },
                size.len()
            ),
            Op::GlobalPool { kind, rank } => format!(
                "Global{}Pooling{}D",
                if *kind == PoolKind::Max {
                    "Max"
                } else {
                    "Average"
                },
                rank
            ),
            Op::Flatten => "Flatten".into(),
            Op::Reshape { .. } => "Reshape".into(),
            Op::Dropout { .. } => "Dropout".into(),
            Op::BatchNorm { .. } => "BatchNormalization".into(),
            Op::LayerNorm { .. } => "LayerNormalization".into(),
            Op::GroupNorm { .. } => "GroupNormalization".into(),
            Op::UpSampling { size } => format!("UpSampling{}D", size.len()),
            Op::Embedding { .. } => "Embedding".into(),
            Op::PositionEmbedding { .. } => "PositionEmbedding".into(),
            Op::Rescale { .. } => "Rescaling".into(),
            Op::Rnn { kind, .. } => match kind {
                RnnKind::Simple => "SimpleRNN".into(),
                RnnKind::Lstm => "LSTM".into(),
                RnnKind::Gru => "GRU".into(),
            },
            Op::Attention { .. } => "MultiHeadAttention".into(),
            Op::Activation(_) => "Activation".into(),
            Op::Concat { .. } => "Concatenate".into(),
            Op::Add => "Add".into(),
            Op::Sub => "Subtract".into(),
            Op::Mul => "Multiply".into(),
            Op::Div => "Divide".into(),
            Op::Target { .. } => "Target".into(),
            Op::Const { .. } => "Constant".into(),
            Op::Func(f) => format!("{f:?}"),
            Op::Clip { .. } => "Clip".into(),
            Op::Reduce { op, .. } => format!("Reduce{op:?}"),
            Op::Loss(_) => "Loss".into(),
            Op::Dot => "Dot".into(),
            Op::Pick => "Pick".into(),
            Op::Hit(_) => "Hit".into(),
        }
    }
}

pub use fm_runtime::init::Init;

/// What a parameter is to the layer that owns it. Lowering finds a layer's parameters by role;
/// the role's suffix ends the parameter's interchange name (language.md section 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Kernel,
    Bias,
    RecurrentKernel,
    Gamma,
    Beta,
    MovingMean,
    MovingVariance,
    Embeddings,
    QueryKernel,
    QueryBias,
    KeyKernel,
    KeyBias,
    ValueKernel,
    ValueBias,
    OutputKernel,
    OutputBias,
}

impl Role {
    /// The end of the interchange name: `kernel`, `moving_mean`, `query.bias`.
    pub const fn suffix(self) -> &'static str {
        match self {
            Role::Kernel => "kernel",
            Role::Bias => "bias",
            Role::RecurrentKernel => "recurrent_kernel",
            Role::Gamma => "gamma",
            Role::Beta => "beta",
            Role::MovingMean => "moving_mean",
            Role::MovingVariance => "moving_variance",
            Role::Embeddings => "embeddings",
            Role::QueryKernel => "query.kernel",
            Role::QueryBias => "query.bias",
            Role::KeyKernel => "key.kernel",
            Role::KeyBias => "key.bias",
            Role::ValueKernel => "value.kernel",
            Role::ValueBias => "value.bias",
            Role::OutputKernel => "output.kernel",
            Role::OutputBias => "output.bias",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ParamInfo {
    /// The interchange name, e.g. `residual/conv2d.kernel`, `lstm.recurrent_kernel`.
    pub name: String,
    /// What it is to its layer (the name ends in its suffix; a lagged copy has its original's).
    pub role: Role,
    pub shape: Vec<usize>,
    pub init: Init,
    /// False for BatchNorm moving statistics (updated by training, not by the optimizer).
    pub trainable: bool,
    /// Kernel regularisers (0 = none).
    pub l1: f64,
    pub l2: f64,
    /// The node that owns it.
    pub node: NodeId,
}

impl ModelGraph {
    pub fn total_params(&self) -> usize {
        self.params
            .iter()
            .map(|p| p.shape.iter().product::<usize>())
            .sum()
    }
    pub fn trainable_params(&self) -> usize {
        self.params
            .iter()
            .filter(|p| p.trainable)
            .map(|p| p.shape.iter().product::<usize>())
            .sum()
    }
}
