//! Convolution and pooling for the interpreter (NHWC, Keras kernel layout), via im2col + GEMM.

use super::Real;
use crate::ir::{PoolKind, Window};
use ndarray::{Array2, ArrayD, IxDyn};

struct Geometry {
    n: usize,
    h: usize,
    w: usize,
    c: usize,
    oh: usize,
    ow: usize,
}

fn geometry(x_shape: &[usize], win: &Window) -> Geometry {
    let [oh, ow] = win
        .out_size(x_shape[1], x_shape[2])
        .expect("verified window");
    Geometry {
        n: x_shape[0],
        h: x_shape[1],
        w: x_shape[2],
        c: x_shape[3],
        oh,
        ow,
    }
}

/// Input coordinate of window tap `k` for output position `o` along axis `ax`, if in bounds.
fn tap(win: &Window, ax: usize, o: usize, k: usize, size: usize) -> Option<usize> {
    let pos = (o * win.stride[ax] + k * win.dilation[ax]) as isize - win.pad[ax].0 as isize;
    (pos >= 0 && (pos as usize) < size).then_some(pos as usize)
}

/// Calls `f(patch, pixel)` for every in-bounds window tap, in order: `patch` is the offset of
/// the tap's `C` values in the `[N*OH*OW, kh*kw*C]` patch matrix, `pixel` that of the input
/// pixel it reads in the NHWC input.
fn for_each_tap(g: &Geometry, win: &Window, mut f: impl FnMut(usize, usize)) {
    let [kh, kw] = win.kernel;
    let cols = kh * kw * g.c;
    for n in 0..g.n {
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let row = ((n * g.oh + oy) * g.ow + ox) * cols;
                for ky in 0..kh {
                    let Some(iy) = tap(win, 0, oy, ky, g.h) else {
                        continue;
                    };
                    for kx in 0..kw {
                        let Some(ix) = tap(win, 1, ox, kx, g.w) else {
                            continue;
                        };
                        f(
                            row + (ky * kw + kx) * g.c,
                            ((n * g.h + iy) * g.w + ix) * g.c,
                        );
                    }
                }
            }
        }
    }
}

/// `[N*OH*OW, kh*kw*C]` patches; out-of-bounds taps are zero.
fn im2col<T: Real>(x: &[T], g: &Geometry, win: &Window) -> Array2<T> {
    let [kh, kw] = win.kernel;
    let mut out = Array2::<T>::zeros((g.n * g.oh * g.ow, kh * kw * g.c));
    let buf = out.as_slice_mut().expect("standard layout");
    for_each_tap(g, win, |patch, pixel| {
        buf[patch..patch + g.c].copy_from_slice(&x[pixel..pixel + g.c]);
    });
    out
}

fn contiguous<T: Real>(a: &ArrayD<T>) -> std::borrow::Cow<'_, [T]> {
    match a.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(a.as_standard_layout().iter().copied().collect()),
    }
}

pub fn conv2d<T: Real>(
    x: &ArrayD<T>,
    k: &ArrayD<T>,
    win: &Window,
    out_shape: &[usize],
) -> ArrayD<T> {
    let g = geometry(x.shape(), win);
    let cols = im2col(&contiguous(x), &g, win);
    let f = k.shape()[3];
    let k2 = Array2::from_shape_vec((cols.ncols(), f), contiguous(k).into_owned()).expect("kernel");
    cols.dot(&k2)
        .into_dyn()
        .into_shape_with_order(IxDyn(out_shape))
        .expect("conv out")
}

pub fn conv2d_back_input<T: Real>(
    dy: &ArrayD<T>,
    k: &ArrayD<T>,
    win: &Window,
    out_shape: &[usize],
) -> ArrayD<T> {
    let g = geometry(out_shape, win);
    let [kh, kw] = win.kernel;
    let f = k.shape()[3];
    let rows = kh * kw * g.c;
    let k2 = Array2::from_shape_vec((rows, f), contiguous(k).into_owned()).expect("kernel");
    let dy2 =
        Array2::from_shape_vec((g.n * g.oh * g.ow, f), contiguous(dy).into_owned()).expect("dy");
    // `dot` with a transposed operand may return a column-major result (it does when f == 1).
    let dcols = super::row_major(dy2.dot(&k2.t()));
    let dcols = dcols.as_slice().expect("standard layout");
    let mut dx = vec![T::zero(); g.n * g.h * g.w * g.c];
    // col2im: every tap's gradient adds into the pixel it read.
    for_each_tap(&g, win, |patch, pixel| {
        for c in 0..g.c {
            dx[pixel + c] = dx[pixel + c] + dcols[patch + c];
        }
    });
    ArrayD::from_shape_vec(IxDyn(out_shape), dx).expect("dx")
}

pub fn conv2d_back_kernel<T: Real>(
    x: &ArrayD<T>,
    dy: &ArrayD<T>,
    win: &Window,
    out_shape: &[usize],
) -> ArrayD<T> {
    let g = geometry(x.shape(), win);
    let cols = im2col(&contiguous(x), &g, win);
    let f = dy.shape()[3];
    let dy2 =
        Array2::from_shape_vec((g.n * g.oh * g.ow, f), contiguous(dy).into_owned()).expect("dy");
    cols.t()
        .dot(&dy2)
        .into_dyn()
        .into_shape_with_order(IxDyn(out_shape))
        .expect("dk")
}

pub fn pool2d<T: Real>(
    kind: PoolKind,
    x: &ArrayD<T>,
    win: &Window,
    out_shape: &[usize],
) -> ArrayD<T> {
    let g = geometry(x.shape(), win);
    let xs = contiguous(x);
    let mut out = vec![T::zero(); out_shape.iter().product()];
    for n in 0..g.n {
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                for c in 0..g.c {
                    let mut acc = match kind {
                        PoolKind::Max => T::neg_infinity(),
                        PoolKind::Avg => T::zero(),
                    };
                    let mut count = 0usize;
                    for ky in 0..win.kernel[0] {
                        let Some(iy) = tap(win, 0, oy, ky, g.h) else {
                            continue;
                        };
                        for kx in 0..win.kernel[1] {
                            let Some(ix) = tap(win, 1, ox, kx, g.w) else {
                                continue;
                            };
                            let v = xs[((n * g.h + iy) * g.w + ix) * g.c + c];
                            count += 1;
                            acc = match kind {
                                PoolKind::Max if v > acc || v.is_nan() => v,
                                PoolKind::Max => acc,
                                PoolKind::Avg => acc + v,
                            };
                        }
                    }
                    if kind == PoolKind::Avg {
                        acc = acc / T::from_f64(count.max(1) as f64);
                    }
                    out[((n * g.oh + oy) * g.ow + ox) * g.c + c] = acc;
                }
            }
        }
    }
    ArrayD::from_shape_vec(IxDyn(out_shape), out).expect("pool out")
}

pub fn pool2d_back<T: Real>(
    kind: PoolKind,
    x: &ArrayD<T>,
    dy: &ArrayD<T>,
    win: &Window,
) -> ArrayD<T> {
    let g = geometry(x.shape(), win);
    let xs = contiguous(x);
    let dys = contiguous(dy);
    let mut dx = vec![T::zero(); xs.len()];
    for n in 0..g.n {
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                for c in 0..g.c {
                    let grad = dys[((n * g.oh + oy) * g.ow + ox) * g.c + c];
                    let mut taps = Vec::new();
                    for ky in 0..win.kernel[0] {
                        let Some(iy) = tap(win, 0, oy, ky, g.h) else {
                            continue;
                        };
                        for kx in 0..win.kernel[1] {
                            let Some(ix) = tap(win, 1, ox, kx, g.w) else {
                                continue;
                            };
                            taps.push(((n * g.h + iy) * g.w + ix) * g.c + c);
                        }
                    }
                    match kind {
                        PoolKind::Max => {
                            // The first maximum in scan order takes the whole gradient.
                            let mut best: Option<usize> = None;
                            for &t in &taps {
                                if best.is_none_or(|b| xs[t] > xs[b]) {
                                    best = Some(t);
                                }
                            }
                            if let Some(b) = best {
                                dx[b] = dx[b] + grad;
                            }
                        }
                        PoolKind::Avg => {
                            let share = grad / T::from_f64(taps.len().max(1) as f64);
                            for &t in &taps {
                                dx[t] = dx[t] + share;
                            }
                        }
                    }
                }
            }
        }
    }
    ArrayD::from_shape_vec(IxDyn(x.shape()), dx).expect("pool dx")
}
