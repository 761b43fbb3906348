//! Data-parallel training over MPI (`--features mpi`): `mpirun -np N fmc train` must end with the
//! weights of one process training on the same global batches, for the MLP and CNN examples with
//! Adam and SGD with momentum, on 2 ranks (an even split of the batch of 32) and 3 (11, 11, 10);
//! only rank 0 writes; the test set is evaluated sharded to the one-process figures; `--resume`
//! continues a run on another number of ranks.
//!
//! Runs `mpirun --allow-run-as-root --oversubscribe` (Open MPI), as CI does.
#![cfg(feature = "mpi")]

use fm_runtime::tensor::Tensor;
use fm_runtime::weights::load_weights;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `examples/NAME.fm` with its data paths made absolute. The CNN keeps its Dropout layers: a
/// rank draws, for its shard, the masks one process draws for those samples.
fn example(dir: &Path, name: &str) -> PathBuf {
    let data = repo().join("examples/data");
    let text = std::fs::read_to_string(repo().join(format!("examples/{name}.fm")))
        .unwrap()
        .replace("\"data/", &format!("\"{}/", data.display()));
    if name == "digits_cnn" {
        assert!(
            text.contains("Dropout"),
            "the CNN example has no Dropout to test"
        );
    }
    let path = dir.join(format!("{name}.fm"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `fmc train` (under `mpirun -np ranks` when `ranks > 0`) and returns its stdout and
/// stderr, in that order.
fn train(ranks: usize, file: &Path, run_dir: &Path, extra: &[&str]) -> String {
    let fmc = env!("CARGO_BIN_EXE_fmc");
    let mut cmd = if ranks > 0 {
        let mut c = Command::new("mpirun");
        c.args(["--allow-run-as-root", "--oversubscribe", "-np"])
            .arg(ranks.to_string())
            .arg(fmc);
        c
    } else {
        Command::new(fmc)
    };
    cmd.arg("train")
        .arg(file)
        .arg("--run-dir")
        .arg(run_dir)
        .args(["--threads", "1"])
        .args(extra)
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1");
    let out = cmd
        .output()
        .expect("runs fmc (is Open MPI's mpirun installed?)");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{ranks} ranks: fmc train failed:\n{stderr}{}",
        String::from_utf8_lossy(&out.stdout)
    );
    format!("{}{stderr}", String::from_utf8_lossy(&out.stdout))
}

/// The `test_loss: ... - test_accuracy: ...` line's values.
fn test_line(log: &str) -> Vec<(String, f64)> {
    let line = log
        .lines()
        .find(|l| l.starts_with("test_"))
        .unwrap_or_else(|| panic!("no test line in:\n{log}"));
    line.split(" - ")
        .map(|kv| {
            let (k, v) = kv.split_once(": ").unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

fn weights(run_dir: &Path) -> Vec<(String, Vec<f32>)> {
    load_weights(&run_dir.join("weights.safetensors"))
        .unwrap()
        .tensors
        .into_iter()
        .filter_map(|(name, t)| match t {
            Tensor::F32(a) => Some((name, a.iter().copied().collect())),
            Tensor::I32(_) => None,
        })
        .collect()
}

/// The largest difference of a tensor relative to its largest magnitude, over all tensors.
fn max_relative(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f64 {
    assert_eq!(
        a.iter().map(|t| &t.0).collect::<Vec<_>>(),
        b.iter().map(|t| &t.0).collect::<Vec<_>>()
    );
    let mut worst = 0f64;
    for ((name, x), (_, y)) in a.iter().zip(b) {
        let scale = x.iter().fold(0f64, |m, v| m.max(f64::from(v.abs())));
        let diff = x
            .iter()
            .zip(y)
            .fold(0f64, |m, (p, q)| m.max(f64::from((p - q).abs())));
        if scale > 0.0 {
            let r = diff / scale;
            assert!(r.is_finite(), "{name}");
            worst = worst.max(r);
        }
    }
    worst
}

/// The rows of `metrics.csv` without the timing columns.
fn metrics_csv(run_dir: &Path) -> Vec<Vec<f64>> {
    let text = std::fs::read_to_string(run_dir.join("metrics.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert!(
        header.contains(&"loss") && header.contains(&"accuracy"),
        "{header:?}"
    );
    lines
        .map(|l| {
            l.split(',')
                .zip(&header)
                .filter(|(_, h)| !matches!(**h, "seconds" | "samples_per_second"))
                .map(|(v, _)| v.parse().unwrap())
                .collect()
        })
        .collect()
}

fn check_equal_to_one_process(name: &str, optimizer: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let file = example(tmp.path(), name);
    let set = format!("optimizer={optimizer}");
    let args = ["--steps", "20", "--set", &set];
    let single = tmp.path().join("single");
    let single_log = train(0, &file, &single, &args);
    let w1 = weights(&single);
    let init = tmp.path().join("init");
    train(0, &file, &init, &["--steps", "1", "--set", &set]);
    // Training moved the weights well beyond the tolerance.
    assert!(max_relative(&w1, &weights(&init)) > 1e-3);
    for ranks in [2, 3] {
        let dir = tmp.path().join(format!("np{ranks}"));
        let log = train(ranks, &file, &dir, &args);
        let r = max_relative(&w1, &weights(&dir));
        eprintln!("{name} {optimizer}: {ranks} ranks, max relative difference {r:.2e}");
        assert!(r <= 1e-5, "{name} {optimizer} on {ranks} ranks: {r:e}");
        // Losses and metrics are those of the global batches.
        let (m1, m) = (metrics_csv(&single), metrics_csv(&dir));
        assert_eq!(m1.len(), m.len());
        for (a, b) in m1.iter().zip(m) {
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() <= 1e-4 * x.abs().max(1.0), "{a:?} vs {b:?}");
            }
        }
        // One progress line per epoch: only rank 0 reports.
        assert_eq!(log.matches("Epoch 1/").count(), 1, "{log}");
        // The test set, evaluated sharded (every rank its part), gives the one-process
        // figures: the same accuracy, the loss to its last printed digit.
        let (t1, t) = (test_line(&single_log), test_line(&log));
        assert_eq!(t1.len(), t.len());
        for ((k, a), (_, b)) in t1.iter().zip(&t) {
            assert!((a - b).abs() <= 1e-4, "{k}: {a} vs {b}");
        }
        assert_eq!(log.matches("test_loss").count(), 1, "{log}");
    }
}

#[test]
fn mlp_adam_matches_one_process() {
    check_equal_to_one_process("digits_mlp", "Adam(lr: 1e-3)");
}

#[test]
fn mlp_sgd_momentum_matches_one_process() {
    check_equal_to_one_process("digits_mlp", "SGD(lr: 0.05, momentum: 0.9)");
}

#[test]
fn cnn_adam_matches_one_process() {
    check_equal_to_one_process("digits_cnn", "Adam(lr: 1e-3)");
}

#[test]
fn cnn_sgd_momentum_matches_one_process() {
    check_equal_to_one_process("digits_cnn", "SGD(lr: 0.05, momentum: 0.9)");
}

/// Stopped after 10 steps on 2 ranks, resumed on 3: the weights of 20 steps in one process.
#[test]
fn resume_on_another_number_of_ranks() {
    let tmp = tempfile::tempdir().unwrap();
    let file = example(tmp.path(), "digits_mlp");
    let single = tmp.path().join("single");
    train(0, &file, &single, &["--steps", "20"]);
    let dir = tmp.path().join("run");
    train(2, &file, &dir, &["--steps", "10"]);
    let resume = dir.display().to_string();
    train(3, &file, &dir, &["--steps", "20", "--resume", &resume]);
    let r = max_relative(&weights(&single), &weights(&dir));
    assert!(r <= 1e-5, "{r:e}");
    // Rank 0 alone wrote the run directory: no stray temp files from other ranks.
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
}

/// A global batch of 2 on 3 ranks: shards of 1, 1 and 0 samples (the empty one contributes
/// nothing), still the one-process run.
#[test]
fn a_rank_with_an_empty_shard() {
    let tmp = tempfile::tempdir().unwrap();
    let file = example(tmp.path(), "digits_mlp");
    let args = ["--steps", "20", "--set", "batch_size=2"];
    let single = tmp.path().join("single");
    train(0, &file, &single, &args);
    let dir = tmp.path().join("np3");
    train(3, &file, &dir, &args);
    let r = max_relative(&weights(&single), &weights(&dir));
    assert!(r <= 1e-5, "{r:e}");
}

/// Gradients all-reduced bucket by bucket while the backward pass runs (one bucket per
/// parameter here, `--bucket-mb 0`) give the very weights of the same buckets sent after it
/// (`--no-overlap`), which equal one process's; `-v` reports the buckets once (rank 0).
#[test]
fn overlapped_buckets_change_no_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let file = example(tmp.path(), "digits_cnn");
    let args = ["--steps", "20", "--bucket-mb", "0"];
    let single = tmp.path().join("single");
    train(0, &file, &single, &args);
    let overlap = tmp.path().join("overlap");
    let log = train(3, &file, &overlap, &[&args[..], &["-v"]].concat());
    assert_eq!(log.matches("all-reduce: 8 bucket(s)").count(), 1, "{log}");
    assert!(
        log.contains("each sent as the backward pass computes it"),
        "{log}"
    );
    let after = tmp.path().join("after");
    train(3, &file, &after, &[&args[..], &["--no-overlap"]].concat());
    let (a, b) = (weights(&overlap), weights(&after));
    assert!(a == b, "overlap changed the weights");
    let r = max_relative(&weights(&single), &a);
    assert!(r <= 1e-5, "{r:e}");
}

/// Runs `fmc ARGS` (under `mpirun -np ranks` when `ranks > 0`): exit code, stdout, stderr.
fn fmc(ranks: usize, args: &[&str]) -> (i32, String, String) {
    let fmc = env!("CARGO_BIN_EXE_fmc");
    let mut cmd = if ranks > 0 {
        let mut c = Command::new("mpirun");
        c.args(["--allow-run-as-root", "--oversubscribe", "-np"])
            .arg(ranks.to_string())
            .arg(fmc);
        c
    } else {
        Command::new(fmc)
    };
    let out = cmd.args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `fmc eval` and `fmc predict` under `mpirun` run on rank 0 alone (the other ranks exit 0 at
/// once): the one-process output, printed once, the `.npy` written once.
#[test]
fn eval_and_predict_run_on_rank_0() {
    let tmp = tempfile::tempdir().unwrap();
    let file = example(tmp.path(), "digits_mlp");
    let dir = tmp.path().join("run");
    train(0, &file, &dir, &["--steps", "5"]);
    let w = dir.join("weights.safetensors");
    let (file, w) = (file.to_str().unwrap(), w.to_str().unwrap());
    let eval = ["eval", file, "--weights", w, "--threads", "1"];
    let one = fmc(0, &eval);
    let two = fmc(2, &eval);
    assert_eq!(one.0, 0, "{}", one.2);
    assert_eq!(two.0, 0, "{}", two.2);
    assert!(one.1.contains("loss"), "{}", one.1);
    assert_eq!(one.1, two.1);
    let images = repo().join("examples/data/digits-images-idx3-ubyte");
    let input = images.to_str().unwrap();
    let npy = tmp.path().join("y.npy");
    let predict = [
        "predict",
        file,
        "--weights",
        w,
        "--input",
        input,
        "--threads",
        "1",
    ];
    let one = fmc(0, &predict);
    let three = fmc(3, &predict);
    assert_eq!(three.0, 0, "{}", three.2);
    assert_eq!(one.1.lines().count(), 1797, "{}", one.2);
    assert_eq!(one.1, three.1);
    let out = [&predict[..], &["-o", npy.to_str().unwrap()]].concat();
    assert_eq!(fmc(2, &out).0, 0);
    assert!(npy.exists());
}
