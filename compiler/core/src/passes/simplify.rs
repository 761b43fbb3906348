//! Algebraic simplification: `x * 1`, `x + 0`, `x - 0`, `x / 1` become `x`; binary ops on two
//! scalar constants fold.

use super::rebuild;
use crate::ir::*;

/// The scalar constant a value holds, looking through broadcasts and reshapes.
fn constant_of(f: &Function, v: ValueId) -> Option<f64> {
    match &f.insts[v].op {
        Op::Const { value } => Some(*value),
        Op::Broadcast { .. } | Op::Reshape { .. } => constant_of(f, f.insts[v].args[0]),
        _ => None,
    }
}

/// Applies the rewrites once, in instruction order (operands are already rewritten).
pub fn simplify(f: &Function) -> Function {
    let mut f = f.clone();
    let mut redirect: Vec<ValueId> = (0..f.insts.len()).collect();
    for v in 0..f.insts.len() {
        for a in f.insts[v].args.iter_mut() {
            *a = redirect[*a];
        }
        let inst = f.insts[v].clone();
        let Op::Binary(op) = inst.op else { continue };
        let (x, y) = (inst.args[0], inst.args[1]);
        let (cx, cy) = (constant_of(&f, x), constant_of(&f, y));
        if inst.shape.is_empty() {
            if let (Some(a), Some(b)) = (cx, cy) {
                let folded = match op {
                    BinaryOp::Add => Some(a + b),
                    BinaryOp::Sub => Some(a - b),
                    BinaryOp::Mul => Some(a * b),
                    BinaryOp::Div => Some(a / b),
                    BinaryOp::Pow => Some(a.powf(b)),
                    _ => None,
                };
                if let Some(value) = folded {
                    f.insts[v] = Inst {
                        op: Op::Const { value },
                        args: vec![],
                        shape: vec![],
                        dtype: inst.dtype,
                        origin: inst.origin,
                    };
                    continue;
                }
            }
        }
        let same = |o: ValueId| f.insts[o].shape == inst.shape;
        let target = match (op, cx, cy) {
            (BinaryOp::Mul, _, Some(c)) if c == 1.0 && same(x) => Some(x),
            (BinaryOp::Mul, Some(c), _) if c == 1.0 && same(y) => Some(y),
            (BinaryOp::Add, _, Some(c)) if c == 0.0 && same(x) => Some(x),
            (BinaryOp::Add, Some(c), _) if c == 0.0 && same(y) => Some(y),
            (BinaryOp::Sub | BinaryOp::Div, _, Some(c))
                if c == if op == BinaryOp::Sub { 0.0 } else { 1.0 } && same(x) =>
            {
                Some(x)
            }
            _ => None,
        };
        if let Some(t) = target {
            redirect[v] = t;
        }
    }
    let keep = vec![true; f.insts.len()];
    rebuild(&f, &keep, &redirect)
}
