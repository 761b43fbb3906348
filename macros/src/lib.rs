//! `model!`: compiles a `.fm` model into Rust at build time (not implemented yet).
