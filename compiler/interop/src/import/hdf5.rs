//! The weights of a `.keras` file (`model.weights.h5`, written by h5py) through `hdf5-pure`, a
//! pure-Rust HDF5 reader (so fm needs no libhdf5).

use fm_runtime::tensor::Tensor;
use ndarray::{ArrayD, IxDyn};

pub struct H5 {
    file: hdf5_pure::File,
}

impl H5 {
    /// Opens the file image; `Err` says why it is not HDF5.
    pub fn parse(bytes: &[u8]) -> Result<H5, String> {
        hdf5_pure::File::from_bytes(bytes.to_vec())
            .map(|file| H5 { file })
            .map_err(|e| format!("is not a readable HDF5 file: {e}"))
    }

    /// The dataset at `path` as an f32 tensor: `None` when there is no such dataset, `Err` when
    /// it cannot be read as floats.
    pub fn dataset(&self, path: &str) -> Option<Result<Tensor, String>> {
        let d = self.file.dataset(path).ok()?;
        Some((|| {
            let shape: Vec<usize> = d
                .shape()
                .map_err(|e| format!("has no readable shape: {e}"))?
                .iter()
                .map(|&s| s as usize)
                .collect();
            let values = d
                .read_f32()
                .map_err(|e| format!("cannot be read as floats: {e}"))?;
            ArrayD::from_shape_vec(IxDyn(&shape), values)
                .map(Tensor::F32)
                .map_err(|_| {
                    format!("holds a number of values that does not fit its shape {shape:?}")
                })
        })())
    }
}
