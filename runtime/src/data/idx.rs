//! IDX (the MNIST format): `00 00 TYPE NDIM`, NDIM big-endian u32 dimensions, then the data in
//! row-major order, big-endian. TYPE: 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64.

use super::bytes::Bytes;
use super::raw::{RawArray, RawData};
use crate::error::{fmt_shape, ErrorKind, RuntimeError};

/// True when `bytes` start like an IDX header (used for content detection).
pub fn looks_like_idx(bytes: &[u8]) -> bool {
    bytes.len() >= 4
        && bytes[0] == 0
        && bytes[1] == 0
        && element_size(bytes[2]).is_some()
        && bytes[3] >= 1
}

fn element_size(type_byte: u8) -> Option<usize> {
    match type_byte {
        0x08 | 0x09 => Some(1),
        0x0B => Some(2),
        0x0C | 0x0D => Some(4),
        0x0E => Some(8),
        _ => None,
    }
}

/// Parses a whole (decompressed) IDX file.
pub fn parse_idx(origin: &str, bytes: &[u8]) -> Result<RawArray, RuntimeError> {
    parse_idx_in(origin, bytes, None)
}

/// Parses a whole IDX file read as [`Bytes`]: u8 data stays a view of them (no copy).
pub fn parse_idx_shared(origin: &str, bytes: &Bytes) -> Result<RawArray, RuntimeError> {
    parse_idx_in(origin, bytes, Some(bytes))
}

fn parse_idx_in(
    origin: &str,
    bytes: &[u8],
    whole: Option<&Bytes>,
) -> Result<RawArray, RuntimeError> {
    let err = |kind, msg: String| RuntimeError::in_origin(kind, origin, msg);
    if bytes.len() < 4 {
        return Err(err(
            ErrorKind::Truncated,
            format!("IDX header needs 4 bytes, the file has {}", bytes.len()),
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(err(
            ErrorKind::BadFormat,
            format!(
                "bad IDX magic {:02x} {:02x} {:02x} {:02x}: the first two bytes must be zero",
                bytes[0], bytes[1], bytes[2], bytes[3]
            ),
        ));
    }
    let type_byte = bytes[2];
    let size = element_size(type_byte).ok_or_else(|| {
        err(
            ErrorKind::BadFormat,
            format!(
                "bad IDX type byte 0x{type_byte:02x}: expected 0x08 (u8), 0x09 (i8), 0x0b (i16), 0x0c (i32), 0x0d (f32) or 0x0e (f64)"
            ),
        )
    })?;
    let ndim = bytes[3] as usize;
    if ndim == 0 {
        return Err(err(
            ErrorKind::BadFormat,
            "IDX header declares 0 dimensions".into(),
        ));
    }
    let header_len = 4 + 4 * ndim;
    if bytes.len() < header_len {
        return Err(err(
            ErrorKind::Truncated,
            format!(
                "IDX header with {ndim} dimensions needs {header_len} bytes, the file has {}",
                bytes.len()
            ),
        ));
    }
    let shape: Vec<usize> = (0..ndim)
        .map(|i| {
            let at = 4 + 4 * i;
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize
        })
        .collect();
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .and_then(|n| n.checked_mul(size))
        .ok_or_else(|| {
            err(
                ErrorKind::BadFormat,
                format!("IDX shape {} is too large", fmt_shape(&shape)),
            )
        })?;
    let body = &bytes[header_len..];
    if body.len() < count {
        return Err(err(
            ErrorKind::Truncated,
            format!(
                "truncated: shape {} needs {count} bytes of data, the file has {}",
                fmt_shape(&shape),
                body.len()
            ),
        ));
    }
    if body.len() > count {
        return Err(err(
            ErrorKind::BadFormat,
            format!(
                "{} bytes after the data of shape {} (expected exactly {count} bytes of data)",
                body.len() - count,
                fmt_shape(&shape)
            ),
        ));
    }
    let data = match type_byte {
        0x08 => RawData::U8(share(whole, body)),
        0x09 => RawData::I8(body.iter().map(|&b| b as i8).collect()),
        0x0B => RawData::I16(
            body.chunks_exact(2)
                .map(|c| i16::from_be_bytes([c[0], c[1]]))
                .collect(),
        ),
        0x0C => RawData::I32(
            body.chunks_exact(4)
                .map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        0x0D => RawData::F32(
            body.chunks_exact(4)
                .map(|c| f32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        _ => RawData::F64(
            body.chunks_exact(8)
                .map(|c| f64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
        ),
    };
    Ok(RawArray {
        origin: origin.to_string(),
        shape,
        data,
    })
}

/// `part` of `whole` as shared bytes, or a copy when there is no shared buffer.
pub(super) fn share(whole: Option<&Bytes>, part: &[u8]) -> Bytes {
    match whole {
        Some(w) => w.share(part),
        None => Bytes::from(part.to_vec()),
    }
}

/// Encodes an array as IDX (for tests and tools).
pub fn encode_idx(shape: &[usize], data: &RawData) -> Vec<u8> {
    let type_byte = match data {
        RawData::U8(_) => 0x08,
        RawData::I8(_) => 0x09,
        RawData::I16(_) => 0x0B,
        RawData::I32(_) | RawData::I64(_) => 0x0C,
        RawData::F32(_) => 0x0D,
        RawData::F64(_) => 0x0E,
    };
    let mut out = vec![0, 0, type_byte, shape.len() as u8];
    for &d in shape {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    match data {
        RawData::U8(v) => out.extend_from_slice(v),
        RawData::I8(v) => out.extend(v.iter().map(|&x| x as u8)),
        RawData::I16(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_be_bytes())),
        RawData::I32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_be_bytes())),
        RawData::I64(v) => v
            .iter()
            .for_each(|&x| out.extend_from_slice(&(x as i32).to_be_bytes())),
        RawData::F32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_be_bytes())),
        RawData::F64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_be_bytes())),
    }
    out
}
