//! Kernel descriptions: what one compiled loop nest computes, independent of which IR values it
//! reads and writes (those arrive as a list of buffer pointers at run time). Two IR instructions
//! with equal descriptions share one compiled kernel.

use fm_compiler::ir::{BinaryOp, Dim, PoolKind, ReduceOp, UnaryOp};

/// A size linear in the batch: `n * N + c`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Sym {
    pub n: i64,
    pub c: i64,
}

impl Sym {
    pub const ONE: Sym = Sym { n: 0, c: 1 };
    pub fn fixed(c: usize) -> Sym {
        Sym { n: 0, c: c as i64 }
    }
    pub fn of_dim(d: Dim) -> Sym {
        match d {
            Dim::Batch(k) => Sym { n: k as i64, c: 0 },
            Dim::Fixed(c) => Sym::fixed(c),
        }
    }
    /// Element count of a shape.
    pub fn count(shape: &[Dim]) -> Sym {
        shape
            .iter()
            .fold(Sym::ONE, |acc, &d| acc.mul(Sym::of_dim(d)))
    }
    /// Product; at most one factor may depend on N (the batch is only ever on axis 0).
    pub fn mul(self, o: Sym) -> Sym {
        if self.n == 0 {
            Sym {
                n: o.n * self.c,
                c: o.c * self.c,
            }
        } else {
            assert_eq!(
                o.n, 0,
                "internal error: product of two batch-dependent sizes"
            );
            Sym {
                n: self.n * o.c,
                c: self.c * o.c,
            }
        }
    }
    pub fn add(self, o: Sym) -> Sym {
        Sym {
            n: self.n + o.n,
            c: self.c + o.c,
        }
    }
    pub fn eval(self, n: usize) -> usize {
        (self.n as usize) * n + self.c as usize
    }
}

/// How an elementwise kernel reads one of its inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InMode {
    /// f32 element `i`.
    Full,
    /// i32 element `i` (only `to_f32` reads these).
    FullInt,
    /// The single element 0, broadcast to every lane.
    Splat,
    /// f32 element `i % m` (a broadcast view of `m` trailing elements, such as a bias; `m`
    /// divides the elements per batch row, so a batch slice starts at element 0 again).
    Cycle(usize),
}

/// One node of a fused elementwise expression; operands index earlier nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ENode {
    In(usize),
    /// f32 bits.
    Const(u32),
    Un(UnaryOp, usize),
    Bin(BinaryOp, usize, usize),
    Sel(usize, usize, usize),
}

/// A rectangular copy from operand `src` into the output, row-major over `dims`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Region {
    pub src: usize,
    pub dims: Vec<Sym>,
    pub src_strides: Vec<i64>,
    pub src_off: Sym,
    pub dst_strides: Vec<i64>,
    pub dst_off: Sym,
}

/// NHWC window geometry with the batch symbolic (`Conv2dShape`/`Pool2dShape` of the kernels).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Geom {
    pub batch: Sym,
    pub in_h: usize,
    pub in_w: usize,
    pub in_c: usize,
    pub kernel: [usize; 2],
    pub out_c: usize,
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    pub pad_before: [usize; 2],
    pub pad_after: [usize; 2],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvKind {
    /// (x, kernel) -> y
    Forward,
    /// (dy, kernel) -> dx
    BackInput,
    /// (x, dy) -> dkernel
    BackKernel,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Operands: inputs in order, then the output.
    Elementwise {
        len: Sym,
        inputs: Vec<InMode>,
        nodes: Vec<ENode>,
    },
    /// Operands: input, output. Blocks of merged axes (size, reduced?), outermost first.
    /// `unrolled`: an innermost reduced run adds in ndarray's eightfold-unrolled order (the
    /// interpreter's order when it sums over an array's last axis); otherwise in sequence.
    Reduce {
        op: ReduceOp,
        blocks: Vec<(Sym, bool)>,
        unrolled: bool,
    },
    /// Operands: sources, then the output. Zero-fills the output first when `fill_zero`.
    /// With `shifted_dst`, regions write through one more pointer after the output (the
    /// output advanced to where the copied block starts: a pad's offset is not in the kernel).
    Copy {
        out_len: Sym,
        fill_zero: bool,
        shifted_dst: bool,
        regions: Vec<Region>,
    },
    /// Operands: table, indices, output.
    Gather {
        count: Sym,
        rows: usize,
        row_len: usize,
    },
    /// Operands: indices, values, output.
    ScatterAdd {
        count: Sym,
        rows: usize,
        row_len: usize,
    },
    /// Operands: indices, output.
    OneHot {
        count: Sym,
        depth: usize,
    },
    /// Operands: x (f32), output (i32). `edges` are f32 bits, ascending.
    Bucketize {
        count: Sym,
        edges: Vec<u32>,
    },
    /// Operands: output.
    RandomUniform {
        len: Sym,
        salt: u64,
    },
    LowerTriangle {
        rows: usize,
        cols: usize,
    },
    /// f32 bits.
    Const(u32),
    BatchSize,
    /// Operands: a, b, output. `lead` batched products of `m x k` by `k x n`.
    MatMul {
        lead: Sym,
        m: Sym,
        k: Sym,
        n: Sym,
        ta: bool,
        tb: bool,
    },
    /// Operands as [`ConvKind`] says; a forward convolution with `bias` reads it after the
    /// kernel (x, kernel, bias, y) and adds it to each output tile, then applies a ReLU when
    /// `relu` (an [`fm_compiler::ir::kernels::Epilogue::ConvBias`]).
    Conv {
        kind: ConvKind,
        geom: Geom,
        bias: bool,
        relu: bool,
    },
    /// Forward operands: x, y. Backward: x, dy, dx. A max-pool backward with `relu` also does
    /// the backward of the ReLU whose output x is
    /// ([`fm_compiler::ir::kernels::Epilogue::PoolBackRelu`]).
    Pool {
        kind: PoolKind,
        back: bool,
        geom: Geom,
        relu: bool,
    },
}

impl Kernel {
    /// A short name for statistics and the CLIF listing.
    pub fn name(&self) -> String {
        match self {
            Kernel::Elementwise { nodes, .. } => {
                let ops: Vec<String> = nodes
                    .iter()
                    .filter_map(|n| match n {
                        ENode::Un(u, _) => Some(format!("{u:?}").to_lowercase()),
                        ENode::Bin(b, _, _) => Some(format!("{b:?}").to_lowercase()),
                        ENode::Sel(..) => Some("select".into()),
                        _ => None,
                    })
                    .collect();
                format!("elementwise[{}]", ops.join(","))
            }
            Kernel::Reduce { op, .. } => format!("reduce_{op:?}").to_lowercase(),
            Kernel::Copy { .. } => "copy".into(),
            Kernel::Gather { .. } => "gather".into(),
            Kernel::ScatterAdd { .. } => "scatter_add".into(),
            Kernel::OneHot { .. } => "one_hot".into(),
            Kernel::Bucketize { .. } => "bucketize".into(),
            Kernel::RandomUniform { .. } => "random_uniform".into(),
            Kernel::LowerTriangle { .. } => "lower_triangle".into(),
            Kernel::Const(_) => "const".into(),
            Kernel::BatchSize => "batch_size".into(),
            Kernel::MatMul { .. } => "matmul".into(),
            Kernel::Conv {
                kind, bias, relu, ..
            } => format!(
                "conv2d_{kind:?}{}{}",
                if *bias { "_bias" } else { "" },
                if *relu { "_relu" } else { "" }
            )
            .to_lowercase(),
            Kernel::Pool {
                kind, back, relu, ..
            } => format!(
                "{kind:?}_pool2d{}{}",
                if *back { "_back" } else { "" },
                if *relu { "_relu" } else { "" }
            )
            .to_lowercase(),
        }
    }
}
