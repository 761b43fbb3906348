//! A model compiled for execution: its IR functions bound to parameter and optimizer state.
//! This is what `fmc train/eval/predict` drive; the interpreter runs the functions.

use crate::graph::{LagKind, ModelGraph};
use crate::interp::{self, Context, Value};
use crate::ir::{verify::verify, ArgKind, Function, ResultKind};
use crate::lower;
use crate::passes::PassTiming;
use fm_runtime::config::TrainSpec;
use fm_runtime::tensor::{DType, Tensor};
use fm_runtime::train::{Backend, StepOutput};
use fm_runtime::{ErrorKind, RuntimeError};
use ndarray::{ArrayD, IxDyn};

/// Runs IR functions: the reference interpreter or compiled code (`jit::JitExecutor`).
/// (Distinct from `fm_runtime::train::Backend`, which is the training loop's view of a
/// whole [`Session`].)
pub trait Executor: Send + Sync {
    fn run(
        &self,
        f: &Function,
        args: &[Value<f32>],
        ctx: Context,
    ) -> Result<Vec<Value<f32>>, String>;

    /// Runs `f`, writing result `i` into `args[a]` when `updates[i] == Some(a)` (a state
    /// update: the training step's parameters and optimizer slots) and into `results[i]`
    /// otherwise (resized to the number of results). An executor that can reads the arguments
    /// where they are and writes into the existing arrays, so a step copies and allocates
    /// nothing per parameter; this default runs [`Executor::run`] and moves the results.
    fn run_in_place(
        &self,
        f: &Function,
        args: &mut [Value<f32>],
        updates: &[Option<usize>],
        ctx: Context,
        results: &mut Vec<Value<f32>>,
    ) -> Result<(), String> {
        let out = self.run(f, args, ctx)?;
        results.clear();
        for (v, update) in out.into_iter().zip(updates) {
            match *update {
                Some(a) => {
                    args[a] = v;
                    results.push(Value::F(ArrayD::zeros(IxDyn(&[0]))));
                }
                None => results.push(v),
            }
        }
        Ok(())
    }

    /// Runs `f` like [`Executor::run`], handing `watch` the values of each group of results
    /// (`groups`: lists of result indices, all `f32`) once the whole group is computed, group
    /// after group in order. An executor that runs `f` as a sequence of kernels (the JIT) calls
    /// `watch.ready` as soon as the group's last kernel has run, and `watch.progress` between
    /// the kernels after that, so that the caller can send results (gradients) while the rest
    /// of `f` (the backward pass) still runs; this default calls it after the whole run.
    fn run_watched(
        &self,
        f: &Function,
        args: &[Value<f32>],
        ctx: Context,
        groups: &[Vec<usize>],
        watch: &mut dyn ResultWatch,
    ) -> Result<Vec<Value<f32>>, String> {
        let out = self.run(f, args, ctx)?;
        report_groups(&out, groups, watch)?;
        Ok(out)
    }
}

/// Receives groups of a function's results while it runs (see [`Executor::run_watched`]).
pub trait ResultWatch {
    /// Results `groups[group]` are final: their elements, in the group's order.
    fn ready(&mut self, group: usize, values: &[&[f32]]) -> Result<(), String>;
    /// Called between kernels once a group has been reported.
    fn progress(&mut self) {}
}

/// Hands `watch` every group of the finished results `out`, in order.
pub fn report_groups(
    out: &[Value<f32>],
    groups: &[Vec<usize>],
    watch: &mut dyn ResultWatch,
) -> Result<(), String> {
    for (k, group) in groups.iter().enumerate() {
        let mut owned = Vec::new();
        for &i in group {
            match out.get(i) {
                Some(Value::F(a)) => owned.push(a.as_standard_layout()),
                _ => return Err(format!("internal error: result {i} is not an f32 result")),
            }
        }
        let values: Vec<&[f32]> = owned
            .iter()
            .map(|a| a.as_slice().expect("standard layout"))
            .collect();
        watch.ready(k, &values)?;
    }
    Ok(())
}

/// The reference interpreter as an [`Executor`].
pub struct Interp;

impl Executor for Interp {
    fn run(
        &self,
        f: &Function,
        args: &[Value<f32>],
        ctx: Context,
    ) -> Result<Vec<Value<f32>>, String> {
        interp::run(f, args, ctx)
    }
}

/// Parameters, optimizer slots and the step counter of a model being trained.
pub struct Session {
    pub graph: ModelGraph,
    pub spec: TrainSpec,
    /// The (first) training step function.
    pub train_fn: Function,
    /// The functions of the further `step`s of a `train` section (language.md 9.4), run in
    /// order after `train_fn` on the same batch.
    pub more_steps: Vec<Function>,
    pub eval_fn: Function,
    pub predict_fn: Function,
    /// Values of `graph.params`.
    pub params: Vec<ArrayD<f32>>,
    /// Optimizer slots in argument order of the step functions (`train_fn`'s first):
    /// (param index, slot name, value).
    pub slots: Vec<(usize, String, ArrayD<f32>)>,
    /// Optimizer steps taken so far.
    pub iterations: u64,
    /// What runs the functions (the interpreter unless replaced by `with_backend`).
    pub backend: Box<dyn Executor>,
    /// The standard passes' times on each function (by function name), for `fmc -v`.
    pub pass_timings: Vec<(String, Vec<PassTiming>)>,
    /// The train step split at the gradients, for data-parallel training (see
    /// [`Session::split_step`]).
    pub split: Option<SplitStep>,
    /// The train step's argument and result arrays, kept from step to step so that a step
    /// allocates nothing (see [`Session::train_step`]).
    step: StepBuffers,
}

/// `train_fn` split at the gradients: `grad_fn` (forward, loss, backward on a shard) and
/// `apply_fn` (the optimizer update from the all-reduced gradients).
pub struct SplitStep {
    pub grad_fn: Function,
    pub apply_fn: Function,
}

/// The watch of a run that reports no group.
struct NoWatch;

impl ResultWatch for NoWatch {
    fn ready(&mut self, _group: usize, _values: &[&[f32]]) -> Result<(), String> {
        Ok(())
    }
}

/// What [`Session::grad_step`] returns for a shard.
pub struct GradResult {
    /// The shard's mean loss (including regularisers).
    pub loss: f64,
    pub outputs: Vec<Tensor>,
    /// The gradient of each trainable parameter, in parameter order.
    pub grads: Vec<ArrayD<f32>>,
}

/// The train step's arrays between steps. Parameters and slots are moved in for the step and
/// back out after it (no copy); batch arrays and scalars are overwritten in place.
#[derive(Default)]
struct StepBuffers {
    args: Vec<Value<f32>>,
    results: Vec<Value<f32>>,
    /// For each result of `train_fn`: the argument it updates in place.
    updates: Vec<Option<usize>>,
}

/// The output of one step.
pub struct StepResult {
    pub loss: f64,
    pub outputs: Vec<Tensor>,
    /// Each named step's loss (`NAME_loss`) when the section has `step`s, then the batch mean
    /// of each metric over model values (language.md 9.3).
    pub step_losses: Vec<(String, f64)>,
}

impl Session {
    /// Lowers `graph` for training with `spec`, with freshly initialised parameters.
    pub fn new(graph: ModelGraph, spec: TrainSpec) -> Result<Session, String> {
        let steps = lower::train_step_fns(&graph, &spec);
        let eval_fn = lower::eval_fn(&graph, &spec);
        let predict_fn = lower::predict_fn(&graph);
        for f in steps.iter().chain([&eval_fn, &predict_fn]) {
            verify(f).map_err(|e| {
                format!(
                    "internal compiler error: `{}` fails verification: {e}",
                    f.name
                )
            })?;
        }
        // Run the optimized functions (simplify, CSE, DCE: tested to change no bit).
        let pipeline = crate::passes::standard();
        let mut pass_timings = Vec::new();
        let mut optimize = |f: Function| {
            let name = f.name.clone();
            let (f, timings) = pipeline.run(f)?;
            pass_timings.push((name, timings));
            Ok::<_, String>(f)
        };
        let mut steps = steps
            .into_iter()
            .map(&mut optimize)
            .collect::<Result<Vec<_>, _>>()?;
        let train_fn = steps.remove(0);
        let more_steps = steps;
        let eval_fn = optimize(eval_fn)?;
        let predict_fn = optimize(predict_fn)?;
        let params = crate::init::initial_params(&graph, spec.seed);
        let slots = lower::optim::step_slots(std::iter::once(&train_fn).chain(&more_steps), &spec)
            .into_iter()
            .map(|(p, slot, init)| {
                let value = ArrayD::from_elem(IxDyn(&graph.params[p].shape), init as f32);
                (p, slot, value)
            })
            .collect();
        Ok(Session {
            graph,
            spec,
            train_fn,
            more_steps,
            eval_fn,
            predict_fn,
            params,
            slots,
            iterations: 0,
            backend: Box::new(Interp),
            pass_timings,
            split: None,
            step: StepBuffers::default(),
        })
    }

    /// Runs the functions on `backend` instead.
    pub fn with_backend(mut self, backend: Box<dyn Executor>) -> Session {
        self.backend = backend;
        self
    }

    /// Lowers (verified and optimized as `train_fn` is) the train step split at the
    /// gradients, for [`Session::grad_step`] and [`Session::apply_gradients`].
    pub fn split_step(&mut self) -> Result<(), String> {
        if self.split.is_some() {
            return Ok(());
        }
        if !self.spec.steps.is_empty() || !self.graph.lags.is_empty() {
            return Err(
                "data-parallel training does not support `step` blocks or lagged weights \
                 (language 0.2) yet; train this file on one process"
                    .to_string(),
            );
        }
        let pipeline = crate::passes::standard();
        let mut lowered = Vec::new();
        for f in [
            lower::grad_fn(&self.graph, &self.spec),
            lower::apply_fn(&self.graph, &self.spec),
        ] {
            verify(&f).map_err(|e| {
                format!(
                    "internal compiler error: `{}` fails verification: {e}",
                    f.name
                )
            })?;
            let (f, timings) = pipeline.run(f)?;
            self.pass_timings.push((f.name.clone(), timings));
            lowered.push(f);
        }
        let apply_fn = lowered.pop().expect("apply_step");
        let grad_fn = lowered.pop().expect("grad_step");
        self.split = Some(SplitStep { grad_fn, apply_fn });
        Ok(())
    }

    fn split_fns(&self) -> Result<&SplitStep, String> {
        self.split
            .as_ref()
            .ok_or_else(|| "internal error: the train step was not split".to_string())
    }

    /// Forward, loss and backward on a batch (training mode), without the update; BatchNorm
    /// moving statistics are updated from the batch. `first_sample` is the index of the batch's
    /// first sample in the global batch it is a shard of (0 for a whole batch), so that its
    /// dropout masks are those one process draws for the same samples. Needs
    /// [`Session::split_step`].
    pub fn grad_step(
        &mut self,
        inputs: &[Tensor],
        targets: &[Tensor],
        first_sample: usize,
    ) -> Result<GradResult, String> {
        self.grad_step_watched(inputs, targets, first_sample, &[], &mut NoWatch)
    }

    /// [`Session::grad_step`], handing `watch` groups of `grad_step`'s results as soon as the
    /// backward pass has computed them ([`Executor::run_watched`]): `groups` lists indices
    /// into `split.grad_fn.results` (see [`Session::grad_results`]).
    pub fn grad_step_watched(
        &mut self,
        inputs: &[Tensor],
        targets: &[Tensor],
        first_sample: usize,
        groups: &[Vec<usize>],
        watch: &mut dyn ResultWatch,
    ) -> Result<GradResult, String> {
        let f = &self.split_fns()?.grad_fn;
        let args = self.bind(f, inputs, targets, 0.0, &[])?;
        let ctx = Context {
            sample_offset: first_sample,
            ..self.ctx(inputs)
        };
        let results = if groups.is_empty() {
            self.backend.run(f, &args, ctx)?
        } else {
            self.backend.run_watched(f, &args, ctx, groups, watch)?
        };
        let mut out = GradResult {
            loss: 0.0,
            outputs: Vec::new(),
            grads: Vec::new(),
        };
        let mut state = Vec::new();
        for (r, v) in f.results.iter().zip(results) {
            match &r.kind {
                ResultKind::Loss => out.loss = v.scalar() as f64,
                ResultKind::Output(_) => out.outputs.push(Tensor::F32(v.into_float())),
                ResultKind::Param(p) => state.push((*p, v.into_float())),
                ResultKind::Grad(_) => out.grads.push(v.into_float()),
                ResultKind::OptSlot { .. } => return Err("grad_step updates no slot".into()),
                ResultKind::Metric(_) | ResultKind::StepLoss(_) => {}
            }
        }
        for (p, v) in state {
            self.params[p] = v;
        }
        Ok(out)
    }

    /// Where `grad_step`'s results are, as indices into `split.grad_fn.results`: the loss's,
    /// and each trainable parameter's gradient's in parameter order (the order of
    /// [`GradResult::grads`]). Needs [`Session::split_step`].
    pub fn grad_results(&self) -> Result<(usize, Vec<usize>), String> {
        let f = &self.split_fns()?.grad_fn;
        let loss = f
            .results
            .iter()
            .position(|r| r.kind == ResultKind::Loss)
            .ok_or("internal error: grad_step returns no loss")?;
        let grads = f
            .results
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r.kind, ResultKind::Grad(_)))
            .map(|(i, _)| i)
            .collect();
        Ok((loss, grads))
    }

    /// The optimizer update from `grads` (one per trainable parameter, in parameter order);
    /// counts a step. Needs [`Session::split_step`].
    pub fn apply_gradients(&mut self, grads: &[ArrayD<f32>], lr: f32) -> Result<(), String> {
        let f = &self.split_fns()?.apply_fn;
        let args = self.bind(f, &[], &[], lr, grads)?;
        let results = self.backend.run(f, &args, self.ctx(&[]))?;
        let mut slot_k = 0;
        let mut params = Vec::new();
        let mut slots = Vec::new();
        for (r, v) in f.results.iter().zip(results) {
            match &r.kind {
                ResultKind::Param(p) => params.push((*p, v.into_float())),
                ResultKind::OptSlot { .. } => {
                    slots.push((slot_k, v.into_float()));
                    slot_k += 1;
                }
                _ => return Err("apply_step returns parameters and slots only".into()),
            }
        }
        for (p, v) in params {
            self.params[p] = v;
        }
        for (k, v) in slots {
            self.slots[k].2 = v;
        }
        self.iterations += 1;
        Ok(())
    }

    fn ctx(&self, inputs: &[Tensor]) -> Context {
        Context {
            batch: inputs.first().map_or(0, |t| t.len()),
            seed: self.spec.seed,
            step: self.iterations,
            sample_offset: 0,
        }
    }

    /// One optimizer step on a batch (training mode).
    ///
    /// The parameters and optimizer slots are moved into the step's argument list and the
    /// executor updates them in place ([`Executor::run_in_place`]); the batch is converted into
    /// arrays kept from the previous step. So with the JIT a step neither copies nor allocates
    /// anything per parameter: only the outputs it returns are new arrays.
    ///
    /// A `train` section with several `step`s (language.md 9.4) runs each step function in
    /// order, each seeing the weights the earlier ones changed; the loss is the sum of the
    /// steps' losses. Lagged weights (9.5) are updated after the step.
    pub fn train_step(
        &mut self,
        inputs: &[Tensor],
        targets: &[Tensor],
        lr: f32,
    ) -> Result<StepResult, String> {
        let mut out = if self.more_steps.is_empty() {
            self.train_step_in_place(inputs, targets, lr)?
        } else {
            // Each step's rate: its optimizer's, scaled as the schedule scales the section's
            // (the first step's) rate. The training loop gives steps with their own
            // `schedule:` their rates through [`Session::train_step_rates`].
            let rates: Vec<f32> = self
                .spec
                .steps
                .iter()
                .map(|st| {
                    if self.spec.optimizer.lr != 0.0 {
                        (lr as f64 * st.optimizer.lr / self.spec.optimizer.lr) as f32
                    } else {
                        lr
                    }
                })
                .collect();
            self.train_steps(inputs, targets, &rates)?
        };
        self.after_step(&mut out);
        Ok(out)
    }

    /// One batch through every `step` (language.md 9.4), step k at rate `rates[k]`; with no
    /// `step` entries, the one step at `rates[0]`.
    pub fn train_step_rates(
        &mut self,
        inputs: &[Tensor],
        targets: &[Tensor],
        rates: &[f32],
    ) -> Result<StepResult, String> {
        let mut out = if self.more_steps.is_empty() {
            let lr = rates.first().copied().ok_or("no learning rate")?;
            self.train_step_in_place(inputs, targets, lr)?
        } else {
            self.train_steps(inputs, targets, rates)?
        };
        self.after_step(&mut out);
        Ok(out)
    }

    /// After a step: a single named step's loss is reported as `NAME_loss`, and lagged
    /// weights are updated.
    fn after_step(&mut self, out: &mut StepResult) {
        if let [only] = self.spec.steps.as_slice() {
            out.step_losses
                .insert(0, (format!("{}_loss", only.name), out.loss));
        }
        self.update_lags();
    }

    fn train_step_in_place(
        &mut self,
        inputs: &[Tensor],
        targets: &[Tensor],
        lr: f32,
    ) -> Result<StepResult, String> {
        let mut step = std::mem::take(&mut self.step);
        let result = self.train_step_with(&mut step, inputs, targets, lr);
        // The state goes back to its owners whatever happened.
        let empty = || ArrayD::zeros(IxDyn(&[0]));
        let mut slot_k = 0;
        for (a, v) in self.train_fn.args.iter().zip(step.args.iter_mut()) {
            let owner = match a.kind {
                ArgKind::Param(p) => &mut self.params[p],
                ArgKind::OptSlot { .. } => {
                    slot_k += 1;
                    &mut self.slots[slot_k - 1].2
                }
                _ => continue,
            };
            if let Value::F(x) = v {
                *owner = std::mem::replace(x, empty());
            }
        }
        self.step = step;
        if result.is_ok() {
            self.iterations += 1;
        }
        result
    }

    fn train_step_with(
        &mut self,
        step: &mut StepBuffers,
        inputs: &[Tensor],
        targets: &[Tensor],
        lr: f32,
    ) -> Result<StepResult, String> {
        let f = &self.train_fn;
        let batch = inputs.first().map_or(0, |t| t.len());
        if step.args.len() != f.args.len() {
            step.args = f
                .args
                .iter()
                .map(|_| Value::F(ArrayD::zeros(IxDyn(&[0]))))
                .collect();
            step.updates = update_targets(f);
        }
        let (mut input_i, mut target_i, mut slot_k) = (0, 0, 0);
        let empty = || ArrayD::zeros(IxDyn(&[0]));
        for (a, v) in f.args.iter().zip(step.args.iter_mut()) {
            match &a.kind {
                ArgKind::Input | ArgKind::Target => {
                    let t = if a.kind == ArgKind::Input {
                        input_i += 1;
                        inputs.get(input_i - 1).ok_or("missing input")?
                    } else {
                        target_i += 1;
                        targets.get(target_i - 1).ok_or("missing target")?
                    };
                    conform_into(t, a.dtype, batch, &a.shape, &a.name, v)?
                }
                ArgKind::Param(p) => {
                    *v = Value::F(std::mem::replace(&mut self.params[*p], empty()))
                }
                ArgKind::OptSlot { .. } => {
                    let slot = self.slots.get_mut(slot_k).ok_or("slot")?;
                    slot_k += 1;
                    *v = Value::F(std::mem::replace(&mut slot.2, empty()));
                }
                ArgKind::LearningRate => set_scalar(v, lr),
                ArgKind::Step => set_scalar(v, (self.iterations + 1) as f32),
                ArgKind::Grad(_) => return Err("train_step takes no gradient".into()),
            }
        }
        let ctx = self.ctx(inputs);
        self.backend
            .run_in_place(f, &mut step.args, &step.updates, ctx, &mut step.results)?;
        let mut out = StepResult {
            loss: 0.0,
            outputs: Vec::new(),
            step_losses: Vec::new(),
        };
        for (r, v) in f.results.iter().zip(&step.results) {
            match &r.kind {
                ResultKind::Loss => out.loss = v.scalar() as f64,
                ResultKind::Output(_) => out.outputs.push(Tensor::F32(v.clone().into_float())),
                ResultKind::Metric(_) => out.step_losses.push((r.name.clone(), v.scalar() as f64)),
                ResultKind::Param(_)
                | ResultKind::OptSlot { .. }
                | ResultKind::Grad(_)
                | ResultKind::StepLoss(_) => {}
            }
        }
        Ok(out)
    }

    /// Several step functions on one batch (their outputs are the last step's). They bind
    /// their arguments by copy: a section with steps does not take the in-place path.
    fn train_steps(
        &mut self,
        inputs: &[Tensor],
        targets: &[Tensor],
        rates: &[f32],
    ) -> Result<StepResult, String> {
        let mut out = StepResult {
            loss: 0.0,
            outputs: Vec::new(),
            step_losses: Vec::new(),
        };
        let count = 1 + self.more_steps.len();
        for k in 0..count {
            let f = if k == 0 {
                &self.train_fn
            } else {
                &self.more_steps[k - 1]
            };
            let step_lr = *rates.get(k).ok_or("a learning rate per step")?;
            let args = self.bind(f, inputs, targets, step_lr, &[])?;
            let results = self.backend.run(f, &args, self.ctx(inputs))?;
            let f = if k == 0 {
                &self.train_fn
            } else {
                &self.more_steps[k - 1]
            };
            let kinds: Vec<(ResultKind, String)> = f
                .results
                .iter()
                .map(|r| (r.kind.clone(), r.name.clone()))
                .collect();
            out.outputs.clear();
            let mut metrics = Vec::new();
            for ((kind, name), v) in kinds.iter().zip(results) {
                match kind {
                    ResultKind::Loss => {
                        let l = v.scalar() as f64;
                        out.loss += l;
                        if let Some(st) = self.spec.steps.get(k) {
                            out.step_losses.push((format!("{}_loss", st.name), l));
                        }
                    }
                    ResultKind::Output(_) => out.outputs.push(Tensor::F32(v.into_float())),
                    ResultKind::Metric(_) => metrics.push((name.clone(), v.scalar() as f64)),
                    ResultKind::Param(p) => self.params[*p] = v.into_float(),
                    ResultKind::Grad(_) | ResultKind::StepLoss(_) => {}
                    ResultKind::OptSlot { param, slot } => {
                        if let Some(s) = self
                            .slots
                            .iter_mut()
                            .find(|(p, s, _)| p == param && s == slot)
                        {
                            s.2 = v.into_float();
                        }
                    }
                }
            }
            out.step_losses.extend(metrics);
        }
        self.iterations += 1;
        Ok(out)
    }

    /// Lagged weights (language.md 9.5) after a step: a copy refreshed every N steps, or an
    /// exponential moving average. Never touched by gradients.
    fn update_lags(&mut self) {
        for lag in &self.graph.lags {
            match lag.kind {
                LagKind::Copy { every } => {
                    if every > 0 && self.iterations.is_multiple_of(every) {
                        for &(live, copy) in &lag.pairs {
                            self.params[copy] = self.params[live].clone();
                        }
                    }
                }
                LagKind::Ema { decay } => {
                    let d = decay as f32;
                    for &(live, copy) in &lag.pairs {
                        let w = self.params[live].clone();
                        self.params[copy].zip_mut_with(&w, |l, &w| *l = d * *l + (1.0 - d) * w);
                    }
                }
            }
        }
    }

    /// Binds the arguments of `f` from the batch, the current state and, for `apply_step`,
    /// the gradients (one per trainable parameter, in parameter order).
    fn bind(
        &self,
        f: &Function,
        inputs: &[Tensor],
        targets: &[Tensor],
        lr: f32,
        grads: &[ArrayD<f32>],
    ) -> Result<Vec<Value<f32>>, String> {
        let mut grad_iter = grads.iter();
        let mut input_i = 0;
        let mut target_i = 0;
        let data_inputs: Vec<&str> = self
            .graph
            .inputs
            .iter()
            .enumerate()
            .filter(|(k, _)| !self.graph.sampled.iter().any(|(i, _)| i == k))
            .map(|(_, i)| i.name.as_str())
            .collect();
        let batch = inputs.first().map_or(0, |t| t.len());
        f.args
            .iter()
            .map(|a| {
                Ok(match &a.kind {
                    ArgKind::Input => {
                        // `inputs` are the inputs read from data (not the sampled ones), in
                        // model order; a function may take only some of them (predict takes
                        // those its outputs need).
                        let k = data_inputs
                            .iter()
                            .position(|n| *n == a.name)
                            .unwrap_or(input_i);
                        let t = inputs.get(k).ok_or("missing input")?;
                        input_i += 1;
                        conform(t, a.dtype, &crate::ir::eval_shape(&a.shape, batch), &a.name)?
                    }
                    ArgKind::Target => {
                        let t = targets.get(target_i).ok_or("missing target")?;
                        target_i += 1;
                        conform(t, a.dtype, &crate::ir::eval_shape(&a.shape, batch), &a.name)?
                    }
                    ArgKind::Param(p) => Value::F(self.params[*p].clone()),
                    ArgKind::OptSlot { param, slot } => Value::F(
                        self.slots
                            .iter()
                            .find(|(p, s, _)| p == param && s == slot)
                            .ok_or("optimizer slot")?
                            .2
                            .clone(),
                    ),
                    ArgKind::LearningRate => Value::F(ArrayD::from_elem(IxDyn(&[]), lr)),
                    ArgKind::Step => {
                        Value::F(ArrayD::from_elem(IxDyn(&[]), (self.iterations + 1) as f32))
                    }
                    ArgKind::Grad(_) => {
                        let g = grad_iter.next().ok_or("missing gradient")?;
                        if g.shape() != crate::ir::eval_shape(&a.shape, batch).as_slice() {
                            return Err(format!("gradient `{}` has shape {:?}", a.name, g.shape()));
                        }
                        Value::F(g.clone())
                    }
                })
            })
            .collect()
    }

    /// Outputs in inference mode for a batch of `n` samples: `inputs` are the predict
    /// function's input arguments (none when every input the outputs need is sampled,
    /// `fmc predict --samples N`).
    /// Batch number `part` of a prediction draws its own samples.
    pub fn predict_samples(
        &self,
        inputs: &[Tensor],
        n: usize,
        part: u64,
    ) -> Result<Vec<Tensor>, String> {
        let args = self.bind(&self.predict_fn, inputs, &[], 0.0, &[])?;
        let ctx = Context {
            sample_offset: 0,
            batch: n,
            seed: self.spec.seed,
            // Streams of training steps count up from 0; predictions' count down.
            step: if part == 0 {
                self.iterations
            } else {
                u64::MAX - part
            },
        };
        let results = self.backend.run(&self.predict_fn, &args, ctx)?;
        Ok(results
            .into_iter()
            .map(|v| Tensor::F32(v.into_float()))
            .collect())
    }

    /// Loss and outputs in inference mode.
    pub fn evaluate(
        &mut self,
        inputs: &[Tensor],
        targets: &[Tensor],
    ) -> Result<StepResult, String> {
        let results = self.run_with_state(Inference::Eval, inputs, targets)?;
        let mut out = StepResult {
            loss: 0.0,
            outputs: Vec::new(),
            step_losses: Vec::new(),
        };
        for (r, v) in self.eval_fn.results.iter().zip(results) {
            match r.kind {
                ResultKind::Loss => out.loss = v.scalar() as f64,
                ResultKind::Metric(_) | ResultKind::StepLoss(_) => {
                    out.step_losses.push((r.name.clone(), v.scalar() as f64))
                }
                _ => out.outputs.push(Tensor::F32(v.into_float())),
            }
        }
        Ok(out)
    }

    /// Outputs in inference mode.
    pub fn predict(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, String> {
        let results = self.run_with_state(Inference::Predict, inputs, &[])?;
        Ok(results
            .into_iter()
            .map(|v| Tensor::F32(v.into_float()))
            .collect())
    }

    /// Runs the eval or predict function with the parameters moved into its argument list and
    /// back (an executor that reads arguments in place, as the JIT does, then copies none).
    fn run_with_state(
        &mut self,
        which: Inference,
        inputs: &[Tensor],
        targets: &[Tensor],
    ) -> Result<Vec<Value<f32>>, String> {
        let f = match which {
            Inference::Eval => &self.eval_fn,
            Inference::Predict => &self.predict_fn,
        };
        let batch = inputs.first().map_or(0, |t| t.len());
        let ctx = Context {
            batch,
            seed: self.spec.seed,
            step: self.iterations,
            sample_offset: 0,
        };
        let empty = || ArrayD::zeros(IxDyn(&[0]));
        let (mut input_i, mut target_i, mut slot_k) = (0, 0, 0);
        let mut args = Vec::with_capacity(f.args.len());
        let mut bound = Ok(());
        for a in &f.args {
            let v = match &a.kind {
                ArgKind::Param(p) => Value::F(std::mem::replace(&mut self.params[*p], empty())),
                ArgKind::OptSlot { .. } => {
                    slot_k += 1;
                    match self.slots.get_mut(slot_k - 1) {
                        Some(slot) => Value::F(std::mem::replace(&mut slot.2, empty())),
                        None => Value::F(empty()),
                    }
                }
                ArgKind::Input | ArgKind::Target => {
                    let t = if a.kind == ArgKind::Input {
                        // `inputs` are the inputs read from data, in model order; predict
                        // takes only those its outputs need (language.md 9.2).
                        input_i += 1;
                        let k = self
                            .graph
                            .inputs
                            .iter()
                            .enumerate()
                            .filter(|(k, _)| !self.graph.sampled.iter().any(|(i, _)| i == k))
                            .position(|(_, i)| i.name == a.name)
                            .unwrap_or(input_i - 1);
                        inputs.get(k)
                    } else {
                        target_i += 1;
                        targets.get(target_i - 1)
                    };
                    let shape = crate::ir::eval_shape(&a.shape, batch);
                    match t.map(|t| conform(t, a.dtype, &shape, &a.name)) {
                        Some(Ok(v)) => v,
                        Some(Err(e)) => {
                            bound = bound.and(Err(e));
                            Value::F(empty())
                        }
                        None => {
                            bound = bound.and(Err(format!("missing `{}`", a.name)));
                            Value::F(empty())
                        }
                    }
                }
                ArgKind::LearningRate => Value::F(ArrayD::from_elem(IxDyn(&[]), 0.0)),
                ArgKind::Step => {
                    Value::F(ArrayD::from_elem(IxDyn(&[]), (self.iterations + 1) as f32))
                }
                ArgKind::Grad(_) => {
                    bound = bound.and(Err(format!("`{}` takes no gradient", f.name)));
                    Value::F(empty())
                }
            };
            args.push(v);
        }
        let result = bound.and_then(|()| self.backend.run(f, &args, ctx));
        // The state goes back to its owners whatever happened.
        let mut slot_k = 0;
        for (a, v) in f.args.iter().zip(args) {
            match a.kind {
                ArgKind::Param(p) => self.params[p] = v.into_float(),
                ArgKind::OptSlot { .. } => {
                    slot_k += 1;
                    if let Some(slot) = self.slots.get_mut(slot_k - 1) {
                        slot.2 = v.into_float();
                    }
                }
                _ => {}
            }
        }
        result
    }

    /// Every named tensor: parameters, `opt/PARAM/SLOT` and `opt/step`.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> = self
            .graph
            .params
            .iter()
            .zip(&self.params)
            .map(|(p, v)| (p.name.clone(), Tensor::F32(v.clone())))
            .collect();
        for (p, slot, v) in &self.slots {
            out.push((
                format!("opt/{}/{}", self.graph.params[*p].name, slot),
                Tensor::F32(v.clone()),
            ));
        }
        out.push((
            "opt/step".into(),
            Tensor::I32(ArrayD::from_elem(IxDyn(&[]), self.iterations as i32)),
        ));
        out
    }

    /// Sets the named tensors it is given (parameters, BatchNorm statistics, `opt/...` slots,
    /// `opt/step`) and leaves the others unchanged. Unknown names and wrong shapes are errors
    /// that name the tensor; nothing changes unless every tensor fits.
    pub fn set_state(&mut self, tensors: &[(String, Tensor)]) -> Result<(), String> {
        let mut plan: Vec<(Target, ArrayD<f32>)> = Vec::new();
        for (name, t) in tensors {
            let target = if name == "opt/step" {
                Target::Step
            } else if let Some(p) = self.graph.params.iter().position(|p| &p.name == name) {
                Target::Param(p)
            } else if let Some(k) = self.slots.iter().position(|(p, slot, _)| {
                name == &format!("opt/{}/{}", self.graph.params[*p].name, slot)
            }) {
                Target::Slot(k)
            } else {
                return Err(format!(
                    "unknown tensor `{name}`: model `{}` has no such parameter or optimizer slot",
                    self.graph.name
                ));
            };
            let expected: Vec<usize> = match target {
                Target::Param(p) => self.graph.params[p].shape.clone(),
                Target::Slot(k) => self.slots[k].2.shape().to_vec(),
                Target::Step => t.shape().to_vec(),
            };
            if t.shape() != expected.as_slice() {
                return Err(format!(
                    "tensor `{name}` has shape {:?}, expected {:?}",
                    t.shape(),
                    expected
                ));
            }
            plan.push((target, t.to_f32()));
        }
        for (target, value) in plan {
            match target {
                Target::Param(p) => self.params[p] = value,
                Target::Slot(k) => self.slots[k].2 = value,
                Target::Step => {
                    self.iterations = value.iter().next().copied().unwrap_or(0.0).max(0.0) as u64
                }
            }
        }
        Ok(())
    }
}

/// The setup used when a file has no `train` section: enough to run inference.
pub fn default_spec(graph: &ModelGraph) -> TrainSpec {
    use fm_runtime::config::*;
    let losses = graph
        .outputs
        .iter()
        .map(|o| OutputLoss {
            output: o.name.clone(),
            loss: Loss::Mse,
            weight: 1.0,
            fused_with_activation: false,
        })
        .collect();
    let adam = OptimizerKind::Adam {
        beta1: 0.9,
        beta2: 0.999,
        epsilon: 1e-7,
    };
    TrainSpec {
        shuffle: true,
        ..TrainSpec::new(&graph.name, losses, OptimizerSpec::new(adam, 1e-3))
    }
}

/// The functions [`Session::run_with_state`] runs.
#[derive(Clone, Copy)]
enum Inference {
    Eval,
    Predict,
}

enum Target {
    Param(usize),
    Slot(usize),
    Step,
}

fn backend_error(message: String) -> RuntimeError {
    RuntimeError::new(ErrorKind::Backend, None, message)
}

/// The interpreter as a training-loop backend.
impl Backend for Session {
    fn train_step(
        &mut self,
        inputs: &[Tensor],
        targets: &[Tensor],
        lr: f32,
    ) -> Result<StepOutput, RuntimeError> {
        let r = Session::train_step(self, inputs, targets, lr).map_err(backend_error)?;
        Ok(StepOutput {
            loss: r.loss,
            outputs: r.outputs,
            extra: r.step_losses,
        })
    }
    fn train_step_rates(
        &mut self,
        inputs: &[Tensor],
        targets: &[Tensor],
        rates: &[f32],
    ) -> Result<StepOutput, RuntimeError> {
        let r = Session::train_step_rates(self, inputs, targets, rates).map_err(backend_error)?;
        Ok(StepOutput {
            loss: r.loss,
            outputs: r.outputs,
            extra: r.step_losses,
        })
    }
    fn evaluate(
        &mut self,
        inputs: &[Tensor],
        targets: &[Tensor],
    ) -> Result<StepOutput, RuntimeError> {
        let r = Session::evaluate(self, inputs, targets).map_err(backend_error)?;
        Ok(StepOutput {
            loss: r.loss,
            outputs: r.outputs,
            extra: r.step_losses,
        })
    }
    fn predict(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
        Session::predict(self, inputs).map_err(backend_error)
    }
    fn state(&self) -> Vec<(String, Tensor)> {
        Session::state(self)
    }
    fn set_state(&mut self, state: &[(String, Tensor)]) -> Result<(), RuntimeError> {
        Session::set_state(self, state).map_err(|m| RuntimeError::new(ErrorKind::Weights, None, m))
    }
}

/// For each result of a train function: the argument it replaces (a parameter's or an
/// optimizer slot's new value).
fn update_targets(f: &Function) -> Vec<Option<usize>> {
    f.results
        .iter()
        .map(|r| {
            f.args.iter().position(|a| match (&r.kind, &a.kind) {
                (ResultKind::Param(p), ArgKind::Param(q)) => p == q,
                (ResultKind::OptSlot { param, slot }, ArgKind::OptSlot { param: q, slot: t }) => {
                    param == q && slot == t
                }
                _ => false,
            })
        })
        .collect()
}

/// Makes `v` a 0-d f32 array holding `x`, in place when it already is one.
fn set_scalar(v: &mut Value<f32>, x: f32) {
    match v {
        Value::F(a) if a.ndim() == 0 => a.fill(x),
        _ => *v = Value::F(ArrayD::from_elem(IxDyn(&[]), x)),
    }
}

/// [`conform`] into `dst`, reusing its array when the shape and type already fit.
fn conform_into(
    t: &Tensor,
    dtype: DType,
    batch: usize,
    shape: &[crate::ir::Dim],
    name: &str,
    dst: &mut Value<f32>,
) -> Result<(), String> {
    let fits = |have: &[usize]| {
        have.len() == shape.len() && have.iter().zip(shape).all(|(&h, &d)| h == d.eval(batch))
    };
    let count: usize = t.shape().iter().product();
    match (dtype, t, &mut *dst) {
        (DType::F32, Tensor::F32(src), Value::F(a))
            if fits(a.shape()) && a.len() == count && a.is_standard_layout() =>
        {
            let a = a.as_slice_mut().expect("standard layout");
            match src.as_slice() {
                Some(x) => a.copy_from_slice(x),
                None => a.iter_mut().zip(src.iter()).for_each(|(d, &s)| *d = s),
            }
            Ok(())
        }
        (DType::F32, Tensor::I32(src), Value::F(a))
            if fits(a.shape()) && a.len() == count && a.is_standard_layout() =>
        {
            let a = a.as_slice_mut().expect("standard layout");
            a.iter_mut()
                .zip(src.iter())
                .for_each(|(d, &s)| *d = s as f32);
            Ok(())
        }
        (DType::I32, Tensor::I32(src), Value::I(a))
            if fits(a.shape()) && a.len() == count && a.is_standard_layout() =>
        {
            let a = a.as_slice_mut().expect("standard layout");
            a.iter_mut().zip(src.iter()).for_each(|(d, &s)| *d = s);
            Ok(())
        }
        _ => {
            *dst = conform(t, dtype, &crate::ir::eval_shape(shape, batch), name)?;
            Ok(())
        }
    }
}

/// Converts a data tensor to the dtype and shape an argument expects: i32/f32 conversion, and
/// a reshape when only trailing 1-axes differ (labels `[N]` for an output `[N, 1]`).
fn conform(t: &Tensor, dtype: DType, shape: &[usize], name: &str) -> Result<Value<f32>, String> {
    let count: usize = shape.iter().product();
    let found: usize = t.shape().iter().product();
    if count != found {
        return Err(format!(
            "`{name}` has shape {:?}, expected {:?}",
            t.shape(),
            shape
        ));
    }
    Ok(match (dtype, t) {
        (DType::F32, t) => Value::F(
            t.to_f32()
                .into_shape_with_order(IxDyn(shape))
                .map_err(|e| e.to_string())?,
        ),
        (DType::I32, Tensor::I32(a)) => Value::I(
            a.clone()
                .into_shape_with_order(IxDyn(shape))
                .map_err(|e| e.to_string())?,
        ),
        (DType::I32, Tensor::F32(a)) => Value::I(
            a.mapv(|v| v as i32)
                .into_shape_with_order(IxDyn(shape))
                .map_err(|e| e.to_string())?,
        ),
    })
}
