//! General matrix multiply on strided views: `C = alpha * A * B + beta * C`.
//!
//! Views carry a row and a column stride, so a transposed operand is the same buffer with the
//! strides swapped ([`MatRef::t`]) and never needs a copy. Large products are split over rows of
//! `C` across the kernels' thread pool. Where `B`'s rows are contiguous, products run unpacked
//! ([`small_rows`] reads `A` and `B` where they are): every such product on a CPU with AVX-512
//! (blocks of 12 rows by 32 columns of sums in registers), and a product of a few rows (batch-1
//! inference, the last pixels of a convolution) with AVX2+FMA. Everything else goes to
//! `matrixmultiply` (packed AVX-512 / AVX2+FMA / SSE2 / portable micro-kernels chosen at run
//! time). The unpacked kernels sum each element exactly as `matrixmultiply`'s FMA kernels do, so
//! which path a row takes (its batch size, the split over threads) never changes its bits.

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
    let unpacked = if k > 0 && csb == 1 {
        unpacked_kernel::<T>(m)
    } else {
        None
    };
    if m <= SMALL_M {
        if let Some(kernel) = unpacked {
            // SAFETY: caller contract; `unpacked_kernel` checked the CPU features.
            unsafe { kernel(m, k, n, alpha, a, rsa, csa, b, rsb, beta, c, rsc, csc) };
            return;
        }
    }
    let b = SendPtr(b as *mut T);
    // SAFETY (both): the caller's contract, on rows `r0..r0 + rows` of A and C.
    let part = |rows: usize, a: *const T, c: *mut T| unsafe {
        let b = b.get() as *const T;
        match unpacked {
            Some(kernel) => kernel(rows, k, n, alpha, a, rsa, csa, b, rsb, beta, c, rsc, csc),
            None => T::gemm_raw(
                rows, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc,
            ),
        }
    };
    let flops = 2.0 * m as f64 * n as f64 * k as f64;
    // Keep at least 16 rows per thread so each keeps whole micro-kernel tiles busy.
    let threads = useful_threads(threads, m / 16, flops);
    if threads <= 1 {
        part(m, a, c);
        return;
    }
    let a = SendPtr(a as *mut T);
    let c = SendPtr(c);
    let _ = for_each_part::<(), _>(threads, threads, |p| {
        let rows = even_range(m, threads, p);
        let r0 = rows.start as isize;
        // Rows r0.. of A and C lie inside the caller's valid region; row blocks of C are
        // disjoint because C's elements are distinct.
        part(
            rows.len(),
            a.get().wrapping_offset(r0 * rsa),
            c.get().wrapping_offset(r0 * rsc),
        );
        Ok(())
    });
}

/// Rows of `C` up to which [`gemm_raw`] multiplies without packing on AVX2 (see
/// [`small_rows`]). `matrixmultiply` packs all of `B` and runs its 16-row (AVX-512) or 8-row
/// (AVX2) tile even for one row: at batch 1 a dense layer's GEMM was 90% packing and wasted tile
/// rows. Up to 12 rows (a convolution's last 3x3 map at batch 1 has 9), reading `B` once per 4
/// rows costs less than packing it; from 13 the packed tiles are nearly full. With AVX-512's 32
/// vector registers, blocks of [`WIDE_ROWS`] rows beat the packed tiles at every size.
const SMALL_M: usize = 12;

/// Rows per register block of the AVX-512 unpacked product: 12 rows by two vectors of columns
/// is 24 of the 32 vector registers of sums, two of `B`'s row and one broadcast of `A`; each
/// loaded vector of `B` then feeds 12 fused multiply-adds. (On the MNIST models' shapes, one
/// thread, against `matrixmultiply`'s packed 16x16 tiles: convolutions forward 141 -> 216 and
/// 131 -> 223 GFLOP/s, dense forward 149 -> 242 and 181 -> 253, kernel gradients 188 -> 216;
/// `runtime/examples/mnist_kernels`.)
const WIDE_ROWS: usize = 12;

/// `matrixmultiply`'s depth block (`S_KC` = `D_KC`): it sums each element of `C` in blocks of
/// this many products and adds the blocks' sums into `C` one after another.
const MM_KC: usize = 256;

/// An unpacked product (see [`small_rows`]), with the arguments of [`gemm_raw`] but `csb` (1)
/// and `threads`.
type Unpacked<T> = unsafe fn(
    usize,
    usize,
    usize,
    T,
    *const T,
    isize,
    isize,
    *const T,
    isize,
    T,
    *mut T,
    isize,
    isize,
);

/// The unpacked product of `m` rows compiled for this CPU's widest vectors, when
/// `matrixmultiply` runs an FMA micro-kernel here (AVX-512F, or AVX2 with FMA): only then does
/// [`small_rows`] (which uses FMA) sum exactly as it does. Any `m` with AVX-512, up to
/// [`SMALL_M`] with AVX2. `None` elsewhere: such products stay with `matrixmultiply`.
fn unpacked_kernel<T: Scalar>(m: usize) -> Option<Unpacked<T>> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            return Some(unpacked_avx512::<T>);
        }
        if m <= SMALL_M
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            return Some(unpacked_avx2::<T>);
        }
    }
    let _ = m;
    None
}

/// Defines `$name`, an [`Unpacked`]: [`small_rows`] over groups of `$wide` rows while that many
/// are left, then of up to 4, compiled with `$features`, with register blocks of `$v` f32 lanes
/// per vector.
macro_rules! unpacked_variant {
    ($name:ident, $features:literal, $v:literal, $wide:expr) => {
        /// # Safety
        /// As [`gemm_raw`] (with `k > 0`, `csb == 1`), on a CPU with the features this is
        /// compiled for.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $name<T: Scalar>(
            m: usize,
            k: usize,
            n: usize,
            alpha: T,
            a: *const T,
            rsa: isize,
            csa: isize,
            b: *const T,
            rsb: isize,
            beta: T,
            c: *mut T,
            rsc: isize,
            csc: isize,
        ) {
            // SAFETY (all blocks): every index stays within the caller's m x k, k x n and
            // m x n views. About 8 vectors of sums per block, so that the fused multiply-adds
            // do not wait on each other.
            unsafe {
                let mut i = 0;
                while i < m {
                    let (a, c) = (a.offset(i as isize * rsa), c.offset(i as isize * rsc));
                    let args = (k, n, alpha, a, rsa, csa, b, rsb, beta, c, rsc, csc);
                    if m - i >= $wide {
                        small_rows::<T, $wide, { 2 * $v }, $v, $v>(args);
                        i += $wide;
                        continue;
                    }
                    match m - i {
                        1 => small_rows::<T, 1, { 8 * $v }, { 4 * $v }, $v>(args),
                        2 => small_rows::<T, 2, { 4 * $v }, { 2 * $v }, $v>(args),
                        3 => small_rows::<T, 3, { 3 * $v }, { 2 * $v }, $v>(args),
                        _ => small_rows::<T, 4, { 2 * $v }, $v, $v>(args),
                    }
                    i += 4;
                }
            }
        }
    };
}
unpacked_variant!(unpacked_avx2, "avx2,fma", 8, 4);
unpacked_variant!(unpacked_avx512, "avx512f,avx2,fma", 16, WIDE_ROWS);

/// The arguments of [`small_rows`] for `R` rows starting at the given rows of `A` and `C`:
/// `(k, n, alpha, a, rsa, csa, b, rsb, beta, c, rsc, csc)`.
type RowsArgs<T> = (
    usize,
    usize,
    T,
    *const T,
    isize,
    isize,
    *const T,
    isize,
    T,
    *mut T,
    isize,
    isize,
);

/// `C = alpha * A * B + beta * C` for `R` rows, `B` with unit column stride,
/// without packing: each block of columns keeps every row's sums in registers while the rows
/// of `B` stream past once.
///
/// Every element is summed as `matrixmultiply`'s FMA micro-kernels sum it, so a row gives the
/// same bits here as inside a larger batch: per depth block of [`MM_KC`], one fused
/// multiply-add per product in order from zero; then the block's sum times `alpha` is added to
/// `C` (`beta * C` before the first block, `C` itself after; `C` is not read when `beta` is 0).
/// (`matrixmultiply` folds `alpha` into an FMA on full tiles; with `alpha == 1`, what every
/// caller here passes, both roundings are the same.)
///
/// Blocks of `NB` columns, then of `NB2`, then of `V` (one vector), then the rest.
///
/// # Safety
/// As [`gemm_raw`] on `R` rows, with `k > 0` and `B`'s column stride 1.
#[inline(always)]
unsafe fn small_rows<
    T: Scalar,
    const R: usize,
    const NB: usize,
    const NB2: usize,
    const V: usize,
>(
    (k, n, alpha, a, rsa, csa, b, rsb, beta, c, rsc, csc): RowsArgs<T>,
) {
    // SAFETY (all blocks): columns j..j + width lie inside the caller's n columns.
    unsafe {
        let mut j = 0;
        while j + NB <= n {
            let (b_j, c_j) = (b.add(j), c.offset(j as isize * csc));
            small_block::<T, R, NB>(NB, k, alpha, a, rsa, csa, b_j, rsb, beta, c_j, rsc, csc);
            j += NB;
        }
        while j + NB2 <= n {
            let (b_j, c_j) = (b.add(j), c.offset(j as isize * csc));
            small_block::<T, R, NB2>(NB2, k, alpha, a, rsa, csa, b_j, rsb, beta, c_j, rsc, csc);
            j += NB2;
        }
        while j < n {
            let width = (n - j).min(V);
            let (b_j, c_j) = (b.add(j), c.offset(j as isize * csc));
            small_block::<T, R, V>(width, k, alpha, a, rsa, csa, b_j, rsb, beta, c_j, rsc, csc);
            j += width;
        }
    }
}

/// `width <= W` columns of [`small_rows`], with `R x W` sums in registers.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn small_block<T: Scalar, const R: usize, const W: usize>(
    width: usize,
    k: usize,
    alpha: T,
    a: *const T,
    rsa: isize,
    csa: isize,
    b: *const T,
    rsb: isize,
    beta: T,
    c: *mut T,
    rsc: isize,
    csc: isize,
) {
    let mut k0 = 0;
    while k0 < k {
        let kc = (k - k0).min(MM_KC);
        let mut acc = [[T::ZERO; W]; R];
        for p in k0..k0 + kc {
            // SAFETY: p < k and width <= W columns: inside the caller's views.
            unsafe {
                let (row, a) = (b.offset(p as isize * rsb), a.offset(p as isize * csa));
                if width == W {
                    fma_rows(&mut acc, &*(row as *const [T; W]), a, rsa);
                } else {
                    // The last columns: their lanes, zero-padded (the padding's sums are
                    // never stored).
                    let mut tail = [T::ZERO; W];
                    std::ptr::copy_nonoverlapping(row, tail.as_mut_ptr(), width);
                    fma_rows(&mut acc, &tail, a, rsa);
                }
            }
        }
        let sum = |s: T| alpha * s;
        for (r, acc) in acc.iter().enumerate() {
            // SAFETY: r < R rows of C, `width` columns.
            unsafe {
                let (c, sums) = (c.offset(r as isize * rsc), &acc[..width]);
                if k0 > 0 {
                    update_row(c, csc, sums, |dst, s| *dst += sum(s));
                } else if beta == T::ZERO {
                    update_row(c, csc, sums, |dst, s| *dst = sum(s));
                } else {
                    update_row(c, csc, sums, |dst, s| *dst = *dst * beta + sum(s));
                }
            }
        }
        k0 += kc;
    }
}

/// One depth step of [`small_block`]: `acc[r][l] += a[r * rsa] * row[l]`, one fused
/// multiply-add each.
///
/// # Safety
/// `a.offset(r * rsa)` readable for every `r < R`.
#[inline(always)]
unsafe fn fma_rows<T: Scalar, const R: usize, const W: usize>(
    acc: &mut [[T; W]; R],
    row: &[T; W],
    a: *const T,
    rsa: isize,
) {
    for (r, acc) in acc.iter_mut().enumerate() {
        // SAFETY: the caller's contract.
        let x = unsafe { *a.offset(r as isize * rsa) };
        for l in 0..W {
            acc[l] = x.mul_add(row[l], acc[l]);
        }
    }
}

/// Applies `update(&mut c[l * csc], sums[l])` along one row of `C` (contiguous rows as a slice,
/// so that the update is vectorized).
///
/// # Safety
/// `c.offset(l * csc)` writable for every `l < sums.len()`, and not aliased.
#[inline(always)]
unsafe fn update_row<T: Scalar>(c: *mut T, csc: isize, sums: &[T], update: impl Fn(&mut T, T)) {
    if csc == 1 {
        // SAFETY: the caller's contract with csc = 1.
        let row = unsafe { std::slice::from_raw_parts_mut(c, sums.len()) };
        for (dst, &s) in row.iter_mut().zip(sums) {
            update(dst, s);
        }
    } else {
        for (l, &s) in sums.iter().enumerate() {
            // SAFETY: the caller's contract.
            update(unsafe { &mut *c.offset(l as isize * csc) }, s);
        }
    }
}
