//! Evaluating model bodies into layer graphs: name resolution inside models and blocks, block
//! expansion with per-call weights, `repeat`, naming scopes (language.md section 7), tensor
//! argument classification and elementwise arithmetic with broadcasting.

use super::bind::{self, plural};
use super::functions::{self, Operand};
use super::items::Items;
use super::layers::{self, LayerOut};
use super::limits::{self, MAX_CATEGORIES, MAX_DEPTH, MAX_NODES};
use super::table::{self, Kind, Sig};
use super::values::{const_eval, fold_or_report, shape_str, Sym, SymArg, Tv, Val};
use super::{suggest, Ctx};
use crate::graph::{
    DType, Func, Init, InputInfo, Lag, LagKind, ModelGraph, Node, Op, OutputInfo, ParamInfo,
    Sampler,
};
use fm_codes as codes;
use fm_grammar::ast::{self, Arg, BinOp, Expr, ExprKind, Ident, ParamTyKind, Span, Stmt};
use fm_grammar::Diagnostic;
use std::collections::HashMap;

/// A checked model: its graph when it checked without errors.
pub struct ModelResult {
    pub name: String,
    pub span: Span,
    pub graph: Option<ModelGraph>,
}

/// Largest parameter tensor (elements): 2^40, far beyond any real model.
const MAX_PARAM_ELEMENTS: usize = 1 << 40;
/// Largest `repeat` count.
const MAX_REPEAT: i64 = 10_000;

pub fn expand_models(ctx: &mut Ctx, items: &Items) -> Vec<ModelResult> {
    let sizes = limits::size_blocks(items);
    items
        .models
        .iter()
        .map(|m| {
            let errors_before = ctx.error_count();
            if limits::model_too_large(ctx, m, items, &sizes) {
                return ModelResult {
                    name: m.name.name.clone(),
                    span: m.name.span,
                    graph: None,
                };
            }
            let mut ex = Expander {
                ctx,
                items,
                graph: ModelGraph {
                    name: m.name.name.clone(),
                    doc: m.doc.clone(),
                    span: m.span,
                    inputs: Vec::new(),
                    nodes: Vec::new(),
                    outputs: Vec::new(),
                    params: Vec::new(),
                    ..ModelGraph::default()
                },
                stack: Vec::new(),
                too_large: false,
                expanded: 0,
                depth: 0,
                name_span: m.name.span,
                later: &[],
                named: HashMap::new(),
                share: None,
                objective_only: false,
                metric: false,
            };
            ex.model(m);
            let graph = ex.graph;
            ctx.muted = false;
            let budget = ctx.limits;
            let ok = ctx.error_count() == errors_before
                && !limits::check_model_memory(ctx, &graph, m.name.span, &budget);
            ModelResult {
                name: m.name.name.clone(),
                span: m.name.span,
                graph: ok.then_some(graph),
            }
        })
        .collect()
}

/// A naming scope: the model or one block call.
struct Scope {
    /// `""` for the model, `residual_1/` inside a block call.
    prefix: String,
    counters: HashMap<String, usize>,
    /// Local names taken, and whether by an explicit `name:` (with its span).
    taken: HashMap<String, Option<Span>>,
}

impl Scope {
    fn new(prefix: String) -> Self {
        Scope {
            prefix,
            counters: HashMap::new(),
            taken: HashMap::new(),
        }
    }
}

struct Binding {
    val: Val,
    /// Where it was defined (the `let` name).
    span: Span,
    is_let: bool,
    used: bool,
}

#[derive(Default)]
struct Env {
    vars: HashMap<String, Binding>,
    /// The names in the order they were bound.
    order: Vec<String>,
}

struct Expander<'c, 'a, 'i, 'f> {
    ctx: &'c mut Ctx<'a>,
    items: &'i Items<'f>,
    graph: ModelGraph,
    /// Blocks being expanded, outermost first.
    stack: Vec<String>,
    /// Set once the model passed [`MAX_NODES`] or [`MAX_DEPTH`] (reported once; expansion stops).
    too_large: bool,
    /// Nodes created plus block calls expanded so far.
    expanded: usize,
    /// Current nesting of expression evaluation and block calls.
    depth: usize,
    /// The model's name (for whole-model diagnostics).
    name_span: Span,
    /// The statements of the body being evaluated from the current one on, for "defined later"
    /// notes.
    later: &'f [Stmt],
    /// Named calls of the model body (`name: "d"`), callable again by name (9.1).
    named: HashMap<String, NamedCall>,
    /// Set while a named call runs again with its weights.
    share: Option<Share>,
    /// Evaluating a `train` objective: only model values and functions, no layers.
    objective_only: bool,
    /// Evaluating an entry of a metric list: `accuracy(p, t)` and `top_k(p, t, k:)` are
    /// functions too (language.md 9.3).
    metric: bool,
}

/// A named call, kept so it can run again on a new input with the same weights.
#[derive(Clone)]
struct NamedCall {
    callee: Ident,
    /// Its attribute arguments as evaluated the first time.
    attrs: Vec<SymArg>,
    /// The whole call (the secondary label of a shape error).
    span: Span,
    /// Its tensor inputs' shapes.
    input_shapes: Vec<(DType, Vec<usize>)>,
}

/// A named call running again (9.1), possibly on lagged weights (9.5).
struct Share {
    name: String,
    call: NamedCall,
    /// The shared call in the source.
    span: Span,
    /// Index into `graph.lags` when the call uses lagged weights.
    lag: Option<usize>,
    /// Set once a shape error was reported.
    failed: bool,
}

impl<'f> Expander<'_, '_, '_, 'f> {
    fn model(&mut self, m: &'f ast::Model) {
        let mut env = Env::default();
        let mut scope = Scope::new(String::new());
        let mut outputs: HashMap<String, Span> = HashMap::new();
        // `ctx.locals` mirrors `env`: `bind` adds to both.
        self.ctx.locals.clear();
        for (i, stmt) in m.body.iter().enumerate() {
            self.later = &m.body[i..];
            match stmt {
                Stmt::Input {
                    name,
                    dtype,
                    dims,
                    sample,
                    ..
                } => self.input(&mut env, name, dtype, dims, sample.as_ref(), false),
                Stmt::Target {
                    name, dtype, dims, ..
                } => self.input(&mut env, name, dtype, dims, None, true),
                Stmt::Let { name, value, .. } => {
                    let v = self.eval(value, &mut env, &mut scope);
                    self.bind_let(&mut env, name, v);
                }
                Stmt::Output { name, value, span } => {
                    let v = self.eval(value, &mut env, &mut scope);
                    let out_name = match name {
                        Some(n) => n.name.clone(),
                        None => {
                            let k = self.graph.outputs.len();
                            if k == 0 {
                                "output".to_string()
                            } else {
                                format!("output_{k}")
                            }
                        }
                    };
                    let name_span = name.as_ref().map(|n| n.span).unwrap_or(*span);
                    if let Some(first) = outputs.get(&out_name) {
                        let d = Diagnostic::error(
                            codes::E0105,
                            format!("the output `{out_name}` is defined twice"),
                        )
                        .with_primary(name_span, "defined again here")
                        .with_secondary(*first, "first defined here");
                        self.ctx.emit(d);
                        continue;
                    }
                    outputs.insert(out_name.clone(), name_span);
                    // A named output is also a value later statements may use (as a Keras
                    // functional model can feed an output tensor into further layers).
                    if let Some(n) = name {
                        self.bind(&mut env, n, v.clone(), false);
                    }
                    if let Some(t) = self.expect_tensor(v, value.span, "an output") {
                        self.graph.outputs.push(OutputInfo {
                            name: out_name,
                            node: t.node,
                            span: *span,
                        });
                    }
                }
                Stmt::Return { span, .. } => self.ctx.error(
                    codes::E0218,
                    "`return` is only allowed in a block",
                    *span,
                    "a model declares `output NAME = ...` instead",
                ),
            }
        }
        if outputs.is_empty() {
            self.ctx.error(
                codes::E0218,
                format!("model `{}` has no output", m.name.name),
                m.name.span,
                "a model needs at least one `output`",
            );
        }
        // Values that `train` sections name (loss expressions, 9.3) are used.
        let mut named_in_train = Vec::new();
        for t in &self.items.trains {
            for e in &t.entries {
                names_in(&e.value, &mut named_in_train);
            }
        }
        for n in named_in_train {
            if let Some(b) = env.vars.get_mut(&n) {
                b.used = true;
            }
        }
        if self.graph.inputs.is_empty() && !m.body.iter().any(|s| matches!(s, Stmt::Input { .. })) {
            self.ctx.error(
                codes::E0218,
                format!("model `{}` has no input", m.name.name),
                m.name.span,
                "declare one, e.g. `input x: f32[10]`",
            );
        }
        self.warn_unused(&env);
        for n in &env.order {
            if let Some(Binding {
                val: Val::Tensor(t),
                ..
            }) = env.vars.get(n)
            {
                self.graph.values.push((n.clone(), t.node));
            }
        }
    }

    /// `input` (or, with `is_target`, `target`) declarations.
    fn input(
        &mut self,
        env: &mut Env,
        name: &Ident,
        dtype: &Ident,
        dims: &[Expr],
        sample: Option<&Expr>,
        is_target: bool,
    ) {
        let dt = match dtype.name.as_str() {
            "f32" => Some(DType::F32),
            "i32" => Some(DType::I32),
            other => {
                let mut d =
                    Diagnostic::error(codes::E0116, format!("unknown element type `{other}`"))
                        .with_primary(dtype.span, "expected `f32` or `i32`");
                if let Some(s) = suggest(other, ["f32", "i32"].into_iter()) {
                    d = d.with_help(format!("did you mean `{s}`?"));
                }
                self.ctx.emit(d);
                None
            }
        };
        let mut shape = Vec::new();
        let mut ok = dt.is_some();
        for d in dims {
            let v = const_eval(self.ctx, d);
            match bind::to_int(self.ctx, &v, d.span, "a dimension", table::Range::Positive) {
                Some(i) => shape.push(i as usize),
                None => ok = false,
            }
        }
        // `[]` declares a per-sample scalar (language.md 9.3).
        let sampler = match (sample, dt) {
            (Some(e), Some(dt)) if ok => {
                let s = self.sampler(e, dt);
                ok &= s.is_some();
                s
            }
            _ => None,
        };
        let val = match (ok, dt) {
            (true, Some(dtype)) => {
                // A target and a data input differ only in their op and the list they join.
                let op = if is_target {
                    Op::Target {
                        index: self.graph.targets.len(),
                    }
                } else {
                    let index = self.graph.inputs.len();
                    if let Some(s) = sampler {
                        self.graph.sampled.push((index, s));
                    }
                    Op::Input { index }
                };
                let node = self.push_node(Node {
                    op,
                    inputs: Vec::new(),
                    shape: shape.clone(),
                    dtype,
                    span: name.span,
                    name: Some(name.name.clone()),
                    params: Vec::new(),
                });
                let info = InputInfo {
                    name: name.name.clone(),
                    dtype,
                    shape: shape.clone(),
                    node,
                    span: name.span,
                };
                if is_target {
                    self.graph.targets.push(info);
                } else {
                    self.graph.inputs.push(info);
                }
                Val::Tensor(Tv {
                    node,
                    shape,
                    dtype,
                    origin: name.span,
                    shrink: None,
                })
            }
            _ => Val::Poison,
        };
        self.bind(env, name, val, false);
    }

    /// The distribution after `~` (language.md 9.2).
    fn sampler(&mut self, e: &Expr, dtype: DType) -> Option<Sampler> {
        let ExprKind::Call { callee, args } = &e.kind else {
            self.ctx.error(
                codes::E0201,
                "expected a distribution",
                e.span,
                "write `normal(mean, std)`, `uniform(lo, hi)` or `categorical(weights, power: 1)`",
            );
            return None;
        };
        let want = match callee.name.as_str() {
            "normal" | "uniform" => DType::F32,
            "categorical" => DType::I32,
            other => {
                let mut d =
                    Diagnostic::error(codes::E0101, format!("unknown distribution `{other}`"))
                        .with_primary(callee.span, "expected `normal`, `uniform` or `categorical`");
                if let Some(s) = suggest(other, ["normal", "uniform", "categorical"].into_iter()) {
                    d = d.with_help(format!("did you mean `{s}`?"));
                }
                self.ctx.emit(d);
                return None;
            }
        };
        if want != dtype {
            self.ctx.error(
                codes::E0209,
                format!("`{}` draws {} values", callee.name, want.name()),
                e.span,
                format!("the input is declared {}", dtype.name()),
            );
            return None;
        }
        let names: &[&str] = match callee.name.as_str() {
            "normal" => &["mean", "std"],
            "uniform" => &["lo", "hi"],
            _ => &["weights", "power"],
        };
        let mut vals: Vec<Option<(Val, Span)>> = vec![None; 2];
        for (i, a) in args.iter().enumerate() {
            let slot = match &a.name {
                None if i < 2 => i,
                None => {
                    self.ctx.error(
                        codes::E0207,
                        format!("too many arguments to `{}`", callee.name),
                        a.span,
                        "it takes two",
                    );
                    return None;
                }
                Some(n) => match names.iter().position(|x| *x == n.name) {
                    Some(k) => k,
                    None => {
                        self.ctx.error(
                            codes::E0103,
                            format!("`{}` has no argument `{}`", callee.name, n.name),
                            n.span,
                            format!("expected `{}` or `{}`", names[0], names[1]),
                        );
                        return None;
                    }
                },
            };
            vals[slot] = Some((const_eval(self.ctx, &a.value), a.value.span));
        }
        let num = |ctx: &mut Ctx, v: &Option<(Val, Span)>, what: &str, default: Option<f64>| match (
            v, default,
        ) {
            (Some((v, s)), _) => bind::to_float(ctx, v, *s, what, table::Range::Any),
            (None, Some(d)) => Some(d),
            (None, None) => {
                ctx.error(
                    codes::E0206,
                    format!("the distribution needs `{what}`"),
                    e.span,
                    format!("`{what}` is missing"),
                );
                None
            }
        };
        match callee.name.as_str() {
            "normal" => {
                let mean = num(self.ctx, &vals[0], "mean", Some(0.0))?;
                let std = num(self.ctx, &vals[1], "std", Some(1.0))?;
                if std < 0.0 {
                    self.ctx
                        .error(codes::E0202, "`std` must be >= 0", e.span, "negative");
                    return None;
                }
                Some(Sampler::Normal { mean, std })
            }
            "uniform" => {
                let lo = num(self.ctx, &vals[0], "lo", Some(0.0))?;
                let hi = num(self.ctx, &vals[1], "hi", Some(1.0))?;
                if lo > hi {
                    self.ctx
                        .error(codes::E0202, "`uniform` needs lo <= hi", e.span, "lo > hi");
                    return None;
                }
                Some(Sampler::Uniform { lo, hi })
            }
            _ => {
                let power = num(self.ctx, &vals[1], "power", Some(1.0))?;
                let Some((wv, ws)) = vals[0].clone() else {
                    num(self.ctx, &None, "weights", None);
                    return None;
                };
                let weights: Vec<f64> = match &wv {
                    Val::List(items) => {
                        let mut out = Vec::new();
                        for (v, s) in items {
                            out.push(bind::to_float(
                                self.ctx,
                                v,
                                *s,
                                "a weight",
                                table::Range::NonNegative,
                            )?);
                        }
                        out
                    }
                    Val::Str(path) => {
                        let base = std::path::Path::new(&self.ctx.file_name)
                            .parent()
                            .unwrap_or(std::path::Path::new(""));
                        let full = base.join(path);
                        let read =
                            std::fs::read(&full)
                                .map_err(|e| e.to_string())
                                .and_then(|bytes| {
                                    fm_runtime::data::npy::parse_npy(
                                        &full.display().to_string(),
                                        &bytes,
                                    )
                                    .map(|a| a.data.to_f64())
                                    .map_err(|e| e.to_string())
                                });
                        match read {
                            Ok(w) => w,
                            Err(msg) => {
                                self.ctx.error(
                                    codes::E0401,
                                    format!("cannot read the weights of `categorical`: {msg}"),
                                    ws,
                                    "this `.npy` file",
                                );
                                return None;
                            }
                        }
                    }
                    other => {
                        self.ctx.error(
                            codes::E0201,
                            "`categorical` needs a list of weights or a `.npy` path",
                            ws,
                            format!("found {}", other.describe()),
                        );
                        return None;
                    }
                };
                if weights.len() > MAX_CATEGORIES {
                    self.ctx.error(
                        codes::E0223,
                        format!(
                            "`categorical` over more than {} categories",
                            crate::summary::thousands(MAX_CATEGORIES)
                        ),
                        ws,
                        format!("{} weights", crate::summary::thousands(weights.len())),
                    );
                    return None;
                }
                if let Some(k) = weights.iter().position(|w| !w.is_finite() || *w < 0.0) {
                    self.ctx.error(
                        codes::E0223,
                        "`categorical` weights must be finite and >= 0",
                        ws,
                        format!("weight {k} is {}", weights[k]),
                    );
                    return None;
                }
                let raised: Vec<f64> = weights
                    .iter()
                    .map(|&w| if w == 0.0 { 0.0 } else { w.powf(power) })
                    .collect();
                let total: f64 = raised.iter().sum();
                if weights.is_empty() || !total.is_finite() || total <= 0.0 {
                    self.ctx.error(
                        codes::E0223,
                        "`categorical` needs weights with a positive, finite sum",
                        ws,
                        format!("{} weights summing to {total}", weights.len()),
                    );
                    return None;
                }
                Some(Sampler::Categorical {
                    probs: raised.iter().map(|w| w / total).collect(),
                })
            }
        }
    }

    fn bind_let(&mut self, env: &mut Env, name: &Ident, v: Val) {
        self.bind(env, name, v, true);
    }

    fn bind(&mut self, env: &mut Env, name: &Ident, val: Val, is_let: bool) {
        if let Some(prev) = env.vars.get(&name.name) {
            let d = Diagnostic::error(codes::E0105, format!("`{}` is defined twice", name.name))
                .with_primary(name.span, "defined again here")
                .with_secondary(prev.span, "first defined here")
                .with_help("names are unique within a model or block");
            self.ctx.emit(d);
            return;
        }
        self.ctx.locals.push(name.name.clone());
        env.order.push(name.name.clone());
        env.vars.insert(
            name.name.clone(),
            Binding {
                val,
                span: name.span,
                is_let,
                used: false,
            },
        );
    }

    fn warn_unused(&mut self, env: &Env) {
        // Unused-`let` warnings are about the block's text, not one expansion of it.
        let notes = std::mem::take(&mut self.ctx.expansion_notes);
        let mut unused: Vec<&Binding> = env
            .vars
            .iter()
            .filter(|(n, b)| b.is_let && !b.used && !n.starts_with('_'))
            .map(|(_, b)| b)
            .collect();
        unused.sort_by_key(|b| b.span.start);
        for b in unused {
            let name = self.ctx.snippet(b.span);
            let d = Diagnostic::warning(codes::W0101, format!("unused `let`: `{name}`"))
                .with_primary(b.span, "never used")
                .with_help(format!(
                    "use it, remove it, or name it `_{name}` to silence this warning"
                ));
            self.ctx.emit(d);
        }
        self.ctx.expansion_notes = notes;
    }

    fn push_node(&mut self, node: Node) -> usize {
        self.count_expansion();
        self.graph.nodes.push(node);
        let id = self.graph.nodes.len() - 1;
        if let Some(share) = &self.share {
            self.graph.shared.push((id, share.name.clone()));
        }
        id
    }

    /// Counts a node or block call against [`MAX_NODES`], reporting the model once when over.
    fn count_expansion(&mut self) {
        self.expanded += 1;
        if self.expanded > MAX_NODES && !self.too_large {
            self.too_large = true;
            let notes = std::mem::take(&mut self.ctx.expansion_notes);
            self.ctx.error(
                codes::E0219,
                format!("model `{}` is too large", self.graph.name),
                self.name_span,
                format!(
                    "it expands to more than {} layers",
                    crate::summary::thousands(MAX_NODES)
                ),
            );
            self.ctx.expansion_notes = notes;
            self.ctx.muted = true;
        }
    }

    /// Enters one level of evaluation; false (after reporting once) past [`MAX_DEPTH`].
    fn enter(&mut self, span: Span) -> bool {
        if self.depth >= MAX_DEPTH {
            if self.too_large {
                return false;
            }
            self.too_large = true;
            let notes = std::mem::take(&mut self.ctx.expansion_notes);
            let first = notes.first().cloned();
            let mut d = Diagnostic::error(
                codes::E0219,
                format!("model `{}` nests too deeply", self.graph.name),
            )
            .with_primary(
                span,
                format!("more than {MAX_DEPTH} levels of block calls and pipeline stages here"),
            )
            .with_help("call the blocks one after another in the model instead of from each other");
            if let Some(first) = first {
                d = d.with_note(format!(
                    "the chain starts {}",
                    first.trim_start_matches("while ")
                ));
            }
            self.ctx.emit(d);
            self.ctx.expansion_notes = notes;
            self.ctx.muted = true;
            return false;
        }
        self.depth += 1;
        true
    }

    /// A tensor, or a report saying what was found instead (nothing for poison).
    fn expect_tensor(&mut self, v: Val, span: Span, what: &str) -> Option<Tv> {
        match v {
            Val::Tensor(t) => Some(t),
            Val::Poison => None,
            Val::Sym(Sym {
                name,
                args: None,
                name_span,
            }) => {
                self.unknown_name(&name, name_span);
                None
            }
            other => {
                self.ctx.error(
                    codes::E0215,
                    format!("expected a tensor for {what}"),
                    span,
                    format!("found {}", other.describe()),
                );
                None
            }
        }
    }

    fn unknown_name(&mut self, name: &str, span: Span) {
        if table::lookup_callable(name).is_some() || self.items.blocks.contains_key(name) {
            let d = Diagnostic::error(codes::E0215, format!("`{name}` needs a tensor input"))
                .with_primary(span, "used as a value")
                .with_help(format!("use it as a pipeline stage: `x -> {name}`"));
            self.ctx.emit(d);
            return;
        }
        let mut d = Diagnostic::error(codes::E0102, format!("unknown name `{name}`"))
            .with_primary(span, "not found in this scope");
        let later = self.later.iter().find_map(|s| match s {
            Stmt::Let { name: n, .. } if n.name == name => Some(n.span),
            _ => None,
        });
        if let Some(later) = later {
            d = d
                .with_secondary(later, "defined later, here")
                .with_help("a `let` is visible only after its definition; move it up");
        } else if let Some(s) = suggest(name, self.ctx.locals.iter().map(|s| s.as_str())) {
            d = d.with_help(format!("did you mean `{s}`?"));
        }
        self.ctx.emit(d);
    }

    fn eval(&mut self, e: &Expr, env: &mut Env, scope: &mut Scope) -> Val {
        if !self.enter(e.span) {
            return Val::Poison;
        }
        let v = self.eval_inner(e, env, scope);
        self.depth -= 1;
        v
    }

    fn eval_inner(&mut self, e: &Expr, env: &mut Env, scope: &mut Scope) -> Val {
        match &e.kind {
            ExprKind::Number { .. } | ExprKind::Str(_) | ExprKind::Bool(_) => {
                const_eval(self.ctx, e)
            }
            ExprKind::Name(id) => match env.vars.get_mut(&id.name) {
                Some(b) => {
                    b.used = true;
                    b.val.clone()
                }
                None => Val::Sym(Sym {
                    name: id.name.clone(),
                    name_span: id.span,
                    args: None,
                }),
            },
            ExprKind::Call { callee, args } => self.call(callee, args, None, e.span, env, scope),
            ExprKind::Pipe { lhs, stage } => {
                let v = self.eval(lhs, env, scope);
                let input = match v {
                    Val::Poison => Val::Poison,
                    v => match self.expect_tensor(v, lhs.span, "a pipeline") {
                        Some(t) => Val::Tensor(t),
                        None => Val::Poison,
                    },
                };
                self.stage(input, stage, env, scope)
            }
            ExprKind::Repeat { .. } => {
                self.ctx.error(
                    codes::E0215,
                    "`repeat` must be a pipeline stage",
                    e.span,
                    "write `x -> repeat N { ... }`",
                );
                Val::Poison
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let a = self.eval(lhs, env, scope);
                let b = self.eval(rhs, env, scope);
                self.binary(*op, a, lhs.span, b, rhs.span, e.span)
            }
            ExprKind::Neg(inner) => match self.eval(inner, env, scope) {
                Val::Num { v, int } => Val::Num { v: -v, int },
                Val::Poison => Val::Poison,
                Val::Tensor(t) if self.extended() => self.func_node(
                    Op::Func(Func::Neg),
                    vec![Operand::Tensor(t.clone())],
                    t.shape,
                    e.span,
                ),
                Val::Tensor(_) => {
                    self.ctx.error(
                        codes::E0216,
                        "tensors cannot be negated",
                        e.span,
                        "unary `-` applies to numbers only",
                    );
                    Val::Poison
                }
                other => {
                    self.ctx.error(
                        codes::E0201,
                        "cannot negate a value that is not a number",
                        e.span,
                        format!("this is {}", other.describe()),
                    );
                    Val::Poison
                }
            },
            ExprKind::Paren(inner) => self.eval(inner, env, scope),
            ExprKind::List(items) => Val::List(
                items
                    .iter()
                    .map(|i| (self.eval(i, env, scope), i.span))
                    .collect(),
            ),
            ExprKind::Dict(_) | ExprKind::Duration { .. } | ExprKind::Step { .. } => {
                self.ctx.error(
                    codes::E0215,
                    "this value is not allowed in a model",
                    e.span,
                    "dictionaries and durations belong in `train` sections",
                );
                Val::Poison
            }
        }
    }

    fn binary(&mut self, op: BinOp, a: Val, a_span: Span, b: Val, b_span: Span, span: Span) -> Val {
        match (a, b) {
            (Val::Poison, _) | (_, Val::Poison) => Val::Poison,
            (Val::Tensor(x), Val::Tensor(y)) => self.elementwise(op, x, y, span),
            // A number as an operand of a tensor expression (language.md 9.3).
            (Val::Tensor(x), Val::Num { v, .. }) if self.extended() => {
                let c = self.constant(v, b_span);
                self.elementwise(op, x, c, span)
            }
            (Val::Num { v, .. }, Val::Tensor(y)) if self.extended() => {
                let c = self.constant(v, a_span);
                self.elementwise(op, c, y, span)
            }
            (Val::Tensor(_), other) | (other, Val::Tensor(_)) => {
                if let Val::Sym(Sym {
                    name,
                    args: None,
                    name_span,
                }) = &other
                {
                    self.unknown_name(name, *name_span);
                    return Val::Poison;
                }
                self.ctx.emit(
                    Diagnostic::error(
                        codes::E0216,
                        format!("`{}` combines two tensors", op.symbol()),
                    )
                    .with_primary(span, format!("found a tensor and {}", other.describe()))
                    .with_help("scale a tensor with `Rescale(factor, offset: ...)`"),
                );
                Val::Poison
            }
            (a, b) => {
                for v in [&a, &b] {
                    if let Val::Sym(Sym {
                        name,
                        args: None,
                        name_span,
                    }) = v
                    {
                        self.unknown_name(name, *name_span);
                        return Val::Poison;
                    }
                }
                fold_or_report(self.ctx, op, a, a_span, b, b_span, span)
            }
        }
    }

    /// `x + y`, `x - y`, `x * y` with NumPy broadcasting over per-sample dimensions.
    fn elementwise(&mut self, op: BinOp, x: Tv, y: Tv, span: Span) -> Val {
        let (verb, graph_op) = match op {
            BinOp::Add => ("add", Op::Add),
            BinOp::Sub => ("subtract", Op::Sub),
            BinOp::Mul => ("multiply", Op::Mul),
            BinOp::Div if self.extended() => ("divide", Op::Div),
            BinOp::Div => {
                self.ctx.emit(
                    Diagnostic::error(codes::E0216, "tensors cannot be divided")
                        .with_primary(span, "`/` applies to numbers only")
                        .with_help("scale a tensor with `Rescale(factor)`"),
                );
                return Val::Poison;
            }
        };
        if x.dtype != y.dtype {
            self.ctx.emit(
                Diagnostic::error(
                    codes::E0209,
                    format!("element types do not match in `{}`", op.symbol()),
                )
                .with_primary(
                    span,
                    format!(
                        "cannot {verb} {} and {}",
                        shape_str(x.dtype, &x.shape),
                        shape_str(y.dtype, &y.shape)
                    ),
                ),
            );
            return Val::Poison;
        }
        if x.dtype == DType::I32 {
            self.ctx.error(
                codes::E0209,
                format!("`{}` needs f32 tensors", op.symbol()),
                span,
                format!("found {}", shape_str(x.dtype, &x.shape)),
            );
            return Val::Poison;
        }
        let Some(shape) = broadcast(&x.shape, &y.shape) else {
            let mut d = Diagnostic::error(
                codes::E0203,
                format!("shapes do not match in `{}`", op.symbol()),
            )
            .with_primary(
                span,
                format!(
                    "cannot {verb} {} and {}",
                    shape_str(x.dtype, &x.shape),
                    shape_str(y.dtype, &y.shape)
                ),
            );
            let shrinks: Vec<&(Span, String)> =
                [&x.shrink, &y.shrink].into_iter().flatten().collect();
            if shrinks.is_empty() {
                for t in [&x, &y] {
                    if !overlaps(t.origin, span) {
                        d = d.with_secondary(
                            t.origin,
                            format!("this is {}", shape_str(t.dtype, &t.shape)),
                        );
                    }
                }
            } else {
                for (s, msg) in &shrinks {
                    d = d.with_secondary(*s, msg.clone());
                }
                if shrinks
                    .iter()
                    .any(|(_, m)| m.starts_with("`padding: valid`"))
                {
                    d = d.with_help("pass `padding: same` to keep the spatial size");
                } else {
                    d = d.with_help(
                        "downsample the other operand to match, e.g. with a strided 1x1 `Conv2D`",
                    );
                }
            }
            self.ctx.emit(d);
            return Val::Poison;
        };
        let node = self.push_node(Node {
            op: graph_op,
            inputs: vec![x.node, y.node],
            shape: shape.clone(),
            dtype: x.dtype,
            span,
            name: None,
            params: Vec::new(),
        });
        Val::Tensor(Tv {
            node,
            shape,
            dtype: x.dtype,
            origin: span,
            shrink: x.shrink.or(y.shrink),
        })
    }

    /// Applies one pipeline stage to `input` (a tensor or poison).
    fn stage(&mut self, input: Val, stage: &Expr, env: &mut Env, scope: &mut Scope) -> Val {
        match &stage.kind {
            ExprKind::Name(id) => {
                if env.vars.contains_key(&id.name) {
                    if let Some(b) = env.vars.get_mut(&id.name) {
                        b.used = true;
                    }
                    self.ctx.error(
                        codes::E0215,
                        format!("`{}` is a value, not a pipeline stage", id.name),
                        stage.span,
                        "expected a layer, function, block or `repeat`",
                    );
                    return Val::Poison;
                }
                self.call(id, &[], Some(input), stage.span, env, scope)
            }
            ExprKind::Call { callee, args } => {
                self.call(callee, args, Some(input), stage.span, env, scope)
            }
            ExprKind::Paren(inner) => self.stage(input, inner, env, scope),
            ExprKind::Repeat { count, body } => {
                let c = self.eval(count, env, scope);
                let Some(n) = bind::to_int(
                    self.ctx,
                    &c,
                    count.span,
                    "the repeat count",
                    table::Range::Positive,
                ) else {
                    return Val::Poison;
                };
                if n > MAX_REPEAT {
                    self.ctx.error(
                        codes::E0202,
                        "the repeat count is too large",
                        count.span,
                        format!("at most {MAX_REPEAT}"),
                    );
                    return Val::Poison;
                }
                let mut v = input;
                for i in 0..n {
                    let before = self.ctx.error_count();
                    for s in body {
                        v = self.stage(v, s, env, scope);
                    }
                    // Every copy reports the same errors; one is enough.
                    if (i == 0 && self.ctx.error_count() > before) || self.too_large {
                        return Val::Poison;
                    }
                }
                v
            }
            _ => {
                self.ctx.error(
                    codes::E0215,
                    "expected a pipeline stage",
                    stage.span,
                    "a stage is a layer, function, block call or `repeat`",
                );
                Val::Poison
            }
        }
    }

    /// Evaluates a call argument. Calls of activations and initialisers without tensor
    /// arguments stay symbolic (`leaky_relu(alpha: 0.2)` as an activation argument).
    fn eval_args(&mut self, args: &[Arg], env: &mut Env, scope: &mut Scope) -> Vec<SymArg> {
        args.iter()
            .map(|a| SymArg {
                name: a.name.clone(),
                val: self.eval_arg(&a.value, env, scope),
                span: a.value.span,
            })
            .collect()
    }

    fn eval_arg(&mut self, e: &Expr, env: &mut Env, scope: &mut Scope) -> Val {
        if let ExprKind::Call { callee, args } = &e.kind {
            let symbolic = table::lookup(Kind::Initializer, &callee.name).is_some()
                || table::ACTIVATIONS.contains(&callee.name.as_str());
            if symbolic && !self.items.blocks.contains_key(&callee.name) {
                let vals = self.eval_args(args, env, scope);
                let has_tensor = vals
                    .iter()
                    .any(|a| a.name.is_none() && matches!(a.val, Val::Tensor(_)));
                if !has_tensor || table::lookup(Kind::Initializer, &callee.name).is_some() {
                    return Val::Sym(Sym {
                        name: callee.name.clone(),
                        name_span: callee.span,
                        args: Some(vals),
                    });
                }
                return self.call_evaluated(callee, vals, None, e.span, scope);
            }
        }
        self.eval(e, env, scope)
    }

    /// A function of an expression (language.md 9.3) called as `name(args)` or piped into
    /// (`x -> name(args)`, `piped` first): its arguments evaluated, then checked and typed by
    /// `check` (`functions::infer`, or `functions::hit` for a metric), as a node of the graph.
    fn func_call(
        &mut self,
        (name, args, piped, span): (&str, &[Arg], Option<Val>, Span),
        env: &mut Env,
        scope: &mut Scope,
        check: fn(&mut Ctx, &str, Vec<SymArg>, Span) -> Option<functions::FuncNode>,
    ) -> Val {
        let mut vals = Vec::new();
        if let Some(p) = piped {
            vals.push(SymArg {
                name: None,
                val: p,
                span,
            });
        }
        vals.extend(self.eval_args(args, env, scope));
        match check(self.ctx, name, vals, span) {
            Some(f) => self.func_node(f.op, f.inputs, f.shape, span),
            None => Val::Poison,
        }
    }

    fn call(
        &mut self,
        callee: &Ident,
        args: &[Arg],
        piped: Option<Val>,
        span: Span,
        env: &mut Env,
        scope: &mut Scope,
    ) -> Val {
        let is_builtin = table::lookup_callable(&callee.name).is_some()
            || self.items.blocks.contains_key(&callee.name);
        if self.metric && !self.items.blocks.contains_key(&callee.name) {
            if functions::is_hit_metric(&callee.name) {
                let call = (callee.name.as_str(), args, piped, span);
                return self.func_call(call, env, scope, functions::hit);
            }
            if functions::is_count_metric(&callee.name) {
                let _ = self.eval_args(args, env, scope);
                self.ctx.emit(
                    Diagnostic::error(
                        codes::E0215,
                        format!("`{}` cannot be taken of model values", callee.name),
                    )
                    .with_primary(
                        span,
                        "a ratio of counts over the whole data, not a mean of per-sample values",
                    )
                    .with_help(format!(
                        "list `{}` without arguments to compute it on a model output against its target",
                        callee.name
                    )),
                );
                return Val::Poison;
            }
        }
        let weights_arg = args
            .iter()
            .find(|a| a.name.as_ref().is_some_and(|n| n.name == "weights"));
        if let Some(w) = weights_arg {
            if is_builtin || !self.named.contains_key(&callee.name) {
                let others: Vec<Arg> = args
                    .iter()
                    .filter(|a| a.name.as_ref().is_none_or(|n| n.name != "weights"))
                    .cloned()
                    .collect();
                let _ = self.eval_args(&others, env, scope);
                if is_builtin {
                    self.ctx.emit(
                        Diagnostic::error(codes::E0222, "lagged weights need a call by name")
                            .with_primary(
                                w.span,
                                format!("`{}` here makes new weights; there is nothing to lag", callee.name),
                            )
                            .with_help("name the call (`name: \"q\"`) and call it again by that name: `q(x, weights: copy(every: 500 steps))`"),
                    );
                } else {
                    self.unknown_callee(callee);
                }
                return Val::Poison;
            }
        }
        if self.objective_only && is_builtin && !functions::is_function(&callee.name) {
            let is_fn = table::lookup_callable(&callee.name)
                .is_some_and(|s| s.kind == Kind::Function && s.name != "concat");
            if !is_fn {
                let _ = self.eval_args(args, env, scope);
                self.ctx.emit(
                    Diagnostic::error(
                        codes::E0215,
                        format!(
                            "`{}` cannot be used in a loss or metric expression",
                            callee.name
                        ),
                    )
                    .with_primary(span, "layers and blocks belong in the model")
                    .with_help("compute it in the model with `let`, then use that name here"),
                );
                return Val::Poison;
            }
        }
        if !is_builtin && functions::is_function(&callee.name) && self.extended() {
            let call = (callee.name.as_str(), args, piped, span);
            return self.func_call(call, env, scope, functions::infer);
        }
        if !is_builtin {
            if let Some(nc) = self.named.get(&callee.name).cloned() {
                if self.objective_only {
                    let _ = self.eval_args(args, env, scope);
                    self.ctx.error(
                        codes::E0215,
                        format!(
                            "`{}` cannot be called in a loss or metric expression",
                            callee.name
                        ),
                        span,
                        "call it in the model with `let`, then use that name here",
                    );
                    return Val::Poison;
                }
                return self.shared_call(callee, nc, args, piped, span, env, scope);
            }
        }
        if !is_builtin {
            // Still check the arguments: their errors are independent.
            let _ = self.eval_args(args, env, scope);
            self.unknown_callee(callee);
            return Val::Poison;
        }
        let vals = self.eval_args(args, env, scope);
        self.call_evaluated(callee, vals, piped, span, scope)
    }

    /// Version 0.2 expressions (language.md 9.3): in `train` objectives always, in `let` and
    /// `output` when the file declares `version 0.2`.
    fn extended(&self) -> bool {
        self.objective_only || self.ctx.version_0_2
    }

    /// A number operand of a tensor expression as a constant node of per-sample shape `[]`.
    fn constant(&mut self, value: f64, span: Span) -> Tv {
        let node = self.push_node(Node {
            op: Op::Const { value },
            inputs: Vec::new(),
            shape: Vec::new(),
            dtype: DType::F32,
            span,
            name: None,
            params: Vec::new(),
        });
        Tv {
            node,
            shape: Vec::new(),
            dtype: DType::F32,
            origin: span,
            shrink: None,
        }
    }

    /// Pushes the node of a function (9.3) and returns its value.
    fn func_node(&mut self, op: Op, inputs: Vec<Operand>, shape: Vec<usize>, span: Span) -> Val {
        let ids: Vec<usize> = inputs
            .into_iter()
            .map(|o| match o {
                Operand::Tensor(t) => t.node,
                Operand::Number(v) => self.constant(v, span).node,
            })
            .collect();
        let node = self.push_node(Node {
            op,
            inputs: ids,
            shape: shape.clone(),
            dtype: DType::F32,
            span,
            name: None,
            params: Vec::new(),
        });
        Val::Tensor(Tv {
            node,
            shape,
            dtype: DType::F32,
            origin: span,
            shrink: None,
        })
    }

    /// `d(x)` where `d` names an earlier call: the call again on `x` with the same weights
    /// (9.1), or with a lagged copy of them when `weights:` says so (9.5).
    #[allow(clippy::too_many_arguments)]
    fn shared_call(
        &mut self,
        callee: &Ident,
        nc: NamedCall,
        args: &[Arg],
        piped: Option<Val>,
        span: Span,
        env: &mut Env,
        scope: &mut Scope,
    ) -> Val {
        if self.share.is_some() {
            self.ctx.error(
                codes::E0215,
                format!("`{}` cannot be called inside a shared call", callee.name),
                span,
                "shared calls do not nest",
            );
            return Val::Poison;
        }
        let mut lag = None;
        let mut tensors: Vec<SymArg> = Vec::new();
        if let Some(p) = piped {
            tensors.push(SymArg {
                name: None,
                val: p,
                span,
            });
        }
        for a in args {
            match &a.name {
                Some(n) if n.name == "weights" => {
                    let Some(kind) = self.lag_kind(&a.value) else {
                        return Val::Poison;
                    };
                    lag = Some((kind, a.value.span));
                }
                Some(n) => {
                    self.ctx.emit(
                        Diagnostic::error(
                            codes::E0103,
                            format!("a call of `{}` by name takes no `{}`", callee.name, n.name),
                        )
                        .with_primary(n.span, "its settings are those of the named call")
                        .with_secondary(nc.span, "the named call")
                        .with_help("pass only tensor inputs, and optionally `weights: copy(...)` or `weights: ema(...)`"),
                    );
                    return Val::Poison;
                }
                None => {
                    let v = self.eval(&a.value, env, scope);
                    tensors.push(SymArg {
                        name: None,
                        val: v,
                        span: a.value.span,
                    });
                }
            }
        }
        let lag_index = match lag {
            None => None,
            Some((kind, kspan)) => {
                match self.graph.lags.iter().position(|l| l.call == callee.name) {
                    Some(i) if self.graph.lags[i].kind != kind => {
                        self.ctx.error(
                            codes::E0222,
                            format!("`{}` already has a different lagged copy", callee.name),
                            kspan,
                            "one lagged copy per named call",
                        );
                        return Val::Poison;
                    }
                    Some(i) => Some(i),
                    None => {
                        self.graph.lags.push(Lag {
                            call: callee.name.clone(),
                            kind,
                            pairs: Vec::new(),
                        });
                        Some(self.graph.lags.len() - 1)
                    }
                }
            }
        };
        let mut all = tensors;
        all.extend(nc.attrs.iter().cloned());
        self.share = Some(Share {
            name: callee.name.clone(),
            call: nc.clone(),
            span,
            lag: lag_index,
            failed: false,
        });
        let name_arg = Some((Val::Str(callee.name.clone()), span, span));
        let out = self.call_evaluated_named(&nc.callee, all, None, span, scope, name_arg);
        let share = self.share.take();
        if share.is_some_and(|s| s.failed) {
            return Val::Poison;
        }
        out
    }

    /// `copy(every: N steps)` or `ema(decay)`.
    fn lag_kind(&mut self, e: &Expr) -> Option<LagKind> {
        let v = const_eval(self.ctx, e);
        let bad = |ctx: &mut Ctx| {
            ctx.error(
                codes::E0201,
                "expected `copy(every: N steps)` or `ema(DECAY)`",
                e.span,
                "not a lagged-weights setting",
            );
        };
        let Val::Sym(Sym {
            name,
            args: Some(args),
            ..
        }) = v
        else {
            bad(self.ctx);
            return None;
        };
        let arg = |key: &str| {
            args.iter()
                .find(|a| a.name.as_ref().is_some_and(|n| n.name == key))
                .or_else(|| args.iter().find(|a| a.name.is_none()))
                .cloned()
        };
        match name.as_str() {
            "copy" => {
                let a = arg("every")?;
                let n = match a.val {
                    Val::Dur {
                        n,
                        unit: ast::DurationUnit::Steps,
                    } => n,
                    Val::Num { v, int: true } => v,
                    _ => {
                        self.ctx.error(
                            codes::E0202,
                            "`every` must be a positive number of steps",
                            a.span,
                            "e.g. `every: 500 steps`",
                        );
                        return None;
                    }
                };
                // Positive and at most `MAX_INT`, as every other count of steps.
                let every = bind::to_int(
                    self.ctx,
                    &Val::Num { v: n, int: true },
                    a.span,
                    "every",
                    table::Range::Positive,
                )?;
                Some(LagKind::Copy {
                    every: every as u64,
                })
            }
            "ema" => {
                let a = arg("decay")?;
                let d = bind::to_float(self.ctx, &a.val, a.span, "decay", table::Range::Any)?;
                if !(0.0..1.0).contains(&d) {
                    self.ctx.error(
                        codes::E0202,
                        "`ema` decay must be in [0, 1)",
                        a.span,
                        format!("found {d}"),
                    );
                    return None;
                }
                Some(LagKind::Ema { decay: d })
            }
            _ => {
                bad(self.ctx);
                None
            }
        }
    }

    fn unknown_callee(&mut self, callee: &Ident) {
        let blocks: Vec<&str> = self.items.blocks.keys().map(|s| s.as_str()).collect();
        let candidates = table::TABLE
            .iter()
            .filter(|s| s.kind == Kind::Layer || s.kind == Kind::Function)
            .map(|s| s.name)
            .chain(blocks.iter().copied());
        let what = if callee.name.starts_with(|c: char| c.is_ascii_uppercase()) {
            "layer"
        } else {
            "function or block"
        };
        let mut d = Diagnostic::error(codes::E0101, format!("unknown {what} `{}`", callee.name))
            .with_primary(
                callee.span,
                "not a built-in layer, function or block in this file",
            );
        if let Some(s) = suggest(&callee.name, candidates) {
            d = d.with_help(format!("did you mean `{s}`?"));
        }
        if table::lookup(Kind::Initializer, &callee.name).is_some() {
            d = d.with_note(format!(
                "`{}` is an initialiser; pass it as `init: {}`",
                callee.name, callee.name
            ));
        }
        self.ctx.emit(d);
    }

    fn call_evaluated(
        &mut self,
        callee: &Ident,
        args: Vec<SymArg>,
        piped: Option<Val>,
        span: Span,
        scope: &mut Scope,
    ) -> Val {
        self.call_evaluated_named(callee, args, piped, span, scope, None)
    }

    /// As `call_evaluated`; `forced_name` replaces a `name:` argument (a shared call runs under
    /// the named call's name).
    fn call_evaluated_named(
        &mut self,
        callee: &Ident,
        args: Vec<SymArg>,
        piped: Option<Val>,
        span: Span,
        scope: &mut Scope,
        forced_name: Option<(Val, Span, Span)>,
    ) -> Val {
        // Tensor inputs: the piped value, then the leading positional tensor arguments.
        let mut poisoned = false;
        let mut tensors: Vec<(Tv, Span)> = Vec::new();
        let mut tensor_count = 0;
        match piped {
            Some(Val::Tensor(t)) => {
                let origin = t.origin;
                tensors.push((t, origin));
                tensor_count += 1;
            }
            Some(_) => {
                poisoned = true;
                tensor_count += 1;
            }
            None => {}
        }
        let piped_poison = poisoned;
        let mut rest = Vec::new();
        let mut name_arg: Option<(Val, Span, Span)> = forced_name;
        let mut leading = true;
        for a in args {
            if matches!(&a.name, Some(n) if n.name == "name") {
                let key_span = a.name.as_ref().map(|n| n.span).unwrap_or(a.span);
                name_arg = Some((a.val, a.span, key_span));
                continue;
            }
            if leading && a.name.is_none() {
                match a.val {
                    Val::Tensor(t) => {
                        tensors.push((t, a.span));
                        tensor_count += 1;
                        continue;
                    }
                    Val::Poison => {
                        // Unknown whether it was a tensor: nothing downstream can be checked.
                        poisoned = true;
                        continue;
                    }
                    _ => leading = false,
                }
            }
            if matches!(a.val, Val::Poison) {
                poisoned = true;
            }
            rest.push(a);
        }
        // A failed positional argument may have been a tensor: the arguments cannot be matched.
        if poisoned && !piped_poison {
            return Val::Poison;
        }
        // A call named at model scope can be called again by its name (9.1).
        let register = match &name_arg {
            Some((Val::Str(n), _, _))
                if scope.prefix.is_empty() && self.share.is_none() && !poisoned =>
            {
                Some((
                    n.clone(),
                    NamedCall {
                        callee: callee.clone(),
                        attrs: rest.clone(),
                        span,
                        input_shapes: tensors
                            .iter()
                            .map(|(t, _)| (t.dtype, t.shape.clone()))
                            .collect(),
                    },
                ))
            }
            _ => None,
        };
        let out = self.dispatch_call(
            callee,
            tensors,
            tensor_count,
            rest,
            name_arg,
            poisoned,
            span,
            scope,
        );
        if let (Some((n, nc)), Val::Tensor(_)) = (register, &out) {
            self.named.insert(n, nc);
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn dispatch_call(
        &mut self,
        callee: &Ident,
        tensors: Vec<(Tv, Span)>,
        tensor_count: usize,
        rest: Vec<SymArg>,
        name_arg: Option<(Val, Span, Span)>,
        poisoned: bool,
        span: Span,
        scope: &mut Scope,
    ) -> Val {
        if let Some(sig) = table::lookup_callable(&callee.name) {
            self.builtin_call(
                sig,
                tensors,
                tensor_count,
                rest,
                name_arg,
                poisoned,
                span,
                scope,
            )
        } else {
            self.block_call(
                callee,
                tensors,
                tensor_count,
                rest,
                name_arg,
                poisoned,
                span,
                scope,
            )
        }
    }

    fn tensor_count_error(&mut self, what: &str, min: usize, max: usize, found: usize, span: Span) {
        let expected = if min == max {
            format!("{min} tensor input{}", plural(min))
        } else if max == usize::MAX {
            format!("at least {min} tensor inputs")
        } else {
            format!("{min} to {max} tensor inputs")
        };
        self.ctx.emit(
            Diagnostic::error(
                codes::E0204,
                format!("`{what}` takes {expected}, found {found}"),
            )
            .with_primary(span, format!("{found} tensor input{} here", plural(found)))
            .with_note("in a pipeline, the incoming value is the first tensor input"),
        );
    }

    /// Resolves an explicit `name:` or generates the next name of `base` in `scope`. Returns the
    /// local name.
    fn layer_name(
        &mut self,
        scope: &mut Scope,
        base: &str,
        name_arg: Option<(Val, Span, Span)>,
        span: Span,
    ) -> Option<String> {
        match name_arg {
            // A named call running again keeps its name (and its weights' names).
            Some((Val::Str(s), _, _)) if self.share.is_some() && scope.prefix.is_empty() => Some(s),
            Some((Val::Str(s), vspan, _)) => {
                let valid = s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    self.ctx.error(
                        codes::E0201,
                        "a layer name must be an identifier",
                        vspan,
                        format!("{s:?} is not an identifier"),
                    );
                    return None;
                }
                if let Some(prev) = scope.taken.get(&s) {
                    let mut d = Diagnostic::error(
                        codes::E0105,
                        format!("the layer name `{s}` is already used in this scope"),
                    )
                    .with_primary(vspan, "used again here");
                    match prev {
                        // The same text expanded twice: a `repeat` or a block called twice.
                        Some(p) if *p == vspan => {
                            d = d.with_primary(
                                vspan,
                                "this name is given to every copy of the layer",
                            )
                            .with_help(
                                "inside `repeat` or a block used more than once, leave out `name:`: \
                                 the copies are then numbered (`dense`, `dense_1`, ...)",
                            );
                        }
                        Some(p) => d = d.with_secondary(*p, "first used here"),
                        None => {}
                    }
                    self.ctx.emit(d);
                    return None;
                }
                scope.taken.insert(s.clone(), Some(vspan));
                Some(s)
            }
            Some((Val::Poison, _, _)) => None,
            Some((other, vspan, _)) => {
                self.ctx.error(
                    codes::E0201,
                    "`name` must be a string",
                    vspan,
                    format!(
                        "expected a string like \"encoder\", found {}",
                        other.describe()
                    ),
                );
                None
            }
            None => {
                let counter = scope.counters.entry(base.to_string()).or_insert(0);
                let k = *counter;
                *counter += 1;
                let name = if k == 0 {
                    base.to_string()
                } else {
                    format!("{base}_{k}")
                };
                if let Some(Some(explicit)) = scope.taken.get(&name) {
                    let d = Diagnostic::error(
                        codes::E0105,
                        format!("the layer name `{name}` is already used in this scope"),
                    )
                    .with_primary(span, format!("this layer would be named `{name}`"))
                    .with_secondary(*explicit, "taken by this explicit name");
                    self.ctx.emit(d);
                    return None;
                }
                scope.taken.insert(name.clone(), None);
                Some(name)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn builtin_call(
        &mut self,
        sig: &'static Sig,
        tensors: Vec<(Tv, Span)>,
        tensor_count: usize,
        rest: Vec<SymArg>,
        name_arg: Option<(Val, Span, Span)>,
        poisoned: bool,
        span: Span,
        scope: &mut Scope,
    ) -> Val {
        let (min, max) = sig.tensors;
        if !poisoned && (tensor_count < min || tensor_count > max) {
            self.tensor_count_error(sig.name, min, max, tensor_count, span);
            return Val::Poison;
        }
        if sig.kind == Kind::Function {
            if let Some((_, _, key_span)) = &name_arg {
                self.ctx.error(
                    codes::E0103,
                    format!("the function `{}` takes no `name`", sig.name),
                    *key_span,
                    "functions own no weights, so they are not named",
                );
                return Val::Poison;
            }
        }
        let (pos, named) = bind::split_args(rest);
        let Some(bound) = bind::bind(
            self.ctx,
            sig.name,
            sig.params,
            sig.positional,
            pos,
            named,
            span,
        ) else {
            return Val::Poison;
        };
        if poisoned {
            bound.validate_given(self.ctx);
            return Val::Poison;
        }
        let inputs: Vec<Tv> = tensors.into_iter().map(|(t, _)| t).collect();
        let Some(out) = layers::infer(self.ctx, sig, &bound, &inputs, span) else {
            return Val::Poison;
        };
        match out {
            LayerOut::Int(i) => Val::Num {
                v: i as f64,
                int: true,
            },
            LayerOut::Node {
                op,
                inputs: node_inputs,
                shape,
                dtype,
                params,
                shrink,
            } => {
                let name = if sig.kind == Kind::Layer {
                    match self.layer_name(scope, sig.snake, name_arg, span) {
                        Some(local) => Some(format!("{}{local}", scope.prefix)),
                        None => return Val::Poison,
                    }
                } else {
                    None
                };
                // Keeps every parameter count (and their sum over a model) far from overflow.
                if params
                    .iter()
                    .any(|p| layers::numel(&p.shape).is_none_or(|n| n > MAX_PARAM_ELEMENTS))
                {
                    self.ctx.error(
                        codes::E0210,
                        format!("`{}` would have too many parameters", sig.name),
                        span,
                        format!("more than {MAX_PARAM_ELEMENTS} in one tensor"),
                    );
                    return Val::Poison;
                }
                let node_id = self.graph.nodes.len();
                let mut param_ids = Vec::new();
                if self.share.is_some() {
                    let names: Vec<(String, Vec<usize>)> = params
                        .iter()
                        .map(|p| {
                            (
                                format!("{}.{}", name.as_deref().unwrap_or(""), p.role.suffix()),
                                p.shape.clone(),
                            )
                        })
                        .collect();
                    let Some(ids) = self.shared_params(&names, &inputs, span) else {
                        return Val::Poison;
                    };
                    param_ids = ids;
                }
                for p in params.into_iter().filter(|_| self.share.is_none()) {
                    param_ids.push(self.graph.params.len());
                    self.graph.params.push(ParamInfo {
                        name: format!("{}.{}", name.as_deref().unwrap_or(""), p.role.suffix()),
                        role: p.role,
                        shape: p.shape,
                        init: p.init,
                        trainable: p.trainable,
                        l1: p.l1,
                        l2: p.l2,
                        node: node_id,
                    });
                }
                let node = self.push_node(Node {
                    op,
                    inputs: node_inputs,
                    shape: shape.clone(),
                    dtype,
                    span,
                    name,
                    params: param_ids,
                });
                let inherited = inputs.first().and_then(|t| t.shrink.clone());
                Val::Tensor(Tv {
                    node,
                    shape,
                    dtype,
                    origin: span,
                    shrink: inherited.or(shrink),
                })
            }
        }
    }

    /// The parameters a layer inside a shared call uses: the named call's (or their lagged
    /// copies), found by name; a shape that differs means the new input does not fit.
    fn shared_params(
        &mut self,
        names: &[(String, Vec<usize>)],
        inputs: &[Tv],
        span: Span,
    ) -> Option<Vec<usize>> {
        let share = self.share.as_ref()?;
        if share.failed {
            return None;
        }
        let mut ids = Vec::new();
        for (pname, shape) in names {
            let found = self.graph.params.iter().position(|p| &p.name == pname);
            match found {
                Some(id) if &self.graph.params[id].shape == shape => ids.push(id),
                _ => {
                    let share = self.share.as_mut()?;
                    share.failed = true;
                    let (sname, sspan, call_span) =
                        (share.name.clone(), share.span, share.call.span);
                    let made_for: Vec<String> = share
                        .call
                        .input_shapes
                        .iter()
                        .map(|(d, s)| shape_str(*d, s))
                        .collect();
                    let found_in: Vec<String> = inputs
                        .iter()
                        .map(|t| shape_str(t.dtype, &t.shape))
                        .collect();
                    let mut d = Diagnostic::error(
                        codes::E0220,
                        format!("the shared call `{sname}` gets an input its weights do not fit"),
                    )
                    .with_primary(
                        sspan,
                        format!(
                            "`{sname}` made for {}, called on {}",
                            made_for.join(", "),
                            found_in.join(", ")
                        ),
                    )
                    .with_secondary(call_span, format!("`{sname}` is defined here"));
                    if let Some(id) = found {
                        d = d.with_note(format!(
                            "`{pname}` is {}, this input needs {}",
                            super::values::dims_str(&self.graph.params[id].shape),
                            super::values::dims_str(shape)
                        ));
                    }
                    let _ = span;
                    self.ctx.emit(d);
                    return None;
                }
            }
        }
        let lag = self.share.as_ref()?.lag;
        if let Some(li) = lag {
            let call = self.graph.lags[li].call.clone();
            for id in ids.iter_mut() {
                let existing = self.graph.lags[li]
                    .pairs
                    .iter()
                    .find(|(live, _)| live == id)
                    .map(|p| p.1);
                *id = match existing {
                    Some(l) => l,
                    None => {
                        let live = self.graph.params[*id].clone();
                        let l = self.graph.params.len();
                        self.graph.params.push(ParamInfo {
                            name: format!("lag/{call}/{}", live.name),
                            role: live.role,
                            shape: live.shape,
                            init: Init::CopyOf(*id),
                            trainable: false,
                            l1: 0.0,
                            l2: 0.0,
                            node: live.node,
                        });
                        self.graph.lags[li].pairs.push((*id, l));
                        l
                    }
                };
            }
        }
        Some(ids)
    }

    #[allow(clippy::too_many_arguments)]
    fn block_call(
        &mut self,
        callee: &Ident,
        tensors: Vec<(Tv, Span)>,
        tensor_count: usize,
        rest: Vec<SymArg>,
        name_arg: Option<(Val, Span, Span)>,
        poisoned: bool,
        span: Span,
        scope: &mut Scope,
    ) -> Val {
        let Some(block) = self.items.blocks.get(&callee.name).copied() else {
            return Val::Poison;
        };
        if self.items.recursive.contains(&callee.name) || self.stack.contains(&callee.name) {
            return Val::Poison;
        }
        self.count_expansion();
        if self.too_large {
            return Val::Poison;
        }
        let tensor_params: Vec<&ast::Param> =
            block.params.iter().filter(|p| p.ty.is_none()).collect();
        let attr_params: Vec<&ast::Param> =
            block.params.iter().filter(|p| p.ty.is_some()).collect();
        if !poisoned && tensor_count != tensor_params.len() {
            let n = tensor_params.len();
            self.tensor_count_error(&callee.name, n, n, tensor_count, span);
            return Val::Poison;
        }
        // Attribute arguments: positional in declaration order, then by name.
        let mut slots: Vec<Option<(Val, Span)>> = vec![None; attr_params.len()];
        let mut ok = true;
        let mut unknown_name = false;
        let mut pos_i = 0;
        for a in rest {
            match &a.name {
                None => {
                    if pos_i < attr_params.len() {
                        slots[pos_i] = Some((a.val, a.span));
                        pos_i += 1;
                    } else {
                        ok = false;
                        self.ctx.error(
                            codes::E0207,
                            format!("too many arguments to block `{}`", callee.name),
                            a.span,
                            format!(
                                "`{}` takes {} attribute argument{}",
                                callee.name,
                                attr_params.len(),
                                plural(attr_params.len())
                            ),
                        );
                    }
                }
                Some(key) => match attr_params.iter().position(|p| p.name.name == key.name) {
                    Some(i) if slots[i].is_some() => {
                        ok = false;
                        self.ctx.error(
                            codes::E0105,
                            format!("argument `{}` is given twice", key.name),
                            key.span,
                            "given again here",
                        );
                    }
                    Some(i) => slots[i] = Some((a.val, a.span)),
                    None => {
                        ok = false;
                        unknown_name = true;
                        let mut d = Diagnostic::error(
                            codes::E0103,
                            format!("block `{}` has no parameter `{}`", callee.name, key.name),
                        )
                        .with_primary(key.span, "unknown argument")
                        .with_secondary(block.name.span, "block defined here");
                        if let Some(s) =
                            suggest(&key.name, attr_params.iter().map(|p| p.name.name.as_str()))
                        {
                            d = d.with_help(format!("did you mean `{s}`?"));
                        }
                        self.ctx.emit(d);
                    }
                },
            }
        }
        let mut env = Env::default();
        // The block's names replace the caller's in `ctx.locals` until the call returns.
        let saved_locals = std::mem::take(&mut self.ctx.locals);
        for (t, p) in tensors.into_iter().zip(&tensor_params) {
            self.bind(&mut env, &p.name, Val::Tensor(t.0), false);
        }
        for (slot, p) in slots.into_iter().zip(&attr_params) {
            let Some(ty) = &p.ty else { continue };
            let (val, vspan) = match slot {
                Some(v) => v,
                None => match &p.default {
                    Some(d) => (const_eval(self.ctx, d), d.span),
                    None => {
                        ok = false;
                        if unknown_name {
                            continue;
                        }
                        self.ctx.emit(
                            Diagnostic::error(
                                codes::E0206,
                                format!(
                                    "block `{}` needs the argument `{}`",
                                    callee.name, p.name.name
                                ),
                            )
                            .with_primary(span, format!("`{}` is missing", p.name.name))
                            .with_secondary(p.span, "parameter declared here"),
                        );
                        continue;
                    }
                },
            };
            let name = p.name.name.as_str();
            let checked = match ty.kind {
                ParamTyKind::Int => bind::to_int(self.ctx, &val, vspan, name, table::Range::Any)
                    .map(|i| Val::Num {
                        v: i as f64,
                        int: true,
                    }),
                ParamTyKind::Float => {
                    bind::to_float(self.ctx, &val, vspan, name, table::Range::Any)
                        .map(|v| Val::Num { v, int: false })
                }
                ParamTyKind::Bool => bind::to_bool(self.ctx, &val, vspan, name).map(Val::Bool),
                ParamTyKind::Ident => match &val {
                    Val::Sym(Sym { args: None, .. }) => Some(val.clone()),
                    Val::Poison => None,
                    other => {
                        bind::type_error(self.ctx, name, table::Ty::Ident, other, vspan);
                        None
                    }
                },
            };
            match checked {
                Some(v) => self.bind(&mut env, &p.name, v, false),
                None => {
                    ok = false;
                    self.bind(&mut env, &p.name, Val::Poison, false);
                }
            }
        }
        if !ok || poisoned || !self.enter(span) {
            self.ctx.locals = saved_locals;
            return Val::Poison;
        }
        let Some(local) = self.layer_name(scope, &callee.name, name_arg, span) else {
            self.ctx.locals = saved_locals;
            self.depth -= 1;
            return Val::Poison;
        };
        let mut inner = Scope::new(format!("{}{local}/", scope.prefix));
        let note = format!(
            "while expanding `{}` at {}",
            self.ctx.snippet(span),
            self.ctx.location(span.start)
        );
        self.ctx.expansion_notes.push(note);
        self.stack.push(callee.name.clone());
        let mut result = None;
        let saved_later = self.later;
        for (i, stmt) in block.body.iter().enumerate() {
            self.later = &block.body[i..];
            match stmt {
                Stmt::Let { name, value, .. } => {
                    let v = self.eval(value, &mut env, &mut inner);
                    self.bind_let(&mut env, name, v);
                }
                Stmt::Return { value, .. } => {
                    let v = self.eval(value, &mut env, &mut inner);
                    if result.is_some() {
                        self.ctx.error(
                            codes::E0218,
                            "a block returns once",
                            stmt.span(),
                            "second `return`",
                        );
                    } else {
                        result = Some((v, value.span));
                    }
                }
                Stmt::Input { span, .. }
                | Stmt::Target { span, .. }
                | Stmt::Output { span, .. } => self.ctx.error(
                    codes::E0218,
                    "`input` and `output` belong in a model",
                    *span,
                    "a block takes parameters and ends with `return`",
                ),
            }
        }
        if result.is_none() {
            self.ctx.error(
                codes::E0218,
                format!("block `{}` has no `return`", callee.name),
                block.name.span,
                "end the block with `return EXPR`",
            );
        }
        self.warn_unused(&env);
        self.later = saved_later;
        self.ctx.locals = saved_locals;
        let out = match result {
            Some((v, vspan)) => match v {
                Val::Tensor(t) => Val::Tensor(t),
                Val::Poison => Val::Poison,
                other => {
                    self.ctx.error(
                        codes::E0215,
                        "a block must return a tensor",
                        vspan,
                        format!("found {}", other.describe()),
                    );
                    Val::Poison
                }
            },
            None => Val::Poison,
        };
        self.stack.pop();
        self.ctx.expansion_notes.pop();
        self.depth -= 1;
        out
    }
}

/// Evaluates a `train` objective or (with `metric`) a metric expression (language.md 9.3)
/// against a checked model's named values, adding its nodes to `graph`. Layers and blocks are
/// refused.
pub fn eval_objective(
    ctx: &mut Ctx,
    items: &Items,
    graph: &mut ModelGraph,
    e: &Expr,
    metric: bool,
) -> Val {
    let mut env = Env::default();
    for (name, node) in &graph.values {
        let n = &graph.nodes[*node];
        env.order.push(name.clone());
        env.vars.insert(
            name.clone(),
            Binding {
                val: Val::Tensor(Tv {
                    node: *node,
                    shape: n.shape.clone(),
                    dtype: n.dtype,
                    origin: n.span,
                    shrink: None,
                }),
                span: n.span,
                is_let: false,
                used: true,
            },
        );
    }
    let name_span = graph.span;
    let mut ex = Expander {
        ctx,
        items,
        graph: std::mem::take(graph),
        stack: Vec::new(),
        too_large: false,
        expanded: 0,
        depth: 0,
        name_span,
        later: &[],
        named: HashMap::new(),
        share: None,
        objective_only: true,
        metric,
    };
    ex.ctx.locals = env.order.clone();
    let mut scope = Scope::new(String::new());
    let v = ex.eval(e, &mut env, &mut scope);
    *graph = ex.graph;
    v
}

/// Every bare name and call argument name used in `e` (without recursion limits: the parser
/// bounds the depth).
fn names_in(e: &Expr, out: &mut Vec<String>) {
    match &e.kind {
        ExprKind::Name(n) => out.push(n.name.clone()),
        ExprKind::Call { args, .. } => args.iter().for_each(|a| names_in(&a.value, out)),
        ExprKind::Pipe { lhs, stage } => {
            names_in(lhs, out);
            names_in(stage, out);
        }
        ExprKind::Binary { lhs, rhs, .. } => {
            names_in(lhs, out);
            names_in(rhs, out);
        }
        ExprKind::Neg(x) | ExprKind::Paren(x) => names_in(x, out),
        ExprKind::List(xs) => xs.iter().for_each(|x| names_in(x, out)),
        ExprKind::Dict(es) | ExprKind::Step { body: es, .. } => {
            es.iter().for_each(|en| names_in(&en.value, out))
        }
        _ => {}
    }
}

fn overlaps(a: Span, b: Span) -> bool {
    a.start < b.end && b.start < a.end
}

/// NumPy broadcasting of two per-sample shapes.
pub fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i < n - a.len() {
            1
        } else {
            a[i - (n - a.len())]
        };
        let db = if i < n - b.len() {
            1
        } else {
            b[i - (n - b.len())]
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return None;
        };
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::broadcast;

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(broadcast(&[3, 4], &[4]), Some(vec![3, 4]));
        assert_eq!(broadcast(&[3, 1], &[1, 5]), Some(vec![3, 5]));
        assert_eq!(broadcast(&[32, 32, 64], &[28, 28, 64]), None);
        assert_eq!(broadcast(&[2], &[3]), None);
    }
}
