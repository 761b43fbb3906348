//! The functions of objective and version 0.2 expressions (language.md 9.3) as IR primitives.
//! Axes in the graph are per sample; here they are shifted by one for the batch.

use super::activation;
use crate::graph::{Activation, Func, Reduction};
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
