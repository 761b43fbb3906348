//! Golden IR dumps (`fmc compile --emit ir|ir-opt`) of examples: the train step a reader can
//! follow, before and after the optimization passes. Review changes with `cargo insta review`.

use fmc::cli::{run, Terminal};
use std::path::Path;

fn emit(example: &str, kind: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(example);
    let mut out = Vec::new();
    let mut err = Vec::new();
    let args = ["fmc", "compile", path.to_str().unwrap(), "--emit", kind];
    let code = run(
        args.iter().map(Into::into),
        &mut out,
        &mut err,
        Terminal::default(),
    );
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    String::from_utf8(out).unwrap()
}

#[test]
fn linear_regression_ir() {
    insta::assert_snapshot!(emit("linear_regression.fm", "ir"));
}

#[test]
fn digits_mlp_ir() {
    insta::assert_snapshot!(emit("digits_mlp.fm", "ir"));
}

#[test]
fn digits_mlp_ir_opt() {
    insta::assert_snapshot!(emit("digits_mlp.fm", "ir-opt"));
}

#[test]
fn digits_cnn_ir_opt() {
    insta::assert_snapshot!(emit("digits_cnn.fm", "ir-opt"));
}

/// Every example lowers to verified IR, and the passes shrink its train step.
#[test]
fn every_example_lowers_and_optimizes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".fm"))
        .collect();
    names.sort();
    assert!(names.len() >= 9);
    for name in names {
        let count = |text: &str| {
            text.lines()
                .filter(|l| l.trim_start().starts_with('%') && l.contains(" = "))
                .count()
        };
        let before = count(&emit(&name, "ir"));
        let after = count(&emit(&name, "ir-opt"));
        assert!(
            after < before,
            "{name}: {before} instructions before the passes, {after} after"
        );
    }
}
