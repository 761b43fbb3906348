//! End to end through the `fmc` driver (in process): training on the real digits data reaches
//! the accuracy Keras and PyTorch reach, eval and predict agree with it, resume is exact, and
//! bad inputs exit with status 1 and a coded message.

use fmc::cli::{run, Terminal};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs fmc; returns (exit code, stdout, stderr).
fn fmc(args: &[&str]) -> (i32, String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let argv = std::iter::once("fmc")
        .chain(args.iter().copied())
        .map(Into::into);
    let code = run(argv, &mut out, &mut err, Terminal::default());
    (
        code,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

fn example(name: &str) -> String {
    root().join("examples").join(name).display().to_string()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fm-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `test_accuracy: 0.9056` -> 0.9056
fn metric(line: &str, key: &str) -> f64 {
    line.split(" - ")
        .find_map(|p| p.trim().strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no `{key}` in {line:?}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn digits_mlp_trains_evaluates_and_predicts() {
    let dir = tmp("mlp");
    let run_dir = dir.join("run");
    let (code, out, err) = fmc(&[
        "train",
        &example("digits_mlp.fm"),
        "--run-dir",
        run_dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    // Keras and PyTorch reach 0.90 +- 0.01 with this model on this split.
    let acc = metric(out.trim(), "test_accuracy");
    assert!(acc >= 0.89, "test accuracy {acc}\n{err}");
    // One progress line per epoch when stderr is not a terminal.
    assert_eq!(
        err.lines().filter(|l| l.starts_with("Epoch ")).count(),
        20,
        "{err}"
    );
    assert!(err.contains("Epoch 20/20 - 45/45 - "), "{err}");
    for f in [
        "weights.safetensors",
        "metrics.csv",
        "metrics.jsonl",
        "summary.txt",
        "curves.svg",
        "digits_mlp.fm",
    ] {
        assert!(run_dir.join(f).exists(), "missing {f}");
    }
    let jsonl = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
    assert_eq!(jsonl.lines().count(), 20);

    // eval on the same test split gives the same numbers.
    let weights = run_dir.join("weights.safetensors");
    let (code, eval_out, err) = fmc(&[
        "eval",
        &example("digits_mlp.fm"),
        "--weights",
        weights.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        (metric(eval_out.trim(), "accuracy") - acc).abs() < 1e-4,
        "{eval_out} vs {out}"
    );

    // predict on the IDX images writes one row of 10 probabilities per sample.
    let pred = dir.join("pred.npy");
    let images = root().join("examples/data/digits-images-idx3-ubyte");
    let (code, _, err) = fmc(&[
        "predict",
        &example("digits_mlp.fm"),
        "--weights",
        weights.to_str().unwrap(),
        "--input",
        images.to_str().unwrap(),
        "-o",
        pred.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let bytes = std::fs::read(&pred).unwrap();
    let header = String::from_utf8_lossy(&bytes[10..128]);
    assert!(header.contains("'shape': (1797, 10)"), "{header}");
    let header_len = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!(bytes.len(), header_len + 1797 * 10 * 4);
    // Every row is a probability distribution.
    let row: Vec<f32> = bytes[header_len..header_len + 40]
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{row:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn digits_cnn_beats_keras_small_cnn() {
    let dir = tmp("cnn");
    let (code, out, err) = fmc(&[
        "train",
        &example("digits_cnn.fm"),
        "--run-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let acc = metric(out.trim(), "test_accuracy");
    // A small Keras CNN reaches 0.92-0.95 on this split (issue 4 asks for 0.93). This design
    // reached 0.953-0.969 over seeds 0-5 on the JIT; the seed-0 run the test makes gives 0.964
    // here, but the conv kernels' summation order depends on the CPU (AVX-512 or AVX2), so the
    // bound leaves room for that.
    assert!(acc >= 0.94, "test accuracy {acc}\n{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn resumed_run_ends_bit_identical() {
    let dir = tmp("resume");
    let file = example("digits_mlp.fm");
    let ckpt = "checkpoint={ monitor: loss, keep: last, every: 1 epoch }";
    let full = dir.join("full");
    let (code, _, err) = fmc(&[
        "train",
        &file,
        "-q",
        "--set",
        "epochs=2",
        "--set",
        ckpt,
        "--run-dir",
        full.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let first = dir.join("first");
    let (code, _, err) = fmc(&[
        "train",
        &file,
        "-q",
        "--set",
        "epochs=2",
        "--set",
        ckpt,
        "--steps",
        "45",
        "--run-dir",
        first.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let checkpoints: Vec<_> = std::fs::read_dir(first.join("checkpoints"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    let last = checkpoints
        .iter()
        .find(|p| {
            p.extension().is_some_and(|e| e == "safetensors")
                && !p.ends_with("early_stopping_best.safetensors")
        })
        .unwrap_or_else(|| panic!("no checkpoint in {checkpoints:?}"));
    let resumed = dir.join("resumed");
    let (code, _, err) = fmc(&[
        "train",
        &file,
        "-q",
        "--set",
        "epochs=2",
        "--set",
        ckpt,
        "--resume",
        last.to_str().unwrap(),
        "--run-dir",
        resumed.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let a = std::fs::read(full.join("weights.safetensors")).unwrap();
    let b = std::fs::read(resumed.join("weights.safetensors")).unwrap();
    let tensors = |bytes: &[u8]| {
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        bytes[8 + n..].to_vec()
    };
    assert!(
        tensors(&a) == tensors(&b),
        "resumed weights differ from the uninterrupted run"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_inputs_exit_1_with_a_coded_message() {
    let dir = tmp("bad");
    let file = example("digits_mlp.fm");
    // Missing data file.
    let (code, _, err) = fmc(&[
        "train",
        &file,
        "--x",
        "/nonexistent/x.npy",
        "--y",
        "/nonexistent/y.npy",
        "--run-dir",
        dir.join("r1").to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("E0401") && err.contains("/nonexistent/"),
        "{err}"
    );
    // Labels file given as images: wrong sample shape.
    let labels = root().join("examples/data/digits-labels-idx1-ubyte");
    let (code, _, err) = fmc(&[
        "train",
        &file,
        "--x",
        labels.to_str().unwrap(),
        "--y",
        labels.to_str().unwrap(),
        "--run-dir",
        dir.join("r2").to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("E0404"), "{err}");
    // A corrupt weights file.
    let bad = dir.join("bad.safetensors");
    std::fs::write(&bad, b"\xff\xff\xff\xff\xff\xff\xff\x7fgarbage").unwrap();
    let (code, _, err) = fmc(&["eval", &file, "--weights", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("E0410"), "{err}");
    // An unknown `--set` key is a diagnostic and exit 2.
    let (code, _, err) = fmc(&["train", &file, "--set", "epoks=3"]);
    assert_eq!(code, 2, "{err}");
    // --init with --resume is a command-line error.
    let (code, _, _) = fmc(&["train", &file, "--init", "a", "--resume", "b"]);
    assert_eq!(code, 2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The command line: `fmc train FILE --x X.npy --y Y.npy --init W --steps 3
/// --set batch_size=N --save OUT --backend interp` ends where Keras does after 3 steps.
#[test]
fn cli_three_steps_match_keras() {
    use fm_runtime::weights::load_weights;
    let dir = tmp("keras3");
    for case in [
        "opt_adam",
        "opt_rmsprop_momentum",
        "conv2d_same",
        "lstm",
        "batch_norm_dense",
    ] {
        let d = root().join("tests/reference/cases").join(case);
        let p = |f: &str| d.join(f).display().to_string();
        let out = dir.join(format!("{case}.safetensors"));
        let (code, _, err) = fmc(&[
            "train",
            &p("model.fm"),
            "-q",
            "--x",
            &p("x.npy"),
            "--y",
            &p("y.npy"),
            "--init",
            &p("init.safetensors"),
            "--steps",
            "3",
            "--set",
            "batch_size=64",
            "--save",
            out.to_str().unwrap(),
            "--backend",
            "interp",
            "--run-dir",
            dir.join(case).to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{case}: {err}");
        let got = load_weights(&out).unwrap();
        let want = load_weights(&d.join("expected.safetensors")).unwrap();
        let mut compared = 0;
        for (name, t) in &got.tensors {
            let Some(w) = want.get(&format!("step3/{name}")) else {
                continue;
            };
            for (a, b) in t.to_f32().iter().zip(w.to_f32().iter()) {
                assert!(
                    (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                    "{case}: {name}: {a} vs Keras {b}"
                );
            }
            compared += 1;
        }
        assert!(compared >= 2, "{case}: compared only {compared} tensors");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
