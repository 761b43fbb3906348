//! Metrics against hand-computed numbers; schedules against the Keras formulas.

use fm_runtime::config::{
    AccuracyKind, Every, Loss, Metric, OptimizerKind, OptimizerSpec, OutputLoss, OutputMetric,
    Schedule, TrainSpec,
};
use fm_runtime::metrics::{metric_defs, MetricDef, MetricSet};
use fm_runtime::tensor::Tensor;
use fm_runtime::train::progress::{epoch_line, format_value};
use fm_runtime::train::schedule::LrSchedule;
use ndarray::ArrayD;

fn f(shape: &[usize], v: &[f32]) -> Tensor {
    Tensor::F32(ArrayD::from_shape_vec(shape.to_vec(), v.to_vec()).unwrap())
}
fn i(shape: &[usize], v: &[i32]) -> Tensor {
    Tensor::I32(ArrayD::from_shape_vec(shape.to_vec(), v.to_vec()).unwrap())
}

fn one(metric: Metric) -> MetricSet {
    MetricSet::new(vec![MetricDef::new(metric, 0, &metric.name())])
}

const PROBS: [f32; 12] = [0.1, 0.7, 0.2, 0.5, 0.3, 0.2, 0.2, 0.2, 0.6, 0.4, 0.4, 0.2];

#[test]
fn sparse_and_categorical_accuracy() {
    let mut m = one(Metric::Accuracy(AccuracyKind::Sparse));
    // argmax per row: 1, 0, 2, 0 (a tie takes the first index); labels 1, 1, 2, 1.
    m.update(&[f(&[4, 3], &PROBS)], &[i(&[4], &[1, 1, 2, 1])])
        .unwrap();
    assert_eq!(m.metric_values()[0].1, 0.5);
    m.update(&[f(&[1, 3], &[0.9, 0.05, 0.05])], &[i(&[1], &[0])])
        .unwrap();
    assert_eq!(m.metric_values()[0].1, 0.6);
    // Labels of shape [N, 1] work too.
    let mut m = one(Metric::Accuracy(AccuracyKind::Sparse));
    m.update(&[f(&[4, 3], &PROBS)], &[i(&[4, 1], &[1, 1, 2, 1])])
        .unwrap();
    assert_eq!(m.metric_values()[0].1, 0.5);

    let mut m = one(Metric::Accuracy(AccuracyKind::Categorical));
    let onehot = [0., 1., 0., 0., 1., 0., 0., 0., 1., 0., 1., 0.];
    m.update(&[f(&[4, 3], &PROBS)], &[f(&[4, 3], &onehot)])
        .unwrap();
    assert_eq!(m.metric_values()[0].1, 0.5);
}

#[test]
fn top_k_counts_ties_at_the_boundary_as_in() {
    let mut m = one(Metric::TopK(2));
    let preds = [0.9, 0.05, 0.05, 0.5, 0.3, 0.2, 0.1, 0.7, 0.2];
    // Row 0: label 2 ties with class 1 for second place -> in. Row 1: label 2 is third -> out.
    // Row 2: label 0 is third -> out.
    m.update(&[f(&[3, 3], &preds)], &[i(&[3], &[2, 2, 0])])
        .unwrap();
    assert!((m.metric_values()[0].1 - 1.0 / 3.0).abs() < 1e-15);
    assert_eq!(m.metric_values()[0].0, "top_2_accuracy");
    let mut m = one(Metric::TopK(1));
    m.update(&[f(&[4, 3], &PROBS)], &[i(&[4], &[1, 1, 2, 1])])
        .unwrap();
    // k = 1 with TF's tie rule: row 3 (0.4, 0.4) counts label 1 as in.
    assert_eq!(m.metric_values()[0].1, 0.75);
}

#[test]
fn binary_accuracy_precision_recall() {
    let preds = f(&[4, 1], &[0.2, 0.6, 0.5, 0.9]);
    let truth = f(&[4, 1], &[0.0, 1.0, 1.0, 1.0]);
    let mut set = MetricSet::new(vec![
        MetricDef::new(Metric::Accuracy(AccuracyKind::Binary), 0, "accuracy"),
        MetricDef::new(Metric::Precision, 0, "precision"),
        MetricDef::new(Metric::Recall, 0, "recall"),
    ]);
    // Decisions at 0.5 (strictly greater): 0, 1, 0, 1.
    set.update(&[preds], std::slice::from_ref(&truth)).unwrap();
    let v = set.metric_values();
    assert_eq!(v[0], ("accuracy".into(), 0.75));
    assert_eq!(v[1], ("precision".into(), 1.0));
    assert!((v[2].1 - 2.0 / 3.0).abs() < 1e-15);
    // On logits the threshold is 0.
    let mut logit = MetricDef::new(Metric::Accuracy(AccuracyKind::Binary), 0, "accuracy");
    logit.threshold = 0.0;
    let mut set = MetricSet::new(vec![logit]);
    set.update(&[f(&[4, 1], &[-1.0, 2.0, 0.0, 3.0])], &[truth])
        .unwrap();
    assert_eq!(set.metric_values()[0].1, 0.75);
    // No positive predictions: precision is 0, not NaN (Keras' divide_no_nan).
    let mut set = one(Metric::Precision);
    set.update(&[f(&[2], &[0.1, 0.2])], &[f(&[2], &[1.0, 0.0])])
        .unwrap();
    assert_eq!(set.metric_values()[0].1, 0.0);
}

#[test]
fn mse_mae_and_the_batch_weighted_loss() {
    let mut set = MetricSet::new(vec![
        MetricDef::new(Metric::Mse, 0, "mse"),
        MetricDef::new(Metric::Mae, 0, "mae"),
    ]);
    set.update(
        &[f(&[2, 2], &[1.0, 2.0, 3.0, 4.0])],
        &[f(&[2, 2], &[1.0, 0.0, 0.0, 4.0])],
    )
    .unwrap();
    assert_eq!(
        set.metric_values(),
        vec![("mse".into(), 3.25), ("mae".into(), 1.25)]
    );
    set.update_loss(1.0, 32);
    set.update_loss(2.0, 8);
    assert_eq!(set.loss(), 1.2);
    assert_eq!(set.results()[0], ("loss".into(), 1.2));
    set.reset();
    assert!(set.loss().is_nan());
    // Shapes that do not fit are an error, not a panic.
    assert!(set
        .update(&[f(&[2], &[1.0, 2.0])], &[f(&[3], &[1.0, 2.0, 3.0])])
        .is_err());
}

/// A train section whose `metrics: [...]` lists `metrics` for every output.
fn spec(losses: Vec<OutputLoss>, metrics: Vec<Metric>) -> TrainSpec {
    let metrics = losses
        .iter()
        .flat_map(|l| {
            metrics.iter().map(|&metric| OutputMetric {
                output: l.output.clone(),
                metric,
            })
        })
        .collect();
    let sgd = OptimizerKind::Sgd {
        momentum: 0.0,
        nesterov: false,
    };
    TrainSpec {
        batch_size: 2,
        shuffle: true,
        metrics,
        ..TrainSpec::new("m", losses, OptimizerSpec::new(sgd, 0.1))
    }
}

#[test]
fn metric_names_and_thresholds_from_the_train_section() {
    let out = |name: &str, loss| OutputLoss {
        output: name.into(),
        loss,
        weight: 1.0,
        fused_with_activation: false,
    };
    let s = spec(
        vec![
            out("spam", Loss::BinaryCrossentropy { from_logits: true }),
            out("score", Loss::Mse),
        ],
        vec![Metric::Accuracy(AccuracyKind::Binary), Metric::Mae],
    );
    let defs = metric_defs(&s);
    let names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["spam_accuracy", "spam_mae", "score_accuracy", "score_mae"]
    );
    // Keras thresholds binary metrics at 0.5 even on logits.
    assert_eq!(defs[0].threshold, 0.5);
    assert_eq!(defs[2].threshold, 0.5);
    let s = spec(
        vec![out(
            "probs",
            Loss::SparseCategoricalCrossentropy { from_logits: false },
        )],
        vec![Metric::TopK(5)],
    );
    assert_eq!(metric_defs(&s)[0].name, "top_5_accuracy");
}

/// Keras 3.15.1's `F1Score(average="macro")` on the same predictions, streamed in the same
/// two batches (tests/reference/f1/gen.py printed 0.7222221493721008 and 0.6666666269302368).
#[test]
fn f1_matches_keras() {
    let scores = [
        0.7, 0.2, 0.1, 0.1, 0.8, 0.1, 0.3, 0.3, 0.4, 0.5, 0.4, 0.1, 0.2, 0.2, 0.6, 0.1, 0.6, 0.3,
        0.4, 0.5, 0.1, 0.3, 0.1, 0.6,
    ];
    let labels = [0, 1, 2, 1, 2, 0, 1, 2];
    let mut m = one(Metric::F1(AccuracyKind::Sparse));
    m.update(&[f(&[5, 3], &scores[..15])], &[i(&[5], &labels[..5])])
        .unwrap();
    m.update(&[f(&[3, 3], &scores[15..])], &[i(&[3], &labels[5..])])
        .unwrap();
    let keras = 0.7222221493721008;
    let got = m.metric_values()[0].1;
    assert!((got - keras).abs() < 1e-6, "{got} vs Keras {keras}");
    // The same with one-hot targets.
    let mut onehot = vec![0f32; 24];
    for (row, &l) in labels.iter().enumerate() {
        onehot[row * 3 + l as usize] = 1.0;
    }
    let mut m = one(Metric::F1(AccuracyKind::Categorical));
    m.update(&[f(&[8, 3], &scores)], &[f(&[8, 3], &onehot)])
        .unwrap();
    assert!((m.metric_values()[0].1 - keras).abs() < 1e-6);

    let p = [0.9, 0.2, 0.6, 0.4, 0.7, 0.1, 0.55, 0.3];
    let y = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0];
    let mut m = one(Metric::F1(AccuracyKind::Binary));
    m.update(&[f(&[8, 1], &p)], &[f(&[8, 1], &y)]).unwrap();
    let keras = 0.6666666269302368;
    let got = m.metric_values()[0].1;
    assert!((got - keras).abs() < 1e-6, "{got} vs Keras {keras}");
    // Larger is better for early stopping and checkpoints.
    assert!(fm_runtime::metrics::higher_is_better("val_digit_f1"));
}

/// Per-output metrics: each output's own list, named after it.
#[test]
fn per_output_metrics_are_named_after_their_output() {
    let out = |name: &str, loss| OutputLoss {
        output: name.into(),
        loss,
        weight: 1.0,
        fused_with_activation: false,
    };
    let mut s = spec(
        vec![
            out(
                "digit",
                Loss::SparseCategoricalCrossentropy { from_logits: false },
            ),
            out("center", Loss::Mse),
        ],
        vec![],
    );
    s.metrics = vec![
        OutputMetric {
            output: "digit".into(),
            metric: Metric::Accuracy(AccuracyKind::Sparse),
        },
        OutputMetric {
            output: "center".into(),
            metric: Metric::Mae,
        },
    ];
    let defs = metric_defs(&s);
    let named: Vec<(&str, usize)> = defs.iter().map(|d| (d.name.as_str(), d.output)).collect();
    assert_eq!(named, vec![("digit_accuracy", 0), ("center_mae", 1)]);
}

#[test]
fn keras_progress_value_format() {
    assert_eq!(format_value(0.05123), "0.0512");
    assert_eq!(format_value(0.98415), "0.9841"); // 0.98415 is slightly below in binary
    assert_eq!(format_value(12.0), "12.0000");
    assert_eq!(format_value(1.2345e-5), "1.2345e-05");
    assert_eq!(format_value(0.0), "0.0000e+00");
    assert_eq!(format_value(-0.0001), "-1.0000e-04");
    let logs = vec![
        ("loss".to_string(), 0.0512),
        ("accuracy".to_string(), 0.9841),
    ];
    assert_eq!(
        epoch_line(3, 5, 1500, 3.2, &logs),
        "Epoch 3/5 - 1500/1500 - 3s - 2ms/step - loss: 0.0512 - accuracy: 0.9841"
    );
    assert_eq!(
        epoch_line(1, 1, 10, 0.0005, &[]),
        "Epoch 1/1 - 10/10 - 0s - 50us/step"
    );
    assert_eq!(
        epoch_line(1, 1, 2, 5.0, &[]),
        "Epoch 1/1 - 2/2 - 5s - 2s/step"
    );
}

fn close(a: f32, b: f64) {
    assert!(
        ((a as f64) - b).abs() <= 1e-7 * b.abs().max(1e-6),
        "{a} vs {b}"
    );
}

#[test]
fn exponential_decay_matches_keras() {
    let lr0 = 0.1;
    let s = LrSchedule::new(
        lr0,
        &Schedule::Exponential {
            rate: 0.5,
            every: Every::Steps(10),
            staircase: false,
        },
        7,
        100,
    );
    for step in [0u64, 1, 5, 10, 25, 99] {
        close(s.lr(step, step / 7), lr0 * 0.5f64.powf(step as f64 / 10.0));
    }
    let s = LrSchedule::new(
        lr0,
        &Schedule::Exponential {
            rate: 0.5,
            every: Every::Steps(10),
            staircase: true,
        },
        7,
        100,
    );
    close(s.lr(9, 1), 0.1);
    close(s.lr(10, 1), 0.05);
    close(s.lr(25, 3), 0.025);
    // `every: 2 epochs` with 5 steps per epoch decays over 10 steps.
    let s = LrSchedule::new(
        lr0,
        &Schedule::Exponential {
            rate: 0.5,
            every: Every::Epochs(2),
            staircase: false,
        },
        5,
        100,
    );
    close(s.lr(15, 3), lr0 * 0.5f64.powf(1.5));
}

#[test]
fn cosine_with_warmup_matches_keras() {
    let lr0 = 0.1;
    let min_lr = 1e-4;
    let s = LrSchedule::new(
        lr0,
        &Schedule::Cosine {
            warmup: Every::Steps(10),
            min_lr,
        },
        10,
        110,
    );
    close(s.lr(0, 0), 0.0);
    close(s.lr(5, 0), 0.05);
    close(s.lr(10, 1), lr0);
    // Halfway through the 100 decay steps: (lr - min_lr) / 2 + min_lr.
    close(s.lr(60, 6), (lr0 - min_lr) * 0.5 + min_lr);
    let t: f64 = 30.0 / 100.0;
    close(
        s.lr(40, 4),
        (lr0 - min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()) + min_lr,
    );
    close(s.lr(110, 11), min_lr);
    close(s.lr(500, 50), min_lr);
    let s = LrSchedule::new(
        lr0,
        &Schedule::Cosine {
            warmup: Every::Steps(0),
            min_lr: 0.0,
        },
        10,
        100,
    );
    close(s.lr(0, 0), lr0);
    close(
        s.lr(25, 2),
        lr0 * 0.5 * (1.0 + (std::f64::consts::PI / 4.0).cos()),
    );
    close(s.lr(50, 5), lr0 / 2.0);
    // Warm-up in epochs: 2 epochs of 10 steps.
    let s = LrSchedule::new(
        lr0,
        &Schedule::Cosine {
            warmup: Every::Epochs(2),
            min_lr: 0.0,
        },
        10,
        100,
    );
    close(s.lr(10, 1), 0.05);
}

#[test]
fn step_schedule_by_epochs_and_steps() {
    let s = LrSchedule::new(
        0.1,
        &Schedule::Step {
            every: Every::Epochs(3),
            gamma: 0.1,
        },
        10,
        100,
    );
    close(s.lr(0, 0), 0.1);
    close(s.lr(29, 2), 0.1);
    close(s.lr(30, 3), 0.01);
    close(s.lr(75, 7), 0.001);
    let s = LrSchedule::new(
        0.1,
        &Schedule::Step {
            every: Every::Steps(4),
            gamma: 0.5,
        },
        10,
        100,
    );
    close(s.lr(3, 0), 0.1);
    close(s.lr(4, 0), 0.05);
    close(s.lr(8, 0), 0.025);
    let s = LrSchedule::new(0.25, &Schedule::Constant, 10, 100);
    assert_eq!(s.lr(1234, 5), 0.25);
}

#[test]
fn reduce_on_plateau_follows_keras() {
    let schedule = Schedule::ReduceOnPlateau {
        monitor: "val_loss".into(),
        factor: 0.5,
        patience: 2,
        min_lr: 0.02,
    };
    let mut s = LrSchedule::new(0.1, &schedule, 10, 100);
    let mut lrs = Vec::new();
    // An improvement must beat the best by more than min_delta = 1e-4 (Keras' default).
    let values = [1.0, 0.99995, 0.99995, 0.5, 0.5, 0.6, 0.5, 0.5, 0.5, 0.5];
    for v in values {
        s.on_epoch_end(Some(v));
        lrs.push(s.lr(0, 0));
    }
    // After epochs 2, 5 and 7 (0-based) the rate halves; the third reduction is clipped to
    // min_lr, and at min_lr (compared as f32, as Keras does) it stops.
    assert_eq!(
        lrs,
        vec![0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.02, 0.02, 0.02]
    );
    // A missing monitor changes nothing.
    assert_eq!(s.on_epoch_end(None), None);
    // Accuracy is maximised.
    let schedule = Schedule::ReduceOnPlateau {
        monitor: "val_accuracy".into(),
        factor: 0.1,
        patience: 1,
        min_lr: 0.0,
    };
    let mut s = LrSchedule::new(1.0, &schedule, 10, 100);
    assert_eq!(s.on_epoch_end(Some(0.5)), None);
    assert_eq!(s.on_epoch_end(Some(0.6)), None);
    assert_eq!(s.on_epoch_end(Some(0.4)), Some(0.1));
}
