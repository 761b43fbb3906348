//! Errors of import and export: a stable code (E0402 malformed file, E0410 weights that do not
//! fit, E0412 nothing in `.fm` for a node or layer, E0413 nothing in ONNX for an fm layer), the
//! file, and the part of it (node, layer, tensor) the message is about.

use fm_codes::Code;
use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub struct InteropError {
    pub code: Code,
    /// The file the error is about.
    pub file: String,
    /// The node, layer or tensor inside it (`node 3 'Conv_0' (Conv)`), when there is one.
    pub part: Option<String>,
    pub message: String,
}

impl InteropError {
    pub fn new(code: Code, file: &str, part: Option<String>, message: impl Into<String>) -> Self {
        InteropError {
            code,
            file: file.to_string(),
            part,
            message: message.into(),
        }
    }
}

impl fmt::Display for InteropError {
    /// `FILE: PART: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file)?;
        if let Some(p) = &self.part {
            write!(f, "{p}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for InteropError {}
