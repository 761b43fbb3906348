//! Sums in the interpreter's order, for the compiled backends (run before `fuse`).
//!
//! A sum over several axes becomes a chain of single-axis sums, innermost axis first: that is
//! how the interpreter (ndarray's `sum_axis`, one axis at a time, last listed first) adds, and
//! float addition is not associative. Matching its order keeps sums bit-identical, which
//! matters where they are followed by cancellation (layer norm subtracts a mean, then divides
//! by a small standard deviation, turning one ulp of the sum into 1e-4 of the output).

use crate::ir::{Dim, Function, Inst, Op, ReduceOp, Shape, ValueId};

/// Returns `f` with every multi-axis `reduce_sum` split into single-axis sums.
pub fn split_sums(f: &Function) -> Function {
    if !f.insts.iter().any(is_multi_axis_sum) {
        return Function {
            kernels: None,
            ..f.clone()
        };
    }
    let mut out = Function {
        name: f.name.clone(),
        args: f.args.clone(),
        insts: Vec::with_capacity(f.insts.len()),
        results: f.results.clone(),
        kernels: None,
    };
    let mut new_id: Vec<ValueId> = Vec::with_capacity(f.insts.len());
    for inst in &f.insts {
        let args: Vec<ValueId> = inst.args.iter().map(|&a| new_id[a]).collect();
        match &inst.op {
            Op::Reduce {
                op: ReduceOp::Sum,
                axes,
                keep_dims,
            } if axes.len() > 1 => {
                let mut src = args[0];
                let mut shape: Shape = out.insts[src].shape.clone();
                for &ax in axes.iter().rev() {
                    if *keep_dims {
                        shape[ax] = Dim::Fixed(1);
                    } else {
                        shape.remove(ax);
                    }
                    out.insts.push(Inst {
                        op: Op::Reduce {
                            op: ReduceOp::Sum,
                            axes: vec![ax],
                            keep_dims: *keep_dims,
                        },
                        args: vec![src],
                        shape: shape.clone(),
                        dtype: inst.dtype,
                        origin: inst.origin,
                    });
                    src = out.insts.len() - 1;
                }
                debug_assert_eq!(shape, inst.shape);
                new_id.push(src);
            }
            _ => {
                out.insts.push(Inst {
                    op: inst.op.clone(),
                    args,
                    shape: inst.shape.clone(),
                    dtype: inst.dtype,
                    origin: inst.origin,
                });
                new_id.push(out.insts.len() - 1);
            }
        }
    }
    for r in &mut out.results {
        r.value = new_id[r.value];
    }
    out
}

fn is_multi_axis_sum(inst: &Inst) -> bool {
    matches!(&inst.op, Op::Reduce { op: ReduceOp::Sum, axes, .. } if axes.len() > 1)
}
