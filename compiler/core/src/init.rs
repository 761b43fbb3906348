//! Initial parameter values with Keras's initialiser definitions, reproducible from the seed.
//!
//! Each parameter draws from its own stream keyed by (seed, parameter index), so adding a layer
//! does not change the initial values of the layers before it.

use crate::graph::{Init, ModelGraph};
use ndarray::ArrayD;

pub use fm_runtime::init::{draw, fans};
pub use fm_runtime::random::Rng;

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
