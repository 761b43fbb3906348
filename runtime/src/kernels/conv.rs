//! 2-D convolution in NHWC / Keras layout and its two gradients, via tiled im2col + GEMM.
//!
//! Output pixels `(n, oh, ow)` are flattened into one index `p` in `0..batch*out_h*out_w`, so the
//! output is a `pixels x out_c` row-major matrix and the kernel `[kh, kw, C, F]` is a
//! `patch_len x F` matrix with `patch_len = kh*kw*C`. The patch matrix is built for a tile of
//! pixels at a time, sized so it stays in L2 (about 192 KiB of f32), and multiplied at once:
//! - forward: `out[tile] = patches[tile] * W`
//! - input gradient: `d_patches[tile] = d_out[tile] * W^T`, then scatter-added back (col2im)
//! - kernel gradient: `dW += patches[tile]^T * d_out[tile]`
//!
//! A 1x1, stride-1, unpadded convolution is a plain GEMM and skips the patch matrix. Conv1D is
//! this with `in_h = kernel_h = 1`. Padding is explicit (before/after per spatial axis): Keras
//! `same` arithmetic belongs to the caller.

use std::ops::Range;

use super::gemm::{gemm, MatMut, MatRef};
use super::scalar::Scalar;
use super::split::{even_range, for_each_part, for_each_row_chunk, useful_threads, SendPtr};
use super::{avx2_variant, check_len, checked_product, KernelError};

/// Elements of patch matrix per tile: 48 Ki elements (192 KiB of f32) fits L2 beside W.
const PATCH_TILE_ELEMS: usize = 48 * 1024;
/// Fewer rows than this per GEMM call and packing W dominates.
const MIN_TILE_PIXELS: usize = 32;
/// Patches at most this long (a first layer on one or two channels) skip the GEMM in the
/// forward pass: with so short an inner dimension its packing costs more than the arithmetic.
/// (The kernel gradient keeps the GEMM, whose inner dimension is the pixels: its summation
/// order, blocked by the GEMM, is what the interpreter's matches.)
const DIRECT_MAX_PATCH: usize = 32;
/// Pixels per patch block of the direct forward path.
const DIRECT_BLOCK: usize = 128;
/// Output channels per register block of the direct forward path (and per thread split of the
/// kernel gradient).
const FL: usize = 8;
/// Pixels whose sums the direct forward path keeps in registers together.
const DIRECT_PIXELS: usize = 2;

/// The static geometry of one 2-D convolution. `#[repr(C)]` so the JIT can pass a pointer to
/// one (all fields are `usize`; arrays are `[height, width]`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dShape {
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub in_c: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub out_c: usize,
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    pub pad_before: [usize; 2],
    pub pad_after: [usize; 2],
}

/// Sizes derived from a valid [`Conv2dShape`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dDims {
    pub out_h: usize,
    pub out_w: usize,
    /// `batch * in_h * in_w * in_c`
    pub input_len: usize,
    /// `kernel_h * kernel_w * in_c * out_c`
    pub kernel_len: usize,
    /// `batch * out_h * out_w * out_c`
    pub output_len: usize,
    /// `kernel_h * kernel_w * in_c`: the GEMM inner dimension.
    pub patch_len: usize,
    /// `batch * out_h * out_w`: the GEMM row count.
    pub pixels: usize,
    out_c: usize,
}

impl Conv2dDims {
    /// Multiply-adds times two of one forward pass (each gradient costs the same).
    pub fn flops(&self) -> f64 {
        2.0 * self.pixels as f64 * self.patch_len as f64 * self.out_c as f64
    }
}

/// Output length of one spatial axis, or an error if the dilated kernel does not fit.
fn axis_out(
    axis: &str,
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad_before: usize,
    pad_after: usize,
) -> Result<usize, KernelError> {
    if kernel == 0 || stride == 0 || dilation == 0 {
        return Err(KernelError::new(format!(
            "conv2d {axis}: kernel {kernel}, stride {stride} and dilation {dilation} must be positive"
        )));
    }
    let overflow = || KernelError::new(format!("conv2d {axis}: size overflows"));
    let span = (kernel - 1)
        .checked_mul(dilation)
        .and_then(|s| s.checked_add(1))
        .ok_or_else(overflow)?;
    let padded = input
        .checked_add(pad_before)
        .and_then(|s| s.checked_add(pad_after))
        .ok_or_else(overflow)?;
    if padded < span {
        return Err(KernelError::new(format!(
            "conv2d {axis}: dilated kernel spans {span} cells, padded input has {padded}"
        )));
    }
    Ok((padded - span) / stride + 1)
}

impl Conv2dShape {
    /// Checks the shape and derives the output size and buffer lengths.
    pub fn dims(&self) -> Result<Conv2dDims, KernelError> {
        if self.in_h == 0 || self.in_w == 0 || self.in_c == 0 || self.out_c == 0 {
            return Err(KernelError::new(format!(
                "conv2d: input {}x{}x{} and {} filters must be non-empty",
                self.in_h, self.in_w, self.in_c, self.out_c
            )));
        }
        let out_h = axis_out(
            "height",
            self.in_h,
            self.kernel_h,
            self.stride[0],
            self.dilation[0],
            self.pad_before[0],
            self.pad_after[0],
        )?;
        let out_w = axis_out(
            "width",
            self.in_w,
            self.kernel_w,
            self.stride[1],
            self.dilation[1],
            self.pad_before[1],
            self.pad_after[1],
        )?;
        let pixels = checked_product("conv2d output", &[self.batch, out_h, out_w])?;
        let patch_len =
            checked_product("conv2d patch", &[self.kernel_h, self.kernel_w, self.in_c])?;
        Ok(Conv2dDims {
            out_h,
            out_w,
            input_len: checked_product(
                "conv2d input",
                &[self.batch, self.in_h, self.in_w, self.in_c],
            )?,
            kernel_len: checked_product("conv2d kernel", &[patch_len, self.out_c])?,
            output_len: checked_product("conv2d output", &[pixels, self.out_c])?,
            patch_len,
            pixels,
            out_c: self.out_c,
        })
    }

    /// 1x1 kernel, stride 1, no padding: the convolution is one GEMM on the input as it is.
    fn is_pointwise(&self) -> bool {
        self.kernel_h == 1
            && self.kernel_w == 1
            && self.stride == [1, 1]
            && self.pad_before == [0, 0]
            && self.pad_after == [0, 0]
    }
}

/// Input coordinate of output position `o`, kernel tap `tap`, or `None` inside the padding.
#[inline]
fn source(
    o: usize,
    tap: usize,
    stride: usize,
    dilation: usize,
    pad: usize,
    size: usize,
) -> Option<usize> {
    (o * stride + tap * dilation)
        .checked_sub(pad)
        .filter(|&x| x < size)
}

/// Calls `visit(k, n, oh, ow)` for the `k`-th pixel of `pixels` at image `n`, output row `oh`
/// and column `ow`, in order (counting up instead of dividing per pixel).
#[inline(always)]
fn for_each_pixel(
    d: &Conv2dDims,
    pixels: Range<usize>,
    mut visit: impl FnMut(usize, usize, usize, usize),
) {
    let per_image = d.out_h * d.out_w;
    let (mut n, rem) = (pixels.start / per_image, pixels.start % per_image);
    let (mut oh, mut ow) = (rem / d.out_w, rem % d.out_w);
    for k in 0..pixels.len() {
        visit(k, n, oh, ow);
        ow += 1;
        if ow == d.out_w {
            ow = 0;
            oh += 1;
            if oh == d.out_h {
                oh = 0;
                n += 1;
            }
        }
    }
}

/// Calls `visit(patch_offset, input_offset)` for each kernel tap of output pixel `(n, oh, ow)`
/// that lands inside the input (taps in padding are skipped); offsets are element offsets of
/// the first channel.
#[inline(always)]
fn for_each_tap(
    s: &Conv2dShape,
    n: usize,
    oh: usize,
    ow: usize,
    mut visit: impl FnMut(usize, usize),
) {
    for i in 0..s.kernel_h {
        let Some(ih) = source(oh, i, s.stride[0], s.dilation[0], s.pad_before[0], s.in_h) else {
            continue;
        };
        for j in 0..s.kernel_w {
            let Some(iw) = source(ow, j, s.stride[1], s.dilation[1], s.pad_before[1], s.in_w)
            else {
                continue;
            };
            let patch_offset = (i * s.kernel_w + j) * s.in_c;
            let input_offset = ((n * s.in_h + ih) * s.in_w + iw) * s.in_c;
            visit(patch_offset, input_offset);
        }
    }
}

/// Writes the patch rows of `pixels` into `patches` (`pixels.len() x patch_len`, row-major),
/// zeros where a tap falls in the padding. Plain loops (no per-pixel division or call): with
/// one input channel this is most of a first layer's time.
#[inline(always)]
fn im2col<T: Scalar>(
    s: &Conv2dShape,
    d: &Conv2dDims,
    input: &[T],
    pixels: Range<usize>,
    patches: &mut [T],
) {
    let (c, pl) = (s.in_c, d.patch_len);
    let per_image = d.out_h * d.out_w;
    let (mut n, rem) = (pixels.start / per_image, pixels.start % per_image);
    let (mut oh, mut ow) = (rem / d.out_w, rem % d.out_w);
    for row in patches.chunks_exact_mut(pl).take(pixels.len()) {
        // Tap coordinates in the padded input.
        let (h0, w0) = (oh * s.stride[0], ow * s.stride[1]);
        let mut po = 0;
        for i in 0..s.kernel_h {
            let h = h0 + i * s.dilation[0];
            let ih = h.wrapping_sub(s.pad_before[0]);
            if h < s.pad_before[0] || ih >= s.in_h {
                row[po..po + s.kernel_w * c].fill(T::ZERO);
                po += s.kernel_w * c;
                continue;
            }
            let row_base = (n * s.in_h + ih) * s.in_w;
            for j in 0..s.kernel_w {
                let w = w0 + j * s.dilation[1];
                let iw = w.wrapping_sub(s.pad_before[1]);
                let dst = &mut row[po..po + c];
                if w < s.pad_before[1] || iw >= s.in_w {
                    dst.fill(T::ZERO);
                } else {
                    let src = &input[(row_base + iw) * c..(row_base + iw + 1) * c];
                    if c == 1 {
                        dst[0] = src[0];
                    } else {
                        dst.copy_from_slice(src);
                    }
                }
                po += c;
            }
        }
        ow += 1;
        if ow == d.out_w {
            ow = 0;
            oh += 1;
            if oh == d.out_h {
                oh = 0;
                n += 1;
            }
        }
    }
}

/// Adds the patch-gradient rows of `pixels` back onto the input positions they came from.
/// `d_input` starts at image `first_image`.
fn col2im_add<T: Scalar>(
    s: &Conv2dShape,
    d: &Conv2dDims,
    d_patches: &[T],
    pixels: Range<usize>,
    d_input: &mut [T],
    first_image: usize,
) {
    let (c, pl) = (s.in_c, d.patch_len);
    let base = first_image * s.in_h * s.in_w * c;
    for_each_pixel(d, pixels, |k, n, oh, ow| {
        let row = &d_patches[k * pl..(k + 1) * pl];
        for_each_tap(s, n, oh, ow, |po, io| {
            let dst = &mut d_input[io - base..io - base + c];
            for (x, &g) in dst.iter_mut().zip(&row[po..po + c]) {
                *x += g;
            }
        });
    });
}

/// Pixels per patch tile for this patch length.
fn tile_pixels(patch_len: usize) -> usize {
    (PATCH_TILE_ELEMS / patch_len.max(1)).max(MIN_TILE_PIXELS)
}

/// Splits `range` into consecutive tiles of at most `tile` pixels.
fn tiles(range: Range<usize>, tile: usize) -> impl Iterator<Item = Range<usize>> {
    let end = range.end;
    range
        .step_by(tile)
        .map(move |start| start..(start + tile).min(end))
}

fn check_buffers(
    what: &str,
    d: &Conv2dDims,
    input: usize,
    kernel: usize,
    output: usize,
) -> Result<(), KernelError> {
    check_len(&format!("{what} input"), input, d.input_len)?;
    check_len(&format!("{what} kernel"), kernel, d.kernel_len)?;
    check_len(&format!("{what} output"), output, d.output_len)
}

/// What a forward convolution applies to each block of output rows while it is in cache:
/// `y = y + bias[f]` (when `bias` is given), then `y = max(y, 0)` (when `relu`; NaN stays NaN,
/// as the IR's `max` keeps it). Exactly the separate add and max, fused.
#[derive(Clone, Copy, Debug)]
pub struct ConvEpilogue<'a, T> {
    pub bias: Option<&'a [T]>,
    pub relu: bool,
}

impl<T> Default for ConvEpilogue<'_, T> {
    fn default() -> Self {
        ConvEpilogue {
            bias: None,
            relu: false,
        }
    }
}

impl<T: Scalar> ConvEpilogue<'_, T> {
    fn is_identity(&self) -> bool {
        self.bias.is_none() && !self.relu
    }

    /// Applies the epilogue to `rows` (whole rows of `f` channels).
    #[inline(always)]
    fn apply(&self, rows: &mut [T], f: usize) {
        match (self.bias, self.relu) {
            (None, false) => {}
            (Some(b), relu) => {
                for row in rows.chunks_exact_mut(f) {
                    for (y, &b) in row.iter_mut().zip(b) {
                        let v = *y + b;
                        *y = if relu { v.relu() } else { v };
                    }
                }
            }
            (None, true) => {
                for y in rows {
                    *y = y.relu();
                }
            }
        }
    }
}

/// Forward convolution: `output[n, oh, ow, f] = sum_{i, j, c} input[n, oh*sh + i*dh - ph,
/// ow*sw + j*dw - pw, c] * kernel[i, j, c, f]` (no bias; out-of-range taps read zero). The
/// output is overwritten. `threads` caps the threads used (0 = one per core).
pub fn conv2d_forward<T: Scalar>(
    shape: &Conv2dShape,
    input: &[T],
    kernel: &[T],
    output: &mut [T],
    threads: usize,
) -> Result<(), KernelError> {
    conv2d_forward_fused(
        shape,
        input,
        kernel,
        ConvEpilogue::default(),
        output,
        threads,
    )
}

/// [`conv2d_forward`] followed by `epilogue` on each tile of output rows as it is computed.
pub fn conv2d_forward_fused<T: Scalar>(
    shape: &Conv2dShape,
    input: &[T],
    kernel: &[T],
    epilogue: ConvEpilogue<'_, T>,
    output: &mut [T],
    threads: usize,
) -> Result<(), KernelError> {
    let d = shape.dims()?;
    check_buffers(
        "conv2d_forward",
        &d,
        input.len(),
        kernel.len(),
        output.len(),
    )?;
    if let Some(b) = epilogue.bias {
        check_len("conv2d_forward bias", b.len(), shape.out_c)?;
    }
    let w = MatRef::row_major(kernel, d.patch_len, shape.out_c)?;
    if shape.is_pointwise() {
        let x = MatRef::row_major(input, d.pixels, shape.in_c)?;
        let out = MatMut::row_major(output, d.pixels, shape.out_c)?;
        gemm(T::ONE, x, w, T::ZERO, out, threads)?;
        epilogue.apply(output, shape.out_c);
        return Ok(());
    }
    let threads = useful_threads(threads, d.pixels / MIN_TILE_PIXELS, d.flops());
    for_each_row_chunk(output, shape.out_c, d.pixels, threads, |pixels, out| {
        forward_pixels(
            shape,
            &d,
            input,
            kernel,
            &epilogue,
            pixels,
            out,
            &mut Vec::new(),
        )
    })
}

/// Computes output rows `pixels` (flattened `(n, oh, ow)` indices) of a forward convolution
/// into `out` (`pixels.len() * out_c` elements): the tile-granular entry for callers that fuse
/// an epilogue on each block while it is in cache. `scratch` is reused between calls.
pub fn conv2d_forward_pixels<T: Scalar>(
    shape: &Conv2dShape,
    input: &[T],
    kernel: &[T],
    pixels: Range<usize>,
    out: &mut [T],
    scratch: &mut Vec<T>,
) -> Result<(), KernelError> {
    let d = shape.dims()?;
    check_len("conv2d_forward_pixels input", input.len(), d.input_len)?;
    check_len("conv2d_forward_pixels kernel", kernel.len(), d.kernel_len)?;
    if pixels.start > pixels.end || pixels.end > d.pixels {
        return Err(KernelError::new(format!(
            "conv2d_forward_pixels: pixels {pixels:?} outside 0..{}",
            d.pixels
        )));
    }
    check_len(
        "conv2d_forward_pixels output",
        out.len(),
        pixels.len() * shape.out_c,
    )?;
    forward_pixels(
        shape,
        &d,
        input,
        kernel,
        &ConvEpilogue::default(),
        pixels,
        out,
        scratch,
    )
}

#[allow(clippy::too_many_arguments)]
fn forward_pixels<T: Scalar>(
    s: &Conv2dShape,
    d: &Conv2dDims,
    input: &[T],
    kernel: &[T],
    epilogue: &ConvEpilogue<'_, T>,
    pixels: Range<usize>,
    out: &mut [T],
    scratch: &mut Vec<T>,
) -> Result<(), KernelError> {
    if d.patch_len <= DIRECT_MAX_PATCH {
        forward_direct_dispatch(s, d, input, kernel, epilogue, pixels, out, scratch);
        return Ok(());
    }
    let w = MatRef::row_major(kernel, d.patch_len, s.out_c)?;
    let tile = tile_pixels(d.patch_len);
    scratch.resize(tile.min(pixels.len()) * d.patch_len, T::ZERO);
    let first = pixels.start;
    for t in tiles(pixels, tile) {
        let patches = &mut scratch[..t.len() * d.patch_len];
        im2col(s, d, input, t.clone(), patches);
        let out_rows = &mut out[(t.start - first) * s.out_c..(t.end - first) * s.out_c];
        gemm(
            T::ONE,
            MatRef::row_major(patches, t.len(), d.patch_len)?,
            w,
            T::ZERO,
            MatMut::row_major(out_rows, t.len(), s.out_c)?,
            1,
        )?;
        if !epilogue.is_identity() {
            epilogue_dispatch(epilogue, out_rows, s.out_c);
        }
    }
    Ok(())
}

avx2_variant! {
    fn epilogue_dispatch(epilogue: &ConvEpilogue<'_, T>, rows: &mut [T], f: usize) => epilogue_inline
}

#[inline(always)]
fn epilogue_inline<T: Scalar>(epilogue: &ConvEpilogue<'_, T>, rows: &mut [T], f: usize) {
    epilogue.apply(rows, f)
}

/// Gradient w.r.t. the input: `d_input = d(sum(output * d_output)) / d(input)`, overwritten.
pub fn conv2d_backward_input<T: Scalar>(
    shape: &Conv2dShape,
    d_output: &[T],
    kernel: &[T],
    d_input: &mut [T],
    threads: usize,
) -> Result<(), KernelError> {
    let d = shape.dims()?;
    check_buffers(
        "conv2d_backward_input",
        &d,
        d_input.len(),
        kernel.len(),
        d_output.len(),
    )?;
    // W^T as its own row-major copy (a few thousand elements), so that the GEMM reads rows of
    // it with unit stride and runs unpacked (see `gemm`): same products, same order.
    let mut w_t = vec![T::ZERO; d.kernel_len];
    for (tap, row) in kernel.chunks_exact(shape.out_c).enumerate() {
        for (f, &x) in row.iter().enumerate() {
            w_t[f * d.patch_len + tap] = x;
        }
    }
    let w_t = MatRef::row_major(&w_t, shape.out_c, d.patch_len)?;
    if shape.is_pointwise() {
        let dy = MatRef::row_major(d_output, d.pixels, shape.out_c)?;
        let dx = MatMut::row_major(d_input, d.pixels, shape.in_c)?;
        return gemm(T::ONE, dy, w_t, T::ZERO, dx, threads);
    }
    // Split over images: the patches of one image scatter into overlapping input cells.
    let image_len = shape.in_h * shape.in_w * shape.in_c;
    let per_image = d.out_h * d.out_w;
    let threads = useful_threads(threads, shape.batch, d.flops());
    for_each_row_chunk(d_input, image_len, shape.batch, threads, |images, dx| {
        dx.fill(T::ZERO);
        let pixels = images.start * per_image..images.end * per_image;
        let tile = tile_pixels(d.patch_len);
        let mut d_patches = vec![T::ZERO; tile.min(pixels.len()) * d.patch_len];
        for t in tiles(pixels, tile) {
            let dp = &mut d_patches[..t.len() * d.patch_len];
            let dy = &d_output[t.start * shape.out_c..t.end * shape.out_c];
            gemm(
                T::ONE,
                MatRef::row_major(dy, t.len(), shape.out_c)?,
                w_t,
                T::ZERO,
                MatMut::row_major(dp, t.len(), d.patch_len)?,
                1,
            )?;
            col2im_add(shape, &d, dp, t, dx, images.start);
        }
        Ok(())
    })
}

/// Gradient w.r.t. the kernel: `d_kernel = d(sum(output * d_output)) / d(kernel)`, overwritten.
pub fn conv2d_backward_kernel<T: Scalar>(
    shape: &Conv2dShape,
    input: &[T],
    d_output: &[T],
    d_kernel: &mut [T],
    threads: usize,
) -> Result<(), KernelError> {
    let d = shape.dims()?;
    check_buffers(
        "conv2d_backward_kernel",
        &d,
        input.len(),
        d_kernel.len(),
        d_output.len(),
    )?;
    if shape.is_pointwise() {
        let x = MatRef::row_major(input, d.pixels, shape.in_c)?;
        let dy = MatRef::row_major(d_output, d.pixels, shape.out_c)?;
        let dw = MatMut::row_major(d_kernel, shape.in_c, shape.out_c)?;
        return gemm(T::ONE, x.t(), dy, T::ZERO, dw, threads);
    }
    // Threads split the output channels (columns of d_kernel): each element is summed over all
    // pixels in the same order whatever the split, so the result is the same for every thread
    // count (and equal to the single-threaded one).
    let f = shape.out_c;
    let blocks = f.div_ceil(FL);
    let threads = useful_threads(threads, blocks, d.flops());
    if threads <= 1 {
        return kernel_grad_cols(shape, &d, input, d_output, 0..f, d_kernel);
    }
    let dk = SendPtr(d_kernel.as_mut_ptr());
    for_each_part(threads, threads, |p| {
        let b = even_range(blocks, threads, p);
        let cols = b.start * FL..(b.end * FL).min(f);
        let mut part = vec![T::ZERO; d.patch_len * cols.len()];
        kernel_grad_cols(shape, &d, input, d_output, cols.clone(), &mut part)?;
        for (tap, row) in part.chunks_exact(cols.len()).enumerate() {
            // SAFETY: each part writes only its own columns `cols` of d_kernel (patch_len rows
            // of out_c), which stays borrowed until every part has finished.
            let dst = unsafe {
                std::slice::from_raw_parts_mut(dk.get().add(tap * f + cols.start), cols.len())
            };
            dst.copy_from_slice(row);
        }
        Ok(())
    })
}

/// Columns `cols` of the kernel gradient, `dw = sum over pixels of patch(p)^T * d_output(p,
/// cols)`, into `dw` (`patch_len x cols.len()`, row-major), overwriting it.
fn kernel_grad_cols<T: Scalar>(
    s: &Conv2dShape,
    d: &Conv2dDims,
    input: &[T],
    d_output: &[T],
    cols: Range<usize>,
    dw: &mut [T],
) -> Result<(), KernelError> {
    dw.fill(T::ZERO);
    let tile = tile_pixels(d.patch_len);
    let mut patches = vec![T::ZERO; tile.min(d.pixels) * d.patch_len];
    for t in tiles(0..d.pixels, tile) {
        let p = &mut patches[..t.len() * d.patch_len];
        im2col(s, d, input, t.clone(), p);
        let dy = &d_output[t.start * s.out_c + cols.start..t.end * s.out_c];
        gemm(
            T::ONE,
            MatRef::row_major(p, t.len(), d.patch_len)?.t(),
            MatRef::new(dy, t.len(), cols.len(), s.out_c, 1)?,
            T::ONE,
            MatMut::row_major(dw, d.patch_len, cols.len())?,
            1,
        )?;
    }
    Ok(())
}

avx2_variant! {
    fn forward_direct_dispatch(
        s: &Conv2dShape,
        d: &Conv2dDims,
        input: &[T],
        kernel: &[T],
        epilogue: &ConvEpilogue<'_, T>,
        pixels: Range<usize>,
        out: &mut [T],
        scratch: &mut Vec<T>,
    ) => forward_direct
}

/// Forward of a short-patch convolution: per block of pixels, the patches, then per pixel and
/// per block of output channels one register accumulator over the taps (in tap order).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn forward_direct<T: Scalar>(
    s: &Conv2dShape,
    d: &Conv2dDims,
    input: &[T],
    kernel: &[T],
    epilogue: &ConvEpilogue<'_, T>,
    pixels: Range<usize>,
    out: &mut [T],
    scratch: &mut Vec<T>,
) {
    let (pl, f) = (d.patch_len, s.out_c);
    scratch.resize(DIRECT_BLOCK * pl, T::ZERO);
    let first = pixels.start;
    for t in tiles(pixels, DIRECT_BLOCK) {
        let patches = &mut scratch[..t.len() * pl];
        im2col(s, d, input, t.clone(), patches);
        let rows = &mut out[(t.start - first) * f..(t.end - first) * f];
        // Pixels in groups of DIRECT_PIXELS, so that 4 * FL channels of each give
        // 2 * DIRECT_PIXELS independent vector sums (one pixel alone waits on its 4 sums'
        // latency at every tap), then the pixels left one by one.
        let grouped = t.len() / DIRECT_PIXELS * DIRECT_PIXELS;
        let (group_patches, single_patches) = patches.split_at(grouped * pl);
        let (group_rows, single_rows) = rows.split_at_mut(grouped * f);
        for (patch, o) in group_patches
            .chunks_exact(DIRECT_PIXELS * pl)
            .zip(group_rows.chunks_exact_mut(DIRECT_PIXELS * f))
        {
            let mut f0 = 0;
            while f0 + 4 * FL <= f {
                dot_block_pixels::<T, DIRECT_PIXELS, { 4 * FL }>(patch, pl, kernel, f, f0, o);
                f0 += 4 * FL;
            }
            while f0 + FL <= f {
                dot_block_pixels::<T, DIRECT_PIXELS, FL>(patch, pl, kernel, f, f0, o);
                f0 += FL;
            }
            while f0 < f {
                dot_block_pixels::<T, DIRECT_PIXELS, 1>(patch, pl, kernel, f, f0, o);
                f0 += 1;
            }
        }
        for (patch, o) in single_patches
            .chunks_exact(pl)
            .zip(single_rows.chunks_exact_mut(f))
        {
            let mut f0 = 0;
            while f0 + 4 * FL <= f {
                dot_block::<T, { 4 * FL }>(patch, kernel, f, f0, o);
                f0 += 4 * FL;
            }
            while f0 + FL <= f {
                dot_block::<T, FL>(patch, kernel, f, f0, o);
                f0 += FL;
            }
            while f0 < f {
                dot_block::<T, 1>(patch, kernel, f, f0, o);
                f0 += 1;
            }
        }
        epilogue.apply(rows, f);
    }
}

/// [`dot_block`] on `P` consecutive pixels: `patches` holds their `P` patches of `pl` taps,
/// `o` their `P` output rows of `f` channels. Each pixel's sums are taken exactly as there.
#[inline(always)]
fn dot_block_pixels<T: Scalar, const P: usize, const W: usize>(
    patches: &[T],
    pl: usize,
    kernel: &[T],
    f: usize,
    f0: usize,
    o: &mut [T],
) {
    let mut acc = [[T::ZERO; W]; P];
    for (tap, w) in kernel.chunks_exact(f).take(pl).enumerate() {
        let w: &[T; W] = w[f0..f0 + W].try_into().expect("W lanes");
        for (p, acc) in acc.iter_mut().enumerate() {
            let x = patches[p * pl + tap];
            for l in 0..W {
                acc[l] = x.mul_add(w[l], acc[l]);
            }
        }
    }
    for (p, acc) in acc.iter().enumerate() {
        o[p * f + f0..p * f + f0 + W].copy_from_slice(acc);
    }
}

/// `o[f0..f0 + W] = sum over taps of patch[tap] * kernel[tap, f0..f0 + W]`.
#[inline(always)]
fn dot_block<T: Scalar, const W: usize>(
    patch: &[T],
    kernel: &[T],
    f: usize,
    f0: usize,
    o: &mut [T],
) {
    // Taps in order, each added with one rounding: the GEMM micro-kernels' sum.
    let mut acc = [T::ZERO; W];
    for (&x, w) in patch.iter().zip(kernel.chunks_exact(f)) {
        let w: &[T; W] = w[f0..f0 + W].try_into().expect("W lanes");
        for l in 0..W {
            acc[l] = x.mul_add(w[l], acc[l]);
        }
    }
    o[f0..f0 + W].copy_from_slice(&acc);
}
