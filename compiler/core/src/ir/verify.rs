//! The IR verifier: re-derives every instruction's type, checks SSA order and the kernel plan.
//! Run after lowering and after every pass; a failure is a compiler bug.

use super::shape::infer;
use super::*;

/// Checks `f`; returns a description of the first problem found.
pub fn verify(f: &Function) -> Result<(), String> {
    let mut seen_args = vec![false; f.args.len()];
    for (v, inst) in f.insts.iter().enumerate() {
        if let Some(&bad) = inst.args.iter().find(|&&a| a >= v) {
            return Err(format!("%{v} uses %{bad}, which is not defined before it"));
        }
        let (shape, dtype) = match &inst.op {
            Op::Arg { index } => {
                let a = f
                    .args
                    .get(*index)
                    .ok_or_else(|| format!("%{v} reads missing argument {index}"))?;
                if std::mem::replace(&mut seen_args[*index], true) {
                    return Err(format!("argument {index} is read twice"));
                }
                (a.shape.clone(), a.dtype)
            }
            op => {
                let ins: Vec<(&Shape, DType)> = inst
                    .args
                    .iter()
                    .map(|&a| (&f.insts[a].shape, f.insts[a].dtype))
                    .collect();
                infer(op, &ins).map_err(|e| format!("%{v} = {}: {e}", op.name()))?
            }
        };
        if shape != inst.shape || dtype != inst.dtype {
            return Err(format!(
                "%{v} = {} is recorded as {}{} but computes {}{}",
                inst.op.name(),
                inst.dtype.name(),
                print::shape_str(&inst.shape),
                dtype.name(),
                print::shape_str(&shape)
            ));
        }
    }
    for r in &f.results {
        if r.value >= f.insts.len() {
            return Err(format!("result `{}` names undefined %{}", r.name, r.value));
        }
    }
    if let Some(plan) = &f.kernels {
        super::kernels::verify_plan(f, plan)?;
    }
    Ok(())
}
