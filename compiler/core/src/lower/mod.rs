//! Lowering a checked [`ModelGraph`] to tensor IR.
//!
//! Two entry points share one forward lowering:
//! - [`predict_fn`]: inputs and parameters in, model outputs out (inference mode);
//! - [`train_step_fn`]: inputs, targets, parameters, optimizer state, learning rate and step in;
//!   loss, outputs, new parameters (including BatchNorm statistics) and new optimizer state out.
//!
//! Layer families live in their own modules; axes in the graph are per sample, so every axis
//! here is shifted by one for the batch.

mod activation;
mod attention;
mod layers;
pub mod loss;
pub mod optim;
mod rnn;

use crate::autodiff;
use crate::graph::{Activation, ModelGraph, Node, Op as GOp};
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
    /// The value of the parameter of `node` whose name ends in `.suffix` (`kernel`,
    /// `query.bias`, `moving_mean`, ...).
    pub fn param(&self, node: &Node, suffix: &str) -> Option<ValueId> {
        let dotted = format!(".{suffix}");
        node.params
            .iter()
            .find(|&&p| self.graph.params[p].name.ends_with(&dotted))
            .map(|&p| self.params[p])
    }

    pub fn param_index(&self, node: &Node, suffix: &str) -> Option<usize> {
        let dotted = format!(".{suffix}");
        node.params
            .iter()
            .copied()
            .find(|&p| self.graph.params[p].name.ends_with(&dotted))
    }

    pub fn require(&self, node: &Node, suffix: &str) -> ValueId {
        self.param(node, suffix).unwrap_or_else(|| {
            panic!(
                "internal compiler error: layer `{}` has no `{suffix}` parameter",
                node.name.as_deref().unwrap_or("?")
            )
        })
    }
}

/// Lowers the forward pass of `graph` given values for its inputs and parameters.
pub fn forward(
    b: &mut Builder,
    graph: &ModelGraph,
    inputs: &[ValueId],
    params: &[ValueId],
    mode: Mode,
) -> Forward {
    let mut ctx = Ctx {
        b,
        graph,
        params,
        mode,
        state_updates: Vec::new(),
    };
    let mut values: Vec<ValueId> = Vec::with_capacity(graph.nodes.len());
    // Pre-activation values of nodes that end in softmax/sigmoid.
    let mut pre_activation: Vec<Option<(ValueId, Activation)>> =
        Vec::with_capacity(graph.nodes.len());
    for (id, node) in graph.nodes.iter().enumerate() {
        let ins: Vec<ValueId> = node.inputs.iter().map(|&i| values[i]).collect();
        ctx.b.origin = Origin::Node(id);
        let (v, pre) = lower_node(&mut ctx, id, node, &ins, inputs);
        values.push(v);
        pre_activation.push(pre);
    }
    ctx.b.origin = Origin::Unknown;
    let outputs = graph.outputs.iter().map(|o| values[o.node]).collect();
    let logits = graph
        .outputs
        .iter()
        .map(|o| pre_activation[o.node])
        .collect();
    Forward {
        outputs,
        logits,
        state_updates: ctx.state_updates,
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
        GOp::Embedding { .. } => {
            let table = ctx.require(node, "embeddings");
            (ctx.b.push(Op::Gather, vec![table, ins[0]]), None)
        }
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
        GOp::Add | GOp::Sub | GOp::Mul => {
            let x0 = to_float(ctx.b, ins[0]);
            let x1 = to_float(ctx.b, ins[1]);
            let (a, c) = align_ranks(ctx.b, x0, x1);
            let op = match node.op {
                GOp::Add => BinaryOp::Add,
                GOp::Sub => BinaryOp::Sub,
                _ => BinaryOp::Mul,
            };
            (ctx.b.binary(op, a, c), None)
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
        if s.len() >= rank {
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

/// Inference: `predict(inputs..., params...) -> outputs`.
pub fn predict_fn(graph: &ModelGraph) -> Function {
    let mut b = Builder::new("predict");
    let inputs = input_args(&mut b, graph);
    let params = param_args(&mut b, graph);
    let fwd = forward(&mut b, graph, &inputs, &params, Mode::Infer);
    for (i, (o, &v)) in graph.outputs.iter().zip(&fwd.outputs).enumerate() {
        b.result(&o.name, ResultKind::Output(i), v);
    }
    b.finish()
}

/// The loss of a batch in inference mode, beside the outputs: `eval(inputs, targets, params)`.
pub fn eval_fn(graph: &ModelGraph, spec: &TrainSpec) -> Function {
    let mut b = Builder::new("eval_step");
    let inputs = input_args(&mut b, graph);
    let targets = target_args(&mut b, graph, spec);
    let params = param_args(&mut b, graph);
    let fwd = forward(&mut b, graph, &inputs, &params, Mode::Infer);
    b.origin = Origin::Loss;
    let total = loss::total_loss(&mut b, graph, spec, &fwd, &targets, &params);
    b.result("loss", ResultKind::Loss, total);
    for (i, (o, &v)) in graph.outputs.iter().zip(&fwd.outputs).enumerate() {
        b.result(&o.name, ResultKind::Output(i), v);
    }
    b.finish()
}

/// One training step: forward, loss, backward and optimizer update.
pub fn train_step_fn(graph: &ModelGraph, spec: &TrainSpec) -> Function {
    let mut b = Builder::new("train_step");
    let inputs = input_args(&mut b, graph);
    let targets = target_args(&mut b, graph, spec);
    let params = param_args(&mut b, graph);
    let slots = optim::slot_args(&mut b, graph, &spec.optimizer);
    let lr = b.arg("lr", ArgKind::LearningRate, vec![], DType::F32);
    let step = b.arg("step", ArgKind::Step, vec![], DType::F32);

    let fwd = forward(&mut b, graph, &inputs, &params, Mode::Train);
    b.origin = Origin::Loss;
    let total = loss::total_loss(&mut b, graph, spec, &fwd, &targets, &params);

    let trainable: Vec<usize> = (0..graph.params.len())
        .filter(|&p| graph.params[p].trainable)
        .collect();
    let wrt: Vec<ValueId> = trainable.iter().map(|&p| params[p]).collect();
    let grads = autodiff::gradients(&mut b, total, &wrt);
    let updates = optim::update(
        &mut b,
        graph,
        &spec.optimizer,
        &trainable,
        &params,
        &grads,
        &slots,
        lr,
        step,
    );

    b.result("loss", ResultKind::Loss, total);
    for (i, (o, &v)) in graph.outputs.iter().zip(&fwd.outputs).enumerate() {
        b.result(&o.name, ResultKind::Output(i), v);
    }
    let mut new_params = params.clone();
    for &(p, v) in &fwd.state_updates {
        new_params[p] = v;
    }
    for (&p, &v) in trainable.iter().zip(&updates.params) {
        new_params[p] = v;
    }
    for (p, info) in graph.params.iter().enumerate() {
        b.result(&info.name, ResultKind::Param(p), new_params[p]);
    }
    for (slot, v) in updates.slots {
        let name = format!("opt/{}/{}", graph.params[slot.param].name, slot.slot);
        b.result(
            &name,
            ResultKind::OptSlot {
                param: slot.param,
                slot: slot.slot,
            },
            v,
        );
    }
    b.finish()
}

fn input_args(b: &mut Builder, graph: &ModelGraph) -> Vec<ValueId> {
    graph
        .inputs
        .iter()
        .map(|i| b.arg(&i.name, ArgKind::Input, batched(&i.shape), i.dtype))
        .collect()
}

fn param_args(b: &mut Builder, graph: &ModelGraph) -> Vec<ValueId> {
    graph
        .params
        .iter()
        .enumerate()
        .map(|(k, p)| b.arg(&p.name, ArgKind::Param(k), fixed(&p.shape), DType::F32))
        .collect()
}

fn target_args(b: &mut Builder, graph: &ModelGraph, spec: &TrainSpec) -> Vec<ValueId> {
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
