//! Evaluating model bodies into layer graphs: name resolution inside models and blocks, block
//! expansion with per-call weights, `repeat`, naming scopes (language.md section 7), tensor
//! argument classification and elementwise arithmetic with broadcasting.

use super::bind::{self, plural};
use super::items::Items;
use super::layers::{self, LayerOut};
use super::limits::{self, MAX_DEPTH, MAX_NODES};
use super::table::{self, Kind, Sig};
use super::values::{const_eval, fold_or_report, shape_str, Sym, SymArg, Tv, Val};
use super::{suggest, Ctx};
use crate::graph::{DType, InputInfo, ModelGraph, Node, Op, OutputInfo, ParamInfo};
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
                },
                stack: Vec::new(),
                too_large: false,
                expanded: 0,
                depth: 0,
                name_span: m.name.span,
                later: &[],
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
                    name, dtype, dims, ..
                } => self.input(&mut env, name, dtype, dims),
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
        if self.graph.inputs.is_empty() && !m.body.iter().any(|s| matches!(s, Stmt::Input { .. })) {
            self.ctx.error(
                codes::E0218,
                format!("model `{}` has no input", m.name.name),
                m.name.span,
                "declare one, e.g. `input x: f32[10]`",
            );
        }
        self.warn_unused(&env);
    }

    fn input(&mut self, env: &mut Env, name: &Ident, dtype: &Ident, dims: &[Expr]) {
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
        if dims.is_empty() {
            self.ctx.error(
                codes::E0201,
                "an input needs at least one dimension",
                name.span,
                "declare its per-sample shape, e.g. `f32[10]`",
            );
            ok = false;
        }
        let val = match (ok, dt) {
            (true, Some(dtype)) => {
                let index = self.graph.inputs.len();
                let node = self.push_node(Node {
                    op: Op::Input { index },
                    inputs: Vec::new(),
                    shape: shape.clone(),
                    dtype,
                    span: name.span,
                    name: Some(name.name.clone()),
                    params: Vec::new(),
                });
                self.graph.inputs.push(InputInfo {
                    name: name.name.clone(),
                    dtype,
                    shape: shape.clone(),
                    node,
                    span: name.span,
                });
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
        self.graph.nodes.len() - 1
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
            ExprKind::Dict(_) | ExprKind::Duration { .. } => {
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

    fn call(
        &mut self,
        callee: &Ident,
        args: &[Arg],
        piped: Option<Val>,
        span: Span,
        env: &mut Env,
        scope: &mut Scope,
    ) -> Val {
        if table::lookup_callable(&callee.name).is_none()
            && !self.items.blocks.contains_key(&callee.name)
        {
            // Still check the arguments: their errors are independent.
            let _ = self.eval_args(args, env, scope);
            self.unknown_callee(callee);
            return Val::Poison;
        }
        let vals = self.eval_args(args, env, scope);
        self.call_evaluated(callee, vals, piped, span, scope)
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
        let mut name_arg: Option<(Val, Span, Span)> = None;
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
                for p in params {
                    param_ids.push(self.graph.params.len());
                    self.graph.params.push(ParamInfo {
                        name: format!("{}.{}", name.as_deref().unwrap_or(""), p.suffix),
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
                Stmt::Input { span, .. } | Stmt::Output { span, .. } => self.ctx.error(
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
