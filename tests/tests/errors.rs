//! Golden diagnostics: every `tests/golden/errors/NAME.fm` is checked with `fmc check` and its
//! rendered stderr and exit code compared with `NAME.stderr`. A file named after a code
//! (`e0203_...`) must produce that code; `w...` files must produce only warnings.

use fm_tests::{files, fmc, golden, root};

#[test]
fn error_cases_render_as_expected() {
    let dir = root().join("tests/golden/errors");
    // Relative paths keep the goldens independent of where the repository lives.
    std::env::set_current_dir(root()).unwrap();
    let cases = files(&dir, "fm");
    assert!(cases.len() >= 60, "only {} error cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let stem = case.file_stem().unwrap().to_string_lossy().into_owned();
        let rel = format!("tests/golden/errors/{stem}.fm");
        let run = fmc(&["check", &rel]);
        let actual = format!("{}exit code: {}\n", run.stderr, run.code);
        if let Some(code) = stem.split('_').next().filter(|c| c.len() == 5) {
            let code = code.to_uppercase();
            let wanted = if code.starts_with('W') {
                format!("warning[{code}]")
            } else {
                format!("error[{code}]")
            };
            if !run.stderr.contains(&wanted) {
                failures.push(format!("{stem}: expected {wanted} in\n{}", run.stderr));
            }
            let want_code = if code.starts_with('W') { 0 } else { 1 };
            if run.code != want_code {
                failures.push(format!(
                    "{stem}: exit code {} (expected {want_code})",
                    run.code
                ));
            }
        } else if run.code != 1 {
            failures.push(format!("{stem}: exit code {} (expected 1)", run.code));
        }
        if let Some(diff) = golden(&dir.join(format!("{stem}.stderr")), &actual) {
            failures.push(diff);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Runs the `setup` commands, then `fmc ARGS`, from the repository root, and compares the last
/// one's stderr and exit code with `tests/golden/runtime/NAME.stderr`. `TMP` in the arguments is
/// a fresh temporary directory, written `TMP` in the golden.
fn runtime_case(name: &str, setup: &[&[&str]], args: &[&str]) -> Option<String> {
    std::env::set_current_dir(root()).unwrap();
    let tmp = std::env::temp_dir().join(format!("fm-runtime-golden-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let tmp_str = tmp.to_str().unwrap();
    let run = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|a| a.replace("TMP", tmp_str)).collect();
        fmc(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    for cmd in setup {
        let r = run(cmd);
        assert_eq!(r.code, 0, "{name}: setup {cmd:?} failed:\n{}", r.stderr);
    }
    let r = run(args);
    let actual = format!("{}exit code: {}\n", r.stderr, r.code).replace(tmp_str, "TMP");
    let _ = std::fs::remove_dir_all(&tmp);
    golden(
        &root().join(format!("tests/golden/runtime/{name}.stderr")),
        &actual,
    )
}

/// Messages of commands that read data or weights (language.md section 8's E04xx).
#[test]
fn runtime_errors_render_as_expected() {
    let mut failures = Vec::new();
    // The labels of a model that forgot Flatten: named by their output, with the fix.
    failures.extend(runtime_case(
        "forgot_flatten",
        &[],
        &[
            "train",
            "tests/golden/runtime/forgot_flatten.fm",
            "--steps",
            "1",
            "--run-dir",
            "TMP/run",
        ],
    ));
    // Weights of another model: one line naming both models.
    failures.extend(runtime_case(
        "weights_of_another_model",
        &[&[
            "train",
            "examples/digits_mlp.fm",
            "--steps",
            "1",
            "--run-dir",
            "TMP/mlp",
        ]],
        &[
            "eval",
            "examples/digits_cnn.fm",
            "--weights",
            "TMP/mlp/weights.safetensors",
        ],
    ));
    // A checkpoint of another model to `--resume`: the same line, before training starts.
    failures.extend(runtime_case(
        "checkpoint_of_another_model",
        &[&[
            "train",
            "examples/digits_mlp.fm",
            "--steps",
            "1",
            "--run-dir",
            "TMP/mlp",
        ]],
        &[
            "train",
            "examples/digits_cnn.fm",
            "--resume",
            "TMP/mlp",
            "--run-dir",
            "TMP/cnn",
        ],
    ));
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_code_family_is_covered() {
    let dir = root().join("tests/golden/errors");
    let names: Vec<String> = files(&dir, "fm")
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    for family in ["e00", "e01", "e02", "e03", "w01"] {
        assert!(
            names.iter().any(|n| n.starts_with(family)),
            "no golden case for {family}xx"
        );
    }
}

#[test]
fn short_and_json_formats() {
    std::env::set_current_dir(root()).unwrap();
    let path = "tests/golden/errors/e0101_unknown_layer.fm";
    let short = fmc(&["--message-format", "short", "check", path]);
    assert_eq!(short.code, 1);
    assert_eq!(
        short.stderr,
        "tests/golden/errors/e0101_unknown_layer.fm:3:21: error[E0101]: unknown layer `Dnse`\n"
    );
    let json = fmc(&["--message-format", "json", "check", path]);
    let v: serde_json::Value = serde_json::from_str(json.stderr.trim()).unwrap();
    assert_eq!(v["code"], "E0101");
    assert_eq!(v["severity"], "error");
    assert_eq!(v["line"], 3);
    assert_eq!(v["column"], 21);
    assert_eq!(v["end_line"], 3);
    assert_eq!(v["end_column"], 25);
    assert_eq!(v["file"], path);
    assert_eq!(v["notes"][0], "help: did you mean `Dense`?");
    assert_eq!(v["labels"][0]["primary"], true);
}

#[test]
fn color_always_paints_and_never_does_not() {
    std::env::set_current_dir(root()).unwrap();
    let path = "tests/golden/errors/e0101_unknown_layer.fm";
    let colored = fmc(&["--color", "always", "check", path]);
    assert!(colored.stderr.contains("\x1b[1;31merror[E0101]\x1b[0m"));
    let plain = fmc(&["--color", "never", "check", path]);
    assert!(!plain.stderr.contains('\x1b'));
}
