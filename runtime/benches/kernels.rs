//! Throughput of the precompiled kernels. Criterion reports `elem/s` where one element is one
//! floating-point operation, so `Gelem/s` reads as GFLOP/s (pooling: input elements per second).
//!
//! `cargo bench -p fm-runtime --bench kernels`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fm_runtime::kernels::{
    conv2d_backward_input, conv2d_backward_kernel, conv2d_forward, max_pool2d_backward,
    max_pool2d_forward, sgemm, Conv2dShape, MatMut, MatRef, Pool2dShape,
};

fn values(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| {
            ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32 / 16_777_216.0
                - 0.5
        })
        .collect()
}

fn bench_sgemm(c: &mut Criterion) {
    let mut group = c.benchmark_group("sgemm");
    for n in [256usize, 512, 1024] {
        let (a, b) = (values(n * n, 1), values(n * n, 2));
        let mut out = vec![0.0f32; n * n];
        group.throughput(Throughput::Elements(2 * (n * n * n) as u64));
        for (name, transpose_a) in [("nn", false), ("tn", true)] {
            if transpose_a && n != 512 {
                continue;
            }
            group.bench_with_input(BenchmarkId::new(name, n), &n, |bench, &n| {
                bench.iter(|| {
                    let a = MatRef::row_major(&a, n, n).unwrap();
                    let a = if transpose_a { a.t() } else { a };
                    let b = MatRef::row_major(&b, n, n).unwrap();
                    let c = MatMut::row_major(&mut out, n, n).unwrap();
                    sgemm(1.0, a, b, 0.0, c, 1).unwrap();
                })
            });
        }
    }
    group.finish();
}

/// The second conv of the Keras MNIST CNN at batch 32: 26x26x32 -> 3x3 valid -> 24x24x64.
fn mnist_conv() -> Conv2dShape {
    Conv2dShape {
        batch: 32,
        in_h: 26,
        in_w: 26,
        in_c: 32,
        kernel_h: 3,
        kernel_w: 3,
        out_c: 64,
        stride: [1, 1],
        dilation: [1, 1],
        pad_before: [0, 0],
        pad_after: [0, 0],
    }
}

fn bench_conv(c: &mut Criterion) {
    let mut group = c.benchmark_group("conv2d_mnist_32x26x26x32_3x3x64");
    let s = mnist_conv();
    let d = s.dims().unwrap();
    let (x, w, dy) = (
        values(d.input_len, 3),
        values(d.kernel_len, 4),
        values(d.output_len, 5),
    );
    let (mut y, mut dx, mut dw) = (
        vec![0.0f32; d.output_len],
        vec![0.0f32; d.input_len],
        vec![0.0f32; d.kernel_len],
    );
    group.throughput(Throughput::Elements(d.flops() as u64));
    for threads in [1usize, 2] {
        group.bench_function(BenchmarkId::new("forward", threads), |b| {
            b.iter(|| conv2d_forward(&s, &x, &w, &mut y, threads).unwrap())
        });
        group.bench_function(BenchmarkId::new("backward_input", threads), |b| {
            b.iter(|| conv2d_backward_input(&s, &dy, &w, &mut dx, threads).unwrap())
        });
        group.bench_function(BenchmarkId::new("backward_kernel", threads), |b| {
            b.iter(|| conv2d_backward_kernel(&s, &x, &dy, &mut dw, threads).unwrap())
        });
    }
    group.finish();

    // The first conv (one input channel, patch_len 9) is im2col-bound rather than GEMM-bound.
    let mut group = c.benchmark_group("conv2d_mnist_32x28x28x1_3x3x32");
    let s = Conv2dShape {
        in_h: 28,
        in_w: 28,
        in_c: 1,
        out_c: 32,
        ..mnist_conv()
    };
    let d = s.dims().unwrap();
    let (x, w) = (values(d.input_len, 6), values(d.kernel_len, 7));
    let mut y = vec![0.0f32; d.output_len];
    let mut dw = vec![0.0f32; d.kernel_len];
    let dy = values(d.output_len, 8);
    group.throughput(Throughput::Elements(d.flops() as u64));
    group.bench_function("forward", |b| {
        b.iter(|| conv2d_forward(&s, &x, &w, &mut y, 1).unwrap())
    });
    group.bench_function("backward_kernel", |b| {
        b.iter(|| conv2d_backward_kernel(&s, &x, &dy, &mut dw, 1).unwrap())
    });
    group.finish();
}

fn bench_pool(c: &mut Criterion) {
    let mut group = c.benchmark_group("max_pool2d_32x24x24x64_2x2");
    let s = Pool2dShape {
        batch: 32,
        in_h: 24,
        in_w: 24,
        channels: 64,
        window: [2, 2],
        stride: [2, 2],
        pad_before: [0, 0],
        pad_after: [0, 0],
    };
    let d = s.dims().unwrap();
    let x = values(d.input_len, 9);
    let dy = values(d.output_len, 10);
    let (mut y, mut dx) = (vec![0.0f32; d.output_len], vec![0.0f32; d.input_len]);
    group.throughput(Throughput::Elements(d.input_len as u64));
    group.bench_function("forward", |b| {
        b.iter(|| max_pool2d_forward(&s, &x, &mut y).unwrap())
    });
    group.bench_function("backward", |b| {
        b.iter(|| max_pool2d_backward(&s, &x, &dy, &mut dx).unwrap())
    });
    group.finish();
}

fn config() -> Criterion {
    // The machine is shared: short runs, few samples.
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_sgemm, bench_conv, bench_pool
}
criterion_main!(benches);
