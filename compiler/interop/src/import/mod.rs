//! `fmc import`: another framework's model as a formatted `.fm` file plus safetensors weights in
//! fm's layout (language.md section 7). Each format is its own module ([`onnx`]); they build a
//! [`Model`] (inputs, one `let` per layer or function, outputs), which is rendered, formatted
//! with fm's formatter and checked with fm's checker before anything is written.

mod hdf5;
pub mod keras;
pub mod onnx;

use crate::error::InteropError;
use fm_codes::E0412;
use fm_runtime::tensor::Tensor;
use std::collections::HashSet;
use std::path::Path;

/// The result of an import.
#[derive(Debug)]
pub struct Imported {
    /// The formatted `.fm` source.
    pub source: String,
    /// The weights, named as language.md section 7 says (`conv1.kernel`).
    pub tensors: Vec<(String, Tensor)>,
    /// For each input, in order: its name in the source model and how to bring that model's
    /// data into fm's layout: fm axis `a` (batch first) is the source's axis `perm[a]`.
    pub inputs: Vec<(String, Vec<usize>)>,
    /// For each output: for every axis of the source's output, the fm axis it is (`None`: a
    /// size-1 axis fm's output does not have). Identity for channels-last outputs.
    pub outputs: Vec<Vec<Option<usize>>>,
}

/// A block made from a nested model: `block NAME(params) { stmts; return ret }`.
#[derive(Clone, Debug)]
pub struct Block {
    pub name: String,
    pub params: Vec<String>,
    pub stmts: Vec<Stmt>,
    pub ret: String,
}

/// One `let` statement: `var = inputs -> call` with an optional layer name and its weights.
#[derive(Clone, Debug)]
pub struct Stmt {
    pub var: String,
    pub inputs: Vec<String>,
    /// `Dense(10)`, `relu`, `concat(axis: 0)`, a block, a named call running again (`shared`),
    /// or `+`, `-`, `*`, `/` for arithmetic on two inputs.
    pub call: String,
    pub layer: Option<String>,
    /// Full tensor names (`LAYER.role`) and values.
    pub params: Vec<(String, Tensor)>,
    /// Where in `call` an activation argument goes (`Dense(10` | `)`), for layers that take one
    /// and have none yet.
    pub act_at: Option<usize>,
}

impl Stmt {
    /// The right-hand side: `a + b`, `x -> Dense(10, name: "fc")`, `concat(a, b, axis: 0)`.
    fn expr(&self) -> String {
        match self.call.as_str() {
            "+" | "-" | "*" | "/" => {
                format!("{} {} {}", self.inputs[0], self.call, self.inputs[1])
            }
            call => {
                let named = |c: &str| match &self.layer {
                    Some(l) => with_arg(c, &format!("name: \"{l}\"")),
                    None => c.to_string(),
                };
                if self.inputs.len() == 1 {
                    format!("{} -> {}", self.inputs[0], named(call))
                } else {
                    // Tensor inputs go first: `concat(a, b, axis: 0)`.
                    let c = named(call);
                    let ins = self.inputs.join(", ");
                    match c.find('(') {
                        Some(p) if c.ends_with("()") => format!("{}{ins})", &c[..=p]),
                        Some(p) => format!("{}{ins}, {}", &c[..=p], &c[p + 1..]),
                        None => format!("{c}({ins})"),
                    }
                }
            }
        }
    }

    /// Folds a following activation into the layer: `Dense(10)` -> `Dense(10, relu)`.
    pub fn fold_activation(&mut self, act: &str) -> bool {
        match self.act_at.take() {
            Some(at) => {
                self.call.insert_str(at, &format!(", {act}"));
                true
            }
            None => false,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Model {
    pub name: String,
    /// Comment lines for the top of the file.
    pub header: Vec<String>,
    /// The file uses language 0.2 (named calls running again).
    pub version_02: bool,
    pub blocks: Vec<Block>,
    /// (name, dtype, per-sample shape).
    pub inputs: Vec<(String, String, Vec<usize>)>,
    pub stmts: Vec<Stmt>,
    /// (output name, var).
    pub outputs: Vec<(String, String)>,
    /// See [`Imported::inputs`].
    pub input_perms: Vec<(String, Vec<usize>)>,
    /// See [`Imported::outputs`].
    pub output_layouts: Vec<Vec<Option<usize>>>,
}

impl Model {
    pub fn new(name: &str) -> Self {
        Model {
            name: sanitize(name),
            header: Vec::new(),
            version_02: false,
            blocks: Vec::new(),
            inputs: Vec::new(),
            stmts: Vec::new(),
            outputs: Vec::new(),
            input_perms: Vec::new(),
            output_layouts: Vec::new(),
        }
    }

    /// The `.fm` text (unformatted) and the weights.
    fn render(&self) -> (String, Vec<(String, Tensor)>) {
        let mut s = String::new();
        for h in &self.header {
            s.push_str(&format!("// {h}\n"));
        }
        if self.version_02 {
            s.push_str("version 0.2\n");
        }
        let mut tensors = Vec::new();
        for b in &self.blocks {
            s.push_str(&format!("block {}({}) {{\n", b.name, b.params.join(", ")));
            for st in &b.stmts {
                s.push_str(&format!("    let {} = {}\n", st.var, st.expr()));
                tensors.extend(st.params.iter().cloned());
            }
            s.push_str(&format!("    return {}\n}}\n", b.ret));
        }
        s.push_str(&format!("model {} {{\n", self.name));
        for (name, dtype, shape) in &self.inputs {
            let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            s.push_str(&format!("    input {name}: {dtype}[{}]\n", dims.join(", ")));
        }
        for st in &self.stmts {
            // An output named like the statement that computes it is declared in its place.
            let keyword = if self
                .outputs
                .iter()
                .any(|(n, v)| n == &st.var && v == &st.var)
            {
                "output"
            } else {
                "let"
            };
            s.push_str(&format!("    {keyword} {} = {}\n", st.var, st.expr()));
            tensors.extend(st.params.iter().cloned());
        }
        for (name, var) in &self.outputs {
            if name != var || !self.stmts.iter().any(|st| &st.var == var) {
                s.push_str(&format!("    output {name} = {var}\n"));
            }
        }
        s.push_str("}\n");
        (s, tensors)
    }

    /// Renders, formats and checks the model.
    pub fn finish(&self) -> Imported {
        let (text, tensors) = self.render();
        let (ast, syntax) = fm_grammar::parse(&text);
        let source = if syntax.is_empty() {
            fm_grammar::fmt::format(&ast, &text)
        } else {
            text
        };
        Imported {
            source,
            tensors,
            inputs: self.input_perms.clone(),
            outputs: self.output_layouts.clone(),
        }
    }
}

/// `base`, or `base_1`, `base_2`, ...: the first not in `used` (which then holds it).
pub fn unique_name(base: &str, used: &mut HashSet<String>) -> String {
    let mut name = base.to_string();
    let mut k = 1;
    while !used.insert(name.clone()) {
        name = format!("{base}_{k}");
        k += 1;
    }
    name
}

/// A valid fm identifier from an ONNX or Keras name.
pub fn sanitize(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    s = s.trim_matches('_').to_string();
    while s.contains("__") {
        s = s.replace("__", "_");
    }
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s = format!("v{s}");
    }
    const KEYWORDS: &[&str] = &[
        "model", "block", "data", "train", "input", "let", "output", "return", "repeat", "version",
        "true", "false", "target", "step",
    ];
    if KEYWORDS.contains(&s.as_str()) {
        s.push('_');
    }
    s
}

/// An fm int-or-list argument: `3` when every entry is 3, else `[3, 1]`.
pub fn int_list(v: &[usize]) -> String {
    if v.iter().all(|&x| x == v[0]) {
        v[0].to_string()
    } else {
        let items: Vec<String> = v.iter().map(|x| x.to_string()).collect();
        format!("[{}]", items.join(", "))
    }
}

/// Appends `arg` to a call's arguments: `Dense(10)` -> `Dense(10, name: "fc")`, `Flatten` ->
/// `Flatten(name: "f")`.
fn with_arg(call: &str, arg: &str) -> String {
    match call.strip_suffix(')') {
        Some(head) if head.ends_with('(') => format!("{head}{arg})"),
        Some(head) => format!("{head}, {arg})"),
        None => format!("{call}({arg})"),
    }
}

/// An f32 attribute as the shortest decimal that reads back as the same f32 (`1e-5`, not
/// `9.999999747378752e-6`).
pub fn fmt_float(v: f32) -> String {
    format!("{v:?}")
}

/// Checks an imported model with fm's own checker: an import that does not check (a setting
/// out of fm's range, such as `units` of 10^12, or a bug of the importer) is reported as E0412
/// with the checker's messages rather than written.
pub fn check(imported: &Imported, file: &str) -> Result<(), InteropError> {
    let checked = fm_compiler::check::check_source_with(
        &imported.source,
        Path::new("imported.fm"),
        &Default::default(),
    );
    if checked.has_errors() {
        let msgs: Vec<String> = checked
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.message.clone())
            .collect();
        return Err(InteropError::new(
            E0412,
            file,
            None,
            format!(
                "the imported model does not check ({}): the file holds a setting fm refuses, or fmc import has a bug; the generated `.fm`:\n{}",
                msgs.join("; "),
                imported.source
            ),
        ));
    }
    // The weights read from the file must be the ones the model needs, with its shapes (a
    // weights file of another model, or a dataset of the wrong shape, is caught here).
    if let (false, Some(g)) = (imported.tensors.is_empty(), checked.models.first()) {
        let expected: Vec<(String, Vec<usize>)> = g
            .params
            .iter()
            .map(|p| (p.name.clone(), p.shape.clone()))
            .collect();
        fm_runtime::weights::check_tensors(Path::new(file), &imported.tensors, &expected).map_err(
            |e| {
                InteropError::new(
                    fm_codes::E0402,
                    file,
                    None,
                    format!("the weights do not fit the imported model: {}", e.message),
                )
            },
        )?;
    }
    Ok(())
}
