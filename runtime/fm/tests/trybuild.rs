//! Compile-time behaviour of `model!` (trybuild): every `.fm` error and every misuse of the
//! generated API is a compile error with the message pinned in `ui/*.stderr`; `ui/api.rs` and
//! `ui/api_0_2.rs` (language 0.2: sampled inputs, training steps) build and run the whole
//! generated API. Regenerate the `.stderr` files after a deliberate
//! change with `TRYBUILD=overwrite cargo test --release -p fm --test trybuild`.
//!
//! trybuild builds the cases in a crate of its own under `target/tests/trybuild` (a debug build
//! of `fm` and its dependencies, once per target directory).

#[test]
fn ui() {
    // No debug info in trybuild's build of fm and its dependencies: a third of the time and
    // of the disk, and nothing here needs a debugger.
    std::env::set_var("CARGO_PROFILE_DEV_DEBUG", "false");
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/missing_file.rs");
    t.compile_fail("tests/ui/syntax_error.rs");
    t.compile_fail("tests/ui/shape_error.rs");
    t.compile_fail("tests/ui/unknown_model.rs");
    t.compile_fail("tests/ui/several_models.rs");
    t.compile_fail("tests/ui/inline_error.rs");
    t.compile_fail("tests/ui/wrong_types.rs");
    t.compile_fail("tests/ui/sampled_predict.rs");
    t.pass("tests/ui/api.rs");
    t.pass("tests/ui/api_0_2.rs");
}
