//! Differential tests (issue 5): every example and `MODELS` randomly generated well-typed models
//! run on the reference interpreter and on the Cranelift JIT (`candidate_backend`), with the same synthetic batch;
//! the outputs, losses, and every parameter and optimizer slot after 3 training steps must agree
//! within `CANDIDATE_TOLERANCE` (1e-4 relative, plus an allowance for f32 rounding measured on
//! each element by an f64 run of the interpreter; see `Tolerance`).
//!
//! Each model also runs on the interpreter twice, which must be bit-identical (determinism), and
//! must pass `fmc check` without a single diagnostic (the generator writes only valid models).
//! Two more tests pin the tolerance: a candidate off by 1e-3 relative in one weight fails, and
//! the interpreter fed the batch in reverse order (every batch sum rounded differently) passes.
//!
//! `FM_DIFFERENTIAL_DUMP=DIR` writes every generated model to `DIR/seed_N.fm`, to run one with
//! `fmc` or to minimise a failure by hand. `FM_DIFFERENTIAL_MODELS=N` runs seeds `0..N` instead
//! of `0..MODELS` in `random_models_check_and_agree`, to hunt for bugs (`KNOWN_BUGS` lists
//! seeds below `MODELS` only).

use fm_compiler::exec::Session;
use fm_compiler::graph::Op;
use fm_runtime::train::Backend;
use fm_tests::differential::{
    check_invariants, compare, compare_traces, f64_interpreter, interpreter, prepare, run,
    Prepared, Tolerance,
};
use fm_tests::random_model::{generate, GeneratedModel};
use fm_tests::reference_backends::ReversedBatch;
use fm_tests::{files, root};
use std::collections::BTreeSet;
use std::path::Path;

/// How many random models (seeds `0..MODELS`).
const MODELS: u64 = 300;

/// The candidate backend: the Cranelift JIT. A function the JIT refuses would run on the
/// interpreter; here that is a failure, so every generated model really exercises the JIT.
fn candidate_backend(session: Session) -> Result<Box<dyn Backend>, String> {
    let (jit, report) = fm_jit::session::into_jit(session);
    if let Some((f, why)) = report.refused.first() {
        return Err(format!("the JIT refused `{f}`: {why}"));
    }
    Ok(Box::new(jit))
}

/// How close the candidate must be: issue 5's 1e-4 relative (with the floors that
/// `Tolerance::BACKEND` documents).
const CANDIDATE_TOLERANCE: Tolerance = Tolerance::BACKEND;

/// Generated models that expose a known bug in fm, with the error each must still produce. The
/// test fails when one of them stops failing (the bug is fixed: delete its entry) or fails
/// differently, so nothing here is skipped silently.
///
const KNOWN_BUGS: &[(u64, &str)] = &[
    // None known. Fixed so far: Conv with `filters: 1` panicked in the interpreter's input
    // gradient (a column-major `dot` result); MultiHeadAttention over rank-3 inputs failed to
    // lower (it now attends over the flattened positions, as Keras does).
];

/// Runs one prepared model: the interpreter twice (bit-identical) and its invariants
/// (`check_invariants`), then the candidate against the first interpreter run.
fn differential(p: &Prepared) -> Result<(), String> {
    let reference = compare(p, &interpreter, &interpreter, Tolerance::EXACT)
        .map_err(|e| format!("interpreter against itself: {e}"))?;
    check_invariants(p, &reference)?;
    let candidate = run(p, &candidate_backend)?;
    let exact = run(p, &f64_interpreter)?;
    compare_traces(
        &p.label,
        &reference,
        &candidate,
        Some(&exact),
        CANDIDATE_TOLERANCE,
    )
    .map_err(|e| format!("candidate against the interpreter: {e}"))
}

fn generated(seed: u64) -> GeneratedModel {
    let m = generate(seed);
    if let Some(dir) = std::env::var_os("FM_DIFFERENTIAL_DUMP") {
        let dir = Path::new(&dir);
        std::fs::create_dir_all(dir).ok();
        std::fs::write(dir.join(format!("seed_{seed}.fm")), &m.source).ok();
    }
    m
}

fn random_case(seed: u64) -> Result<(), String> {
    let m = generated(seed);
    let label = format!("random model seed {seed}");
    let p = prepare(&label, &m.source, Path::new("random.fm"), m.batch, seed)?;
    differential(&p).map_err(|e| format!("{e}\n--- source of seed {seed}\n{}", m.source))
}

#[test]
fn random_models_check_and_agree() {
    let models = std::env::var("FM_DIFFERENTIAL_MODELS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(MODELS);
    let started = std::time::Instant::now();
    let mut failures = Vec::new();
    let mut features = BTreeSet::new();
    let mut losses = BTreeSet::new();
    let mut optimizers = BTreeSet::new();
    let mut batches = BTreeSet::new();
    for seed in 0..models {
        let m = generate(seed);
        features.extend(m.features.iter().cloned());
        losses.extend(m.losses.iter().cloned());
        optimizers.insert(m.optimizer.clone());
        batches.insert(m.batch);
        let result = random_case(seed);
        match (KNOWN_BUGS.iter().find(|k| k.0 == seed), result) {
            (None, Ok(())) => {}
            (None, Err(e)) => failures.push(e),
            (Some((_, expected)), Err(e)) if e.contains(expected) => {}
            (Some((_, expected)), Err(e)) => failures.push(format!(
                "seed {seed} is listed as failing with `{expected}` but fails otherwise:\n{e}"
            )),
            (Some((_, expected)), Ok(())) => failures.push(format!(
                "seed {seed} is listed in KNOWN_BUGS (`{expected}`) but now passes: delete its entry"
            )),
        }
    }
    println!(
        "differential: {models} random models ({} known-bug exclusions) in {:.1} s; batches {batches:?}\n  \
         losses: {losses:?}\n  optimizers: {optimizers:?}\n  features: {features:?}",
        KNOWN_BUGS.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {models} random models fail:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// The generator covers every layer, function, initialiser, loss, optimizer and schedule of
/// the checker's table: adding a built-in without teaching the generator fails here.
#[test]
fn random_models_cover_the_language() {
    use fm_compiler::check::table::{Kind, TABLE};
    let mut seen = BTreeSet::new();
    for seed in 0..MODELS {
        seen.extend(generate(seed).features);
    }
    let kinds = [
        Kind::Layer,
        Kind::Function,
        Kind::Initializer,
        Kind::Loss,
        Kind::Optimizer,
        Kind::Schedule,
    ];
    let missing: Vec<&str> = TABLE
        .iter()
        .filter(|s| kinds.contains(&s.kind) && !seen.contains(s.name))
        .map(|s| s.name)
        .collect();
    assert!(missing.is_empty(), "never generated: {missing:?}");
    for construct in [
        "residual +",
        "residual -",
        "residual *",
        "broadcast",
        "block",
        "repeat",
        "call form",
        "two inputs",
        "two outputs",
        "per-step output",
        "return_sequences",
        "causal",
        "attention (query, value)",
        "attention (query, value, key)",
        "padding same",
        "stride 2",
        "dilation 2",
        "l1",
        "l2",
        "weight_decay",
        "clip_norm",
        "global_clip_norm",
        "clip_value",
    ] {
        assert!(seen.contains(construct), "never generated: {construct}");
    }
}

#[test]
fn every_example_agrees() {
    let examples = files(&root().join("examples"), "fm");
    assert!(examples.len() >= 9);
    let mut failures = Vec::new();
    for path in &examples {
        let source = std::fs::read_to_string(path).unwrap();
        let label = format!("examples/{}", path.file_name().unwrap().to_string_lossy());
        // A small batch: the examples' own sizes (up to 128) make the interpreter slow, and
        // odd batch sizes are what the random models are for. The data sections name files the
        // test does not read: the batch is synthetic.
        let result = prepare(&label, &source, path, 2, 0).and_then(|p| differential(&p));
        if let Err(e) = result {
            failures.push(e);
        }
    }
    println!("differential: {} examples", examples.len());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A candidate that agrees bit for bit except one parameter, nudged by 1e-3 relative after
/// training: the comparison must catch it and name the model, the tensor and the element.
#[test]
fn a_wrong_candidate_is_caught_and_named() {
    struct Nudged(Session);
    impl Backend for Nudged {
        fn train_step(
            &mut self,
            inputs: &[fm_runtime::tensor::Tensor],
            targets: &[fm_runtime::tensor::Tensor],
            lr: f32,
        ) -> Result<fm_runtime::train::StepOutput, fm_runtime::RuntimeError> {
            Backend::train_step(&mut self.0, inputs, targets, lr)
        }
        fn evaluate(
            &mut self,
            inputs: &[fm_runtime::tensor::Tensor],
            targets: &[fm_runtime::tensor::Tensor],
        ) -> Result<fm_runtime::train::StepOutput, fm_runtime::RuntimeError> {
            Backend::evaluate(&mut self.0, inputs, targets)
        }
        fn predict(
            &mut self,
            inputs: &[fm_runtime::tensor::Tensor],
        ) -> Result<Vec<fm_runtime::tensor::Tensor>, fm_runtime::RuntimeError> {
            Backend::predict(&mut self.0, inputs)
        }
        fn state(&self) -> Vec<(String, fm_runtime::tensor::Tensor)> {
            let mut s = Backend::state(&self.0);
            if let fm_runtime::tensor::Tensor::F32(a) = &mut s[0].1 {
                let last = a.len() - 1;
                let v = &mut a.as_slice_mut().unwrap()[last];
                *v *= 1.001;
            }
            s
        }
        fn set_state(
            &mut self,
            state: &[(String, fm_runtime::tensor::Tensor)],
        ) -> Result<(), fm_runtime::RuntimeError> {
            Backend::set_state(&mut self.0, state)
        }
    }
    let source =
        "model m {\n    input x: f32[3]\n    output y = x -> Dense(2, relu) -> Dense(1)\n}\n\
                  train { loss: mse  optimizer: Adam(lr: 0.01) }\n";
    let p = prepare("nudged model", source, Path::new("m.fm"), 7, 1).unwrap();
    let nudged = |s: Session| -> Result<Box<dyn Backend>, String> { Ok(Box::new(Nudged(s))) };
    let err = compare(&p, &interpreter, &nudged, Tolerance::BACKEND).unwrap_err();
    assert!(
        err.starts_with("nudged model: 1 tensor(s) outside tolerance"),
        "{err}"
    );
    assert!(
        err.contains("tensor `dense.kernel` after 3 steps[2, 1]: candidate"),
        "{err}"
    );
    // The same run within tolerance passes, and the exact comparison sees the difference too.
    compare(&p, &interpreter, &interpreter, Tolerance::BACKEND).unwrap();
    let exact = compare(&p, &interpreter, &nudged, Tolerance::EXACT).unwrap_err();
    assert!(exact.contains("not bit-identical"), "{exact}");
}

/// A reference that produces NaN is reported as a bug in fm, naming the tensor.
#[test]
fn non_finite_reference_values_are_reported() {
    // 1e30 * 1e30 overflows f32 (a user error the checker allows): the harness must say where
    // the infinity is.
    let source =
        "model m {\n    input x: f32[2]\n    output y = x -> Rescale(1e30) -> Rescale(1e30)\n}\n\
                  train { loss: mse  optimizer: SGD }\n";
    let p = prepare("overflow", source, Path::new("m.fm"), 3, 0).unwrap();
    let err = compare(&p, &interpreter, &interpreter, Tolerance::EXACT).unwrap_err();
    assert!(
        err.starts_with("overflow: the reference produced a non-finite value: "),
        "{err}"
    );
}

/// Random models on which a correct backend that rounds differently lands just outside the
/// tolerance: training is ill-conditioned there (a parameter with a tiny gradient that Adam
/// normalises to a full step), so any change of summation order shows. Listed, not skipped:
/// the calibration test below requires them to fail and everything else to pass.
/// (None among seeds `0..MODELS` now. An earlier generator made one: a `Dense(1, elu)` bias
/// whose unit BatchNorm standardised over a 5-word embedding; its gradient was almost zero and
/// the reversed batch landed at 1.3x the allowance after 3 Adam steps.)
const ILL_CONDITIONED: &[u64] = &[];

/// Calibration: the interpreter with the batch reversed (every sum over the batch in another
/// order, the same math) must pass `CANDIDATE_TOLERANCE` against the interpreter, so the
/// tolerance admits a correct backend; together with `a_wrong_candidate_is_caught_and_named`
/// (an error of 1e-3 relative in one element fails) this pins the tolerance from both sides.
/// Models with active dropout (whose masks depend on the sample's position) and batch 1
/// (nothing to reorder) are left out.
#[test]
fn a_backend_that_sums_in_another_order_agrees() {
    let reversed =
        |s: Session| -> Result<Box<dyn Backend>, String> { Ok(Box::new(ReversedBatch(s))) };
    let mut failures = Vec::new();
    let mut compared = 0;
    for seed in 0..MODELS {
        if KNOWN_BUGS.iter().any(|k| k.0 == seed) {
            continue;
        }
        let m = generate(seed);
        let label = format!("random model seed {seed}");
        let p = prepare(&label, &m.source, Path::new("random.fm"), m.batch, seed).unwrap();
        let dropout = p
            .graph
            .nodes
            .iter()
            .any(|n| matches!(n.op, Op::Dropout { rate } if rate > 0.0));
        if dropout || m.batch == 1 {
            continue;
        }
        compared += 1;
        let result = compare(&p, &interpreter, &reversed, CANDIDATE_TOLERANCE);
        match (result, ILL_CONDITIONED.contains(&seed)) {
            (Ok(_), false) | (Err(_), true) => {}
            (Err(e), false) => failures.push(e),
            (Ok(_), true) => failures.push(format!(
                "seed {seed} is listed in ILL_CONDITIONED but agrees: delete its entry"
            )),
        }
    }
    println!("calibration: {compared} models compared with the batch reversed");
    assert!(compared >= 150, "only {compared} models without dropout");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The invariant checks have teeth: a trace whose batched prediction differs from the sample
/// predicted alone, or whose training-mode forward differs from inference, is caught.
#[test]
fn broken_invariants_are_caught() {
    let source = "model m {\n    input x: f32[3]\n    output y = x -> Dense(2, tanh)\n}\n\
                  train { loss: mse  optimizer: SGD }\n";
    let p = prepare("invariants", source, Path::new("m.fm"), 3, 2).unwrap();
    let good = run(&p, &interpreter).unwrap();
    check_invariants(&p, &good).unwrap();
    let mut t = good.clone();
    t.0[0].1[[2, 1]] += 1e-3;
    let err = check_invariants(&p, &t).unwrap_err();
    assert!(
        err.starts_with("invariants: sample 2 predicted alone: "),
        "{err}"
    );
    let mut t = good;
    let k =
        t.0.iter()
            .position(|(n, _)| n == "train step 1 output `y`")
            .unwrap();
    t.0[k].1[[0, 0]] *= 1.01;
    let err = check_invariants(&p, &t).unwrap_err();
    assert!(
        err.starts_with("invariants: training-mode forward against inference: "),
        "{err}"
    );
}
