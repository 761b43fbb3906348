//! Every kernel against naive loop references (f64), finite differences for the gradients, and
//! the argument checks.

use super::ffi::*;
use super::*;

/// Deterministic values in [-1, 1) (splitmix64), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn value(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    fn vec(&mut self, len: usize) -> Vec<f64> {
        (0..len).map(|_| self.value()).collect()
    }
}

fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

fn abs(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| x.abs()).collect()
}

/// `got` matches `want` within `rel` of `scale` (the same sum taken over absolute values), the
/// meaningful relative error for sums with cancellation.
fn assert_close<T: Into<f64> + Copy>(what: &str, got: &[T], want: &[f64], scale: &[f64], rel: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, ((&g, &w), &s)) in got.iter().zip(want).zip(scale).enumerate() {
        let g: f64 = g.into();
        let tol = rel * s + 1e-30;
        assert!(
            (g - w).abs() <= tol,
            "{what}: element {i}: got {g}, want {w} (tolerance {tol})"
        );
    }
}

const SIZES: [usize; 6] = [1, 3, 7, 17, 33, 65];

// ---------------------------------------------------------------- GEMM

/// Naive `C = alpha * A * B + beta * C` on strided storage (beta == 0 ignores C).
#[allow(clippy::too_many_arguments)]
fn naive_gemm(
    m: usize,
    k: usize,
    n: usize,
    alpha: f64,
    a: &[f64],
    (rsa, csa): (usize, usize),
    b: &[f64],
    (rsb, csb): (usize, usize),
    beta: f64,
    c: &[f64],
    (rsc, csc): (usize, usize),
) -> Vec<f64> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let dot: f64 = (0..k)
                .map(|p| a[i * rsa + p * csa] * b[p * rsb + j * csb])
                .sum();
            let old = if beta == 0.0 {
                0.0
            } else {
                beta * c[i * rsc + j * csc]
            };
            out[i * n + j] = alpha * dot + old;
        }
    }
    out
}

/// Reads the `m x n` view of `c` back row-major.
fn gather<T: Copy>(c: &[T], m: usize, n: usize, (rs, cs): (usize, usize)) -> Vec<T> {
    (0..m)
        .flat_map(|i| (0..n).map(move |j| c[i * rs + j * cs]))
        .collect()
}

#[test]
fn sgemm_matches_naive_on_odd_sizes_and_transposes() {
    let mut rng = Rng(1);
    let mut cases = 0;
    for &m in &SIZES {
        for &k in &SIZES {
            for &n in &SIZES {
                for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                    let a64 = rng.vec(m * k);
                    let b64 = rng.vec(k * n);
                    let c64 = rng.vec(m * n);
                    // op(A) = A stored k x m when transposed, read through swapped strides.
                    let sa = if ta { (1, m) } else { (k, 1) };
                    let sb = if tb { (1, k) } else { (n, 1) };
                    let (alpha, beta) = (0.75, -1.25);
                    let want = naive_gemm(m, k, n, alpha, &a64, sa, &b64, sb, beta, &c64, (n, 1));
                    let scale = naive_gemm(
                        m,
                        k,
                        n,
                        alpha.abs(),
                        &abs(&a64),
                        sa,
                        &abs(&b64),
                        sb,
                        beta.abs(),
                        &abs(&c64),
                        (n, 1),
                    );
                    let (a, b, mut c) = (to_f32(&a64), to_f32(&b64), to_f32(&c64));
                    let av = if ta {
                        MatRef::row_major(&a, k, m).unwrap().t()
                    } else {
                        MatRef::row_major(&a, m, k).unwrap()
                    };
                    let bv = if tb {
                        MatRef::row_major(&b, n, k).unwrap().t()
                    } else {
                        MatRef::row_major(&b, k, n).unwrap()
                    };
                    let cv = MatMut::row_major(&mut c, m, n).unwrap();
                    sgemm(alpha as f32, av, bv, beta as f32, cv, 1).unwrap();
                    assert_close(
                        &format!("sgemm {m}x{k}x{n} ta={ta} tb={tb}"),
                        &c,
                        &want,
                        &scale,
                        1e-5,
                    );
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 6 * 6 * 6 * 4);
}

#[test]
fn sgemm_beta_zero_ignores_nan_in_c_and_k_zero_scales_c() {
    let (m, k, n) = (7, 5, 3);
    let a = to_f32(&Rng(2).vec(m * k));
    let b = to_f32(&Rng(3).vec(k * n));
    let mut c = vec![f32::NAN; m * n];
    sgemm(
        1.0,
        MatRef::row_major(&a, m, k).unwrap(),
        MatRef::row_major(&b, k, n).unwrap(),
        0.0,
        MatMut::row_major(&mut c, m, n).unwrap(),
        1,
    )
    .unwrap();
    assert!(c.iter().all(|x| x.is_finite()));
    let want = naive_gemm(
        m,
        k,
        n,
        1.0,
        &a.iter().map(|&x| x as f64).collect::<Vec<_>>(),
        (k, 1),
        &b.iter().map(|&x| x as f64).collect::<Vec<_>>(),
        (n, 1),
        0.0,
        &[],
        (n, 1),
    );
    assert_close("beta=0", &c, &want, &vec![10.0; m * n], 1e-6);

    // k = 0: the product is empty, so C = beta * C.
    let mut c = vec![2.0f32; 6];
    sgemm(
        1.0,
        MatRef::row_major(&[], 2, 0).unwrap(),
        MatRef::row_major(&[], 0, 3).unwrap(),
        0.5,
        MatMut::row_major(&mut c, 2, 3).unwrap(),
        1,
    )
    .unwrap();
    assert_eq!(c, vec![1.0; 6]);
}

#[test]
fn gemm_general_strides_padded_rows_and_column_major_output() {
    let (m, k, n) = (17, 33, 7);
    let mut rng = Rng(4);
    // A with 3 padding elements per row, B column-major, C column-major with padding.
    let sa = (k + 3, 1);
    let sb = (1, k);
    let sc = (1, m + 2);
    let a64 = rng.vec(m * (k + 3));
    let b64 = rng.vec(k * n);
    let c64 = rng.vec(n * (m + 2));
    let want = naive_gemm(m, k, n, -0.5, &a64, sa, &b64, sb, 2.0, &c64, sc);
    let scale = naive_gemm(
        m,
        k,
        n,
        0.5,
        &abs(&a64),
        sa,
        &abs(&b64),
        sb,
        2.0,
        &abs(&c64),
        sc,
    );
    let (a, b, mut c) = (to_f32(&a64), to_f32(&b64), to_f32(&c64));
    let pad_values: Vec<f32> = (0..n)
        .flat_map(|j| [c[j * (m + 2) + m], c[j * (m + 2) + m + 1]])
        .collect();
    sgemm(
        -0.5,
        MatRef::new(&a, m, k, sa.0, sa.1).unwrap(),
        MatRef::new(&b, k, n, sb.0, sb.1).unwrap(),
        2.0,
        MatMut::new(&mut c, m, n, sc.0, sc.1).unwrap(),
        1,
    )
    .unwrap();
    assert_close("strided sgemm", &gather(&c, m, n, sc), &want, &scale, 1e-5);
    // The padding between columns of C is untouched.
    let pad_after: Vec<f32> = (0..n)
        .flat_map(|j| [c[j * (m + 2) + m], c[j * (m + 2) + m + 1]])
        .collect();
    assert_eq!(pad_values, pad_after);
}

#[test]
fn gemm_with_threads_matches_naive() {
    let (m, k, n) = (211, 65, 67);
    let mut rng = Rng(5);
    let (a64, b64, c64) = (rng.vec(m * k), rng.vec(k * n), rng.vec(m * n));
    let want = naive_gemm(m, k, n, 1.0, &a64, (k, 1), &b64, (n, 1), 1.0, &c64, (n, 1));
    let scale = naive_gemm(
        m,
        k,
        n,
        1.0,
        &abs(&a64),
        (k, 1),
        &abs(&b64),
        (n, 1),
        1.0,
        &abs(&c64),
        (n, 1),
    );
    for threads in [0, 2, 3] {
        let (a, b, mut c) = (to_f32(&a64), to_f32(&b64), to_f32(&c64));
        sgemm(
            1.0,
            MatRef::row_major(&a, m, k).unwrap(),
            MatRef::row_major(&b, k, n).unwrap(),
            1.0,
            MatMut::row_major(&mut c, m, n).unwrap(),
            threads,
        )
        .unwrap();
        assert_close(&format!("threads={threads}"), &c, &want, &scale, 1e-5);
    }
}

/// A product of a few rows (the unpacked path batch-1 inference takes) gives each row the same
/// bits as the packed kernels give it inside a larger product, over several depth blocks,
/// a column tail, `beta` 0 and 1, and a strided `A`.
/// `C = A * B + beta * C` by `matrixmultiply` alone (the packed path of [`gemm`]).
fn packed_reference<T: scalar::Scalar>(
    (m, k, n): (usize, usize, usize),
    a: &[T],
    (rsa, csa): (usize, usize),
    b: &[T],
    beta: T,
    c: &mut [T],
    (rsc, csc): (usize, usize),
) {
    // SAFETY: the views below are the ones `gemm` checked for the same buffers.
    unsafe {
        T::gemm_raw(
            m,
            k,
            n,
            T::ONE,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            n as isize,
            1,
            beta,
            c.as_mut_ptr(),
            rsc as isize,
            csc as isize,
        )
    }
}

#[test]
fn unpacked_products_sum_as_matrixmultiply_does() {
    // Where B's rows are contiguous, `gemm` multiplies without packing (every size on AVX-512,
    // a few rows on AVX2); each element must get the bits `matrixmultiply` gives it, so that a
    // row's result never depends on which path its product took. Depths across `matrixmultiply`'s
    // blocks of 256, widths off the vector length, A transposed, C transposed, beta 0, 1 and
    // another, one and two threads.
    for (m, k, n) in [
        (37, 784, 130),
        (100, 288, 64),
        (13, 300, 10),
        (50, 31, 17),
        (5, 9, 32),
    ] {
        let mut rng = Rng(m as u64 * 7 + k as u64);
        let (a64, b64, c64) = (rng.vec(m * k), rng.vec(k * n), rng.vec(m * n));
        let (a, b, c0) = (to_f32(&a64), to_f32(&b64), to_f32(&c64));
        for a_t in [false, true] {
            let a_strides = if a_t { (1, m) } else { (k, 1) };
            for c_t in [false, true] {
                let c_strides = if c_t { (1, m) } else { (n, 1) };
                for beta in [0.0f32, 1.0, 0.5] {
                    for threads in [1, 2] {
                        let mut want = c0.clone();
                        let shape = (m, k, n);
                        packed_reference(shape, &a, a_strides, &b, beta, &mut want, c_strides);
                        let mut got = c0.clone();
                        sgemm(
                            1.0,
                            MatRef::new(&a, m, k, a_strides.0, a_strides.1).unwrap(),
                            MatRef::row_major(&b, k, n).unwrap(),
                            beta,
                            MatMut::new(&mut got, m, n, c_strides.0, c_strides.1).unwrap(),
                            threads,
                        )
                        .unwrap();
                        let same = got
                            .iter()
                            .zip(&want)
                            .all(|(x, y)| x.to_bits() == y.to_bits());
                        assert!(
                            same,
                            "{m}x{k}x{n}, A transposed {a_t}, C transposed {c_t}, beta {beta}, \
                             {threads} threads"
                        );
                    }
                }
            }
        }
        // f64 (the gradient checks' path) too.
        let mut want = c64.clone();
        packed_reference((m, k, n), &a64, (k, 1), &b64, 1.0, &mut want, (n, 1));
        let mut got = c64.clone();
        dgemm(
            1.0,
            MatRef::row_major(&a64, m, k).unwrap(),
            MatRef::row_major(&b64, k, n).unwrap(),
            1.0,
            MatMut::row_major(&mut got, m, n).unwrap(),
            1,
        )
        .unwrap();
        assert!(got
            .iter()
            .zip(&want)
            .all(|(x, y)| x.to_bits() == y.to_bits()));
    }
}

#[test]
fn sgemm_few_rows_match_the_same_rows_of_a_large_product() {
    let (m, k, n) = (37, 784, 130);
    let mut rng = Rng(11);
    let (a64, b64, c64) = (rng.vec(m * k), rng.vec(k * n), rng.vec(m * n));
    let (a, b, c0) = (to_f32(&a64), to_f32(&b64), to_f32(&c64));
    for beta in [0.0f32, 1.0] {
        let mut whole = c0.clone();
        sgemm(
            1.0,
            MatRef::row_major(&a, m, k).unwrap(),
            MatRef::row_major(&b, k, n).unwrap(),
            beta,
            MatMut::row_major(&mut whole, m, n).unwrap(),
            1,
        )
        .unwrap();
        for rows in [1usize, 2, 3, 4, 5, 9, 12] {
            for start in [0, 5, m - rows] {
                let mut part = c0[start * n..(start + rows) * n].to_vec();
                sgemm(
                    1.0,
                    MatRef::row_major(&a[start * k..(start + rows) * k], rows, k).unwrap(),
                    MatRef::row_major(&b, k, n).unwrap(),
                    beta,
                    MatMut::row_major(&mut part, rows, n).unwrap(),
                    1,
                )
                .unwrap();
                let same = part
                    .iter()
                    .zip(&whole[start * n..(start + rows) * n])
                    .all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "rows {start}..{} with beta {beta}", start + rows);
            }
        }
    }
    // One row of A read with a column stride (a transposed batch of one).
    let mut whole = vec![0.0f32; m * n];
    sgemm(
        1.0,
        MatRef::row_major(&a, k, m).unwrap().t(),
        MatRef::row_major(&b, k, n).unwrap(),
        0.0,
        MatMut::row_major(&mut whole, m, n).unwrap(),
        1,
    )
    .unwrap();
    let mut row = vec![0.0f32; n];
    sgemm(
        1.0,
        MatRef::new(&a[3..], 1, k, 1, m).unwrap(),
        MatRef::row_major(&b, k, n).unwrap(),
        0.0,
        MatMut::row_major(&mut row, 1, n).unwrap(),
        1,
    )
    .unwrap();
    assert!(row
        .iter()
        .zip(&whole[3 * n..4 * n])
        .all(|(x, y)| x.to_bits() == y.to_bits()));
}

#[test]
fn dgemm_matches_naive_to_f64_precision() {
    let mut rng = Rng(6);
    for &(m, k, n) in &[(1, 1, 1), (3, 17, 7), (65, 33, 17)] {
        let (a, b, c0) = (rng.vec(m * k), rng.vec(k * n), rng.vec(m * n));
        let want = naive_gemm(m, k, n, 1.5, &a, (1, m), &b, (n, 1), 0.25, &c0, (n, 1));
        let scale = naive_gemm(
            m,
            k,
            n,
            1.5,
            &abs(&a),
            (1, m),
            &abs(&b),
            (n, 1),
            0.25,
            &abs(&c0),
            (n, 1),
        );
        let mut c = c0.clone();
        dgemm(
            1.5,
            MatRef::row_major(&a, k, m).unwrap().t(),
            MatRef::row_major(&b, k, n).unwrap(),
            0.25,
            MatMut::row_major(&mut c, m, n).unwrap(),
            1,
        )
        .unwrap();
        assert_close("dgemm", &c, &want, &scale, 1e-13);
    }
}

#[test]
fn gemm_rejects_mismatched_and_out_of_bounds_views() {
    let a = vec![0.0f32; 6];
    let b = vec![0.0f32; 6];
    let mut c = vec![0.0f32; 4];
    // Inner dimensions 3 vs 2.
    let err = sgemm(
        1.0,
        MatRef::row_major(&a, 2, 3).unwrap(),
        MatRef::row_major(&b, 2, 3).unwrap(),
        0.0,
        MatMut::row_major(&mut c, 2, 2).unwrap(),
        1,
    )
    .unwrap_err();
    assert!(err.message().contains("A is 2x3, B is 2x3"), "{err}");
    // Wrong length for a dense matrix; a strided view reaching past the end.
    assert!(MatRef::row_major(&a, 2, 2).is_err());
    assert!(MatRef::new(&a, 2, 3, 4, 1).is_err());
    assert!(MatRef::new(&a, 2, 3, 3, 1).is_ok());
    // Broadcasting reads are fine, but an output writing one element twice is not.
    assert!(MatRef::new(&a, 5, 3, 0, 1).is_ok());
    assert!(MatMut::new(&mut c, 2, 2, 0, 1).is_err());
    assert!(MatMut::new(&mut c, 2, 2, 1, 1).is_err());
    assert!(MatMut::new(&mut c, 2, 2, 1, 2).is_ok());
    assert!(MatMut::new(&mut c, 1, 4, 0, 1).is_ok());
    assert!(MatRef::new(&a, 2, 3, usize::MAX, 1).is_err());
}

#[test]
fn ffi_sgemm_reads_transposed_operands_through_strides() {
    let (m, k, n) = (3, 7, 17);
    let mut rng = Rng(7);
    let (a64, b64) = (rng.vec(k * m), rng.vec(n * k));
    // A^T stored k x m, B^T stored n x k.
    let want = naive_gemm(m, k, n, 1.0, &a64, (1, m), &b64, (1, k), 0.0, &[], (n, 1));
    let scale = naive_gemm(
        m,
        k,
        n,
        1.0,
        &abs(&a64),
        (1, m),
        &abs(&b64),
        (1, k),
        0.0,
        &[],
        (n, 1),
    );
    let (a, b) = (to_f32(&a64), to_f32(&b64));
    let mut c = vec![f32::NAN; m * n];
    // SAFETY: all views in bounds of their vectors.
    unsafe {
        fm_sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            1,
            m as isize,
            b.as_ptr(),
            1,
            k as isize,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
            1,
        )
    };
    assert_close("fm_sgemm", &c, &want, &scale, 1e-5);
}

// ---------------------------------------------------------------- convolution

/// Input coordinate of output `o`, tap `t`, or `None` in the padding.
fn src(o: usize, t: usize, stride: usize, dil: usize, pad: usize, size: usize) -> Option<usize> {
    let pos = (o * stride + t * dil) as isize - pad as isize;
    (pos >= 0 && (pos as usize) < size).then_some(pos as usize)
}

/// Calls `f(x_index, w_index, y_index)` for every multiply-add of the convolution.
fn naive_conv_taps(s: &Conv2dShape, mut f: impl FnMut(usize, usize, usize)) {
    let d = s.dims().unwrap();
    let (c, fo) = (s.in_c, s.out_c);
    for n in 0..s.batch {
        for oh in 0..d.out_h {
            for ow in 0..d.out_w {
                for i in 0..s.kernel_h {
                    for j in 0..s.kernel_w {
                        let Some(ih) =
                            src(oh, i, s.stride[0], s.dilation[0], s.pad_before[0], s.in_h)
                        else {
                            continue;
                        };
                        let Some(iw) =
                            src(ow, j, s.stride[1], s.dilation[1], s.pad_before[1], s.in_w)
                        else {
                            continue;
                        };
                        for ci in 0..c {
                            for f_ in 0..fo {
                                let x = ((n * s.in_h + ih) * s.in_w + iw) * c + ci;
                                let w = ((i * s.kernel_w + j) * c + ci) * fo + f_;
                                let y = ((n * d.out_h + oh) * d.out_w + ow) * fo + f_;
                                f(x, w, y);
                            }
                        }
                    }
                }
            }
        }
    }
}

fn naive_conv_fwd(s: &Conv2dShape, x: &[f64], w: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; s.dims().unwrap().output_len];
    naive_conv_taps(s, |xi, wi, yi| y[yi] += x[xi] * w[wi]);
    y
}

fn naive_conv_bwd_input(s: &Conv2dShape, dy: &[f64], w: &[f64]) -> Vec<f64> {
    let mut dx = vec![0.0; s.dims().unwrap().input_len];
    naive_conv_taps(s, |xi, wi, yi| dx[xi] += dy[yi] * w[wi]);
    dx
}

fn naive_conv_bwd_kernel(s: &Conv2dShape, x: &[f64], dy: &[f64]) -> Vec<f64> {
    let mut dw = vec![0.0; s.dims().unwrap().kernel_len];
    naive_conv_taps(s, |xi, wi, yi| dw[wi] += x[xi] * dy[yi]);
    dw
}

#[allow(clippy::too_many_arguments)]
fn conv_shape(
    batch: usize,
    (in_h, in_w, in_c): (usize, usize, usize),
    (kernel_h, kernel_w, out_c): (usize, usize, usize),
    stride: [usize; 2],
    dilation: [usize; 2],
    pad_before: [usize; 2],
    pad_after: [usize; 2],
) -> Conv2dShape {
    Conv2dShape {
        batch,
        in_h,
        in_w,
        in_c,
        kernel_h,
        kernel_w,
        out_c,
        stride,
        dilation,
        pad_before,
        pad_after,
    }
}

/// Runs the three f32 kernels on `s` and checks them against the naive f64 loops.
fn check_conv_f32(s: &Conv2dShape, seed: u64, threads: usize) {
    let d = s.dims().unwrap();
    let mut rng = Rng(seed);
    let (x64, w64, dy64) = (
        rng.vec(d.input_len),
        rng.vec(d.kernel_len),
        rng.vec(d.output_len),
    );
    let (x, w, dy) = (to_f32(&x64), to_f32(&w64), to_f32(&dy64));

    let mut y = vec![f32::NAN; d.output_len];
    conv2d_forward(s, &x, &w, &mut y, threads).unwrap();
    let scale = naive_conv_fwd(s, &abs(&x64), &abs(&w64));
    assert_close(
        &format!("forward {s:?}"),
        &y,
        &naive_conv_fwd(s, &x64, &w64),
        &scale,
        1e-5,
    );

    let mut dx = vec![f32::NAN; d.input_len];
    conv2d_backward_input(s, &dy, &w, &mut dx, threads).unwrap();
    let scale = naive_conv_bwd_input(s, &abs(&dy64), &abs(&w64));
    let want = naive_conv_bwd_input(s, &dy64, &w64);
    assert_close(&format!("backward_input {s:?}"), &dx, &want, &scale, 1e-5);

    let mut dw = vec![f32::NAN; d.kernel_len];
    conv2d_backward_kernel(s, &x, &dy, &mut dw, threads).unwrap();
    let scale = naive_conv_bwd_kernel(s, &abs(&x64), &abs(&dy64));
    let want = naive_conv_bwd_kernel(s, &x64, &dy64);
    assert_close(&format!("backward_kernel {s:?}"), &dw, &want, &scale, 1e-5);
}

#[test]
fn conv2d_matches_naive_on_odd_sizes_strides_dilations_paddings() {
    let mut rng = Rng(10);
    let mut checked = 0;
    while checked < 150 {
        let pick = |rng: &mut Rng, options: &[usize]| options[rng.below(options.len())];
        let s = conv_shape(
            pick(&mut rng, &[1, 2, 3]),
            (
                pick(&mut rng, &[1, 3, 7, 17]),
                pick(&mut rng, &[1, 3, 7, 17]),
                pick(&mut rng, &[1, 3, 7]),
            ),
            (
                pick(&mut rng, &[1, 2, 3, 5]),
                pick(&mut rng, &[1, 2, 3]),
                pick(&mut rng, &[1, 3, 17]),
            ),
            [pick(&mut rng, &[1, 2, 3]), pick(&mut rng, &[1, 2])],
            [pick(&mut rng, &[1, 2]), pick(&mut rng, &[1, 3])],
            [pick(&mut rng, &[0, 1, 2]), pick(&mut rng, &[0, 1])],
            [pick(&mut rng, &[0, 1]), pick(&mut rng, &[0, 2])],
        );
        if s.dims().is_err() {
            continue;
        }
        check_conv_f32(&s, checked, 1);
        checked += 1;
    }
}

#[test]
fn conv2d_special_paths_and_many_tiles() {
    // 1x1 stride 1 unpadded: the plain-GEMM path.
    check_conv_f32(
        &conv_shape(3, (7, 5, 33), (1, 1, 17), [1, 1], [1, 1], [0, 0], [0, 0]),
        1,
        1,
    );
    // 1x1 with stride 2 goes through im2col.
    check_conv_f32(
        &conv_shape(2, (7, 7, 3), (1, 1, 5), [2, 2], [1, 1], [0, 0], [0, 0]),
        2,
        1,
    );
    // Conv1D: height 1, Keras `same` padding for kernel 5 (2 before, 2 after).
    check_conv_f32(
        &conv_shape(2, (1, 65, 7), (1, 5, 3), [1, 1], [1, 1], [0, 2], [0, 2]),
        3,
        1,
    );
    // Causal conv1d with dilation 2: padding only before.
    check_conv_f32(
        &conv_shape(1, (1, 33, 3), (1, 3, 3), [1, 1], [1, 2], [0, 4], [0, 0]),
        4,
        1,
    );
    // Padding wider than the kernel: some outputs see only padding.
    check_conv_f32(
        &conv_shape(1, (3, 3, 1), (2, 2, 1), [1, 1], [1, 1], [3, 3], [3, 3]),
        5,
        1,
    );
    // patch_len 297 -> 165-pixel tiles; 2 x 17 x 17 pixels span several tiles; also threaded.
    let big = conv_shape(2, (17, 17, 33), (3, 3, 65), [1, 1], [1, 1], [1, 1], [1, 1]);
    check_conv_f32(&big, 6, 1);
    check_conv_f32(&big, 7, 2);
    check_conv_f32(&big, 8, 0);
}

#[test]
fn conv2d_f64_gradients_match_central_differences() {
    // Asymmetric padding, stride 2, dilation 2, several channels: L = sum(conv(x, w) * r).
    let s = conv_shape(2, (7, 6, 3), (3, 2, 4), [2, 1], [2, 2], [2, 0], [1, 2]);
    let d = s.dims().unwrap();
    let mut rng = Rng(20);
    let (x, w, r) = (
        rng.vec(d.input_len),
        rng.vec(d.kernel_len),
        rng.vec(d.output_len),
    );
    let loss = |x: &[f64], w: &[f64]| -> f64 {
        let mut y = vec![0.0; d.output_len];
        conv2d_forward(&s, x, w, &mut y, 1).unwrap();
        y.iter().zip(&r).map(|(a, b)| a * b).sum()
    };
    let mut dx = vec![0.0; d.input_len];
    conv2d_backward_input(&s, &r, &w, &mut dx, 1).unwrap();
    let mut dw = vec![0.0; d.kernel_len];
    conv2d_backward_kernel(&s, &x, &r, &mut dw, 1).unwrap();

    let h = 1e-5;
    let numeric = |v: &[f64], i: usize, f: &dyn Fn(&[f64]) -> f64| {
        let (mut plus, mut minus) = (v.to_vec(), v.to_vec());
        plus[i] += h;
        minus[i] -= h;
        (f(&plus) - f(&minus)) / (2.0 * h)
    };
    let mut nonzero = 0;
    for (i, &analytic) in dx.iter().enumerate() {
        let fd = numeric(&x, i, &|xp| loss(xp, &w));
        assert!(
            (fd - analytic).abs() <= 1e-8 * (1.0 + fd.abs()),
            "dx[{i}]: {fd} vs {analytic}"
        );
        nonzero += usize::from(fd.abs() > 1e-3);
    }
    for (i, &analytic) in dw.iter().enumerate() {
        let fd = numeric(&w, i, &|wp| loss(&x, wp));
        assert!(
            (fd - analytic).abs() <= 1e-8 * (1.0 + fd.abs()),
            "dw[{i}]: {fd} vs {analytic}"
        );
    }
    // With stride 2 and dilation 2 some input cells are never read; most are.
    assert!(
        nonzero > d.input_len / 3,
        "only {nonzero} non-zero input gradients"
    );

    // And the f64 kernels agree with the naive loops to f64 precision.
    let mut y = vec![0.0; d.output_len];
    conv2d_forward(&s, &x, &w, &mut y, 1).unwrap();
    let scale = naive_conv_fwd(&s, &abs(&x), &abs(&w));
    assert_close(
        "f64 forward",
        &y,
        &naive_conv_fwd(&s, &x, &w),
        &scale,
        1e-13,
    );
    let scale = naive_conv_bwd_input(&s, &abs(&r), &abs(&w));
    assert_close(
        "f64 backward_input",
        &dx,
        &naive_conv_bwd_input(&s, &r, &w),
        &scale,
        1e-13,
    );
    let scale = naive_conv_bwd_kernel(&s, &abs(&x), &abs(&r));
    assert_close(
        "f64 backward_kernel",
        &dw,
        &naive_conv_bwd_kernel(&s, &x, &r),
        &scale,
        1e-13,
    );
}

#[test]
fn conv2d_forward_pixels_computes_any_block_of_output_rows() {
    let s = conv_shape(2, (9, 8, 5), (3, 3, 7), [1, 2], [1, 1], [1, 1], [1, 1]);
    let d = s.dims().unwrap();
    let mut rng = Rng(30);
    let (x, w) = (
        to_f32(&rng.vec(d.input_len)),
        to_f32(&rng.vec(d.kernel_len)),
    );
    let mut full = vec![0.0f32; d.output_len];
    conv2d_forward(&s, &x, &w, &mut full, 1).unwrap();
    let mut scratch = Vec::new();
    let mut pieces = Vec::new();
    // Blocks that straddle an image boundary, plus an empty one.
    for (a, b) in [
        (0, 13),
        (13, 13),
        (13, d.pixels / 2 + 3),
        (d.pixels / 2 + 3, d.pixels),
    ] {
        let mut out = vec![0.0f32; (b - a) * s.out_c];
        conv2d_forward_pixels(&s, &x, &w, a..b, &mut out, &mut scratch).unwrap();
        pieces.extend(out);
    }
    assert_close(
        "pixels",
        &pieces,
        &full.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        &vec![1.0; d.output_len],
        1e-6,
    );
    let mut out = vec![0.0f32; 7];
    assert!(conv2d_forward_pixels(&s, &x, &w, 0..d.pixels + 1, &mut out, &mut scratch).is_err());
    assert!(conv2d_forward_pixels(&s, &x, &w, 0..2, &mut out, &mut scratch).is_err());
}

#[test]
fn conv2d_shape_arithmetic_and_rejections() {
    // Keras: 26x26 `valid` 3x3 -> 24x24; 28 `same` stride 2 -> 14 (pad 0 before, 1 after).
    let s = conv_shape(32, (26, 26, 32), (3, 3, 64), [1, 1], [1, 1], [0, 0], [0, 0]);
    let d = s.dims().unwrap();
    assert_eq!(
        (d.out_h, d.out_w, d.patch_len, d.pixels),
        (24, 24, 288, 32 * 24 * 24)
    );
    assert_eq!(d.flops(), 2.0 * 32.0 * 576.0 * 288.0 * 64.0);
    let s = conv_shape(1, (28, 28, 1), (3, 3, 8), [2, 2], [1, 1], [0, 0], [1, 1]);
    assert_eq!((s.dims().unwrap().out_h, s.dims().unwrap().out_w), (14, 14));
    // Dilated kernel (span 5) on a 4-wide input.
    let bad = conv_shape(1, (4, 4, 1), (3, 3, 1), [1, 1], [2, 2], [0, 0], [0, 0]);
    assert!(bad.dims().unwrap_err().message().contains("spans 5"));
    assert!(
        conv_shape(1, (4, 4, 1), (3, 3, 1), [0, 1], [1, 1], [0, 0], [0, 0])
            .dims()
            .is_err()
    );
    assert!(
        conv_shape(1, (4, 4, 0), (3, 3, 1), [1, 1], [1, 1], [0, 0], [0, 0])
            .dims()
            .is_err()
    );
    assert!(conv_shape(
        usize::MAX,
        (4, 4, 2),
        (1, 1, 1),
        [1, 1],
        [1, 1],
        [0, 0],
        [0, 0]
    )
    .dims()
    .is_err());
    // Buffer length mismatches are errors, not panics.
    let s = conv_shape(1, (4, 4, 2), (3, 3, 2), [1, 1], [1, 1], [0, 0], [0, 0]);
    let (x, w) = (vec![0.0f32; 32], vec![0.0f32; 36]);
    let mut y = vec![0.0f32; 8];
    assert!(conv2d_forward(&s, &x, &w, &mut y, 1).is_ok());
    assert!(conv2d_forward(&s, &x[..31], &w, &mut y, 1).is_err());
    assert!(conv2d_forward(&s, &x, &w, &mut y[..7], 1).is_err());
    assert!(conv2d_backward_input(&s, &y, &w[..35], &mut [0.0; 32], 1).is_err());
    assert!(conv2d_backward_kernel(&s, &x, &y, &mut [0.0; 35], 1).is_err());
}

#[test]
fn ffi_conv_entry_points_match_safe_wrappers_and_reject_bad_arguments() {
    let s = conv_shape(2, (7, 7, 3), (3, 3, 5), [2, 2], [1, 1], [1, 1], [1, 1]);
    let d = s.dims().unwrap();
    let mut rng = Rng(40);
    let (x, w, dy) = (
        to_f32(&rng.vec(d.input_len)),
        to_f32(&rng.vec(d.kernel_len)),
        to_f32(&rng.vec(d.output_len)),
    );
    let (mut y1, mut y2) = (vec![0.0f32; d.output_len], vec![0.0f32; d.output_len]);
    let (mut dx1, mut dx2) = (vec![0.0f32; d.input_len], vec![0.0f32; d.input_len]);
    let (mut dw1, mut dw2) = (vec![0.0f32; d.kernel_len], vec![0.0f32; d.kernel_len]);
    conv2d_forward(&s, &x, &w, &mut y1, 1).unwrap();
    conv2d_backward_input(&s, &dy, &w, &mut dx1, 1).unwrap();
    conv2d_backward_kernel(&s, &x, &dy, &mut dw1, 1).unwrap();
    // SAFETY: buffers have the lengths the shape implies.
    unsafe {
        assert_eq!(
            fm_conv2d_fwd(&s, x.as_ptr(), w.as_ptr(), y2.as_mut_ptr(), 1),
            FM_OK
        );
        assert_eq!(
            fm_conv2d_bwd_input(&s, dy.as_ptr(), w.as_ptr(), dx2.as_mut_ptr(), 1),
            FM_OK
        );
        assert_eq!(
            fm_conv2d_bwd_kernel(&s, x.as_ptr(), dy.as_ptr(), dw2.as_mut_ptr(), 1),
            FM_OK
        );
        // Null shape, null buffer, invalid shape.
        assert_eq!(
            fm_conv2d_fwd(std::ptr::null(), x.as_ptr(), w.as_ptr(), y2.as_mut_ptr(), 1),
            FM_INVALID_ARGUMENT
        );
        assert_eq!(
            fm_conv2d_fwd(&s, std::ptr::null(), w.as_ptr(), y2.as_mut_ptr(), 1),
            FM_INVALID_ARGUMENT
        );
        let bad = Conv2dShape {
            stride: [0, 1],
            ..s
        };
        assert_eq!(
            fm_conv2d_bwd_kernel(&bad, x.as_ptr(), dy.as_ptr(), dw2.as_mut_ptr(), 1),
            FM_INVALID_ARGUMENT
        );
    }
    assert_eq!(y1, y2);
    assert_eq!(dx1, dx2);
    assert_eq!(dw1, dw2);
}

// ---------------------------------------------------------------- pooling

/// Real cells (ih, iw) of the window of output (oh, ow), row-major.
fn naive_window(s: &Pool2dShape, oh: usize, ow: usize) -> Vec<(usize, usize)> {
    let mut cells = Vec::new();
    for i in 0..s.window[0] {
        for j in 0..s.window[1] {
            if let (Some(ih), Some(iw)) = (
                src(oh, i, s.stride[0], 1, s.pad_before[0], s.in_h),
                src(ow, j, s.stride[1], 1, s.pad_before[1], s.in_w),
            ) {
                cells.push((ih, iw));
            }
        }
    }
    cells
}

/// Naive pooling: forward output and input gradient for `dy`.
fn naive_pool(s: &Pool2dShape, max: bool, x: &[f64], dy: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let d = s.dims().unwrap();
    let (mut y, mut dx) = (vec![0.0; d.output_len], vec![0.0; d.input_len]);
    let c = s.channels;
    for n in 0..s.batch {
        for oh in 0..d.out_h {
            for ow in 0..d.out_w {
                let cells = naive_window(s, oh, ow);
                for ch in 0..c {
                    let xi =
                        |&(ih, iw): &(usize, usize)| ((n * s.in_h + ih) * s.in_w + iw) * c + ch;
                    let yi = ((n * d.out_h + oh) * d.out_w + ow) * c + ch;
                    if max {
                        let mut best = xi(&cells[0]);
                        for cell in &cells[1..] {
                            if x[xi(cell)] > x[best] {
                                best = xi(cell);
                            }
                        }
                        y[yi] = x[best];
                        dx[best] += dy[yi];
                    } else {
                        y[yi] =
                            cells.iter().map(|cell| x[xi(cell)]).sum::<f64>() / cells.len() as f64;
                        for cell in &cells {
                            dx[xi(cell)] += dy[yi] / cells.len() as f64;
                        }
                    }
                }
            }
        }
    }
    (y, dx)
}

#[test]
fn pooling_matches_naive_on_odd_sizes_and_paddings() {
    let mut rng = Rng(50);
    let mut checked = 0;
    while checked < 120 {
        let pick = |rng: &mut Rng, options: &[usize]| options[rng.below(options.len())];
        let s = Pool2dShape {
            batch: pick(&mut rng, &[1, 2]),
            in_h: pick(&mut rng, &[1, 3, 7, 17]),
            in_w: pick(&mut rng, &[1, 3, 7, 17]),
            channels: pick(&mut rng, &[1, 3, 17]),
            window: [pick(&mut rng, &[1, 2, 3]), pick(&mut rng, &[1, 2, 3])],
            stride: [pick(&mut rng, &[1, 2, 3]), pick(&mut rng, &[1, 2])],
            pad_before: [pick(&mut rng, &[0, 1]), pick(&mut rng, &[0, 1])],
            pad_after: [pick(&mut rng, &[0, 1, 2]), pick(&mut rng, &[0, 1])],
        };
        let Ok(d) = s.dims() else { continue };
        let x64 = rng.vec(d.input_len);
        let dy64 = rng.vec(d.output_len);
        let (x, dy) = (to_f32(&x64), to_f32(&dy64));
        // Run the naive reference on the f32-rounded input so max choices agree exactly.
        let xr: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let dyr: Vec<f64> = dy.iter().map(|&v| v as f64).collect();
        for max in [true, false] {
            let (want_y, want_dx) = naive_pool(&s, max, &xr, &dyr);
            let mut y = vec![f32::NAN; d.output_len];
            let mut dx = vec![f32::NAN; d.input_len];
            if max {
                max_pool2d_forward(&s, &x, &mut y).unwrap();
                max_pool2d_backward(&s, &x, &dy, &mut dx).unwrap();
            } else {
                avg_pool2d_forward(&s, &x, &mut y).unwrap();
                avg_pool2d_backward(&s, &dy, &mut dx).unwrap();
            }
            let what = if max { "max" } else { "avg" };
            assert_close(
                &format!("{what} forward {s:?}"),
                &y,
                &want_y,
                &vec![1.0; y.len()],
                1e-6,
            );
            assert_close(
                &format!("{what} backward {s:?}"),
                &dx,
                &want_dx,
                &vec![1.0; dx.len()],
                1e-6,
            );
        }
        checked += 1;
    }
}

#[test]
fn pooling_hand_computed_keras_cases() {
    // 3x3 input 1..9, 3x3 window, stride 1, `same` padding (1 before, 1 after):
    // corners average 4 real cells, edges 6, the centre all 9.
    let s = Pool2dShape {
        batch: 1,
        in_h: 3,
        in_w: 3,
        channels: 1,
        window: [3, 3],
        stride: [1, 1],
        pad_before: [1, 1],
        pad_after: [1, 1],
    };
    let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
    let mut y = vec![0.0f32; 9];
    avg_pool2d_forward(&s, &x, &mut y).unwrap();
    assert_eq!(y, vec![3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0, 6.5, 7.0]);
    max_pool2d_forward(&s, &x, &mut y).unwrap();
    assert_eq!(y, vec![5.0, 6.0, 6.0, 8.0, 9.0, 9.0, 8.0, 9.0, 9.0]);
    // Gradient of avg: corner cell 1 is in windows of outputs 0,1,3,4 (4, 6, 6, 9 real cells).
    let mut dx = vec![0.0f32; 9];
    avg_pool2d_backward(&s, &[1.0; 9], &mut dx).unwrap();
    let corner = 1.0 / 4.0 + 1.0 / 6.0 + 1.0 / 6.0 + 1.0 / 9.0;
    assert!((dx[0] - corner).abs() < 1e-6, "{}", dx[0]);
    // Max backward: 9 is the max of 4 windows, so it receives 4; 8 two, 6 two, 5 one.
    max_pool2d_backward(&s, &x, &[1.0; 9], &mut dx).unwrap();
    assert_eq!(dx, vec![0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0, 2.0, 4.0]);

    // Ties route to the first maximum in row-major order.
    let tie = Pool2dShape {
        in_h: 2,
        in_w: 2,
        window: [2, 2],
        stride: [2, 2],
        pad_before: [0, 0],
        pad_after: [0, 0],
        ..s
    };
    let mut dx = vec![0.0f32; 4];
    max_pool2d_backward(&tie, &[7.0, 7.0, 7.0, 7.0], &[2.5], &mut dx).unwrap();
    assert_eq!(dx, vec![2.5, 0.0, 0.0, 0.0]);
    max_pool2d_backward(&tie, &[1.0, 7.0, 3.0, 7.0], &[2.5], &mut dx).unwrap();
    assert_eq!(dx, vec![0.0, 2.5, 0.0, 0.0]);
}

#[test]
fn pooling_rejects_bad_shapes_and_buffers() {
    let s = Pool2dShape {
        batch: 1,
        in_h: 4,
        in_w: 4,
        channels: 2,
        window: [2, 2],
        stride: [2, 2],
        pad_before: [0, 0],
        pad_after: [0, 0],
    };
    assert_eq!(s.dims().unwrap().output_len, 8);
    assert!(Pool2dShape {
        pad_before: [2, 0],
        ..s
    }
    .dims()
    .is_err());
    assert!(Pool2dShape {
        stride: [1, 0],
        ..s
    }
    .dims()
    .is_err());
    assert!(Pool2dShape {
        window: [5, 1],
        ..s
    }
    .dims()
    .is_err());
    let x = vec![0.0f32; 32];
    let mut y = vec![0.0f32; 8];
    assert!(max_pool2d_forward(&s, &x[..31], &mut y).is_err());
    assert!(avg_pool2d_forward(&s, &x, &mut y[..7]).is_err());
    assert!(avg_pool2d_backward(&s, &y, &mut [0.0; 33]).is_err());
    assert!(max_pool2d_backward(&s, &x, &y[..7], &mut [0.0; 32]).is_err());
    let mut out = vec![0.0f32; 8];
    // SAFETY: buffers have the lengths the shape implies.
    unsafe {
        assert_eq!(fm_max_pool2d_fwd(&s, x.as_ptr(), out.as_mut_ptr()), FM_OK);
        assert_eq!(fm_avg_pool2d_fwd(&s, x.as_ptr(), out.as_mut_ptr()), FM_OK);
        let mut dx = vec![0.0f32; 32];
        assert_eq!(
            fm_max_pool2d_bwd(&s, x.as_ptr(), y.as_ptr(), dx.as_mut_ptr()),
            FM_OK
        );
        assert_eq!(fm_avg_pool2d_bwd(&s, y.as_ptr(), dx.as_mut_ptr()), FM_OK);
        let bad = Pool2dShape {
            window: [0, 2],
            ..s
        };
        assert_eq!(
            fm_max_pool2d_fwd(&bad, x.as_ptr(), out.as_mut_ptr()),
            FM_INVALID_ARGUMENT
        );
        assert_eq!(
            fm_avg_pool2d_bwd(&s, std::ptr::null(), dx.as_mut_ptr()),
            FM_INVALID_ARGUMENT
        );
    }
}

// ---------------------------------------------------------------- denormals

#[cfg(target_arch = "x86_64")]
#[test]
fn worker_threads_inherit_the_callers_denormal_flushing() {
    // Each product 1e-20 * 1e-20 = 1e-40 is denormal in f32; 128 of them sum to a normal
    // 1.28e-38 unless every thread (including gemm's row-block workers) flushes them.
    let (m, k, n) = (256, 128, 128);
    let a = vec![1e-20f32; m * k];
    let b = vec![1e-20f32; k * n];
    let run = |c: &mut Vec<f32>| {
        sgemm(
            1.0,
            MatRef::row_major(&a, m, k).unwrap(),
            MatRef::row_major(&b, k, n).unwrap(),
            0.0,
            MatMut::row_major(c, m, n).unwrap(),
            2,
        )
        .unwrap()
    };
    let mut c = vec![0.0f32; m * n];
    run(&mut c);
    assert!(c.iter().all(|&v| v > 1e-38), "without flushing: {}", c[0]);
    {
        let _flush = FlushDenormals::enable();
        run(&mut c);
        assert!(
            c.iter().all(|&v| v == 0.0),
            "rows {} and {}: {} {}",
            0,
            m - 1,
            c[0],
            c[m * n - 1]
        );
    }
    // And in the threaded conv paths (backward_kernel sums per-thread partials).
    let s = conv_shape(8, (16, 16, 16), (3, 3, 16), [1, 1], [1, 1], [1, 1], [1, 1]);
    let d = s.dims().unwrap();
    let (x, dy) = (vec![1e-20f32; d.input_len], vec![1e-20f32; d.output_len]);
    let mut dw = vec![0.0f32; d.kernel_len];
    let _flush = FlushDenormals::enable();
    conv2d_backward_kernel(&s, &x, &dy, &mut dw, 2).unwrap();
    assert!(dw.iter().all(|&v| v == 0.0));
    let mut y = vec![1.0f32; d.output_len];
    conv2d_forward(&s, &x, &vec![1e-20f32; d.kernel_len], &mut y, 2).unwrap();
    assert!(y.iter().all(|&v| v == 0.0));
}

// ---------------------------------------------------------------- thread counts

/// The patch matrix (`pixels x patch_len`, row-major) of `x`, written out.
fn patches_of(s: &Conv2dShape, x: &[f32]) -> Vec<f32> {
    let d = s.dims().unwrap();
    let mut p = vec![0.0f32; d.pixels * d.patch_len];
    naive_conv_taps(s, |xi, wi, yi| {
        if wi % s.out_c == 0 {
            p[yi / s.out_c * d.patch_len + wi / s.out_c] = x[xi];
        }
    });
    p
}

#[test]
fn convolutions_have_the_bits_of_one_gemm_on_the_patch_matrix() {
    // The forward pass and the kernel gradient, tiled and split over threads, give each
    // element exactly the bits of one GEMM on the written-out patch matrix (what the
    // interpreter's order matches). Pixel counts within one tile of the kernel gradient, so
    // that one GEMM is its reference.
    for s in [
        conv_shape(1, (13, 13, 32), (3, 3, 64), [1, 1], [1, 1], [0, 0], [0, 0]),
        conv_shape(2, (9, 9, 20), (3, 3, 24), [2, 1], [1, 2], [0, 0], [0, 0]),
        conv_shape(2, (28, 28, 1), (3, 3, 32), [1, 1], [1, 1], [0, 0], [0, 0]),
    ] {
        let d = s.dims().unwrap();
        let mut rng = Rng(d.pixels as u64);
        let x = to_f32(&rng.vec(d.input_len));
        let w = to_f32(&rng.vec(d.kernel_len));
        let dy = to_f32(&rng.vec(d.output_len));
        let patches = patches_of(&s, &x);
        let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
        let mut want_y = vec![0.0f32; d.output_len];
        sgemm(
            1.0,
            MatRef::row_major(&patches, d.pixels, d.patch_len).unwrap(),
            MatRef::row_major(&w, d.patch_len, s.out_c).unwrap(),
            0.0,
            MatMut::row_major(&mut want_y, d.pixels, s.out_c).unwrap(),
            1,
        )
        .unwrap();
        let mut want_dw = vec![0.0f32; d.kernel_len];
        sgemm(
            1.0,
            MatRef::row_major(&patches, d.pixels, d.patch_len)
                .unwrap()
                .t(),
            MatRef::row_major(&dy, d.pixels, s.out_c).unwrap(),
            1.0,
            MatMut::row_major(&mut want_dw, d.patch_len, s.out_c).unwrap(),
            1,
        )
        .unwrap();
        for threads in [1, 2] {
            let mut y = vec![f32::NAN; d.output_len];
            conv2d_forward(&s, &x, &w, &mut y, threads).unwrap();
            let mut dw = vec![f32::NAN; d.kernel_len];
            conv2d_backward_kernel(&s, &x, &dy, &mut dw, threads).unwrap();
            // (A first layer's forward pass is the direct convolution, summed in the same order.)
            assert!(same(&y, &want_y), "forward {s:?}, {threads} threads");
            assert!(
                same(&dw, &want_dw),
                "kernel gradient {s:?}, {threads} threads"
            );
        }
    }
}

#[test]
fn conv_kernel_gradient_is_the_same_for_every_thread_count() {
    let s = conv_shape(16, (13, 13, 8), (3, 3, 16), [1, 1], [1, 1], [0, 0], [0, 0]);
    let d = s.dims().unwrap();
    let mut rng = Rng(7);
    let (x, dy) = (
        to_f32(&rng.vec(d.input_len)),
        to_f32(&rng.vec(d.output_len)),
    );
    let grad = |threads| {
        let mut dw = vec![f32::NAN; d.kernel_len];
        conv2d_backward_kernel(&s, &x, &dy, &mut dw, threads).unwrap();
        dw
    };
    let one = grad(1);
    for threads in [2, 3, 8] {
        assert!(
            grad(threads)
                .iter()
                .zip(&one)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{threads} threads"
        );
    }
}

#[test]
fn max_pooling_on_many_images_matches_naive_and_keeps_nan_first_cells() {
    // Big enough to split over threads; 26 and 11 are the MNIST CNN's pooled sizes (11 leaves
    // a row and a column no window covers).
    for (h, c) in [(26, 32), (11, 19)] {
        let s = Pool2dShape {
            batch: 16,
            in_h: h,
            in_w: h,
            channels: c,
            window: [2, 2],
            stride: [2, 2],
            pad_before: [0, 0],
            pad_after: [0, 0],
        };
        let d = s.dims().unwrap();
        let mut rng = Rng(h as u64);
        let mut x = to_f32(&rng.vec(d.input_len));
        // Ties and a NaN in the first cell of a window.
        x[c] = x[0];
        x[1] = f32::NAN;
        let dy = to_f32(&rng.vec(d.output_len));
        let xr: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let dyr: Vec<f64> = dy.iter().map(|&v| v as f64).collect();
        let (want_y, want_dx) = naive_pool(&s, true, &xr, &dyr);
        let mut y = vec![0.0f32; d.output_len];
        let mut dx = vec![f32::NAN; d.input_len];
        max_pool2d_forward(&s, &x, &mut y).unwrap();
        max_pool2d_backward(&s, &x, &dy, &mut dx).unwrap();
        assert!(y[1].is_nan());
        assert_eq!(dx[1], dy[1]);
        let finite = |v: &[f32]| {
            v.iter()
                .map(|&a| if a.is_nan() { 0.0 } else { a })
                .collect()
        };
        let finite64 = |v: &[f64]| -> Vec<f64> {
            v.iter()
                .map(|&a| if a.is_nan() { 0.0 } else { a })
                .collect()
        };
        let (y, want_y): (Vec<f32>, _) = (finite(&y), finite64(&want_y));
        assert_close("forward", &y, &want_y, &vec![1.0; y.len()], 0.0);
        assert_close("backward", &dx, &want_dx, &vec![1.0; dx.len()], 0.0);
    }
}

#[test]
fn conv_on_many_images_matches_naive_in_every_path() {
    // Direct (short patches) and GEMM paths, several kernel-gradient ranges, 1 and 2 threads.
    for (c, f) in [(3, 5), (1, 32), (8, 16)] {
        let s = conv_shape(33, (7, 7, c), (3, 3, f), [1, 1], [1, 1], [1, 1], [1, 1]);
        for threads in [1, 2] {
            check_conv_f32(&s, 5, threads);
        }
    }
}

#[test]
fn fused_conv_epilogue_is_bit_exact_with_the_separate_add_and_max() {
    // Direct path (patch of 9), GEMM path (patch 72), pointwise; 1 and 2 threads; a NaN input
    // pixel so NaN passes the ReLU as the IR's `max` passes it.
    for (c, k, f) in [(1, 3, 32), (8, 3, 16), (4, 1, 8)] {
        let s = conv_shape(9, (12, 12, c), (k, k, f), [1, 1], [1, 1], [0, 0], [0, 0]);
        let d = s.dims().unwrap();
        let mut rng = Rng(c as u64 + 7);
        let mut x = to_f32(&rng.vec(d.input_len));
        x[5 * c] = f32::NAN;
        let w = to_f32(&rng.vec(d.kernel_len));
        let bias = to_f32(&rng.vec(f));
        for threads in [1, 2] {
            let mut plain = vec![0.0f32; d.output_len];
            conv2d_forward(&s, &x, &w, &mut plain, threads).unwrap();
            for relu in [false, true] {
                let want: Vec<f32> = plain
                    .iter()
                    .enumerate()
                    .map(|(i, &y)| {
                        let v = y + bias[i % f];
                        if relu && !(v.is_nan() || v > 0.0) {
                            0.0
                        } else {
                            v
                        }
                    })
                    .collect();
                let mut got = vec![f32::NAN; d.output_len];
                let e = ConvEpilogue {
                    bias: Some(&bias),
                    relu,
                };
                conv2d_forward_fused(&s, &x, &w, e, &mut got, threads).unwrap();
                let bits = |v: &[f32]| v.iter().map(|a| a.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "{s:?} relu {relu} threads {threads}"
                );
                assert!(got.iter().any(|v| v.is_nan()) && got.contains(&0.0) == relu);
            }
        }
        let mut y = vec![0.0f32; d.output_len];
        let short = ConvEpilogue {
            bias: Some(&bias[1..]),
            relu: true,
        };
        assert!(conv2d_forward_fused(&s, &x, &w, short, &mut y, 1).is_err());
    }
}

#[test]
fn fused_max_pool_backward_relu_is_bit_exact_with_the_separate_select() {
    // Disjoint (2x2/2, with an uncovered row and column) and overlapping (3x3/2) windows;
    // ReLU outputs: zeros (dead windows), ties, a NaN.
    for (h, win, stride) in [(11, 2, 2), (9, 3, 2)] {
        let s = Pool2dShape {
            batch: 6,
            in_h: h,
            in_w: h,
            channels: 11,
            window: [win, win],
            stride: [stride, stride],
            pad_before: [0, 0],
            pad_after: [0, 0],
        };
        let d = s.dims().unwrap();
        let mut rng = Rng(h as u64);
        let mut x: Vec<f32> = to_f32(&rng.vec(d.input_len))
            .into_iter()
            .map(|v| if v > 0.2 { v } else { 0.0 })
            .collect();
        x[3] = f32::NAN;
        let dy = to_f32(&rng.vec(d.output_len));
        let mut plain = vec![f32::NAN; d.input_len];
        max_pool2d_backward(&s, &x, &dy, &mut plain).unwrap();
        let want: Vec<f32> = plain
            .iter()
            .zip(&x)
            .map(|(&g, &v)| if v > 0.0 { g } else { 0.0 })
            .collect();
        let mut got = vec![f32::NAN; d.input_len];
        max_pool2d_backward_relu(&s, &x, &dy, &mut got).unwrap();
        let bits = |v: &[f32]| v.iter().map(|a| a.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want), "{s:?}");
        assert!(want.iter().filter(|&&g| g != 0.0).count() > d.output_len / 4);
    }
}
