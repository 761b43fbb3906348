//! Every example parses cleanly; golden AST dumps and formatted text; formatter contract.

mod common;

use common::*;

#[test]
fn every_example_parses_without_errors() {
    let files = fm_files(&examples_dir());
    assert!(
        files.len() >= 9,
        "expected the nine shipped examples, found {}",
        files.len()
    );
    for (name, source) in &files {
        let (file, diags) = fm_grammar::parse(source);
        assert!(diags.is_empty(), "{name}:\n{}", render(source, &diags));
        assert!(!file.items.is_empty(), "{name}: no items");
    }
}

#[test]
fn ast_dumps_match_golden() {
    for (name, source) in fm_files(&examples_dir()) {
        let (file, _) = fm_grammar::parse(&source);
        assert_golden!(format!("ast_{name}"), fm_grammar::dump_ast(&file, &source));
    }
}

#[test]
fn formatted_examples_match_golden_and_keep_the_contract() {
    for (name, source) in fm_files(&examples_dir()) {
        let (file, _) = fm_grammar::parse(&source);
        let formatted = check_format_contract(&name, &source, &file);
        assert_golden!(format!("fmt_{name}"), formatted);
    }
}

/// The shipped examples are already canonical except for alignment spaces inside entries.
#[test]
fn examples_are_nearly_canonical() {
    for (name, source) in fm_files(&examples_dir()) {
        let (file, _) = fm_grammar::parse(&source);
        let formatted = fm_grammar::format(&file, &source);
        let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(squash(&formatted), squash(&source), "{name}");
    }
}
