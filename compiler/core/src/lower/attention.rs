//! MultiHeadAttention as Keras computes it: per-head projections (EinsumDense), the query
//! scaled by 1/sqrt(key_dim), softmax over keys (masked by a large negative number when
//! causal), and an output projection back to the query's width.

use super::{to_float, Ctx};
use crate::graph::{Node, Role};
use crate::ir::*;

/// `[N, T, D] x kernel [D, H, K] + bias [H, K] -> [N, T, H, K]`
fn project(
    ctx: &mut Ctx,
    node: &Node,
    x: ValueId,
    (kernel, bias): (Role, Role),
    heads: usize,
    key_dim: usize,
) -> ValueId {
    let s = ctx.b.shape(x).clone();
    let (t, d) = (s[1].fixed().unwrap_or(0), s[2]);
    let kernel = ctx.require(node, kernel);
    let bias = ctx.require(node, bias);
    let k2 = ctx.b.reshape(kernel, vec![d, Dim::Fixed(heads * key_dim)]);
    let rows = match s[0] {
        Dim::Batch(k) => Dim::Batch(k * t),
        other => other,
    };
    let x2 = ctx.b.reshape(x, vec![rows, d]);
    let y2 = ctx.b.matmul(x2, k2, false, false);
    let y = ctx.b.reshape(
        y2,
        vec![s[0], Dim::Fixed(t), Dim::Fixed(heads), Dim::Fixed(key_dim)],
    );
    ctx.b.add(y, bias)
}

/// `[N, A, B, .., D] -> [N, A*B*.., D]`
fn flatten_positions(ctx: &mut Ctx, x: ValueId) -> ValueId {
    let s = ctx.b.shape(x).clone();
    if s.len() <= 3 {
        return x;
    }
    let positions: usize = s[1..s.len() - 1]
        .iter()
        .map(|d| d.fixed().unwrap_or(0))
        .product();
    ctx.b
        .reshape(x, vec![s[0], Dim::Fixed(positions), s[s.len() - 1]])
}

#[allow(clippy::too_many_arguments)]
pub fn lower(
    ctx: &mut Ctx,
    node: &Node,
    query: ValueId,
    value: ValueId,
    key: ValueId,
    heads: usize,
    key_dim: usize,
    causal: bool,
) -> ValueId {
    let query = to_float(ctx.b, query);
    let value = to_float(ctx.b, value);
    let key = to_float(ctx.b, key);
    // Keras attends over every axis between the batch and the features (`attention_axes=None`),
    // which is attention over those axes flattened into one sequence (a causal mask then follows
    // the row-major order of the positions).
    let query_shape = ctx.b.shape(query).clone();
    if query_shape.len() > 3 {
        let query = flatten_positions(ctx, query);
        let value = flatten_positions(ctx, value);
        let key = flatten_positions(ctx, key);
        let y = lower(ctx, node, query, value, key, heads, key_dim, causal);
        return ctx.b.reshape(y, query_shape);
    }
    let qs = ctx.b.shape(query).clone();
    let (tq, width) = (qs[1].fixed().unwrap_or(0), qs[2].fixed().unwrap_or(0));
    let tk = ctx.b.shape(key)[1].fixed().unwrap_or(0);

    let q = project(
        ctx,
        node,
        query,
        (Role::QueryKernel, Role::QueryBias),
        heads,
        key_dim,
    );
    let k = project(
        ctx,
        node,
        key,
        (Role::KeyKernel, Role::KeyBias),
        heads,
        key_dim,
    );
    let v = project(
        ctx,
        node,
        value,
        (Role::ValueKernel, Role::ValueBias),
        heads,
        key_dim,
    );
    let q = ctx.b.mul_scalar(q, 1.0 / (key_dim as f64).sqrt());
    // [N, T, H, K] -> [N, H, T, K]
    let q = ctx.b.permute(q, vec![0, 2, 1, 3]);
    let k = ctx.b.permute(k, vec![0, 2, 1, 3]);
    let v = ctx.b.permute(v, vec![0, 2, 1, 3]);
    let mut scores = ctx.b.matmul(q, k, false, true); // [N, H, Tq, Tk]
    if causal {
        let keep = ctx.b.push(Op::LowerTriangle { rows: tq, cols: tk }, vec![]);
        let one = ctx.b.constant(1.0);
        let masked = ctx.b.sub(one, keep);
        let adder = ctx.b.mul_scalar(masked, -1e9);
        scores = ctx.b.add(scores, adder);
    }
    let attn = ctx.b.softmax(scores, 3);
    let ctxv = ctx.b.matmul(attn, v, false, false); // [N, H, Tq, K]
    let ctxv = ctx.b.permute(ctxv, vec![0, 2, 1, 3]); // [N, Tq, H, K]
    let rows = match qs[0] {
        Dim::Batch(m) => Dim::Batch(m * tq),
        other => other,
    };
    let c2 = ctx.b.reshape(ctxv, vec![rows, Dim::Fixed(heads * key_dim)]);
    let out_kernel = ctx.require(node, Role::OutputKernel);
    let ok2 = ctx.b.reshape(out_kernel, fixed(&[heads * key_dim, width]));
    let y2 = ctx.b.matmul(c2, ok2, false, false);
    let y = ctx
        .b
        .reshape(y2, vec![qs[0], Dim::Fixed(tq), Dim::Fixed(width)]);
    let out_bias = ctx.require(node, Role::OutputBias);
    ctx.b.add(y, out_bias)
}
