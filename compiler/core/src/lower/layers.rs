//! Lowering of the feed-forward layer families: dense, convolution, pooling, upsampling,
//! dropout and normalisation.

use super::{to_float, Ctx, Mode};
use crate::graph::{Node, Op as GOp, Padding, PoolKind as GPool, Role};
use crate::ir::*;

/// `x @ kernel (+ bias)` on the last axis; higher-rank inputs fold their inner axes into the
/// batch for the matmul.
pub fn dense(ctx: &mut Ctx, node: &Node, x: ValueId, use_bias: bool) -> ValueId {
    let x = to_float(ctx.b, x);
    let kernel = ctx.require(node, Role::Kernel);
    let s = ctx.b.shape(x).clone();
    let inner = s[s.len() - 1];
    let y = if s.len() == 2 {
        ctx.b.matmul(x, kernel, false, false)
    } else {
        let fold: usize = s[1..s.len() - 1].iter().filter_map(|d| d.fixed()).product();
        let rows = match s[0] {
            Dim::Batch(k) => Dim::Batch(k * fold),
            d => d,
        };
        let x2 = ctx.b.reshape(x, vec![rows, inner]);
        let y2 = ctx.b.matmul(x2, kernel, false, false);
        ctx.b.reshape(y2, batched(&node.shape))
    };
    if use_bias {
        let bias = ctx.require(node, Role::Bias);
        ctx.b.add(y, bias)
    } else {
        y
    }
}

/// TensorFlow's padding arithmetic for one spatial axis: (before, after).
pub fn pad_amount(
    padding: Padding,
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
) -> (usize, usize) {
    match padding {
        Padding::Valid => (0, 0),
        Padding::Same => {
            let out = input.div_ceil(stride);
            let span = (kernel - 1) * dilation + 1;
            let total = ((out - 1) * stride + span).saturating_sub(input);
            (total / 2, total - total / 2)
        }
    }
}

/// The 2-D window for a 1-D or 2-D conv/pool over spatial input `spatial` (1-D gets H = 1).
fn window(
    spatial: &[usize],
    kernel: &[usize],
    stride: &[usize],
    dilation: &[usize],
    padding: Padding,
) -> Window {
    let lift = |v: &[usize], one: usize| -> [usize; 2] {
        if v.len() == 1 {
            [one, v[0]]
        } else {
            [v[0], v[1]]
        }
    };
    let sp = lift(spatial, 1);
    let k = lift(kernel, 1);
    let st = lift(stride, 1);
    let dl = lift(dilation, 1);
    Window {
        kernel: k,
        stride: st,
        dilation: dl,
        pad: [
            pad_amount(padding, sp[0], k[0], st[0], dl[0]),
            pad_amount(padding, sp[1], k[1], st[1], dl[1]),
        ],
    }
}

/// Views a batched `[N, L, C]` value as `[N, 1, L, C]` (1-D ops run as 2-D).
fn as_2d(b: &mut Builder, x: ValueId) -> ValueId {
    let s = b.shape(x).clone();
    if s.len() == 4 {
        return x;
    }
    b.reshape(x, vec![s[0], Dim::Fixed(1), s[1], s[2]])
}

pub fn conv(ctx: &mut Ctx, node: &Node, x: ValueId, use_bias: bool) -> ValueId {
    let GOp::Conv {
        kernel,
        stride,
        padding,
        dilation,
        ..
    } = &node.op
    else {
        unreachable!()
    };
    let x = to_float(ctx.b, x);
    let in_shape = ctx.b.shape(x).clone();
    let spatial: Vec<usize> = in_shape[1..in_shape.len() - 1]
        .iter()
        .filter_map(|d| d.fixed())
        .collect();
    let win = window(&spatial, kernel, stride, dilation, *padding);
    let mut k = ctx.require(node, Role::Kernel);
    if kernel.len() == 1 {
        let ks = ctx.b.shape(k).clone();
        k = ctx.b.reshape(k, vec![Dim::Fixed(1), ks[0], ks[1], ks[2]]);
    }
    let x4 = as_2d(ctx.b, x);
    let y4 = ctx.b.push(Op::Conv2d { window: win }, vec![x4, k]);
    let y = ctx.b.reshape(y4, batched(&node.shape));
    if use_bias {
        let bias = ctx.require(node, Role::Bias);
        ctx.b.add(y, bias)
    } else {
        y
    }
}

pub fn pool(ctx: &mut Ctx, node: &Node, x: ValueId) -> ValueId {
    let GOp::Pool {
        kind,
        size,
        stride,
        padding,
    } = &node.op
    else {
        unreachable!()
    };
    let x = to_float(ctx.b, x);
    let in_shape = ctx.b.shape(x).clone();
    let spatial: Vec<usize> = in_shape[1..in_shape.len() - 1]
        .iter()
        .filter_map(|d| d.fixed())
        .collect();
    let ones = vec![1; size.len()];
    let win = window(&spatial, size, stride, &ones, *padding);
    let kind = match kind {
        GPool::Max => PoolKind::Max,
        GPool::Avg => PoolKind::Avg,
    };
    let x4 = as_2d(ctx.b, x);
    let y4 = ctx.b.push(Op::Pool2d { kind, window: win }, vec![x4]);
    ctx.b.reshape(y4, batched(&node.shape))
}

pub fn global_pool(ctx: &mut Ctx, x: ValueId, kind: GPool, rank: usize) -> ValueId {
    let x = to_float(ctx.b, x);
    let axes: Vec<usize> = (1..=rank).collect();
    match kind {
        GPool::Avg => ctx.b.mean(x, &axes, false),
        GPool::Max => ctx.b.reduce_max(x, &axes, false),
    }
}

/// Inverted dropout: keep with probability 1 - rate and scale by 1 / (1 - rate).
pub fn dropout(ctx: &mut Ctx, x: ValueId, rate: f64, salt: u64) -> ValueId {
    if ctx.mode == Mode::Infer || rate == 0.0 {
        return x;
    }
    let x = to_float(ctx.b, x);
    let shape = ctx.b.shape(x).clone();
    let r = ctx.b.random_uniform(shape, salt);
    let rate_v = ctx.b.constant(rate);
    let keep = ctx.b.binary(BinaryOp::GreaterEq, r, rate_v);
    let kept = ctx.b.mul(x, keep);
    ctx.b.mul_scalar(kept, 1.0 / (1.0 - rate))
}

pub fn batch_norm(ctx: &mut Ctx, node: &Node, x: ValueId, momentum: f64, epsilon: f64) -> ValueId {
    let x = to_float(ctx.b, x);
    let gamma = ctx.require(node, Role::Gamma);
    let beta = ctx.require(node, Role::Beta);
    let rank = ctx.b.rank(x);
    let axes: Vec<usize> = (0..rank - 1).collect();
    let (mean, var) = match ctx.mode {
        Mode::Train => {
            let mean = ctx.b.mean(x, &axes, false);
            let xc = ctx.b.sub(x, mean);
            let sq = ctx.b.square(xc);
            let var = ctx.b.mean(sq, &axes, false);
            for (role, stat) in [(Role::MovingMean, mean), (Role::MovingVariance, var)] {
                let p = ctx.param_index(node, role).expect("batch norm statistics");
                let old = ctx.params[p];
                let kept = ctx.b.mul_scalar(old, momentum);
                let new = ctx.b.mul_scalar(stat, 1.0 - momentum);
                let updated = ctx.b.add(kept, new);
                ctx.state_updates.push((p, updated));
            }
            (mean, var)
        }
        Mode::Infer => (
            ctx.require(node, Role::MovingMean),
            ctx.require(node, Role::MovingVariance),
        ),
    };
    normalize(ctx.b, x, mean, var, epsilon, gamma, beta)
}

/// `(x - mean) / sqrt(var + eps) * gamma + beta`, as Keras: `x * inv + (beta - mean * inv)`
/// with `inv = gamma / sqrt(var + eps)`.
fn normalize(
    b: &mut Builder,
    x: ValueId,
    mean: ValueId,
    var: ValueId,
    eps: f64,
    gamma: ValueId,
    beta: ValueId,
) -> ValueId {
    let ve = b.add_scalar(var, eps);
    let sd = b.sqrt(ve);
    let inv = b.div(gamma, sd);
    let xi = b.mul(x, inv);
    let mi = b.mul(mean, inv);
    let shift = b.sub(beta, mi);
    b.add(xi, shift)
}

pub fn layer_norm(ctx: &mut Ctx, node: &Node, x: ValueId, epsilon: f64) -> ValueId {
    let x = to_float(ctx.b, x);
    let gamma = ctx.require(node, Role::Gamma);
    let beta = ctx.require(node, Role::Beta);
    let last = ctx.b.rank(x) - 1;
    let mean = ctx.b.mean(x, &[last], true);
    let xc = ctx.b.sub(x, mean);
    let sq = ctx.b.square(xc);
    let var = ctx.b.mean(sq, &[last], true);
    let ve = ctx.b.add_scalar(var, epsilon);
    let sd = ctx.b.sqrt(ve);
    let normed = ctx.b.div(xc, sd);
    let scaled = ctx.b.mul(normed, gamma);
    ctx.b.add(scaled, beta)
}

/// Keras GroupNormalization: the channels `[.., C]` viewed as `[.., groups, C / groups]`; each
/// group is normalised over its channels and every position of its sample, then scaled and
/// shifted per channel (`normalize`, Keras' formula).
pub fn group_norm(ctx: &mut Ctx, node: &Node, x: ValueId, groups: usize, epsilon: f64) -> ValueId {
    let x = to_float(ctx.b, x);
    let gamma = ctx.require(node, Role::Gamma);
    let beta = ctx.require(node, Role::Beta);
    let shape = ctx.b.shape(x).clone();
    let rank = shape.len();
    let channels = shape[rank - 1].fixed().expect("static channel count");
    let per_group = channels / groups;
    let mut grouped = shape[..rank - 1].to_vec();
    grouped.extend([Dim::Fixed(groups), Dim::Fixed(per_group)]);
    let xg = ctx.b.reshape(x, grouped);
    // Every axis but the batch and the group axis (which is `rank - 1` in the grouped view).
    let axes: Vec<usize> = (1..rank - 1).chain([rank]).collect();
    let mean = ctx.b.mean(xg, &axes, true);
    let xc = ctx.b.sub(xg, mean);
    let sq = ctx.b.square(xc);
    let var = ctx.b.mean(sq, &axes, true);
    let per_channel = vec![Dim::Fixed(groups), Dim::Fixed(per_group)];
    let gamma = ctx.b.reshape(gamma, per_channel.clone());
    let beta = ctx.b.reshape(beta, per_channel);
    let y = normalize(ctx.b, xg, mean, var, epsilon, gamma, beta);
    ctx.b.reshape(y, shape)
}

/// Nearest-neighbour upsampling (Keras UpSampling2D): `[N, H, W, C]` viewed as
/// `[N, H, 1, W, 1, C]`, broadcast to `[N, H, sh, W, sw, C]` and read as `[N, H*sh, W*sw, C]`,
/// so that output row `i` reads input row `i / sh` (and likewise for columns).
pub fn up_sampling(ctx: &mut Ctx, node: &Node, x: ValueId, size: &[usize]) -> ValueId {
    let x = to_float(ctx.b, x);
    let s = ctx.b.shape(x).clone();
    let mut spread = vec![s[0]];
    let mut repeated = vec![s[0]];
    for (axis, &factor) in size.iter().enumerate() {
        spread.extend([s[axis + 1], Dim::Fixed(1)]);
        repeated.extend([s[axis + 1], Dim::Fixed(factor)]);
    }
    let c = s[s.len() - 1];
    spread.push(c);
    repeated.push(c);
    let v = ctx.b.reshape(x, spread);
    let v = ctx.b.broadcast_to(v, &repeated);
    ctx.b.reshape(v, batched(&node.shape))
}

/// keras-hub's PositionEmbedding: the first L rows of the `[sequence_length, D]` table,
/// broadcast over the batch (the input contributes only its shape).
pub fn position_embedding(ctx: &mut Ctx, node: &Node) -> ValueId {
    let table = ctx.require(node, Role::Embeddings);
    let (len, rows) = (node.shape[0], ctx.b.shape(table)[0]);
    let rows = match rows {
        Dim::Fixed(n) => n,
        Dim::Batch(_) => len,
    };
    let table = if len < rows {
        ctx.b.slice(table, 0, 0, len)
    } else {
        table
    };
    ctx.b.broadcast_to(table, &batched(&node.shape))
}
