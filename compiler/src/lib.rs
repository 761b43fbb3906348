//! The fm compiler: checking, the layer graph, tensor IR, autodiff, passes, code generators.

pub mod graph;
