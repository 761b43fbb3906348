//! From an IR function and its kernel plan (`Function::kernels`, chosen by the core's `fuse`
//! pass) to a list of kernel calls: one kernel description per planned kernel (a fused group
//! becomes one elementwise expression), reshapes aliasing their operand's buffer.

use super::kernel::*;
use fm_compiler::ir::kernels::{
    broadcast_views, epilogue, is_elementwise, reduce_loops, BroadcastView, Epilogue,
};
use fm_compiler::ir::*;
use fm_runtime::kernels::{Conv2dShape, Pool2dShape};
use std::collections::HashMap;

/// One kernel call: operands are IR values (inputs, then the output).
#[derive(Clone, Debug)]
pub struct Step {
    pub kernel: Kernel,
    pub operands: Vec<ValueId>,
    pub output: ValueId,
    /// Element offset added to each operand's pointer before the call. Constant offsets of
    /// slices and pads travel here rather than in the kernel, so that the fifty slices of an
    /// unrolled sequence share one compiled kernel.
    pub offsets: Vec<i64>,
    /// For a kernel that writes through a second output pointer (`Kernel::Copy` with
    /// `shifted_dst`): that pointer's element offset from the output.
    pub extra_output: Option<i64>,
}

impl Step {
    fn new(kernel: Kernel, operands: Vec<ValueId>, output: ValueId) -> Step {
        Step {
            kernel,
            offsets: vec![0; operands.len()],
            operands,
            output,
            extra_output: None,
        }
    }

    /// The pointers the kernel receives: (value, element offset) for every operand, then the
    /// extra output pointer if any.
    pub fn pointers(&self) -> Vec<(ValueId, i64)> {
        let mut p: Vec<(ValueId, i64)> = self
            .operands
            .iter()
            .copied()
            .zip(self.offsets.iter().copied())
            .collect();
        if let Some(off) = self.extra_output {
            p.push((self.output, off));
        }
        p
    }
}

#[derive(Clone, Debug)]
pub struct Schedule {
    pub steps: Vec<Step>,
    /// The value whose buffer holds each value (itself, or the source of a reshape).
    pub root: Vec<ValueId>,
    /// Whether a value has a buffer of its own (arguments and kernel outputs).
    pub materialized: Vec<bool>,
    /// Instructions folded into another instruction's loop.
    pub fused: usize,
}

fn count(f: &Function, v: ValueId) -> Sym {
    Sym::count(&f.insts[v].shape)
}

fn dims(shape: &[Dim]) -> Vec<Sym> {
    shape.iter().map(|&d| Sym::of_dim(d)).collect()
}

/// Row-major element strides; they never involve the batch (it is only ever axis 0).
fn strides(shape: &[Dim]) -> Result<Vec<i64>, String> {
    let mut out = vec![0i64; shape.len()];
    let mut acc = Sym::ONE;
    for i in (0..shape.len()).rev() {
        if acc.n != 0 {
            return Err("a batch-sized axis after axis 0 is not supported by the JIT".into());
        }
        out[i] = acc.c;
        acc = acc.mul(Sym::of_dim(shape[i]));
    }
    Ok(out)
}

/// Drops unit axes and merges axes that are contiguous in both source and destination.
fn simplify(mut r: Region) -> Region {
    let mut d = Vec::new();
    let mut ss = Vec::new();
    let mut ds = Vec::new();
    for i in 0..r.dims.len() {
        if r.dims[i] == Sym::ONE {
            continue;
        }
        if let Some(last) = d.len().checked_sub(1) {
            let inner: Sym = r.dims[i];
            if inner.n == 0
                && ss[last] == r.src_strides[i] * inner.c
                && ds[last] == r.dst_strides[i] * inner.c
            {
                d[last] = Sym::mul(d[last], inner);
                ss[last] = r.src_strides[i];
                ds[last] = r.dst_strides[i];
                continue;
            }
        }
        d.push(r.dims[i]);
        ss.push(r.src_strides[i]);
        ds.push(r.dst_strides[i]);
    }
    if d.is_empty() {
        d.push(Sym::ONE);
        ss.push(1);
        ds.push(1);
    }
    r.dims = d;
    r.src_strides = ss;
    r.dst_strides = ds;
    r
}

fn geom_of(x: &[Dim], kernel: [usize; 2], out_c: usize, w: &Window) -> Result<Geom, String> {
    let fx = |d: Dim| {
        d.fixed()
            .ok_or("a batch-sized spatial axis is not supported")
    };
    Ok(Geom {
        batch: Sym::of_dim(x[0]),
        in_h: fx(x[1])?,
        in_w: fx(x[2])?,
        in_c: fx(x[3])?,
        kernel,
        out_c,
        stride: w.stride,
        dilation: w.dilation,
        pad_before: [w.pad[0].0, w.pad[1].0],
        pad_after: [w.pad[0].1, w.pad[1].1],
    })
}

/// Checks at compile time that the precompiled kernels accept this geometry.
fn check_conv(g: &Geom) -> Result<(), String> {
    Conv2dShape {
        batch: 1,
        in_h: g.in_h,
        in_w: g.in_w,
        in_c: g.in_c,
        kernel_h: g.kernel[0],
        kernel_w: g.kernel[1],
        out_c: g.out_c,
        stride: g.stride,
        dilation: g.dilation,
        pad_before: g.pad_before,
        pad_after: g.pad_after,
    }
    .dims()
    .map(|_| ())
    .map_err(|e| e.to_string())
}

fn check_pool(g: &Geom) -> Result<(), String> {
    if g.dilation != [1, 1] {
        return Err("dilated pooling is not supported by the JIT".into());
    }
    Pool2dShape {
        batch: 1,
        in_h: g.in_h,
        in_w: g.in_w,
        channels: g.in_c,
        window: g.kernel,
        stride: g.stride,
        pad_before: g.pad_before,
        pad_after: g.pad_after,
    }
    .dims()
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// A forward convolution `v`, with its bias and ReLU epilogue if any.
fn conv_forward(f: &Function, v: ValueId, bias: bool, relu: bool) -> Result<Kernel, String> {
    let (inst, a) = (&f.insts[v], &f.insts[v].args);
    let Op::Conv2d { window } = &inst.op else {
        return Err("internal error: not a convolution".into());
    };
    let ks = &f.insts[a[1]].shape;
    let kf = |i: usize| ks[i].fixed().unwrap_or(0);
    let g = geom_of(&f.insts[a[0]].shape, [kf(0), kf(1)], kf(3), window)?;
    check_conv(&g)?;
    Ok(Kernel::Conv {
        kind: ConvKind::Forward,
        geom: g,
        bias,
        relu,
    })
}

/// A pooling op or its backward `v` (with a ReLU's backward fused when `relu`).
fn pool(f: &Function, v: ValueId, relu: bool) -> Result<Kernel, String> {
    let inst = &f.insts[v];
    let (Op::Pool2d { kind, window } | Op::Pool2dBack { kind, window }) = &inst.op else {
        return Err("internal error: not a pooling op".into());
    };
    let g = geom_of(&f.insts[inst.args[0]].shape, window.kernel, 0, window)?;
    check_pool(&g)?;
    Ok(Kernel::Pool {
        kind: *kind,
        back: matches!(inst.op, Op::Pool2dBack { .. }),
        geom: g,
        relu,
    })
}

/// The kernel calls of `f`, which must carry its (verified) kernel plan.
pub fn schedule(f: &Function) -> Result<Schedule, String> {
    let len = f.insts.len();
    let plan = f
        .kernels
        .as_ref()
        .ok_or("internal error: the JIT needs the `fuse` pass's kernel plan")?;
    let views = broadcast_views(f);
    // Kernels with an epilogue, by root (their head and form), and their members.
    let mut epilogues: HashMap<ValueId, (ValueId, Epilogue)> = HashMap::new();
    let mut in_epilogue = vec![false; len];
    for k in &plan.kernels {
        if let Some(e) = epilogue(f, &views, &k.members) {
            epilogues.insert(k.root(), (k.members[0], e));
            for &m in &k.members {
                in_epilogue[m] = true;
            }
        }
    }
    // The fused group (by root) of every elementwise instruction.
    let mut group: Vec<Option<ValueId>> = vec![None; len];
    for k in &plan.kernels {
        if is_elementwise(f, k.members[0]) {
            for &m in &k.members {
                group[m] = Some(k.root());
            }
        }
    }
    let mut root: Vec<ValueId> = (0..len).collect();
    let mut materialized = vec![false; len];
    let mut steps = Vec::new();
    let mut fused = 0;
    for (v, inst) in f.insts.iter().enumerate() {
        let a = &inst.args;
        let shape = &inst.shape;
        // A precompiled kernel with its epilogue runs where its root is.
        if let Some(&(head, form)) = epilogues.get(&v) {
            let ha = &f.insts[head].args;
            let (kernel, operands) = match form {
                Epilogue::ConvBias { bias, relu } => (
                    conv_forward(f, head, true, relu)?,
                    vec![ha[0], ha[1], bias, v],
                ),
                Epilogue::PoolBackRelu => (pool(f, head, true)?, vec![ha[0], ha[1], v]),
            };
            materialized[v] = true;
            steps.push(Step::new(kernel, operands, v));
            continue;
        }
        if in_epilogue[v] {
            fused += 1;
            continue;
        }
        let kernel = match &inst.op {
            Op::Arg { .. } => {
                materialized[v] = true;
                continue;
            }
            Op::Reshape { .. } => {
                root[v] = root[a[0]];
                continue;
            }
            // Read through its source by the elementwise kernels using it.
            _ if views[v].is_some() => {
                fused += 1;
                continue;
            }
            _ if is_elementwise(f, v) => {
                if group[v] != Some(v) {
                    fused += 1;
                    continue;
                }
                let (kernel, operands) = fuse_group(f, v, &group, &views);
                materialized[v] = true;
                steps.push(Step::new(
                    kernel,
                    operands.into_iter().chain([v]).collect(),
                    v,
                ));
                continue;
            }
            Op::Const { value } => Kernel::Const((*value as f32).to_bits()),
            Op::BatchSize => Kernel::BatchSize,
            Op::Reduce { op, axes, .. } => {
                // The loop choice is the core's (`--emit ir-opt` prints it).
                let (blocks, unrolled) = reduce_loops(&f.insts[a[0]].shape, *op, axes);
                Kernel::Reduce {
                    op: *op,
                    blocks: blocks.iter().map(|&(d, r)| (Sym::of_dim(d), r)).collect(),
                    unrolled,
                }
            }
            Op::MatMul {
                transpose_a,
                transpose_b,
            } => {
                let sa = &f.insts[a[0]].shape;
                let sb = &f.insts[a[1]].shape;
                let r = sa.len();
                let (r1, c1) = (Sym::of_dim(sa[r - 2]), Sym::of_dim(sa[r - 1]));
                let (r2, c2) = (Sym::of_dim(sb[r - 2]), Sym::of_dim(sb[r - 1]));
                let (m, k) = if *transpose_a { (c1, r1) } else { (r1, c1) };
                let n = if *transpose_b { r2 } else { c2 };
                Kernel::MatMul {
                    lead: Sym::count(&sa[..r - 2]),
                    m,
                    k,
                    n,
                    ta: *transpose_a,
                    tb: *transpose_b,
                }
            }
            Op::Conv2d { .. } => conv_forward(f, v, false, false)?,
            Op::Conv2dBackInput { window, input_hw } => {
                let ks = &f.insts[a[1]].shape;
                let kf = |i: usize| ks[i].fixed().unwrap_or(0);
                let mut g = geom_of(shape, [kf(0), kf(1)], kf(3), window)?;
                g.in_h = input_hw[0];
                g.in_w = input_hw[1];
                check_conv(&g)?;
                Kernel::Conv {
                    kind: ConvKind::BackInput,
                    geom: g,
                    bias: false,
                    relu: false,
                }
            }
            Op::Conv2dBackKernel { window } => {
                let kf = |i: usize| shape[i].fixed().unwrap_or(0);
                let g = geom_of(&f.insts[a[0]].shape, [kf(0), kf(1)], kf(3), window)?;
                check_conv(&g)?;
                Kernel::Conv {
                    kind: ConvKind::BackKernel,
                    geom: g,
                    bias: false,
                    relu: false,
                }
            }
            Op::Pool2d { .. } | Op::Pool2dBack { .. } => pool(f, v, false)?,
            Op::Permute { perm } => {
                let is = strides(&f.insts[a[0]].shape)?;
                Kernel::Copy {
                    out_len: count(f, v),
                    fill_zero: false,
                    shifted_dst: false,
                    regions: vec![simplify(Region {
                        src: 0,
                        dims: dims(shape),
                        src_strides: perm.iter().map(|&p| is[p]).collect(),
                        src_off: Sym::fixed(0),
                        dst_strides: strides(shape)?,
                        dst_off: Sym::fixed(0),
                    })],
                }
            }
            Op::Broadcast { .. } => {
                let ish = &f.insts[a[0]].shape;
                let is = strides(ish)?;
                Kernel::Copy {
                    out_len: count(f, v),
                    fill_zero: false,
                    shifted_dst: false,
                    regions: vec![simplify(Region {
                        src: 0,
                        dims: dims(shape),
                        src_strides: (0..shape.len())
                            .map(|i| if ish[i] == shape[i] { is[i] } else { 0 })
                            .collect(),
                        src_off: Sym::fixed(0),
                        dst_strides: strides(shape)?,
                        dst_off: Sym::fixed(0),
                    })],
                }
            }
            Op::Slice { axis, start, .. } => {
                let is = strides(&f.insts[a[0]].shape)?;
                let mut step = Step::new(
                    Kernel::Copy {
                        out_len: count(f, v),
                        fill_zero: false,
                        shifted_dst: false,
                        regions: vec![simplify(Region {
                            src: 0,
                            dims: dims(shape),
                            src_off: Sym::fixed(0),
                            src_strides: is.clone(),
                            dst_strides: strides(shape)?,
                            dst_off: Sym::fixed(0),
                        })],
                    },
                    vec![a[0], v],
                    v,
                );
                step.offsets[0] = *start as i64 * is[*axis];
                materialized[v] = true;
                steps.push(step);
                continue;
            }
            Op::Pad { axis, before, .. } => {
                let os = strides(shape)?;
                let mut step = Step::new(
                    Kernel::Copy {
                        out_len: count(f, v),
                        fill_zero: true,
                        shifted_dst: true,
                        regions: vec![simplify(Region {
                            src: 0,
                            dims: dims(&f.insts[a[0]].shape),
                            src_strides: strides(&f.insts[a[0]].shape)?,
                            src_off: Sym::fixed(0),
                            dst_off: Sym::fixed(0),
                            dst_strides: os.clone(),
                        })],
                    },
                    vec![a[0], v],
                    v,
                );
                step.extra_output = Some(*before as i64 * os[*axis]);
                materialized[v] = true;
                steps.push(step);
                continue;
            }
            Op::Concat { axis } => {
                let os = strides(shape)?;
                let mut offset = Sym::fixed(0);
                let mut regions = Vec::new();
                for (k, &x) in a.iter().enumerate() {
                    let xs = &f.insts[x].shape;
                    regions.push(simplify(Region {
                        src: k,
                        dims: dims(xs),
                        src_strides: strides(xs)?,
                        src_off: Sym::fixed(0),
                        dst_strides: os.clone(),
                        dst_off: offset.mul(Sym::fixed(os[*axis] as usize)),
                    }));
                    offset = offset.add(Sym::of_dim(xs[*axis]));
                }
                Kernel::Copy {
                    out_len: count(f, v),
                    fill_zero: false,
                    shifted_dst: false,
                    regions,
                }
            }
            Op::Gather => {
                let ts = &f.insts[a[0]].shape;
                Kernel::Gather {
                    count: count(f, a[1]),
                    rows: ts[0].fixed().ok_or("batch-sized gather table")?,
                    row_len: Sym::count(&ts[1..]).c as usize,
                }
            }
            Op::ScatterAdd { rows } => Kernel::ScatterAdd {
                count: count(f, a[0]),
                rows: *rows,
                row_len: Sym::count(&shape[1..]).c as usize,
            },
            Op::OneHot { depth } => Kernel::OneHot {
                count: count(f, a[0]),
                depth: *depth,
            },
            Op::Bucketize { edges } => Kernel::Bucketize {
                count: count(f, a[0]),
                edges: edges.iter().map(|e| e.to_bits()).collect(),
            },
            Op::RandomUniform { salt, .. } => Kernel::RandomUniform {
                len: count(f, v),
                salt: *salt,
            },
            Op::LowerTriangle { rows, cols } => Kernel::LowerTriangle {
                rows: *rows,
                cols: *cols,
            },
            Op::Unary(_) | Op::Binary(_) | Op::Select => unreachable!("elementwise"),
        };
        materialized[v] = true;
        steps.push(Step::new(kernel, a.iter().copied().chain([v]).collect(), v));
    }
    // Operands read through reshapes use the source's buffer.
    for s in &mut steps {
        for o in &mut s.operands {
            *o = root[*o];
        }
    }
    Ok(Schedule {
        steps,
        root,
        materialized,
        fused,
    })
}

/// The expression of the fused group rooted at `g`, and its external inputs.
fn fuse_group(
    f: &Function,
    g: ValueId,
    group: &[Option<ValueId>],
    views: &[Option<BroadcastView>],
) -> (Kernel, Vec<ValueId>) {
    let mut nodes: Vec<ENode> = Vec::new();
    let mut inputs: Vec<(ValueId, InMode)> = Vec::new();
    let mut node_of: std::collections::HashMap<ValueId, usize> = Default::default();
    let mut input_node = |nodes: &mut Vec<ENode>, mut v: ValueId, mut mode: InMode| -> usize {
        // A broadcast view reads its source (through reshapes, and views of one element).
        loop {
            match views[v] {
                Some(BroadcastView::Splat) => mode = InMode::Splat,
                Some(BroadcastView::Cycle(m)) if mode != InMode::Splat => mode = InMode::Cycle(m),
                Some(BroadcastView::Cycle(_)) => {}
                None if matches!(f.insts[v].op, Op::Reshape { .. }) => {}
                None => break,
            }
            v = f.insts[v].args[0];
        }
        if let Op::Const { value } = f.insts[v].op {
            nodes.push(ENode::Const((value as f32).to_bits()));
            return nodes.len() - 1;
        }
        let k = match inputs.iter().position(|&(x, m)| x == v && m == mode) {
            Some(k) => k,
            None => {
                inputs.push((v, mode));
                inputs.len() - 1
            }
        };
        nodes.push(ENode::In(k));
        nodes.len() - 1
    };
    for v in 0..=g {
        if group[v] != Some(g) || !is_elementwise(f, v) {
            continue;
        }
        let inst = &f.insts[v];
        let mut operand = |nodes: &mut Vec<ENode>, a: ValueId, mode: InMode| -> usize {
            match node_of.get(&a) {
                Some(&n) if group[a] == Some(g) => n,
                _ => input_node(nodes, a, mode),
            }
        };
        let node = match &inst.op {
            Op::Broadcast { .. } => operand(&mut nodes, inst.args[0], InMode::Splat),
            Op::Unary(UnaryOp::ToFloat) => {
                let x = operand(&mut nodes, inst.args[0], InMode::FullInt);
                nodes.push(ENode::Un(UnaryOp::ToFloat, x));
                nodes.len() - 1
            }
            Op::Unary(u) => {
                let x = operand(&mut nodes, inst.args[0], InMode::Full);
                nodes.push(ENode::Un(*u, x));
                nodes.len() - 1
            }
            Op::Binary(b) => {
                let x = operand(&mut nodes, inst.args[0], InMode::Full);
                let y = operand(&mut nodes, inst.args[1], InMode::Full);
                nodes.push(ENode::Bin(*b, x, y));
                nodes.len() - 1
            }
            Op::Select => {
                let c = operand(&mut nodes, inst.args[0], InMode::Full);
                let x = operand(&mut nodes, inst.args[1], InMode::Full);
                let y = operand(&mut nodes, inst.args[2], InMode::Full);
                nodes.push(ENode::Sel(c, x, y));
                nodes.len() - 1
            }
            _ => unreachable!("not elementwise"),
        };
        node_of.insert(v, node);
    }
    // The root's value must be the last node (a broadcast root may alias an earlier one).
    let last = node_of[&g];
    if last + 1 != nodes.len() {
        nodes.push(ENode::Const(1f32.to_bits()));
        let one = nodes.len() - 1;
        nodes.push(ENode::Bin(BinaryOp::Mul, last, one));
    }
    let kernel = Kernel::Elementwise {
        len: count(f, g),
        inputs: inputs.iter().map(|i| i.1).collect(),
        nodes,
    };
    (kernel, inputs.into_iter().map(|i| i.0).collect())
}
