//! The reference interpreter: runs an IR function one primitive at a time over ndarray, in f32
//! (the product's numerics) or f64 (for gradient checks). It is the oracle every other backend
//! is compared with, so each op is written for clarity, not speed.

mod conv;
mod random;

use crate::ir::*;
use ndarray::{Array, ArrayD, Axis, Dimension, IxDyn, Zip};
use num_traits::Float;
use std::fmt::Debug;

/// The float types the interpreter runs in.
pub trait Real:
    Float + ndarray::LinalgScalar + ndarray::ScalarOperand + Debug + Send + Sync + Default + 'static
{
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn erf(self) -> Self;
}

impl Real for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn erf(self) -> Self {
        libm::erff(self)
    }
}

impl Real for f64 {
    fn from_f64(v: f64) -> Self {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn erf(self) -> Self {
        libm::erf(self)
    }
}

/// A runtime value: float data in the interpreter's precision, or i32 indices.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<T> {
    F(ArrayD<T>),
    I(ArrayD<i32>),
}

impl<T: Real> Value<T> {
    pub fn shape(&self) -> &[usize] {
        match self {
            Value::F(a) => a.shape(),
            Value::I(a) => a.shape(),
        }
    }
    pub fn float(&self) -> &ArrayD<T> {
        match self {
            Value::F(a) => a,
            Value::I(_) => panic!("internal error: expected a float value"),
        }
    }
    pub fn int(&self) -> &ArrayD<i32> {
        match self {
            Value::I(a) => a,
            Value::F(_) => panic!("internal error: expected an i32 value"),
        }
    }
    pub fn into_float(self) -> ArrayD<T> {
        match self {
            Value::F(a) => a,
            Value::I(a) => a.mapv(|v| T::from_f64(v as f64)),
        }
    }
    pub fn scalar(&self) -> T {
        *self.float().iter().next().expect("empty scalar")
    }
}

/// Per-call context: the batch size and the random stream of this step.
#[derive(Clone, Copy, Debug)]
pub struct Context {
    pub batch: usize,
    pub seed: u64,
    pub step: u64,
}

/// Runs `f` on `args` (in `f.args` order) and returns every value of `f.results` in order.
/// Argument shapes are checked against the signature before anything runs.
pub fn run<T: Real>(
    f: &Function,
    args: &[Value<T>],
    ctx: Context,
) -> Result<Vec<Value<T>>, String> {
    if args.len() != f.args.len() {
        return Err(format!(
            "{} takes {} arguments, got {}",
            f.name,
            f.args.len(),
            args.len()
        ));
    }
    for (a, v) in f.args.iter().zip(args) {
        let want = eval_shape(&a.shape, ctx.batch);
        if v.shape() != want.as_slice() {
            return Err(format!(
                "argument `{}` has shape {:?}, expected {:?}",
                a.name,
                v.shape(),
                want
            ));
        }
    }
    // Free each value after its last use so peak memory stays near the live set.
    let mut last_use = vec![0usize; f.insts.len()];
    for (v, inst) in f.insts.iter().enumerate() {
        for &a in &inst.args {
            last_use[a] = v;
        }
    }
    for r in &f.results {
        last_use[r.value] = usize::MAX;
    }
    let mut vals: Vec<Option<Value<T>>> = vec![None; f.insts.len()];
    for (v, inst) in f.insts.iter().enumerate() {
        let out = {
            let ins: Vec<&Value<T>> = inst
                .args
                .iter()
                .map(|&a| vals[a].as_ref().expect("value freed too early"))
                .collect();
            eval(inst, &ins, args, ctx)?
        };
        debug_assert_eq!(
            out.shape(),
            eval_shape(&inst.shape, ctx.batch).as_slice(),
            "%{v} = {}",
            inst.op.name()
        );
        vals[v] = Some(out);
        for &a in &inst.args {
            if last_use[a] == v {
                vals[a] = None;
            }
        }
    }
    Ok(f.results
        .iter()
        .map(|r| vals[r.value].clone().expect("result freed"))
        .collect())
}

fn scalar<T: Real>(v: f64) -> ArrayD<T> {
    ArrayD::from_elem(IxDyn(&[]), T::from_f64(v))
}

fn eval<T: Real>(
    inst: &Inst,
    ins: &[&Value<T>],
    args: &[Value<T>],
    ctx: Context,
) -> Result<Value<T>, String> {
    let f = |i: usize| ins[i].float();
    let out_shape = eval_shape(&inst.shape, ctx.batch);
    Ok(match &inst.op {
        Op::Arg { index } => args[*index].clone(),
        Op::Const { value } => Value::F(scalar(*value)),
        Op::BatchSize => Value::F(scalar(ctx.batch as f64)),
        Op::Unary(u) => match u {
            UnaryOp::ToFloat => Value::F(ins[0].int().mapv(|v| T::from_f64(v as f64))),
            _ => Value::F(f(0).mapv(|x| unary(*u, x))),
        },
        Op::Binary(op) => {
            let mut out = f(0).clone();
            let op = *op;
            Zip::from(&mut out)
                .and(f(1))
                .for_each(|a, &b| *a = binary(op, *a, b));
            Value::F(out)
        }
        Op::Select => {
            let mut out = f(1).clone();
            Zip::from(&mut out)
                .and(f(0))
                .and(f(2))
                .for_each(|o, &c, &b| {
                    if c == T::zero() {
                        *o = b
                    }
                });
            Value::F(out)
        }
        Op::Reduce {
            op,
            axes,
            keep_dims,
        } => {
            let mut x = f(0).clone();
            for &ax in axes.iter().rev() {
                x = match op {
                    ReduceOp::Sum => x.sum_axis(Axis(ax)),
                    ReduceOp::Max => x.fold_axis(Axis(ax), T::neg_infinity(), |&m, &v| {
                        if v > m || v.is_nan() {
                            v
                        } else {
                            m
                        }
                    }),
                };
                if *keep_dims {
                    x = x.insert_axis(Axis(ax));
                }
            }
            Value::F(x)
        }
        Op::MatMul {
            transpose_a,
            transpose_b,
        } => Value::F(matmul(f(0), f(1), *transpose_a, *transpose_b, &out_shape)),
        Op::Conv2d { window } => Value::F(conv::conv2d(f(0), f(1), window, &out_shape)),
        Op::Conv2dBackInput { window, .. } => {
            Value::F(conv::conv2d_back_input(f(0), f(1), window, &out_shape))
        }
        Op::Conv2dBackKernel { window } => {
            Value::F(conv::conv2d_back_kernel(f(0), f(1), window, &out_shape))
        }
        Op::Pool2d { kind, window } => Value::F(conv::pool2d(*kind, f(0), window, &out_shape)),
        Op::Pool2dBack { kind, window } => Value::F(conv::pool2d_back(*kind, f(0), f(1), window)),
        Op::Reshape { .. } => match ins[0] {
            Value::F(a) => Value::F(reshape(a, &out_shape)),
            Value::I(a) => Value::I(reshape(a, &out_shape)),
        },
        Op::Permute { perm } => match ins[0] {
            Value::F(a) => Value::F(
                a.clone()
                    .permuted_axes(IxDyn(perm))
                    .as_standard_layout()
                    .into_owned(),
            ),
            Value::I(a) => Value::I(
                a.clone()
                    .permuted_axes(IxDyn(perm))
                    .as_standard_layout()
                    .into_owned(),
            ),
        },
        Op::Broadcast { .. } => match ins[0] {
            Value::F(a) => Value::F(broadcast(a, &out_shape)?),
            Value::I(a) => Value::I(broadcast(a, &out_shape)?),
        },
        Op::Slice { axis, start, end } => {
            let s = f(0).slice_axis(Axis(*axis), ndarray::Slice::from(*start..*end));
            Value::F(s.to_owned())
        }
        Op::Pad { axis, before, .. } => {
            let mut out = ArrayD::zeros(IxDyn(&out_shape));
            let d = f(0).shape()[*axis];
            out.slice_axis_mut(Axis(*axis), ndarray::Slice::from(*before..before + d))
                .assign(f(0));
            Value::F(out)
        }
        Op::Concat { axis } => {
            let views: Vec<_> = ins.iter().map(|v| v.float().view()).collect();
            // `concatenate` may return a non-row-major array; later reductions would then add in
            // another order than the same reduction elsewhere (the JIT matches row-major order).
            let joined = ndarray::concatenate(Axis(*axis), &views).map_err(|e| e.to_string())?;
            Value::F(row_major(joined))
        }
        Op::Gather => {
            let table = f(0);
            let idx = ins[1].int();
            let rows = table.shape()[0];
            let row_len: usize = table.shape()[1..].iter().product();
            let flat = table.as_standard_layout();
            let flat = flat.as_slice().expect("standard layout");
            let mut out = Vec::with_capacity(idx.len() * row_len);
            for &i in idx.iter() {
                if i >= 0 && (i as usize) < rows {
                    let i = i as usize;
                    out.extend_from_slice(&flat[i * row_len..(i + 1) * row_len]);
                } else {
                    out.extend(std::iter::repeat_n(T::zero(), row_len));
                }
            }
            Value::F(ArrayD::from_shape_vec(IxDyn(&out_shape), out).map_err(|e| e.to_string())?)
        }
        Op::ScatterAdd { rows } => {
            let idx = ins[0].int();
            let vals = f(1).as_standard_layout();
            let vals = vals.as_slice().expect("standard layout");
            let row_len: usize = out_shape[1..].iter().product();
            let mut out = vec![T::zero(); rows * row_len];
            for (k, &i) in idx.iter().enumerate() {
                if i >= 0 && (i as usize) < *rows {
                    let dst = &mut out[i as usize * row_len..(i as usize + 1) * row_len];
                    for (d, &s) in dst.iter_mut().zip(&vals[k * row_len..(k + 1) * row_len]) {
                        *d = *d + s;
                    }
                }
            }
            Value::F(ArrayD::from_shape_vec(IxDyn(&out_shape), out).map_err(|e| e.to_string())?)
        }
        Op::OneHot { depth } => {
            let idx = ins[0].int();
            let mut out = vec![T::zero(); idx.len() * depth];
            for (k, &i) in idx.iter().enumerate() {
                if i >= 0 && (i as usize) < *depth {
                    out[k * depth + i as usize] = T::one();
                }
            }
            Value::F(ArrayD::from_shape_vec(IxDyn(&out_shape), out).map_err(|e| e.to_string())?)
        }
        Op::Bucketize { edges } => {
            let x = ins[0].float();
            let data = x
                .iter()
                .map(|&v| bucket(edges, v.to_f64() as f32))
                .collect();
            Value::I(ArrayD::from_shape_vec(IxDyn(&out_shape), data).map_err(|e| e.to_string())?)
        }
        Op::LowerTriangle { rows, cols } => {
            Value::F(ArrayD::from_shape_fn(IxDyn(&[*rows, *cols]), |i| {
                if i[1] <= i[0] {
                    T::one()
                } else {
                    T::zero()
                }
            }))
        }
        Op::RandomUniform { salt, .. } => {
            let n: usize = out_shape.iter().product();
            let data = (0..n as u64)
                .map(|i| T::from_f64(random::uniform(ctx.seed, ctx.step, *salt, i) as f64))
                .collect();
            Value::F(ArrayD::from_shape_vec(IxDyn(&out_shape), data).map_err(|e| e.to_string())?)
        }
    })
}

/// The number of `edges` (ascending) that are <= `x` (`Op::Bucketize`).
pub fn bucket(edges: &[f32], x: f32) -> i32 {
    edges.partition_point(|&e| e <= x) as i32
}

fn unary<T: Real>(op: UnaryOp, x: T) -> T {
    match op {
        UnaryOp::Neg => -x,
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Sigmoid => {
            // Written to avoid overflow of exp for large |x|.
            if x >= T::zero() {
                T::one() / (T::one() + (-x).exp())
            } else {
                let e = x.exp();
                e / (T::one() + e)
            }
        }
        UnaryOp::Erf => x.erf(),
        UnaryOp::Abs => x.abs(),
        UnaryOp::Sign => {
            if x > T::zero() {
                T::one()
            } else if x < T::zero() {
                -T::one()
            } else {
                T::zero()
            }
        }
        UnaryOp::StopGradient => x,
        UnaryOp::ToFloat => unreachable!("handled by the caller"),
    }
}

fn binary<T: Real>(op: BinaryOp, a: T, b: T) -> T {
    let flag = |c: bool| if c { T::one() } else { T::zero() };
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        // NaN-propagating, unlike f32::max.
        BinaryOp::Max => {
            if a.is_nan() || a > b {
                a
            } else {
                b
            }
        }
        BinaryOp::Min => {
            if a.is_nan() || a < b {
                a
            } else {
                b
            }
        }
        BinaryOp::Pow => a.powf(b),
        BinaryOp::Greater => flag(a > b),
        BinaryOp::GreaterEq => flag(a >= b),
        BinaryOp::Equal => flag(a == b),
    }
}

fn reshape<E: Clone>(a: &ArrayD<E>, shape: &[usize]) -> ArrayD<E> {
    let std = a.as_standard_layout().into_owned();
    std.into_shape_with_order(IxDyn(shape))
        .expect("reshape of a verified function")
}

fn broadcast<E: Clone>(a: &ArrayD<E>, shape: &[usize]) -> Result<ArrayD<E>, String> {
    a.broadcast(IxDyn(shape))
        .map(|v| v.to_owned())
        .ok_or_else(|| format!("cannot broadcast {:?} to {shape:?}", a.shape()))
}

/// Batched matmul over the last two axes.
fn matmul<T: Real>(
    a: &ArrayD<T>,
    b: &ArrayD<T>,
    ta: bool,
    tb: bool,
    out_shape: &[usize],
) -> ArrayD<T> {
    let r = a.ndim();
    let lead: usize = a.shape()[..r - 2].iter().product();
    let a3 = reshape(a, &[lead, a.shape()[r - 2], a.shape()[r - 1]]);
    let b3 = reshape(b, &[lead, b.shape()[r - 2], b.shape()[r - 1]]);
    let (m, n) = (out_shape[r - 2], out_shape[r - 1]);
    let mut out = ndarray::Array3::<T>::zeros((lead, m, n));
    for i in 0..lead {
        let x = a3.index_axis(Axis(0), i);
        let y = b3.index_axis(Axis(0), i);
        let x = x.into_dimensionality::<ndarray::Ix2>().expect("rank 2");
        let y = y.into_dimensionality::<ndarray::Ix2>().expect("rank 2");
        let x = if ta { x.reversed_axes() } else { x };
        let y = if tb { y.reversed_axes() } else { y };
        ndarray::linalg::general_mat_mul(
            T::one(),
            &x,
            &y,
            T::zero(),
            &mut out.index_axis_mut(Axis(0), i),
        );
    }
    out.into_dyn()
        .into_shape_with_order(IxDyn(out_shape))
        .expect("matmul shape")
}

/// `a` in row-major layout, copied only when it is not already.
fn row_major<T: Clone, D: Dimension>(a: Array<T, D>) -> Array<T, D> {
    if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned()
    }
}
