//! The functions of objective and version 0.2 expressions (language.md 9.3) as IR primitives.
//! Axes in the graph are per sample; here they are shifted by one for the batch.

use super::activation;
use crate::graph::{Activation, Func, HitKind, Reduction};
use crate::ir::*;

/// An elementwise function; `sigmoid` also reports its logits (so a cross-entropy on it is
/// computed from them in one stable step).
pub fn func(b: &mut Builder, f: Func, x: ValueId) -> (ValueId, Option<(ValueId, Activation)>) {
    let x = super::to_float(b, x);
    let v = match f {
        Func::Neg => b.neg(x),
        Func::Log => b.log(x),
        Func::Exp => b.exp(x),
        Func::Abs => b.unary(UnaryOp::Abs, x),
        Func::Square => b.square(x),
        Func::Sqrt => b.sqrt(x),
        Func::Softplus => activation::apply(b, x, Activation::Softplus),
        Func::Sigmoid => {
            return (
                activation::apply(b, x, Activation::Sigmoid),
                Some((x, Activation::Sigmoid)),
            )
        }
        Func::LogSigmoid => {
            // log(sigmoid(x)) = -softplus(-x), stable for large |x|.
            let nx = b.neg(x);
            let sp = activation::apply(b, nx, Activation::Softplus);
            b.neg(sp)
        }
        Func::StopGradient => b.unary(UnaryOp::StopGradient, x),
    };
    (v, None)
}

/// `sum/mean/max/min` over per-sample `axes`.
pub fn reduce(b: &mut Builder, op: Reduction, x: ValueId, axes: &[usize]) -> ValueId {
    let x = super::to_float(b, x);
    let axes: Vec<usize> = axes.iter().map(|a| a + 1).collect();
    if axes.is_empty() {
        return x;
    }
    match op {
        Reduction::Sum => b.sum(x, &axes, false),
        Reduction::Mean => b.mean(x, &axes, false),
        Reduction::Max => b.reduce_max(x, &axes, false),
        Reduction::Min => {
            let n = b.neg(x);
            let m = b.reduce_max(n, &axes, false);
            b.neg(m)
        }
    }
}

/// `dot(a, b)`: the sum of the (broadcast) product over the last axis.
pub fn dot(b: &mut Builder, x: ValueId, y: ValueId) -> ValueId {
    let x = super::to_float(b, x);
    let y = super::to_float(b, y);
    let (x, y) = super::align_ranks(b, x, y);
    let p = b.mul(x, y);
    let last = b.rank(p) - 1;
    b.sum(p, &[last], false)
}

/// `pick(x, i)`: `x[..., i]` through a one-hot mask, so the gradient reaches `x`.
pub fn pick(b: &mut Builder, x: ValueId, i: ValueId) -> ValueId {
    let last = b.rank(x) - 1;
    let depth = b.shape(x)[last].fixed().unwrap_or(1);
    let mask = b.push(Op::OneHot { depth }, vec![i]);
    let p = b.mul(x, mask);
    b.sum(p, &[last], false)
}

/// A metric over model values (`accuracy(p, t)`, `top_k(p, t, k: 5)`): 1.0 per sample where
/// the prediction hits its target, 0.0 where it misses, averaged over any further per-sample
/// axes. Keras's `argmax(p) == t` is computed as "the target's score is the largest", which
/// differs only when two scores tie exactly.
pub fn hit(b: &mut Builder, kind: HitKind, pred: ValueId, target: ValueId) -> ValueId {
    let pred = super::to_float(b, pred);
    let last = b.rank(pred) - 1;
    let per_position = match kind {
        HitKind::Binary => {
            let target = super::to_float(b, target);
            let (pred, target) = super::align_ranks(b, pred, target);
            let half = b.constant(0.5);
            let above = b.binary(BinaryOp::Greater, pred, half);
            b.binary(BinaryOp::Equal, above, target)
        }
        HitKind::Sparse => {
            let picked = pick(b, pred, target);
            let best = b.reduce_max(pred, &[last], false);
            b.binary(BinaryOp::GreaterEq, picked, best)
        }
        HitKind::Categorical => {
            let target = super::to_float(b, target);
            let best = b.reduce_max(pred, &[last], true);
            let is_best = b.binary(BinaryOp::GreaterEq, pred, best);
            let on_target = b.mul(is_best, target);
            let hits = b.sum(on_target, &[last], false);
            let zero = b.constant(0.0);
            b.binary(BinaryOp::Greater, hits, zero)
        }
        HitKind::TopK(k) => {
            // tf.math.in_top_k: a tie at the k-th score counts as a hit.
            let picked = pick(b, pred, target);
            let mut s = b.shape(picked).clone();
            s.push(Dim::Fixed(1));
            let picked = b.reshape(picked, s);
            let above = b.binary(BinaryOp::Greater, pred, picked);
            let count = b.sum(above, &[last], false);
            let k = b.constant(k as f64);
            b.binary(BinaryOp::Greater, k, count)
        }
    };
    let rest: Vec<usize> = (1..b.rank(per_position)).collect();
    if rest.is_empty() {
        per_position
    } else {
        b.mean(per_position, &rest, false)
    }
}
