//! The fm runtime: what compiled models link against and nothing the compiler needs.

pub mod config;
pub mod data;
pub mod error;
pub mod fsutil;
pub mod kernels;
pub mod metrics;
pub mod tensor;
pub mod train;
pub mod weights;

pub use error::{ErrorKind, RuntimeError};
