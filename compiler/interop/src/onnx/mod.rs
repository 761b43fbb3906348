//! The ONNX protobuf messages (generated, [`proto`]) and the helpers export and import share:
//! building and reading tensors, attributes and value infos.

#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
#[rustfmt::skip]
mod generated {
    include!("onnx.rs");
}
pub use generated::*;

use fm_runtime::tensor::Tensor;
use ndarray::{ArrayD, IxDyn};

/// `TensorProto.DataType` values fm reads and writes.
pub const FLOAT: i32 = tensor_proto::DataType::Float as i32;
pub const INT32: i32 = tensor_proto::DataType::Int32 as i32;
pub const INT64: i32 = tensor_proto::DataType::Int64 as i32;
pub const DOUBLE: i32 = tensor_proto::DataType::Double as i32;

/// The opset fm writes (ONNX 1.12 and later read it; onnxruntime since 1.14).
pub const OPSET: i64 = 17;
/// The IR version that goes with [`OPSET`].
pub const IR_VERSION: i64 = 8;

/// An f32 tensor as an initializer (raw little-endian bytes).
pub fn f32_tensor(name: &str, shape: &[usize], values: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        dims: shape.iter().map(|&d| d as i64).collect(),
        data_type: Some(FLOAT),
        raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

/// An i64 tensor (shapes, axes).
pub fn i64_tensor(name: &str, shape: &[usize], values: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        dims: shape.iter().map(|&d| d as i64).collect(),
        data_type: Some(INT64),
        raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

/// The values of a tensor, whichever of ONNX's storage fields holds them. `Err` says what is
/// wrong (an unsupported element type, a length that does not match the dims, external data).
pub fn tensor_values(t: &TensorProto) -> Result<TensorValue, String> {
    let mut shape = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        if d < 0 {
            return Err(format!("has a negative dimension {d}"));
        }
        shape.push(d as usize);
    }
    let count: usize = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("has more elements than fit in memory")?;
    if t.data_location == Some(tensor_proto::DataLocation::External as i32) {
        return Err("keeps its data in an external file, which fm does not read".into());
    }
    let raw = t.raw_data.as_deref();
    let dt = t.data_type.unwrap_or(0);
    let check = |n: usize| -> Result<(), String> {
        if n == count {
            Ok(())
        } else {
            Err(format!(
                "holds {n} values, its shape {shape:?} needs {count}"
            ))
        }
    };
    let values = match dt {
        FLOAT | DOUBLE => {
            let v: Vec<f32> = match raw {
                Some(r) if dt == FLOAT => le_chunks::<4>(r)?.map(f32::from_le_bytes).collect(),
                Some(r) => le_chunks::<8>(r)?
                    .map(|b| f64::from_le_bytes(b) as f32)
                    .collect(),
                None if dt == FLOAT => t.float_data.clone(),
                None => t.double_data.iter().map(|&v| v as f32).collect(),
            };
            check(v.len())?;
            Values::F32(v)
        }
        INT32 | INT64 => {
            let v: Vec<i64> = match raw {
                Some(r) if dt == INT32 => le_chunks::<4>(r)?
                    .map(|b| i32::from_le_bytes(b) as i64)
                    .collect(),
                Some(r) => le_chunks::<8>(r)?.map(i64::from_le_bytes).collect(),
                None if dt == INT32 => t.int32_data.iter().map(|&v| v as i64).collect(),
                None => t.int64_data.clone(),
            };
            check(v.len())?;
            Values::I64(v)
        }
        other => {
            let name = tensor_proto::DataType::try_from(other)
                .map(|d| d.as_str_name().to_lowercase())
                .unwrap_or_else(|_| format!("type {other}"));
            return Err(format!(
                "has element type {name}; fm reads float, double, int32 and int64"
            ));
        }
    };
    Ok(TensorValue { shape, values })
}

fn le_chunks<const N: usize>(raw: &[u8]) -> Result<impl Iterator<Item = [u8; N]> + '_, String> {
    if !raw.len().is_multiple_of(N) {
        return Err(format!(
            "has {} bytes of raw data, not a multiple of {N}",
            raw.len()
        ));
    }
    Ok(raw
        .chunks_exact(N)
        .map(|c| <[u8; N]>::try_from(c).unwrap_or([0; N])))
}

/// A constant read from the model.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorValue {
    pub shape: Vec<usize>,
    pub values: Values,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

impl TensorValue {
    pub fn len(&self) -> usize {
        match &self.values {
            Values::F32(v) => v.len(),
            Values::I64(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The values as f32 (integers converted).
    pub fn f32s(&self) -> Vec<f32> {
        match &self.values {
            Values::F32(v) => v.clone(),
            Values::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }
    /// The values as i64, when they are integers.
    pub fn i64s(&self) -> Option<&[i64]> {
        match &self.values {
            Values::I64(v) => Some(v),
            Values::F32(_) => None,
        }
    }
    /// As an fm f32 tensor.
    pub fn to_tensor(&self) -> Tensor {
        Tensor::F32(
            ArrayD::from_shape_vec(IxDyn(&self.shape), self.f32s())
                .expect("length checked by tensor_values"),
        )
    }
}

/// Attribute builders.
pub fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_proto::AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}
pub fn attr_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_proto::AttributeType::Float as i32),
        f: Some(v),
        ..Default::default()
    }
}
pub fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_proto::AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}
pub fn attr_string(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_proto::AttributeType::String as i32),
        s: Some(v.as_bytes().to_vec()),
        ..Default::default()
    }
}
pub fn attr_strings(name: &str, v: &[&str]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_proto::AttributeType::Strings as i32),
        strings: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
        ..Default::default()
    }
}

/// A value info with element type `elem` and shape: `None` entries are the symbolic batch `N`.
pub fn value_info(name: &str, elem: i32, dims: &[Option<usize>]) -> ValueInfoProto {
    use tensor_shape_proto::{dimension::Value, Dimension};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(n) => Value::DimValue(*n as i64),
                None => Value::DimParam("N".into()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}
