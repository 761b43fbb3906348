//! The IR verifier rejects ill-formed functions with a message naming the instruction, and the
//! printer's form is stable.

use fm_compiler::ir::*;
use fm_runtime::tensor::DType;

fn small() -> Function {
    let mut b = Builder::new("f");
    let x = b.arg("x", ArgKind::Input, batched(&[3]), DType::F32);
    let w = b.arg("w", ArgKind::Param(0), fixed(&[3, 2]), DType::F32);
    let y = b.matmul(x, w, false, false);
    let r = b.unary(UnaryOp::Tanh, y);
    b.result("out", ResultKind::Output(0), r);
    b.finish()
}

#[test]
fn verifier_accepts_built_functions() {
    verify::verify(&small()).unwrap();
}

#[test]
fn verifier_rejects_wrong_recorded_shape() {
    let mut f = small();
    f.insts[2].shape = batched(&[5]);
    let e = verify::verify(&f).unwrap_err();
    assert!(
        e.contains("%2 = matmul") && e.contains("[N, 5]") && e.contains("[N, 2]"),
        "{e}"
    );
}

#[test]
fn verifier_rejects_use_before_definition() {
    let mut f = small();
    f.insts[2].args = vec![0, 3];
    let e = verify::verify(&f).unwrap_err();
    assert!(e.contains("%2 uses %3"), "{e}");
}

#[test]
fn verifier_rejects_ill_typed_ops() {
    let mut f = small();
    f.insts[2].args = vec![1, 0];
    let e = verify::verify(&f).unwrap_err();
    assert!(e.contains("matmul"), "{e}");
    let mut f = small();
    f.results[0].value = 99;
    assert!(verify::verify(&f).unwrap_err().contains("undefined %99"));
}

#[test]
fn printer_form() {
    let text = print::print_function(&small());
    assert_eq!(
        text,
        "fn f(\n    %0: f32[N, 3] input \"x\",\n    %1: f32[3, 2] param \"w\",\n) {\n    %2 = matmul %0, %1 : f32[N, 2]\n    %3 = tanh %2 : f32[N, 2]\n    return\n        \"out\" = %3\n}\n"
    );
}
