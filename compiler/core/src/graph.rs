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
#[derive(Clone, Debug, PartialEq)]
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
    Embedding {
        vocab: usize,
        dim: usize,
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
            Op::Embedding { .. } => "Embedding".into(),
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
        }
    }
}

pub use fm_runtime::init::Init;

#[derive(Clone, Debug, PartialEq)]
pub struct ParamInfo {
    /// The interchange name, e.g. `residual/conv2d.kernel`, `lstm.recurrent_kernel`.
    pub name: String,
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
