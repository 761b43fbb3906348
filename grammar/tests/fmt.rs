//! The formatter on layouts and comment placements the examples do not cover (golden output),
//! with the formatter contract (same AST, same comments, idempotent).

mod common;

use common::*;

#[test]
fn formatted_inputs_match_golden() {
    let dir = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fmt"));
    let files = fm_files(&dir);
    assert!(files.len() >= 4);
    for (name, source) in files {
        let (file, diags) = fm_grammar::parse(&source);
        assert!(diags.is_empty(), "{name}:\n{}", render(&source, &diags));
        let formatted = check_format_contract(&name, &source, &file);
        assert_golden!(name, formatted);
    }
}

#[test]
fn every_comment_is_kept_in_order() {
    let source = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fmt/comments.fm"
    ))
    .unwrap();
    let (file, _) = fm_grammar::parse(&source);
    let formatted = fm_grammar::format(&file, &source);
    let mut rest = formatted.as_str();
    for c in &file.comments {
        let at = rest
            .find(&c.text)
            .unwrap_or_else(|| panic!("{:?} missing or out of order", c.text));
        rest = &rest[at + c.text.len()..];
    }
    assert_eq!(file.comments.len(), 15);
}

#[test]
fn long_one_line_pipeline_breaks_one_stage_per_line() {
    let stages = " -> Dense(128, relu)".repeat(5);
    let source = format!("model m {{\n    output y = x{stages}\n}}\n");
    let (file, _) = fm_grammar::parse(&source);
    let formatted = fm_grammar::format(&file, &source);
    let expected = format!(
        "model m {{\n    output y = x\n{}}}\n",
        "        -> Dense(128, relu)\n".repeat(5)
    );
    assert_eq!(formatted, expected);
}

#[test]
fn short_pipeline_written_on_one_line_stays_on_one_line() {
    let source = "model m {\n    output y = x->Flatten->Dense(10,softmax)\n}\n";
    let (file, _) = fm_grammar::parse(source);
    assert_eq!(
        fm_grammar::format(&file, source),
        "model m {\n    output y = x -> Flatten -> Dense(10, softmax)\n}\n"
    );
}
