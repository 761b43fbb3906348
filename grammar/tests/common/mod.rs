//! Helpers shared by the grammar tests.
#![allow(dead_code)]

use std::path::PathBuf;

use fm_grammar::{ast, line_col, Diagnostic};

pub fn examples_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples"))
}

pub fn syntax_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/syntax"))
}

/// `(file stem, source)` of every `*.fm` in `dir`, sorted by name.
pub fn fm_files(dir: &PathBuf) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .expect("test directory exists")
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "fm"))
        .map(|p| {
            let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&p).expect("readable test file");
            (stem, String::from_utf8_lossy(&bytes).into_owned())
        })
        .collect();
    files.sort();
    files
}

/// Plain text rendering of diagnostics, one `code line:col message` line each, followed by
/// indented label, help and note lines.
pub fn render(source: &str, diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    let pos = |offset: usize| {
        let (l, c) = line_col(source, offset);
        format!("{l}:{c}")
    };
    for d in diags {
        match &d.primary {
            Some(p) => {
                out.push_str(&format!("{} {} {}\n", d.code, pos(p.span.start), d.message));
                out.push_str(&format!(
                    "    ^ {}-{} {}\n",
                    pos(p.span.start),
                    pos(p.span.end),
                    p.message
                ));
            }
            None => out.push_str(&format!("{} - {}\n", d.code, d.message)),
        }
        for s in &d.secondary {
            out.push_str(&format!("    - {} {}\n", pos(s.span.start), s.message));
        }
        for h in &d.help {
            out.push_str(&format!("    help: {h}\n"));
        }
        for n in &d.notes {
            out.push_str(&format!("    note: {n}\n"));
        }
    }
    out
}

/// The AST's debug text with every span replaced by `_`, so that two parses can be compared
/// modulo positions.
pub fn without_spans(file: &ast::File) -> String {
    let text = format!("{:?} {:?}", file.version.as_ref().map(|v| &v.0), file.items);
    erase_ranges(&text)
}

/// Replaces every `DIGITS..DIGITS` (a `Span`'s debug form) by `_`.
fn erase_ranges(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_alphanumeric()) {
            let mut j = i;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            if text[j..].starts_with("..") && b.get(j + 2).is_some_and(|c| c.is_ascii_digit()) {
                let mut k = j + 2;
                while k < b.len() && b[k].is_ascii_digit() {
                    k += 1;
                }
                out.push('_');
                i = k;
                continue;
            }
            out.push_str(&text[i..j]);
            i = j;
            continue;
        }
        let ch = text[i..].chars().next().unwrap();
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// Comment texts in order (the formatter must keep every one).
pub fn comment_texts(file: &ast::File) -> Vec<String> {
    file.comments
        .iter()
        .map(|c| c.text.trim().to_string())
        .collect()
}

/// Checks the formatter contract on a file that parsed without errors: the output parses
/// without errors to the same AST (modulo spans) with the same comments, and formatting it
/// again changes nothing. Returns the formatted text.
pub fn check_format_contract(name: &str, source: &str, file: &ast::File) -> String {
    let formatted = fm_grammar::format(file, source);
    let (again, diags) = fm_grammar::parse(&formatted);
    assert!(
        diags.is_empty(),
        "{name}: formatted output has syntax errors:\n{}\n--- output:\n{formatted}",
        render(&formatted, &diags)
    );
    assert_eq!(
        without_spans(file),
        without_spans(&again),
        "{name}: formatting changed the AST\n--- output:\n{formatted}"
    );
    assert_eq!(
        comment_texts(file),
        comment_texts(&again),
        "{name}: formatting lost or reordered comments\n--- output:\n{formatted}"
    );
    let twice = fm_grammar::format(&again, &formatted);
    assert_eq!(formatted, twice, "{name}: formatting is not idempotent");
    formatted
}

/// A tiny deterministic generator (Knuth's MMIX LCG).
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Golden files take the project's one bless variable: `BLESS=1` rewrites insta snapshots in
/// place (insta's own `INSTA_UPDATE=always`), as it rewrites every other golden file. Called by
/// [`assert_golden!`] before insta reads its settings.
pub fn bless_insta() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let bless = std::env::var_os("BLESS").is_some_and(|v| v != "0");
        if bless && std::env::var_os("INSTA_UPDATE").is_none() {
            std::env::set_var("INSTA_UPDATE", "always");
        }
    });
}

/// `insta::assert_snapshot!` under the `BLESS=1` convention (see [`bless_insta`]).
#[allow(unused_macros)]
macro_rules! assert_golden {
    ($($arg:tt)*) => {{
        $crate::common::bless_insta();
        insta::assert_snapshot!($($arg)*);
    }};
}
#[allow(unused_imports)]
pub(crate) use assert_golden;
