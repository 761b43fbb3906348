//! Weights files: safetensors with the names of language.md section 7 (`dense.kernel`,
//! `opt/dense.kernel/m`, `opt/step`), so NumPy, PyTorch and Keras read them, and metadata that
//! records where the weights came from and how far training got.
//!
//! Metadata keys (all strings, as safetensors requires):
//! `fm_version`, `model`, `source_sha256` (of the `.fm` file), `epoch` (completed epochs), `step`
//! (optimizer steps taken), `transforms` (the data transforms with their `standardize`
//! statistics, JSON), `train_state` (what the training loop needs to resume exactly, JSON).

use crate::error::{fmt_shape, ErrorKind, RuntimeError};
use crate::tensor::Tensor;
use ndarray::{ArrayD, IxDyn};
use safetensors::tensor::{Dtype, SafeTensors, View};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The prefix of optimizer state tensors (ignored by `--init`).
pub const OPT_PREFIX: &str = "opt/";

/// What a weights file records besides the tensors.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WeightsMeta {
    pub fm_version: String,
    pub model: String,
    pub source_sha256: String,
    /// Completed epochs.
    pub epoch: u64,
    /// Optimizer steps taken.
    pub step: u64,
    /// [`crate::data::FittedTransforms`] as JSON, when the data has transforms.
    pub transforms: Option<String>,
    /// The training loop's resume state as JSON (checkpoints only).
    pub train_state: Option<String>,
    /// Any other keys found in a file (kept so a file round-trips).
    pub other: BTreeMap<String, String>,
}

impl WeightsMeta {
    /// Metadata for a model, with this crate's version.
    pub fn new(model: &str, source: &[u8]) -> Self {
        WeightsMeta {
            fm_version: env!("CARGO_PKG_VERSION").to_string(),
            model: model.to_string(),
            source_sha256: sha256_hex(source),
            ..Default::default()
        }
    }

    /// The metadata keys in sorted order (so identical runs write identical bytes).
    fn to_map(&self) -> BTreeMap<String, String> {
        let mut map = self.other.clone();
        map.insert("format".into(), "pt".into());
        map.insert("fm_version".into(), self.fm_version.clone());
        map.insert("model".into(), self.model.clone());
        map.insert("source_sha256".into(), self.source_sha256.clone());
        map.insert("epoch".into(), self.epoch.to_string());
        map.insert("step".into(), self.step.to_string());
        if let Some(t) = &self.transforms {
            map.insert("transforms".into(), t.clone());
        }
        if let Some(s) = &self.train_state {
            map.insert("train_state".into(), s.clone());
        }
        map
    }

    fn from_map(path: &Path, map: &HashMap<String, String>) -> Result<Self, RuntimeError> {
        let mut other: BTreeMap<String, String> = map.clone().into_iter().collect();
        let mut take = |key: &str| other.remove(key);
        let number = |key: &str, value: Option<String>| -> Result<u64, RuntimeError> {
            match value {
                None => Ok(0),
                Some(v) => v.parse().map_err(|_| {
                    RuntimeError::at(
                        ErrorKind::Weights,
                        path,
                        format!("metadata '{key}' is '{v}', expected a whole number"),
                    )
                }),
            }
        };
        let meta = WeightsMeta {
            fm_version: take("fm_version").unwrap_or_default(),
            model: take("model").unwrap_or_default(),
            source_sha256: take("source_sha256").unwrap_or_default(),
            epoch: number("epoch", take("epoch"))?,
            step: number("step", take("step"))?,
            transforms: take("transforms"),
            train_state: take("train_state"),
            other: BTreeMap::new(),
        };
        other.remove("format");
        Ok(WeightsMeta { other, ..meta })
    }
}

/// The lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A tensor's bytes for safetensors (little-endian, row-major).
struct TensorBytes {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &TensorBytes {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn tensor_bytes(t: &Tensor) -> TensorBytes {
    match t {
        Tensor::F32(a) => TensorBytes {
            dtype: Dtype::F32,
            shape: a.shape().to_vec(),
            bytes: a
                .as_standard_layout()
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        },
        Tensor::I32(a) => TensorBytes {
            dtype: Dtype::I32,
            shape: a.shape().to_vec(),
            bytes: a
                .as_standard_layout()
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        },
    }
}

/// Encodes tensors and metadata as safetensors bytes.
pub fn encode_weights(
    tensors: &[(String, Tensor)],
    meta: &WeightsMeta,
) -> Result<Vec<u8>, RuntimeError> {
    let mut seen = std::collections::HashSet::new();
    for (name, _) in tensors {
        if !seen.insert(name.as_str()) {
            return Err(RuntimeError::without_path(
                ErrorKind::Weights,
                format!("tensor '{name}' is given twice"),
            ));
        }
    }
    let encoded: Vec<(String, TensorBytes)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), tensor_bytes(t)))
        .collect();
    let bytes = safetensors::serialize(encoded.iter().map(|(n, t)| (n.as_str(), t)), None)
        .map_err(|e| {
            RuntimeError::without_path(
                ErrorKind::Weights,
                format!("cannot encode safetensors: {e}"),
            )
        })?;
    Ok(with_metadata(bytes, &meta.to_map()))
}

/// Puts `__metadata__` first in the header of safetensors `bytes` written without metadata,
/// with its keys in sorted order: the safetensors crate writes a `HashMap` in the process's
/// random order, which made identical runs write files that differ in bytes. Tensor offsets
/// are relative to the end of the header, so only the header changes.
fn with_metadata(bytes: Vec<u8>, meta: &BTreeMap<String, String>) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8-byte header length")) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n])
        .expect("safetensors writes a UTF-8 header")
        .trim_end();
    let tensors = header
        .strip_prefix('{')
        .and_then(|h| h.strip_suffix('}'))
        .expect("the header is a JSON object");
    let meta_json = serde_json::to_string(meta).expect("strings serialize");
    let mut new_header = format!("{{\"__metadata__\":{meta_json}");
    if !tensors.is_empty() {
        new_header.push(',');
        new_header.push_str(tensors);
    }
    new_header.push('}');
    // The header is padded with spaces to a multiple of 8 bytes, as safetensors does.
    while !new_header.len().is_multiple_of(8) {
        new_header.push(' ');
    }
    let mut out = Vec::with_capacity(8 + new_header.len() + bytes.len() - 8 - n);
    out.extend_from_slice(&(new_header.len() as u64).to_le_bytes());
    out.extend_from_slice(new_header.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

/// Writes a weights file atomically.
pub fn save_weights(
    path: &Path,
    tensors: &[(String, Tensor)],
    meta: &WeightsMeta,
) -> Result<(), RuntimeError> {
    let bytes = encode_weights(tensors, meta).map_err(|e| RuntimeError {
        path: Some(path.display().to_string()),
        ..e
    })?;
    crate::fsutil::atomic_write(path, &bytes)
}

/// A weights file's tensors (sorted by name) and metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightsFile {
    pub tensors: Vec<(String, Tensor)>,
    pub meta: WeightsMeta,
}

impl WeightsFile {
    /// Parameters and BatchNorm moving statistics only (what `--init` takes).
    pub fn without_optimizer_state(&self) -> Vec<(String, Tensor)> {
        self.tensors
            .iter()
            .filter(|(n, _)| !n.starts_with(OPT_PREFIX))
            .cloned()
            .collect()
    }
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

/// Reads a weights file. Any malformation is an E0410 error naming the file, never a panic.
pub fn load_weights(path: &Path) -> Result<WeightsFile, RuntimeError> {
    let bytes =
        crate::fsutil::read_within_memory(path).map_err(|e| RuntimeError::read_io(path, &e))?;
    decode_weights(path, &bytes)
}

/// Parses safetensors bytes; `path` names the file in errors.
pub fn decode_weights(path: &Path, bytes: &[u8]) -> Result<WeightsFile, RuntimeError> {
    let bad = |msg: String| RuntimeError::at(ErrorKind::Weights, path, msg);
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
    let meta = match header.metadata() {
        Some(map) => WeightsMeta::from_map(path, map)?,
        None => WeightsMeta::default(),
    };
    let file = SafeTensors::deserialize(bytes)
        .map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
    let mut tensors = Vec::new();
    for (name, view) in file.tensors() {
        let shape = view.shape().to_vec();
        let data = view.data();
        let tensor = match view.dtype() {
            Dtype::F32 => Tensor::F32(array(
                path,
                &name,
                &shape,
                data.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            )?),
            Dtype::F64 => Tensor::F32(array(
                path,
                &name,
                &shape,
                data.chunks_exact(8).map(|c| {
                    f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                }),
            )?),
            Dtype::I32 => Tensor::I32(array(
                path,
                &name,
                &shape,
                data.chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            )?),
            Dtype::I64 => {
                let values: Result<Vec<i32>, _> = data
                    .chunks_exact(8)
                    .map(|c| {
                        i32::try_from(i64::from_le_bytes([
                            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
                        ]))
                    })
                    .collect();
                let values = values.map_err(|_| {
                    bad(format!(
                        "tensor '{name}' (i64) has values beyond the i32 range"
                    ))
                })?;
                Tensor::I32(array(path, &name, &shape, values.into_iter())?)
            }
            other => {
                return Err(bad(format!(
                    "tensor '{name}' has dtype {other:?}; fm reads F32, F64, I32 and I64"
                )))
            }
        };
        tensors.push((name, tensor));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(WeightsFile { tensors, meta })
}

fn array<T>(
    path: &Path,
    name: &str,
    shape: &[usize],
    values: impl Iterator<Item = T>,
) -> Result<ArrayD<T>, RuntimeError> {
    let values: Vec<T> = values.collect();
    // safetensors has validated the byte length against the shape; this only guards that.
    ArrayD::from_shape_vec(IxDyn(shape), values).map_err(|e| {
        RuntimeError::at(
            ErrorKind::Weights,
            path,
            format!(
                "tensor '{name}' does not fit its shape {}: {e}",
                fmt_shape(shape)
            ),
        )
    })
}

/// Checks loaded tensors against the expected `(name, shape)` list: every expected tensor
/// present with its shape, nothing else. The error lists every problem, each naming its tensor.
pub fn check_tensors(
    path: &Path,
    loaded: &[(String, Tensor)],
    expected: &[(String, Vec<usize>)],
) -> Result<(), RuntimeError> {
    let found: HashMap<&str, &Tensor> = loaded.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let wanted: HashMap<&str, &Vec<usize>> =
        expected.iter().map(|(n, s)| (n.as_str(), s)).collect();
    let mut problems = Vec::new();
    for (name, shape) in expected {
        match found.get(name.as_str()) {
            None => problems.push(format!(
                "missing tensor '{name}' (expected shape {})",
                fmt_shape(shape)
            )),
            Some(t) if t.shape() != shape.as_slice() => problems.push(format!(
                "tensor '{name}' has shape {}, expected {}",
                fmt_shape(t.shape()),
                fmt_shape(shape)
            )),
            Some(_) => {}
        }
    }
    for (name, t) in loaded {
        if !wanted.contains_key(name.as_str()) {
            problems.push(format!(
                "unknown tensor '{name}' (shape {}): the model has no such tensor",
                fmt_shape(t.shape())
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(RuntimeError::at(
            ErrorKind::Weights,
            path,
            problems.join("; "),
        ))
    }
}
