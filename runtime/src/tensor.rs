//! Host tensors exchanged between data loaders, the training loop and the backends.

use ndarray::ArrayD;

/// Element types a model input, target or parameter can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum DType {
    F32,
    I32,
}

impl DType {
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::I32 => "i32",
        }
    }
}

/// A dense, row-major host tensor. The first axis is the batch for data tensors.
#[derive(Clone, Debug, PartialEq)]
pub enum Tensor {
    F32(ArrayD<f32>),
    I32(ArrayD<i32>),
}

impl Tensor {
    pub fn dtype(&self) -> DType {
        match self {
            Tensor::F32(_) => DType::F32,
            Tensor::I32(_) => DType::I32,
        }
    }
    pub fn shape(&self) -> &[usize] {
        match self {
            Tensor::F32(a) => a.shape(),
            Tensor::I32(a) => a.shape(),
        }
    }
    /// Number of samples (the length of the first axis; 1 for a scalar).
    pub fn len(&self) -> usize {
        self.shape().first().copied().unwrap_or(1)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The values as f32 (i32 values convert exactly up to 2^24).
    pub fn to_f32(&self) -> ArrayD<f32> {
        match self {
            Tensor::F32(a) => a.clone(),
            Tensor::I32(a) => a.mapv(|v| v as f32),
        }
    }
    pub fn as_f32(&self) -> Option<&ArrayD<f32>> {
        match self {
            Tensor::F32(a) => Some(a),
            Tensor::I32(_) => None,
        }
    }
    pub fn as_i32(&self) -> Option<&ArrayD<i32>> {
        match self {
            Tensor::I32(a) => Some(a),
            Tensor::F32(_) => None,
        }
    }
}

/// Sample-axis (axis 0) operations used by batching, splitting and prediction.
impl Tensor {
    /// Samples `range` (along axis 0) as a new tensor.
    pub fn slice_samples(&self, range: std::ops::Range<usize>) -> Tensor {
        use ndarray::{Axis, Slice};
        let slice = Slice::from(range);
        match self {
            Tensor::F32(a) => Tensor::F32(a.slice_axis(Axis(0), slice).to_owned()),
            Tensor::I32(a) => Tensor::I32(a.slice_axis(Axis(0), slice).to_owned()),
        }
    }
    /// The samples at `indices` (along axis 0), in that order.
    pub fn gather_samples(&self, indices: &[usize]) -> Tensor {
        use ndarray::Axis;
        match self {
            Tensor::F32(a) => Tensor::F32(a.select(Axis(0), indices)),
            Tensor::I32(a) => Tensor::I32(a.select(Axis(0), indices)),
        }
    }
    /// Concatenates tensors of one dtype along axis 0; `None` when dtypes or sample shapes differ
    /// or `parts` is empty.
    pub fn concat_samples(parts: &[Tensor]) -> Option<Tensor> {
        use ndarray::{concatenate, Axis};
        let first = parts.first()?;
        match first {
            Tensor::F32(_) => {
                let views: Option<Vec<_>> =
                    parts.iter().map(|t| t.as_f32().map(|a| a.view())).collect();
                concatenate(Axis(0), &views?).ok().map(Tensor::F32)
            }
            Tensor::I32(_) => {
                let views: Option<Vec<_>> =
                    parts.iter().map(|t| t.as_i32().map(|a| a.view())).collect();
                concatenate(Axis(0), &views?).ok().map(Tensor::I32)
            }
        }
    }
    /// The shape of one sample (the shape without axis 0).
    pub fn sample_shape(&self) -> &[usize] {
        let shape = self.shape();
        if shape.is_empty() {
            shape
        } else {
            &shape[1..]
        }
    }
}
