//! SimpleRNN, LSTM and GRU, unrolled over the (static) time axis with Keras's equations and
//! gate orders (LSTM i, f, c, o; GRU z, r, h with `reset_after`).

use super::{activation, to_float, Ctx};
use crate::graph::{Activation, Node, RnnKind, Role};
use crate::ir::*;

#[allow(clippy::too_many_arguments)]
pub fn lower(
    ctx: &mut Ctx,
    node: &Node,
    x: ValueId,
    kind: RnnKind,
    units: usize,
    return_sequences: bool,
    act: Activation,
) -> ValueId {
    let x = to_float(ctx.b, x);
    let s = ctx.b.shape(x).clone();
    let (steps, channels) = (s[1].fixed().unwrap_or(0), s[2]);
    let kernel = ctx.require(node, Role::Kernel);
    let recurrent = ctx.require(node, Role::RecurrentKernel);
    let bias = ctx.require(node, Role::Bias);
    let gates = match kind {
        RnnKind::Simple => 1,
        RnnKind::Lstm => 4,
        RnnKind::Gru => 3,
    };
    let width = gates * units;
    // The input projection of every time step in one matmul: [N*T, C] @ [C, g*u].
    let rows = match s[0] {
        Dim::Batch(k) => Dim::Batch(k * steps),
        d => d,
    };
    let x2 = ctx.b.reshape(x, vec![rows, channels]);
    let xw = ctx.b.matmul(x2, kernel, false, false);
    let xw = ctx
        .b
        .reshape(xw, vec![s[0], Dim::Fixed(steps), Dim::Fixed(width)]);
    // GRU keeps separate input and recurrent biases (bias[0], bias[1]).
    let (input_bias, recurrent_bias) = if kind == RnnKind::Gru {
        let b0 = ctx.b.slice(bias, 0, 0, 1);
        let b0 = ctx.b.reshape(b0, fixed(&[width]));
        let b1 = ctx.b.slice(bias, 0, 1, 2);
        let b1 = ctx.b.reshape(b1, fixed(&[width]));
        (b0, Some(b1))
    } else {
        (bias, None)
    };
    let xw = ctx.b.add(xw, input_bias);

    let state_shape = vec![s[0], Dim::Fixed(units)];
    let mut h = ctx.b.full(0.0, &state_shape);
    let mut c = h;
    let mut outputs = Vec::new();
    for t in 0..steps {
        let xt = ctx.b.slice(xw, 1, t, t + 1);
        let xt = ctx.b.reshape(xt, vec![s[0], Dim::Fixed(width)]);
        let hu = ctx.b.matmul(h, recurrent, false, false);
        match kind {
            RnnKind::Simple => {
                let z = ctx.b.add(xt, hu);
                h = activation::apply(ctx.b, z, act);
            }
            RnnKind::Lstm => {
                let z = ctx.b.add(xt, hu);
                let gate = |b: &mut Builder, k: usize| b.slice(z, 1, k * units, (k + 1) * units);
                let (zi, zf, zc, zo) = (
                    gate(ctx.b, 0),
                    gate(ctx.b, 1),
                    gate(ctx.b, 2),
                    gate(ctx.b, 3),
                );
                let i = ctx.b.unary(UnaryOp::Sigmoid, zi);
                let f = ctx.b.unary(UnaryOp::Sigmoid, zf);
                let o = ctx.b.unary(UnaryOp::Sigmoid, zo);
                let cand = activation::apply(ctx.b, zc, act);
                let fc = ctx.b.mul(f, c);
                let ic = ctx.b.mul(i, cand);
                c = ctx.b.add(fc, ic);
                let ca = activation::apply(ctx.b, c, act);
                h = ctx.b.mul(o, ca);
            }
            RnnKind::Gru => {
                let rb = recurrent_bias.expect("gru recurrent bias");
                let inner = ctx.b.add(hu, rb);
                let part = |b: &mut Builder, v: ValueId, k: usize| {
                    b.slice(v, 1, k * units, (k + 1) * units)
                };
                let (xz, xr, xh) = (part(ctx.b, xt, 0), part(ctx.b, xt, 1), part(ctx.b, xt, 2));
                let (rz, rr, rh) = (
                    part(ctx.b, inner, 0),
                    part(ctx.b, inner, 1),
                    part(ctx.b, inner, 2),
                );
                let zs = ctx.b.add(xz, rz);
                let z = ctx.b.unary(UnaryOp::Sigmoid, zs);
                let rs = ctx.b.add(xr, rr);
                let r = ctx.b.unary(UnaryOp::Sigmoid, rs);
                let rrh = ctx.b.mul(r, rh);
                let hs = ctx.b.add(xh, rrh);
                let hh = activation::apply(ctx.b, hs, act);
                // h = z * h_prev + (1 - z) * hh
                let zh = ctx.b.mul(z, h);
                let one = ctx.b.constant(1.0);
                let omz = ctx.b.sub(one, z);
                let rest = ctx.b.mul(omz, hh);
                h = ctx.b.add(zh, rest);
            }
        }
        if return_sequences {
            outputs.push(
                ctx.b
                    .reshape(h, vec![s[0], Dim::Fixed(1), Dim::Fixed(units)]),
            );
        }
    }
    if return_sequences {
        ctx.b.concat(outputs, 1)
    } else {
        h
    }
}
