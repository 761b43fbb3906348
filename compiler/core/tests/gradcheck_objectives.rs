//! Gradient checks of language 0.2 (language.md section 9): every function of objective
//! expressions (each loss called as a function, `sum mean max min dot pick log exp abs square
//! sqrt softplus sigmoid log_sigmoid clip`, `/`, unary minus, numbers as operands), shared
//! weights and sampled inputs, against central finite differences in f64. Models come from
//! `.fm` source through the checker, so these also test the checker-to-IR path.

mod support;

use fm_compiler::check::check_source;
use fm_compiler::graph::{DType, ModelGraph};
use fm_compiler::interp::{self, Context, Value};
use fm_compiler::ir::Function;
use fm_compiler::lower::{self, Mode};
use fm_runtime::config::TrainSpec;
use ndarray::{ArrayD, IxDyn};
use std::path::Path;
use support::Lcg;

/// The checked model and its `train` section, whose `loss:` is an expression.
fn model(src: &str) -> (ModelGraph, TrainSpec) {
    let checked = check_source(src, Path::new("gradcheck.fm"));
    assert!(!checked.has_errors(), "{src}\n{:?}", checked.diagnostics);
    let spec = checked.trains[0].clone();
    assert!(
        spec.objective.is_some(),
        "{src}: the loss is not an expression"
    );
    (checked.models[0].clone(), spec)
}

/// `mean over the batch of the objective`, and the same with the gradient of every trainable
/// parameter.
fn functions(graph: &ModelGraph, spec: &TrainSpec) -> (Function, Function) {
    let objective = spec.objective.expect("a loss expression");
    let build = |with_grads: bool| {
        support::loss_function(graph, with_grads, |b| {
            let mut inputs = lower::input_args(b, graph, None);
            lower::draw_samples(b, graph, &mut inputs, 0);
            let targets = lower::target_args(b, graph, spec);
            let params = lower::param_args(b, graph);
            let fwd = lower::forward_with(
                b,
                graph,
                &inputs,
                &targets,
                &params,
                Mode::Train,
                &[objective],
            );
            (b.mean_all(fwd.values[objective].unwrap()), params)
        })
    };
    (build(false), build(true))
}

/// Data for the model's read inputs and targets: f32 values in [-1, 1] (in [0.05, 0.95] for
/// targets named `p*`, probabilities), i32 values below `classes`.
fn data(graph: &ModelGraph, batch: usize, classes: i32, rng: &mut Lcg) -> Vec<Value<f64>> {
    let mut out = Vec::new();
    let read: Vec<_> = graph
        .inputs
        .iter()
        .enumerate()
        .filter(|(k, _)| !graph.sampled.iter().any(|(j, _)| j == k))
        .map(|(_, i)| i)
        .chain(&graph.targets)
        .collect();
    for i in read {
        let mut shape = vec![batch];
        shape.extend(&i.shape);
        out.push(match i.dtype {
            DType::I32 => Value::I(ArrayD::from_shape_fn(IxDyn(&shape), |_| {
                ((rng.next() + 1.0) * 0.5 * classes as f64).min(classes as f64 - 1.0) as i32
            })),
            DType::F32 if i.name.starts_with('p') => {
                Value::F(ArrayD::from_shape_fn(IxDyn(&shape), |_| {
                    0.5 + 0.45 * rng.next()
                }))
            }
            DType::F32 => Value::F(ArrayD::from_shape_fn(IxDyn(&shape), |_| rng.next())),
        });
    }
    out
}

/// Autodiff against central differences on every trainable parameter; returns the analytic
/// gradients.
fn check(src: &str) -> Vec<ArrayD<f64>> {
    let (graph, spec) = model(src);
    let (loss_fn, grad_fn) = functions(&graph, &spec);
    let mut rng = Lcg(42);
    let batch = 3;
    let inputs = data(&graph, batch, 4, &mut rng);
    let params: Vec<ArrayD<f64>> = graph
        .params
        .iter()
        .map(|p| ArrayD::from_shape_fn(IxDyn(&p.shape), |_| rng.next() * 0.5))
        .collect();
    let ctx = Context {
        sample_offset: 0,
        batch,
        seed: 3,
        step: 1,
    };
    let args = |params: &[ArrayD<f64>]| -> Vec<Value<f64>> {
        let mut a = inputs.clone();
        a.extend(params.iter().map(|p| Value::F(p.clone())));
        a
    };
    let out = interp::run(&grad_fn, &args(&params), ctx).unwrap();
    let loss0 = out[0].scalar();
    assert!(loss0.is_finite(), "{src}: loss {loss0}");
    support::check_against_finite_differences(
        &graph,
        &loss_fn,
        ctx,
        &params,
        args,
        &out,
        10,
        &format!("{src}\n"),
    )
}

/// A model with a 4-feature input `x`, a Dense(3) output `y`, targets, and `loss: LOSS`.
fn with_loss(loss: &str) -> String {
    format!(
        "version 0.2
model m {{
    input x: f32[4]
    target t: f32[3]
    target p: f32[3]
    target c: i32[]
    target s: f32[]
    let y = x -> Dense(3, name: \"d\")
    let q = y -> sigmoid
    let w = y -> softmax
    output out = y
}}
train m {{
    loss: {loss}
    optimizer: SGD(lr: 0.1)
}}
"
    )
}

#[test]
fn every_loss_called_as_a_function() {
    for loss in [
        "mse(y, t)",
        "mse(y, s)",
        "mae(y, t)",
        "huber(y, t, delta: 0.3)",
        "binary_crossentropy(q, p)",
        "binary_crossentropy(q, 1) + binary_crossentropy(q, 0)",
        "binary_crossentropy(y, p, from_logits: true)",
        "categorical_crossentropy(w, p)",
        "sparse_categorical_crossentropy(w, c)",
        "sparse_categorical_crossentropy(y, c, from_logits: true)",
        "mse(pick(y, c), s)",
        "huber(pick(y, c), s + 0.9 * (1 - s) * max(y))",
    ] {
        check(&with_loss(loss));
    }
}

#[test]
fn reductions_dot_pick_and_elementwise_functions() {
    for loss in [
        "sum(square(y - t))",
        "mean(y * t, axis: -1)",
        "max(y) - min(y)",
        "dot(y, t)",
        "pick(y, c) * s",
        "mean(log(q)) + sum(exp(y))",
        "mean(abs(y - t)) + mean(sqrt(square(y) + 1))",
        "mean(softplus(y)) - mean(log_sigmoid(y))",
        "mean(sigmoid(y) * t)",
        "mean(clip(y, -0.1, 0.2) * t)",
        "-mean(y / (square(t) + 2)) + 3 * mean(2 - y)",
    ] {
        check(&with_loss(loss));
    }
}

#[test]
fn stop_gradient_blocks_its_operand() {
    // d/dy mean(y * stop_gradient(y)) is y / n, half of d/dy mean(y * y).
    let (graph, obj) = model(&with_loss("mean(y * stop_gradient(y))"));
    let (graph2, obj2) = model(&with_loss("mean(y * y)"));
    let run = |g: &ModelGraph, o: &TrainSpec| {
        let (_, f) = functions(g, o);
        let mut rng = Lcg(1);
        let mut args = data(g, 2, 4, &mut rng);
        args.extend(
            g.params
                .iter()
                .map(|p| Value::F(ArrayD::from_shape_fn(IxDyn(&p.shape), |_| rng.next()))),
        );
        let ctx = Context {
            sample_offset: 0,
            batch: 2,
            seed: 0,
            step: 0,
        };
        interp::run(&f, &args, ctx).unwrap()[1].float().clone()
    };
    let half = run(&graph, &obj);
    let full = run(&graph2, &obj2);
    for (a, b) in half.iter().zip(&full) {
        assert!((2.0 * a - b).abs() < 1e-9, "{a} vs {b}");
    }
}

#[test]
fn shared_weights_sum_the_gradients_of_both_calls() {
    check(
        "version 0.2
model m {
    input a: f32[4]
    input b: f32[4]
    target t: f32[2]
    let pa = a -> Dense(5, tanh, name: \"enc\") -> Dense(2)
    let pb = enc(b)
    output o = pa
}
train m {
    loss: mse(pa, t) + mean(square(pb))
    optimizer: SGD(lr: 0.1)
}
",
    );
}

#[test]
fn reparameterised_sampling_differentiates_through_the_draw() {
    check(
        "version 0.2
model m {
    input x: f32[4]
    input eps: f32[2] ~ normal(0, 1)
    let mu = x -> Dense(2, name: \"mu\")
    let logvar = x -> Dense(2, name: \"lv\")
    let z = mu + exp(0.5 * logvar) * eps
    output recon = z -> Dense(4, sigmoid)
}
train m {
    loss: mean(square(recon - x)) - 0.5 * sum(1 + logvar - square(mu) - exp(logvar))
    optimizer: SGD(lr: 0.1)
}
",
    );
}

#[test]
fn skip_gram_with_categorical_negatives() {
    // word2vec's objective: a shared embedding table read by the context and by the drawn
    // negatives; the gradient reaches both rows through the gathers.
    check(
        "version 0.2
model m {
    input center: i32[]
    input context: i32[]
    input negatives: i32[3] ~ categorical([4, 1, 0, 2], power: 0.75)
    let w = center -> Embedding(4, 3, name: \"words\")
    let c = context -> Embedding(4, 3, name: \"contexts\")
    let n = contexts(negatives)
    output s = dot(w, c)
}
train m {
    loss: -log_sigmoid(dot(w, c)) - sum(log_sigmoid(-dot(n, w)))
    optimizer: SGD(lr: 0.1)
}
",
    );
}
