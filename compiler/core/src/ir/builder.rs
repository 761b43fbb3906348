//! Building IR functions: one method per primitive plus a few conveniences (implicit
//! broadcasting, means, softmax) used by lowering, autodiff and the optimizers.
//!
//! Shapes are inferred by [`super::shape::infer`]. A shape error here means lowering produced an
//! ill-typed program, which is a compiler bug (the checker has already rejected bad models), so
//! the builder panics with the offending op rather than threading errors through every rule.

use super::shape::infer;
use super::*;

#[derive(Clone, Debug)]
pub struct Builder {
    pub func: Function,
    /// The origin given to instructions pushed from now on.
    pub origin: Origin,
}

impl Builder {
    pub fn new(name: &str) -> Self {
        Builder {
            func: Function {
                name: name.to_string(),
                args: Vec::new(),
                insts: Vec::new(),
                results: Vec::new(),
                kernels: None,
            },
            origin: Origin::Unknown,
        }
    }

    pub fn finish(self) -> Function {
        self.func
    }

    pub fn shape(&self, v: ValueId) -> &Shape {
        &self.func.insts[v].shape
    }

    pub fn dtype(&self, v: ValueId) -> DType {
        self.func.insts[v].dtype
    }

    pub fn rank(&self, v: ValueId) -> usize {
        self.shape(v).len()
    }

    /// Declares a function argument and returns the value that reads it.
    pub fn arg(&mut self, name: &str, kind: ArgKind, shape: Shape, dtype: DType) -> ValueId {
        let index = self.func.args.len();
        self.func.args.push(Arg {
            name: name.to_string(),
            kind,
            shape: shape.clone(),
            dtype,
        });
        self.push_typed(Op::Arg { index }, vec![], shape, dtype)
    }

    pub fn result(&mut self, name: &str, kind: ResultKind, value: ValueId) {
        self.func.results.push(FnResult {
            name: name.to_string(),
            kind,
            value,
        });
    }

    fn push_typed(&mut self, op: Op, args: Vec<ValueId>, shape: Shape, dtype: DType) -> ValueId {
        self.func.insts.push(Inst {
            op,
            args,
            shape,
            dtype,
            origin: self.origin,
        });
        self.func.insts.len() - 1
    }

    /// Appends `op(args)`, inferring its shape.
    pub fn push(&mut self, op: Op, args: Vec<ValueId>) -> ValueId {
        let ins: Vec<(&Shape, DType)> = args
            .iter()
            .map(|&a| (&self.func.insts[a].shape, self.func.insts[a].dtype))
            .collect();
        match infer(&op, &ins) {
            Ok((shape, dtype)) => self.push_typed(op, args, shape, dtype),
            Err(e) => panic!(
                "internal compiler error: ill-typed IR in `{}`: {e}",
                self.func.name
            ),
        }
    }

    // ---- leaves ----

    pub fn constant(&mut self, value: f64) -> ValueId {
        self.push(Op::Const { value }, vec![])
    }

    /// A constant broadcast to `shape`.
    pub fn full(&mut self, value: f64, shape: &Shape) -> ValueId {
        let c = self.constant(value);
        self.broadcast_scalar(c, shape)
    }

    pub fn zeros_like(&mut self, v: ValueId) -> ValueId {
        let s = self.shape(v).clone();
        self.full(0.0, &s)
    }

    pub fn batch_size(&mut self) -> ValueId {
        self.push(Op::BatchSize, vec![])
    }

    pub fn random_uniform(&mut self, shape: Shape, salt: u64) -> ValueId {
        self.push(Op::RandomUniform { shape, salt }, vec![])
    }

    // ---- elementwise ----

    pub fn unary(&mut self, op: UnaryOp, x: ValueId) -> ValueId {
        self.push(Op::Unary(op), vec![x])
    }

    /// Binary op with NumPy broadcasting: operands are reshaped and broadcast explicitly.
    pub fn binary(&mut self, op: BinaryOp, a: ValueId, b: ValueId) -> ValueId {
        let target = broadcast_shapes(self.shape(a), self.shape(b)).unwrap_or_else(|| {
            panic!(
                "internal compiler error: cannot broadcast {} and {}",
                print::shape_str(self.shape(a)),
                print::shape_str(self.shape(b))
            )
        });
        let a = self.broadcast_to(a, &target);
        let b = self.broadcast_to(b, &target);
        self.push(Op::Binary(op), vec![a, b])
    }

    /// Reshapes (adding leading 1-axes) and broadcasts `v` to `target` when needed.
    pub fn broadcast_to(&mut self, v: ValueId, target: &Shape) -> ValueId {
        let s = self.shape(v).clone();
        if &s == target {
            return v;
        }
        let mut v = v;
        if s.len() < target.len() {
            let mut padded = vec![Dim::Fixed(1); target.len() - s.len()];
            padded.extend_from_slice(&s);
            v = self.reshape(v, padded);
        }
        if self.shape(v) == target {
            return v;
        }
        self.push(
            Op::Broadcast {
                shape: target.clone(),
            },
            vec![v],
        )
    }

    fn broadcast_scalar(&mut self, c: ValueId, shape: &Shape) -> ValueId {
        self.broadcast_to(c, shape)
    }

    pub fn add(&mut self, a: ValueId, b: ValueId) -> ValueId {
        self.binary(BinaryOp::Add, a, b)
    }
    pub fn sub(&mut self, a: ValueId, b: ValueId) -> ValueId {
        self.binary(BinaryOp::Sub, a, b)
    }
    pub fn mul(&mut self, a: ValueId, b: ValueId) -> ValueId {
        self.binary(BinaryOp::Mul, a, b)
    }
    pub fn div(&mut self, a: ValueId, b: ValueId) -> ValueId {
        self.binary(BinaryOp::Div, a, b)
    }
    pub fn max(&mut self, a: ValueId, b: ValueId) -> ValueId {
        self.binary(BinaryOp::Max, a, b)
    }
    pub fn min(&mut self, a: ValueId, b: ValueId) -> ValueId {
        self.binary(BinaryOp::Min, a, b)
    }
    pub fn neg(&mut self, x: ValueId) -> ValueId {
        self.unary(UnaryOp::Neg, x)
    }
    pub fn exp(&mut self, x: ValueId) -> ValueId {
        self.unary(UnaryOp::Exp, x)
    }
    pub fn log(&mut self, x: ValueId) -> ValueId {
        self.unary(UnaryOp::Log, x)
    }
    pub fn sqrt(&mut self, x: ValueId) -> ValueId {
        self.unary(UnaryOp::Sqrt, x)
    }
    pub fn square(&mut self, x: ValueId) -> ValueId {
        self.mul(x, x)
    }
    pub fn add_scalar(&mut self, x: ValueId, c: f64) -> ValueId {
        let c = self.constant(c);
        self.add(x, c)
    }
    pub fn mul_scalar(&mut self, x: ValueId, c: f64) -> ValueId {
        let c = self.constant(c);
        self.mul(x, c)
    }
    pub fn select(&mut self, cond: ValueId, a: ValueId, b: ValueId) -> ValueId {
        let s = broadcast_shapes(self.shape(a), self.shape(b))
            .and_then(|s| broadcast_shapes(&s, self.shape(cond)))
            .expect("internal compiler error: select shapes");
        let cond = self.broadcast_to(cond, &s);
        let a = self.broadcast_to(a, &s);
        let b = self.broadcast_to(b, &s);
        self.push(Op::Select, vec![cond, a, b])
    }
    /// Clamps into `[lo, hi]`.
    pub fn clip(&mut self, x: ValueId, lo: f64, hi: f64) -> ValueId {
        let lo = self.constant(lo);
        let hi = self.constant(hi);
        let x = self.max(x, lo);
        self.min(x, hi)
    }

    // ---- reductions ----

    pub fn reduce(&mut self, op: ReduceOp, x: ValueId, axes: &[usize], keep_dims: bool) -> ValueId {
        if axes.is_empty() {
            return x;
        }
        let mut axes = axes.to_vec();
        axes.sort_unstable();
        axes.dedup();
        self.push(
            Op::Reduce {
                op,
                axes,
                keep_dims,
            },
            vec![x],
        )
    }
    pub fn sum(&mut self, x: ValueId, axes: &[usize], keep_dims: bool) -> ValueId {
        self.reduce(ReduceOp::Sum, x, axes, keep_dims)
    }
    pub fn reduce_max(&mut self, x: ValueId, axes: &[usize], keep_dims: bool) -> ValueId {
        self.reduce(ReduceOp::Max, x, axes, keep_dims)
    }
    /// Sum of every element (a scalar).
    pub fn sum_all(&mut self, x: ValueId) -> ValueId {
        let axes: Vec<usize> = (0..self.rank(x)).collect();
        self.sum(x, &axes, false)
    }
    /// Mean over `axes`, dividing by the (possibly batch-dependent) element count.
    pub fn mean(&mut self, x: ValueId, axes: &[usize], keep_dims: bool) -> ValueId {
        let count = self.count(x, axes);
        let s = self.sum(x, axes, keep_dims);
        self.div(s, count)
    }
    /// Mean of every element.
    pub fn mean_all(&mut self, x: ValueId) -> ValueId {
        let axes: Vec<usize> = (0..self.rank(x)).collect();
        self.mean(x, &axes, false)
    }
    /// The number of elements along `axes` as an f32 scalar value.
    pub fn count(&mut self, x: ValueId, axes: &[usize]) -> ValueId {
        let mut fixed = 1usize;
        let mut batch = 0usize;
        for &a in axes {
            match self.shape(x)[a] {
                Dim::Fixed(d) => fixed *= d,
                Dim::Batch(k) => batch = k,
            }
        }
        let c = self.constant(fixed as f64 * batch.max(1) as f64);
        if batch > 0 {
            let n = self.batch_size();
            self.mul(c, n)
        } else {
            c
        }
    }

    // ---- structure ----

    pub fn matmul(
        &mut self,
        a: ValueId,
        b: ValueId,
        transpose_a: bool,
        transpose_b: bool,
    ) -> ValueId {
        self.push(
            Op::MatMul {
                transpose_a,
                transpose_b,
            },
            vec![a, b],
        )
    }
    pub fn reshape(&mut self, x: ValueId, shape: Shape) -> ValueId {
        if self.shape(x) == &shape {
            return x;
        }
        self.push(Op::Reshape { shape }, vec![x])
    }
    pub fn permute(&mut self, x: ValueId, perm: Vec<usize>) -> ValueId {
        if perm.iter().enumerate().all(|(i, &p)| i == p) {
            return x;
        }
        self.push(Op::Permute { perm }, vec![x])
    }
    pub fn slice(&mut self, x: ValueId, axis: usize, start: usize, end: usize) -> ValueId {
        self.push(Op::Slice { axis, start, end }, vec![x])
    }
    pub fn concat(&mut self, xs: Vec<ValueId>, axis: usize) -> ValueId {
        if xs.len() == 1 {
            return xs[0];
        }
        self.push(Op::Concat { axis }, xs)
    }

    /// Numerically stable softmax along `axis`.
    pub fn softmax(&mut self, x: ValueId, axis: usize) -> ValueId {
        let m = self.reduce_max(x, &[axis], true);
        let m = self.unary(UnaryOp::StopGradient, m);
        let z = self.sub(x, m);
        let e = self.exp(z);
        let s = self.sum(e, &[axis], true);
        self.div(e, s)
    }

    /// Numerically stable log-softmax along `axis`.
    pub fn log_softmax(&mut self, x: ValueId, axis: usize) -> ValueId {
        let m = self.reduce_max(x, &[axis], true);
        let m = self.unary(UnaryOp::StopGradient, m);
        let z = self.sub(x, m);
        let e = self.exp(z);
        let s = self.sum(e, &[axis], true);
        let l = self.log(s);
        self.sub(z, l)
    }
}

/// NumPy broadcasting of two shapes (right-aligned; equal or 1).
pub fn broadcast_shapes(a: &[Dim], b: &[Dim]) -> Option<Shape> {
    let r = a.len().max(b.len());
    let mut out = vec![Dim::Fixed(1); r];
    for i in 0..r {
        let da = if i + a.len() >= r {
            a[i + a.len() - r]
        } else {
            Dim::Fixed(1)
        };
        let db = if i + b.len() >= r {
            b[i + b.len() - r]
        } else {
            Dim::Fixed(1)
        };
        out[i] = if da == db || db == Dim::Fixed(1) {
            da
        } else if da == Dim::Fixed(1) {
            db
        } else {
            return None;
        };
    }
    Some(out)
}
