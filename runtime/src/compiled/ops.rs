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

/// The output of a kernel call: `len` values, or zeros and the error recorded in `ctx` (the
/// generated function has no early returns, so it stays small to compile; the caller checks
/// [`super::Ctx::take_error`] afterwards).
fn output(
    ctx: &super::Ctx,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> Result<(), kernels::KernelError>,
) -> Vec<f32> {
    let mut out = vec![0.0; len];
    if let Err(e) = f(&mut out) {
        ctx.fail(RuntimeError::backend(format!(
            "internal error in generated code: {e}"
        )));
        out.iter_mut().for_each(|v| *v = 0.0);
    }
    out
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

/// `op(a) @ op(b)` for `lead` stacked matrices: `a` is `[lead, m, k]` (`[lead, k, m]` when
/// `ta`), `b` is `[lead, k, n]` (`[lead, n, k]` when `tb`); returns `[lead, m, n]`.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    ctx: &super::Ctx,
    a: &[f32],
    b: &[f32],
    lead: usize,
    m: usize,
    k: usize,
    n: usize,
    ta: bool,
    tb: bool,
) -> Vec<f32> {
    output(ctx, lead * m * n, |out| {
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
            let c = MatMut::row_major(&mut out[i * m * n..(i + 1) * m * n], m, n)?;
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

/// NHWC convolution, no bias, into `len` outputs.
pub fn conv2d(ctx: &super::Ctx, s: &Conv2dShape, x: &[f32], k: &[f32], len: usize) -> Vec<f32> {
    output(ctx, len, |out| kernels::conv2d_forward(s, x, k, out, 0))
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
    len: usize,
) -> Vec<f32> {
    let epilogue = kernels::ConvEpilogue {
        bias: Some(bias),
        relu,
    };
    output(ctx, len, |out| {
        kernels::conv2d_forward_fused(s, x, k, epilogue, out, 0)
    })
}

/// Gradient of [`conv2d`] w.r.t. its input.
pub fn conv2d_back_input(
    ctx: &super::Ctx,
    s: &Conv2dShape,
    dy: &[f32],
    k: &[f32],
    len: usize,
) -> Vec<f32> {
    output(ctx, len, |out| {
        kernels::conv2d_backward_input(s, dy, k, out, 0)
    })
}

/// Gradient of [`conv2d`] w.r.t. its kernel.
pub fn conv2d_back_kernel(
    ctx: &super::Ctx,
    s: &Conv2dShape,
    x: &[f32],
    dy: &[f32],
    len: usize,
) -> Vec<f32> {
    output(ctx, len, |out| {
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

pub fn max_pool2d(ctx: &super::Ctx, s: &Pool2dShape, x: &[f32], len: usize) -> Vec<f32> {
    output(ctx, len, |out| kernels::max_pool2d_forward(s, x, out))
}

pub fn avg_pool2d(ctx: &super::Ctx, s: &Pool2dShape, x: &[f32], len: usize) -> Vec<f32> {
    output(ctx, len, |out| kernels::avg_pool2d_forward(s, x, out))
}

/// Gradient of [`max_pool2d`]: each window's gradient goes to its first maximum.
pub fn max_pool2d_back(
    ctx: &super::Ctx,
    s: &Pool2dShape,
    x: &[f32],
    dy: &[f32],
    len: usize,
) -> Vec<f32> {
    output(ctx, len, |out| kernels::max_pool2d_backward(s, x, dy, out))
}

/// [`max_pool2d_back`] through the ReLU whose output `x` is: `select(x > 0, back, 0)` in one
/// pass, as the JIT's pool-backward epilogue.
pub fn max_pool2d_back_relu(
    ctx: &super::Ctx,
    s: &Pool2dShape,
    x: &[f32],
    dy: &[f32],
    len: usize,
) -> Vec<f32> {
    output(ctx, len, |out| {
        kernels::max_pool2d_backward_relu(s, x, dy, out)
    })
}

pub fn avg_pool2d_back(ctx: &super::Ctx, s: &Pool2dShape, dy: &[f32], len: usize) -> Vec<f32> {
    output(ctx, len, |out| kernels::avg_pool2d_backward(s, dy, out))
}

/// `(outer, size, inner)` of `dims` around `axis`.
fn split_at_axis(dims: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = dims[..axis].iter().product();
    let inner = dims[axis + 1..].iter().product();
    (outer, dims[axis], inner)
}

/// Sum over `axes` of a tensor of shape `dims` (the last axis first, as the interpreter).
/// The result is row-major over the remaining axes (kept axes have size 1, same layout).
pub fn reduce_sum(x: &[f32], dims: &[usize], axes: &[usize]) -> Vec<f32> {
    reduce(x, dims, axes, 0.0, |acc, v| acc + v)
}

/// Sum over the last axis of a tensor of shape `dims`, each row added in the order of
/// ndarray's `unrolled_fold` (eight running partials, combined as `(p0+p4) + (p1+p5) + ...`,
/// then the tail in sequence): the interpreter's order for such a sum, and the JIT's.
pub fn reduce_sum_last(x: &[f32], dims: &[usize]) -> Vec<f32> {
    let len = dims.last().copied().unwrap_or(1);
    if len == 0 {
        return vec![0.0; dims[..dims.len().saturating_sub(1)].iter().product()];
    }
    x.chunks_exact(len).map(unrolled_sum).collect()
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

/// Maximum over `axes`; NaN wins.
pub fn reduce_max(x: &[f32], dims: &[usize], axes: &[usize]) -> Vec<f32> {
    reduce(x, dims, axes, f32::NEG_INFINITY, |m, v| {
        if v > m || v.is_nan() {
            v
        } else {
            m
        }
    })
}

fn reduce(
    x: &[f32],
    dims: &[usize],
    axes: &[usize],
    init: f32,
    f: impl Fn(f32, f32) -> f32 + Copy,
) -> Vec<f32> {
    let mut dims = dims.to_vec();
    let mut cur = x.to_vec();
    for &ax in axes.iter().rev() {
        let (outer, size, inner) = split_at_axis(&dims, ax);
        let mut out = vec![init; outer * inner];
        for o in 0..outer {
            let dst = &mut out[o * inner..(o + 1) * inner];
            for j in 0..size {
                let src = &cur[(o * size + j) * inner..(o * size + j + 1) * inner];
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = f(*d, s);
                }
            }
        }
        dims[ax] = 1;
        cur = out;
    }
    cur
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
    let mut idx = vec![0usize; rank];
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
pub fn broadcast<T: Copy + Default>(x: &[T], in_dims: &[usize], out_dims: &[usize]) -> Vec<T> {
    let s = strides(in_dims);
    let st: Vec<usize> = in_dims
        .iter()
        .zip(&s)
        .map(|(&d, &s)| if d == 1 { 0 } else { s })
        .collect();
    let mut out = vec![T::default(); out_dims.iter().product()];
    walk(out_dims, &st, |o, i| out[o] = x[i]);
    out
}

/// `out.shape[i] = in.shape[perm[i]]`.
pub fn permute<T: Copy + Default>(x: &[T], in_dims: &[usize], perm: &[usize]) -> Vec<T> {
    let s = strides(in_dims);
    let out_dims: Vec<usize> = perm.iter().map(|&p| in_dims[p]).collect();
    let st: Vec<usize> = perm.iter().map(|&p| s[p]).collect();
    let mut out = vec![T::default(); x.len()];
    walk(&out_dims, &st, |o, i| out[o] = x[i]);
    out
}

/// `[start, end)` along `axis`.
pub fn slice<T: Copy>(x: &[T], dims: &[usize], axis: usize, start: usize, end: usize) -> Vec<T> {
    let (outer, size, inner) = split_at_axis(dims, axis);
    let mut out = Vec::with_capacity(outer * (end - start) * inner);
    for o in 0..outer {
        out.extend_from_slice(&x[(o * size + start) * inner..(o * size + end) * inner]);
    }
    out
}

/// Zero padding along `axis`.
pub fn pad(x: &[f32], dims: &[usize], axis: usize, before: usize, after: usize) -> Vec<f32> {
    let (outer, size, inner) = split_at_axis(dims, axis);
    let total = size + before + after;
    let mut out = vec![0.0; outer * total * inner];
    for o in 0..outer {
        out[(o * total + before) * inner..(o * total + before + size) * inner]
            .copy_from_slice(&x[o * size * inner..(o + 1) * size * inner]);
    }
    out
}

/// Joins tensors along `axis`; `parts` are (data, shape) with equal shapes but for `axis`.
pub fn concat(parts: &[(&[f32], &[usize])], axis: usize) -> Vec<f32> {
    let Some((_, first)) = parts.first() else {
        return Vec::new();
    };
    let outer: usize = first[..axis].iter().product();
    let total: usize = parts.iter().map(|(d, _)| d.len()).sum();
    let mut out = Vec::with_capacity(total);
    for o in 0..outer {
        for (data, dims) in parts {
            let run: usize = dims[axis..].iter().product();
            out.extend_from_slice(&data[o * run..(o + 1) * run]);
        }
    }
    out
}

/// Rows of `table` (`rows x row_len`) at `idx`; out-of-range indices give zeros.
pub fn gather(table: &[f32], rows: usize, row_len: usize, idx: &[i32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(idx.len() * row_len);
    for &i in idx {
        if i >= 0 && (i as usize) < rows {
            let i = i as usize;
            out.extend_from_slice(&table[i * row_len..(i + 1) * row_len]);
        } else {
            out.extend(std::iter::repeat_n(0.0, row_len));
        }
    }
    out
}

/// `rows x row_len` zeros with each `values` row added at its index (duplicates sum).
pub fn scatter_add(idx: &[i32], values: &[f32], rows: usize, row_len: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; rows * row_len];
    for (k, &i) in idx.iter().enumerate() {
        if i >= 0 && (i as usize) < rows {
            let i = i as usize;
            let dst = &mut out[i * row_len..(i + 1) * row_len];
            for (d, &s) in dst.iter_mut().zip(&values[k * row_len..(k + 1) * row_len]) {
                *d += s;
            }
        }
    }
    out
}

/// One-hot rows of `depth` classes.
pub fn one_hot(idx: &[i32], depth: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; idx.len() * depth];
    for (k, &i) in idx.iter().enumerate() {
        if i >= 0 && (i as usize) < depth {
            out[k * depth + i as usize] = 1.0;
        }
    }
    out
}

/// `len` uniform numbers in [0, 1) of this call's random stream and `salt` (dropout masks).
pub fn random_uniform(ctx: &super::Ctx, salt: u64, len: usize) -> Vec<f32> {
    (0..len as u64)
        .map(|i| uniform(ctx.seed, ctx.step, salt, i))
        .collect()
}

/// `rows x cols`: 1 where `col <= row`.
pub fn lower_triangle(rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols.min(r + 1) {
            out[r * cols + c] = 1.0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn movement_matches_definitions() {
        let x: Vec<f32> = (0..6).map(|v| v as f32).collect();
        assert_eq!(permute(&x, &[2, 3], &[1, 0]), [0., 3., 1., 4., 2., 5.]);
        assert_eq!(
            broadcast(&[1.0f32, 2.0], &[2, 1], &[2, 3]),
            [1., 1., 1., 2., 2., 2.]
        );
        assert_eq!(broadcast(&[7.0f32], &[], &[]), [7.]);
        assert_eq!(slice(&x, &[2, 3], 1, 1, 3), [1., 2., 4., 5.]);
        assert_eq!(
            pad(&x, &[2, 3], 0, 1, 0),
            [0., 0., 0., 0., 1., 2., 3., 4., 5.]
        );
        assert_eq!(reduce_sum(&x, &[2, 3], &[1]), [3., 12.]);
        assert_eq!(reduce_sum(&x, &[2, 3], &[0, 1]), [15.]);
        assert_eq!(reduce_max(&x, &[2, 3], &[0]), [3., 4., 5.]);
        assert_eq!(
            concat(&[(&x[..2], &[2, 1]), (&x[2..], &[2, 2])], 1),
            [0., 2., 3., 1., 4., 5.]
        );
        assert_eq!(lower_triangle(2, 2), [1., 0., 1., 1.]);
        assert_eq!(one_hot(&[1, 5], 2), [0., 1., 0., 0.]);
        assert_eq!(scatter_add(&[1, 1], &[1., 2.], 2, 1), [0., 3.]);
        assert_eq!(gather(&x, 3, 2, &[2, -1]), [4., 5., 0., 0.]);
    }
}
