//! The fm compiler: checking, the layer graph, tensor IR, autodiff, passes, code generators.
//! This core needs neither Cranelift (`fm-jit`) nor clap (`fmc`), so `model!` can use it.

pub mod autodiff;
pub mod check;
pub mod diag;
pub mod emit;
pub mod exec;
pub mod graph;
pub mod init;
pub mod interp;
pub mod ir;
pub mod lower;
pub mod passes;
pub mod summary;
