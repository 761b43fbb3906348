//! Initial parameter values with Keras's initialiser definitions, reproducible from the seed.
//!
//! Each parameter draws from its own stream keyed by (seed, parameter index), so adding a layer
//! does not change the initial values of the layers before it.

use crate::graph::ModelGraph;
use ndarray::ArrayD;

pub use fm_runtime::init::{draw, fans};
pub use fm_runtime::random::Rng;

/// Initial values of every parameter of `graph`.
pub fn initial_params(graph: &ModelGraph, seed: u64) -> Vec<ArrayD<f32>> {
    graph
        .params
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut rng = Rng::new(seed, i as u64);
            draw(p.init, &p.shape, &mut rng)
        })
        .collect()
}
