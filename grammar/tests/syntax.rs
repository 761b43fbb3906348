//! Syntax errors: every `tests/syntax/*.fm` with its expected diagnostics (golden), and the
//! formatter contract on the inputs that parse.

mod common;

use common::*;

#[test]
fn syntax_cases_match_golden() {
    let files = fm_files(&syntax_dir());
    assert!(files.len() >= 25, "only {} syntax cases", files.len());
    for (name, source) in files {
        let (_, diags) = fm_grammar::parse(&source);
        for d in &diags {
            assert!(
                d.code.as_str().starts_with("E00"),
                "{name}: non-syntax code {}",
                d.code
            );
            assert!(d.primary.is_some(), "{name}: {} without a span", d.code);
        }
        let text = if diags.is_empty() {
            "no errors\n".to_string()
        } else {
            render(&source, &diags)
        };
        assert_golden!(name, text);
    }
}

#[test]
fn inputs_that_parse_keep_the_format_contract() {
    let mut clean = 0;
    for (name, source) in fm_files(&syntax_dir()) {
        let (file, diags) = fm_grammar::parse(&source);
        if diags.is_empty() {
            check_format_contract(&name, &source, &file);
            clean += 1;
        }
    }
    assert!(
        clean >= 4,
        "expected several valid inputs among the syntax cases, found {clean}"
    );
}
