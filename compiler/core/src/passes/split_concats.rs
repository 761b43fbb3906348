//! Narrow concats, for the compiled backends (run before `fuse`).
//!
//! A `concat` of more than [`MAX_CONCAT_INPUTS`] values becomes a tree of concats of at most
//! that many. The JIT compiles each concat into one function holding a copy loop per input, and
//! Cranelift's time and memory grow faster than linearly with a function's size: a concat of
//! 4,000 values took 9.3 s and 238 MB, 6,000 took 2.8 GB and 10,000 aborted, where the
//! interpreter needs 16 MB. The tree has about width / 63 small functions and copies each value
//! `log64(width)` times; copies are exact, so it gives the same bits.

use crate::ir::{Dim, Function, Inst, Op, ValueId};

/// Widest `concat` left as one instruction.
pub const MAX_CONCAT_INPUTS: usize = 64;

/// Returns `f` with every `concat` of more than [`MAX_CONCAT_INPUTS`] values split into a tree of
/// concats of at most that many.
pub fn split_concats(f: &Function) -> Function {
    if !f.insts.iter().any(is_wide_concat) {
        return Function {
            kernels: None,
            ..f.clone()
        };
    }
    let mut insts: Vec<Inst> = Vec::with_capacity(f.insts.len());
    let mut new_id: Vec<ValueId> = Vec::with_capacity(f.insts.len());
    for inst in &f.insts {
        let mut args: Vec<ValueId> = inst.args.iter().map(|&a| new_id[a]).collect();
        if let (Op::Concat { axis }, true) = (&inst.op, is_wide_concat(inst)) {
            // One level of the tree per turn of this loop (log64 of the width), no recursion.
            while args.len() > MAX_CONCAT_INPUTS {
                let mut next = Vec::with_capacity(args.len().div_ceil(MAX_CONCAT_INPUTS));
                for chunk in args.chunks(MAX_CONCAT_INPUTS) {
                    let dim = joined(&insts, chunk, *axis);
                    let (true, Some(dim)) = (chunk.len() > 1, dim) else {
                        next.extend_from_slice(chunk);
                        continue;
                    };
                    let mut shape = insts[chunk[0]].shape.clone();
                    shape[*axis] = dim;
                    insts.push(Inst {
                        op: Op::Concat { axis: *axis },
                        args: chunk.to_vec(),
                        shape,
                        dtype: inst.dtype,
                        origin: inst.origin,
                    });
                    next.push(insts.len() - 1);
                }
                let stuck = next.len() == args.len();
                args = next;
                if stuck {
                    break;
                }
            }
        }
        insts.push(Inst {
            args,
            ..inst.clone()
        });
        new_id.push(insts.len() - 1);
    }
    let mut results = f.results.clone();
    for r in &mut results {
        r.value = new_id[r.value];
    }
    Function {
        name: f.name.clone(),
        args: f.args.clone(),
        insts,
        results,
        kernels: None,
    }
}

/// The size of the concat of `parts` along `axis`: a sum of fixed sizes or of batch multiples
/// (the checker allows no mix; `None` for one, which is then left unsplit).
fn joined(insts: &[Inst], parts: &[ValueId], axis: usize) -> Option<Dim> {
    parts
        .iter()
        .map(|&p| insts[p].shape[axis])
        .try_fold(None, |acc: Option<Dim>, d| match (acc, d) {
            (None, d) => Some(Some(d)),
            (Some(Dim::Fixed(a)), Dim::Fixed(b)) => Some(Some(Dim::Fixed(a + b))),
            (Some(Dim::Batch(a)), Dim::Batch(b)) => Some(Some(Dim::Batch(a + b))),
            _ => None,
        })
        .flatten()
}

fn is_wide_concat(inst: &Inst) -> bool {
    matches!(inst.op, Op::Concat { .. }) && inst.args.len() > MAX_CONCAT_INPUTS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::builder::Builder;
    use crate::ir::verify::verify;
    use crate::ir::{ArgKind, ResultKind};
    use fm_runtime::tensor::DType;

    #[test]
    fn a_wide_concat_becomes_a_tree_of_the_same_shape() {
        let mut b = Builder::new("f");
        let x = b.arg("x", ArgKind::Input, vec![Dim::N, Dim::Fixed(2)], DType::F32);
        let y = b.concat(vec![x; 5000], 1);
        b.result("y", ResultKind::Output(0), y);
        let f = b.finish();
        let g = split_concats(&f);
        verify(&g).unwrap();
        let concats: Vec<&Inst> = g
            .insts
            .iter()
            .filter(|i| matches!(i.op, Op::Concat { .. }))
            .collect();
        // 5000 = 78 * 64 + 8: 79 leaves, then 2 concats of 64 and 15, then the root of 2.
        assert_eq!(concats.len(), 79 + 2 + 1);
        assert!(concats.iter().all(|i| i.args.len() <= MAX_CONCAT_INPUTS));
        let root = &g.insts[g.results[0].value];
        assert_eq!(root.shape, vec![Dim::N, Dim::Fixed(10_000)]);
        // Narrow concats are left alone.
        let mut b = Builder::new("f");
        let x = b.arg("x", ArgKind::Input, vec![Dim::N, Dim::Fixed(2)], DType::F32);
        let y = b.concat(vec![x; MAX_CONCAT_INPUTS], 1);
        b.result("y", ResultKind::Output(0), y);
        let f = b.finish();
        assert_eq!(split_concats(&f).insts.len(), f.insts.len());
    }
}
