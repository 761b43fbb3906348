//! The diagnostic value every stage produces. Rendering (human, short, json) lives in the
//! compiler; this crate only needs to build them for syntax errors.

use crate::ast::Span;
use fm_codes::Code;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// A labelled span. The primary label is underlined with `^`, secondary ones with `-`.
#[derive(Clone, Debug, PartialEq)]
pub struct Label {
    pub span: Span,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Stable code from the registry (`fm_codes`): `E0001`, `E0102`, `W0101`, ...
    pub code: Code,
    /// One line, lowercase, no trailing period: "expected `)` or `,`".
    pub message: String,
    /// The primary span and what to say under it. `None` for errors with no source location
    /// (data files, command line).
    pub primary: Option<Label>,
    pub secondary: Vec<Label>,
    /// `= note: ...` lines (e.g. "while expanding `residual(64)` at resnet.fm:12:12").
    pub notes: Vec<String>,
    /// `= help: ...` lines (e.g. "did you mean `Dense`?").
    pub help: Vec<String>,
}

impl Diagnostic {
    /// An error; `code` is an error code (E...), not a warning code.
    pub fn error(code: Code, message: impl Into<String>) -> Self {
        debug_assert!(!code.is_warning(), "{code} is a warning code");
        Self::new(Severity::Error, code, message)
    }
    /// A warning; `code` is a warning code (W...).
    pub fn warning(code: Code, message: impl Into<String>) -> Self {
        debug_assert!(code.is_warning(), "{code} is an error code");
        Self::new(Severity::Warning, code, message)
    }
    fn new(severity: Severity, code: Code, message: impl Into<String>) -> Self {
        Diagnostic {
            severity,
            code,
            message: message.into(),
            primary: None,
            secondary: Vec::new(),
            notes: Vec::new(),
            help: Vec::new(),
        }
    }
    pub fn with_primary(mut self, span: Span, message: impl Into<String>) -> Self {
        self.primary = Some(Label {
            span,
            message: message.into(),
        });
        self
    }
    pub fn with_secondary(mut self, span: Span, message: impl Into<String>) -> Self {
        self.secondary.push(Label {
            span,
            message: message.into(),
        });
        self
    }
    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help.push(help.into());
        self
    }
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}
