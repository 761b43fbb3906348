//! Golden test of `fmc compile FILE --emit clif`: the CLIF the JIT generates is deterministic
//! and reviewed like any other output. After an intended change, regenerate with
//! `BLESS=1 cargo test --release --test jit_clif` and review the diff.

use fmc::cli::{run, Terminal};
use std::path::Path;

fn emit_clif(example: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = root.join("examples").join(example);
    let mut out = Vec::new();
    let mut err = Vec::new();
    let args = ["fmc", "compile", path.to_str().unwrap(), "--emit", "clif"];
    let code = run(
        args.iter().map(Into::into),
        &mut out,
        &mut err,
        Terminal::default(),
    );
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    String::from_utf8(out).unwrap()
}

fn golden(example: &str, golden: &str) {
    let text = emit_clif(example);
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/golden/clif")
        .join(golden);
    if std::env::var_os("BLESS").is_some_and(|v| v != "0") {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with BLESS=1 to create)", path.display()));
    if text != want {
        let line = text
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(text.lines().count().min(want.lines().count()));
        panic!(
            "--emit clif for {example} differs from {} at line {}:\n  got:  {:?}\n  want: {:?}\n\
             (BLESS=1 regenerates it)",
            path.display(),
            line + 1,
            text.lines().nth(line),
            want.lines().nth(line)
        );
    }
}

#[test]
fn linear_regression_clif() {
    golden("linear_regression.fm", "linear_regression.clif");
}

/// Two emissions in one process (the second from the compile cache) and a fresh compile agree.
#[test]
fn clif_is_deterministic() {
    let a = emit_clif("digits_mlp.fm");
    let b = emit_clif("digits_mlp.fm");
    assert_eq!(a, b);
    assert!(a.contains("; model `digits_mlp`, function `train_step`"));
    assert!(a.contains("; model `digits_mlp`, function `predict`"));
    assert!(a.contains("f32x4"), "vector code expected");
}
