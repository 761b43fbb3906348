//! Data validation before the first step, and the run stopped at a non-finite step: each bad
//! input is an E04xx naming the file, the sample and the element (issue 13).

use fm_runtime::data::npy::write_npy;
use fm_runtime::tensor::Tensor;
use fm_tests::{fmc, Run};
use ndarray::{ArrayD, IxDyn};
use std::path::{Path, PathBuf};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fm-validate-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn f32s(path: &Path, shape: &[usize], values: Vec<f32>) -> String {
    write_npy(
        path,
        &Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), values).unwrap()),
    )
    .unwrap();
    path.display().to_string()
}

fn i32s(path: &Path, shape: &[usize], values: Vec<i32>) -> String {
    write_npy(
        path,
        &Tensor::I32(ArrayD::from_shape_vec(IxDyn(shape), values).unwrap()),
    )
    .unwrap();
    path.display().to_string()
}

const REGRESSION: &str = "model r {\n    input x: f32[4]\n    output y = x -> Dense(1)\n}\n\
train {\n    loss: mse\n    optimizer: SGD(lr: 0.01)\n    epochs: 1\n    batch_size: 4\n}\n";

const TOKENS: &str = "model t {\n    input tokens: i32[8]\n    output p = tokens -> Embedding(50, 4) -> Flatten -> Dense(2, softmax)\n}\n\
train {\n    loss: sparse_categorical_crossentropy\n    optimizer: Adam(lr: 1e-3)\n    epochs: 1\n    batch_size: 4\n}\n";

/// x in [0, 1), y = sum of x: 20 samples.
fn regression_data(d: &Path) -> (String, Vec<f32>, Vec<f32>) {
    let x: Vec<f32> = (0..80).map(|i| ((i * 37) % 100) as f32 / 100.0).collect();
    let y: Vec<f32> = x.chunks(4).map(|r| r.iter().sum()).collect();
    let fm = d.join("r.fm");
    std::fs::write(&fm, REGRESSION).unwrap();
    (fm.display().to_string(), x, y)
}

fn train(fm: &str, x: &str, y: &str, run_dir: &Path, extra: &[&str]) -> Run {
    let rd = run_dir.display().to_string();
    let mut args = vec!["-q", "train", fm, "--x", x, "--y", y, "--run-dir", &rd];
    args.extend_from_slice(extra);
    fmc(&args)
}

#[test]
fn nan_and_infinity_are_found_before_the_first_step() {
    let d = dir("nan");
    let (fm, x, y) = regression_data(&d);
    let xs = f32s(&d.join("x.npy"), &[20, 4], x.clone());
    // NaN in a regression target.
    let mut bad_y = y.clone();
    bad_y[7] = f32::NAN;
    let ys = f32s(&d.join("ynan.npy"), &[20, 1], bad_y);
    let run = train(&fm, &xs, &ys, &d.join("run1"), &[]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.starts_with(&format!(
            "error[E0408]: {ys}: target 'y' is NaN at sample 7, element 0"
        )),
        "{}",
        run.stderr
    );
    // Inputs that a transform makes infinite: 0.5 * 1e39 overflows f32.
    let good_y = f32s(&d.join("y.npy"), &[20, 1], y);
    let scaled = format!(
        "data d {{\n    train: npy(\"x.npy\", \"y.npy\")\n    x: scale(1e39)\n}}\n{}",
        REGRESSION.replace("loss: mse", "data: d\n    loss: mse")
    );
    let sfm = d.join("scaled.fm");
    std::fs::write(&sfm, scaled).unwrap();
    let rd = d.join("run2").display().to_string();
    let run = fmc(&["-q", "train", sfm.to_str().unwrap(), "--run-dir", &rd]);
    assert_eq!(run.code, 1);
    // The first sample whose scaled value overflows: x[1] = 0.37, element 0 of sample 0 is 0.
    assert!(
        run.stderr.contains(
            "input 'x' is infinity at sample 0, element 1 after the data section's `x` transforms"
        ),
        "{}",
        run.stderr
    );
    assert!(run.stderr.starts_with("error[E0408]: "));
    let _ = good_y;
}

#[test]
fn token_ids_outside_the_vocabulary_are_errors() {
    let d = dir("tokens");
    let fm = d.join("t.fm");
    std::fs::write(&fm, TOKENS).unwrap();
    let labels = i32s(&d.join("y.npy"), &[20], (0..20).map(|i| i % 2).collect());
    for (bad, shown) in [(5000, "5000"), (-1, "-1"), (i32::MAX, "2147483647")] {
        let mut ids: Vec<i32> = (0..160).map(|i| i % 50).collect();
        ids[3 * 8 + 5] = bad;
        let x = i32s(&d.join("x.npy"), &[20, 8], ids);
        for cmd in ["train", "predict"] {
            let run = if cmd == "train" {
                train(fm.to_str().unwrap(), &x, &labels, &d.join("run"), &[])
            } else {
                // Untrained weights are enough: the ids are checked before the model runs.
                let w = d.join("w.safetensors");
                if !w.exists() {
                    let ok = i32s(
                        &d.join("ok.npy"),
                        &[20, 8],
                        (0..160).map(|i| i % 50).collect(),
                    );
                    let ws = w.display().to_string();
                    let r = train(
                        fm.to_str().unwrap(),
                        &ok,
                        &labels,
                        &d.join("ok"),
                        &["--save", &ws],
                    );
                    assert_eq!(r.code, 0, "{}", r.stderr);
                }
                fmc(&[
                    "predict",
                    fm.to_str().unwrap(),
                    "--weights",
                    w.to_str().unwrap(),
                    "--input",
                    &x,
                ])
            };
            assert_eq!(run.code, 1, "{cmd}: {}", run.stderr);
            assert!(
                run.stderr.starts_with(&format!(
                    "error[E0407]: {x}: token id {shown} at sample 3, element 5 of input 'tokens' is out of range: `embedding` has a vocabulary of 50, so ids must be 0..=49"
                )),
                "{cmd}: {}",
                run.stderr
            );
        }
    }
}

#[test]
fn empty_sets_and_bad_paths_are_reported_before_training() {
    let d = dir("empty");
    let (fm, x, y) = regression_data(&d);
    let xs = f32s(&d.join("x.npy"), &[20, 4], x);
    let ys = f32s(&d.join("y.npy"), &[20, 1], y);
    let x0 = f32s(&d.join("x0.npy"), &[0, 4], vec![]);
    let y0 = f32s(&d.join("y0.npy"), &[0, 1], vec![]);
    let run = train(&fm, &x0, &y0, &d.join("run1"), &[]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .starts_with(&format!("error[E0409]: {x0}: holds no samples")),
        "{}",
        run.stderr
    );
    // An empty test set: reported before training, not after.
    let run = train(
        &fm,
        &xs,
        &ys,
        &d.join("run2"),
        &["--test-x", &x0, "--test-y", &y0],
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .starts_with(&format!("error[E0409]: {x0}: holds no samples")),
        "{}",
        run.stderr
    );
    assert!(!d.join("run2").join("checkpoints").exists() || !run.stderr.contains("epoch"));
    // `--test-x` without `--test-y`: the flag to add is `--test-y` (it said `--y`).
    let run = train(&fm, &xs, &ys, &d.join("run2b"), &["--test-x", &xs]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.starts_with(&format!(
            "error[E0409]: {fm}: the model reads targets (y): give the test targets with `--test-y PATH`"
        )),
        "{}",
        run.stderr
    );
    assert!(!d.join("run2b").exists(), "nothing ran");
    // A `--save` into a directory that does not exist: E0411 before any step.
    let bad = d.join("no/such/dir/w.safetensors").display().to_string();
    let run = train(&fm, &xs, &ys, &d.join("run3"), &["--save", &bad]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .starts_with(&format!("error[E0411]: {bad}: cannot write")),
        "{}",
        run.stderr
    );
    assert!(!d.join("run3").exists(), "nothing ran");
    // predict: batch size 0 is a command-line error; 0 samples with -o is an error, not a
    // silent success that writes nothing.
    let w = d.join("w.safetensors").display().to_string();
    assert_eq!(
        train(&fm, &xs, &ys, &d.join("run4"), &["--save", &w]).code,
        0
    );
    let run = fmc(&[
        "predict",
        &fm,
        "--weights",
        &w,
        "--input",
        &xs,
        "--batch-size",
        "0",
    ]);
    assert_eq!(run.code, 2);
    let out = d.join("out.npy").display().to_string();
    let run = fmc(&["predict", &fm, "--weights", &w, "--input", &x0, "-o", &out]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .starts_with(&format!("error[E0409]: {x0}: holds no samples")),
        "{}",
        run.stderr
    );
    let bad_out = d.join("missing/out.npy").display().to_string();
    let run = fmc(&[
        "predict",
        &fm,
        "--weights",
        &w,
        "--input",
        &xs,
        "-o",
        &bad_out,
    ]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.starts_with("error[E0411]: "), "{}", run.stderr);
}

#[test]
fn a_diverging_run_stops_at_the_step_and_names_the_parameter() {
    let d = dir("diverge");
    let (_, x, y) = regression_data(&d);
    let fm = d.join("big_lr.fm");
    std::fs::write(&fm, REGRESSION.replace("lr: 0.01", "lr: 1e30")).unwrap();
    let xs = f32s(&d.join("x.npy"), &[20, 4], x);
    let ys = f32s(&d.join("y.npy"), &[20, 1], y);
    let w = d.join("w.safetensors");
    let ws = w.display().to_string();
    let run = train(
        fm.to_str().unwrap(),
        &xs,
        &ys,
        &d.join("run"),
        &["--save", &ws],
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .starts_with("error[E0408]: training stopped at step "),
        "{}",
        run.stderr
    );
    assert!(run
        .stderr
        .contains("the first parameter that is not finite is `dense."));
    assert!(!w.exists(), "no weights saved from a diverged run");
}

#[test]
fn messages_name_their_file() {
    let d = dir("messages");
    let fm = d.join("blocks.fm");
    std::fs::write(&fm, "block b(x) { return x -> relu }\n").unwrap();
    let run = fmc(&["train", fm.to_str().unwrap()]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        format!("error: `{}` declares no model\n", fm.display())
    );
    let (rfm, _, _) = regression_data(&d);
    let run = fmc(&["eval", &rfm, "--weights", "w.safetensors", "--y", "y.npy"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.starts_with(
            "error: the following required arguments were not provided:\n  --x <PATH>"
        ),
        "{}",
        run.stderr
    );
    // An unreadable (binary) data file: its bytes are not echoed into the message.
    let junk = d.join("junk.csv");
    std::fs::write(&junk, b"\x00\x01\xffGARBAGE\xfe\x00,\x07\n\x1b[31m\x00\x00").unwrap();
    let run = fmc(&[
        "-q",
        "train",
        &rfm,
        "--x",
        junk.to_str().unwrap(),
        "--y",
        junk.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1);
    assert!(
        !run.stderr.contains("GARBAGE") && !run.stderr.contains('\x1b'),
        "{:?}",
        run.stderr
    );
    assert!(
        run.stderr.contains(junk.to_str().unwrap()),
        "{}",
        run.stderr
    );
}

/// Resident memory high-water mark of this process in KiB (Linux), if known.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn a_gzip_bomb_is_an_error_within_the_memory_limit() {
    use flate2::write::GzEncoder;
    use std::io::Write;
    let d = dir("bomb");
    let (fm, x, _) = regression_data(&d);
    let xs = f32s(&d.join("x.npy"), &[20, 4], x);
    // One gzip member of 16 MiB of zeros is 16 KB; 64 of them concatenated (a multi-member
    // stream, which gzip readers join) expand to 1 GiB from a 1 MB file.
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&vec![0u8; 16 << 20]).unwrap();
    let member = enc.finish().unwrap();
    let bomb = d.join("y.npy.gz");
    std::fs::write(&bomb, member.repeat(64)).unwrap();
    assert!(std::fs::metadata(&bomb).unwrap().len() < 2 << 20);
    let before = peak_rss_kib();
    let start = std::time::Instant::now();
    let run = train(
        &fm,
        &xs,
        bomb.to_str().unwrap(),
        &d.join("run"),
        &["--memory-limit", "64M"],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        run.stderr,
        format!(
            "error[E0402]: {}: decompresses to more than 0.07 GB (the `--memory-limit`); if the data is really that large, decompress it once and give the uncompressed file\n",
            bomb.display()
        )
    );
    assert!(start.elapsed().as_secs() < 30, "{:?}", start.elapsed());
    // Bounded by the limit, not by the 1 GiB the file expands to (other tests of this binary
    // run alongside, hence the margin).
    if let (Some(a), Some(b)) = (before, peak_rss_kib()) {
        assert!(
            b.saturating_sub(a) < 400 << 10,
            "grew by {} MiB",
            (b - a) >> 10
        );
    }
}

#[test]
fn a_validation_split_that_takes_every_sample_names_the_file() {
    let d = dir("split");
    let (_, x, y) = regression_data(&d);
    let fm = d.join("split.fm");
    std::fs::write(
        &fm,
        REGRESSION.replace(
            "batch_size: 4\n",
            "batch_size: 4\n    validation: split(0.99)\n",
        ),
    )
    .unwrap();
    let xs = f32s(&d.join("x.npy"), &[20, 4], x);
    let ys = f32s(&d.join("y.npy"), &[20, 1], y);
    let run = train(fm.to_str().unwrap(), &xs, &ys, &d.join("run"), &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        run.stderr,
        format!(
            "error[E0409]: {}: no training samples are left: `validation: split(0.99)` takes all of them\n",
            fm.display()
        )
    );
    assert!(!d.join("run").exists(), "a failed run left its directory");
    // The other side: a split too small for one sample trained without validation, silently
    // (no `val_*` figures; Keras refuses it). The fraction is printed as written, not as 300
    // decimals.
    let run = train(
        fm.to_str().unwrap(),
        &xs,
        &ys,
        &d.join("run_small"),
        &["--set", "validation=split(1e-300)"],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.ends_with(
            "no validation samples: `validation: split(1e-300)` of 20 samples leaves none for validation; use a larger fraction\n"
        ),
        "{}",
        run.stderr
    );
    assert!(
        !d.join("run_small").exists(),
        "a failed run left its directory"
    );
}

/// Accepts `room` bytes, then fails like a closed pipe (`fmc predict ... | head`).
struct ClosingPipe {
    room: usize,
    got: Vec<u8>,
}

impl std::io::Write for ClosingPipe {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.room == 0 {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        let n = buf.len().min(self.room);
        self.room -= n;
        self.got.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `predict --samples N` with an absurd N: printed, the outputs stream batch by batch (and a
/// closed stdout ends the run); with `-o` they would have to fit in memory, which is checked
/// before the first batch.
#[test]
fn predicting_absurdly_many_samples_is_bounded() {
    let d = dir("samples");
    let (fm, x, y) = regression_data(&d);
    let xs = f32s(&d.join("x.npy"), &[20, 4], x);
    let ys = f32s(&d.join("y.npy"), &[20, 1], y);
    let w = d.join("w.safetensors").display().to_string();
    assert_eq!(
        train(&fm, &xs, &ys, &d.join("run"), &["--save", &w]).code,
        0
    );
    let gen = d.join("gen.fm");
    std::fs::write(
        &gen,
        "version 0.2\nmodel g {\n    input z: f32[4] ~ normal(0, 1)\n    output y = z -> Dense(1)\n}\n",
    )
    .unwrap();
    let gen = gen.display().to_string();
    let start = std::time::Instant::now();
    let mut out = ClosingPipe {
        room: 100,
        got: Vec::new(),
    };
    let mut err = Vec::new();
    let argv = [
        "fmc",
        "predict",
        &gen,
        "--weights",
        &w,
        "--samples",
        "99999999999999",
    ];
    let code = fmc::cli::run(
        argv.iter().map(Into::into),
        &mut out,
        &mut err,
        fmc::cli::Terminal::default(),
    );
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    assert!(err.is_empty(), "{}", String::from_utf8_lossy(&err));
    assert_eq!(out.got.len(), 100);
    assert!(start.elapsed().as_secs() < 30, "{:?}", start.elapsed());

    let npy = d.join("s.npy").display().to_string();
    let run = fmc(&[
        "predict",
        &gen,
        "--weights",
        &w,
        "--samples",
        "1000000000000",
        "-o",
        &npy,
    ]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        format!("error[E0409]: {npy}: the outputs of 1,000,000,000,000 samples take 3.64 TB (4.00 B each), more than this machine's memory (set a budget with `--memory-limit`); predict fewer samples at a time, or print them (without `-o`, one output is streamed)\n")
    );
    // The same check for outputs computed from an input file, under `--memory-limit` (a file
    // without a `train` section, whose training step would not fit in 64 bytes).
    let plain = d.join("plain.fm");
    std::fs::write(&plain, REGRESSION.split("train {").next().unwrap()).unwrap();
    let run = fmc(&[
        "--memory-limit",
        "64",
        "predict",
        plain.to_str().unwrap(),
        "--weights",
        &w,
        "--input",
        &xs,
        "-o",
        &npy,
    ]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.starts_with(&format!(
            "error[E0409]: {npy}: the outputs of 20 samples take 80.00 B (4.00 B each), more than the `--memory-limit` of 64.00 B"
        )),
        "{}",
        run.stderr
    );
    assert!(!Path::new(&npy).exists());
}

/// A data path naming a device that never ends (`/dev/zero`) was read until memory ran out; it
/// is read up to the memory budget and reported.
#[cfg(target_os = "linux")]
#[test]
fn a_device_that_never_ends_is_read_up_to_the_memory_budget() {
    let d = dir("device");
    let (fm, _, y) = regression_data(&d);
    let ys = f32s(&d.join("y.npy"), &[20, 1], y);
    let run = train(
        &fm,
        "/dev/zero",
        &ys,
        &d.join("run"),
        &["--memory-limit", "8M"],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.starts_with(
            "error[E0402]: /dev/zero: is not a regular file and holds more than 0.01 GB (the `--memory-limit`)"
        ),
        "{}",
        run.stderr
    );
}

/// A source, weights or model path naming a device that never ends (`/dev/zero`) was read until
/// memory ran out: a source is read up to 64 MiB, weights and models to import that are not
/// regular files up to the memory budget, then reported with exit status 1.
#[cfg(target_os = "linux")]
#[test]
fn sources_weights_and_imports_naming_a_device_are_read_up_to_a_bound() {
    for args in [
        vec!["check", "/dev/zero"],
        vec!["fmt", "--check", "/dev/zero"],
        vec!["compile", "--emit", "ast", "/dev/zero"],
    ] {
        let run = fmc(&args);
        assert_eq!(run.code, 1, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.starts_with(
                "error: cannot read `/dev/zero`: is larger than 64 MiB (the most a source may hold)"
            ),
            "{args:?}: {}",
            run.stderr
        );
    }
    let d = dir("device_weights");
    let (fm, x, _) = regression_data(&d);
    let xs = f32s(&d.join("x.npy"), &[20, 4], x);
    let out = d.join("y.npy");
    let run = fmc(&[
        "predict",
        &fm,
        "--weights",
        "/dev/zero",
        "--input",
        &xs,
        "-o",
        out.to_str().unwrap(),
        "--memory-limit",
        "8M",
    ]);
    refused(&run, "cannot read", &out);
    let fm_out = d.join("imported.fm");
    let run = fmc(&[
        "import",
        "/dev/zero",
        "-o",
        fm_out.to_str().unwrap(),
        "--memory-limit",
        "8M",
    ]);
    refused(&run, "cannot be read", &fm_out);
}

/// `run` stopped with exit status 1 at `/dev/zero` (`reading` is how the command words it) after
/// the 8 MiB budget, and wrote nothing to `out`.
fn refused(run: &Run, reading: &str, out: &Path) {
    assert_eq!(run.code, 1, "{}", run.stderr);
    let message = format!("/dev/zero: {reading}: is larger than 8 MiB (the `--memory-limit`)");
    assert!(run.stderr.contains(&message), "{}", run.stderr);
    assert!(!out.exists());
}
