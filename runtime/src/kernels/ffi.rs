//! `extern "C"` entry points for JIT-compiled code: raw pointers plus sizes.
//!
//! Shapes are passed by pointer to the `#[repr(C)]` [`Conv2dShape`] / [`Pool2dShape`] structs
//! (the JIT keeps them in its data section). Every function that can reject its arguments
//! returns a status: [`FM_OK`] or [`FM_INVALID_ARGUMENT`]; none unwinds across the boundary.
//! Buffer lengths are implied by the shape, so the caller's only obligation is to pass pointers
//! to buffers of those lengths.

use std::slice;

use super::conv::{self, Conv2dShape};
use super::gemm;
use super::pool::{self, Pool2dShape};
use super::KernelError;

/// Success.
pub const FM_OK: i32 = 0;
/// The shape was invalid or a pointer was null (nothing was written).
pub const FM_INVALID_ARGUMENT: i32 = 1;

fn status(result: Result<(), KernelError>) -> i32 {
    match result {
        Ok(()) => FM_OK,
        Err(_) => FM_INVALID_ARGUMENT,
    }
}

/// A slice from a raw pointer, `None` if null with a non-zero length.
///
/// # Safety
/// A non-null `ptr` must be valid for reads of `len` elements for `'a`.
unsafe fn input<'a>(ptr: *const f32, len: usize) -> Option<&'a [f32]> {
    if len == 0 {
        return Some(&[]);
    }
    // SAFETY: caller contract.
    (!ptr.is_null()).then(|| unsafe { slice::from_raw_parts(ptr, len) })
}

/// # Safety
/// A non-null `ptr` must be valid for writes of `len` elements for `'a` and alias nothing else.
unsafe fn output<'a>(ptr: *mut f32, len: usize) -> Option<&'a mut [f32]> {
    if len == 0 {
        return Some(&mut []);
    }
    // SAFETY: caller contract.
    (!ptr.is_null()).then(|| unsafe { slice::from_raw_parts_mut(ptr, len) })
}

/// Runs `kernel` on two buffers it reads and one it writes, of the lengths `lens` gives for
/// the shape's dimensions (in the order `a`, `b`, `out`); [`FM_INVALID_ARGUMENT`] for an
/// invalid shape (`None`) or a null buffer.
///
/// # Safety
/// Each non-null pointer must be valid for its length (reads, or writes for `out`) and `out`
/// must alias neither input.
unsafe fn binary<S, D>(
    shape: Option<(S, D)>,
    (a, b, out): (*const f32, *const f32, *mut f32),
    lens: fn(&D) -> [usize; 3],
    kernel: impl FnOnce(&S, &[f32], &[f32], &mut [f32]) -> Result<(), KernelError>,
) -> i32 {
    let Some((s, d)) = shape else {
        return FM_INVALID_ARGUMENT;
    };
    let [a_len, b_len, out_len] = lens(&d);
    // SAFETY: caller contract.
    let buffers = unsafe { (input(a, a_len), input(b, b_len), output(out, out_len)) };
    let (Some(a), Some(b), Some(out)) = buffers else {
        return FM_INVALID_ARGUMENT;
    };
    status(kernel(&s, a, b, out))
}

/// `C = alpha * A * B + beta * C` with `A: m x k`, `B: k x n`, `C: m x n`, element `(i, j)` of
/// each at `ptr[i * row_stride + j * col_stride]`. `threads`: 1 for tile-granular calls,
/// 0 for the process-wide limit ([`super::set_thread_limit`], by default one per core).
///
/// # Safety
/// All addressed elements must be in bounds, C's elements distinct and disjoint from A and B.
#[no_mangle]
pub unsafe extern "C" fn fm_sgemm(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: *const f32,
    a_row_stride: isize,
    a_col_stride: isize,
    b: *const f32,
    b_row_stride: isize,
    b_col_stride: isize,
    beta: f32,
    c: *mut f32,
    c_row_stride: isize,
    c_col_stride: isize,
    threads: usize,
) {
    // SAFETY: caller contract.
    unsafe {
        gemm::gemm_raw(
            m,
            k,
            n,
            alpha,
            a,
            a_row_stride,
            a_col_stride,
            b,
            b_row_stride,
            b_col_stride,
            beta,
            c,
            c_row_stride,
            c_col_stride,
            threads,
        )
    }
}

/// Reads the shape, or `None` for a null pointer or an invalid shape.
///
/// # Safety
/// A non-null `shape` must point to a valid `Conv2dShape`.
unsafe fn conv_shape(shape: *const Conv2dShape) -> Option<(Conv2dShape, conv::Conv2dDims)> {
    // SAFETY: caller contract.
    let shape = unsafe { shape.as_ref() }?;
    Some((*shape, shape.dims().ok()?))
}

/// [`conv::conv2d_forward`]: `input [N,H,W,C]`, `kernel [kh,kw,C,F]`, `output [N,OH,OW,F]`.
///
/// # Safety
/// `shape` points to a `Conv2dShape`; the buffers hold the lengths it implies (see
/// [`Conv2dShape::dims`]); `output` aliases neither input.
#[no_mangle]
pub unsafe extern "C" fn fm_conv2d_fwd(
    shape: *const Conv2dShape,
    input_ptr: *const f32,
    kernel_ptr: *const f32,
    output_ptr: *mut f32,
    threads: usize,
) -> i32 {
    // SAFETY: caller contract (lengths come from the validated shape).
    unsafe {
        binary(
            conv_shape(shape),
            (input_ptr, kernel_ptr, output_ptr),
            |d| [d.input_len, d.kernel_len, d.output_len],
            |s, x, w, y| conv::conv2d_forward(s, x, w, y, threads),
        )
    }
}

/// [`conv::conv2d_forward_fused`]: [`fm_conv2d_fwd`] plus, on each output tile, the bias
/// `bias [F]` (none when null) and then a ReLU when `relu` is not zero.
///
/// # Safety
/// As [`fm_conv2d_fwd`]; a non-null `bias` points to `out_c` floats.
#[no_mangle]
pub unsafe extern "C" fn fm_conv2d_fwd_fused(
    shape: *const Conv2dShape,
    input_ptr: *const f32,
    kernel_ptr: *const f32,
    bias_ptr: *const f32,
    relu: usize,
    output_ptr: *mut f32,
    threads: usize,
) -> i32 {
    // SAFETY: caller contract.
    unsafe {
        binary(
            conv_shape(shape),
            (input_ptr, kernel_ptr, output_ptr),
            |d| [d.input_len, d.kernel_len, d.output_len],
            |s, x, w, y| {
                let bias = if bias_ptr.is_null() {
                    None
                } else {
                    input(bias_ptr, s.out_c)
                };
                let epilogue = conv::ConvEpilogue {
                    bias,
                    relu: relu != 0,
                };
                conv::conv2d_forward_fused(s, x, w, epilogue, y, threads)
            },
        )
    }
}

/// [`conv::conv2d_backward_input`]: `d_input [N,H,W,C]` from `d_output [N,OH,OW,F]`.
///
/// # Safety
/// As [`fm_conv2d_fwd`].
#[no_mangle]
pub unsafe extern "C" fn fm_conv2d_bwd_input(
    shape: *const Conv2dShape,
    d_output_ptr: *const f32,
    kernel_ptr: *const f32,
    d_input_ptr: *mut f32,
    threads: usize,
) -> i32 {
    // SAFETY: caller contract.
    unsafe {
        binary(
            conv_shape(shape),
            (d_output_ptr, kernel_ptr, d_input_ptr),
            |d| [d.output_len, d.kernel_len, d.input_len],
            |s, dy, w, dx| conv::conv2d_backward_input(s, dy, w, dx, threads),
        )
    }
}

/// [`conv::conv2d_backward_kernel`]: `d_kernel [kh,kw,C,F]` from the input and `d_output`.
///
/// # Safety
/// As [`fm_conv2d_fwd`].
#[no_mangle]
pub unsafe extern "C" fn fm_conv2d_bwd_kernel(
    shape: *const Conv2dShape,
    input_ptr: *const f32,
    d_output_ptr: *const f32,
    d_kernel_ptr: *mut f32,
    threads: usize,
) -> i32 {
    // SAFETY: caller contract.
    unsafe {
        binary(
            conv_shape(shape),
            (input_ptr, d_output_ptr, d_kernel_ptr),
            |d| [d.input_len, d.output_len, d.kernel_len],
            |s, x, dy, dw| conv::conv2d_backward_kernel(s, x, dy, dw, threads),
        )
    }
}

/// Reads the shape, or `None` for a null pointer or an invalid shape.
///
/// # Safety
/// A non-null `shape` must point to a valid `Pool2dShape`.
unsafe fn pool_shape(shape: *const Pool2dShape) -> Option<(Pool2dShape, pool::Pool2dDims)> {
    // SAFETY: caller contract.
    let shape = unsafe { shape.as_ref() }?;
    Some((*shape, shape.dims().ok()?))
}

/// A pooling kernel that reads one buffer and writes another.
type PoolKernel = fn(&Pool2dShape, &[f32], &mut [f32]) -> Result<(), KernelError>;

/// Runs `kernel` from `src_ptr` into `dst_ptr`: forward kernels read the input's length and
/// write the output's; `backward` ones the reverse.
///
/// # Safety
/// As [`fm_max_pool2d_fwd`], with the buffer lengths swapped when `backward`.
unsafe fn pool_unary(
    shape: *const Pool2dShape,
    src_ptr: *const f32,
    dst_ptr: *mut f32,
    backward: bool,
    kernel: PoolKernel,
) -> i32 {
    // SAFETY: caller contract.
    unsafe {
        let Some((s, d)) = pool_shape(shape) else {
            return FM_INVALID_ARGUMENT;
        };
        let (src_len, dst_len) = if backward {
            (d.output_len, d.input_len)
        } else {
            (d.input_len, d.output_len)
        };
        let (Some(src), Some(dst)) = (input(src_ptr, src_len), output(dst_ptr, dst_len)) else {
            return FM_INVALID_ARGUMENT;
        };
        status(kernel(&s, src, dst))
    }
}

/// [`pool::max_pool2d_forward`].
///
/// # Safety
/// `shape` points to a `Pool2dShape`; buffers hold the lengths it implies; no aliasing.
#[no_mangle]
pub unsafe extern "C" fn fm_max_pool2d_fwd(
    shape: *const Pool2dShape,
    input_ptr: *const f32,
    output_ptr: *mut f32,
) -> i32 {
    // SAFETY: caller contract.
    unsafe {
        pool_unary(
            shape,
            input_ptr,
            output_ptr,
            false,
            pool::max_pool2d_forward,
        )
    }
}

/// [`pool::max_pool2d_backward`].
///
/// # Safety
/// As [`fm_max_pool2d_fwd`].
#[no_mangle]
pub unsafe extern "C" fn fm_max_pool2d_bwd(
    shape: *const Pool2dShape,
    input_ptr: *const f32,
    d_output_ptr: *const f32,
    d_input_ptr: *mut f32,
) -> i32 {
    // SAFETY: caller contract.
    unsafe {
        binary(
            pool_shape(shape),
            (input_ptr, d_output_ptr, d_input_ptr),
            |d| [d.input_len, d.output_len, d.input_len],
            pool::max_pool2d_backward,
        )
    }
}

/// [`pool::max_pool2d_backward_relu`]: [`fm_max_pool2d_bwd`] where `input` is a ReLU's output
/// and the ReLU's backward is fused.
///
/// # Safety
/// As [`fm_max_pool2d_fwd`].
#[no_mangle]
pub unsafe extern "C" fn fm_max_pool2d_bwd_relu(
    shape: *const Pool2dShape,
    input_ptr: *const f32,
    d_output_ptr: *const f32,
    d_input_ptr: *mut f32,
) -> i32 {
    // SAFETY: caller contract.
    unsafe {
        binary(
            pool_shape(shape),
            (input_ptr, d_output_ptr, d_input_ptr),
            |d| [d.input_len, d.output_len, d.input_len],
            pool::max_pool2d_backward_relu,
        )
    }
}

/// [`pool::avg_pool2d_forward`].
///
/// # Safety
/// As [`fm_max_pool2d_fwd`].
#[no_mangle]
pub unsafe extern "C" fn fm_avg_pool2d_fwd(
    shape: *const Pool2dShape,
    input_ptr: *const f32,
    output_ptr: *mut f32,
) -> i32 {
    // SAFETY: caller contract.
    unsafe {
        pool_unary(
            shape,
            input_ptr,
            output_ptr,
            false,
            pool::avg_pool2d_forward,
        )
    }
}

/// [`pool::avg_pool2d_backward`].
///
/// # Safety
/// As [`fm_max_pool2d_fwd`].
#[no_mangle]
pub unsafe extern "C" fn fm_avg_pool2d_bwd(
    shape: *const Pool2dShape,
    d_output_ptr: *const f32,
    d_input_ptr: *mut f32,
) -> i32 {
    // SAFETY: caller contract.
    unsafe {
        pool_unary(
            shape,
            d_output_ptr,
            d_input_ptr,
            true,
            pool::avg_pool2d_backward,
        )
    }
}
