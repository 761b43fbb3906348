//! Every example checks cleanly, and its `fmc summary` matches the golden file (Keras 3's
//! `model.summary()` layout, ASCII because stdout is not a terminal).

use fm_tests::{files, fmc, golden, root};

fn examples() -> Vec<String> {
    files(&root().join("examples"), "fm")
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn every_example_checks_without_diagnostics() {
    std::env::set_current_dir(root()).unwrap();
    let all = examples();
    assert!(all.len() >= 9);
    for name in all {
        let run = fmc(&["check", &format!("examples/{name}")]);
        assert_eq!(run.code, 0, "{name}:\n{}", run.stderr);
        assert_eq!(run.stderr, "", "{name} has diagnostics");
        assert_eq!(run.stdout, "", "check prints only diagnostics");
    }
}

#[test]
fn summaries_match_golden_files() {
    std::env::set_current_dir(root()).unwrap();
    let mut failures = Vec::new();
    for name in examples() {
        let run = fmc(&["summary", &format!("examples/{name}")]);
        assert_eq!(run.code, 0, "{name}:\n{}", run.stderr);
        let stem = name.trim_end_matches(".fm");
        let path = root().join(format!("tests/golden/summaries/{stem}.txt"));
        if let Some(diff) = golden(&path, &run.stdout) {
            failures.push(diff);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// `--batch-size N` adds the memory the JIT plans for one training step and for predict; the
/// arena grows with the batch, the arguments by the batch's inputs and targets only.
#[test]
fn summary_reports_the_planned_memory() {
    std::env::set_current_dir(root()).unwrap();
    let mut failures = Vec::new();
    for (name, batch) in [
        ("mnist_mlp", 32),
        ("mnist_cnn", 128),
        ("digits_two_heads", 16),
    ] {
        let run = fmc(&[
            "summary",
            &format!("examples/{name}.fm"),
            "--batch-size",
            &batch.to_string(),
        ]);
        assert_eq!(run.code, 0, "{name}:\n{}", run.stderr);
        let plain = fmc(&["summary", &format!("examples/{name}.fm")]).stdout;
        let added = run
            .stdout
            .strip_prefix(plain.as_str())
            .unwrap_or_else(|| panic!("{name}: the summary changed:\n{}", run.stdout));
        assert!(
            added.starts_with(&format!("Planned memory at batch size {batch}:\n")),
            "{added}"
        );
        let path = root().join(format!("tests/golden/summaries/memory/{name}_{batch}.txt"));
        if let Some(diff) = golden(&path, added) {
            failures.push(diff);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // The MLP's training arguments: 101,770 weights, Adam's two slots, 32 images and labels
    // (plus the step and learning-rate scalars).
    let mlp = fmc(&["summary", "examples/mnist_mlp.fm", "--batch-size", "32"]).stdout;
    assert!(
        mlp.contains("weights, optimizer state and batch 1.26 MB"),
        "{mlp}"
    );
    let zero = fmc(&["summary", "examples/mnist_mlp.fm", "--batch-size", "0"]);
    assert_eq!(zero.code, 2, "{}", zero.stderr);
}

#[test]
fn keras_parameter_counts() {
    std::env::set_current_dir(root()).unwrap();
    let cnn = fmc(&["summary", "examples/mnist_cnn.fm"]).stdout;
    assert!(cnn.contains(" Total params: 93,322 (364.54 KB)\n"), "{cnn}");
    assert!(cnn.contains(" Trainable params: 93,322 (364.54 KB)\n"));
    assert!(cnn.contains(" Non-trainable params: 0 (0.00 B)\n"));
    assert!(cnn
        .contains("| conv2d (Conv2D)                 | (None, 26, 26, 32)     |           320 |"));
    assert!(cnn
        .contains("| conv2d_1 (Conv2D)               | (None, 11, 11, 64)     |        18,496 |"));
    assert!(cnn
        .contains("| dense_1 (Dense)                 | (None, 10)             |           650 |"));
    let mlp = fmc(&["summary", "examples/mnist_mlp.fm"]).stdout;
    assert!(
        mlp.contains(" Total params: 101,770 (397.54 KB)\n"),
        "{mlp}"
    );
    let digits = fmc(&["summary", "examples/digits_mlp.fm"]).stdout;
    // 64 * 128 + 128 + 128 * 10 + 10
    assert!(
        digits.contains(" Total params: 9,610 (37.54 KB)\n"),
        "{digits}"
    );
}

#[test]
fn box_drawing_on_a_terminal() {
    std::env::set_current_dir(root()).unwrap();
    let mut out = Vec::new();
    let mut err = Vec::new();
    let term = fmc::cli::Terminal {
        stdout_is_tty: true,
        ..Default::default()
    };
    let args = ["fmc", "summary", "examples/mnist_mlp.fm"].map(Into::into);
    assert_eq!(fmc::cli::run(args, &mut out, &mut err, term), 0);
    let text = String::from_utf8(out).unwrap();
    let expected_head = "\
Model: \"mnist_mlp\"
┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┓
┃ Layer (type)                    ┃ Output Shape           ┃       Param # ┃
┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━┩
│ image (InputLayer)              │ (None, 28, 28)         │             0 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ flatten (Flatten)               │ (None, 784)            │             0 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ dense (Dense)                   │ (None, 128)            │       100,480 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ dense_1 (Dense)                 │ (None, 10)             │         1,290 │
└─────────────────────────────────┴────────────────────────┴───────────────┘
 Total params: 101,770 (397.54 KB)
 Trainable params: 101,770 (397.54 KB)
 Non-trainable params: 0 (0.00 B)
";
    assert!(text.starts_with(expected_head), "{text}");
    // `--ascii` wins over the terminal.
    let mut out = Vec::new();
    let args = ["fmc", "summary", "--ascii", "examples/mnist_mlp.fm"].map(Into::into);
    fmc::cli::run(args, &mut out, &mut err, term);
    assert!(String::from_utf8(out).unwrap().contains("+---"));
}

#[test]
fn summary_model_selection() {
    std::env::set_current_dir(root()).unwrap();
    let run = fmc(&["summary", "--model", "nope", "examples/mnist_cnn.fm"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("no model `nope`"));
    let run = fmc(&["summary", "--model", "cnn", "examples/mnist_cnn.fm"]);
    assert_eq!(run.code, 0);
}
