//! `fmc train --resume` through the binary, as a user runs it: `--steps` and `epochs` count the
//! whole run, so `--steps A --save B` then `--resume B --steps N` writes the same weights file,
//! byte for byte, as `--steps N`, mid-epoch or not, with shuffling, dropout, a schedule and every
//! optimizer. Also: run directories (the `.fm` copy, `run.json`, the default checkpoint, failed
//! runs).

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `fmc ARGS` in `dir`; (exit code, stdout, stderr).
fn fmc(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fmc"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("run fmc");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let (code, _, err) = fmc(dir, args);
    assert_eq!(code, 0, "fmc {}:\n{err}", args.join(" "));
    err
}

/// `fmc -q train m.fm ARGS` in `dir`, which must succeed.
fn train(dir: &Path, args: &[&str]) {
    let mut all = vec!["-q", "train", "m.fm"];
    all.extend_from_slice(args);
    ok(dir, &all);
}

/// The bytes of `dir/file`.
fn bytes(dir: &Path, file: &str) -> Vec<u8> {
    std::fs::read(dir.join(file)).unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fm-resume-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A digits MLP with dropout, a warm-up-then-cosine schedule and `optimizer`, reading the
/// example data by a path relative to the file (copied next to it).
fn write_model(dir: &Path, optimizer: &str) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for f in ["digits-images-idx3-ubyte", "digits-labels-idx1-ubyte"] {
        std::fs::copy(root().join("examples/data").join(f), data.join(f)).unwrap();
    }
    let text = format!(
        "data digits {{
    train: idx(\"data/digits-images-idx3-ubyte\", \"data/digits-labels-idx1-ubyte\")
    test: split(0.2)
    x: scale(1 / 255)
}}

model m {{
    input image: f32[8, 8]
    output probs = image -> Flatten -> Dense(64, relu) -> Dropout(0.3) -> Dense(10, softmax)
}}

train {{
    data: digits
    loss: sparse_categorical_crossentropy
    optimizer: {optimizer}
    schedule: Cosine(warmup: 10 steps)
    metrics: [accuracy]
    epochs: 3
    batch_size: 32
    seed: 5
}}
"
    );
    let path = dir.join("m.fm");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn resumed_runs_write_the_same_bytes_as_straight_runs() {
    // 45 steps per epoch: resume points inside the first epoch, on its end, one step before the
    // second's end; the runs end mid-epoch (100) or at the end of the last epoch (135).
    let optimizers = [
        "SGD(lr: 0.05, momentum: 0.9, nesterov: true)",
        "Adam(lr: 1e-3)",
        "AdamW(lr: 1e-3, weight_decay: 0.01)",
        "RMSprop(lr: 1e-3, momentum: 0.5, global_clip_norm: 1.0)",
        "Adagrad(lr: 0.05)",
    ];
    for (k, optimizer) in optimizers.iter().enumerate() {
        let dir = tmp(&format!("opt{k}"));
        write_model(&dir, optimizer);
        for total in ["100", "135"] {
            let straight = format!("straight{total}.safetensors");
            train(&dir, &["--steps", total, "--save", &straight]);
            let a = bytes(&dir, &straight);
            for first in ["20", "45", "89"] {
                let part = format!("part{total}-{first}.safetensors");
                train(&dir, &["--steps", first, "--save", &part]);
                let resumed = format!("resumed{total}-{first}.safetensors");
                train(
                    &dir,
                    &["--resume", &part, "--steps", total, "--save", &resumed],
                );
                // The whole file, metadata and the running metrics of a cut epoch included.
                let b = bytes(&dir, &resumed);
                assert!(a == b, "{optimizer}: resumed at {first} of {total} differs");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn a_checkpoint_whose_step_disagrees_with_its_state_is_refused() {
    use fm_runtime::tensor::Tensor;
    use fm_runtime::weights::{load_weights, save_weights};
    let dir = tmp("step");
    write_model(&dir, "Adam(lr: 1e-3)");
    train(&dir, &["--steps", "20", "--save", "part.safetensors"]);
    let mut file = load_weights(&dir.join("part.safetensors")).unwrap();
    let step = file
        .tensors
        .iter_mut()
        .find(|(n, _)| n == "opt/step")
        .unwrap();
    let Tensor::I32(a) = &mut step.1 else {
        panic!("opt/step is not I32")
    };
    assert_eq!(a.iter().next(), Some(&20));
    a.fill(7);
    save_weights(&dir.join("edited.safetensors"), &file.tensors, &file.meta).unwrap();
    let (code, _, err) = fmc(
        &dir,
        &[
            "-q",
            "train",
            "m.fm",
            "--resume",
            "edited.safetensors",
            "--steps",
            "40",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("edited.safetensors"), "{err}");
    assert!(
        err.contains("`opt/step` holds 7") && err.contains("says step 20"),
        "{err}"
    );
    // The untouched file resumes.
    train(&dir, &["--resume", "part.safetensors", "--steps", "40"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn identical_runs_write_identical_weights_files() {
    let dir = tmp("identical");
    write_model(&dir, "Adam(lr: 1e-3)");
    train(&dir, &["--steps", "50"]);
    train(&dir, &["--steps", "50"]);
    // Stopped inside an epoch, with its running metrics saved: still no timing in the files.
    for file in ["weights.safetensors", "checkpoints/last.safetensors"] {
        let a = bytes(&dir.join("runs/m/1"), file);
        let b = bytes(&dir.join("runs/m/2"), file);
        assert!(a == b, "{file} differs between identical runs");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_resumed_run_continues_its_run_directory() {
    let dir = tmp("rundir");
    write_model(&dir, "Adam(lr: 1e-3)");
    // The uninterrupted run, and one stopped at step 20 then resumed twice: from its `--save`d
    // file (found through run.json), then from the run directory itself.
    ok(&dir, &["-q", "train", "m.fm"]);
    train(&dir, &["--steps", "20", "--save", "B1.safetensors"]);
    train(&dir, &["--resume", "B1.safetensors", "--steps", "70"]);
    let err = ok(&dir, &["train", "m.fm", "--resume", "runs/m/2"]);
    assert!(err.contains("run directory: runs/m/2"), "{err}");
    assert!(
        !dir.join("runs/m/3").exists(),
        "resume made a new run directory"
    );
    let straight = bytes(&dir, "runs/m/1/weights.safetensors");
    let resumed = bytes(&dir, "runs/m/2/weights.safetensors");
    assert!(
        straight == resumed,
        "resumed run differs from the uninterrupted one"
    );
    // The metrics are the whole run's: a step record per step (the run began with --steps),
    // and the csv's epoch records are the uninterrupted run's, less timings.
    let jsonl = std::fs::read_to_string(dir.join("runs/m/2/metrics.jsonl")).unwrap();
    let steps: Vec<u64> = jsonl
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(steps, (1..=135).collect::<Vec<u64>>());
    let untimed = |p: &Path| -> Vec<String> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| l.rsplitn(3, ',').nth(2).unwrap().to_string())
            .collect()
    };
    assert_eq!(
        untimed(&dir.join("runs/m/2/metrics.csv")),
        untimed(&dir.join("runs/m/1/metrics.csv"))
    );
    assert!(dir.join("runs/m/2/curves.svg").is_file());
    let info = std::fs::read_to_string(dir.join("runs/m/2/run.json")).unwrap();
    assert!(info.contains("\"finished\""), "{info}");
    // A directory without a checkpoint is an error naming it.
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    let (code, _, err) = fmc(&dir, &["train", "m.fm", "--resume", "empty"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("empty") && err.contains("no checkpoint"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_run_directory_copy_of_the_file_evaluates_as_is() {
    let dir = tmp("copy");
    write_model(&dir, "Adam(lr: 1e-3)");
    train(&dir, &["--steps", "45"]);
    let run = dir.join("runs/m/1");
    // Every epoch end leaves a checkpoint by default.
    assert!(run.join("checkpoints/last.safetensors").is_file());
    let copy = std::fs::read_to_string(run.join("m.fm")).unwrap();
    assert!(
        copy.contains("idx(\"../../../data/digits-images-idx3-ubyte\""),
        "{copy}"
    );
    // From another directory, by the copy alone.
    let elsewhere = tmp("copy-elsewhere");
    let copy_path = run.join("m.fm");
    let weights = run.join("weights.safetensors");
    let (code, out, err) = fmc(
        &elsewhere,
        &[
            "eval",
            copy_path.to_str().unwrap(),
            "--weights",
            weights.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("loss: "), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&elsewhere);
}

#[test]
fn a_failed_run_leaves_nothing_that_looks_finished() {
    let dir = tmp("failed");
    write_model(&dir, "Adam(lr: 1e-3)");
    train(&dir, &["--steps", "30"]);
    let run = dir.join("runs/m/1");
    let files = || -> Vec<Vec<u8>> {
        ["run.json", "m.fm", "metrics.jsonl", "weights.safetensors"]
            .iter()
            .map(|f| bytes(&run, f))
            .collect()
    };
    let before = files();
    // A resume that does not fit the checkpoint fails before its first step: into a new
    // directory, nothing is created; into the run's own, nothing is changed.
    let (code, _, err) = fmc(
        &dir,
        &[
            "train",
            "m.fm",
            "--resume",
            "runs/m/1",
            "--set",
            "seed=9",
            "--run-dir",
            "new",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("seed"), "{err}");
    assert!(!dir.join("new").exists());
    let (code, _, err) = fmc(
        &dir,
        &["train", "m.fm", "--resume", "runs/m/1", "--set", "seed=9"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        before == files(),
        "a failed resume changed the run directory"
    );
    assert!(!dir.join("runs/m/2").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
