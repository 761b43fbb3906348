//! NumPy `.npy` (format versions 1.0-3.0) and `.npz` (a zip of `.npy` files).
//!
//! Read: little-endian `f4`, `f8`, `u1`, `i1`, `i2`, `i4`, `i8` in C order. Written: any of
//! those (fm writes f32 and i32 predictions); version 1.0 headers padded to 64 bytes as NumPy does.

use super::bytes::Bytes;
use super::idx::share;
use super::raw::{RawArray, RawData};
use super::read::{decompressed_limit, read_limited, too_large_message};
use crate::error::{fmt_shape, ErrorKind, RuntimeError};
use crate::tensor::Tensor;
use std::io::{Cursor, Write};
use std::path::Path;

pub const NPY_MAGIC: &[u8] = b"\x93NUMPY";

/// Parses a whole `.npy` file.
pub fn parse_npy(origin: &str, bytes: &[u8]) -> Result<RawArray, RuntimeError> {
    parse_npy_in(origin, bytes, None)
}

/// Parses a whole `.npy` file read as [`Bytes`]: u8 data stays a view of them (no copy).
pub fn parse_npy_shared(origin: &str, bytes: &Bytes) -> Result<RawArray, RuntimeError> {
    parse_npy_in(origin, bytes, Some(bytes))
}

fn parse_npy_in(
    origin: &str,
    bytes: &[u8],
    whole: Option<&Bytes>,
) -> Result<RawArray, RuntimeError> {
    let err = |kind, msg: String| RuntimeError::in_origin(kind, origin, msg);
    if !bytes.starts_with(NPY_MAGIC) {
        return Err(err(
            ErrorKind::BadFormat,
            "not an .npy file (missing the \\x93NUMPY magic)".into(),
        ));
    }
    if bytes.len() < 10 {
        return Err(err(
            ErrorKind::Truncated,
            format!("truncated .npy header ({} bytes)", bytes.len()),
        ));
    }
    let major = bytes[6];
    let (header_len, header_start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(err(ErrorKind::Truncated, "truncated .npy header".into()));
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => {
            return Err(err(
                ErrorKind::BadFormat,
                format!("unsupported .npy format version {v}"),
            ))
        }
    };
    let header_end = header_start + header_len;
    if bytes.len() < header_end {
        return Err(err(
            ErrorKind::Truncated,
            format!(
                "truncated: the .npy header needs {header_end} bytes, the file has {}",
                bytes.len()
            ),
        ));
    }
    let header = std::str::from_utf8(&bytes[header_start..header_end])
        .map_err(|_| err(ErrorKind::BadFormat, "the .npy header is not text".into()))?;
    let header = NpyHeader::parse(header).map_err(|m| err(ErrorKind::BadFormat, m))?;
    if header.fortran_order {
        return Err(err(
            ErrorKind::BadFormat,
            "Fortran-ordered arrays are not supported: save a C-ordered array (np.ascontiguousarray)".into(),
        ));
    }
    let (size, kind) = match header.descr.as_str() {
        "<f4" => (4, 'f'),
        "<f8" => (8, 'd'),
        "|u1" | "<u1" => (1, 'B'),
        "|i1" | "<i1" => (1, 'b'),
        "<i2" => (2, 'h'),
        "<i4" => (4, 'i'),
        "<i8" => (8, 'q'),
        other => {
            return Err(err(
                ErrorKind::DType,
                format!(
                    "unsupported .npy dtype '{other}': expected little-endian f32 ('<f4'), f64 ('<f8'), u8 ('|u1'), i8, i16, i32 ('<i4') or i64 ('<i8')"
                ),
            ))
        }
    };
    let count = header
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .and_then(|n| n.checked_mul(size))
        .ok_or_else(|| err(ErrorKind::BadFormat, "the .npy shape is too large".into()))?;
    let body = &bytes[header_end..];
    if body.len() < count {
        return Err(err(
            ErrorKind::Truncated,
            format!(
                "truncated: shape {} of '{}' needs {count} bytes of data, the file has {}",
                fmt_shape(&header.shape),
                header.descr,
                body.len()
            ),
        ));
    }
    if body.len() > count {
        return Err(err(
            ErrorKind::BadFormat,
            format!(
                "{} bytes after the data of shape {} (expected exactly {count})",
                body.len() - count,
                fmt_shape(&header.shape)
            ),
        ));
    }
    let data = match kind {
        'f' => RawData::F32(
            body.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        'd' => RawData::F64(
            body.chunks_exact(8)
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
        ),
        'B' => RawData::U8(share(whole, body)),
        'b' => RawData::I8(body.iter().map(|&b| b as i8).collect()),
        'h' => RawData::I16(
            body.chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect(),
        ),
        'i' => RawData::I32(
            body.chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        _ => RawData::I64(
            body.chunks_exact(8)
                .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
        ),
    };
    Ok(RawArray {
        origin: origin.to_string(),
        shape: header.shape,
        data,
    })
}

/// The dictionary literal of an `.npy` header, e.g.
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (1797, 8, 8), }`.
struct NpyHeader {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

impl NpyHeader {
    fn parse(text: &str) -> Result<Self, String> {
        let value_after = |key: &str| -> Result<&str, String> {
            let pattern_single = format!("'{key}'");
            let pattern_double = format!("\"{key}\"");
            let at = text
                .find(&pattern_single)
                .map(|i| i + pattern_single.len())
                .or_else(|| text.find(&pattern_double).map(|i| i + pattern_double.len()))
                .ok_or_else(|| format!("the .npy header has no '{key}' entry: {}", text.trim()))?;
            let rest = text[at..].trim_start();
            rest.strip_prefix(':')
                .map(str::trim_start)
                .ok_or_else(|| format!("malformed .npy header: {}", text.trim()))
        };
        let descr_text = value_after("descr")?;
        let quote = descr_text
            .chars()
            .next()
            .filter(|c| *c == '\'' || *c == '"');
        let descr = match quote {
            Some(q) => descr_text[1..]
                .split(q)
                .next()
                .map(str::to_string)
                .ok_or_else(|| "malformed 'descr' in the .npy header".to_string())?,
            None => {
                return Err(format!(
                    "unsupported structured .npy dtype: {}",
                    text.trim()
                ))
            }
        };
        let fortran_text = value_after("fortran_order")?;
        let fortran_order = if fortran_text.starts_with("True") {
            true
        } else if fortran_text.starts_with("False") {
            false
        } else {
            return Err("malformed 'fortran_order' in the .npy header".into());
        };
        let shape_text = value_after("shape")?;
        let inner = shape_text
            .strip_prefix('(')
            .and_then(|s| s.split(')').next())
            .ok_or_else(|| "malformed 'shape' in the .npy header".to_string())?;
        let shape = inner
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.trim_end_matches('L').parse::<usize>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| format!("malformed 'shape' ({inner}) in the .npy header"))?;
        Ok(NpyHeader {
            descr,
            fortran_order,
            shape,
        })
    }
}

/// Encodes an array as `.npy` version 1.0.
pub fn encode_npy(shape: &[usize], data: &RawData) -> Vec<u8> {
    let descr = match data {
        RawData::U8(_) => "|u1",
        RawData::I8(_) => "|i1",
        RawData::I16(_) => "<i2",
        RawData::I32(_) => "<i4",
        RawData::I64(_) => "<i8",
        RawData::F32(_) => "<f4",
        RawData::F64(_) => "<f8",
    };
    let shape_text = match shape.len() {
        0 => "()".to_string(),
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Pad with spaces so magic + version + length + header + '\n' is a multiple of 64.
    let unpadded = NPY_MAGIC.len() + 2 + 2 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 8);
    out.extend_from_slice(NPY_MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    match data {
        RawData::U8(v) => out.extend_from_slice(v),
        RawData::I8(v) => out.extend(v.iter().map(|&x| x as u8)),
        RawData::I16(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        RawData::I32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        RawData::I64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        RawData::F32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        RawData::F64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
    }
    out
}

/// Writes a tensor (f32 or i32, row-major) as `.npy`, atomically.
pub fn write_npy(path: &Path, tensor: &Tensor) -> Result<(), RuntimeError> {
    let (shape, data) = tensor_raw(tensor);
    crate::fsutil::atomic_write(path, &encode_npy(&shape, &data))
}

fn tensor_raw(tensor: &Tensor) -> (Vec<usize>, RawData) {
    match tensor {
        Tensor::F32(a) => (
            a.shape().to_vec(),
            RawData::F32(a.iter().copied().collect()),
        ),
        Tensor::I32(a) => (
            a.shape().to_vec(),
            RawData::I32(a.iter().copied().collect()),
        ),
    }
}

/// Reads the array `key` (the member `key.npy`) from the bytes of an `.npz` file.
pub fn parse_npz_member(path: &str, bytes: &[u8], key: &str) -> Result<RawArray, RuntimeError> {
    parse_npz_member_in(path, bytes, key, None)
}

/// Reads the array `key` of an `.npz` read as [`Bytes`]. A member stored uncompressed (as
/// `np.savez` writes them) in a memory-mapped file is parsed where it lies: its u8 data is a
/// view of the mapping, read only where batches touch it (so its CRC is not checked, as
/// NumPy's `mmap_mode` does not check it). Deflated members are decompressed.
pub fn parse_npz_member_shared(
    path: &str,
    bytes: &Bytes,
    key: &str,
) -> Result<RawArray, RuntimeError> {
    parse_npz_member_in(path, bytes, key, Some(bytes))
}

fn parse_npz_member_in(
    path: &str,
    bytes: &[u8],
    key: &str,
    whole: Option<&Bytes>,
) -> Result<RawArray, RuntimeError> {
    let mut archive = open_zip(path, bytes)?;
    let member = format!("{key}.npy");
    let origin = format!("{path}:{key}");
    if archive.index_for_name(&member).is_none() {
        let keys = npz_keys_of(&mut archive);
        return Err(RuntimeError::in_origin(
            ErrorKind::BadFormat,
            path,
            format!("no array '{key}' in the .npz (it has: {})", keys.join(", ")),
        ));
    }
    if let Some(whole) = whole.filter(|w| w.is_mapped()) {
        let stored = archive.by_name(&member).ok().and_then(|file| {
            let start = usize::try_from(file.data_start()).ok()?;
            let len = usize::try_from(file.size()).ok()?;
            (file.compression() == zip::CompressionMethod::Stored
                && start.checked_add(len)? <= whole.len())
            .then(|| whole.slice(start..start + len))
        });
        if let Some(member_bytes) = stored {
            return parse_npy_shared(&origin, &member_bytes);
        }
    }
    let limit = decompressed_limit();
    let contents = archive
        .by_name(&member)
        .and_then(|file| read_limited(file, limit.0).map_err(Into::into))
        .map_err(|e| {
            RuntimeError::in_origin(
                ErrorKind::BadFormat,
                &origin,
                format!("cannot decompress the array: {e}"),
            )
        })?
        .ok_or_else(|| {
            RuntimeError::in_origin(ErrorKind::BadFormat, &origin, too_large_message(limit))
        })?;
    parse_npy_shared(&origin, &Bytes::from(contents))
}

/// The array names in an `.npz` file, in archive order.
pub fn npz_keys(path: &str, bytes: &[u8]) -> Result<Vec<String>, RuntimeError> {
    let mut archive = open_zip(path, bytes)?;
    Ok(npz_keys_of(&mut archive))
}

fn open_zip<'a>(
    path: &str,
    bytes: &'a [u8],
) -> Result<zip::ZipArchive<Cursor<&'a [u8]>>, RuntimeError> {
    zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| {
        RuntimeError::in_origin(
            ErrorKind::BadFormat,
            path,
            format!("not a valid .npz (zip) file: {e}"),
        )
    })
}

fn npz_keys_of(archive: &mut zip::ZipArchive<Cursor<&[u8]>>) -> Vec<String> {
    archive
        .file_names()
        .map(|n| n.strip_suffix(".npy").unwrap_or(n).to_string())
        .collect()
}

/// Encodes named arrays as an `.npz` (zip; deflated when `compress`, as `np.savez_compressed`).
pub fn encode_npz(
    arrays: &[(&str, &[usize], &RawData)],
    compress: bool,
) -> Result<Vec<u8>, RuntimeError> {
    use zip::write::SimpleFileOptions;
    let method = if compress {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let options = SimpleFileOptions::default().compression_method(method);
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let fail = |e: &dyn std::fmt::Display| {
        RuntimeError::without_path(ErrorKind::Write, format!("cannot build .npz: {e}"))
    };
    for (key, shape, data) in arrays {
        writer
            .start_file(format!("{key}.npy"), options)
            .map_err(|e| fail(&e))?;
        writer
            .write_all(&encode_npy(shape, data))
            .map_err(|e| fail(&e))?;
    }
    Ok(writer.finish().map_err(|e| fail(&e))?.into_inner())
}
