//! Losses with Keras 3's definitions and reductions: each loss is reduced over the last axis
//! where Keras does so, then averaged over every remaining element ("sum over batch size").
//! Cross-entropies on a softmax/sigmoid output (or with `from_logits`) are computed from the
//! logits in one stable step, as Keras's TensorFlow backend does.

use super::Forward;
use crate::graph::{Activation, ModelGraph};
use crate::ir::*;
use fm_runtime::config::{Loss, TrainSpec};
use fm_runtime::tensor::DType;

/// Keras's `epsilon()` used to clip probabilities.
const EPSILON: f64 = 1e-7;

/// The per-sample target shape and dtype for an output of per-sample shape `out`.
pub fn target_shape(loss: Option<Loss>, out: &[usize]) -> (Vec<usize>, DType) {
    match loss {
        Some(Loss::SparseCategoricalCrossentropy { .. }) => {
            (out[..out.len().saturating_sub(1)].to_vec(), DType::I32)
        }
        _ => (out.to_vec(), DType::F32),
    }
}

/// The weighted sum of every output's loss plus the kernel regularisers.
pub fn total_loss(
    b: &mut Builder,
    graph: &ModelGraph,
    spec: &TrainSpec,
    fwd: &Forward,
    targets: &[ValueId],
    params: &[ValueId],
) -> ValueId {
    let mut total = b.constant(0.0);
    for (i, out_loss) in spec.losses.iter().enumerate() {
        let l = output_loss(b, out_loss.loss, fwd.outputs[i], fwd.logits[i], targets[i]);
        let l = if out_loss.weight != 1.0 {
            b.mul_scalar(l, out_loss.weight)
        } else {
            l
        };
        total = b.add(total, l);
    }
    for (p, info) in graph.params.iter().enumerate() {
        if info.l1 != 0.0 {
            let a = b.unary(UnaryOp::Abs, params[p]);
            let s = b.sum_all(a);
            let r = b.mul_scalar(s, info.l1);
            total = b.add(total, r);
        }
        if info.l2 != 0.0 {
            let sq = b.square(params[p]);
            let s = b.sum_all(sq);
            let r = b.mul_scalar(s, info.l2);
            total = b.add(total, r);
        }
    }
    total
}

/// The mean loss of one output over the batch.
pub fn output_loss(
    b: &mut Builder,
    loss: Loss,
    pred: ValueId,
    logits: Option<(ValueId, Activation)>,
    target: ValueId,
) -> ValueId {
    let per_element = elementwise_loss(b, loss, pred, logits, target);
    b.mean_all(per_element)
}

/// A loss called as a function in an objective (language.md 9.3): `[N]`, each sample's loss
/// reduced as Keras reduces over the last axis, then averaged over the other per-sample axes.
/// A per-sample scalar prediction (`[N]`) is one element per sample. `target` may be a
/// constant (shape `[]`), which broadcasts.
pub fn per_sample_loss(
    b: &mut Builder,
    loss: Loss,
    pred: ValueId,
    logits: Option<(ValueId, Activation)>,
    target: ValueId,
) -> ValueId {
    let as_column = |b: &mut Builder, v: ValueId| {
        if b.rank(v) == 1 {
            let mut s = b.shape(v).clone();
            s.push(Dim::Fixed(1));
            b.reshape(v, s)
        } else {
            v
        }
    };
    let sparse = matches!(loss, Loss::SparseCategoricalCrossentropy { .. });
    let (pred, logits, target) = if b.rank(pred) == 1 && !sparse {
        let t = as_column(b, target);
        let p = as_column(b, pred);
        (p, logits.map(|(z, a)| (as_column(b, z), a)), t)
    } else {
        (pred, logits, target)
    };
    let target = if b.dtype(target) == DType::I32 && !sparse {
        b.unary(UnaryOp::ToFloat, target)
    } else {
        target
    };
    // A target of lower rank broadcasts over the per-sample axes (`f32[]` against `[N, 1]`).
    let target = if sparse {
        target
    } else {
        super::align_ranks(b, pred, target).1
    };
    let per_element = elementwise_loss(b, loss, pred, logits, target);
    let rest: Vec<usize> = (1..b.rank(per_element)).collect();
    b.mean(per_element, &rest, false)
}

/// The loss per element, reduced over the last axis where Keras does so.
fn elementwise_loss(
    b: &mut Builder,
    loss: Loss,
    pred: ValueId,
    logits: Option<(ValueId, Activation)>,
    target: ValueId,
) -> ValueId {
    let last = b.rank(pred) - 1;
    let per_element = match loss {
        Loss::Mse => {
            let d = b.sub(pred, target);
            let sq = b.square(d);
            b.mean(sq, &[last], false)
        }
        Loss::Mae => {
            let d = b.sub(pred, target);
            let a = b.unary(UnaryOp::Abs, d);
            b.mean(a, &[last], false)
        }
        Loss::Huber { delta } => {
            let d = b.sub(pred, target);
            let a = b.unary(UnaryOp::Abs, d);
            let dv = b.constant(delta);
            let small = b.binary(BinaryOp::GreaterEq, dv, a);
            let sq = b.square(d);
            let quad = b.mul_scalar(sq, 0.5);
            let lin0 = b.mul_scalar(a, delta);
            let lin = b.add_scalar(lin0, -0.5 * delta * delta);
            let h = b.select(small, quad, lin);
            b.mean(h, &[last], false)
        }
        Loss::BinaryCrossentropy { from_logits } => {
            let z = match (from_logits, logits) {
                (true, _) => Some(pred),
                (false, Some((z, Activation::Sigmoid))) => Some(z),
                _ => None,
            };
            let e = match z {
                // max(z, 0) - z * y + log(1 + exp(-|z|))
                Some(z) => {
                    let zero = b.constant(0.0);
                    let m = b.max(z, zero);
                    let zy = b.mul(z, target);
                    let a = b.unary(UnaryOp::Abs, z);
                    let na = b.neg(a);
                    let ex = b.exp(na);
                    let e1 = b.add_scalar(ex, 1.0);
                    let l = b.log(e1);
                    let t = b.sub(m, zy);
                    b.add(t, l)
                }
                None => {
                    let p = b.clip(pred, EPSILON, 1.0 - EPSILON);
                    let pe = b.add_scalar(p, EPSILON);
                    let lp = b.log(pe);
                    let a = b.mul(target, lp);
                    let one = b.constant(1.0);
                    let q = b.sub(one, p);
                    let qe = b.add_scalar(q, EPSILON);
                    let lq = b.log(qe);
                    let ny = b.sub(one, target);
                    let c = b.mul(ny, lq);
                    let s = b.add(a, c);
                    b.neg(s)
                }
            };
            b.mean(e, &[last], false)
        }
        Loss::CategoricalCrossentropy { from_logits }
        | Loss::SparseCategoricalCrossentropy { from_logits } => {
            let sparse = matches!(loss, Loss::SparseCategoricalCrossentropy { .. });
            let depth = b.shape(pred)[last].fixed().unwrap_or(1);
            let onehot = if sparse {
                b.push(Op::OneHot { depth }, vec![target])
            } else {
                target
            };
            let log_probs = match (from_logits, logits) {
                (true, _) => b.log_softmax(pred, last),
                (false, Some((z, Activation::Softmax { .. }))) => b.log_softmax(z, last),
                (false, _) if sparse => {
                    // Keras: clip, log, then a softmax cross-entropy on those "logits".
                    let p = b.clip(pred, EPSILON, 1.0 - EPSILON);
                    let lp = b.log(p);
                    b.log_softmax(lp, last)
                }
                (false, _) => {
                    let s = b.sum(pred, &[last], true);
                    let p = b.div(pred, s);
                    let p = b.clip(p, EPSILON, 1.0 - EPSILON);
                    b.log(p)
                }
            };
            let prod = b.mul(onehot, log_probs);
            let s = b.sum(prod, &[last], false);
            b.neg(s)
        }
    };
    per_element
}
