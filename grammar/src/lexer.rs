//! A small scanner that runs before pest, and token helpers for the recovering driver.
//!
//! The pre-scan walks the whole source once, respecting strings and comments, and
//! - collects every `//`, `///` and `/* */` comment (the parser later moves `///` runs that
//!   precede an item into the item's `doc`),
//! - finds the first *fatal* lexical error: an unterminated string (E0002), an unterminated block
//!   comment (E0003) or brackets nested deeper than [`MAX_NESTING`] (E0005).
//!
//! pest is a recursive-descent parser, so bounding the bracket depth here, before pest ever sees
//! the text, is what keeps pathological inputs (`((((...` 10,000 deep) from overflowing the stack.
//! After a fatal error the parser only looks at the source before it.

use crate::ast::Span;
use crate::diagnostic::Diagnostic;
use fm_codes as codes;

/// The deepest bracket nesting (`(`, `[`, `{` together) the parser accepts.
pub const MAX_NESTING: usize = 256;

/// A comment found by the pre-scan.
#[derive(Clone, Debug, PartialEq)]
pub struct RawComment {
    pub span: Span,
    /// `///` (but not `////`): a doc comment candidate.
    pub is_doc: bool,
}

pub struct Prescan {
    pub comments: Vec<RawComment>,
    /// The first fatal lexical error and where it starts; the parser stops there.
    pub fatal: Option<(usize, Diagnostic)>,
    /// The deepest bracket nesting seen (before any fatal error).
    pub max_depth: usize,
}

pub fn prescan(src: &str) -> Prescan {
    let bytes = src.as_bytes();
    let mut comments = Vec::new();
    // Open brackets, to point E0005 at the offending one.
    let mut depth = 0usize;
    let mut max_depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => match string_end(bytes, i) {
                Some(end) => i = end,
                None => {
                    let diag = Diagnostic::error(codes::E0002, "unterminated string")
                        .with_primary(Span::new(i, i + 1), "string starts here")
                        .with_help(
                            "close the string with `\"`; write `\\\"` for a quote inside it",
                        );
                    return Prescan {
                        comments,
                        fatal: Some((i, diag)),
                        max_depth,
                    };
                }
            },
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                let end = line_end(bytes, i);
                let is_doc = bytes.get(i + 2) == Some(&b'/') && bytes.get(i + 3) != Some(&b'/');
                comments.push(RawComment {
                    span: Span::new(i, trim_cr(bytes, i, end)),
                    is_doc,
                });
                i = end;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => match block_comment_end(bytes, i) {
                Some(end) => {
                    comments.push(RawComment {
                        span: Span::new(i, end),
                        is_doc: false,
                    });
                    i = end;
                }
                None => {
                    let diag = Diagnostic::error(codes::E0003, "unterminated block comment")
                        .with_primary(Span::new(i, i + 2), "comment starts here")
                        .with_help("close the comment with `*/`");
                    return Prescan {
                        comments,
                        fatal: Some((i, diag)),
                        max_depth,
                    };
                }
            },
            b'(' | b'[' | b'{' => {
                depth += 1;
                max_depth = max_depth.max(depth.min(MAX_NESTING));
                if depth > MAX_NESTING {
                    let diag = Diagnostic::error(
                        codes::E0005,
                        format!("brackets nested more than {MAX_NESTING} deep"),
                    )
                    .with_primary(Span::new(i, i + 1), "too deeply nested")
                    .with_help("split the expression with `let` bindings");
                    return Prescan {
                        comments,
                        fatal: Some((i, diag)),
                        max_depth,
                    };
                }
                i += 1;
            }
            b')' | b']' | b'}' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            _ => i += 1,
        }
    }
    Prescan {
        comments,
        fatal: None,
        max_depth,
    }
}

/// The index just past the closing quote of the string starting at `start`, or `None` when the
/// string is unterminated.
pub fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// The index of the `\n` ending the line (or the end of the source).
pub fn line_end(bytes: &[u8], start: usize) -> usize {
    bytes[start..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |p| start + p)
}

fn trim_cr(bytes: &[u8], start: usize, end: usize) -> usize {
    if end > start && bytes[end - 1] == b'\r' {
        end - 1
    } else {
        end
    }
}

/// The index just past `*/` for the block comment starting at `start`.
pub fn block_comment_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 2;
    while i + 1 < bytes.len() {
        if bytes[i] == b'*' && bytes[i + 1] == b'/' {
            return Some(i + 2);
        }
        i += 1;
    }
    None
}

pub fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

pub fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Skips whitespace and comments from `pos`; never goes past `end`.
pub fn skip_trivia(src: &str, mut pos: usize, end: usize) -> usize {
    let bytes = &src.as_bytes()[..end];
    while pos < end {
        match bytes[pos] {
            b' ' | b'\t' | b'\r' | b'\n' => pos += 1,
            b'/' if bytes.get(pos + 1) == Some(&b'/') => pos = line_end(bytes, pos),
            b'/' if bytes.get(pos + 1) == Some(&b'*') => {
                pos = block_comment_end(bytes, pos).unwrap_or(end)
            }
            _ if src[pos..].starts_with('\u{FEFF}') => pos += '\u{FEFF}'.len_utf8(),
            _ => break,
        }
    }
    pos
}

/// The kind of token starting at a position, as far as the driver and error messages care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokKind {
    Word,
    Number,
    Str,
    Punct,
    Eof,
}

/// The token starting at `pos` (which must not be trivia): its kind and end.
pub fn token_at(src: &str, pos: usize, end: usize) -> (TokKind, usize) {
    let bytes = &src.as_bytes()[..end];
    if pos >= end {
        return (TokKind::Eof, end);
    }
    let b = bytes[pos];
    if is_ident_start(b) {
        let mut i = pos + 1;
        while i < end && is_ident_char(bytes[i]) {
            i += 1;
        }
        (TokKind::Word, i)
    } else if b.is_ascii_digit() {
        let mut i = pos + 1;
        while i < end
            && (is_ident_char(bytes[i])
                || (bytes[i] == b'.' && bytes.get(i + 1).is_some_and(|c| c.is_ascii_digit())))
        {
            i += 1;
        }
        (TokKind::Number, i)
    } else if b == b'"' {
        (TokKind::Str, string_end(bytes, pos).unwrap_or(end))
    } else if src[pos..end].starts_with("->") {
        (TokKind::Punct, pos + 2)
    } else {
        // One character (possibly multi-byte).
        let len = src[pos..].chars().next().map_or(1, char::len_utf8);
        (TokKind::Punct, pos + len)
    }
}

/// The word (identifier or keyword) at `pos`, if the token there is one.
pub fn word_at(src: &str, pos: usize, end: usize) -> Option<&str> {
    match token_at(src, pos, end) {
        (TokKind::Word, e) => Some(&src[pos..e]),
        _ => None,
    }
}

pub const KEYWORDS: &[&str] = &[
    "model", "block", "data", "train", "input", "let", "output", "return", "repeat", "version",
    "true", "false",
];

/// "found ..." text for error messages: what the token at `pos` is.
pub fn describe_token(src: &str, pos: usize, end: usize) -> String {
    let (kind, tok_end) = token_at(src, pos, end);
    let text = &src[pos..tok_end.min(src.len())];
    match kind {
        TokKind::Eof => "end of file".to_string(),
        TokKind::Word if KEYWORDS.contains(&text) => format!("keyword `{text}`"),
        TokKind::Word => format!("identifier `{text}`"),
        TokKind::Number => format!("number `{text}`"),
        TokKind::Str => {
            let shown: String = text.chars().take(30).collect();
            if shown.len() < text.len() {
                format!("string `{shown}...`")
            } else {
                format!("string `{shown}`")
            }
        }
        TokKind::Punct => match text {
            "\n" => "newline".to_string(),
            "`" => "'`'".to_string(),
            _ if text.chars().all(|c| c.is_control()) => {
                format!("character {:?}", text)
            }
            _ => format!("`{text}`"),
        },
    }
}
