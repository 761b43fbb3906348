//! `fmc export`: a checked model and its trained weights as an ONNX inference graph (opset 17).
//!
//! The graph computes what `fmc predict` computes: Dropout is left out, BatchNorm uses its
//! moving statistics, and the `x:` transforms of the model's `data` section (`scale`,
//! `standardize` with the statistics stored in the weights) come first, so the ONNX model takes
//! the same raw inputs as `fmc predict`. Activations stay channels-last (fm's layout); each
//! convolution and pooling is wrapped in the two Transposes ONNX's channels-first operators
//! need. Inputs and outputs keep the `.fm` names and have a symbolic batch dimension `N`;
//! weights are initializers named as in the safetensors file (`conv2d.kernel`), in ONNX's
//! layouts (a Conv kernel `[out, in, kh, kw]`, LSTM gates in ONNX's order).

use crate::error::InteropError;
use crate::onnx::{self, *};
use fm_codes::E0410;
use fm_codes::E0413;
use fm_compiler::graph::{
    Activation, DType, Func, ModelGraph, Node, Op, Padding, PoolKind, Reduction, RnnKind,
};
use fm_runtime::config::Transform;
use fm_runtime::data::FittedTransforms;
use fm_runtime::tensor::Tensor;
use prost::Message;
use std::collections::{HashMap, HashSet};

/// Builds the ONNX model. `tensors` are the weights (optimizer state may be among them and is
/// ignored); `transforms` the fitted `x:` transforms to put in front; `file` names the weights
/// file in errors.
pub fn export(
    graph: &ModelGraph,
    tensors: &[(String, Tensor)],
    transforms: &FittedTransforms,
    file: &str,
) -> Result<Vec<u8>, InteropError> {
    let weights: HashMap<&str, &Tensor> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut problems = Vec::new();
    for p in &graph.params {
        match weights.get(p.name.as_str()) {
            None => problems.push(format!("missing tensor '{}'", p.name)),
            Some(t) if t.shape() != p.shape.as_slice() => problems.push(format!(
                "tensor '{}' has shape {:?}, the model needs {:?}",
                p.name,
                t.shape(),
                p.shape
            )),
            Some(_) => {}
        }
    }
    // A tensor the model does not have means the file is another model's (say a deeper one
    // whose first layers fit), as `fmc eval` and `fmc predict` say; training state is skipped.
    let params: HashSet<&str> = graph.params.iter().map(|p| p.name.as_str()).collect();
    for (name, t) in tensors {
        let state = name.starts_with("opt/") || name.starts_with("lag/");
        if !state && !params.contains(name.as_str()) {
            problems.push(format!(
                "unknown tensor '{name}' (shape {:?}): the model has no such tensor",
                t.shape()
            ));
        }
    }
    if !problems.is_empty() {
        return Err(InteropError::new(
            E0410,
            file,
            None,
            format!(
                "the weights do not fit model `{}`: {}",
                graph.name,
                problems.join("; ")
            ),
        ));
    }
    let mut e = Exporter {
        graph,
        weights,
        nodes: Vec::new(),
        inits: Vec::new(),
        counter: 0,
        node_names: Default::default(),
        file,
    };
    // Only what the outputs need: targets, losses and objective terms are left out.
    let mut needed = vec![false; graph.nodes.len()];
    let mut stack: Vec<usize> = graph.outputs.iter().map(|o| o.node).collect();
    while let Some(n) = stack.pop() {
        if !std::mem::replace(&mut needed[n], true) {
            stack.extend(&graph.nodes[n].inputs);
        }
    }
    let mut values: Vec<String> = Vec::with_capacity(graph.nodes.len());
    for (id, node) in graph.nodes.iter().enumerate() {
        let v = if needed[id] {
            e.node(id, node, &values, transforms)?
        } else {
            String::new()
        };
        values.push(v);
    }
    let mut outputs = Vec::new();
    for o in &graph.outputs {
        let n = &graph.nodes[o.node];
        e.push(
            "Identity",
            &o.name,
            vec![values[o.node].clone()],
            vec![o.name.clone()],
            vec![],
        );
        outputs.push(value_info(&o.name, elem(n.dtype), &batched(&n.shape)));
    }
    // Inputs the outputs do not read (a GAN's real images) are left out.
    let inputs = graph
        .inputs
        .iter()
        .filter(|i| needed[i.node])
        .map(|i| value_info(&i.name, elem(i.dtype), &batched(&i.shape)))
        .collect();
    let model = ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        producer_name: Some("fm".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        doc_string: (!graph.doc.is_empty()).then(|| graph.doc.join("\n")),
        graph: Some(GraphProto {
            name: Some(graph.name.clone()),
            node: e.nodes,
            initializer: e.inits,
            input: inputs,
            output: outputs,
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok(model.encode_to_vec())
}

fn elem(d: DType) -> i32 {
    match d {
        DType::F32 => onnx::FLOAT,
        DType::I32 => onnx::INT32,
    }
}

fn batched(shape: &[usize]) -> Vec<Option<usize>> {
    std::iter::once(None)
        .chain(shape.iter().map(|&d| Some(d)))
        .collect()
}

struct Exporter<'a> {
    graph: &'a ModelGraph,
    weights: HashMap<&'a str, &'a Tensor>,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    counter: usize,
    node_names: std::collections::HashSet<String>,
    file: &'a str,
}

impl Exporter<'_> {
    fn fresh(&mut self, base: &str) -> String {
        self.counter += 1;
        format!("{base}:{}", self.counter)
    }

    fn push(
        &mut self,
        op: &str,
        name: &str,
        inputs: Vec<String>,
        outputs: Vec<String>,
        attribute: Vec<AttributeProto>,
    ) {
        // Node names must be unique: the second `conv2d/Transpose` is `conv2d/Transpose_1`.
        let mut unique = name.to_string();
        let mut k = 0;
        while !self.node_names.insert(unique.clone()) {
            k += 1;
            unique = format!("{name}_{k}");
        }
        self.nodes.push(NodeProto {
            op_type: Some(op.into()),
            name: Some(unique),
            input: inputs,
            output: outputs,
            attribute,
            ..Default::default()
        });
    }

    /// One node with one output; returns the output's name.
    fn op(
        &mut self,
        op: &str,
        base: &str,
        inputs: Vec<String>,
        attribute: Vec<AttributeProto>,
    ) -> String {
        let out = self.fresh(base);
        self.push(
            op,
            &format!("{base}/{op}"),
            inputs,
            vec![out.clone()],
            attribute,
        );
        out
    }

    fn init_f32(&mut self, name: String, shape: &[usize], values: &[f32]) -> String {
        self.inits.push(f32_tensor(&name, shape, values));
        name
    }

    fn init_i64(&mut self, name: String, values: &[i64]) -> String {
        self.inits.push(i64_tensor(&name, &[values.len()], values));
        name
    }

    /// A scalar f32 constant.
    fn scalar(&mut self, base: &str, v: f32) -> String {
        let name = self.fresh(&format!("{base}/const"));
        self.init_f32(name, &[], &[v])
    }

    /// The weight `LAYER.role` as row-major f32 values.
    fn weight(&self, node: &Node, role: &str) -> (Vec<usize>, Vec<f32>) {
        let layer = node.name.as_deref().unwrap_or_default();
        let t = self.weights[format!("{layer}.{role}").as_str()];
        let a = t.to_f32();
        (
            a.shape().to_vec(),
            a.as_standard_layout().iter().copied().collect(),
        )
    }

    /// The weight as an initializer under its own name, unchanged.
    fn weight_init(&mut self, node: &Node, role: &str) -> String {
        let (shape, values) = self.weight(node, role);
        let name = format!("{}.{role}", node.name.as_deref().unwrap_or_default());
        self.init_f32(name, &shape, &values)
    }

    fn unsupported(&self, node: &Node, why: &str) -> InteropError {
        InteropError::new(
            E0413,
            self.file,
            Some(format!(
                "layer `{}` ({})",
                node.name.as_deref().unwrap_or("?"),
                node.op.type_name()
            )),
            format!("has no ONNX form in fm's exporter: {why}"),
        )
    }

    fn node(
        &mut self,
        id: usize,
        node: &Node,
        values: &[String],
        transforms: &FittedTransforms,
    ) -> Result<String, InteropError> {
        let base = node
            .name
            .clone()
            .unwrap_or_else(|| format!("{}_{id}", node.op.type_name().to_lowercase()));
        let rank = node.shape.len();
        let mut ins: Vec<String> = node.inputs.iter().map(|&i| values[i].clone()).collect();
        // Layers compute in f32: integer inputs are converted first (the IR's `to_float`).
        if !matches!(node.op, Op::Embedding { .. } | Op::Input { .. }) {
            for (k, &i) in node.inputs.iter().enumerate() {
                if self.graph.nodes[i].dtype == DType::I32 {
                    ins[k] = self.op(
                        "Cast",
                        &base,
                        vec![ins[k].clone()],
                        vec![attr_int("to", FLOAT as i64)],
                    );
                }
            }
        }
        Ok(match &node.op {
            Op::Input { index } => {
                let info = &self.graph.inputs[*index];
                let sampled = |k: usize| self.graph.sampled.iter().any(|(i, _)| *i == k);
                if sampled(*index) {
                    // Drawn by fm (`z ~ normal(0, 1)`), not read from data: the data section's
                    // transforms do not apply, and in ONNX the caller gives the draws.
                    info.name.clone()
                } else {
                    // Transforms are fitted per data input (sampled inputs are not counted).
                    let data_index = (0..*index).filter(|&k| !sampled(k)).count();
                    self.input_transforms(&info.name, data_index, info.dtype, transforms)
                }
            }
            Op::Dense {
                activation,
                use_bias,
                ..
            } => {
                let k = self.weight_init(node, "kernel");
                let mut v = self.op("MatMul", &base, vec![ins[0].clone(), k], vec![]);
                if *use_bias {
                    let b = self.weight_init(node, "bias");
                    v = self.op("Add", &base, vec![v, b], vec![]);
                }
                self.activation(node, &base, v, *activation, rank)?
            }
            Op::Conv {
                kernel,
                stride,
                padding,
                dilation,
                activation,
                use_bias,
                ..
            } => {
                let spatial = kernel.len();
                let in_shape = &self.graph.nodes[node.inputs[0]].shape;
                let (kshape, kvals) = self.weight(node, "kernel");
                // [k.., in, out] -> [out, in, k..]
                let mut perm = vec![spatial + 1, spatial];
                perm.extend(0..spatial);
                let (wshape, w) = transpose(&kshape, &kvals, &perm);
                let wname = format!("{base}.kernel");
                let wname = self.init_f32(wname, &wshape, &w);
                let mut conv_in = vec![self.channels_first(&base, ins[0].clone(), spatial), wname];
                if *use_bias {
                    conv_in.push(self.weight_init(node, "bias"));
                }
                let pads = pads(&in_shape[..spatial], kernel, stride, dilation, *padding);
                let v = self.op(
                    "Conv",
                    &base,
                    conv_in,
                    vec![
                        attr_ints("kernel_shape", &to_i64(kernel)),
                        attr_ints("strides", &to_i64(stride)),
                        attr_ints("dilations", &to_i64(dilation)),
                        attr_ints("pads", &pads),
                    ],
                );
                let v = self.channels_last(&base, v, spatial);
                self.activation(node, &base, v, *activation, rank)?
            }
            Op::Pool {
                kind,
                size,
                stride,
                padding,
            } => {
                let spatial = size.len();
                let in_shape = &self.graph.nodes[node.inputs[0]].shape;
                let ones = vec![1; spatial];
                let pads = pads(&in_shape[..spatial], size, stride, &ones, *padding);
                let x = self.channels_first(&base, ins[0].clone(), spatial);
                let mut attrs = vec![
                    attr_ints("kernel_shape", &to_i64(size)),
                    attr_ints("strides", &to_i64(stride)),
                    attr_ints("pads", &pads),
                ];
                let op = match kind {
                    PoolKind::Max => "MaxPool",
                    PoolKind::Avg => {
                        attrs.push(attr_int("count_include_pad", 0));
                        "AveragePool"
                    }
                };
                let v = self.op(op, &base, vec![x], attrs);
                self.channels_last(&base, v, spatial)
            }
            Op::GlobalPool {
                kind,
                rank: spatial,
            } => {
                let x = self.channels_first(&base, ins[0].clone(), *spatial);
                let op = match kind {
                    PoolKind::Max => "GlobalMaxPool",
                    PoolKind::Avg => "GlobalAveragePool",
                };
                let v = self.op(op, &base, vec![x], vec![]);
                self.op("Flatten", &base, vec![v], vec![attr_int("axis", 1)])
            }
            Op::Flatten => self.op("Flatten", &base, ins, vec![attr_int("axis", 1)]),
            Op::Reshape { shape } => {
                // 0 copies the batch dimension of the input.
                let target: Vec<i64> = std::iter::once(0)
                    .chain(shape.iter().map(|&d| d as i64))
                    .collect();
                let s = self.fresh(&format!("{base}/shape"));
                let s = self.init_i64(s, &target);
                self.op("Reshape", &base, vec![ins[0].clone(), s], vec![])
            }
            Op::Dropout { .. } => ins[0].clone(),
            Op::BatchNorm { epsilon, .. } => {
                let params: Vec<String> = ["gamma", "beta", "moving_mean", "moving_variance"]
                    .iter()
                    .map(|r| self.weight_init(node, r))
                    .collect();
                let spatial = rank - 1;
                let x = self.channels_first(&base, ins[0].clone(), spatial);
                let mut bn_in = vec![x];
                bn_in.extend(params);
                let v = self.op(
                    "BatchNormalization",
                    &base,
                    bn_in,
                    vec![attr_float("epsilon", *epsilon as f32)],
                );
                self.channels_last(&base, v, spatial)
            }
            Op::LayerNorm { epsilon } => {
                let g = self.weight_init(node, "gamma");
                let b = self.weight_init(node, "beta");
                self.op(
                    "LayerNormalization",
                    &base,
                    vec![ins[0].clone(), g, b],
                    vec![attr_int("axis", -1), attr_float("epsilon", *epsilon as f32)],
                )
            }
            Op::Embedding { .. } => {
                let table = self.weight_init(node, "embeddings");
                self.op(
                    "Gather",
                    &base,
                    vec![table, ins[0].clone()],
                    vec![attr_int("axis", 0)],
                )
            }
            Op::Rescale { scale, offset } => {
                let s = self.scalar(&base, *scale as f32);
                let mut v = self.op("Mul", &base, vec![ins[0].clone(), s], vec![]);
                if *offset != 0.0 {
                    let o = self.scalar(&base, *offset as f32);
                    v = self.op("Add", &base, vec![v, o], vec![]);
                }
                v
            }
            Op::Rnn {
                kind,
                units,
                return_sequences,
                activation,
            } => self.rnn(
                node,
                &base,
                ins[0].clone(),
                *kind,
                *units,
                *return_sequences,
                *activation,
            )?,
            Op::Attention {
                heads,
                key_dim,
                causal,
            } => {
                if rank != 2 {
                    return Err(self.unsupported(
                        node,
                        "MultiHeadAttention is exported for sequences `[T, D]` only",
                    ));
                }
                self.attention(node, &base, &ins, *heads, *key_dim, *causal)
            }
            Op::GroupNorm { groups, epsilon } => {
                self.group_norm(node, &base, ins[0].clone(), *groups, *epsilon)
            }
            Op::PositionEmbedding { sequence_length } => {
                // The table's first L rows (a Slice when the table holds more positions),
                // broadcast over the batch: Expand to the input's shape, which the input gives
                // and nothing else.
                let table = self.weight_init(node, "embeddings");
                let len = node.shape[0];
                let shape = self.op("Shape", &base, vec![ins[0].clone()], vec![]);
                let rows = if len < *sequence_length {
                    let ints = |e: &mut Self, what: &str, v: i64| {
                        let n = e.fresh(&format!("{base}/{what}"));
                        e.init_i64(n, &[v])
                    };
                    let starts = ints(self, "starts", 0);
                    let ends = ints(self, "ends", len as i64);
                    let axes = ints(self, "axes", 0);
                    self.op("Slice", &base, vec![table, starts, ends, axes], vec![])
                } else {
                    table
                };
                self.op("Expand", &base, vec![rows, shape], vec![])
            }
            Op::UpSampling { size } => {
                // Nearest neighbour: output cell i reads input cell floor(i / factor), ONNX's
                // Resize with `asymmetric` coordinates and `floor` rounding.
                let mut scales = vec![1.0f32];
                scales.extend(size.iter().map(|&f| f as f32));
                scales.push(1.0);
                let s = self.fresh(&format!("{base}/scales"));
                let s = self.init_f32(s, &[scales.len()], &scales);
                self.op(
                    "Resize",
                    &base,
                    vec![ins[0].clone(), String::new(), s],
                    vec![
                        attr_string("mode", "nearest"),
                        attr_string("coordinate_transformation_mode", "asymmetric"),
                        attr_string("nearest_mode", "floor"),
                    ],
                )
            }
            Op::Activation(a) => self.activation(node, &base, ins[0].clone(), *a, rank)?,
            Op::Concat { axis } => self.op(
                "Concat",
                &base,
                ins,
                vec![attr_int("axis", *axis as i64 + 1)],
            ),
            Op::Add | Op::Sub | Op::Mul | Op::Div => {
                let op = match node.op {
                    Op::Add => "Add",
                    Op::Sub => "Sub",
                    Op::Mul => "Mul",
                    _ => "Div",
                };
                // fm broadcasts over per-sample axes: a lower-rank operand gets size-1 axes
                // after the batch axis, so ONNX's right-aligned broadcasting lines up the same
                // (a number is a scalar without a batch axis and broadcasts as it is).
                let mut operands = Vec::new();
                for (k, &i) in node.inputs.iter().enumerate() {
                    let r = self.graph.nodes[i].shape.len();
                    let v = ins[k].clone();
                    let constant = matches!(self.graph.nodes[i].op, Op::Const { .. });
                    operands.push(if r < rank && !constant {
                        let axes: Vec<i64> = (1..=(rank - r) as i64).collect();
                        let a = self.fresh(&format!("{base}/axes"));
                        let a = self.init_i64(a, &axes);
                        self.op("Unsqueeze", &base, vec![v, a], vec![])
                    } else {
                        v
                    });
                }
                self.op(op, &base, operands, vec![])
            }
            Op::Const { value } => self.scalar(&base, *value as f32),
            Op::Func(f) => {
                let x = ins[0].clone();
                match f {
                    Func::Neg => self.op("Neg", &base, vec![x], vec![]),
                    Func::Log => self.op("Log", &base, vec![x], vec![]),
                    Func::Exp => self.op("Exp", &base, vec![x], vec![]),
                    Func::Abs => self.op("Abs", &base, vec![x], vec![]),
                    Func::Sqrt => self.op("Sqrt", &base, vec![x], vec![]),
                    Func::Square => self.op("Mul", &base, vec![x.clone(), x], vec![]),
                    Func::Softplus => self.op("Softplus", &base, vec![x], vec![]),
                    Func::Sigmoid => self.op("Sigmoid", &base, vec![x], vec![]),
                    // log(sigmoid(x)) = -softplus(-x)
                    Func::LogSigmoid => {
                        let n = self.op("Neg", &base, vec![x], vec![]);
                        let s = self.op("Softplus", &base, vec![n], vec![]);
                        self.op("Neg", &base, vec![s], vec![])
                    }
                    Func::StopGradient => x,
                }
            }
            Op::Clip { lo, hi } => {
                let lo = self.scalar(&base, *lo as f32);
                let hi = self.scalar(&base, *hi as f32);
                self.op("Clip", &base, vec![ins[0].clone(), lo, hi], vec![])
            }
            Op::Reduce { op, axes } => {
                let axes: Vec<i64> = axes.iter().map(|&a| a as i64 + 1).collect();
                let keep = attr_int("keepdims", 0);
                match op {
                    // ReduceSum takes its axes as an input from opset 13 on, the others from 18.
                    Reduction::Sum => {
                        let a = self.fresh(&format!("{base}/axes"));
                        let a = self.init_i64(a, &axes);
                        self.op("ReduceSum", &base, vec![ins[0].clone(), a], vec![keep])
                    }
                    Reduction::Mean | Reduction::Max | Reduction::Min => {
                        let name = match op {
                            Reduction::Mean => "ReduceMean",
                            Reduction::Max => "ReduceMax",
                            _ => "ReduceMin",
                        };
                        self.op(
                            name,
                            &base,
                            vec![ins[0].clone()],
                            vec![attr_ints("axes", &axes), keep],
                        )
                    }
                }
            }
            Op::Dot => {
                let m = self.op("Mul", &base, ins.clone(), vec![]);
                let a = self.fresh(&format!("{base}/axes"));
                let a = self.init_i64(a, &[-1]);
                self.op(
                    "ReduceSum",
                    &base,
                    vec![m, a],
                    vec![attr_int("keepdims", 0)],
                )
            }
            Op::Target { .. } | Op::Loss(_) | Op::Pick | Op::Hit(_) => {
                return Err(self.unsupported(
                    node,
                    "targets, losses and `pick` belong to training objectives, not to an output",
                ))
            }
        })
    }

    /// The data section's `x:` transforms on data input `index` (what `fmc predict` applies
    /// first).
    fn input_transforms(
        &mut self,
        name: &str,
        index: usize,
        dtype: DType,
        t: &FittedTransforms,
    ) -> String {
        let mut v = name.to_string();
        let mut stats = t.x_stats.get(index).map(|s| s.iter()).into_iter().flatten();
        let base = format!("{name}/transform");
        if !t.x.is_empty() && dtype == DType::I32 {
            v = self.op("Cast", &base, vec![v], vec![attr_int("to", FLOAT as i64)]);
        }
        for tr in &t.x {
            match tr {
                &Transform::Scale { factor, offset } => {
                    let c = self.scalar(&base, factor as f32);
                    v = self.op("Mul", &base, vec![v, c], vec![]);
                    if offset != 0.0 {
                        let o = self.scalar(&base, offset as f32);
                        v = self.op("Add", &base, vec![v, o], vec![]);
                    }
                }
                Transform::Standardize => {
                    if let Some(s) = stats.next() {
                        let mean: Vec<f32> = s.mean.iter().map(|&m| m as f32).collect();
                        let std: Vec<f32> = s
                            .variance
                            .iter()
                            .map(|&var| {
                                var.sqrt()
                                    .max(fm_runtime::data::transform::STANDARDIZE_EPSILON)
                                    as f32
                            })
                            .collect();
                        let m = self.fresh(&format!("{base}/mean"));
                        let m = self.init_f32(m, &[mean.len()], &mean);
                        let d = self.fresh(&format!("{base}/std"));
                        let d = self.init_f32(d, &[std.len()], &std);
                        v = self.op("Sub", &base, vec![v, m], vec![]);
                        v = self.op("Div", &base, vec![v, d], vec![]);
                    }
                }
                Transform::OneHot(_) => {}
            }
        }
        v
    }

    /// Channels-last `[N, spatial.., C]` to ONNX's `[N, C, spatial..]` (nothing for rank 2).
    fn channels_first(&mut self, base: &str, v: String, spatial: usize) -> String {
        if spatial == 0 {
            return v;
        }
        let mut perm = vec![0, spatial as i64 + 1];
        perm.extend(1..=spatial as i64);
        self.op("Transpose", base, vec![v], vec![attr_ints("perm", &perm)])
    }

    fn channels_last(&mut self, base: &str, v: String, spatial: usize) -> String {
        if spatial == 0 {
            return v;
        }
        let mut perm = vec![0];
        perm.extend(2..=spatial as i64 + 1);
        perm.push(1);
        self.op("Transpose", base, vec![v], vec![attr_ints("perm", &perm)])
    }

    fn activation(
        &mut self,
        node: &Node,
        base: &str,
        v: String,
        a: Activation,
        rank: usize,
    ) -> Result<String, InteropError> {
        let _ = node;
        let axis = |ax: usize| -> i64 { ax as i64 + 1 - (rank as i64 + 1) };
        Ok(match a {
            Activation::Linear => v,
            Activation::Relu => self.op("Relu", base, vec![v], vec![]),
            Activation::LeakyRelu { alpha } => self.op(
                "LeakyRelu",
                base,
                vec![v],
                vec![attr_float("alpha", alpha as f32)],
            ),
            Activation::Elu => self.op("Elu", base, vec![v], vec![attr_float("alpha", 1.0)]),
            Activation::Sigmoid => self.op("Sigmoid", base, vec![v], vec![]),
            Activation::Tanh => self.op("Tanh", base, vec![v], vec![]),
            Activation::Softplus => self.op("Softplus", base, vec![v], vec![]),
            Activation::Softmax { axis: ax } => {
                self.op("Softmax", base, vec![v], vec![attr_int("axis", axis(ax))])
            }
            Activation::LogSoftmax { axis: ax } => self.op(
                "LogSoftmax",
                base,
                vec![v],
                vec![attr_int("axis", axis(ax))],
            ),
            Activation::Silu => {
                let s = self.op("Sigmoid", base, vec![v.clone()], vec![]);
                self.op("Mul", base, vec![v, s], vec![])
            }
            Activation::Gelu => {
                // Exact: 0.5 * x * (1 + erf(x / sqrt(2))) (Gelu is an operator from opset 20 on).
                let r = self.scalar(base, std::f32::consts::FRAC_1_SQRT_2);
                let s = self.op("Mul", base, vec![v.clone(), r], vec![]);
                let e = self.op("Erf", base, vec![s], vec![]);
                let one = self.scalar(base, 1.0);
                let p = self.op("Add", base, vec![e, one], vec![]);
                let half = self.scalar(base, 0.5);
                let h = self.op("Mul", base, vec![v, half], vec![]);
                self.op("Mul", base, vec![h, p], vec![])
            }
        })
    }

    /// GroupNorm on channels-last `[N, spatial.., C]` (ONNX's GroupNormalization is channels-
    /// first and, before opset 21, scales per group): the channels viewed as `[groups, C /
    /// groups]`, each group normalised over its channels and every position, then scaled and
    /// shifted per channel, as fm computes it.
    fn group_norm(
        &mut self,
        node: &Node,
        base: &str,
        x: String,
        groups: usize,
        epsilon: f64,
    ) -> String {
        let gamma = self.weight_init(node, "gamma");
        let beta = self.weight_init(node, "beta");
        let shape = &node.shape;
        let p = shape.len();
        let channels = shape[p - 1];
        // [0 (the batch), spatial.., groups, C / groups]
        let mut grouped: Vec<i64> = std::iter::once(0)
            .chain(shape[..p - 1].iter().map(|&d| d as i64))
            .collect();
        grouped.extend([groups as i64, (channels / groups) as i64]);
        let g = self.fresh(&format!("{base}/grouped"));
        let g = self.init_i64(g, &grouped);
        let xg = self.op("Reshape", base, vec![x, g], vec![]);
        // Every axis but the batch and the group axis (`p` in the grouped view).
        let axes: Vec<i64> = (1..p as i64).chain([p as i64 + 1]).collect();
        let mean_attrs = || vec![attr_ints("axes", &axes), attr_int("keepdims", 1)];
        let mean = self.op("ReduceMean", base, vec![xg.clone()], mean_attrs());
        let xc = self.op("Sub", base, vec![xg, mean], vec![]);
        let sq = self.op("Mul", base, vec![xc.clone(), xc.clone()], vec![]);
        let var = self.op("ReduceMean", base, vec![sq], mean_attrs());
        let eps = self.scalar(base, epsilon as f32);
        let ve = self.op("Add", base, vec![var, eps], vec![]);
        let sd = self.op("Sqrt", base, vec![ve], vec![]);
        let normed = self.op("Div", base, vec![xc, sd], vec![]);
        let back: Vec<i64> = std::iter::once(0)
            .chain(shape.iter().map(|&d| d as i64))
            .collect();
        let b = self.fresh(&format!("{base}/shape"));
        let b = self.init_i64(b, &back);
        let y = self.op("Reshape", base, vec![normed, b], vec![]);
        let y = self.op("Mul", base, vec![y, gamma], vec![]);
        self.op("Add", base, vec![y, beta], vec![])
    }

    /// MultiHeadAttention on `[N, T, D]` as the arithmetic fm's lowering does (ONNX has no
    /// attention operator before opset 23), in this order, which `fmc import` reads back:
    /// for the query, key and value in turn `MatMul` by the kernel viewed as `[D, H*K]`,
    /// `Reshape` to `[N, T, H, K]`, `Add` the bias `[H, K]` (the query then `Mul` by
    /// 1/sqrt(K)), `Transpose` to `[N, H, T, K]` (the key to `[N, H, K, T]`); then `MatMul`
    /// (scores), `Add` of a `[Tq, Tk]` mask of 0 and -1e9 above the diagonal when causal,
    /// `Softmax` over the keys, `MatMul` by the values, `Transpose` back to `[N, Tq, H, K]`,
    /// `Reshape` to `[N, Tq, H*K]`, `MatMul` by the output kernel viewed as `[H*K, D]`, `Add`
    /// the output bias. `ins` are query, value, key (fm's order).
    fn attention(
        &mut self,
        node: &Node,
        base: &str,
        ins: &[String],
        heads: usize,
        key_dim: usize,
        causal: bool,
    ) -> String {
        let layer = node.name.as_deref().unwrap_or_default().to_string();
        let hk = heads * key_dim;
        let split = self.fresh(&format!("{base}/heads"));
        let split = self.init_i64(split, &[0, 0, heads as i64, key_dim as i64]);
        let project = |e: &mut Self, x: &str, role: &str, perm: &[i64]| -> String {
            let (shape, w) = e.weight(node, &format!("{role}.kernel"));
            let k = e.init_f32(format!("{layer}.{role}.kernel"), &[shape[0], hk], &w);
            let y = e.op("MatMul", base, vec![x.to_string(), k], vec![]);
            let y = e.op("Reshape", base, vec![y, split.clone()], vec![]);
            let b = e.weight_init(node, &format!("{role}.bias"));
            let mut y = e.op("Add", base, vec![y, b], vec![]);
            if role == "query" {
                let s = e.scalar(base, (1.0 / (key_dim as f64).sqrt()) as f32);
                y = e.op("Mul", base, vec![y, s], vec![]);
            }
            e.op("Transpose", base, vec![y], vec![attr_ints("perm", perm)])
        };
        let q = project(self, &ins[0], "query", &[0, 2, 1, 3]);
        let k = project(self, &ins[2], "key", &[0, 2, 3, 1]);
        let v = project(self, &ins[1], "value", &[0, 2, 1, 3]);
        let mut scores = self.op("MatMul", base, vec![q, k], vec![]);
        if causal {
            let tq = node.shape[0];
            let tk = self.graph.nodes[node.inputs[2]].shape[0];
            let mask: Vec<f32> = (0..tq * tk)
                .map(|i| if i % tk > i / tk { -1e9 } else { 0.0 })
                .collect();
            let m = self.fresh(&format!("{base}/mask"));
            let m = self.init_f32(m, &[tq, tk], &mask);
            scores = self.op("Add", base, vec![scores, m], vec![]);
        }
        let attn = self.op("Softmax", base, vec![scores], vec![attr_int("axis", -1)]);
        let c = self.op("MatMul", base, vec![attn, v], vec![]);
        let c = self.op(
            "Transpose",
            base,
            vec![c],
            vec![attr_ints("perm", &[0, 2, 1, 3])],
        );
        let merge = self.fresh(&format!("{base}/merge"));
        let merge = self.init_i64(merge, &[0, 0, hk as i64]);
        let c = self.op("Reshape", base, vec![c, merge], vec![]);
        let (shape, w) = self.weight(node, "output.kernel");
        let ok = self.init_f32(format!("{layer}.output.kernel"), &[hk, shape[2]], &w);
        let y = self.op("MatMul", base, vec![c, ok], vec![]);
        let ob = self.weight_init(node, "output.bias");
        self.op("Add", base, vec![y, ob], vec![])
    }

    /// SimpleRNN/LSTM/GRU as ONNX's RNN/LSTM/GRU (time-major, so the input is transposed).
    #[allow(clippy::too_many_arguments)]
    fn rnn(
        &mut self,
        node: &Node,
        base: &str,
        x: String,
        kind: RnnKind,
        units: usize,
        return_sequences: bool,
        act: Activation,
    ) -> Result<String, InteropError> {
        let act_name = match act {
            Activation::Tanh => "Tanh",
            Activation::Relu => "Relu",
            Activation::Sigmoid => "Sigmoid",
            _ => {
                return Err(self.unsupported(
                    node,
                    "ONNX's recurrent operators take tanh, relu or sigmoid as the activation",
                ))
            }
        };
        let (kshape, kernel) = self.weight(node, "kernel");
        let (_, recurrent) = self.weight(node, "recurrent_kernel");
        let (_, bias) = self.weight(node, "bias");
        let c = kshape[0];
        let gates = match kind {
            RnnKind::Simple => 1,
            RnnKind::Lstm => 4,
            RnnKind::Gru => 3,
        };
        // Keras's gate blocks in ONNX's order: LSTM i, f, c, o -> i, o, f, c; GRU z, r, h is
        // ONNX's z, r, h already.
        let order: Vec<usize> = match kind {
            RnnKind::Lstm => vec![0, 3, 1, 2],
            _ => (0..gates).collect(),
        };
        // [rows, g*u] (Keras) -> [g*u, rows] (ONNX), gate blocks reordered.
        let onnx_w = |w: &[f32], rows: usize| -> Vec<f32> {
            let mut out = Vec::with_capacity(w.len());
            for &g in &order {
                for u in 0..units {
                    for r in 0..rows {
                        out.push(w[r * gates * units + g * units + u]);
                    }
                }
            }
            out
        };
        let reorder = |b: &[f32]| -> Vec<f32> {
            order
                .iter()
                .flat_map(|&g| b[g * units..(g + 1) * units].iter().copied())
                .collect()
        };
        let w = onnx_w(&kernel, c);
        let r = onnx_w(&recurrent, units);
        let width = gates * units;
        let b: Vec<f32> = match kind {
            // Keras keeps separate input and recurrent biases for GRU (reset_after).
            RnnKind::Gru => [reorder(&bias[..width]), reorder(&bias[width..])].concat(),
            _ => [reorder(&bias), vec![0.0; width]].concat(),
        };
        let name = node.name.as_deref().unwrap_or_default();
        let w = self.init_f32(format!("{name}.kernel"), &[1, width, c], &w);
        let r = self.init_f32(format!("{name}.recurrent_kernel"), &[1, width, units], &r);
        let b = self.init_f32(format!("{name}.bias"), &[1, 2 * width], &b);
        let xt = self.op(
            "Transpose",
            base,
            vec![x],
            vec![attr_ints("perm", &[1, 0, 2])],
        );
        let mut attrs = vec![attr_int("hidden_size", units as i64)];
        let (op, acts): (&str, Vec<&str>) = match kind {
            RnnKind::Simple => ("RNN", vec![act_name]),
            RnnKind::Lstm => ("LSTM", vec!["Sigmoid", act_name, act_name]),
            RnnKind::Gru => {
                attrs.push(attr_int("linear_before_reset", 1));
                ("GRU", vec!["Sigmoid", act_name])
            }
        };
        attrs.push(attr_strings("activations", &acts));
        let y = self.fresh(&format!("{base}/Y"));
        let yh = self.fresh(&format!("{base}/Y_h"));
        self.push(
            op,
            &format!("{base}/{op}"),
            vec![xt, w, r, b],
            vec![y.clone(), yh.clone()],
            attrs,
        );
        if return_sequences {
            // Y: [T, 1, N, u] -> [T, N, u] -> [N, T, u]
            let a = self.fresh(&format!("{base}/axes"));
            let a = self.init_i64(a, &[1]);
            let s = self.op("Squeeze", base, vec![y, a], vec![]);
            Ok(self.op(
                "Transpose",
                base,
                vec![s],
                vec![attr_ints("perm", &[1, 0, 2])],
            ))
        } else {
            // Y_h: [1, N, u] -> [N, u]
            let a = self.fresh(&format!("{base}/axes"));
            let a = self.init_i64(a, &[0]);
            Ok(self.op("Squeeze", base, vec![yh, a], vec![]))
        }
    }
}

fn to_i64(v: &[usize]) -> Vec<i64> {
    v.iter().map(|&x| x as i64).collect()
}

/// ONNX `pads` (all begins, then all ends) for fm's padding (language.md section 5: `same`
/// follows TensorFlow, the odd cell at the end).
pub fn pads(
    input: &[usize],
    kernel: &[usize],
    stride: &[usize],
    dilation: &[usize],
    padding: Padding,
) -> Vec<i64> {
    let n = kernel.len();
    let mut begin = vec![0i64; n];
    let mut end = vec![0i64; n];
    if padding == Padding::Same {
        for a in 0..n {
            let (i, k, s, d) = (
                input[a] as i64,
                kernel[a] as i64,
                stride[a] as i64,
                dilation[a] as i64,
            );
            let out = (i + s - 1) / s;
            let total = ((out - 1) * s + (k - 1) * d + 1 - i).max(0);
            begin[a] = total / 2;
            end[a] = total - total / 2;
        }
    }
    begin.extend(end);
    begin
}

/// Permutes the axes of a row-major array: output axis `a` is input axis `perm[a]`.
pub fn transpose(shape: &[usize], values: &[f32], perm: &[usize]) -> (Vec<usize>, Vec<f32>) {
    let a = ndarray::ArrayViewD::from_shape(shape, values).expect("shape matches values");
    let t = a.permuted_axes(perm.to_vec());
    (
        t.shape().to_vec(),
        t.as_standard_layout().iter().copied().collect(),
    )
}
