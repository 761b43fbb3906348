//! Optimizer updates in the IR, with Keras 3's exact rules: gradient clipping, then decoupled
//! weight decay (`w -= lr * wd * w`), then the optimizer's own update.

use crate::graph::ModelGraph;
use crate::ir::*;
use fm_runtime::config::{Clip, OptimizerKind, OptimizerSpec, TrainSpec};
use fm_runtime::tensor::DType;

/// One optimizer slot of one parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct SlotRef {
    pub param: usize,
    pub slot: String,
}

/// The slot names an optimizer keeps per trainable parameter, with their initial value.
pub fn slots(opt: &OptimizerSpec) -> Vec<(&'static str, f64)> {
    match opt.kind {
        OptimizerKind::Sgd { momentum, .. } if momentum != 0.0 => vec![("momentum", 0.0)],
        OptimizerKind::Sgd { .. } => vec![],
        OptimizerKind::Adam { .. } | OptimizerKind::AdamW { .. } => vec![("m", 0.0), ("v", 0.0)],
        OptimizerKind::RmsProp { momentum, .. } if momentum != 0.0 => {
            vec![("velocity", 0.0), ("momentum", 0.0)]
        }
        OptimizerKind::RmsProp { .. } => vec![("velocity", 0.0)],
        OptimizerKind::Adagrad {
            initial_accumulator,
            ..
        } => vec![("accumulator", initial_accumulator)],
    }
}

/// Every optimizer slot the train step functions `fns` take (one function per step of `spec`,
/// in the order the steps run: `lower::train_step_fns`), in first-use order, as the state of a
/// model being trained lists them: (parameter, slot name with its step prefix, initial value).
/// A parameter two steps update has a set of slots per step. `exec::Session` and the Rust back
/// end both keep their slots in this order.
pub fn step_slots<'f>(
    fns: impl IntoIterator<Item = &'f Function>,
    spec: &TrainSpec,
) -> Vec<(usize, String, f64)> {
    let mut out: Vec<(usize, String, f64)> = Vec::new();
    for (f, step) in fns.into_iter().zip(super::steps_of(spec)) {
        let init = slots(&step.optimizer);
        for a in &f.args {
            let ArgKind::OptSlot { param, slot } = &a.kind else {
                continue;
            };
            if out.iter().any(|(p, s, _)| p == param && s == slot) {
                continue;
            }
            let plain = slot.rsplit('/').next().unwrap_or(slot);
            let value = init.iter().find(|(n, _)| *n == plain).map_or(0.0, |s| s.1);
            out.push((*param, slot.clone(), value));
        }
    }
    out
}

/// Declares the slot arguments of the parameters `params` (a step's update set), in that
/// order; `prefix(p)` goes before the slot names of parameter `p` in the argument kind (a
/// parameter updated by several steps keeps one set of slots per step).
pub fn slot_args_for(
    b: &mut Builder,
    graph: &ModelGraph,
    opt: &OptimizerSpec,
    params: &[usize],
    prefix: impl Fn(usize) -> String,
) -> Vec<(SlotRef, ValueId)> {
    let mut out = Vec::new();
    for &p in params {
        let info = &graph.params[p];
        let pre = prefix(p);
        for (slot, _) in slots(opt) {
            let v = b.arg(
                &format!("opt/{}/{pre}{slot}", info.name),
                ArgKind::OptSlot {
                    param: p,
                    slot: format!("{pre}{slot}"),
                },
                fixed(&info.shape),
                DType::F32,
            );
            out.push((
                SlotRef {
                    param: p,
                    slot: slot.to_string(),
                },
                v,
            ));
        }
    }
    out
}

pub struct Updates {
    /// New value of each trainable parameter, in the order given.
    pub params: Vec<ValueId>,
    pub slots: Vec<(SlotRef, ValueId)>,
}

/// Emits the update of every trainable parameter.
#[allow(clippy::too_many_arguments)]
pub fn update(
    b: &mut Builder,
    graph: &ModelGraph,
    opt: &OptimizerSpec,
    trainable: &[usize],
    params: &[ValueId],
    grads: &[ValueId],
    slot_values: &[(SlotRef, ValueId)],
    lr: ValueId,
    step: ValueId,
) -> Updates {
    let _ = graph;
    b.origin = Origin::Update(usize::MAX);
    let grads = clip(b, opt.clip, grads);
    let mut out = Updates {
        params: Vec::new(),
        slots: Vec::new(),
    };
    for (&p, &g) in trainable.iter().zip(&grads) {
        b.origin = Origin::Update(p);
        let mut w = params[p];
        if opt.weight_decay != 0.0 {
            let wd = b.mul_scalar(lr, opt.weight_decay);
            let dec = b.mul(w, wd);
            w = b.sub(w, dec);
        }
        let slot = |name: &str| {
            slot_values
                .iter()
                .find(|(s, _)| s.param == p && s.slot == name)
                .map(|(_, v)| *v)
                .expect("optimizer slot")
        };
        let mut set = |name: &str, v: ValueId| {
            out.slots.push((
                SlotRef {
                    param: p,
                    slot: name.to_string(),
                },
                v,
            ))
        };
        let new_w = match opt.kind {
            OptimizerKind::Sgd { momentum, nesterov } => {
                let lg = b.mul(g, lr);
                if momentum == 0.0 {
                    b.sub(w, lg)
                } else {
                    // m = momentum * m - lr * g; w += nesterov ? momentum * m - lr * g : m
                    let m0 = slot("momentum");
                    let mm = b.mul_scalar(m0, momentum);
                    let m = b.sub(mm, lg);
                    set("momentum", m);
                    if nesterov {
                        let mm2 = b.mul_scalar(m, momentum);
                        let step_v = b.sub(mm2, lg);
                        b.add(w, step_v)
                    } else {
                        b.add(w, m)
                    }
                }
            }
            OptimizerKind::Adam {
                beta1,
                beta2,
                epsilon,
            }
            | OptimizerKind::AdamW {
                beta1,
                beta2,
                epsilon,
            } => {
                // alpha = lr * sqrt(1 - beta2^t) / (1 - beta1^t)
                let b1 = b.constant(beta1);
                let b2 = b.constant(beta2);
                let p1 = b.binary(BinaryOp::Pow, b1, step);
                let p2 = b.binary(BinaryOp::Pow, b2, step);
                let one = b.constant(1.0);
                let c1 = b.sub(one, p1);
                let c2 = b.sub(one, p2);
                let sc2 = b.sqrt(c2);
                let lr_s = b.mul(lr, sc2);
                let alpha = b.div(lr_s, c1);
                // m += (g - m) * (1 - beta1); v += (g^2 - v) * (1 - beta2)
                let (m0, v0) = (slot("m"), slot("v"));
                let gm = b.sub(g, m0);
                let gm = b.mul_scalar(gm, 1.0 - beta1);
                let m = b.add(m0, gm);
                let g2 = b.square(g);
                let gv = b.sub(g2, v0);
                let gv = b.mul_scalar(gv, 1.0 - beta2);
                let v = b.add(v0, gv);
                set("m", m);
                set("v", v);
                let sv = b.sqrt(v);
                let den = b.add_scalar(sv, epsilon);
                let am = b.mul(m, alpha);
                let upd = b.div(am, den);
                b.sub(w, upd)
            }
            OptimizerKind::RmsProp {
                rho,
                momentum,
                epsilon,
            } => {
                let vel0 = slot("velocity");
                let kept = b.mul_scalar(vel0, rho);
                let g2 = b.square(g);
                let fresh = b.mul_scalar(g2, 1.0 - rho);
                let vel = b.add(kept, fresh);
                set("velocity", vel);
                let den0 = b.add_scalar(vel, epsilon);
                let den = b.sqrt(den0);
                let lg = b.mul(g, lr);
                let inc = b.div(lg, den);
                if momentum != 0.0 {
                    let mo0 = slot("momentum");
                    let mm = b.mul_scalar(mo0, momentum);
                    let mo = b.add(mm, inc);
                    set("momentum", mo);
                    b.sub(w, mo)
                } else {
                    b.sub(w, inc)
                }
            }
            OptimizerKind::Adagrad { epsilon, .. } => {
                let acc0 = slot("accumulator");
                let g2 = b.square(g);
                let acc = b.add(acc0, g2);
                set("accumulator", acc);
                let den0 = b.add_scalar(acc, epsilon);
                let den = b.sqrt(den0);
                let lg = b.mul(g, lr);
                let inc = b.div(lg, den);
                b.sub(w, inc)
            }
        };
        out.params.push(new_w);
    }
    out
}

/// Keras 3's `clipnorm`, `global_clipnorm` and `clipvalue`.
fn clip(b: &mut Builder, clip: Option<Clip>, grads: &[ValueId]) -> Vec<ValueId> {
    match clip {
        None => grads.to_vec(),
        Some(Clip::Value(v)) => grads.iter().map(|&g| b.clip(g, -v, v)).collect(),
        Some(Clip::Norm(c)) => grads
            .iter()
            .map(|&g| {
                // g * c / max(||g||, c)
                let sq = b.square(g);
                let s = b.sum_all(sq);
                let n = b.sqrt(s);
                let cv = b.constant(c);
                let den = b.max(n, cv);
                let gc = b.mul_scalar(g, c);
                b.div(gc, den)
            })
            .collect(),
        Some(Clip::GlobalNorm(c)) => {
            // scale = c / max(global_norm, c)
            let mut total = b.constant(0.0);
            for &g in grads {
                let sq = b.square(g);
                let s = b.sum_all(sq);
                total = b.add(total, s);
            }
            let n = b.sqrt(total);
            let cv = b.constant(c);
            let den = b.max(n, cv);
            let scale = b.div(cv, den);
            grads.iter().map(|&g| b.mul(g, scale)).collect()
        }
    }
}
