//! IR filetests, in the spirit of Cranelift's: every `tests/filetests/*.fmir` file is an IR
//! function in text form with directives in `;` comments:
//!
//! - `; passes: simplify cse` — the passes to run, in order (verified after each);
//! - `; check: TEXT` — lines of the printed result must contain each TEXT, in this order;
//! - `; not: TEXT` — no line of the result contains TEXT.
//!
//! A file without `check` lines is compared whole with `NAME.out` beside it (`BLESS=1` writes
//! it). A new rewrite or fusion rule is tested by a ten-line file.

use fm_compiler::ir::{parse::parse_function, print::print_function};
use fm_compiler::passes::Pipeline;
use fm_tests::{files, golden, root};
use std::path::Path;

struct Directives {
    passes: Vec<String>,
    checks: Vec<String>,
    nots: Vec<String>,
}

fn directives(text: &str) -> Result<Directives, String> {
    let mut d = Directives {
        passes: Vec::new(),
        checks: Vec::new(),
        nots: Vec::new(),
    };
    let mut has_passes = false;
    for line in text.lines() {
        let Some(comment) = line.trim_start().strip_prefix(';') else {
            continue;
        };
        let comment = comment.trim();
        if let Some(p) = comment.strip_prefix("passes:") {
            has_passes = true;
            d.passes = p.split_whitespace().map(String::from).collect();
        } else if let Some(c) = comment.strip_prefix("check:") {
            d.checks.push(c.trim().to_string());
        } else if let Some(c) = comment.strip_prefix("not:") {
            d.nots.push(c.trim().to_string());
        }
    }
    if !has_passes {
        return Err("no `; passes:` line".into());
    }
    Ok(d)
}

/// Runs one case; returns what is wrong with it.
fn run_case(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let d = directives(&text)?;
    let f = parse_function(&text).map_err(|e| format!("parse error at {e}"))?;
    let names: Vec<&str> = d.passes.iter().map(String::as_str).collect();
    let (f, _) = Pipeline::named(&names)?.run(f)?;
    let out = print_function(&f);
    if d.checks.is_empty() {
        return match golden(&path.with_extension("out"), &out) {
            Some(diff) => Err(diff),
            None => Ok(()),
        };
    }
    let mut lines = out.lines();
    for c in &d.checks {
        if !lines.any(|l| l.contains(c.as_str())) {
            return Err(format!(
                "no line (after the previous check) contains `{c}`:\n{out}"
            ));
        }
    }
    for n in &d.nots {
        if let Some(l) = out.lines().find(|l| l.contains(n.as_str())) {
            return Err(format!(
                "`{l}` contains `{n}`, which must not appear:\n{out}"
            ));
        }
    }
    Ok(())
}

#[test]
fn filetests() {
    let cases = files(&root().join("tests/filetests"), "fmir");
    assert!(cases.len() >= 10, "only {} filetests", cases.len());
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|p| run_case(p).err().map(|e| format!("{}: {e}", p.display())))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Every pass has filetests: some file runs it.
#[test]
fn every_pass_has_filetests() {
    let cases = files(&root().join("tests/filetests"), "fmir");
    for pass in fm_compiler::passes::ALL {
        let tested = cases.iter().any(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            directives(&text).is_ok_and(|d| d.passes.iter().any(|n| n == pass))
        });
        assert!(tested, "no filetest runs pass `{pass}`");
    }
}

/// The checks can fail: a wrong `check` line is reported.
#[test]
fn a_failing_check_is_reported() {
    let dir = std::env::temp_dir().join(format!("fm-filetest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let case = dir.join("bad.fmir");
    std::fs::write(
        &case,
        "; passes: dce\n; check: %2 = exp\nfn f(\n    %0: f32[N] input \"x\",\n) {\n    %1 = neg %0 : f32[N]\n    return\n        \"y\" = %1\n}\n",
    )
    .unwrap();
    let e = run_case(&case).unwrap_err();
    assert!(
        e.contains("no line (after the previous check) contains `%2 = exp`"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
