//! The Rust back end: a checked model as a Rust module against `fm::compiled`.
//!
//! `fmc compile FILE --emit rust` prints what `model!` expands to: one code path, [`emit`],
//! pretty-printed by [`pretty`] (prettyplease) for people, or turned into tokens by the macro
//! (comments dropped). The module holds
//! - a struct named after the model (`digits_cnn` -> `DigitsCnn`) with the `///` docs of the
//!   `.fm` file and a typed API (`new`, `load`, `save`, `predict`, `forward`, `train_step`,
//!   `fit`, consts `INPUT_SHAPE`, `OUTPUT_SHAPE`, `PARAM_COUNT`, `SUMMARY`);
//! - a `ModelDef` describing inputs, targets, parameters, optimizer slots and the resolved
//!   `train` section for the runtime (`fm::compiled::Model` keeps the state, checks shapes,
//!   runs the training loop and reads and writes weights files);
//! - the optimized IR of the train step, evaluation and inference as plain Rust ([`func`]).

mod func;

use crate::check::Checked;
use crate::graph::ModelGraph;
use crate::ir::{ArgKind, Function, ResultKind};
use crate::lower;
use fm_grammar::Diagnostic;
use fm_runtime::config::TrainSpec;
use fm_runtime::init::Init;
use fm_runtime::tensor::DType;
use std::fmt::Write;
use std::path::Path;

pub use func::ident;

/// What a comment says about each part of the model: a layer's name, type and `.fm` line.
pub struct Notes {
    /// Per layer-graph node: `dense_1 (Dense), line 12: output probs = ...`.
    nodes: Vec<String>,
    /// Per parameter: its interchange name.
    params: Vec<String>,
    /// Per layer-graph node: its name as a Rust identifier, for the buffer holding its output.
    pub(crate) idents: Vec<Option<String>>,
}

impl Notes {
    pub fn new(g: &ModelGraph, source: &str) -> Notes {
        let nodes = g
            .nodes
            .iter()
            .map(|n| {
                let (line, _) = crate::diag::line_col(source, n.span.start);
                let text = source.lines().nth(line - 1).unwrap_or("").trim();
                let what = match &n.name {
                    Some(name) => format!("{name} ({})", n.op.type_name()),
                    None => n.op.type_name(),
                };
                format!("{what}, line {line}: {text}")
            })
            .collect();
        let idents = g
            .nodes
            .iter()
            .map(|n| n.name.as_deref().map(ident))
            .collect();
        Notes {
            nodes,
            params: g.params.iter().map(|p| p.name.clone()).collect(),
            idents,
        }
    }

    fn for_value(&self, f: &Function, v: usize) -> Option<String> {
        use crate::ir::Origin;
        match f.insts[v].origin {
            Origin::Unknown => None,
            Origin::Node(n) => self.nodes.get(n).cloned(),
            Origin::Backward(n) => self.nodes.get(n).map(|t| format!("gradient of {t}")),
            Origin::Loss => Some("the loss".into()),
            Origin::Update(p) => Some(match self.params.get(p) {
                Some(name) => format!("optimizer update of `{name}`"),
                None => "gradient clipping".into(),
            }),
        }
    }
}

/// The marker that stands for a `//` comment until [`pretty`] prints it (syn keeps no comments).
const COMMENT_MARKER: &str = "__fm_comment!";

pub(crate) fn comment(text: &str) -> String {
    format!("{COMMENT_MARKER}({text:?});")
}

/// Why a model could not be compiled to Rust.
#[derive(Debug)]
pub enum EmitError {
    /// The file has errors (render them with [`crate::diag::render_all`]).
    Diagnostics(Vec<Diagnostic>),
    /// No such model, no model, several models, or an internal error.
    Message(String),
}

/// A checked file's model and its training setup, as `fmc train` picks them.
pub struct Selected {
    pub graph: ModelGraph,
    pub spec: TrainSpec,
    pub has_train: bool,
}

/// Picks `model` (or the only model) of a checked file.
pub fn select(checked: &Checked, model: Option<&str>) -> Result<Selected, String> {
    let names = || {
        checked
            .models
            .iter()
            .map(|m| format!("`{}`", m.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let graph = match model {
        Some(m) => match checked.models.iter().find(|x| x.name == m) {
            Some(g) => g.clone(),
            None if checked.models.is_empty() => {
                return Err(format!("no model `{m}`: the file declares no model"))
            }
            None => return Err(format!("no model `{m}` in the file (it has: {})", names())),
        },
        None => match checked.models.as_slice() {
            [one] => one.clone(),
            [] => return Err("the file declares no model".into()),
            _ => {
                return Err(format!(
                    "the file has several models ({}); pick one with `model = NAME`",
                    names()
                ))
            }
        },
    };
    let found = checked
        .trains
        .iter()
        .find(|t| t.model == graph.name)
        .cloned();
    let has_train = found.is_some();
    let spec = found.unwrap_or_else(|| crate::exec::default_spec(&graph));
    Ok(Selected {
        graph,
        spec,
        has_train,
    })
}

/// Checks `source` (read from `path`, which data paths resolve against) and emits `model`
/// (or the only model) as Rust, with comment markers (see [`pretty`] and [`strip_comments`]).
pub fn emit_source(source: &str, path: &Path, model: Option<&str>) -> Result<String, EmitError> {
    let checked = crate::check::check_source(source, path);
    if checked.has_errors() {
        return Err(EmitError::Diagnostics(checked.diagnostics));
    }
    let sel = select(&checked, model).map_err(EmitError::Message)?;
    let file = path.file_name().map_or_else(
        || path.display().to_string(),
        |f| f.to_string_lossy().into_owned(),
    );
    emit(&sel, &checked.trains, source, &file).map_err(EmitError::Message)
}

/// `digits_cnn` -> `DigitsCnn`.
pub fn struct_name(model: &str) -> String {
    let mut out = String::new();
    for part in model.split(|c: char| !c.is_ascii_alphanumeric()) {
        let mut chars = part.chars();
        if let Some(c) = chars.next() {
            out.push(c.to_ascii_uppercase());
            out.push_str(chars.as_str());
        }
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "Model");
    }
    out
}

fn dtype(d: DType) -> &'static str {
    match d {
        DType::F32 => "DType::F32",
        DType::I32 => "DType::I32",
    }
}

fn rust_type(d: DType) -> &'static str {
    match d {
        DType::F32 => "f32",
        DType::I32 => "i32",
    }
}

fn f64_lit(v: f64) -> String {
    if v.is_finite() {
        format!("{v:?}")
    } else if v.is_nan() {
        "f64::NAN".into()
    } else if v > 0.0 {
        "f64::INFINITY".into()
    } else {
        "f64::NEG_INFINITY".into()
    }
}

fn init_expr(init: Init) -> String {
    match init {
        Init::Zeros => "Init::Zeros".into(),
        Init::Ones => "Init::Ones".into(),
        Init::Constant(v) => format!("Init::Constant({})", f64_lit(v)),
        Init::Uniform { lo, hi } => {
            format!(
                "Init::Uniform {{ lo: {}, hi: {} }}",
                f64_lit(lo),
                f64_lit(hi)
            )
        }
        Init::Normal { mean, std } => format!(
            "Init::Normal {{ mean: {}, std: {} }}",
            f64_lit(mean),
            f64_lit(std)
        ),
        Init::GlorotUniform => "Init::GlorotUniform".into(),
        Init::GlorotNormal => "Init::GlorotNormal".into(),
        Init::HeUniform => "Init::HeUniform".into(),
        Init::HeNormal => "Init::HeNormal".into(),
        Init::LecunNormal => "Init::LecunNormal".into(),
        Init::Orthogonal => "Init::Orthogonal".into(),
        Init::LstmBias => "Init::LstmBias".into(),
        Init::CopyOf(p) => format!("Init::CopyOf({p})"),
    }
}

fn usize_list(v: &[usize]) -> String {
    let parts: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

/// A nested array type for one sample: `[8, 8, 1]` -> `[[[f32; 1]; 8]; 8]`.
fn array_type(elem: &str, shape: &[usize]) -> String {
    shape
        .iter()
        .rev()
        .fold(elem.to_string(), |t, d| format!("[{t}; {d}]"))
}

/// `x.as_flattened()` as often as the shape has axes beyond the first.
fn flatten_expr(x: &str, rank: usize, mutable: bool) -> String {
    let m = if mutable { "_mut" } else { "" };
    (1..rank.max(1)).fold(x.to_string(), |e, _| format!("{e}.as_flattened{m}()"))
}

/// The lowered, verified and optimized functions of a model.
pub struct Lowered {
    /// One train step function per `step` of the `train` section (language.md 9.4), in the
    /// order written; one (`train_step`) for a section with a single loss.
    pub train: Vec<Function>,
    pub eval: Function,
    pub predict: Function,
}

/// Lowers `graph` for `spec` and runs the passes the JIT runs: the standard pipeline (as
/// `Session::new`), then the backend passes (`passes::backend`: `split_sums`, `split_concats`,
/// `fuse`), whose kernel plan the emitted code follows.
pub fn lower_all(graph: &ModelGraph, spec: &TrainSpec) -> Result<Lowered, String> {
    let train = lower::train_step_fns(graph, spec);
    let eval = lower::eval_fn(graph, spec);
    let predict = lower::predict_fn(graph);
    for f in train.iter().chain([&eval, &predict]) {
        crate::ir::verify::verify(f).map_err(|e| {
            format!(
                "internal compiler error: `{}` fails verification: {e}",
                f.name
            )
        })?;
    }
    let compile = |f: &Function| -> Result<Function, String> {
        let f = crate::passes::optimize(f)?;
        Ok(crate::passes::backend().run(f)?.0)
    };
    Ok(Lowered {
        train: train.iter().map(compile).collect::<Result<_, _>>()?,
        eval: compile(&eval)?,
        predict: compile(&predict)?,
    })
}

/// A tensor the generated API takes: an input read from data or a training target.
struct Operand {
    /// The name in the `.fm` file (or `OUTPUT_target`).
    name: String,
    /// The Rust parameter name.
    param: String,
    dtype: DType,
    shape: Vec<usize>,
    classes: Option<usize>,
}

impl Operand {
    fn rust_param(&self) -> String {
        format!("{}: ArrayViewD<'_, {}>", self.param, rust_type(self.dtype))
    }

    fn tensor(&self) -> String {
        let variant = if self.dtype == DType::I32 {
            "I32"
        } else {
            "F32"
        };
        format!("Tensor::{variant}({}.to_owned())", self.param)
    }

    /// `` `image` [batch, 8, 8, 1] ``.
    fn described(&self) -> String {
        let dims: Vec<String> = std::iter::once("batch".to_string())
            .chain(self.shape.iter().map(|d| d.to_string()))
            .collect();
        format!("`{}` [{}]", self.name, dims.join(", "))
    }
}

/// The Rust module for a selected model (with comment markers).
pub fn emit(
    sel: &Selected,
    trains: &[TrainSpec],
    source: &str,
    file: &str,
) -> Result<String, String> {
    let g = &sel.graph;
    let spec = &sel.spec;
    let fns = lower_all(g, spec)?;
    let ty = struct_name(&g.name);
    let module = ident(&g.name);
    let steps = &spec.steps;
    let mut o = String::new();
    let slots = lower::optim::step_slots(&fns.train, spec);

    // The inputs read from data (sampled ones are drawn by the generated code), and the
    // targets: one per output, or the `target` declarations a loss expression reads.
    let data_inputs: Vec<usize> = (0..g.inputs.len())
        .filter(|k| !g.sampled.iter().any(|(i, _)| i == k))
        .collect();
    let out_shape = |k: usize| g.nodes[g.outputs[k].node].shape.clone();
    let mut inputs: Vec<Operand> = data_inputs
        .iter()
        .map(|&k| {
            let i = &g.inputs[k];
            Operand {
                name: i.name.clone(),
                param: ident(&i.name),
                dtype: i.dtype,
                shape: i.shape.clone(),
                classes: None,
            }
        })
        .collect();
    let mut targets: Vec<Operand> = if lower::uses_declared_targets(spec) {
        g.targets
            .iter()
            .map(|t| Operand {
                name: t.name.clone(),
                param: ident(&t.name),
                dtype: t.dtype,
                shape: t.shape.clone(),
                classes: None,
            })
            .collect()
    } else {
        g.outputs
            .iter()
            .enumerate()
            .map(|(k, out)| {
                let shape = out_shape(k);
                let loss = spec.losses.get(k).map(|l| l.loss);
                let (t_shape, dt) = lower::loss::target_shape(loss, &shape);
                let classes = matches!(
                    loss,
                    Some(fm_runtime::config::Loss::SparseCategoricalCrossentropy { .. })
                )
                .then(|| shape.last().copied().unwrap_or(1));
                let name = format!("{}_target", out.name);
                Operand {
                    param: ident(&name),
                    name,
                    dtype: dt,
                    shape: t_shape,
                    classes,
                }
            })
            .collect()
    };
    // One input and one target are `x` and `y`, as in Keras's `fit(x, y)`.
    if let [only] = inputs.as_mut_slice() {
        only.param = "x".into();
    }
    if let [only] = targets.as_mut_slice() {
        only.param = "y".into();
    }
    // The inputs each function reads, as indices into `data_inputs`.
    let reads = |f: &Function| -> Vec<usize> {
        f.args
            .iter()
            .filter(|a| a.kind == ArgKind::Input)
            .filter_map(|a| data_inputs.iter().position(|&k| g.inputs[k].name == a.name))
            .collect()
    };
    let predict_reads = reads(&fns.predict);

    let _ = writeln!(
        o,
        "{}",
        comment(&format!(
            "Generated by fm {} from `{file}`, model `{}`: do not edit.",
            env!("CARGO_PKG_VERSION"),
            g.name
        ))
    );
    let _ = writeln!(o, "pub use {module}::{ty};");
    let _ = writeln!(
        o,
        "#[allow(dead_code, unused_parens, unused_imports, clippy::all)] mod {module} {{"
    );
    o.push_str("use ::fm::compiled::{ops, Arg, Ctx, FnDef, LagDef, LagKind, Model, ModelDef, ParamDef, ResultKind, Run, SlotDef, StepStats, TensorDef};\n");
    o.push_str("use ::fm::init::Init;\n");
    o.push_str("use ::fm::ndarray::{ArrayD, ArrayViewD};\n");
    o.push_str("use ::fm::train::{FitOptions, History};\n");
    o.push_str("use ::fm::{DType, Error, Tensor};\n");

    // The struct and its docs.
    for line in &g.doc {
        let _ = writeln!(o, "#[doc = {:?}]", format!(" {}", line.trim_end()));
    }
    if !g.doc.is_empty() {
        o.push_str("#[doc = \"\"]\n");
    }
    let _ = writeln!(
        o,
        "#[doc = {:?}]",
        format!(
            " Model `{}` of `{file}`, compiled to Rust by fm: {} parameters. `{ty}::SUMMARY` has the layer table.",
            g.name,
            crate::summary::thousands(g.total_params())
        )
    );
    let _ = writeln!(o, "#[derive(Clone)] pub struct {ty} {{ model: Model }}");

    let _ = writeln!(o, "impl {ty} {{");
    let _ = writeln!(
        o,
        "/// The model's name in the `.fm` file.\npub const NAME: &'static str = {:?};",
        g.name
    );
    if let Some(first) = inputs.first() {
        let _ = writeln!(
            o,
            "/// Per-sample shape of input `{}` (the batch axis is not included).\npub const INPUT_SHAPE: [usize; {}] = {};",
            first.name,
            first.shape.len(),
            usize_list(&first.shape)
        );
    }
    let _ = writeln!(
        o,
        "/// Per-sample shape of output `{}`.\npub const OUTPUT_SHAPE: [usize; {}] = {};",
        g.outputs[0].name,
        out_shape(0).len(),
        usize_list(&out_shape(0))
    );
    let _ = writeln!(
        o,
        "/// Number of parameter values (BatchNorm statistics included, as `fmc summary`).\npub const PARAM_COUNT: usize = {};",
        g.total_params()
    );
    let style = crate::summary::Style {
        unicode: false,
        width: 80,
    };
    let summary = crate::summary::render(g, trains, &style);
    let _ = writeln!(
        o,
        "/// The `fmc summary` table: layers, shapes, parameters and the training setup.\npub const SUMMARY: &'static str = {summary:?};"
    );
    let _ = writeln!(
        o,
        "/// Fresh parameters from the file's initialisers, drawn with `seed` as `fmc train` does with `seed: SEED`.\npub fn new(seed: u64) -> Self {{ {ty} {{ model: Model::new(&DEF, seed) }} }}"
    );
    let lag_doc = if g.lags.is_empty() {
        ""
    } else {
        " and the lagged weights (`lag/CALL/PARAM`)"
    };
    let _ = writeln!(
        o,
        "/// Loads weights written by `fmc train` or [`{ty}::save`] (with the optimizer state when the file has it{lag_doc}).\npub fn load(path: impl AsRef<std::path::Path>) -> Result<Self, Error> {{ Ok({ty} {{ model: Model::load(&DEF, path)? }}) }}"
    );
    let _ = writeln!(
        o,
        "/// Writes parameters{}, optimizer state and step as safetensors (the layout of `fmc train`'s files), atomically.\npub fn save(&self, path: impl AsRef<std::path::Path>) -> Result<(), Error> {{ self.model.save(path) }}",
        if g.lags.is_empty() { "" } else { ", lagged weights" }
    );

    // predict: one argument per input the outputs need.
    let pred_ops: Vec<&Operand> = predict_reads.iter().map(|&k| &inputs[k]).collect();
    let sampled_names: Vec<String> = g
        .sampled
        .iter()
        .map(|(k, _)| format!("`{}`", g.inputs[*k].name))
        .collect();
    let drawn = if sampled_names.is_empty() {
        String::new()
    } else {
        format!(
            " The sampled input{} {} {} drawn from the stream of step [`{ty}::step`], as `fmc predict` draws {}.",
            if sampled_names.len() > 1 { "s" } else { "" },
            sampled_names.join(", "),
            if sampled_names.len() > 1 { "are" } else { "is" },
            if sampled_names.len() > 1 { "them" } else { "it" },
        )
    };
    let (pred_params, pred_call, pred_in) = if pred_ops.is_empty() {
        (
            "samples: usize".to_string(),
            "self.model.predict_samples(samples)?".to_string(),
            "`samples` drawn samples".to_string(),
        )
    } else {
        (
            pred_ops
                .iter()
                .map(|op| op.rust_param())
                .collect::<Vec<_>>()
                .join(", "),
            format!(
                "self.model.predict_batch(&[{}])?",
                pred_ops
                    .iter()
                    .map(|op| op.tensor())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            pred_ops
                .iter()
                .map(|op| op.described())
                .collect::<Vec<_>>()
                .join(", "),
        )
    };
    if g.outputs.len() == 1 {
        let _ = writeln!(
            o,
            "/// Inference on a batch: {pred_in} in, `{}` `[batch, {}]` out. A wrong shape is an error naming the expected one.{drawn}\npub fn predict(&self, {pred_params}) -> Result<ArrayD<f32>, Error> {{ let out = {pred_call}; Ok(out.into_iter().next().map(|t| t.to_f32()).unwrap_or_default()) }}",
            g.outputs[0].name,
            out_shape(0).iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
        );
    } else {
        let _ = writeln!(
            o,
            "/// Inference on a batch: {pred_in} in, the outputs in order out.{drawn}\npub fn predict(&self, {pred_params}) -> Result<Vec<ArrayD<f32>>, Error> {{ let out = {pred_call}; Ok(out.into_iter().map(|t| t.to_f32()).collect()) }}",
        );
    }
    if let ([i], 1) = (pred_ops.as_slice(), g.outputs.len()) {
        let os = out_shape(0);
        let in_ty = array_type(rust_type(i.dtype), &i.shape);
        let out_ty = array_type("f32", &os);
        let variant = if i.dtype == DType::I32 { "I32" } else { "F32" };
        let _ = writeln!(
            o,
            "/// Inference on one sample, statically shaped.\npub fn forward(&self, x: &{in_ty}) -> Result<{out_ty}, Error> {{ \
             let flat: &[{elem}] = {flat_in}; \
             let input = ArrayD::from_shape_vec(vec![1, {dims}], flat.to_vec()).map_err(|e| Error::backend(e.to_string()))?; \
             let out = self.model.predict_batch(&[Tensor::{variant}(input)])?; \
             let mut y = {zero}; \
             let dst: &mut [f32] = {flat_out}; \
             if let Some(t) = out.first() {{ for (d, s) in dst.iter_mut().zip(t.to_f32().iter()) {{ *d = *s; }} }} \
             Ok(y) }}",
            elem = rust_type(i.dtype),
            flat_in = if i.shape.len() <= 1 { "&x[..]".to_string() } else { format!("&{}[..]", flatten_expr("x", i.shape.len(), false)) },
            dims = i.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
            zero = zero_array(&os),
            flat_out = if os.len() <= 1 { "&mut y[..]".to_string() } else { format!("&mut {}[..]", flatten_expr("y", os.len(), true)) },
        );
    }

    // Training: the whole step, each `step` alone, and `fit`.
    let batch_params: Vec<String> = inputs
        .iter()
        .chain(&targets)
        .map(Operand::rust_param)
        .collect();
    let batch_params = batch_params.join(", ");
    let list = |ops: &[Operand]| {
        ops.iter()
            .map(Operand::tensor)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (in_list, t_list) = (list(&inputs), list(&targets));
    let step_names: Vec<String> = steps.iter().map(|s| format!("`{}`", s.name)).collect();
    let what = if steps.len() > 1 {
        format!(
            "The file's training steps {} in order on the batch, each with its own loss, optimizer and `update:` weights (language.md 9.4), as `fmc train` takes one step",
            step_names.join(", ")
        )
    } else {
        "One optimizer step on a batch with the file's loss, optimizer, schedule and clipping"
            .to_string()
    };
    let lags_after = if g.lags.is_empty() {
        ""
    } else {
        ", then the lagged weights follow (language.md 9.5)"
    };
    let _ = writeln!(
        o,
        "/// {what}{lags_after}; returns the loss and metrics before the update.\npub fn train_step(&mut self, {batch_params}) -> Result<StepStats, Error> {{ self.model.train_step_batch(&[{in_list}], &[{t_list}]) }}"
    );
    if !steps.is_empty() {
        for (k, st) in steps.iter().enumerate() {
            let _ = writeln!(
                o,
                "/// The training step `{}` alone (the {} of [`{ty}::train_step`]'s {} steps): its forward pass with fresh samples, its loss, and its optimizer's update of its weights. Counts no step: after the last step, [`{ty}::finish_step`] does.\npub fn {}(&mut self, {batch_params}) -> Result<StepStats, Error> {{ self.model.train_one_step({k}, &[{in_list}], &[{t_list}]) }}",
                st.name,
                ordinal(k + 1),
                steps.len(),
                ident(&format!("train_step_{}", st.name))
            );
        }
    }
    if !steps.is_empty() || !g.lags.is_empty() {
        let _ = writeln!(
            o,
            "/// Ends a train step taken step by step: counts it{}.\npub fn finish_step(&mut self) {{ self.model.finish_step() }}",
            if g.lags.is_empty() { "" } else { " and updates the lagged weights" }
        );
    }
    let _ = writeln!(
        o,
        "/// Optimizer steps taken (the random stream of sampled inputs and dropout follows it).\npub fn step(&self) -> u64 {{ self.model.step() }}"
    );
    let _ = writeln!(
        o,
        "/// Trains on a data set with the file's `train` section (epochs, batch size, validation split, schedule, early stopping; progress on stderr); `options` adds a run directory, a step count, a save path.\npub fn fit(&mut self, {batch_params}, options: FitOptions) -> Result<History, Error> {{ let data = ::fm::data::Dataset::new(vec![{in_list}], vec![{t_list}]); self.model.fit_data(&data, None, &options) }}"
    );
    o.push_str("/// One train step on tensors (one per input read from data, then the targets).\npub fn train_step_tensors(&mut self, inputs: &[Tensor], targets: &[Tensor]) -> Result<StepStats, Error> { self.model.train_step_batch(inputs, targets) }\n");
    o.push_str("/// Loads the file's `data` section (train and test splits, transformed) and trains with the file's `train` section.\npub fn fit_file_data(&mut self, options: FitOptions) -> Result<History, Error> { let data = self.model.load_file_data()?; self.model.fit_data(&data.train, data.test.as_ref(), &options) }\n");
    o.push_str("/// The file's `data` section, loaded (paths as resolved when the model was compiled).\npub fn file_data(&self) -> Result<::fm::data::LoadedData, Error> { self.model.load_file_data() }\n");
    o.push_str("/// Loss and metrics over a data set in inference mode (`fmc eval`).\npub fn evaluate(&mut self, data: &::fm::data::Dataset) -> Result<Vec<(String, f64)>, Error> { self.model.evaluate_data(data) }\n");
    let examples: Vec<String> = g
        .params
        .first()
        .into_iter()
        .chain(
            g.lags
                .first()
                .and_then(|l| l.pairs.first())
                .map(|&(_, c)| &g.params[c]),
        )
        .map(|p| format!("`{}`", p.name))
        .collect();
    let _ = writeln!(
        o,
        "/// A parameter by its interchange name ({}).\npub fn param(&self, name: &str) -> Option<ArrayD<f32>> {{ self.model.param(name) }}",
        examples.join(", ")
    );
    o.push_str("/// The runtime model: state, the resolved `train` section, the training-loop backend.\npub fn model(&self) -> &Model { &self.model }\n");
    o.push_str("pub fn model_mut(&mut self) -> &mut Model { &mut self.model }\n");
    o.push_str("}\n");
    let _ = writeln!(
        o,
        "impl Default for {ty} {{ /// Initialised with the `train` section's seed ({}).\nfn default() -> Self {{ Self::new({}) }} }}",
        spec.seed, spec.seed
    );

    // The model description.
    o.push_str("static DEF: ModelDef = ModelDef {\n");
    let _ = writeln!(o, "name: {:?},", g.name);
    let _ = writeln!(o, "source: {source:?},");
    let tensor_def = |name: &str, dt: DType, shape: &[usize], classes: Option<usize>| {
        format!(
            "TensorDef {{ name: {name:?}, dtype: {}, shape: &{}, classes: {} }}",
            dtype(dt),
            usize_list(shape),
            classes.map_or("None".to_string(), |c| format!("Some({c})"))
        )
    };
    let defs = |ops: &[Operand]| {
        ops.iter()
            .map(|x| tensor_def(&x.name, x.dtype, &x.shape, x.classes))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(o, "inputs: &[{}],", defs(&inputs));
    let outs: Vec<String> = g
        .outputs
        .iter()
        .enumerate()
        .map(|(k, x)| tensor_def(&x.name, DType::F32, &out_shape(k), None))
        .collect();
    let _ = writeln!(o, "outputs: &[{}],", outs.join(", "));
    let _ = writeln!(o, "targets: &[{}],", defs(&targets));
    o.push_str("params: &[\n");
    for p in &g.params {
        let _ = writeln!(
            o,
            "ParamDef {{ name: {:?}, shape: &{}, init: {} }},",
            p.name,
            usize_list(&p.shape),
            init_expr(p.init)
        );
    }
    o.push_str("],\nslots: &[\n");
    for (p, name, init) in &slots {
        let _ = writeln!(
            o,
            "SlotDef {{ param: {p}, name: {name:?}, init: {} }},",
            func::f32_lit(*init)
        );
    }
    o.push_str("],\nlags: &[\n");
    for lag in &g.lags {
        let kind = match lag.kind {
            crate::graph::LagKind::Copy { every } => format!("LagKind::Copy {{ every: {every} }}"),
            crate::graph::LagKind::Ema { decay } => {
                format!("LagKind::Ema {{ decay: {} }}", f64_lit(decay))
            }
        };
        let pairs: Vec<String> = lag
            .pairs
            .iter()
            .map(|(a, b)| format!("({a}, {b})"))
            .collect();
        let _ = writeln!(
            o,
            "LagDef {{ call: {:?}, kind: {kind}, pairs: &[{}] }},",
            lag.call,
            pairs.join(", ")
        );
    }
    o.push_str("],\n");
    let spec_json = serde_json::to_string(spec).map_err(|e| e.to_string())?;
    let _ = writeln!(o, "train_spec: {spec_json:?},");
    let notes = Notes::new(g, source);
    let mut code = String::new();
    let mut fn_def = |f: &Function, name: &str, update: bool, what: &str| {
        let fn_inputs = reads(f);
        let frame = frame(f, &slots, g, &fn_inputs, &data_inputs, update)?;
        let emitted = func::emit_function(f, name, &notes, &frame);
        let results: Vec<String> = f
            .results
            .iter()
            .filter_map(|r| match r.kind {
                ResultKind::Loss => Some("ResultKind::Loss".to_string()),
                ResultKind::Output(k) => Some(format!("ResultKind::Output({k})")),
                ResultKind::Metric(k) => Some(format!("ResultKind::Metric({k})")),
                ResultKind::StepLoss(k) => Some(format!("ResultKind::StepLoss({k})")),
                _ => None,
            })
            .collect();
        let workspace: Vec<String> = emitted
            .workspace
            .iter()
            .map(|(a, b)| format!("({a}, {b})"))
            .collect();
        let run = if frame.update { "Step" } else { "Read" };
        let _ = writeln!(code, "{}", comment(what));
        code.push_str(&emitted.code);
        Ok::<_, String>(format!(
            "FnDef {{ name: {name:?}, inputs: &{}, takes_targets: {}, results: &[{}], workspace: &[{}], run: Run::{run}({name}) }}",
            usize_list(&fn_inputs),
            f.args.iter().any(|a| matches!(a.kind, ArgKind::Target)),
            results.join(", "),
            workspace.join(", "),
        ))
    };
    let mut train_defs = Vec::new();
    for (k, f) in fns.train.iter().enumerate() {
        let what = match steps.get(k) {
            Some(st) => {
                let updates = match &st.update {
                    Some(list) => list
                        .iter()
                        .take(4)
                        .map(|&p| format!("`{}`", g.params[p].name))
                        .chain((list.len() > 4).then(|| format!("... ({} tensors)", list.len())))
                        .collect::<Vec<_>>()
                        .join(", "),
                    None => "every weight".to_string(),
                };
                format!(
                    "Training step `{}` (language.md 9.4): forward in training mode with fresh samples, its loss, backward, its optimizer's update of {updates}.",
                    st.name
                )
            }
            None => "The train step: forward in training mode, loss, backward, optimizer update."
                .to_string(),
        };
        train_defs.push(fn_def(f, &ident(&f.name), true, &what)?);
    }
    let eval_def = fn_def(
        &fns.eval,
        "evaluate",
        false,
        match (steps.is_empty(), spec.value_metrics.is_empty()) {
            (true, true) => "Evaluation: forward in inference mode and the loss.",
            (false, true) => "Evaluation: forward in inference mode, the loss and each step's loss.",
            (true, false) => "Evaluation: forward in inference mode, the loss and the batch means of the metrics over model values.",
            (false, false) => "Evaluation: forward in inference mode, the loss, each step's loss and the batch means of the metrics over model values.",
        },
    )?;
    let predict_def = fn_def(
        &fns.predict,
        "predict",
        false,
        "Inference: the forward pass with dropout off and BatchNorm's moving statistics.",
    )?;
    let _ = writeln!(o, "train: &[{}],", train_defs.join(", "));
    let _ = writeln!(o, "eval: {eval_def},");
    let _ = writeln!(o, "predict: {predict_def},");
    o.push_str("};\n");
    o.push_str(&code);
    o.push_str("}\n");
    Ok(o)
}

/// `first`, `second`, ... (for docs).
fn ordinal(k: usize) -> String {
    match k {
        1 => "first".into(),
        2 => "second".into(),
        3 => "third".into(),
        k => format!("{k}th"),
    }
}

/// How `f`'s arguments and results meet the runtime: its inputs (`fn_inputs`, indices into
/// `data_inputs`, the model's inputs read from data) then the targets in `data`, parameters
/// and optimizer slots (`slots`, in `ModelDef` order) in place, the rest in `out`.
fn frame(
    f: &Function,
    slots: &[(usize, String, f64)],
    g: &ModelGraph,
    fn_inputs: &[usize],
    data_inputs: &[usize],
    update: bool,
) -> Result<func::Frame, String> {
    use func::{Bind, Dest};
    let slot_index = |param: usize, slot: &str| {
        slots
            .iter()
            .position(|(p, s, _)| *p == param && s == slot)
            .ok_or_else(|| {
                format!("internal error: slot {slot} of parameter {param} is no train argument")
            })
    };
    let mut targets = 0;
    let mut binds = Vec::new();
    for a in &f.args {
        binds.push(match &a.kind {
            ArgKind::Input => {
                let k = fn_inputs
                    .iter()
                    .position(|&k| g.inputs[data_inputs[k]].name == a.name)
                    .ok_or_else(|| {
                        format!("internal error: `{}` reads no input `{}`", f.name, a.name)
                    })?;
                Bind::Data(k)
            }
            ArgKind::Target => {
                targets += 1;
                Bind::Data(fn_inputs.len() + targets - 1)
            }
            ArgKind::Param(p) => Bind::Param(*p),
            ArgKind::OptSlot { param, slot } => Bind::Slot(slot_index(*param, slot)?),
            ArgKind::LearningRate => Bind::LearningRate,
            ArgKind::Step => Bind::Step,
            // Only fmc's data-parallel training splits the step at the gradients.
            ArgKind::Grad(_) => {
                return Err("internal error: emitted functions take no gradient".into())
            }
        });
    }
    let mut outs = 0;
    let mut dests = Vec::new();
    for r in &f.results {
        dests.push(match &r.kind {
            ResultKind::Loss
            | ResultKind::Output(_)
            | ResultKind::Metric(_)
            | ResultKind::StepLoss(_) => {
                outs += 1;
                Dest::Out(outs - 1)
            }
            ResultKind::Param(p) if update => Dest::Param(*p),
            ResultKind::OptSlot { param, slot } if update => Dest::Slot(slot_index(*param, slot)?),
            _ => {
                return Err(format!(
                    "internal error: `{}` returns `{}`, which the emitted code cannot return",
                    f.name, r.name
                ))
            }
        });
    }
    Ok(func::Frame {
        binds,
        dests,
        params: g.params.len(),
        slots: slots.len(),
        update,
    })
}

fn zero_array(shape: &[usize]) -> String {
    shape
        .iter()
        .rev()
        .fold("0.0f32".to_string(), |t, d| format!("[{t}; {d}]"))
}

/// Drops the comment markers (for the macro: tokens carry no comments).
pub fn strip_comments(code: &str) -> String {
    code.lines()
        .filter(|l| !l.trim_start().starts_with(COMMENT_MARKER))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Pretty-prints emitted code with prettyplease and turns the markers into `//` comments.
pub fn pretty(code: &str) -> Result<String, String> {
    let file = syn::parse_file(code)
        .map_err(|e| format!("internal compiler error: emitted Rust does not parse: {e}"))?;
    let text = prettyplease::unparse(&file);
    let mut out = String::with_capacity(text.len());
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if !trimmed.starts_with(COMMENT_MARKER) {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        // prettyplease may break a long marker over several lines.
        let indent = &line[..line.len() - trimmed.len()];
        let mut call = trimmed.to_string();
        while !call.ends_with(");") {
            match lines.next() {
                Some(next) => call.push_str(next.trim()),
                None => break,
            }
        }
        let lit = call[COMMENT_MARKER.len()..]
            .trim_start_matches('(')
            .trim_end_matches(';')
            .trim_end_matches(')');
        let text: String = syn::parse_str::<syn::LitStr>(lit)
            .map(|l| l.value())
            .unwrap_or_else(|_| lit.to_string());
        for part in text.lines() {
            out.push_str(indent);
            out.push_str("// ");
            out.push_str(part);
            out.push('\n');
        }
    }
    Ok(out)
}
