//! ONNX graph -> `.fm` model. Every ONNX value is tracked as an fm value plus a layout: which fm
//! axis each ONNX axis is (`None`: a size-1 axis fm does not have, as the `[N, C, 1, 1]` of a
//! global pooling). A PyTorch image input `[N, C, H, W]` becomes an fm input `[H, W, C]`; its
//! Conv, pooling and BatchNorm nodes read channels-first views of fm's channels-last values, and
//! Transpose/Squeeze/Unsqueeze nodes only change the layout. Weights are transposed into fm's
//! layouts (a Conv kernel `[out, in, kh, kw]` -> `[kh, kw, in, out]`; a Gemm after a channels-first
//! Flatten has its rows permuted to fm's flattening order).

/// (Shared with the Keras importer; `fmc import` names models with it.)
pub use super::sanitize;
use super::{fmt_float, int_list, Imported, Model, Stmt};
use crate::error::InteropError;
use crate::onnx::{self, *};
use fm_codes::E0402;
use fm_codes::E0412;
use fm_runtime::tensor::Tensor;
use ndarray::{ArrayD, IxDyn};
use prost::Message;
use std::collections::{HashMap, HashSet};

/// Marks where a Conv call's activation argument would go (after the kernel).
const ACT_MARK: &str = "\u{1}";

/// An ONNX value as fm sees it.
#[derive(Clone, Debug)]
struct Val {
    /// The fm `let`/input name holding it.
    var: String,
    /// The fm shape, batch first (`None` for the batch).
    fm: Vec<Option<usize>>,
    /// For each ONNX axis, the fm axis it is (`None`: a size-1 axis fm does not have).
    layout: Vec<Option<usize>>,
    /// Set after a Flatten of a non-channels-last view: the fm shape before it and the ONNX
    /// flattening order (fm axes), so a following Gemm/MatMul can permute its kernel rows.
    flat_from: Option<(Vec<usize>, Vec<usize>)>,
    /// The fm statement that made it (for folding a bias Add into a MatMul's Dense).
    stmt: Option<usize>,
}

impl Val {
    fn identity(&self) -> bool {
        self.flat_from.is_none()
            && self.layout.len() == self.fm.len()
            && self.layout.iter().enumerate().all(|(i, a)| *a == Some(i))
    }
    /// The ONNX shape (batch as `None`).
    fn onnx_shape(&self) -> Vec<Option<usize>> {
        self.layout
            .iter()
            .map(|a| match a {
                Some(a) => self.fm[*a],
                None => Some(1),
            })
            .collect()
    }
    /// Per-sample fm shape.
    fn sample(&self) -> Vec<usize> {
        self.fm[1..].iter().map(|d| d.unwrap_or(0)).collect()
    }
    /// The layout is a channels-first view of fm's channels-last `[N, spatial.., C]`.
    fn channels_first(&self) -> bool {
        let r = self.fm.len();
        self.flat_from.is_none()
            && self.layout.len() == r
            && r >= 2
            && self.layout[0] == Some(0)
            && self.layout[1] == Some(r - 1)
            && (2..r).all(|i| self.layout[i] == Some(i - 1))
    }
}

struct Importer<'a> {
    file: &'a str,
    inits: HashMap<String, TensorValue>,
    vals: HashMap<String, Val>,
    model: Model,
    /// How many nodes read each value (a bias Add folds into a MatMul only when it is the
    /// MatMul's one reader).
    readers: HashMap<String, usize>,
    layer_names: HashSet<String>,
    vars: HashSet<String>,
    opset: i64,
    /// The fixed batch size of the inputs seen so far, if any.
    batch: Option<usize>,
}

/// Imports an ONNX model (`file` names it in messages; `model_name` becomes the `.fm` model's
/// name).
pub fn import(bytes: &[u8], file: &str, model_name: &str) -> Result<Imported, InteropError> {
    let m = ModelProto::decode(bytes)
        .map_err(|e| InteropError::new(E0402, file, None, format!("is not an ONNX model: {e}")))?;
    let Some(graph) = m.graph.as_ref() else {
        return Err(InteropError::new(E0402, file, None, "has no graph"));
    };
    let opset = m
        .opset_import
        .iter()
        .find(|o| o.domain().is_empty() || o.domain() == "ai.onnx")
        .map(|o| o.version())
        .unwrap_or(1);
    let mut imp = Importer {
        file,
        inits: HashMap::new(),
        vals: HashMap::new(),
        model: Model::new(model_name),
        readers: HashMap::new(),
        layer_names: HashSet::new(),
        vars: HashSet::new(),
        opset,
        batch: None,
    };
    imp.model.header.push(format!(
        "Imported by `fmc import` from {} ({}{}, opset {opset}).",
        file.rsplit('/').next().unwrap_or(file),
        if m.producer_name().is_empty() {
            "unknown producer"
        } else {
            m.producer_name()
        },
        if m.producer_version().is_empty() {
            String::new()
        } else {
            format!(" {}", m.producer_version())
        }
    ));
    for t in &graph.initializer {
        let v = tensor_values(t).map_err(|e| {
            InteropError::new(E0402, file, Some(format!("initializer '{}'", t.name())), e)
        })?;
        imp.inits.insert(t.name().to_string(), v);
    }
    for n in &graph.node {
        for i in &n.input {
            *imp.readers.entry(i.clone()).or_default() += 1;
        }
    }
    for o in &graph.output {
        *imp.readers.entry(o.name().to_string()).or_default() += 1;
    }
    for input in &graph.input {
        if imp.inits.contains_key(input.name()) {
            continue;
        }
        imp.input(input, graph)?;
    }
    let mut k = 0;
    while k < graph.node.len() {
        // fm's exporter writes some layers as several nodes; each such run is read back as one
        // layer: GroupNorm as its arithmetic, MultiHeadAttention as its projections, softmax
        // and matrix products, the exact GELU as its erf arithmetic (ONNX has `Gelu` only from
        // opset 20 on), PositionEmbedding as Shape, Slice of its table, Expand.
        let rest = &graph.node[k..];
        let pattern = imp
            .group_norm_arithmetic(rest)
            .or_else(|| imp.attention_arithmetic(rest))
            .or_else(|| imp.gelu_arithmetic(rest))
            .or_else(|| imp.position_embedding(rest));
        if let Some(n) = pattern {
            k += n;
            continue;
        }
        imp.node(k, &graph.node[k])?;
        k += 1;
    }
    for o in &graph.output {
        let v = imp.val(o.name(), "graph output")?;
        let kept: Vec<usize> = v.layout.iter().flatten().copied().collect();
        if v.flat_from.is_some() || kept.first() != Some(&0) {
            return Err(InteropError::new(
                E0412,
                file,
                Some(format!("output '{}'", o.name())),
                "is a flattened channels-first tensor or has the batch axis elsewhere than first",
            ));
        }
        let name = super::unique_name(&sanitize(o.name()), &mut imp.vars);
        if kept != (0..v.fm.len()).collect::<Vec<_>>() {
            // A channels-first or transposed output: fm gives it in its own layout.
            let perm: Vec<String> = (0..v.fm.len())
                .map(|a| kept.iter().position(|&k| k == a).unwrap_or(0).to_string())
                .collect();
            imp.model.header.push(format!(
                "Output `{name}` is channels-last here; ONNX's is [{}]: numpy's `y.transpose({})` gives fm's from ONNX's (without its size-1 axes).",
                v.onnx_shape().iter().map(|d| d.map_or("N".into(), |d| d.to_string())).collect::<Vec<_>>().join(", "),
                perm.join(", ")
            ));
        }
        imp.model.output_layouts.push(v.layout.clone());
        imp.model.outputs.push((name, v.var.clone()));
    }
    Ok(imp.model.finish())
}

fn attr<'n>(node: &'n NodeProto, name: &str) -> Option<&'n AttributeProto> {
    node.attribute.iter().find(|a| a.name() == name)
}
fn attr_i(node: &NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).map_or(default, |a| a.i())
}
fn attr_f(node: &NodeProto, name: &str, default: f32) -> f32 {
    attr(node, name).map_or(default, |a| a.f())
}
fn attr_is(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(node, name).map(|a| a.ints.clone())
}
fn attr_s(node: &NodeProto, name: &str) -> Option<String> {
    attr(node, name).map(|a| String::from_utf8_lossy(a.s()).into_owned())
}

/// `node 3 'conv1' (Conv)`, with its attributes.
fn describe(k: usize, node: &NodeProto) -> String {
    let attrs: Vec<String> = node
        .attribute
        .iter()
        .map(|a| {
            let v = if !a.ints.is_empty() {
                format!("{:?}", a.ints)
            } else if !a.floats.is_empty() {
                format!("{:?}", a.floats)
            } else if !a.strings.is_empty() {
                let s: Vec<String> = a
                    .strings
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect();
                format!("{s:?}")
            } else if a.s.is_some() {
                format!("{:?}", String::from_utf8_lossy(a.s()))
            } else if a.f.is_some() {
                format!("{}", a.f())
            } else if a.i.is_some() {
                format!("{}", a.i())
            } else {
                "(tensor or graph)".into()
            };
            format!("{}={v}", a.name())
        })
        .collect();
    let mut s = format!("node {k} '{}' ({})", node.name(), node.op_type());
    if !attrs.is_empty() {
        s.push_str(&format!(" {{{}}}", attrs.join(", ")));
    }
    s
}

impl Importer<'_> {
    fn err(&self, k: usize, node: &NodeProto, message: impl Into<String>) -> InteropError {
        InteropError::new(E0412, self.file, Some(describe(k, node)), message)
    }

    fn val(&self, name: &str, what: &str) -> Result<Val, InteropError> {
        self.vals.get(name).cloned().ok_or_else(|| {
            InteropError::new(
                E0402,
                self.file,
                Some(format!("{what} '{name}'")),
                "reads a value that no node, input or initializer defines",
            )
        })
    }

    /// A constant input of `node` (an initializer or a Constant node's value).
    fn constant(&self, name: &str) -> Option<&TensorValue> {
        self.inits.get(name)
    }

    /// A constant integer input (a shape, axes, a permutation).
    fn constant_ints(&self, name: &str) -> Option<Vec<i64>> {
        self.constant(name)
            .and_then(|t| t.i64s().map(<[i64]>::to_vec))
    }

    /// Input `i` of `node` as a stored value; `role` names it in the message when it is not.
    fn stored_input(
        &self,
        k: usize,
        node: &NodeProto,
        i: usize,
        role: &str,
    ) -> Result<TensorValue, InteropError> {
        node.input
            .get(i)
            .and_then(|n| self.constant(n))
            .cloned()
            .ok_or_else(|| self.err(k, node, format!("has a computed {role}")))
    }

    /// The axes of a Squeeze, Unsqueeze or Reduce node: its stored second input (from opset 13
    /// on for Squeeze, Unsqueeze and ReduceSum, from 18 on for the other reductions), else its
    /// `axes` attribute, else none.
    fn axes(&self, k: usize, node: &NodeProto) -> Result<Vec<i64>, InteropError> {
        match node.input.get(1).filter(|s| !s.is_empty()) {
            Some(a) => self
                .constant_ints(a)
                .ok_or_else(|| self.err(k, node, "takes its axes from a computed tensor")),
            None => Ok(attr_is(node, "axes").unwrap_or_default()),
        }
    }

    /// How many nodes read the value `name`.
    fn reads(&self, name: &str) -> usize {
        self.readers.get(name).copied().unwrap_or(0)
    }

    fn input(&mut self, input: &ValueInfoProto, graph: &GraphProto) -> Result<(), InteropError> {
        let name = input.name();
        let part = || Some(format!("input '{name}'"));
        let Some(type_proto::Value::TensorType(t)) =
            input.r#type.as_ref().and_then(|t| t.value.as_ref())
        else {
            return Err(InteropError::new(
                E0412,
                self.file,
                part(),
                "is not a tensor",
            ));
        };
        let dtype = match t.elem_type() {
            onnx::FLOAT | onnx::DOUBLE => "f32",
            onnx::INT32 | onnx::INT64 => "i32",
            other => {
                return Err(InteropError::new(
                    E0412,
                    self.file,
                    part(),
                    format!("has element type {other}; fm inputs are f32 or i32"),
                ))
            }
        };
        let dims: Vec<Option<usize>> = t
            .shape
            .as_ref()
            .map(|s| {
                s.dim
                    .iter()
                    .map(|d| match &d.value {
                        Some(tensor_shape_proto::dimension::Value::DimValue(v)) if *v > 0 => {
                            Some(*v as usize)
                        }
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        // Which axis is the batch: the first, unless the input goes straight into a
        // time-major recurrent node ([T, N, C]).
        let readers: Vec<&NodeProto> = graph
            .node
            .iter()
            .filter(|n| n.input.first().map(String::as_str) == Some(name))
            .collect();
        let time_major = dims.len() == 3
            && readers.iter().any(|n| {
                matches!(n.op_type(), "LSTM" | "GRU" | "RNN") && attr_i(n, "layout", 0) == 0
            });
        let channels_first = dims.len() >= 3
            && !time_major
            && readers.iter().any(|n| {
                matches!(
                    n.op_type(),
                    "Conv"
                        | "MaxPool"
                        | "AveragePool"
                        | "GlobalAveragePool"
                        | "GlobalMaxPool"
                        | "BatchNormalization"
                        | "GroupNormalization"
                        | "Resize"
                )
            });
        let batch_axis = usize::from(time_major);
        // Every input's batch axis is the same batch: fixed batch sizes must agree.
        if let Some(Some(b)) = dims.get(batch_axis) {
            match self.batch {
                Some(prev) if prev != *b => {
                    return Err(InteropError::new(
                        E0412,
                        self.file,
                        part(),
                        format!("has {b} samples along its first axis where another input has {prev}; fm's inputs share one batch axis (a broadcast input of another rank has no `.fm` form)"),
                    ))
                }
                _ => self.batch = Some(*b),
            }
        }
        if dims.is_empty() {
            return Err(InteropError::new(
                E0412,
                self.file,
                part(),
                "has no axes; an fm input has a batch axis (a rank-1 input is one value per sample)",
            ));
        }
        for (i, d) in dims.iter().enumerate() {
            if i != batch_axis && d.is_none() {
                return Err(InteropError::new(
                    E0412,
                    self.file,
                    part(),
                    format!(
                        "has a dynamic dimension at axis {i}; fm needs every dimension but the batch fixed"
                    ),
                ));
            }
        }
        let r = dims.len();
        // fm axis of each ONNX axis.
        let layout: Vec<usize> = if time_major {
            vec![1, 0, 2]
        } else if channels_first {
            std::iter::once(0)
                .chain(std::iter::once(r - 1))
                .chain(1..r - 1)
                .collect()
        } else {
            (0..r).collect()
        };
        let mut fm = vec![None; r];
        for (i, &a) in layout.iter().enumerate() {
            fm[a] = if i == batch_axis { None } else { dims[i] };
        }
        let var = super::unique_name(&sanitize(name), &mut self.vars);
        let sample: Vec<usize> = fm[1..].iter().map(|d| d.unwrap_or(0)).collect();
        self.model
            .inputs
            .push((var.clone(), dtype.into(), sample.clone()));
        let onnx_dims: Vec<String> = dims
            .iter()
            .map(|d| d.map_or("N".into(), |d| d.to_string()))
            .collect();
        let perm: Vec<usize> = (0..r)
            .map(|a| layout.iter().position(|&l| l == a).unwrap_or(0))
            .collect();
        self.model
            .input_perms
            .push((name.to_string(), perm.clone()));
        if time_major || channels_first {
            self.model.header.push(format!(
                "Input `{var}`: ONNX takes [{}]; this model takes [N, {}] (channels-last): convert data with numpy's `x.transpose({})`.",
                onnx_dims.join(", "),
                sample.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
                perm.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
            ));
        }
        self.vals.insert(
            name.to_string(),
            Val {
                var,
                fm,
                layout: layout.into_iter().map(Some).collect(),
                flat_from: None,
                stmt: None,
            },
        );
        Ok(())
    }

    /// The first input of a Conv or pooling node: an `[N, C, L]` or `[N, C, H, W]` view of an
    /// fm channels-last value.
    fn image_input(&self, k: usize, node: &NodeProto) -> Result<Val, InteropError> {
        let x = self.val(&node.input[0], "input")?;
        if !x.channels_first() || !(3..=4).contains(&x.fm.len()) {
            return Err(self.err(k, node, "reads a tensor that is not an [N, C, L] or [N, C, H, W] view of fm's channels-last data"));
        }
        Ok(x)
    }

    /// A layer name for `node`: its ONNX name without the operator suffix PyTorch and fm's
    /// exporter add (`/conv1/Conv` and `conv1/Conv` -> `conv1`), made unique.
    fn layer_name(&mut self, node: &NodeProto) -> Option<String> {
        let mut n = node.name().trim_start_matches('/').to_string();
        if let Some((head, tail)) = n.rsplit_once('/') {
            if tail.starts_with(node.op_type()) {
                n = head.to_string();
            }
        }
        if n.is_empty() {
            n = node.op_type().to_lowercase();
        }
        Some(super::unique_name(&sanitize(&n), &mut self.layer_names))
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        onnx_out: &str,
        inputs: Vec<String>,
        call: String,
        layer: Option<String>,
        params: Vec<(&str, Tensor)>,
        fm: Vec<Option<usize>>,
        layout: Vec<Option<usize>>,
    ) -> usize {
        // The value is named after its layer when it has one (`let conv1 = x -> Conv2D(...)`).
        let base = layer.clone().unwrap_or_else(|| sanitize(onnx_out));
        let var = super::unique_name(&base, &mut self.vars);
        let params = params
            .into_iter()
            .map(|(role, t)| (format!("{}.{role}", layer.as_deref().unwrap_or("")), t))
            .collect();
        let act_at = if call.starts_with("Dense(") {
            call.find([',', ')'])
        } else if call.starts_with("Conv") {
            call.find(ACT_MARK)
        } else {
            None
        };
        let call = call.replace(ACT_MARK, "");
        self.model.stmts.push(Stmt {
            var: var.clone(),
            inputs,
            call,
            layer,
            params,
            act_at,
        });
        let id = self.model.stmts.len() - 1;
        self.vals.insert(
            onnx_out.to_string(),
            Val {
                var,
                fm,
                layout,
                flat_from: None,
                stmt: Some(id),
            },
        );
        id
    }

    /// A value computed from `x` alone (`x -> call`), in `x`'s layout, `fm` its fm shape.
    fn push_from(
        &mut self,
        onnx_out: &str,
        x: &Val,
        call: String,
        layer: Option<String>,
        params: Vec<(&str, Tensor)>,
        fm: Vec<Option<usize>>,
    ) -> usize {
        let layout = x.layout.clone();
        self.push(
            onnx_out,
            vec![x.var.clone()],
            call,
            layer,
            params,
            fm,
            layout,
        )
    }

    /// The same fm value under another ONNX name, with a new layout.
    fn alias(&mut self, out: &str, v: &Val, layout: Vec<Option<usize>>) {
        self.vals.insert(
            out.to_string(),
            Val {
                layout,
                ..v.clone()
            },
        );
    }

    /// Folds the activation `call` into the layer that computes `x` (the caller has checked
    /// that the activation is that value's only reader), `out` then naming the layer's value;
    /// false (nothing changed) when the layer takes no activation there.
    fn fold_into_layer(&mut self, out: &str, x: &Val, call: &str) -> bool {
        let folded = x
            .stmt
            .is_some_and(|id| self.model.stmts[id].fold_activation(call));
        if folded {
            self.alias(out, x, x.layout.clone());
        }
        folded
    }

    fn node(&mut self, k: usize, node: &NodeProto) -> Result<(), InteropError> {
        let op = node.op_type();
        if !node.domain().is_empty() && node.domain() != "ai.onnx" {
            return Err(self.err(
                k,
                node,
                format!(
                    "is in operator domain '{}'; fm reads the standard domain",
                    node.domain()
                ),
            ));
        }
        let out = node.output.first().cloned().unwrap_or_default();
        if op == "Constant" {
            let Some(t) = attr(node, "value").and_then(|a| a.t.as_ref()) else {
                return Err(self.err(
                    k,
                    node,
                    "only Constant nodes with a `value` tensor are read",
                ));
            };
            let v = tensor_values(t).map_err(|e| self.err(k, node, e))?;
            self.inits.insert(out, v);
            return Ok(());
        }
        // Operators computed on constants only (shape arithmetic) are not followed.
        let data_inputs: Vec<&String> = node
            .input
            .iter()
            .filter(|i| !i.is_empty() && !self.inits.contains_key(*i))
            .collect();
        if data_inputs.is_empty() {
            return Err(self.err(
                k,
                node,
                "computes from constants only; fm reads weights that are stored, not computed (export with constant folding)",
            ));
        }
        match op {
            "Identity" | "Dropout" => {
                let x = self.val(&node.input[0], "input")?;
                let l = x.layout.clone();
                self.alias(&out, &x, l);
            }
            "Cast" => {
                let x = self.val(&node.input[0], "input")?;
                let to = attr_i(node, "to", 0) as i32;
                if !matches!(to, onnx::FLOAT | onnx::INT32 | onnx::INT64 | onnx::DOUBLE) {
                    return Err(self.err(k, node, "casts to a type fm has no use for"));
                }
                let l = x.layout.clone();
                self.alias(&out, &x, l);
            }
            "Transpose" => {
                let x = self.val(&node.input[0], "input")?;
                if x.flat_from.is_some() {
                    return Err(self.err(k, node, "transposes a flattened channels-first tensor"));
                }
                let r = x.layout.len();
                let perm: Vec<usize> = attr_is(node, "perm")
                    .map(|p| p.iter().map(|&a| a as usize).collect())
                    .unwrap_or_else(|| (0..r).rev().collect());
                if perm.len() != r || perm.iter().any(|&a| a >= r) {
                    return Err(self.err(k, node, "has a `perm` that does not fit its input"));
                }
                let l = perm.iter().map(|&a| x.layout[a]).collect();
                self.alias(&out, &x, l);
            }
            "Squeeze" | "Unsqueeze" => self.squeeze(k, node, &out)?,
            "Relu" | "Sigmoid" | "Tanh" | "Elu" | "LeakyRelu" | "Softplus" | "Gelu" => {
                let x = self.val(&node.input[0], "input")?;
                let call = match op {
                    "Relu" => "relu".to_string(),
                    "Sigmoid" => "sigmoid".into(),
                    "Tanh" => "tanh".into(),
                    "Softplus" => "softplus".into(),
                    "Elu" if attr_f(node, "alpha", 1.0) != 1.0 => {
                        return self.scaled_elu(node, &x, &out);
                    }
                    "Elu" => "elu".into(),
                    "Gelu" => match attr_s(node, "approximate").as_deref() {
                        None | Some("none") => "gelu".into(),
                        Some("tanh") => {
                            self.gelu_tanh(&x, &out);
                            return Ok(());
                        }
                        Some(_) => return Err(self.err(k, node, "has an approximation ONNX does not define")),
                    },
                    _ => format!(
                        "leaky_relu(alpha: {})",
                        fmt_float(attr_f(node, "alpha", 0.01))
                    ),
                };
                // Into the layer before it, when this is its only reader.
                let simple = !call.contains('(');
                if simple && self.reads(&node.input[0]) == 1 && self.fold_into_layer(&out, &x, &call) {
                    return Ok(());
                }
                self.push_from(&out, &x, call, None, vec![], x.fm.clone());
                // Elementwise: a flattened channels-first value stays one (the order does not
                // matter).
                if let Some(v) = self.vals.get_mut(&out) {
                    v.flat_from = x.flat_from.clone();
                }
            }
            "Softmax" | "LogSoftmax" => {
                let x = self.val(&node.input[0], "input")?;
                let r = x.layout.len() as i64;
                let default = if self.opset >= 13 { -1 } else { 1 };
                let mut axis = attr_i(node, "axis", default);
                if axis < 0 {
                    axis += r;
                }
                if self.opset < 13 && axis != r - 1 {
                    return Err(self.err(k, node, "before opset 13 this flattens the trailing axes; only the last axis is read"));
                }
                let fm_axis = x.layout.get(axis as usize).copied().flatten();
                match fm_axis {
                    Some(a) if a >= 1 && x.flat_from.is_none() => {
                        let f = if op == "Softmax" { "softmax" } else { "log_softmax" };
                        if a == x.fm.len() - 1
                            && self.reads(&node.input[0]) == 1
                            && self.fold_into_layer(&out, &x, f)
                        {
                            return Ok(());
                        }
                        let call = if a == x.fm.len() - 1 {
                            f.to_string()
                        } else {
                            format!("{f}(axis: {})", a - 1)
                        };
                        self.push_from(&out, &x, call, None, vec![], x.fm.clone());
                    }
                    _ => return Err(self.err(k, node, "normalises over the batch axis or a flattened channels-first axis")),
                }
            }
            "Gemm" | "MatMul" => self.dense(k, node, &out)?,
            "Add" | "Sub" | "Mul" | "Div" => self.arith(k, node, &out)?,
            "Conv" => self.conv(k, node, &out)?,
            "MaxPool" | "AveragePool" => self.pool(k, node, &out)?,
            "GlobalAveragePool" | "GlobalMaxPool" => {
                let x = self.image_input(k, node)?;
                let r = x.fm.len();
                let kind = if op == "GlobalAveragePool" { "Avg" } else { "Max" };
                let call = format!("Global{kind}Pool{}D", r - 2);
                let layer = self.layer_name(node);
                let c = x.fm[r - 1];
                let mut layout = vec![Some(0), Some(1)];
                layout.extend(std::iter::repeat_n(None, r - 2));
                self.push(&out, vec![x.var.clone()], call, layer, vec![], vec![None, c], layout);
            }
            "Flatten" | "Reshape" => self.reshape(k, node, &out)?,
            "BatchNormalization" => self.batch_norm(k, node, &out)?,
            "Concat" => {
                let xs: Vec<Val> = node
                    .input
                    .iter()
                    .map(|i| self.val(i, "input"))
                    .collect::<Result<_, _>>()?;
                let r = xs[0].layout.len() as i64;
                let mut axis = attr_i(node, "axis", 0);
                if axis < 0 {
                    axis += r;
                }
                let layout = xs[0].layout.clone();
                if xs.iter().any(|x| x.layout != layout || x.flat_from.is_some()) {
                    return Err(self.err(k, node, "joins tensors in different layouts"));
                }
                let Some(Some(a)) = layout.get(axis as usize).copied().filter(|a| *a != Some(0)) else {
                    return Err(self.err(k, node, "joins along the batch axis"));
                };
                let mut fm = xs[0].fm.clone();
                fm[a] = Some(xs.iter().map(|x| x.fm[a].unwrap_or(0)).sum());
                let vars: Vec<String> = xs.iter().map(|x| x.var.clone()).collect();
                let call = format!("concat(axis: {})", a - 1);
                self.push(&out, vars, call, None, vec![], fm, layout);
            }
            "Gather" => {
                let Some(table) = self.constant(&node.input[0]).cloned() else {
                    return Err(self.err(k, node, "gathers from a computed tensor; fm reads Gather on a stored table (an embedding)"));
                };
                let ids = self.val(&node.input[1], "input")?;
                if attr_i(node, "axis", 0) != 0 || table.shape.len() != 2 || !ids.identity() {
                    return Err(self.err(k, node, "is not a lookup in a [vocab, dim] table along axis 0"));
                }
                let (vocab, dim) = (table.shape[0], table.shape[1]);
                let layer = self.layer_name(node);
                let mut fm = ids.fm.clone();
                fm.push(Some(dim));
                let layout = (0..fm.len()).map(Some).collect();
                self.push(
                    &out,
                    vec![ids.var.clone()],
                    format!("Embedding({vocab}, {dim})"),
                    layer,
                    vec![("embeddings", table.to_tensor())],
                    fm,
                    layout,
                );
            }
            "LSTM" | "GRU" | "RNN" => self.rnn(k, node)?,
            "Neg" | "Exp" | "Log" | "Abs" | "Sqrt" => {
                // Elementwise: any layout, and the flattening order does not matter.
                let x = self.val(&node.input[0], "input")?;
                let call = match op {
                    "Neg" => "Rescale(-1.0)".to_string(),
                    other => {
                        // fm's functions in `let` expressions are language 0.2.
                        self.model.version_02 = true;
                        other.to_lowercase()
                    }
                };
                self.push(&out, vec![x.var.clone()], call, None, vec![], x.fm.clone(), x.layout.clone());
                if let Some(v) = self.vals.get_mut(&out) {
                    v.flat_from = x.flat_from.clone();
                }
            }
            "Clip" => self.clip(k, node, &out)?,
            "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceMin" => self.reduce(k, node, &out)?,
            "LayerNormalization" => self.layer_norm(k, node, &out)?,
            "GroupNormalization" => self.group_norm(k, node, &out)?,
            "Resize" => self.resize(k, node, &out)?,
            _ => {
                return Err(self.err(
                    k,
                    node,
                    format!("operator {op} has no `.fm` form (see the supported list in the README's \"Bring your model\")"),
                ))
            }
        }
        Ok(())
    }

    /// One elementwise step of an fm 0.2 expression on values shaped like `x`: `key` (an ONNX
    /// name, or an internal one) becomes `ins -> call` (or `a op b` for `+ - * /`, where an
    /// operand may be a number). Returns the fm variable.
    fn elementwise(&mut self, x: &Val, key: &str, ins: Vec<String>, call: &str) -> String {
        self.model.version_02 = true;
        self.push(
            key,
            ins,
            call.into(),
            None,
            vec![],
            x.fm.clone(),
            x.layout.clone(),
        );
        let v = self.vals.get_mut(key).expect("just pushed");
        v.flat_from = x.flat_from.clone();
        v.var.clone()
    }

    /// Elu with an alpha other than fm's 1: `relu(x) + alpha * (elu(x) - relu(x))`
    /// (`elu(x) - relu(x)` is `exp(x) - 1` below zero and 0 above).
    fn scaled_elu(&mut self, node: &NodeProto, x: &Val, out: &str) -> Result<(), InteropError> {
        let alpha = fmt_float(attr_f(node, "alpha", 1.0));
        let relu = self.elementwise(x, &format!("{out}__relu"), vec![x.var.clone()], "relu");
        let elu = self.elementwise(x, &format!("{out}__elu"), vec![x.var.clone()], "elu");
        let below = self.elementwise(x, &format!("{out}__below"), vec![elu, relu.clone()], "-");
        let scaled = self.elementwise(x, &format!("{out}__scaled"), vec![alpha, below], "*");
        self.elementwise(x, out, vec![relu, scaled], "+");
        Ok(())
    }

    /// Gelu's tanh form (`approximate: "tanh"`), which fm's `gelu` (the exact erf form) is
    /// not: `0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x * x * x)))`, as ONNX defines it.
    fn gelu_tanh(&mut self, x: &Val, out: &str) {
        let v = x.var.clone();
        let step = |me: &mut Self, what: &str, ins: Vec<String>, call: &str| {
            me.elementwise(x, &format!("{out}__{what}"), ins, call)
        };
        let x2 = step(self, "x2", vec![v.clone(), v.clone()], "*");
        let x3 = step(self, "x3", vec![x2, v.clone()], "*");
        let cubic = step(self, "cubic", vec!["0.044715".into(), x3], "*");
        let inner = step(self, "inner", vec![v.clone(), cubic], "+");
        let scaled = step(
            self,
            "scaled",
            vec![fmt_float((2.0 / std::f32::consts::PI).sqrt()), inner],
            "*",
        );
        let t = step(self, "tanh", vec![scaled], "tanh");
        let one_plus = step(self, "one_plus", vec!["1.0".into(), t], "+");
        let half = step(self, "half", vec!["0.5".into(), v], "*");
        self.elementwise(x, out, vec![half, one_plus], "*");
    }

    fn squeeze(&mut self, k: usize, node: &NodeProto, out: &str) -> Result<(), InteropError> {
        let x = self.val(&node.input[0], "input")?;
        let axes = self.axes(k, node)?;
        let mut layout = x.layout.clone();
        if node.op_type() == "Squeeze" {
            let r = layout.len() as i64;
            let mut axes: Vec<usize> = axes
                .iter()
                .map(|&a| if a < 0 { a + r } else { a } as usize)
                .collect();
            if axes.is_empty() {
                axes = (0..layout.len()).filter(|&i| layout[i].is_none()).collect();
            }
            if axes
                .iter()
                .any(|&a| layout.get(a).is_none_or(|l| l.is_some()))
            {
                return Err(self.err(k, node, "removes an axis fm keeps (only size-1 axes that fm's value does not have can be squeezed)"));
            }
            let mut i = 0;
            layout.retain(|_| {
                i += 1;
                !axes.contains(&(i - 1))
            });
        } else {
            let r = (layout.len() + axes.len()) as i64;
            let mut axes: Vec<usize> = axes
                .iter()
                .map(|&a| if a < 0 { a + r } else { a } as usize)
                .collect();
            axes.sort_unstable();
            for a in axes {
                if a > layout.len() {
                    return Err(self.err(k, node, "has an axis out of range"));
                }
                layout.insert(a, None);
            }
        }
        self.alias(out, &x, layout);
        Ok(())
    }

    /// Gemm, or MatMul with a constant right-hand side: a Dense layer (its bias comes from the
    /// Gemm's C or a following Add).
    fn dense(&mut self, k: usize, node: &NodeProto, out: &str) -> Result<(), InteropError> {
        let x = self.val(&node.input[0], "input")?;
        let Some(w) = node.input.get(1).and_then(|n| self.constant(n)).cloned() else {
            return Err(self.err(k, node, "multiplies two computed tensors; fm reads a MatMul/Gemm with a stored weight (a Dense layer)"));
        };
        if w.shape.len() != 2 {
            return Err(self.err(k, node, "has a weight that is not a matrix"));
        }
        let gemm = node.op_type() == "Gemm";
        if gemm && attr_i(node, "transA", 0) != 0 {
            return Err(self.err(
                k,
                node,
                "transposes its input (transA): the batch axis is not first",
            ));
        }
        // Y = alpha * A B + beta * C: the stored weights take the factors.
        let (alpha, beta) = match gemm {
            true => (attr_f(node, "alpha", 1.0), attr_f(node, "beta", 1.0)),
            false => (1.0, 1.0),
        };
        let trans_b = gemm && attr_i(node, "transB", 0) != 0;
        let (rows, units) = if trans_b {
            (w.shape[1], w.shape[0])
        } else {
            (w.shape[0], w.shape[1])
        };
        let mut kernel = w.to_tensor().to_f32();
        if alpha != 1.0 {
            kernel.mapv_inplace(|v| alpha * v);
        }
        if trans_b {
            kernel = kernel.t().as_standard_layout().to_owned().into_dyn();
        }
        // The input's last fm axis is what the kernel's rows index.
        let (in_dim, layout) = if let Some((shape, order)) = &x.flat_from {
            // ONNX flattened in `order` (fm axes); fm flattens in its own order: permute rows.
            let n: usize = shape.iter().product();
            if n != rows {
                return Err(self.err(k, node, format!("has {rows} weight rows for {n} inputs")));
            }
            let perm = flatten_permutation(shape, order);
            let mut permuted = ArrayD::<f32>::zeros(IxDyn(&[rows, units]));
            for (onnx_row, &fm_row) in perm.iter().enumerate() {
                for u in 0..units {
                    permuted[[fm_row, u]] = kernel[[onnx_row, u]];
                }
            }
            kernel = permuted;
            (n, vec![Some(0), Some(1)])
        } else {
            let r = x.layout.len();
            let last_axis =
                r >= 1 && x.layout[r - 1] == Some(x.fm.len() - 1) && x.layout[0] == Some(0);
            if !(x.identity() || last_axis) {
                return Err(self.err(
                    k,
                    node,
                    "multiplies along an axis that is not the last of fm's value",
                ));
            }
            (
                x.fm.last().copied().flatten().unwrap_or(0),
                x.layout.clone(),
            )
        };
        if in_dim != rows {
            return Err(self.err(
                k,
                node,
                format!("has {rows} weight rows for an input of {in_dim} features"),
            ));
        }
        let mut params = vec![("kernel", Tensor::F32(kernel))];
        let bias = if gemm {
            node.input
                .get(2)
                .filter(|s| !s.is_empty())
                .map(|_| self.stored_input(k, node, 2, "bias"))
        } else {
            None
        };
        let mut use_bias = false;
        if let Some(b) = bias {
            let b = b?;
            let values: Vec<f32> = b.f32s().iter().map(|v| beta * v).collect();
            if b.len() == units {
                params.push((
                    "bias",
                    Tensor::F32(ArrayD::from_shape_vec(IxDyn(&[units]), values).expect("len")),
                ));
                use_bias = true;
            } else if b.len() == 1 {
                let v = values[0];
                params.push(("bias", Tensor::F32(ArrayD::from_elem(IxDyn(&[units]), v))));
                use_bias = true;
            } else {
                return Err(self.err(k, node, "has a bias that is not one value per unit"));
            }
        }
        let layer = self.layer_name(node);
        let mut fm = if x.flat_from.is_some() {
            vec![None, Some(in_dim)]
        } else {
            x.fm.clone()
        };
        let last = fm.len() - 1;
        fm[last] = Some(units);
        let call = if use_bias {
            format!("Dense({units})")
        } else {
            format!("Dense({units}, use_bias: false)")
        };
        let var_in = x.var.clone();
        let var_in = if x.flat_from.is_some() && x.fm.len() != 2 {
            // Flatten was deferred: fm flattens here.
            let flat = self.push(
                &format!("{out}__flat"),
                vec![var_in],
                "Flatten".into(),
                None,
                vec![],
                vec![None, Some(in_dim)],
                vec![Some(0), Some(1)],
            );
            self.model.stmts[flat].var.clone()
        } else {
            var_in
        };
        self.push(out, vec![var_in], call, layer, params, fm, layout);
        Ok(())
    }

    fn arith(&mut self, k: usize, node: &NodeProto, out: &str) -> Result<(), InteropError> {
        let op = node.op_type();
        let [a, b] = node.input.as_slice() else {
            return Err(self.err(
                k,
                node,
                format!("has {} inputs; {op} takes 2", node.input.len()),
            ));
        };
        let (ca, cb) = (self.constant(a).cloned(), self.constant(b).cloned());
        match (ca, cb) {
            (None, None) => {
                let x = self.val(a, "input")?;
                let y = self.val(b, "input")?;
                if x.flat_from.is_some() || y.flat_from.is_some() {
                    return Err(self.err(k, node, "combines a flattened channels-first tensor"));
                }
                let int = |v: &Val| {
                    self.model
                        .inputs
                        .iter()
                        .any(|(n, dtype, _)| n == &v.var && dtype == "i32")
                };
                if op == "Div" && (int(&x) || int(&y)) {
                    return Err(self.err(
                        k,
                        node,
                        "divides integers (ONNX truncates); fm's `/` divides f32 tensors",
                    ));
                }
                let sym = match op {
                    "Add" => "+",
                    "Sub" => "-",
                    "Mul" => "*",
                    _ => {
                        // Division of two tensors is language 0.2.
                        self.model.version_02 = true;
                        "/"
                    }
                };
                // Same layout: same fm shapes; a lower-rank operand that lines up with the
                // trailing fm axes broadcasts as in fm.
                let ok = x.layout == y.layout || (x.identity() && y.identity());
                if !ok {
                    return Err(self.err(k, node, "combines tensors in different layouts"));
                }
                let fm = if x.fm.len() >= y.fm.len() {
                    x.fm.clone()
                } else {
                    y.fm.clone()
                };
                let layout = if x.fm.len() >= y.fm.len() {
                    x.layout.clone()
                } else {
                    y.layout.clone()
                };
                self.push(
                    out,
                    vec![x.var.clone(), y.var.clone()],
                    sym.to_string(),
                    None,
                    vec![],
                    fm,
                    layout,
                );
            }
            (Some(c), None) | (None, Some(c)) => {
                let const_first = self.constant(a).is_some();
                let x = self.val(if const_first { b } else { a }, "input")?;
                // A bias after a MatMul's Dense: fold it in.
                if op == "Add" && (c.len() > 1 || self.bias_target(node, &x, &c)) {
                    return self.fold_bias(k, node, out, &x, &c);
                }
                if c.len() != 1 {
                    return Err(self.err(k, node, "combines with a constant tensor; fm reads scalar constants (Rescale) and biases after a MatMul"));
                }
                let v = c.f32s()[0] as f64;
                let (scale, offset) = match (op, const_first) {
                    ("Mul", _) => (v, 0.0),
                    ("Add", _) => (1.0, v),
                    ("Sub", false) => (1.0, -v),
                    ("Sub", true) => (-1.0, v),
                    ("Div", false) => (1.0 / v, 0.0),
                    _ => return Err(self.err(k, node, "divides a constant by a tensor")),
                };
                let call = if offset == 0.0 {
                    format!("Rescale({})", fmt_float(scale as f32))
                } else {
                    format!(
                        "Rescale({}, offset: {})",
                        fmt_float(scale as f32),
                        fmt_float(offset as f32)
                    )
                };
                let layer = self.layer_name(node);
                let fm = x.fm.clone();
                let layout = x.layout.clone();
                let flat = x.flat_from.clone();
                self.push(out, vec![x.var.clone()], call, layer, vec![], fm, layout);
                if let Some(v) = self.vals.get_mut(out) {
                    v.flat_from = flat;
                }
            }
            (Some(_), Some(_)) => unreachable!("constant-only nodes are rejected before"),
        }
        Ok(())
    }

    /// Whether constant `c` added by `node` is the bias of the bias-less Dense that made `x`
    /// (read by this node only).
    fn bias_target(&self, node: &NodeProto, x: &Val, c: &TensorValue) -> bool {
        let Some(id) = x.stmt else { return false };
        let data = if self.constant(&node.input[0]).is_some() {
            &node.input[1]
        } else {
            &node.input[0]
        };
        let only_reader = self.reads(data) == 1;
        let stmt = &self.model.stmts[id];
        let units = x.fm.last().copied().flatten().unwrap_or(0);
        let last = c.shape.last().copied().unwrap_or(1);
        stmt.call.starts_with("Dense(")
            && stmt.call.ends_with("use_bias: false)")
            && only_reader
            && c.len() == units
            && last == units
            && x.flat_from.is_none()
    }

    fn fold_bias(
        &mut self,
        k: usize,
        node: &NodeProto,
        out: &str,
        x: &Val,
        c: &TensorValue,
    ) -> Result<(), InteropError> {
        if !self.bias_target(node, x, c) {
            return Err(self.err(
                k,
                node,
                "adds a constant tensor that is not the bias of the MatMul before it",
            ));
        }
        let id = x.stmt.expect("checked by bias_target");
        let units = c.len();
        let stmt = &mut self.model.stmts[id];
        stmt.call = format!("Dense({units})");
        let name = format!("{}.bias", stmt.layer.as_deref().unwrap_or(""));
        stmt.params.push((
            name,
            Tensor::F32(ArrayD::from_shape_vec(IxDyn(&[units]), c.f32s()).expect("len")),
        ));
        let layout = x.layout.clone();
        self.alias(out, x, layout);
        Ok(())
    }

    /// Spatial attributes shared by Conv and pooling: (stride, dilation, `same`?).
    #[allow(clippy::type_complexity)]
    fn window(
        &self,
        k: usize,
        node: &NodeProto,
        input: &[usize],
        kernel: &[usize],
    ) -> Result<(Vec<usize>, Vec<usize>, bool), InteropError> {
        let n = kernel.len();
        let stride: Vec<usize> = attr_is(node, "strides")
            .map_or(vec![1; n], |v| v.iter().map(|&x| x as usize).collect());
        let dilation: Vec<usize> = attr_is(node, "dilations")
            .map_or(vec![1; n], |v| v.iter().map(|&x| x as usize).collect());
        if stride.len() != n || dilation.len() != n || stride.contains(&0) || dilation.contains(&0)
        {
            return Err(self.err(
                k,
                node,
                "has strides or dilations that do not fit its kernel",
            ));
        }
        let auto = attr_s(node, "auto_pad").unwrap_or_else(|| "NOTSET".into());
        let same_pads = crate::export::pads(
            input,
            kernel,
            &stride,
            &dilation,
            fm_compiler::graph::Padding::Same,
        );
        let same = match auto.as_str() {
            "SAME_UPPER" => true,
            "VALID" => false,
            "NOTSET" => {
                let pads = attr_is(node, "pads").unwrap_or_else(|| vec![0; 2 * n]);
                if pads.iter().all(|&p| p == 0) {
                    false
                } else if pads == same_pads {
                    true
                } else {
                    return Err(self.err(k, node, format!("pads {pads:?}: fm pads `valid` (none) or `same` as TensorFlow ({same_pads:?} here)")));
                }
            }
            _ => {
                return Err(self.err(
                    k,
                    node,
                    format!("auto_pad {auto}: fm pads `valid` or `same` (SAME_UPPER)"),
                ))
            }
        };
        Ok((stride, dilation, same))
    }

    fn conv(&mut self, k: usize, node: &NodeProto, out: &str) -> Result<(), InteropError> {
        let x = self.image_input(k, node)?;
        let r = x.fm.len();
        let w = self.stored_input(k, node, 1, "kernel")?;
        if attr_i(node, "group", 1) != 1 {
            return Err(self.err(k, node, "is a grouped convolution; fm's Conv has group 1"));
        }
        let spatial = r - 2;
        let cin = x.fm[r - 1].unwrap_or(0);
        if w.shape.len() != r || w.shape[1] != cin {
            return Err(self.err(
                k,
                node,
                format!(
                    "has a kernel of shape {:?} for {cin} input channels",
                    w.shape
                ),
            ));
        }
        let filters = w.shape[0];
        let kernel: Vec<usize> = w.shape[2..].to_vec();
        let input = &x.sample()[..spatial];
        let (stride, dilation, same) = self.window(k, node, input, &kernel)?;
        // [out, in, k..] -> [k.., in, out]
        let mut perm: Vec<usize> = (2..r).collect();
        perm.extend([1, 0]);
        let (shape, vals) = crate::export::transpose(&w.shape, &w.f32s(), &perm);
        let mut params = vec![(
            "kernel",
            Tensor::F32(ArrayD::from_shape_vec(IxDyn(&shape), vals).expect("len")),
        )];
        let use_bias = node.input.get(2).is_some_and(|b| !b.is_empty());
        if use_bias {
            params.push(("bias", self.stored_input(k, node, 2, "bias")?.to_tensor()));
        }
        let mut call = format!("Conv{spatial}D({filters}, {}{ACT_MARK}", int_list(&kernel));
        if stride.iter().any(|&s| s != 1) {
            call.push_str(&format!(", stride: {}", int_list(&stride)));
        }
        if same {
            call.push_str(", padding: same");
        }
        if dilation.iter().any(|&d| d != 1) {
            call.push_str(&format!(", dilation: {}", int_list(&dilation)));
        }
        if !use_bias {
            call.push_str(", use_bias: false");
        }
        call.push(')');
        let mut fm = vec![None];
        for a in 0..spatial {
            let (i, kk, s, d) = (input[a], kernel[a], stride[a], dilation[a]);
            let o = if same {
                i.div_ceil(s)
            } else {
                let span = (kk - 1) * d + 1;
                if span > i {
                    return Err(self.err(k, node, "has a kernel larger than its input"));
                }
                (i - span) / s + 1
            };
            fm.push(Some(o));
        }
        fm.push(Some(filters));
        let layer = self.layer_name(node);
        self.push_from(out, &x, call, layer, params, fm);
        Ok(())
    }

    fn pool(&mut self, k: usize, node: &NodeProto, out: &str) -> Result<(), InteropError> {
        let x = self.image_input(k, node)?;
        let r = x.fm.len();
        if node.output.len() > 1 && !node.output[1].is_empty() {
            return Err(self.err(k, node, "also returns indices"));
        }
        let spatial = r - 2;
        let size: Vec<usize> = attr_is(node, "kernel_shape")
            .unwrap_or_default()
            .iter()
            .map(|&v| v as usize)
            .collect();
        if size.len() != spatial || size.contains(&0) {
            return Err(self.err(k, node, "has no kernel_shape that fits its input"));
        }
        if attr_i(node, "ceil_mode", 0) != 0 || attr_i(node, "storage_order", 0) != 0 {
            return Err(self.err(
                k,
                node,
                "uses ceil_mode or storage_order; fm pools with floor and row-major order",
            ));
        }
        let input = x.sample()[..spatial].to_vec();
        let (stride, dilation, same) = self.window(k, node, &input, &size)?;
        if dilation.iter().any(|&d| d != 1) {
            return Err(self.err(k, node, "is a dilated pooling; fm pools without dilation"));
        }
        let avg = node.op_type() == "AveragePool";
        if avg && same && attr_i(node, "count_include_pad", 0) != 0 {
            return Err(self.err(
                k,
                node,
                "counts padded cells (count_include_pad 1); fm's average pooling does not",
            ));
        }
        let mut call = format!(
            "{}Pool{spatial}D({}",
            if avg { "Avg" } else { "Max" },
            int_list(&size)
        );
        if stride != size {
            call.push_str(&format!(", stride: {}", int_list(&stride)));
        }
        if same {
            call.push_str(", padding: same");
        }
        call.push(')');
        let mut fm = vec![None];
        for a in 0..spatial {
            let o = if same {
                input[a].div_ceil(stride[a])
            } else {
                if size[a] > input[a] {
                    return Err(self.err(k, node, "has a window larger than its input"));
                }
                (input[a] - size[a]) / stride[a] + 1
            };
            fm.push(Some(o));
        }
        fm.push(x.fm[r - 1]);
        let layer = self.layer_name(node);
        self.push_from(out, &x, call, layer, vec![], fm);
        Ok(())
    }

    fn reshape(&mut self, k: usize, node: &NodeProto, out: &str) -> Result<(), InteropError> {
        let x = self.val(&node.input[0], "input")?;
        let onnx_shape = x.onnx_shape();
        // The per-sample target shape.
        let target: Vec<usize> = if node.op_type() == "Flatten" {
            let mut axis = attr_i(node, "axis", 1);
            if axis < 0 {
                axis += onnx_shape.len() as i64;
            }
            if axis != 1 {
                return Err(self.err(
                    k,
                    node,
                    "flattens from an axis other than 1; fm keeps the batch axis apart",
                ));
            }
            vec![onnx_shape[1..].iter().map(|d| d.unwrap_or(0)).product()]
        } else {
            let Some(spec) = node.input.get(1).and_then(|s| self.constant_ints(s)) else {
                return Err(self.err(k, node, "takes its shape from a computed tensor (a dynamic shape fm cannot express; export with constant folding)"));
            };
            let total: usize = onnx_shape[1..].iter().map(|d| d.unwrap_or(0)).product();
            if attr_i(node, "allowzero", 0) != 0
                || spec.is_empty()
                || !(spec[0] == 0 || spec[0] == -1)
            {
                return Err(self.err(
                    k,
                    node,
                    format!("reshapes to {spec:?}; fm keeps the batch axis first (0 or -1 there)"),
                ));
            }
            let mut dims: Vec<i64> = spec[1..]
                .iter()
                .enumerate()
                .map(|(i, &d)| {
                    if d == 0 {
                        onnx_shape.get(i + 1).copied().flatten().unwrap_or(0) as i64
                    } else {
                        d
                    }
                })
                .collect();
            let known: i64 = dims.iter().filter(|&&d| d > 0).product();
            let unknown = dims.iter().filter(|&&d| d < 0).count();
            if spec[0] == -1 && unknown > 0 || unknown > 1 || known <= 0 {
                return Err(self.err(
                    k,
                    node,
                    format!("reshapes to {spec:?}, which fm cannot resolve per sample"),
                ));
            }
            for d in dims.iter_mut() {
                if *d < 0 {
                    *d = total as i64 / known;
                }
            }
            if dims.iter().product::<i64>() != total as i64 {
                return Err(self.err(
                    k,
                    node,
                    format!("reshapes {total} values per sample to {dims:?}"),
                ));
            }
            dims.iter().map(|&d| d as usize).collect()
        };
        // The fm axes in ONNX order, without the dropped size-1 axes.
        let order: Vec<usize> = x.layout[1..].iter().flatten().copied().collect();
        let in_order = order.windows(2).all(|w| w[0] < w[1]) && x.flat_from.is_none();
        let sample = x.sample();
        if in_order {
            // Same element order in ONNX and fm.
            if target == sample {
                let layout = (0..x.fm.len()).map(Some).collect();
                self.alias(out, &x, layout);
                return Ok(());
            }
            let fm: Vec<Option<usize>> = std::iter::once(None)
                .chain(target.iter().map(|&d| Some(d)))
                .collect();
            let layout = (0..fm.len()).map(Some).collect();
            let call = if target.len() == 1 {
                "Flatten".to_string()
            } else {
                format!(
                    "Reshape([{}])",
                    target
                        .iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            self.push(out, vec![x.var.clone()], call, None, vec![], fm, layout);
            return Ok(());
        }
        if target.len() == 1 && x.flat_from.is_none() {
            // A channels-first flatten: fm flattens in its own order; the Dense that follows
            // permutes its rows.
            let shape = sample;
            let order: Vec<usize> = order.iter().map(|a| a - 1).collect();
            let mut v = x.clone();
            v.flat_from = Some((shape, order));
            v.layout = vec![Some(0), Some(1)];
            self.vals.insert(out.to_string(), v);
            return Ok(());
        }
        Err(self.err(
            k,
            node,
            "reshapes a channels-first tensor to a shape other than a flat vector",
        ))
    }

    /// Clip with stored bounds (inputs from opset 11, attributes before): `clip(lo, hi)`.
    fn clip(&mut self, k: usize, node: &NodeProto, out: &str) -> Result<(), InteropError> {
        let x = self.val(&node.input[0], "input")?;
        let bound = |i: usize, attr_name: &str, default: f32| -> Result<f32, InteropError> {
            match node.input.get(i).filter(|s| !s.is_empty()) {
                Some(n) => match self.constant(n).map(TensorValue::f32s) {
                    Some(v) if v.len() == 1 => Ok(v[0]),
                    _ => Err(self.err(k, node, "has a bound that is not a stored scalar")),
                },
                None => Ok(attr_f(node, attr_name, default)),
            }
        };
        let lo = bound(1, "min", f32::MIN)?;
        let hi = bound(2, "max", f32::MAX)?;
        self.model.version_02 = true;
        let call = format!("clip({}, {})", fmt_float(lo), fmt_float(hi));
        self.push_from(out, &x, call, None, vec![], x.fm.clone());
        if let Some(v) = self.vals.get_mut(out) {
            v.flat_from = x.flat_from.clone();
        }
        Ok(())
    }

    /// ReduceSum/Mean/Max/Min over stored axes that are not the batch: `sum(axis: [..])`;
    /// with `keepdims` the reduced axes stay in ONNX's layout as size-1 axes fm does not have.
    fn reduce(&mut self, k: usize, node: &NodeProto, out: &str) -> Result<(), InteropError> {
        let op = node.op_type();
        let x = self.val(&node.input[0], "input")?;
        if x.flat_from.is_some() {
            return Err(self.err(k, node, "reduces a flattened channels-first tensor"));
        }
        let axes = self.axes(k, node)?;
        if axes.is_empty() {
            return Err(self.err(
                k,
                node,
                if attr_i(node, "noop_with_empty_axes", 0) != 0 {
                    "has no axes and noop_with_empty_axes: it changes nothing (export with constant folding)"
                } else {
                    "reduces every axis, the batch included; fm reduces per sample"
                },
            ));
        }
        let r = x.layout.len() as i64;
        let mut fm_axes = Vec::new();
        for &a in &axes {
            let a = if a < 0 { a + r } else { a };
            match x.layout.get(a as usize) {
                Some(Some(0)) => {
                    return Err(self.err(k, node, "reduces the batch axis; fm reduces per sample"))
                }
                Some(Some(f)) => fm_axes.push(*f),
                Some(None) => {} // a size-1 axis fm does not have: nothing to reduce
                None => return Err(self.err(k, node, "has an axis out of range")),
            }
        }
        fm_axes.sort_unstable();
        fm_axes.dedup();
        let keep = attr_i(node, "keepdims", 1) != 0;
        // fm axis a -> its index after the reduced axes are removed.
        let renumber = |a: usize| a - fm_axes.iter().filter(|&&f| f < a).count();
        let layout: Vec<Option<usize>> = x
            .layout
            .iter()
            .filter_map(|l| match l {
                Some(f) if fm_axes.contains(f) => keep.then_some(None),
                Some(f) => Some(Some(renumber(*f))),
                None => Some(None),
            })
            .collect();
        let fm: Vec<Option<usize>> =
            x.fm.iter()
                .enumerate()
                .filter(|(i, _)| !fm_axes.contains(i))
                .map(|(_, d)| *d)
                .collect();
        let list: Vec<String> = fm_axes.iter().map(|a| (a - 1).to_string()).collect();
        let f = &op["Reduce".len()..].to_lowercase();
        self.model.version_02 = true;
        let call = format!("{f}(axis: [{}])", list.join(", "));
        self.push(out, vec![x.var.clone()], call, None, vec![], fm, layout);
        Ok(())
    }

    /// LayerNormalization with a stored scale (and bias) over the last axis: fm's `LayerNorm`;
    /// over several trailing axes (from `axis` >= 1 on): the same on the value reshaped to
    /// `[.., features]` (scale and bias flattened alike), reshaped back.
    fn layer_norm(&mut self, k: usize, node: &NodeProto, out: &str) -> Result<(), InteropError> {
        let x = self.val(&node.input[0], "input")?;
        let r = x.layout.len() as i64;
        let mut axis = attr_i(node, "axis", -1);
        if axis < 0 {
            axis += r;
        }
        let last = x.fm.len() - 1;
        let last_axis = axis == r - 1
            && x.layout.last() == Some(&Some(last))
            && x.flat_from.is_none()
            && last != 0;
        let trailing = (1..r - 1).contains(&axis) && x.identity();
        if !(last_axis || trailing) {
            return Err(self.err(
                k,
                node,
                "normalises over axes that include the batch, or over axes that are not fm's trailing ones",
            ));
        }
        if attr_i(node, "stash_type", 1) != 1 {
            return Err(self.err(k, node, "computes in a type other than f32"));
        }
        let axis = axis as usize;
        let c: usize = if trailing {
            x.fm[axis..].iter().map(|d| d.unwrap_or(0)).product()
        } else {
            x.fm[last].unwrap_or(0)
        };
        let per_feature = |i: usize, default: f32| -> Result<Tensor, InteropError> {
            match node.input.get(i).filter(|s| !s.is_empty()) {
                None => Ok(Tensor::F32(ArrayD::from_elem(IxDyn(&[c]), default))),
                Some(n) => match self.constant(n) {
                    Some(t) if t.len() == c => Ok(Tensor::F32(
                        ArrayD::from_shape_vec(IxDyn(&[c]), t.f32s()).expect("len"),
                    )),
                    _ => Err(self.err(
                        k,
                        node,
                        "has a scale or bias that is not a stored value per feature",
                    )),
                },
            }
        };
        let params = vec![
            ("gamma", per_feature(1, 1.0)?),
            ("beta", per_feature(2, 0.0)?),
        ];
        let eps = attr_f(node, "epsilon", 1e-5);
        let layer = self.layer_name(node);
        let call = format!("LayerNorm(epsilon: {})", fmt_float(eps));
        // The value LayerNorm reads: `x`, or `x` with its normalised axes made one.
        let normed = if trailing {
            let mut fm = x.fm[..axis].to_vec();
            fm.push(Some(c));
            let dims: Vec<String> = fm[1..].iter().map(|d| d.unwrap_or(0).to_string()).collect();
            let flat = match axis {
                1 => "Flatten".to_string(),
                _ => format!("Reshape([{}])", dims.join(", ")),
            };
            let layout = (0..fm.len()).map(Some).collect();
            let key = format!("{out}__features");
            self.push(&key, vec![x.var.clone()], flat, None, vec![], fm, layout);
            self.vals[&key].clone()
        } else {
            x.clone()
        };
        let key = match trailing {
            true => format!("{out}__normed"),
            false => out.to_string(),
        };
        self.push(
            &key,
            vec![normed.var.clone()],
            call,
            layer,
            params,
            normed.fm.clone(),
            normed.layout.clone(),
        );
        if trailing {
            let var = self.vals[&key].var.clone();
            let dims: Vec<String> = x.sample().iter().map(|d| d.to_string()).collect();
            let back = format!("Reshape([{}])", dims.join(", "));
            self.push(
                out,
                vec![var],
                back,
                None,
                vec![],
                x.fm.clone(),
                x.layout.clone(),
            );
        }
        let read = |i: usize| {
            node.output
                .get(i)
                .filter(|o| !o.is_empty() && self.readers.contains_key(*o))
                .cloned()
        };
        let (mean_out, inv_out) = (read(1), read(2));
        if mean_out.is_some() || inv_out.is_some() {
            // ONNX keeps the normalised axes as size-1 axes.
            let kept = if trailing { axis } else { x.layout.len() - 1 };
            let mut layout = x.layout[..kept].to_vec();
            layout.resize(x.layout.len(), None);
            self.layer_norm_statistics(&normed, out, eps, mean_out, inv_out, layout);
        }
        Ok(())
    }

    /// LayerNormalization's optional outputs, as fm 0.2 functions of the value `x` its
    /// LayerNorm normalised over the last axis: Mean is `mean(axis: [last])`, InvStdDev
    /// `1 / sqrt(mean(square(x - mean)) + epsilon)` with the mean reshaped to a size-1 last
    /// axis to broadcast, as ONNX computes them. `layout` is the outputs' (ONNX keeps the
    /// normalised axes as size-1 axes).
    fn layer_norm_statistics(
        &mut self,
        x: &Val,
        out: &str,
        eps: f32,
        mean_out: Option<String>,
        inv_out: Option<String>,
        layout: Vec<Option<usize>>,
    ) {
        self.model.version_02 = true;
        let last = x.fm.len() - 1;
        let reduce = format!("mean(axis: [{}])", last - 1);
        let reduced: Vec<Option<usize>> = x.fm[..last].to_vec();
        let identity = |fm: &[Option<usize>]| (0..fm.len()).map(Some).collect::<Vec<_>>();
        let mean = mean_out.unwrap_or_else(|| format!("{out}__mean"));
        self.push(
            &mean,
            vec![x.var.clone()],
            reduce.clone(),
            None,
            vec![],
            reduced.clone(),
            layout.clone(),
        );
        let Some(inv) = inv_out else { return };
        // (name suffix, operands before the previous step's value, call, fm shape)
        type Step = (String, Vec<String>, String, Vec<Option<usize>>);
        let mut steps: Vec<Step> = Vec::new();
        let mut kept = x.fm[..last].to_vec();
        kept.push(Some(1));
        let dims: Vec<String> = kept[1..]
            .iter()
            .map(|d| d.unwrap_or(0).to_string())
            .collect();
        let m = self.vals[&mean].var.clone();
        steps.push((
            "mean1".into(),
            vec![m],
            format!("Reshape([{}])", dims.join(", ")),
            kept,
        ));
        steps.push((
            "centered".into(),
            vec![x.var.clone()],
            "-".into(),
            x.fm.clone(),
        ));
        steps.push(("square".into(), vec![], "square".into(), x.fm.clone()));
        steps.push(("var".into(), vec![], reduce, reduced.clone()));
        steps.push((
            "var_eps".into(),
            vec![],
            format!("Rescale(1.0, offset: {})", fmt_float(eps)),
            reduced.clone(),
        ));
        steps.push(("std".into(), vec![], "sqrt".into(), reduced.clone()));
        steps.push((
            "inv".into(),
            vec!["1.0".into()],
            "/".into(),
            reduced.clone(),
        ));
        let mut prev = String::new();
        let n = steps.len();
        for (i, (what, mut ins, call, fm)) in steps.into_iter().enumerate() {
            // Each step reads the one before it (after its own fixed operands).
            if i > 0 {
                ins.push(prev.clone());
            }
            let (key, lay) = if i + 1 == n {
                (inv.clone(), layout.clone())
            } else {
                (format!("{out}__{what}"), identity(&fm))
            };
            self.push(&key, ins, call, None, vec![], fm, lay);
            prev = self.vals[&key].var.clone();
        }
    }

    /// GroupNormalization of a channels-first view: fm's GroupNorm on its channels-last value.
    /// Opset 18's scale and bias per group become fm's per channel (each channel of a group
    /// takes its group's).
    fn group_norm(&mut self, k: usize, node: &NodeProto, out: &str) -> Result<(), InteropError> {
        let x = self.val(&node.input[0], "input")?;
        let r = x.fm.len();
        if !x.channels_first() || r < 3 {
            return Err(self.err(
                k,
                node,
                "reads a tensor that is not a channels-first view of fm's channels-last data",
            ));
        }
        let groups = attr_i(node, "num_groups", 0);
        let c = x.fm[r - 1].unwrap_or(0);
        if groups <= 0 || c % groups as usize != 0 {
            return Err(self.err(
                k,
                node,
                "has a num_groups that does not divide its channels",
            ));
        }
        let groups = groups as usize;
        if attr_i(node, "stash_type", 1) != 1 {
            return Err(self.err(k, node, "computes in a type other than f32"));
        }
        let mut params = Vec::new();
        for (i, role) in [(1, "gamma"), (2, "beta")] {
            let v = self.stored_input(k, node, i, role)?.f32s();
            let per_channel: Vec<f32> = if v.len() == c {
                v
            } else if v.len() == groups {
                (0..c).map(|ch| v[ch / (c / groups)]).collect()
            } else {
                return Err(self.err(
                    k,
                    node,
                    "has a scale or bias that is neither per channel nor per group",
                ));
            };
            params.push((
                role,
                Tensor::F32(ArrayD::from_shape_vec(IxDyn(&[c]), per_channel).expect("len")),
            ));
        }
        let eps = attr_f(node, "epsilon", 1e-5);
        let layer = self.layer_name(node);
        let call = format!("GroupNorm(groups: {groups}, epsilon: {})", fmt_float(eps));
        self.push_from(out, &x, call, layer, params, x.fm.clone());
        Ok(())
    }

    /// The arithmetic `fmc export` writes for a GroupNorm on a channels-last tensor (ONNX's
    /// GroupNormalization is channels-first and, before opset 21, scales per group), read back
    /// as fm's `GroupNorm`: `Reshape` to `[N, spatial.., groups, C / groups]`, `ReduceMean` over
    /// every axis but the batch and the group axis (`keepdims`), `Sub`, `Mul` by itself,
    /// `ReduceMean`, `Add` epsilon, `Sqrt`, `Div`, `Reshape` back, `Mul` by a stored
    /// per-channel gamma, `Add` a stored per-channel beta. Returns how many nodes it read, or
    /// `None` (nothing changed) when `nodes` do not start with exactly that pattern, each
    /// intermediate read only inside it.
    fn group_norm_arithmetic(&mut self, nodes: &[NodeProto]) -> Option<usize> {
        const OPS: [&str; 11] = [
            "Reshape",
            "ReduceMean",
            "Sub",
            "Mul",
            "ReduceMean",
            "Add",
            "Sqrt",
            "Div",
            "Reshape",
            "Mul",
            "Add",
        ];
        let run = Run::of(nodes, &OPS, |op, inputs| match op {
            "Sqrt" | "ReduceMean" => inputs >= 1,
            _ => inputs >= 2,
        })?;
        let (n, o, ins) = (run.nodes, |i| run.out(i), |i| run.ins(i));
        // The data flow, each intermediate read only here (`c` by the Mul twice and the Div).
        let flow = ins(1)[0] == o(0)
            && ins(2)[..2] == [o(0), o(1)]
            && ins(3)[..2] == [o(2), o(2)]
            && ins(4)[0] == o(3)
            && ins(5).contains(&o(4))
            && ins(6)[0] == o(5)
            && ins(7)[..2] == [o(2), o(6)]
            && ins(8)[0] == o(7)
            && ins(9)[0] == o(8)
            && ins(10)[0] == o(9);
        let private = [2, 1, 3, 1, 1, 1, 1, 1, 1, 1]
            .iter()
            .enumerate()
            .all(|(i, &r)| self.reads(o(i)) == r);
        if !flow || !private {
            return None;
        }
        let x = self.vals.get(ins(0)[0])?.clone();
        if !x.identity() || x.fm.len() < 2 {
            return None;
        }
        let sample = x.sample();
        let p = sample.len();
        let c = sample[p - 1];
        let ints = |name: &str| self.constant_ints(name);
        let grouped = ints(ins(0)[1])?;
        if grouped.len() != p + 2 || grouped[0] != 0 && grouped[0] != -1 {
            return None;
        }
        let groups = usize::try_from(grouped[p]).ok().filter(|&g| g > 0)?;
        let want: Vec<i64> = sample[..p - 1]
            .iter()
            .map(|&d| d as i64)
            .chain([groups as i64, (c / groups) as i64])
            .collect();
        if c % groups != 0 || grouped[1..] != want[..] {
            return None;
        }
        let axes_of = |node: &NodeProto| -> Option<Vec<i64>> {
            if attr_i(node, "keepdims", 1) != 1 {
                return None;
            }
            let mut a = match node.input.get(1).filter(|s| !s.is_empty()) {
                Some(name) => ints(name)?,
                None => attr_is(node, "axes")?,
            };
            for v in a.iter_mut() {
                if *v < 0 {
                    *v += p as i64 + 2;
                }
            }
            a.sort_unstable();
            Some(a)
        };
        let axes: Vec<i64> = (1..p as i64).chain([p as i64 + 1]).collect();
        if axes_of(&n[1])? != axes || axes_of(&n[4])? != axes {
            return None;
        }
        let eps_name = ins(5).into_iter().find(|&i| i != o(4))?;
        let eps = self.constant(eps_name).filter(|t| t.len() == 1)?.f32s()[0];
        let back = ints(ins(8)[1])?;
        let want_back: Vec<i64> = sample.iter().map(|&d| d as i64).collect();
        if back.len() != p + 1 || back[0] != 0 && back[0] != -1 || back[1..] != want_back[..] {
            return None;
        }
        let per_channel = |name: &str| -> Option<Tensor> {
            let t = self.constant(name)?;
            (t.len() == c && t.shape.last() == Some(&c))
                .then(|| Tensor::F32(ArrayD::from_shape_vec(IxDyn(&[c]), t.f32s()).expect("len")))
        };
        let gamma = per_channel(ins(9).get(1)?)?;
        let beta = per_channel(ins(10).get(1)?)?;
        let layer = self.layer_name(&n[0]);
        let call = format!("GroupNorm(groups: {groups}, epsilon: {})", fmt_float(eps));
        let params = vec![("gamma", gamma), ("beta", beta)];
        self.push_from(o(10), &x, call, layer, params, x.fm.clone());
        Some(OPS.len())
    }

    /// The exact GELU as `fmc export` writes it before opset 20, read back as `gelu` (folded
    /// into the layer before it when nothing else reads that layer): `Mul` by 1/sqrt(2), `Erf`,
    /// `Add` 1, `Mul` of the input by 0.5, `Mul` of the two. Returns how many nodes it read, or
    /// `None` (nothing changed) when `nodes` do not start with exactly that pattern.
    fn gelu_arithmetic(&mut self, nodes: &[NodeProto]) -> Option<usize> {
        const OPS: [&str; 5] = ["Mul", "Erf", "Add", "Mul", "Mul"];
        let run = Run::of(nodes, &OPS, |op, inputs| {
            inputs == 1 + (op != "Erf") as usize
        })?;
        let (o, ins) = (|i| run.out(i), |i| run.ins(i));
        let scalar = |name: &str, want: f32| {
            self.constant(name)
                .is_some_and(|c| c.len() == 1 && c.f32s()[0] == want)
        };
        let x_name = ins(0)[0];
        let flow = scalar(ins(0)[1], std::f32::consts::FRAC_1_SQRT_2)
            && ins(1)[0] == o(0)
            && ins(2)[0] == o(1)
            && scalar(ins(2)[1], 1.0)
            && ins(3)[0] == x_name
            && scalar(ins(3)[1], 0.5)
            && ins(4)[..] == [o(3), o(2)]
            && (0..4).all(|i| self.reads(o(i)) == 1);
        if !flow {
            return None;
        }
        let x = self.vals.get(x_name)?.clone();
        let out = o(4).to_string();
        if self.reads(x_name) == 2 && self.fold_into_layer(&out, &x, "gelu") {
            return Some(OPS.len());
        }
        self.push_from(&out, &x, "gelu".into(), None, vec![], x.fm.clone());
        let v = self.vals.get_mut(&out).expect("just pushed");
        v.flat_from = x.flat_from.clone();
        Some(OPS.len())
    }

    /// The arithmetic `fmc export` writes for a MultiHeadAttention on `[N, T, D]` sequences,
    /// read back as fm's `MultiHeadAttention` with its eight weights: for the query, key and
    /// value in turn `MatMul` by a stored `[D, H*K]` kernel, `Reshape` to `[0, 0, H, K]`, `Add`
    /// a stored `[H, K]` bias (the query then `Mul` by 1/sqrt(K)), `Transpose` (query and value
    /// `[0, 2, 1, 3]`, key `[0, 2, 3, 1]`); `MatMul` of query and key, an optional `Add` of the
    /// stored causal mask (0 on and below the diagonal, -1e9 above), `Softmax` over the last
    /// axis, `MatMul` by the value, `Transpose` `[0, 2, 1, 3]`, `Reshape` to `[0, 0, H*K]`,
    /// `MatMul` by a stored `[H*K, D]` kernel, `Add` a stored `[D]` bias. Returns how many nodes
    /// it read, or `None` (nothing changed) when `nodes` do not start with exactly that
    /// pattern, each intermediate read only inside it.
    fn attention_arithmetic(&mut self, nodes: &[NodeProto]) -> Option<usize> {
        const HEAD: [&str; 14] = [
            "MatMul",
            "Reshape",
            "Add",
            "Mul",
            "Transpose",
            "MatMul",
            "Reshape",
            "Add",
            "Transpose",
            "MatMul",
            "Reshape",
            "Add",
            "Transpose",
            "MatMul",
        ];
        const TAIL: [&str; 6] = ["Softmax", "MatMul", "Transpose", "Reshape", "MatMul", "Add"];
        let causal = nodes.get(HEAD.len())?.op_type() == "Add";
        let tail_at = HEAD.len() + causal as usize;
        let ops: Vec<&str> = HEAD
            .iter()
            .chain(causal.then_some(&"Add"))
            .chain(&TAIL)
            .copied()
            .collect();
        let run = Run::of(nodes, &ops, |op, inputs| match op {
            "Softmax" | "Transpose" => inputs == 1,
            _ => inputs == 2,
        })?;
        let (n, o, ins) = (run.nodes, |i| run.out(i), |i| run.ins(i));
        let t = tail_at;
        // The data flow, each intermediate read exactly once, by the next node of the pattern.
        let chain = [1, 2, 3, 4, 6, 7, 8, 10, 11, 12]
            .iter()
            .chain(&[t + 1, t + 3, t + 4, t + 5])
            .all(|&i| ins(i)[0] == o(i - 1));
        let flow = chain
            && ins(13)[..] == [o(4), o(8)]
            && (!causal || ins(14)[0] == o(13))
            && ins(t)[0] == o(t - 1)
            && ins(t + 1)[1] == o(12)
            && ins(t + 2)[0] == o(t + 1);
        if !flow || !(0..n.len() - 1).all(|i| self.reads(o(i)) == 1) {
            return None;
        }
        // Query, key and value as fm sees them: `[N, T, D]` sequences.
        let seq = |name: &str| -> Option<Val> {
            let v = self.vals.get(name)?;
            (v.identity() && v.fm.len() == 3).then(|| v.clone())
        };
        let (query, key, value) = (seq(ins(0)[0])?, seq(ins(5)[0])?, seq(ins(9)[0])?);
        if key.fm[1] != value.fm[1] {
            return None;
        }
        let ints = |name: &str| self.constant_ints(name);
        let perm = |i: usize| attr_is(&n[i], "perm");
        let split = ints(ins(1)[1])?;
        let [0, 0, h, kd] = split[..] else {
            return None;
        };
        let (heads, key_dim) = (usize::try_from(h).ok()?, usize::try_from(kd).ok()?);
        let hk = heads.checked_mul(key_dim).filter(|&x| x > 0)?;
        if ints(ins(6)[1])? != split
            || ints(ins(10)[1])? != split
            || ints(ins(t + 3)[1])? != [0, 0, hk as i64]
            || perm(4)? != [0, 2, 1, 3]
            || perm(8)? != [0, 2, 3, 1]
            || perm(12)? != [0, 2, 1, 3]
            || perm(t + 2)? != [0, 2, 1, 3]
            || ![-1, 3].contains(&attr_i(&n[t], "axis", -1))
        {
            return None;
        }
        let scale = self.constant(ins(3)[1]).filter(|c| c.len() == 1)?.f32s()[0];
        if scale != (1.0 / (key_dim as f64).sqrt()) as f32 {
            return None;
        }
        let (tq, tk) = (query.fm[1]?, key.fm[1]?);
        if causal {
            let mask = self.constant(ins(14)[1])?;
            let want: Vec<f32> = (0..tq * tk)
                .map(|i| if i % tk > i / tk { -1e9 } else { 0.0 })
                .collect();
            if mask.shape != [tq, tk] || mask.f32s() != want {
                return None;
            }
        }
        // A stored f32 weight of the given ONNX shape, as fm's shape.
        let weight = |name: &str, onnx: &[usize], fm: &[usize]| -> Option<Tensor> {
            let t = self.constant(name)?;
            (matches!(t.values, Values::F32(_)) && t.shape == onnx).then(|| {
                Tensor::F32(ArrayD::from_shape_vec(IxDyn(fm), t.f32s()).expect("same length"))
            })
        };
        let d = query.fm[2]?;
        let mut params = Vec::new();
        for (role, x, at) in [("query", &query, 0), ("key", &key, 5), ("value", &value, 9)] {
            let dx = x.fm[2]?;
            let kernel = weight(ins(at)[1], &[dx, hk], &[dx, heads, key_dim])?;
            let bias = weight(ins(at + 2)[1], &[heads, key_dim], &[heads, key_dim])?;
            params.push((role, kernel, bias));
        }
        let out_kernel = weight(ins(t + 4)[1], &[hk, d], &[heads, key_dim, d])?;
        let out_bias = weight(ins(t + 5)[1], &[d], &[d])?;
        let layer = self.layer_name(&n[0]);
        let mut call = format!("MultiHeadAttention({heads}");
        if d % heads != 0 || d / heads != key_dim {
            call += &format!(", key_dim: {key_dim}");
        }
        if causal {
            call += ", causal: true";
        }
        call += ")";
        // fm's inputs are query, value, key, the later ones left out when they repeat.
        let mut inputs = vec![query.var.clone(), value.var.clone(), key.var.clone()];
        if key.var == value.var {
            inputs.pop();
            if value.var == query.var {
                inputs.pop();
            }
        }
        let mut tensors = Vec::new();
        let names = [
            ["query.kernel", "query.bias"],
            ["key.kernel", "key.bias"],
            ["value.kernel", "value.bias"],
        ];
        for ((_, kernel, bias), [kn, bn]) in params.into_iter().zip(names) {
            tensors.push((kn, kernel));
            tensors.push((bn, bias));
        }
        tensors.push(("output.kernel", out_kernel));
        tensors.push(("output.bias", out_bias));
        self.push(
            o(n.len() - 1),
            inputs,
            call,
            layer,
            tensors,
            query.fm.clone(),
            query.layout.clone(),
        );
        Some(n.len())
    }

    /// What `fmc export` writes for a PositionEmbedding (keras-hub's): `Shape` of the input,
    /// a `Slice` of the stored `[sequence_length, D]` table to its first L rows (left out when
    /// L is the whole table), `Expand` to the input's shape. Returns how many nodes it read, or
    /// `None` (nothing changed) when `nodes` do not start with that pattern.
    fn position_embedding(&mut self, nodes: &[NodeProto]) -> Option<usize> {
        let shape = nodes.first().filter(|n| n.op_type() == "Shape")?;
        if shape.output.len() != 1
            || shape
                .attribute
                .iter()
                .any(|a| a.name() == "start" || a.name() == "end")
        {
            return None;
        }
        let x = self.vals.get(shape.input.first()?)?.clone();
        if !x.identity() || x.fm.len() != 3 {
            return None;
        }
        let (len, dim) = (x.fm[1]?, x.fm[2]?);
        let slice = nodes.get(1).filter(|n| n.op_type() == "Slice");
        let expand = nodes.get(if slice.is_some() { 2 } else { 1 })?;
        if expand.op_type() != "Expand"
            || expand.input.len() != 2
            || expand.input[1] != shape.output[0]
            || self.reads(&shape.output[0]) != 1
        {
            return None;
        }
        let table_name = match slice {
            Some(s) => {
                let ints = |i: usize| {
                    let name = s.input.get(i).filter(|n| !n.is_empty())?;
                    self.constant_ints(name)
                };
                let axes_ok = s.input.get(3).is_none_or(|n| n.is_empty())
                    || ints(3).is_some_and(|a| a == [0] || a == [-2]);
                let steps_ok = s.input.get(4).is_none_or(|n| n.is_empty())
                    || ints(4).is_some_and(|a| a == [1]);
                if ints(1)? != [0]
                    || ints(2)? != [len as i64]
                    || !axes_ok
                    || !steps_ok
                    || expand.input[0] != s.output[0]
                    || self.reads(&s.output[0]) != 1
                {
                    return None;
                }
                s.input.first()?
            }
            None => &expand.input[0],
        };
        let table = self.constant(table_name)?.clone();
        let [rows, d] = table.shape[..] else {
            return None;
        };
        if d != dim || rows < len || slice.is_none() && rows != len {
            return None;
        }
        let layer = self.layer_name(shape);
        self.push_from(
            &expand.output[0],
            &x,
            format!("PositionEmbedding({rows})"),
            layer,
            vec![("embeddings", table.to_tensor())],
            x.fm.clone(),
        );
        Some(if slice.is_some() { 3 } else { 2 })
    }

    /// Resize by whole factors on the two spatial axes, nearest neighbour, as fm's
    /// UpSampling2D (output cell i reads input cell floor(i / factor)): `asymmetric`
    /// coordinates with `floor`, or `half_pixel` with round-to-nearest (the same cells for
    /// whole factors).
    fn resize(&mut self, k: usize, node: &NodeProto, out: &str) -> Result<(), InteropError> {
        let x = self.val(&node.input[0], "input")?;
        let mode = attr_s(node, "mode").unwrap_or_else(|| "nearest".into());
        let coords =
            attr_s(node, "coordinate_transformation_mode").unwrap_or_else(|| "half_pixel".into());
        let nearest = attr_s(node, "nearest_mode").unwrap_or_else(|| "round_prefer_floor".into());
        let same_cells = match coords.as_str() {
            "asymmetric" => nearest == "floor",
            "half_pixel" | "pytorch_half_pixel" => nearest.starts_with("round_prefer"),
            _ => false,
        };
        if mode != "nearest"
            || !same_cells
            || attr_i(node, "exclude_outside", 0) != 0
            || attr(node, "axes").is_some()
        {
            return Err(self.err(k, node, "is not a nearest-neighbour resize on fm's cells (UpSampling2D reads cell floor(i / factor))"));
        }
        let onnx_shape = x.onnx_shape();
        let scales: Vec<f32> = match (
            node.input.get(2).filter(|s| !s.is_empty()),
            node.input.get(3).filter(|s| !s.is_empty()),
        ) {
            (Some(s), None) => match self.constant(s) {
                Some(t) => t.f32s(),
                None => return Err(self.err(k, node, "takes its scales from a computed tensor")),
            },
            (None, Some(s)) => match self.constant_ints(s) {
                Some(sizes) if sizes.len() == onnx_shape.len() => sizes
                    .iter()
                    .zip(&onnx_shape)
                    .map(|(&o, i)| i.map_or(1.0, |i| o as f32 / i as f32))
                    .collect(),
                _ => return Err(self.err(k, node, "takes its sizes from a computed tensor")),
            },
            _ => return Err(self.err(k, node, "has neither stored scales nor stored sizes")),
        };
        let r = x.fm.len();
        let mut size = vec![1usize; r.saturating_sub(2)];
        if scales.len() != x.layout.len() || x.flat_from.is_some() || r != 4 {
            return Err(self.err(
                k,
                node,
                "resizes a tensor that is not an image; fm's UpSampling2D takes [H, W, C]",
            ));
        }
        for (i, &s) in scales.iter().enumerate() {
            let whole = s >= 1.0 && s.fract() == 0.0;
            match x.layout[i] {
                Some(a) if (1..r - 1).contains(&a) && whole => size[a - 1] = s as usize,
                _ if s == 1.0 => {}
                _ => {
                    return Err(self.err(
                        k,
                        node,
                        format!(
                            "scales {scales:?}: fm upsamples the two spatial axes by whole factors"
                        ),
                    ))
                }
            }
        }
        let mut fm = x.fm.clone();
        for a in 1..r - 1 {
            fm[a] = fm[a].map(|d| d * size[a - 1]);
        }
        let layer = self.layer_name(node);
        let call = format!("UpSampling2D({})", int_list(&size));
        self.push_from(out, &x, call, layer, vec![], fm);
        Ok(())
    }

    fn batch_norm(&mut self, k: usize, node: &NodeProto, out: &str) -> Result<(), InteropError> {
        let x = self.val(&node.input[0], "input")?;
        if node.output.iter().skip(1).any(|o| !o.is_empty())
            || attr_i(node, "training_mode", 0) != 0
        {
            return Err(self.err(
                k,
                node,
                "is in training mode; fm imports the inference form",
            ));
        }
        let r = x.fm.len();
        let channels_ok =
            x.flat_from.is_none() && x.layout.get(1).copied().flatten() == Some(r - 1);
        if !channels_ok {
            return Err(self.err(
                k,
                node,
                "normalises an axis that is not fm's channel (last) axis",
            ));
        }
        let mut params = Vec::new();
        for (i, role) in ["gamma", "beta", "moving_mean", "moving_variance"]
            .iter()
            .enumerate()
        {
            params.push((*role, self.stored_input(k, node, i + 1, role)?.to_tensor()));
        }
        let eps = attr_f(node, "epsilon", 1e-5);
        let momentum = attr_f(node, "momentum", 0.9);
        let call = format!(
            "BatchNorm(momentum: {}, epsilon: {})",
            fmt_float(momentum),
            fmt_float(eps)
        );
        let layer = self.layer_name(node);
        self.push_from(out, &x, call, layer, params, x.fm.clone());
        Ok(())
    }

    fn rnn(&mut self, k: usize, node: &NodeProto) -> Result<(), InteropError> {
        let op = node.op_type();
        let x = self.val(&node.input[0], "input")?;
        let layout_attr = attr_i(node, "layout", 0);
        let time_major = x.layout == vec![Some(1), Some(0), Some(2)];
        if !(layout_attr == 0 && time_major || layout_attr == 1 && x.identity()) || x.fm.len() != 3
        {
            return Err(self.err(k, node, "reads a sequence that is not fm's [N, T, C] value"));
        }
        if attr_s(node, "direction").is_some_and(|d| d != "forward")
            || attr(node, "clip").is_some()
            || attr_i(node, "input_forget", 0) != 0
        {
            return Err(self.err(k, node, "is bidirectional, reversed, clipped or couples gates; fm's recurrent layers run forward, unclipped"));
        }
        if node.input.iter().skip(4).any(|i| !i.is_empty()) {
            return Err(self.err(k, node, "has sequence lengths, initial states or peepholes; fm starts from zeros over the whole sequence"));
        }
        let (gates, kind, keras_order) = match op {
            "LSTM" => (4, "LSTM", vec![0usize, 2, 3, 1]),
            "GRU" => (3, "GRU", vec![0, 1, 2]),
            _ => (1, "SimpleRNN", vec![0]),
        };
        let units = attr_i(node, "hidden_size", 0) as usize;
        let acts: Vec<String> = attr(node, "activations")
            .map(|a| {
                a.strings
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let act = match op {
            "LSTM" => {
                let a = if acts.is_empty() {
                    vec!["Sigmoid".into(), "Tanh".into(), "Tanh".into()]
                } else {
                    acts.clone()
                };
                if a.len() != 3 || a[0] != "Sigmoid" || a[1] != a[2] {
                    return Err(self.err(k, node, "has activations fm's LSTM does not (sigmoid gates, one activation for cell and output)"));
                }
                a[1].clone()
            }
            "GRU" => {
                if attr_i(node, "linear_before_reset", 0) != 1 {
                    return Err(self.err(k, node, "has linear_before_reset 0; fm's GRU is Keras's reset_after form (linear_before_reset 1)"));
                }
                let a = if acts.is_empty() {
                    vec!["Sigmoid".into(), "Tanh".into()]
                } else {
                    acts.clone()
                };
                if a.len() != 2 || a[0] != "Sigmoid" {
                    return Err(self.err(k, node, "has activations fm's GRU does not"));
                }
                a[1].clone()
            }
            _ => acts.first().cloned().unwrap_or_else(|| "Tanh".into()),
        };
        let act = match act.as_str() {
            "Tanh" => "tanh",
            "Relu" => "relu",
            "Sigmoid" => "sigmoid",
            _ => {
                return Err(self.err(
                    k,
                    node,
                    format!("has activation {act}; fm reads Tanh, Relu, Sigmoid"),
                ))
            }
        };
        let cin = x.fm[2].unwrap_or(0);
        let width = gates * units;
        let get = |i: usize, what: &str| -> Result<TensorValue, InteropError> {
            node.input
                .get(i)
                .filter(|s| !s.is_empty())
                .and_then(|n| self.constant(n))
                .cloned()
                .ok_or_else(|| self.err(k, node, format!("has no stored {what}")))
        };
        let w = get(1, "W")?;
        let rk = get(2, "R")?;
        if w.shape != [1, width, cin] || rk.shape != [1, width, units] {
            return Err(self.err(
                k,
                node,
                format!(
                    "has W {:?} and R {:?}; expected [1, {width}, {cin}] and [1, {width}, {units}]",
                    w.shape, rk.shape
                ),
            ));
        }
        let b = match node.input.get(3).filter(|s| !s.is_empty()) {
            Some(_) => get(3, "B")?.f32s(),
            None => vec![0.0; 2 * width],
        };
        if b.len() != 2 * width {
            return Err(self.err(
                k,
                node,
                "has a bias that is not [1, 2 * gates * hidden_size]",
            ));
        }
        // ONNX [gate' * u + j, rows] -> Keras [rows, gate * u + j]; keras_order[g] = ONNX block of Keras gate g.
        let keras = |m: &[f32], rows: usize| -> Tensor {
            let mut out = vec![0f32; rows * width];
            for (g, &og) in keras_order.iter().enumerate() {
                for j in 0..units {
                    for r in 0..rows {
                        out[r * width + g * units + j] = m[(og * units + j) * rows + r];
                    }
                }
            }
            Tensor::F32(ArrayD::from_shape_vec(IxDyn(&[rows, width]), out).expect("len"))
        };
        let reorder = |v: &[f32]| -> Vec<f32> {
            keras_order
                .iter()
                .flat_map(|&og| v[og * units..(og + 1) * units].iter().copied())
                .collect()
        };
        let (wb, rb) = (&b[..width], &b[width..]);
        let bias = if op == "GRU" {
            Tensor::F32(
                ArrayD::from_shape_vec(IxDyn(&[2, width]), [reorder(wb), reorder(rb)].concat())
                    .expect("len"),
            )
        } else {
            let sum: Vec<f32> = wb.iter().zip(rb).map(|(a, b)| a + b).collect();
            Tensor::F32(ArrayD::from_shape_vec(IxDyn(&[width]), reorder(&sum)).expect("len"))
        };
        let params = vec![
            ("kernel", keras(&w.f32s(), cin)),
            ("recurrent_kernel", keras(&rk.f32s(), units)),
            ("bias", bias),
        ];
        let y = node
            .output
            .first()
            .filter(|s| !s.is_empty() && self.readers.contains_key(*s));
        let yh = node
            .output
            .get(1)
            .filter(|s| !s.is_empty() && self.readers.contains_key(*s));
        if node
            .output
            .get(2)
            .is_some_and(|s| !s.is_empty() && self.readers.contains_key(s))
        {
            return Err(self.err(
                k,
                node,
                "has its cell state Y_c read; fm's LSTM gives the hidden state",
            ));
        }
        let call = |seq: bool| {
            let mut call = format!("{kind}({units}");
            if seq {
                call.push_str(", return_sequences: true");
            }
            if act != "tanh" {
                call.push_str(&format!(", activation: {act}"));
            }
            call + ")"
        };
        let layer = self.layer_name(node);
        // Y: [T, 1, N, u] (layout 0) or [N, T, 1, u] (layout 1); Y_h: [1, N, u] or [N, 1, u].
        let (y_layout, yh_layout) = if layout_attr == 0 {
            (
                vec![Some(1), None, Some(0), Some(2)],
                vec![None, Some(0), Some(1)],
            )
        } else {
            (
                vec![Some(0), Some(1), None, Some(2)],
                vec![Some(0), None, Some(1)],
            )
        };
        let sequence = (vec![None, x.fm[1], Some(units)], y_layout);
        let last_state = (vec![None, Some(units)], yh_layout);
        // (ONNX output, layer name, return_sequences, fm shape and layout) of each layer.
        let mut layers = Vec::new();
        match (y, yh) {
            (Some(y), Some(yh)) => {
                // Both read: fm's layer gives one of them, so a second layer with a copy of
                // the weights gives the last state (exact; training would update the copies
                // apart).
                let last = layer
                    .as_ref()
                    .map(|l| super::unique_name(&format!("{l}_last"), &mut self.layer_names));
                self.model.header.push(format!(
                    "Node '{}' ({op}): its outputs Y and Y_h are both read; `{}` gives Y and `{}`, with a copy of its weights, Y_h (training would update the two apart).",
                    node.name(),
                    layer.as_deref().unwrap_or("?"),
                    last.as_deref().unwrap_or("?"),
                ));
                layers.push((yh.clone(), last, false, last_state));
                layers.push((y.clone(), layer, true, sequence));
            }
            (Some(y), None) => layers.push((y.clone(), layer, true, sequence)),
            (None, yh) => {
                let out = yh
                    .cloned()
                    .unwrap_or_else(|| format!("{}__unused", node.name()));
                layers.push((out, layer, false, last_state));
            }
        }
        for (out, name, seq, (fm, layout)) in layers {
            self.push(
                &out,
                vec![x.var.clone()],
                call(seq),
                name,
                params.clone(),
                fm,
                layout,
            );
        }
        Ok(())
    }
}

/// The nodes a pattern matcher (`Importer::gelu_arithmetic` and the like) reads: the first of
/// a graph's remaining nodes, of the expected ops, each with one output.
struct Run<'n> {
    nodes: &'n [NodeProto],
}

impl<'n> Run<'n> {
    /// `nodes` start with nodes of exactly the ops `ops`, each with one output and a number of
    /// inputs that `inputs_fit(op, count)` accepts.
    fn of(
        nodes: &'n [NodeProto],
        ops: &[&str],
        inputs_fit: impl Fn(&str, usize) -> bool,
    ) -> Option<Self> {
        let nodes = nodes.get(..ops.len())?;
        let fits = nodes.iter().zip(ops).all(|(n, &op)| {
            n.op_type() == op && n.output.len() == 1 && inputs_fit(op, n.input.len())
        });
        fits.then_some(Run { nodes })
    }

    /// Node `i`'s output.
    fn out(&self, i: usize) -> &'n str {
        &self.nodes[i].output[0]
    }

    /// Node `i`'s inputs.
    fn ins(&self, i: usize) -> Vec<&'n str> {
        self.nodes[i].input.iter().map(String::as_str).collect()
    }
}

/// For a tensor of fm shape `shape` flattened in the axis order `order` (ONNX's), the fm
/// flat index of each ONNX flat index.
fn flatten_permutation(shape: &[usize], order: &[usize]) -> Vec<usize> {
    let n: usize = shape.iter().product();
    let dims: Vec<usize> = order.iter().map(|&a| shape[a]).collect();
    let mut strides = vec![1usize; shape.len()];
    for a in (0..shape.len().saturating_sub(1)).rev() {
        strides[a] = strides[a + 1] * shape[a + 1];
    }
    (0..n)
        .map(|mut i| {
            let mut fm = 0;
            for (pos, &a) in order.iter().enumerate().rev() {
                let idx = i % dims[pos];
                i /= dims[pos];
                fm += idx * strides[a];
            }
            fm
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_first_flatten_maps_to_fm_order() {
        // fm [H=2, W=1, C=3]; ONNX flattens [C, H, W].
        let p = flatten_permutation(&[2, 1, 3], &[2, 0, 1]);
        // ONNX index c*2 + h -> fm index h*3 + c.
        assert_eq!(p, vec![0, 3, 1, 4, 2, 5]);
    }

    #[test]
    fn names_become_identifiers() {
        assert_eq!(sanitize("/conv1/Conv_output_0"), "conv1_Conv_output_0");
        assert_eq!(sanitize("0"), "v0");
        assert_eq!(sanitize("input"), "input_");
    }
}
