//! The fm compiler: checking, the layer graph, tensor IR, autodiff, passes, code generators.

pub mod autodiff;
pub mod check;
pub mod cli;
pub mod diag;
pub mod exec;
pub mod graph;
pub mod init;
pub mod interp;
pub mod ir;
pub mod jit;
pub mod lower;
pub mod passes;
pub mod summary;
