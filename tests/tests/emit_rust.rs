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
    let source = std::fs::read_to_string(root().join(format!("examples/{stem}.fm"))).unwrap();
    let rel = format!("examples/{stem}.fm");
    match emit_source(&source, Path::new(&rel), None) {
        Ok(code) => pretty(&code).unwrap(),
        Err(EmitError::Diagnostics(d)) => panic!("{stem}: {d:?}"),
        Err(EmitError::Message(m)) => panic!("{stem}: {m}"),
    }
}

/// Whether an example declares `version 0.2` (language.md 9): the emitter rejects those files
/// for now (see `language_0_2_is_rejected_cleanly`).
pub fn is_0_2(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .any(|l| l.trim() == "version 0.2")
}

#[test]
fn every_example_has_a_golden() {
    let stems: Vec<String> = files(&root().join("examples"), "fm")
        .iter()
        .filter(|p| !is_0_2(p))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(stems.len() >= 9);
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

#[test]
fn language_0_2_is_rejected_cleanly() {
    let zero_two: Vec<_> = files(&root().join("examples"), "fm")
        .into_iter()
        .filter(|p| is_0_2(p))
        .collect();
    assert!(zero_two.len() >= 2);
    for path in &zero_two {
        let source = std::fs::read_to_string(path).unwrap();
        match emit_source(&source, path, None) {
            Err(EmitError::Message(m)) => {
                assert!(
                    m.starts_with("`model!` and `--emit rust` do not support language 0.2"),
                    "{}: {m}",
                    path.display()
                );
            }
            Err(EmitError::Diagnostics(d)) => panic!("{}: {d:?}", path.display()),
            Ok(_) => panic!("{}: emitted Rust for a 0.2 file", path.display()),
        }
    }
    let gan = root().join("examples/gan_digits.fm");
    let run = fm_tests::fmc(&["compile", gan.to_str().unwrap(), "--emit", "rust"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("uses the sampled input `z` (`~`, 9.2)"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}
