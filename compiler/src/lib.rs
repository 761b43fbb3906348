//! The fm compiler: checking, the layer graph, tensor IR, autodiff, passes, code generators.

pub mod autodiff;
pub mod exec;
pub mod graph;
pub mod init;
pub mod interp;
pub mod ir;
pub mod lower;
pub mod passes;
