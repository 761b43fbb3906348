//! Interchange with other frameworks: `fmc export` writes a trained fm model as an ONNX
//! inference graph ([`export`]); `fmc import` turns an ONNX or Keras 3 model into a formatted `.fm` file
//! and safetensors weights in fm's layout ([`import`]). The ONNX messages are in [`onnx`].
//!
//! This crate depends on the core compiler (the checked layer graph) and the runtime (tensors,
//! weights files), never on the JIT or the command line.

pub mod error;
pub mod export;
pub mod import;
pub mod onnx;

pub use error::InteropError;
