//! `fmc compile --emit rust` goldens: what `model!` expands to for every example, pretty-printed
//! (insta snapshots in `snapshots/`; `BLESS=1` rewrites them). The emitter must
//! be deterministic and its output must parse; `macro_differential.rs` checks that it computes
//! what the interpreter does.

use fm_compiler::emit::rust::{emit_source, pretty, EmitError};
use fm_tests::{files, root};
use std::path::Path;

/// The emitted Rust of an example, with data paths relative to the repository root (as
/// `fmc compile examples/NAME.fm --emit rust` run from there prints them).
fn emit(stem: &str) -> String {
    let rel = if stem == "dqn_maze" {
        "examples/dqn/dqn_maze.fm".to_string()
    } else {
        format!("examples/{stem}.fm")
    };
    let source = std::fs::read_to_string(root().join(&rel)).unwrap();
    // The checker reads the files a model needs (word2vec's categorical weights) relative to
    // the working directory, as `fmc` run from the repository root does.
    std::env::set_current_dir(root()).unwrap();
    match emit_source(&source, Path::new(&rel), None) {
        Ok(code) => pretty(&code).unwrap(),
        Err(EmitError::Diagnostics(d)) => panic!("{stem}: {d:?}"),
        Err(EmitError::Message(m)) => panic!("{stem}: {m}"),
    }
}

#[test]
fn every_example_has_a_golden() {
    let mut stems: Vec<String> = files(&root().join("examples"), "fm")
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(stems.len() >= 12);
    // The `fmc`-only DQN of the `dqn` example crate.
    stems.push("dqn_maze".into());
    for stem in &stems {
        let text = emit(stem);
        assert_eq!(text, emit(stem), "{stem}: the emitter is not deterministic");
        fm_tests::assert_golden!(format!("emit_rust_{stem}"), text);
    }
}

#[test]
fn fmc_prints_the_same() {
    let path = root().join("examples/digits_mlp.fm");
    let run = fm_tests::fmc(&["compile", path.to_str().unwrap(), "--emit", "rust"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let source = std::fs::read_to_string(&path).unwrap();
    let code = emit_source(&source, &path, None).unwrap();
    assert_eq!(run.stdout, pretty(&code).unwrap());
    assert!(run.stdout.contains("pub struct DigitsMlp"));
}

/// Language 0.2 (language.md 9) as Rust: one function per training step, the lagged copy as
/// parameters the runtime updates, sampled inputs drawn by counter-based random calls, the
/// `target` declarations as the targets, and `predict` taking a sample count when the outputs
/// need only drawn inputs.
#[test]
fn language_0_2_compiles_to_rust() {
    let gan = emit("gan_digits");
    for needle in [
        "\n    fn train_step_disc(\n",
        "\n    fn train_step_gen(\n",
        "pub fn train_step_disc(",
        "pub fn predict(&self, samples: usize)",
        "ops::random_uniform(ctx, ",
        "// Training step `gen` (language.md 9.4)",
    ] {
        assert!(gan.contains(needle), "gan_digits: no `{needle}`");
    }
    let dqn = emit("dqn_maze");
    for needle in [
        "kind: LagKind::Copy { every: 100 }",
        "name: \"lag/qn/qn/dense.kernel\"",
        "name: \"action\"",
        "pub fn predict(&self, cell: ArrayViewD<'_, f32>)",
        "cell: ArrayViewD<'_, f32>,",
    ] {
        assert!(dqn.contains(needle), "dqn_maze: no `{needle}`");
    }
    let w2v = emit("word2vec");
    assert!(
        w2v.contains("ops::bucketize("),
        "word2vec: no categorical draw"
    );
    // No refusal is left: the CLI prints the GAN as the macro expands it.
    let path = root().join("examples/gan_digits.fm");
    let run = fm_tests::fmc(&["compile", path.to_str().unwrap(), "--emit", "rust"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("pub struct GanDigits"));
}

/// Metrics over model values (language.md 9.3) as Rust: evaluation and the train step return
/// each metric's batch mean as a result of its own (`ResultKind::Metric`), which the runtime
/// reports under its logged name (`macro_differential.rs` checks the numbers).
#[test]
fn metrics_over_model_values_compile_to_rust() {
    let rel = "tests/macro_models/value_metrics.fm";
    let source = std::fs::read_to_string(root().join(rel)).unwrap();
    let text = match emit_source(&source, Path::new(rel), None) {
        Ok(code) => pretty(&code).unwrap(),
        Err(EmitError::Diagnostics(d)) => panic!("{d:?}"),
        Err(EmitError::Message(m)) => panic!("{m}"),
    };
    for needle in ["ResultKind::Metric(0)", "ResultKind::Metric(5)"] {
        assert!(text.contains(needle), "no `{needle}`");
    }
    fm_tests::assert_golden!("emit_rust_value_metrics", text);
}
