//! Max and average 2-D pooling in NHWC layout, forward and backward.
//!
//! Keras semantics: padded cells never take part (average pooling divides by the number of real
//! cells in the window, `count_include_pad=False`); max-pooling's gradient goes to the first
//! maximum of each window in row-major scan order. Each window must contain a real cell, which
//! holds whenever `pad_before < window` and `pad_after < window` (always true for Keras `same`).

use super::scalar::Scalar;
use super::{check_len, checked_product, KernelError};

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

/// Max pooling forward: each output is the maximum of the real cells of its window.
pub fn max_pool2d_forward<T: Scalar>(
    shape: &Pool2dShape,
    input: &[T],
    output: &mut [T],
) -> Result<(), KernelError> {
    let d = shape.dims()?;
    check_len("max_pool2d_forward input", input.len(), d.input_len)?;
    check_len("max_pool2d_forward output", output.len(), d.output_len)?;
    let c = shape.channels;
    for_each_window(shape, &d, |o, cells| {
        let out = &mut output[o..o + c];
        // Every window has at least one real cell (checked in `dims`).
        out.copy_from_slice(&input[cells[0]..cells[0] + c]);
        for &cell in &cells[1..] {
            for (m, &x) in out.iter_mut().zip(&input[cell..cell + c]) {
                if x > *m {
                    *m = x;
                }
            }
        }
    });
    Ok(())
}

/// Max pooling backward: `d_input` (overwritten) receives each `d_output` value at the first
/// maximum of its window; windows that overlap add up.
pub fn max_pool2d_backward<T: Scalar>(
    shape: &Pool2dShape,
    input: &[T],
    d_output: &[T],
    d_input: &mut [T],
) -> Result<(), KernelError> {
    let d = shape.dims()?;
    check_len("max_pool2d_backward input", input.len(), d.input_len)?;
    check_len("max_pool2d_backward d_output", d_output.len(), d.output_len)?;
    check_len("max_pool2d_backward d_input", d_input.len(), d.input_len)?;
    let c = shape.channels;
    d_input.fill(T::ZERO);
    // Per channel: the best value so far and the input offset it came from.
    let mut best = vec![T::ZERO; c];
    let mut arg = vec![0usize; c];
    for_each_window(shape, &d, |o, cells| {
        best.copy_from_slice(&input[cells[0]..cells[0] + c]);
        arg.fill(cells[0]);
        for &cell in &cells[1..] {
            for ch in 0..c {
                let x = input[cell + ch];
                if x > best[ch] {
                    best[ch] = x;
                    arg[ch] = cell;
                }
            }
        }
        for ch in 0..c {
            d_input[arg[ch] + ch] += d_output[o + ch];
        }
    });
    Ok(())
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
