//! Errors of the runtime: data files, weights files, writing, and the backends.
//!
//! Every error carries a stable code (the E04xx family of language.md section 8, registered with
//! its title and explanation in `fm_codes`), the file it is about when there is one, and a message
//! that says what was expected and what was found.

use fm_codes::Code;
use std::fmt;
use std::path::{Path, PathBuf};

/// What went wrong, one variant per error code (see each code's explanation in `fm_codes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    MissingFile,
    BadFormat,
    Truncated,
    Shape,
    DType,
    SampleCount,
    LabelOutOfRange,
    NonFinite,
    DataSetup,
    Weights,
    Write,
    Backend,
}

impl ErrorKind {
    /// The stable diagnostic code.
    pub fn code(self) -> Code {
        match self {
            ErrorKind::MissingFile => fm_codes::E0401,
            ErrorKind::BadFormat => fm_codes::E0402,
            ErrorKind::Truncated => fm_codes::E0403,
            ErrorKind::Shape => fm_codes::E0404,
            ErrorKind::DType => fm_codes::E0405,
            ErrorKind::SampleCount => fm_codes::E0406,
            ErrorKind::LabelOutOfRange => fm_codes::E0407,
            ErrorKind::NonFinite => fm_codes::E0408,
            ErrorKind::DataSetup => fm_codes::E0409,
            ErrorKind::Weights => fm_codes::E0410,
            ErrorKind::Write => fm_codes::E0411,
            ErrorKind::Backend => fm_codes::E0420,
        }
    }
}

/// An error of the runtime. Displays as `PATH: message` (or just the message without a path).
#[derive(Clone, Debug, PartialEq)]
pub struct RuntimeError {
    pub kind: ErrorKind,
    /// The file the error is about (with `:key` for an array inside an `.npz`), if any.
    pub path: Option<String>,
    pub message: String,
}

impl RuntimeError {
    pub fn new(kind: ErrorKind, path: Option<String>, message: impl Into<String>) -> Self {
        RuntimeError {
            kind,
            path,
            message: message.into(),
        }
    }
    /// An error about the file `path`.
    pub fn at(kind: ErrorKind, path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Self::new(kind, Some(path.as_ref().display().to_string()), message)
    }
    /// An error about a named origin (a path, or `path:key`).
    pub fn in_origin(kind: ErrorKind, origin: &str, message: impl Into<String>) -> Self {
        Self::new(kind, Some(origin.to_string()), message)
    }
    pub fn without_path(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self::new(kind, None, message)
    }
    pub fn backend(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Backend, None, message)
    }
    pub fn code(&self) -> Code {
        self.kind.code()
    }

    /// Classifies an I/O error from reading `path`.
    pub fn read_io(path: &Path, err: &std::io::Error) -> Self {
        match err.kind() {
            std::io::ErrorKind::NotFound => Self::at(ErrorKind::MissingFile, path, "no such file"),
            std::io::ErrorKind::UnexpectedEof => Self::at(
                ErrorKind::Truncated,
                path,
                format!("file ends early: {err}"),
            ),
            _ => Self::at(ErrorKind::MissingFile, path, format!("cannot read: {err}")),
        }
    }

    /// An I/O error from writing `path`.
    pub fn write_io(path: &Path, err: &std::io::Error) -> Self {
        Self::at(ErrorKind::Write, path, format!("cannot write: {err}"))
    }
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{path}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for RuntimeError {}

/// Formats a shape like `[1797, 8, 8]`.
pub fn fmt_shape(shape: &[usize]) -> String {
    let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

/// Convenience for `PathBuf` display in messages.
pub fn display_path(path: &Path) -> String {
    PathBuf::from(path).display().to_string()
}
