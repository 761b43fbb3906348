//! Test support for the gradient checks (`compiler/core/tests/gradcheck*.rs`, as `mod support`)
//! and the Keras reference test (`tests/tests/reference.rs`, through `#[path]`): a seeded
//! generator, a loss function with the gradients of its parameters, and the comparison of
//! autodiff gradients with central finite differences. Each test uses only part of it.
#![allow(dead_code)]

use fm_compiler::autodiff;
use fm_compiler::graph::ModelGraph;
use fm_compiler::interp::{self, Context, Value};
use fm_compiler::ir::{verify, Builder, Function, ResultKind, ValueId};
use ndarray::ArrayD;

/// A linear congruential generator of values in [-1, 1): reproducible test data.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
}

/// A verified function `check` whose first result is the loss `body` builds (from the argument
/// ids it declares: returns the loss and the parameters' arguments), followed, `with_grads`, by
/// the gradient of every trainable parameter, named after it.
pub fn loss_function(
    graph: &ModelGraph,
    with_grads: bool,
    body: impl FnOnce(&mut Builder) -> (ValueId, Vec<ValueId>),
) -> Function {
    let mut b = Builder::new("check");
    let (total, params) = body(&mut b);
    b.result("loss", ResultKind::Loss, total);
    if with_grads {
        let trainable: Vec<usize> = (0..graph.params.len())
            .filter(|&p| graph.params[p].trainable)
            .collect();
        let wrt: Vec<ValueId> = trainable.iter().map(|&p| params[p]).collect();
        for (&p, g) in trainable
            .iter()
            .zip(autodiff::gradients(&mut b, total, &wrt))
        {
            b.result(&graph.params[p].name, ResultKind::Param(p), g);
        }
    }
    let f = b.finish();
    verify::verify(&f).unwrap();
    f
}

/// Compares the autodiff gradients (`out[1..]`, one per trainable parameter, as
/// [`loss_function`] returns them) with central differences of `loss_fn` at `params`, on up to
/// `picks` elements spread over each parameter. `args` makes the function's arguments from
/// the parameters; `what` starts each failure's message. Returns the analytic gradients.
#[allow(clippy::too_many_arguments)]
pub fn check_against_finite_differences(
    graph: &ModelGraph,
    loss_fn: &Function,
    ctx: Context,
    params: &[ArrayD<f64>],
    args: impl Fn(&[ArrayD<f64>]) -> Vec<Value<f64>>,
    out: &[Value<f64>],
    picks: usize,
    what: &str,
) -> Vec<ArrayD<f64>> {
    let trainable: Vec<usize> = (0..graph.params.len())
        .filter(|&k| graph.params[k].trainable)
        .collect();
    let h = 1e-6;
    let mut grads = Vec::new();
    for (gi, &k) in trainable.iter().enumerate() {
        let analytic = out[1 + gi].float().clone();
        let n = params[k].len();
        for e in (0..n).step_by((n / picks).max(1)) {
            let mut plus = params.to_vec();
            plus[k].as_slice_mut().unwrap()[e] += h;
            let mut minus = params.to_vec();
            minus[k].as_slice_mut().unwrap()[e] -= h;
            let lp = interp::run(loss_fn, &args(&plus), ctx).unwrap()[0].scalar();
            let lm = interp::run(loss_fn, &args(&minus), ctx).unwrap()[0].scalar();
            let numeric = (lp - lm) / (2.0 * h);
            let a = analytic.as_slice().unwrap()[e];
            let tol = 1e-5 * numeric.abs().max(a.abs()).max(1e-2);
            assert!(
                (a - numeric).abs() <= tol,
                "{what}{}[{e}]: autodiff {a} vs finite difference {numeric}",
                graph.params[k].name
            );
        }
        grads.push(analytic);
    }
    grads
}
