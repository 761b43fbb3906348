//! The training loop with mock backends: a softmax regression with a hand-written gradient
//! (trained on the real digits) and a scripted backend whose losses are given per epoch.

use fm_runtime::config::{
    AccuracyKind, Checkpoint, CheckpointKeep, DataSpec, EarlyStopping, Every, Loss, Metric,
    OptimizerKind, OptimizerSpec, OutputLoss, OutputMetric, Schedule, Source, TestSource,
    TrainSpec, Transform, Validation,
};
use fm_runtime::data::batch::SplitMix64;
use fm_runtime::data::{load_data, Column, Dataset, LoadOptions, ModelData, TensorSpec};
use fm_runtime::metrics::metric_defs;
use fm_runtime::tensor::{DType, Tensor};
use fm_runtime::train::progress::format_value;
use fm_runtime::train::{
    evaluate, fit_with_log, load_init, predict, Backend, FitOptions, ProgressMode, StepOutput,
};
use fm_runtime::weights::{load_weights, WeightsMeta};
use fm_runtime::{ErrorKind, RuntimeError};
use ndarray::{ArrayD, IxDyn};
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------------------
// Softmax regression: probs = softmax(x W + b), sparse cross-entropy, SGD with momentum (Keras:
// m = momentum * m - lr * g; w += m). Deterministic f32 arithmetic.

const FEATURES: usize = 64;
const CLASSES: usize = 10;

struct SoftmaxRegression {
    w: Vec<f32>,
    b: Vec<f32>,
    mw: Vec<f32>,
    mb: Vec<f32>,
    step: i32,
    /// Fail (like a crash) when asked for this step.
    fail_at: Option<i32>,
}

impl SoftmaxRegression {
    fn new(seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let w = (0..FEATURES * CLASSES)
            .map(|_| ((rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1)
            .collect();
        SoftmaxRegression {
            w,
            b: vec![0.0; CLASSES],
            mw: vec![0.0; FEATURES * CLASSES],
            mb: vec![0.0; CLASSES],
            step: 0,
            fail_at: None,
        }
    }

    fn forward(&self, x: &Tensor) -> Vec<f32> {
        let x = x.as_f32().expect("f32 inputs");
        let x = x.as_slice().expect("contiguous");
        let rows = x.len() / FEATURES;
        let mut probs = vec![0f32; rows * CLASSES];
        for r in 0..rows {
            let logits: Vec<f32> = (0..CLASSES)
                .map(|j| {
                    self.b[j]
                        + (0..FEATURES)
                            .map(|i| x[r * FEATURES + i] * self.w[i * CLASSES + j])
                            .sum::<f32>()
                })
                .collect();
            let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let exps: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
            let sum: f32 = exps.iter().sum();
            for j in 0..CLASSES {
                probs[r * CLASSES + j] = exps[j] / sum;
            }
        }
        probs
    }

    fn loss(probs: &[f32], labels: &[i32]) -> f64 {
        let total: f32 = labels
            .iter()
            .enumerate()
            .map(|(r, &l)| -probs[r * CLASSES + l as usize].max(1e-7).ln())
            .sum();
        (total / labels.len() as f32) as f64
    }

    fn probs_tensor(probs: Vec<f32>) -> Tensor {
        let rows = probs.len() / CLASSES;
        Tensor::F32(ArrayD::from_shape_vec(IxDyn(&[rows, CLASSES]), probs).unwrap())
    }
}

impl Backend for SoftmaxRegression {
    fn train_step(
        &mut self,
        inputs: &[Tensor],
        targets: &[Tensor],
        lr: f32,
    ) -> Result<StepOutput, RuntimeError> {
        if self.fail_at == Some(self.step) {
            return Err(RuntimeError::backend("simulated crash"));
        }
        let probs = self.forward(&inputs[0]);
        let labels: Vec<i32> = targets[0].as_i32().unwrap().iter().copied().collect();
        let loss = Self::loss(&probs, &labels);
        let x = inputs[0].as_f32().unwrap();
        let x = x.as_slice().unwrap();
        let rows = labels.len();
        let mut g = probs.clone();
        for (r, &l) in labels.iter().enumerate() {
            g[r * CLASSES + l as usize] -= 1.0;
        }
        g.iter_mut().for_each(|v| *v /= rows as f32);
        for i in 0..FEATURES {
            for j in 0..CLASSES {
                let grad: f32 = (0..rows)
                    .map(|r| x[r * FEATURES + i] * g[r * CLASSES + j])
                    .sum();
                let k = i * CLASSES + j;
                self.mw[k] = 0.9 * self.mw[k] - lr * grad;
                self.w[k] += self.mw[k];
            }
        }
        for j in 0..CLASSES {
            let grad: f32 = (0..rows).map(|r| g[r * CLASSES + j]).sum();
            self.mb[j] = 0.9 * self.mb[j] - lr * grad;
            self.b[j] += self.mb[j];
        }
        self.step += 1;
        Ok(StepOutput {
            loss,
            outputs: vec![Self::probs_tensor(probs)],
            extra: vec![],
        })
    }

    fn evaluate(
        &mut self,
        inputs: &[Tensor],
        targets: &[Tensor],
    ) -> Result<StepOutput, RuntimeError> {
        let probs = self.forward(&inputs[0]);
        let labels: Vec<i32> = targets[0].as_i32().unwrap().iter().copied().collect();
        Ok(StepOutput {
            loss: Self::loss(&probs, &labels),
            outputs: vec![Self::probs_tensor(probs)],
            extra: vec![],
        })
    }

    fn predict(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
        Ok(vec![Self::probs_tensor(self.forward(&inputs[0]))])
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let t = |shape: &[usize], v: &Vec<f32>| {
            Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), v.clone()).unwrap())
        };
        vec![
            ("dense.kernel".into(), t(&[FEATURES, CLASSES], &self.w)),
            ("dense.bias".into(), t(&[CLASSES], &self.b)),
            (
                "opt/dense.kernel/momentum".into(),
                t(&[FEATURES, CLASSES], &self.mw),
            ),
            ("opt/dense.bias/momentum".into(), t(&[CLASSES], &self.mb)),
            (
                "opt/step".into(),
                Tensor::I32(ArrayD::from_shape_vec(IxDyn(&[]), vec![self.step]).unwrap()),
            ),
        ]
    }

    fn set_state(&mut self, state: &[(String, Tensor)]) -> Result<(), RuntimeError> {
        for (name, t) in state {
            let values = || t.to_f32().iter().copied().collect::<Vec<f32>>();
            match name.as_str() {
                "dense.kernel" => self.w = values(),
                "dense.bias" => self.b = values(),
                "opt/dense.kernel/momentum" => self.mw = values(),
                "opt/dense.bias/momentum" => self.mb = values(),
                "opt/step" => {
                    self.step = t
                        .as_i32()
                        .and_then(|a| a.iter().next().copied())
                        .unwrap_or(0)
                }
                other => return Err(RuntimeError::backend(format!("unknown tensor {other}"))),
            }
        }
        Ok(())
    }
}

fn digits_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/data")
        .join(name)
}

/// The digits as 64 features in [0, 1]; the README's ordered split.
fn digits() -> (Dataset, Dataset) {
    let spec = DataSpec {
        name: "digits".into(),
        train: Source::Idx {
            images: digits_path("digits-images-idx3-ubyte"),
            labels: digits_path("digits-labels-idx1-ubyte"),
        },
        test: Some(TestSource::Split(0.2)),
        x: vec![Transform::Scale {
            factor: 1.0 / 255.0,
            offset: 0.0,
        }],
        y: vec![],
    };
    let model = ModelData {
        inputs: vec![TensorSpec::new("image", DType::F32, &[FEATURES])],
        targets: vec![TensorSpec::new("probs", DType::I32, &[]).with_classes(CLASSES)],
    };
    // IDX [N, 8, 8] does not feed [64]; flatten by reading as [8, 8] then reshaping.
    let model_88 = ModelData {
        inputs: vec![TensorSpec::new("image", DType::F32, &[8, 8])],
        ..model
    };
    let data = load_data(&spec, &model_88, LoadOptions::default()).unwrap();
    let flat = |d: Dataset| Dataset {
        inputs: d
            .inputs
            .into_iter()
            .map(|t| {
                let n = t.len();
                Column::Dense(Tensor::F32(
                    t.to_f32()
                        .into_shape_with_order(IxDyn(&[n, FEATURES]))
                        .unwrap(),
                ))
            })
            .collect(),
        targets: d.targets,
    };
    (flat(data.train), flat(data.test.unwrap()))
}

fn train_spec(epochs: usize, lr: f64) -> TrainSpec {
    let losses = vec![OutputLoss {
        output: "probs".into(),
        loss: Loss::SparseCategoricalCrossentropy { from_logits: false },
        weight: 1.0,
        fused_with_activation: true,
    }];
    let sgd = OptimizerKind::Sgd {
        momentum: 0.9,
        nesterov: false,
    };
    TrainSpec {
        epochs,
        validation: Validation::Split(0.2),
        shuffle: true,
        seed: 7,
        metrics: vec![OutputMetric {
            output: "probs".into(),
            metric: Metric::Accuracy(AccuracyKind::Sparse),
        }],
        ..TrainSpec::new("softmax", losses, OptimizerSpec::new(sgd, lr))
    }
}

fn options(run_dir: Option<&Path>, mode: ProgressMode) -> FitOptions {
    FitOptions {
        run_dir: run_dir.map(Path::to_path_buf),
        progress: mode,
        meta: WeightsMeta::new("softmax", b"model softmax {}"),
        ..FitOptions::default()
    }
}

/// Checks one non-terminal progress line against Keras' layout and the logged numbers.
fn check_line(line: &str, epoch: u64, epochs: u64, steps: u64, logs: &[(String, f64)]) {
    let parts: Vec<&str> = line.split(" - ").collect();
    assert_eq!(parts[0], format!("Epoch {epoch}/{epochs}"), "{line}");
    assert_eq!(parts[1], format!("{steps}/{steps}"), "{line}");
    let secs = parts[2].strip_suffix('s').expect(line);
    assert!(secs.parse::<u64>().is_ok(), "{line}");
    let per = parts[3].strip_suffix("/step").expect(line);
    let digits = per.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    assert!(
        digits.parse::<u64>().is_ok() && ["s", "ms", "us"].contains(&&per[digits.len()..]),
        "{line}"
    );
    let expected: Vec<String> = logs
        .iter()
        .map(|(k, v)| format!("{k}: {}", format_value(*v)))
        .collect();
    assert_eq!(parts[4..].to_vec(), expected, "{line}");
}

#[test]
fn trains_digits_and_writes_the_run_directory() {
    let (train, test) = digits();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("runs/softmax/1");
    let mut backend = SoftmaxRegression::new(1);
    let mut log = Vec::new();
    let spec = train_spec(5, 0.05);
    let history = fit_with_log(
        &mut backend,
        &spec,
        &train,
        None,
        &options(Some(&run), ProgressMode::Lines),
        &mut log,
    )
    .unwrap();
    // 1437 training samples, validation split 0.2: 1149 train (36 batches of 32), 288 validation.
    assert_eq!(history.epochs.len(), 5);
    assert_eq!(history.step, 5 * 36);
    let first = &history.epochs[0];
    let last = &history.epochs[4];
    let keys: Vec<&str> = last.logs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, vec!["loss", "accuracy", "val_loss", "val_accuracy"]);
    assert!(last.get("loss").unwrap() < first.get("loss").unwrap());
    assert!(last.get("accuracy").unwrap() > 0.9, "{:?}", last.logs);
    let test_logs = evaluate(&mut backend, &test, 32, &metric_defs(&spec)).unwrap();
    assert!(test_logs[1].1 > 0.85, "test accuracy {:?}", test_logs);

    // Exactly one line per epoch, in Keras' layout.
    let text = String::from_utf8(log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    for (i, (line, record)) in lines.iter().zip(&history.epochs).enumerate() {
        check_line(line, i as u64 + 1, 5, 36, &record.logs);
    }

    // The run directory.
    let jsonl = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 5);
    let keys: Vec<&str> = jsonl
        .lines()
        .next()
        .unwrap()
        .split('"')
        .skip(1)
        .step_by(2)
        .collect();
    assert_eq!(
        keys,
        vec![
            "epoch",
            "step",
            "loss",
            "accuracy",
            "val_loss",
            "val_accuracy",
            "lr",
            "seconds",
            "samples_per_second"
        ]
    );
    assert_eq!(records[4]["epoch"], 5);
    assert_eq!(records[4]["step"], 180);
    assert_eq!(
        records[4]["loss"].as_f64().unwrap(),
        last.get("loss").unwrap()
    );
    assert_eq!(records[4]["lr"].as_f64().unwrap(), 0.05);
    assert!(records[4]["samples_per_second"].as_f64().unwrap() > 0.0);
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let csv_lines: Vec<&str> = csv.lines().collect();
    assert_eq!(csv_lines.len(), 6);
    assert_eq!(
        csv_lines[0],
        "epoch,step,loss,accuracy,val_loss,val_accuracy,lr,seconds,samples_per_second"
    );
    assert!(csv_lines[1].starts_with("1,36,"), "{}", csv_lines[1]);
    let svg = std::fs::read_to_string(run.join("curves.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<polyline"), "svg");
    for label in [
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
        "lr",
        "epoch",
    ] {
        assert!(
            svg_has_text(&svg, label),
            "curves.svg lacks the text {label}"
        );
    }
    let saved = load_weights(&run.join("weights.safetensors")).unwrap();
    assert_eq!(
        (saved.meta.epoch, saved.meta.step, saved.meta.model.as_str()),
        (5, 180, "softmax")
    );
    assert_eq!(saved.tensors.len(), 5);
    assert!(run.join("checkpoints").is_dir());
    // No temporary file anywhere.
    let names: Vec<String> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");

    // predict: batches concatenated in order; the argmax agrees with evaluate's accuracy.
    let probs = predict(&mut backend, &test.input_tensors(), 50).unwrap();
    assert_eq!(probs[0].shape(), &[360, 10]);
    let p = probs[0].as_f32().unwrap();
    let labels = test.targets[0].as_i32().unwrap();
    let correct = (0..360)
        .filter(|&r| {
            let row: Vec<f32> = (0..10).map(|j| p[[r, j]]).collect();
            let best = (0..10).fold(0, |b, j| if row[j] > row[b] { j } else { b });
            best as i32 == labels[r]
        })
        .count();
    assert_eq!(correct as f64 / 360.0, test_logs[1].1);

    // fmc plot on the run directory and on the jsonl file.
    let out = dir.path().join("plot.svg");
    fm_runtime::train::plot(&run, &out).unwrap();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), svg);
    fm_runtime::train::plot(&run.join("metrics.jsonl"), &out).unwrap();
    let e = fm_runtime::train::plot(&dir.path().join("nothing"), &out).unwrap_err();
    assert_eq!(e.kind, ErrorKind::MissingFile);
}

/// `fmc plot` on records written by hand or damaged: records without a step are drawn against
/// the epoch (they gave a blank picture and exit 0), a value of -1e308 is skipped (plotters
/// never returned from its range), and records with nothing to draw are an error naming the file.
#[test]
fn plot_draws_hand_written_records_and_refuses_what_has_nothing_to_draw() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.svg");
    let cases = [
        (
            "no_step.jsonl",
            "{\"epoch\":1,\"loss\":1.5}\n{\"epoch\":2,\"loss\":1.0}\n",
        ),
        // -1e308 is left out (its span with 1e300 overflows: plotters never returned).
        (
            "huge.jsonl",
            "{\"epoch\":1,\"loss\":-1e308}\n{\"epoch\":2,\"loss\":1e300}\n{\"epoch\":3,\"loss\":-1e300}\n",
        ),
        // The second record is cut: the first one is still drawn.
        ("cut.jsonl", "{\"epoch\":1,\"loss\":1.0}\n{\"epoch\":2,\"lo"),
    ];
    for (name, text) in cases {
        let jsonl = dir.path().join(name);
        std::fs::write(&jsonl, text).unwrap();
        fm_runtime::train::plot(&jsonl, &out).unwrap_or_else(|e| panic!("{name}: {e}"));
        let svg = std::fs::read_to_string(&out).unwrap();
        assert!(
            svg_has_text(&svg, "loss") && svg.contains("<polyline"),
            "{name}: {svg}"
        );
    }
    let jsonl = dir.path().join("strings.jsonl");
    std::fs::write(&jsonl, "{\"epoch\":1,\"loss\":\"abc\"}\n").unwrap();
    std::fs::remove_file(&out).unwrap();
    let e = fm_runtime::train::plot(&jsonl, &out).unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadFormat);
    assert_eq!(
        e.to_string(),
        format!(
            "{}: no record has both `epoch` and a metric value to plot (a finite number within 1e300)",
            jsonl.display()
        )
    );
    assert!(!out.exists());
}

/// plotters writes each text element as `<text ...>\nLABEL\n</text>`.
fn svg_has_text(svg: &str, label: &str) -> bool {
    svg.contains(&format!(">\n{label}\n</text>")) || svg.contains(&format!(">{label}</text>"))
}

fn final_state(b: &SoftmaxRegression) -> Vec<(String, Tensor)> {
    b.state()
}

/// Records without their timings, for comparing runs.
fn untimed(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if let Some(o) = v.as_object_mut() {
                o.remove("seconds");
                o.remove("samples_per_second");
            }
            v.to_string()
        })
        .collect()
}

fn resume_case(every: Every, fail_at: i32, steps: Option<u64>) {
    let (train, _) = digits();
    let mut spec = train_spec(4, 0.05);
    spec.schedule = Schedule::Cosine {
        warmup: Every::Steps(10),
        min_lr: 0.001,
    };
    spec.checkpoint = Some(Checkpoint {
        monitor: "val_loss".into(),
        keep: CheckpointKeep::Last,
        every,
    });
    let dir = tempfile::tempdir().unwrap();

    // Uninterrupted.
    let whole = dir.path().join("whole");
    let mut a = SoftmaxRegression::new(3);
    let mut opts = options(Some(&whole), ProgressMode::Quiet);
    opts.steps = steps;
    fit_with_log(&mut a, &spec, &train, None, &opts, &mut Vec::new()).unwrap();

    // Interrupted by a crash, then resumed by a fresh process (a fresh backend).
    let parts = dir.path().join("parts");
    let mut b = SoftmaxRegression::new(3);
    b.fail_at = Some(fail_at);
    let mut opts = options(Some(&parts), ProgressMode::Quiet);
    opts.steps = steps;
    let e = fit_with_log(&mut b, &spec, &train, None, &opts, &mut Vec::new()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Backend);
    let ckpt = parts.join("checkpoints/last.safetensors");
    let saved = load_weights(&ckpt).unwrap();
    assert!(saved.meta.step > 0 && saved.meta.step < fail_at as u64);
    let mut c = SoftmaxRegression::new(99); // different init: everything must come from the file
    let mut opts = options(Some(&parts), ProgressMode::Quiet);
    opts.steps = steps;
    opts.resume = Some(ckpt);
    let history = fit_with_log(&mut c, &spec, &train, None, &opts, &mut Vec::new()).unwrap();
    assert_eq!(history.step, steps.unwrap_or(4 * 36));

    assert_eq!(
        final_state(&c),
        final_state(&a),
        "resumed run differs from the uninterrupted one"
    );
    assert_eq!(
        untimed(&parts.join("metrics.jsonl")),
        untimed(&whole.join("metrics.jsonl"))
    );
    let wa = load_weights(&whole.join("weights.safetensors")).unwrap();
    let wc = load_weights(&parts.join("weights.safetensors")).unwrap();
    assert_eq!(wa.tensors, wc.tensors);
    assert_eq!((wa.meta.epoch, wa.meta.step), (wc.meta.epoch, wc.meta.step));
}

#[test]
fn resume_at_an_epoch_boundary_is_bit_identical() {
    // Crash in epoch 3 (steps 72..107); the last checkpoint is the end of epoch 2.
    resume_case(Every::Epochs(1), 90, None);
}

#[test]
fn resume_mid_epoch_is_bit_identical() {
    // Checkpoints every 10 steps; crash at step 95, resume from step 90 (inside epoch 3).
    resume_case(Every::Steps(10), 95, None);
}

#[test]
fn resume_from_a_step_checkpoint_on_an_epoch_boundary() {
    // Every 12 steps; step 72 ends epoch 2, so that checkpoint is written after validation.
    resume_case(Every::Steps(12), 80, None);
}

#[test]
fn resume_in_steps_mode_is_bit_identical() {
    // 100 steps: epochs of 36, 36 and 28 steps; Cosine decays over the 100 steps.
    resume_case(Every::Epochs(1), 60, Some(100));
}

#[test]
fn steps_mode_logs_every_step_at_f32_precision() {
    let (train, _) = digits();
    let mut spec = train_spec(100, 0.05);
    spec.validation = Validation::None;
    let dir = tempfile::tempdir().unwrap();
    let mut backend = SoftmaxRegression::new(5);
    let mut opts = options(Some(dir.path()), ProgressMode::Lines);
    opts.steps = Some(50);
    let mut log = Vec::new();
    let history = fit_with_log(&mut backend, &spec, &train, None, &opts, &mut log).unwrap();
    assert_eq!(history.step, 50);
    // 1437 samples: 45 batches per epoch, so 50 steps are one epoch and 5 batches.
    assert_eq!(history.epochs.len(), 2);
    let text = String::from_utf8(log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    check_line(lines[0], 1, 2, 45, &history.epochs[0].logs);
    check_line(lines[1], 2, 2, 5, &history.epochs[1].logs);
    let jsonl = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 50);
    assert_eq!(records[49]["step"], 50);
    assert_eq!(records[49]["epoch"], 2);
    // The batch loss at full f32 precision: the text reads back as the same f32, and the mean of
    // the first epoch's per-step losses weighted by batch size is the epoch loss.
    let losses: Vec<f32> = records
        .iter()
        .map(|r| r["loss"].as_f64().unwrap() as f32)
        .collect();
    let mut check = SoftmaxRegression::new(5);
    let order = fm_runtime::data::batch::epoch_order(1437, true, 7, 0);
    let batch = fm_runtime::data::batch::batch(&train, &order, 32, 0);
    let first = check
        .train_step(&batch.inputs, &batch.targets, 0.05)
        .unwrap();
    assert_eq!(losses[0], first.loss as f32);
    let sizes: Vec<f64> = (0..45)
        .map(|b| {
            if b < 44 {
                32.0
            } else {
                (1437 - 44 * 32) as f64
            }
        })
        .collect();
    let weighted: f64 = losses[..45]
        .iter()
        .zip(&sizes)
        .map(|(l, s)| *l as f64 * s)
        .sum::<f64>()
        / 1437.0;
    assert!((weighted - history.epochs[0].get("loss").unwrap()).abs() < 1e-6);
    // metrics.csv has the epochs; curves.svg plots against the step.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("metrics.csv"))
            .unwrap()
            .lines()
            .count(),
        3
    );
    assert!(svg_has_text(
        &std::fs::read_to_string(dir.path().join("curves.svg")).unwrap(),
        "step"
    ));
}

#[test]
fn init_from_weights_checks_names_and_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = SoftmaxRegression::new(1);
    a.w[0] = 42.0;
    a.mw[0] = 7.0;
    a.step = 12;
    let path = dir.path().join("w.safetensors");
    fm_runtime::weights::save_weights(&path, &a.state(), &WeightsMeta::default()).unwrap();
    let mut b = SoftmaxRegression::new(2);
    load_init(&mut b, &path).unwrap();
    assert_eq!(b.w, a.w);
    // Optimizer state is not taken by --init.
    assert_eq!((b.mw[0], b.step), (0.0, 0));
    // A mis-shaped tensor is named.
    let mut state = a.state();
    state[1].1 = Tensor::F32(ArrayD::zeros(IxDyn(&[11])));
    fm_runtime::weights::save_weights(&path, &state, &WeightsMeta::default()).unwrap();
    let e = load_init(&mut b, &path).unwrap_err();
    assert_eq!(e.code(), "E0410");
    assert!(
        e.to_string()
            .contains("tensor 'dense.bias' has shape [11], expected [10]"),
        "{e}"
    );
    // Resuming from plain weights (no train_state) is refused.
    let (train, _) = digits();
    let mut opts = options(None, ProgressMode::Quiet);
    opts.resume = Some(path.clone());
    fm_runtime::weights::save_weights(&path, &a.state(), &WeightsMeta::default()).unwrap();
    let e = fit_with_log(
        &mut b,
        &train_spec(1, 0.1),
        &train,
        None,
        &opts,
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("no train_state"), "{e}");
}

#[test]
fn validation_test_needs_a_test_split() {
    let (train, test) = digits();
    let mut spec = train_spec(1, 0.05);
    spec.validation = Validation::Test;
    let mut b = SoftmaxRegression::new(1);
    let e = fit_with_log(
        &mut b,
        &spec,
        &train,
        None,
        &options(None, ProgressMode::Quiet),
        &mut Vec::new(),
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::DataSetup);
    let h = fit_with_log(
        &mut b,
        &spec,
        &train,
        Some(&test),
        &options(None, ProgressMode::Quiet),
        &mut Vec::new(),
    )
    .unwrap();
    let direct = evaluate(&mut b, &test, 32, &metric_defs(&spec)).unwrap();
    assert_eq!(h.epochs[0].get("val_loss"), Some(direct[0].1));
    assert_eq!(h.epochs[0].get("val_accuracy"), Some(direct[1].1));
}

// ---------------------------------------------------------------------------------------------
// Scripted backend: the training loss of each epoch and the validation loss after it are given;
// the state is one counter of steps taken, so restored weights show which epoch they are from.

struct Scripted {
    train_losses: Vec<f64>,
    val_losses: Vec<f64>,
    steps_per_epoch: u64,
    step: u64,
    lrs: Vec<f32>,
}

impl Scripted {
    fn new(train_losses: &[f64], val_losses: &[f64], steps_per_epoch: u64) -> Self {
        Scripted {
            train_losses: train_losses.to_vec(),
            val_losses: val_losses.to_vec(),
            steps_per_epoch,
            step: 0,
            lrs: Vec::new(),
        }
    }
    fn epoch(&self) -> usize {
        (self.step.saturating_sub(1) / self.steps_per_epoch) as usize
    }
}

impl Backend for Scripted {
    fn train_step(
        &mut self,
        _: &[Tensor],
        _: &[Tensor],
        lr: f32,
    ) -> Result<StepOutput, RuntimeError> {
        self.step += 1;
        self.lrs.push(lr);
        Ok(StepOutput {
            loss: self.train_losses[self.epoch()],
            outputs: vec![],
            extra: vec![],
        })
    }
    fn evaluate(&mut self, _: &[Tensor], _: &[Tensor]) -> Result<StepOutput, RuntimeError> {
        Ok(StepOutput {
            loss: self.val_losses[self.epoch()],
            outputs: vec![],
            extra: vec![],
        })
    }
    fn predict(&mut self, _: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
        Ok(vec![])
    }
    fn state(&self) -> Vec<(String, Tensor)> {
        vec![(
            "counter".into(),
            Tensor::F32(ArrayD::from_elem(IxDyn(&[1]), self.step as f32)),
        )]
    }
    fn set_state(&mut self, state: &[(String, Tensor)]) -> Result<(), RuntimeError> {
        for (_, t) in state {
            self.step = t.to_f32()[[0]] as u64;
        }
        Ok(())
    }
}

/// 10 training samples + 2 validation samples (split 1/6), batch 5: two steps per epoch.
fn tiny() -> Dataset {
    Dataset::new(
        vec![Tensor::F32(ArrayD::zeros(IxDyn(&[12, 1])))],
        vec![Tensor::F32(ArrayD::zeros(IxDyn(&[12, 1])))],
    )
}

fn scripted_spec(epochs: usize) -> TrainSpec {
    let mut spec = train_spec(epochs, 0.1);
    spec.metrics = vec![];
    spec.batch_size = 5;
    spec.validation = Validation::Split(1.0 / 6.0);
    spec
}

#[test]
fn early_stopping_with_min_delta_patience_and_restore_best() {
    let mut spec = scripted_spec(10);
    spec.early_stopping = Some(EarlyStopping {
        monitor: "val_loss".into(),
        patience: 2,
        min_delta: 0.05,
        restore_best: true,
    });
    // Epoch 0 sets the best (1.0); 0.97 and 0.96 do not beat it by more than 0.05: stop after
    // epoch 2 (wait reaches patience) and restore the weights of epoch 0 (1-based: 1).
    let mut b = Scripted::new(
        &[1.0; 10],
        &[1.0, 0.97, 0.96, 0.5, 0.4, 0.3, 0.2, 0.1, 0.1, 0.1],
        2,
    );
    let mut log = Vec::new();
    let h = fit_with_log(
        &mut b,
        &spec,
        &tiny(),
        None,
        &options(None, ProgressMode::Lines),
        &mut log,
    )
    .unwrap();
    assert_eq!(h.epochs.len(), 3);
    assert_eq!((h.stopped_epoch, h.restored_epoch), (Some(2), Some(0)));
    assert_eq!(b.step, 2, "weights of the end of epoch 1 restored");
    let text = String::from_utf8(log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(
        lines[3],
        "Epoch 3: early stopping; restoring model weights from the end of the best epoch: 1."
    );
    check_line(
        lines[0],
        1,
        10,
        2,
        &[("loss".into(), 1.0), ("val_loss".into(), 1.0)],
    );

    // Without restore_best the weights stay; an improvement beyond min_delta resets the wait.
    spec.early_stopping = Some(EarlyStopping {
        monitor: "val_loss".into(),
        patience: 2,
        min_delta: 0.05,
        restore_best: false,
    });
    let mut b = Scripted::new(
        &[1.0; 10],
        &[1.0, 0.9, 0.89, 0.88, 0.7, 0.7, 0.7, 0.1, 0.1, 0.1],
        2,
    );
    let h = fit_with_log(
        &mut b,
        &spec,
        &tiny(),
        None,
        &options(None, ProgressMode::Quiet),
        &mut Vec::new(),
    )
    .unwrap();
    // Best 1.0 (e0), 0.9 (e1), then e2, e3 fail -> stop at epoch 3.
    assert_eq!(
        (h.stopped_epoch, h.restored_epoch, b.step),
        (Some(3), None, 8)
    );

    // Accuracy is maximised; a monitor the run lacks warns once and never stops.
    spec.early_stopping = Some(EarlyStopping {
        monitor: "val_accuracy".into(),
        patience: 1,
        min_delta: 0.0,
        restore_best: true,
    });
    let mut b = Scripted::new(&[1.0; 3], &[1.0; 3], 2);
    let mut log = Vec::new();
    let mut s3 = spec.clone();
    s3.epochs = 3;
    let h = fit_with_log(
        &mut b,
        &s3,
        &tiny(),
        None,
        &options(None, ProgressMode::Lines),
        &mut log,
    )
    .unwrap();
    assert_eq!((h.epochs.len(), h.stopped_epoch), (3, None));
    let text = String::from_utf8(log).unwrap();
    assert_eq!(
        text.matches("warning: early stopping monitors 'val_accuracy'")
            .count(),
        1,
        "{text}"
    );
}

#[test]
fn reduce_on_plateau_changes_the_rate_the_backend_gets() {
    let mut spec = scripted_spec(6);
    spec.schedule = Schedule::ReduceOnPlateau {
        monitor: "val_loss".into(),
        factor: 0.5,
        patience: 1,
        min_lr: 0.0,
    };
    let mut b = Scripted::new(&[1.0; 6], &[1.0, 0.9, 0.95, 0.95, 0.8, 0.8], 2);
    let mut log = Vec::new();
    let h = fit_with_log(
        &mut b,
        &spec,
        &tiny(),
        None,
        &options(None, ProgressMode::Lines),
        &mut log,
    )
    .unwrap();
    // Reductions after epochs 2, 3 and 5 (0-based); each epoch's two steps use the rate then.
    let per_epoch: Vec<f32> = b.lrs.chunks(2).map(|c| c[0]).collect();
    assert_eq!(per_epoch, vec![0.1, 0.1, 0.1, 0.05, 0.025, 0.025]);
    assert!(b.lrs.chunks(2).all(|c| c[0] == c[1]));
    let logged: Vec<f32> = h.epochs.iter().map(|r| r.lr).collect();
    assert_eq!(logged, per_epoch);
    let text = String::from_utf8(log).unwrap();
    assert!(
        text.contains("Epoch 3: ReduceLROnPlateau reducing learning rate to 0.05."),
        "{text}"
    );
    assert!(
        text.contains("Epoch 4: ReduceLROnPlateau reducing learning rate to 0.025."),
        "{text}"
    );
}

#[test]
fn checkpoints_keep_best_and_last() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = scripted_spec(5);
    spec.checkpoint = Some(Checkpoint {
        monitor: "val_loss".into(),
        keep: CheckpointKeep::Best,
        every: Every::Epochs(1),
    });
    let mut b = Scripted::new(&[1.0; 5], &[0.5, 0.6, 0.4, 0.4, 0.7], 2);
    let mut log = Vec::new();
    fit_with_log(
        &mut b,
        &spec,
        &tiny(),
        None,
        &options(Some(dir.path()), ProgressMode::Lines),
        &mut log,
    )
    .unwrap();
    let best = load_weights(&dir.path().join("checkpoints/best.safetensors")).unwrap();
    // Best val_loss 0.4 first reached at epoch 3 (1-based); equal later values do not replace it.
    assert_eq!((best.meta.epoch, best.meta.step), (3, 6));
    assert_eq!(best.get("counter").unwrap().to_f32()[[0]], 6.0);
    // `keep: best` leaves the default `last.safetensors` of every epoch end beside it.
    let last = load_weights(&dir.path().join("checkpoints/last.safetensors")).unwrap();
    assert_eq!((last.meta.epoch, last.meta.step), (5, 10));
    let text = String::from_utf8(log).unwrap();
    let events: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("Epoch 1/") && l.contains("saving"))
        .collect();
    let path = dir
        .path()
        .join("checkpoints/best.safetensors")
        .display()
        .to_string();
    assert_eq!(
        events,
        vec![
            format!("Epoch 1: val_loss improved from inf to 0.50000, saving model to {path}"),
            format!("Epoch 3: val_loss improved from 0.50000 to 0.40000, saving model to {path}"),
        ]
    );

    // keep: last every 2 epochs, and always at the end of the run.
    let dir = tempfile::tempdir().unwrap();
    spec.checkpoint = Some(Checkpoint {
        monitor: "val_loss".into(),
        keep: CheckpointKeep::Last,
        every: Every::Epochs(2),
    });
    let mut b = Scripted::new(&[1.0; 5], &[0.5; 5], 2);
    let mut log = Vec::new();
    fit_with_log(
        &mut b,
        &spec,
        &tiny(),
        None,
        &options(Some(dir.path()), ProgressMode::Lines),
        &mut log,
    )
    .unwrap();
    let last = load_weights(&dir.path().join("checkpoints/last.safetensors")).unwrap();
    assert_eq!((last.meta.epoch, last.meta.step), (5, 10));
    let text = String::from_utf8(log).unwrap();
    let saves: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("saving model"))
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(saves, vec!["Epoch 2", "Epoch 4", "Epoch 5"]);
}

#[test]
fn early_stopping_state_survives_a_resume() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = scripted_spec(8);
    spec.early_stopping = Some(EarlyStopping {
        monitor: "val_loss".into(),
        patience: 3,
        min_delta: 0.0,
        restore_best: true,
    });
    spec.checkpoint = Some(Checkpoint {
        monitor: "val_loss".into(),
        keep: CheckpointKeep::Last,
        every: Every::Epochs(1),
    });
    let vals = [1.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.9, 0.9];
    let mut whole = Scripted::new(&[1.0; 8], &vals, 2);
    let h = fit_with_log(
        &mut whole,
        &spec,
        &tiny(),
        None,
        &options(Some(&dir.path().join("a")), ProgressMode::Quiet),
        &mut Vec::new(),
    )
    .unwrap();
    assert_eq!(
        (h.stopped_epoch, h.restored_epoch, whole.step),
        (Some(4), Some(1), 4)
    );

    // Stop after 3 epochs, then resume: the stop and the restore happen exactly as above.
    let mut short = spec.clone();
    short.epochs = 3;
    let part = dir.path().join("b");
    let mut first = Scripted::new(&[1.0; 8], &vals, 2);
    fit_with_log(
        &mut first,
        &short,
        &tiny(),
        None,
        &options(Some(&part), ProgressMode::Quiet),
        &mut Vec::new(),
    )
    .unwrap();
    let mut resumed = Scripted::new(&[1.0; 8], &vals, 2);
    let mut opts = options(Some(&part), ProgressMode::Quiet);
    opts.resume = Some(part.join("checkpoints/last.safetensors"));
    let h = fit_with_log(&mut resumed, &spec, &tiny(), None, &opts, &mut Vec::new()).unwrap();
    assert_eq!(
        (h.stopped_epoch, h.restored_epoch, resumed.step),
        (Some(4), Some(1), 4)
    );
}

#[test]
fn quiet_mode_prints_nothing() {
    let mut spec = scripted_spec(3);
    spec.early_stopping = Some(EarlyStopping {
        monitor: "val_loss".into(),
        patience: 1,
        min_delta: 0.0,
        restore_best: true,
    });
    let mut b = Scripted::new(&[1.0; 3], &[1.0, 2.0, 3.0], 2);
    let mut log = Vec::new();
    let h = fit_with_log(
        &mut b,
        &spec,
        &tiny(),
        None,
        &options(None, ProgressMode::Quiet),
        &mut log,
    )
    .unwrap();
    assert_eq!(h.stopped_epoch, Some(1));
    assert!(log.is_empty());
}

#[test]
fn bar_mode_runs_without_a_terminal() {
    // On a non-terminal stderr the bar draws nothing; the run itself is unaffected.
    let mut b = Scripted::new(&[1.0; 2], &[1.0; 2], 2);
    let mut log = Vec::new();
    let h = fit_with_log(
        &mut b,
        &scripted_spec(2),
        &tiny(),
        None,
        &options(None, ProgressMode::Bar),
        &mut log,
    )
    .unwrap();
    assert_eq!((h.epochs.len(), b.step), (2, 4));
    assert!(log.is_empty());
}

/// `--steps A --save B` then `--resume B --steps N` (and the same with epochs): the step counts
/// are the whole run's, so the second command finishes where the uninterrupted run does, with
/// the same tensors and the same `metrics.jsonl`/`metrics.csv` (less timings).
fn steps_then_resume(first: u64, total: Option<u64>, epochs: usize) {
    let (train, _) = digits();
    let mut spec = train_spec(epochs, 0.05);
    spec.schedule = Schedule::Cosine {
        warmup: Every::Steps(10),
        min_lr: 0.001,
    };
    // Callbacks that judge whole epochs must not fire where `--steps` stopped the first part.
    spec.early_stopping = Some(EarlyStopping {
        monitor: "val_loss".into(),
        patience: 100,
        min_delta: 0.0,
        restore_best: false,
    });
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    let mut a = SoftmaxRegression::new(3);
    let mut opts = options(Some(&whole), ProgressMode::Quiet);
    opts.steps = total;
    let ha = fit_with_log(&mut a, &spec, &train, None, &opts, &mut Vec::new()).unwrap();

    let parts = dir.path().join("parts");
    let saved = dir.path().join("B1.safetensors");
    let mut b = SoftmaxRegression::new(3);
    let mut opts = options(Some(&parts), ProgressMode::Quiet);
    opts.steps = Some(first);
    opts.save = Some(saved.clone());
    fit_with_log(&mut b, &spec, &train, None, &opts, &mut Vec::new()).unwrap();
    let meta = load_weights(&saved).unwrap().meta;
    assert_eq!((meta.step, meta.epoch), (first, first / 36));
    // The default checkpoint holds the same state.
    let last = load_weights(&parts.join("checkpoints/last.safetensors")).unwrap();
    assert_eq!(last.meta.step, first);

    let mut c = SoftmaxRegression::new(99);
    let mut opts = options(Some(&parts), ProgressMode::Quiet);
    opts.steps = total;
    opts.resume = Some(saved);
    let hc = fit_with_log(&mut c, &spec, &train, None, &opts, &mut Vec::new()).unwrap();
    assert_eq!(hc.step, ha.step);
    assert_eq!(
        final_state(&c),
        final_state(&a),
        "resumed at step {first} differs from the uninterrupted run"
    );
    // A run begun with `--steps` logs steps in `metrics.jsonl` to its end.
    let files: &[&str] = if total.is_some() {
        &["metrics.jsonl", "metrics.csv"]
    } else {
        let rows = untimed(&parts.join("metrics.jsonl"));
        assert_eq!(rows.len() as u64, ha.step);
        assert!(rows.iter().all(|r| !r.contains("val_loss")));
        &["metrics.csv"]
    };
    for file in files {
        let rows = |dir: &Path| -> Vec<String> {
            if file.ends_with("jsonl") {
                untimed(&dir.join(file))
            } else {
                // Drop the two timing columns (the last two).
                std::fs::read_to_string(dir.join(file))
                    .unwrap()
                    .lines()
                    .map(|l| l.rsplitn(3, ',').nth(2).unwrap().to_string())
                    .collect()
            }
        };
        assert_eq!(rows(&parts), rows(&whole), "{file}, resumed at {first}");
    }
}

#[test]
fn steps_count_the_whole_run_when_resumed() {
    // 36 steps per epoch. Mid-epoch, on a boundary, and one step before a boundary.
    for first in [20, 36, 71] {
        steps_then_resume(first, Some(90), 4);
    }
}

#[test]
fn epochs_count_the_whole_run_when_resumed_from_steps() {
    steps_then_resume(50, None, 3);
}

#[test]
fn a_failed_run_leaves_nothing_that_looks_finished() {
    let (train, _) = digits();
    let spec = train_spec(3, 0.05);
    let dir = tempfile::tempdir().unwrap();
    // Fails inside the first epoch, before any checkpoint: the directory it made is removed.
    let early = dir.path().join("early");
    let mut b = SoftmaxRegression::new(3);
    b.fail_at = Some(10);
    let opts = options(Some(&early), ProgressMode::Quiet);
    fit_with_log(&mut b, &spec, &train, None, &opts, &mut Vec::new()).unwrap_err();
    assert!(!early.exists());
    // Fails in the second epoch: the default checkpoint of the first stays, marked failed,
    // and neither the final weights nor the curves (what a finished run has) exist.
    let late = dir.path().join("late");
    let mut b = SoftmaxRegression::new(3);
    b.fail_at = Some(50);
    let mut opts = options(Some(&late), ProgressMode::Quiet);
    opts.run_files = vec![("m.fm".into(), b"model m {}".to_vec())];
    fit_with_log(&mut b, &spec, &train, None, &opts, &mut Vec::new()).unwrap_err();
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(late.join("run.json")).unwrap()).unwrap();
    assert_eq!(info["status"], "failed");
    assert!(
        info["error"].as_str().unwrap().contains("simulated crash"),
        "{info}"
    );
    assert_eq!(std::fs::read(late.join("m.fm")).unwrap(), b"model m {}");
    assert!(!late.join("weights.safetensors").exists());
    assert!(!late.join("curves.svg").exists());
    let last = load_weights(&late.join("checkpoints/last.safetensors")).unwrap();
    assert_eq!(last.meta.step, 36);
    // Resumed, it finishes: `finished`, and the weights of an uninterrupted run.
    let mut c = SoftmaxRegression::new(99);
    let mut opts = options(Some(&late), ProgressMode::Quiet);
    opts.resume = Some(late.join("checkpoints/last.safetensors"));
    fit_with_log(&mut c, &spec, &train, None, &opts, &mut Vec::new()).unwrap();
    let info = std::fs::read_to_string(late.join("run.json")).unwrap();
    assert!(info.contains("finished"), "{info}");
    let mut a = SoftmaxRegression::new(3);
    let straight = dir.path().join("straight");
    let opts = options(Some(&straight), ProgressMode::Quiet);
    fit_with_log(&mut a, &spec, &train, None, &opts, &mut Vec::new()).unwrap();
    assert_eq!(final_state(&c), final_state(&a));
}
