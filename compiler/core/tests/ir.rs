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

/// `x @ w -> tanh -> * 2 -> exp`, with a result on the product.
fn fusable() -> Function {
    let mut b = Builder::new("g");
    let x = b.arg("x", ArgKind::Input, batched(&[3]), DType::F32);
    let w = b.arg("w", ArgKind::Param(0), fixed(&[3, 2]), DType::F32);
    let y = b.matmul(x, w, false, false);
    let t = b.unary(UnaryOp::Tanh, y);
    let two = b.constant(2.0);
    let two = b.broadcast_to(two, &batched(&[2]));
    let m = b.binary(BinaryOp::Mul, t, two);
    let e = b.unary(UnaryOp::Exp, m);
    b.result("out", ResultKind::Output(0), e);
    b.result("product", ResultKind::Output(1), y);
    b.finish()
}

fn fused(f: &Function) -> Function {
    fm_compiler::passes::Pipeline::named(&["fuse"])
        .unwrap()
        .run(f.clone())
        .unwrap()
        .0
}

#[test]
fn fusion_plans_and_prints_kernels() {
    let f = fused(&fusable());
    let text = print::print_function(&f);
    let plan = &text[text.find("kernels {").unwrap()..];
    assert_eq!(
        plan,
        "kernels {\n    k0 = matmul %2 m=N k=3 n=2\n    k1 = const %4\n    \
         k2 = elementwise %3 %7 %8 ops=[tanh, mul, exp] len=N*2\n}\n",
        "{text}"
    );
}

#[test]
fn verifier_rejects_bad_kernel_plans() {
    let good = fused(&fusable());
    let plan = |f: &mut Function| f.kernels.as_mut().unwrap().kernels.clone();
    let check = |kernels: Vec<kernels::PlannedKernel>, expect: &str| {
        let mut f = good.clone();
        f.kernels.as_mut().unwrap().kernels = kernels;
        let e = verify::verify(&f).unwrap_err();
        assert!(e.contains(expect), "expected `{expect}` in: {e}");
    };
    let mut f = good.clone();
    let k = plan(&mut f);
    // An instruction left out.
    check(k[1..].to_vec(), "%2 = matmul is in no kernel");
    // Kernels out of order.
    check(
        vec![k[1].clone(), k[0].clone(), k[2].clone()],
        "out of instruction order",
    );
    // A matmul fused into an elementwise loop.
    let mut merged = k.clone();
    merged[2].members.insert(0, 2);
    merged.remove(0);
    check(merged, "fuses %2 = matmul, which is not elementwise");
    // A fused (non-root) value read outside its kernel.
    let split = vec![
        k[0].clone(),
        k[1].clone(),
        kernels::PlannedKernel { members: vec![7] },
        kernels::PlannedKernel {
            members: vec![3, 8],
        },
    ];
    check(
        split,
        "%3 is fused into kernel k3 but %7 outside it reads it",
    );
    // A broadcast view (the constant's, read by the multiply) computed in a loop.
    let mut with_view = k.clone();
    with_view[2].members.insert(1, 6);
    check(
        with_view,
        "%6 = broadcast is in kernel k2 but has no code of its own",
    );
    // A result fused away.
    let mut f = fusable();
    f.results[1].value = 3;
    let mut f = fused(&f);
    f.results[1].value = 7;
    f.kernels.as_mut().unwrap().kernels = k.clone();
    assert!(verify::verify(&f)
        .unwrap_err()
        .contains("result %7 is fused into kernel k2 and never written"));
    // An argument has no code.
    let mut with_arg = k.clone();
    with_arg.insert(0, kernels::PlannedKernel { members: vec![0] });
    check(
        with_arg,
        "%0 = arg is in kernel k0 but has no code of its own",
    );
}

#[test]
fn parser_reads_the_printed_form_back() {
    let f = fused(&fusable());
    let text = print::print_function(&f);
    let back = parse::parse_function(&text).unwrap();
    assert_eq!(
        back.kernels, None,
        "the kernel plan is the fuse pass's to choose"
    );
    assert_eq!(print::print_function(&fused(&back)), text);
}

#[test]
fn parser_errors_name_line_and_column() {
    let err = |text: &str| parse::parse_function(text).unwrap_err().to_string();
    let head = "fn f(\n    %0: f32[N, 3] input \"x\",\n) {\n";
    assert_eq!(
        err(&format!(
            "{head}    %1 = frobnicate %0 : f32[N, 3]\n    return\n}}\n"
        )),
        "4:10: unknown op `frobnicate`"
    );
    assert_eq!(
        err(&format!(
            "{head}    %1 = exp %7 : f32[N, 3]\n    return\n}}\n"
        )),
        "4:14: %7 is not defined before this use"
    );
    assert_eq!(
        err(&format!("{head}    %1 = exp %0 : f32[N, 4]\n    return\n}}\n")),
        "6:1: the function does not verify: %1 = exp is recorded as f32[N, 4] but computes f32[N, 3]"
    );
    assert_eq!(
        err(&format!("{head}    %1 = exp %0 : q8[N]\n    return\n}}\n")),
        "4:19: unknown element type `q8`"
    );
    assert_eq!(
        err(&format!("{head}    %1 = reduce_sum %0 axis=1 : f32[N]\n")),
        "4:24: expected `axes`"
    );
    assert_eq!(
        err(head),
        "3:1: unexpected end of input: expected an instruction or `return`"
    );
}
