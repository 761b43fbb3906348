//! The JIT through `fmc`: the default backend of `train`, its `-v` report, and `--emit clif`
//! on a broken file (a diagnostic and exit status, not a panic).

use fmc::cli::{run, Terminal};
use std::path::{Path, PathBuf};

fn fmc(args: &[&str]) -> (i32, String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let argv: Vec<String> = std::iter::once("fmc")
        .chain(args.iter().copied())
        .map(String::from)
        .collect();
    let code = run(
        argv.into_iter().map(Into::into),
        &mut out,
        &mut err,
        Terminal::default(),
    );
    (
        code,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
        .display()
        .to_string()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fm-jit-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn train_runs_on_the_jit_by_default_and_reports_with_v() {
    let dir = tmp("default");
    let (code, _, err) = fmc(&[
        "train",
        &example("digits_mlp.fm"),
        "--steps",
        "3",
        "--run-dir",
        dir.to_str().unwrap(),
        "-v",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("(Jit backend)"), "{err}");
    assert!(err.contains("jit `train_step`:"), "{err}");
    assert!(err.contains("CLIF instructions"), "{err}");
    assert!(!err.contains("runs on the interpreter"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);

    let dir = tmp("interp");
    let (code, _, err) = fmc(&[
        "train",
        &example("digits_mlp.fm"),
        "--steps",
        "3",
        "--run-dir",
        dir.to_str().unwrap(),
        "--backend",
        "interp",
        "-v",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("(Interp backend)"), "{err}");
    assert!(!err.contains("jit `"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn emit_clif_of_a_broken_file_is_a_diagnostic() {
    let dir = tmp("broken");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("broken.fm");
    std::fs::write(
        &file,
        "model m {\n    input x: f32[3]\n    output y = x -> Dense(\n}\n",
    )
    .unwrap();
    let (code, out, err) = fmc(&["compile", file.to_str().unwrap(), "--emit", "clif"]);
    assert_ne!(code, 0);
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("error"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
