//! The parser never panics, never overflows the stack and stays fast on hostile input.

mod common;

use std::time::{Duration, Instant};

use common::*;

const PER_PARSE: Duration = Duration::from_secs(1);

/// Parses bytes, checks the time bound, and on a clean parse checks dump and formatter.
fn parse_checked(what: &str, bytes: &[u8]) -> (fm_grammar::ast::File, Vec<fm_grammar::Diagnostic>) {
    let start = Instant::now();
    let (file, diags) = fm_grammar::parse_bytes(bytes);
    let took = start.elapsed();
    assert!(took < PER_PARSE, "{what}: parse took {took:?}");
    for d in &diags {
        assert!(d.code.as_str().starts_with("E00"), "{what}: {}", d.code);
        let span = d.primary.as_ref().expect("syntax errors have a span").span;
        assert!(
            span.start <= span.end && span.end <= bytes.len(),
            "{what}: span {span:?}"
        );
    }
    if diags.is_empty() {
        let source = std::str::from_utf8(bytes).expect("clean parse means valid UTF-8");
        let _ = fm_grammar::dump_ast(&file, source);
        check_format_contract(what, source, &file);
    }
    (file, diags)
}

#[test]
fn every_truncation_of_every_example() {
    let mut clean = 0;
    let mut broken = 0;
    for (name, source) in fm_files(&examples_dir()) {
        let bytes = source.as_bytes();
        for cut in (0..=bytes.len()).step_by(7) {
            let (_, diags) = parse_checked(&format!("{name}[..{cut}]"), &bytes[..cut]);
            if diags.is_empty() {
                clean += 1;
            } else {
                broken += 1;
            }
        }
    }
    // Most cuts land inside an item and must be reported; some land between items or in
    // comments.
    assert!(broken > 2 * clean, "clean {clean}, broken {broken}");
    assert!(clean > 0);
}

#[test]
fn random_edits_of_every_example() {
    const ALPHABET: &[u8] = b"(){}[]-><>:,=+*/\"\\ \n\t.eE0123456789_aZmodelblockdatatraininputletoutputreturnrepeat#@\xff\xc3";
    let mut rng = Lcg(0x5eed_f00d);
    let mut errors = 0usize;
    let mut total = 0usize;
    // The examples, plus the comment-heavy formatter inputs (their clean mutants exercise the
    // formatter contract).
    let fmt_dir = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fmt"));
    let mut files = fm_files(&examples_dir());
    files.extend(fm_files(&fmt_dir));
    for (name, source) in files {
        for case in 0..2000 {
            let mut bytes = source.as_bytes().to_vec();
            // One to three edits per case.
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(bytes.len() + 1);
                let byte = ALPHABET[rng.below(ALPHABET.len())];
                match rng.below(3) {
                    0 => bytes.insert(at, byte),
                    1 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ if at < bytes.len() => bytes[at] = byte,
                    _ => bytes.push(byte),
                }
            }
            let (_, diags) = parse_checked(&format!("{name} edit #{case}"), &bytes);
            errors += usize::from(!diags.is_empty());
            total += 1;
        }
    }
    // Many edits are harmless (inside comments or strings, or swapping digits); many are not.
    assert!(
        errors > total / 4 && errors < total,
        "{errors} of {total} edits broke the parse"
    );
}

fn first_error(source: &str) -> (String, usize, usize) {
    let start = Instant::now();
    let (_, diags) = fm_grammar::parse(source);
    assert!(start.elapsed() < PER_PARSE, "took {:?}", start.elapsed());
    let d = diags.first().expect("an error");
    let span = d.primary.as_ref().unwrap().span;
    (d.code.to_string(), span.start, diags.len())
}

#[test]
fn ten_thousand_deep_brackets_are_rejected_at_the_first_bracket_too_deep() {
    let prefix = "model m {\n    output y = ";
    for (open, close) in [("(", ")"), ("[", "]"), ("{a: ", "}")] {
        let source = format!(
            "{prefix}{}x{}\n}}\n",
            open.repeat(10_000),
            close.repeat(10_000)
        );
        let (code, at, count) = first_error(&source);
        assert_eq!(code, "E0005");
        assert_eq!(count, 1, "{open}: one error, nothing cascades");
        // The model's `{` is level 1, so bracket 256 of the expression is level 257.
        assert_eq!(at, prefix.len() + 255 * open.len(), "{open}");
    }
    // Just within the limit: parses (on the helper thread's big stack).
    let source = format!("{prefix}{}x{}\n}}\n", "(".repeat(255), ")".repeat(255));
    let (_, diags) = fm_grammar::parse(&source);
    assert!(diags.is_empty(), "{}", render(&source, &diags));
}

#[test]
fn deep_repeat_nesting_within_the_limit_parses_and_formats() {
    let n = 200;
    let source = format!(
        "model m {{\n    output y = x -> {}Dense(1){}\n}}\n",
        "repeat 2 { ".repeat(n),
        " }".repeat(n)
    );
    let (file, diags) = fm_grammar::parse(&source);
    assert!(diags.is_empty(), "{}", render(&source, &diags));
    check_format_contract("deep repeat", &source, &file);
}

#[test]
fn ten_thousand_stage_pipeline_is_rejected_without_overflow() {
    let source = format!(
        "model m {{\n    output y = x{}\n}}\n",
        " -> Dense(1)".repeat(10_000)
    );
    let (code, at, count) = first_error(&source);
    assert_eq!(code, "E0005");
    assert_eq!(count, 1);
    // `Dense(1)` is two levels (the call and its argument) and every `->` adds one above the
    // deeper side: after k stages the tree is k + 2 deep, so the 511th arrow is the first
    // that does not fit in 512 levels.
    let arrow = source.match_indices("->").nth(510).unwrap().0;
    assert_eq!(at, arrow);
}

#[test]
fn a_500_stage_pipeline_parses_and_formats_one_stage_per_line() {
    let source = format!(
        "model m {{\n    output y = x{}\n}}\n",
        " -> Dense(1)".repeat(500)
    );
    let (file, diags) = fm_grammar::parse(&source);
    assert!(diags.is_empty());
    let fm_grammar::ast::Item::Model(m) = &file.items[0] else {
        panic!("a model")
    };
    let fm_grammar::ast::Stmt::Output { value, .. } = &m.body[0] else {
        panic!("an output")
    };
    assert_eq!(value.pipeline().1.len(), 500);
    let formatted = check_format_contract("500 stages", &source, &file);
    assert_eq!(
        formatted
            .lines()
            .filter(|l| l == &"        -> Dense(1)")
            .count(),
        500
    );
}

#[test]
fn long_operator_chains_are_rejected_without_overflow() {
    for (op, rhs) in [(" + ", "1"), (" * ", "2"), (" - ", "(1 - 2)")] {
        let source = format!(
            "train {{\n    a: 0{}\n}}\n",
            format!("{op}{rhs}").repeat(10_000)
        );
        let (code, _, count) = first_error(&source);
        assert_eq!((code.as_str(), count), ("E0005", 1), "{op}");
    }
    let source = format!("train {{\n    a: {}1\n}}\n", "-".repeat(10_000));
    let (code, at, count) = first_error(&source);
    assert_eq!((code.as_str(), count), ("E0005", 1));
    // The minus 513 levels out is the first that does not fit.
    assert_eq!(at, "train {\n    a: ".len() + 10_000 - 512);
}

#[test]
fn ten_megabyte_file_parses_quickly() {
    let model = |i: usize| {
        format!(
            "/// Model number {i}.\nmodel m{i} {{\n    input image: f32[28, 28, 1]  // one sample\n    output probs = image\n        -> Conv2D(32, 3, relu, padding: same) -> MaxPool2D(2)\n        -> Flatten -> Dense(128, relu) -> Dropout(0.5) -> Dense(10, softmax)\n}}\n\n"
        )
    };
    let mut source = String::with_capacity(10 << 20);
    let mut count = 0;
    while source.len() < 10 << 20 {
        source.push_str(&model(count));
        count += 1;
    }
    source.pop(); // one newline at the end, as the formatter writes it
    let start = Instant::now();
    let (file, diags) = fm_grammar::parse(&source);
    let took = start.elapsed();
    assert!(diags.is_empty());
    assert_eq!(file.items.len(), count);
    assert_eq!(file.comments.len(), count);
    // About 2 s of CPU in a release build (0.2 s per MB); the bound is loose because tests run
    // in parallel on shared machines. It catches anything worse than linear.
    let limit = if cfg!(debug_assertions) { 120 } else { 20 };
    eprintln!("10 MB ({count} models): parsed in {took:?}");
    assert!(took < Duration::from_secs(limit), "10 MB took {took:?}");
    let start = Instant::now();
    let formatted = fm_grammar::format(&file, &source);
    assert!(start.elapsed() < Duration::from_secs(limit));
    // (Not assert_eq: a 10 MB diff is no help.)
    assert!(
        formatted == source,
        "the generated file is already canonical"
    );
}

#[test]
fn invalid_utf8_is_reported_at_the_bad_byte() {
    let good = "model m {\n    input x: f32[3]\n    output y = x -> Dense(1)\n}\n\n";
    let mut bytes = good.as_bytes().to_vec();
    bytes.extend_from_slice(b"// caf\xe9\ntrain { loss: mse }\n");
    let (file, diags) = fm_grammar::parse_bytes(&bytes);
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert_eq!(diags[0].code, "E0006");
    let at = good.len() + "// caf".len();
    assert_eq!(
        diags[0].primary.as_ref().unwrap().span,
        fm_grammar::ast::Span::new(at, at + 1)
    );
    // Everything before the bad byte is still parsed.
    assert_eq!(file.items.len(), 1);

    // A truncated multi-byte character at the very end.
    let (_, diags) = fm_grammar::parse_bytes(b"model m {}\n// \xc3");
    assert_eq!(diags.iter().map(|d| d.code).collect::<Vec<_>>(), ["E0006"]);

    // Inside an item: the cut item is not reported again.
    let (file, diags) = fm_grammar::parse_bytes(b"model m {\n    input x: f32[3] \xff\n}\n");
    assert_eq!(diags.iter().map(|d| d.code).collect::<Vec<_>>(), ["E0006"]);
    assert_eq!(file.items.len(), 1);
}

#[test]
fn degenerate_inputs() {
    for source in [
        "",
        " ",
        "\n\n\n",
        "\u{FEFF}",
        "\u{FEFF}model m {}\n",
        "//",
        "/**/",
        "///",
    ] {
        let (file, diags) = fm_grammar::parse(source);
        assert!(diags.is_empty(), "{source:?}: {diags:?}");
        check_format_contract(&format!("{source:?}"), source, &file);
    }
    for source in [
        "}",
        "{",
        ")",
        "->",
        "\"",
        "/*",
        "model",
        "model m",
        "model m {",
        "data",
        "train {",
        "1e",
    ] {
        let (_, diags) = fm_grammar::parse(source);
        assert!(!diags.is_empty(), "{source:?} should be an error");
    }
}
