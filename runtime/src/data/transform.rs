//! The `x:` and `y:` transforms of a `data` section, with the statistics `standardize` learns
//! from the training split. The fitted form is stored as JSON in the weights' metadata so that
//! `eval` and `predict` transform their data exactly as training did.

use super::column::Column;
use super::dataset::{check_label_range, Dataset};
use crate::config::Transform;
use crate::error::{ErrorKind, RuntimeError};
use crate::tensor::Tensor;
use ndarray::{ArrayD, IxDyn};
use serde::{Deserialize, Serialize};

/// Keras' `backend.epsilon()`: the smallest standard deviation `standardize` divides by.
pub const STANDARDIZE_EPSILON: f64 = 1e-7;

/// Mean and variance per feature (the last axis of a sample, as Keras' `Normalization(axis=-1)`;
/// one feature for scalar samples).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureStats {
    pub mean: Vec<f64>,
    pub variance: Vec<f64>,
}

/// Transforms with their learnt statistics: one list of [`FeatureStats`] per input (and per
/// target), one entry per `standardize` in the chain.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FittedTransforms {
    pub x: Vec<Transform>,
    pub y: Vec<Transform>,
    pub x_stats: Vec<Vec<FeatureStats>>,
    pub y_stats: Vec<Vec<FeatureStats>>,
    /// The weights file these transforms were meant to come from, when it stored none (named
    /// by the "standardize has no statistics" error). Not serialised.
    #[serde(skip)]
    pub from_weights: Option<String>,
}

impl FittedTransforms {
    /// Learns the statistics of `standardize` from `train` (before any transform).
    pub fn fit(x: &[Transform], y: &[Transform], train: &Dataset) -> Result<Self, RuntimeError> {
        let fit_chain = |chain: &[Transform],
                         count: usize,
                         tensors: &dyn Fn() -> Vec<Tensor>,
                         role: &str|
         -> Result<Vec<Vec<FeatureStats>>, RuntimeError> {
            if !chain.contains(&Transform::Standardize) {
                return Ok(vec![Vec::new(); count]);
            }
            tensors()
                .iter()
                .map(|t| {
                    let mut current = t.clone();
                    let mut stats = Vec::new();
                    for transform in chain {
                        if *transform == Transform::Standardize {
                            let s = feature_stats(&current.to_f32());
                            current = standardize(&current, &s);
                            stats.push(s);
                        } else {
                            current = apply_one(transform, current, None, role)?;
                        }
                    }
                    Ok(stats)
                })
                .collect()
        };
        if train.is_empty()
            && (x.contains(&Transform::Standardize) || y.contains(&Transform::Standardize))
        {
            return Err(RuntimeError::without_path(
                ErrorKind::DataSetup,
                "standardize needs training samples to learn its statistics, the training split is empty",
            ));
        }
        Ok(FittedTransforms {
            x: x.to_vec(),
            y: y.to_vec(),
            x_stats: fit_chain(x, train.inputs.len(), &|| train.input_tensors(), "inputs")?,
            y_stats: fit_chain(y, train.targets.len(), &|| train.targets.clone(), "targets")?,
            from_weights: None,
        })
    }

    /// Transforms model inputs.
    pub fn apply_inputs(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, RuntimeError> {
        apply_chain(
            &self.x,
            &self.x_stats,
            inputs,
            "inputs",
            self.from_weights.as_deref(),
        )
    }

    /// Transforms targets; `origin` names the target file in label-range errors of `one_hot`.
    pub fn apply_targets(
        &self,
        origin: &str,
        targets: Vec<Tensor>,
    ) -> Result<Vec<Tensor>, RuntimeError> {
        apply_chain(
            &self.y,
            &self.y_stats,
            targets,
            origin,
            self.from_weights.as_deref(),
        )
    }

    /// Transforms a whole dataset. A byte input (u8 values) stays bytes through transforms of
    /// each value alone (`scale`: its table of the 256 values is transformed); another
    /// transform converts it to a dense tensor first.
    pub fn apply(&self, origin: &str, data: Dataset) -> Result<Dataset, RuntimeError> {
        let mut dense = Vec::new();
        let mut inputs = Vec::with_capacity(data.inputs.len());
        for (i, column) in data.inputs.into_iter().enumerate() {
            match column {
                Column::Bytes(mut c) if self.x.iter().all(|t| per_value(t).is_some()) => {
                    for t in &self.x {
                        if let Some(f) = per_value(t) {
                            c.map_values(f);
                        }
                    }
                    inputs.push(Some(Column::Bytes(c)));
                }
                other => {
                    dense.push((i, other.into_tensor()));
                    inputs.push(None);
                }
            }
        }
        // The dense inputs in one call, so each finds its `standardize` statistics by index.
        let (at, tensors): (Vec<usize>, Vec<Tensor>) = dense.into_iter().unzip();
        let stats: Vec<Vec<FeatureStats>> = at
            .iter()
            .map(|&i| self.x_stats.get(i).cloned().unwrap_or_default())
            .collect();
        let transformed = apply_chain(
            &self.x,
            &stats,
            tensors,
            "inputs",
            self.from_weights.as_deref(),
        )?;
        for (i, t) in at.into_iter().zip(transformed) {
            inputs[i] = Some(Column::Dense(t));
        }
        Ok(Dataset {
            inputs: inputs.into_iter().flatten().collect(),
            targets: self.apply_targets(origin, data.targets)?,
        })
    }

    /// Model outputs in the units of the targets before the `y:` transforms (`predict`): the
    /// chain undone from its end, `standardize` with its stored statistics (`x * std + mean`)
    /// and `scale` (`(x - offset) / factor`). `one_hot` is not undone (class scores stay).
    /// Output `i` is undone with target `i`'s statistics; a chain with `one_hot` in it leaves
    /// the outputs as they are.
    pub fn restore_outputs(&self, outputs: Vec<Tensor>) -> Vec<Tensor> {
        if self.y.iter().any(|t| matches!(t, Transform::OneHot(_))) {
            return outputs;
        }
        outputs
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                let stats = self.y_stats.get(i).map_or(&[][..], |s| &s[..]);
                let mut next = stats.len();
                let mut a = t.to_f32();
                for transform in self.y.iter().rev() {
                    match *transform {
                        Transform::Scale { factor, offset } => {
                            a.mapv_inplace(|v| ((v as f64 - offset) / factor) as f32)
                        }
                        Transform::Standardize if next > 0 => {
                            next -= 1;
                            let s = &stats[next];
                            let features = s.mean.len().max(1);
                            for (j, v) in a.iter_mut().enumerate() {
                                let f = j % features;
                                let std = s.variance.get(f).copied().unwrap_or(1.0).sqrt();
                                let std = std.max(STANDARDIZE_EPSILON);
                                let mean = s.mean.get(f).copied().unwrap_or(0.0);
                                *v = (*v as f64 * std + mean) as f32;
                            }
                        }
                        Transform::Standardize | Transform::OneHot(_) => {}
                    }
                }
                Tensor::F32(a)
            })
            .collect()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(text: &str) -> Result<Self, RuntimeError> {
        serde_json::from_str(text).map_err(|e| {
            RuntimeError::without_path(
                ErrorKind::Weights,
                format!("bad transform statistics in the weights metadata: {e}"),
            )
        })
    }
}

fn apply_chain(
    chain: &[Transform],
    stats: &[Vec<FeatureStats>],
    tensors: Vec<Tensor>,
    origin: &str,
    weights: Option<&str>,
) -> Result<Vec<Tensor>, RuntimeError> {
    tensors
        .into_iter()
        .enumerate()
        .map(|(i, mut t)| {
            let mut next_stats = stats.get(i).map(|s| s.iter()).into_iter().flatten();
            for transform in chain {
                let s = if *transform == Transform::Standardize {
                    Some(next_stats.next().ok_or_else(|| match weights {
                        Some(w) => RuntimeError::in_origin(
                            ErrorKind::DataSetup,
                            w,
                            "holds no `standardize` statistics: use weights written by `fmc train` for this model (they store the statistics)",
                        ),
                        None => RuntimeError::without_path(
                            ErrorKind::DataSetup,
                            "standardize has no statistics: train the model first (they are stored in its weights)",
                        ),
                    })?)
                } else {
                    None
                };
                t = apply_one(transform, t, s, origin)?;
            }
            Ok(t)
        })
        .collect()
}

/// A transform of each value alone, as [`apply_one`] computes it on f32 data.
fn per_value(transform: &Transform) -> Option<impl Fn(f32) -> f32> {
    match *transform {
        Transform::Scale { factor, offset } => {
            Some(move |v: f32| (v as f64 * factor + offset) as f32)
        }
        Transform::Standardize | Transform::OneHot(_) => None,
    }
}

fn apply_one(
    transform: &Transform,
    t: Tensor,
    stats: Option<&FeatureStats>,
    origin: &str,
) -> Result<Tensor, RuntimeError> {
    match transform {
        // In f64 then rounded once, so `scale(1 / 255)` gives the correctly rounded byte / 255.
        // f32 data is scaled in place: a second copy of MNIST's inputs is 188 MB of peak RSS.
        &Transform::Scale { factor, offset } => Ok(Tensor::F32(match t {
            Tensor::F32(mut a) => {
                a.mapv_inplace(|v| (v as f64 * factor + offset) as f32);
                a
            }
            Tensor::I32(a) => a.mapv(|v| (v as f64 * factor + offset) as f32),
        })),
        Transform::Standardize => match stats {
            Some(s) => Ok(standardize(&t, s)),
            None => Ok(t),
        },
        Transform::OneHot(n) => one_hot(origin, &t, *n),
    }
}

fn feature_stats(a: &ArrayD<f32>) -> FeatureStats {
    let features = a
        .shape()
        .get(1..)
        .and_then(|s| s.last())
        .copied()
        .unwrap_or(1)
        .max(1);
    let mut sum = vec![0f64; features];
    let mut count = 0usize;
    for chunk in a
        .as_standard_layout()
        .as_slice()
        .unwrap_or(&[])
        .chunks(features)
    {
        for (s, &v) in sum.iter_mut().zip(chunk) {
            *s += v as f64;
        }
        count += 1;
    }
    let n = count.max(1) as f64;
    let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
    let mut sq = vec![0f64; features];
    for chunk in a
        .as_standard_layout()
        .as_slice()
        .unwrap_or(&[])
        .chunks(features)
    {
        for ((s, &v), m) in sq.iter_mut().zip(chunk).zip(&mean) {
            *s += (v as f64 - m).powi(2);
        }
    }
    FeatureStats {
        mean,
        variance: sq.iter().map(|s| s / n).collect(),
    }
}

/// (x - mean) / max(sqrt(variance), epsilon), as Keras' `Normalization`.
fn standardize(t: &Tensor, stats: &FeatureStats) -> Tensor {
    let a = t.to_f32();
    let features = stats.mean.len().max(1);
    let shape = a.shape().to_vec();
    let values: Vec<f32> = a
        .as_standard_layout()
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let f = i % features;
            let std = stats
                .variance
                .get(f)
                .copied()
                .unwrap_or(1.0)
                .sqrt()
                .max(STANDARDIZE_EPSILON);
            ((v as f64 - stats.mean.get(f).copied().unwrap_or(0.0)) / std) as f32
        })
        .collect();
    Tensor::F32(ArrayD::from_shape_vec(IxDyn(&shape), values).unwrap_or_else(|_| a.clone()))
}

/// Class indices `[N]` (or `[N, 1]`) to one-hot rows `[N, n]` of f32.
fn one_hot(origin: &str, t: &Tensor, n: usize) -> Result<Tensor, RuntimeError> {
    let labels: Vec<i32> = match t {
        Tensor::I32(a) => a.iter().copied().collect(),
        Tensor::F32(a) => {
            if let Some((i, v)) = a
                .iter()
                .enumerate()
                .find(|(_, v)| v.fract() != 0.0 || !v.is_finite())
            {
                return Err(RuntimeError::in_origin(
                    ErrorKind::DType,
                    origin,
                    format!("one_hot({n}) needs integer class indices, found {v} at element {i}"),
                ));
            }
            a.iter().map(|&v| v as i32).collect()
        }
    };
    if labels.len() != t.len() {
        return Err(RuntimeError::in_origin(
            ErrorKind::Shape,
            origin,
            format!(
                "one_hot({n}) needs one class index per sample, found samples of shape {:?}",
                t.sample_shape()
            ),
        ));
    }
    check_label_range(origin, labels.iter().copied(), n)?;
    let mut out = ArrayD::<f32>::zeros(IxDyn(&[labels.len(), n]));
    for (row, &label) in labels.iter().enumerate() {
        out[&[row, label as usize][..]] = 1.0;
    }
    Ok(Tensor::F32(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_with_offset_and_weights_written_before_it() {
        let t = FittedTransforms {
            x: vec![Transform::Scale {
                factor: 2.0 / 255.0,
                offset: -1.0,
            }],
            ..Default::default()
        };
        let x = Tensor::I32(ArrayD::from_shape_vec(IxDyn(&[3, 1]), vec![0, 51, 255]).unwrap());
        let out = t.apply_inputs(vec![x]).unwrap()[0].to_f32();
        assert_eq!(out.iter().copied().collect::<Vec<_>>(), [-1.0, -0.6, 1.0]);
        // Weights written before `scale` had an offset store `{"Scale": factor}`.
        let old = FittedTransforms::from_json(
            r#"{"x":[{"Scale":0.5}],"y":[],"x_stats":[[]],"y_stats":[]}"#,
        )
        .unwrap();
        assert_eq!(
            old.x,
            [Transform::Scale {
                factor: 0.5,
                offset: 0.0
            }]
        );
        assert_eq!(FittedTransforms::from_json(&t.to_json()).unwrap(), t);
    }

    #[test]
    fn restore_outputs_undoes_standardize_then_scale() {
        let stats = FeatureStats {
            mean: vec![10.0],
            variance: vec![4.0],
        };
        let t = FittedTransforms {
            y: vec![
                Transform::Scale {
                    factor: 0.5,
                    offset: 1.0,
                },
                Transform::Standardize,
            ],
            y_stats: vec![vec![stats]],
            ..Default::default()
        };
        // A target 20 is scaled to 11, then standardized to (11 - 10) / 2 = 0.5.
        let out = Tensor::F32(ArrayD::from_shape_vec(IxDyn(&[1, 1]), vec![0.5]).unwrap());
        let back = t.restore_outputs(vec![out]);
        assert_eq!(back[0].to_f32()[[0, 0]], 20.0);
    }
}
