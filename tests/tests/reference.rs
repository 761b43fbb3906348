//! The interpreter against Keras 3 reference numbers (tests/reference/, made by gen.py): for
//! every case, the inference output, the training loss, every gradient, and every parameter and
//! optimizer slot after 3 steps, within `tolerance * max(|ref|, 1)` (1e-5 unless the case says).

#[path = "../../compiler/core/tests/support/mod.rs"]
mod gradcheck_support;

use fm_compiler::exec::Session;
use fm_compiler::interp::{self, Context, Value};
use fm_compiler::lower::{self, loss, Mode};
use fm_runtime::data::{read_array, RawArray};
use fm_runtime::tensor::{DType, Tensor};
use fm_runtime::weights::load_weights;
use ndarray::{ArrayD, IxDyn};
use std::path::{Path, PathBuf};

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("reference/cases")
}

fn to_tensor(raw: &RawArray, dtype: DType) -> Tensor {
    match dtype {
        DType::F32 => {
            Tensor::F32(ArrayD::from_shape_vec(IxDyn(&raw.shape), raw.data.to_f32()).unwrap())
        }
        DType::I32 => {
            Tensor::I32(ArrayD::from_shape_vec(IxDyn(&raw.shape), raw.to_i32().unwrap()).unwrap())
        }
    }
}

/// Reads `stem.npy`, or `stem.npz:NAME` for each name when there are several.
fn arrays(dir: &Path, stem: &str, names: &[(String, DType)]) -> Vec<Tensor> {
    let npy = dir.join(format!("{stem}.npy"));
    if npy.exists() && names.len() == 1 {
        return vec![to_tensor(
            &read_array(npy.to_str().unwrap()).unwrap(),
            names[0].1,
        )];
    }
    let npz = dir.join(format!("{stem}.npz"));
    names
        .iter()
        .map(|(n, d)| to_tensor(&read_array(&format!("{}:{n}", npz.display())).unwrap(), *d))
        .collect()
}

struct Failures(Vec<String>);

impl Failures {
    fn compare(&mut self, case: &str, what: &str, got: &ArrayD<f32>, want: &Tensor, tol: f64) {
        let want = want.to_f32();
        if got.len() != want.len() {
            self.0.push(format!(
                "{case}: {what}: shape {:?}, expected {:?}",
                got.shape(),
                want.shape()
            ));
            return;
        }
        let mut worst = (0.0f64, 0usize);
        for (i, (&g, &w)) in got.iter().zip(want.iter()).enumerate() {
            let err = (g as f64 - w as f64).abs() / (w as f64).abs().max(1.0);
            if err > worst.0 || err.is_nan() {
                worst = (err, i);
            }
        }
        // Written so that a NaN error fails too.
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        let failed = !(worst.0 <= tol);
        if failed {
            let i = worst.1;
            self.0.push(format!(
                "{case}: {what}[{i}] = {} but Keras gives {} (relative error {:.2e} > {tol:.0e})",
                got.iter().nth(i).unwrap(),
                want.iter().nth(i).unwrap(),
                worst.0
            ));
        }
    }
}

fn run_case(dir: &Path, failures: &mut Failures) -> bool {
    let case = dir.file_name().unwrap().to_string_lossy().to_string();
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    let tol = meta["tolerance"].as_f64().unwrap_or(1e-5);
    let source = std::fs::read_to_string(dir.join("model.fm")).unwrap();
    let checked = fm_compiler::check::check_source(&source, &dir.join("model.fm"));
    if checked.has_errors() {
        failures.0.push(format!(
            "{case}: model.fm does not check: {:?}",
            checked.diagnostics
        ));
        return false;
    }
    let graph = checked.models[0].clone();
    let spec = checked.trains[0].clone();
    let init = load_weights(&dir.join("init.safetensors")).unwrap().tensors;
    let expected = load_weights(&dir.join("expected.safetensors")).unwrap();
    let mut session = Session::new(graph.clone(), spec.clone()).unwrap();
    session.set_state(&init).unwrap();

    let input_names: Vec<(String, DType)> = graph
        .inputs
        .iter()
        .map(|i| (i.name.clone(), i.dtype))
        .collect();
    let x = arrays(dir, "x", &input_names);
    let outputs = session.predict(&x).unwrap();
    for (k, o) in graph.outputs.iter().enumerate() {
        let key = if graph.outputs.len() == 1 {
            "output".to_string()
        } else {
            format!("output/{}", o.name)
        };
        match expected.get(&key) {
            Some(want) => failures.compare(&case, &key, outputs[k].as_f32().unwrap(), want, tol),
            None => failures
                .0
                .push(format!("{case}: no `{key}` in expected.safetensors")),
        }
    }
    if meta["training_numbers"].as_bool() != Some(true) {
        return true;
    }
    let target_names: Vec<(String, DType)> = graph
        .outputs
        .iter()
        .enumerate()
        .map(|(k, o)| {
            let (_, d) = loss::target_shape(Some(spec.losses[k].loss), &graph.nodes[o.node].shape);
            (o.name.clone(), d)
        })
        .collect();
    let y = arrays(dir, "y", &target_names);

    // Loss and gradients with the initial weights, in training mode.
    let f = gradcheck_support::loss_function(&graph, true, |b| {
        let inputs = lower::input_args(b, &graph, None);
        let targets = lower::target_args(b, &graph, &spec);
        let params = lower::param_args(b, &graph);
        let fwd = lower::forward(b, &graph, &inputs, &params, Mode::Train);
        (
            loss::total_loss(b, &graph, &spec, &fwd, &targets, &params),
            params,
        )
    });
    let mut args: Vec<Value<f32>> = Vec::new();
    for t in x.iter().chain(&y) {
        args.push(match t {
            Tensor::F32(a) => Value::F(a.clone()),
            Tensor::I32(a) => Value::I(a.clone()),
        });
    }
    for (k, p) in graph.params.iter().enumerate() {
        let t = init
            .iter()
            .find(|(n, _)| n == &p.name)
            .map(|(_, t)| t.to_f32());
        args.push(Value::F(t.unwrap_or_else(|| session.params[k].clone())));
    }
    // Targets may be stored as [N] for outputs of shape [N, 1] and the like.
    for (a, arg) in args.iter_mut().zip(&f.args) {
        let want = fm_compiler::ir::eval_shape(&arg.shape, x[0].len());
        if let Value::F(v) = a {
            if v.shape() != want.as_slice() && v.len() == want.iter().product::<usize>() {
                *v = v.clone().into_shape_with_order(IxDyn(&want)).unwrap();
            }
        }
        if let Value::I(v) = a {
            if v.shape() != want.as_slice() && v.len() == want.iter().product::<usize>() {
                *v = v.clone().into_shape_with_order(IxDyn(&want)).unwrap();
            }
        }
    }
    let ctx = Context {
        batch: x[0].len(),
        seed: spec.seed,
        step: 0,
        sample_offset: 0,
    };
    let results = interp::run(&f, &args, ctx).unwrap();
    if let Some(want) = expected.get("loss") {
        failures.compare(&case, "loss", results[0].float(), want, tol);
    }
    for (r, v) in f.results.iter().zip(&results).skip(1) {
        match expected.get(&format!("grad/{}", r.name)) {
            Some(want) => {
                failures.compare(&case, &format!("grad/{}", r.name), v.float(), want, tol)
            }
            None => failures
                .0
                .push(format!("{case}: no grad/{} in expected", r.name)),
        }
    }

    // Three optimizer steps on the same batch.
    let lr = spec.optimizer.lr as f32;
    for _ in 0..3 {
        session.train_step(&x, &y, lr).unwrap();
    }
    for (name, value) in session.state() {
        if name == "opt/step" {
            continue;
        }
        if let Some(want) = expected.get(&format!("step3/{name}")) {
            failures.compare(&case, &format!("step3/{name}"), &value.to_f32(), want, tol);
        } else if !name.starts_with("opt/") {
            failures
                .0
                .push(format!("{case}: no step3/{name} in expected"));
        }
    }
    true
}

#[test]
fn interpreter_matches_keras() {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("meta.json").exists())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 100, "only {} reference cases", dirs.len());
    let mut failures = Failures(Vec::new());
    for dir in &dirs {
        run_case(dir, &mut failures);
    }
    assert!(
        failures.0.is_empty(),
        "{} mismatches in {} cases:\n{}",
        failures.0.len(),
        dirs.len(),
        failures.0.join("\n")
    );
}
