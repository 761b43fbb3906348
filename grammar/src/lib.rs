//! The `.fm` language front end: the pest grammar, the AST with byte spans, syntax
//! diagnostics, the canonical formatter and the AST dump. No semantics live here.
//!
//! - [`parse`] / [`parse_bytes`]: source to [`ast::File`] plus E00xx diagnostics. Parsing never
//!   panics and always returns an AST: after a syntax error it resynchronises at the next
//!   statement keyword, section key, item keyword or `}` (see `parser.rs`), so every
//!   independent error is reported. Statements and entries with errors are left out of the
//!   AST; items keep whatever parsed.
//! - Limits (E0005): brackets nest at most [`lexer::MAX_NESTING`] (256) deep, and an expression
//!   tree is at most [`parser::MAX_EXPR_DEPTH`] (512) levels deep, so code that walks the AST
//!   recursively needs at most that much stack. Use [`ast::Expr::pipeline`] to walk a pipeline
//!   without recursion.
//! - [`format()`]: the canonical layout (`fmc fmt`); [`dump_ast`]: the readable tree
//!   (`fmc compile --emit ast`). Diagnostic codes and their explanations are `fm_codes`'.
//!   [`line_col`] / [`LineIndex`]: byte offsets to 1-based line and column.

pub mod ast;
pub mod diagnostic;
pub mod dump;
pub mod fmt;
pub mod lexer;
pub mod parser;

pub use diagnostic::{Diagnostic, Label, Severity};
pub use dump::dump_ast;
pub use fm_codes::Code;
pub use fmt::format;

/// Parses a whole file. Always returns a (possibly partial) AST; syntax errors (E00xx) are
/// returned beside it, several when recovery finds more than one, sorted by position.
pub fn parse(source: &str) -> (ast::File, Vec<Diagnostic>) {
    parser::parse_source(source)
}

/// Parses raw file bytes. Invalid UTF-8 is reported as E0006 at the first bad byte; the valid
/// prefix before it is parsed as usual (errors caused by the cut are not reported).
pub fn parse_bytes(bytes: &[u8]) -> (ast::File, Vec<Diagnostic>) {
    match std::str::from_utf8(bytes) {
        Ok(source) => parse(source),
        Err(err) => {
            let bad = err.valid_up_to();
            let len = err.error_len().unwrap_or(bytes.len() - bad).max(1);
            let diag = Diagnostic::error(fm_codes::E0006, "the file is not valid UTF-8")
                .with_primary(
                    ast::Span::new(bad, (bad + len).min(bytes.len())),
                    "invalid UTF-8 here",
                )
                .with_help("save the file as UTF-8");
            // The prefix up to `bad` is valid UTF-8 by construction.
            let prefix = std::str::from_utf8(&bytes[..bad]).unwrap_or("");
            let pre = lexer::prescan(prefix);
            let (end, fatal) = match pre.fatal {
                Some((pos, lexical)) => (pos, vec![lexical, diag]),
                None => (prefix.len(), vec![diag]),
            };
            let parse_prefix = || parser::parse_until(prefix, end, pre.comments, None);
            let (file, mut diags) = if pre.max_depth <= parser::IN_PLACE_DEPTH {
                parse_prefix()
            } else {
                parser::on_deep_stack(parse_prefix).unwrap_or_default()
            };
            diags.retain(|d| d.primary.as_ref().is_none_or(|l| l.span.start < end));
            diags.extend(fatal);
            (file, diags)
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// Byte offset to line/column conversion for many lookups in one source.
///
/// Cheap on ASCII lines (the column is a subtraction); on lines with other characters it counts
/// characters from the previous lookup when that was earlier on the same line, so a walk in
/// source order stays linear even on one enormous line.
pub struct LineIndex {
    /// Byte offset of the start of every line.
    starts: Vec<usize>,
    /// Whether each line is pure ASCII.
    ascii: Vec<bool>,
    /// The last non-ASCII lookup: (line, byte offset, column).
    last: std::cell::Cell<(usize, usize, usize)>,
}

impl LineIndex {
    pub fn new(source: &str) -> Self {
        let mut starts = vec![0];
        let mut ascii = vec![true];
        for (i, b) in source.bytes().enumerate() {
            if b == b'\n' {
                starts.push(i + 1);
                ascii.push(true);
            } else if !b.is_ascii() {
                if let Some(flag) = ascii.last_mut() {
                    *flag = false;
                }
            }
        }
        LineIndex {
            starts,
            ascii,
            last: std::cell::Cell::new((0, 0, 1)),
        }
    }

    /// 1-based line and column (in characters) of a byte offset into the same source.
    pub fn line_col(&self, source: &str, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(source.len());
        while !source.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&s| s <= offset);
        let start = self.starts[line - 1];
        if self.ascii[line - 1] {
            return (line, offset - start + 1);
        }
        let (last_line, last_offset, last_col) = self.last.get();
        let col = if last_line == line && last_offset <= offset {
            last_col + source[last_offset..offset].chars().count()
        } else {
            source[start..offset].chars().count() + 1
        };
        self.last.set((line, offset, col));
        (line, col)
    }
}
