//! The one table of every built-in the language knows: layers, functions, initialisers, losses,
//! optimizers, schedules, metrics, data sources and transforms (language.md sections 5 and 6).
//!
//! Each entry gives the positional order, names, types, defaults and ranges of its arguments.
//! Argument binding (`bind.rs`) and the `train`/`data` resolvers read only this table, so adding an
//! argument means adding one row here. Layers and functions ([`Callable`]), initialisers
//! ([`InitFn`]), losses ([`LossFn`]), optimizers ([`OptimizerFn`]), schedules ([`ScheduleFn`]),
//! metrics ([`MetricFn`]) and transforms ([`TransformFn`]) are typed: each row carries its [`Rule`], the resolvers match the enum exhaustively (a member
//! without a rule does not compile) and the summary spells each by its enum's `name()`.

use fm_runtime::config::{Loss, OptimizerKind, Schedule, Transform};
use fm_runtime::init::Init;

/// The static type of an attribute argument.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Ty {
    Int,
    /// An int is accepted where a float is expected.
    Float,
    Bool,
    /// A bare identifier from a closed set (`padding: same`).
    Enum(&'static [&'static str]),
    /// An activation: `relu`, `leaky_relu(alpha: 0.2)`, `softmax(axis: 0)`.
    Activation,
    /// An initialiser: `he_normal`, `uniform(-0.1, 0.1)`.
    Init,
    /// An int, or a list with one int per spatial dimension (`kernel: [3, 5]`).
    IntOrInts,
    /// A list of ints (`Reshape([7, 7, -1])`).
    IntList,
    /// A bare identifier naming a logged quantity (`monitor: val_loss`).
    Ident,
    /// A string (`label: "y"`).
    Str,
    /// `5 epochs`, `500 steps`.
    Duration,
}

impl Ty {
    pub fn describe(self) -> &'static str {
        match self {
            Ty::Int => "an integer",
            Ty::Float => "a number",
            Ty::Bool => "`true` or `false`",
            Ty::Enum(_) => "one of the listed values",
            Ty::Activation => "an activation",
            Ty::Init => "an initialiser",
            Ty::IntOrInts => "an integer or a list of integers",
            Ty::IntList => "a list of integers",
            Ty::Ident => "a name",
            Ty::Str => "a string",
            Ty::Duration => "a duration (`5 epochs`, `500 steps`)",
        }
    }
}

/// Allowed values of a numeric attribute.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Range {
    Any,
    /// > 0
    Positive,
    /// >= 0
    NonNegative,
    /// [0, 1)
    ZeroToOneExclusive,
    /// (0, 1)
    OpenUnit,
    /// (0, 1]
    UnitExclusiveZero,
}

impl Range {
    pub fn contains(self, v: f64) -> bool {
        match self {
            Range::Any => v.is_finite(),
            Range::Positive => v > 0.0 && v.is_finite(),
            Range::NonNegative => v >= 0.0 && v.is_finite(),
            Range::ZeroToOneExclusive => (0.0..1.0).contains(&v),
            Range::OpenUnit => v > 0.0 && v < 1.0,
            Range::UnitExclusiveZero => v > 0.0 && v <= 1.0,
        }
    }
    pub fn describe(self) -> &'static str {
        match self {
            Range::Any => "finite",
            Range::Positive => "positive",
            Range::NonNegative => "zero or positive",
            Range::ZeroToOneExclusive => "in [0, 1)",
            Range::OpenUnit => "in (0, 1)",
            Range::UnitExclusiveZero => "in (0, 1]",
        }
    }
}

/// The default of an attribute.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Dflt {
    Required,
    Int(i64),
    Float(f64),
    Bool(bool),
    /// An identifier value (`valid`, `glorot_uniform`, `linear`, `val_loss`).
    Sym(&'static str),
    /// Defaults to the value of another argument (`stride` = `size`).
    SameAs(&'static str),
    /// Computed by the layer from its input (`key_dim` = D / heads).
    Derived,
    /// Absent unless given (`clip_norm`).
    None,
    /// A duration in epochs.
    Epochs(u64),
    /// A duration in steps.
    Steps(u64),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParamSpec {
    pub name: &'static str,
    pub ty: Ty,
    pub range: Range,
    pub default: Dflt,
}

const fn p(name: &'static str, ty: Ty, range: Range, default: Dflt) -> ParamSpec {
    ParamSpec {
        name,
        ty,
        range,
        default,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Layer,
    Function,
    Initializer,
    Loss,
    Optimizer,
    Schedule,
    Metric,
    Source,
    Transform,
}

impl Kind {
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Layer => "layer",
            Kind::Function => "function",
            Kind::Initializer => "initialiser",
            Kind::Loss => "loss",
            Kind::Optimizer => "optimizer",
            Kind::Schedule => "schedule",
            Kind::Metric => "metric",
            Kind::Source => "data source",
            Kind::Transform => "transform",
        }
    }
}

/// Declares a closed set of built-ins with their source spellings: the enum, `ALL` (every
/// variant, in order), `NAMES` (their spellings, in the same order) and `name()`.
macro_rules! builtins {
    ($(#[$meta:meta])* pub enum $ty:ident { $($variant:ident => $name:literal,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $ty {
            $($variant,)*
        }

        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant,)*];
            pub const NAMES: &'static [&'static str] = &[$($name,)*];

            /// The spelling in `.fm` source.
            pub const fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name,)*
                }
            }
        }
    };
}

builtins! {
    /// Every built-in layer. `check::layers::infer` matches it exhaustively: a layer with a table
    /// row and no shape rule does not compile.
    pub enum LayerKind {
        Dense => "Dense",
        Conv2D => "Conv2D",
        Conv1D => "Conv1D",
        MaxPool2D => "MaxPool2D",
        AvgPool2D => "AvgPool2D",
        MaxPool1D => "MaxPool1D",
        AvgPool1D => "AvgPool1D",
        GlobalAvgPool2D => "GlobalAvgPool2D",
        GlobalMaxPool2D => "GlobalMaxPool2D",
        GlobalAvgPool1D => "GlobalAvgPool1D",
        GlobalMaxPool1D => "GlobalMaxPool1D",
        Flatten => "Flatten",
        Reshape => "Reshape",
        Dropout => "Dropout",
        BatchNorm => "BatchNorm",
        LayerNorm => "LayerNorm",
        GroupNorm => "GroupNorm",
        UpSampling2D => "UpSampling2D",
        Embedding => "Embedding",
        PositionEmbedding => "PositionEmbedding",
        Rescale => "Rescale",
        SimpleRnn => "SimpleRNN",
        Lstm => "LSTM",
        Gru => "GRU",
        MultiHeadAttention => "MultiHeadAttention",
    }
}

builtins! {
    /// Every activation function (as a stage, a call, or a layer's `activation:` argument), in
    /// the order error messages list them.
    pub enum ActivationFn {
        Linear => "linear",
        Relu => "relu",
        LeakyRelu => "leaky_relu",
        Elu => "elu",
        Gelu => "gelu",
        Sigmoid => "sigmoid",
        Tanh => "tanh",
        Softmax => "softmax",
        LogSoftmax => "log_softmax",
        Softplus => "softplus",
        Silu => "silu",
    }
}

/// What a layer or function row computes: the checker dispatches on this, never on the name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Callable {
    Layer(LayerKind),
    Activation(ActivationFn),
    /// `concat(a, b, ..., axis: -1)`.
    Concat,
    /// `dim(x, axis)`: a static dimension as an int.
    Dim,
}

impl Callable {
    pub const fn name(self) -> &'static str {
        match self {
            Callable::Layer(k) => k.name(),
            Callable::Activation(f) => f.name(),
            Callable::Concat => "concat",
            Callable::Dim => "dim",
        }
    }
}

builtins! {
    /// Every initialiser, in the order error messages list them.
    pub enum InitFn {
        Zeros => "zeros",
        Ones => "ones",
        Constant => "constant",
        Uniform => "uniform",
        Normal => "normal",
        GlorotUniform => "glorot_uniform",
        GlorotNormal => "glorot_normal",
        HeUniform => "he_uniform",
        HeNormal => "he_normal",
        LecunNormal => "lecun_normal",
        Orthogonal => "orthogonal",
    }
}

builtins! {
    /// Every loss (as `loss: NAME` and as a function in objective expressions).
    pub enum LossFn {
        Mse => "mse",
        Mae => "mae",
        Huber => "huber",
        BinaryCrossentropy => "binary_crossentropy",
        CategoricalCrossentropy => "categorical_crossentropy",
        SparseCategoricalCrossentropy => "sparse_categorical_crossentropy",
    }
}

builtins! {
    /// Every optimizer.
    pub enum OptimizerFn {
        Sgd => "SGD",
        Adam => "Adam",
        AdamW => "AdamW",
        RmsProp => "RMSprop",
        Adagrad => "Adagrad",
    }
}

builtins! {
    /// Every learning-rate schedule (`schedule: Cosine(warmup: 5 epochs)`).
    pub enum ScheduleFn {
        Constant => "Constant",
        Step => "Step",
        Exponential => "Exponential",
        Cosine => "Cosine",
        ReduceOnPlateau => "ReduceOnPlateau",
    }
}

builtins! {
    /// Every metric a `metrics:` list may name (of an output against its target; `accuracy`
    /// and `top_k` may also be taken of model values, language.md 9.3).
    pub enum MetricFn {
        Accuracy => "accuracy",
        TopK => "top_k",
        Mse => "mse",
        Mae => "mae",
        Precision => "precision",
        Recall => "recall",
        F1 => "f1",
    }
}

builtins! {
    /// Every data transform (`x: ... | scale(1/255)`).
    pub enum TransformFn {
        Scale => "scale",
        Standardize => "standardize",
        OneHot => "one_hot",
    }
}

impl InitFn {
    /// The built-in a resolved initialiser came from; `None` for the internal ones (the LSTM
    /// bias, lagged copies).
    pub fn of(init: &Init) -> Option<InitFn> {
        Some(match init {
            Init::Zeros => InitFn::Zeros,
            Init::Ones => InitFn::Ones,
            Init::Constant(_) => InitFn::Constant,
            Init::Uniform { .. } => InitFn::Uniform,
            Init::Normal { .. } => InitFn::Normal,
            Init::GlorotUniform => InitFn::GlorotUniform,
            Init::GlorotNormal => InitFn::GlorotNormal,
            Init::HeUniform => InitFn::HeUniform,
            Init::HeNormal => InitFn::HeNormal,
            Init::LecunNormal => InitFn::LecunNormal,
            Init::Orthogonal => InitFn::Orthogonal,
            Init::LstmBias | Init::CopyOf(_) => return None,
        })
    }
}

impl LossFn {
    /// The built-in a resolved loss came from.
    pub fn of(loss: &Loss) -> LossFn {
        match loss {
            Loss::Mse => LossFn::Mse,
            Loss::Mae => LossFn::Mae,
            Loss::Huber { .. } => LossFn::Huber,
            Loss::BinaryCrossentropy { .. } => LossFn::BinaryCrossentropy,
            Loss::CategoricalCrossentropy { .. } => LossFn::CategoricalCrossentropy,
            Loss::SparseCategoricalCrossentropy { .. } => LossFn::SparseCategoricalCrossentropy,
        }
    }
}

impl OptimizerFn {
    /// The built-in a resolved optimizer came from.
    pub fn of(kind: &OptimizerKind) -> OptimizerFn {
        match kind {
            OptimizerKind::Sgd { .. } => OptimizerFn::Sgd,
            OptimizerKind::Adam { .. } => OptimizerFn::Adam,
            OptimizerKind::AdamW { .. } => OptimizerFn::AdamW,
            OptimizerKind::RmsProp { .. } => OptimizerFn::RmsProp,
            OptimizerKind::Adagrad { .. } => OptimizerFn::Adagrad,
        }
    }
}

impl ScheduleFn {
    /// The built-in a resolved schedule came from.
    pub fn of(schedule: &Schedule) -> ScheduleFn {
        match schedule {
            Schedule::Constant => ScheduleFn::Constant,
            Schedule::Step { .. } => ScheduleFn::Step,
            Schedule::Exponential { .. } => ScheduleFn::Exponential,
            Schedule::Cosine { .. } => ScheduleFn::Cosine,
            Schedule::ReduceOnPlateau { .. } => ScheduleFn::ReduceOnPlateau,
        }
    }
}

impl MetricFn {
    /// Whether it gives 1 or 0 per sample, so that it may be taken of model values as the mean
    /// of those (language.md 9.3: `accuracy(logits, label)`); `mse` and `mae` there are the
    /// losses of the same name.
    pub fn is_hit(self) -> bool {
        match self {
            MetricFn::Accuracy | MetricFn::TopK => true,
            MetricFn::Mse
            | MetricFn::Mae
            | MetricFn::Precision
            | MetricFn::Recall
            | MetricFn::F1 => false,
        }
    }

    /// Whether it is a ratio of counts over the whole set rather than a mean of per-sample
    /// values, so that it cannot be taken of model values.
    pub fn is_count(self) -> bool {
        match self {
            MetricFn::Precision | MetricFn::Recall | MetricFn::F1 => true,
            MetricFn::Accuracy | MetricFn::TopK | MetricFn::Mse | MetricFn::Mae => false,
        }
    }
}

impl TransformFn {
    /// The built-in a resolved transform came from.
    pub fn of(t: &Transform) -> TransformFn {
        match t {
            Transform::Scale { .. } => TransformFn::Scale,
            Transform::Standardize => TransformFn::Standardize,
            Transform::OneHot(_) => TransformFn::OneHot,
        }
    }
}

/// What a table row is, typed: the checker dispatches on this, never on the row's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    /// A layer or function.
    Callable(Callable),
    Init(InitFn),
    Loss(LossFn),
    Optimizer(OptimizerFn),
    Schedule(ScheduleFn),
    Metric(MetricFn),
    Transform(TransformFn),
    /// Data sources, which their resolver still matches by name.
    ByName,
}

impl Rule {
    const fn name(self) -> &'static str {
        match self {
            Rule::Callable(c) => c.name(),
            Rule::Init(f) => f.name(),
            Rule::Loss(f) => f.name(),
            Rule::Optimizer(f) => f.name(),
            Rule::Schedule(f) => f.name(),
            Rule::Metric(f) => f.name(),
            Rule::Transform(f) => f.name(),
            Rule::ByName => "",
        }
    }
}

/// A family of built-ins with a typed rule: looked up by [`member`], which gives the variant
/// with its row.
pub trait Family: Copy + Eq + std::fmt::Debug + 'static {
    const KIND: Kind;
    const ALL: &'static [Self];
    fn of_rule(rule: Rule) -> Option<Self>;
    fn name(self) -> &'static str;
}

macro_rules! family {
    ($ty:ident, $kind:ident, $rule:ident) => {
        impl Family for $ty {
            const KIND: Kind = Kind::$kind;
            const ALL: &'static [Self] = $ty::ALL;
            fn of_rule(rule: Rule) -> Option<Self> {
                match rule {
                    Rule::$rule(f) => Some(f),
                    _ => None,
                }
            }
            fn name(self) -> &'static str {
                $ty::name(self)
            }
        }
    };
}

family!(InitFn, Initializer, Init);
family!(LossFn, Loss, Loss);
family!(OptimizerFn, Optimizer, Optimizer);
family!(ScheduleFn, Schedule, Schedule);
family!(MetricFn, Metric, Metric);
family!(TransformFn, Transform, Transform);

/// One built-in.
#[derive(Debug)]
pub struct Sig {
    pub name: &'static str,
    pub kind: Kind,
    /// What the row computes.
    pub rule: Rule,
    /// Allowed number of tensor inputs (min, max); (0, 0) for non-tensor built-ins.
    pub tensors: (usize, usize),
    /// How many of `params` may be given positionally (the bracketed ones in language.md).
    pub positional: usize,
    pub params: &'static [ParamSpec],
    /// The snake_case base of generated layer names (`max_pool2d`); empty for non-layers.
    pub snake: &'static str,
    /// What it expects, for error messages (`[H, W, C]`).
    pub input_desc: &'static str,
}

pub const PADDINGS: &[&str] = &["valid", "same"];
pub const ACTIVATIONS: &[&str] = ActivationFn::NAMES;
pub const INITS: &[&str] = InitFn::NAMES;
pub const KEEP: &[&str] = &["best", "last"];
pub const VALIDATION: &[&str] = &["none", "test"];

use Dflt as D;
use Range as R;

const DENSE: &[ParamSpec] = &[
    p("units", Ty::Int, R::Positive, D::Required),
    p("activation", Ty::Activation, R::Any, D::Sym("linear")),
    p("use_bias", Ty::Bool, R::Any, D::Bool(true)),
    p("init", Ty::Init, R::Any, D::Sym("glorot_uniform")),
    p("bias_init", Ty::Init, R::Any, D::Sym("zeros")),
    p("l1", Ty::Float, R::NonNegative, D::Float(0.0)),
    p("l2", Ty::Float, R::NonNegative, D::Float(0.0)),
];
const CONV: &[ParamSpec] = &[
    p("filters", Ty::Int, R::Positive, D::Required),
    p("kernel", Ty::IntOrInts, R::Positive, D::Required),
    p("activation", Ty::Activation, R::Any, D::Sym("linear")),
    p("stride", Ty::IntOrInts, R::Positive, D::Int(1)),
    p("padding", Ty::Enum(PADDINGS), R::Any, D::Sym("valid")),
    p("dilation", Ty::IntOrInts, R::Positive, D::Int(1)),
    p("use_bias", Ty::Bool, R::Any, D::Bool(true)),
    p("init", Ty::Init, R::Any, D::Sym("glorot_uniform")),
    p("bias_init", Ty::Init, R::Any, D::Sym("zeros")),
    p("l1", Ty::Float, R::NonNegative, D::Float(0.0)),
    p("l2", Ty::Float, R::NonNegative, D::Float(0.0)),
];
const POOL: &[ParamSpec] = &[
    p("size", Ty::IntOrInts, R::Positive, D::Required),
    p("stride", Ty::IntOrInts, R::Positive, D::SameAs("size")),
    p("padding", Ty::Enum(PADDINGS), R::Any, D::Sym("valid")),
];
const RESHAPE: &[ParamSpec] = &[p("shape", Ty::IntList, R::Any, D::Required)];
const DROPOUT: &[ParamSpec] = &[p("rate", Ty::Float, R::ZeroToOneExclusive, D::Required)];
const BATCH_NORM: &[ParamSpec] = &[
    p("momentum", Ty::Float, R::ZeroToOneExclusive, D::Float(0.99)),
    p("epsilon", Ty::Float, R::Positive, D::Float(1e-3)),
];
const LAYER_NORM: &[ParamSpec] = &[p("epsilon", Ty::Float, R::Positive, D::Float(1e-5))];
const GROUP_NORM: &[ParamSpec] = &[
    p("groups", Ty::Int, R::Positive, D::Int(32)),
    p("epsilon", Ty::Float, R::Positive, D::Float(1e-3)),
];
pub const INTERPOLATIONS: &[&str] = &["nearest"];
const UP_SAMPLING: &[ParamSpec] = &[
    p("size", Ty::IntOrInts, R::Positive, D::Int(2)),
    p(
        "interpolation",
        Ty::Enum(INTERPOLATIONS),
        R::Any,
        D::Sym("nearest"),
    ),
];
const EMBEDDING: &[ParamSpec] = &[
    p("vocab", Ty::Int, R::Positive, D::Required),
    p("dim", Ty::Int, R::Positive, D::Required),
    p("init", Ty::Init, R::Any, D::Sym("uniform")),
];
const POSITION_EMBEDDING: &[ParamSpec] = &[
    p("sequence_length", Ty::Int, R::Positive, D::Required),
    p("init", Ty::Init, R::Any, D::Sym("glorot_uniform")),
];
const RESCALE: &[ParamSpec] = &[
    p("scale", Ty::Float, R::Any, D::Required),
    p("offset", Ty::Float, R::Any, D::Float(0.0)),
];
const RNN: &[ParamSpec] = &[
    p("units", Ty::Int, R::Positive, D::Required),
    p("return_sequences", Ty::Bool, R::Any, D::Bool(false)),
    p("activation", Ty::Activation, R::Any, D::Sym("tanh")),
];
const MHA: &[ParamSpec] = &[
    p("heads", Ty::Int, R::Positive, D::Required),
    p("key_dim", Ty::Int, R::Positive, D::Derived),
    p("causal", Ty::Bool, R::Any, D::Bool(false)),
];
const NONE: &[ParamSpec] = &[];
const LEAKY: &[ParamSpec] = &[p("alpha", Ty::Float, R::NonNegative, D::Float(0.01))];
const AXIS: &[ParamSpec] = &[p("axis", Ty::Int, R::Any, D::Int(-1))];
const DIM: &[ParamSpec] = &[p("axis", Ty::Int, R::Any, D::Required)];

const fn layer(
    layer: LayerKind,
    snake: &'static str,
    tensors: (usize, usize),
    positional: usize,
    params: &'static [ParamSpec],
    input_desc: &'static str,
) -> Sig {
    Sig {
        name: layer.name(),
        kind: Kind::Layer,
        rule: Rule::Callable(Callable::Layer(layer)),
        tensors,
        positional,
        params,
        snake,
        input_desc,
    }
}

const fn func(
    callable: Callable,
    tensors: (usize, usize),
    positional: usize,
    params: &'static [ParamSpec],
) -> Sig {
    Sig {
        name: callable.name(),
        kind: Kind::Function,
        rule: Rule::Callable(callable),
        tensors,
        positional,
        params,
        snake: "",
        input_desc: "any shape",
    }
}

const fn other(
    name: &'static str,
    kind: Kind,
    positional: usize,
    params: &'static [ParamSpec],
) -> Sig {
    Sig {
        name,
        kind,
        rule: Rule::ByName,
        tensors: (0, 0),
        positional,
        params,
        snake: "",
        input_desc: "",
    }
}

/// A row of a typed family (initialiser, loss, optimizer, transform): name and kind come from
/// its rule.
const fn member(rule: Rule, positional: usize, params: &'static [ParamSpec]) -> Sig {
    let kind = match rule {
        Rule::Init(_) => Kind::Initializer,
        Rule::Loss(_) => Kind::Loss,
        Rule::Optimizer(_) => Kind::Optimizer,
        Rule::Schedule(_) => Kind::Schedule,
        Rule::Metric(_) => Kind::Metric,
        Rule::Transform(_) => Kind::Transform,
        Rule::Callable(_) | Rule::ByName => panic!("not a family member"),
    };
    Sig {
        name: rule.name(),
        kind,
        rule,
        tensors: (0, 0),
        positional,
        params,
        snake: "",
        input_desc: "",
    }
}

const LOSS_LOGITS: &[ParamSpec] = &[p("from_logits", Ty::Bool, R::Any, D::Bool(false))];
const HUBER: &[ParamSpec] = &[p("delta", Ty::Float, R::Positive, D::Float(1.0))];

const SGD: &[ParamSpec] = &[
    p("lr", Ty::Float, R::Positive, D::Float(0.01)),
    p("momentum", Ty::Float, R::NonNegative, D::Float(0.0)),
    p("nesterov", Ty::Bool, R::Any, D::Bool(false)),
    p("weight_decay", Ty::Float, R::NonNegative, D::Float(0.0)),
    p("clip_norm", Ty::Float, R::Positive, D::None),
    p("global_clip_norm", Ty::Float, R::Positive, D::None),
    p("clip_value", Ty::Float, R::Positive, D::None),
];
const ADAM: &[ParamSpec] = &[
    p("lr", Ty::Float, R::Positive, D::Float(0.001)),
    p("beta1", Ty::Float, R::ZeroToOneExclusive, D::Float(0.9)),
    p("beta2", Ty::Float, R::ZeroToOneExclusive, D::Float(0.999)),
    p("epsilon", Ty::Float, R::Positive, D::Float(1e-7)),
    p("weight_decay", Ty::Float, R::NonNegative, D::Float(0.0)),
    p("clip_norm", Ty::Float, R::Positive, D::None),
    p("global_clip_norm", Ty::Float, R::Positive, D::None),
    p("clip_value", Ty::Float, R::Positive, D::None),
];
const ADAMW: &[ParamSpec] = &[
    p("lr", Ty::Float, R::Positive, D::Float(0.001)),
    p("weight_decay", Ty::Float, R::NonNegative, D::Float(0.004)),
    p("beta1", Ty::Float, R::ZeroToOneExclusive, D::Float(0.9)),
    p("beta2", Ty::Float, R::ZeroToOneExclusive, D::Float(0.999)),
    p("epsilon", Ty::Float, R::Positive, D::Float(1e-7)),
    p("clip_norm", Ty::Float, R::Positive, D::None),
    p("global_clip_norm", Ty::Float, R::Positive, D::None),
    p("clip_value", Ty::Float, R::Positive, D::None),
];
const RMSPROP: &[ParamSpec] = &[
    p("lr", Ty::Float, R::Positive, D::Float(0.001)),
    p("rho", Ty::Float, R::ZeroToOneExclusive, D::Float(0.9)),
    p("momentum", Ty::Float, R::NonNegative, D::Float(0.0)),
    p("epsilon", Ty::Float, R::Positive, D::Float(1e-7)),
    p("weight_decay", Ty::Float, R::NonNegative, D::Float(0.0)),
    p("clip_norm", Ty::Float, R::Positive, D::None),
    p("global_clip_norm", Ty::Float, R::Positive, D::None),
    p("clip_value", Ty::Float, R::Positive, D::None),
];
const ADAGRAD: &[ParamSpec] = &[
    p("lr", Ty::Float, R::Positive, D::Float(0.001)),
    p(
        "initial_accumulator",
        Ty::Float,
        R::NonNegative,
        D::Float(0.1),
    ),
    p("epsilon", Ty::Float, R::Positive, D::Float(1e-7)),
    p("weight_decay", Ty::Float, R::NonNegative, D::Float(0.0)),
    p("clip_norm", Ty::Float, R::Positive, D::None),
    p("global_clip_norm", Ty::Float, R::Positive, D::None),
    p("clip_value", Ty::Float, R::Positive, D::None),
];

const STEP: &[ParamSpec] = &[
    p("every", Ty::Duration, R::Positive, D::Epochs(10)),
    p("gamma", Ty::Float, R::Positive, D::Float(0.1)),
];
const EXPONENTIAL: &[ParamSpec] = &[
    p("rate", Ty::Float, R::Positive, D::Required),
    p("every", Ty::Duration, R::Positive, D::Steps(1000)),
    p("staircase", Ty::Bool, R::Any, D::Bool(false)),
];
const COSINE: &[ParamSpec] = &[
    p("warmup", Ty::Duration, R::NonNegative, D::Steps(0)),
    p("min_lr", Ty::Float, R::NonNegative, D::Float(0.0)),
];
const PLATEAU: &[ParamSpec] = &[
    p("monitor", Ty::Ident, R::Any, D::Sym("val_loss")),
    p("factor", Ty::Float, R::OpenUnit, D::Float(0.1)),
    p("patience", Ty::Int, R::NonNegative, D::Int(10)),
    p("min_lr", Ty::Float, R::NonNegative, D::Float(0.0)),
];
const TOP_K: &[ParamSpec] = &[p("k", Ty::Int, R::Positive, D::Int(5))];
const CONSTANT: &[ParamSpec] = &[p("value", Ty::Float, R::Any, D::Required)];
const UNIFORM: &[ParamSpec] = &[
    p("lo", Ty::Float, R::Any, D::Float(-0.05)),
    p("hi", Ty::Float, R::Any, D::Float(0.05)),
];
const NORMAL: &[ParamSpec] = &[
    p("mean", Ty::Float, R::Any, D::Float(0.0)),
    p("std", Ty::Float, R::Positive, D::Float(0.05)),
];
const IDX: &[ParamSpec] = &[
    p("images", Ty::Str, R::Any, D::Required),
    p("labels", Ty::Str, R::Any, D::Required),
];
const NPY: &[ParamSpec] = &[
    p("x", Ty::Str, R::Any, D::Required),
    p("y", Ty::Str, R::Any, D::Required),
];
/// `x:` of `npz` is a string or a `{ input: "key" }` dictionary; the data resolver handles it.
const NPZ: &[ParamSpec] = &[
    p("path", Ty::Str, R::Any, D::Required),
    p("x", Ty::Str, R::Any, D::Sym("x")),
    p("y", Ty::Str, R::Any, D::Sym("y")),
];
const CSV: &[ParamSpec] = &[
    p("path", Ty::Str, R::Any, D::Required),
    p("label", Ty::Str, R::Any, D::Required),
];
const SPLIT: &[ParamSpec] = &[p("fraction", Ty::Float, R::OpenUnit, D::Required)];
const SCALE: &[ParamSpec] = &[
    p("factor", Ty::Float, R::Any, D::Required),
    p("offset", Ty::Float, R::Any, D::Float(0.0)),
];
const ONE_HOT: &[ParamSpec] = &[p("classes", Ty::Int, R::Positive, D::Required)];

/// Every built-in, in the order of language.md.
pub static TABLE: &[Sig] = &[
    layer(LayerKind::Dense, "dense", (1, 1), 2, DENSE, "[.., in]"),
    layer(LayerKind::Conv2D, "conv2d", (1, 1), 3, CONV, "[H, W, C]"),
    layer(LayerKind::Conv1D, "conv1d", (1, 1), 3, CONV, "[L, C]"),
    layer(
        LayerKind::MaxPool2D,
        "max_pool2d",
        (1, 1),
        1,
        POOL,
        "[H, W, C]",
    ),
    layer(
        LayerKind::AvgPool2D,
        "avg_pool2d",
        (1, 1),
        1,
        POOL,
        "[H, W, C]",
    ),
    layer(
        LayerKind::MaxPool1D,
        "max_pool1d",
        (1, 1),
        1,
        POOL,
        "[L, C]",
    ),
    layer(
        LayerKind::AvgPool1D,
        "avg_pool1d",
        (1, 1),
        1,
        POOL,
        "[L, C]",
    ),
    layer(
        LayerKind::GlobalAvgPool2D,
        "global_avg_pool2d",
        (1, 1),
        0,
        NONE,
        "[H, W, C]",
    ),
    layer(
        LayerKind::GlobalMaxPool2D,
        "global_max_pool2d",
        (1, 1),
        0,
        NONE,
        "[H, W, C]",
    ),
    layer(
        LayerKind::GlobalAvgPool1D,
        "global_avg_pool1d",
        (1, 1),
        0,
        NONE,
        "[L, C]",
    ),
    layer(
        LayerKind::GlobalMaxPool1D,
        "global_max_pool1d",
        (1, 1),
        0,
        NONE,
        "[L, C]",
    ),
    layer(LayerKind::Flatten, "flatten", (1, 1), 0, NONE, "any shape"),
    layer(
        LayerKind::Reshape,
        "reshape",
        (1, 1),
        1,
        RESHAPE,
        "any shape",
    ),
    layer(
        LayerKind::Dropout,
        "dropout",
        (1, 1),
        1,
        DROPOUT,
        "any shape",
    ),
    layer(
        LayerKind::BatchNorm,
        "batch_norm",
        (1, 1),
        0,
        BATCH_NORM,
        "[.., C]",
    ),
    layer(
        LayerKind::LayerNorm,
        "layer_norm",
        (1, 1),
        0,
        LAYER_NORM,
        "[.., C]",
    ),
    // Extensions beyond language.md's required set (Keras GroupNormalization, UpSampling2D).
    layer(
        LayerKind::GroupNorm,
        "group_norm",
        (1, 1),
        1,
        GROUP_NORM,
        "[.., C]",
    ),
    layer(
        LayerKind::UpSampling2D,
        "up_sampling2d",
        (1, 1),
        1,
        UP_SAMPLING,
        "[H, W, C]",
    ),
    layer(
        LayerKind::Embedding,
        "embedding",
        (1, 1),
        2,
        EMBEDDING,
        "i32[L]",
    ),
    // An extension (keras-hub's PositionEmbedding).
    layer(
        LayerKind::PositionEmbedding,
        "position_embedding",
        (1, 1),
        1,
        POSITION_EMBEDDING,
        "[L, D]",
    ),
    layer(
        LayerKind::Rescale,
        "rescale",
        (1, 1),
        1,
        RESCALE,
        "any shape",
    ),
    layer(LayerKind::SimpleRnn, "simple_rnn", (1, 1), 1, RNN, "[T, C]"),
    layer(LayerKind::Lstm, "lstm", (1, 1), 1, RNN, "[T, C]"),
    layer(LayerKind::Gru, "gru", (1, 1), 1, RNN, "[T, C]"),
    layer(
        LayerKind::MultiHeadAttention,
        "multi_head_attention",
        (1, 3),
        2,
        MHA,
        "[T, D]",
    ),
    func(Callable::Activation(ActivationFn::Relu), (1, 1), 0, NONE),
    func(
        Callable::Activation(ActivationFn::LeakyRelu),
        (1, 1),
        1,
        LEAKY,
    ),
    func(Callable::Activation(ActivationFn::Elu), (1, 1), 0, NONE),
    func(Callable::Activation(ActivationFn::Gelu), (1, 1), 0, NONE),
    func(Callable::Activation(ActivationFn::Sigmoid), (1, 1), 0, NONE),
    func(Callable::Activation(ActivationFn::Tanh), (1, 1), 0, NONE),
    func(Callable::Activation(ActivationFn::Softmax), (1, 1), 1, AXIS),
    func(
        Callable::Activation(ActivationFn::LogSoftmax),
        (1, 1),
        1,
        AXIS,
    ),
    func(
        Callable::Activation(ActivationFn::Softplus),
        (1, 1),
        0,
        NONE,
    ),
    func(Callable::Activation(ActivationFn::Silu), (1, 1), 0, NONE),
    func(Callable::Activation(ActivationFn::Linear), (1, 1), 0, NONE),
    func(Callable::Concat, (2, usize::MAX), 1, AXIS),
    func(Callable::Dim, (1, 1), 1, DIM),
    member(Rule::Init(InitFn::Zeros), 0, NONE),
    member(Rule::Init(InitFn::Ones), 0, NONE),
    member(Rule::Init(InitFn::Constant), 1, CONSTANT),
    member(Rule::Init(InitFn::Uniform), 2, UNIFORM),
    member(Rule::Init(InitFn::Normal), 2, NORMAL),
    member(Rule::Init(InitFn::GlorotUniform), 0, NONE),
    member(Rule::Init(InitFn::GlorotNormal), 0, NONE),
    member(Rule::Init(InitFn::HeUniform), 0, NONE),
    member(Rule::Init(InitFn::HeNormal), 0, NONE),
    member(Rule::Init(InitFn::LecunNormal), 0, NONE),
    member(Rule::Init(InitFn::Orthogonal), 0, NONE),
    member(Rule::Loss(LossFn::Mse), 0, NONE),
    member(Rule::Loss(LossFn::Mae), 0, NONE),
    member(Rule::Loss(LossFn::Huber), 1, HUBER),
    member(Rule::Loss(LossFn::BinaryCrossentropy), 1, LOSS_LOGITS),
    member(Rule::Loss(LossFn::CategoricalCrossentropy), 1, LOSS_LOGITS),
    member(
        Rule::Loss(LossFn::SparseCategoricalCrossentropy),
        1,
        LOSS_LOGITS,
    ),
    member(Rule::Optimizer(OptimizerFn::Sgd), 0, SGD),
    member(Rule::Optimizer(OptimizerFn::Adam), 0, ADAM),
    member(Rule::Optimizer(OptimizerFn::AdamW), 0, ADAMW),
    member(Rule::Optimizer(OptimizerFn::RmsProp), 0, RMSPROP),
    member(Rule::Optimizer(OptimizerFn::Adagrad), 0, ADAGRAD),
    member(Rule::Schedule(ScheduleFn::Constant), 0, NONE),
    member(Rule::Schedule(ScheduleFn::Step), 0, STEP),
    member(Rule::Schedule(ScheduleFn::Exponential), 1, EXPONENTIAL),
    member(Rule::Schedule(ScheduleFn::Cosine), 0, COSINE),
    member(Rule::Schedule(ScheduleFn::ReduceOnPlateau), 0, PLATEAU),
    member(Rule::Metric(MetricFn::Accuracy), 0, NONE),
    member(Rule::Metric(MetricFn::TopK), 1, TOP_K),
    member(Rule::Metric(MetricFn::Mse), 0, NONE),
    member(Rule::Metric(MetricFn::Mae), 0, NONE),
    member(Rule::Metric(MetricFn::Precision), 0, NONE),
    member(Rule::Metric(MetricFn::Recall), 0, NONE),
    member(Rule::Metric(MetricFn::F1), 0, NONE),
    other("idx", Kind::Source, 2, IDX),
    other("npy", Kind::Source, 2, NPY),
    other("npz", Kind::Source, 1, NPZ),
    other("csv", Kind::Source, 1, CSV),
    other("split", Kind::Source, 1, SPLIT),
    member(Rule::Transform(TransformFn::Scale), 1, SCALE),
    member(Rule::Transform(TransformFn::Standardize), 0, NONE),
    member(Rule::Transform(TransformFn::OneHot), 1, ONE_HOT),
];

/// The built-in of this kind with this name.
pub fn lookup(kind: Kind, name: &str) -> Option<&'static Sig> {
    TABLE.iter().find(|s| s.kind == kind && s.name == name)
}

/// The member of family `F` with this name, with its row.
pub fn member_named<F: Family>(name: &str) -> Option<(F, &'static Sig)> {
    TABLE
        .iter()
        .filter(|s| s.kind == F::KIND && s.name == name)
        .find_map(|s| F::of_rule(s.rule).map(|f| (f, s)))
}

impl Sig {
    /// For layers and functions (`Kind::Layer`, `Kind::Function`), what the row computes.
    pub fn callable(&self) -> Option<Callable> {
        match self.rule {
            Rule::Callable(c) => Some(c),
            _ => None,
        }
    }
}

/// A layer or function (what may appear as a model stage or call).
pub fn lookup_callable(name: &str) -> Option<&'static Sig> {
    TABLE
        .iter()
        .find(|s| (s.kind == Kind::Layer || s.kind == Kind::Function) && s.name == name)
}

/// Every name of a kind, for "did you mean" suggestions.
pub fn names(kind: Kind) -> impl Iterator<Item = &'static str> {
    TABLE.iter().filter(move |s| s.kind == kind).map(|s| s.name)
}

/// True for any built-in name a user block may not take.
pub fn is_builtin_callable(name: &str) -> bool {
    lookup_callable(name).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positional_counts_fit_their_params() {
        for sig in TABLE {
            assert!(sig.positional <= sig.params.len(), "{}", sig.name);
        }
    }

    #[test]
    fn names_are_unique_per_kind() {
        for (i, a) in TABLE.iter().enumerate() {
            for b in &TABLE[i + 1..] {
                assert!(!(a.kind == b.kind && a.name == b.name), "{}", a.name);
            }
        }
    }

    /// Every layer and function has exactly one row, and every row of those kinds says what it
    /// computes (the checker's exhaustive match then gives each one a rule).
    #[test]
    fn every_callable_has_one_row() {
        let mut callables: Vec<Callable> = LayerKind::ALL
            .iter()
            .map(|&k| Callable::Layer(k))
            .chain(ActivationFn::ALL.iter().map(|&f| Callable::Activation(f)))
            .collect();
        callables.extend([Callable::Concat, Callable::Dim]);
        for c in &callables {
            let rows: Vec<&Sig> = TABLE.iter().filter(|s| s.callable() == Some(*c)).collect();
            assert_eq!(rows.len(), 1, "{c:?} has {} rows", rows.len());
            assert_eq!(rows[0].name, c.name());
        }
        for sig in TABLE {
            let callable = matches!(sig.kind, Kind::Layer | Kind::Function);
            assert_eq!(sig.callable().is_some(), callable, "{}", sig.name);
            if let Some(c) = sig.callable() {
                assert_eq!(
                    lookup_callable(sig.name).and_then(|s| s.callable()),
                    Some(c)
                );
            }
        }
    }

    /// Every member of a typed family has exactly one row, and every row of the family's kind
    /// is one of its members.
    fn family_rows<F: Family>() {
        for &f in F::ALL {
            let rows = TABLE
                .iter()
                .filter(|s| F::of_rule(s.rule) == Some(f))
                .count();
            assert_eq!(rows, 1, "{f:?}");
            assert_eq!(member_named::<F>(f.name()).map(|(g, _)| g), Some(f));
        }
        for sig in TABLE.iter().filter(|s| s.kind == F::KIND) {
            assert!(F::of_rule(sig.rule).is_some(), "{}", sig.name);
        }
    }

    #[test]
    fn every_family_member_has_one_row() {
        family_rows::<InitFn>();
        family_rows::<LossFn>();
        family_rows::<OptimizerFn>();
        family_rows::<TransformFn>();
    }

    #[test]
    fn layers_have_snake_names() {
        assert_eq!(
            lookup(Kind::Layer, "MaxPool2D").unwrap().snake,
            "max_pool2d"
        );
        assert_eq!(
            lookup(Kind::Layer, "MultiHeadAttention").unwrap().snake,
            "multi_head_attention"
        );
        for sig in TABLE.iter().filter(|s| s.kind == Kind::Layer) {
            assert!(!sig.snake.is_empty());
        }
    }
}
