//! The tensor IR: one SSA function per entry point (`train_step`, `predict`), a small set of
//! primitive ops, static shapes with a symbolic batch dimension.
//!
//! Every value is produced by exactly one instruction and instructions are stored in order, so a
//! value's id is its instruction's index and every operand id is smaller than the user's id.
//! Binary elementwise ops take operands of identical shape: broadcasting is explicit
//! (`Broadcast`), which keeps shape inference, autodiff and code generation simple.

pub mod builder;
pub mod kernels;
pub mod parse;
pub mod print;
pub mod shape;
pub mod verify;

pub use builder::Builder;
use fm_runtime::tensor::DType;

pub type ValueId = usize;

/// One dimension of a shape. The batch size N is the only symbolic quantity; it may only
/// appear as the first axis, possibly multiplied by a constant (`N*50` after folding time steps
/// into the batch for a Dense on a sequence).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    /// `k * N`
    Batch(usize),
    Fixed(usize),
}

impl Dim {
    pub const N: Dim = Dim::Batch(1);

    /// The concrete size for a batch of `n` samples.
    pub fn eval(self, n: usize) -> usize {
        match self {
            Dim::Batch(k) => k * n,
            Dim::Fixed(d) => d,
        }
    }
    pub fn fixed(self) -> Option<usize> {
        match self {
            Dim::Fixed(d) => Some(d),
            Dim::Batch(_) => None,
        }
    }
}

pub type Shape = Vec<Dim>;

/// Concrete shape of `shape` for batch size `n`.
pub fn eval_shape(shape: &[Dim], n: usize) -> Vec<usize> {
    shape.iter().map(|d| d.eval(n)).collect()
}

/// A fixed shape (no batch).
pub fn fixed(dims: &[usize]) -> Shape {
    dims.iter().map(|&d| Dim::Fixed(d)).collect()
}

/// `[N, dims...]`.
pub fn batched(dims: &[usize]) -> Shape {
    std::iter::once(Dim::N)
        .chain(dims.iter().map(|&d| Dim::Fixed(d)))
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    Neg,
    Exp,
    Log,
    Sqrt,
    Tanh,
    Sigmoid,
    Erf,
    Abs,
    /// -1, 0 or 1.
    Sign,
    /// i32 to f32.
    ToFloat,
    /// Identity whose gradient is zero (the max subtracted for a stable softmax).
    StopGradient,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    /// Gradient goes to the left operand where it is strictly greater (so relu = max(x, 0)
    /// has gradient 0 at 0, as TensorFlow's relu).
    Max,
    Min,
    Pow,
    /// Comparisons produce 1.0 or 0.0.
    Greater,
    GreaterEq,
    Equal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    Sum,
    Max,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolKind {
    Max,
    Avg,
}

/// 2-D window geometry shared by convolution and pooling (NHWC).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    /// (before, after) padding for the H and W axes.
    pub pad: [(usize, usize); 2],
}

impl Window {
    /// Output spatial size for an input of `h x w`.
    pub fn out_size(&self, h: usize, w: usize) -> Option<[usize; 2]> {
        let mut out = [0; 2];
        for (i, inp) in [h, w].into_iter().enumerate() {
            let span = (self.kernel[i] - 1) * self.dilation[i] + 1;
            let padded = inp + self.pad[i].0 + self.pad[i].1;
            if padded < span {
                return None;
            }
            out[i] = (padded - span) / self.stride[i] + 1;
        }
        Some(out)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Function argument number `index`.
    Arg {
        index: usize,
    },
    /// A scalar constant (shape `[]`).
    Const {
        value: f64,
    },
    /// The batch size N as an f32 scalar.
    BatchSize,
    Unary(UnaryOp),
    Binary(BinaryOp),
    /// `select(cond, a, b)`: a where cond != 0, else b. All three have the same shape.
    Select,
    /// Reduce over `axes` (sorted), keeping them as size-1 axes when `keep_dims`.
    Reduce {
        op: ReduceOp,
        axes: Vec<usize>,
        keep_dims: bool,
    },
    /// `op(a) @ op(b)` over the last two axes; leading axes must be identical (batched).
    MatMul {
        transpose_a: bool,
        transpose_b: bool,
    },
    /// NHWC input `[N, H, W, C]`, kernel `[kh, kw, C, F]` -> `[N, OH, OW, F]`.
    Conv2d {
        window: Window,
    },
    /// Gradient of `Conv2d` w.r.t. its input: (dy, kernel) -> dx of the given input shape.
    Conv2dBackInput {
        window: Window,
        input_hw: [usize; 2],
    },
    /// Gradient of `Conv2d` w.r.t. its kernel: (x, dy) -> dkernel.
    Conv2dBackKernel {
        window: Window,
    },
    /// Pooling over H, W of `[N, H, W, C]`; average pooling does not count padded cells.
    Pool2d {
        kind: PoolKind,
        window: Window,
    },
    /// Gradient of `Pool2d`: (x, dy) -> dx. Max routes each window's gradient to its first max.
    Pool2dBack {
        kind: PoolKind,
        window: Window,
    },
    /// Same element count, new shape.
    Reshape {
        shape: Shape,
    },
    /// `out.shape[i] = in.shape[perm[i]]`.
    Permute {
        perm: Vec<usize>,
    },
    /// Same rank; every input axis equals the output's or is 1.
    Broadcast {
        shape: Shape,
    },
    /// `[start, end)` along `axis`.
    Slice {
        axis: usize,
        start: usize,
        end: usize,
    },
    /// Zero padding along `axis`.
    Pad {
        axis: usize,
        before: usize,
        after: usize,
    },
    Concat {
        axis: usize,
    },
    /// (table `[V, D...]`, i32 indices `[...]`) -> `[..., D...]`; out-of-range indices give 0.
    Gather,
    /// (i32 indices `[...]`, values `[..., D...]`) -> `[rows, D...]`, summing duplicates.
    ScatterAdd {
        rows: usize,
    },
    /// (i32 indices) -> f32 one-hot with `depth` classes on a new last axis.
    OneHot {
        depth: usize,
    },
    /// Uniform [0, 1) f32 of the given shape, from the step's seed and this op's `salt`
    /// (counter-based, so reproducible from `seed` and `step`).
    RandomUniform {
        shape: Shape,
        salt: u64,
    },
    /// f32 `[...]` -> i32 `[...]`: the number of `edges` (sorted ascending) that are <= x, so
    /// a uniform draw in [0, 1) bucketized by a cumulative distribution is a categorical draw
    /// (language.md 9.2). The float-to-integer conversion of the IR.
    Bucketize {
        edges: Vec<f32>,
    },
    /// `[rows, cols]` f32: 1.0 where `col <= row`, else 0.0 (the causal attention mask).
    LowerTriangle {
        rows: usize,
        cols: usize,
    },
}

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Op::Arg { .. } => "arg",
            Op::Const { .. } => "const",
            Op::BatchSize => "batch_size",
            Op::Unary(u) => match u {
                UnaryOp::Neg => "neg",
                UnaryOp::Exp => "exp",
                UnaryOp::Log => "log",
                UnaryOp::Sqrt => "sqrt",
                UnaryOp::Tanh => "tanh",
                UnaryOp::Sigmoid => "sigmoid",
                UnaryOp::Erf => "erf",
                UnaryOp::Abs => "abs",
                UnaryOp::Sign => "sign",
                UnaryOp::ToFloat => "to_f32",
                UnaryOp::StopGradient => "stop_gradient",
            },
            Op::Binary(b) => match b {
                BinaryOp::Add => "add",
                BinaryOp::Sub => "sub",
                BinaryOp::Mul => "mul",
                BinaryOp::Div => "div",
                BinaryOp::Max => "max",
                BinaryOp::Min => "min",
                BinaryOp::Pow => "pow",
                BinaryOp::Greater => "gt",
                BinaryOp::GreaterEq => "ge",
                BinaryOp::Equal => "eq",
            },
            Op::Select => "select",
            Op::Reduce { op, .. } => match op {
                ReduceOp::Sum => "reduce_sum",
                ReduceOp::Max => "reduce_max",
            },
            Op::MatMul { .. } => "matmul",
            Op::Conv2d { .. } => "conv2d",
            Op::Conv2dBackInput { .. } => "conv2d_back_input",
            Op::Conv2dBackKernel { .. } => "conv2d_back_kernel",
            Op::Pool2d { kind, .. } => match kind {
                PoolKind::Max => "max_pool2d",
                PoolKind::Avg => "avg_pool2d",
            },
            Op::Pool2dBack { kind, .. } => match kind {
                PoolKind::Max => "max_pool2d_back",
                PoolKind::Avg => "avg_pool2d_back",
            },
            Op::Reshape { .. } => "reshape",
            Op::Permute { .. } => "permute",
            Op::Broadcast { .. } => "broadcast",
            Op::Slice { .. } => "slice",
            Op::Pad { .. } => "pad",
            Op::Concat { .. } => "concat",
            Op::Gather => "gather",
            Op::ScatterAdd { .. } => "scatter_add",
            Op::OneHot { .. } => "one_hot",
            Op::RandomUniform { .. } => "random_uniform",
            Op::Bucketize { .. } => "bucketize",
            Op::LowerTriangle { .. } => "lower_triangle",
        }
    }
}

/// What a function argument holds; drives how the runtime binds it.
#[derive(Clone, Debug, PartialEq)]
pub enum ArgKind {
    /// Model input (batched).
    Input,
    /// Training target for an output (batched).
    Target,
    /// A model parameter or BatchNorm statistic, by index into `ModelGraph::params`.
    Param(usize),
    /// Optimizer slot `slot` of parameter `param` (`m`, `v`, `momentum`, `velocity`,
    /// `accumulator`).
    OptSlot { param: usize, slot: String },
    /// Learning rate for this step (f32 scalar).
    LearningRate,
    /// 1-based step number t of the update being computed (f32 scalar).
    Step,
    /// The gradient of the loss with respect to `ModelGraph::params[index]` (the `apply_step`
    /// of data-parallel training takes the gradient all-reduced over the ranks).
    Grad(usize),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    pub name: String,
    pub kind: ArgKind,
    pub shape: Shape,
    pub dtype: DType,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Inst {
    pub op: Op,
    pub args: Vec<ValueId>,
    pub shape: Shape,
    pub dtype: DType,
    /// What part of the model this instruction computes (for comments in generated code; no
    /// pass or backend depends on it, and the text form does not print it).
    pub origin: Origin,
}

/// Where an instruction comes from, as far as lowering knows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Origin {
    #[default]
    Unknown,
    /// The forward computation of layer-graph node N.
    Node(usize),
    /// The gradient through node N.
    Backward(usize),
    /// The loss, its regularisers and their gradient.
    Loss,
    /// Gradient clipping and the optimizer update of parameter P (`usize::MAX`: all of them).
    Update(usize),
}

/// What a function result is.
#[derive(Clone, Debug, PartialEq)]
pub enum ResultKind {
    /// The training loss (scalar, including regularisers).
    Loss,
    /// Model output number `index`.
    Output(usize),
    /// New value of `ModelGraph::params[index]`.
    Param(usize),
    /// New value of an optimizer slot.
    OptSlot { param: usize, slot: String },
    /// The gradient of the loss with respect to `ModelGraph::params[index]` (`grad_step`).
    Grad(usize),
    /// The batch mean of metric over model values number `index` of the `train` section
    /// (`TrainSpec::value_metrics`, language.md 9.3); the result is named after it.
    Metric(usize),
    /// The loss of `step` number `index` of the `train` section (language.md 9.4), in
    /// evaluation, reported as `NAME_loss` (`val_NAME_loss` in validation); the result is
    /// named after it.
    StepLoss(usize),
}

#[derive(Clone, Debug, PartialEq)]
pub struct FnResult {
    pub name: String,
    pub kind: ResultKind,
    pub value: ValueId,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Function {
    pub name: String,
    pub args: Vec<Arg>,
    pub insts: Vec<Inst>,
    pub results: Vec<FnResult>,
    /// The kernels the fusion pass chose (`None` before it runs; a rewrite drops them).
    pub kernels: Option<kernels::KernelPlan>,
}

impl Function {
    pub fn shape(&self, v: ValueId) -> &Shape {
        &self.insts[v].shape
    }
    pub fn result(&self, kind: &ResultKind) -> Option<ValueId> {
        self.results
            .iter()
            .find(|r| &r.kind == kind)
            .map(|r| r.value)
    }

    /// For each value, the instructions that read it, in instruction order (one that reads it
    /// twice is listed twice).
    pub fn users(&self) -> Vec<Vec<ValueId>> {
        let mut users = vec![Vec::new(); self.insts.len()];
        for (v, inst) in self.insts.iter().enumerate() {
            for &a in &inst.args {
                users[a].push(v);
            }
        }
        users
    }

    /// For each value, whether the function returns it.
    pub fn result_mask(&self) -> Vec<bool> {
        let mut is_result = vec![false; self.insts.len()];
        for r in &self.results {
            is_result[r.value] = true;
        }
        is_result
    }
}
