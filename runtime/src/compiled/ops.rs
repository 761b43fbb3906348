//! Tensor operations called by generated code, on row-major slices with their shapes.
//!
//! Elementwise work is generated inline as loops; what is here is everything else: GEMM,
//! convolution and pooling through [`crate::kernels`] (the JIT's kernels), reductions and data
//! movement. Each matches the reference interpreter's definition of the IR op of the same name
//! (`fm_compiler::interp`). Shapes come from a verified IR function, so a kernel's length check
//! failing is a code generator bug; it is reported as an error, never a panic.

use crate::kernels::{self, Conv2dShape, MatMut, MatRef, Pool2dShape};
use crate::RuntimeError;

pub use crate::random::uniform;

/// Runs a kernel writing `out`; on error (a length check failing, which means a code generator
/// bug) records it in `ctx` and zeroes `out` (the generated function has no early returns, so it
/// stays small to compile; the caller checks [`super::Ctx::take_error`] afterwards).
fn output(
    ctx: &super::Ctx,
    out: &mut [f32],
    f: impl FnOnce(&mut [f32]) -> Result<(), kernels::KernelError>,
) {
    if let Err(e) = f(out) {
        ctx.fail(RuntimeError::backend(format!(
            "internal error in generated code: {e}"
        )));
        out.iter_mut().for_each(|v| *v = 0.0);
    }
}

/// NaN-propagating maximum (the IR's `max`; `f32::max` ignores NaN).
#[inline(always)]
pub fn max(a: f32, b: f32) -> f32 {
    if a.is_nan() || a > b {
        a
    } else {
        b
    }
}

/// NaN-propagating minimum.
#[inline(always)]
pub fn min(a: f32, b: f32) -> f32 {
    if a.is_nan() || a < b {
        a
    } else {
        b
    }
}

/// 1.0 or 0.0.
#[inline(always)]
pub fn flag(c: bool) -> f32 {
    if c {
        1.0
    } else {
        0.0
    }
}

/// The logistic function, written so `exp` never overflows.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// -1, 0 or 1 (0 for NaN).
#[inline(always)]
pub fn sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// The error function (musl's `erff`, as the interpreter).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    libm::erff(x)
}

/// `op(a) @ op(b)` for `lead` stacked matrices into `out` (`[lead, m, n]`): `a` is
/// `[lead, m, k]` (`[lead, k, m]` when `ta`), `b` is `[lead, k, n]` (`[lead, n, k]` when `tb`).
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    ctx: &super::Ctx,
    a: &[f32],
    b: &[f32],
    out: &mut [f32],
    lead: usize,
    m: usize,
    k: usize,
    n: usize,
    ta: bool,
    tb: bool,
) {
    output(ctx, out, |out| {
        for i in 0..lead {
            let a_i = a.get(i * m * k..(i + 1) * m * k).unwrap_or(&[]);
            let b_i = b.get(i * k * n..(i + 1) * k * n).unwrap_or(&[]);
            let am = if ta {
                MatRef::row_major(a_i, k, m).map(MatRef::t)
            } else {
                MatRef::row_major(a_i, m, k)
            }?;
            let bm = if tb {
                MatRef::row_major(b_i, n, k).map(MatRef::t)
            } else {
                MatRef::row_major(b_i, k, n)
            }?;
            let c_i = out.get_mut(i * m * n..(i + 1) * m * n).unwrap_or(&mut []);
            let c = MatMut::row_major(c_i, m, n)?;
            kernels::gemm(1.0, am, bm, 0.0, c, 0)?;
        }
        Ok(())
    })
}

/// The geometry of a 2-D convolution of `[batch, h, w, c]` by `[kh, kw, c, f]`.
#[allow(clippy::too_many_arguments)]
pub fn conv_shape(
    batch: usize,
    hwc: [usize; 3],
    kernel: [usize; 2],
    filters: usize,
    stride: [usize; 2],
    dilation: [usize; 2],
    pad_before: [usize; 2],
    pad_after: [usize; 2],
) -> Conv2dShape {
    Conv2dShape {
        batch,
        in_h: hwc[0],
        in_w: hwc[1],
        in_c: hwc[2],
        kernel_h: kernel[0],
        kernel_w: kernel[1],
        out_c: filters,
        stride,
        dilation,
        pad_before,
        pad_after,
    }
}

/// NHWC convolution, no bias, into `out`.
pub fn conv2d(ctx: &super::Ctx, s: &Conv2dShape, x: &[f32], k: &[f32], out: &mut [f32]) {
    output(ctx, out, |out| kernels::conv2d_forward(s, x, k, out, 0))
}

/// [`conv2d`] plus a bias per output channel, then `max(_, 0)` when `relu`: the JIT's
/// convolution epilogue (applied to each output tile while it is in cache).
pub fn conv2d_bias(
    ctx: &super::Ctx,
    s: &Conv2dShape,
    x: &[f32],
    k: &[f32],
    bias: &[f32],
    relu: bool,
    out: &mut [f32],
) {
    let epilogue = kernels::ConvEpilogue {
        bias: Some(bias),
        relu,
    };
    output(ctx, out, |out| {
        kernels::conv2d_forward_fused(s, x, k, epilogue, out, 0)
    })
}

/// Gradient of [`conv2d`] w.r.t. its input.
pub fn conv2d_back_input(
    ctx: &super::Ctx,
    s: &Conv2dShape,
    dy: &[f32],
    k: &[f32],
    out: &mut [f32],
) {
    output(ctx, out, |out| {
        kernels::conv2d_backward_input(s, dy, k, out, 0)
    })
}

/// Gradient of [`conv2d`] w.r.t. its kernel.
pub fn conv2d_back_kernel(
    ctx: &super::Ctx,
    s: &Conv2dShape,
    x: &[f32],
    dy: &[f32],
    out: &mut [f32],
) {
    output(ctx, out, |out| {
        kernels::conv2d_backward_kernel(s, x, dy, out, 0)
    })
}

/// The geometry of pooling `[batch, h, w, c]`.
pub fn pool_shape(
    batch: usize,
    hwc: [usize; 3],
    window: [usize; 2],
    stride: [usize; 2],
    pad_before: [usize; 2],
    pad_after: [usize; 2],
) -> Pool2dShape {
    Pool2dShape {
        batch,
        in_h: hwc[0],
        in_w: hwc[1],
        channels: hwc[2],
        window,
        stride,
        pad_before,
        pad_after,
    }
}

pub fn max_pool2d(ctx: &super::Ctx, s: &Pool2dShape, x: &[f32], out: &mut [f32]) {
    output(ctx, out, |out| kernels::max_pool2d_forward(s, x, out))
}

pub fn avg_pool2d(ctx: &super::Ctx, s: &Pool2dShape, x: &[f32], out: &mut [f32]) {
    output(ctx, out, |out| kernels::avg_pool2d_forward(s, x, out))
}

/// Gradient of [`max_pool2d`]: each window's gradient goes to its first maximum.
pub fn max_pool2d_back(ctx: &super::Ctx, s: &Pool2dShape, x: &[f32], dy: &[f32], out: &mut [f32]) {
    output(ctx, out, |out| kernels::max_pool2d_backward(s, x, dy, out))
}

/// [`max_pool2d_back`] through the ReLU whose output `x` is: `select(x > 0, back, 0)` in one
/// pass, as the JIT's pool-backward epilogue.
pub fn max_pool2d_back_relu(
    ctx: &super::Ctx,
    s: &Pool2dShape,
    x: &[f32],
    dy: &[f32],
    out: &mut [f32],
) {
    output(ctx, out, |out| {
        kernels::max_pool2d_backward_relu(s, x, dy, out)
    })
}

pub fn avg_pool2d_back(ctx: &super::Ctx, s: &Pool2dShape, dy: &[f32], out: &mut [f32]) {
    output(ctx, out, |out| kernels::avg_pool2d_backward(s, dy, out))
}

/// `(outer, size, inner)` of `dims` around `axis`.
fn split_at_axis(dims: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = dims[..axis].iter().product();
    let inner = dims[axis + 1..].iter().product();
    (outer, dims[axis], inner)
}

/// Sum over `axes` of a tensor of shape `dims` (the last axis first, as the interpreter) into
/// `out`, row-major over the remaining axes (kept axes have size 1, same layout).
pub fn reduce_sum(x: &[f32], dims: &[usize], axes: &[usize], out: &mut [f32]) {
    reduce(x, dims, axes, 0.0, |acc, v| acc + v, out)
}

/// Sum over the last axis of a tensor of shape `dims` into `out`, each row added in the order
/// of ndarray's `unrolled_fold` (eight running partials, combined as `(p0+p4) + (p1+p5) + ...`,
/// then the tail in sequence): the interpreter's order for such a sum, and the JIT's.
pub fn reduce_sum_last(x: &[f32], dims: &[usize], out: &mut [f32]) {
    let len = dims.last().copied().unwrap_or(1);
    if len == 0 {
        out.iter_mut().for_each(|v| *v = 0.0);
        return;
    }
    for (o, row) in out.iter_mut().zip(x.chunks_exact(len)) {
        *o = unrolled_sum(row);
    }
}

fn unrolled_sum(mut xs: &[f32]) -> f32 {
    let mut p = [0.0f32; 8];
    while xs.len() >= 8 {
        for (acc, v) in p.iter_mut().zip(&xs[..8]) {
            *acc += v;
        }
        xs = &xs[8..];
    }
    let mut acc = 0.0f32;
    for k in 0..4 {
        acc += p[k] + p[k + 4];
    }
    for v in xs {
        acc += v;
    }
    acc
}

/// Maximum over `axes` into `out`; NaN wins.
pub fn reduce_max(x: &[f32], dims: &[usize], axes: &[usize], out: &mut [f32]) {
    let max = |m: f32, v: f32| if v > m || v.is_nan() { v } else { m };
    reduce(x, dims, axes, f32::NEG_INFINITY, max, out)
}

/// One axis at a time, the last first. One axis (what `split_sums` leaves) needs no scratch
/// memory; several allocate the partial results.
fn reduce(
    x: &[f32],
    dims: &[usize],
    axes: &[usize],
    init: f32,
    f: impl Fn(f32, f32) -> f32 + Copy,
    out: &mut [f32],
) {
    let one_axis = |x: &[f32], dims: &[usize], ax: usize, out: &mut [f32]| {
        let (outer, size, inner) = split_at_axis(dims, ax);
        out.iter_mut().for_each(|v| *v = init);
        for o in 0..outer {
            let dst = &mut out[o * inner..(o + 1) * inner];
            for j in 0..size {
                let src = &x[(o * size + j) * inner..(o * size + j + 1) * inner];
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = f(*d, s);
                }
            }
        }
    };
    match axes {
        [] => out.copy_from_slice(&x[..out.len()]),
        [ax] => one_axis(x, dims, *ax, out),
        _ => {
            let mut dims = dims.to_vec();
            let mut cur = x.to_vec();
            for &ax in axes.iter().rev() {
                let (outer, _, inner) = split_at_axis(&dims, ax);
                let mut next = vec![init; outer * inner];
                one_axis(&cur, &dims, ax, &mut next);
                dims[ax] = 1;
                cur = next;
            }
            out.copy_from_slice(&cur[..out.len()]);
        }
    }
}

/// Row-major strides of `dims`.
fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// Calls `f(out_index, in_index)` for every element of `out_dims`, where `in_strides` gives
/// the input offset of each output axis.
fn walk(out_dims: &[usize], in_strides: &[usize], mut f: impl FnMut(usize, usize)) {
    let total: usize = out_dims.iter().product();
    if total == 0 {
        return;
    }
    let rank = out_dims.len();
    if rank == 0 {
        f(0, 0);
        return;
    }
    let mut idx = [0usize; 8];
    let mut idx_vec = Vec::new();
    let idx: &mut [usize] = if rank <= 8 {
        &mut idx[..rank]
    } else {
        idx_vec.resize(rank, 0);
        &mut idx_vec
    };
    let mut src = 0usize;
    let last = rank - 1;
    let mut o = 0;
    while o < total {
        // The innermost axis as a run.
        for j in 0..out_dims[last] {
            f(o + j, src + j * in_strides[last]);
        }
        o += out_dims[last];
        // Advance the outer axes.
        let mut ax = last;
        loop {
            if ax == 0 {
                return;
            }
            ax -= 1;
            idx[ax] += 1;
            src += in_strides[ax];
            if idx[ax] < out_dims[ax] {
                break;
            }
            src -= idx[ax] * in_strides[ax];
            idx[ax] = 0;
        }
    }
}

/// Broadcasts `x` of shape `in_dims` (same rank; each axis equal or 1) to `out_dims`.
pub fn broadcast<T: Copy>(x: &[T], in_dims: &[usize], out_dims: &[usize], out: &mut [T]) {
    let s = strides(in_dims);
    let st: Vec<usize> = in_dims
        .iter()
        .zip(&s)
        .map(|(&d, &s)| if d == 1 { 0 } else { s })
        .collect();
    walk(out_dims, &st, |o, i| out[o] = x[i]);
}

/// `out.shape[i] = in.shape[perm[i]]`.
pub fn permute<T: Copy>(x: &[T], in_dims: &[usize], perm: &[usize], out: &mut [T]) {
    let s = strides(in_dims);
    let out_dims: Vec<usize> = perm.iter().map(|&p| in_dims[p]).collect();
    let st: Vec<usize> = perm.iter().map(|&p| s[p]).collect();
    walk(&out_dims, &st, |o, i| out[o] = x[i]);
}

/// `[start, end)` along `axis`.
pub fn slice<T: Copy>(
    x: &[T],
    dims: &[usize],
    axis: usize,
    start: usize,
    end: usize,
    out: &mut [T],
) {
    let (outer, size, inner) = split_at_axis(dims, axis);
    let run = (end - start) * inner;
    for o in 0..outer {
        out[o * run..(o + 1) * run]
            .copy_from_slice(&x[(o * size + start) * inner..(o * size + end) * inner]);
    }
}

/// Zero padding along `axis`.
pub fn pad(x: &[f32], dims: &[usize], axis: usize, before: usize, after: usize, out: &mut [f32]) {
    let (outer, size, inner) = split_at_axis(dims, axis);
    let total = size + before + after;
    out.iter_mut().for_each(|v| *v = 0.0);
    for o in 0..outer {
        out[(o * total + before) * inner..(o * total + before + size) * inner]
            .copy_from_slice(&x[o * size * inner..(o + 1) * size * inner]);
    }
}

/// Joins tensors along `axis`; `parts` are (data, shape) with equal shapes but for `axis`.
pub fn concat(parts: &[(&[f32], &[usize])], axis: usize, out: &mut [f32]) {
    let Some((_, first)) = parts.first() else {
        return;
    };
    let outer: usize = first[..axis].iter().product();
    let mut at = 0;
    for o in 0..outer {
        for (data, dims) in parts {
            let run: usize = dims[axis..].iter().product();
            out[at..at + run].copy_from_slice(&data[o * run..(o + 1) * run]);
            at += run;
        }
    }
}

/// Rows of `table` (`rows x row_len`) at `idx`; out-of-range indices give zeros.
pub fn gather(table: &[f32], rows: usize, row_len: usize, idx: &[i32], out: &mut [f32]) {
    for (dst, &i) in out.chunks_exact_mut(row_len.max(1)).zip(idx) {
        if i >= 0 && (i as usize) < rows {
            let i = i as usize;
            dst.copy_from_slice(&table[i * row_len..(i + 1) * row_len]);
        } else {
            dst.iter_mut().for_each(|v| *v = 0.0);
        }
    }
}

/// `rows x row_len` zeros with each `values` row added at its index (duplicates sum).
pub fn scatter_add(idx: &[i32], values: &[f32], rows: usize, row_len: usize, out: &mut [f32]) {
    out.iter_mut().for_each(|v| *v = 0.0);
    for (k, &i) in idx.iter().enumerate() {
        if i >= 0 && (i as usize) < rows {
            let i = i as usize;
            let dst = &mut out[i * row_len..(i + 1) * row_len];
            for (d, &s) in dst.iter_mut().zip(&values[k * row_len..(k + 1) * row_len]) {
                *d += s;
            }
        }
    }
}

/// One-hot rows of `depth` classes.
pub fn one_hot(idx: &[i32], depth: usize, out: &mut [f32]) {
    out.iter_mut().for_each(|v| *v = 0.0);
    for (k, &i) in idx.iter().enumerate() {
        if i >= 0 && (i as usize) < depth {
            out[k * depth + i as usize] = 1.0;
        }
    }
}

/// Uniform numbers in [0, 1) of this call's random stream and `salt` (dropout masks).
pub fn random_uniform(ctx: &super::Ctx, salt: u64, out: &mut [f32]) {
    for (i, v) in out.iter_mut().enumerate() {
        *v = uniform(ctx.seed, ctx.step, salt, i as u64);
    }
}

/// For each `x`, the number of `edges` (ascending) that are <= it: the index a categorical
/// draw picks from a uniform number (`edges` are the cumulative probabilities).
pub fn bucketize(edges: &[f32], x: &[f32], out: &mut [i32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = edges.partition_point(|&e| e <= v) as i32;
    }
}

/// `rows x cols`: 1 where `col <= row`.
pub fn lower_triangle(rows: usize, cols: usize, out: &mut [f32]) {
    out.iter_mut().for_each(|v| *v = 0.0);
    for r in 0..rows {
        for c in 0..cols.min(r + 1) {
            out[r * cols + c] = 1.0;
        }
    }
}

/// Copies `src` into `dst` (a result or state buffer that could not be computed in place).
#[inline]
pub fn copy(src: &[f32], dst: &mut [f32]) {
    dst.copy_from_slice(&src[..dst.len()]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<T: Copy + Default>(len: usize, f: impl FnOnce(&mut [T])) -> Vec<T> {
        let mut out = vec![T::default(); len];
        f(&mut out);
        out
    }

    #[test]
    fn movement_matches_definitions() {
        let x: Vec<f32> = (0..6).map(|v| v as f32).collect();
        assert_eq!(
            run(6, |o| permute(&x, &[2, 3], &[1, 0], o)),
            [0., 3., 1., 4., 2., 5.]
        );
        assert_eq!(
            run(6, |o| broadcast(&[1.0f32, 2.0], &[2, 1], &[2, 3], o)),
            [1., 1., 1., 2., 2., 2.]
        );
        assert_eq!(run(1, |o| broadcast(&[7.0f32], &[], &[], o)), [7.]);
        assert_eq!(run(4, |o| slice(&x, &[2, 3], 1, 1, 3, o)), [1., 2., 4., 5.]);
        assert_eq!(
            run(9, |o| pad(&x, &[2, 3], 0, 1, 0, o)),
            [0., 0., 0., 0., 1., 2., 3., 4., 5.]
        );
        assert_eq!(run(2, |o| reduce_sum(&x, &[2, 3], &[1], o)), [3., 12.]);
        assert_eq!(run(1, |o| reduce_sum(&x, &[2, 3], &[0, 1], o)), [15.]);
        assert_eq!(run(3, |o| reduce_max(&x, &[2, 3], &[0], o)), [3., 4., 5.]);
        assert_eq!(run(2, |o| reduce_sum_last(&x, &[2, 3], o)), [3., 12.]);
        assert_eq!(
            run(6, |o| concat(
                &[(&x[..2], &[2, 1]), (&x[2..], &[2, 2])],
                1,
                o
            )),
            [0., 2., 3., 1., 4., 5.]
        );
        assert_eq!(run(4, |o| lower_triangle(2, 2, o)), [1., 0., 1., 1.]);
        assert_eq!(run(4, |o| one_hot(&[1, 5], 2, o)), [0., 1., 0., 0.]);
        assert_eq!(
            run(2, |o| scatter_add(&[1, 1], &[1., 2.], 2, 1, o)),
            [0., 3.]
        );
        assert_eq!(run(4, |o| gather(&x, 3, 2, &[2, -1], o)), [4., 5., 0., 0.]);
    }
}
