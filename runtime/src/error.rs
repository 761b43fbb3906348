//! Errors of the runtime: data files, weights files, writing, and the backends.
//!
//! Every error carries a stable code (the E04xx family of language.md section 8), the file it is
//! about when there is one, and a message that says what was expected and what was found.
//!
//! | code  | meaning |
//! |-------|---------|
//! | E0401 | a data file (or a file named on the command line) does not exist or cannot be read |
//! | E0402 | a file is not in a format fm reads, or its header is malformed (bad magic, bad gzip, bad zip, bad CSV, an `.npz` key or CSV column that is not there) |
//! | E0403 | a file is shorter than its header says (truncated IDX, `.npy` or gzip stream) |
//! | E0404 | the shape of a sample does not fit the model input or target |
//! | E0405 | an element type fm cannot use here (`.npy` dtype it does not read, fractional class labels, integers that do not fit) |
//! | E0406 | inputs and targets (or several inputs) have different sample counts |
//! | E0407 | a class label is outside `0..classes`, or a token id outside an `Embedding`'s vocabulary |
//! | E0408 | NaN or infinity in the inputs (allowed with `--allow-nan`) or targets, before or after the transforms; training stopped because the loss or a weight went non-finite |
//! | E0409 | the data setup does not fit the data (nothing to train on, a split that leaves no sample, standardize statistics missing) |
//! | E0410 | a weights file problem: missing, unknown or mis-shaped tensor, corrupt safetensors header, bad metadata |
//! | E0411 | a file cannot be written (unwritable directory, disk full) |
//! | E0420 | a backend failed while running the model |

use std::fmt;
use std::path::{Path, PathBuf};

/// What went wrong, one variant per error code.
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
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::MissingFile => "E0401",
            ErrorKind::BadFormat => "E0402",
            ErrorKind::Truncated => "E0403",
            ErrorKind::Shape => "E0404",
            ErrorKind::DType => "E0405",
            ErrorKind::SampleCount => "E0406",
            ErrorKind::LabelOutOfRange => "E0407",
            ErrorKind::NonFinite => "E0408",
            ErrorKind::DataSetup => "E0409",
            ErrorKind::Weights => "E0410",
            ErrorKind::Write => "E0411",
            ErrorKind::Backend => "E0420",
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
    pub fn code(&self) -> &'static str {
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

/// The long explanation of a runtime error code (for `fmc explain`), with an example and the fix.
pub fn explain(code: &str) -> Option<&'static str> {
    Some(match code {
        "E0401" => "A data or weights file named by the model or on the command line does not exist or cannot be read.\n\nExample: `train: idx(\"data/train-images-idx3-ubyte\", ...)` when the file is elsewhere.\nPaths in a `data` section are relative to the `.fm` file; command-line paths to the current directory.\nFix: correct the path, or pass the file with `--x`/`--y`.",
        "E0402" => "A file is not in a format fm reads, or its header is malformed.\n\nfm detects the format from the content: IDX (magic `00 00 TYPE NDIM`), gzip-compressed IDX, `.npy` (`\\x93NUMPY`), `.npz` (a zip of `.npy` files) or CSV with a header row. This error also covers an `.npz` key or a CSV column that is not in the file (the message lists what is there).\nFix: convert the data (for example `np.save`), or select the right array with `data.npz:key` or column with `data.csv:COLUMN`.",
        "E0403" => "A file ends before the data its header announces (a truncated download or copy).\n\nExample: an IDX header says [60000, 28, 28] but the file holds fewer bytes.\nFix: fetch or copy the file again; check its size or checksum.",
        "E0404" => "The samples in a file do not have the shape the model's input or target expects.\n\nA sample shape equal to the input shape without its trailing 1-dimensions is accepted (IDX [N, 8, 8] feeds `f32[8, 8, 1]`), nothing else.\nExample: 28x28 images fed to `input image: f32[8, 8]`.\nFix: use matching data, or change the model's input shape (add a `Reshape` or `Flatten`).",
        "E0405" => "The element type of a file cannot be used here.\n\n`.npy` files must be little-endian f32, f64, u8, i8, i16, i32 or i64; class targets must be whole numbers (2.0 is fine, 2.5 is not); integers must fit in i32.\nFix: convert with NumPy (`a.astype(np.float32)` or `a.astype(np.int32)`), or use a regression loss for real-valued targets.",
        "E0406" => "Inputs and targets (or several inputs) hold different numbers of samples.\n\nExample: 60000 images but 10000 labels, usually a train file paired with a test file.\nFix: pair the matching files.",
        "E0407" => "A class label is outside `0..classes`, or a token id is outside the vocabulary of the `Embedding` that reads it.\n\nSparse categorical targets are class indices: with a 10-way output, labels must be 0..=9 (and `one_hot(n)` needs labels 0..n-1). Token ids feeding `Embedding(5000, 64)` must be 0..=4999. The message names the file, the sample and the element.\nExample: labels 1..=10 instead of 0..=9; id 5000 (or -1) with a 5000-word vocabulary.\nFix: shift or remap the labels or ids, or widen the output layer or the vocabulary.",
        "E0408" => "NaN or infinity where it would turn every loss into NaN: in the inputs (read from the file, or produced by a transform such as `x: scale(1e39)` overflowing f32), or in the targets. The message names the file, the sample and the element. Checked before the first step.\n\nDuring training, a step whose loss is not finite stops the run at that step (a weight that went non-finite without reaching the loss is caught at the end of the epoch); the message names the step and the first parameter that is not finite. Nothing is saved after it, so the last checkpoint holds the last good weights (Keras's TerminateOnNaN, but precise).\nFix: clean the data (for example impute missing values), or pass `--allow-nan` if the model handles NaN inputs; for a run that diverged, lower the learning rate or clip the gradients (`clip_norm`).",
        "E0409" => "The data setup does not fit the data: nothing to train on, a `split(f)` that leaves no sample on one side, a model with several inputs and no key for one of them, `validation: test` without a test split, or `standardize` statistics missing when evaluating.\n\nFix: adjust the split fraction or the data section; evaluate with weights written by training (they hold the statistics).",
        "E0410" => "A weights file does not fit the model or is damaged: a missing, unknown or mis-shaped tensor (the message names each one), a corrupt safetensors header, or bad metadata.\n\nTensor names follow language.md section 7 (`dense.kernel`, `conv2d_1.bias`, `opt/dense.kernel/m`).\nFix: use weights written for this model (same layers and sizes); `--resume` needs a checkpoint written by `fmc train`.",
        "E0411" => "A file cannot be written: the directory does not exist or is not writable, or the disk is full.\n\nfm writes every file to a temporary name and renames it into place, so an earlier version of the file is left intact.\nFix: create the directory, choose another `--run-dir`/`--save`/`-o`, or free disk space.",
        "E0420" => "The backend failed while running the model (an internal error or a resource limit).\n\nFix: rerun with `--backend interp` to compare, and report the message if it persists.",
        _ => return None,
    })
}
