//! Sessions of language 0.2 models (language.md 9.4, 9.5): `step`s update only their own
//! weights, in order; lagged copies follow their schedule and are never trained; the state
//! names them `lag/CALL/PARAM`.

use fm_compiler::check::check_source;
use fm_compiler::exec::Session;
use fm_runtime::tensor::Tensor;
use ndarray::{ArrayD, IxDyn};
use std::path::Path;

fn session(src: &str) -> Session {
    let checked = check_source(src, Path::new("session.fm"));
    assert!(!checked.has_errors(), "{:?}", checked.diagnostics);
    Session::new(checked.models[0].clone(), checked.trains[0].clone()).unwrap()
}

fn param(s: &Session, name: &str) -> ArrayD<f32> {
    let i = s
        .graph
        .params
        .iter()
        .position(|p| p.name == name)
        .unwrap_or_else(|| panic!("no parameter `{name}`"));
    s.params[i].clone()
}

fn model(lag: &str) -> String {
    format!(
        "version 0.2
model m {{
    input x: f32[3]
    target t: f32[]
    let a = x -> Dense(2, name: \"first\")
    let b = a -> Dense(1, name: \"second\")
    let b_lag = second(a, weights: {lag})
    output y = b
}}
train m {{
    step one {{ update: first, loss: mse(b, t), optimizer: SGD(lr: 0.1) }}
    step two {{ update: second, loss: mse(b, t) + mean(square(b_lag)), optimizer: Adam(lr: 0.01) }}
    seed: 3
}}
"
    )
}

fn data() -> ([Tensor; 1], [Tensor; 1]) {
    (
        [Tensor::F32(ArrayD::from_shape_fn(IxDyn(&[4, 3]), |i| {
            ((i[0] * 3 + i[1]) as f32 * 0.37).sin()
        }))],
        [Tensor::F32(ArrayD::from_shape_fn(IxDyn(&[4]), |i| {
            i[0] as f32 * 0.5
        }))],
    )
}

#[test]
fn steps_update_only_their_weights_and_a_copy_refreshes_every_n_steps() {
    let mut s = session(&model("copy(every: 2 steps)"));
    let (x, t) = data();
    let k0 = param(&s, "second.kernel");
    let f0 = param(&s, "first.kernel");
    // The copy starts equal to the live weights.
    assert_eq!(param(&s, "lag/second/second.kernel"), k0);
    let out = s.train_step(&x, &t, 0.1).unwrap();
    let names: Vec<&str> = out.step_losses.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["one_loss", "two_loss"]);
    let k1 = param(&s, "second.kernel");
    assert_ne!(k1, k0, "step two trains `second`");
    assert_ne!(param(&s, "first.kernel"), f0, "step one trains `first`");
    // After step 1 the copy still holds the initial weights (no gradient reaches it)...
    assert_eq!(param(&s, "lag/second/second.kernel"), k0);
    s.train_step(&x, &t, 0.1).unwrap();
    // ...and after step 2 it is refreshed.
    assert_eq!(
        param(&s, "lag/second/second.kernel"),
        param(&s, "second.kernel")
    );
    // Lagged copies are state, saved by name; each step keeps its optimizer's slots (SGD
    // none, Adam `m` and `v`).
    let state = s.state();
    assert!(state.iter().any(|(n, _)| n == "lag/second/second.kernel"));
    assert!(state.iter().any(|(n, _)| n == "opt/second.kernel/m"));
    assert!(!state.iter().any(|(n, _)| n.starts_with("opt/first.kernel")));
}

#[test]
fn an_ema_copy_averages_after_every_step() {
    let mut s = session(&model("ema(0.75)"));
    let (x, t) = data();
    let lag0 = param(&s, "lag/second/second.kernel");
    s.train_step(&x, &t, 0.1).unwrap();
    let live = param(&s, "second.kernel");
    let expected = lag0.mapv(|v| 0.75 * v) + live.mapv(|v| 0.25 * v);
    let lag1 = param(&s, "lag/second/second.kernel");
    for (a, b) in lag1.iter().zip(&expected) {
        assert!((a - b).abs() < 1e-7, "{a} vs {b}");
    }
}
