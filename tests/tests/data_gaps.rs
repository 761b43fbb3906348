//! Issue 12's 0.1 gaps in the data path, end to end through `fmc` on both backends:
//! `train --x`/`eval --x` read a multi-input `.npz` as `predict` does, `y: standardize` is
//! undone by `predict` with the stored statistics, and `scale(f, offset: o)` maps inputs.

use fm_runtime::data::npy::{encode_npy, encode_npz};
use fm_runtime::data::{read_array, RawData};
use fm_tests::fmc;
use std::path::{Path, PathBuf};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fm-gaps-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A small deterministic generator (splitmix64) for the test data.
struct Gen(u64);
impl Gen {
    fn uniform(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
    }
}

fn eval_json(args: &[&str]) -> serde_json::Value {
    let r = fmc(args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    serde_json::from_str(r.stdout.trim()).unwrap()
}

/// y = 2 a0 - a1 + 3 b0 + 1, with the inputs in one `.npz` under the input names.
#[test]
fn train_and_eval_read_a_multi_input_npz() {
    let dir = tmp("multi");
    let mut g = Gen(7);
    let n = 256;
    let a: Vec<f32> = (0..n * 2).map(|_| g.uniform() * 2.0 - 1.0).collect();
    let b: Vec<f32> = (0..n).map(|_| g.uniform() * 2.0 - 1.0).collect();
    let y: Vec<f32> = (0..n)
        .map(|i| 2.0 * a[2 * i] - a[2 * i + 1] + 3.0 * b[i] + 1.0)
        .collect();
    let x = encode_npz(
        &[
            ("a", &[n, 2], &RawData::F32(a)),
            ("b", &[n, 1], &RawData::F32(b)),
        ],
        false,
    )
    .unwrap();
    std::fs::write(dir.join("x.npz"), x).unwrap();
    std::fs::write(dir.join("y.npy"), encode_npy(&[n, 1], &RawData::F32(y))).unwrap();
    let file = dir.join("two.fm");
    std::fs::write(
        &file,
        "model two {\n    input a: f32[2]\n    input b: f32[1]\n    output y = concat(a, b) -> Dense(1)\n}\ntrain two {\n    loss: mse\n    optimizer: Adam(lr: 0.05)\n    epochs: 40\n}\n",
    )
    .unwrap();
    let (x, y) = (s(&dir.join("x.npz")), s(&dir.join("y.npy")));
    for backend in ["interp", "jit"] {
        let run = dir.join(backend);
        let r = fmc(&[
            "train",
            &s(&file),
            "--x",
            &x,
            "--y",
            &y,
            "--test-x",
            &x,
            "--test-y",
            &y,
            "--backend",
            backend,
            "--run-dir",
            &s(&run),
            "-q",
        ]);
        assert_eq!(r.code, 0, "{backend}: {}", r.stderr);
        assert!(r.stdout.starts_with("test_loss: "), "{}", r.stdout);
        let weights = s(&run.join("weights.safetensors"));
        let logs = eval_json(&[
            "eval",
            &s(&file),
            "--weights",
            &weights,
            "--x",
            &x,
            "--y",
            &y,
            "--json",
            "--backend",
            backend,
        ]);
        // The variance of y is about 4.7; the linear model fits it almost exactly.
        let loss = logs["loss"].as_f64().unwrap();
        assert!(loss < 1e-3, "{backend}: eval loss {loss}");
    }
    // A key that is missing is named.
    let r = fmc(&["train", &s(&file), "--x", &y, "--y", &y, "-q"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("the model has 2 inputs (a, b): give an .npz whose keys are their names"),
        "{}",
        r.stderr
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A regression trained against standardized targets predicts in the targets' own units, and
/// `scale(f, offset: o)` maps the inputs (here [0, 255] to [-1, 1]).
#[test]
fn predict_undoes_standardize_and_scale_takes_an_offset() {
    let dir = tmp("standardize");
    let mut g = Gen(3);
    let n = 200;
    let x: Vec<f32> = (0..n).map(|_| (g.uniform() * 255.0).round()).collect();
    // In [-1, 1] units: y = 500 + 40 * (x / 127.5 - 1).
    let y: Vec<f32> = x
        .iter()
        .map(|&v| 500.0 + 40.0 * (v / 127.5 - 1.0))
        .collect();
    std::fs::write(dir.join("x.npy"), encode_npy(&[n, 1], &RawData::F32(x))).unwrap();
    std::fs::write(dir.join("y.npy"), encode_npy(&[n, 1], &RawData::F32(y))).unwrap();
    let file = dir.join("reg.fm");
    std::fs::write(
        &file,
        "data d {\n    train: npy(\"x.npy\", \"y.npy\")\n    x: scale(1 / 127.5, offset: -1)\n    y: standardize\n}\nmodel reg {\n    input x: f32[1]\n    output y = x -> Dense(1, name: \"fit\")\n}\ntrain reg {\n    data: d\n    loss: mse\n    optimizer: Adam(lr: 0.05)\n    epochs: 60\n}\n",
    )
    .unwrap();
    let summary = fmc(&["summary", &s(&file)]);
    assert!(
        summary
            .stdout
            .contains("   x: scale(0.00784313725490196, offset: -1)"),
        "{}",
        summary.stdout
    );
    std::fs::write(
        dir.join("probe.npy"),
        encode_npy(&[3, 1], &RawData::F32(vec![0.0, 127.5, 255.0])),
    )
    .unwrap();
    for backend in ["interp", "jit"] {
        let run = dir.join(backend);
        let r = fmc(&[
            "train",
            &s(&file),
            "--backend",
            backend,
            "--run-dir",
            &s(&run),
            "-q",
        ]);
        assert_eq!(r.code, 0, "{backend}: {}", r.stderr);
        let out = dir.join(format!("{backend}.npy"));
        let r = fmc(&[
            "predict",
            &s(&file),
            "--weights",
            &s(&run.join("weights.safetensors")),
            "--input",
            &s(&dir.join("probe.npy")),
            "--backend",
            backend,
            "-o",
            &s(&out),
        ]);
        assert_eq!(r.code, 0, "{backend}: {}", r.stderr);
        let got = read_array(&s(&out)).unwrap().data.to_f32();
        for (g, want) in got.iter().zip([460.0f32, 500.0, 540.0]) {
            assert!((g - want).abs() < 0.5, "{backend}: predicted {got:?}");
        }
        // The layer learnt the standardized relation: a slope of about 40 / std(y) = 1.7, not 40.
        let w = fm_runtime::weights::load_weights(&run.join("weights.safetensors")).unwrap();
        let (_, kernel) = w.tensors.iter().find(|(n, _)| n == "fit.kernel").unwrap();
        let k = kernel.to_f32()[[0, 0]];
        assert!((k - 1.73).abs() < 0.1, "{backend}: kernel {k}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
