//! Precompiled numeric kernels for the heavy ops: GEMM, 2-D convolution and pooling.
//!
//! Both the reference interpreter and the Cranelift JIT call these. Cranelift only has 128-bit
//! vectors, so the dense cores run here as precompiled Rust (the GEMM micro-kernels come from the
//! `matrixmultiply` crate, which picks its AVX2+FMA / SSE / portable kernel at run time); the JIT
//! generates the loops and fused epilogues around them and enters through [`ffi`].
//!
//! Layout conventions (Keras): activations are NHWC `[batch, height, width, channels]`, conv
//! kernels are `[kernel_h, kernel_w, in_channels, out_channels]`. Every safe entry point checks
//! buffer lengths and shapes and returns a [`KernelError`] on a caller bug; none panics and none
//! is UB for any argument. Measured throughput is in `README.md` beside this file.

pub mod conv;
pub mod ffi;
pub mod fpenv;
pub mod gemm;
pub mod pool;
mod scalar;
mod split;

#[cfg(test)]
mod tests;

pub use conv::{
    conv2d_backward_input, conv2d_backward_kernel, conv2d_forward, conv2d_forward_fused,
    conv2d_forward_pixels, Conv2dDims, Conv2dShape, ConvEpilogue,
};
pub use fpenv::{denormals_flushed, FlushDenormals};
pub use gemm::{dgemm, gemm, sgemm, MatMut, MatRef};
pub use pool::{
    avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward, max_pool2d_backward_relu,
    max_pool2d_forward, Pool2dDims, Pool2dShape,
};
pub use scalar::Scalar;
pub use split::{parallel_parts, set_thread_limit, threads_for_elements};

use std::fmt;

/// A kernel was called with arguments that do not fit together (a caller bug: shapes are checked
/// at the model boundary, so users never see this).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelError {
    message: String,
}

impl KernelError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        KernelError {
            message: message.into(),
        }
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kernel argument error: {}", self.message)
    }
}

impl std::error::Error for KernelError {}

/// Defines `fn $name<T: Scalar>(args)`, which runs `$inner` (an `#[inline(always)]` function
/// of the same arguments) compiled for AVX2 and FMA when the CPU has them, so its loops use
/// 256-bit vectors and `Scalar::mul_add` is one instruction, and as it is otherwise.
macro_rules! avx2_variant {
    ($(#[$m:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) => $inner:ident) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        fn $name<T: Scalar>($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2<T: Scalar>($($arg: $ty),*) {
                    $inner($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU supports AVX2 and FMA (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            $inner($($arg),*)
        }
    };
}
pub(crate) use avx2_variant;

/// Checks that a buffer holds exactly `expected` elements.
fn check_len(what: &str, got: usize, expected: usize) -> Result<(), KernelError> {
    if got == expected {
        Ok(())
    } else {
        Err(KernelError::new(format!(
            "{what} has {got} elements, expected {expected}"
        )))
    }
}

/// Multiplies sizes, reporting overflow as an error instead of wrapping.
fn checked_product(what: &str, factors: &[usize]) -> Result<usize, KernelError> {
    factors
        .iter()
        .try_fold(1usize, |acc, &f| acc.checked_mul(f))
        .ok_or_else(|| KernelError::new(format!("{what} overflows usize")))
}
