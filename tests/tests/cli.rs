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
    // Through a symbolic link: the file it names is formatted and keeps its permissions, the
    // link stays a link (it was replaced by a new 0644 file, the real file left as it was).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let real = dir.join("real.fm");
        std::fs::write(
            &real,
            "model   m {input x: f32[3]\noutput y = x->Dense(2)}\n",
        )
        .unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
        let link = dir.join("link.fm");
        std::os::unix::fs::symlink("real.fm", &link).unwrap();
        assert_eq!(fmc(&["fmt", link.to_str().unwrap()]).code, 0);
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(std::fs::read_to_string(&real).unwrap(), once);
        let mode = std::fs::metadata(&real).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn formatting_examples_is_idempotent() {
    let dir = std::env::temp_dir().join(format!("fmc-fmt-examples-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Files the checker reads (`categorical` weights) are relative to the `.fm` file.
    #[cfg(unix)]
    std::os::unix::fs::symlink(root().join("examples/data"), dir.join("data")).unwrap();
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
    assert_eq!(rust.code, 0, "{}", rust.stderr);
    assert!(rust.stdout.contains("pub struct MnistMlp") && rust.stdout.contains("fn train_step("));
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

    // Printed, each row of the classifier (its loss is a cross-entropy) starts with its class.
    let printed = fmc(&[
        "predict",
        file,
        "--weights",
        weights,
        "--input",
        images.to_str().unwrap(),
    ]);
    assert_eq!(printed.code, 0, "{}", printed.stderr);
    let lines: Vec<&str> = printed.stdout.lines().collect();
    assert_eq!(lines.len(), 1797);
    for (line, row) in lines.iter().zip(p_default.chunks(10)) {
        let best = (0..10).fold(0, |b, i| if row[i] > row[b] { i } else { b });
        assert!(
            line.starts_with(&format!("class {best}: ")),
            "{line} vs {row:?}"
        );
        assert_eq!(line.split(' ').count(), 12, "{line}");
    }

    // Zero is not a batch size; `--x` needs `--y` when the loss reads targets.
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
    let no_y = fmc(&["eval", file, "--weights", weights, "--x", "x.npy"]);
    assert_eq!(no_y.code, 1, "{}", no_y.stderr);
    assert!(
        no_y.stderr
            .contains("the model reads targets (probs): give them with `--y PATH`"),
        "{}",
        no_y.stderr
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn predict_prints_a_classifiers_class_with_its_probabilities() {
    use fm_runtime::tensor::Tensor;
    use fm_runtime::weights::{save_weights, WeightsMeta};
    use ndarray::{ArrayD, IxDyn};
    let dir = std::env::temp_dir().join(format!("fmc-predict-class-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let t = |shape: &[usize], v: Vec<f32>| {
        Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), v).unwrap())
    };
    let x = dir.join("x.npy");
    fm_runtime::data::npy::write_npy(&x, &t(&[3, 2], vec![2.0, 0.0, -2.0, 0.0, 0.0, 1.0])).unwrap();
    // Without a `train` section the final activation decides: softmax (argmax), a one-unit
    // sigmoid (0.5), anything else prints the values alone.
    let cases: [(&str, usize, &str); 3] = [
        // Values from the same arithmetic in Python's math module.
        ("softmax", 3, "class 0: 0.936240 0.046613 0.017148\nclass 2: 0.017148 0.046613 0.936240\nclass 2: 0.106507 0.106507 0.786986\n"),
        ("sigmoid", 1, "class 1: 0.731059\nclass 0: 0.047426\nclass 0: 0.268941\n"),
        ("tanh", 1, "0.761594\n-0.995055\n-0.761594\n"),
    ];
    for (act, units, expected) in cases {
        let file = dir.join(format!("{act}.fm"));
        std::fs::write(
            &file,
            format!(
                "model m {{\n    input x: f32[2]\n    output p = x -> Dense({units}, {act})\n}}\n"
            ),
        )
        .unwrap();
        // kernel [[1, 0, -1], [0, 1, 2]] (its first `units` columns), bias [0, -1, 0] or [-1].
        let kernel: Vec<f32> = [[1.0, 0.0, -1.0], [0.0, 1.0, 2.0]]
            .iter()
            .flat_map(|r| r[..units].to_vec())
            .collect();
        let bias = if units == 1 {
            vec![-1.0]
        } else {
            vec![0.0, -1.0, 0.0]
        };
        let w = dir.join(format!("{act}.safetensors"));
        save_weights(
            &w,
            &[
                ("dense.kernel".into(), t(&[2, units], kernel)),
                ("dense.bias".into(), t(&[units], bias)),
            ],
            &WeightsMeta::new("m", b""),
        )
        .unwrap();
        let run = fmc(&[
            "predict",
            file.to_str().unwrap(),
            "--weights",
            w.to_str().unwrap(),
            "--input",
            x.to_str().unwrap(),
        ]);
        assert_eq!(run.code, 0, "{act}: {}", run.stderr);
        assert_eq!(run.stdout, expected, "{act}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn compile_runs_the_passes_on_an_fmir_file() {
    std::env::set_current_dir(root()).unwrap();
    let case = "tests/filetests/fuse_dense_relu.fmir";
    let opt = fmc(&["compile", case, "--emit", "ir-opt"]);
    assert_eq!(opt.code, 0, "{}", opt.stderr);
    assert!(
        opt.stdout
            .contains("k2 = elementwise %6 %10 ops=[add, max] len=N*128"),
        "{}",
        opt.stdout
    );
    let ir = fmc(&["compile", case, "--emit", "ir"]);
    assert_eq!(ir.code, 0, "{}", ir.stderr);
    assert!(!ir.stdout.contains("kernels {"), "{}", ir.stdout);
    let clif = fmc(&["compile", case, "--emit", "clif"]);
    assert_eq!(clif.code, 0, "{}", clif.stderr);
    assert!(
        clif.stdout.contains("; calls of `dense_relu`"),
        "{}",
        clif.stdout
    );
    // A malformed file: its name, line and column; exit 1.
    let dir = std::env::temp_dir().join(format!("fm-fmir-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.fmir");
    std::fs::write(&bad, "fn f(\n) {\n    %0 = const x : f32[]\n").unwrap();
    let run = fmc(&["compile", bad.to_str().unwrap(), "--emit", "ir-opt"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("bad.fmir:3:16: expected a number, found `x`"),
        "{}",
        run.stderr
    );
    std::fs::remove_dir_all(&dir).ok();
}
