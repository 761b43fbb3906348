//! Interchange with other frameworks: `fmc export` writes a trained fm model as an ONNX
//! inference graph ([`export`]); `fmc import` turns an ONNX or Keras 3 model into a formatted `.fm` file
//! and safetensors weights in fm's layout ([`import`]). The ONNX messages are in [`onnx`].
//!
//! This crate depends on the core compiler (the checked layer graph) and the runtime (tensors,
//! weights files), never on the JIT or the command line.
//!
//! Build cost (measured 2026-12-06, `cargo build --release -p fm-interop`, 2-core machine): from
//! an empty target directory 185 CPU-seconds (171.7 user + 13.6 system; 431 MB peak memory) for
//! the 90 crates of its dependency tree. Beyond what fm-compiler and fm-runtime already need it
//! brings seven crates: `prost` and `prost-derive` (with `bytes`, `anyhow`, `itertools`) for the
//! ONNX messages and `hdf5-pure` (with `byteorder`) for Keras weights. Rebuilding those and
//! this crate on top of a built compiler and runtime took 39.6 CPU-seconds (37.2 user + 2.4
//! system), of which by cargo's `--timings` hdf5-pure was 43%, this crate 32%, prost and its
//! helpers 12%.

pub mod error;
pub mod export;
pub mod import;
pub mod onnx;

pub use error::InteropError;
