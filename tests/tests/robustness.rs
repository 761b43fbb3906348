//! Robustness: thousands of seeded mutations of the examples go through parse + check (and the
//! summary and diagnostic renderers) without a panic, each within a time bound.

use fm_compiler::check::check_source;
use fm_compiler::diag::{render_all, MessageFormat, SourceFile};
use fm_tests::{files, root};
use std::path::Path;
use std::time::{Duration, Instant};

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

/// Tokens that make mutations reach the checker rather than stop in the parser.
const TOKENS: &[&str] = &[
    "0",
    "1",
    "-1",
    "2.5",
    "1e9",
    "1e300",
    "3",
    "64",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "->",
    "+",
    "-",
    "*",
    "/",
    "relu",
    "softmax",
    "Dense",
    "Conv2D",
    "Conv1D",
    "LSTM",
    "GRU",
    "Flatten",
    "Reshape([-1])",
    "MaxPool2D(2)",
    "Dropout(0.5)",
    "BatchNorm",
    "Embedding(10, 4)",
    "MultiHeadAttention(3)",
    "concat",
    "dim(x, -1)",
    "repeat 3 { Dense(2) }",
    "same",
    "valid",
    "x",
    "h",
    "image",
    "name: \"a\"",
    "\"s\"",
    "true",
    "false",
    "f32",
    "i32",
    "epochs",
    "steps",
    "split(0.2)",
    "none",
    "test",
    "let",
    "output",
    "input",
    "return",
    "block",
    "model",
    "train",
    "data",
    "residual",
    "encoder(4, 128)",
    "axis: 5",
    "from_logits: true",
    "clip_value: 1",
];

fn mutate(src: &str, rng: &mut Rng) -> String {
    let mut s: Vec<u8> = src.as_bytes().to_vec();
    let edits = 1 + rng.below(4);
    for _ in 0..edits {
        let at = rng.below(s.len() + 1);
        match rng.below(6) {
            // Delete a short run of bytes.
            0 => {
                let end = (at + 1 + rng.below(6)).min(s.len());
                s.drain(at.min(end)..end);
            }
            // Insert a random byte (including invalid UTF-8).
            1 => s.insert(at, rng.next() as u8),
            // Insert a token.
            2 | 3 => {
                let t = format!(" {} ", rng.pick(TOKENS));
                s.splice(at..at, t.bytes());
            }
            // Replace a number-looking byte with another digit run.
            4 => {
                if let Some(pos) = (at..s.len()).find(|&i| s[i].is_ascii_digit()) {
                    let t = rng.pick(&["0", "7", "100000", "1", "13", "0.5"]);
                    s.splice(pos..pos + 1, t.bytes());
                }
            }
            // Duplicate a slice elsewhere.
            _ => {
                let len = rng.below(40).min(s.len().saturating_sub(at));
                let piece: Vec<u8> = s[at..at + len].to_vec();
                let to = rng.below(s.len() + 1);
                s.splice(to..to, piece);
            }
        }
    }
    String::from_utf8_lossy(&s).into_owned()
}

#[test]
fn mutated_examples_never_panic() {
    let sources: Vec<String> = files(&root().join("examples"), "fm")
        .iter()
        .chain(files(&root().join("tests/golden/errors"), "fm").iter())
        // Lossy: one golden case is deliberately not UTF-8 (E0006).
        .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned())
        .collect();
    let cases = 4000;
    let bound = Duration::from_secs(2);
    let mut rng = Rng(0x5EED_F00D_1234_5678);
    let mut with_errors = 0;
    let mut checked_ok = 0;
    for i in 0..cases {
        let base = &sources[i % sources.len()];
        let text = mutate(base, &mut rng);
        let start = Instant::now();
        let result = std::panic::catch_unwind(|| {
            let c = check_source(&text, Path::new("m.fm"));
            let file = SourceFile {
                name: "m.fm",
                text: &text,
            };
            for format in [
                MessageFormat::Human,
                MessageFormat::Short,
                MessageFormat::Json,
            ] {
                render_all(&c.diagnostics, &file, format, true);
            }
            let style = fm_compiler::summary::Style {
                unicode: true,
                width: 80,
            };
            for m in &c.models {
                fm_compiler::summary::render(m, &c.trains, &style);
            }
            c.has_errors()
        });
        let elapsed = start.elapsed();
        match result {
            Ok(true) => with_errors += 1,
            Ok(false) => checked_ok += 1,
            Err(_) => panic!("case {i} panicked on:\n{text}"),
        }
        assert!(elapsed < bound, "case {i} took {elapsed:?}:\n{text}");
    }
    // The mutations exercise both paths.
    assert!(with_errors > cases / 4, "{with_errors} with errors");
    assert!(checked_ok > 10, "{checked_ok} checked cleanly");
}

#[test]
fn pathological_inputs_are_rejected_quickly() {
    let cases = [
        "model m { input x: f32[10] output y = x -> repeat 10000 { repeat 10000 { Dense(2) } } }",
        "model m { input x: f32[1000000000, 1000000000, 1000000000] output y = x -> Flatten -> Dense(1000000000) }",
        "model m { input x: f32[4] output y = x -> Reshape([1000000000, 1000000000, -1]) }",
        "model m { input x: f32[4] output y = x -> Dense(1e300) }",
        "model m { input x: f32[4] output y = x -> Conv1D(3, 1000000000) }",
        "model m { input x: f32[4, 4] output y = x -> Conv1D(3, 2, dilation: 1000000000) }",
        "model m { input x: f32[4] output y = x -> softmax(axis: -9223372036854775808) }",
        "model m { input x: i32[8] output y = x -> Embedding(1000000000, 1000000000) -> Flatten }",
        "model m { input x: f32[8, 1000000000] output y = x -> MultiHeadAttention(1000000000, key_dim: 1000000000) }",
        "model m { input x: f32[1000000000] output y = x -> repeat 30 { Dense(1000000000) } }",
        "block a(x) { return x -> b } block b(x) { return x -> c } block c(x) { return x -> a } model m { input x: f32[2] output y = x -> a }",
    ];
    for src in cases {
        let start = Instant::now();
        let c = check_source(src, Path::new("p.fm"));
        assert!(c.has_errors(), "{src}");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{src} took {:?}",
            start.elapsed()
        );
    }
}

/// Replaces one identifier or number of a valid example with another, so most cases parse and
/// exercise the checker rather than the parser.
fn token_mutation(src: &str, rng: &mut Rng) -> String {
    const REPLACEMENTS: &[&str] = &[
        "0",
        "1",
        "-1",
        "3",
        "0.5",
        "7",
        "1000",
        "Dense",
        "Conv2D",
        "Conv1D",
        "MaxPool2D",
        "GlobalAvgPool2D",
        "GlobalAvgPool1D",
        "LSTM",
        "GRU",
        "SimpleRNN",
        "Embedding",
        "Flatten",
        "BatchNorm",
        "LayerNorm",
        "Dropout",
        "Rescale",
        "GroupNorm",
        "UpSampling2D",
        "PositionEmbedding",
        "MultiHeadAttention",
        "relu",
        "softmax",
        "sigmoid",
        "concat",
        "dim",
        "same",
        "valid",
        "mse",
        "mae",
        "binary_crossentropy",
        "categorical_crossentropy",
        "sparse_categorical_crossentropy",
        "SGD",
        "Adam",
        "RMSprop",
        "Cosine",
        "Step",
        "accuracy",
        "top_k",
        "x",
        "h",
        "image",
        "tokens",
        "f32",
        "i32",
        "unknown_name",
        "residual",
        "encoder",
        "true",
        "false",
        "none",
        "test",
    ];
    // Byte ranges of identifier and number tokens (outside comments and strings is not
    // tracked: mutations inside them are harmless).
    let bytes = src.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' {
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'.')
            {
                i += 1;
            }
            tokens.push((start, i));
        } else {
            i += 1;
        }
    }
    let mut out = src.to_string();
    let edits = 1 + rng.below(2);
    for _ in 0..edits {
        if tokens.is_empty() {
            break;
        }
        let (a, b) = tokens[rng.below(tokens.len())];
        if b <= out.len() && out.is_char_boundary(a) && out.is_char_boundary(b) {
            let with = rng.pick(REPLACEMENTS);
            // Keep later token offsets valid by replacing with equal-length padding first.
            out.replace_range(a..b, &format!("{with:<width$}", width = b - a));
            tokens.retain(|&(s, _)| s != a);
            if with.len() > b - a {
                // Offsets after this point moved; recompute lazily by stopping here.
                break;
            }
        }
    }
    out
}

#[test]
fn token_mutations_reach_the_checker_without_panics() {
    let sources: Vec<String> = files(&root().join("examples"), "fm")
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let cases = 3000;
    let mut rng = Rng(0xC0FF_EE00_DEAD_BEEF);
    let mut semantic = 0;
    for i in 0..cases {
        let text = token_mutation(&sources[i % sources.len()], &mut rng);
        let start = Instant::now();
        let result = std::panic::catch_unwind(|| {
            let c = check_source(&text, Path::new("m.fm"));
            let file = SourceFile {
                name: "m.fm",
                text: &text,
            };
            render_all(&c.diagnostics, &file, MessageFormat::Human, false);
            let style = fm_compiler::summary::Style {
                unicode: false,
                width: 80,
            };
            for m in &c.models {
                fm_compiler::summary::render(m, &c.trains, &style);
            }
            c.diagnostics
                .iter()
                .any(|d| d.is_error() && !d.code.as_str().starts_with("E00"))
        });
        match result {
            Ok(true) => semantic += 1,
            Ok(false) => {}
            Err(_) => panic!("case {i} panicked on:\n{text}"),
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "case {i} is slow:\n{text}"
        );
    }
    // Most token swaps produce semantic (not syntax) errors: the checker is what is tested.
    assert!(
        semantic > cases / 3,
        "only {semantic} of {cases} reached semantic errors"
    );
}

#[test]
fn deepest_accepted_expressions_check_on_a_small_stack() {
    let pipeline = format!(
        "model m {{ input x: f32[4] output y = x {}}}",
        "-> relu ".repeat(511)
    );
    let sums = format!(
        "model m {{ input x: f32[4] output y = {}x{} }}",
        "(".repeat(250),
        " + x)".repeat(250)
    );
    let calls = format!(
        "model m {{ input x: f32[4] output y = Dense({}x{}, 4) }}",
        "Dense(".repeat(250),
        ", 4)".repeat(250)
    );
    for src in [pipeline, sums, calls] {
        // 1 MiB: half of a test thread's default, a quarter of a worker thread's.
        let handle = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || {
                let c = check_source(&src, Path::new("deep.fm"));
                (c.has_errors(), c.models.len())
            })
            .unwrap();
        let (errors, models) = handle.join().expect("checking overflowed the stack");
        assert!(!errors);
        assert_eq!(models, 1);
    }
}
