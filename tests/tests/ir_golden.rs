//! Golden IR dumps (`fmc compile --emit ir|ir-opt`) of examples: the train step a reader can
//! follow, before and after the passes (`BLESS=1` rewrites them); the text
//! form parses back; every example's kernel count is pinned.

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
    fm_tests::assert_golden!(emit("linear_regression.fm", "ir"));
}

#[test]
fn digits_mlp_ir() {
    fm_tests::assert_golden!(emit("digits_mlp.fm", "ir"));
}

#[test]
fn digits_mlp_ir_opt() {
    fm_tests::assert_golden!(emit("digits_mlp.fm", "ir-opt"));
}

#[test]
fn digits_cnn_ir_opt() {
    fm_tests::assert_golden!(emit("digits_cnn.fm", "ir-opt"));
}

/// Every example lowers to verified IR, and the passes shrink its train step.
#[test]
fn every_example_lowers_and_optimizes() {
    let names = example_names();
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

/// The example files, sorted.
fn example_names() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".fm"))
        .collect();
    names.sort();
    names
}

/// The functions of an `--emit ir|ir-opt` listing, each without its `// model` line.
fn functions(listing: &str) -> Vec<String> {
    listing
        .split("// model ")
        .skip(1)
        .map(|part| {
            let body = &part[part.find('\n').unwrap() + 1..];
            body.trim_end().to_string() + "\n"
        })
        .collect()
}

/// The printed IR parses back to the same function, for every example's train step and
/// inference, before the passes and after them (the kernel plan is chosen again by `fuse`).
#[test]
fn every_example_round_trips_through_text() {
    use fm_compiler::ir::{parse::parse_function, print::print_function};
    for name in example_names() {
        for kind in ["ir", "ir-opt"] {
            for text in functions(&emit(&name, kind)) {
                let f = parse_function(&text).unwrap_or_else(|e| panic!("{name} {kind}: {e}"));
                let f = if kind == "ir-opt" {
                    fm_compiler::passes::Pipeline::named(&["fuse"])
                        .unwrap()
                        .run(f)
                        .unwrap()
                        .0
                } else {
                    f
                };
                assert_eq!(print_function(&f), text, "{name} {kind}");
            }
        }
    }
}

/// Kernel counts of every example (each train step, then predict), pinned like tinygrad's
/// `check_schedule`: a fusion change that adds or removes kernels must update this table.
#[test]
fn kernel_counts_are_pinned() {
    let pinned: &[(&str, &[usize], usize)] = &[
        ("binary_classifier.fm", &[64], 7),
        ("digits_cnn.fm", &[100], 18),
        ("digits_mlp.fm", &[56], 12),
        ("digits_two_heads.fm", &[78], 14),
        ("gan_digits.fm", &[98, 80], 35),
        ("linear_regression.fm", &[16], 2),
        ("lstm_sequence.fm", &[2908], 915),
        ("mnist_cnn.fm", &[97], 17),
        ("mnist_mlp.fm", &[56], 12),
        ("resnet_tiny.fm", &[286], 28),
        ("text_transformer.fm", &[584], 113),
        ("vae_digits.fm", &[122], 38),
        ("word2vec.fm", &[55], 5),
    ];
    let mut actual = Vec::new();
    for name in example_names() {
        let mut counts: Vec<usize> = functions(&emit(&name, "ir-opt"))
            .iter()
            .map(|f| {
                let plan = &f[f.find("kernels {").unwrap()..];
                plan.lines().filter(|l| l.starts_with("    k")).count()
            })
            .collect();
        let predict = counts
            .pop()
            .unwrap_or_else(|| panic!("{name}: no functions"));
        actual.push((name, counts, predict));
    }
    let actual_ref: Vec<(&str, &[usize], usize)> = actual
        .iter()
        .map(|(n, t, p)| (n.as_str(), t.as_slice(), *p))
        .collect();
    assert_eq!(
        actual_ref, pinned,
        "kernels (each train step, predict) per example"
    );
}
