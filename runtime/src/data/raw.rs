//! Arrays as read from a file, in the file's own element type, before any conversion.

use super::bytes::Bytes;
use crate::error::{ErrorKind, RuntimeError};

/// Element values in the file's own type.
#[derive(Clone, Debug, PartialEq)]
pub enum RawData {
    /// Bytes are shared with the buffer they were read from (a memory-mapped file: see
    /// [`Bytes`]), never copied.
    U8(Bytes),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl RawData {
    /// The NumPy-style name of the element type (`u8`, `f32`, ...).
    pub fn dtype_name(&self) -> &'static str {
        match self {
            RawData::U8(_) => "u8",
            RawData::I8(_) => "i8",
            RawData::I16(_) => "i16",
            RawData::I32(_) => "i32",
            RawData::I64(_) => "i64",
            RawData::F32(_) => "f32",
            RawData::F64(_) => "f64",
        }
    }
    pub fn len(&self) -> usize {
        match self {
            RawData::U8(v) => v.len(),
            RawData::I8(v) => v.len(),
            RawData::I16(v) => v.len(),
            RawData::I32(v) => v.len(),
            RawData::I64(v) => v.len(),
            RawData::F32(v) => v.len(),
            RawData::F64(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn is_float(&self) -> bool {
        matches!(self, RawData::F32(_) | RawData::F64(_))
    }
    /// Every value as f64 (exact for every type read except i64 beyond 2^53).
    pub fn to_f64(&self) -> Vec<f64> {
        match self {
            RawData::U8(v) => v.iter().map(|&x| x as f64).collect(),
            RawData::I8(v) => v.iter().map(|&x| x as f64).collect(),
            RawData::I16(v) => v.iter().map(|&x| x as f64).collect(),
            RawData::I32(v) => v.iter().map(|&x| x as f64).collect(),
            RawData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            RawData::F32(v) => v.iter().map(|&x| x as f64).collect(),
            RawData::F64(v) => v.clone(),
        }
    }
    /// Every value as f32: integers convert unchanged (exactly up to 2^24), f64 rounds.
    pub fn to_f32(&self) -> Vec<f32> {
        // Per type, without an f64 copy: MNIST is 47 million values.
        match self {
            RawData::U8(v) => v.iter().map(|&x| x as f32).collect(),
            RawData::I8(v) => v.iter().map(|&x| x as f32).collect(),
            RawData::I16(v) => v.iter().map(|&x| x as f32).collect(),
            RawData::I32(v) => v.iter().map(|&x| x as f32).collect(),
            RawData::I64(v) => v.iter().map(|&x| x as f32).collect(),
            RawData::F32(v) => v.clone(),
            RawData::F64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }
}

/// An array read from a file, with the name it came from (`path` or `path:key`) for messages.
#[derive(Clone, Debug, PartialEq)]
pub struct RawArray {
    pub origin: String,
    pub shape: Vec<usize>,
    pub data: RawData,
}

impl RawArray {
    /// Number of samples (axis 0; 1 for a scalar array).
    pub fn samples(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }
    pub fn sample_shape(&self) -> &[usize] {
        if self.shape.is_empty() {
            &self.shape
        } else {
            &self.shape[1..]
        }
    }

    /// The values as i32 class indices or integer inputs: integer types must fit i32, floating
    /// types must hold whole numbers.
    pub fn to_i32(&self) -> Result<Vec<i32>, RuntimeError> {
        let bad = |index: usize, value: String, why: &str| {
            RuntimeError::in_origin(
                ErrorKind::DType,
                &self.origin,
                format!(
                    "expected integer values (i32), found {value} at element {index} ({why}; the file's dtype is {})",
                    self.data.dtype_name()
                ),
            )
        };
        match &self.data {
            RawData::U8(v) => Ok(v.iter().map(|&x| x as i32).collect()),
            RawData::I8(v) => Ok(v.iter().map(|&x| x as i32).collect()),
            RawData::I16(v) => Ok(v.iter().map(|&x| x as i32).collect()),
            RawData::I32(v) => Ok(v.clone()),
            RawData::I64(v) => v
                .iter()
                .enumerate()
                .map(|(i, &x)| {
                    i32::try_from(x).map_err(|_| bad(i, x.to_string(), "out of the i32 range"))
                })
                .collect(),
            RawData::F32(_) | RawData::F64(_) => self
                .data
                .to_f64()
                .into_iter()
                .enumerate()
                .map(|(i, x)| {
                    if x.fract() == 0.0 && x >= i32::MIN as f64 && x <= i32::MAX as f64 {
                        Ok(x as i32)
                    } else {
                        Err(bad(i, x.to_string(), "not a whole number that fits i32"))
                    }
                })
                .collect(),
        }
    }
}
