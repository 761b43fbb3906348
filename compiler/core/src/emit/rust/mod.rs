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
    pub train: Function,
    pub eval: Function,
    pub predict: Function,
}

/// Lowers `graph` for `spec` and runs the passes the JIT runs: the standard pipeline (as
/// `Session::new`), then the backend passes (`passes::backend`: `split_sums`, `split_concats`,
/// `fuse`), whose kernel plan the emitted code follows.
pub fn lower_all(graph: &ModelGraph, spec: &TrainSpec) -> Result<Lowered, String> {
    let train = lower::train_step_fn(graph, spec);
    let eval = lower::eval_fn(graph, spec);
    let predict = lower::predict_fn(graph);
    for f in [&train, &eval, &predict] {
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
        train: compile(&train)?,
        eval: compile(&eval)?,
        predict: compile(&predict)?,
    })
}

/// The first language 0.2 construct (language.md 9) that `g` or `spec` uses, described for a
/// message; the emitter does not generate code for them yet.
pub fn language_0_2_construct(g: &ModelGraph, spec: &TrainSpec) -> Option<String> {
    if let Some((k, _)) = g.sampled.first() {
        return Some(format!(
            "the sampled input `{}` (`~`, 9.2)",
            g.inputs[*k].name
        ));
    }
    if let Some((_, name)) = g.shared.first() {
        return Some(format!(
            "a second call of the named call `{name}` (shared weights, 9.1)"
        ));
    }
    if let Some(lag) = g.lags.first() {
        return Some(format!(
            "lagged weights of the named call `{}` (`weights:`, 9.5)",
            lag.call
        ));
    }
    if let Some(t) = g.targets.first() {
        return Some(format!("the `target` declaration `{}` (9.3)", t.name));
    }
    if let Some(st) = spec.steps.first() {
        return Some(format!("the training step `step {}` (9.4)", st.name));
    }
    if spec.objective.is_some() {
        return Some("a loss expression (`loss:` with an objective, 9.3)".into());
    }
    if let Some((name, _)) = spec.value_metrics.first() {
        return Some(format!("the metric over model values `{name}` (9.3)"));
    }
    None
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
    if let Some(construct) = language_0_2_construct(g, spec) {
        return Err(format!(
            "`model!` and `--emit rust` do not support language 0.2 constructs yet: model `{}` \
             uses {construct}; train and run it with `fmc` (language.md 9)",
            g.name
        ));
    }
    let fns = lower_all(g, spec)?;
    let ty = struct_name(&g.name);
    let module = ident(&g.name);
    let mut o = String::new();

    // Slots in train-function argument order.
    let init_slots = lower::optim::slots(&spec.optimizer);
    let mut slots: Vec<(usize, String, f64)> = Vec::new();
    for a in &fns.train.args {
        if let ArgKind::OptSlot { param, slot } = &a.kind {
            let init = init_slots
                .iter()
                .find(|(n, _)| n == slot)
                .map_or(0.0, |s| s.1);
            slots.push((*param, slot.clone(), init));
        }
    }

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
    o.push_str("use ::fm::compiled::{ops, Arg, Ctx, FnDef, Model, ModelDef, ParamDef, ResultKind, Run, SlotDef, StepStats, TensorDef};\n");
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

    let input = &g.inputs;
    let single = input.len() == 1 && g.outputs.len() == 1;
    let out_shape = |k: usize| g.nodes[g.outputs[k].node].shape.clone();
    let targets: Vec<(String, Vec<usize>, DType, Option<usize>)> = g
        .outputs
        .iter()
        .enumerate()
        .map(|(k, o)| {
            let shape = out_shape(k);
            let loss = spec.losses.get(k).map(|l| l.loss);
            let (t_shape, dt) = lower::loss::target_shape(loss, &shape);
            let classes = matches!(
                loss,
                Some(fm_runtime::config::Loss::SparseCategoricalCrossentropy { .. })
            )
            .then(|| shape.last().copied().unwrap_or(1));
            (format!("{}_target", o.name), t_shape, dt, classes)
        })
        .collect();

    let _ = writeln!(o, "impl {ty} {{");
    let _ = writeln!(
        o,
        "/// The model's name in the `.fm` file.\npub const NAME: &'static str = {:?};",
        g.name
    );
    let _ = writeln!(
        o,
        "/// Per-sample shape of input `{}` (the batch axis is not included).\npub const INPUT_SHAPE: [usize; {}] = {};",
        input[0].name,
        input[0].shape.len(),
        usize_list(&input[0].shape)
    );
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
    let _ = writeln!(
        o,
        "/// Loads weights written by `fmc train` or [`{ty}::save`] (with the optimizer state when the file has it).\npub fn load(path: impl AsRef<std::path::Path>) -> Result<Self, Error> {{ Ok({ty} {{ model: Model::load(&DEF, path)? }}) }}"
    );
    let _ = writeln!(
        o,
        "/// Writes parameters, optimizer state and step as safetensors (the layout of `fmc train`'s files), atomically.\npub fn save(&self, path: impl AsRef<std::path::Path>) -> Result<(), Error> {{ self.model.save(path) }}"
    );
    // predict: one argument per input.
    let in_params: Vec<String> = input
        .iter()
        .map(|i| {
            let name = if input.len() == 1 {
                "x".to_string()
            } else {
                ident(&i.name)
            };
            format!("{name}: ArrayViewD<'_, {}>", rust_type(i.dtype))
        })
        .collect();
    let in_tensors: Vec<String> = input
        .iter()
        .map(|i| {
            let name = if input.len() == 1 {
                "x".to_string()
            } else {
                ident(&i.name)
            };
            let variant = if i.dtype == DType::I32 { "I32" } else { "F32" };
            format!("Tensor::{variant}({name}.to_owned())")
        })
        .collect();
    let expected: Vec<String> = input
        .iter()
        .map(|i| {
            format!(
                "`{}` [batch, {}]",
                i.name,
                i.shape
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
        .collect();
    if g.outputs.len() == 1 {
        let _ = writeln!(
            o,
            "/// Inference on a batch: {} in, `{}` `[batch, {}]` out. A wrong shape is an error naming the expected one.\npub fn predict(&self, {}) -> Result<ArrayD<f32>, Error> {{ let out = self.model.predict_batch(&[{}])?; Ok(out.into_iter().next().map(|t| t.to_f32()).unwrap_or_default()) }}",
            expected.join(", "),
            g.outputs[0].name,
            out_shape(0).iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
            in_params.join(", "),
            in_tensors.join(", ")
        );
    } else {
        let _ = writeln!(
            o,
            "/// Inference on a batch: {} in, the outputs in order out.\npub fn predict(&self, {}) -> Result<Vec<ArrayD<f32>>, Error> {{ let out = self.model.predict_batch(&[{}])?; Ok(out.into_iter().map(|t| t.to_f32()).collect()) }}",
            expected.join(", "),
            in_params.join(", "),
            in_tensors.join(", ")
        );
    }
    if single {
        let i = &input[0];
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
        let (_, _, tdt, _) = &targets[0];
        let _ = writeln!(
            o,
            "/// One optimizer step on a batch with the file's loss, optimizer, schedule and clipping; returns the loss and metrics before the update.\npub fn train_step(&mut self, x: ArrayViewD<'_, {}>, y: ArrayViewD<'_, {}>) -> Result<StepStats, Error> {{ self.model.train_step_batch(&[Tensor::{variant}(x.to_owned())], &[Tensor::{}(y.to_owned())]) }}",
            rust_type(i.dtype),
            rust_type(*tdt),
            if *tdt == DType::I32 { "I32" } else { "F32" }
        );
        let _ = writeln!(
            o,
            "/// Trains on `x`, `y` with the file's `train` section (epochs, batch size, validation split, schedule, early stopping; progress on stderr); `options` adds a run directory, a step count, a save path.\npub fn fit(&mut self, x: ArrayViewD<'_, {}>, y: ArrayViewD<'_, {}>, options: FitOptions) -> Result<History, Error> {{ let data = ::fm::data::Dataset::new(vec![Tensor::{variant}(x.to_owned())], vec![Tensor::{}(y.to_owned())]); self.model.fit_data(&data, None, &options) }}",
            rust_type(i.dtype),
            rust_type(*tdt),
            if *tdt == DType::I32 { "I32" } else { "F32" }
        );
    }
    o.push_str("/// One optimizer step on tensors (one per input, one target per output).\npub fn train_step_tensors(&mut self, inputs: &[Tensor], targets: &[Tensor]) -> Result<StepStats, Error> { self.model.train_step_batch(inputs, targets) }\n");
    o.push_str("/// Loads the file's `data` section (train and test splits, transformed) and trains with the file's `train` section.\npub fn fit_file_data(&mut self, options: FitOptions) -> Result<History, Error> { let data = self.model.load_file_data()?; self.model.fit_data(&data.train, data.test.as_ref(), &options) }\n");
    o.push_str("/// The file's `data` section, loaded (paths as resolved when the model was compiled).\npub fn file_data(&self) -> Result<::fm::data::LoadedData, Error> { self.model.load_file_data() }\n");
    o.push_str("/// Loss and metrics over a data set in inference mode (`fmc eval`).\npub fn evaluate(&mut self, data: &::fm::data::Dataset) -> Result<Vec<(String, f64)>, Error> { self.model.evaluate_data(data) }\n");
    o.push_str("/// A parameter by its interchange name (`dense.kernel`).\npub fn param(&self, name: &str) -> Option<ArrayD<f32>> { self.model.param(name) }\n");
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
    let ins: Vec<String> = input
        .iter()
        .map(|i| tensor_def(&i.name, i.dtype, &i.shape, None))
        .collect();
    let _ = writeln!(o, "inputs: &[{}],", ins.join(", "));
    let outs: Vec<String> = g
        .outputs
        .iter()
        .enumerate()
        .map(|(k, x)| tensor_def(&x.name, DType::F32, &out_shape(k), None))
        .collect();
    let _ = writeln!(o, "outputs: &[{}],", outs.join(", "));
    let tdefs: Vec<String> = targets
        .iter()
        .map(|(n, s, d, c)| tensor_def(n, *d, s, *c))
        .collect();
    let _ = writeln!(o, "targets: &[{}],", tdefs.join(", "));
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
    o.push_str("],\n");
    let spec_json = serde_json::to_string(spec).map_err(|e| e.to_string())?;
    let _ = writeln!(o, "train_spec: {spec_json:?},");
    let notes = Notes::new(g, source);
    let mut code = String::new();
    for (field, f, name, what) in [
        (
            "train",
            &fns.train,
            "train_step",
            "The train step: forward in training mode, loss, backward, optimizer update.",
        ),
        (
            "eval",
            &fns.eval,
            "evaluate",
            "Evaluation: forward in inference mode and the loss.",
        ),
        (
            "predict",
            &fns.predict,
            "predict",
            "Inference: the forward pass with dropout off and BatchNorm's moving statistics.",
        ),
    ] {
        let frame = frame(f, &slots, g, field == "train")?;
        let emitted = func::emit_function(f, name, &notes, &frame);
        let results: Vec<String> = f
            .results
            .iter()
            .filter_map(|r| match r.kind {
                ResultKind::Loss => Some("ResultKind::Loss".to_string()),
                ResultKind::Output(k) => Some(format!("ResultKind::Output({k})")),
                _ => None,
            })
            .collect();
        let workspace: Vec<String> = emitted
            .workspace
            .iter()
            .map(|(a, b)| format!("({a}, {b})"))
            .collect();
        let run = if frame.update { "Step" } else { "Read" };
        let _ = writeln!(
            o,
            "{field}: FnDef {{ takes_targets: {}, results: &[{}], workspace: &[{}], run: Run::{run}({name}) }},",
            f.args.iter().any(|a| matches!(a.kind, ArgKind::Target)),
            results.join(", "),
            workspace.join(", ")
        );
        let _ = writeln!(code, "{}", comment(what));
        code.push_str(&emitted.code);
    }
    o.push_str("};\n");
    o.push_str(&code);
    o.push_str("}\n");
    Ok(o)
}

/// How `f`'s arguments and results meet the runtime: inputs then targets in `data`, parameters
/// and optimizer slots (`slots` in train-argument order) in place, the rest in `out`.
fn frame(
    f: &Function,
    slots: &[(usize, String, f64)],
    g: &ModelGraph,
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
    let mut inputs = 0;
    let mut targets = 0;
    let mut binds = Vec::new();
    for a in &f.args {
        binds.push(match &a.kind {
            ArgKind::Input => {
                let k = g
                    .inputs
                    .iter()
                    .position(|i| i.name == a.name)
                    .unwrap_or(inputs);
                inputs += 1;
                Bind::Data(k)
            }
            ArgKind::Target => {
                targets += 1;
                Bind::Data(g.inputs.len() + targets - 1)
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
            ResultKind::Loss | ResultKind::Output(_) => {
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
