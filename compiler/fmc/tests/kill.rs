//! `kill -9` at random points of `fmc train` with frequent checkpoints: whatever the moment,
//! every weights file the run left loads, and `--resume RUN_DIR` finishes with a weights file
//! byte-identical to the uninterrupted run's, leaving no temporary file behind.
//!
//! A handful of trials by default; `FM_KILL_TRIALS=100 cargo test --release -p fmc --test kill`
//! runs more (`FM_KILL_SEED` repeats a sequence of kill times).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fmc(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fmc"));
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

fn run_ok(dir: &Path, args: &[&str]) {
    let out = fmc(dir, args).output().unwrap();
    assert!(
        out.status.success(),
        "fmc {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// SplitMix64, for kill times.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[test]
fn killed_runs_resume_to_the_uninterrupted_result() {
    let trials: usize = std::env::var("FM_KILL_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let mut seed: u64 = std::env::var("FM_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("FM_KILL_SEED={seed}");
    let dir = std::env::temp_dir().join(format!("fm-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    for f in ["digits-images-idx3-ubyte", "digits-labels-idx1-ubyte"] {
        std::fs::copy(
            root().join("examples/data").join(f),
            dir.join("data").join(f),
        )
        .unwrap();
    }
    // Dropout, Adam and a checkpoint every 7 steps (45 steps per epoch, so checkpoints fall
    // inside epochs and on their ends), plus the per-epoch metrics and final files.
    std::fs::write(
        dir.join("m.fm"),
        "data digits {
    train: idx(\"data/digits-images-idx3-ubyte\", \"data/digits-labels-idx1-ubyte\")
    test: split(0.2)
    x: scale(1 / 255)
}

model m {
    input image: f32[8, 8]
    output probs = image -> Flatten -> Dense(64, relu) -> Dropout(0.3) -> Dense(10, softmax)
}

train {
    data: digits
    loss: sparse_categorical_crossentropy
    optimizer: Adam(lr: 1e-3)
    metrics: [accuracy]
    epochs: 4
    batch_size: 32
    seed: 3
    checkpoint: { monitor: loss, keep: last, every: 7 steps }
}
",
    )
    .unwrap();
    let started = Instant::now();
    run_ok(&dir, &["-q", "train", "m.fm", "--run-dir", "straight"]);
    let duration = started.elapsed();
    let expected = std::fs::read(dir.join("straight/weights.safetensors")).unwrap();

    let (mut finished_before_kill, mut no_checkpoint, mut resumed, mut mid_write) = (0, 0, 0, 0);
    for trial in 0..trials {
        let run = format!("run{trial}");
        // Uniform over the uninterrupted run's duration (compiling, training and writing).
        let at = Duration::from_micros(next(&mut seed) % (duration.as_micros() as u64).max(1));
        let mut child = fmc(&dir, &["-q", "train", "m.fm", "--run-dir", &run])
            .spawn()
            .unwrap();
        std::thread::sleep(at);
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        let run_dir = dir.join(&run);
        if status.success() {
            finished_before_kill += 1;
        }
        // Every complete weights file loads (a killed write leaves only a hidden temp file).
        for f in files(&run_dir) {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".safetensors") {
                fm_runtime::weights::load_weights(&run_dir.join(&f))
                    .unwrap_or_else(|e| panic!("trial {trial} (kill at {at:?}): {e}"));
            } else {
                assert!(
                    name.ends_with(".tmp") && name.starts_with('.') || !name.starts_with('.'),
                    "trial {trial}: unexpected file {}",
                    f.display()
                );
            }
        }
        if files(&run_dir)
            .iter()
            .any(|f| f.to_string_lossy().ends_with(".tmp"))
        {
            mid_write += 1;
        }
        if !run_dir.join("checkpoints/last.safetensors").exists() {
            // Killed before the first checkpoint: nothing to resume; a new run starts over.
            no_checkpoint += 1;
            let _ = std::fs::remove_dir_all(&run_dir);
            continue;
        }
        let out = fmc(&dir, &["-q", "train", "m.fm", "--resume", &run])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "trial {trial} (kill at {at:?}): resume failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = std::fs::read(run_dir.join("weights.safetensors")).unwrap();
        assert!(
            got == expected,
            "trial {trial} (kill at {at:?}): the resumed run's weights differ from the uninterrupted run's"
        );
        let leftovers: Vec<_> = files(&run_dir)
            .into_iter()
            .filter(|f| f.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "trial {trial}: {leftovers:?}");
        let info = std::fs::read_to_string(run_dir.join("run.json")).unwrap();
        assert!(info.contains("finished"), "trial {trial}: {info}");
        resumed += 1;
        let _ = std::fs::remove_dir_all(&run_dir);
    }
    eprintln!(
        "{trials} kills over a {duration:?} run: {resumed} resumed bit-identically ({mid_write} killed inside a write), {no_checkpoint} before the first checkpoint, {finished_before_kill} finished before the kill"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
