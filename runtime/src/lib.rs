//! The fm runtime: what compiled models link against and nothing the compiler needs.

pub mod config;
pub mod kernels;
pub mod tensor;
