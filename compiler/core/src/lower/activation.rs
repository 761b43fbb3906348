//! Activation functions as IR primitives, with Keras 3's definitions.

use crate::graph::Activation;
use crate::ir::*;

/// Applies `act` to `x`; axes in `act` are per sample.
pub fn apply(b: &mut Builder, x: ValueId, act: Activation) -> ValueId {
    let x = super::to_float(b, x);
    match act {
        Activation::Linear => x,
        Activation::Relu => {
            let zero = b.constant(0.0);
            b.max(x, zero)
        }
        Activation::LeakyRelu { alpha } => {
            let zero = b.constant(0.0);
            let pos = b.binary(BinaryOp::Greater, x, zero);
            let neg = b.mul_scalar(x, alpha);
            b.select(pos, x, neg)
        }
        Activation::Elu => {
            // exp(min(x, 0)) keeps the unselected branch finite, so its zero gradient stays 0.
            let zero = b.constant(0.0);
            let pos = b.binary(BinaryOp::Greater, x, zero);
            let xm = b.min(x, zero);
            let e = b.exp(xm);
            let em1 = b.add_scalar(e, -1.0);
            b.select(pos, x, em1)
        }
        Activation::Gelu => {
            // Exact form: 0.5 * x * (1 + erf(x / sqrt(2))).
            let s = b.mul_scalar(x, std::f64::consts::FRAC_1_SQRT_2);
            let e = b.unary(UnaryOp::Erf, s);
            let one_p = b.add_scalar(e, 1.0);
            let h = b.mul_scalar(x, 0.5);
            b.mul(h, one_p)
        }
        Activation::Sigmoid => b.unary(UnaryOp::Sigmoid, x),
        Activation::Tanh => b.unary(UnaryOp::Tanh, x),
        Activation::Softmax { axis } => b.softmax(x, axis + 1),
        Activation::LogSoftmax { axis } => b.log_softmax(x, axis + 1),
        Activation::Softplus => {
            // Stable: max(x, 0) + log(1 + exp(-|x|)).
            let zero = b.constant(0.0);
            let m = b.max(x, zero);
            let a = b.unary(UnaryOp::Abs, x);
            let na = b.neg(a);
            let e = b.exp(na);
            let e1 = b.add_scalar(e, 1.0);
            let l = b.log(e1);
            b.add(m, l)
        }
        Activation::Silu => {
            let s = b.unary(UnaryOp::Sigmoid, x);
            b.mul(x, s)
        }
    }
}
