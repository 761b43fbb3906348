//! Keras 3 -> `.fm`: a `.keras` file (a zip of `config.json` and `model.weights.h5`) or a model
//! config alone (`model.to_json()`, giving a freshly initialised model). Sequential and
//! Functional models; layer names are kept (`name: "conv2d"`), the compile config becomes a
//! `train` section, and the weights (HDF5, read by [`super::hdf5`]) are named and laid out as
//! language.md section 7 says, which is Keras's own layout.

use super::{fmt_float, int_list, sanitize, Block, Imported, Model, Stmt};
use crate::error::InteropError;
use fm_codes::E0402;
use fm_codes::E0412;
use fm_runtime::data::read::{decompressed_limit, read_limited, too_large_message};
use fm_runtime::tensor::Tensor;
use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// The most bytes a `.keras` file's `config.json` may decompress to: a model's config is a few
/// megabytes at most, so anything near this is a damaged or hostile file.
const CONFIG_LIMIT: u64 = 256 << 20;

/// What the import found: the model and, for a `.keras` file, its weights and train section.
pub fn import(bytes: &[u8], file: &str, model_name: &str) -> Result<Imported, InteropError> {
    let bad = |part: Option<String>, m: String| InteropError::new(E0402, file, part, m);
    let (config, weights): (Value, Option<Vec<u8>>) = if bytes.starts_with(b"PK") {
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
            .map_err(|e| bad(None, format!("is not a readable .keras (zip) file: {e}")))?;
        // Members are decompressed up to a bound, so a zip bomb is an error, not an abort: the
        // memory budget for the weights, `CONFIG_LIMIT` for the config.
        let mut read = |name: &str, limit: u64| -> Result<Option<Vec<u8>>, InteropError> {
            let cannot = |e: &dyn std::fmt::Display| {
                bad(
                    Some(name.to_string()),
                    format!("cannot be read from the archive: {e}"),
                )
            };
            let f = zip.by_name(name).map_err(|e| cannot(&e))?;
            read_limited(f, limit).map_err(|e| cannot(&e))
        };
        let config = read("config.json", CONFIG_LIMIT)?.ok_or_else(|| {
            bad(
                Some("config.json".into()),
                format!(
                    "decompresses to more than {} MB, which no Keras model config needs",
                    CONFIG_LIMIT >> 20
                ),
            )
        })?;
        let budget = decompressed_limit();
        let weights = read("model.weights.h5", budget.0)?
            .ok_or_else(|| bad(Some("model.weights.h5".into()), too_large_message(budget)))?;
        let config = serde_json::from_slice(&config)
            .map_err(|e| bad(Some("config.json".into()), format!("is not JSON: {e}")))?;
        (config, Some(weights))
    } else {
        let config = serde_json::from_slice(bytes).map_err(|e| {
            bad(
                None,
                format!("is neither a .keras file nor a Keras JSON config: {e}"),
            )
        })?;
        (config, None)
    };
    let mut k = KerasImport {
        file,
        model: Model::new(model_name),
        h5: None,
        block_names: HashSet::new(),
    };
    if let Some(w) = &weights {
        k.h5 =
            Some(super::hdf5::H5::parse(w).map_err(|e| bad(Some("model.weights.h5".into()), e))?);
    }
    k.model.header.push(format!(
        "Imported by `fmc import` from {} (Keras {}).",
        file.rsplit('/').next().unwrap_or(file),
        if weights.is_some() {
            "3 .keras file"
        } else {
            "JSON config; freshly initialised weights"
        }
    ));
    k.model_config(&config)?;
    let mut imported = k.model.finish();
    if let Some(train) = config
        .get("compile_config")
        .and_then(|c| train_section(c, &k.model.name))
    {
        imported.source.push('\n');
        imported.source.push_str(&train);
        let (ast, syntax) = fm_grammar::parse(&imported.source);
        if syntax.is_empty() {
            imported.source = fm_grammar::fmt::format(&ast, &imported.source);
        }
    }
    Ok(imported)
}

struct KerasImport<'a> {
    file: &'a str,
    model: Model,
    h5: Option<super::hdf5::H5>,
    /// Names taken by blocks (one per nested model).
    block_names: HashSet<String>,
}

/// Where converted layers go: the model itself, or the block made from a nested model.
#[derive(Default)]
struct Scope {
    stmts: Vec<Stmt>,
    vars: HashSet<String>,
    /// The HDF5 group of this model's layers: `` for the model, `layers/sequential/` for the
    /// Sequential model nested in it.
    h5: String,
    /// The prefix of this scope's tensor names (`encoder/` in a block called as `encoder`).
    prefix: String,
    /// Each layer's weights group in `h5`: Keras names it after the layer's class and its
    /// position among the layers of that class (`dense_1` is the second Dense), not after the
    /// layer's name.
    keys: HashMap<String, String>,
    /// Keras tensor `(layer, node, index)` -> fm variable.
    tensors: HashMap<(String, u64, u64), String>,
    /// Layers called already, by their fm name: a later call runs the same weights
    /// (language.md 9.1).
    called: HashMap<String, String>,
}

impl Scope {
    fn new(h5: String, prefix: String, layers: &[Value]) -> Scope {
        let mut counts: HashMap<String, usize> = HashMap::new();
        let mut keys = HashMap::new();
        for layer in layers {
            let base = snake_case(
                layer
                    .get("class_name")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
            );
            let seen = counts.entry(base.clone()).or_default();
            let key = match *seen {
                0 => base,
                n => format!("{base}_{n}"),
            };
            *seen += 1;
            keys.insert(layer_name(layer), key);
        }
        // A layer called more than once is called by its name after the first call, so no
        // variable may take that name: its calls' values are `shared_1`, `shared_2`, ...
        let vars = layers
            .iter()
            .filter(|l| {
                l.get("inbound_nodes")
                    .and_then(Value::as_array)
                    .is_some_and(|n| n.len() > 1)
            })
            .map(|l| sanitize(&layer_name(l)))
            .collect();
        Scope {
            h5,
            prefix,
            keys,
            vars,
            ..Default::default()
        }
    }

    fn unique_var(&mut self, base: &str) -> String {
        super::unique_name(base, &mut self.vars)
    }
}

/// A layer's name in its model config (Functional configs repeat it beside `config`).
fn layer_name(layer: &Value) -> String {
    layer
        .get("name")
        .or_else(|| cfg(layer, "name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn class(layer: &Value) -> &str {
    layer
        .get("class_name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The offset of a layer's node indices in `input_layers` and `output_layers`: a nested
/// Functional model has a node of its own from when it was built on its Input, which configs
/// leave out of `inbound_nodes` (Keras's `_should_skip_first_node`) but count there, so its
/// first call is node 1 (a call's arguments count from 0).
fn node_offset(layer: &Value) -> u64 {
    u64::from(matches!(class(layer), "Functional" | "Model"))
}

/// Keras's `naming.to_snake_case`: `MaxPooling2D` -> `max_pooling2d`, `LSTM` -> `lstm`.
fn snake_case(name: &str) -> String {
    let c: Vec<char> = name
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    // (.)([A-Z][a-z]+) -> \1_\2
    let mut a = String::new();
    for i in 0..c.len() {
        if i > 0
            && c[i].is_ascii_uppercase()
            && c.get(i + 1).is_some_and(|n| n.is_ascii_lowercase())
        {
            a.push('_');
        }
        a.push(c[i]);
    }
    // ([a-z])([A-Z]) -> \1_\2
    let c: Vec<char> = a.chars().collect();
    let mut b = String::new();
    for i in 0..c.len() {
        if i > 0 && c[i].is_ascii_uppercase() && c[i - 1].is_ascii_lowercase() {
            b.push('_');
        }
        b.push(c[i]);
    }
    b.to_lowercase().replace("__", "_")
}

fn cfg<'v>(layer: &'v Value, key: &str) -> Option<&'v Value> {
    layer.get("config").and_then(|c| c.get(key))
}

/// A Keras int or int tuple as fm's `3` or `[3, 1]`.
fn ints(v: Option<&Value>) -> Option<Vec<usize>> {
    match v? {
        Value::Number(n) => Some(vec![n.as_u64()? as usize]),
        Value::Array(a) => a.iter().map(|x| x.as_u64().map(|x| x as usize)).collect(),
        _ => None,
    }
}

/// Keras activation name -> fm activation (None: not expressible).
fn activation(v: Option<&Value>) -> Option<&'static str> {
    let name = match v {
        None | Some(Value::Null) => "linear",
        Some(Value::String(s)) => s.as_str(),
        Some(other) => other
            .get("config")
            .and_then(|c| c.get("name"))
            .and_then(Value::as_str)?,
    };
    Some(match name {
        "linear" => "linear",
        "relu" => "relu",
        "sigmoid" => "sigmoid",
        "tanh" => "tanh",
        "softmax" => "softmax",
        "log_softmax" => "log_softmax",
        "elu" => "elu",
        "gelu" => "gelu",
        "softplus" => "softplus",
        "silu" | "swish" => "silu",
        "leaky_relu" => "leaky_relu",
        _ => return None,
    })
}

impl KerasImport<'_> {
    fn err(&self, layer: &Value, message: impl Into<String>) -> InteropError {
        let class = layer
            .get("class_name")
            .and_then(Value::as_str)
            .unwrap_or("?");
        let name = cfg(layer, "name").and_then(Value::as_str).unwrap_or("?");
        let mut settings = String::new();
        if let Some(Value::Object(c)) = layer.get("config") {
            let keep: Vec<String> = c
                .iter()
                .filter(|(k, v)| {
                    !matches!(k.as_str(), "name" | "trainable" | "dtype")
                        && !v.is_object()
                        && !v.is_null()
                        // (a nested model's layer list)
                        && !v.as_array().is_some_and(|a| a.iter().any(Value::is_object))
                })
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            settings = format!(" {{{}}}", keep.join(", "));
        }
        InteropError::new(
            E0412,
            self.file,
            Some(format!("layer '{name}' ({class}){settings}")),
            message,
        )
    }

    fn model_config(&mut self, config: &Value) -> Result<(), InteropError> {
        let layers = self.layers_of(config)?;
        let mut top = Scope::new(String::new(), String::new(), layers);
        match class(config) {
            "Sequential" => {
                let (x, rest) = self.sequential_input(config, layers)?;
                let x = self.sequential(&mut top, rest, x)?;
                // Keras names a Sequential model's output after its last layer.
                self.model.outputs.push((x.clone(), x));
                self.model.output_layouts.push(Vec::new());
            }
            "Functional" | "Model" => {
                let outs = self.functional(&mut top, config, layers, None)?;
                for v in outs {
                    // Keras names a Functional model's outputs after their layers.
                    let name = if self.model.outputs.iter().any(|(n, _)| n == &v) {
                        top.unique_var(&format!("{v}_out"))
                    } else {
                        v.clone()
                    };
                    self.model.outputs.push((name, v));
                    self.model.output_layouts.push(Vec::new());
                }
            }
            other => {
                return Err(InteropError::new(
                    E0412,
                    self.file,
                    Some(format!("model ({other})")),
                    "is a subclassed model; fm imports Sequential and Functional models",
                ))
            }
        }
        self.model.stmts = top.stmts;
        Ok(())
    }

    fn layers_of<'v>(&self, config: &'v Value) -> Result<&'v [Value], InteropError> {
        config
            .get("config")
            .and_then(|c| c.get("layers"))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .ok_or_else(|| {
                InteropError::new(
                    E0402,
                    self.file,
                    Some(format!("config of '{}'", layer_name(config))),
                    "has no `layers` list: not a Keras Sequential or Functional model config",
                )
            })
    }

    fn input_layer(
        &mut self,
        sc: &mut Scope,
        layer: &Value,
        name: &str,
    ) -> Result<String, InteropError> {
        let shape = cfg(layer, "batch_shape")
            .or_else(|| cfg(layer, "batch_input_shape"))
            .and_then(Value::as_array)
            .ok_or_else(|| self.err(layer, "has no batch_shape"))?;
        let dims: Option<Vec<usize>> = shape[1..]
            .iter()
            .map(|d| d.as_u64().map(|d| d as usize))
            .collect();
        let Some(dims) = dims else {
            return Err(self.err(
                layer,
                "has a dimension of unknown size; fm needs every dimension but the batch fixed",
            ));
        };
        let dtype = match cfg(layer, "dtype")
            .and_then(Value::as_str)
            .unwrap_or("float32")
        {
            "int32" | "int64" => "i32",
            _ => "f32",
        };
        let var = sc.unique_var(&sanitize(name));
        self.model
            .inputs
            .push((var.clone(), dtype.into(), dims.clone()));
        self.model
            .input_perms
            .push((name.to_string(), (0..=dims.len()).collect()));
        Ok(var)
    }

    /// The input of a top-level Sequential model and the layers after it.
    fn sequential_input<'v>(
        &mut self,
        config: &Value,
        layers: &'v [Value],
    ) -> Result<(String, &'v [Value]), InteropError> {
        let first = layers.first().ok_or_else(|| {
            InteropError::new(E0402, self.file, Some("config".into()), "has no layers")
        })?;
        // The model's own variables: an input is declared before any layer.
        let mut sc = Scope::default();
        if class(first) == "InputLayer" {
            let name = cfg(first, "name")
                .and_then(Value::as_str)
                .unwrap_or("input")
                .to_string();
            let x = self.input_layer(&mut sc, first, &name)?;
            Ok((x, &layers[1..]))
        } else {
            // Keras 2 style: the first layer carries batch_input_shape; Keras 3 build_input_shape.
            let shape = config
                .get("config")
                .and_then(|c| c.get("build_input_shape"))
                .cloned()
                .unwrap_or(Value::Null);
            let fake = serde_json::json!({"class_name": "InputLayer", "config": {"batch_shape": shape, "name": "input"}});
            let x = self.input_layer(&mut sc, &fake, "input")?;
            Ok((x, layers))
        }
    }

    /// A Sequential model's layers applied in turn to `x` (InputLayers skipped); returns the
    /// last value.
    fn sequential(
        &mut self,
        sc: &mut Scope,
        layers: &[Value],
        mut x: String,
    ) -> Result<String, InteropError> {
        sc.vars.insert(x.clone());
        for layer in layers {
            if class(layer) == "InputLayer" {
                continue;
            }
            x = self.call(sc, layer, vec![x])?;
        }
        Ok(x)
    }

    /// A Functional model's graph. Its inputs are the model's (declared here) or, for a nested
    /// model, `bound` (the block's parameters, in `input_layers` order). Each layer's calls
    /// (`inbound_nodes`) run once their inputs exist, as Keras rebuilds a model; returns the
    /// variables of `output_layers`.
    fn functional(
        &mut self,
        sc: &mut Scope,
        config: &Value,
        layers: &[Value],
        bound: Option<&[String]>,
    ) -> Result<Vec<String>, InteropError> {
        let c = &config["config"];
        let mut input_order = Vec::new();
        collect_history_list(&c["input_layers"], &mut input_order);
        let mut next = vec![0usize; layers.len()];
        for layer in layers {
            if class(layer) != "InputLayer" {
                continue;
            }
            let name = layer_name(layer);
            let v = match bound {
                None => self.input_layer(sc, layer, &name)?,
                Some(params) => {
                    let k = input_order.iter().position(|h| h.0 == name);
                    match k.and_then(|k| params.get(k)) {
                        Some(p) => p.clone(),
                        None => return Err(self.err(layer, "is no input of its model")),
                    }
                }
            };
            sc.tensors.insert((name, 0, 0), v);
        }
        loop {
            let (mut progress, mut waiting) = (false, None);
            for (li, layer) in layers.iter().enumerate() {
                if class(layer) == "InputLayer" {
                    continue;
                }
                let nodes = layer
                    .get("inbound_nodes")
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                while next[li] < nodes.len() {
                    let mut reads = Vec::new();
                    collect_history(&nodes[next[li]]["args"], &mut reads);
                    let vars: Option<Vec<String>> =
                        reads.iter().map(|h| sc.tensors.get(h).cloned()).collect();
                    let Some(vars) = vars else {
                        let missing = reads.iter().find(|h| !sc.tensors.contains_key(*h));
                        waiting = waiting.or(missing.map(|h| (li, h.0.clone())));
                        break;
                    };
                    let out = self.call(sc, layer, vars)?;
                    sc.tensors
                        .insert((layer_name(layer), next[li] as u64, 0), out);
                    next[li] += 1;
                    progress = true;
                }
            }
            match waiting {
                None => break,
                Some((li, read)) if !progress => {
                    return Err(self.err(
                        &layers[li],
                        format!("reads `{read}`, which no layer of its model computes"),
                    ))
                }
                Some(_) => {}
            }
        }
        let mut outs = Vec::new();
        collect_history_list(&c["output_layers"], &mut outs);
        outs.iter()
            .map(|(name, node, index)| {
                let offset = layers
                    .iter()
                    .find(|l| &layer_name(l) == name)
                    .map_or(0, node_offset);
                let h = (name.clone(), node.saturating_sub(offset), *index);
                sc.tensors.get(&h).cloned().ok_or_else(|| {
                    InteropError::new(
                        E0402,
                        self.file,
                        Some(format!("output_layers of '{}'", layer_name(config))),
                        format!("names `{}` (call {}), which is no layer's output", h.0, h.1),
                    )
                })
            })
            .collect()
    }

    /// One call of a layer: the first converts it; a later one runs the same layer (the same
    /// weights) by its name, as Keras does when a layer object is called twice.
    fn call(
        &mut self,
        sc: &mut Scope,
        layer: &Value,
        inputs: Vec<String>,
    ) -> Result<String, InteropError> {
        let name = layer_name(layer);
        if let Some(fm_name) = sc.called.get(&name).cloned() {
            self.model.version_02 = true;
            let var = sc.unique_var(&fm_name);
            sc.stmts.push(Stmt {
                var: var.clone(),
                inputs,
                call: fm_name,
                layer: None,
                params: Vec::new(),
                act_at: None,
            });
            return Ok(var);
        }
        let var = self.layer(sc, layer, inputs)?;
        if let Some(fm_name) = sc
            .stmts
            .last()
            .filter(|s| s.var == var)
            .and_then(|s| s.layer.clone())
        {
            sc.called.insert(name, fm_name);
        }
        Ok(var)
    }

    /// A nested Sequential or Functional model as a block (`block encoder_block(x) { ... }`)
    /// called with the nested model's name, so its weights are `encoder/dense.kernel`.
    fn nested(
        &mut self,
        sc: &mut Scope,
        layer: &Value,
        lname: &str,
        inputs: Vec<String>,
    ) -> Result<String, InteropError> {
        let layers = self.layers_of(layer)?;
        let key = sc.keys.get(&layer_name(layer)).cloned().unwrap_or_default();
        let mut inner = Scope::new(
            format!("{}layers/{key}/", sc.h5),
            format!("{}{lname}/", sc.prefix),
            layers,
        );
        let block = super::unique_name(&format!("{lname}_block"), &mut self.block_names);
        let (params, ret) = if class(layer) == "Sequential" {
            if inputs.len() != 1 {
                return Err(self.err(layer, "is a Sequential model called on several tensors"));
            }
            let x = inner.unique_var("x");
            let ret = self.sequential(&mut inner, layers, x.clone())?;
            (vec![x], ret)
        } else {
            let mut order = Vec::new();
            collect_history_list(&layer["config"]["input_layers"], &mut order);
            if order.len() != inputs.len() {
                return Err(self.err(
                    layer,
                    format!(
                        "has {} inputs and is called on {}",
                        order.len(),
                        inputs.len()
                    ),
                ));
            }
            let params: Vec<String> = order
                .iter()
                .map(|h| inner.unique_var(&sanitize(&h.0)))
                .collect();
            let outs = self.functional(&mut inner, layer, layers, Some(&params))?;
            let [ret] = <[String; 1]>::try_from(outs).map_err(|outs| {
                self.err(
                    layer,
                    format!("has {} outputs; an fm block returns one", outs.len()),
                )
            })?;
            (params, ret)
        };
        self.model.blocks.push(Block {
            name: block.clone(),
            params,
            stmts: inner.stmts,
            ret,
        });
        let var = sc.unique_var(lname);
        sc.stmts.push(Stmt {
            var: var.clone(),
            inputs,
            call: block,
            layer: Some(lname.to_string()),
            params: Vec::new(),
            act_at: None,
        });
        Ok(var)
    }

    /// The weights of a layer in Keras's order (`LAYER_GROUP/vars/0..`, recurrent layers under
    /// `cell/vars`), or none without a weights file.
    fn weights(
        &self,
        sc: &Scope,
        layer: &Value,
        count: usize,
    ) -> Result<Vec<Tensor>, InteropError> {
        let Some(h5) = &self.h5 else {
            return Ok(Vec::new());
        };
        let group = format!(
            "{}layers/{}",
            sc.h5,
            sc.keys.get(&layer_name(layer)).map_or("?", String::as_str)
        );
        let mut out = Vec::new();
        for i in 0..count {
            let paths = [
                format!("{group}/vars/{i}"),
                format!("{group}/cell/vars/{i}"),
            ];
            let found = paths.iter().find_map(|p| h5.dataset(p));
            match found {
                Some(Ok(t)) => out.push(t),
                Some(Err(e)) => {
                    return Err(InteropError::new(
                        E0402,
                        self.file,
                        Some(format!("model.weights.h5: dataset {}", paths[0])),
                        e,
                    ))
                }
                None => {
                    return Err(InteropError::new(
                        E0402,
                        self.file,
                        Some(format!("model.weights.h5: dataset {}", paths[0])),
                        format!(
                            "is missing: layer '{}' ({}) has {count} weights",
                            layer_name(layer),
                            class(layer)
                        ),
                    ))
                }
            }
        }
        Ok(out)
    }

    /// One Keras layer applied to `inputs`; returns the fm variable of its output.
    fn layer(
        &mut self,
        sc: &mut Scope,
        layer: &Value,
        inputs: Vec<String>,
    ) -> Result<String, InteropError> {
        let class = class(layer);
        let name = cfg(layer, "name")
            .and_then(Value::as_str)
            .unwrap_or(class)
            .to_string();
        let lname = sanitize(&name);
        let act = |this: &Self, key: &str| -> Result<&'static str, InteropError> {
            activation(cfg(layer, key)).ok_or_else(|| {
                this.err(
                    layer,
                    format!(
                        "has {key} {}, which fm does not have",
                        cfg(layer, key).unwrap_or(&Value::Null)
                    ),
                )
            })
        };
        let flag =
            |key: &str, default: bool| cfg(layer, key).and_then(Value::as_bool).unwrap_or(default);
        let float =
            |key: &str, default: f64| cfg(layer, key).and_then(Value::as_f64).unwrap_or(default);
        let channels_last = || {
            cfg(layer, "data_format")
                .and_then(Value::as_str)
                .is_none_or(|f| f == "channels_last")
        };
        let mut roles: Vec<&str> = Vec::new();
        let (call, layer_name) = match class {
            "Dense" => {
                let units = cfg(layer, "units")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| self.err(layer, "has no units"))?;
                let a = act(self, "activation")?;
                let bias = flag("use_bias", true);
                roles = if bias {
                    vec!["kernel", "bias"]
                } else {
                    vec!["kernel"]
                };
                let mut c = format!("Dense({units}");
                if a != "linear" {
                    c.push_str(&format!(", {a}"));
                }
                if !bias {
                    c.push_str(", use_bias: false");
                }
                (c + ")", Some(lname.clone()))
            }
            "Conv1D" | "Conv2D" => {
                let filters = cfg(layer, "filters")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| self.err(layer, "has no filters"))?;
                let kernel = ints(cfg(layer, "kernel_size"))
                    .ok_or_else(|| self.err(layer, "has no kernel_size"))?;
                let strides = ints(cfg(layer, "strides")).unwrap_or(vec![1]);
                let dilation = ints(cfg(layer, "dilation_rate")).unwrap_or(vec![1]);
                let padding = cfg(layer, "padding")
                    .and_then(Value::as_str)
                    .unwrap_or("valid");
                if cfg(layer, "groups").and_then(Value::as_u64).unwrap_or(1) != 1
                    || !channels_last()
                    || !matches!(padding, "valid" | "same")
                {
                    return Err(self.err(layer, "is grouped, channels-first or causally padded; fm's Conv is channels-last with `valid` or `same` padding"));
                }
                let a = act(self, "activation")?;
                let bias = flag("use_bias", true);
                roles = if bias {
                    vec!["kernel", "bias"]
                } else {
                    vec!["kernel"]
                };
                let mut c = format!("{class}({filters}, {}", int_list(&kernel));
                if a != "linear" {
                    c.push_str(&format!(", {a}"));
                }
                if strides.iter().any(|&s| s != 1) {
                    c.push_str(&format!(", stride: {}", int_list(&strides)));
                }
                if padding == "same" {
                    c.push_str(", padding: same");
                }
                if dilation.iter().any(|&d| d != 1) {
                    c.push_str(&format!(", dilation: {}", int_list(&dilation)));
                }
                if !bias {
                    c.push_str(", use_bias: false");
                }
                (c + ")", Some(lname.clone()))
            }
            "MaxPooling1D" | "MaxPooling2D" | "AveragePooling1D" | "AveragePooling2D" => {
                let size = ints(cfg(layer, "pool_size"))
                    .ok_or_else(|| self.err(layer, "has no pool_size"))?;
                let strides = ints(cfg(layer, "strides")).unwrap_or_else(|| size.clone());
                let padding = cfg(layer, "padding")
                    .and_then(Value::as_str)
                    .unwrap_or("valid");
                if !channels_last() {
                    return Err(self.err(layer, "is channels-first; fm pools channels-last data"));
                }
                let kind = if class.starts_with("Max") {
                    "MaxPool"
                } else {
                    "AvgPool"
                };
                let mut c = format!("{kind}{}({}", &class[class.len() - 2..], int_list(&size));
                if strides != size && !(strides.len() == 1 && size.iter().all(|&s| s == strides[0]))
                {
                    c.push_str(&format!(", stride: {}", int_list(&strides)));
                }
                if padding == "same" {
                    c.push_str(", padding: same");
                }
                (c + ")", Some(lname.clone()))
            }
            "GlobalAveragePooling1D"
            | "GlobalAveragePooling2D"
            | "GlobalMaxPooling1D"
            | "GlobalMaxPooling2D" => {
                if flag("keepdims", false) || !channels_last() {
                    return Err(self.err(
                        layer,
                        "keeps dimensions or is channels-first; fm's global pooling gives [C]",
                    ));
                }
                let kind = if class.contains("Max") { "Max" } else { "Avg" };
                (
                    format!("Global{kind}Pool{}", &class[class.len() - 2..]),
                    Some(lname.clone()),
                )
            }
            "Flatten" => ("Flatten".to_string(), Some(lname.clone())),
            "Reshape" => {
                let shape: Vec<String> = cfg(layer, "target_shape")
                    .and_then(Value::as_array)
                    .ok_or_else(|| self.err(layer, "has no target_shape"))?
                    .iter()
                    .map(|d| d.to_string())
                    .collect();
                (
                    format!("Reshape([{}])", shape.join(", ")),
                    Some(lname.clone()),
                )
            }
            "Dropout" => (
                format!("Dropout({})", fmt_float(float("rate", 0.5) as f32)),
                Some(lname.clone()),
            ),
            "BatchNormalization" => {
                let axis = cfg(layer, "axis").cloned().unwrap_or(Value::from(-1));
                let last_axis = axis.as_i64() == Some(-1)
                    || axis
                        .as_array()
                        .is_some_and(|a| a.len() == 1 && a[0].as_i64() == Some(-1));
                if !flag("center", true) || !flag("scale", true) || !last_axis {
                    return Err(self.err(layer, "has center or scale off, or normalises an axis other than the last; fm's BatchNorm normalises the last axis with both"));
                }
                roles = vec!["gamma", "beta", "moving_mean", "moving_variance"];
                (
                    format!(
                        "BatchNorm(momentum: {}, epsilon: {})",
                        fmt_float(float("momentum", 0.99) as f32),
                        fmt_float(float("epsilon", 1e-3) as f32)
                    ),
                    Some(lname.clone()),
                )
            }
            "LayerNormalization" => {
                if !flag("center", true) || !flag("scale", true) {
                    return Err(self.err(layer, "has center or scale off; fm's LayerNorm has both"));
                }
                roles = vec!["gamma", "beta"];
                (
                    format!(
                        "LayerNorm(epsilon: {})",
                        fmt_float(float("epsilon", 1e-3) as f32)
                    ),
                    Some(lname.clone()),
                )
            }
            "Embedding" => {
                let v = cfg(layer, "input_dim").and_then(Value::as_u64).unwrap_or(0);
                let d = cfg(layer, "output_dim")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                roles = vec!["embeddings"];
                (format!("Embedding({v}, {d})"), Some(lname.clone()))
            }
            "Rescaling" => {
                let (s, o) = (float("scale", 1.0), float("offset", 0.0));
                (
                    format!(
                        "Rescale({}, offset: {})",
                        fmt_float(s as f32),
                        fmt_float(o as f32)
                    ),
                    Some(lname.clone()),
                )
            }
            "SimpleRNN" | "LSTM" | "GRU" => {
                let units = cfg(layer, "units")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| self.err(layer, "has no units"))?;
                let a = act(self, "activation")?;
                let rec = cfg(layer, "recurrent_activation")
                    .and_then(Value::as_str)
                    .unwrap_or("sigmoid");
                if flag("go_backwards", false)
                    || flag("return_state", false)
                    || flag("stateful", false)
                    || !flag("use_bias", true)
                    || (class != "SimpleRNN" && rec != "sigmoid")
                    || (class == "GRU" && !flag("reset_after", true))
                {
                    return Err(self.err(layer, "runs backwards, returns its state, is stateful, has no bias, a recurrent activation other than sigmoid, or (GRU) reset_after false; fm's recurrent layers have none of these"));
                }
                roles = vec!["kernel", "recurrent_kernel", "bias"];
                let mut c = format!("{class}({units}");
                if flag("return_sequences", false) {
                    c.push_str(", return_sequences: true");
                }
                if a != "tanh" {
                    c.push_str(&format!(", activation: {a}"));
                }
                (c + ")", Some(lname.clone()))
            }
            "Activation" => (act(self, "activation")?.to_string(), None),
            "ReLU" => {
                let slope = float("negative_slope", 0.0);
                if cfg(layer, "max_value").is_some_and(|v| !v.is_null())
                    || float("threshold", 0.0) != 0.0
                {
                    return Err(
                        self.err(layer, "has max_value or threshold; fm's relu has neither")
                    );
                }
                (
                    if slope == 0.0 {
                        "relu".to_string()
                    } else {
                        format!("leaky_relu(alpha: {})", fmt_float(slope as f32))
                    },
                    None,
                )
            }
            "LeakyReLU" => (
                format!(
                    "leaky_relu(alpha: {})",
                    fmt_float(float("negative_slope", float("alpha", 0.3)) as f32)
                ),
                None,
            ),
            "Softmax" => {
                let axis = cfg(layer, "axis").and_then(Value::as_i64).unwrap_or(-1);
                (
                    if axis == -1 {
                        "softmax".to_string()
                    } else {
                        format!("softmax(axis: {})", axis - 1)
                    },
                    None,
                )
            }
            "Add" | "Subtract" | "Multiply" => {
                let sym = match class {
                    "Add" => "+",
                    "Subtract" => "-",
                    _ => "*",
                };
                if inputs.len() < 2 {
                    return Err(self.err(layer, "has fewer than two inputs"));
                }
                // a + b + c as a chain of two-input statements.
                let mut acc = inputs[0].clone();
                for (i, b) in inputs[1..].iter().enumerate() {
                    let base = if i + 2 == inputs.len() {
                        lname.clone()
                    } else {
                        format!("{lname}_part{i}")
                    };
                    let var = sc.unique_var(&base);
                    sc.stmts.push(Stmt {
                        var: var.clone(),
                        inputs: vec![acc, b.clone()],
                        call: sym.to_string(),
                        layer: None,
                        params: Vec::new(),
                        act_at: None,
                    });
                    acc = var;
                }
                return Ok(acc);
            }
            "Concatenate" => {
                let axis = cfg(layer, "axis").and_then(Value::as_i64).unwrap_or(-1);
                if axis == 0 {
                    return Err(self.err(layer, "joins along the batch axis"));
                }
                let axis = if axis < 0 { axis } else { axis - 1 };
                (format!("concat(axis: {axis})"), None)
            }
            "InputLayer" => {
                return Err(self.err(layer, "is an input in the middle of a Sequential model"))
            }
            "Sequential" | "Functional" | "Model" => return self.nested(sc, layer, &lname, inputs),
            _ => {
                return Err(self.err(
                    layer,
                    "has no `.fm` form (fm's layers: language.md section 5)".to_string(),
                ))
            }
        };
        if inputs.len() != 1 && !call.starts_with("concat") {
            return Err(self.err(
                layer,
                format!("takes {} inputs; fm's layer takes one", inputs.len()),
            ));
        }
        let weights = self.weights(sc, layer, roles.len())?;
        let params = roles
            .iter()
            .zip(weights)
            .map(|(r, t)| (format!("{}{lname}.{r}", sc.prefix), t))
            .collect();
        let var = sc.unique_var(&lname);
        sc.stmts.push(Stmt {
            var: var.clone(),
            inputs,
            call,
            layer: layer_name,
            params,
            act_at: None,
        });
        Ok(var)
    }
}

/// Every `keras_history` `[layer, node, index]` in a call's arguments, in order.
fn collect_history(v: &Value, out: &mut Vec<(String, u64, u64)>) {
    match v {
        Value::Object(o) => {
            if let Some(h) = o
                .get("config")
                .and_then(|c| c.get("keras_history"))
                .and_then(Value::as_array)
            {
                if let (Some(l), Some(n), Some(i)) = (
                    h.first().and_then(Value::as_str),
                    h.get(1).and_then(Value::as_u64),
                    h.get(2).and_then(Value::as_u64),
                ) {
                    out.push((l.to_string(), n, i));
                    return;
                }
            }
            for x in o.values() {
                collect_history(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_history(x, out)),
        _ => {}
    }
}

/// `output_layers`: `[name, node, index]` or a list of them.
fn collect_history_list(v: &Value, out: &mut Vec<(String, u64, u64)>) {
    if let Some(a) = v.as_array() {
        if let (Some(l), Some(n), Some(i)) = (
            a.first().and_then(Value::as_str),
            a.get(1).and_then(Value::as_u64),
            a.get(2).and_then(Value::as_u64),
        ) {
            out.push((l.to_string(), n, i));
        } else {
            a.iter().for_each(|x| collect_history_list(x, out));
        }
    }
}

/// The compile config as a `train` section (None when it names nothing fm has: the model still
/// imports, and the user writes the section).
fn train_section(c: &Value, model: &str) -> Option<String> {
    let loss = match c.get("loss")? {
        Value::String(s) => s.clone(),
        other => other
            .get("config")
            .and_then(|x| x.get("name"))
            .and_then(Value::as_str)?
            .to_string(),
    };
    let loss = match loss.as_str() {
        "sparse_categorical_crossentropy" | "categorical_crossentropy" | "binary_crossentropy" => {
            loss.clone()
        }
        "mse" | "mean_squared_error" => "mse".into(),
        "mae" | "mean_absolute_error" => "mae".into(),
        "huber" | "huber_loss" => "huber".into(),
        _ => return None,
    };
    let opt = c.get("optimizer")?;
    let class = opt
        .get("class_name")
        .and_then(Value::as_str)
        .or_else(|| opt.as_str())?;
    let oc = opt.get("config").cloned().unwrap_or(Value::Null);
    let f = |k: &str| oc.get(k).and_then(Value::as_f64);
    let mut args = Vec::new();
    if let Some(lr) = f("learning_rate") {
        args.push(format!("lr: {}", fmt_float(lr as f32)));
    }
    let name = match class.to_ascii_lowercase().as_str() {
        "adam" | "adamw" => {
            for (k, fk) in [
                ("beta_1", "beta1"),
                ("beta_2", "beta2"),
                ("epsilon", "epsilon"),
            ] {
                if let Some(v) = f(k) {
                    args.push(format!("{fk}: {}", fmt_float(v as f32)));
                }
            }
            if class.eq_ignore_ascii_case("adamw") {
                "AdamW"
            } else {
                "Adam"
            }
        }
        "sgd" => {
            if let Some(m) = f("momentum") {
                args.push(format!("momentum: {}", fmt_float(m as f32)));
            }
            if oc.get("nesterov").and_then(Value::as_bool) == Some(true) {
                args.push("nesterov: true".into());
            }
            "SGD"
        }
        "rmsprop" => {
            for k in ["rho", "momentum", "epsilon"] {
                if let Some(v) = f(k) {
                    args.push(format!("{k}: {}", fmt_float(v as f32)));
                }
            }
            "RMSprop"
        }
        "adagrad" => {
            if let Some(v) = f("initial_accumulator_value") {
                args.push(format!("initial_accumulator: {}", fmt_float(v as f32)));
            }
            if let Some(v) = f("epsilon") {
                args.push(format!("epsilon: {}", fmt_float(v as f32)));
            }
            "Adagrad"
        }
        _ => return None,
    };
    if let Some(wd) = f("weight_decay") {
        args.push(format!("weight_decay: {}", fmt_float(wd as f32)));
    }
    for (k, fk) in [
        ("clipnorm", "clip_norm"),
        ("global_clipnorm", "global_clip_norm"),
        ("clipvalue", "clip_value"),
    ] {
        if let Some(v) = f(k) {
            args.push(format!("{fk}: {}", fmt_float(v as f32)));
        }
    }
    let mut metrics = Vec::new();
    let mut walk = vec![c.get("metrics").cloned().unwrap_or(Value::Null)];
    while let Some(m) = walk.pop() {
        match m {
            Value::String(s) if matches!(s.as_str(), "accuracy" | "acc" | "mse" | "mae") => {
                let s = if s == "acc" {
                    "accuracy".to_string()
                } else {
                    s
                };
                if !metrics.contains(&s) {
                    metrics.push(s);
                }
            }
            Value::Array(a) => walk.extend(a.into_iter().rev()),
            _ => {}
        }
    }
    let mut s = format!(
        "train {model} {{\n    loss: {loss}\n    optimizer: {name}({})\n",
        args.join(", ")
    );
    if !metrics.is_empty() {
        s.push_str(&format!("    metrics: [{}]\n", metrics.join(", ")));
    }
    s.push_str("}\n");
    Some(s)
}
