//! `fmc`, the fm compiler driver: the command line ([`cli`]) over the core compiler
//! (`fm_compiler`), the JIT (`fm_jit`) and the runtime (`fm_runtime`).

pub mod cli;
pub mod distributed;
