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
