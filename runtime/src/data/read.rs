//! Opening data files: gzip is undone first, then the format is detected from the content
//! (IDX, `.npy`, `.npz`, CSV), with the file name only as a tie-breaker for text.
//!
//! A path may carry a selector after its last `:` when the whole string is not an existing file:
//! `data.npz:key` picks an array of an `.npz`, `data.csv:COLUMN` a column of a CSV file.

use super::bytes::{Bytes, MAP_AT_LEAST};
use super::csv::parse_csv;
use super::idx::{looks_like_idx, parse_idx_shared};
use super::npy::{npz_keys, parse_npy_shared, parse_npz_member_shared, NPY_MAGIC};
use super::raw::RawArray;
use crate::config::{NpzKeys, Source};
use crate::error::{ErrorKind, RuntimeError};
use crate::system::machine_memory;
use std::cell::Cell;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The formats fm reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Idx,
    Npy,
    Npz,
    Csv,
}

/// What a data source yields before conversion: one array per model input, and the targets.
#[derive(Clone, Debug)]
pub struct RawSamples {
    pub inputs: Vec<RawArray>,
    pub targets: Option<RawArray>,
    /// The targets after the first, for a model that reads several (one per output, or its
    /// `target` declarations: language.md 9.3), from the `.npz` keys named after them.
    pub more_targets: Vec<RawArray>,
}

thread_local! {
    /// The most bytes a compressed data file (gzip, or an `.npz` member) may expand to, when set
    /// by [`set_decompressed_limit`] on this thread (a command runs on one thread; tests run
    /// several commands in one process, each on its own thread).
    static DECOMPRESSED_LIMIT: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Sets the most bytes a compressed data file may expand to, for reads on this thread
/// (`--memory-limit`; `None`: this machine's memory).
pub fn set_decompressed_limit(bytes: Option<u64>) {
    DECOMPRESSED_LIMIT.with(|l| l.set(bytes.map(|b| b.max(1))));
}

/// The most bytes a compressed data file may expand to (see [`set_decompressed_limit`]), and
/// whether it came from `--memory-limit`.
pub fn decompressed_limit() -> (u64, bool) {
    match DECOMPRESSED_LIMIT.with(Cell::get) {
        Some(n) => (n, true),
        None => (machine_memory().unwrap_or(16 << 30), false),
    }
}

/// Reads all of `reader` (a decompressor), refusing to go past `limit` bytes: a gzip bomb (a
/// small file that expands to more than memory) is an error after at most `limit` bytes, not an
/// abort. `Ok(None)` when the limit was reached.
pub fn read_limited(reader: impl Read, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    reader.take(limit.saturating_add(1)).read_to_end(&mut out)?;
    Ok((out.len() as u64 <= limit).then_some(out))
}

/// The message for a compressed file or member that expands past the limit.
pub fn too_large_message((limit, from_flag): (u64, bool)) -> String {
    let from = if from_flag {
        "the `--memory-limit`"
    } else {
        "this machine's memory; set a budget with `--memory-limit`"
    };
    format!(
        "decompresses to more than {:.2} GB ({from}); if the data is really that large, decompress it once and give the uncompressed file",
        limit as f64 / 1e9
    )
}

/// Reads a file, undoing gzip compression (detected by its magic bytes, not its name), up to
/// [`decompressed_limit`] bytes. An uncompressed file of [`MAP_AT_LEAST`] bytes or more is
/// memory-mapped, not read (see [`Bytes`]).
pub fn read_file_bytes(path: &Path) -> Result<Bytes, RuntimeError> {
    let io = |e: std::io::Error| RuntimeError::read_io(path, &e);
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let bytes = if meta.is_file() && meta.len() >= MAP_AT_LEAST {
        Bytes::map(&file).map_err(io)?
    } else if meta.is_file() {
        let mut v = Vec::new();
        (&file).read_to_end(&mut v).map_err(io)?;
        Bytes::from(v)
    } else {
        // A device or pipe (`/dev/zero`) may never end: read it up to the memory budget.
        let limit = decompressed_limit();
        let v = read_limited(&file, limit.0).map_err(io)?.ok_or_else(|| {
            RuntimeError::at(
                ErrorKind::BadFormat,
                path,
                format!(
                    "is not a regular file and {}",
                    too_large_message(limit).replacen("decompresses to", "holds", 1)
                ),
            )
        })?;
        Bytes::from(v)
    };
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let limit = decompressed_limit();
        let out =
            read_limited(flate2::read::MultiGzDecoder::new(&bytes[..]), limit.0).map_err(|e| {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    RuntimeError::at(
                        ErrorKind::Truncated,
                        path,
                        format!("truncated gzip stream: {e}"),
                    )
                } else {
                    RuntimeError::at(
                        ErrorKind::BadFormat,
                        path,
                        format!("not valid gzip data: {e}"),
                    )
                }
            })?;
        return out
            .map(Bytes::from)
            .ok_or_else(|| RuntimeError::at(ErrorKind::BadFormat, path, too_large_message(limit)));
    }
    Ok(bytes)
}

/// Detects the format of (decompressed) file contents.
pub fn detect_format(path: &Path, bytes: &[u8]) -> Result<Format, RuntimeError> {
    if bytes.starts_with(NPY_MAGIC) {
        return Ok(Format::Npy);
    }
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        return Ok(Format::Npz);
    }
    // Two zero bytes start every IDX file; a bad type byte is then reported by the IDX parser.
    if looks_like_idx(bytes) || bytes.starts_with(&[0, 0]) {
        return Ok(Format::Idx);
    }
    let head = &bytes[..bytes.len().min(4096)];
    let is_text = !head.contains(&0) && (std::str::from_utf8(head).is_ok() || head.len() == 4096);
    let named_csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if is_text && (named_csv || head.contains(&b',') || head.contains(&b'\n')) && !bytes.is_empty()
    {
        return Ok(Format::Csv);
    }
    let shown: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Err(RuntimeError::at(
        ErrorKind::BadFormat,
        path,
        format!(
            "unknown data format (first bytes: {}): expected IDX, gzip-compressed IDX, .npy, .npz or CSV with a header",
            if shown.is_empty() { "none, the file is empty".to_string() } else { shown.join(" ") }
        ),
    ))
}

/// Splits `path:selector` when `spec` is not itself an existing file and the part before the
/// last `:` is one, or is named `.npz`/`.csv` (so a missing `data.npz:x` reports `data.npz`).
pub fn split_selector(spec: &str) -> (PathBuf, Option<String>) {
    let whole = PathBuf::from(spec);
    if whole.exists() {
        return (whole, None);
    }
    if let Some((path, key)) = spec.rsplit_once(':') {
        let lower = path.to_ascii_lowercase();
        let container = lower.ends_with(".npz") || lower.ends_with(".csv");
        if !path.is_empty() && !key.is_empty() && (Path::new(path).exists() || container) {
            return (PathBuf::from(path), Some(key.to_string()));
        }
    }
    (whole, None)
}

/// Reads one array from `spec` (`path`, `data.npz:key`, or `data.csv:COLUMN`). A CSV without a
/// column gives all its columns; an `.npz` without a key must hold exactly one array.
pub fn read_array(spec: &str) -> Result<RawArray, RuntimeError> {
    let (path, selector) = split_selector(spec);
    read_array_at(&path, selector.as_deref(), None)
}

/// Reads inputs and targets given as file specs (`--x`, `--y`), for a model whose inputs and
/// targets are `input_names` and `target_names` (cli.md "Data formats"):
/// - a model with several inputs takes an `.npz` whose keys are the input names (as `predict`);
/// - a model with several targets takes an `.npz` whose keys are the target names;
/// - a model that reads no targets needs no `--y` (a GAN or a VAE trains from `--x` alone);
/// - a single input or target from an `.npz` with several arrays takes the one named after it.
///
/// When `--x` and `--y` name the same CSV file and the targets select a column, the inputs are
/// the other columns.
pub fn read_xy(
    x: &str,
    y: Option<&str>,
    input_names: &[String],
    target_names: &[String],
) -> Result<RawSamples, RuntimeError> {
    let (x_path, x_selector) = split_selector(x);
    let y_spec = y.map(split_selector);
    let mut targets = match (&y_spec, target_names) {
        (_, []) => Vec::new(),
        (None, names) => {
            return Err(RuntimeError::without_path(
                ErrorKind::DataSetup,
                format!(
                    "the model reads targets ({}): give them with `--y PATH`",
                    names.join(", ")
                ),
            ))
        }
        (Some((path, selector)), [name]) => {
            vec![read_named(path, selector.as_deref(), name, None)?]
        }
        (Some((path, selector)), names) => {
            if selector.is_some() {
                return Err(RuntimeError::at(
                    ErrorKind::DataSetup,
                    path,
                    format!(
                        "the model reads {} targets ({}): give an .npz with a key per target, without a ':KEY' selector",
                        names.len(),
                        names.join(", ")
                    ),
                ));
            }
            read_npz_keys(path, names, "target")?
        }
    };
    let exclude = match &y_spec {
        Some((y_path, y_selector)) if x_selector.is_none() && x_path == *y_path => {
            y_selector.as_deref()
        }
        _ => None,
    };
    let inputs = match input_names {
        [_, _, ..] if x_selector.is_none() => read_npz_keys(&x_path, input_names, "input")?,
        [name] => vec![read_named(&x_path, x_selector.as_deref(), name, exclude)?],
        _ => vec![read_array_at(&x_path, x_selector.as_deref(), exclude)?],
    };
    let first = (!targets.is_empty()).then(|| targets.remove(0));
    Ok(RawSamples {
        inputs,
        targets: first,
        more_targets: targets,
    })
}

/// One array for the model value `name`: as [`read_array_at`], except that an `.npz` with
/// several arrays and no selector gives the one whose key is `name`.
fn read_named(
    path: &Path,
    selector: Option<&str>,
    name: &str,
    exclude_column: Option<&str>,
) -> Result<RawArray, RuntimeError> {
    if selector.is_none() {
        let bytes = read_file_bytes(path)?;
        if detect_format(path, &bytes)? == Format::Npz {
            let origin = path.display().to_string();
            let keys = npz_keys(&origin, &bytes)?;
            if keys.len() > 1 && keys.iter().any(|k| k == name) {
                return parse_npz_member_shared(&origin, &bytes, name);
            }
        }
    }
    read_array_at(path, selector, exclude_column)
}

/// The arrays of an `.npz` whose keys are `names` (the model's inputs or targets, `what`).
fn read_npz_keys(path: &Path, names: &[String], what: &str) -> Result<Vec<RawArray>, RuntimeError> {
    let bytes = read_file_bytes(path)?;
    let origin = path.display().to_string();
    if detect_format(path, &bytes)? != Format::Npz {
        return Err(RuntimeError::at(
            ErrorKind::DataSetup,
            path,
            format!(
                "the model has {} {what}s ({}): give an .npz whose keys are their names",
                names.len(),
                names.join(", ")
            ),
        ));
    }
    let keys = npz_keys(&origin, &bytes)?;
    names
        .iter()
        .map(|name| {
            if !keys.contains(name) {
                return Err(RuntimeError::at(
                    ErrorKind::DataSetup,
                    path,
                    format!(
                        "no array '{name}' for the model {what} '{name}' (the .npz holds {})",
                        keys.join(", ")
                    ),
                ));
            }
            parse_npz_member_shared(&origin, &bytes, name)
        })
        .collect()
}

/// `exclude_column`: for a CSV read whole, the target column to leave out of the inputs.
fn read_array_at(
    path: &Path,
    selector: Option<&str>,
    exclude_column: Option<&str>,
) -> Result<RawArray, RuntimeError> {
    let bytes = read_file_bytes(path)?;
    let origin = path.display().to_string();
    let with_selector_unused = |format: &str| {
        RuntimeError::at(
            ErrorKind::BadFormat,
            path,
            format!(
                "a ':{}' selector needs an .npz or CSV file, this is {format}",
                selector.unwrap_or_default()
            ),
        )
    };
    match detect_format(path, &bytes)? {
        Format::Idx if selector.is_none() => parse_idx_shared(&origin, &bytes),
        Format::Npy if selector.is_none() => parse_npy_shared(&origin, &bytes),
        Format::Idx => Err(with_selector_unused("IDX")),
        Format::Npy => Err(with_selector_unused(".npy")),
        Format::Npz => match selector {
            Some(key) => parse_npz_member_shared(&origin, &bytes, key),
            None => {
                let keys = npz_keys(&origin, &bytes)?;
                match keys.as_slice() {
                    [only] => parse_npz_member_shared(&origin, &bytes, only),
                    _ => Err(RuntimeError::at(
                        ErrorKind::BadFormat,
                        path,
                        format!(
                            "the .npz holds {} arrays ({}): select one as PATH:KEY",
                            keys.len(),
                            keys.join(", ")
                        ),
                    )),
                }
            }
        },
        Format::Csv => {
            let table = parse_csv(&origin, &bytes)?;
            match selector {
                Some(column) => table.column(column),
                None => table.features(exclude_column),
            }
        }
    }
}

/// Reads a `data` section's source. `input_names` are the model's inputs, in order (used to
/// check an `.npz` with one key per input); `target_names` are the targets the model reads:
/// none (losses that read no targets, language.md 9.3: an `.npz` needs no `y` key then), one
/// (an `.npz`'s `y` key), or several (an `.npz` with a key per target name).
pub fn read_source(
    source: &Source,
    input_names: &[String],
    target_names: &[String],
) -> Result<RawSamples, RuntimeError> {
    match source {
        Source::Idx { images, labels } => Ok(RawSamples {
            inputs: vec![read_array_at(images, None, None)?],
            targets: Some(read_array_at(labels, None, None)?),
            more_targets: Vec::new(),
        }),
        Source::Npy { x, y } => Ok(RawSamples {
            inputs: vec![read_array_at(x, None, None)?],
            targets: Some(read_array_at(y, None, None)?),
            more_targets: Vec::new(),
        }),
        Source::Npz { path, x, y } => {
            let bytes = read_file_bytes(path)?;
            let origin = path.display().to_string();
            let inputs = match x {
                NpzKeys::One(key) => vec![parse_npz_member_shared(&origin, &bytes, key)?],
                NpzKeys::Named(keys) => {
                    // Order the arrays as the model's inputs, whatever order the file names them.
                    let mut arrays = Vec::with_capacity(input_names.len());
                    for name in input_names {
                        let key = keys
                            .iter()
                            .find(|(input, _)| input == name)
                            .map(|(_, k)| k)
                            .ok_or_else(|| {
                                RuntimeError::at(
                                    ErrorKind::DataSetup,
                                    path,
                                    format!("no .npz key is given for the model input '{name}'"),
                                )
                            })?;
                        arrays.push(parse_npz_member_shared(&origin, &bytes, key)?);
                    }
                    arrays
                }
            };
            // One target: the `y` key. Several: the keys named after them, or mapped by `y:`.
            let several = target_names.len() > 1;
            let mut targets = target_names
                .iter()
                .map(|n| parse_npz_member_shared(&origin, &bytes, y.key_of(n, several)))
                .collect::<Result<Vec<_>, _>>()?;
            let first = (!targets.is_empty()).then(|| targets.remove(0));
            Ok(RawSamples {
                inputs,
                targets: first,
                more_targets: targets,
            })
        }
        Source::Csv { path, label } => {
            let bytes = read_file_bytes(path)?;
            let table = parse_csv(&path.display().to_string(), &bytes)?;
            Ok(RawSamples {
                inputs: vec![table.features(Some(label))?],
                targets: Some(table.column(label)?),
                more_targets: Vec::new(),
            })
        }
    }
}

/// Reads the inputs of several files for `predict` (one spec per model input; a single `.npz`
/// whose keys are the input names also works for several inputs).
pub fn read_inputs(
    specs: &[String],
    input_names: &[String],
) -> Result<Vec<RawArray>, RuntimeError> {
    if specs.len() == 1 && input_names.len() > 1 {
        let (path, _) = split_selector(&specs[0]);
        let bytes = read_file_bytes(&path)?;
        if detect_format(&path, &bytes)? == Format::Npz {
            let origin = path.display().to_string();
            return input_names
                .iter()
                .map(|name| parse_npz_member_shared(&origin, &bytes, name))
                .collect();
        }
    }
    specs.iter().map(|s| read_array(s)).collect()
}
