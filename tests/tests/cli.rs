//! The `fmc` command line: exit codes, `explain`, `fmt`, `compile --emit ast`, stubs.

use fm_tests::{fmc, root};

#[test]
fn exit_codes() {
    std::env::set_current_dir(root()).unwrap();
    assert_eq!(fmc(&["check", "examples/mnist_cnn.fm"]).code, 0);
    assert_eq!(
        fmc(&["check", "tests/golden/errors/e0203_broadcast.fm"]).code,
        1
    );
    // Warnings alone succeed.
    assert_eq!(
        fmc(&["check", "tests/golden/errors/w0101_unused_let.fm"]).code,
        0
    );
    // `-q` hides warnings.
    assert_eq!(
        fmc(&["-q", "check", "tests/golden/errors/w0101_unused_let.fm"]).stderr,
        ""
    );
    // A missing file is a wrong input (1); a wrong command line is 2.
    let missing = fmc(&["check", "no/such/file.fm"]);
    assert_eq!(missing.code, 1);
    assert!(missing
        .stderr
        .starts_with("error: cannot read `no/such/file.fm`"));
    assert_eq!(fmc(&["frobnicate"]).code, 2);
    assert_eq!(fmc(&["check"]).code, 2);
    assert_eq!(fmc(&["--color", "sometimes", "check", "x.fm"]).code, 2);
    assert_eq!(fmc(&["--help"]).code, 0);
}

#[test]
fn explain_prints_long_explanations() {
    let run = fmc(&["explain", "E0203"]);
    assert_eq!(run.code, 0);
    assert!(run
        .stdout
        .starts_with("E0203: shapes do not match in elementwise arithmetic\n"));
    assert!(run.stdout.contains("padding: same"));
    let lower = fmc(&["explain", "w0101"]);
    assert_eq!(lower.code, 0);
    assert!(lower.stdout.contains("unused `let`"));
    // Syntax codes come from the parser crate.
    let syntax = fmc(&["explain", "E0001"]);
    assert_eq!(syntax.code, 0);
    assert!(syntax.stdout.starts_with("E0001"));
    let unknown = fmc(&["explain", "E9999"]);
    assert_eq!(unknown.code, 2);
    assert!(unknown.stderr.contains("E9999"));
}

#[test]
fn every_emitted_code_in_the_goldens_is_explained() {
    let dir = root().join("tests/golden/errors");
    for f in fm_tests::files(&dir, "stderr") {
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, _) in text.match_indices("[E").chain(text.match_indices("[W")) {
            let code = &text[i + 1..i + 6];
            assert_eq!(fmc(&["explain", code]).code, 0, "{code} in {}", f.display());
        }
    }
}

#[test]
fn fmt_check_and_rewrite() {
    let dir = std::env::temp_dir().join(format!("fmc-fmt-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let messy = dir.join("messy.fm");
    std::fs::write(
        &messy,
        "model   m {input x: f32[3]\noutput y = x->Dense(2)}\n",
    )
    .unwrap();
    let path = messy.to_str().unwrap();
    let check = fmc(&["fmt", "--check", path]);
    assert_eq!(check.code, 1, "{}", check.stderr);
    assert!(
        check
            .stdout
            .starts_with(&format!("--- {path}\n+++ {path} (formatted)\n@@ ")),
        "{}",
        check.stdout
    );
    // Rewriting makes it canonical; then --check passes and a second format changes nothing.
    assert_eq!(fmc(&["fmt", path]).code, 0);
    let once = std::fs::read_to_string(&messy).unwrap();
    assert_eq!(fmc(&["fmt", "--check", path]).code, 0);
    assert_eq!(fmc(&["fmt", path]).code, 0);
    assert_eq!(std::fs::read_to_string(&messy).unwrap(), once);
    assert!(once.contains("Dense(2)"));
    // A file with a syntax error is reported and left alone.
    let broken = dir.join("broken.fm");
    std::fs::write(
        &broken,
        "model m { input x: f32[3] output y = x -> Dense(2 }\n",
    )
    .unwrap();
    let run = fmc(&["fmt", broken.to_str().unwrap()]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("error[E00"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn formatting_examples_is_idempotent() {
    let dir = std::env::temp_dir().join(format!("fmc-fmt-examples-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in fm_tests::files(&root().join("examples"), "fm") {
        let copy = dir.join(f.file_name().unwrap());
        std::fs::copy(&f, &copy).unwrap();
        let path = copy.to_str().unwrap();
        assert_eq!(fmc(&["fmt", path]).code, 0, "{}", f.display());
        let run = fmc(&["fmt", "--check", path]);
        assert_eq!(run.code, 0, "{}\n{}", f.display(), run.stdout);
        assert_eq!(
            fmc(&["check", path]).code,
            0,
            "{} no longer checks after fmt",
            f.display()
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn compile_emits_the_ast_and_the_ir() {
    std::env::set_current_dir(root()).unwrap();
    let ast = fmc(&["compile", "examples/mnist_mlp.fm", "--emit", "ast"]);
    assert_eq!(ast.code, 0, "{}", ast.stderr);
    assert!(ast.stdout.contains("mnist_mlp"));
    let ir = fmc(&["compile", "examples/mnist_mlp.fm", "--emit", "ir"]);
    assert_eq!(ir.code, 0, "{}", ir.stderr);
    assert!(ir.stdout.contains("fn train_step(") && ir.stdout.contains("fn predict("));
    let rust = fmc(&["compile", "examples/mnist_mlp.fm", "--emit", "rust"]);
    assert_eq!(rust.code, 2);
    assert!(rust.stderr.contains("not implemented yet"));
    // Deterministic, so it can be golden-tested.
    assert_eq!(
        fmc(&["compile", "examples/mnist_mlp.fm", "--emit", "ast"]).stdout,
        ast.stdout
    );
    // An unknown kind is a command-line error.
    assert_eq!(
        fmc(&["compile", "examples/mnist_mlp.fm", "--emit", "llvm"]).code,
        2
    );
    // A file with errors prints them and exits 1.
    let bad = fmc(&[
        "compile",
        "tests/golden/errors/e0001_syntax.fm",
        "--emit",
        "ast",
    ]);
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("error[E0001]"));
}

/// Reads an f32 `.npy` file's data (fm writes a version-1 header).
fn npy_f32(path: &std::path::Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let header_len = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    bytes[header_len..]
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn eval_and_predict_take_batch_size_and_threads() {
    let dir = std::env::temp_dir().join(format!("fmc-batch-size-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let file = root().join("examples/digits_mlp.fm");
    let file = file.to_str().unwrap();
    let run_dir = dir.join("run");
    let train = fmc(&[
        "train",
        file,
        "--steps",
        "20",
        "--run-dir",
        run_dir.to_str().unwrap(),
    ]);
    assert_eq!(train.code, 0, "{}", train.stderr);
    let weights = run_dir.join("weights.safetensors");
    let weights = weights.to_str().unwrap();

    // The batch size changes how the test split is cut, not the numbers (up to f32 summation).
    let eval = |extra: &[&str]| {
        let run = fmc(&[&["eval", file, "--weights", weights, "--json"], extra].concat());
        assert_eq!(run.code, 0, "{}", run.stderr);
        serde_json::from_str::<serde_json::Value>(&run.stdout).unwrap()
    };
    let default = eval(&[]);
    let small = eval(&["--batch-size", "7", "--threads", "1"]);
    assert_eq!(default["accuracy"], small["accuracy"]);
    let (a, b) = (
        default["loss"].as_f64().unwrap(),
        small["loss"].as_f64().unwrap(),
    );
    assert!((a - b).abs() <= 1e-5 * a.abs(), "{a} vs {b}");

    let images = root().join("examples/data/digits-images-idx3-ubyte");
    let predict = |name: &str, extra: &[&str]| {
        let out = dir.join(name);
        let run = fmc(&[
            &[
                "predict",
                file,
                "--weights",
                weights,
                "--input",
                images.to_str().unwrap(),
            ],
            &["-o", out.to_str().unwrap()][..],
            extra,
        ]
        .concat());
        assert_eq!(run.code, 0, "{}", run.stderr);
        npy_f32(&out)
    };
    let p_default = predict("a.npy", &[]);
    let p_small = predict("b.npy", &["--batch-size", "5", "--threads", "1"]);
    assert_eq!(p_default.len(), 1797 * 10);
    let worst = p_default
        .iter()
        .zip(&p_small)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-6, "predictions differ by {worst}");

    // Zero is not a batch size; `--x` needs `--y`.
    assert_eq!(
        fmc(&["eval", file, "--weights", weights, "--batch-size", "0"]).code,
        2
    );
    assert_eq!(
        fmc(&[
            "predict",
            file,
            "--weights",
            weights,
            "--input",
            "x",
            "--batch-size",
            "0"
        ])
        .code,
        2
    );
    assert_eq!(
        fmc(&["eval", file, "--weights", weights, "--x", "x.npy"]).code,
        2
    );
    let _ = std::fs::remove_dir_all(&dir);
}
