//! The one registry of diagnostic codes (`fm_codes`) against what the crates emit, after rustc's
//! tidy checks of `rustc_error_codes`:
//! - no crate spells a code as a string (emitting takes a registered `fm_codes::Code`), every
//!   registered code is emitted somewhere (no dead entries), and W codes are emitted as warnings,
//!   E codes as errors;
//! - the example of every checker and syntax code is a complete `.fm` file that `fmc check`
//!   rejects with that very code, so the explanation and the printed diagnostic agree;
//! - every such code has a golden case (`tests/golden/errors/cODE_*.fm`, whose rendering and code
//!   `errors.rs` checks).

use fm_codes::{Code, ALL};
use fm_compiler::check::check_source;
use fm_tests::root;
use std::path::{Path, PathBuf};

/// Every `.rs` file under the crates' `src` directories (nested packages included).
fn sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, in_src: bool, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                if name != "target" && name != "tests" && !name.starts_with('.') {
                    walk(&p, in_src || name == "src", out);
                }
            } else if in_src && name.ends_with(".rs") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    for krate in ["grammar", "compiler", "runtime", "macros"] {
        walk(&root().join(krate), false, &mut out);
    }
    out.sort();
    assert!(out.len() > 40, "only {} source files found", out.len());
    out
}

/// Whether `text` has a code-like token `[EW]0NNN` at `i`, not part of a longer word.
fn code_at(text: &str, i: usize) -> Option<&str> {
    let b = text.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    if i + 5 > b.len() || (i > 0 && word(b[i - 1])) || (i + 5 < b.len() && word(b[i + 5])) {
        return None;
    }
    let t = &text[i..i + 5];
    (matches!(b[i], b'E' | b'W') && t[1..].bytes().all(|c| c.is_ascii_digit())).then_some(t)
}

#[test]
fn no_crate_spells_a_code_as_a_string_and_every_code_is_emitted() {
    let registry = root().join("grammar/codes");
    let mut used = std::collections::BTreeSet::new();
    let mut literals = Vec::new();
    let mut mismatched = Vec::new();
    for path in sources() {
        if path.starts_with(&registry) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let rel = path.strip_prefix(root()).unwrap().display().to_string();
        for (i, _) in text.match_indices(['E', 'W']) {
            let Some(code) = code_at(&text, i) else {
                continue;
            };
            if i > 0 && text.as_bytes()[i - 1] == b'"' && text.as_bytes().get(i + 5) == Some(&b'"')
            {
                literals.push(format!("{rel}: \"{code}\""));
            }
            // An emitted code is named through the registry: `codes::E0203`, `fm_codes::E0203`.
            if text[..i].ends_with("codes::") {
                assert!(
                    Code::parse(code).is_some(),
                    "{rel}: {code} is not registered"
                );
                used.insert(code.to_string());
                // The severity follows the code: `error(E...)`, `warning(W...)`.
                let before = text[..i]
                    .trim_end_matches(|c: char| c.is_alphanumeric() || c == '_' || c == ':')
                    .trim_end();
                let wrong = if code.starts_with('W') {
                    "error("
                } else {
                    "warning("
                };
                if before.ends_with(wrong) {
                    mismatched.push(format!("{rel}: {wrong}{code}"));
                }
            }
        }
    }
    assert!(
        literals.is_empty(),
        "codes spelt as strings (use `fm_codes::CODE`):\n{}",
        literals.join("\n")
    );
    assert!(
        mismatched.is_empty(),
        "severity does not follow the code:\n{}",
        mismatched.join("\n")
    );
    let unused: Vec<&str> = ALL
        .iter()
        .map(|c| c.as_str())
        .filter(|c| !used.contains(*c))
        .collect();
    assert!(
        unused.is_empty(),
        "registered but never emitted: {unused:?}"
    );
}

/// The first indented block after `Example`, dedented.
fn example(explanation: &str) -> Option<String> {
    let mut lines = explanation
        .lines()
        .skip_while(|l| !l.starts_with("Example"));
    lines.next()?;
    let mut block = Vec::new();
    for line in lines {
        if let Some(code) = line.strip_prefix("    ") {
            block.push(code);
        } else if line.trim().is_empty() {
            if !block.is_empty() {
                block.push("");
            }
        } else if !block.is_empty() {
            break;
        }
    }
    let text = block.join("\n");
    let text = text.trim();
    (!text.is_empty()).then(|| format!("{text}\n"))
}

/// Codes `fmc check` can emit: syntax, names, types and shapes, training setup, warnings.
fn checkable(code: Code) -> bool {
    !code.as_str().starts_with("E04")
}

/// Codes whose example cannot be written as text: 300 nested brackets (E0005) and a byte that is
/// not UTF-8 (E0006). Their golden cases are in `grammar/tests/syntax`.
const EXAMPLE_NOT_TEXT: &[Code] = &[fm_codes::E0005, fm_codes::E0006];

#[test]
fn every_checker_code_example_is_rejected_with_that_code() {
    let mut failures = Vec::new();
    for &code in ALL
        .iter()
        .filter(|&&c| checkable(c) && !EXAMPLE_NOT_TEXT.contains(&c))
    {
        let Some(src) = example(code.explanation()) else {
            failures.push(format!("{code}: the explanation has no indented example"));
            continue;
        };
        let checked = check_source(&src, Path::new("example.fm"));
        let got: Vec<Code> = checked.diagnostics.iter().map(|d| d.code).collect();
        if !got.contains(&code) {
            failures.push(format!("{code}: its example gives {got:?}:\n{src}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_checker_code_has_a_golden_case() {
    let dir = root().join("tests/golden/errors");
    let names: Vec<String> = fm_tests::files(&dir, "fm")
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().to_uppercase())
        .collect();
    // Syntax errors are golden-tested by the parser's own suite.
    let syntax: String = fm_tests::files(&root().join("grammar/tests/snapshots"), "snap")
        .iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("syntax__")
        })
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let missing: Vec<Code> = ALL
        .iter()
        .copied()
        .filter(|&c| checkable(c))
        .filter(|&c| {
            let golden = names.iter().any(|n| n.starts_with(&format!("{c}_")));
            let syntax_snapshot = c.as_str().starts_with("E00") && syntax.contains(c.as_str());
            !golden && !syntax_snapshot
        })
        .collect();
    assert!(missing.is_empty(), "no golden case for {missing:?}");
}

#[test]
fn explain_prints_the_registry() {
    let run = fm_tests::fmc(&["explain", "e0404"]);
    assert_eq!(run.code, 0);
    assert_eq!(
        run.stdout,
        format!("{}\n", fm_codes::E0404.explain().trim_end())
    );
    assert!(run
        .stdout
        .starts_with("E0404: data shape does not fit the model\n"));
    let bad = fm_tests::fmc(&["explain", "E0499"]);
    assert_eq!(bad.code, 2);
}

/// Every code the documentation, the explanations and the golden files name is registered: a
/// retired or mistyped code in a README, an `Example:` or a golden case's name fails here.
#[test]
fn every_code_the_docs_and_goldens_name_is_registered() {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    walk(&p, out);
                }
            } else if name.ends_with(".md") || p.starts_with(root().join("tests/golden/errors")) {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&root(), &mut files);
    assert!(files.len() > 100, "only {} files found", files.len());
    let mut unknown = Vec::new();
    for path in &files {
        let rel = path.strip_prefix(root()).unwrap().display().to_string();
        // Golden cases are named after their code in lower case (`e0203_shapes.fm`).
        let name_code = path
            .file_name()
            .map(|n| n.to_string_lossy().to_uppercase())
            .filter(|n| rel.starts_with("tests/golden/errors/") && n.starts_with(['E', 'W']))
            .and_then(|n| n.get(..5).map(str::to_string));
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut codes: Vec<String> = text
            .match_indices(['E', 'W'])
            .filter_map(|(i, _)| code_at(&text, i).map(str::to_string))
            .collect();
        codes.extend(name_code);
        for code in codes {
            if Code::parse(&code).is_none() {
                unknown.push(format!("{rel}: {code}"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "codes named but not registered:\n{}",
        unknown.join("\n")
    );
}
