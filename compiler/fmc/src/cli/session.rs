//! What `train`, `eval` and `predict` share: choosing the model and its `train` section,
//! applying `--set` overrides, describing the model's inputs and targets to the data loaders,
//! and building the backend that runs it.

use super::Global;
use clap::ValueEnum;
use fm_compiler::check::Checked;
use fm_compiler::diag::SourceFile;
use fm_compiler::exec::Session;
use fm_compiler::graph::ModelGraph;
use fm_compiler::lower::loss::target_shape;
use fm_grammar::ast;
use fm_runtime::config::{Loss, TrainSpec};
use fm_runtime::data::{read_array, LoadOptions, ModelData, RawArray, RawData, TensorSpec};
use fm_runtime::tensor::DType;
use fm_runtime::RuntimeError;
use std::path::Path;

/// `--backend`.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// Native code from the Cranelift JIT (functions it cannot compile run on the
    /// interpreter; `-v` says which).
    #[default]
    Jit,
    /// The reference interpreter.
    Interp,
}

/// The flags of `train`, `eval` and `predict` that say how the model runs on its data.
#[derive(clap::Args, Debug)]
pub struct RunOptions {
    /// Where the model runs.
    #[arg(long, value_enum, default_value_t = BackendChoice::Jit)]
    pub backend: BackendChoice,
    /// Threads of the kernels: GEMM, convolution, pooling, the JIT's elementwise loops (default:
    /// one per core; results do not depend on it).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub threads: Option<u64>,
    /// Accept NaN and infinity in the inputs.
    #[arg(long)]
    pub allow_nan: bool,
}

impl RunOptions {
    /// Applies `--threads N`: caps the kernel pool (GEMM, convolution, pooling and the JIT's
    /// elementwise loops; the interpreter is single-threaded). Work is split by output rows,
    /// channels, images or batch slices, never by partial sums, so results do not depend on N.
    pub fn set_threads(&self) {
        if let Some(n) = self.threads {
            fm_runtime::kernels::set_thread_limit(n as usize);
        }
    }

    /// What `--allow-nan` says to the data loaders.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            allow_nan: self.allow_nan,
        }
    }
}

/// A checked file with the model and training setup a command works on.
pub struct Selected {
    /// The source after `--set` overrides (written to the run directory).
    pub source: String,
    pub graph: ModelGraph,
    pub spec: TrainSpec,
    /// False when the file has no `train` section for the model (a default setup is used,
    /// which is enough for `predict`).
    pub has_train: bool,
}

/// Reads and checks `file`, applies `--set KEY=VALUE` overrides to the model's `train` section,
/// and picks the model (`--model` or the only one). `Err(exit code)` after printing why.
pub fn select(
    g: &mut Global,
    file: &Path,
    model: Option<&str>,
    overrides: &[String],
) -> Result<Selected, i32> {
    let (mut source, mut checked) = super::load_checked(g, file)?;
    if !overrides.is_empty() {
        let name = file.display().to_string();
        source = match apply_overrides(&source, model, overrides) {
            Ok(s) => s,
            Err(message) => {
                g.fail(&message);
                return Err(2);
            }
        };
        checked = fm_compiler::check::check_source_with(&source, file, &g.limits);
        if checked.has_errors() {
            let _ = writeln!(g.err, "note: after applying `--set` to {name}:");
            g.print_diagnostics(
                &checked.diagnostics,
                &SourceFile {
                    name: &name,
                    text: &source,
                },
            );
            return Err(2);
        }
    }
    pick(g, file, source, checked, model)
}

fn pick(
    g: &mut Global,
    file: &Path,
    source: String,
    checked: Checked,
    model: Option<&str>,
) -> Result<Selected, i32> {
    let graph = match model {
        Some(m) => match checked.models.iter().find(|x| x.name == m) {
            Some(x) => x.clone(),
            None => {
                let names: Vec<&str> = checked.models.iter().map(|x| x.name.as_str()).collect();
                g.fail(&format!(
                    "no model `{m}` in `{}` (it has: {})",
                    file.display(),
                    names.join(", ")
                ));
                return Err(2);
            }
        },
        None => match checked.models.as_slice() {
            [one] => one.clone(),
            [] => {
                g.fail(&format!("`{}` declares no model", file.display()));
                return Err(1);
            }
            many => {
                let names: Vec<&str> = many.iter().map(|x| x.name.as_str()).collect();
                g.fail(&format!(
                    "the file has several models ({}); pick one with `--model NAME`",
                    names.join(", ")
                ));
                return Err(2);
            }
        },
    };
    let found = checked
        .trains
        .iter()
        .find(|t| t.model == graph.name)
        .cloned();
    let has_train = found.is_some();
    let spec = found.unwrap_or_else(|| fm_compiler::exec::default_spec(&graph));
    Ok(Selected {
        source,
        graph,
        spec,
        has_train,
    })
}

/// Rewrites the `train` section of `model` (or the only one) with `KEY=VALUE` overrides:
/// an existing entry's text is replaced, a new key is appended before the closing `}`.
pub fn apply_overrides(
    source: &str,
    model: Option<&str>,
    overrides: &[String],
) -> Result<String, String> {
    let (file, errors) = fm_grammar::parse(source);
    if !errors.is_empty() {
        return Err("cannot apply `--set`: the file has syntax errors".into());
    }
    let sections: Vec<&ast::Section> = file
        .items
        .iter()
        .filter_map(|i| match i {
            ast::Item::Train(s) => Some(s),
            _ => None,
        })
        .filter(|s| match (model, &s.name) {
            (Some(m), Some(n)) => n.name == m,
            _ => true,
        })
        .collect();
    let section = match sections.as_slice() {
        [one] => *one,
        [] => {
            return Err(
                "`--set` needs a `train` section to change, and the file has none for this model"
                    .into(),
            )
        }
        _ => {
            return Err(
                "the file has several `train` sections; pick the model with `--model NAME`".into(),
            )
        }
    };
    // Edits as (start, end, replacement), applied from the back so offsets stay valid.
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    for o in overrides {
        let Some((key, value)) = o.split_once('=') else {
            return Err(format!(
                "`--set {o}`: expected KEY=VALUE, e.g. `--set epochs=3`"
            ));
        };
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("`--set {o}`: `{key}` is not a key"));
        }
        let text = format!("{key}: {value}");
        match section.entries.iter().find(|e| e.key.name == key) {
            Some(e) => edits.push((e.span.start, e.span.end, text)),
            None => {
                let close = source[..section.span.end]
                    .rfind('}')
                    .unwrap_or(section.span.end);
                edits.push((close, close, format!("    {text}\n")));
            }
        }
    }
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut out = source.to_string();
    for (start, end, text) in edits {
        out.replace_range(start..end, &text);
    }
    Ok(out)
}

/// What the data loaders must produce for this model: its inputs, and one target per output.
/// Sampled inputs (language.md 9.2) are drawn, not read; a loss expression reads the
/// `target` declarations (9.3) instead of one target per output.
pub fn model_data(graph: &ModelGraph, spec: &TrainSpec) -> ModelData {
    let inputs = graph
        .inputs
        .iter()
        .enumerate()
        .filter(|(k, _)| !graph.sampled.iter().any(|(i, _)| i == k))
        .map(|(_, i)| {
            let spec = TensorSpec::new(&i.name, i.dtype, &i.shape);
            // Token ids must index every `Embedding` that reads them.
            let smallest = graph
                .nodes
                .iter()
                .filter(|n| n.inputs.first() == Some(&i.node))
                .filter_map(|n| match n.op {
                    fm_compiler::graph::Op::Embedding { vocab, .. } => {
                        Some((vocab, n.name.clone().unwrap_or_default()))
                    }
                    _ => None,
                })
                .min_by_key(|(v, _)| *v);
            match smallest {
                Some((vocab, layer)) => spec.with_ids(vocab, &layer),
                None => spec,
            }
        })
        .collect();
    if fm_compiler::lower::uses_declared_targets(spec) {
        let targets = graph
            .targets
            .iter()
            .map(|t| TensorSpec::new(&t.name, t.dtype, &t.shape))
            .collect();
        return ModelData { inputs, targets };
    }
    let targets = graph
        .outputs
        .iter()
        .enumerate()
        .map(|(k, o)| {
            let out_shape = &graph.nodes[o.node].shape;
            let loss = spec.losses.get(k).map(|l| l.loss);
            let (shape, dtype) = target_shape(loss, out_shape);
            // Named after the output: messages say "the targets of output `probs`".
            let t = TensorSpec::new(&o.name, dtype, &shape);
            match loss {
                Some(Loss::SparseCategoricalCrossentropy { .. }) => {
                    t.with_classes(out_shape.last().copied().unwrap_or(1))
                }
                _ => t,
            }
        })
        .collect();
    ModelData { inputs, targets }
}

/// Builds the backend that runs the model. With `-v`, reports what compiling cost.
pub fn backend(g: &mut Global, selected: &Selected, choice: BackendChoice) -> Result<Session, i32> {
    let started = std::time::Instant::now();
    let graph = selected.graph.clone();
    let spec = selected.spec.clone();
    let made = match choice {
        BackendChoice::Interp => Session::new(graph, spec).map(|s| (s, None)),
        BackendChoice::Jit => fm_jit::session::new_session(graph, spec).map(|(s, r)| (s, Some(r))),
    };
    let (session, report) = match made {
        Ok(x) => x,
        Err(e) => {
            g.fail(&e);
            return Err(1);
        }
    };
    if g.verbose {
        let _ = writeln!(
            g.err,
            "compiled `{}`: train_step {} ops, predict {} ops in {:.1} ms ({:?} backend)",
            selected.graph.name,
            session.train_fn.insts.len(),
            session.predict_fn.insts.len(),
            started.elapsed().as_secs_f64() * 1e3,
            choice
        );
        for (function, timings) in &session.pass_timings {
            let _ = writeln!(g.err, "  passes `{function}`: {}", pass_times(timings));
        }
        for (st, cached) in report.iter().flat_map(|r| &r.compiled) {
            let _ = writeln!(
                g.err,
                "  jit `{}`: {} kernels ({} calls, {} ops fused), {} CLIF instructions, {}",
                st.function,
                st.kernels,
                st.calls,
                st.fused,
                st.clif_insts,
                if *cached {
                    "cached".to_string()
                } else {
                    format!(
                        "compiled in {:.1} ms (passes: {})",
                        st.compile_ms,
                        pass_times(&st.passes)
                    )
                }
            );
        }
    }
    // A refusal is always worth a note under `-v`: the run is correct but not native.
    for (function, reason) in report.iter().flat_map(|r| &r.refused) {
        if g.verbose {
            let _ = writeln!(
                g.err,
                "note: the JIT cannot compile `{function}` ({reason}); it runs on the interpreter"
            );
        }
    }
    Ok(session)
}

/// `simplify 0.1 ms, cse 0.4 ms, ...`
fn pass_times(timings: &[fm_compiler::passes::PassTiming]) -> String {
    let parts: Vec<String> = timings
        .iter()
        .map(|t| format!("{} {:.2} ms", t.pass, t.ms))
        .collect();
    parts.join(", ")
}

/// `--weights`/`--init`: loads weights into the backend. A file written for another model says
/// so in one line naming both models, instead of listing every tensor that does not fit.
pub fn load_weights(
    backend: &mut Session,
    path: &Path,
    model: &str,
) -> Result<fm_runtime::weights::WeightsMeta, RuntimeError> {
    fm_runtime::train::load_init(backend, path).map_err(|e| another_model(e, path, model))
}

/// `--resume CKPT`: a checkpoint of another model says so in one line before training starts
/// (the training loop reports every other problem with the file).
pub fn check_checkpoint(backend: &Session, path: &Path, model: &str) -> Result<(), RuntimeError> {
    let Ok(file) = fm_runtime::weights::load_weights(path) else {
        return Ok(());
    };
    let expected: Vec<(String, Vec<usize>)> = backend
        .state()
        .into_iter()
        .map(|(n, t)| (n, t.shape().to_vec()))
        .collect();
    fm_runtime::weights::check_tensors(path, &file.tensors, &expected)
        .map_err(|e| another_model(e, path, model))
}

/// A weights error (E0410) about a file whose metadata names another model: one line naming
/// both. Other errors pass through.
fn another_model(e: RuntimeError, path: &Path, model: &str) -> RuntimeError {
    if e.kind != fm_runtime::ErrorKind::Weights {
        return e;
    }
    let theirs = match fm_runtime::weights::load_weights(path) {
        Ok(file) if !file.meta.model.is_empty() && file.meta.model != model => file.meta.model,
        _ => return e,
    };
    let problems = e.message.split("; ").count();
    RuntimeError::without_path(
        fm_runtime::ErrorKind::Weights,
        format!(
            "`{}` holds the weights of model `{theirs}`, not of `{model}` ({problems} {} not fit)",
            path.display(),
            if problems == 1 {
                "tensor does"
            } else {
                "tensors do"
            }
        ),
    )
}

/// Prints a runtime error like a diagnostic and returns exit status 1.
pub fn runtime_error(g: &mut Global, e: &RuntimeError) -> i32 {
    let code = e.kind.code();
    let text = match g.format {
        fm_compiler::diag::MessageFormat::Json => serde_json::json!({
            "code": code.as_str(), "severity": "error", "message": e.to_string(), "file": e.path,
            "line": null, "column": null, "end_line": null, "end_column": null,
            "labels": [], "notes": []
        })
        .to_string(),
        _ => format!("error[{code}]: {e}"),
    };
    let _ = writeln!(g.err, "{text}");
    1
}

/// The transforms to apply to data for a trained model: those stored in its weights' metadata
/// (with their `standardize` statistics), or, for weights made elsewhere, the `data` section's
/// own chain (a `standardize` then reports that it has no statistics).
/// `weights` names the file in the messages.
pub fn stored_transforms(
    meta: &fm_runtime::weights::WeightsMeta,
    spec: &TrainSpec,
    weights: &Path,
) -> Result<fm_runtime::data::FittedTransforms, RuntimeError> {
    let name = weights.display().to_string();
    match meta.transforms.as_deref() {
        Some(json) => fm_runtime::data::FittedTransforms::from_json(json).map_err(|mut e| {
            e.path.get_or_insert(name);
            e
        }),
        None => Ok(fm_runtime::data::FittedTransforms {
            x: spec.data.as_ref().map(|d| d.x.clone()).unwrap_or_default(),
            y: spec.data.as_ref().map(|d| d.y.clone()).unwrap_or_default(),
            from_weights: Some(name),
            ..Default::default()
        }),
    }
}

/// The inputs of a model with several, from the `.npz` keys named after them, for the function
/// `f` (`predict` or `eval_step`). Only those `f` takes must be there (language.md 9.2:
/// `predict` needs only the inputs its outputs depend on, `eval` those its outputs, losses and
/// metrics depend on): the others stand in as zeros, so that every input keeps its place in
/// model order (the stored transform statistics and the session go by position). With no data
/// input needed at all, every one is read, as the file gives the number of samples.
pub fn read_needed(
    input: &str,
    md: &ModelData,
    f: &fm_compiler::ir::Function,
) -> Result<Vec<RawArray>, RuntimeError> {
    let needed = |name: &str| {
        f.args
            .iter()
            .any(|a| a.kind == fm_compiler::ir::ArgKind::Input && a.name == name)
    };
    let read = |name: &str| read_array(&format!("{input}:{name}"));
    if !md.inputs.iter().any(|i| needed(&i.name)) {
        return md.inputs.iter().map(|i| read(&i.name)).collect();
    }
    let arrays: Vec<Option<RawArray>> = md
        .inputs
        .iter()
        .map(|i| needed(&i.name).then(|| read(&i.name)).transpose())
        .collect::<Result<_, _>>()?;
    let samples = arrays.iter().flatten().next().map_or(0, RawArray::samples);
    Ok(arrays
        .into_iter()
        .zip(&md.inputs)
        .map(|(raw, i)| {
            raw.unwrap_or_else(|| {
                let shape: Vec<usize> = std::iter::once(samples).chain(i.shape.clone()).collect();
                let len = shape.iter().product();
                RawArray {
                    origin: format!("{input}:{} (unused)", i.name),
                    shape,
                    data: match i.dtype {
                        DType::F32 => RawData::F32(vec![0.0; len]),
                        DType::I32 => RawData::I32(vec![0; len]),
                    },
                }
            })
        })
        .collect())
}
