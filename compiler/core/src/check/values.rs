//! Checked values and constant folding.
//!
//! Every expression evaluates to a [`Val`]. Numbers fold in f64 with real division; a bare
//! identifier that is not bound stays symbolic (`relu`, `same`, `he_normal`) until the argument it
//! binds to says what it must be. [`Val::Poison`] marks a value that already failed to check:
//! whatever consumes it reports nothing more.

use super::Ctx;
use crate::graph::{DType, NodeId};
use fm_codes as codes;
use fm_grammar::ast::{BinOp, DurationUnit, Expr, ExprKind, Ident, Span};

/// A tensor value inside a model: a graph node with its per-sample shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Tv {
    pub node: NodeId,
    pub shape: Vec<usize>,
    pub dtype: DType,
    /// The expression that produced it (for "the shape came from here" labels).
    pub origin: Span,
    /// The first layer on its path whose `valid` padding shrank the spatial size, with a message
    /// saying so (the secondary label of a later shape mismatch).
    pub shrink: Option<(Span, String)>,
}

/// A symbolic value: a bare identifier (`relu`) or a call of a non-tensor built-in
/// (`uniform(-0.1, 0.1)`, `Adam(lr: 1e-3)`, `idx("a", "b")`).
#[derive(Clone, Debug, PartialEq)]
pub struct Sym {
    pub name: String,
    pub name_span: Span,
    /// `None` for a bare identifier.
    pub args: Option<Vec<SymArg>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SymArg {
    pub name: Option<Ident>,
    pub val: Val,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Tensor(Tv),
    Num {
        v: f64,
        /// Written (or folded from) integers only.
        int: bool,
    },
    Bool(bool),
    Str(String),
    Sym(Sym),
    List(Vec<(Val, Span)>),
    Dict(Vec<(Ident, Val, Span)>),
    Dur {
        n: f64,
        unit: DurationUnit,
    },
    /// Already reported; consumers stay silent.
    Poison,
}

impl Val {
    /// "a tensor f32[28, 28]", "the number 2.5", ... for "expected X, found Y" messages.
    pub fn describe(&self) -> String {
        match self {
            Val::Tensor(t) => format!("a tensor {}", shape_str(t.dtype, &t.shape)),
            Val::Num { v, .. } => format!("the number {}", num_str(*v)),
            Val::Bool(b) => format!("`{b}`"),
            Val::Str(s) => format!("the string {s:?}"),
            Val::Sym(s) if s.args.is_none() => format!("the name `{}`", s.name),
            Val::Sym(s) => format!("a call of `{}`", s.name),
            Val::List(_) => "a list".into(),
            Val::Dict(_) => "a dictionary".into(),
            Val::Dur { .. } => "a duration".into(),
            Val::Poison => "an invalid value".into(),
        }
    }
}

/// `f32[28, 28, 1]`
pub fn shape_str(dtype: DType, shape: &[usize]) -> String {
    format!("{}{}", dtype.name(), dims_str(shape))
}

/// `[28, 28, 1]`
pub fn dims_str(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", dims.join(", "))
}

/// Shortest form of a number: `3`, `0.5`, `0.001`.
pub fn num_str(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Folds `a op b` over numbers. `None` with a message when it cannot.
pub fn fold_binary(op: BinOp, a: f64, a_int: bool, b: f64, b_int: bool) -> Result<Val, String> {
    let v = match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div => {
            if b == 0.0 {
                return Err("division by zero".into());
            }
            a / b
        }
    };
    if !v.is_finite() {
        return Err("the result is not a finite number".into());
    }
    // Real division: `1 / 255` is a float; `6 / 3` is still integral.
    let int = a_int && b_int && (op != BinOp::Div || v == v.trunc());
    Ok(Val::Num { v, int })
}

/// Evaluates an expression that cannot involve tensors (train and data sections, block-parameter
/// defaults). Identifiers stay symbolic.
pub fn const_eval(ctx: &mut Ctx, e: &Expr) -> Val {
    match &e.kind {
        ExprKind::Number { value, is_int, .. } => Val::Num {
            v: *value,
            int: *is_int,
        },
        ExprKind::Str(s) => Val::Str(s.clone()),
        ExprKind::Bool(b) => Val::Bool(*b),
        ExprKind::Name(id) => Val::Sym(Sym {
            name: id.name.clone(),
            name_span: id.span,
            args: None,
        }),
        ExprKind::Call { callee, args } => {
            let args = args
                .iter()
                .map(|a| SymArg {
                    name: a.name.clone(),
                    val: const_eval(ctx, &a.value),
                    span: a.span,
                })
                .collect();
            Val::Sym(Sym {
                name: callee.name.clone(),
                name_span: callee.span,
                args: Some(args),
            })
        }
        ExprKind::Binary { op, lhs, rhs } => {
            let a = const_eval(ctx, lhs);
            let b = const_eval(ctx, rhs);
            fold_or_report(ctx, *op, a, lhs.span, b, rhs.span, e.span)
        }
        ExprKind::Neg(inner) => match const_eval(ctx, inner) {
            Val::Num { v, int } => Val::Num { v: -v, int },
            Val::Poison => Val::Poison,
            other => {
                ctx.error(
                    codes::E0201,
                    "cannot negate a value that is not a number",
                    e.span,
                    format!("this is {}", other.describe()),
                );
                Val::Poison
            }
        },
        ExprKind::Paren(inner) => const_eval(ctx, inner),
        ExprKind::List(items) => {
            Val::List(items.iter().map(|i| (const_eval(ctx, i), i.span)).collect())
        }
        ExprKind::Dict(entries) => Val::Dict(
            entries
                .iter()
                .map(|en| (en.key.clone(), const_eval(ctx, &en.value), en.value.span))
                .collect(),
        ),
        ExprKind::Duration { value, unit } => match const_eval(ctx, value) {
            Val::Num { v, .. } => Val::Dur { n: v, unit: *unit },
            Val::Poison => Val::Poison,
            other => {
                ctx.error(
                    codes::E0201,
                    "a duration needs a number",
                    value.span,
                    format!("expected a number, found {}", other.describe()),
                );
                Val::Poison
            }
        },
        ExprKind::Step { name, .. } => {
            ctx.error(
                codes::E0215,
                format!("`step {}` is only allowed in a `train` section", name.name),
                e.span,
                "a step holds `update:`, `loss:` and `optimizer:` of a training step",
            );
            Val::Poison
        }
        ExprKind::Pipe { .. } | ExprKind::Repeat { .. } => {
            ctx.error(
                codes::E0215,
                "a pipeline is not allowed here",
                e.span,
                "expected a constant value",
            );
            Val::Poison
        }
    }
}

/// Folds numbers; reports anything else. Tensors never reach here.
pub fn fold_or_report(
    ctx: &mut Ctx,
    op: BinOp,
    a: Val,
    a_span: Span,
    b: Val,
    b_span: Span,
    span: Span,
) -> Val {
    match (&a, &b) {
        (Val::Poison, _) | (_, Val::Poison) => Val::Poison,
        (Val::Num { v: x, int: xi }, Val::Num { v: y, int: yi }) => {
            match fold_binary(op, *x, *xi, *y, *yi) {
                Ok(v) => v,
                Err(msg) => {
                    ctx.error(
                        codes::E0201,
                        format!("cannot fold `{}`", op.symbol()),
                        span,
                        msg,
                    );
                    Val::Poison
                }
            }
        }
        _ => {
            let (bad, bad_span) = if matches!(a, Val::Num { .. }) {
                (&b, b_span)
            } else {
                (&a, a_span)
            };
            ctx.error(
                codes::E0201,
                format!("`{}` needs numbers or tensors", op.symbol()),
                bad_span,
                format!("found {}", bad.describe()),
            );
            Val::Poison
        }
    }
}
