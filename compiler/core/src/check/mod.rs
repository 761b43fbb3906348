//! Semantic checking: from the AST to checked layer graphs and resolved training setups.
//!
//! - `table`: every built-in with its arguments, types, defaults and ranges.
//! - `values`: checked values and constant folding.
//! - `bind`: matching call arguments to a built-in's parameters.
//! - `items`: top-level names (duplicates, built-in clashes) and block recursion.
//! - `expand`: evaluating model bodies, expanding blocks and `repeat`, naming scopes.
//! - `layers`: shape inference and the parameter table of every layer and function.
//! - `train` and `data`: the `train` and `data` sections.
//! - `limits`: sizes computed before allocation (layers, nesting, memory) against the budget.
//! - `overrides`: `--set KEY=VALUE` applied to a `train` section before checking.

pub mod bind;
pub mod data;
pub mod expand;
pub mod functions;
pub mod items;
pub mod layers;
pub mod limits;
pub mod overrides;
pub mod table;
pub mod train;
pub mod values;

use crate::graph::ModelGraph;
use fm_grammar::ast::{self, Span};
use fm_grammar::Diagnostic;
use fm_runtime::config::{DataSpec, TrainSpec};
pub use limits::Limits;
use std::collections::HashSet;
use std::path::Path;

/// The result of checking a file: everything that checked, and every diagnostic.
#[derive(Clone, Debug, Default)]
pub struct Checked {
    /// One graph per model that checked without errors, in source order.
    pub models: Vec<ModelGraph>,
    /// One per `train` section that checked.
    pub trains: Vec<TrainSpec>,
    /// One per `data` section that checked.
    pub data: Vec<DataSpec>,
    /// Errors and warnings in source order (syntax errors only, when there were any).
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|d| d.is_error())
    }
}

/// Parses and checks `source`. `path` is the file's path: data paths resolve relative to its
/// directory and notes name it. After a syntax error only syntax errors are reported.
pub fn check_source(source: &str, path: &Path) -> Checked {
    check_source_with(source, path, &Limits::default())
}

/// [`check_source`] against a memory budget.
pub fn check_source_with(source: &str, path: &Path, limits: &Limits) -> Checked {
    let (file, syntax) = fm_grammar::parse(source);
    if !syntax.is_empty() {
        return Checked {
            diagnostics: syntax,
            ..Checked::default()
        };
    }
    check_with(&file, source, path, limits)
}

/// Reads, parses and checks a file: the source as text (invalid UTF-8 replaced) and the result.
/// Invalid UTF-8 is reported as E0006 by the parser.
pub fn check_file(path: &Path) -> std::io::Result<(String, Checked)> {
    check_file_with(path, &Limits::default())
}

/// [`check_file`] against a memory budget.
pub fn check_file_with(path: &Path, limits: &Limits) -> std::io::Result<(String, Checked)> {
    let bytes = limits::read_source(path)?;
    let source = String::from_utf8_lossy(&bytes).into_owned();
    let (file, syntax) = fm_grammar::parse_bytes(&bytes);
    let checked = if syntax.is_empty() {
        check_with(&file, &source, path, limits)
    } else {
        Checked {
            diagnostics: syntax,
            ..Checked::default()
        }
    };
    Ok((source, checked))
}

/// Checks a parsed file against the machine's memory.
pub fn check(file: &ast::File, source: &str, path: &Path) -> Checked {
    check_with(file, source, path, &Limits::default())
}

/// Checks a parsed file against a memory budget. Runs on a thread with a stack sized for the
/// deepest expansion [`limits::MAX_DEPTH`] allows, whatever the caller's stack.
pub fn check_with(file: &ast::File, source: &str, path: &Path, limits: &Limits) -> Checked {
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("fm-check".to_string())
            .stack_size(limits::CHECK_STACK)
            .spawn_scoped(scope, || check_here(file, source, path, limits));
        match worker {
            Ok(handle) => match handle.join() {
                Ok(checked) => checked,
                Err(panic) => std::panic::resume_unwind(panic),
            },
            // No thread could be started: check on this one.
            Err(_) => check_here(file, source, path, limits),
        }
    })
}

fn check_here(file: &ast::File, source: &str, path: &Path, limits: &Limits) -> Checked {
    let mut ctx = Ctx::new(source, &path.display().to_string());
    ctx.version_0_2 = file.version.as_ref().is_some_and(|(v, _)| v == "0.2");
    ctx.limits = *limits;
    let items = items::collect(&mut ctx, file);
    let mut models = expand::expand_models(&mut ctx, &items);
    let base_dir = path.parent().unwrap_or(Path::new(""));
    let data = data::resolve_all(&mut ctx, &items, base_dir);
    let trains = train::resolve_all(&mut ctx, &items, &mut models, &data);
    let mut diagnostics = ctx.finish();
    diagnostics.sort_by_key(|d| d.primary.as_ref().map(|l| l.span.start).unwrap_or(0));
    Checked {
        models: models.into_iter().filter_map(|m| m.graph).collect(),
        trains,
        data: data.into_iter().filter_map(|d| d.spec).collect(),
        diagnostics,
    }
}

/// The checker's state: the source for notes, the diagnostics so far, and context that every
/// diagnostic picks up (the block expansions it happened inside, the names in scope).
pub struct Ctx<'a> {
    pub src: &'a str,
    pub file_name: String,
    diags: Vec<Diagnostic>,
    /// (code, message, primary span) of every diagnostic recorded, to drop repeats in O(1).
    seen: HashSet<(fm_codes::Code, String, Option<Span>)>,
    errors: usize,
    /// "while expanding `residual(64)` at FILE:12:12", innermost last.
    pub expansion_notes: Vec<String>,
    /// Names bound in the scope being checked (for "did you mean").
    pub locals: Vec<String>,
    /// The file declares `version 0.2`: `let` and `output` expressions may use `/`, unary
    /// minus, numbers as tensor operands and the functions of language.md 9.3.
    pub version_0_2: bool,
    /// The memory budget sizes are checked against.
    pub limits: Limits,
    /// Set while the rest of a model that went over a limit is skipped: its diagnostics would
    /// be consequences of the cut, not findings.
    pub muted: bool,
}

impl<'a> Ctx<'a> {
    pub fn new(src: &'a str, file_name: &str) -> Self {
        Ctx {
            src,
            file_name: file_name.to_string(),
            diags: Vec::new(),
            seen: HashSet::new(),
            errors: 0,
            expansion_notes: Vec::new(),
            locals: Vec::new(),
            version_0_2: false,
            limits: Limits::default(),
            muted: false,
        }
    }

    /// Records a diagnostic, adding the notes of the block expansions it happened inside.
    /// The same error found again in another expansion of the same code is dropped.
    pub fn emit(&mut self, mut d: Diagnostic) {
        if self.muted {
            return;
        }
        for note in self.expansion_notes.iter().rev() {
            d.notes.push(note.clone());
        }
        let key = (
            d.code,
            d.message.clone(),
            d.primary.as_ref().map(|l| l.span),
        );
        if self.seen.insert(key) {
            self.errors += usize::from(d.is_error());
            self.diags.push(d);
        }
    }

    /// An error with one primary label.
    pub fn error(
        &mut self,
        code: fm_codes::Code,
        message: impl Into<String>,
        span: Span,
        label: impl Into<String>,
    ) {
        self.emit(Diagnostic::error(code, message).with_primary(span, label));
    }

    /// `file:line:col` of a byte offset.
    pub fn location(&self, offset: usize) -> String {
        let (line, col) = crate::diag::line_col(self.src, offset);
        format!("{}:{line}:{col}", self.file_name)
    }

    /// The source text of a span with runs of whitespace collapsed (`residual(64)`).
    pub fn snippet(&self, span: Span) -> String {
        let text = self.src.get(span.start..span.end).unwrap_or("");
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    pub fn finish(self) -> Vec<Diagnostic> {
        self.diags
    }

    pub fn error_count(&self) -> usize {
        self.errors
    }
}

/// Longest name (bytes) `suggest` compares.
const MAX_SUGGEST_LEN: usize = 64;

/// The closest candidate to `name` by edit distance, when it is close enough to be a likely typo.
pub fn suggest<'c>(name: &str, candidates: impl Iterator<Item = &'c str>) -> Option<String> {
    // Typos are short; the edit distance is quadratic, so very long names get no suggestion.
    if name.len() > MAX_SUGGEST_LEN {
        return None;
    }
    let limit = (name.chars().count().max(3) / 3).max(1);
    let lower = name.to_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        if c == name || c.len() > MAX_SUGGEST_LEN {
            continue;
        }
        // Case-only differences (`dense` for `Dense`) are always worth suggesting.
        let d = if c.to_lowercase() == lower {
            0
        } else {
            edit_distance(&lower, &c.to_lowercase())
        };
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c.to_string())
}

/// Keras's (and PyTorch's) names of arguments fm spells differently, as (theirs, fm's).
const KERAS_NAMES: &[(&str, &str)] = &[
    ("learning_rate", "lr"),
    ("strides", "stride"),
    ("kernel_size", "kernel"),
    ("dilation_rate", "dilation"),
    ("pool_size", "size"),
    ("kernel_initializer", "init"),
    ("bias_initializer", "bias_init"),
    ("num_heads", "heads"),
    ("input_dim", "vocab"),
    ("output_dim", "dim"),
    ("target_shape", "shape"),
    ("beta_1", "beta1"),
    ("beta_2", "beta2"),
    ("clipnorm", "clip_norm"),
    ("global_clipnorm", "global_clip_norm"),
    ("clipvalue", "clip_value"),
];

/// The name fm uses for an argument written with its Keras name (`learning_rate` -> `lr`), when
/// it is one of `candidates`; otherwise the closest candidate ([`suggest`]).
pub fn suggest_argument<'c>(
    name: &str,
    candidates: impl Iterator<Item = &'c str> + Clone,
) -> Option<String> {
    KERAS_NAMES
        .iter()
        .find(|(keras, fm)| *keras == name && candidates.clone().any(|c| c == *fm))
        .map(|(_, fm)| fm.to_string())
        .or_else(|| suggest(name, candidates))
}

/// Edit distance over chars where a swap of two neighbours counts as one edit (optimal string
/// alignment), so `smae` is one edit from `same`.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("Dense", "Dense"), 0);
        assert_eq!(edit_distance("Dnse", "Dense"), 1);
        assert_eq!(edit_distance("Conv2d", "Conv2D"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("smae", "same"), 1);
    }

    #[test]
    fn suggestions_are_close_names_only() {
        let names = ["Dense", "Dropout", "Conv2D"];
        assert_eq!(
            suggest("Dnse", names.iter().copied()).as_deref(),
            Some("Dense")
        );
        assert_eq!(
            suggest("conv2d", names.iter().copied()).as_deref(),
            Some("Conv2D")
        );
        assert_eq!(suggest("Transformer", names.iter().copied()), None);
    }

    #[test]
    fn keras_argument_names_suggest_fm_names() {
        let adam = ["lr", "beta1", "beta2", "epsilon"];
        let s = |n: &str| suggest_argument(n, adam.iter().copied());
        assert_eq!(s("learning_rate").as_deref(), Some("lr"));
        assert_eq!(s("beta_1").as_deref(), Some("beta1"));
        assert_eq!(s("epsilom").as_deref(), Some("epsilon"));
        // A Keras name whose fm name the callee does not take suggests nothing from the table.
        assert_eq!(s("strides"), None);
    }
}
