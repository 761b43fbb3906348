//! fm for Rust programs: everything a crate needs to use an fm model.
//!
//! - the runtime API (re-exported from `fm-runtime`): [`tensor::Tensor`], [`data`], [`train`],
//!   [`metrics`], [`weights`], [`RuntimeError`];
//! - [`ndarray`], the array type tensors are made of, so users need no version of their own;
//! - [`io`]: `.npy` files as tensors;
//! - `model!` (from `fm-macros`), which will compile a `.fm` model to Rust at build time; the
//!   macro crate is still empty, so nothing is re-exported from it yet.

pub use fm_runtime::*;
pub use ndarray;

pub use fm_runtime::tensor::{DType, Tensor};

pub mod io;
