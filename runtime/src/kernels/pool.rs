//! Max and average 2-D pooling in NHWC layout, forward and backward.
//!
//! Keras semantics: padded cells never take part (average pooling divides by the number of real
//! cells in the window, `count_include_pad=False`); max-pooling's gradient goes to the first
//! maximum of each window in row-major scan order. Each window must contain a real cell, which
//! holds whenever `pad_before < window` and `pad_after < window` (always true for Keras `same`).
//!
//! Max pooling is memory-bound: images split over the kernel threads, channels are the
//! vector lanes (AVX2 when the CPU has it), and the backward of non-overlapping windows (the
//! usual `MaxPool2D(2)`) writes each input cell once, with no zero fill and no scatter-add.

use super::scalar::Scalar;
use super::split::{for_each_row_chunk, threads_for_elements};
use super::{avx2_variant, check_len, checked_product, KernelError};

/// The static geometry of one pooling op; `#[repr(C)]` for the JIT, arrays are `[height, width]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pool2dShape {
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub channels: usize,
    pub window: [usize; 2],
    pub stride: [usize; 2],
    pub pad_before: [usize; 2],
    pub pad_after: [usize; 2],
}

/// Sizes derived from a valid [`Pool2dShape`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dDims {
    pub out_h: usize,
    pub out_w: usize,
    /// `batch * in_h * in_w * channels`
    pub input_len: usize,
    /// `batch * out_h * out_w * channels`
    pub output_len: usize,
}

impl Pool2dShape {
    /// Checks the shape and derives the output size and buffer lengths.
    pub fn dims(&self) -> Result<Pool2dDims, KernelError> {
        if self.in_h == 0 || self.in_w == 0 || self.channels == 0 {
            return Err(KernelError::new("pool2d: input must be non-empty"));
        }
        let mut out = [0; 2];
        let input = [self.in_h, self.in_w];
        for axis in 0..2 {
            let (win, stride) = (self.window[axis], self.stride[axis]);
            let (pb, pa) = (self.pad_before[axis], self.pad_after[axis]);
            if win == 0 || stride == 0 {
                return Err(KernelError::new(
                    "pool2d: window and stride must be positive",
                ));
            }
            if pb >= win || pa >= win {
                return Err(KernelError::new(format!(
                    "pool2d: padding ({pb}, {pa}) must be smaller than the window {win}"
                )));
            }
            let padded = input[axis]
                .checked_add(pb)
                .and_then(|x| x.checked_add(pa))
                .ok_or_else(|| KernelError::new("pool2d: size overflows"))?;
            if padded < win {
                return Err(KernelError::new(format!(
                    "pool2d: window {win} larger than padded input {padded}"
                )));
            }
            out[axis] = (padded - win) / stride + 1;
        }
        Ok(Pool2dDims {
            out_h: out[0],
            out_w: out[1],
            input_len: checked_product(
                "pool2d input",
                &[self.batch, self.in_h, self.in_w, self.channels],
            )?,
            output_len: checked_product(
                "pool2d output",
                &[self.batch, out[0], out[1], self.channels],
            )?,
        })
    }
}

/// The real (unpadded) input range one output position's window covers on one axis.
#[inline]
fn window_range(
    o: usize,
    stride: usize,
    pad: usize,
    win: usize,
    size: usize,
) -> std::ops::Range<usize> {
    let start = o * stride;
    start.saturating_sub(pad)..(start + win).saturating_sub(pad).min(size)
}

/// Calls `visit(out_offset, cell_offsets)` for each output pixel, with the element offsets (of
/// channel 0) of the real input cells of its window in row-major order.
fn for_each_window(s: &Pool2dShape, d: &Pool2dDims, mut visit: impl FnMut(usize, &[usize])) {
    let c = s.channels;
    let mut cells = Vec::with_capacity(s.window[0] * s.window[1]);
    let mut out_offset = 0;
    for n in 0..s.batch {
        for oh in 0..d.out_h {
            let rows = window_range(oh, s.stride[0], s.pad_before[0], s.window[0], s.in_h);
            for ow in 0..d.out_w {
                let cols = window_range(ow, s.stride[1], s.pad_before[1], s.window[1], s.in_w);
                cells.clear();
                for ih in rows.clone() {
                    for iw in cols.clone() {
                        cells.push(((n * s.in_h + ih) * s.in_w + iw) * c);
                    }
                }
                visit(out_offset, &cells);
                out_offset += c;
            }
        }
    }
}

/// Channels handled together: one block's running maxima and arguments stay in registers.
const LANES: usize = 8;

/// Threads worth using on a pooling op (it is memory-bound: the input size is the work).
fn pool_threads(s: &Pool2dShape, d: &Pool2dDims) -> usize {
    threads_for_elements(s.batch, d.input_len)
}

/// The input cells (offsets of channel 0, relative to the image) of the window of output
/// `(oh, ow)`, in row-major order, into `cells`.
#[inline(always)]
fn window_cells(s: &Pool2dShape, oh: usize, ow: usize, cells: &mut Vec<usize>) {
    let rows = window_range(oh, s.stride[0], s.pad_before[0], s.window[0], s.in_h);
    let cols = window_range(ow, s.stride[1], s.pad_before[1], s.window[1], s.in_w);
    cells.clear();
    for ih in rows {
        for iw in cols.clone() {
            cells.push((ih * s.in_w + iw) * s.channels);
        }
    }
}

/// Max pooling forward: each output is the maximum of the real cells of its window (the first
/// of them where a comparison is false, so a NaN first cell wins, as in Keras).
pub fn max_pool2d_forward<T: Scalar>(
    shape: &Pool2dShape,
    input: &[T],
    output: &mut [T],
) -> Result<(), KernelError> {
    let d = shape.dims()?;
    check_len("max_pool2d_forward input", input.len(), d.input_len)?;
    check_len("max_pool2d_forward output", output.len(), d.output_len)?;
    let out_image = d.out_h * d.out_w * shape.channels;
    let _ = for_each_row_chunk::<_, (), _>(
        output,
        out_image,
        shape.batch,
        pool_threads(shape, &d),
        |images, out| {
            max_forward_images(shape, &d, input, images, out);
            Ok(())
        },
    );
    Ok(())
}

avx2_variant! {
    fn max_forward_images(
        shape: &Pool2dShape,
        d: &Pool2dDims,
        input: &[T],
        images: std::ops::Range<usize>,
        out: &mut [T],
    ) => max_forward_images_inline
}

/// Max pooling forward of `images` into their rows `out` of the output.
#[inline(always)]
fn max_forward_images_inline<T: Scalar>(
    shape: &Pool2dShape,
    d: &Pool2dDims,
    input: &[T],
    images: std::ops::Range<usize>,
    out: &mut [T],
) {
    let c = shape.channels;
    let in_image = shape.in_h * shape.in_w * c;
    let out_image = d.out_h * d.out_w * c;
    let mut cells = Vec::with_capacity(shape.window[0] * shape.window[1]);
    for (n, out) in images.zip(out.chunks_exact_mut(out_image)) {
        let x = &input[n * in_image..(n + 1) * in_image];
        for (p, o) in out.chunks_exact_mut(c).enumerate() {
            // Every window has at least one real cell (checked in `dims`).
            window_cells(shape, p / d.out_w, p % d.out_w, &mut cells);
            o.copy_from_slice(&x[cells[0]..cells[0] + c]);
            for &cell in &cells[1..] {
                for (m, &v) in o.iter_mut().zip(&x[cell..cell + c]) {
                    *m = if v > *m { v } else { *m };
                }
            }
        }
    }
}

/// Max pooling backward: `d_input` (overwritten) receives each `d_output` value at the first
/// maximum of its window; windows that overlap add up.
pub fn max_pool2d_backward<T: Scalar>(
    shape: &Pool2dShape,
    input: &[T],
    d_output: &[T],
    d_input: &mut [T],
) -> Result<(), KernelError> {
    max_pool2d_backward_impl(shape, input, d_output, d_input, false)
}

/// [`max_pool2d_backward`] fused with the backward of the ReLU whose output `input` is: a
/// window's gradient goes to its first maximum only where that maximum is positive, exactly
/// `select(input > 0, max_pool2d_backward(input, d_output), 0)` without the second pass.
pub fn max_pool2d_backward_relu<T: Scalar>(
    shape: &Pool2dShape,
    input: &[T],
    d_output: &[T],
    d_input: &mut [T],
) -> Result<(), KernelError> {
    max_pool2d_backward_impl(shape, input, d_output, d_input, true)
}

fn max_pool2d_backward_impl<T: Scalar>(
    shape: &Pool2dShape,
    input: &[T],
    d_output: &[T],
    d_input: &mut [T],
    positive: bool,
) -> Result<(), KernelError> {
    let d = shape.dims()?;
    check_len("max_pool2d_backward input", input.len(), d.input_len)?;
    check_len("max_pool2d_backward d_output", d_output.len(), d.output_len)?;
    check_len("max_pool2d_backward d_input", d_input.len(), d.input_len)?;
    let in_image = shape.in_h * shape.in_w * shape.channels;
    let rows = covered(shape, 0, shape.in_h, d.out_h);
    let cols = covered(shape, 1, shape.in_w, d.out_w);
    let (rows, cols) = (&rows[..], &cols[..]);
    let _ = for_each_row_chunk::<_, (), _>(
        d_input,
        in_image,
        shape.batch,
        pool_threads(shape, &d),
        |images, dx| {
            max_backward_images(shape, &d, input, d_output, rows, cols, positive, images, dx);
            Ok(())
        },
    );
    Ok(())
}

avx2_variant! {
    fn max_backward_images(
        shape: &Pool2dShape,
        d: &Pool2dDims,
        input: &[T],
        d_output: &[T],
        rows: &[bool],
        cols: &[bool],
        positive: bool,
        images: std::ops::Range<usize>,
        dx_images: &mut [T],
    ) => max_backward_images_inline
}

/// Max pooling backward of `images` into their rows `dx_images` of the input gradient;
/// `rows` and `cols` tell which input positions some window covers; with `positive`, only
/// positive maxima receive their gradient.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn max_backward_images_inline<T: Scalar>(
    shape: &Pool2dShape,
    d: &Pool2dDims,
    input: &[T],
    d_output: &[T],
    rows: &[bool],
    cols: &[bool],
    positive: bool,
    images: std::ops::Range<usize>,
    dx_images: &mut [T],
) {
    let c = shape.channels;
    let in_image = shape.in_h * shape.in_w * c;
    let out_image = d.out_h * d.out_w * c;
    // Windows that do not overlap write each input cell once: no zero fill, no adding.
    let disjoint = shape.stride[0] >= shape.window[0] && shape.stride[1] >= shape.window[1];
    let mut cells = Vec::with_capacity(shape.window[0] * shape.window[1]);
    for (n, dx) in images.zip(dx_images.chunks_exact_mut(in_image)) {
        let x = &input[n * in_image..(n + 1) * in_image];
        let dy = &d_output[n * out_image..(n + 1) * out_image];
        if disjoint {
            zero_uncovered(shape, rows, cols, dx);
        } else {
            dx.fill(T::ZERO);
        }
        for p in 0..d.out_h * d.out_w {
            window_cells(shape, p / d.out_w, p % d.out_w, &mut cells);
            let g = &dy[p * c..(p + 1) * c];
            let mut ch = 0;
            while ch + LANES <= c {
                route_block::<T, LANES>(x, g, dx, &cells, ch, disjoint, positive);
                ch += LANES;
            }
            while ch < c {
                route_block::<T, 1>(x, g, dx, &cells, ch, disjoint, positive);
                ch += 1;
            }
        }
    }
}

/// Channels `ch..ch + W` of one window's backward: finds the first maximum per channel and
/// gives it `g`; with `disjoint` windows also writes zero to the window's other cells (else adds
/// `g` onto the zero-filled `dx`). With `positive`, a maximum that is not above zero (a dead
/// ReLU's window) receives nothing. `W` is a constant so the lanes live in vector registers.
#[inline(always)]
fn route_block<T: Scalar, const W: usize>(
    x: &[T],
    g: &[T],
    dx: &mut [T],
    cells: &[usize],
    ch: usize,
    disjoint: bool,
    positive: bool,
) {
    let lanes = |data: &[T], at: usize| -> [T; W] { data[at..at + W].try_into().expect("W lanes") };
    let mut best = lanes(x, cells[0] + ch);
    let mut arg = [0u32; W];
    for (k, &cell) in cells.iter().enumerate().skip(1) {
        let v = lanes(x, cell + ch);
        for l in 0..W {
            let better = v[l] > best[l];
            best[l] = if better { v[l] } else { best[l] };
            arg[l] = if better { k as u32 } else { arg[l] };
        }
    }
    let mut g = lanes(g, ch);
    if positive {
        for l in 0..W {
            g[l] = if best[l] > T::ZERO { g[l] } else { T::ZERO };
        }
    }
    for (k, &cell) in cells.iter().enumerate() {
        let out: &mut [T; W] = (&mut dx[cell + ch..cell + ch + W])
            .try_into()
            .expect("W lanes");
        if disjoint {
            for l in 0..W {
                out[l] = if arg[l] == k as u32 { g[l] } else { T::ZERO };
            }
        } else {
            for l in 0..W {
                if arg[l] == k as u32 {
                    out[l] += g[l];
                }
            }
        }
    }
}

/// Which input positions along `axis` some window covers.
fn covered(s: &Pool2dShape, axis: usize, size: usize, out: usize) -> Vec<bool> {
    let mut covered = vec![false; size];
    for o in 0..out {
        for i in window_range(o, s.stride[axis], s.pad_before[axis], s.window[axis], size) {
            covered[i] = true;
        }
    }
    covered
}

/// Zeroes the cells of one image that no window covers (rows and columns past the last window,
/// or between windows when the stride exceeds the window).
fn zero_uncovered<T: Scalar>(s: &Pool2dShape, rows: &[bool], cols: &[bool], dx: &mut [T]) {
    if rows.iter().chain(cols).all(|&c| c) {
        return;
    }
    for (row, &row_covered) in dx.chunks_exact_mut(s.in_w * s.channels).zip(rows) {
        for (cell, &col_covered) in row.chunks_exact_mut(s.channels).zip(cols) {
            if !(row_covered && col_covered) {
                cell.fill(T::ZERO);
            }
        }
    }
}
/// Average pooling forward: the mean over the real cells of each window.
pub fn avg_pool2d_forward<T: Scalar>(
    shape: &Pool2dShape,
    input: &[T],
    output: &mut [T],
) -> Result<(), KernelError> {
    let d = shape.dims()?;
    check_len("avg_pool2d_forward input", input.len(), d.input_len)?;
    check_len("avg_pool2d_forward output", output.len(), d.output_len)?;
    let c = shape.channels;
    for_each_window(shape, &d, |o, cells| {
        let out = &mut output[o..o + c];
        out.fill(T::ZERO);
        for &cell in cells {
            for (s, &x) in out.iter_mut().zip(&input[cell..cell + c]) {
                *s += x;
            }
        }
        let count = T::from_count(cells.len());
        for s in out {
            *s = *s / count;
        }
    });
    Ok(())
}

/// Average pooling backward: each real cell of a window receives `d_output / cell_count`;
/// `d_input` is overwritten.
pub fn avg_pool2d_backward<T: Scalar>(
    shape: &Pool2dShape,
    d_output: &[T],
    d_input: &mut [T],
) -> Result<(), KernelError> {
    let d = shape.dims()?;
    check_len("avg_pool2d_backward d_output", d_output.len(), d.output_len)?;
    check_len("avg_pool2d_backward d_input", d_input.len(), d.input_len)?;
    let c = shape.channels;
    d_input.fill(T::ZERO);
    for_each_window(shape, &d, |o, cells| {
        let count = T::from_count(cells.len());
        let g = &d_output[o..o + c];
        for &cell in cells {
            for (x, &gi) in d_input[cell..cell + c].iter_mut().zip(g) {
                *x += gi / count;
            }
        }
    });
    Ok(())
}
