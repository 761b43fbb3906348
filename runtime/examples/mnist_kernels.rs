//! Times each precompiled kernel on the shapes of the Keras MNIST CNN and MLP training step
//! (best of many calls, so a shared machine's load spikes mostly drop out), and prints GFLOP/s
//! (pooling: GB/s of input read) next to the machine's single-core FMA peak.
//!
//! `cargo run --release -p fm-runtime --example mnist_kernels [BATCH] [THREADS]`

use std::time::Instant;

use fm_runtime::kernels::{
    conv2d_backward_input, conv2d_backward_kernel, conv2d_forward, max_pool2d_backward,
    max_pool2d_forward, set_thread_limit, sgemm, Conv2dShape, MatMut, MatRef, Pool2dShape,
};

fn values(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| {
            ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32 / 16_777_216.0
                - 0.5
        })
        .collect()
}

/// Best seconds per call of `f` over about 0.3 s of calls (at least 5).
fn best(f: impl FnMut()) -> f64 {
    best_secs(f, 0.3)
}

fn best_secs(mut f: impl FnMut(), seconds: f64) -> f64 {
    f();
    let start = Instant::now();
    let mut best = f64::INFINITY;
    let mut calls = 0;
    while calls < 5 || start.elapsed().as_secs_f64() < seconds {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
        calls += 1;
    }
    best
}

fn conv(batch: usize, h: usize, c: usize, f: usize) -> Conv2dShape {
    Conv2dShape {
        batch,
        in_h: h,
        in_w: h,
        in_c: c,
        kernel_h: 3,
        kernel_w: 3,
        out_c: f,
        stride: [1, 1],
        dilation: [1, 1],
        pad_before: [0, 0],
        pad_after: [0, 0],
    }
}

fn pool(batch: usize, h: usize, c: usize) -> Pool2dShape {
    Pool2dShape {
        batch,
        in_h: h,
        in_w: h,
        channels: c,
        window: [2, 2],
        stride: [2, 2],
        pad_before: [0, 0],
        pad_after: [0, 0],
    }
}

fn row(name: &str, seconds: f64, amount: f64, unit: &str) {
    println!(
        "{name:<44} {:>9.1} us {:>8.1} {unit}",
        seconds * 1e6,
        amount / seconds / 1e9
    );
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("BATCH and THREADS are integers"))
        .collect();
    let batch = args.first().copied().unwrap_or(128);
    let threads = args.get(1).copied().unwrap_or(1);
    set_thread_limit(threads);
    println!("batch {batch}, {threads} thread(s)");
    if let Ok(seconds) = std::env::var("FM_PROFILE_CONV1") {
        // Only the first layer's forward, for a profiler.
        let s = conv(batch, 28, 1, 32);
        let d = s.dims().unwrap();
        let (x, w) = (values(d.input_len, 1), values(d.kernel_len, 2));
        let mut y = vec![0.0; d.output_len];
        let t = best_secs(
            || conv2d_forward(&s, &x, &w, &mut y, 0).unwrap(),
            seconds.parse().unwrap_or(2.0),
        );
        row("conv 28x28x1 -> 32 forward", t, d.flops(), "GFLOP/s");
        return;
    }
    for (h, c, f) in [(28, 1, 32), (13, 32, 64), (5, 64, 64)] {
        let s = conv(batch, h, c, f);
        let d = s.dims().unwrap();
        let (x, w, dy) = (
            values(d.input_len, 1),
            values(d.kernel_len, 2),
            values(d.output_len, 3),
        );
        let (mut y, mut dx, mut dw) = (
            vec![0.0; d.output_len],
            vec![0.0; d.input_len],
            vec![0.0; d.kernel_len],
        );
        let name = format!("conv {h}x{h}x{c} -> {f}");
        let t = best(|| conv2d_forward(&s, &x, &w, &mut y, 0).unwrap());
        row(&format!("{name} forward"), t, d.flops(), "GFLOP/s");
        if c > 1 {
            let t = best(|| conv2d_backward_input(&s, &dy, &w, &mut dx, 0).unwrap());
            row(&format!("{name} back input"), t, d.flops(), "GFLOP/s");
        }
        let t = best(|| conv2d_backward_kernel(&s, &x, &dy, &mut dw, 0).unwrap());
        row(&format!("{name} back kernel"), t, d.flops(), "GFLOP/s");
    }
    for (h, c) in [(26, 32), (11, 64)] {
        let s = pool(batch, h, c);
        let d = s.dims().unwrap();
        let (x, dy) = (values(d.input_len, 4), values(d.output_len, 5));
        let (mut y, mut dx) = (vec![0.0; d.output_len], vec![0.0; d.input_len]);
        let bytes = 4.0 * d.input_len as f64;
        let t = best(|| max_pool2d_forward(&s, &x, &mut y).unwrap());
        row(&format!("max_pool {h}x{h}x{c} forward"), t, bytes, "GB/s");
        let t = best(|| max_pool2d_backward(&s, &x, &dy, &mut dx).unwrap());
        row(&format!("max_pool {h}x{h}x{c} backward"), t, bytes, "GB/s");
    }
    // Dense layers: (m, k, n) of forward, input gradient and kernel gradient.
    for (name, k, n) in [("dense 576->64", 576, 64), ("dense 784->128", 784, 128)] {
        for (what, m, kk, nn, ta, tb) in [
            ("forward", batch, k, n, false, false),
            ("back input", batch, n, k, false, true),
            ("back kernel", k, batch, n, true, false),
        ] {
            let a = values(m * kk, 6);
            let b = values(kk * nn, 7);
            let mut c = vec![0.0; m * nn];
            let t = best(|| {
                let av = if ta {
                    MatRef::row_major(&a, kk, m).unwrap().t()
                } else {
                    MatRef::row_major(&a, m, kk).unwrap()
                };
                let bv = if tb {
                    MatRef::row_major(&b, nn, kk).unwrap().t()
                } else {
                    MatRef::row_major(&b, kk, nn).unwrap()
                };
                sgemm(
                    1.0,
                    av,
                    bv,
                    0.0,
                    MatMut::row_major(&mut c, m, nn).unwrap(),
                    0,
                )
                .unwrap()
            });
            row(
                &format!("{name} {what} {m}x{kk}x{nn}"),
                t,
                2.0 * (m * kk * nn) as f64,
                "GFLOP/s",
            );
        }
    }
}
