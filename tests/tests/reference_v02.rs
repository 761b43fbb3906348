//! Language 0.2 against Keras 3 (tests/reference/cases_v02/, made by gen_v02.py): a GAN's two
//! optimizer steps (also with a `schedule:` in each step), an objective expression, shared weights, and lagged copies (`ema`, `copy`).
//! For every case, on the interpreter and on the JIT: the inference output with the initial
//! weights, the first step's loss (each step's, for several), and every parameter, optimizer
//! slot and lagged tensor after 3 steps, within `tolerance * max(|ref|, 1)` (1e-5, as the 0.1
//! reference cases).

use fm_compiler::exec::Session;
use fm_runtime::data::read_array;
use fm_runtime::tensor::{DType, Tensor};
use fm_runtime::train::schedule::LrSchedule;
use fm_runtime::train::Backend;
use fm_runtime::weights::load_weights;
use ndarray::{ArrayD, IxDyn};
use std::path::{Path, PathBuf};

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("reference/cases_v02");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("meta.json").exists())
        .collect();
    dirs.sort();
    dirs
}

/// `file.npz:NAME` as the dtype the model declares.
fn array(file: &Path, name: &str, dtype: DType) -> Tensor {
    let raw = read_array(&format!("{}:{name}", file.display())).unwrap();
    match dtype {
        DType::F32 => {
            Tensor::F32(ArrayD::from_shape_vec(IxDyn(&raw.shape), raw.data.to_f32()).unwrap())
        }
        DType::I32 => {
            Tensor::I32(ArrayD::from_shape_vec(IxDyn(&raw.shape), raw.to_i32().unwrap()).unwrap())
        }
    }
}

/// The largest `|got - want| / max(|want|, 1)`.
fn max_rel_error(got: &ArrayD<f32>, want: &ArrayD<f32>) -> f64 {
    assert_eq!(
        got.len(),
        want.len(),
        "{:?} vs {:?}",
        got.shape(),
        want.shape()
    );
    got.iter()
        .zip(want.iter())
        .map(|(&g, &w)| (g as f64 - w as f64).abs() / (w as f64).abs().max(1.0))
        .fold(
            0.0,
            |a, e| if e.is_nan() { f64::INFINITY } else { a.max(e) },
        )
}

/// Runs one case on `backend` and returns (what, max relative error) for every compared tensor.
fn run(
    case: &Path,
    backend: &mut dyn Backend,
    inputs: &[Tensor],
    targets: &[Tensor],
    rates: &dyn Fn(u64) -> Vec<f32>,
) -> Vec<(String, f64)> {
    let expected = load_weights(&case.join("expected.safetensors")).unwrap();
    let want = |key: &str| {
        expected
            .get(key)
            .unwrap_or_else(|| panic!("{}: no `{key}` in expected.safetensors", case.display()))
            .to_f32()
    };
    let mut errors = Vec::new();
    let out = backend.predict(inputs).unwrap();
    errors.push((
        "output".into(),
        max_rel_error(&out[0].to_f32(), &want("output")),
    ));
    for step in 1..=3 {
        let r = backend
            .train_step_rates(inputs, targets, &rates(step - 1))
            .unwrap();
        if step > 1 {
            continue;
        }
        // One step: `loss`; several: `loss/NAME` for each step's `NAME_loss`.
        let mut losses = vec![("loss".to_string(), r.loss)];
        if !r.extra.is_empty() {
            losses = r
                .extra
                .iter()
                .filter_map(|(k, v)| Some((format!("loss/{}", k.strip_suffix("_loss")?), *v)))
                .collect();
        }
        for (key, value) in losses {
            let got = ArrayD::from_elem(IxDyn(&[]), value as f32);
            errors.push((key.clone(), max_rel_error(&got, &want(&key))));
        }
    }
    let mut compared = 0;
    for (name, value) in backend.state() {
        if name == "opt/step" {
            continue;
        }
        let key = format!("step3/{name}");
        errors.push((key.clone(), max_rel_error(&value.to_f32(), &want(&key))));
        compared += 1;
    }
    let step3 = expected
        .tensors
        .iter()
        .filter(|(k, _)| k.starts_with("step3/"))
        .count();
    assert_eq!(
        compared,
        step3,
        "{}: fm's state has other tensors than Keras'",
        case.display()
    );
    errors
}

#[test]
fn language_0_2_matches_keras_on_interpreter_and_jit() {
    let dirs = cases();
    assert_eq!(dirs.len(), 6, "{dirs:?}");
    let mut failures = Vec::new();
    for case in &dirs {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(case.join("meta.json")).unwrap())
                .unwrap();
        let tol = meta["tolerance"].as_f64().unwrap();
        let source = std::fs::read_to_string(case.join("model.fm")).unwrap();
        let checked = fm_compiler::check::check_source(&source, &case.join("model.fm"));
        assert!(!checked.has_errors(), "{name}: {:?}", checked.diagnostics);
        let graph = checked.models[0].clone();
        let spec = checked.trains[0].clone();
        let inputs: Vec<Tensor> = graph
            .inputs
            .iter()
            .map(|i| array(&case.join("x.npz"), &i.name, i.dtype))
            .collect();
        // Declared targets, or one per output (`shared_weights`).
        let targets: Vec<Tensor> = if graph.targets.is_empty() && case.join("y.npz").exists() {
            graph
                .outputs
                .iter()
                .map(|o| array(&case.join("y.npz"), &o.name, DType::F32))
                .collect()
        } else {
            graph
                .targets
                .iter()
                .map(|t| array(&case.join("y.npz"), &t.name, t.dtype))
                .collect()
        };
        let init = load_weights(&case.join("init.safetensors"))
            .unwrap()
            .tensors;
        // Each step's rate at optimizer step t (0-based) as the training loop computes it: its
        // own `schedule:` (`gan_step_schedules`), else its optimizer's rate (the sections
        // here have a constant schedule).
        let rates = |t: u64| -> Vec<f32> {
            if spec.steps.is_empty() {
                return vec![spec.optimizer.lr as f32];
            }
            spec.steps
                .iter()
                .map(|st| match &st.schedule {
                    Some(sch) => LrSchedule::new(st.optimizer.lr, sch, 1, 3).lr(t, t),
                    None => st.optimizer.lr as f32,
                })
                .collect()
        };
        for backend in ["interp", "jit"] {
            let mut session = Session::new(graph.clone(), spec.clone()).unwrap();
            session.set_state(&init).unwrap();
            let mut b: Box<dyn Backend> = if backend == "jit" {
                let (jit, report) = fm_jit::session::into_jit(session);
                assert!(report.refused.is_empty(), "{name}: {:?}", report.refused);
                Box::new(jit)
            } else {
                Box::new(session)
            };
            let errors = run(case, b.as_mut(), &inputs, &targets, &rates);
            let worst = errors
                .iter()
                .fold(("", 0.0f64), |w, (k, e)| if *e > w.1 { (k, *e) } else { w });
            eprintln!(
                "{name} ({backend}): {} tensors, max relative error {:.1e} ({})",
                errors.len(),
                worst.1,
                worst.0
            );
            for (what, e) in errors {
                #[allow(clippy::neg_cmp_op_on_partial_ord)]
                if !(e <= tol) {
                    failures.push(format!(
                        "{name} ({backend}): {what}: relative error {e:.2e} > {tol:.0e}"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The training loop gives each `step` the rate of its own `schedule:` (language.md 9.4):
/// `fmc train --steps 3` from the case's initial weights ends where Keras's three steps end.
#[test]
fn fmc_train_runs_each_step_on_its_own_schedule() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("reference/cases_v02/gan_step_schedules");
    let out = std::env::temp_dir().join(format!("fm-step-schedules-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let p = |f: &str| case.join(f).display().to_string();
    let saved = out.join("w.safetensors").display().to_string();
    let run = out.join("run").display().to_string();
    for backend in ["interp", "jit"] {
        let r = fm_tests::fmc(&[
            "train",
            &p("model.fm"),
            "--x",
            &p("x.npz"),
            "--init",
            &p("init.safetensors"),
            "--steps",
            "3",
            "--save",
            &saved,
            "--run-dir",
            &run,
            "--backend",
            backend,
            "-q",
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let got = load_weights(Path::new(&saved)).unwrap();
        let expected = load_weights(&case.join("expected.safetensors")).unwrap();
        let mut compared = 0;
        let mut worst = 0.0f64;
        for (key, want) in &expected.tensors {
            let Some(name) = key.strip_prefix("step3/") else {
                continue;
            };
            let have = got
                .get(name)
                .unwrap_or_else(|| panic!("{backend}: no `{name}` saved"));
            worst = worst.max(max_rel_error(&have.to_f32(), &want.to_f32()));
            compared += 1;
        }
        eprintln!("fmc train ({backend}): {compared} tensors, max relative error {worst:.1e}");
        assert!(compared >= 24, "{compared}");
        assert!(worst <= 1e-5, "{backend}: {worst:.2e}");
    }
}
