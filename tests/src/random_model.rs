//! A deterministic generator of random, well-typed `.fm` models for differential testing.
//!
//! `generate(seed)` returns the source of one file with one model and its `train` section. The
//! generator tracks every per-sample shape itself, so each stage it emits fits its input: a
//! generated model that `fmc check` rejects (or warns about) is a bug in this file or in the
//! checker, never an expected outcome. Sizes are small and deliberately odd (1, 3, 5, 7, 17;
//! batches of 1, 7 and 33) so that backends meet tails that are not multiples of a vector width.
//!
//! Families, picked by the seed: vector MLPs (Dense, Dropout, BatchNorm, LayerNorm, GroupNorm,
//! Rescale, every activation, residual `+`/`-`/`*` with broadcasting, `concat`, Reshape), 2-D
//! conv nets (Conv2D with strides, dilation and both paddings, max/avg pooling, UpSampling2D,
//! global pooling, Flatten),
//! sequence models (Conv1D, 1-D pooling, SimpleRNN/LSTM/GRU, MultiHeadAttention, per-step
//! heads), text models (Embedding, PositionEmbedding), and two-input / two-output models with a
//! loss per output.
//! User blocks (with typed and defaulted parameters, `dim`, `repeat`) appear in every family.
//! The head is paired with its loss as a user would write it: sigmoid (or logits) on one unit
//! for binary cross-entropy, softmax (or logits) on two or more classes for the categorical
//! losses, anything for `mse`, `mae` and `huber`.
//!
//! The generator steers clear of parameters whose exact gradient is zero (a bias right before
//! a BatchNorm, a softmax or normalisation over a single element, constant kernels, a bias on
//! attention keys): training moves those by rounding noise alone, which Adam-like optimizers
//! blow up to full steps of arbitrary sign, so no two correct backends would agree on them.
//! (`MultiHeadAttention`'s own `key.bias` is such a parameter in every model; the comparison
//! skips it, see `differential::noise_only`.)

use fm_compiler::init::Rng;
use std::collections::BTreeSet;
use std::fmt::Write as _;

/// The generator's random source: fm's own SplitMix64 (`fm_compiler::init::Rng`) with helpers
/// for picking sizes and layers.
pub struct SplitMix64(Rng);

/// The stream of `init::Rng` whose starting state is `seed ^ 0x6a09_e667_f3bc_c908`, the mixing
/// this generator used before it shared fm's generator; keeping it keeps every seed's model.
const STREAM: u64 = 0xdc8f_7543_ef33_c3b7;

/// A second stream for the layers added after the generator's first version (GroupNorm,
/// UpSampling2D, PositionEmbedding): they take the place of a stage (or are added to a
/// sequence) only when this stream says so, so the models
/// of the seeds that do not get them stay what they were.
const EXTENSION_STREAM: u64 = 0x510e_527f_ade6_82d1;

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(Rng::new(seed, STREAM))
    }

    fn extension(seed: u64) -> Self {
        SplitMix64(Rng::new(seed, EXTENSION_STREAM))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0.uniform()
    }

    /// Standard normal.
    pub fn normal(&mut self) -> f64 {
        self.0.normal()
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// One generated model.
#[derive(Clone, Debug)]
pub struct GeneratedModel {
    pub seed: u64,
    /// The whole `.fm` file: blocks, the model and its `train` section.
    pub source: String,
    /// The batch size to run it with (also its `batch_size`).
    pub batch: usize,
    /// Layers, functions and constructs the model uses (`Dense`, `relu`, `residual +`, `block`).
    pub features: BTreeSet<String>,
    /// The loss of each output (`mse`, `sparse_categorical_crossentropy`, ...).
    pub losses: Vec<String>,
    /// The optimizer (`SGD`, `Adam`, ...).
    pub optimizer: String,
}

/// Every activation of language.md section 5 except `softmax`/`log_softmax`, which take an axis
/// and are written by [`Gen::activation`].
const PLAIN_ACTIVATIONS: &[&str] = &[
    "linear", "relu", "elu", "gelu", "sigmoid", "tanh", "softplus", "silu",
];

/// MultiHeadAttention over images `[H, W, C]` (attention over the H*W positions, as Keras's
/// default `attention_axes`).
const ATTENTION_OVER_IMAGES: bool = true;

/// Odd and small sizes.
const UNITS: &[usize] = &[1, 2, 3, 4, 5, 7, 8, 17, 33];
const BATCHES: &[usize] = &[1, 2, 3, 4, 7, 33];

/// A tensor value in the model body: its text (a name, or a pipeline) and per-sample shape.
#[derive(Clone, Debug)]
struct Val {
    expr: String,
    shape: Vec<usize>,
    /// Ends in a Dense or convolution with a bias and no activation: a BatchNorm right after
    /// would cancel the bias exactly (see [`Gen::same_shape_stage`]).
    affine: bool,
}

impl Val {
    fn last(&self) -> usize {
        *self.shape.last().unwrap_or(&1)
    }
    /// Appends a pipeline stage.
    fn then(mut self, stage: &str, shape: Vec<usize>) -> Val {
        write!(self.expr, " -> {stage}").unwrap();
        self.shape = shape;
        // A bias stays a constant shift per channel through these.
        self.affine &= ["Flatten", "Reshape", "Rescale", "UpSampling2D"]
            .iter()
            .any(|s| stage.starts_with(s));
        self
    }

    fn new(expr: impl Into<String>, shape: Vec<usize>) -> Val {
        Val {
            expr: expr.into(),
            shape,
            affine: false,
        }
    }
}

/// How an output is trained.
#[derive(Clone, Copy, Debug, PartialEq)]
enum LossKind {
    Mse,
    Mae,
    Huber,
    Binary,
    Categorical,
    Sparse,
}

/// `3`, or `[1, 3]` when the values differ.
fn ints(v: &[usize; 2]) -> String {
    if v[0] == v[1] {
        v[0].to_string()
    } else {
        format!("[{}, {}]", v[0], v[1])
    }
}

fn is_name(expr: &str) -> bool {
    expr.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

struct Gen {
    rng: SplitMix64,
    /// Decides where the extension layers go (see [`EXTENSION_STREAM`]).
    ext: SplitMix64,
    /// Statements of the model body (`let` and `output`), in order.
    body: Vec<String>,
    /// Block definitions this model uses.
    blocks: Vec<String>,
    block_names: BTreeSet<&'static str>,
    lets: usize,
    /// Explicit layer names given so far (they must be unique).
    layer_names: usize,
    features: BTreeSet<String>,
    /// The batch size the model will run with.
    batch: usize,
}

/// Generates the model of `seed`.
pub fn generate(seed: u64) -> GeneratedModel {
    let mut g = Gen {
        rng: SplitMix64::new(seed),
        ext: SplitMix64::extension(seed),
        body: Vec::new(),
        blocks: Vec::new(),
        block_names: BTreeSet::new(),
        lets: 0,
        layer_names: 0,
        features: BTreeSet::new(),
        batch: 1,
    };
    g.model(seed)
}

impl Gen {
    fn feature(&mut self, f: &str) {
        self.features.insert(f.to_string());
    }

    /// Binds a value to a fresh `let` unless it is already a plain name.
    fn name(&mut self, v: Val) -> Val {
        if is_name(&v.expr) {
            return v;
        }
        let n = format!("h{}", self.lets);
        self.lets += 1;
        self.body.push(format!("let {n} = {}", v.expr));
        let mut named = Val::new(n, v.shape);
        named.affine = v.affine;
        named
    }

    /// `, name: "..."` now and then (a layer's explicit name).
    fn layer_name(&mut self) -> String {
        if self.rng.chance(0.1) {
            self.layer_names += 1;
            format!(", name: \"named_{}\"", self.layer_names)
        } else {
            String::new()
        }
    }

    /// An activation argument or stage for a tensor of this shape. Softmax and log-softmax go
    /// over an axis longer than 1 only: over a single element they are constant, so every
    /// gradient upstream is zero and only rounding noise trains (which optimizers that
    /// normalise the gradient, like Adam, blow up to full-size steps of arbitrary sign).
    ///
    /// For the same reason they go over the last axis only when `after_bias` (the input ends
    /// in a bias with no activation): a softmax over another axis cancels that bias.
    fn activation(&mut self, shape: &[usize], after_bias: bool) -> String {
        let rank = shape.len();
        let long_axes: Vec<usize> = (0..rank)
            .filter(|&a| shape[a] > 1 && (a + 1 == rank || !after_bias))
            .collect();
        let a = match self.rng.below(14) {
            0 => {
                self.feature("leaky_relu");
                return format!("leaky_relu(alpha: {})", self.rng.pick(&[0.01, 0.2, 0.5]));
            }
            1 | 2 if !long_axes.is_empty() => {
                let f = if self.rng.chance(0.5) {
                    "softmax"
                } else {
                    "log_softmax"
                };
                self.feature(f);
                let axis = self.rng.pick(&long_axes);
                if axis + 1 == rank && self.rng.chance(0.5) {
                    return f.to_string();
                }
                return format!("{f}(axis: {axis})");
            }
            _ => self.rng.pick(PLAIN_ACTIVATIONS),
        };
        self.feature(a);
        a.to_string()
    }

    /// An initialiser for a kernel or embeddings: a random one. Constant kernels (`zeros`,
    /// `ones`, `constant`) make units identical, so a softmax over them is constant and every
    /// gradient upstream is noise; they are used as `bias_init` only.
    fn kernel_init(&mut self) -> String {
        let k = 3 + self.rng.below(8);
        self.init_number(k)
    }

    /// Any initialiser (for a bias).
    fn init(&mut self) -> String {
        let k = self.rng.below(11);
        self.init_number(k)
    }

    fn init_number(&mut self, k: usize) -> String {
        let i = match k {
            0 => "zeros".to_string(),
            1 => "ones".to_string(),
            2 => format!("constant({})", self.rng.pick(&[0.1, -0.2, 0.05])),
            3 => format!("uniform({}, {})", -0.3, 0.3),
            4 => format!("normal(0, {})", self.rng.pick(&[0.1, 0.3])),
            5 => "glorot_normal".to_string(),
            6 => "he_uniform".to_string(),
            7 => "he_normal".to_string(),
            8 => "lecun_normal".to_string(),
            9 => "orthogonal".to_string(),
            _ => "glorot_uniform".to_string(),
        };
        let base = i.split('(').next().unwrap_or("").to_string();
        self.feature(&base);
        i
    }

    /// `Dense(units, ...)` on `[.., in]`.
    fn dense(&mut self, v: Val, units: usize) -> Val {
        self.feature("Dense");
        let mut s = if units.is_multiple_of(2) && self.rng.chance(0.15) {
            // Constant arithmetic folds at compile time.
            self.feature("constant arithmetic");
            format!("Dense(2 * {}", units / 2)
        } else {
            format!("Dense({units}")
        };
        let mut shape = v.shape.clone();
        *shape.last_mut().unwrap() = units;
        let activated = self.rng.chance(0.7);
        let biased = !self.rng.chance(0.15);
        let activated = activated && {
            let a = self.activation(&shape, biased);
            write!(s, ", {a}").unwrap();
            a != "linear"
        };
        if !biased {
            s.push_str(", use_bias: false");
        } else if self.rng.chance(0.15) {
            let b = self.init();
            write!(s, ", bias_init: {b}").unwrap();
        }
        if self.rng.chance(0.25) {
            let i = self.kernel_init();
            write!(s, ", init: {i}").unwrap();
        }
        if self.rng.chance(0.1) {
            self.feature("l1");
            s.push_str(", l1: 1e-3");
        }
        if self.rng.chance(0.1) {
            self.feature("l2");
            s.push_str(", l2: 0.01");
        }
        s += &self.layer_name();
        s.push(')');
        let mut out = if is_name(&v.expr) && self.rng.chance(0.2) {
            // The call form with the tensor as the first argument: `Dense(h0, 3, relu)`.
            self.feature("call form");
            Val::new(format!("Dense({}, {}", v.expr, &s["Dense(".len()..]), shape)
        } else {
            v.then(&s, shape)
        };
        out.affine = biased && !activated;
        out
    }

    /// A stage that keeps the shape: normalisation, dropout, an activation, Rescale.
    ///
    /// Normalisations that make their output constant are left out, because every gradient
    /// upstream of them is zero and training only moves weights by rounding noise (which
    /// Adam-like optimizers blow up to full steps of arbitrary sign, so no two correct backends
    /// agree): BatchNorm on one value per channel (batch 1 and no other axes), LayerNorm over a
    /// last axis of 1, and BatchNorm right after a bias with no activation between them (the
    /// batch mean cancels the bias exactly).
    fn same_shape_stage(&mut self, v: Val) -> Val {
        let shape = v.shape.clone();
        let per_channel: usize = shape[..shape.len() - 1].iter().product::<usize>() * self.batch;
        let choice = match self.rng.below(6) {
            1 if per_channel == 1 || v.affine => 0,
            2 if v.last() == 1 => 0,
            c => c,
        };
        match choice {
            0 => {
                self.feature("Dropout");
                let r = self.rng.pick(&[0.0, 0.1, 0.25, 0.5]);
                v.then(&format!("Dropout({r})"), shape)
            }
            1 => {
                self.feature("BatchNorm");
                let s = match self.rng.below(3) {
                    0 => "BatchNorm".to_string(),
                    1 => "BatchNorm(momentum: 0.9)".to_string(),
                    _ => "BatchNorm(momentum: 0.5, epsilon: 1e-2)".to_string(),
                };
                v.then(&s, shape)
            }
            2 => {
                self.feature("LayerNorm");
                let s = if self.rng.chance(0.5) {
                    "LayerNorm"
                } else {
                    "LayerNorm(epsilon: 1e-3)"
                };
                v.then(s, shape)
            }
            3 => {
                let s = if self.rng.chance(0.5) {
                    "Rescale(0.5)"
                } else {
                    "Rescale(2, offset: -0.5)"
                };
                if let Some(gn) = self.group_norm(&shape, v.affine) {
                    // GroupNorm ends in `beta`, a bias with no activation after it.
                    let mut out = v.then(&gn, shape);
                    out.affine = true;
                    return out;
                }
                self.feature("Rescale");
                v.then(s, shape)
            }
            _ => {
                let a = self.activation(&shape, v.affine);
                v.then(&a, shape)
            }
        }
    }

    /// Now and then, a GroupNorm in place of another shape-keeping stage. Each group normalises
    /// at least 4 values (fewer leave gradients of rounding-noise size), and after a bias with
    /// no activation every group has 2 or more channels (a group of one channel cancels that
    /// channel's bias exactly).
    fn group_norm(&mut self, shape: &[usize], affine: bool) -> Option<String> {
        if !self.ext.chance(0.4) {
            return None;
        }
        let c = *shape.last()?;
        let positions: usize = shape[..shape.len() - 1].iter().product();
        let groups: Vec<usize> = (1..=c)
            .filter(|g| c % g == 0)
            .filter(|g| (c / g) * positions >= 4 && (!affine || c / g >= 2))
            .collect();
        if groups.is_empty() {
            return None;
        }
        let g = self.ext.pick(&groups);
        self.feature("GroupNorm");
        Some(match self.ext.below(3) {
            0 => format!("GroupNorm({g})"),
            1 => format!("GroupNorm(groups: {g}, epsilon: 1e-2)"),
            _ => format!("GroupNorm({g}, epsilon: 1e-5)"),
        })
    }

    /// Now and then, an UpSampling2D in place of a pooling stage, on small images only.
    fn up_sampling(&mut self, v: &Val) -> Option<Val> {
        if !self.ext.chance(0.3) || v.shape.len() != 3 || v.shape[0] * v.shape[1] > 16 {
            return None;
        }
        self.feature("UpSampling2D");
        let (stage, size) = match self.ext.below(3) {
            0 => ("UpSampling2D".to_string(), [2, 2]),
            1 => {
                let k = self.ext.pick(&[2, 3]);
                (format!("UpSampling2D({k})"), [k, k])
            }
            _ => {
                let size = [self.ext.pick(&[1, 2, 3]), self.ext.pick(&[2, 3])];
                (format!("UpSampling2D(size: {})", ints(&size)), size)
            }
        };
        let shape = vec![v.shape[0] * size[0], v.shape[1] * size[1], v.shape[2]];
        Some(v.clone().then(&stage, shape))
    }

    /// A residual connection `x OP f(x)` where `f` keeps the shape (or ends in one unit, which
    /// broadcasts over the last axis).
    fn residual(&mut self, v: Val) -> Val {
        let x = self.name(v);
        let broadcast = self.rng.chance(0.2);
        let width = if broadcast { 1 } else { x.last() };
        let mut h = if x.shape.len() > 1 && self.rng.chance(0.2) {
            // A per-sample vector [D] (or [1]) against [.., D]: broadcasting over lower rank.
            self.feature("broadcast lower rank");
            self.feature("Flatten");
            let n = x.shape.iter().product();
            let flat = x.clone().then("Flatten", vec![n]);
            self.dense(flat, width)
        } else if !broadcast && self.rng.chance(0.15) {
            // The width from `dim` rather than a literal.
            self.feature("dim");
            self.feature("dim in a model");
            self.feature("Dense");
            let shape = x.shape.clone();
            x.clone()
                .then(&format!("Dense(dim({}, -1), tanh)", x.expr), shape)
        } else {
            self.dense(x.clone(), width)
        };
        if self.rng.chance(0.4) {
            h = self.same_shape_stage(h);
        }
        let h = self.name(h);
        let (op, f) = match self.rng.below(5) {
            0 => ("-", "residual -"),
            1 => ("*", "residual *"),
            _ => ("+", "residual +"),
        };
        self.feature(f);
        if broadcast {
            self.feature("broadcast");
        }
        let expr = if self.rng.chance(0.5) {
            format!("{} {op} {}", x.expr, h.expr)
        } else {
            // The same value, written as a call on the sum.
            format!("relu({} {op} {})", x.expr, h.expr)
        };
        Val::new(expr, x.shape)
    }

    /// `concat` of the value with a projection of itself on the last axis (or axis 0).
    fn concat(&mut self, v: Val) -> Val {
        self.feature("concat");
        let x = self.name(v);
        let k = self.rng.pick(&[1, 2, 3]);
        let rank = x.shape.len();
        let axis0 = rank > 1 && self.rng.chance(0.3);
        let other = if axis0 {
            // Concatenate along the first axis: a same-width projection.
            self.dense(x.clone(), x.last())
        } else {
            self.dense(x.clone(), k)
        };
        let other = self.name(other);
        let mut shape = x.shape.clone();
        // The axis argument: none (the default -1), or the first axis.
        let axis = if axis0 {
            shape[0] *= 2;
            ", axis: 0"
        } else {
            *shape.last_mut().unwrap() += k;
            ""
        };
        let text = if self.rng.chance(0.5) {
            format!("concat({}, {}{axis})", x.expr, other.expr)
        } else {
            format!("{} -> concat({}{axis})", x.expr, other.expr)
        };
        let mut joined = Val::new(text, shape);
        joined.affine = x.affine || other.affine;
        joined
    }

    /// A block for a residual feed-forward unit on `[.., D]`; returns its name.
    fn ff_block(&mut self) -> &'static str {
        let name = "ff_unit";
        if self.block_names.insert(name) {
            self.blocks.push(
                "/// A residual feed-forward unit: the width comes back to `dim(x, -1)`.\n\
                 block ff_unit(x, hidden: int, rate: float = 0.1, act: ident = relu) {\n    \
                 let h = x -> Dense(hidden, act) -> Dropout(rate) -> Dense(dim(x, -1))\n    \
                 return x + h\n}\n"
                    .to_string(),
            );
        }
        name
    }

    /// `repeat N { Dense(u, ...) -> STAGE }`: N copies of a two-stage pipeline.
    fn repeat_stages(&mut self, v: Val) -> Val {
        self.feature("repeat");
        self.feature("repeat of a pipeline");
        let units = self.rng.pick(&[2, 3, 5]);
        let act = self.rng.pick(&["relu", "tanh", "gelu"]);
        let second = self.rng.pick(&["Dropout(0.1)", "LayerNorm", "silu"]);
        let n = self.rng.pick(&[1, 2, 3]);
        let mut shape = v.shape.clone();
        *shape.last_mut().unwrap() = units;
        v.then(
            &format!("repeat {n} {{ Dense({units}, {act}) -> {second} }}"),
            shape,
        )
    }

    /// A block that calls another block, with a float parameter left at its default or given.
    fn nested_block_stage(&mut self, v: Val) -> Val {
        self.feature("block");
        self.feature("block calls block");
        self.feature("dim");
        self.ff_block();
        if self.block_names.insert("proj_unit") {
            self.blocks.push(
                "/// A residual unit, scaled, then projected to `width` units.\n\
                 block proj_unit(x, width: int, scale: float = 0.5) {\n    \
                 let h = x -> ff_unit(width) -> Rescale(scale)\n    \
                 return h -> Dense(width, tanh)\n}\n"
                    .to_string(),
            );
        }
        let width = self.rng.pick(&[1, 3, 4]);
        let scale = if self.rng.chance(0.5) {
            ", scale: 1 / 4".to_string()
        } else {
            String::new()
        };
        let mut shape = v.shape.clone();
        *shape.last_mut().unwrap() = width;
        v.then(&format!("proj_unit({width}{scale})"), shape)
    }

    /// A block call stage on `[.., D]` (keeps the shape).
    fn block_stage(&mut self, v: Val) -> Val {
        self.feature("block");
        self.feature("dim");
        let b = self.ff_block();
        let hidden = self.rng.pick(UNITS);
        let mut call = format!("{b}({hidden}");
        if self.rng.chance(0.4) {
            write!(call, ", rate: {}", self.rng.pick(&[0.0, 0.3])).unwrap();
        }
        if self.rng.chance(0.4) {
            let a = self.rng.pick(&["tanh", "gelu", "silu"]);
            write!(call, ", act: {a}").unwrap();
        }
        let shape = v.shape.clone();
        if self.rng.chance(0.4) {
            // No explicit name inside `repeat`: the copies would share it.
            self.feature("repeat");
            call.push(')');
            let n = self.rng.pick(&[1, 2]);
            v.then(&format!("repeat {n} {{ {call} }}"), shape)
        } else {
            call += &self.layer_name();
            call.push(')');
            v.then(&call, shape)
        }
    }

    /// Stages on a vector or any `[.., D]` value.
    fn vector_stages(&mut self, mut v: Val, count: usize) -> Val {
        for _ in 0..count {
            v = match self.rng.below(10) {
                0..=2 => {
                    let u = self.rng.pick(UNITS);
                    self.dense(v, u)
                }
                3 | 4 => self.same_shape_stage(v),
                5 => self.residual(v),
                6 => self.concat(v),
                7 => match self.rng.below(3) {
                    0 => self.repeat_stages(v),
                    1 => self.nested_block_stage(v),
                    _ => self.block_stage(v),
                },
                8 => self.reshape_round_trip(v),
                _ => self.image_round_trip(v),
            };
        }
        v
    }

    /// A vector reshaped to an image `[a, b, 1]`, a convolution or pooling, and flattened back.
    fn image_round_trip(&mut self, v: Val) -> Val {
        let n: usize = v.shape.iter().product();
        let divisors: Vec<usize> = (1..=n).filter(|&d| n.is_multiple_of(d)).collect();
        let a = self.rng.pick(&divisors);
        self.feature("Reshape");
        let v = v.then(&format!("Reshape([{a}, {}, 1])", n / a), vec![a, n / a, 1]);
        let v = if self.rng.chance(0.6) {
            self.conv2d(v)
        } else {
            self.pool(v, 2)
        };
        self.feature("Flatten");
        let n = v.shape.iter().product();
        v.then("Flatten", vec![n])
    }

    /// Zero or one more vector stage.
    fn tail(&mut self, v: Val) -> Val {
        let n = self.rng.below(2);
        self.vector_stages(v, n)
    }

    /// `Reshape` of a vector to `[a, b]`, a Dense on the last axis, and back with Flatten or
    /// Reshape.
    fn reshape_round_trip(&mut self, v: Val) -> Val {
        let n: usize = v.shape.iter().product();
        let divisors: Vec<usize> = (1..=n).filter(|&d| n.is_multiple_of(d)).collect();
        let a = self.rng.pick(&divisors);
        self.feature("Reshape");
        let target = if self.rng.chance(0.5) {
            format!("Reshape([{a}, -1])")
        } else {
            format!("Reshape([{a}, {}])", n / a)
        };
        let v = v.then(&target, vec![a, n / a]);
        let u = self.rng.pick(&[1, 2, 3]);
        let v = self.dense(v, u);
        if self.rng.chance(0.5) {
            self.feature("Flatten");
            v.then("Flatten", vec![a * u])
        } else {
            v.then("Reshape([-1])", vec![a * u])
        }
    }

    fn conv2d(&mut self, v: Val) -> Val {
        self.feature("Conv2D");
        let input = [v.shape[0], v.shape[1]];
        let filters = self.rng.pick(&[1, 2, 3, 4, 5]);
        // Each of kernel, stride and dilation is one int or, now and then, a list per axis.
        let kernel = self.per_axis(&[1, 2, 3], 0.2);
        let stride = self.per_axis(&[1, 1, 1, 2], 0.15);
        let dilation = self.per_axis(&[1, 1, 1, 1, 1, 2], 0.1);
        let mut same = self.rng.chance(0.5);
        let valid_out = |i: usize| -> Option<usize> {
            let span = (kernel[i] - 1) * dilation[i] + 1;
            (input[i] >= span).then(|| (input[i] - span) / stride[i] + 1)
        };
        let (oh, ow) = match (valid_out(0), valid_out(1)) {
            (Some(a), Some(b)) if !same => (a, b),
            _ => {
                same = true;
                (input[0].div_ceil(stride[0]), input[1].div_ceil(stride[1]))
            }
        };
        let mut s = format!("Conv2D({filters}, {}", ints(&kernel));
        let activated = self.rng.chance(0.6);
        let biased = !self.rng.chance(0.15);
        let activated = activated && {
            let a = self.activation(&[oh, ow, filters], biased);
            write!(s, ", {a}").unwrap();
            a != "linear"
        };
        if same {
            s.push_str(", padding: same");
            self.feature("padding same");
        }
        if stride != [1, 1] {
            write!(s, ", stride: {}", ints(&stride)).unwrap();
            self.feature("stride 2");
        }
        if dilation != [1, 1] {
            write!(s, ", dilation: {}", ints(&dilation)).unwrap();
            self.feature("dilation 2");
        }
        if kernel[0] != kernel[1] || stride[0] != stride[1] || dilation[0] != dilation[1] {
            self.feature("per-axis conv arguments");
        }
        if !biased {
            s.push_str(", use_bias: false");
        }
        if self.rng.chance(0.2) {
            let i = self.kernel_init();
            write!(s, ", init: {i}").unwrap();
        }
        if self.rng.chance(0.1) {
            self.feature("l2");
            s.push_str(", l2: 1e-3");
        }
        s += &self.layer_name();
        s.push(')');
        let mut out = v.then(&s, vec![oh, ow, filters]);
        out.affine = biased && !activated;
        out
    }

    /// Two per-axis values: the same one twice, or (with probability `p_list`) two picks.
    fn per_axis(&mut self, choices: &[usize], p_list: f64) -> [usize; 2] {
        if self.rng.chance(p_list) {
            [self.rng.pick(choices), self.rng.pick(choices)]
        } else {
            let k = self.rng.pick(choices);
            [k, k]
        }
    }

    /// Max or average pooling over the first `n` axes of `v`.
    fn pool(&mut self, v: Val, n: usize) -> Val {
        let max = self.rng.chance(0.5);
        let kind = format!("{}Pool{n}D", if max { "Max" } else { "Avg" });
        self.feature(&kind);
        let size = self.rng.pick(&[1, 2, 2, 3]);
        let stride = match self.rng.below(10) {
            0..=2 => 1,
            3 => 3,
            _ => size,
        };
        let mut same = self.rng.chance(0.3);
        if v.shape[..n].iter().any(|&d| d < size) {
            same = true;
        }
        let out: Vec<usize> = v.shape[..n]
            .iter()
            .map(|&d| {
                if same {
                    d.div_ceil(stride)
                } else {
                    (d - size) / stride + 1
                }
            })
            .collect();
        let mut s = format!("{kind}({size}");
        if stride != size {
            write!(s, ", stride: {stride}").unwrap();
        }
        if same {
            s.push_str(", padding: same");
        }
        s.push(')');
        let mut shape = out;
        shape.push(v.shape[n]);
        v.then(&s, shape)
    }

    /// A residual conv block (same padding keeps the shape).
    fn conv_block(&mut self, v: Val) -> Val {
        self.feature("block");
        self.feature("dim");
        let name = "conv_unit";
        if self.block_names.insert(name) {
            self.blocks.push(
                "/// Two same-padded convolutions and an identity shortcut.\n\
                 block conv_unit(x, filters: int) {\n    \
                 let h = x -> Conv2D(filters, 3, padding: same, use_bias: false) -> BatchNorm -> relu\n        \
                 -> Conv2D(dim(x, -1), 3, padding: same)\n    \
                 return relu(x + h)\n}\n"
                    .to_string(),
            );
        }
        let f = self.rng.pick(&[1, 2, 3]);
        let name = self.layer_name();
        let shape = v.shape.clone();
        v.then(&format!("conv_unit({f}{name})"), shape)
    }

    fn conv_stages(&mut self, mut v: Val, count: usize) -> Val {
        for _ in 0..count {
            v = match self.rng.below(if ATTENTION_OVER_IMAGES { 9 } else { 8 }) {
                0..=2 => self.conv2d(v),
                3 | 4 => match self.up_sampling(&v) {
                    Some(up) => up,
                    None => self.pool(v, 2),
                },
                5 => self.same_shape_stage(v),
                6 => self.conv_block(v),
                7 => {
                    // A residual on the channels (Dense acts on the last axis).
                    self.residual(v)
                }
                _ => self.attention(v),
            };
        }
        v
    }

    fn rnn(&mut self, v: Val, return_sequences: bool) -> Val {
        let kind = self.rng.pick(&["SimpleRNN", "LSTM", "GRU"]);
        self.feature(kind);
        let units = self.rng.pick(&[1, 2, 3, 5, 8]);
        let mut s = format!("{kind}({units}");
        if return_sequences {
            s.push_str(", return_sequences: true");
            self.feature("return_sequences");
        }
        if self.rng.chance(0.2) {
            let a = self.rng.pick(&["relu", "sigmoid", "linear"]);
            write!(s, ", activation: {a}").unwrap();
        }
        s += &self.layer_name();
        s.push(')');
        let shape = if return_sequences {
            vec![v.shape[0], units]
        } else {
            vec![units]
        };
        v.then(&s, shape)
    }

    /// Self- or cross-attention. The result counts as `affine`: the output projection's bias
    /// (and the value projection's, which the attention weights pass through because they sum
    /// to 1) shifts every position by the same vector.
    fn attention(&mut self, v: Val) -> Val {
        let mut out = self.attention_inner(v);
        out.affine = true;
        out
    }

    fn attention_inner(&mut self, v: Val) -> Val {
        self.feature("MultiHeadAttention");
        let d = v.last();
        let divisors: Vec<usize> = (1..=d).filter(|&h| d.is_multiple_of(h)).collect();
        let heads = self.rng.pick(&divisors);
        let causal = self.rng.chance(0.3);
        let mut args = format!("{heads}");
        if self.rng.chance(0.3) {
            write!(args, ", key_dim: {}", self.rng.pick(&[1, 2, 3])).unwrap();
        }
        if causal {
            self.feature("causal");
            args.push_str(", causal: true");
        }
        let shape = v.shape.clone();
        match self.rng.below(3) {
            0 => v.then(&format!("MultiHeadAttention({args})"), shape),
            1 => {
                // Cross-attention: a value of another width over the same steps.
                self.feature("attention (query, value)");
                let x = self.name(v);
                let dv = self.rng.pick(&[1, 3, 4]);
                let value = self.dense(x.clone(), dv);
                let value = self.name(value);
                Val::new(
                    format!("{} -> MultiHeadAttention({}, {args})", x.expr, value.expr),
                    shape,
                )
            }
            _ => {
                self.feature("attention (query, value, key)");
                let x = self.name(v);
                let value = self.dense(x.clone(), 2);
                let value = self.name(value);
                // Not a bare projection: a bias on the key adds the same score to every key
                // of a query, which the softmax cancels (its gradient would be pure noise).
                let key = self.dense(x.clone(), 3);
                let key_shape = key.shape.clone();
                let key = key.then("tanh", key_shape);
                let key = self.name(key);
                Val::new(
                    format!(
                        "MultiHeadAttention({}, {}, {}, {args})",
                        x.expr, value.expr, key.expr
                    ),
                    shape,
                )
            }
        }
    }

    fn conv1d(&mut self, v: Val) -> Val {
        self.feature("Conv1D");
        let l = v.shape[0];
        let filters = self.rng.pick(&[1, 2, 3, 4]);
        let k = self.rng.pick(&[1, 2, 3]);
        let stride = if self.rng.chance(0.2) { 2 } else { 1 };
        let dilation = if self.rng.chance(0.15) { 2 } else { 1 };
        let span = (k - 1) * dilation + 1;
        let same = self.rng.chance(0.5) || l < span;
        let out = if same {
            l.div_ceil(stride)
        } else {
            (l - span) / stride + 1
        };
        let mut s = format!("Conv1D({filters}, {k}");
        let activated = self.rng.chance(0.5);
        let activated = activated && {
            let a = self.activation(&[out, filters], true);
            write!(s, ", {a}").unwrap();
            a != "linear"
        };
        if same {
            s.push_str(", padding: same");
        }
        if stride > 1 {
            s.push_str(", stride: 2");
        }
        if dilation > 1 {
            s.push_str(", dilation: 2");
        }
        s.push(')');
        let mut v = v.then(&s, vec![out, filters]);
        v.affine = !activated;
        v
    }

    /// Now and then, keras-hub's PositionEmbedding added to a sequence `[T, D]` (its table as
    /// long as the sequence or longer).
    fn position_embedding(&mut self, v: Val) -> Val {
        if !self.ext.chance(0.3) || v.shape.len() != 2 {
            return v;
        }
        self.feature("PositionEmbedding");
        let x = self.name(v);
        let len = x.shape[0] + self.ext.below(3);
        let stage = match self.ext.below(3) {
            0 => format!("PositionEmbedding({}, {len})", x.expr),
            1 => format!("PositionEmbedding({}, sequence_length: {len})", x.expr),
            _ => format!("PositionEmbedding({}, {len}, init: he_uniform)", x.expr),
        };
        Val::new(format!("{} + {stage}", x.expr), x.shape)
    }

    /// Stages on a sequence `[T, D]`.
    fn seq_stages(&mut self, mut v: Val, count: usize) -> Val {
        v = self.position_embedding(v);
        for _ in 0..count {
            v = match self.rng.below(10) {
                0 | 1 => self.rnn(v, true),
                2 | 3 => self.attention(v),
                4 => self.conv1d(v),
                5 => self.pool(v, 1),
                6 => {
                    let u = self.rng.pick(UNITS);
                    self.dense(v, u)
                }
                7 => self.same_shape_stage(v),
                8 => self.residual(v),
                _ => {
                    if self.rng.chance(0.5) {
                        self.concat(v)
                    } else {
                        self.block_stage(v)
                    }
                }
            };
        }
        v
    }

    /// From a sequence to a vector.
    fn seq_to_vector(&mut self, v: Val) -> Val {
        match self.rng.below(4) {
            0 => self.rnn(v, false),
            1 => {
                let kind = self.rng.pick(&["GlobalAvgPool1D", "GlobalMaxPool1D"]);
                self.feature(kind);
                let c = v.last();
                v.then(kind, vec![c])
            }
            2 => {
                self.feature("Flatten");
                let n = v.shape.iter().product();
                v.then("Flatten", vec![n])
            }
            _ => {
                self.feature("Reshape");
                let n = v.shape.iter().product();
                v.then("Reshape([-1])", vec![n])
            }
        }
    }

    /// The output stage for `loss`, from a value `[.., D]`: returns the output value and the
    /// loss text.
    fn head(&mut self, v: Val, loss: LossKind) -> (Val, String) {
        let logits = self.rng.chance(0.3);
        let from_logits = |name: &str| {
            if logits {
                format!("{name}(from_logits: true)")
            } else {
                name.to_string()
            }
        };
        match loss {
            LossKind::Mse | LossKind::Mae | LossKind::Huber => {
                let k = self.rng.pick(&[1, 2, 3, 5]);
                let act = self
                    .rng
                    .pick(&["", ", tanh", ", sigmoid", ", linear", ", softplus"]);
                let mut shape = v.shape.clone();
                *shape.last_mut().unwrap() = k;
                let out = v.then(&format!("Dense({k}{act})"), shape);
                let text = match loss {
                    LossKind::Mse => "mse".to_string(),
                    LossKind::Mae => "mae".to_string(),
                    _ => {
                        if self.rng.chance(0.5) {
                            "huber".to_string()
                        } else {
                            "huber(delta: 0.5)".to_string()
                        }
                    }
                };
                (out, text)
            }
            LossKind::Binary => {
                let mut shape = v.shape.clone();
                *shape.last_mut().unwrap() = 1;
                let out = if logits {
                    v.then("Dense(1)", shape)
                } else if self.rng.chance(0.5) {
                    v.then("Dense(1, sigmoid)", shape)
                } else {
                    v.then("Dense(1) -> sigmoid", shape)
                };
                (out, from_logits("binary_crossentropy"))
            }
            LossKind::Categorical | LossKind::Sparse => {
                let k = self.rng.pick(&[2, 3, 5, 10]);
                let mut shape = v.shape.clone();
                *shape.last_mut().unwrap() = k;
                let out = if logits {
                    v.then(&format!("Dense({k})"), shape)
                } else if self.rng.chance(0.5) {
                    v.then(&format!("Dense({k}, softmax)"), shape)
                } else {
                    v.then(&format!("Dense({k}) -> softmax"), shape)
                };
                let name = if loss == LossKind::Sparse {
                    "sparse_categorical_crossentropy"
                } else {
                    "categorical_crossentropy"
                };
                (out, from_logits(name))
            }
        }
    }

    fn loss_kind(&mut self) -> LossKind {
        self.rng.pick(&[
            LossKind::Mse,
            LossKind::Mae,
            LossKind::Huber,
            LossKind::Binary,
            LossKind::Categorical,
            LossKind::Sparse,
            LossKind::Sparse,
        ])
    }

    fn optimizer(&mut self) -> (String, String) {
        let lr = self.rng.pick(&["0.01", "1e-3", "0.05"]);
        let (name, mut s) = match self.rng.below(7) {
            0 => ("SGD", format!("SGD(lr: {lr})")),
            1 => {
                let nesterov = if self.rng.chance(0.5) {
                    ", nesterov: true"
                } else {
                    ""
                };
                ("SGD", format!("SGD(lr: {lr}, momentum: 0.9{nesterov})"))
            }
            2 => (
                "Adam",
                if self.rng.chance(0.5) {
                    format!("Adam(lr: {lr})")
                } else {
                    format!("Adam(lr: {lr}, beta1: 0.8, beta2: 0.99, epsilon: 1e-6)")
                },
            ),
            3 => ("AdamW", format!("AdamW(lr: {lr}, weight_decay: 0.01)")),
            4 => (
                "RMSprop",
                if self.rng.chance(0.5) {
                    format!("RMSprop(lr: {lr})")
                } else {
                    format!("RMSprop(lr: {lr}, rho: 0.8, momentum: 0.5, epsilon: 1e-6)")
                },
            ),
            5 => (
                "Adagrad",
                format!("Adagrad(lr: {lr}, initial_accumulator: 0.2)"),
            ),
            _ => ("Adam", "Adam".to_string()),
        };
        let mut extra = Vec::new();
        if self.rng.chance(0.2) && name != "AdamW" {
            self.feature("weight_decay");
            extra.push("weight_decay: 0.004".to_string());
        }
        match self.rng.below(8) {
            0 => {
                self.feature("clip_norm");
                extra.push("clip_norm: 0.5".into());
            }
            1 => {
                self.feature("global_clip_norm");
                extra.push("global_clip_norm: 1".into());
            }
            2 => {
                self.feature("clip_value");
                extra.push("clip_value: 0.1".into());
            }
            _ => {}
        }
        if !extra.is_empty() {
            if s.ends_with(')') {
                s.pop();
                s = format!("{s}, {})", extra.join(", "));
            } else {
                s = format!("{s}({})", extra.join(", "));
            }
        }
        (name.to_string(), s)
    }

    fn schedule(&mut self) -> Option<String> {
        let s = match self.rng.below(8) {
            0 => "Step(every: 1 steps, gamma: 0.5)",
            1 => "Exponential(0.9, every: 1 step)",
            2 => "Exponential(0.5, every: 2 steps, staircase: true)",
            3 => "Cosine(warmup: 1 step, min_lr: 1e-4)",
            4 => "Cosine",
            5 => "ReduceOnPlateau(monitor: loss, patience: 1)",
            6 => "Constant",
            _ => return None,
        };
        let name = s.split('(').next().unwrap_or(s);
        self.feature(name);
        Some(s.to_string())
    }

    fn metrics(&mut self, losses: &[LossKind]) -> Option<String> {
        if !self.rng.chance(0.4) || losses.len() != 1 {
            return None;
        }
        let m = match losses[0] {
            LossKind::Binary => "[accuracy, precision, recall]",
            LossKind::Sparse | LossKind::Categorical => "[accuracy, top_k(2)]",
            _ => "[mae, mse]",
        };
        Some(m.to_string())
    }

    fn model(&mut self, seed: u64) -> GeneratedModel {
        self.batch = self.rng.pick(BATCHES);
        let batch = self.batch;
        let family = self.rng.below(6);
        let mut inputs: Vec<String> = Vec::new();
        let mut outputs: Vec<(String, LossKind)> = Vec::new();
        let depth = 1 + self.rng.below(4);
        let trunk = match family {
            0 | 1 => {
                // Vector MLP, from f32[F] or f32[A, B].
                let x = if self.rng.chance(0.6) {
                    let f = self.rng.pick(&[1, 3, 5, 17]);
                    inputs.push(format!("input x: f32[{f}]"));
                    Val::new("x", vec![f])
                } else {
                    let (a, b) = (self.rng.pick(&[2, 3]), self.rng.pick(&[1, 3, 5]));
                    inputs.push(format!("input x: f32[{a}, {b}]"));
                    let x = Val::new("x", vec![a, b]);
                    if self.rng.chance(0.5) {
                        self.feature("Flatten");
                        x.then("Flatten", vec![a * b])
                    } else {
                        // Dense on [A, B] first, then flatten.
                        let u = self.rng.pick(UNITS);
                        let x = self.dense(x, u);
                        self.feature("Flatten");
                        x.then("Flatten", vec![a * u])
                    }
                };
                self.vector_stages(x, depth)
            }
            2 => {
                // Conv net on f32[H, W, C].
                let (h, w, c) = (
                    self.rng.pick(&[3, 5, 6, 8]),
                    self.rng.pick(&[4, 5, 7]),
                    self.rng.pick(&[1, 2, 3]),
                );
                inputs.push(format!("input image: f32[{h}, {w}, {c}]"));
                let x = Val::new("image", vec![h, w, c]);
                let x = self.conv_stages(x, depth);
                match self.rng.below(5) {
                    0 => {
                        // A per-pixel head on [H, W, C] (segmentation-like).
                        self.feature("per-pixel output");
                        x
                    }
                    1 => {
                        let kind = self.rng.pick(&["GlobalAvgPool2D", "GlobalMaxPool2D"]);
                        self.feature(kind);
                        let c = x.last();
                        let x = x.then(kind, vec![c]);
                        self.tail(x)
                    }
                    _ => {
                        self.feature("Flatten");
                        let n = x.shape.iter().product();
                        let x = x.then("Flatten", vec![n]);
                        self.tail(x)
                    }
                }
            }
            3 => {
                // Sequence model on f32[T, C].
                let (t, c) = (self.rng.pick(&[1, 3, 4, 6]), self.rng.pick(&[1, 2, 3, 4]));
                inputs.push(format!("input series: f32[{t}, {c}]"));
                let x = Val::new("series", vec![t, c]);
                let x = self.seq_stages(x, depth);
                if self.rng.chance(0.25) {
                    // A per-step head on [T, D].
                    self.feature("per-step output");
                    x
                } else {
                    let x = self.seq_to_vector(x);
                    self.tail(x)
                }
            }
            4 => {
                // Text: Embedding over i32 tokens.
                let l = self.rng.pick(&[1, 3, 5, 8]);
                let vocab = self.rng.pick(&[5, 7, 20]);
                let dim = self.rng.pick(&[2, 3, 4, 8]);
                inputs.push(format!("input tokens: i32[{l}]"));
                self.feature("Embedding");
                let mut s = format!("Embedding({vocab}, {dim}");
                if self.rng.chance(0.3) {
                    let i = self.kernel_init();
                    write!(s, ", init: {i}").unwrap();
                }
                s.push(')');
                let x = Val::new("tokens", vec![l]).then(&s, vec![l, dim]);
                let x = self.seq_stages(x, depth - 1);
                let x = self.seq_to_vector(x);
                self.tail(x)
            }
            _ => {
                // Two inputs joined by concat, then one or two outputs.
                self.feature("two inputs");
                let fa = self.rng.pick(&[1, 3, 5]);
                inputs.push(format!("input a: f32[{fa}]"));
                let a = Val::new("a", vec![fa]);
                let a = self.vector_stages(a, 1);
                let a = self.name(a);
                let b = if self.rng.chance(0.5) {
                    let l = self.rng.pick(&[2, 3]);
                    let vocab = self.rng.pick(&[3, 5]);
                    inputs.push(format!("input b: i32[{l}]"));
                    self.feature("Embedding");
                    Val::new("b", vec![l])
                        .then(&format!("Embedding({vocab}, 2)"), vec![l, 2])
                        .then("Flatten", vec![2 * l])
                } else {
                    let fb = self.rng.pick(&[2, 17]);
                    inputs.push(format!("input b: f32[{fb}]"));
                    let b = Val::new("b", vec![fb]);
                    self.vector_stages(b, 1)
                };
                let b = self.name(b);
                self.feature("concat");
                let joined = Val::new(
                    format!("concat({}, {})", a.expr, b.expr),
                    vec![a.last() + b.last()],
                );
                self.tail(joined)
            }
        };
        // Outputs: one, or two from the same trunk (each with its own loss).
        let two = self.rng.chance(if family == 5 { 0.6 } else { 0.1 });
        let mut loss_texts = Vec::new();
        if two {
            self.feature("two outputs");
            let t = self.name(trunk);
            for name in ["first", "second"] {
                let kind = self.loss_kind();
                let (out, text) = self.head(t.clone(), kind);
                self.body.push(format!("output {name} = {}", out.expr));
                outputs.push((name.into(), kind));
                loss_texts.push(text);
            }
        } else {
            let kind = self.loss_kind();
            let (out, text) = self.head(trunk, kind);
            if self.rng.chance(0.1) {
                // An unnamed output is called `output`.
                self.feature("unnamed output");
                self.body.push(format!("output {}", out.expr));
                outputs.push(("output".into(), kind));
            } else {
                self.body.push(format!("output y = {}", out.expr));
                outputs.push(("y".into(), kind));
            }
            loss_texts.push(text);
        }
        let kinds: Vec<LossKind> = outputs.iter().map(|o| o.1).collect();
        for k in &kinds {
            self.feature(loss_name(*k));
        }
        let loss_line = if outputs.len() == 1 {
            format!("loss: {}", loss_texts[0])
        } else {
            let entries: Vec<String> = outputs
                .iter()
                .zip(&loss_texts)
                .map(|((n, _), t)| format!("{n}: {t}"))
                .collect();
            format!("loss: {{ {} }}", entries.join(", "))
        };
        let loss_weights = (outputs.len() > 1 && self.rng.chance(0.5))
            .then(|| format!("loss_weights: {{ {}: 0.5 }}", outputs[1].0));
        let (opt_name, opt) = self.optimizer();
        self.feature(&opt_name);
        let schedule = self.schedule();
        let metrics = self.metrics(&kinds);

        let mut src = String::new();
        writeln!(src, "// Generated by fm-tests random_model, seed {seed}.").unwrap();
        if self.rng.chance(0.3) {
            src.push_str("version 0.1\n\n");
        }
        for b in &self.blocks {
            src.push_str(b);
            src.push('\n');
        }
        let model_name = format!("random_{seed}");
        writeln!(src, "/// Random model {seed}.").unwrap();
        writeln!(src, "model {model_name} {{").unwrap();
        for i in &inputs {
            writeln!(src, "    {i}").unwrap();
        }
        for s in &self.body {
            writeln!(src, "    {s}").unwrap();
        }
        src.push_str("}\n\n");
        if self.rng.chance(0.5) {
            writeln!(src, "train {model_name} {{").unwrap();
        } else {
            src.push_str("train {\n");
        }
        writeln!(src, "    {loss_line}").unwrap();
        if let Some(w) = loss_weights {
            writeln!(src, "    {w}").unwrap();
        }
        writeln!(src, "    optimizer: {opt}").unwrap();
        if let Some(s) = schedule {
            writeln!(src, "    schedule: {s}").unwrap();
        }
        if let Some(m) = metrics {
            writeln!(src, "    metrics: {m}").unwrap();
        }
        writeln!(src, "    epochs: 1").unwrap();
        writeln!(src, "    batch_size: {batch}").unwrap();
        writeln!(src, "    seed: {}", seed % 1000).unwrap();
        src.push_str("}\n");

        GeneratedModel {
            seed,
            source: src,
            batch,
            features: std::mem::take(&mut self.features),
            losses: kinds.iter().map(|k| loss_name(*k).to_string()).collect(),
            optimizer: opt_name,
        }
    }
}

fn loss_name(k: LossKind) -> &'static str {
    match k {
        LossKind::Mse => "mse",
        LossKind::Mae => "mae",
        LossKind::Huber => "huber",
        LossKind::Binary => "binary_crossentropy",
        LossKind::Categorical => "categorical_crossentropy",
        LossKind::Sparse => "sparse_categorical_crossentropy",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic() {
        for seed in 0..20 {
            assert_eq!(generate(seed).source, generate(seed).source);
        }
        assert_ne!(generate(1).source, generate(2).source);
    }
}
