//! Fusion: the kernel plan ([`KernelPlan`]) of a function, recorded in `Function::kernels`.
//!
//! Rule (greedy, deterministic): an elementwise instruction (unary, binary, select, or the
//! broadcast of a single element) joins the fused group of its users when every user belongs to
//! that same group, it has the group's element count, and it is not a function result. A group
//! runs as one loop at its root (its last instruction), so its intermediates never reach memory.
//! A group holds at most [`MAX_FUSED`] instructions: the JIT compiles a group into one function,
//! and Cranelift's time grows faster than linearly with a function's size (the gradient of a
//! 10,000-wide concat is a 10,000-term sum, which took 5.8 s as one kernel).
//! Every other instruction but arguments, reshapes (which alias their operand) and broadcast
//! views (a broadcast of one element or of a trailing block, read only by elementwise kernels,
//! which read its source instead: [`broadcast_views`]) is a kernel of its own, except that a
//! convolution or max-pool backward whose one user starts a group of one of the
//! [`Epilogue`](crate::ir::kernels::Epilogue) forms (bias and ReLU after a convolution, the
//! ReLU's backward after a pool's) joins that group as its head: the precompiled kernel applies
//! it to each output tile while the tile is in cache.

use super::Pass;
use crate::ir::kernels::{
    broadcast_views, count, epilogue, is_elementwise, KernelPlan, PlannedKernel,
};
use crate::ir::*;

/// The fusion pass.
pub struct Fuse;

impl Pass for Fuse {
    fn name(&self) -> &'static str {
        "fuse"
    }
    fn run(&self, mut f: Function) -> Result<Function, String> {
        f.kernels = Some(plan(&f));
        Ok(f)
    }
}

/// Most instructions in one fused group.
pub const MAX_FUSED: usize = 256;

/// The kernels of `f`, in instruction order of their roots.
pub fn plan(f: &Function) -> KernelPlan {
    let len = f.insts.len();
    let (users, is_result) = (f.users(), f.result_mask());
    let views = broadcast_views(f);
    // Fusion groups (by root), decided from the last instruction backwards (users first).
    let mut group: Vec<Option<ValueId>> = vec![None; len];
    let mut size = vec![0usize; len];
    for v in (0..len).rev() {
        if !is_elementwise(f, v) || views[v].is_some() {
            continue;
        }
        let g = users[v].first().and_then(|&u| group[u]);
        let joins = match g {
            Some(g) => {
                !is_result[v]
                    && users[v].iter().all(|&u| group[u] == Some(g))
                    && count(&f.insts[v].shape) == count(&f.insts[g].shape)
                    && size[g] < MAX_FUSED
            }
            None => false,
        };
        let root = if joins { g.unwrap_or(v) } else { v };
        size[root] += 1;
        group[v] = Some(root);
    }
    let mut members: Vec<Vec<ValueId>> = vec![Vec::new(); len];
    for (v, g) in group.iter().enumerate() {
        if let Some(g) = g {
            members[*g].push(v);
        }
    }
    // Epilogues: a convolution or max-pool backward whose one user starts a group that is one
    // of the forms the precompiled kernels apply on their output tiles joins that group.
    let mut absorbed = vec![false; len];
    for v in 0..len {
        if !matches!(f.insts[v].op, Op::Conv2d { .. } | Op::Pool2dBack { .. }) {
            continue;
        }
        let [u] = users[v][..] else { continue };
        let Some(g) = group[u].filter(|_| !is_result[v]) else {
            continue;
        };
        let with_head: Vec<ValueId> = std::iter::once(v).chain(members[g].clone()).collect();
        if with_head.windows(2).all(|w| w[0] < w[1]) && epilogue(f, &views, &with_head).is_some() {
            members[g] = with_head;
            absorbed[v] = true;
        }
    }
    let mut kernels = Vec::new();
    for (v, inst) in f.insts.iter().enumerate() {
        match inst.op {
            Op::Arg { .. } | Op::Reshape { .. } => {}
            _ if views[v].is_some() || absorbed[v] => {}
            _ if is_elementwise(f, v) => {
                if group[v] == Some(v) {
                    kernels.push(PlannedKernel {
                        members: std::mem::take(&mut members[v]),
                    });
                }
            }
            _ => kernels.push(PlannedKernel { members: vec![v] }),
        }
    }
    KernelPlan { kernels }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::builder::Builder;
    use fm_runtime::tensor::DType;

    #[test]
    fn fused_groups_hold_at_most_max_fused_instructions() {
        let mut b = Builder::new("f");
        let x = b.arg("x", ArgKind::Input, vec![Dim::N, Dim::Fixed(3)], DType::F32);
        let mut y = x;
        for _ in 0..600 {
            y = b.add(y, x);
        }
        b.result("y", ResultKind::Output(0), y);
        let plan = plan(&b.finish());
        let sizes: Vec<usize> = plan.kernels.iter().map(|k| k.members.len()).collect();
        assert_eq!(sizes, vec![88, 256, 256]);
    }
}
