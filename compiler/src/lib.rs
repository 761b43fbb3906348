//! The fm compiler: checking, the layer graph, tensor IR, autodiff, passes, code generators.

pub mod check;
pub mod cli;
pub mod diag;
pub mod explain;
pub mod graph;
pub mod summary;
