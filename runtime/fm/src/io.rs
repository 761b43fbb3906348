//! NumPy `.npy` files as [`Tensor`]s (the format `fmc predict` reads and writes).

use fm_runtime::data::{dataset::convert_target_raw, npy::parse_npy, read::read_file_bytes};
use fm_runtime::tensor::Tensor;
use fm_runtime::RuntimeError;
use std::path::Path;

/// Reads an `.npy` file (gzip-compressed or not): floating arrays become f32 tensors (f64
/// rounds), integer arrays i32 tensors (values outside the i32 range are an error).
pub fn read_npy(path: impl AsRef<Path>) -> Result<Tensor, RuntimeError> {
    let path = path.as_ref();
    let bytes = read_file_bytes(path)?;
    convert_target_raw(&parse_npy(&path.display().to_string(), &bytes)?)
}

/// Writes a tensor (f32 or i32, row-major) as `.npy`, atomically (temporary file and rename).
pub fn write_npy(path: impl AsRef<Path>, tensor: &Tensor) -> Result<(), RuntimeError> {
    fm_runtime::data::npy::write_npy(path.as_ref(), tensor)
}
