//! Differential test of the JIT on every example: predictions, losses and the parameters and
//! optimizer state after 3 training steps match the interpreter within 1e-4 relative.
//! Batches are small and synthetic (odd sizes on purpose) so the whole file runs in seconds.

mod jit_common;

use fm_compiler::exec::Session;
use jit_common::*;

/// Relative tolerance of the issue, and the magnitude below which differences count absolutely.
const TOL: f32 = 1e-4;
const FLOOR: f32 = 1e-2;

fn check_example(name: &str, batch: usize) {
    let (graph, spec) = load_example(name);
    let mut interp = Session::new(graph.clone(), spec.clone()).unwrap();
    let (mut compiled, report) = fm_jit::session::new_session(graph, spec).unwrap();
    assert!(report.refused.is_empty(), "{name}: {:?}", report.refused);
    for (st, cached) in &report.compiled {
        eprintln!(
            "{name}: `{}` {} kernels, {} CLIF instructions, {:.1} ms{}",
            st.function,
            st.kernels,
            st.clif_insts,
            st.compile_ms,
            if *cached { " (cached)" } else { "" }
        );
    }
    let (inputs, targets) = synthetic_batch(&interp, batch, 7);

    let want = interp.predict(&inputs).unwrap();
    let got = compiled.predict(&inputs).unwrap();
    let mut worst = 0f32;
    for (g, w) in got.iter().zip(&want) {
        worst = worst.max(max_rel_diff(&g.to_f32(), &w.to_f32(), FLOOR));
    }
    assert!(worst <= TOL, "{name}: predict differs by {worst:e}");

    let we = interp.evaluate(&inputs, &targets).unwrap();
    let ge = compiled.evaluate(&inputs, &targets).unwrap();
    let d = ((ge.loss - we.loss).abs() / we.loss.abs().max(FLOOR as f64)) as f32;
    assert!(d <= TOL, "{name}: eval loss {} vs {}", ge.loss, we.loss);

    // The example's own learning rate: a larger one lets Adam turn rounding noise in
    // near-zero gradients into full-size steps.
    let lr = spec_lr(&interp);
    for step in 0..3 {
        let w = interp.train_step(&inputs, &targets, lr).unwrap();
        let g = compiled.train_step(&inputs, &targets, lr).unwrap();
        let d = ((g.loss - w.loss).abs() / w.loss.abs().max(FLOOR as f64)) as f32;
        assert!(
            d <= TOL,
            "{name} step {step}: loss {} vs {}",
            g.loss,
            w.loss
        );
        worst = worst.max(d);
    }
    for ((n, g), (_, w)) in compiled.state().iter().zip(interp.state()) {
        let d = max_rel_diff(&g.to_f32(), &w.to_f32(), FLOOR);
        assert!(d <= TOL, "{name}: `{n}` after 3 steps differs by {d:e}");
        worst = worst.max(d);
    }
    eprintln!("{name}: batch {batch}, max relative difference {worst:e}");
    optimized_train_step_matches(&interp, &inputs, &targets, name);
}

/// The JIT also runs the train step as the optimization passes leave it (fused forms,
/// folded constants) the way the interpreter does.
fn optimized_train_step_matches(
    s: &Session,
    inputs: &[fm_runtime::tensor::Tensor],
    targets: &[fm_runtime::tensor::Tensor],
    name: &str,
) {
    use fm_compiler::interp::{self, Context, Value};
    use fm_compiler::ir::ArgKind;
    use fm_runtime::tensor::Tensor;
    let f = fm_compiler::passes::optimize(&s.train_fn).unwrap();
    let value = |t: &Tensor| match t {
        Tensor::F32(a) => Value::F(a.clone()),
        Tensor::I32(a) => Value::I(a.clone()),
    };
    let (mut i, mut t, mut k) = (0, 0, 0);
    let args: Vec<Value<f32>> = f
        .args
        .iter()
        .map(|a| match &a.kind {
            ArgKind::Input => {
                i += 1;
                value(&inputs[i - 1])
            }
            ArgKind::Target => {
                t += 1;
                let mut v = value(&targets[t - 1]);
                // Labels `[N]` for an output `[N, 1]`: the session's binding reshapes them.
                let shape = fm_compiler::ir::eval_shape(&a.shape, inputs[0].len());
                if let Value::F(x) = &v {
                    v = Value::F(x.clone().into_shape_with_order(shape).unwrap());
                } else if let Value::I(x) = &v {
                    v = Value::I(x.clone().into_shape_with_order(shape).unwrap());
                }
                v
            }
            ArgKind::Param(p) => Value::F(s.params[*p].clone()),
            ArgKind::OptSlot { .. } => {
                k += 1;
                Value::F(s.slots[k - 1].2.clone())
            }
            ArgKind::LearningRate => Value::F(ndarray::arr0(1e-3f32).into_dyn()),
            ArgKind::Step => Value::F(ndarray::arr0(4f32).into_dyn()),
            ArgKind::Grad(_) => unreachable!("train_step takes no gradient"),
        })
        .collect();
    let ctx = Context {
        batch: inputs[0].len(),
        seed: 5,
        step: 3,
        sample_offset: 0,
    };
    let want = interp::run(&f, &args, ctx).unwrap();
    let got = fm_jit::run(&f, &args, ctx).unwrap();
    for ((r, g), w) in f.results.iter().zip(&got).zip(&want) {
        let d = max_rel_diff(&g.clone().into_float(), &w.clone().into_float(), FLOOR);
        assert!(
            d <= TOL,
            "{name}: optimized train step `{}` differs by {d:e}",
            r.name
        );
    }
}

fn spec_lr(s: &Session) -> f32 {
    s.spec.optimizer.lr as f32
}

#[test]
fn linear_regression() {
    check_example("linear_regression.fm", 7);
}

#[test]
fn binary_classifier() {
    check_example("binary_classifier.fm", 33);
}

#[test]
fn digits_mlp() {
    check_example("digits_mlp.fm", 33);
}

#[test]
fn digits_cnn() {
    check_example("digits_cnn.fm", 7);
}

#[test]
fn mnist_mlp() {
    check_example("mnist_mlp.fm", 1);
}

#[test]
fn mnist_cnn() {
    check_example("mnist_cnn.fm", 3);
}

#[test]
fn lstm_sequence() {
    check_example("lstm_sequence.fm", 3);
}

#[test]
fn resnet_tiny() {
    check_example("resnet_tiny.fm", 2);
}

#[test]
fn text_transformer() {
    check_example("text_transformer.fm", 3);
}

/// Not a test: `FM_EXAMPLE=digits_cnn.fm cargo test --release --test jit_examples
/// debug_divergence -- --ignored --nocapture` names the first instruction of an example's
/// train step (or `FM_FUNCTION=predict`) where the JIT and the interpreter disagree by more
/// than `FM_TOL` (default 1e-5). `FM_EXAMPLE` may also be a path to any `.fm` file.
#[test]
#[ignore]
fn debug_divergence() {
    use fm_compiler::interp::{Context, Value};
    use fm_compiler::ir::ArgKind;
    use fm_runtime::tensor::Tensor;
    let name = std::env::var("FM_EXAMPLE").unwrap_or("text_transformer.fm".into());
    let (graph, spec) = if name.contains('/') {
        let (_, checked) = fm_compiler::check::check_file(std::path::Path::new(&name)).unwrap();
        (checked.models[0].clone(), checked.trains[0].clone())
    } else {
        load_example(&name)
    };
    let batch: usize = std::env::var("FM_BATCH").map_or(3, |b| b.parse().unwrap());
    let s = Session::new(graph, spec).unwrap();
    let (inputs, targets) = synthetic_batch(&s, batch, 7);
    let f = if std::env::var("FM_FUNCTION").as_deref() == Ok("predict") {
        &s.predict_fn
    } else {
        &s.train_fn
    };
    let value = |t: &Tensor, shape: Vec<usize>| match t {
        Tensor::F32(x) => Value::F(x.clone().into_shape_with_order(shape).unwrap()),
        Tensor::I32(x) => Value::I(x.clone().into_shape_with_order(shape).unwrap()),
    };
    let (mut i, mut t, mut k) = (0, 0, 0);
    let args: Vec<Value<f32>> = f
        .args
        .iter()
        .map(|a| {
            let shape = fm_compiler::ir::eval_shape(&a.shape, batch);
            match &a.kind {
                ArgKind::Input => {
                    i += 1;
                    value(&inputs[i - 1], shape)
                }
                ArgKind::Target => {
                    t += 1;
                    value(&targets[t - 1], shape)
                }
                ArgKind::Param(p) => Value::F(s.params[*p].clone()),
                ArgKind::OptSlot { .. } => {
                    k += 1;
                    Value::F(s.slots[k - 1].2.clone())
                }
                ArgKind::LearningRate => Value::F(ndarray::arr0(1e-2f32).into_dyn()),
                ArgKind::Step => Value::F(ndarray::arr0(1f32).into_dyn()),
                ArgKind::Grad(_) => unreachable!("train_step takes no gradient"),
            }
        })
        .collect();
    let ctx = Context {
        batch,
        seed: 0,
        step: 0,
        sample_offset: 0,
    };
    let tol: f32 = std::env::var("FM_TOL").map_or(1e-5, |t| t.parse().unwrap());
    let d = first_divergence(f, &args, ctx, tol);
    eprintln!("{d:?}");
    if let Some((v, _, _)) = d {
        let text = fm_compiler::ir::print::print_function(f);
        for l in text.lines() {
            if l.contains(&format!("%{v} =")) {
                eprintln!("{l}");
            }
        }
    }
}
