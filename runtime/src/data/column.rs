//! A model input of a data set: a dense tensor, or a file's u8 values converted to f32 only
//! as batches are gathered.
//!
//! MNIST's 60,000 images are 47 MB of bytes and 188 MB as f32. A [`ByteColumn`] keeps the
//! bytes (a view of the memory-mapped file, see [`super::bytes`]) with a table of what each of
//! the 256 byte values becomes after the `x:` transforms that act on each value alone
//! (`scale`); gathering a batch looks each byte up in it. The table entry of a value is
//! computed exactly as the dense path computes it, so batches hold the same bits either way.

use super::bytes::Bytes;
use crate::tensor::{DType, Tensor};
use ndarray::{ArrayD, IxDyn};
use std::ops::Range;

/// u8 values read as f32 through a table of the 256 values.
#[derive(Clone, Debug, PartialEq)]
pub struct ByteColumn {
    /// `shape.iter().product()` bytes, samples in order.
    bytes: Bytes,
    /// `[samples, ...the model's sample shape]`.
    shape: Vec<usize>,
    /// What each byte value reads as.
    table: Box<[f32; 256]>,
}

impl ByteColumn {
    /// The values of `bytes` as f32 (`b as f32`), in `shape` (`[samples, ...]`).
    ///
    /// # Panics
    /// When `bytes` does not hold exactly `shape`'s number of elements.
    pub fn new(bytes: Bytes, shape: Vec<usize>) -> ByteColumn {
        assert_eq!(bytes.len(), shape.iter().product::<usize>());
        ByteColumn {
            bytes,
            shape,
            table: Box::new(std::array::from_fn(|b| b as f32)),
        }
    }

    pub fn len(&self) -> usize {
        self.shape[0]
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// True when the bytes are a view of a memory-mapped file.
    pub fn is_mapped(&self) -> bool {
        self.bytes.is_mapped()
    }
    /// Elements per sample.
    fn per_sample(&self) -> usize {
        self.shape[1..].iter().product()
    }

    /// Applies `f` to every value (a transform of each value alone).
    pub fn map_values(&mut self, f: impl Fn(f32) -> f32) {
        for v in self.table.iter_mut() {
            *v = f(*v);
        }
    }

    /// Samples `range`, sharing the bytes.
    pub fn slice(&self, range: Range<usize>) -> ByteColumn {
        let per = self.per_sample();
        let mut shape = self.shape.clone();
        shape[0] = range.len();
        ByteColumn {
            bytes: self.bytes.slice(range.start * per..range.end * per),
            shape,
            table: self.table.clone(),
        }
    }

    /// The samples at `indices`, converted, into `out` (`indices.len()` samples long).
    pub fn gather_into(&self, indices: &[usize], out: &mut [f32]) {
        let per = self.per_sample();
        assert_eq!(out.len(), indices.len() * per);
        let table = &*self.table;
        for (k, (&i, dst)) in indices
            .iter()
            .zip(out.chunks_exact_mut(per.max(1)))
            .enumerate()
        {
            // The samples of a shuffled batch lie anywhere in the file: ask for the one after
            // next while this one converts, so that its cache lines are on their way.
            if let Some(&ahead) = indices.get(k + PREFETCH_AHEAD) {
                prefetch(&self.bytes[ahead * per..(ahead + 1) * per]);
            }
            let src = &self.bytes[i * per..(i + 1) * per];
            for (d, &b) in dst.iter_mut().zip(src) {
                *d = table[b as usize];
            }
        }
    }

    /// The samples at `indices`, converted.
    pub fn gather(&self, indices: &[usize]) -> ArrayD<f32> {
        let mut shape = self.shape.clone();
        shape[0] = indices.len();
        let mut out = vec![0f32; shape.iter().product()];
        self.gather_into(indices, &mut out);
        ArrayD::from_shape_vec(IxDyn(&shape), out).expect("the gathered shape")
    }

    /// Every sample, converted (for transforms that need the whole data: `standardize`).
    pub fn to_array(&self) -> ArrayD<f32> {
        let table = &*self.table;
        let values = self.bytes.iter().map(|&b| table[b as usize]).collect();
        ArrayD::from_shape_vec(IxDyn(&self.shape), values).expect("the column's shape")
    }

    /// The first element (in order) whose value is NaN or infinite, with its index. Free when
    /// no byte value converts to one (the table is checked first).
    pub fn first_non_finite(&self) -> Option<(usize, f32)> {
        if self.table.iter().all(|v| v.is_finite()) {
            return None;
        }
        let table = &*self.table;
        self.bytes
            .iter()
            .position(|&b| !table[b as usize].is_finite())
            .map(|i| (i, table[self.bytes[i] as usize]))
    }
}

/// How many samples ahead [`ByteColumn::gather_into`] prefetches.
const PREFETCH_AHEAD: usize = 2;

/// Asks the CPU to bring `bytes` into its caches (a hint: no effect on the values).
#[inline]
fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    for line in bytes.chunks(64) {
        // SAFETY: a prefetch never faults and reads nothing the program sees; the address is
        // inside `bytes`.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                line.as_ptr() as *const i8
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// One model input of a data set.
#[derive(Clone, Debug, PartialEq)]
pub enum Column {
    Dense(Tensor),
    /// f32 values kept as bytes (see [`ByteColumn`]).
    Bytes(ByteColumn),
}

impl From<Tensor> for Column {
    fn from(t: Tensor) -> Column {
        Column::Dense(t)
    }
}

impl Column {
    pub fn dtype(&self) -> DType {
        match self {
            Column::Dense(t) => t.dtype(),
            Column::Bytes(_) => DType::F32,
        }
    }
    pub fn shape(&self) -> &[usize] {
        match self {
            Column::Dense(t) => t.shape(),
            Column::Bytes(c) => c.shape(),
        }
    }
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.shape().first().copied().unwrap_or(1)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Samples `range` (byte columns share their bytes).
    pub fn slice(&self, range: Range<usize>) -> Column {
        match self {
            Column::Dense(t) => Column::Dense(t.slice_samples(range)),
            Column::Bytes(c) => Column::Bytes(c.slice(range)),
        }
    }
    /// Samples `range` as a tensor (a batch in order).
    pub fn slice_tensor(&self, range: Range<usize>) -> Tensor {
        match self {
            Column::Dense(t) => t.slice_samples(range),
            Column::Bytes(c) => Tensor::F32(c.gather(&range.collect::<Vec<_>>())),
        }
    }
    /// The samples at `indices`, in that order, as a tensor.
    pub fn gather(&self, indices: &[usize]) -> Tensor {
        match self {
            Column::Dense(t) => t.gather_samples(indices),
            Column::Bytes(c) => Tensor::F32(c.gather(indices)),
        }
    }
    /// Every sample as a tensor.
    pub fn to_tensor(&self) -> Tensor {
        match self {
            Column::Dense(t) => t.clone(),
            Column::Bytes(c) => Tensor::F32(c.to_array()),
        }
    }
    /// Every sample as a tensor, without copying a dense one.
    pub fn into_tensor(self) -> Tensor {
        match self {
            Column::Dense(t) => t,
            Column::Bytes(c) => Tensor::F32(c.to_array()),
        }
    }
    /// Every value as f32.
    pub fn to_f32(&self) -> ArrayD<f32> {
        match self {
            Column::Dense(t) => t.to_f32(),
            Column::Bytes(c) => c.to_array(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_columns_convert_as_dense_data_does() {
        let bytes = Bytes::from(vec![0, 51, 255, 7, 8, 9]);
        let mut c = ByteColumn::new(bytes, vec![3, 2]);
        c.map_values(|v| (v as f64 * (1.0 / 255.0)) as f32);
        let dense: Vec<f32> = [0u8, 51, 255, 7, 8, 9]
            .iter()
            .map(|&b| (b as f32 as f64 * (1.0 / 255.0)) as f32)
            .collect();
        assert_eq!(c.to_array().as_slice().unwrap(), &dense[..]);
        let g = c.gather(&[2, 0]);
        assert_eq!(g.shape(), &[2, 2]);
        assert_eq!(
            g.as_slice().unwrap(),
            &[dense[4], dense[5], dense[0], dense[1]]
        );
        let s = c.slice(1..3);
        assert_eq!(s.to_array().as_slice().unwrap(), &dense[2..]);
        assert_eq!(c.first_non_finite(), None);
        c.map_values(|v| if v > 0.9 { f32::NAN } else { v });
        let (i, v) = c.first_non_finite().unwrap();
        assert_eq!(i, 2);
        assert!(v.is_nan());
    }
}
