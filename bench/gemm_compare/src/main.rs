//! `cargo run --release` (in this folder): single-thread SGEMM GFLOP/s of `matrixmultiply` 0.3
//! (fm's GEMM, AVX-512 kernel where the CPU has it) and of the `gemm` crate 0.19 (no
//! parallelism) on the GEMM shapes of the MNIST MLP and CNN (batch 128 and 32), and the FMA
//! peak of one core (12 independent AVX-512 accumulators, or AVX2 without AVX-512). Each figure
//! is the best of many calls, so it is mostly free of other processes' load.

use std::hint::black_box;
use std::time::Instant;

/// Best seconds of `f` over calls lasting about `budget` seconds in total.
fn best(budget: f64, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    let mut best = f64::INFINITY;
    while start.elapsed().as_secs_f64() < budget {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

/// C (m x n) = A (m x k) * B (k x n), all row-major.
fn mm(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    unsafe {
        matrixmultiply::sgemm(
            m, k, n, 1.0, a.as_ptr(), k as isize, 1, b.as_ptr(), n as isize, 1, 0.0,
            c.as_mut_ptr(), n as isize, 1,
        )
    }
}

fn gemm_crate(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    unsafe {
        gemm::gemm(
            m, n, k, c.as_mut_ptr(), 1, n as isize, false, a.as_ptr(), 1, k as isize,
            b.as_ptr(), 1, n as isize, 0.0, 1.0, false, false, false, gemm::Parallelism::None,
        )
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_peak_avx512(iters: usize) -> f32 {
    use std::arch::x86_64::*;
    let x = _mm512_set1_ps(0.999_999);
    let y = _mm512_set1_ps(1e-7);
    let mut acc = [_mm512_set1_ps(1.0); 12];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm512_fmadd_ps(*a, x, y);
        }
    }
    acc.iter().map(|a| _mm512_reduce_add_ps(*a)).sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_peak_avx2(iters: usize) -> f32 {
    use std::arch::x86_64::*;
    let x = _mm256_set1_ps(0.999_999);
    let y = _mm256_set1_ps(1e-7);
    let mut acc = [_mm256_set1_ps(1.0); 12];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm256_fmadd_ps(*a, x, y);
        }
    }
    let mut out = [0f32; 8];
    let mut s = 0.0;
    for a in acc {
        _mm256_storeu_ps(out.as_mut_ptr(), a);
        s += out.iter().sum::<f32>();
    }
    s
}

fn main() {
    let iters = 1_000_000;
    let (lanes, peak_s) = if std::arch::is_x86_feature_detected!("avx512f") {
        (16, best(1.0, || unsafe { black_box(fma_peak_avx512(black_box(iters))); }))
    } else {
        (8, best(1.0, || unsafe { black_box(fma_peak_avx2(black_box(iters))); }))
    };
    let peak = 2.0 * 12.0 * lanes as f64 * iters as f64 / peak_s / 1e9;
    println!("FMA peak, one core ({}-lane vectors, 12 accumulators): {peak:.0} GFLOP/s", lanes);
    println!();
    println!("| GEMM (m x k x n) | matrixmultiply GFLOP/s | gemm crate GFLOP/s | best / peak |");
    println!("|---|---:|---:|---:|");
    let shapes: [(&str, usize, usize, usize); 11] = [
        ("dense 784->128, batch 128, forward", 128, 784, 128),
        ("dense 784->128, batch 128, input grad", 128, 128, 784),
        ("dense 784->128, batch 128, kernel grad", 784, 128, 128),
        ("dense 576->64, batch 128, forward", 128, 576, 64),
        ("dense 576->64, batch 128, kernel grad", 576, 128, 64),
        ("conv 13x13x32->64, batch 32, forward (im2col)", 3872, 288, 64),
        ("conv 13x13x32->64, batch 32, input grad", 3872, 64, 288),
        ("conv 13x13x32->64, batch 32, kernel grad", 288, 3872, 64),
        ("conv 5x5x64->64, batch 32, forward (im2col)", 288, 576, 64),
        ("conv 5x5x64->64, batch 32, kernel grad", 576, 288, 64),
        ("square 1024", 1024, 1024, 1024),
    ];
    for (name, m, k, n) in shapes {
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0).collect();
        let mut c1 = vec![0f32; m * n];
        let mut c2 = vec![0f32; m * n];
        let flops = 2.0 * (m * k * n) as f64;
        let budget = 0.6;
        let t1 = best(budget, || mm(m, k, n, &a, &b, &mut c1));
        let t2 = best(budget, || gemm_crate(m, k, n, &a, &b, &mut c2));
        let worst = c1
            .iter()
            .zip(&c2)
            .map(|(x, y)| (x - y).abs() / x.abs().max(1.0))
            .fold(0f32, f32::max);
        assert!(worst < 1e-3, "{name}: the two products differ by {worst}");
        let (g1, g2) = (flops / t1 / 1e9, flops / t2 / 1e9);
        println!(
            "| {name} ({m} x {k} x {n}) | {g1:.0} | {g2:.0} | {:.0}% |",
            100.0 * g1.max(g2) / peak
        );
    }
}
