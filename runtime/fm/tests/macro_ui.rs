//! `model!` at compile time (trybuild): each broken `.fm` file is a compile error with the
//! rendered diagnostic, pinned by the `.stderr` beside it (`TRYBUILD=overwrite` rewrites them);
//! `pass.rs` uses the whole generated API and runs.

#[test]
fn model_macro() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/missing_file.rs");
    t.compile_fail("tests/ui/syntax_error.rs");
    t.compile_fail("tests/ui/shape_error.rs");
    t.compile_fail("tests/ui/unknown_model.rs");
    t.compile_fail("tests/ui/inline_error.rs");
    t.pass("tests/ui/pass.rs");
}
