//! What Rust generated from a `.fm` file (`model!`, `fmc compile --emit rust`) links against.
//!
//! The generated code holds the model's IR functions (one train step per `step` of the `train`
//! section, evaluation, inference) as plain Rust over slices, and a [`ModelDef`] describing
//! them: inputs read from data, targets, parameters and their initialisers (lagged copies
//! included), optimizer slots, lagged weights, the resolved `train` section. [`Model`] is
//! everything else, shared by every generated model: the state (parameters, optimizer slots,
//! step), shape checks, running the steps in order and refreshing lagged weights as `fmc train`
//! does, binding to the training loop ([`crate::train::Backend`], so `fit` is the runtime's
//! loop with its schedules, validation, callbacks and checkpoints), and weights files in the
//! safetensors layout `fmc` reads and writes. [`ops`] holds the operations that are not plain
//! elementwise loops (GEMM, convolution and pooling call [`crate::kernels`], as the JIT does).

pub mod ops;

use crate::config::{Loss, TrainSpec};
use crate::data::{load_data, Dataset, LoadOptions, LoadedData, ModelData, TensorSpec};
use crate::error::fmt_shape;
use crate::init::{draw, Init};
use crate::metrics::{metric_defs, MetricSet};
use crate::random::Rng;
use crate::tensor::{DType, Tensor};
use crate::train::schedule::LrSchedule;
use crate::train::{self, Backend, FitOptions, History, StepOutput};
use crate::weights::{load_weights, save_weights, WeightsMeta, OPT_PREFIX};
use crate::{ErrorKind, RuntimeError};
use ndarray::{ArrayD, ArrayViewD, IxDyn};
use std::path::Path;

/// A model input, output or training target: name, dtype and per-sample shape.
#[derive(Clone, Copy, Debug)]
pub struct TensorDef {
    pub name: &'static str,
    pub dtype: DType,
    pub shape: &'static [usize],
    /// For class-index targets: the number of classes.
    pub classes: Option<usize>,
}

/// A parameter (or BatchNorm statistic) in the order of language.md section 7.
#[derive(Clone, Copy, Debug)]
pub struct ParamDef {
    pub name: &'static str,
    pub shape: &'static [usize],
    pub init: Init,
}

/// An optimizer slot (`m`, `v`, ...) of a parameter, with its initial value.
#[derive(Clone, Copy, Debug)]
pub struct SlotDef {
    pub param: usize,
    pub name: &'static str,
    pub init: f32,
}

/// What a generated function returns in its `out` buffers (parameters and optimizer slots are
/// updated in place, not returned).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResultKind {
    /// The batch's mean loss: one value.
    Loss,
    /// Model output number k: `[batch, ...]`.
    Output(usize),
    /// The batch mean of metric over model values number k of the `train` section
    /// (`TrainSpec::value_metrics`, language.md 9.3): one value.
    Metric(usize),
    /// In evaluation, the loss of `step` number k of the `train` section (language.md 9.4),
    /// reported as `NAME_loss`: one value.
    StepLoss(usize),
}

/// The batch size, learning rate and random stream of one call, and the first error a kernel
/// reported. Random numbers (dropout masks, sampled inputs) are a pure function of (`seed`,
/// `step`, salt, index), the counter-based stream of the interpreter and the JIT.
#[derive(Debug)]
pub struct Ctx {
    pub batch: usize,
    pub seed: u64,
    /// Optimizer steps taken before this call (the train step takes step `step + 1`).
    pub step: u64,
    /// The learning rate of this step (train step only).
    pub lr: f32,
    error: std::cell::RefCell<Option<RuntimeError>>,
}

impl Ctx {
    pub fn new(batch: usize, seed: u64, step: u64, lr: f32) -> Ctx {
        Ctx {
            batch,
            seed,
            step,
            lr,
            error: std::cell::RefCell::new(None),
        }
    }

    /// Records a kernel's error (the first one is kept).
    pub fn fail(&self, e: RuntimeError) {
        let mut slot = self.error.borrow_mut();
        if slot.is_none() {
            *slot = Some(e);
        }
    }

    /// Records that generated code was handed buffers it was not generated for (a different
    /// number of parameters, slots, workspace buffers or results).
    pub fn mismatch(&self) {
        self.fail(RuntimeError::backend(
            "internal error: generated code called with buffers of another model",
        ));
    }

    pub fn take_error(&self) -> Option<RuntimeError> {
        self.error.borrow_mut().take()
    }
}

/// An argument of a generated function: row-major data.
#[derive(Clone, Copy, Debug)]
pub enum Arg<'a> {
    F32(&'a [f32]),
    I32(&'a [i32]),
}

impl<'a> Arg<'a> {
    /// The f32 data (an i32 argument where f32 is expected is a code generator bug; it reads as
    /// empty, which the kernels' length checks report).
    pub fn f32(self) -> &'a [f32] {
        match self {
            Arg::F32(s) => s,
            Arg::I32(_) => &[],
        }
    }
    pub fn i32(self) -> &'a [i32] {
        match self {
            Arg::I32(s) => s,
            Arg::F32(_) => &[],
        }
    }
    /// A scalar argument (learning rate, step).
    pub fn scalar(self) -> f32 {
        self.f32().first().copied().unwrap_or(0.0)
    }
}

/// The train step as generated: `(ctx, data, params, slots, workspace, out)`. `data` holds the
/// inputs then the targets, `params` and `slots` are updated in place, `workspace` holds the
/// buffers of [`FnDef::workspace`], `out` the results of [`FnDef::results`] (sized by the caller).
pub type StepFn =
    fn(&Ctx, &[Arg<'_>], &mut [Vec<f32>], &mut [Vec<f32>], &mut [Vec<f32>], &mut [Vec<f32>]);

/// Evaluation and inference as generated: `(ctx, data, params, workspace, out)`.
pub type ReadFn = fn(&Ctx, &[Arg<'_>], &[Vec<f32>], &mut [Vec<f32>], &mut [Vec<f32>]);

/// A generated function's code.
#[derive(Clone, Copy)]
pub enum Run {
    /// Updates the parameters and optimizer slots (the train step).
    Step(StepFn),
    /// Reads the parameters (evaluation, inference).
    Read(ReadFn),
}

/// A generated function: what it takes and returns, its planned workspace, and the code.
#[derive(Clone, Copy)]
pub struct FnDef {
    /// The generated function's name (`train_step`, `train_step_disc`, `evaluate`, `predict`).
    pub name: &'static str,
    /// The inputs `data` holds first, as indices into [`ModelDef::inputs`]: every input read
    /// from data, or for inference only those its outputs need (language.md 9.2).
    pub inputs: &'static [usize],
    /// Whether `data` holds the targets after the inputs.
    pub takes_targets: bool,
    pub results: &'static [ResultKind],
    /// The workspace the code's memory plan needs: buffer `k` holds at least
    /// `per_sample * batch + fixed` values for `(per_sample, fixed) = workspace[k]`. Values
    /// whose lifetimes do not overlap share a buffer, so this is the peak working set.
    pub workspace: &'static [(usize, usize)],
    pub run: Run,
}

impl FnDef {
    /// Elements of workspace at batch size `batch` (the peak working set, in f32 values).
    pub fn workspace_len(&self, batch: usize) -> usize {
        self.workspace.iter().map(|(a, b)| a * batch + b).sum()
    }
}

/// A generated function's buffers, kept between calls so a step allocates nothing once a batch
/// size has run.
#[derive(Default)]
struct Scratch {
    workspace: Vec<Vec<f32>>,
    out: Vec<Vec<f32>>,
}

impl Scratch {
    /// Grows the workspace for `batch` (never shrinks it) and sizes the results.
    fn prepare(&mut self, def: &'static ModelDef, f: &FnDef, batch: usize) {
        self.workspace.resize_with(f.workspace.len(), Vec::new);
        for (buf, (a, b)) in self.workspace.iter_mut().zip(f.workspace) {
            let need = a * batch + b;
            if buf.len() < need {
                buf.resize(need, 0.0);
            }
        }
        self.out.resize_with(f.results.len(), Vec::new);
        for (buf, r) in self.out.iter_mut().zip(f.results) {
            let len = match r {
                ResultKind::Loss | ResultKind::Metric(_) | ResultKind::StepLoss(_) => 1,
                ResultKind::Output(k) => batch * def.outputs[*k].shape.iter().product::<usize>(),
            };
            buf.resize(len, 0.0);
        }
    }
}

/// How a lagged copy of a named call's weights follows the live ones (language.md 9.5).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LagKind {
    /// Refreshed with the live weights after every `every`-th step.
    Copy { every: u64 },
    /// `lag = decay * lag + (1 - decay) * live` after every step.
    Ema { decay: f64 },
}

/// A lagged copy of a named call's weights: parameters `lag/CALL/PARAM` of [`ModelDef::params`]
/// that no gradient reaches and [`Model`] updates after each step.
#[derive(Clone, Copy, Debug)]
pub struct LagDef {
    /// The named call (`qn`).
    pub call: &'static str,
    pub kind: LagKind,
    /// (live parameter, its lagged copy), indices into [`ModelDef::params`].
    pub pairs: &'static [(usize, usize)],
}

/// Everything generated code tells the runtime about a model.
pub struct ModelDef {
    pub name: &'static str,
    /// The `.fm` source (its hash goes into weights files, as `fmc`'s).
    pub source: &'static str,
    /// The inputs read from data, in model order (sampled inputs are drawn by the generated
    /// code, language.md 9.2).
    pub inputs: &'static [TensorDef],
    pub outputs: &'static [TensorDef],
    /// One per output, or the `target` declarations when a loss expression reads them (9.3).
    pub targets: &'static [TensorDef],
    pub params: &'static [ParamDef],
    /// Every step's optimizer slots (a parameter two steps update has a set per step).
    pub slots: &'static [SlotDef],
    /// Lagged weights (9.5).
    pub lags: &'static [LagDef],
    /// The resolved `train` section (a [`TrainSpec`] as JSON).
    pub train_spec: &'static str,
    /// The train step: one function per `step` of the `train` section (language.md 9.4), run
    /// in order on each batch; one function when the section has a single loss.
    pub train: &'static [FnDef],
    pub eval: FnDef,
    pub predict: FnDef,
}

/// Loss, metrics and step count after one [`Model::train_step`].
#[derive(Clone, Debug, PartialEq)]
pub struct StepStats {
    /// The batch's mean loss (including regularisers) before the update.
    pub loss: f64,
    /// The file's metrics before the update, by name: the metrics over model values
    /// (`mean_q`, language.md 9.3) as batch means, then the metrics of the outputs, in the
    /// order of `fmc train`'s logs.
    pub metrics: Vec<(String, f64)>,
    /// Each step's loss (`disc_loss`) when the `train` section has `step`s (their sum is
    /// `loss`).
    pub step_losses: Vec<(String, f64)>,
    /// Optimizer steps taken so far (including this one).
    pub step: u64,
}

/// A generated model's state and everything generic about running it.
pub struct Model {
    def: &'static ModelDef,
    spec: TrainSpec,
    params: Vec<Vec<f32>>,
    slots: Vec<Vec<f32>>,
    step: u64,
    /// Buffers of evaluation, inference and each train step function, in that order.
    scratch: Vec<std::sync::Mutex<Scratch>>,
}

/// Which generated function.
#[derive(Clone, Copy)]
enum Which {
    Eval,
    Predict,
    /// Train step function `k` of [`ModelDef::train`].
    Train(usize),
}

impl Which {
    /// Index into [`Model::scratch`].
    fn index(self) -> usize {
        match self {
            Which::Eval => 0,
            Which::Predict => 1,
            Which::Train(k) => 2 + k,
        }
    }
}

fn scratch_for(def: &ModelDef) -> Vec<std::sync::Mutex<Scratch>> {
    (0..2 + def.train.len())
        .map(|_| Default::default())
        .collect()
}

fn shape_error(message: String) -> RuntimeError {
    RuntimeError::without_path(ErrorKind::Shape, message)
}

/// A row-major copy of a tensor's data (no copy when it already is).
fn flat<T: Clone>(a: &ArrayD<T>) -> std::borrow::Cow<'_, [T]> {
    match a.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(a.iter().cloned().collect()),
    }
}

enum Bound<'a> {
    F(std::borrow::Cow<'a, [f32]>),
    I(std::borrow::Cow<'a, [i32]>),
}

impl Model {
    /// Fresh parameters drawn from the file's initialisers with `seed` (as `fmc train` with
    /// `seed: SEED`), optimizer slots at their initial values, step 0.
    pub fn new(def: &'static ModelDef, seed: u64) -> Self {
        let mut spec: TrainSpec = match serde_json::from_str(def.train_spec) {
            Ok(s) => s,
            // Generated code always embeds a valid spec; a mismatch means the generated code
            // and this runtime come from different fm versions.
            Err(e) => panic!(
                "model `{}` was generated by another fm version (train spec: {e})",
                def.name
            ),
        };
        spec.seed = seed;
        let mut params: Vec<Vec<f32>> = Vec::with_capacity(def.params.len());
        for (i, p) in def.params.iter().enumerate() {
            let v = match p.init {
                // A lagged copy starts equal to its live parameter (language.md 9.5).
                Init::CopyOf(src) if src < params.len() => params[src].clone(),
                init => {
                    draw(init, p.shape, &mut Rng::new(seed, i as u64))
                        .into_raw_vec_and_offset()
                        .0
                }
            };
            params.push(v);
        }
        let slots = def
            .slots
            .iter()
            .map(|s| vec![s.init; def.params[s.param].shape.iter().product()])
            .collect();
        Model {
            def,
            spec,
            params,
            slots,
            step: 0,
            scratch: scratch_for(def),
        }
    }

    pub fn def(&self) -> &'static ModelDef {
        self.def
    }

    /// The resolved `train` section (with the seed given to [`Model::new`]).
    pub fn spec(&self) -> &TrainSpec {
        &self.spec
    }

    pub fn spec_mut(&mut self) -> &mut TrainSpec {
        &mut self.spec
    }

    /// Optimizer steps taken.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Total number of parameter values (BatchNorm statistics included, as `fmc summary`).
    pub fn param_count(&self) -> usize {
        self.params.iter().map(Vec::len).sum()
    }

    /// A parameter by its interchange name (`dense.kernel`).
    pub fn param(&self, name: &str) -> Option<ArrayD<f32>> {
        let k = self.def.params.iter().position(|p| p.name == name)?;
        ArrayD::from_shape_vec(IxDyn(self.def.params[k].shape), self.params[k].clone()).ok()
    }

    /// Loads a weights file written by `fmc train` or [`Model::save`]: parameters, and the
    /// optimizer state and step when the file has them. Missing, unknown or mis-shaped tensors
    /// are errors naming the tensor, except a lagged copy (`lag/CALL/PARAM`, language.md 9.5)
    /// the file lacks: it starts equal to the file's `PARAM`, as with `fmc train --init`.
    pub fn load(def: &'static ModelDef, path: impl AsRef<Path>) -> Result<Self, RuntimeError> {
        let path = path.as_ref();
        let mut file = load_weights(path)?;
        let mut model = Model::new(def, 0);
        if let Some(seed) = serde_json::from_str::<TrainSpec>(def.train_spec)
            .ok()
            .map(|s| s.seed)
        {
            model.spec.seed = seed;
        }
        for lag in def.lags {
            for &(live, copy) in lag.pairs {
                let copy_name = def.params[copy].name;
                if file.get(copy_name).is_none() {
                    if let Some(t) = file.get(def.params[live].name).cloned() {
                        file.tensors.push((copy_name.to_string(), t));
                    }
                }
            }
        }
        let params = file.without_optimizer_state();
        let expected: Vec<(String, Vec<usize>)> = def
            .params
            .iter()
            .map(|p| (p.name.to_string(), p.shape.to_vec()))
            .collect();
        crate::weights::check_tensors(path, &params, &expected)?;
        let with_opt = file.tensors.len() > params.len();
        let all = if with_opt { &file.tensors } else { &params };
        model
            .set_state(all)
            .map_err(|e| RuntimeError::at(ErrorKind::Weights, path, e.message))?;
        Ok(model)
    }

    /// Writes parameters, optimizer state and step as safetensors (atomically), in the layout
    /// of `fmc train`'s `weights.safetensors`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), RuntimeError> {
        let mut meta = WeightsMeta::new(self.def.name, self.def.source.as_bytes());
        meta.step = self.step;
        save_weights(path.as_ref(), &self.state(), &meta)
    }

    fn check_samples(
        defs: &[&TensorDef],
        shapes: &[&[usize]],
        what: &str,
    ) -> Result<Option<usize>, RuntimeError> {
        if shapes.len() != defs.len() {
            return Err(shape_error(format!(
                "expected {} {what} tensor(s), got {}",
                defs.len(),
                shapes.len()
            )));
        }
        let mut batch = None;
        for (d, s) in defs.iter().zip(shapes) {
            let ok = !s.is_empty() && s[1..] == *d.shape;
            if !ok {
                return Err(shape_error(
                    format!(
                        "{what} `{}` has shape {}, expected [batch, {}]",
                        d.name,
                        fmt_shape(s),
                        d.shape
                            .iter()
                            .map(|x| x.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                    .replace("[batch, ]", "[batch]"),
                ));
            }
            match batch {
                None => batch = Some(s[0]),
                Some(b) if b != s[0] => {
                    return Err(shape_error(format!(
                        "{what} `{}` has {} samples, the others {b}",
                        d.name, s[0]
                    )))
                }
                _ => {}
            }
        }
        Ok(batch)
    }

    /// The inputs `f` reads out of `inputs`, which holds either every input read from data
    /// ([`ModelDef::inputs`]) or exactly those `f` reads ([`FnDef::inputs`]).
    fn select<'a>(&self, f: &FnDef, inputs: &'a [Tensor]) -> Vec<&'a Tensor> {
        if inputs.len() == self.def.inputs.len() && inputs.len() != f.inputs.len() {
            f.inputs.iter().filter_map(|&k| inputs.get(k)).collect()
        } else {
            inputs.iter().collect()
        }
    }

    /// Checks and binds a batch's inputs (and targets when `f` takes them): the `data`
    /// argument of generated code, and the batch size (`samples` when no input gives it: an
    /// inference whose inputs are all drawn).
    fn bind<'a>(
        &self,
        f: &FnDef,
        inputs: &'a [Tensor],
        targets: &'a [Tensor],
        samples: Option<usize>,
    ) -> Result<(Vec<Bound<'a>>, usize), RuntimeError> {
        let selected = self.select(f, inputs);
        let defs: Vec<&TensorDef> = f.inputs.iter().map(|&k| &self.def.inputs[k]).collect();
        let in_shapes: Vec<&[usize]> = selected.iter().map(|t| t.shape()).collect();
        let found = Self::check_samples(&defs, &in_shapes, "input")?;
        // Inputs `f` does not read still give the batch size (as `fmc predict` counts them).
        let batch = found
            .or(samples)
            .or_else(|| inputs.first().map(Tensor::len))
            .unwrap_or(0);
        let mut bound: Vec<Bound> = selected
            .iter()
            .zip(&defs)
            .map(|(t, d)| conform(t, d.dtype))
            .collect();
        if f.takes_targets {
            if targets.len() != self.def.targets.len() {
                return Err(shape_error(format!(
                    "expected {} target tensor(s), got {}",
                    self.def.targets.len(),
                    targets.len()
                )));
            }
            for (t, d) in targets.iter().zip(self.def.targets) {
                let want: usize = batch * d.shape.iter().product::<usize>();
                if t.len() != batch || t.shape().iter().product::<usize>() != want {
                    return Err(shape_error(format!(
                        "target `{}` has shape {}, expected {}",
                        d.name,
                        fmt_shape(t.shape()),
                        fmt_shape(&[&[batch][..], d.shape].concat())
                    )));
                }
                bound.push(conform(t, d.dtype));
            }
        }
        Ok((bound, batch))
    }

    /// Runs train step function `k` on a batch, updating parameters and slots in place;
    /// returns the results of [`FnDef::results`] (loss, outputs) and the batch size. Counts
    /// no step.
    fn run_step(
        &mut self,
        k: usize,
        inputs: &[Tensor],
        targets: &[Tensor],
        lr: f32,
    ) -> Result<(Vec<Vec<f32>>, usize), RuntimeError> {
        let f = *self
            .def
            .train
            .get(k)
            .ok_or_else(|| RuntimeError::backend(format!("the model has no train step {k}")))?;
        let (bound, batch) = self.bind(&f, inputs, targets, None)?;
        let data: Vec<Arg> = bound.iter().map(as_arg).collect();
        let ctx = Ctx::new(batch, self.spec.seed, self.step, lr);
        let scratch = self.scratch[Which::Train(k).index()]
            .get_mut()
            .unwrap_or_else(|e| e.into_inner());
        scratch.prepare(self.def, &f, batch);
        let flush = crate::kernels::FlushDenormals::enable();
        match f.run {
            Run::Step(run) => run(
                &ctx,
                &data,
                &mut self.params,
                &mut self.slots,
                &mut scratch.workspace,
                &mut scratch.out,
            ),
            Run::Read(run) => run(
                &ctx,
                &data,
                &self.params,
                &mut scratch.workspace,
                &mut scratch.out,
            ),
        }
        drop(flush);
        match ctx.take_error() {
            Some(e) => Err(e),
            None => Ok((scratch.out.clone(), batch)),
        }
    }

    /// Runs evaluation or inference on a batch; returns the results of [`FnDef::results`] and
    /// the batch size.
    fn run_read(
        &self,
        which: Which,
        inputs: &[Tensor],
        targets: &[Tensor],
        samples: Option<usize>,
    ) -> Result<(Vec<Vec<f32>>, usize), RuntimeError> {
        let f = match which {
            Which::Eval => self.def.eval,
            _ => self.def.predict,
        };
        let (bound, batch) = self.bind(&f, inputs, targets, samples)?;
        let data: Vec<Arg> = bound.iter().map(as_arg).collect();
        let ctx = Ctx::new(batch, self.spec.seed, self.step, 0.0);
        // Another thread running the same function meanwhile gets buffers of its own.
        let mut own = Scratch::default();
        let mut guard = self.scratch[which.index()].try_lock().ok();
        let scratch = guard.as_deref_mut().unwrap_or(&mut own);
        scratch.prepare(self.def, &f, batch);
        let Run::Read(run) = f.run else {
            return Err(RuntimeError::backend(
                "internal error: generated evaluation updates the parameters",
            ));
        };
        let flush = crate::kernels::FlushDenormals::enable();
        run(
            &ctx,
            &data,
            &self.params,
            &mut scratch.workspace,
            &mut scratch.out,
        );
        drop(flush);
        match ctx.take_error() {
            Some(e) => Err(e),
            None => Ok((scratch.out.clone(), batch)),
        }
    }

    fn outputs(&self, batch: usize, results: Vec<Vec<f32>>, f: &FnDef) -> Vec<Tensor> {
        f.results
            .iter()
            .zip(results)
            .filter_map(|(r, v)| match r {
                ResultKind::Output(k) => {
                    let shape = [&[batch][..], self.def.outputs[*k].shape].concat();
                    Some(Tensor::F32(
                        ArrayD::from_shape_vec(IxDyn(&shape), v).unwrap_or_default(),
                    ))
                }
                _ => None,
            })
            .collect()
    }

    /// Inference on a batch (`[batch, ...]`), in output order: `inputs` holds the inputs the
    /// outputs need ([`FnDef::inputs`] of [`ModelDef::predict`]), or every input read from
    /// data. Sampled inputs are drawn from the stream of step [`Model::step`]. A wrong shape is
    /// an error naming the expected one.
    pub fn predict_batch(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
        let (results, batch) = self.run_read(Which::Predict, inputs, &[], None)?;
        Ok(self.outputs(batch, results, &self.def.predict))
    }

    /// Inference on `n` samples when every input the outputs need is drawn (language.md 9.2,
    /// `fmc predict --samples N`: a GAN's generator). An error names the inputs it would
    /// need otherwise.
    pub fn predict_samples(&self, n: usize) -> Result<Vec<Tensor>, RuntimeError> {
        if !self.def.predict.inputs.is_empty() {
            let names: Vec<String> = self
                .def
                .predict
                .inputs
                .iter()
                .map(|&k| format!("`{}`", self.def.inputs[k].name))
                .collect();
            return Err(RuntimeError::without_path(
                ErrorKind::DataSetup,
                format!(
                    "the outputs of model `{}` also need {}: predict them from inputs",
                    self.def.name,
                    names.join(", ")
                ),
            ));
        }
        let (results, batch) = self.run_read(Which::Predict, &[], &[], Some(n))?;
        Ok(self.outputs(batch, results, &self.def.predict))
    }

    /// Inference on one f32 input: `[batch, ...]` in, the first output out.
    pub fn predict_f32(&self, x: ArrayViewD<'_, f32>) -> Result<ArrayD<f32>, RuntimeError> {
        let out = self.predict_batch(&[Tensor::F32(x.to_owned())])?;
        first_f32(out)
    }

    /// Inference on one i32 (token) input.
    pub fn predict_i32(&self, x: ArrayViewD<'_, i32>) -> Result<ArrayD<f32>, RuntimeError> {
        let out = self.predict_batch(&[Tensor::I32(x.to_owned())])?;
        first_f32(out)
    }

    /// The learning rate of the file's schedule at step [`Model::step`] (epoch-based schedules
    /// count it as epoch 0).
    fn scheduled_lr(&self) -> f32 {
        let schedule = LrSchedule::new(self.spec.optimizer.lr, &self.spec.schedule, 1, 1);
        schedule.lr(self.step, 0)
    }

    /// One optimizer step on a batch with the file's loss, optimizer, schedule and clipping
    /// (the learning rate of step `step()`; epoch-based schedules count this as epoch 0):
    /// every `step` of the `train` section in order, then the lagged weights.
    pub fn train_step_batch(
        &mut self,
        inputs: &[Tensor],
        targets: &[Tensor],
    ) -> Result<StepStats, RuntimeError> {
        let lr = self.scheduled_lr();
        let rates: Vec<f32> = (0..self.def.train.len())
            .map(|k| self.step_lr(k, lr))
            .collect();
        let out = Backend::train_step_rates(self, inputs, targets, &rates)?;
        let steps = self.spec.steps.len();
        let mut extra = out.extra;
        let values = extra.split_off(steps.min(extra.len()));
        let mut metrics = MetricSet::new(metric_defs(&self.spec));
        metrics.update(&out.outputs, targets)?;
        Ok(StepStats {
            loss: out.loss,
            metrics: values.into_iter().chain(metrics.metric_values()).collect(),
            step_losses: extra,
            step: self.step,
        })
    }

    /// The learning rate of train step function `k` at step [`Model::step`] when the section's
    /// is `lr`: the step's own `schedule:` (counted in steps, epoch 0), or the section's rate
    /// scaled to the step's optimizer's (as `fmc train` does).
    fn step_lr(&self, k: usize, lr: f32) -> f32 {
        match self.spec.steps.get(k) {
            Some(st) if st.schedule.is_some() => {
                let sch = st.schedule.as_ref().expect("checked");
                LrSchedule::new(st.optimizer.lr, sch, 1, 1).lr(self.step, 0)
            }
            Some(st) if self.spec.optimizer.lr != 0.0 => {
                (lr as f64 * st.optimizer.lr / self.spec.optimizer.lr) as f32
            }
            _ => lr,
        }
    }

    /// Runs train step function `k` (the `k`-th `step` of the `train` section) with the
    /// section's learning rate `lr`: its loss, outputs and metrics over model values (the last
    /// step computes them) before its update. Counts no step.
    fn take_step(
        &mut self,
        k: usize,
        inputs: &[Tensor],
        targets: &[Tensor],
        lr: f32,
    ) -> Result<Taken, RuntimeError> {
        let (results, batch) = self.run_step(k, inputs, targets, lr)?;
        let f = self.def.train[k];
        Ok(Taken {
            loss: loss_of(&f, &results),
            values: self.named_values(&f, &results),
            outputs: self.outputs(batch, results, &f),
        })
    }

    /// The named values `f` computed besides the loss, in its result order: each step's loss
    /// (evaluation, `NAME_loss`, language.md 9.4) and the metrics over model values (9.3).
    fn named_values(&self, f: &FnDef, results: &[Vec<f32>]) -> Vec<(String, f64)> {
        f.results
            .iter()
            .zip(results)
            .filter_map(|(r, v)| {
                let name = match r {
                    ResultKind::Metric(i) => self.spec.value_metrics.get(*i)?.0.clone(),
                    ResultKind::StepLoss(k) => format!("{}_loss", self.spec.steps.get(*k)?.name),
                    _ => return None,
                };
                Some((name, v.first().copied().unwrap_or(f32::NAN) as f64))
            })
            .collect()
    }

    /// One `step` of the `train` section alone (language.md 9.4; `k` in the order written):
    /// its forward pass, loss, gradients and optimizer update, with the learning rate of step
    /// [`Model::step`]. It counts no step and leaves the lagged weights: a full train step is
    /// every step in order, then [`Model::finish_step`] (what [`Model::train_step_batch`]
    /// does). Returns the step's loss and the file's metrics on its outputs.
    pub fn train_one_step(
        &mut self,
        k: usize,
        inputs: &[Tensor],
        targets: &[Tensor],
    ) -> Result<StepStats, RuntimeError> {
        let lr = self.step_lr(k, self.scheduled_lr());
        let taken = self.take_step(k, inputs, targets, lr)?;
        let mut metrics = MetricSet::new(metric_defs(&self.spec));
        metrics.update(&taken.outputs, targets)?;
        let step_losses = match self.spec.steps.get(k) {
            Some(st) => vec![(format!("{}_loss", st.name), taken.loss)],
            None => vec![],
        };
        Ok(StepStats {
            loss: taken.loss,
            metrics: taken
                .values
                .into_iter()
                .chain(metrics.metric_values())
                .collect(),
            step_losses,
            step: self.step,
        })
    }

    /// Ends a train step taken step by step ([`Model::train_one_step`]): counts it and
    /// updates the lagged weights (language.md 9.5), a copy refreshed every N steps or an
    /// exponential moving average.
    pub fn finish_step(&mut self) {
        self.step += 1;
        for lag in self.def.lags {
            match lag.kind {
                LagKind::Copy { every } => {
                    if every > 0 && self.step.is_multiple_of(every) {
                        for &(live, copy) in lag.pairs {
                            let w = self.params[live].clone();
                            self.params[copy].copy_from_slice(&w);
                        }
                    }
                }
                LagKind::Ema { decay } => {
                    let d = decay as f32;
                    for &(live, copy) in lag.pairs {
                        let (w, l) = pair_mut(&mut self.params, live, copy);
                        for (l, &w) in l.iter_mut().zip(w.iter()) {
                            *l = d * *l + (1.0 - d) * w;
                        }
                    }
                }
            }
        }
    }

    /// Loss and metrics over a data set in inference mode.
    pub fn evaluate_data(&mut self, data: &Dataset) -> Result<Vec<(String, f64)>, RuntimeError> {
        let defs = metric_defs(&self.spec);
        let batch = self.spec.batch_size;
        train::evaluate(self, data, batch, &defs)
    }

    /// Trains with the file's `train` section (epochs, batch size, validation, callbacks,
    /// progress on stderr) on `train`, validating on `test` when the section says so.
    pub fn fit_data(
        &mut self,
        train_data: &Dataset,
        test: Option<&Dataset>,
        options: &FitOptions,
    ) -> Result<History, RuntimeError> {
        let mut options = options.clone();
        if options.meta.model.is_empty() {
            options.meta = WeightsMeta::new(self.def.name, self.def.source.as_bytes());
        }
        let spec = self.spec.clone();
        train::fit(self, &spec, train_data, test, &options)
    }

    /// The model's inputs and targets as the data loaders describe them.
    pub fn model_data(&self) -> ModelData {
        let spec = |d: &TensorDef| {
            let t = TensorSpec::new(d.name, d.dtype, d.shape);
            match d.classes {
                Some(c) => t.with_classes(c),
                None => t,
            }
        };
        ModelData {
            inputs: self.def.inputs.iter().map(spec).collect(),
            targets: self.def.targets.iter().map(spec).collect(),
        }
    }

    /// Loads the file's `data` section (paths as resolved when the model was compiled) with
    /// its transforms and test split.
    pub fn load_file_data(&self) -> Result<LoadedData, RuntimeError> {
        match &self.spec.data {
            Some(d) => load_data(d, &self.model_data(), LoadOptions::default()),
            None => Err(RuntimeError::without_path(
                ErrorKind::DataSetup,
                format!(
                    "model `{}`: the `train` section names no `data`",
                    self.def.name
                ),
            )),
        }
    }

    /// Whether the first output's loss takes class indices (sparse categorical).
    pub fn sparse_targets(&self) -> bool {
        matches!(
            self.spec.losses.first().map(|l| l.loss),
            Some(Loss::SparseCategoricalCrossentropy { .. })
        )
    }
}

/// What one train step function returned.
struct Taken {
    loss: f64,
    outputs: Vec<Tensor>,
    /// The metrics over model values, by name (empty but for the last step).
    values: Vec<(String, f64)>,
}

/// The loss among `f`'s results (NaN if it has none).
fn loss_of(f: &FnDef, results: &[Vec<f32>]) -> f64 {
    f.results
        .iter()
        .zip(results)
        .find(|(r, _)| **r == ResultKind::Loss)
        .and_then(|(_, v)| v.first().copied())
        .unwrap_or(f32::NAN) as f64
}

/// Parameter `a` to read and parameter `b` to write (`a != b`).
fn pair_mut(params: &mut [Vec<f32>], a: usize, b: usize) -> (&[f32], &mut [f32]) {
    if a < b {
        let (lo, hi) = params.split_at_mut(b);
        (&lo[a], &mut hi[0])
    } else {
        let (lo, hi) = params.split_at_mut(a);
        (&hi[0], &mut lo[b])
    }
}

fn first_f32(out: Vec<Tensor>) -> Result<ArrayD<f32>, RuntimeError> {
    match out.into_iter().next() {
        Some(Tensor::F32(a)) => Ok(a),
        Some(t) => Ok(t.to_f32()),
        None => Err(RuntimeError::backend("the model has no output")),
    }
}

fn conform(t: &Tensor, dtype: DType) -> Bound<'_> {
    match (dtype, t) {
        (DType::F32, Tensor::F32(a)) => Bound::F(flat(a)),
        (DType::F32, Tensor::I32(a)) => Bound::F(a.iter().map(|&v| v as f32).collect()),
        (DType::I32, Tensor::I32(a)) => Bound::I(flat(a)),
        (DType::I32, Tensor::F32(a)) => Bound::I(a.iter().map(|&v| v as i32).collect()),
    }
}

fn as_arg<'a>(b: &'a Bound<'_>) -> Arg<'a> {
    match b {
        Bound::F(s) => Arg::F32(s),
        Bound::I(s) => Arg::I32(s),
    }
}

impl Backend for Model {
    /// Every train step function in order on the batch, each at the section's rate `lr`
    /// scaled to its optimizer's (see [`Backend::train_step_rates`]).
    fn train_step(
        &mut self,
        inputs: &[Tensor],
        targets: &[Tensor],
        lr: f32,
    ) -> Result<StepOutput, RuntimeError> {
        let rates: Vec<f32> = (0..self.def.train.len())
            .map(|k| match self.spec.steps.get(k) {
                Some(st) if self.spec.optimizer.lr != 0.0 => {
                    (lr as f64 * st.optimizer.lr / self.spec.optimizer.lr) as f32
                }
                _ => lr,
            })
            .collect();
        self.train_step_rates(inputs, targets, &rates)
    }

    /// Every train step function in order on the batch, function `k` at `rates[k]` (each sees
    /// the weights the earlier ones changed); the loss is their sum, the outputs the last
    /// one's. Then the step is counted and the lagged weights follow.
    fn train_step_rates(
        &mut self,
        inputs: &[Tensor],
        targets: &[Tensor],
        rates: &[f32],
    ) -> Result<StepOutput, RuntimeError> {
        let mut loss = 0.0;
        let mut outputs = Vec::new();
        let mut extra = Vec::new();
        let mut values = Vec::new();
        for k in 0..self.def.train.len() {
            let lr = *rates
                .get(k)
                .ok_or_else(|| RuntimeError::backend("a learning rate per training step"))?;
            let taken = self.take_step(k, inputs, targets, lr)?;
            loss += taken.loss;
            outputs = taken.outputs;
            values.extend(taken.values);
            if let Some(st) = self.spec.steps.get(k) {
                extra.push((format!("{}_loss", st.name), taken.loss));
            }
        }
        // As `fmc train` logs them: each step's loss, then the metrics over model values.
        extra.extend(values);
        self.finish_step();
        Ok(StepOutput {
            loss,
            outputs,
            extra,
        })
    }

    fn evaluate(
        &mut self,
        inputs: &[Tensor],
        targets: &[Tensor],
    ) -> Result<StepOutput, RuntimeError> {
        let f = self.def.eval;
        let (results, batch) = self.run_read(Which::Eval, inputs, targets, None)?;
        Ok(StepOutput {
            loss: loss_of(&f, &results),
            extra: self.named_values(&f, &results),
            outputs: self.outputs(batch, results, &f),
        })
    }

    fn predict(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
        self.predict_batch(inputs)
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let tensor = |shape: &[usize], v: &Vec<f32>| {
            Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), v.clone()).unwrap_or_default())
        };
        let mut out: Vec<(String, Tensor)> = self
            .def
            .params
            .iter()
            .zip(&self.params)
            .map(|(p, v)| (p.name.to_string(), tensor(p.shape, v)))
            .collect();
        for (s, v) in self.def.slots.iter().zip(&self.slots) {
            let p = &self.def.params[s.param];
            out.push((
                format!("{OPT_PREFIX}{}/{}", p.name, s.name),
                tensor(p.shape, v),
            ));
        }
        out.push((
            "opt/step".into(),
            Tensor::I32(ArrayD::from_elem(IxDyn(&[]), self.step as i32)),
        ));
        out
    }

    fn set_state(&mut self, state: &[(String, Tensor)]) -> Result<(), RuntimeError> {
        enum Target {
            Param(usize),
            Slot(usize),
            Step,
        }
        let mut plan = Vec::new();
        for (name, t) in state {
            let (target, shape): (Target, &[usize]) = if name == "opt/step" {
                (Target::Step, t.shape())
            } else if let Some(p) = self.def.params.iter().position(|p| p.name == name) {
                (Target::Param(p), self.def.params[p].shape)
            } else if let Some(k) = self.def.slots.iter().position(|s| {
                *name == format!("{OPT_PREFIX}{}/{}", self.def.params[s.param].name, s.name)
            }) {
                (
                    Target::Slot(k),
                    self.def.params[self.def.slots[k].param].shape,
                )
            } else {
                return Err(RuntimeError::without_path(
                    ErrorKind::Weights,
                    format!(
                        "unknown tensor `{name}`: model `{}` has no such parameter or optimizer slot",
                        self.def.name
                    ),
                ));
            };
            if t.shape() != shape {
                return Err(RuntimeError::without_path(
                    ErrorKind::Weights,
                    format!(
                        "tensor `{name}` has shape {}, expected {}",
                        fmt_shape(t.shape()),
                        fmt_shape(shape)
                    ),
                ));
            }
            plan.push((target, t.to_f32()));
        }
        for (target, value) in plan {
            match target {
                Target::Param(p) => self.params[p] = flat(&value).into_owned(),
                Target::Slot(k) => self.slots[k] = flat(&value).into_owned(),
                Target::Step => {
                    self.step = value.iter().next().copied().unwrap_or(0.0).max(0.0) as u64
                }
            }
        }
        Ok(())
    }
}

impl Clone for Model {
    fn clone(&self) -> Self {
        Model {
            def: self.def,
            spec: self.spec.clone(),
            params: self.params.clone(),
            slots: self.slots.clone(),
            step: self.step,
            scratch: scratch_for(self.def),
        }
    }
}
