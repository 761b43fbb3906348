//! Kernels: which instructions run together as one loop nest, and the loop choices made for
//! each. The fusion pass ([`crate::passes::fuse`]) decides them and records them on the
//! function ([`Function::kernels`]); `fmc compile --emit ir-opt` prints them, the verifier
//! checks them, and the JIT compiles one kernel per entry, in order.
//!
//! Arguments, reshapes and broadcast views belong to no kernel: a reshape aliases its
//! operand's buffer, and the kernels reading a broadcast view read its source in the view's
//! mode ([`broadcast_views`]).

use super::*;

/// The kernels of a function, in call order (each after the kernels computing its operands).
#[derive(Clone, Debug, PartialEq)]
pub struct KernelPlan {
    pub kernels: Vec<PlannedKernel>,
}

/// One kernel: the instructions it computes, ascending. The last is the root, the one value
/// the kernel writes to memory; the others (fused elementwise instructions) live in registers.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedKernel {
    pub members: Vec<ValueId>,
}

impl PlannedKernel {
    pub fn root(&self) -> ValueId {
        *self.members.last().expect("a kernel has members")
    }
}

/// Whether `v` computes elementwise (unary, binary, select, or the broadcast of one f32
/// element): such instructions fuse into one loop over their element count.
pub fn is_elementwise(f: &Function, v: ValueId) -> bool {
    match &f.insts[v].op {
        Op::Unary(_) | Op::Binary(_) | Op::Select => true,
        Op::Broadcast { .. } => {
            f.insts[v].dtype == DType::F32 && count(&f.insts[f.insts[v].args[0]].shape) == ONE
        }
        _ => false,
    }
}

const ONE: Dim = Dim::Fixed(1);

/// How an elementwise kernel reads a broadcast it does not materialize (a broadcast view).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BroadcastView {
    /// The source's single element, in every lane.
    Splat,
    /// Element `i % m` of the source's `m` elements: the source's shape is a suffix of the
    /// output's (leading axes of size 1 expanded), like a bias broadcast over the batch.
    Cycle(usize),
}

/// How a broadcast `v` could be read without materializing it, if it can.
pub fn broadcast_view_kind(f: &Function, v: ValueId) -> Option<BroadcastView> {
    let inst = &f.insts[v];
    if !matches!(inst.op, Op::Broadcast { .. }) || inst.dtype != DType::F32 {
        return None;
    }
    let src = &f.insts[inst.args[0]].shape;
    let m = count(src);
    if m == ONE {
        return Some(BroadcastView::Splat);
    }
    let Dim::Fixed(m) = m else { return None };
    // Unit source axes first, then axes equal to the output's.
    let first_kept = src.iter().position(|&d| d != ONE)?;
    let suffix = src[first_kept..]
        .iter()
        .zip(&inst.shape[first_kept..])
        .all(|(a, b)| a == b);
    (suffix && count(&inst.shape) != Dim::Fixed(m)).then_some(BroadcastView::Cycle(m))
}

/// The broadcasts of `f` that belong to no kernel: every kernel that reads one reads its
/// source in the view's mode instead (its users are all elementwise and it is not a result),
/// so a bias or a constant is never written out at the size of the activations.
pub fn broadcast_views(f: &Function) -> Vec<Option<BroadcastView>> {
    let len = f.insts.len();
    let (users, is_result) = (f.users(), f.result_mask());
    (0..len)
        .map(|v| {
            let kind = broadcast_view_kind(f, v)?;
            let viewable = !is_result[v]
                && !users[v].is_empty()
                && users[v].iter().all(|&u| is_elementwise(f, u));
            viewable.then_some(kind)
        })
        .collect()
}

/// Product of two sizes; at most one may depend on the batch (it is only ever on axis 0).
pub fn mul(a: Dim, b: Dim) -> Dim {
    match (a, b) {
        (Dim::Fixed(x), Dim::Fixed(y)) => Dim::Fixed(x * y),
        (Dim::Batch(k), Dim::Fixed(c)) | (Dim::Fixed(c), Dim::Batch(k)) => Dim::Batch(k * c),
        (Dim::Batch(_), Dim::Batch(_)) => {
            panic!("internal error: product of two batch-dependent sizes")
        }
    }
}

/// Element count of a shape.
pub fn count(shape: &[Dim]) -> Dim {
    shape.iter().fold(ONE, |acc, &d| mul(acc, d))
}

/// The loop nest of a reduction of `x` over `axes`: blocks of merged adjacent axes (size,
/// reduced?), outermost first, unit axes dropped; and whether the innermost reduced run adds
/// in ndarray's eightfold-unrolled order (the interpreter's order for a sum over an array's
/// last axis) rather than in sequence.
pub fn reduce_loops(x: &[Dim], op: ReduceOp, axes: &[usize]) -> (Vec<(Dim, bool)>, bool) {
    let mut blocks: Vec<(Dim, bool)> = Vec::new();
    for (i, &d) in x.iter().enumerate() {
        let red = axes.contains(&i);
        if d == ONE {
            continue;
        }
        match blocks.last_mut() {
            Some(last) if last.1 == red => last.0 = mul(last.0, d),
            _ => blocks.push((d, red)),
        }
    }
    if blocks.is_empty() {
        blocks.push((ONE, false));
    }
    // After `split_sums` a sum has one axis.
    let unrolled = op == ReduceOp::Sum && axes == [x.len() - 1];
    (blocks, unrolled)
}

/// Elementwise work a precompiled kernel does on each tile of its output while the tile is in
/// cache, instead of a separate loop over the whole output. Only these forms exist (the
/// runtime's kernels implement exactly them); [`epilogue`] recognizes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Epilogue {
    /// `conv2d(x, w) + bias` (`bias` broadcast over the pixels; an argument), then
    /// `max(_, 0)` when `relu`: members `[conv2d, add]` or `[conv2d, add, max]`.
    ConvBias { bias: ValueId, relu: bool },
    /// `select(x > 0, max_pool2d_back(x, dy), 0)`, the backward of a ReLU (whose output `x`
    /// is) before a max pool: members `[max_pool2d_back, gt, select]`.
    PoolBackRelu,
}

/// `v` through reshapes.
fn unreshaped(f: &Function, mut v: ValueId) -> ValueId {
    while matches!(f.insts[v].op, Op::Reshape { .. }) {
        v = f.insts[v].args[0];
    }
    v
}

/// Whether `v` is a broadcast view of the constant +0.0.
fn is_zero_view(f: &Function, views: &[Option<BroadcastView>], v: ValueId) -> bool {
    views[v] == Some(BroadcastView::Splat)
        && matches!(
            f.insts[unreshaped(f, f.insts[v].args[0])].op,
            Op::Const { value } if value == 0.0 && value.is_sign_positive()
        )
}

/// The epilogue form of a kernel with these members (ascending), if its one non-elementwise
/// member (the head) and the elementwise others are one of [`Epilogue`]'s forms.
pub fn epilogue(
    f: &Function,
    views: &[Option<BroadcastView>],
    members: &[ValueId],
) -> Option<Epilogue> {
    let (&head, rest) = members.split_first()?;
    let inst = |v: ValueId| &f.insts[v];
    let binary = |v: ValueId, op: BinaryOp| {
        matches!(inst(v).op, Op::Binary(o) if o == op).then(|| (inst(v).args[0], inst(v).args[1]))
    };
    match inst(head).op {
        Op::Conv2d { .. } => {
            let (&add, relu) = match rest {
                [add] => (add, None),
                [add, relu] => (add, Some(*relu)),
                _ => return None,
            };
            let (x, y) = binary(add, BinaryOp::Add)?;
            let bias_view = if x == head { y } else { x };
            let out_c = match inst(head).shape.last()? {
                Dim::Fixed(c) => *c,
                Dim::Batch(_) => return None,
            };
            if (x != head && y != head) || views[bias_view] != Some(BroadcastView::Cycle(out_c)) {
                return None;
            }
            let bias = unreshaped(f, inst(bias_view).args[0]);
            if !matches!(inst(bias).op, Op::Arg { .. }) {
                return None;
            }
            if let Some(r) = relu {
                let (a, zero) = binary(r, BinaryOp::Max)?;
                if a != add || !is_zero_view(f, views, zero) {
                    return None;
                }
            }
            Some(Epilogue::ConvBias {
                bias,
                relu: relu.is_some(),
            })
        }
        Op::Pool2dBack {
            kind: PoolKind::Max,
            ..
        } => {
            let [mask, select] = rest else { return None };
            let (x, zero) = binary(*mask, BinaryOp::Greater)?;
            let pool_input = unreshaped(f, inst(head).args[0]);
            let sel = inst(*select);
            let ok = unreshaped(f, x) == pool_input
                && is_zero_view(f, views, zero)
                && matches!(sel.op, Op::Select)
                && sel.args[0] == *mask
                && sel.args[1] == head
                && is_zero_view(f, views, sel.args[2]);
            ok.then_some(Epilogue::PoolBackRelu)
        }
        _ => None,
    }
}

/// The member whose loop nest the kernel is: its first when that is not elementwise (a
/// precompiled kernel with an [`Epilogue`]), else its root.
pub fn head(f: &Function, k: &PlannedKernel) -> ValueId {
    match k.members.first() {
        Some(&m) if !is_elementwise(f, m) => m,
        _ => k.root(),
    }
}

/// What kind of loop nest a kernel is (the name `--emit ir-opt` prints).
pub fn kind(f: &Function, k: &PlannedKernel) -> &'static str {
    let root = head(f, k);
    if is_elementwise(f, root) {
        return "elementwise";
    }
    match &f.insts[root].op {
        Op::Reduce { .. } => "reduce",
        Op::Conv2d { .. } | Op::Conv2dBackInput { .. } | Op::Conv2dBackKernel { .. } => "conv",
        Op::Pool2d { .. } | Op::Pool2dBack { .. } => "pool",
        Op::Permute { .. }
        | Op::Broadcast { .. }
        | Op::Slice { .. }
        | Op::Pad { .. }
        | Op::Concat { .. } => "copy",
        op => op.name(),
    }
}

/// The kernel's loop choices, as printed after its members (`len=N*128`, `loops=[...]`).
pub fn attrs(f: &Function, k: &PlannedKernel) -> String {
    let root = head(f, k);
    if root != k.root() {
        let ops: Vec<&str> = k.members[1..]
            .iter()
            .map(|&m| f.insts[m].op.name())
            .collect();
        return format!(
            "op={} epilogue=[{}]",
            f.insts[root].op.name(),
            ops.join(", ")
        );
    }
    let inst = &f.insts[root];
    let dim = |d: Dim| print::dim_str(d);
    if is_elementwise(f, root) {
        let ops: Vec<&str> = k.members.iter().map(|&m| f.insts[m].op.name()).collect();
        return format!("ops=[{}] len={}", ops.join(", "), dim(count(&inst.shape)));
    }
    match &inst.op {
        Op::Reduce { op, axes, .. } => {
            let (blocks, unrolled) = reduce_loops(&f.insts[inst.args[0]].shape, *op, axes);
            let loops: Vec<String> = blocks
                .iter()
                .map(|&(d, red)| format!("{} {}", dim(d), if red { "reduce" } else { "keep" }))
                .collect();
            format!(
                "op={} loops=[{}]{}",
                inst.op.name(),
                loops.join(", "),
                if unrolled { " unrolled" } else { "" }
            )
        }
        Op::MatMul {
            transpose_a,
            transpose_b,
        } => {
            let sa = &f.insts[inst.args[0]].shape;
            let sb = &f.insts[inst.args[1]].shape;
            let r = sa.len();
            let (m, k) = if *transpose_a {
                (sa[r - 1], sa[r - 2])
            } else {
                (sa[r - 2], sa[r - 1])
            };
            let n = if *transpose_b { sb[r - 2] } else { sb[r - 1] };
            let lead = count(&sa[..r - 2]);
            let mut s = String::new();
            if lead != ONE {
                s.push_str(&format!("lead={} ", dim(lead)));
            }
            s.push_str(&format!("m={} k={} n={}", dim(m), dim(k), dim(n)));
            if *transpose_a {
                s.push_str(" transpose_a");
            }
            if *transpose_b {
                s.push_str(" transpose_b");
            }
            s
        }
        Op::Conv2d { .. }
        | Op::Conv2dBackInput { .. }
        | Op::Conv2dBackKernel { .. }
        | Op::Pool2d { .. }
        | Op::Pool2dBack { .. }
        | Op::Permute { .. }
        | Op::Broadcast { .. }
        | Op::Slice { .. }
        | Op::Pad { .. }
        | Op::Concat { .. } => format!("op={}", inst.op.name()),
        _ => String::new(),
    }
}

/// Prints the plan: `kernels { k0 = matmul %5 m=N k=64 n=128 ... }`.
pub fn print_plan(f: &Function, plan: &KernelPlan) -> String {
    let mut out = String::from("kernels {\n");
    for (i, k) in plan.kernels.iter().enumerate() {
        let members: Vec<String> = k.members.iter().map(|m| format!("%{m}")).collect();
        let attrs = attrs(f, k);
        out.push_str(&format!("    k{i} = {} {}", kind(f, k), members.join(" ")));
        if !attrs.is_empty() {
            out.push(' ');
            out.push_str(&attrs);
        }
        out.push('\n');
    }
    out.push_str("}\n");
    out
}

/// Checks the plan against its function: every instruction but arguments, reshapes and
/// broadcast views in
/// exactly one kernel, kernels in instruction order, and fused instructions elementwise, of
/// their root's element count, used only inside their kernel and not function results.
pub fn verify_plan(f: &Function, plan: &KernelPlan) -> Result<(), String> {
    let len = f.insts.len();
    let views = broadcast_views(f);
    let mut kernel_of: Vec<Option<usize>> = vec![None; len];
    let mut last_root: Option<ValueId> = None;
    for (i, k) in plan.kernels.iter().enumerate() {
        if k.members.is_empty() {
            return Err(format!("kernel k{i} has no instructions"));
        }
        if !k.members.windows(2).all(|w| w[0] < w[1]) {
            return Err(format!("kernel k{i}: members are not in ascending order"));
        }
        let root = k.root();
        if root >= len {
            return Err(format!("kernel k{i} names undefined %{root}"));
        }
        if last_root.is_some_and(|r| r >= root) {
            return Err(format!(
                "kernel k{i} (root %{root}) is out of instruction order"
            ));
        }
        last_root = Some(root);
        for &m in &k.members {
            if let Some(j) = kernel_of[m] {
                return Err(format!("%{m} is in kernels k{j} and k{i}"));
            }
            kernel_of[m] = Some(i);
        }
        if k.members.len() > 1 {
            // A precompiled head with an epilogue, or elementwise instructions only.
            let epilogue_head = epilogue(f, &views, &k.members).map(|_| k.members[0]);
            for &m in &k.members {
                if !is_elementwise(f, m) && Some(m) != epilogue_head {
                    return Err(format!(
                        "kernel k{i} fuses %{m} = {}, which is not elementwise",
                        f.insts[m].op.name()
                    ));
                }
                if count(&f.insts[m].shape) != count(&f.insts[root].shape) {
                    return Err(format!(
                        "kernel k{i} fuses %{m}, whose element count differs from its root %{root}"
                    ));
                }
            }
        }
    }
    let is_result = f.result_mask();
    for (v, inst) in f.insts.iter().enumerate() {
        let planned = !matches!(inst.op, Op::Arg { .. } | Op::Reshape { .. }) && views[v].is_none();
        match (planned, kernel_of[v]) {
            (true, None) => return Err(format!("%{v} = {} is in no kernel", inst.op.name())),
            (false, Some(i)) => {
                return Err(format!(
                    "%{v} = {} is in kernel k{i} but has no code of its own",
                    inst.op.name()
                ))
            }
            _ => {}
        }
        for &a in &inst.args {
            // A fused (non-root) value exists only inside its kernel's loop.
            if let Some(i) = kernel_of[a] {
                if plan.kernels[i].root() != a && kernel_of[v] != Some(i) {
                    return Err(format!(
                        "%{a} is fused into kernel k{i} but %{v} outside it reads it"
                    ));
                }
            }
        }
    }
    for (v, &res) in is_result.iter().enumerate() {
        if let Some(i) = kernel_of[v] {
            if res && plan.kernels[i].root() != v {
                return Err(format!(
                    "result %{v} is fused into kernel k{i} and never written"
                ));
            }
        }
    }
    Ok(())
}
