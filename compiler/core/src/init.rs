//! Initial parameter values with Keras's initialiser definitions, reproducible from the seed.
//!
//! Each parameter draws from its own stream keyed by (seed, parameter index), so adding a layer
//! does not change the initial values of the layers before it.

use crate::graph::{Init, ModelGraph};
use ndarray::{ArrayD, IxDyn};

/// A small, fast, well-mixed generator (SplitMix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64, stream: u64) -> Self {
        Rng(seed ^ stream.wrapping_mul(0xd1b5_4a32_d192_ed03) ^ 0x5851_f42d_4c95_7f2d)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    /// Standard normal truncated to [-2, 2] by resampling (as Keras's `truncated_normal`).
    pub fn truncated_normal(&mut self) -> f64 {
        loop {
            let z = self.normal();
            if z.abs() <= 2.0 {
                return z;
            }
        }
    }
}

/// Keras's `compute_fans`.
pub fn fans(shape: &[usize]) -> (f64, f64) {
    match shape.len() {
        0 => (1.0, 1.0),
        1 => (shape[0] as f64, shape[0] as f64),
        2 => (shape[0] as f64, shape[1] as f64),
        r => {
            let rf: usize = shape[..r - 2].iter().product();
            ((shape[r - 2] * rf) as f64, (shape[r - 1] * rf) as f64)
        }
    }
}

/// Draws one tensor.
pub fn draw(init: Init, shape: &[usize], rng: &mut Rng) -> ArrayD<f32> {
    let n: usize = shape.iter().product();
    let (fan_in, fan_out) = fans(shape);
    // Keras's VarianceScaling with a truncated normal divides by this constant so the
    // truncated distribution has the requested standard deviation.
    const TRUNC: f64 = 0.879_625_661_034_239_8;
    let mut gen = |f: &mut dyn FnMut(&mut Rng) -> f64| -> Vec<f32> {
        (0..n).map(|_| f(rng) as f32).collect()
    };
    let data = match init {
        Init::Zeros => vec![0.0; n],
        Init::Ones => vec![1.0; n],
        Init::Constant(v) => vec![v as f32; n],
        Init::Uniform { lo, hi } => gen(&mut |r| lo + (hi - lo) * r.uniform()),
        Init::Normal { mean, std } => gen(&mut |r| mean + std * r.normal()),
        Init::GlorotUniform => {
            let limit = (6.0 / (fan_in + fan_out)).sqrt();
            gen(&mut |r| -limit + 2.0 * limit * r.uniform())
        }
        Init::HeUniform => {
            let limit = (6.0 / fan_in).sqrt();
            gen(&mut |r| -limit + 2.0 * limit * r.uniform())
        }
        Init::GlorotNormal => {
            let sd = (2.0 / (fan_in + fan_out)).sqrt() / TRUNC;
            gen(&mut |r| sd * r.truncated_normal())
        }
        Init::HeNormal => {
            let sd = (2.0 / fan_in).sqrt() / TRUNC;
            gen(&mut |r| sd * r.truncated_normal())
        }
        Init::LecunNormal => {
            let sd = (1.0 / fan_in).sqrt() / TRUNC;
            gen(&mut |r| sd * r.truncated_normal())
        }
        Init::Orthogonal => orthogonal(shape, rng),
        // Resolved by `initial_params`; on its own a copy starts at zero.
        Init::CopyOf(_) => vec![0.0; n],
        Init::LstmBias => {
            // Keras's `unit_forget_bias`: gates (i, f, c, o); the forget gate starts at 1.
            let units = n / 4;
            (0..n)
                .map(|i| {
                    if (units..2 * units).contains(&i) {
                        1.0
                    } else {
                        0.0
                    }
                })
                .collect()
        }
    };
    ArrayD::from_shape_vec(IxDyn(shape), data).expect("init shape")
}

/// Keras's `Orthogonal`: QR of a normal matrix of shape (max(r, c), min(r, c)) with
/// r = product of all but the last axis, c = the last axis; transposed when r < c.
fn orthogonal(shape: &[usize], rng: &mut Rng) -> Vec<f32> {
    let cols = *shape.last().unwrap_or(&1);
    let rows: usize = shape[..shape.len().saturating_sub(1)].iter().product();
    let (tall, narrow) = (rows.max(cols), rows.min(cols));
    // a: tall x narrow, column-major for Gram-Schmidt over columns.
    let mut q: Vec<Vec<f64>> = (0..narrow)
        .map(|_| (0..tall).map(|_| rng.normal()).collect())
        .collect();
    for j in 0..narrow {
        let (done, rest) = q.split_at_mut(j);
        let col = &mut rest[0];
        for prev in done.iter() {
            let dot: f64 = col.iter().zip(prev).map(|(a, b)| a * b).sum();
            for (c, p) in col.iter_mut().zip(prev) {
                *c -= dot * p;
            }
        }
        let norm = (0..tall)
            .map(|i| q[j][i] * q[j][i])
            .sum::<f64>()
            .sqrt()
            .max(1e-30);
        for v in q[j].iter_mut() {
            *v /= norm;
        }
    }
    let mut out = vec![0.0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            out[r * cols + c] = if rows >= cols { q[c][r] } else { q[r][c] } as f32;
        }
    }
    out
}

/// Initial values of every parameter of `graph`.
/// Lagged copies (`Init::CopyOf`) start equal to their live parameter.
pub fn initial_params(graph: &ModelGraph, seed: u64) -> Vec<ArrayD<f32>> {
    let mut out: Vec<ArrayD<f32>> = Vec::with_capacity(graph.params.len());
    for (i, p) in graph.params.iter().enumerate() {
        let v = match p.init {
            Init::CopyOf(src) if src < out.len() => out[src].clone(),
            init => {
                let mut rng = Rng::new(seed, i as u64);
                draw(init, &p.shape, &mut rng)
            }
        };
        out.push(v);
    }
    out
}
