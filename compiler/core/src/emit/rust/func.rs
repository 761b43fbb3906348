//! One IR function as a Rust function over slices, following the core's kernel plan.
//!
//! The function arrives through the backend passes the JIT runs (`split_sums`, `split_concats`, `fuse`,
//! whose plan is `Function::kernels`): each planned kernel becomes one statement or loop, in
//! plan order. A fused elementwise group becomes one loop over its element count whose body
//! computes every member in a local (`let e5 = x[i] + b[i % 128]; *out = ops::max(e5, 0.0);`),
//! so its intermediates never reach memory, as in the JIT. The function has no early return
//! (kernels record errors in the `Ctx`), which keeps it cheap to compile. Every value gets one
//! of four representations:
//! - a scalar (`f32` local or literal) when it has exactly one element,
//! - a splat (a scalar broadcast to a shape), materialised only where a kernel needs it,
//! - a fused group member: a local inside its group's loop, nothing outside it,
//! - a buffer: a slice of the workspace, of a result, of a parameter or of the data.
//!
//! Memory is planned as the JIT plans its arena (liveness-based reuse, an output never
//! sharing memory with an input of its own kernel): each materialized value is a slice of one
//! of the function's workspace buffers (`ws3`), chosen once no later statement reads the
//! value that had it before; the runtime keeps the workspace between calls, so a step
//! allocates nothing. Each workspace buffer is its own `Vec` (not one byte arena with offsets)
//! so that the generated code borrows disjoint buffers in safe Rust and rustc's borrow checker
//! verifies the plan. The loss and the outputs are written straight into the caller's result
//! buffers, and a parameter's or optimizer slot's update is written over the old value in its
//! loop when nothing reads the old value afterwards (Adam's `m`, `v` and the weights).
//!
//! Reshapes are free (buffers are row-major); a broadcast that only fused loops read (the plan's
//! broadcast views) is read in place (`b[i % 128]`) rather than copied; sums over the last axis
//! add in the interpreter's (and the JIT's) order; GEMM, convolution and pooling call
//! `fm::compiled::ops`, which calls the runtime kernels the JIT uses, and a kernel with an
//! epilogue (a convolution's bias and ReLU, a ReLU's backward through a max pool) is one call
//! of the same fused runtime kernel the JIT calls.

use super::Notes;
use crate::ir::*;
use fm_runtime::tensor::DType;
use std::fmt::Write;

/// For each value, the layer it is the output of: the last instruction of each layer's forward
/// computation, when the layer has a name.
fn layer_outputs(f: &Function, notes: &Notes) -> Vec<Option<String>> {
    let mut last = std::collections::HashMap::new();
    for (v, inst) in f.insts.iter().enumerate() {
        if let Origin::Node(n) = inst.origin {
            if !matches!(inst.op, Op::Arg { .. } | Op::Const { .. }) {
                last.insert(n, v);
            }
        }
    }
    let mut out = vec![None; f.insts.len()];
    for (n, v) in last {
        if let Some(Some(name)) = notes.idents.get(n) {
            out[v] = Some(name.clone());
        }
    }
    out
}

#[derive(Clone, Debug)]
enum Repr {
    /// A one-element value: a Rust `f32` expression (local name or literal).
    Scalar(String),
    /// Every element equals this scalar expression.
    Splat(String),
    /// A member of a fused group: the local `e{v}` inside the group's loop.
    Member(String),
    /// A buffer with this local name (a slice, or a `Vec` of the state).
    Buffer { name: String },
    /// Element `i` is `name[i % modulo]` or `name[i / div]`: a broadcast read in place.
    Strided {
        name: String,
        modulo: usize,
        div: usize,
    },
}

/// The length of a value of `shape` as a Rust expression in `n` (the batch size).
pub fn len_expr(shape: &[Dim]) -> String {
    let mut fixed = 1usize;
    let mut batch = None;
    for d in shape {
        match d {
            Dim::Batch(k) => batch = Some(batch.unwrap_or(1) * k),
            Dim::Fixed(x) => fixed *= x,
        }
    }
    match batch {
        None => fixed.to_string(),
        Some(k) if k * fixed == 1 => "n".into(),
        Some(k) => format!("n * {}", k * fixed),
    }
}

/// The dims of `shape` as a Rust array expression.
pub fn dims_expr(shape: &[Dim]) -> String {
    let parts: Vec<String> = shape.iter().map(dim_expr).collect();
    format!("[{}]", parts.join(", "))
}

fn dim_expr(d: &Dim) -> String {
    match d {
        Dim::Batch(1) => "n".into(),
        Dim::Batch(k) => format!("{k} * n"),
        Dim::Fixed(x) => x.to_string(),
    }
}

/// Statically known to hold exactly one element.
fn is_unit(shape: &[Dim]) -> bool {
    shape.iter().all(|d| *d == Dim::Fixed(1))
}

/// An f32 literal that reads back to exactly `value as f32`.
pub fn f32_lit(value: f64) -> String {
    let v = value as f32;
    if v.is_nan() {
        "f32::NAN".into()
    } else if v == f32::INFINITY {
        "f32::INFINITY".into()
    } else if v == f32::NEG_INFINITY {
        "f32::NEG_INFINITY".into()
    } else if v < 0.0 || (v == 0.0 && v.is_sign_negative()) {
        format!("(-{:?}f32)", -v)
    } else {
        format!("{v:?}f32")
    }
}

/// A Rust identifier from an IR name (`dense.kernel` -> `dense_kernel`).
pub fn ident(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    while s.contains("__") {
        s = s.replace("__", "_");
    }
    let s = s.trim_matches('_').to_lowercase();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) || is_keyword(&s) {
        format!("t_{s}")
    } else {
        s
    }
}

fn is_keyword(s: &str) -> bool {
    matches!(
        s,
        "as" | "break"
            | "const"
            | "continue"
            | "crate"
            | "else"
            | "enum"
            | "extern"
            | "false"
            | "fn"
            | "for"
            | "if"
            | "impl"
            | "in"
            | "let"
            | "loop"
            | "match"
            | "mod"
            | "move"
            | "mut"
            | "pub"
            | "ref"
            | "return"
            | "self"
            | "static"
            | "struct"
            | "super"
            | "trait"
            | "true"
            | "type"
            | "unsafe"
            | "use"
            | "where"
            | "while"
            | "async"
            | "await"
            | "dyn"
            | "abstract"
            | "become"
            | "box"
            | "do"
            | "final"
            | "macro"
            | "override"
            | "priv"
            | "typeof"
            | "unsized"
            | "virtual"
            | "yield"
            | "try"
            | "gen"
            | "n"
            | "ctx"
            | "args"
            | "ops"
    )
}

/// What an IR function argument is bound to in the generated function.
#[derive(Clone, Debug, PartialEq)]
pub enum Bind {
    /// `data[k]`: the inputs, then the targets.
    Data(usize),
    /// `params[p]`.
    Param(usize),
    /// `slots[k]` (an optimizer slot, index into `ModelDef::slots`).
    Slot(usize),
    LearningRate,
    /// The 1-based number of the step being taken.
    Step,
}

/// Where an IR function's results go.
#[derive(Clone, Debug, PartialEq)]
pub enum Dest {
    /// `out[j]`: the loss or an output.
    Out(usize),
    /// Parameter `p`, updated in place.
    Param(usize),
    /// Optimizer slot `k`, updated in place.
    Slot(usize),
}

/// How the generated function meets the runtime (`fm::compiled::FnDef`).
pub struct Frame {
    /// Per IR argument.
    pub binds: Vec<Bind>,
    /// Per IR result.
    pub dests: Vec<Dest>,
    pub params: usize,
    pub slots: usize,
    /// A train step: takes `params` and `slots` mutably.
    pub update: bool,
}

/// A generated function: its code and its workspace, `(per_sample, fixed)` element counts
/// per buffer.
pub struct Emitted {
    pub code: String,
    pub workspace: Vec<(usize, usize)>,
}

/// A workspace buffer's occupant: a value's slice.
struct Occupant {
    name: String,
    /// `(per_sample, fixed)` elements.
    size: (usize, usize),
    /// The line of `out` that binds it.
    line: usize,
}

struct Emitter<'a> {
    f: &'a Function,
    frame: &'a Frame,
    repr: Vec<Option<Repr>>,
    users: Vec<Vec<ValueId>>,
    is_result: Vec<bool>,
    out: String,
    notes: &'a Notes,
    last_note: Option<String>,
    /// Local names already used (arguments are unique by construction; values are `vN`).
    used_names: std::collections::HashSet<String>,
    /// Splats materialised for kernels (their elementwise users keep reading the scalar).
    splats: std::collections::HashMap<ValueId, String>,
    /// The local name of each value's buffer, once chosen.
    names: Vec<Option<String>>,
    /// Per value: the layer whose output it is (the last instruction of the layer's forward).
    layer_output: Vec<Option<String>>,
    /// Per member of a fused elementwise kernel of the plan: the kernel's root.
    group: Vec<Option<ValueId>>,
    /// Per root of a fused kernel: its members, ascending (the root last).
    members: Vec<Vec<ValueId>>,
    /// Per root of a kernel with an epilogue: its members (the head first) and the form.
    epilogues: Vec<Option<(Vec<ValueId>, crate::ir::kernels::Epilogue)>>,
    /// Per value: a member of a kernel with an epilogue.
    in_epilogue: Vec<bool>,
    /// Workspace occupants, in binding order (`__slot_K__` until planned).
    occupants: Vec<Occupant>,
    /// The local name of each state argument (`params` then `slots`), `_` when unused.
    state_names: Vec<String>,
    /// The local name of each `out` buffer.
    out_names: Vec<String>,
    /// Per value: the `out` buffer it is computed into directly.
    direct_out: Vec<Option<usize>>,
    /// Per value: the state argument (index into `state_names`) its loop overwrites in place.
    in_place: Vec<Option<usize>>,
    /// While a loop writes over this buffer: its reads of it become `*out`.
    writing_over: Option<String>,
}

/// Emits the generated function `name` for `f` (see the module docs for its signature).
pub fn emit_function(f: &Function, name: &str, notes: &Notes, frame: &Frame) -> Emitted {
    let mut users = vec![Vec::new(); f.insts.len()];
    for (v, inst) in f.insts.iter().enumerate() {
        for &a in &inst.args {
            users[a].push(v);
        }
    }
    let mut is_result = vec![false; f.insts.len()];
    for r in &f.results {
        is_result[r.value] = true;
    }
    // The plan of the backend passes (`passes::backend`); planned here if the caller did not.
    let plan = f
        .kernels
        .clone()
        .unwrap_or_else(|| crate::passes::fuse::plan(f));
    let views = crate::ir::kernels::broadcast_views(f);
    let mut epilogues = vec![None; f.insts.len()];
    let mut group = vec![None; f.insts.len()];
    let mut members = vec![Vec::new(); f.insts.len()];
    for k in &plan.kernels {
        let root = k.root();
        if !crate::ir::kernels::is_elementwise(f, root) {
            continue;
        }
        // A kernel with an epilogue (a convolution's bias and ReLU, a ReLU's backward after a
        // max pool) is one call of the fused runtime kernel the JIT calls, at its root.
        if crate::ir::kernels::head(f, k) != root {
            if let Some(e) = crate::ir::kernels::epilogue(f, &views, &k.members) {
                epilogues[root] = Some((k.members.clone(), e));
                continue;
            }
        }
        for &m in &k.members {
            group[m] = Some(root);
        }
        members[root] = k.members.clone();
    }
    let mut in_epilogue = vec![false; f.insts.len()];
    for (ms, _) in epilogues.iter().flatten() {
        for &m in ms {
            in_epilogue[m] = true;
        }
    }
    let mut e = Emitter {
        f,
        frame,
        repr: vec![None; f.insts.len()],
        users,
        is_result,
        out: String::new(),
        notes,
        last_note: None,
        used_names: Default::default(),
        splats: Default::default(),
        names: vec![None; f.insts.len()],
        layer_output: layer_outputs(f, notes),
        group,
        members,
        in_epilogue,
        epilogues,
        occupants: Vec::new(),
        state_names: Vec::new(),
        out_names: Vec::new(),
        direct_out: vec![None; f.insts.len()],
        in_place: vec![None; f.insts.len()],
        writing_over: None,
    };
    e.bind_frame();
    e.body();
    let (slot_of, workspace) = e.plan_workspace();
    let mut body = e.out.clone();
    // Longest ids first, so `__slot_1__` never matches inside `__slot_12__`.
    for (k, slot) in slot_of.iter().enumerate().rev() {
        body = body.replace(&format!("__slot_{k}__"), &format!("ws{slot}"));
    }
    let mut head = String::new();
    let state = if frame.update {
        "params: &mut [Vec<f32>], slots: &mut [Vec<f32>]"
    } else {
        "params: &[Vec<f32>]"
    };
    let _ = writeln!(
        head,
        "#[allow(unused_variables, unused_mut, clippy::all)] fn {name}(ctx: &Ctx, data: &[Arg<'_>], {state}, ws: &mut [Vec<f32>], out: &mut [Vec<f32>]) {{"
    );
    head.push_str("let n = ctx.batch;\n");
    let pattern = |names: &[String]| format!("[{}]", names.join(", "));
    let (p_names, s_names) = e.state_names.split_at(frame.params);
    let ws_names: Vec<String> = (0..workspace.len()).map(|k| format!("ws{k}")).collect();
    let mismatch = "else { return ctx.mismatch(); };";
    let _ = writeln!(head, "let {} = params {mismatch}", pattern(p_names));
    if frame.update {
        let _ = writeln!(head, "let {} = slots {mismatch}", pattern(s_names));
    }
    let _ = writeln!(head, "let {} = ws {mismatch}", pattern(&ws_names));
    let _ = writeln!(head, "let {} = out {mismatch}", pattern(&e.out_names));
    head.push_str(&body);
    head.push_str("}\n");
    Emitted {
        code: head,
        workspace,
    }
}

impl Emitter<'_> {
    fn note(&mut self, v: ValueId) {
        if let Some(text) = self.notes.for_value(self.f, v) {
            if self.last_note.as_deref() != Some(text.as_str()) {
                let _ = writeln!(self.out, "{}", super::comment(&text));
                self.last_note = Some(text);
            }
        }
    }

    fn repr(&self, v: ValueId) -> &Repr {
        self.repr[v].as_ref().expect("operands come first")
    }

    /// Element `i` of `v` inside a loop.
    fn elem(&self, v: ValueId) -> String {
        match self.repr(v) {
            Repr::Scalar(s) | Repr::Splat(s) => s.clone(),
            Repr::Member(e) => e.clone(),
            Repr::Buffer { name } if self.writing_over.as_ref() == Some(name) => "(*out)".into(),
            Repr::Buffer { name } => format!("{name}[i]"),
            Repr::Strided { name, modulo, div } => {
                if *modulo > 0 {
                    format!("{name}[i % {modulo}]")
                } else {
                    format!("{name}[i / {div}]")
                }
            }
        }
    }

    /// Buffers read by `elem(v)` (to re-slice before a loop).
    fn reads(&self, v: ValueId, acc: &mut Vec<(String, bool)>) {
        let new = |acc: &[(String, bool)], name: &String| !acc.iter().any(|(n, _)| n == name);
        match self.repr(v) {
            Repr::Buffer { name } if new(acc, name) && self.writing_over.as_ref() != Some(name) => {
                acc.push((name.clone(), true))
            }
            Repr::Strided { name, .. } if new(acc, name) => acc.push((name.clone(), false)),
            _ => {}
        }
    }

    /// A `&[f32]`-typed expression for `v`, materialising it if needed.
    fn slice(&mut self, v: ValueId) -> String {
        match self.repr(v).clone() {
            Repr::Scalar(s) => format!("&[{s}]"),
            Repr::Buffer { name } => format!("&{name}"),
            Repr::Splat(s) => {
                if let Some(name) = self.splats.get(&v) {
                    return format!("&{name}");
                }
                // Its own name: the scalar `s` (often named `vN` too) stays in use.
                let name = format!("splat_{v}");
                let shape = self.f.insts[v].shape.clone();
                let bind = self.alloc(&name, &shape);
                let _ = writeln!(self.out, "{bind} {name}.fill({s});");
                self.splats.insert(v, name.clone());
                format!("&{name}")
            }
            Repr::Strided { .. } => {
                let name = self.materialize(v);
                format!("&{name}")
            }
            Repr::Member(_) => unreachable!("a fused member is read only inside its group"),
        }
    }

    /// `let NAME = &mut __slot_K__[..LEN];`: a new occupant of the workspace for a value of
    /// `shape` (the slot is chosen by [`Emitter::plan_workspace`]).
    fn alloc(&mut self, name: &str, shape: &[Dim]) -> String {
        let mut size = (0, 1);
        for d in shape {
            match d {
                Dim::Batch(k) => size.0 = size.0.max(1) * k,
                Dim::Fixed(x) => {
                    size.0 *= x;
                    size.1 *= x;
                }
            }
        }
        if size.0 > 0 {
            size.1 = 0;
        }
        let k = self.occupants.len();
        self.occupants.push(Occupant {
            name: name.to_string(),
            size,
            line: self.out.lines().count(),
        });
        format!("let {name} = &mut __slot_{k}__[..{}];", len_expr(shape))
    }

    /// The binding of `v`'s buffer named `name`: a result buffer when `v` goes straight into
    /// one, else a new workspace occupant.
    fn bind_output(&mut self, v: ValueId, name: &str) -> String {
        match self.direct_out[v] {
            Some(j) => format!(
                "let {name} = &mut {}[..{}];",
                self.out_names[j],
                len_expr(&self.f.insts[v].shape)
            ),
            None => {
                let shape = self.f.insts[v].shape.clone();
                self.alloc(name, &shape)
            }
        }
    }

    /// Writes the loop computing `v` into a new buffer; returns its name.
    fn materialize(&mut self, v: ValueId) -> String {
        let name = self.buffer_name(v);
        let shape = self.f.insts[v].shape.clone();
        match self.repr(v).clone() {
            Repr::Splat(s) | Repr::Scalar(s) => {
                let bind = self.alloc(&name, &shape);
                let _ = writeln!(self.out, "{bind} {name}.fill({s});");
            }
            Repr::Buffer { name } => return name,
            Repr::Strided { .. } => {
                let mut reads = Vec::new();
                self.reads(v, &mut reads);
                let body = self.elem(v);
                let bind = self.alloc(&name, &shape);
                self.write_loop(&bind, &name, &len_expr(&shape), &reads, &[], &body);
            }
            Repr::Member(_) => unreachable!("a fused member is read only inside its group"),
        }
        self.repr[v] = Some(Repr::Buffer { name: name.clone() });
        name
    }

    /// `bind` (the binding of buffer `name`, if new) and one loop filling it: `lets` (a fused
    /// group's members, in order) then `*out = body`.
    fn write_loop(
        &mut self,
        bind: &str,
        name: &str,
        len: &str,
        reads: &[(String, bool)],
        lets: &[String],
        body: &str,
    ) {
        if !bind.is_empty() {
            let _ = writeln!(self.out, "{bind}");
        }
        let full: Vec<&String> = reads.iter().filter(|r| r.1).map(|r| &r.0).collect();
        self.out.push_str("{\n");
        // Every slice re-sliced to the loop's length, so the compiler drops the bounds checks
        // and vectorizes the loop.
        for r in &full {
            let _ = writeln!(self.out, "let {r} = &{r}[..{len}];");
        }
        let _ = writeln!(
            self.out,
            "for (i, out) in {name}[..{len}].iter_mut().enumerate() {{"
        );
        for l in lets {
            let _ = writeln!(self.out, "{l}");
        }
        let _ = writeln!(self.out, "*out = {body}; }}");
        self.out.push_str("}\n");
    }

    /// Names the state arguments and the result buffers, binds the IR arguments, and decides
    /// which results go straight into their destination.
    fn bind_frame(&mut self) {
        let f = self.f;
        let frame = self.frame;
        self.state_names = vec!["_".to_string(); frame.params + frame.slots];
        for a in &f.args {
            self.used_names.insert(ident(&a.name));
        }
        let mut arg_value = vec![None; f.args.len()];
        for (v, inst) in f.insts.iter().enumerate() {
            if let Op::Arg { index } = inst.op {
                arg_value[index] = Some(v);
            }
        }
        for (index, bind) in frame.binds.iter().enumerate() {
            let state = match bind {
                Bind::Param(p) => *p,
                Bind::Slot(k) => frame.params + k,
                _ => continue,
            };
            if arg_value[index].is_some() {
                self.state_names[state] = ident(&f.args[index].name);
            }
        }
        // Result buffers: named after the result.
        let mut out_names = Vec::new();
        for (r, dest) in f.results.iter().zip(&frame.dests) {
            if let Dest::Out(_) = dest {
                out_names.push(self.fresh(&format!("{}_out", r.name)));
            }
        }
        self.out_names = out_names;
        // A loss or output computed by a kernel of its own is computed into its result buffer.
        let mut taken = vec![false; f.insts.len()];
        for (r, dest) in f.results.iter().zip(&frame.dests) {
            if let Dest::Out(j) = dest {
                let v = r.value;
                let own_kernel = !matches!(
                    f.insts[v].op,
                    Op::Arg { .. } | Op::Const { .. } | Op::BatchSize | Op::Reshape { .. }
                ) && !is_unit(&f.insts[v].shape)
                    && !matches!(f.insts[v].op, Op::Broadcast { .. });
                if own_kernel && !taken[v] {
                    taken[v] = true;
                    self.direct_out[v] = Some(*j);
                }
            }
        }
        // A state update whose loop may write over the old value: the only reads of the old
        // value (through reshapes) are elementwise reads in that same loop, or come earlier.
        let position = |u: ValueId| -> ValueId {
            if self.in_epilogue[u] {
                // The root of the epilogue kernel holding `u`.
                (u..f.insts.len())
                    .find(|&r| {
                        self.epilogues[r]
                            .as_ref()
                            .is_some_and(|(m, _)| m.contains(&u))
                    })
                    .unwrap_or(u)
            } else {
                self.group[u].unwrap_or(u)
            }
        };
        let result_values: Vec<ValueId> = f.results.iter().map(|r| r.value).collect();
        for (r, dest) in f.results.iter().zip(&frame.dests) {
            let state = match dest {
                Dest::Param(p) => *p,
                Dest::Slot(k) => frame.params + k,
                Dest::Out(_) => continue,
            };
            let v = r.value;
            let Some(index) = frame.binds.iter().position(|b| match b {
                Bind::Param(p) => state == *p,
                Bind::Slot(k) => state == frame.params + k,
                _ => false,
            }) else {
                continue;
            };
            let Some(arg) = arg_value[index] else {
                continue;
            };
            if self.group[v] != Some(v)
                || f.insts[v]
                    .shape
                    .iter()
                    .map(|d| d.fixed())
                    .product::<Option<usize>>()
                    != f.insts[arg]
                        .shape
                        .iter()
                        .map(|d| d.fixed())
                        .product::<Option<usize>>()
                || is_unit(&f.insts[v].shape)
                || self.direct_out[v].is_some()
                || self.in_place[v].is_some()
            {
                continue;
            }
            // The old value and its reshapes (the same buffer).
            let mut aliases = vec![arg];
            let mut k = 0;
            while k < aliases.len() {
                for &u in &self.users[aliases[k]] {
                    if matches!(f.insts[u].op, Op::Reshape { .. }) {
                        aliases.push(u);
                    }
                }
                k += 1;
            }
            let ok = aliases.iter().all(|&a| {
                !result_values.contains(&a)
                    && self.users[a].iter().all(|&u| {
                        if aliases.contains(&u) {
                            return true;
                        }
                        let at = position(u);
                        at < v
                            || (at == v
                                && self.group[u] == Some(v)
                                && !matches!(f.insts[u].op, Op::Broadcast { .. }))
                    })
            });
            if ok {
                self.in_place[v] = Some(state);
            }
        }
    }

    /// Assigns each workspace occupant a buffer: one no longer read (its occupants' last use on
    /// an earlier line than the new binding), the best fit at batch 128, else a new one.
    /// Returns each occupant's buffer and the buffers' sizes.
    fn plan_workspace(&self) -> (Vec<usize>, Vec<(usize, usize)>) {
        let mut last: std::collections::HashMap<&str, usize> = Default::default();
        for (line, text) in self.out.lines().enumerate() {
            if text.trim_start().starts_with(super::COMMENT_MARKER) {
                continue;
            }
            for token in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if !token.is_empty() {
                    last.insert(token, line);
                }
            }
        }
        let at = |s: (usize, usize)| s.0 * 128 + s.1;
        let mut slots: Vec<(usize, usize)> = Vec::new();
        // Per buffer: the line after which it is free.
        let mut busy_until: Vec<usize> = Vec::new();
        let mut slot_of = Vec::new();
        for o in &self.occupants {
            let end = last.get(o.name.as_str()).copied().unwrap_or(o.line);
            let best = (0..slots.len())
                .filter(|&k| busy_until[k] < o.line)
                .min_by_key(|&k| {
                    let grown = (slots[k].0.max(o.size.0), slots[k].1.max(o.size.1));
                    // Growth first, then the waste.
                    (at(grown) - at(slots[k]), at(grown) - at(o.size))
                });
            let k = match best {
                Some(k) => {
                    slots[k] = (slots[k].0.max(o.size.0), slots[k].1.max(o.size.1));
                    k
                }
                None => {
                    slots.push(o.size);
                    busy_until.push(0);
                    slots.len() - 1
                }
            };
            busy_until[k] = end;
            slot_of.push(k);
        }
        (slot_of, slots)
    }

    fn body(&mut self) {
        for v in 0..self.f.insts.len() {
            self.inst(v);
        }
        let f = self.f;
        let comment: Vec<String> = f.results.iter().map(|r| r.name.clone()).collect();
        // Results from the state first: they read values that other results may overwrite.
        let mut order: Vec<usize> = (0..f.results.len()).collect();
        order.sort_by_key(|&k| !self.is_state_read(f.results[k].value));
        for k in order {
            let r = &f.results[k];
            let dest = match &self.frame.dests[k] {
                Dest::Out(j) => self.out_names[*j].clone(),
                Dest::Param(p) => self.state_names[*p].clone(),
                Dest::Slot(s) => self.state_names[self.frame.params + s].clone(),
            };
            if dest == "_" {
                continue;
            }
            match self.repr(r.value).clone() {
                Repr::Scalar(s) => {
                    let _ = writeln!(self.out, "{dest}[0] = {s};");
                }
                Repr::Splat(s) => {
                    let _ = writeln!(self.out, "{dest}.fill({s});");
                }
                Repr::Buffer { name } if name == dest => {}
                Repr::Buffer { name }
                    if self.direct_out[r.value].is_some() && {
                        let j = self.direct_out[r.value];
                        matches!(self.frame.dests[k], Dest::Out(x) if Some(x) == j)
                    } =>
                {
                    let _ = name;
                }
                _ => {
                    let src = self.slice(r.value);
                    let _ = writeln!(self.out, "ops::copy({src}, {dest});");
                }
            }
        }
        let _ = writeln!(
            self.out,
            "{}",
            super::comment(&format!("results: {}", comment.join(", ")))
        );
    }

    /// Whether `v` is read from a state argument (its buffer is a parameter's or a slot's).
    fn is_state_read(&self, v: ValueId) -> bool {
        matches!(self.repr(v), Repr::Buffer { name } if self.state_names.contains(name))
    }

    /// The name of `v`'s buffer: the layer's name for a layer's output (`dense_1`), else `vN`.
    fn buffer_name(&mut self, v: ValueId) -> String {
        if let Some(n) = &self.names[v] {
            return n.clone();
        }
        let name = match self.layer_output[v].clone() {
            Some(layer) => self.fresh(&layer),
            None => format!("v{v}"),
        };
        self.names[v] = Some(name.clone());
        name
    }

    fn fresh(&mut self, base: &str) -> String {
        let mut name = ident(base);
        let mut k = 1;
        while !self.used_names.insert(name.clone()) {
            k += 1;
            name = format!("{}_{k}", ident(base));
        }
        name
    }

    fn inst(&mut self, v: ValueId) {
        let inst = &self.f.insts[v];
        let shape = inst.shape.clone();
        let name = self.buffer_name(v);
        let inst = &self.f.insts[v];
        let a = inst.args.clone();
        let unit = is_unit(&shape) && inst.dtype == DType::F32;
        let repr = match &inst.op {
            Op::Arg { index } => {
                let arg = &self.f.args[*index];
                let (local, access) = match self.frame.binds[*index] {
                    Bind::LearningRate => {
                        let _ = writeln!(self.out, "let {} = ctx.lr;", ident(&arg.name));
                        return self.set(v, Repr::Scalar(ident(&arg.name)));
                    }
                    Bind::Step => {
                        let _ = writeln!(
                            self.out,
                            "let {} = (ctx.step + 1) as f32;",
                            ident(&arg.name)
                        );
                        return self.set(v, Repr::Scalar(ident(&arg.name)));
                    }
                    Bind::Param(p) => (self.state_names[p].clone(), None),
                    Bind::Slot(k) => (self.state_names[self.frame.params + k].clone(), None),
                    Bind::Data(k) => {
                        let access = match arg.dtype {
                            DType::F32 => "f32",
                            DType::I32 => "i32",
                        };
                        (ident(&arg.name), Some(format!("data[{k}].{access}()")))
                    }
                };
                if let Some(access) = access {
                    let _ = writeln!(self.out, "let {local} = {access};");
                }
                if unit {
                    Repr::Scalar(format!("{local}[0]"))
                } else {
                    Repr::Buffer { name: local }
                }
            }
            Op::Const { value } => Repr::Scalar(f32_lit(*value)),
            Op::BatchSize => Repr::Scalar("(n as f32)".into()),
            _ if self.in_epilogue(v) => {
                if self.epilogues[v].is_none() {
                    // Computed by its kernel's call, at the root.
                    return self.set(v, Repr::Member(format!("e{v}")));
                }
                self.note(v);
                let call = self.epilogue_call(v, &name);
                let bind = self.bind_output(v, &name);
                let _ = writeln!(self.out, "{bind} {call};");
                Repr::Buffer { name }
            }
            _ if self.group[v].is_some() => {
                let root = self.group[v].unwrap_or(v);
                if root != v {
                    // Computed in its group's loop, at the root.
                    return self.set(v, Repr::Member(format!("e{v}")));
                }
                self.fused_group(v)
            }
            Op::Reshape { .. } => match self.repr(a[0]).clone() {
                Repr::Strided { .. } => Repr::Buffer {
                    name: self.materialize(a[0]),
                },
                Repr::Scalar(s) if !unit => Repr::Splat(s),
                r => r,
            },
            Op::Broadcast { .. } => {
                let in_shape = self.f.insts[a[0]].shape.clone();
                match self.repr(a[0]).clone() {
                    Repr::Scalar(s) | Repr::Splat(s) => {
                        if unit {
                            Repr::Scalar(s)
                        } else {
                            Repr::Splat(s)
                        }
                    }
                    _ => {
                        let view = self.strided(a[0], &in_shape, &shape).filter(|_| {
                            self.users[v]
                                .iter()
                                .all(|&u| self.group[u].is_some() || self.in_epilogue[u])
                                && !self.is_result[v]
                        });
                        match view {
                            Some(r) => r,
                            None => {
                                self.note(v);
                                let src = self.slice(a[0]);
                                let bind = self.bind_output(v, &name);
                                let _ = writeln!(
                                    self.out,
                                    "{bind} ops::broadcast({src}, &{}, &{}, {name});",
                                    dims_expr(&in_shape),
                                    dims_expr(&shape)
                                );
                                Repr::Buffer { name }
                            }
                        }
                    }
                }
            }
            Op::Bucketize { edges } => {
                // Categorical sampling (language.md 9.2): i32 indices, in a buffer of their own
                // (the workspace holds f32 values).
                self.note(v);
                let x = self.slice(a[0]);
                let edges: Vec<String> = edges.iter().map(|&e| f32_lit(e as f64)).collect();
                let _ = writeln!(
                    self.out,
                    "let mut {name} = vec![0i32; {}]; ops::bucketize(&[{}], {x}, &mut {name});",
                    len_expr(&shape),
                    edges.join(", ")
                );
                Repr::Buffer { name }
            }
            op => {
                self.note(v);
                if unit {
                    let call = self.kernel_call(op, &a, &shape, &format!("&mut {name}"));
                    let _ = writeln!(
                        self.out,
                        "let mut {name} = [0.0f32; 1]; {call}; let {name} = {name}[0];"
                    );
                    Repr::Scalar(name)
                } else {
                    let call = self.kernel_call(op, &a, &shape, &name);
                    let bind = self.bind_output(v, &name);
                    let _ = writeln!(self.out, "{bind} {call};");
                    Repr::Buffer { name }
                }
            }
        };
        self.set(v, repr);
    }

    fn set(&mut self, v: ValueId, r: Repr) {
        self.repr[v] = Some(r);
    }

    /// The loop (or scalar statements) computing the fused group whose root is `root`.
    fn fused_group(&mut self, root: ValueId) -> Repr {
        let members = self.members[root].clone();
        let inside = |x: ValueId| members.contains(&x);
        // Operands from outside the group, and whether they are all one value repeated.
        let mut outer: Vec<ValueId> = Vec::new();
        for &m in &members {
            for &x in &self.f.insts[m].args {
                if !inside(x) && !outer.contains(&x) {
                    outer.push(x);
                }
            }
        }
        let uniform = outer
            .iter()
            .all(|&x| matches!(self.repr(x), Repr::Scalar(_) | Repr::Splat(_)));
        let shape = self.f.insts[root].shape.clone();
        let unit = is_unit(&shape);
        self.note(root);
        let name = self.buffer_name(root);
        // What each member is called inside the group: `eN`, or for the broadcast of one
        // element, that element itself.
        let mut local: std::collections::HashMap<ValueId, String> = Default::default();
        if unit || uniform {
            // Every element is the same: compute the members once, as scalars.
            for &m in &members {
                let ins: Vec<String> = self.f.insts[m]
                    .args
                    .iter()
                    .map(|&x| match local.get(&x) {
                        Some(e) => e.clone(),
                        None => self.scalar_elem(x),
                    })
                    .collect();
                let expr = elementwise(&self.f.insts[m].op, &ins);
                if m != root && matches!(self.f.insts[m].op, Op::Broadcast { .. }) {
                    local.insert(m, expr);
                    continue;
                }
                let var = if m == root {
                    name.clone()
                } else {
                    format!("e{m}")
                };
                let _ = writeln!(self.out, "let {var} = {expr};");
                local.insert(m, var.clone());
                self.set(m, Repr::Scalar(var));
            }
            return if unit {
                Repr::Scalar(name)
            } else {
                Repr::Splat(name)
            };
        }
        self.writing_over = self.in_place[root].map(|k| self.state_names[k].clone());
        let mut lets = Vec::new();
        let mut body = String::new();
        for &m in &members {
            let ins: Vec<String> = self.f.insts[m]
                .args
                .iter()
                .map(|&x| match local.get(&x) {
                    Some(e) => e.clone(),
                    None => self.elem(x),
                })
                .collect();
            let expr = elementwise(&self.f.insts[m].op, &ins);
            if m == root {
                body = expr;
            } else if matches!(self.f.insts[m].op, Op::Broadcast { .. }) {
                local.insert(m, expr);
            } else {
                lets.push(format!("let e{m} = {expr};"));
                local.insert(m, format!("e{m}"));
            }
        }
        let mut reads = Vec::new();
        for &x in &outer {
            self.reads(x, &mut reads);
        }
        let len = len_expr(&shape);
        self.writing_over = None;
        match self.in_place[root] {
            Some(state) => {
                // The update overwrites the old value, element by element.
                let target = self.state_names[state].clone();
                self.write_loop("", &target, &len, &reads, &lets, &body);
                Repr::Buffer { name: target }
            }
            None => {
                let bind = self.bind_output(root, &name);
                self.write_loop(&bind, &name, &len, &reads, &lets, &body);
                Repr::Buffer { name }
            }
        }
    }

    /// Whether `v` belongs to a kernel with an epilogue (as its head, a middle member or root).
    fn in_epilogue(&self, v: ValueId) -> bool {
        self.in_epilogue[v]
    }

    /// The call of the fused runtime kernel computing the epilogue kernel whose root is `root`.
    fn epilogue_call(&mut self, root: ValueId, out: &str) -> String {
        use crate::ir::kernels::Epilogue;
        let Some((members, form)) = self.epilogues[root].clone() else {
            unreachable!("a root of an epilogue kernel")
        };
        let head = members[0];
        let a = self.f.insts[head].args.clone();
        let shape_of = |v: ValueId| self.f.insts[v].shape.clone();
        match (form, &self.f.insts[head].op) {
            (Epilogue::ConvBias { bias, relu }, Op::Conv2d { window }) => {
                let geo = conv_geometry(&shape_of(a[0]), &shape_of(a[1]), window);
                let x = self.slice(a[0]);
                let k = self.slice(a[1]);
                let b = self.slice(bias);
                format!("ops::conv2d_bias(ctx, &{geo}, {x}, {k}, {b}, {relu}, {out})")
            }
            (Epilogue::PoolBackRelu, Op::Pool2dBack { window, .. }) => {
                let geo = pool_geometry(&shape_of(a[0]), window);
                let x = self.slice(a[0]);
                let dy = self.slice(a[1]);
                format!("ops::max_pool2d_back_relu(ctx, &{geo}, {x}, {dy}, {out})")
            }
            _ => unreachable!("the epilogue forms of `ir::kernels::epilogue`"),
        }
    }

    /// The one element of a scalar, splat or one-element value.
    fn scalar_elem(&self, v: ValueId) -> String {
        match self.repr(v) {
            Repr::Scalar(s) | Repr::Splat(s) => s.clone(),
            Repr::Buffer { name } | Repr::Strided { name, .. } => format!("{name}[0]"),
            Repr::Member(e) => e.clone(),
        }
    }

    /// A broadcast that reads its input in place: `[1, ..., 1, inner...]` (rows repeated:
    /// `x[i % inner]`) or `[outer..., 1, ..., 1]` (each element repeated: `x[i / inner]`).
    fn strided(&mut self, src: ValueId, in_shape: &[Dim], out: &[Dim]) -> Option<Repr> {
        let r = in_shape.len();
        let first_kept = in_shape
            .iter()
            .position(|d| *d != Dim::Fixed(1))
            .unwrap_or(r);
        let last_kept = in_shape
            .iter()
            .rposition(|d| *d != Dim::Fixed(1))
            .map_or(0, |p| p + 1);
        // Leading ones, then axes equal to the output's.
        let leading = in_shape[first_kept..]
            .iter()
            .zip(&out[first_kept..])
            .all(|(a, b)| a == b);
        let inner_fixed = |dims: &[Dim]| -> Option<usize> {
            dims.iter().map(|d| d.fixed()).product::<Option<usize>>()
        };
        let name = match self.repr(src).clone() {
            Repr::Buffer { name } => name,
            _ => self.materialize(src),
        };
        if leading {
            let inner = inner_fixed(&in_shape[first_kept..])?;
            return Some(Repr::Strided {
                name,
                modulo: inner,
                div: 0,
            });
        }
        let trailing = in_shape[..last_kept]
            .iter()
            .zip(&out[..last_kept])
            .all(|(a, b)| a == b);
        if trailing {
            let div = inner_fixed(&out[last_kept..])?;
            return Some(Repr::Strided {
                name,
                modulo: 0,
                div,
            });
        }
        None
    }

    fn kernel_call(&mut self, op: &Op, a: &[ValueId], shape: &[Dim], out: &str) -> String {
        let shape_of = |v: ValueId| self.f.insts[v].shape.clone();
        match op {
            Op::Reduce { op: rop, axes, .. }
                if *rop == ReduceOp::Sum && *axes == [shape_of(a[0]).len() - 1] =>
            {
                // After `split_sums` a sum has one axis; over the last one it adds in the
                // interpreter's unrolled order.
                let x = self.slice(a[0]);
                format!(
                    "ops::reduce_sum_last({x}, &{}, {out})",
                    dims_expr(&shape_of(a[0]))
                )
            }
            Op::Reduce { op: rop, axes, .. } => {
                let x = self.slice(a[0]);
                let f = match rop {
                    ReduceOp::Sum => "reduce_sum",
                    ReduceOp::Max => "reduce_max",
                };
                format!(
                    "ops::{f}({x}, &{}, &{axes:?}, {out})",
                    dims_expr(&shape_of(a[0]))
                )
            }
            Op::MatMul {
                transpose_a,
                transpose_b,
            } => {
                let sa = shape_of(a[0]);
                let r = sa.len();
                let (m, k) = if *transpose_a {
                    (sa[r - 1], sa[r - 2])
                } else {
                    (sa[r - 2], sa[r - 1])
                };
                let nn = shape[r - 1];
                let lead = len_expr(&shape[..r - 2]);
                let x = self.slice(a[0]);
                let y = self.slice(a[1]);
                format!(
                    "ops::matmul(ctx, {x}, {y}, {out}, {lead}, {}, {}, {}, {transpose_a}, {transpose_b})",
                    dim_expr(&m),
                    dim_expr(&k),
                    dim_expr(&nn)
                )
            }
            Op::Conv2d { window } => {
                let xs = shape_of(a[0]);
                let ks = shape_of(a[1]);
                let geo = conv_geometry(&xs, &ks, window);
                let x = self.slice(a[0]);
                let k = self.slice(a[1]);
                format!("ops::conv2d(ctx, &{geo}, {x}, {k}, {out})")
            }
            Op::Conv2dBackInput { window, .. } => {
                let ks = shape_of(a[1]);
                let geo = conv_geometry(shape, &ks, window);
                let dy = self.slice(a[0]);
                let k = self.slice(a[1]);
                format!("ops::conv2d_back_input(ctx, &{geo}, {dy}, {k}, {out})")
            }
            Op::Conv2dBackKernel { window } => {
                let xs = shape_of(a[0]);
                let geo = conv_geometry(&xs, shape, window);
                let x = self.slice(a[0]);
                let dy = self.slice(a[1]);
                format!("ops::conv2d_back_kernel(ctx, &{geo}, {x}, {dy}, {out})")
            }
            Op::Pool2d { kind, window } => {
                let geo = pool_geometry(&shape_of(a[0]), window);
                let x = self.slice(a[0]);
                match kind {
                    PoolKind::Max => {
                        format!("ops::max_pool2d(ctx, &{geo}, {x}, {out})")
                    }
                    PoolKind::Avg => {
                        format!("ops::avg_pool2d(ctx, &{geo}, {x}, {out})")
                    }
                }
            }
            Op::Pool2dBack { kind, window } => {
                let geo = pool_geometry(&shape_of(a[0]), window);
                let x = self.slice(a[0]);
                let dy = self.slice(a[1]);
                match kind {
                    PoolKind::Max => {
                        format!("ops::max_pool2d_back(ctx, &{geo}, {x}, {dy}, {out})")
                    }
                    PoolKind::Avg => {
                        format!("ops::avg_pool2d_back(ctx, &{geo}, {dy}, {out})")
                    }
                }
            }
            Op::Permute { perm } => {
                let x = self.slice(a[0]);
                format!(
                    "ops::permute({x}, &{}, &{perm:?}, {out})",
                    dims_expr(&shape_of(a[0]))
                )
            }
            Op::Slice { axis, start, end } => {
                let x = self.slice(a[0]);
                format!(
                    "ops::slice({x}, &{}, {axis}, {start}, {end}, {out})",
                    dims_expr(&shape_of(a[0]))
                )
            }
            Op::Pad {
                axis,
                before,
                after,
            } => {
                let x = self.slice(a[0]);
                format!(
                    "ops::pad({x}, &{}, {axis}, {before}, {after}, {out})",
                    dims_expr(&shape_of(a[0]))
                )
            }
            Op::Concat { axis } => {
                let parts: Vec<String> = a
                    .iter()
                    .map(|&p| {
                        let s = self.slice(p);
                        format!("({s}, &{} as &[usize])", dims_expr(&shape_of(p)))
                    })
                    .collect();
                format!("ops::concat(&[{}], {axis}, {out})", parts.join(", "))
            }
            Op::Gather => {
                let ts = shape_of(a[0]);
                let rows = dim_expr(&ts[0]);
                let row_len = len_expr(&ts[1..]);
                let t = self.slice(a[0]);
                let idx = self.int_slice(a[1]);
                format!("ops::gather({t}, {rows}, {row_len}, {idx}, {out})")
            }
            Op::ScatterAdd { rows } => {
                let row_len = len_expr(&shape[1..]);
                let idx = self.int_slice(a[0]);
                let vals = self.slice(a[1]);
                format!("ops::scatter_add({idx}, {vals}, {rows}, {row_len}, {out})")
            }
            Op::OneHot { depth } => {
                let idx = self.int_slice(a[0]);
                format!("ops::one_hot({idx}, {depth}, {out})")
            }
            Op::RandomUniform { salt, .. } => {
                format!("ops::random_uniform(ctx, {salt}, {out})")
            }
            Op::LowerTriangle { rows, cols } => {
                format!("ops::lower_triangle({rows}, {cols}, {out})")
            }
            Op::Arg { .. }
            | Op::Bucketize { .. }
            | Op::Const { .. }
            | Op::BatchSize
            | Op::Unary(_)
            | Op::Binary(_)
            | Op::Select
            | Op::Reshape { .. }
            | Op::Broadcast { .. } => unreachable!("handled by the caller"),
        }
    }

    fn int_slice(&self, v: ValueId) -> String {
        match self.repr(v) {
            Repr::Buffer { name } => format!("&{name}"),
            // i32 values are arguments, categorical draws and their reshapes.
            _ => "&[]".into(),
        }
    }
}

fn conv_geometry(x: &[Dim], k: &[Dim], w: &Window) -> String {
    let d = |i: usize, s: &[Dim]| dim_expr(&s[i]);
    format!(
        "ops::conv_shape({}, [{}, {}, {}], [{}, {}], {}, {:?}, {:?}, [{}, {}], [{}, {}])",
        d(0, x),
        d(1, x),
        d(2, x),
        d(3, x),
        d(0, k),
        d(1, k),
        d(3, k),
        w.stride,
        w.dilation,
        w.pad[0].0,
        w.pad[1].0,
        w.pad[0].1,
        w.pad[1].1
    )
}

fn pool_geometry(x: &[Dim], w: &Window) -> String {
    let d = |i: usize| dim_expr(&x[i]);
    format!(
        "ops::pool_shape({}, [{}, {}, {}], {:?}, {:?}, [{}, {}], [{}, {}])",
        d(0),
        d(1),
        d(2),
        d(3),
        w.kernel,
        w.stride,
        w.pad[0].0,
        w.pad[1].0,
        w.pad[0].1,
        w.pad[1].1
    )
}

/// The expression of an elementwise op on its operands' element expressions.
fn elementwise(op: &Op, x: &[String]) -> String {
    match op {
        Op::Unary(u) => {
            let a = &x[0];
            match u {
                UnaryOp::Neg => format!("(-{a})"),
                UnaryOp::Exp => format!("{a}.exp()"),
                UnaryOp::Log => format!("{a}.ln()"),
                UnaryOp::Sqrt => format!("{a}.sqrt()"),
                UnaryOp::Tanh => format!("{a}.tanh()"),
                UnaryOp::Sigmoid => format!("ops::sigmoid({a})"),
                UnaryOp::Erf => format!("ops::erf({a})"),
                UnaryOp::Abs => format!("{a}.abs()"),
                UnaryOp::Sign => format!("ops::sign({a})"),
                UnaryOp::ToFloat => format!("({a} as f32)"),
                UnaryOp::StopGradient => a.clone(),
            }
        }
        Op::Binary(b) => {
            let (a, c) = (&x[0], &x[1]);
            match b {
                BinaryOp::Add => format!("({a} + {c})"),
                BinaryOp::Sub => format!("({a} - {c})"),
                BinaryOp::Mul => format!("({a} * {c})"),
                BinaryOp::Div => format!("({a} / {c})"),
                BinaryOp::Max => format!("ops::max({a}, {c})"),
                BinaryOp::Min => format!("ops::min({a}, {c})"),
                BinaryOp::Pow => format!("{a}.powf({c})"),
                BinaryOp::Greater => format!("ops::flag({a} > {c})"),
                BinaryOp::GreaterEq => format!("ops::flag({a} >= {c})"),
                BinaryOp::Equal => format!("ops::flag({a} == {c})"),
            }
        }
        Op::Select => format!("(if {} != 0.0 {{ {} }} else {{ {} }})", x[0], x[1], x[2]),
        // The broadcast of one element (see `ir::kernels::is_elementwise`).
        Op::Broadcast { .. } => x[0].clone(),
        _ => unreachable!("not elementwise"),
    }
}
