//! General matrix multiply on strided views: `C = alpha * A * B + beta * C`.
//!
//! Views carry a row and a column stride, so a transposed operand is the same buffer with the
//! strides swapped ([`MatRef::t`]) and never needs a copy. The core is `matrixmultiply` (packed
//! AVX-512 / AVX2+FMA / SSE2 / portable micro-kernels chosen at run time); large products are
//! split over rows of `C` across the kernels' thread pool.

use super::scalar::Scalar;
use super::split::{even_range, for_each_part, useful_threads, SendPtr};
use super::KernelError;

/// Index one past the last element a `rows x cols` view with these strides touches.
fn extent(rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> Option<usize> {
    if rows == 0 || cols == 0 {
        return Some(0);
    }
    (rows - 1)
        .checked_mul(row_stride)?
        .checked_add((cols - 1).checked_mul(col_stride)?)?
        .checked_add(1)
}

fn check_view(
    what: &str,
    len: usize,
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
) -> Result<(), KernelError> {
    // Strides are handed to the core as isize.
    if row_stride > isize::MAX as usize || col_stride > isize::MAX as usize {
        return Err(KernelError::new(format!("{what}: stride too large")));
    }
    match extent(rows, cols, row_stride, col_stride) {
        Some(end) if end <= len => Ok(()),
        Some(end) => Err(KernelError::new(format!(
            "{what}: a {rows}x{cols} view with strides ({row_stride}, {col_stride}) needs \
             {end} elements, the buffer has {len}"
        ))),
        None => Err(KernelError::new(format!("{what}: view extent overflows"))),
    }
}

/// Whether every `(i, j)` of the view maps to a distinct element (required of an output, so
/// that splitting rows across threads never writes one element twice). Conservative: accepts
/// every layout where one axis's stride steps over the whole other axis.
fn elements_distinct(rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> bool {
    let (mut inner, mut outer) = ((cols, col_stride), (rows, row_stride));
    if inner.1 > outer.1 {
        std::mem::swap(&mut inner, &mut outer);
    }
    if inner.0 <= 1 {
        return outer.0 <= 1 || outer.1 >= 1;
    }
    if outer.0 <= 1 {
        return inner.1 >= 1;
    }
    inner.1 >= 1
        && inner
            .0
            .checked_mul(inner.1)
            .is_some_and(|span| outer.1 >= span)
}

/// A read-only strided matrix view: element `(i, j)` is `data[i * row_stride + j * col_stride]`.
#[derive(Debug)]
pub struct MatRef<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<T> Clone for MatRef<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for MatRef<'_, T> {}

impl<'a, T> MatRef<'a, T> {
    /// A view with arbitrary non-negative strides (zero strides broadcast); checks that every
    /// element lies inside `data`.
    pub fn new(
        data: &'a [T],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Result<Self, KernelError> {
        check_view("matrix", data.len(), rows, cols, row_stride, col_stride)?;
        Ok(MatRef {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        })
    }

    /// A dense row-major `rows x cols` matrix; `data` must hold exactly `rows * cols` elements.
    pub fn row_major(data: &'a [T], rows: usize, cols: usize) -> Result<Self, KernelError> {
        super::check_len(
            "row-major matrix",
            data.len(),
            super::checked_product("matrix size", &[rows, cols])?,
        )?;
        Self::new(data, rows, cols, cols, 1)
    }

    /// The transpose, sharing the same storage.
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }
}

/// A mutable strided matrix view whose elements are all distinct.
#[derive(Debug)]
pub struct MatMut<'a, T> {
    data: &'a mut [T],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a, T> MatMut<'a, T> {
    /// A view with arbitrary positive strides; checks bounds and that no two `(i, j)` share an
    /// element.
    pub fn new(
        data: &'a mut [T],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Result<Self, KernelError> {
        check_view(
            "output matrix",
            data.len(),
            rows,
            cols,
            row_stride,
            col_stride,
        )?;
        if !elements_distinct(rows, cols, row_stride, col_stride) {
            return Err(KernelError::new(format!(
                "output matrix: strides ({row_stride}, {col_stride}) make a {rows}x{cols} view \
                 write some element twice"
            )));
        }
        Ok(MatMut {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        })
    }

    /// A dense row-major `rows x cols` matrix; `data` must hold exactly `rows * cols` elements.
    pub fn row_major(data: &'a mut [T], rows: usize, cols: usize) -> Result<Self, KernelError> {
        super::check_len(
            "row-major output matrix",
            data.len(),
            super::checked_product("matrix size", &[rows, cols])?,
        )?;
        Self::new(data, rows, cols, cols, 1)
    }

    /// The transpose, sharing the same storage (write `C^T` to get a column-major result).
    pub fn t(self) -> Self {
        MatMut {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }
}

/// `C = alpha * A * B + beta * C` for `A: m x k`, `B: k x n`, `C: m x n`. When `beta` is zero,
/// `C` is only written (NaN in it does not propagate). `threads` caps the threads used
/// (0 = one per core; small products always run on the calling thread).
pub fn gemm<T: Scalar>(
    alpha: T,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    beta: T,
    c: MatMut<'_, T>,
    threads: usize,
) -> Result<(), KernelError> {
    if a.cols != b.rows || c.rows != a.rows || c.cols != b.cols {
        return Err(KernelError::new(format!(
            "gemm: A is {}x{}, B is {}x{}, C is {}x{}",
            a.rows, a.cols, b.rows, b.cols, c.rows, c.cols
        )));
    }
    // SAFETY: the views were bounds-checked at construction, C's elements are distinct, and
    // C (a `&mut`) cannot overlap A or B (shared borrows).
    unsafe {
        gemm_raw(
            a.rows,
            a.cols,
            b.cols,
            alpha,
            a.data.as_ptr(),
            a.row_stride as isize,
            a.col_stride as isize,
            b.data.as_ptr(),
            b.row_stride as isize,
            b.col_stride as isize,
            beta,
            c.data.as_mut_ptr(),
            c.row_stride as isize,
            c.col_stride as isize,
            threads,
        );
    }
    Ok(())
}

/// f32 [`gemm`].
pub fn sgemm(
    alpha: f32,
    a: MatRef<'_, f32>,
    b: MatRef<'_, f32>,
    beta: f32,
    c: MatMut<'_, f32>,
    threads: usize,
) -> Result<(), KernelError> {
    gemm(alpha, a, b, beta, c, threads)
}

/// f64 [`gemm`] (for gradient checks; same code path).
pub fn dgemm(
    alpha: f64,
    a: MatRef<'_, f64>,
    b: MatRef<'_, f64>,
    beta: f64,
    c: MatMut<'_, f64>,
    threads: usize,
) -> Result<(), KernelError> {
    gemm(alpha, a, b, beta, c, threads)
}

/// The unchecked core of [`gemm`], splitting rows of C over up to `threads` threads.
///
/// # Safety
/// As [`Scalar::gemm_raw`]: all addressed elements in bounds, C's elements distinct and not
/// overlapping A or B.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_raw<T: Scalar>(
    m: usize,
    k: usize,
    n: usize,
    alpha: T,
    a: *const T,
    rsa: isize,
    csa: isize,
    b: *const T,
    rsb: isize,
    csb: isize,
    beta: T,
    c: *mut T,
    rsc: isize,
    csc: isize,
    threads: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    let flops = 2.0 * m as f64 * n as f64 * k as f64;
    // Keep at least 16 rows per thread so each keeps whole micro-kernel tiles busy.
    let threads = useful_threads(threads, m / 16, flops);
    if threads <= 1 {
        // SAFETY: caller contract.
        unsafe { T::gemm_raw(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc) };
        return;
    }
    let a = SendPtr(a as *mut T);
    let b = SendPtr(b as *mut T);
    let c = SendPtr(c);
    let _ = for_each_part::<(), _>(threads, threads, |p| {
        let rows = even_range(m, threads, p);
        let r0 = rows.start as isize;
        // SAFETY: rows r0.. of A and C lie inside the caller's valid region; row blocks of C are
        // disjoint because C's elements are distinct.
        unsafe {
            T::gemm_raw(
                rows.len(),
                k,
                n,
                alpha,
                a.get().wrapping_offset(r0 * rsa),
                rsa,
                csa,
                b.get(),
                rsb,
                csb,
                beta,
                c.get().wrapping_offset(r0 * rsc),
                rsc,
                csc,
            )
        };
        Ok(())
    });
}
