//! The element types the kernels are generic over: f32 (training) and f64 (gradient checks).

use std::ops::{Add, AddAssign, Div, Mul};

/// A floating-point element type with a GEMM core.
pub trait Scalar:
    Copy
    + Send
    + Sync
    + Default
    + PartialOrd
    + Add<Output = Self>
    + AddAssign
    + Mul<Output = Self>
    + Div<Output = Self>
    + std::fmt::Debug
    + 'static
{
    const ZERO: Self;
    const ONE: Self;

    /// `n` as this type (pooling window sizes; exact for the small counts used).
    fn from_count(n: usize) -> Self;

    /// `max(self, 0)` as the IR's `max` computes it: NaN stays NaN, `-0.0` becomes `+0.0`.
    fn relu(self) -> Self;

    /// `self * a + b` rounded once (a fused multiply-add, as the GEMM's micro-kernels compute;
    /// one instruction where the code is compiled with FMA enabled).
    fn mul_add(self, a: Self, b: Self) -> Self;

    /// `C = alpha * A * B + beta * C` on raw strided storage; when `beta` is zero, `C` is
    /// written without being read (so it may hold NaN or garbage).
    ///
    /// # Safety
    /// Every element `a[i*rsa + j*csa]` (i < m, j < k), `b[i*rsb + j*csb]` (i < k, j < n) and
    /// `c[i*rsc + j*csc]` (i < m, j < n) must be in bounds of live allocations, the elements of
    /// `C` must be distinct and `C` must not overlap `A` or `B`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );
}

impl Scalar for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;

    #[inline(always)]
    fn relu(self) -> Self {
        if self.is_nan() || self > 0.0 {
            self
        } else {
            0.0
        }
    }

    fn from_count(n: usize) -> Self {
        n as f32
    }

    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        f32::mul_add(self, a, b)
    }

    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: f32,
        a: *const f32,
        rsa: isize,
        csa: isize,
        b: *const f32,
        rsb: isize,
        csb: isize,
        beta: f32,
        c: *mut f32,
        rsc: isize,
        csc: isize,
    ) {
        // SAFETY: forwarded caller contract; matrixmultiply reads/writes exactly these elements.
        unsafe {
            matrixmultiply::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
        }
    }
}

impl Scalar for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;

    #[inline(always)]
    fn relu(self) -> Self {
        if self.is_nan() || self > 0.0 {
            self
        } else {
            0.0
        }
    }

    fn from_count(n: usize) -> Self {
        n as f64
    }

    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        f64::mul_add(self, a, b)
    }

    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: f64,
        a: *const f64,
        rsa: isize,
        csa: isize,
        b: *const f64,
        rsb: isize,
        csb: isize,
        beta: f64,
        c: *mut f64,
        rsc: isize,
        csc: isize,
    ) {
        // SAFETY: forwarded caller contract; matrixmultiply reads/writes exactly these elements.
        unsafe {
            matrixmultiply::dgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
        }
    }
}
