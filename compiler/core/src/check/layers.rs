//! Shape inference and parameter tables for every built-in layer and function (language.md
//! sections 5 and 7). Each rule takes the bound attributes and the input tensors and returns the
//! graph op, the per-sample output shape and the parameters the layer owns, or reports why the
//! input does not fit (primary span: the call; secondary: where the input's shape came from).

use super::bind::{resolve_axis, ActSpec, Bound};
use super::table::{ActivationFn, Callable, LayerKind, Sig};
use super::values::{dims_str, shape_str, Tv};
use super::Ctx;
use crate::graph::{Activation, DType, Init, NodeId, Op, Padding, PoolKind, RnnKind, Role};
use fm_codes as codes;
use fm_grammar::ast::Span;
use fm_grammar::Diagnostic;

/// A parameter a layer owns, before it gets its scoped name (`LAYER.` + the role's suffix).
pub struct ParamDef {
    pub role: Role,
    pub shape: Vec<usize>,
    pub init: Init,
    pub trainable: bool,
    pub l1: f64,
    pub l2: f64,
}

fn param(role: Role, shape: Vec<usize>, init: Init) -> ParamDef {
    ParamDef {
        role,
        shape,
        init,
        trainable: true,
        l1: 0.0,
        l2: 0.0,
    }
}

#[allow(clippy::large_enum_variant)]
pub enum LayerOut {
    /// `dim(x, axis)`.
    Int(i64),
    Node {
        op: Op,
        inputs: Vec<NodeId>,
        shape: Vec<usize>,
        dtype: DType,
        params: Vec<ParamDef>,
        /// Set by a `valid`-padded convolution that shrank the spatial size.
        shrink: Option<(Span, String)>,
    },
}

fn node(op: Op, inputs: &[Tv], shape: Vec<usize>, params: Vec<ParamDef>) -> LayerOut {
    LayerOut::Node {
        op,
        inputs: inputs.iter().map(|t| t.node).collect(),
        shape,
        dtype: DType::F32,
        params,
        shrink: None,
    }
}

/// Reports an input that does not fit: primary at the call, secondary at the input's origin.
fn input_error(
    ctx: &mut Ctx,
    code: fm_codes::Code,
    message: String,
    span: Span,
    label: String,
    t: &Tv,
) -> Option<LayerOut> {
    let mut d = Diagnostic::error(code, message).with_primary(span, label);
    if t.origin.end <= span.start || t.origin.start >= span.end {
        d = d.with_secondary(
            t.origin,
            format!("this is {}", shape_str(t.dtype, &t.shape)),
        );
    }
    ctx.emit(d);
    None
}

fn need_f32(ctx: &mut Ctx, sig: &Sig, t: &Tv, span: Span) -> Option<()> {
    if t.dtype == DType::F32 {
        return Some(());
    }
    let mut d = Diagnostic::error(codes::E0209, format!("`{}` needs an f32 input", sig.name))
        .with_primary(span, format!("found {}", shape_str(t.dtype, &t.shape)));
    if t.origin.end <= span.start || t.origin.start >= span.end {
        d = d.with_secondary(
            t.origin,
            format!("this is {}", shape_str(t.dtype, &t.shape)),
        );
    }
    d = d.with_help("integer token ids go through `Embedding` first");
    ctx.emit(d);
    None
}

fn need_rank(ctx: &mut Ctx, sig: &Sig, t: &Tv, rank: usize, span: Span) -> Option<()> {
    if t.shape.len() == rank {
        return Some(());
    }
    input_error(
        ctx,
        codes::E0205,
        format!(
            "`{}` expects an input of shape {}",
            sig.name, sig.input_desc
        ),
        span,
        format!(
            "found {} (rank {}, expected rank {rank})",
            shape_str(t.dtype, &t.shape),
            t.shape.len()
        ),
        t,
    )
    .map(|_| ())
}

/// The number of elements of a shape; `None` when it overflows.
pub fn numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

fn too_large(ctx: &mut Ctx, sig: &Sig, span: Span) -> Option<LayerOut> {
    ctx.error(
        codes::E0210,
        format!("`{}` would create a tensor that is too large", sig.name),
        span,
        "the element count overflows",
    );
    None
}

fn activation(ctx: &mut Ctx, spec: ActSpec, rank: usize, arg_span: Span) -> Option<Activation> {
    match spec.resolve(rank) {
        Ok(a) => Some(a),
        Err(axis) => {
            ctx.error(
                codes::E0211,
                format!("axis {axis} is out of range"),
                arg_span,
                format!("the value has {rank} per-sample axes (the batch cannot be addressed)"),
            );
            None
        }
    }
}

fn arg_span(b: &Bound, name: &str, span: Span) -> Span {
    b.given(name).map(|(_, s)| *s).unwrap_or(span)
}

fn spatial(dims: &[usize]) -> String {
    dims.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

/// Output size of one spatial axis; `None` when the window does not fit (`valid`).
pub fn conv_out(
    input: usize,
    k: usize,
    stride: usize,
    dilation: usize,
    pad: Padding,
) -> Option<usize> {
    match pad {
        Padding::Same => Some(input.div_ceil(stride)),
        Padding::Valid => {
            let eff = (k - 1).checked_mul(dilation)?.checked_add(1)?;
            if input < eff {
                None
            } else {
                Some((input - eff) / stride + 1)
            }
        }
    }
}

/// Runs the rule for `sig` (a layer or function row). `inputs` already has the count the table
/// allows. The dispatch is on the row's [`Callable`], matched exhaustively.
pub fn infer(ctx: &mut Ctx, sig: &Sig, b: &Bound, inputs: &[Tv], span: Span) -> Option<LayerOut> {
    let x = inputs.first()?;
    let Some(callable) = sig.callable() else {
        panic!(
            "internal compiler error: `{}` is not a layer or function",
            sig.name
        );
    };
    match callable {
        Callable::Layer(kind) => layer(ctx, kind, sig, b, inputs, span),
        Callable::Activation(func) => {
            let mut spec = ActSpec {
                func,
                alpha: 0.01,
                axis: -1,
            };
            if func == ActivationFn::LeakyRelu {
                spec.alpha = b.float(ctx, "alpha")?;
            }
            if matches!(func, ActivationFn::Softmax | ActivationFn::LogSoftmax) {
                spec.axis = b.int(ctx, "axis")?;
            }
            need_f32(ctx, sig, x, span)?;
            let act = activation(ctx, spec, x.shape.len(), arg_span(b, "axis", span))?;
            Some(node(Op::Activation(act), inputs, x.shape.clone(), vec![]))
        }
        Callable::Concat => concat(ctx, sig, b, inputs, span),
        Callable::Dim => {
            let axis = b.int(ctx, "axis")?;
            match resolve_axis(axis, x.shape.len()) {
                Some(a) => Some(LayerOut::Int(x.shape[a] as i64)),
                None => {
                    ctx.error(
                        codes::E0211,
                        format!(
                            "axis {axis} is out of range for {}",
                            shape_str(x.dtype, &x.shape)
                        ),
                        arg_span(b, "axis", span),
                        format!("expected an axis in [-{n}, {n})", n = x.shape.len()),
                    );
                    None
                }
            }
        }
    }
}

/// The rule of each layer.
fn layer(
    ctx: &mut Ctx,
    kind: LayerKind,
    sig: &Sig,
    b: &Bound,
    inputs: &[Tv],
    span: Span,
) -> Option<LayerOut> {
    let x = inputs.first()?;
    match kind {
        LayerKind::Dense => dense(ctx, sig, b, x, span),
        LayerKind::Conv2D => conv(ctx, sig, b, x, span, 2),
        LayerKind::Conv1D => conv(ctx, sig, b, x, span, 1),
        LayerKind::MaxPool2D => pool(ctx, sig, b, x, span, 2, PoolKind::Max),
        LayerKind::AvgPool2D => pool(ctx, sig, b, x, span, 2, PoolKind::Avg),
        LayerKind::MaxPool1D => pool(ctx, sig, b, x, span, 1, PoolKind::Max),
        LayerKind::AvgPool1D => pool(ctx, sig, b, x, span, 1, PoolKind::Avg),
        LayerKind::GlobalAvgPool2D => global_pool(ctx, sig, x, span, 2, PoolKind::Avg),
        LayerKind::GlobalMaxPool2D => global_pool(ctx, sig, x, span, 2, PoolKind::Max),
        LayerKind::GlobalAvgPool1D => global_pool(ctx, sig, x, span, 1, PoolKind::Avg),
        LayerKind::GlobalMaxPool1D => global_pool(ctx, sig, x, span, 1, PoolKind::Max),
        LayerKind::Flatten => {
            let Some(n) = numel(&x.shape) else {
                return too_large(ctx, sig, span);
            };
            Some(LayerOut::Node {
                op: Op::Flatten,
                inputs: vec![x.node],
                shape: vec![n],
                dtype: x.dtype,
                params: vec![],
                shrink: None,
            })
        }
        LayerKind::Reshape => reshape(ctx, sig, b, x, span),
        LayerKind::Dropout => {
            let rate = b.float(ctx, "rate")?;
            need_f32(ctx, sig, x, span)?;
            Some(node(Op::Dropout { rate }, inputs, x.shape.clone(), vec![]))
        }
        LayerKind::BatchNorm => {
            let momentum = b.float(ctx, "momentum")?;
            let epsilon = b.float(ctx, "epsilon")?;
            need_f32(ctx, sig, x, span)?;
            let c = *x.shape.last()?;
            let mut params = vec![
                param(Role::Gamma, vec![c], Init::Ones),
                param(Role::Beta, vec![c], Init::Zeros),
                param(Role::MovingMean, vec![c], Init::Zeros),
                param(Role::MovingVariance, vec![c], Init::Ones),
            ];
            params[2].trainable = false;
            params[3].trainable = false;
            Some(node(
                Op::BatchNorm { momentum, epsilon },
                inputs,
                x.shape.clone(),
                params,
            ))
        }
        LayerKind::LayerNorm => {
            let epsilon = b.float(ctx, "epsilon")?;
            need_f32(ctx, sig, x, span)?;
            let c = *x.shape.last()?;
            let params = vec![
                param(Role::Gamma, vec![c], Init::Ones),
                param(Role::Beta, vec![c], Init::Zeros),
            ];
            Some(node(
                Op::LayerNorm { epsilon },
                inputs,
                x.shape.clone(),
                params,
            ))
        }
        LayerKind::GroupNorm => group_norm(ctx, sig, b, x, span),
        LayerKind::UpSampling2D => up_sampling(ctx, sig, b, x, span, 2),
        LayerKind::Embedding => {
            let vocab = b.int(ctx, "vocab")? as usize;
            let dim = b.int(ctx, "dim")? as usize;
            let init = b.init(ctx, "init")?;
            if x.dtype != DType::I32 {
                let mut d = Diagnostic::error(codes::E0209, "`Embedding` needs i32 token ids")
                    .with_primary(span, format!("found {}", shape_str(x.dtype, &x.shape)));
                if x.origin.end <= span.start || x.origin.start >= span.end {
                    d = d.with_secondary(
                        x.origin,
                        format!("this is {}", shape_str(x.dtype, &x.shape)),
                    );
                }
                ctx.emit(d.with_help("declare the input as `i32[...]`"));
                return None;
            }
            let mut shape = x.shape.clone();
            shape.push(dim);
            numel(&shape).or_else(|| too_large(ctx, sig, span).map(|_| 0))?;
            Some(node(
                Op::Embedding { vocab, dim },
                inputs,
                shape,
                vec![param(Role::Embeddings, vec![vocab, dim], init)],
            ))
        }
        LayerKind::PositionEmbedding => {
            let sequence_length = b.int(ctx, "sequence_length")? as usize;
            let init = b.init(ctx, "init")?;
            need_f32(ctx, sig, x, span)?;
            need_rank(ctx, sig, x, 2, span)?;
            let (len, dim) = (x.shape[0], x.shape[1]);
            if len > sequence_length {
                return input_error(
                    ctx,
                    codes::E0225,
                    format!(
                        "`PositionEmbedding` holds {sequence_length} positions, the sequence has {len}"
                    ),
                    span,
                    format!(
                        "a sequence of {len} steps needs `sequence_length` of at least {len}"
                    ),
                    x,
                );
            }
            numel(&[sequence_length, dim]).or_else(|| too_large(ctx, sig, span).map(|_| 0))?;
            Some(node(
                Op::PositionEmbedding { sequence_length },
                inputs,
                x.shape.clone(),
                vec![param(Role::Embeddings, vec![sequence_length, dim], init)],
            ))
        }
        LayerKind::Rescale => {
            let scale = b.float(ctx, "scale")?;
            let offset = b.float(ctx, "offset")?;
            Some(node(
                Op::Rescale { scale, offset },
                inputs,
                x.shape.clone(),
                vec![],
            ))
        }
        LayerKind::SimpleRnn => rnn(ctx, sig, b, x, span, RnnKind::Simple),
        LayerKind::Lstm => rnn(ctx, sig, b, x, span, RnnKind::Lstm),
        LayerKind::Gru => rnn(ctx, sig, b, x, span, RnnKind::Gru),
        LayerKind::MultiHeadAttention => attention(ctx, sig, b, inputs, span),
    }
}

fn dense(ctx: &mut Ctx, sig: &Sig, b: &Bound, x: &Tv, span: Span) -> Option<LayerOut> {
    let units = b.int(ctx, "units")? as usize;
    let act = b.activation(ctx, "activation")?;
    let use_bias = b.bool(ctx, "use_bias")?;
    let init = b.init(ctx, "init")?;
    let bias_init = b.init(ctx, "bias_init")?;
    let l1 = b.float(ctx, "l1")?;
    let l2 = b.float(ctx, "l2")?;
    need_f32(ctx, sig, x, span)?;
    let Some(&input) = x.shape.last() else {
        return input_error(
            ctx,
            codes::E0205,
            "`Dense` expects an input of shape [.., in]".into(),
            span,
            format!("found a scalar {}", shape_str(x.dtype, &x.shape)),
            x,
        );
    };
    let mut shape = x.shape.clone();
    *shape.last_mut()? = units;
    let activation = activation(ctx, act, shape.len(), arg_span(b, "activation", span))?;
    input
        .checked_mul(units)
        .or_else(|| too_large(ctx, sig, span).map(|_| 0))?;
    let mut kernel = param(Role::Kernel, vec![input, units], init);
    kernel.l1 = l1;
    kernel.l2 = l2;
    let mut params = vec![kernel];
    if use_bias {
        params.push(param(Role::Bias, vec![units], bias_init));
    }
    Some(LayerOut::Node {
        op: Op::Dense {
            units,
            activation,
            use_bias,
        },
        inputs: vec![x.node],
        shape,
        dtype: DType::F32,
        params,
        shrink: None,
    })
}

fn conv(ctx: &mut Ctx, sig: &Sig, b: &Bound, x: &Tv, span: Span, n: usize) -> Option<LayerOut> {
    let filters = b.int(ctx, "filters")? as usize;
    let kernel = b.ints(ctx, "kernel", n)?;
    let act = b.activation(ctx, "activation")?;
    let stride = b.ints(ctx, "stride", n)?;
    let padding = padding(ctx, b)?;
    let dilation = b.ints(ctx, "dilation", n)?;
    let use_bias = b.bool(ctx, "use_bias")?;
    let init = b.init(ctx, "init")?;
    let bias_init = b.init(ctx, "bias_init")?;
    let l1 = b.float(ctx, "l1")?;
    let l2 = b.float(ctx, "l2")?;
    need_f32(ctx, sig, x, span)?;
    need_rank(ctx, sig, x, n + 1, span)?;
    let (shape, shrink) = spatial_out(ctx, sig, b, x, span, &kernel, &stride, &dilation, padding)?;
    let mut shape = shape;
    shape.push(filters);
    let activation = activation(ctx, act, shape.len(), arg_span(b, "activation", span))?;
    let cin = x.shape[n];
    let mut kshape = kernel.clone();
    kshape.push(cin);
    kshape.push(filters);
    numel(&kshape).or_else(|| too_large(ctx, sig, span).map(|_| 0))?;
    let mut k = param(Role::Kernel, kshape, init);
    k.l1 = l1;
    k.l2 = l2;
    let mut params = vec![k];
    if use_bias {
        params.push(param(Role::Bias, vec![filters], bias_init));
    }
    Some(LayerOut::Node {
        op: Op::Conv {
            filters,
            kernel,
            stride,
            padding,
            dilation,
            activation,
            use_bias,
        },
        inputs: vec![x.node],
        shape,
        dtype: DType::F32,
        params,
        shrink,
    })
}

/// GroupNorm: `groups` must divide the channels (the last axis); `gamma` and `beta` per channel.
fn group_norm(ctx: &mut Ctx, sig: &Sig, b: &Bound, x: &Tv, span: Span) -> Option<LayerOut> {
    let groups = b.int(ctx, "groups")? as usize;
    let epsilon = b.float(ctx, "epsilon")?;
    need_f32(ctx, sig, x, span)?;
    let Some(&c) = x.shape.last() else {
        return input_error(
            ctx,
            codes::E0205,
            "`GroupNorm` expects an input of shape [.., C]".into(),
            span,
            format!("found a scalar {}", shape_str(x.dtype, &x.shape)),
            x,
        );
    };
    if c % groups != 0 {
        let mut d = Diagnostic::error(
            codes::E0224,
            format!("{groups} groups do not divide the {c} channels of `GroupNorm`'s input"),
        )
        .with_primary(
            arg_span(b, "groups", span),
            format!("{c} is not a multiple of {groups}"),
        );
        if x.origin.end <= span.start || x.origin.start >= span.end {
            d = d.with_secondary(
                x.origin,
                format!("this is {}", shape_str(x.dtype, &x.shape)),
            );
        }
        let help = if b.is_given("groups") {
            "choose a group count that divides the channels".to_string()
        } else {
            format!("the default is 32 groups; pass `groups:` with a divisor of {c}")
        };
        ctx.emit(d.with_help(help));
        return None;
    }
    let params = vec![
        param(Role::Gamma, vec![c], Init::Ones),
        param(Role::Beta, vec![c], Init::Zeros),
    ];
    Some(node(
        Op::GroupNorm { groups, epsilon },
        std::slice::from_ref(x),
        x.shape.clone(),
        params,
    ))
}

/// UpSampling (nearest): every spatial axis grows by its factor.
fn up_sampling(
    ctx: &mut Ctx,
    sig: &Sig,
    b: &Bound,
    x: &Tv,
    span: Span,
    n: usize,
) -> Option<LayerOut> {
    let size = b.ints(ctx, "size", n)?;
    // `nearest` is the only interpolation; the table rejects any other.
    b.sym(ctx, "interpolation")?;
    need_f32(ctx, sig, x, span)?;
    need_rank(ctx, sig, x, n + 1, span)?;
    let mut shape = Vec::with_capacity(n + 1);
    for (&d, &f) in x.shape.iter().zip(&size) {
        let Some(grown) = d.checked_mul(f) else {
            return too_large(ctx, sig, span);
        };
        shape.push(grown);
    }
    shape.push(x.shape[n]);
    numel(&shape).or_else(|| too_large(ctx, sig, span).map(|_| 0))?;
    Some(node(
        Op::UpSampling { size },
        std::slice::from_ref(x),
        shape,
        vec![],
    ))
}

fn padding(ctx: &mut Ctx, b: &Bound) -> Option<Padding> {
    Some(match b.sym(ctx, "padding")?.as_str() {
        "same" => Padding::Same,
        _ => Padding::Valid,
    })
}

/// Where a `valid` convolution shrank the spatial size, and the label that says so.
type Shrink = Option<(Span, String)>;

/// Spatial output dims (without channels) and, for a shrinking `valid` convolution, the label
/// that explains it.
#[allow(clippy::too_many_arguments)]
fn spatial_out(
    ctx: &mut Ctx,
    sig: &Sig,
    b: &Bound,
    x: &Tv,
    span: Span,
    kernel: &[usize],
    stride: &[usize],
    dilation: &[usize],
    pad: Padding,
) -> Option<(Vec<usize>, Shrink)> {
    let n = kernel.len();
    let input = &x.shape[..n];
    let mut out = Vec::new();
    for i in 0..n {
        match conv_out(input[i], kernel[i], stride[i], dilation[i], pad) {
            Some(o) if o > 0 => out.push(o),
            _ => {
                let window: Vec<usize> =
                    (0..n).map(|j| (kernel[j] - 1) * dilation[j] + 1).collect();
                let pool = matches!(
                    sig.callable(),
                    Some(Callable::Layer(
                        LayerKind::MaxPool1D
                            | LayerKind::MaxPool2D
                            | LayerKind::AvgPool1D
                            | LayerKind::AvgPool2D
                    ))
                );
                let what = if pool { "window" } else { "kernel" };
                let mut d = Diagnostic::error(
                    codes::E0208,
                    format!("the {what} of `{}` does not fit its input", sig.name),
                )
                .with_primary(
                    span,
                    format!(
                        "a {what} of size {} does not fit in {} (input {})",
                        spatial(&window),
                        spatial(input),
                        shape_str(x.dtype, &x.shape)
                    ),
                );
                if x.origin.end <= span.start || x.origin.start >= span.end {
                    d = d.with_secondary(
                        x.origin,
                        format!("this is {}", shape_str(x.dtype, &x.shape)),
                    );
                }
                d = d.with_help(format!("use a smaller {what}, or `padding: same`"));
                ctx.emit(d);
                return None;
            }
        }
    }
    // Only a stride-1 `valid` convolution shrinks for want of padding; a strided one
    // downsamples on purpose, and says so instead.
    let strided = stride.iter().any(|&st| st > 1);
    let conv = matches!(
        sig.callable(),
        Some(Callable::Layer(LayerKind::Conv1D | LayerKind::Conv2D))
    );
    let shrink = (out != input && conv).then(|| {
        let message = if strided {
            let shown: Vec<String> = stride.iter().map(|st| st.to_string()).collect();
            format!(
                "`stride: {}` downsamples {} to {}",
                if shown.iter().all(|x| *x == shown[0]) {
                    shown[0].clone()
                } else {
                    format!("[{}]", shown.join(", "))
                },
                spatial(input),
                spatial(&out)
            )
        } else {
            let default = if b.is_given("padding") {
                ""
            } else {
                " (the default)"
            };
            format!(
                "`padding: valid`{default} shrinks {} to {}",
                spatial(input),
                spatial(&out)
            )
        };
        (span, message)
    });
    Some((out, shrink))
}

fn pool(
    ctx: &mut Ctx,
    sig: &Sig,
    b: &Bound,
    x: &Tv,
    span: Span,
    n: usize,
    kind: PoolKind,
) -> Option<LayerOut> {
    let size = b.ints(ctx, "size", n)?;
    let stride = b.ints(ctx, "stride", n)?;
    let padding = padding(ctx, b)?;
    need_f32(ctx, sig, x, span)?;
    need_rank(ctx, sig, x, n + 1, span)?;
    let ones = vec![1; n];
    let (mut shape, _) = spatial_out(ctx, sig, b, x, span, &size, &stride, &ones, padding)?;
    shape.push(x.shape[n]);
    Some(node(
        Op::Pool {
            kind,
            size,
            stride,
            padding,
        },
        std::slice::from_ref(x),
        shape,
        vec![],
    ))
}

fn global_pool(
    ctx: &mut Ctx,
    sig: &Sig,
    x: &Tv,
    span: Span,
    rank: usize,
    kind: PoolKind,
) -> Option<LayerOut> {
    need_f32(ctx, sig, x, span)?;
    need_rank(ctx, sig, x, rank + 1, span)?;
    Some(node(
        Op::GlobalPool { kind, rank },
        std::slice::from_ref(x),
        vec![x.shape[rank]],
        vec![],
    ))
}

fn reshape(ctx: &mut Ctx, sig: &Sig, b: &Bound, x: &Tv, span: Span) -> Option<LayerOut> {
    let target = b.int_list(ctx, "shape")?;
    let aspan = arg_span(b, "shape", span);
    let Some(total) = numel(&x.shape) else {
        return too_large(ctx, sig, span);
    };
    let unknown = target.iter().filter(|&&d| d == -1).count();
    if unknown > 1 || target.is_empty() || target.iter().any(|&d| d == 0 || d < -1) {
        ctx.error(
            codes::E0210,
            "invalid `Reshape` target",
            aspan,
            "expected positive sizes with at most one -1",
        );
        return None;
    }
    let known = target
        .iter()
        .filter(|&&d| d > 0)
        .try_fold(1usize, |a, &d| a.checked_mul(d as usize));
    let Some(known) = known else {
        return too_large(ctx, sig, span);
    };
    let shape: Option<Vec<usize>> = if unknown == 1 {
        (known > 0 && total % known == 0).then(|| {
            target
                .iter()
                .map(|&d| if d == -1 { total / known } else { d as usize })
                .collect()
        })
    } else {
        (known == total).then(|| target.iter().map(|&d| d as usize).collect())
    };
    match shape {
        Some(s) if s.iter().all(|&d| d > 0) => Some(LayerOut::Node {
            op: Op::Reshape { shape: s.clone() },
            inputs: vec![x.node],
            shape: s,
            dtype: x.dtype,
            params: vec![],
            shrink: None,
        }),
        _ => {
            let shown: Vec<String> = target.iter().map(|d| d.to_string()).collect();
            input_error(
                ctx,
                codes::E0210,
                format!(
                    "cannot reshape {} to [{}]",
                    shape_str(x.dtype, &x.shape),
                    shown.join(", ")
                ),
                span,
                format!("{total} elements do not fit [{}]", shown.join(", ")),
                x,
            )
        }
    }
}

fn rnn(ctx: &mut Ctx, sig: &Sig, b: &Bound, x: &Tv, span: Span, kind: RnnKind) -> Option<LayerOut> {
    let units = b.int(ctx, "units")? as usize;
    let return_sequences = b.bool(ctx, "return_sequences")?;
    let act = b.activation(ctx, "activation")?;
    need_f32(ctx, sig, x, span)?;
    need_rank(ctx, sig, x, 2, span)?;
    let (t, c) = (x.shape[0], x.shape[1]);
    let shape = if return_sequences {
        vec![t, units]
    } else {
        vec![units]
    };
    let activation = activation(ctx, act, shape.len(), arg_span(b, "activation", span))?;
    let gates = match kind {
        RnnKind::Simple => 1,
        RnnKind::Lstm => 4,
        RnnKind::Gru => 3,
    };
    let width = units.checked_mul(gates)?;
    c.checked_mul(width)
        .or_else(|| too_large(ctx, sig, span).map(|_| 0))?;
    let bias = match kind {
        RnnKind::Simple => param(Role::Bias, vec![units], Init::Zeros),
        RnnKind::Lstm => param(Role::Bias, vec![width], Init::LstmBias),
        RnnKind::Gru => param(Role::Bias, vec![2, width], Init::Zeros),
    };
    let params = vec![
        param(Role::Kernel, vec![c, width], Init::GlorotUniform),
        param(Role::RecurrentKernel, vec![units, width], Init::Orthogonal),
        bias,
    ];
    Some(node(
        Op::Rnn {
            kind,
            units,
            return_sequences,
            activation,
        },
        std::slice::from_ref(x),
        shape,
        params,
    ))
}

fn attention(ctx: &mut Ctx, sig: &Sig, b: &Bound, inputs: &[Tv], span: Span) -> Option<LayerOut> {
    let heads = b.int(ctx, "heads")? as usize;
    let causal = b.bool(ctx, "causal")?;
    let q = &inputs[0];
    let v = inputs.get(1).unwrap_or(q);
    let k = inputs.get(2).unwrap_or(v);
    for t in [q, v, k] {
        need_f32(ctx, sig, t, span)?;
        if t.shape.len() < 2 {
            return input_error(
                ctx,
                codes::E0205,
                "`MultiHeadAttention` expects inputs of shape [T, D]".into(),
                span,
                format!(
                    "found {} (rank {})",
                    shape_str(t.dtype, &t.shape),
                    t.shape.len()
                ),
                t,
            );
        }
    }
    let r = q.shape.len();
    if v.shape.len() != r || k.shape.len() != r || v.shape[..r - 1] != k.shape[..r - 1] {
        ctx.emit(
            Diagnostic::error(
                codes::E0213,
                "the value and key of `MultiHeadAttention` do not match",
            )
            .with_primary(
                span,
                format!(
                    "query {}, value {}, key {}",
                    shape_str(q.dtype, &q.shape),
                    shape_str(v.dtype, &v.shape),
                    shape_str(k.dtype, &k.shape)
                ),
            )
            .with_note(
                "value and key need the same rank as the query and the same sequence dimensions",
            ),
        );
        return None;
    }
    let d = *q.shape.last()?;
    let key_dim = if b.is_given("key_dim") {
        b.int(ctx, "key_dim")? as usize
    } else if d % heads == 0 {
        d / heads
    } else {
        ctx.emit(
            Diagnostic::error(
                codes::E0213,
                format!("{heads} heads do not divide the model dimension {d}"),
            )
            .with_primary(
                arg_span(b, "heads", span),
                format!("{d} is not a multiple of {heads}"),
            )
            .with_help("choose a head count that divides the last dimension, or pass `key_dim:`"),
        );
        return None;
    };
    let dv = *v.shape.last()?;
    let dk = *k.shape.last()?;
    let hk = vec![heads, key_dim];
    heads
        .checked_mul(key_dim)?
        .checked_mul(d.max(dv).max(dk))
        .or_else(|| too_large(ctx, sig, span).map(|_| 0))?;
    let params = vec![
        param(
            Role::QueryKernel,
            vec![d, heads, key_dim],
            Init::GlorotUniform,
        ),
        param(Role::QueryBias, hk.clone(), Init::Zeros),
        param(
            Role::KeyKernel,
            vec![dk, heads, key_dim],
            Init::GlorotUniform,
        ),
        param(Role::KeyBias, hk.clone(), Init::Zeros),
        param(
            Role::ValueKernel,
            vec![dv, heads, key_dim],
            Init::GlorotUniform,
        ),
        param(Role::ValueBias, hk, Init::Zeros),
        param(
            Role::OutputKernel,
            vec![heads, key_dim, d],
            Init::GlorotUniform,
        ),
        param(Role::OutputBias, vec![d], Init::Zeros),
    ];
    Some(LayerOut::Node {
        op: Op::Attention {
            heads,
            key_dim,
            causal,
        },
        inputs: vec![q.node, v.node, k.node],
        shape: q.shape.clone(),
        dtype: DType::F32,
        params,
        shrink: None,
    })
}

fn concat(ctx: &mut Ctx, sig: &Sig, b: &Bound, inputs: &[Tv], span: Span) -> Option<LayerOut> {
    let axis = b.int(ctx, "axis")?;
    let first = &inputs[0];
    for t in inputs {
        need_f32(ctx, sig, t, span)?;
    }
    let rank = first.shape.len();
    let Some(a) = resolve_axis(axis, rank) else {
        ctx.error(
            codes::E0211,
            format!(
                "axis {axis} is out of range for {}",
                shape_str(first.dtype, &first.shape)
            ),
            arg_span(b, "axis", span),
            format!("expected an axis in [-{rank}, {rank})"),
        );
        return None;
    };
    let mut shape = first.shape.clone();
    for t in &inputs[1..] {
        let fits =
            t.shape.len() == rank && (0..rank).all(|i| i == a || t.shape[i] == first.shape[i]);
        if !fits {
            let mut d = Diagnostic::error(codes::E0214, "shapes do not match in `concat`")
                .with_primary(
                    span,
                    format!(
                        "cannot join {} and {} on axis {a}",
                        shape_str(first.dtype, &first.shape),
                        shape_str(t.dtype, &t.shape)
                    ),
                );
            for x in [first, t] {
                if x.origin.end <= span.start || x.origin.start >= span.end {
                    d = d.with_secondary(x.origin, format!("this is {}", dims_str(&x.shape)));
                }
            }
            ctx.emit(d.with_note("all inputs need the same shape except on the joined axis"));
            return None;
        }
        shape[a] = shape[a].checked_add(t.shape[a])?;
    }
    Some(node(Op::Concat { axis: a }, inputs, shape, vec![]))
}
