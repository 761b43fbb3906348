//! The functions of objective expressions (language.md 9.3), also usable in `let` and `output`
//! expressions: every loss called as `loss(prediction, target)`, `sum`/`mean`/`max`/`min`,
//! `dot`, `pick`, the elementwise `log exp abs square sqrt softplus sigmoid log_sigmoid
//! stop_gradient`, and `clip`. Each call becomes one graph node with a per-sample shape.

use super::bind::to_int;
use super::table::{self, LossFn, MetricFn, Range};
use super::values::{shape_str, Sym, SymArg, Tv, Val};
use super::Ctx;
use crate::graph::{DType, Func, HitKind, Op, Reduction};
use fm_codes as codes;
use fm_grammar::ast::Span;
use fm_grammar::Diagnostic;

/// An operand of a function node: a tensor, or a number to be made a constant node.
#[derive(Clone, Debug)]
pub enum Operand {
    Tensor(Tv),
    Number(f64),
}

/// What a function call becomes.
pub struct FuncNode {
    pub op: Op,
    pub inputs: Vec<Operand>,
    pub shape: Vec<usize>,
}

const LOSSES: &[&str] = LossFn::NAMES;

/// True for the names this module handles (`sigmoid` and `softplus` are also activation
/// functions and are handled as such where a layer table entry exists).
pub fn is_function(name: &str) -> bool {
    LOSSES.contains(&name)
        || matches!(
            name,
            "sum" | "mean" | "max" | "min" | "dot" | "pick" | "clip"
        )
        || Func::from_name(name).is_some()
}

/// Checks one call. `args` are the evaluated arguments (a piped value first).
pub fn infer(ctx: &mut Ctx, name: &str, args: Vec<SymArg>, span: Span) -> Option<FuncNode> {
    let mut pos: Vec<(Val, Span)> = Vec::new();
    let mut named: Vec<SymArg> = Vec::new();
    for a in args {
        if matches!(a.val, Val::Poison) {
            return None;
        }
        match a.name {
            None => pos.push((a.val, a.span)),
            Some(_) => named.push(a),
        }
    }
    let operand = |ctx: &mut Ctx, v: &(Val, Span), what: &str| -> Option<Operand> {
        match &v.0 {
            Val::Tensor(t) => Some(Operand::Tensor(t.clone())),
            Val::Num { v: n, .. } => Some(Operand::Number(*n)),
            other => {
                ctx.error(
                    codes::E0215,
                    format!("`{name}` expects a tensor or a number as {what}"),
                    v.1,
                    format!("found {}", other.describe()),
                );
                None
            }
        }
    };
    let tensor = |ctx: &mut Ctx, v: &(Val, Span), what: &str| -> Option<Tv> {
        match &v.0 {
            Val::Tensor(t) => Some(t.clone()),
            other => {
                ctx.error(
                    codes::E0215,
                    format!("`{name}` expects a tensor as {what}"),
                    v.1,
                    format!("found {}", other.describe()),
                );
                None
            }
        }
    };
    let arity = |ctx: &mut Ctx, n: usize, usage: &str| -> bool {
        if pos.len() != n {
            ctx.emit(
                Diagnostic::error(
                    codes::E0204,
                    format!(
                        "`{name}` takes {n} argument{}, found {}",
                        if n == 1 { "" } else { "s" },
                        pos.len()
                    ),
                )
                .with_primary(span, format!("{} given here", pos.len()))
                .with_help(format!("write `{usage}`")),
            );
            return false;
        }
        true
    };
    let no_named = |ctx: &mut Ctx, named: &[SymArg], allowed: &[&str]| -> bool {
        for a in named {
            let key = a.name.as_ref().map(|n| n.name.as_str()).unwrap_or("");
            if !allowed.contains(&key) {
                let n = a.name.as_ref().unwrap();
                ctx.error(
                    codes::E0103,
                    format!("`{name}` has no argument `{key}`"),
                    n.span,
                    if allowed.is_empty() {
                        "it takes no named arguments".to_string()
                    } else {
                        format!("expected {}", allowed.join(", "))
                    },
                );
                return false;
            }
        }
        true
    };
    let need_f32 = |ctx: &mut Ctx, t: &Tv, s: Span| -> bool {
        if t.dtype != DType::F32 {
            ctx.error(
                codes::E0209,
                format!("`{name}` needs an f32 tensor"),
                s,
                format!("found {}", shape_str(t.dtype, &t.shape)),
            );
            return false;
        }
        true
    };

    if LOSSES.contains(&name) {
        if !arity(ctx, 2, &format!("{name}(prediction, target)")) {
            return None;
        }
        // The loss's own settings (`delta`, `from_logits`) bind as for `loss: NAME(...)`.
        let sym = Val::Sym(Sym {
            name: name.to_string(),
            name_span: span,
            args: Some(named),
        });
        let loss = super::train::loss_of(ctx, &sym, span)?;
        let pred = tensor(ctx, &pos[0], "the prediction")?;
        if !need_f32(ctx, &pred, pos[0].1) {
            return None;
        }
        let target = operand(ctx, &pos[1], "the target")?;
        let sparse = matches!(
            loss,
            fm_runtime::config::Loss::SparseCategoricalCrossentropy { .. }
        );
        if let Operand::Tensor(t) = &target {
            let fits = if sparse {
                t.dtype == DType::I32
                    && pred.shape.split_last().map(|(_, r)| r) == Some(&t.shape[..])
            } else {
                t.dtype == DType::F32
                    && super::expand::broadcast(&pred.shape, &t.shape).as_deref()
                        == Some(&pred.shape[..])
            };
            if !fits {
                let want = if sparse {
                    format!(
                        "i32{}",
                        super::values::dims_str(pred.shape.split_last().map_or(&[][..], |x| x.1))
                    )
                } else {
                    shape_str(DType::F32, &pred.shape)
                };
                ctx.emit(
                    Diagnostic::error(
                        codes::E0203,
                        format!("the target of `{name}` does not fit its prediction"),
                    )
                    .with_primary(
                        pos[1].1,
                        format!("expected {want}, found {}", shape_str(t.dtype, &t.shape)),
                    )
                    .with_secondary(
                        pos[0].1,
                        format!("the prediction is {}", shape_str(pred.dtype, &pred.shape)),
                    ),
                );
                return None;
            }
        } else if sparse {
            ctx.error(
                codes::E0209,
                format!("`{name}` needs integer class targets"),
                pos[1].1,
                "a number cannot be a class index tensor",
            );
            return None;
        }
        if pred.shape.is_empty() && sparse {
            ctx.error(
                codes::E0201,
                format!("`{name}` needs class scores on a last axis"),
                pos[0].1,
                "found a per-sample scalar",
            );
            return None;
        }
        return Some(FuncNode {
            op: Op::Loss(loss),
            inputs: vec![Operand::Tensor(pred), target],
            shape: vec![],
        });
    }

    match name {
        "sum" | "mean" | "max" | "min" => {
            if !arity(ctx, 1, &format!("{name}(x, axis: -1)")) || !no_named(ctx, &named, &["axis"])
            {
                return None;
            }
            let x = tensor(ctx, &pos[0], "its argument")?;
            if !need_f32(ctx, &x, pos[0].1) {
                return None;
            }
            let rank = x.shape.len();
            let mut axes: Vec<usize> = Vec::new();
            match named.first() {
                None => axes = (0..rank).collect(),
                Some(a) => {
                    let items: Vec<(Val, Span)> = match &a.val {
                        Val::List(l) => l.clone(),
                        v => vec![(v.clone(), a.span)],
                    };
                    for (v, s) in items {
                        let i = to_int(ctx, &v, s, "axis", Range::Any)?;
                        let r = rank as i64;
                        if i < -r || i >= r {
                            ctx.error(
                                codes::E0202,
                                format!("axis {i} is out of range"),
                                s,
                                format!(
                                    "the value has {rank} per-sample axes (the batch cannot be reduced)"
                                ),
                            );
                            return None;
                        }
                        axes.push(if i < 0 { (i + r) as usize } else { i as usize });
                    }
                }
            }
            axes.sort_unstable();
            axes.dedup();
            let shape = x
                .shape
                .iter()
                .enumerate()
                .filter(|(i, _)| !axes.contains(i))
                .map(|(_, &d)| d)
                .collect();
            let op = match name {
                "sum" => Reduction::Sum,
                "mean" => Reduction::Mean,
                "max" => Reduction::Max,
                _ => Reduction::Min,
            };
            Some(FuncNode {
                op: Op::Reduce { op, axes },
                inputs: vec![Operand::Tensor(x)],
                shape,
            })
        }
        "dot" => {
            if !arity(ctx, 2, "dot(a, b)") || !no_named(ctx, &named, &[]) {
                return None;
            }
            let a = tensor(ctx, &pos[0], "its first argument")?;
            let b = tensor(ctx, &pos[1], "its second argument")?;
            if !need_f32(ctx, &a, pos[0].1) || !need_f32(ctx, &b, pos[1].1) {
                return None;
            }
            let Some(mut shape) = super::expand::broadcast(&a.shape, &b.shape) else {
                ctx.error(
                    codes::E0203,
                    "shapes do not match in `dot`",
                    span,
                    format!(
                        "cannot combine {} and {}",
                        shape_str(a.dtype, &a.shape),
                        shape_str(b.dtype, &b.shape)
                    ),
                );
                return None;
            };
            if shape.pop().is_none() {
                ctx.error(
                    codes::E0201,
                    "`dot` needs a last axis",
                    span,
                    "both operands are per-sample scalars",
                );
                return None;
            }
            Some(FuncNode {
                op: Op::Dot,
                inputs: vec![Operand::Tensor(a), Operand::Tensor(b)],
                shape,
            })
        }
        "pick" => {
            if !arity(ctx, 2, "pick(x, index)") || !no_named(ctx, &named, &[]) {
                return None;
            }
            let x = tensor(ctx, &pos[0], "its first argument")?;
            let i = tensor(ctx, &pos[1], "the index")?;
            if !need_f32(ctx, &x, pos[0].1) {
                return None;
            }
            let Some((_, rest)) = x.shape.split_last() else {
                ctx.error(
                    codes::E0201,
                    "`pick` needs a last axis to pick from",
                    pos[0].1,
                    "found a per-sample scalar",
                );
                return None;
            };
            if i.dtype != DType::I32 || i.shape != rest {
                ctx.emit(
                    Diagnostic::error(codes::E0203, "the index of `pick` does not fit")
                        .with_primary(
                            pos[1].1,
                            format!(
                                "expected i32{}, found {}",
                                super::values::dims_str(rest),
                                shape_str(i.dtype, &i.shape)
                            ),
                        )
                        .with_secondary(
                            pos[0].1,
                            format!("picking from {}", shape_str(x.dtype, &x.shape)),
                        ),
                );
                return None;
            }
            let shape = rest.to_vec();
            Some(FuncNode {
                op: Op::Pick,
                inputs: vec![Operand::Tensor(x), Operand::Tensor(i)],
                shape,
            })
        }
        "clip" => {
            if !arity(ctx, 3, "clip(x, lo, hi)") || !no_named(ctx, &named, &[]) {
                return None;
            }
            let x = tensor(ctx, &pos[0], "its first argument")?;
            if !need_f32(ctx, &x, pos[0].1) {
                return None;
            }
            let lo = super::bind::to_float(ctx, &pos[1].0, pos[1].1, "lo", Range::Any)?;
            let hi = super::bind::to_float(ctx, &pos[2].0, pos[2].1, "hi", Range::Any)?;
            if lo > hi {
                ctx.error(
                    codes::E0202,
                    "`clip` needs lo <= hi",
                    span,
                    format!("found lo = {lo}, hi = {hi}"),
                );
                return None;
            }
            let shape = x.shape.clone();
            Some(FuncNode {
                op: Op::Clip { lo, hi },
                inputs: vec![Operand::Tensor(x)],
                shape,
            })
        }
        _ => {
            let f = Func::from_name(name)?;
            if !arity(ctx, 1, &format!("{name}(x)")) || !no_named(ctx, &named, &[]) {
                return None;
            }
            let x = tensor(ctx, &pos[0], "its argument")?;
            if !need_f32(ctx, &x, pos[0].1) {
                return None;
            }
            let shape = x.shape.clone();
            Some(FuncNode {
                op: Op::Func(f),
                inputs: vec![Operand::Tensor(x)],
                shape,
            })
        }
    }
}

/// The metrics that may be called on model values in a metric list (language.md 9.3:
/// `metrics: [accuracy(logits, label), mean(q)]`): `accuracy` and `top_k` give 1 or 0 per
/// sample (`mse` and `mae` are the losses of the same name).
pub fn is_hit_metric(name: &str) -> bool {
    table::member_named::<MetricFn>(name).is_some_and(|(m, _)| m.is_hit())
}

/// Metrics that are ratios of counts over the whole set rather than means of per-sample
/// values, so they cannot be taken of model values.
pub fn is_count_metric(name: &str) -> bool {
    table::member_named::<MetricFn>(name).is_some_and(|(m, _)| m.is_count())
}

/// Checks `accuracy(prediction, target)` or `top_k(prediction, target, k: K)` in a metric
/// list. The kind of accuracy follows from the target as Keras's does from the loss: an i32
/// class index is sparse, a target of the prediction's shape with a last axis above 1 is
/// one-hot (categorical), and one score per sample (or a number) is binary at 0.5.
pub fn hit(ctx: &mut Ctx, name: &str, args: Vec<SymArg>, span: Span) -> Option<FuncNode> {
    let mut pos: Vec<(Val, Span)> = Vec::new();
    let mut k: Option<(Val, Span)> = None;
    for a in args {
        if matches!(a.val, Val::Poison) {
            return None;
        }
        match &a.name {
            None => pos.push((a.val, a.span)),
            Some(n) if n.name == "k" && name == "top_k" => k = Some((a.val, a.span)),
            Some(n) => {
                ctx.error(
                    codes::E0103,
                    format!("`{name}` has no argument `{}`", n.name),
                    n.span,
                    if name == "top_k" {
                        "expected k"
                    } else {
                        "it takes no named arguments"
                    },
                );
                return None;
            }
        }
    }
    let usage = if name == "top_k" {
        "top_k(prediction, target, k: 5)"
    } else {
        "accuracy(prediction, target)"
    };
    if pos.len() != 2 {
        ctx.emit(
            Diagnostic::error(
                codes::E0204,
                format!("`{name}` takes 2 arguments, found {}", pos.len()),
            )
            .with_primary(span, format!("{} given here", pos.len()))
            .with_help(format!("write `{usage}`")),
        );
        return None;
    }
    let Val::Tensor(pred) = &pos[0].0 else {
        ctx.error(
            codes::E0215,
            format!("`{name}` expects a tensor as the prediction"),
            pos[0].1,
            format!("found {}", pos[0].0.describe()),
        );
        return None;
    };
    if pred.dtype != DType::F32 {
        ctx.error(
            codes::E0209,
            format!("`{name}` needs an f32 prediction"),
            pos[0].1,
            format!("found {}", shape_str(pred.dtype, &pred.shape)),
        );
        return None;
    }
    let target = match &pos[1].0 {
        Val::Tensor(t) => Operand::Tensor(t.clone()),
        Val::Num { v, .. } => Operand::Number(*v),
        other => {
            ctx.error(
                codes::E0215,
                format!("`{name}` expects a tensor or a number as the target"),
                pos[1].1,
                format!("found {}", other.describe()),
            );
            return None;
        }
    };
    let last = pred.shape.last().copied();
    let rest = pred.shape.split_last().map_or(&[][..], |(_, r)| r);
    let kind = match &target {
        Operand::Tensor(t) if t.dtype == DType::I32 && t.shape == rest && last.is_some() => {
            HitKind::Sparse
        }
        Operand::Tensor(t)
            if t.dtype == DType::F32 && t.shape == pred.shape && last.is_some_and(|l| l > 1) =>
        {
            HitKind::Categorical
        }
        Operand::Tensor(t)
            if last.is_none_or(|l| l == 1)
                && super::expand::broadcast(&pred.shape, &t.shape).as_deref()
                    == Some(&pred.shape[..]) =>
        {
            HitKind::Binary
        }
        Operand::Number(_) if last.is_none_or(|l| l == 1) => HitKind::Binary,
        _ => {
            let found = match &target {
                Operand::Tensor(t) => shape_str(t.dtype, &t.shape),
                Operand::Number(v) => format!("the number {v}"),
            };
            let want = match last {
                Some(l) if l > 1 => format!(
                    "i32{} class indices or a one-hot {}",
                    super::values::dims_str(rest),
                    shape_str(DType::F32, &pred.shape)
                ),
                _ => format!(
                    "0/1 targets of shape {}",
                    shape_str(DType::F32, &pred.shape)
                ),
            };
            ctx.emit(
                Diagnostic::error(
                    codes::E0203,
                    format!("the target of `{name}` does not fit its prediction"),
                )
                .with_primary(pos[1].1, format!("expected {want}, found {found}"))
                .with_secondary(
                    pos[0].1,
                    format!("the prediction is {}", shape_str(pred.dtype, &pred.shape)),
                ),
            );
            return None;
        }
    };
    let kind = if name == "top_k" {
        if kind != HitKind::Sparse {
            ctx.error(
                codes::E0203,
                "`top_k` needs i32 class indices as its target",
                pos[1].1,
                format!(
                    "expected i32{} for a prediction of {}",
                    super::values::dims_str(rest),
                    shape_str(pred.dtype, &pred.shape)
                ),
            );
            return None;
        }
        let k = match &k {
            Some((v, s)) => to_int(ctx, v, *s, "k", Range::Positive)? as usize,
            None => 5,
        };
        HitKind::TopK(k)
    } else {
        kind
    };
    Some(FuncNode {
        op: Op::Hit(kind),
        inputs: vec![Operand::Tensor(pred.clone()), target],
        shape: vec![],
    })
}
