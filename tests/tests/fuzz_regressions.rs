//! The fuzz targets' bodies on the committed seed corpus and on every input a fuzzer ever
//! crashed on (`tests/fuzz/regressions/TARGET/`), so both run in the normal test suite on the
//! stable toolchain. Each input must end in a value or an error within a time bound, never a
//! panic.

use fm_tests::root;
use std::path::Path;
use std::time::{Duration, Instant};

fn inputs(target: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for dir in ["corpus", "regressions"] {
        let d = root().join("tests/fuzz").join(dir).join(target);
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        out.extend(paths.iter().map(|p| std::fs::read(p).unwrap()));
    }
    out
}

fn each(target: &str, f: impl Fn(&[u8])) {
    let all = inputs(target);
    assert!(!all.is_empty(), "no seed inputs for {target}");
    for data in &all {
        let start = Instant::now();
        f(data);
        // Also a few truncations of every seed: the readers' favourite failure.
        for cut in [data.len() / 2, data.len().saturating_sub(1), 17] {
            f(&data[..cut.min(data.len())]);
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{target}: too slow"
        );
    }
}

#[test]
fn parse_check() {
    each("parse_check", |data| {
        let (file, syntax) = fm_grammar::parse_bytes(data);
        if syntax.is_empty() {
            let source = String::from_utf8_lossy(data);
            let _ = fm_grammar::fmt::format(&file, &source);
            let checked = fm_compiler::check::check(&file, &source, Path::new("fuzz.fm"));
            let src = fm_compiler::diag::SourceFile {
                name: "fuzz.fm",
                text: &source,
            };
            for d in &checked.diagnostics {
                let _ = fm_compiler::diag::render(
                    d,
                    &src,
                    fm_compiler::diag::MessageFormat::Human,
                    false,
                );
            }
        }
    });
}

#[test]
fn idx() {
    each("idx", |data| {
        let _ = fm_runtime::data::idx::parse_idx("fuzz.idx", data);
    });
    // The seeds parse.
    let ok = inputs("idx")
        .iter()
        .filter(|d| fm_runtime::data::idx::parse_idx("s", d).is_ok())
        .count();
    assert!(ok >= 4);
}

#[test]
fn npy() {
    each("npy", |data| {
        if let Ok(a) = fm_runtime::data::npy::parse_npy("fuzz.npy", data) {
            let _ = a.data.to_f32();
        }
    });
}

#[test]
fn npz() {
    each("npz", |data| {
        if let Ok(keys) = fm_runtime::data::npy::npz_keys("fuzz.npz", data) {
            for k in keys.iter().take(8) {
                let _ = fm_runtime::data::npy::parse_npz_member("fuzz.npz", data, k);
            }
        }
    });
    let seed = &inputs("npz")[0];
    let keys = fm_runtime::data::npy::npz_keys("s", seed).unwrap();
    assert_eq!(keys.len(), 2);
}

#[test]
fn csv() {
    each("csv", |data| {
        if let Ok(t) = fm_runtime::data::csv::parse_csv("fuzz.csv", data) {
            let _ = t.features(None);
            if let Some(c) = t.header.first().cloned() {
                let _ = t.column(&c);
                let _ = t.features(Some(&c));
            }
        }
    });
}

#[test]
fn safetensors() {
    each("safetensors", |data| {
        let _ = fm_runtime::weights::decode_weights(Path::new("fuzz.safetensors"), data);
    });
    let seed = &inputs("safetensors")[0];
    assert!(fm_runtime::weights::decode_weights(Path::new("s"), seed).is_ok());
}

#[test]
fn ir_text() {
    each("ir_text", |data| {
        if let Ok(text) = std::str::from_utf8(data) {
            if let Ok(f) = fm_compiler::ir::parse::parse_function(text) {
                let _ = fm_compiler::ir::print::print_function(&f);
            }
        }
    });
    // The seeds (filetests) parse.
    let dir = root().join("tests/fuzz/corpus/ir_text");
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap();
        assert!(
            fm_compiler::ir::parse::parse_function(&text).is_ok(),
            "{}",
            e.path().display()
        );
    }
}

#[test]
fn onnx_import() {
    each("onnx_import", |data| {
        if let Ok(imported) = fm_interop::import::onnx::import(data, "fuzz.onnx", "fuzz") {
            let _ = fm_interop::import::check(&imported, "fuzz.onnx");
        }
    });
}

#[test]
fn keras_import() {
    each("keras_import", |data| {
        if let Ok(imported) = fm_interop::import::keras::import(data, "fuzz.keras", "fuzz") {
            let _ = fm_interop::import::check(&imported, "fuzz.keras");
        }
    });
}
