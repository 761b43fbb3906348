//! The JIT on a `concat` of 10,000 values (issue 13: its time and memory used to grow with the
//! square of the width: 4,000 inputs took 9.3 s and 238 MB, 6,000 took 2.8 GB and 10,000
//! aborted; now 10,000 take 0.6 s and 64 MB, as `split_concats` and the bound on fused kernels
//! keep every compiled function small). Alone in its test binary so that the process's peak
//! memory is this test's.

use fm_runtime::data::npy::write_npy;
use fm_runtime::tensor::Tensor;
use fm_tests::fmc;
use ndarray::{ArrayD, IxDyn};
use std::time::Instant;

/// Peak resident memory of this process in KiB (Linux), if known.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn a_10000_wide_concat_compiles_in_bounded_time_and_memory() {
    let dir = std::env::temp_dir().join(format!("fm-wide-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let width = 10_000;
    let args = vec!["a"; width].join(", ");
    let src = format!(
        "model c {{\n    input x: f32[4]\n    let a = x -> Dense(1)\n    output y = concat({args}) -> Dense(1)\n}}\n\
         train {{\n    loss: mse\n    optimizer: SGD(lr: 0.01)\n    epochs: 1\n    batch_size: 4\n}}\n"
    );
    let fm = dir.join("wide.fm");
    std::fs::write(&fm, src).unwrap();
    let x: Vec<f32> = (0..32).map(|i| i as f32 / 32.0).collect();
    let xs = dir.join("x.npy");
    let ys = dir.join("y.npy");
    write_npy(
        &xs,
        &Tensor::F32(ArrayD::from_shape_vec(IxDyn(&[8, 4]), x).unwrap()),
    )
    .unwrap();
    write_npy(
        &ys,
        &Tensor::F32(ArrayD::from_shape_vec(IxDyn(&[8, 1]), vec![0.5; 8]).unwrap()),
    )
    .unwrap();
    let start = Instant::now();
    let run = fmc(&[
        "-q",
        "train",
        fm.to_str().unwrap(),
        "--x",
        xs.to_str().unwrap(),
        "--y",
        ys.to_str().unwrap(),
        "--run-dir",
        dir.join("run").to_str().unwrap(),
        "--backend",
        "jit",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let took = start.elapsed();
    // Generous bounds for a loaded machine; the quadratic version needed far more of both.
    assert!(took.as_secs() < 60, "took {took:?}");
    if let Some(kib) = peak_rss_kib() {
        assert!(kib < 400 << 10, "peak memory {} MiB", kib >> 10);
    }
}
