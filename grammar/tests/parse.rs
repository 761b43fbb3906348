//! The parser's AST in detail: precedence, literals, spans, docs, comments, codes.

mod common;

use fm_grammar::ast::*;

fn parse_ok(source: &str) -> File {
    let (file, diags) = fm_grammar::parse(source);
    assert!(diags.is_empty(), "{}", common::render(source, &diags));
    file
}

/// The value of the single entry of `train { v: EXPR }`.
fn value(expr: &str) -> Expr {
    let file = parse_ok(&format!("train {{ v: {expr} }}"));
    let Item::Train(s) = &file.items[0] else {
        panic!("a train section")
    };
    s.entries[0].value.clone()
}

/// A compact S-expression of an expression, for precedence checks.
fn sexp(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Number { text, .. } => text.clone(),
        ExprKind::Str(s) => format!("{s:?}"),
        ExprKind::Bool(b) => b.to_string(),
        ExprKind::Name(n) => n.name.clone(),
        ExprKind::Call { callee, args } => {
            let args: Vec<String> = args
                .iter()
                .map(|a| match &a.name {
                    Some(n) => format!("{}={}", n.name, sexp(&a.value)),
                    None => sexp(&a.value),
                })
                .collect();
            format!("{}({})", callee.name, args.join(" "))
        }
        ExprKind::Pipe { lhs, stage } => format!("(-> {} {})", sexp(lhs), sexp(stage)),
        ExprKind::Repeat { count, body } => {
            let body: Vec<String> = body.iter().map(sexp).collect();
            format!("(repeat {} {})", sexp(count), body.join(" "))
        }
        ExprKind::Binary { op, lhs, rhs } => {
            format!("({} {} {})", op.symbol(), sexp(lhs), sexp(rhs))
        }
        ExprKind::Neg(x) => format!("(neg {})", sexp(x)),
        ExprKind::Paren(x) => format!("[{}]", sexp(x)),
        ExprKind::List(items) => format!(
            "list({})",
            items.iter().map(sexp).collect::<Vec<_>>().join(" ")
        ),
        ExprKind::Dict(entries) => format!(
            "dict({})",
            entries
                .iter()
                .map(|e| format!("{}={}", e.key.name, sexp(&e.value)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        ExprKind::Step { name, body } => format!(
            "step {}({})",
            name.name,
            body.iter()
                .map(|e| format!("{}={}", e.key.name, sexp(&e.value)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        ExprKind::Duration { value, unit } => format!("{}{:?}", sexp(value), unit),
    }
}

#[test]
fn precedence_and_associativity() {
    let cases = [
        ("a + b -> relu", "(-> (+ a b) relu)"),
        ("x -> A -> B(1)", "(-> (-> x A) B(1))"),
        ("1 - 2 - 3", "(- (- 1 2) 3)"),
        ("1 / 2 / 3", "(/ (/ 1 2) 3)"),
        ("2 * 3 + 4 * 5", "(+ (* 2 3) (* 4 5))"),
        ("-x * 2", "(* (neg x) 2)"),
        ("--x", "(neg (neg x))"),
        ("1 - -2", "(- 1 (neg 2))"),
        ("(1 + 2) * 3", "(* [(+ 1 2)] 3)"),
        ("x-1", "(- x 1)"),
        ("x->relu", "(-> x relu)"),
        ("f(a + b, k: 2 * c)", "f((+ a b) k=(* 2 c))"),
        ("(x -> relu)", "[(-> x relu)]"),
        (
            "x -> repeat 2 { A -> B(3) } -> C",
            "(-> (-> x (repeat 2 A B(3))) C)",
        ),
        ("[1, 2, 3,]", "list(1 2 3)"),
        ("[]", "list()"),
        ("{ a: 1, model: x, b: [c] }", "dict(a=1 model=x b=list(c))"),
        ("{}", "dict()"),
        ("f()", "f()"),
        ("f(1, 2,)", "f(1 2)"),
        ("true", "true"),
        ("falsey", "falsey"),
        ("repeat_count", "repeat_count"),
    ];
    for (source, expected) in cases {
        assert_eq!(sexp(&value(source)), expected, "{source}");
    }
}

#[test]
fn durations() {
    assert_eq!(sexp(&value("5 epochs")), "5Epochs");
    assert_eq!(sexp(&value("1 epoch")), "1Epochs");
    assert_eq!(sexp(&value("500 steps")), "500Steps");
    assert_eq!(sexp(&value("1 step")), "1Steps");
    assert_eq!(
        sexp(&value("Step(every: 10 epochs)")),
        "Step(every=10Epochs)"
    );
    // A unit followed by `:` is the next key, not a duration.
    let file = parse_ok("train {\n    batch_size: 32\n    epochs: 5\n    step: 1\n}");
    let Item::Train(s) = &file.items[0] else {
        panic!()
    };
    let keys: Vec<&str> = s.entries.iter().map(|e| e.key.name.as_str()).collect();
    assert_eq!(keys, ["batch_size", "epochs", "step"]);
    assert_eq!(sexp(&s.entries[0].value), "32");
}

#[test]
fn numbers_keep_their_text_and_value() {
    let cases = [
        ("32", 32.0, true),
        ("0.5", 0.5, false),
        ("1e-3", 1e-3, false),
        ("2.5E+2", 250.0, false),
        ("1e3", 1000.0, false),
        ("007", 7.0, true),
    ];
    for (text, v, int) in cases {
        let e = value(text);
        let ExprKind::Number {
            text: t,
            value: got,
            is_int,
        } = &e.kind
        else {
            panic!("{text}: {:?}", e.kind)
        };
        assert_eq!((t.as_str(), *got, *is_int), (text, v, int));
    }
}

#[test]
fn invalid_numbers_are_e0004() {
    for bad in ["1e", "1e+", "1.5.2", "5epochs", "1x", "1e999"] {
        let (_, diags) = fm_grammar::parse(&format!("train {{ v: {bad} }}"));
        assert_eq!(diags.len(), 1, "{bad}: {diags:?}");
        assert_eq!(diags[0].code, "E0004", "{bad}");
        let span = diags[0].primary.as_ref().unwrap().span;
        assert_eq!(span.start, "train { v: ".len(), "{bad}");
    }
}

#[test]
fn string_escapes() {
    let e = value(r#""a\"b\\c\nd\te/é""#);
    assert_eq!(e.kind, ExprKind::Str("a\"b\\c\nd\te/é".to_string()));
    let (_, diags) = fm_grammar::parse(r#"train { v: "a\qb\x" }"#);
    let codes: Vec<_> = diags
        .iter()
        .map(|d| (d.code.as_str(), d.primary.as_ref().unwrap().span))
        .collect();
    assert_eq!(
        codes,
        [("E0007", Span::new(13, 15)), ("E0007", Span::new(16, 18))]
    );
}

#[test]
fn spans_are_byte_ranges_of_what_was_written() {
    let source =
        "model m {\n    input image: f32[28, 28] // c\n    output probs = image -> Dense(10)\n}\n";
    let file = parse_ok(source);
    let Item::Model(m) = &file.items[0] else {
        panic!()
    };
    let text = |s: Span| &source[s.start..s.end];
    assert_eq!(text(m.span), &source[..source.len() - 1]);
    assert_eq!(text(m.name.span), "m");
    let Stmt::Input {
        name,
        dtype,
        dims,
        span,
        ..
    } = &m.body[0]
    else {
        panic!()
    };
    assert_eq!(text(*span), "input image: f32[28, 28]");
    assert_eq!((text(name.span), text(dtype.span)), ("image", "f32"));
    assert_eq!(text(dims[1].span), "28");
    let Stmt::Output { name, value, span } = &m.body[1] else {
        panic!()
    };
    assert_eq!(text(*span), "output probs = image -> Dense(10)");
    assert_eq!(text(name.as_ref().unwrap().span), "probs");
    assert_eq!(text(value.span), "image -> Dense(10)");
    let (head, stages) = value.pipeline();
    assert_eq!(text(head.span), "image");
    assert_eq!(text(stages[0].span), "Dense(10)");
    let ExprKind::Call { args, .. } = &stages[0].kind else {
        panic!()
    };
    assert_eq!(text(args[0].span), "10");
    assert_eq!(file.comments[0].text, "// c");
    assert_eq!(text(file.comments[0].span), "// c");
}

#[test]
fn spans_exclude_trailing_comments_and_whitespace() {
    let source = "model m {\n    output y = x -> relu /* why */\n        // more\n}\n";
    let file = parse_ok(source);
    let Item::Model(m) = &file.items[0] else {
        panic!()
    };
    let s = m.body[0].span();
    assert_eq!(&source[s.start..s.end], "output y = x -> relu");
}

#[test]
fn doc_comments_belong_to_items_and_other_comments_to_the_file() {
    let source = "// file\n/// First line.\n///\n///  Indented.\nmodel m {\n    /// not a doc here\n    output x\n}\n\n/// Data doc.\ndata d { train: f() }\n/// Train doc.\ntrain { loss: mse }\n/// Block doc.\nblock b(x) { return x }\n//// four slashes\n";
    let file = parse_ok(source);
    let docs: Vec<Vec<String>> = file
        .items
        .iter()
        .map(|i| match i {
            Item::Model(m) => m.doc.clone(),
            Item::Block(b) => b.doc.clone(),
            Item::Data(s) | Item::Train(s) => s.doc.clone(),
        })
        .collect();
    assert_eq!(
        docs,
        [
            vec![
                "First line.".to_string(),
                String::new(),
                " Indented.".to_string()
            ],
            vec!["Data doc.".to_string()],
            vec!["Train doc.".to_string()],
            vec!["Block doc.".to_string()],
        ]
    );
    let comments: Vec<&str> = file.comments.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(
        comments,
        ["// file", "/// not a doc here", "//// four slashes"]
    );
}

#[test]
fn items_statements_and_params() {
    let source = "version 0.1\nblock b(x, y, n: int, r: float = 0.1, a: ident = relu, f: bool = false,) {\n    let h = x + y\n    return h\n}\nmodel m {\n    input t: i32[64,]\n    output Dense(1)\n}\ntrain m { loss: mse }\ntrain { loss: mae }\n";
    let file = parse_ok(source);
    assert_eq!(file.version.as_ref().map(|v| v.0.as_str()), Some("0.1"));
    assert_eq!(file.items.len(), 4);
    let Item::Block(b) = &file.items[0] else {
        panic!()
    };
    let params: Vec<String> = b
        .params
        .iter()
        .map(|p| {
            format!(
                "{}:{:?}={}",
                p.name.name,
                p.ty.as_ref().map(|t| t.kind),
                p.default.as_ref().map_or("-".to_string(), sexp)
            )
        })
        .collect();
    assert_eq!(
        params,
        [
            "x:None=-",
            "y:None=-",
            "n:Some(Int)=-",
            "r:Some(Float)=0.1",
            "a:Some(Ident)=relu",
            "f:Some(Bool)=false"
        ]
    );
    assert!(matches!(b.body[1], Stmt::Return { .. }));
    let Item::Model(m) = &file.items[1] else {
        panic!()
    };
    assert!(matches!(&m.body[1], Stmt::Output { name: None, .. }));
    let Item::Train(t) = &file.items[2] else {
        panic!()
    };
    assert_eq!(t.name.as_ref().map(|n| n.name.as_str()), Some("m"));
    let Item::Train(t) = &file.items[3] else {
        panic!()
    };
    assert!(t.name.is_none());
}

#[test]
fn recovery_reports_independent_errors_and_keeps_good_items() {
    let source = "model a {\n    input x f32[3]\n    output y = x -> Dense(1)\n}\n\nmodel b {\n    input x: f32[3]\n    let h = x -> Dense(2 -> relu\n    output y = h\n}\n\ntrain a {\n    loss mse\n    epochs: 5\n}\n";
    let (file, diags) = fm_grammar::parse(source);
    let at: Vec<(&str, (usize, usize))> = diags
        .iter()
        .map(|d| {
            (
                d.code.as_str(),
                fm_grammar::line_col(source, d.primary.as_ref().unwrap().span.start),
            )
        })
        .collect();
    assert_eq!(
        at,
        [("E0001", (2, 13)), ("E0001", (8, 26)), ("E0001", (13, 10))]
    );
    // The good statements and entries around the errors survive.
    assert_eq!(file.items.len(), 3);
    let Item::Model(a) = &file.items[0] else {
        panic!()
    };
    assert_eq!(a.body.len(), 1);
    let Item::Model(b) = &file.items[1] else {
        panic!()
    };
    assert_eq!(b.body.len(), 2);
    let Item::Train(t) = &file.items[2] else {
        panic!()
    };
    assert_eq!(t.entries.len(), 1);
}

#[test]
fn line_col_counts_characters() {
    let source = "ab\ncé d\n";
    assert_eq!(fm_grammar::line_col(source, 0), (1, 1));
    assert_eq!(fm_grammar::line_col(source, 3), (2, 1));
    assert_eq!(
        fm_grammar::line_col(source, source.find('d').unwrap()),
        (2, 4)
    );
    assert_eq!(fm_grammar::line_col(source, 999), (3, 1));
    let index = fm_grammar::LineIndex::new(source);
    assert_eq!(index.line_col(source, source.find('d').unwrap()), (2, 4));
}

#[test]
fn parse_bytes_on_valid_utf8_is_parse() {
    let source = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/resnet_tiny.fm"
    ))
    .unwrap();
    let text = String::from_utf8(source.clone()).unwrap();
    assert_eq!(fm_grammar::parse_bytes(&source), fm_grammar::parse(&text));
}

#[test]
fn version_0_2_statements_and_steps_parse() {
    let src = "version 0.2
model m {
    input z: f32[4] ~ normal(0, 1)
    target t: f32[]
    output y = z -> Dense(1)
}
train m {
    step fit { update: d, loss: mse(y, t), optimizer: SGD(lr: 0.1) }
    epochs: 2
}
";
    let (file, diags) = fm_grammar::parse(src);
    assert!(diags.is_empty(), "{diags:?}");
    let Item::Model(m) = &file.items[0] else {
        panic!("model")
    };
    let Stmt::Input { sample, .. } = &m.body[0] else {
        panic!("input")
    };
    assert_eq!(sexp(sample.as_ref().unwrap()), "normal(0 1)");
    assert!(matches!(&m.body[1], Stmt::Target { dims, .. } if dims.is_empty()));
    let Item::Train(t) = &file.items[1] else {
        panic!("train")
    };
    assert_eq!(t.entries[0].key.name, "step");
    assert_eq!(
        sexp(&t.entries[0].value),
        "step fit(update=d loss=mse(y t) optimizer=SGD(lr=0.1))"
    );
    assert_eq!(t.entries[1].key.name, "epochs");
    // `step` stays usable as an entry key and `target` as a name.
    let (_, diags) = fm_grammar::parse("model m { input target: f32[1] output y = target }");
    assert!(diags.is_empty(), "{diags:?}");
    // The formatter keeps steps and sampled inputs.
    let formatted = fm_grammar::format(&file, src);
    assert!(
        formatted.contains("input z: f32[4] ~ normal(0, 1)"),
        "{formatted}"
    );
    assert!(
        formatted.contains("step fit { update: d, loss: mse(y, t), optimizer: SGD(lr: 0.1) }"),
        "{formatted}"
    );
}
