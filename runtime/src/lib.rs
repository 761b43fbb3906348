//! The fm runtime: what compiled models link against and nothing the compiler needs.
//!
//! - [`data`]: reading IDX/gzip/`.npy`/`.npz`/CSV, fitting samples to the model, the `data`
//!   section's transforms and splits, batching;
//! - [`train`]: the training loop over a [`train::Backend`], schedules, early stopping,
//!   checkpoints, resume, the run directory, progress, `evaluate`/`predict` helpers, `plot`;
//! - [`metrics`]: streaming Keras metrics; [`weights`]: safetensors files;
//! - [`fsutil`]: atomic writes; [`error`]: [`RuntimeError`] and its E04xx codes;
//! - [`image`]: image grids of image-shaped outputs (PNG, SVG).

pub mod config;
pub mod data;
pub mod error;
pub mod fsutil;
pub mod image;
pub mod kernels;
pub mod metrics;
pub mod tensor;
pub mod train;
pub mod weights;

pub use error::{ErrorKind, RuntimeError};
