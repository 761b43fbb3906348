//! Code generators: Rust source for `model!` and `fmc compile --emit rust`.

pub mod rust;
