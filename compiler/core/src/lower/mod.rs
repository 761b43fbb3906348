//! Lowering a checked [`ModelGraph`] to tensor IR.
//!
//! Two entry points share one forward lowering:
//! - [`predict_fn`]: inputs and parameters in, model outputs out (inference mode);
//! - [`train_step_fn`]: inputs, targets, parameters, optimizer state, learning rate and step in;
//!   loss, outputs, new parameters (including BatchNorm statistics) and new optimizer state out;
//! - [`grad_fn`] and [`apply_fn`]: the same step split at the gradients, for data-parallel
//!   training (the gradients are all-reduced between the two).
//!
//! Layer families live in their own modules; axes in the graph are per sample, so every axis
//! here is shifted by one for the batch.

mod activation;
mod attention;
mod functions;
mod layers;
pub mod loss;
pub mod optim;
mod rnn;
pub mod sample;

use crate::autodiff;
use crate::graph::{Activation, ModelGraph, Node, NodeId, Op as GOp, Role};
use crate::ir::*;
use fm_runtime::config::TrainSpec;
use fm_runtime::tensor::DType;

/// Forward pass mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Dropout active, BatchNorm on batch statistics (and updating its moving statistics).
    Train,
    /// Dropout off, BatchNorm on moving statistics.
    Infer,
}

/// The result of lowering the forward pass.
pub struct Forward {
    /// One value per model output.
    pub outputs: Vec<ValueId>,
    /// For outputs ending in softmax or sigmoid: the pre-activation logits and the activation,
    /// so a matching cross-entropy can be computed from the logits in one stable step.
    pub logits: Vec<Option<(ValueId, Activation)>>,
    /// New values of non-trainable parameters (BatchNorm moving statistics), train mode only.
    pub state_updates: Vec<(usize, ValueId)>,
    /// The value of every node that was lowered (those the roots depend on).
    pub values: Vec<Option<ValueId>>,
}

/// Per-lowering state shared by the layer modules.
pub(crate) struct Ctx<'a> {
    pub b: &'a mut Builder,
    pub graph: &'a ModelGraph,
    /// Value of each parameter (index as `graph.params`).
    pub params: &'a [ValueId],
    pub mode: Mode,
    pub state_updates: Vec<(usize, ValueId)>,
}

impl Ctx<'_> {
    /// The index (in `graph.params`) of the parameter of `node` with this role.
    pub fn param_index(&self, node: &Node, role: Role) -> Option<usize> {
        node.params
            .iter()
            .copied()
            .find(|&p| self.graph.params[p].role == role)
    }

    /// The value of the parameter of `node` with this role (`Role::Kernel`,
    /// `Role::MovingMean`, ...), which the checker gave it.
    pub fn require(&self, node: &Node, role: Role) -> ValueId {
        match self.param_index(node, role) {
            Some(p) => self.params[p],
            None => panic!(
                "internal compiler error: layer `{}` has no `{}` parameter",
                node.name.as_deref().unwrap_or("?"),
                role.suffix()
            ),
        }
    }
}

/// Lowers the forward pass of `graph` given values for its inputs and parameters: every node
/// the outputs depend on.
pub fn forward(
    b: &mut Builder,
    graph: &ModelGraph,
    inputs: &[ValueId],
    params: &[ValueId],
    mode: Mode,
) -> Forward {
    let roots: Vec<NodeId> = graph.outputs.iter().map(|o| o.node).collect();
    forward_with(b, graph, inputs, &[], params, mode, &roots)
}

/// The nodes `roots` depend on (themselves included).
pub fn needed(graph: &ModelGraph, roots: &[NodeId]) -> Vec<bool> {
    let mut need = vec![false; graph.nodes.len()];
    let mut stack: Vec<NodeId> = roots.to_vec();
    while let Some(n) = stack.pop() {
        if !need[n] {
            need[n] = true;
            stack.extend(graph.nodes[n].inputs.iter().copied());
        }
    }
    need
}

/// Lowers the nodes `roots` depend on, given values for the inputs, the `target`
/// declarations and the parameters. Outputs that were not lowered are not in `outputs`'s
/// places: every output must be among (or below) the roots.
pub fn forward_with(
    b: &mut Builder,
    graph: &ModelGraph,
    inputs: &[ValueId],
    targets: &[ValueId],
    params: &[ValueId],
    mode: Mode,
    roots: &[NodeId],
) -> Forward {
    let need = needed(graph, roots);
    let mut ctx = Ctx {
        b,
        graph,
        params,
        mode,
        state_updates: Vec::new(),
    };
    let mut values: Vec<Option<ValueId>> = Vec::with_capacity(graph.nodes.len());
    // Pre-activation values of nodes that end in softmax/sigmoid.
    let mut pre_activation: Vec<Option<(ValueId, Activation)>> =
        Vec::with_capacity(graph.nodes.len());
    for (id, node) in graph.nodes.iter().enumerate() {
        if !need[id] {
            values.push(None);
            pre_activation.push(None);
            continue;
        }
        let ins: Vec<ValueId> = node
            .inputs
            .iter()
            .map(|&i| values[i].expect("inputs are lowered before their users"))
            .collect();
        ctx.b.origin = Origin::Node(id);
        let (v, pre) = match &node.op {
            GOp::Target { index } => (targets[*index], None),
            GOp::Loss(l) => {
                let logits = pre_activation[node.inputs[0]];
                (
                    loss::per_sample_loss(ctx.b, *l, ins[0], logits, ins[1]),
                    None,
                )
            }
            _ => lower_node(&mut ctx, id, node, &ins, inputs),
        };
        values.push(Some(v));
        pre_activation.push(pre);
    }
    ctx.b.origin = Origin::Unknown;
    let outputs = graph
        .outputs
        .iter()
        .map(|o| values[o.node].unwrap_or(usize::MAX))
        .collect();
    let logits = graph
        .outputs
        .iter()
        .map(|o| pre_activation[o.node])
        .collect();
    Forward {
        outputs,
        logits,
        state_updates: ctx.state_updates,
        values,
    }
}

/// Lowers one node; returns its value and, when it ends in softmax/sigmoid, the logits.
fn lower_node(
    ctx: &mut Ctx,
    id: usize,
    node: &Node,
    ins: &[ValueId],
    inputs: &[ValueId],
) -> (ValueId, Option<(ValueId, Activation)>) {
    let with_activation = |ctx: &mut Ctx, pre: ValueId, act: Activation| {
        let out = activation::apply(ctx.b, pre, act);
        let logits =
            matches!(act, Activation::Softmax { .. } | Activation::Sigmoid).then_some((pre, act));
        (out, logits)
    };
    match &node.op {
        GOp::Input { index } => (inputs[*index], None),
        GOp::Dense {
            activation,
            use_bias,
            ..
        } => {
            let pre = layers::dense(ctx, node, ins[0], *use_bias);
            with_activation(ctx, pre, *activation)
        }
        GOp::Conv {
            activation,
            use_bias,
            ..
        } => {
            let pre = layers::conv(ctx, node, ins[0], *use_bias);
            with_activation(ctx, pre, *activation)
        }
        GOp::Activation(act) => with_activation(ctx, ins[0], *act),
        GOp::Pool { .. } => (layers::pool(ctx, node, ins[0]), None),
        GOp::GlobalPool { kind, rank } => (layers::global_pool(ctx, ins[0], *kind, *rank), None),
        GOp::Flatten | GOp::Reshape { .. } => {
            let shape = batched(&node.shape);
            (ctx.b.reshape(ins[0], shape), None)
        }
        GOp::Dropout { rate } => (layers::dropout(ctx, ins[0], *rate, id as u64), None),
        GOp::BatchNorm { momentum, epsilon } => (
            layers::batch_norm(ctx, node, ins[0], *momentum, *epsilon),
            None,
        ),
        GOp::LayerNorm { epsilon } => (layers::layer_norm(ctx, node, ins[0], *epsilon), None),
        GOp::GroupNorm { groups, epsilon } => (
            layers::group_norm(ctx, node, ins[0], *groups, *epsilon),
            None,
        ),
        GOp::UpSampling { size } => (layers::up_sampling(ctx, node, ins[0], size), None),
        GOp::Embedding { .. } => {
            let table = ctx.require(node, Role::Embeddings);
            (ctx.b.push(Op::Gather, vec![table, ins[0]]), None)
        }
        GOp::PositionEmbedding { .. } => (layers::position_embedding(ctx, node), None),
        GOp::Rescale { scale, offset } => {
            let x = to_float(ctx.b, ins[0]);
            let y = ctx.b.mul_scalar(x, *scale);
            (
                if *offset != 0.0 {
                    ctx.b.add_scalar(y, *offset)
                } else {
                    y
                },
                None,
            )
        }
        GOp::Rnn {
            kind,
            units,
            return_sequences,
            activation,
        } => (
            rnn::lower(
                ctx,
                node,
                ins[0],
                *kind,
                *units,
                *return_sequences,
                *activation,
            ),
            None,
        ),
        GOp::Attention {
            heads,
            key_dim,
            causal,
        } => (
            attention::lower(ctx, node, ins[0], ins[1], ins[2], *heads, *key_dim, *causal),
            None,
        ),
        GOp::Concat { axis } => {
            let xs: Vec<ValueId> = ins.iter().map(|&x| to_float(ctx.b, x)).collect();
            (ctx.b.concat(xs, axis + 1), None)
        }
        GOp::Add | GOp::Sub | GOp::Mul | GOp::Div => {
            let x0 = to_float(ctx.b, ins[0]);
            let x1 = to_float(ctx.b, ins[1]);
            let (a, c) = align_ranks(ctx.b, x0, x1);
            let op = match node.op {
                GOp::Add => BinaryOp::Add,
                GOp::Sub => BinaryOp::Sub,
                GOp::Mul => BinaryOp::Mul,
                _ => BinaryOp::Div,
            };
            (ctx.b.binary(op, a, c), None)
        }
        GOp::Const { value } => (ctx.b.constant(*value), None),
        GOp::Func(f) => functions::func(ctx.b, *f, ins[0]),
        GOp::Clip { lo, hi } => {
            let x = to_float(ctx.b, ins[0]);
            (ctx.b.clip(x, *lo, *hi), None)
        }
        GOp::Reduce { op, axes } => (functions::reduce(ctx.b, *op, ins[0], axes), None),
        GOp::Dot => (functions::dot(ctx.b, ins[0], ins[1]), None),
        GOp::Pick => (functions::pick(ctx.b, ins[0], ins[1]), None),
        GOp::Hit(kind) => (functions::hit(ctx.b, *kind, ins[0], ins[1]), None),
        GOp::Target { .. } | GOp::Loss(_) => {
            unreachable!("targets and losses are lowered by forward_with")
        }
    }
}

/// Converts i32 data (token ids fed to a float layer) to f32.
pub(crate) fn to_float(b: &mut Builder, x: ValueId) -> ValueId {
    if b.dtype(x) == DType::I32 {
        b.unary(UnaryOp::ToFloat, x)
    } else {
        x
    }
}

/// Per-sample NumPy broadcasting: pads the lower-rank operand with 1-axes after the batch axis.
fn align_ranks(b: &mut Builder, x: ValueId, y: ValueId) -> (ValueId, ValueId) {
    let pad = |b: &mut Builder, v: ValueId, rank: usize| {
        let s = b.shape(v).clone();
        // A constant (`Op::Const`, no batch axis) broadcasts as it is.
        if s.len() >= rank || s.is_empty() {
            return v;
        }
        let mut t = vec![s[0]];
        t.extend(std::iter::repeat_n(Dim::Fixed(1), rank - s.len()));
        t.extend_from_slice(&s[1..]);
        b.reshape(v, t)
    };
    let r = b.rank(x).max(b.rank(y));
    (pad(b, x, r), pad(b, y, r))
}

/// Salt of the random stream of sampled input `input` in step function `step` (eval and
/// predict use step 0): disjoint from Dropout's (node ids).
fn sample_salt(step: usize, input: usize) -> u64 {
    0x5a4d_0000_0000 + ((step as u64) << 20) + input as u64
}

/// Inference: `predict(inputs..., params...) -> outputs`. Only the inputs the outputs depend
/// on are arguments, and sampled inputs are drawn (language.md 9.2).
pub fn predict_fn(graph: &ModelGraph) -> Function {
    let mut b = Builder::new("predict");
    let roots: Vec<NodeId> = graph.outputs.iter().map(|o| o.node).collect();
    let need = needed(graph, &roots);
    let mut inputs = input_args(&mut b, graph, Some(&need));
    let params = param_args(&mut b, graph);
    draw_samples(&mut b, graph, &mut inputs, 0);
    let fwd = forward_with(&mut b, graph, &inputs, &[], &params, Mode::Infer, &roots);
    output_results(&mut b, graph, &fwd.outputs);
    b.finish()
}

/// The per-step losses of a `train` section: (step name, named losses, objective node,
/// optimizer, updated parameters). One unnamed step when the section has no `step` entries.
pub fn steps_of(spec: &TrainSpec) -> Vec<fm_runtime::config::StepSpec> {
    if spec.steps.is_empty() {
        vec![fm_runtime::config::StepSpec {
            name: String::new(),
            losses: spec.losses.clone(),
            objective: spec.objective,
            optimizer: spec.optimizer,
            schedule: None,
            update: None,
        }]
    } else {
        spec.steps.clone()
    }
}

/// True when the loss reads the model's declared targets instead of one target per output.
pub fn uses_declared_targets(spec: &TrainSpec) -> bool {
    spec.objective.is_some() || spec.steps.iter().any(|s| s.objective.is_some())
}

/// The loss of a batch in inference mode, beside the outputs, each named step's loss and the
/// metrics over model values: `eval(inputs, targets, params)`, taking only the inputs those
/// depend on. With several steps, the loss is the sum of their losses.
pub fn eval_fn(graph: &ModelGraph, spec: &TrainSpec) -> Function {
    let mut b = Builder::new("eval_step");
    let steps = steps_of(spec);
    let mut roots: Vec<NodeId> = graph.outputs.iter().map(|o| o.node).collect();
    roots.extend(steps.iter().filter_map(|s| s.objective));
    roots.extend(spec.value_metrics.iter().map(|(_, n)| *n));
    // Only the inputs the outputs, losses and metrics depend on are arguments.
    let need = needed(graph, &roots);
    let mut inputs = input_args(&mut b, graph, Some(&need));
    let targets = target_args(&mut b, graph, spec);
    let params = param_args(&mut b, graph);
    draw_samples(&mut b, graph, &mut inputs, 0);
    let declared = if uses_declared_targets(spec) {
        targets.clone()
    } else {
        vec![]
    };
    let fwd = forward_with(
        &mut b,
        graph,
        &inputs,
        &declared,
        &params,
        Mode::Infer,
        &roots,
    );
    b.origin = Origin::Loss;
    let mut total = None;
    let mut each = Vec::new();
    for st in &steps {
        let l = step_loss(&mut b, graph, st, &fwd, &targets, &params);
        each.push(l);
        total = Some(match total {
            None => l,
            Some(t) => b.add(t, l),
        });
    }
    let total = total.unwrap_or_else(|| b.constant(0.0));
    b.result("loss", ResultKind::Loss, total);
    output_results(&mut b, graph, &fwd.outputs);
    // Each named step's loss, as training logs it (`NAME_loss`).
    for (k, (st, l)) in spec.steps.iter().zip(each).enumerate() {
        b.result(&format!("{}_loss", st.name), ResultKind::StepLoss(k), l);
    }
    metric_results(&mut b, spec, &fwd);
    b.finish()
}

/// The batch mean of every metric over model values (9.3), as `ResultKind::Metric` results.
fn metric_results(b: &mut Builder, spec: &TrainSpec, fwd: &Forward) {
    b.origin = Origin::Loss;
    for (i, (name, node)) in spec.value_metrics.iter().enumerate() {
        let per_sample = fwd.values[*node].expect("metric lowered");
        let per_sample = to_float(b, per_sample);
        let mean = b.mean_all(per_sample);
        b.result(name, ResultKind::Metric(i), mean);
    }
}

/// The scalar loss one step minimises: its named losses per output, or the batch mean of its
/// objective, plus the kernel regularisers.
fn step_loss(
    b: &mut Builder,
    graph: &ModelGraph,
    st: &fm_runtime::config::StepSpec,
    fwd: &Forward,
    targets: &[ValueId],
    params: &[ValueId],
) -> ValueId {
    let spec_like = TrainSpec {
        losses: st.losses.clone(),
        ..dummy_spec(graph)
    };
    match st.objective {
        Some(node) => {
            let per_sample = fwd.values[node].expect("objective lowered");
            let mean = b.mean_all(per_sample);
            let reg = loss::total_loss(b, graph, &spec_like, fwd, targets, params);
            b.add(mean, reg)
        }
        None => loss::total_loss(b, graph, &spec_like, fwd, targets, params),
    }
}

/// A `TrainSpec` carrying nothing but what `loss::total_loss` reads besides `losses`.
fn dummy_spec(graph: &ModelGraph) -> TrainSpec {
    use fm_runtime::config::*;
    let sgd = OptimizerKind::Sgd {
        momentum: 0.0,
        nesterov: false,
    };
    TrainSpec {
        batch_size: 1,
        ..TrainSpec::new(&graph.name, vec![], OptimizerSpec::new(sgd, 0.0))
    }
}

/// One training step: forward, loss, backward and optimizer update. A `train` section with
/// `step` entries has one such function per step ([`train_step_fns`]); this is the first.
pub fn train_step_fn(graph: &ModelGraph, spec: &TrainSpec) -> Function {
    train_step_fns(graph, spec).remove(0)
}

/// The optimizer-slot name prefix of parameter `p` in step `k`: `STEP/` when several steps
/// update `p` (each keeps its own slots), otherwise none (`opt/PARAM/m`).
fn slot_prefix(
    steps: &[fm_runtime::config::StepSpec],
    graph: &ModelGraph,
    k: usize,
    p: usize,
) -> String {
    let updates = |s: &fm_runtime::config::StepSpec| match &s.update {
        Some(list) => list.contains(&p),
        None => graph.params[p].trainable,
    };
    if steps.iter().filter(|s| updates(s)).count() > 1 {
        format!("{}/", steps[k].name)
    } else {
        String::new()
    }
}

/// One function per training step (language.md 9.4): `train_step` for a single step,
/// `train_step_NAME` for each `step NAME`. Each runs its own forward pass with fresh samples,
/// differentiates its loss with respect to the weights it updates, and applies its optimizer.
pub fn train_step_fns(graph: &ModelGraph, spec: &TrainSpec) -> Vec<Function> {
    let steps = steps_of(spec);
    (0..steps.len())
        .map(|k| {
            let st = &steps[k];
            let fname = if st.name.is_empty() {
                "train_step".to_string()
            } else {
                format!("train_step_{}", st.name)
            };
            let mut b = Builder::new(&fname);
            let args = BatchArgs::declare(&mut b, graph, spec);
            let trainable = step_trainable(graph, st);
            let prefix = |p| slot_prefix(&steps, graph, k, p);
            let slots = optim::slot_args_for(&mut b, graph, &st.optimizer, &trainable, prefix);
            let lr = b.arg("lr", ArgKind::LearningRate, vec![], DType::F32);
            let step = b.arg("step", ArgKind::Step, vec![], DType::F32);
            let back = backward(&mut b, graph, spec, &steps, k, args, &trainable);
            let updates = optim::update(
                &mut b,
                graph,
                &st.optimizer,
                &trainable,
                &back.params,
                &back.grads,
                &slots,
                lr,
                step,
            );

            b.result("loss", ResultKind::Loss, back.loss);
            output_results(&mut b, graph, &back.fwd.outputs);
            if k + 1 == steps.len() {
                metric_results(&mut b, spec, &back.fwd);
            }
            let mut new_params = back.params.clone();
            for &(p, v) in &back.fwd.state_updates {
                new_params[p] = v;
            }
            for (&p, &v) in trainable.iter().zip(&updates.params) {
                new_params[p] = v;
            }
            for (p, info) in graph.params.iter().enumerate() {
                b.result(&info.name, ResultKind::Param(p), new_params[p]);
            }
            slot_results(&mut b, graph, updates.slots, prefix);
            b.finish()
        })
        .collect()
}

/// The indices of the trainable parameters, in parameter order.
pub fn trainable(graph: &ModelGraph) -> Vec<usize> {
    (0..graph.params.len())
        .filter(|&p| graph.params[p].trainable)
        .collect()
}

/// The parameters step `st` updates: its `update:` list, or every trainable one.
fn step_trainable(graph: &ModelGraph, st: &fm_runtime::config::StepSpec) -> Vec<usize> {
    trainable(graph)
        .into_iter()
        .filter(|p| st.update.as_ref().is_none_or(|u| u.contains(p)))
        .collect()
}

/// The arguments a training step's forward pass reads, declared first in that order.
struct BatchArgs {
    inputs: Vec<ValueId>,
    targets: Vec<ValueId>,
    params: Vec<ValueId>,
}

impl BatchArgs {
    fn declare(b: &mut Builder, graph: &ModelGraph, spec: &TrainSpec) -> Self {
        let inputs = input_args(b, graph, None);
        let targets = target_args(b, graph, spec);
        let params = param_args(b, graph);
        BatchArgs {
            inputs,
            targets,
            params,
        }
    }
}

/// What a training step computes before its update.
struct Backward {
    fwd: Forward,
    loss: ValueId,
    /// One per parameter the step updates.
    grads: Vec<ValueId>,
    /// The parameter arguments.
    params: Vec<ValueId>,
}

/// The part of training step `k` before the update, shared by the fused step
/// ([`train_step_fns`]) and the data-parallel one ([`grad_fn`]): fresh samples, the
/// training-mode forward pass, the step's loss and its gradients with respect to `trainable`.
/// Called once every argument is declared (the draws follow the arguments).
fn backward(
    b: &mut Builder,
    graph: &ModelGraph,
    spec: &TrainSpec,
    steps: &[fm_runtime::config::StepSpec],
    k: usize,
    args: BatchArgs,
    trainable: &[usize],
) -> Backward {
    let st = &steps[k];
    let BatchArgs {
        mut inputs,
        targets,
        params,
    } = args;
    draw_samples(b, graph, &mut inputs, k);
    let mut roots: Vec<NodeId> = graph.outputs.iter().map(|o| o.node).collect();
    roots.extend(st.objective);
    // The metrics over model values are computed by the last step's forward pass.
    if k + 1 == steps.len() {
        roots.extend(spec.value_metrics.iter().map(|(_, n)| *n));
    }
    let declared = if uses_declared_targets(spec) {
        targets.clone()
    } else {
        vec![]
    };
    let fwd = forward_with(b, graph, &inputs, &declared, &params, Mode::Train, &roots);
    b.origin = Origin::Loss;
    let loss = step_loss(b, graph, st, &fwd, &targets, &params);
    let wrt: Vec<ValueId> = trainable.iter().map(|&p| params[p]).collect();
    let grads = autodiff::gradients(b, loss, &wrt);
    Backward {
        fwd,
        loss,
        grads,
        params,
    }
}

/// The model outputs as results, in output order.
fn output_results(b: &mut Builder, graph: &ModelGraph, outputs: &[ValueId]) {
    for (i, (o, &v)) in graph.outputs.iter().zip(outputs).enumerate() {
        b.result(&o.name, ResultKind::Output(i), v);
    }
}

/// The updated optimizer slots as results (`opt/PARAM/PREFIXSLOT`).
fn slot_results(
    b: &mut Builder,
    graph: &ModelGraph,
    slots: Vec<(optim::SlotRef, ValueId)>,
    prefix: impl Fn(usize) -> String,
) {
    for (slot, v) in slots {
        let prefixed = format!("{}{}", prefix(slot.param), slot.slot);
        let name = format!("opt/{}/{}", graph.params[slot.param].name, prefixed);
        b.result(
            &name,
            ResultKind::OptSlot {
                param: slot.param,
                slot: prefixed,
            },
            v,
        );
    }
}

/// The first half of a data-parallel step: forward, loss and backward on a rank's shard, no
/// update. `grad_step(inputs, targets, params) -> loss, outputs, new BatchNorm statistics,
/// the gradient of every parameter the step updates`. Together with [`apply_fn`] it computes
/// what [`train_step_fn`] computes for a single-step `train` section, with the gradients
/// exposed in between (for the all-reduce).
pub fn grad_fn(graph: &ModelGraph, spec: &TrainSpec) -> Function {
    let steps = steps_of(spec);
    let mut b = Builder::new("grad_step");
    let args = BatchArgs::declare(&mut b, graph, spec);
    let trainable = step_trainable(graph, &steps[0]);
    let back = backward(&mut b, graph, spec, &steps, 0, args, &trainable);
    b.result("loss", ResultKind::Loss, back.loss);
    output_results(&mut b, graph, &back.fwd.outputs);
    for &(p, v) in &back.fwd.state_updates {
        b.result(&graph.params[p].name, ResultKind::Param(p), v);
    }
    for (&p, &g) in trainable.iter().zip(&back.grads) {
        let name = format!("grad/{}", graph.params[p].name);
        b.result(&name, ResultKind::Grad(p), g);
    }
    b.finish()
}

/// The second half of a data-parallel step: the optimizer update from given gradients.
/// `apply_step(params, slots, grads, lr, step) -> new updated params, new slots`.
pub fn apply_fn(graph: &ModelGraph, spec: &TrainSpec) -> Function {
    let steps = steps_of(spec);
    let st = &steps[0];
    let mut b = Builder::new("apply_step");
    let params = param_args(&mut b, graph);
    let trainable = step_trainable(graph, st);
    let no_prefix = |_| String::new();
    let slots = optim::slot_args_for(&mut b, graph, &st.optimizer, &trainable, no_prefix);
    let grads: Vec<ValueId> = trainable
        .iter()
        .map(|&p| {
            let info = &graph.params[p];
            b.arg(
                &format!("grad/{}", info.name),
                ArgKind::Grad(p),
                fixed(&info.shape),
                DType::F32,
            )
        })
        .collect();
    let lr = b.arg("lr", ArgKind::LearningRate, vec![], DType::F32);
    let step = b.arg("step", ArgKind::Step, vec![], DType::F32);
    let updates = optim::update(
        &mut b,
        graph,
        &st.optimizer,
        &trainable,
        &params,
        &grads,
        &slots,
        lr,
        step,
    );
    for (&p, &v) in trainable.iter().zip(&updates.params) {
        b.result(&graph.params[p].name, ResultKind::Param(p), v);
    }
    slot_results(&mut b, graph, updates.slots, no_prefix);
    b.finish()
}

/// An argument for each model input read from data (with `need`, only those it marks); sampled
/// inputs (and inputs not needed) get a placeholder, filled by [`draw_samples`].
pub fn input_args(b: &mut Builder, graph: &ModelGraph, need: Option<&[bool]>) -> Vec<ValueId> {
    graph
        .inputs
        .iter()
        .enumerate()
        .map(|(k, i)| {
            let sampled = graph.sampled.iter().any(|(idx, _)| *idx == k);
            if sampled || need.is_some_and(|n| !n[i.node]) {
                usize::MAX
            } else {
                b.arg(&i.name, ArgKind::Input, batched(&i.shape), i.dtype)
            }
        })
        .collect()
}

/// Random draws for each sampled input (9.2) from the stream of step function `step`.
pub fn draw_samples(b: &mut Builder, graph: &ModelGraph, inputs: &mut [ValueId], step: usize) {
    for (k, s) in &graph.sampled {
        let shape = graph.inputs[*k].shape.clone();
        inputs[*k] = sample::draw(b, s, &shape, sample_salt(step, *k));
    }
}

/// An argument for each parameter, in order.
pub fn param_args(b: &mut Builder, graph: &ModelGraph) -> Vec<ValueId> {
    graph
        .params
        .iter()
        .enumerate()
        .map(|(k, p)| b.arg(&p.name, ArgKind::Param(k), fixed(&p.shape), DType::F32))
        .collect()
}

/// Target arguments: the `target` declarations when a loss expression reads them (9.3),
/// otherwise one per output.
pub fn target_args(b: &mut Builder, graph: &ModelGraph, spec: &TrainSpec) -> Vec<ValueId> {
    if uses_declared_targets(spec) {
        return graph
            .targets
            .iter()
            .map(|t| b.arg(&t.name, ArgKind::Target, batched(&t.shape), t.dtype))
            .collect();
    }
    graph
        .outputs
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let out_shape = &graph.nodes[o.node].shape;
            let l = spec.losses.get(i).map(|l| l.loss);
            let (shape, dtype) = loss::target_shape(l, out_shape);
            b.arg(
                &format!("{}_target", o.name),
                ArgKind::Target,
                batched(&shape),
                dtype,
            )
        })
        .collect()
}
