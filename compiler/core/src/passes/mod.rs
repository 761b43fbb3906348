//! Optimization passes over IR functions. Each pass is a function `Function -> Function`; the
//! pipeline verifies the result of every pass (a failure is a compiler bug).

use crate::ir::verify::verify;
use crate::ir::*;
use std::collections::HashMap;

/// The standard pipeline: algebraic simplification, common subexpressions, dead code.
pub fn optimize(f: &Function) -> Result<Function, String> {
    let mut f = f.clone();
    for (name, pass) in [
        ("simplify", simplify as fn(&Function) -> Function),
        ("cse", cse),
        ("dce", dce),
    ] {
        f = pass(&f);
        verify(&f).map_err(|e| format!("internal compiler error: after pass `{name}`: {e}"))?;
    }
    Ok(f)
}

/// Rebuilds `f` keeping instruction `v` when `keep[v]`, with operands renamed through `map`
/// (an operand may be redirected to another value by earlier rewrites).
fn rebuild(f: &Function, keep: &[bool], redirect: &[ValueId]) -> Function {
    let mut new_id = vec![usize::MAX; f.insts.len()];
    let mut insts = Vec::new();
    for (v, inst) in f.insts.iter().enumerate() {
        if !keep[v] {
            continue;
        }
        let mut inst = inst.clone();
        for a in inst.args.iter_mut() {
            *a = new_id[redirect[*a]];
        }
        new_id[v] = insts.len();
        insts.push(inst);
    }
    Function {
        name: f.name.clone(),
        args: f.args.clone(),
        insts,
        results: f
            .results
            .iter()
            .map(|r| FnResult {
                value: new_id[redirect[r.value]],
                ..r.clone()
            })
            .collect(),
    }
}

/// Dead-code elimination: keeps what the results need, and every argument read.
pub fn dce(f: &Function) -> Function {
    let mut live = vec![false; f.insts.len()];
    for r in &f.results {
        live[r.value] = true;
    }
    for v in (0..f.insts.len()).rev() {
        if matches!(f.insts[v].op, Op::Arg { .. }) {
            live[v] = true;
        }
        if live[v] {
            for &a in &f.insts[v].args {
                live[a] = true;
            }
        }
    }
    let identity: Vec<ValueId> = (0..f.insts.len()).collect();
    rebuild(f, &live, &identity)
}

/// Common-subexpression elimination: identical ops on identical operands compute once.
/// Every op is pure (random bits are a function of seed, step and salt), so all qualify.
pub fn cse(f: &Function) -> Function {
    let mut seen: HashMap<String, ValueId> = HashMap::new();
    let mut redirect: Vec<ValueId> = (0..f.insts.len()).collect();
    let mut keep = vec![true; f.insts.len()];
    for (v, inst) in f.insts.iter().enumerate() {
        if matches!(inst.op, Op::Arg { .. }) {
            continue;
        }
        let args: Vec<ValueId> = inst.args.iter().map(|&a| redirect[a]).collect();
        let key = format!("{:?}|{:?}|{:?}", inst.op, args, inst.shape);
        match seen.get(&key) {
            Some(&prev) => {
                redirect[v] = prev;
                keep[v] = false;
            }
            None => {
                seen.insert(key, v);
            }
        }
    }
    rebuild(f, &keep, &redirect)
}

/// The scalar constant a value holds, looking through broadcasts and reshapes.
fn constant_of(f: &Function, v: ValueId) -> Option<f64> {
    match &f.insts[v].op {
        Op::Const { value } => Some(*value),
        Op::Broadcast { .. } | Op::Reshape { .. } => constant_of(f, f.insts[v].args[0]),
        _ => None,
    }
}

/// Algebraic simplification: `x * 1`, `x + 0`, `x - 0`, `x / 1` become `x`; binary ops on two
/// scalar constants fold.
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
