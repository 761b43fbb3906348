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

/// One `let` statement: `var = inputs -> call` with an optional layer name and its weights.
#[derive(Clone, Debug)]
pub struct Stmt {
    pub var: String,
    pub inputs: Vec<String>,
    /// `Dense(10)`, `relu`, `concat(axis: 0)`, or `+`, `-`, `*` for arithmetic on two inputs.
    pub call: String,
    pub layer: Option<String>,
    /// Full tensor names (`LAYER.role`) and values.
    pub params: Vec<(String, Tensor)>,
    /// Where in `call` an activation argument goes (`Dense(10` | `)`), for layers that take one
    /// and have none yet.
    pub act_at: Option<usize>,
}

impl Stmt {
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
            name: onnx::sanitize(name),
            header: Vec::new(),
            inputs: Vec::new(),
            stmts: Vec::new(),
            outputs: Vec::new(),
            input_perms: Vec::new(),
            output_layouts: Vec::new(),
        }
    }

    /// A variable name not used yet.
    pub fn unique_var(&self, base: &str, used: &mut HashSet<String>) -> String {
        let mut name = base.to_string();
        let mut k = 1;
        while !used.insert(name.clone()) {
            name = format!("{base}_{k}");
            k += 1;
        }
        name
    }

    /// The `.fm` text (unformatted) and the weights.
    fn render(&self) -> (String, Vec<(String, Tensor)>) {
        let mut s = String::new();
        for h in &self.header {
            s.push_str(&format!("// {h}\n"));
        }
        s.push_str(&format!("model {} {{\n", self.name));
        for (name, dtype, shape) in &self.inputs {
            let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            s.push_str(&format!("    input {name}: {dtype}[{}]\n", dims.join(", ")));
        }
        let mut tensors = Vec::new();
        for st in &self.stmts {
            let expr = match st.call.as_str() {
                "+" | "-" | "*" => format!("{} {} {}", st.inputs[0], st.call, st.inputs[1]),
                call => {
                    let named = |c: &str| match &st.layer {
                        Some(l) => with_arg(c, &format!("name: \"{l}\"")),
                        None => c.to_string(),
                    };
                    if st.inputs.len() == 1 {
                        format!("{} -> {}", st.inputs[0], named(call))
                    } else {
                        let mut c = named(call);
                        // Tensor inputs go first: `concat(a, b, axis: 0)`.
                        let ins = st.inputs.join(", ");
                        c = match c.find('(') {
                            Some(p) if c.ends_with("()") => format!("{}{ins})", &c[..=p]),
                            Some(p) => format!("{}{ins}, {}", &c[..=p], &c[p + 1..]),
                            None => format!("{c}({ins})"),
                        };
                        c
                    }
                }
            };
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
            s.push_str(&format!("    {keyword} {} = {expr}\n", st.var));
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

/// Checks an imported model with fm's own checker: an import that does not check is fm's bug,
/// reported as E0412 with the checker's messages rather than written.
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
                "the generated `.fm` does not check ({}); this is a bug in fmc import:\n{}",
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
