//! `fmc eval FILE --weights W [--x X --y Y]`: loss and metrics on the test split (or the given
//! data), as one line `loss: 0.1234 - accuracy: 0.9500`, or an object with `--json`.

use super::session::{self, runtime_error, RunOptions};
use super::Global;
use fm_runtime::data::{load_data, prepare, read_xy};
use fm_runtime::metrics::metric_defs;
use fm_runtime::train;
use fm_runtime::RuntimeError;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// The `.fm` file (its `train` section gives the loss and metrics).
    pub file: PathBuf,
    /// Trained weights (safetensors written by `fmc train`).
    #[arg(long, value_name = "W.safetensors")]
    pub weights: PathBuf,
    /// The model to evaluate when the file has several.
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// Inputs to evaluate on instead of the data's test split (IDX, .npy, .npz[:key], .csv; a
    /// model with several inputs takes an .npz whose keys are the input names).
    #[arg(long, value_name = "PATH")]
    pub x: Option<String>,
    /// Targets for `--x` (`file.csv:COLUMN` takes a CSV column); not needed when no loss or
    /// metric reads targets.
    #[arg(long, value_name = "PATH", requires = "x")]
    pub y: Option<String>,
    /// Print a JSON object with full precision instead of `loss: 0.1234 - ...`.
    #[arg(long)]
    pub json: bool,
    /// Samples per batch (default: the `train` section's `batch_size`); bounds memory.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: Option<u64>,
    #[command(flatten)]
    pub run: RunOptions,
}

pub fn run(g: &mut Global, args: &EvalArgs) -> i32 {
    args.run.set_threads();
    let sel = match session::select(g, &args.file, args.model.as_deref(), &[]) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if !sel.has_train {
        g.fail(&format!(
            "`{}` has no `train` section for model `{}`: eval needs its loss and metrics",
            args.file.display(),
            sel.graph.name
        ));
        return 1;
    }
    let mut backend = match session::backend(g, &sel, args.run.backend) {
        Ok(b) => b,
        Err(code) => return code,
    };
    let result: Result<Vec<(String, f64)>, RuntimeError> = (|| {
        let meta = session::load_weights(&mut backend, &args.weights, &sel.graph.name)?;
        let stored = session::stored_transforms(&meta, &sel.spec, &args.weights)?;
        let md = session::model_data(&sel.graph, &sel.spec);
        let opts = args.run.load_options();
        let data = match &args.x {
            Some(x) => {
                // Several inputs from one `.npz`: only those the loss, outputs and metrics
                // need must be there (as for `predict`, language.md 9.2).
                let takes = |n: &String| {
                    backend
                        .eval_fn
                        .args
                        .iter()
                        .any(|a| a.kind == fm_compiler::ir::ArgKind::Input && a.name == *n)
                };
                let mut names = md.input_names();
                let several = names.iter().any(takes) && names.iter().any(|n| !takes(n));
                if several {
                    // The targets, and one input that is there to count the samples.
                    names.retain(takes);
                    names.truncate(1);
                }
                let mut raw = read_xy(x, args.y.as_deref(), &names, &md.target_names())?;
                if several {
                    raw.inputs = session::read_needed(x, &md, &backend.eval_fn)?;
                }
                prepare(&raw, &md, &stored, opts)?
            }
            _ => {
                let Some(d) = sel.spec.data.as_ref() else {
                    return Err(RuntimeError::without_path(
                        fm_runtime::ErrorKind::DataSetup,
                        "no data to evaluate: the `train` section names no `data`; give `--x PATH --y PATH`",
                    ));
                };
                let loaded = load_data(d, &md, opts)?;
                loaded.test.ok_or_else(|| {
                    RuntimeError::without_path(
                        fm_runtime::ErrorKind::DataSetup,
                        format!(
                            "data `{}` has no test split; give `--x PATH --y PATH`",
                            d.name
                        ),
                    )
                })?
            }
        };
        train::evaluate(
            &mut backend,
            &data,
            args.batch_size.map_or(sel.spec.batch_size, |n| n as usize),
            &metric_defs(&sel.spec),
        )
    })();
    match result {
        Ok(logs) => {
            if args.json {
                let map: serde_json::Map<String, serde_json::Value> = logs
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::json!(v)))
                    .collect();
                let _ = writeln!(g.out, "{}", serde_json::Value::Object(map));
            } else {
                let parts: Vec<String> = logs.iter().map(|(k, v)| format!("{k}: {v:.4}")).collect();
                let _ = writeln!(g.out, "{}", parts.join(" - "));
            }
            0
        }
        Err(e) => runtime_error(g, &e),
    }
}
