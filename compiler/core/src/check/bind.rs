//! Binding call arguments to a built-in's parameters (positional order, then by name) and
//! converting each value to the parameter's type, with range checks.

use super::table::{self, ActivationFn, Dflt, InitFn, Kind, ParamSpec, Range, Ty};
use super::values::{num_str, Sym, SymArg, Val};
use super::Ctx;
use crate::graph::{Activation, Init};
use fm_codes as codes;
use fm_grammar::ast::{DurationUnit, Ident, Span};

/// Arguments matched to parameters: `slots[i]` is the value given for `params[i]`.
pub struct Bound {
    pub params: &'static [ParamSpec],
    pub slots: Vec<Option<(Val, Span)>>,
    pub call_span: Span,
    /// What is being called, for messages (`Dense`, `Adam`).
    pub callee: String,
}

/// An activation before its softmax axis is resolved against a rank.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ActSpec {
    pub func: ActivationFn,
    pub alpha: f64,
    pub axis: i64,
}

impl ActSpec {
    pub const LINEAR: ActSpec = ActSpec {
        func: ActivationFn::Linear,
        alpha: 0.0,
        axis: -1,
    };

    /// Resolves against the rank of the value it applies to. `Err` when the axis is out of range.
    pub fn resolve(self, rank: usize) -> Result<Activation, i64> {
        let axis = || resolve_axis(self.axis, rank).ok_or(self.axis);
        Ok(match self.func {
            ActivationFn::Linear => Activation::Linear,
            ActivationFn::Relu => Activation::Relu,
            ActivationFn::LeakyRelu => Activation::LeakyRelu { alpha: self.alpha },
            ActivationFn::Elu => Activation::Elu,
            ActivationFn::Gelu => Activation::Gelu,
            ActivationFn::Sigmoid => Activation::Sigmoid,
            ActivationFn::Tanh => Activation::Tanh,
            ActivationFn::Softmax => Activation::Softmax { axis: axis()? },
            ActivationFn::LogSoftmax => Activation::LogSoftmax { axis: axis()? },
            ActivationFn::Softplus => Activation::Softplus,
            ActivationFn::Silu => Activation::Silu,
        })
    }
}

/// `axis` in [-rank, rank) to a non-negative index.
pub fn resolve_axis(axis: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    if axis >= -r && axis < r {
        Some(if axis < 0 { axis + r } else { axis } as usize)
    } else {
        None
    }
}

/// Matches positional values (in order) and named values to `params`. Reports too many
/// positional arguments, unknown and duplicate names, and missing required ones; returns `None`
/// when any was reported.
pub fn bind(
    ctx: &mut Ctx,
    callee: &str,
    params: &'static [ParamSpec],
    positional_limit: usize,
    positional: Vec<(Val, Span)>,
    named: Vec<(Ident, Val, Span)>,
    call_span: Span,
) -> Option<Bound> {
    let mut ok = true;
    // After an unknown (likely misspelt) name, a "missing argument" report would be noise.
    let mut unknown_name = false;
    let mut slots: Vec<Option<(Val, Span)>> = vec![None; params.len()];
    for (i, (v, span)) in positional.into_iter().enumerate() {
        if i < positional_limit {
            slots[i] = Some((v, span));
        } else {
            ok = false;
            let d = fm_grammar::Diagnostic::error(
                codes::E0207,
                format!("too many positional arguments to `{callee}`"),
            )
            .with_primary(
                span,
                format!(
                    "`{callee}` takes at most {positional_limit} positional argument{}",
                    plural(positional_limit)
                ),
            )
            .with_help(match params.get(positional_limit) {
                Some(p) => format!("name the argument, e.g. `{}: ...`", p.name),
                None => format!("`{callee}` takes no more arguments"),
            });
            ctx.emit(d);
            break;
        }
    }
    for (key, v, span) in named {
        match params.iter().position(|p| p.name == key.name) {
            Some(i) => {
                if let Some((_, first)) = &slots[i] {
                    ok = false;
                    let d = fm_grammar::Diagnostic::error(
                        codes::E0105,
                        format!("argument `{}` is given twice", key.name),
                    )
                    .with_primary(key.span, "given again here")
                    .with_secondary(*first, "first given here");
                    ctx.emit(d);
                } else {
                    slots[i] = Some((v, span));
                }
            }
            None => {
                ok = false;
                unknown_name = true;
                let mut d = fm_grammar::Diagnostic::error(
                    codes::E0103,
                    format!("`{callee}` has no argument `{}`", key.name),
                )
                .with_primary(key.span, "unknown argument");
                if let Some(s) = super::suggest_argument(&key.name, params.iter().map(|p| p.name)) {
                    d = d.with_help(format!("did you mean `{s}`?"));
                } else if !params.is_empty() {
                    let all: Vec<String> = params.iter().map(|p| format!("`{}`", p.name)).collect();
                    d = d.with_help(format!("`{callee}` takes {}", all.join(", ")));
                } else {
                    d = d.with_help(format!("`{callee}` takes no arguments"));
                }
                ctx.emit(d);
            }
        }
    }
    for (i, p) in params.iter().enumerate() {
        if slots[i].is_none() && p.default == Dflt::Required && !unknown_name {
            ok = false;
            let d = fm_grammar::Diagnostic::error(
                codes::E0206,
                format!("`{callee}` needs the argument `{}`", p.name),
            )
            .with_primary(call_span, format!("`{}` is missing", p.name))
            .with_help(format!("`{}` is {}", p.name, p.ty.describe()));
            ctx.emit(d);
        }
    }
    ok.then(|| Bound {
        params,
        slots,
        call_span,
        callee: callee.to_string(),
    })
}

/// Splits evaluated call arguments into positional and named lists.
/// Positional arguments (value, span) and named ones (name, value, span).
pub type SplitArgs = (Vec<(Val, Span)>, Vec<(Ident, Val, Span)>);

pub fn split_args(args: Vec<SymArg>) -> SplitArgs {
    let mut pos = Vec::new();
    let mut named = Vec::new();
    for a in args {
        match a.name {
            Some(n) => named.push((n, a.val, a.span)),
            None => pos.push((a.val, a.span)),
        }
    }
    (pos, named)
}

pub fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

impl Bound {
    fn idx(&self, name: &str) -> Option<usize> {
        self.params.iter().position(|p| p.name == name)
    }

    /// Converts every given argument by its type alone (no input shapes needed), reporting
    /// what does not fit. Used when the inputs failed to check, so attribute errors still show.
    pub fn validate_given(&self, ctx: &mut Ctx) {
        for (i, p) in self.params.iter().enumerate() {
            let Some((v, span)) = &self.slots[i] else {
                continue;
            };
            match p.ty {
                Ty::Int => {
                    to_int(ctx, v, *span, p.name, p.range);
                }
                Ty::Float => {
                    to_float(ctx, v, *span, p.name, p.range);
                }
                Ty::Bool => {
                    to_bool(ctx, v, *span, p.name);
                }
                Ty::Enum(_) | Ty::Ident => {
                    to_sym(ctx, v, *span, p.name, p.ty);
                }
                Ty::Activation => {
                    to_activation(ctx, v, *span, p.name);
                }
                Ty::Init => {
                    to_init(ctx, v, *span, p.name);
                }
                Ty::IntOrInts | Ty::IntList | Ty::Str | Ty::Duration => {}
            }
        }
    }

    /// The given value, if any (`None` also for a name the callee does not take).
    pub fn given(&self, name: &str) -> Option<&(Val, Span)> {
        self.slots.get(self.idx(name)?)?.as_ref()
    }

    pub fn is_given(&self, name: &str) -> bool {
        self.given(name).is_some()
    }

    /// The parameter's table row; a name the callee does not take reads as "absent, no default".
    fn spec(&self, name: &str) -> ParamSpec {
        match self.idx(name) {
            Some(i) => self.params[i],
            None => ParamSpec {
                name: "",
                ty: Ty::Int,
                range: Range::Any,
                default: Dflt::Required,
            },
        }
    }

    /// An integer argument (given or default). `None` when reported.
    pub fn int(&self, ctx: &mut Ctx, name: &str) -> Option<i64> {
        let spec = self.spec(name);
        match self.given(name) {
            Some((v, span)) => to_int(ctx, v, *span, name, spec.range),
            None => match spec.default {
                Dflt::Int(i) => Some(i),
                _ => None,
            },
        }
    }

    pub fn float(&self, ctx: &mut Ctx, name: &str) -> Option<f64> {
        let spec = self.spec(name);
        match self.given(name) {
            Some((v, span)) => to_float(ctx, v, *span, name, spec.range),
            None => match spec.default {
                Dflt::Float(f) => Some(f),
                Dflt::Int(i) => Some(i as f64),
                _ => None,
            },
        }
    }

    /// An optional float (`clip_norm`): `Some(None)` when absent, `None` when reported.
    pub fn opt_float(&self, ctx: &mut Ctx, name: &str) -> Option<Option<f64>> {
        if self.is_given(name) {
            self.float(ctx, name).map(Some)
        } else {
            Some(None)
        }
    }

    pub fn bool(&self, ctx: &mut Ctx, name: &str) -> Option<bool> {
        let spec = self.spec(name);
        match self.given(name) {
            Some((v, span)) => to_bool(ctx, v, *span, name),
            None => match spec.default {
                Dflt::Bool(b) => Some(b),
                _ => None,
            },
        }
    }

    /// An identifier from the parameter's enum (or any identifier for `Ty::Ident`).
    pub fn sym(&self, ctx: &mut Ctx, name: &str) -> Option<String> {
        let spec = self.spec(name);
        match self.given(name) {
            Some((v, span)) => to_sym(ctx, v, *span, name, spec.ty),
            None => match spec.default {
                Dflt::Sym(s) => Some(s.to_string()),
                _ => None,
            },
        }
    }

    pub fn string(&self, ctx: &mut Ctx, name: &str) -> Option<String> {
        match self.given(name) {
            Some((Val::Str(s), _)) => Some(s.clone()),
            Some((Val::Poison, _)) => None,
            Some((v, span)) => {
                type_error(ctx, name, Ty::Str, v, *span);
                None
            }
            None => match self.spec(name).default {
                Dflt::Sym(s) => Some(s.to_string()),
                _ => None,
            },
        }
    }

    pub fn activation(&self, ctx: &mut Ctx, name: &str) -> Option<ActSpec> {
        match self.given(name) {
            Some((v, span)) => to_activation(ctx, v, *span, name),
            None => match self.spec(name).default {
                Dflt::Sym(s) => Some(ActSpec {
                    func: ActivationFn::ALL.iter().find(|f| f.name() == s).copied()?,
                    alpha: 0.01,
                    axis: -1,
                }),
                _ => None,
            },
        }
    }

    pub fn init(&self, ctx: &mut Ctx, name: &str) -> Option<Init> {
        match self.given(name) {
            Some((v, span)) => to_init(ctx, v, *span, name),
            // A default initialiser is that initialiser with its own defaults.
            None => match self.spec(name).default {
                Dflt::Sym(s) => {
                    let (f, sig) = table::member_named::<InitFn>(s)?;
                    let defaults = Bound {
                        params: sig.params,
                        slots: vec![None; sig.params.len()],
                        call_span: self.call_span,
                        callee: sig.name.to_string(),
                    };
                    init_of(ctx, f, &defaults)
                }
                _ => None,
            },
        }
    }

    /// An int or a list of `n` ints, expanded to `n` values (`kernel: 3` is `[3, 3]`).
    pub fn ints(&self, ctx: &mut Ctx, name: &str, n: usize) -> Option<Vec<usize>> {
        let spec = self.spec(name);
        match self.given(name) {
            Some((Val::List(items), span)) => {
                if items.len() != n {
                    ctx.error(
                        codes::E0201,
                        format!("`{name}` needs {n} value{}", plural(n)),
                        *span,
                        format!("expected {n} integer{}, found {}", plural(n), items.len()),
                    );
                    return None;
                }
                let mut out = Vec::new();
                for (v, s) in items {
                    out.push(to_int(ctx, v, *s, name, spec.range)? as usize);
                }
                Some(out)
            }
            Some((v, span)) => {
                let i = to_int(ctx, v, *span, name, spec.range)?;
                Some(vec![i as usize; n])
            }
            None => match spec.default {
                Dflt::Int(i) => Some(vec![i as usize; n]),
                Dflt::SameAs(other) => self.ints(ctx, other, n),
                _ => None,
            },
        }
    }

    /// A list of integers (`Reshape`), any values (the layer checks them).
    pub fn int_list(&self, ctx: &mut Ctx, name: &str) -> Option<Vec<i64>> {
        match self.given(name)? {
            (Val::List(items), _) => {
                let mut out = Vec::new();
                let mut ok = true;
                for (v, s) in items {
                    match to_int(ctx, v, *s, name, Range::Any) {
                        Some(i) => out.push(i),
                        None => ok = false,
                    }
                }
                ok.then_some(out)
            }
            (Val::Poison, _) => None,
            (v, span) => {
                type_error(ctx, name, Ty::IntList, v, *span);
                None
            }
        }
    }

    /// A duration (`5 epochs`, `500 steps`) as (count, is_steps).
    pub fn duration(&self, ctx: &mut Ctx, name: &str) -> Option<(u64, bool)> {
        let spec = self.spec(name);
        match self.given(name) {
            Some((Val::Dur { n, unit }, span)) => {
                let i = to_int(ctx, &Val::Num { v: *n, int: true }, *span, name, spec.range)?;
                Some((i as u64, *unit == DurationUnit::Steps))
            }
            Some((Val::Poison, _)) => None,
            Some((v, span)) => {
                type_error(ctx, name, Ty::Duration, v, *span);
                None
            }
            None => match spec.default {
                Dflt::Epochs(n) => Some((n, false)),
                Dflt::Steps(n) => Some((n, true)),
                _ => None,
            },
        }
    }
}

/// `` `units` `` for an argument, plain text for a description ("the repeat count").
pub fn quoted(name: &str) -> String {
    if name.contains(' ') {
        name.to_string()
    } else {
        format!("`{name}`")
    }
}

pub fn type_error(ctx: &mut Ctx, name: &str, ty: Ty, found: &Val, span: Span) {
    if matches!(found, Val::Poison) {
        return;
    }
    ctx.error(
        codes::E0201,
        format!("{} must be {}", quoted(name), ty.describe()),
        span,
        format!("expected {}, found {}", ty.describe(), found.describe()),
    );
}

fn range_error(ctx: &mut Ctx, name: &str, range: Range, v: f64, span: Span) {
    ctx.error(
        codes::E0202,
        format!("{} must be {}", quoted(name), range.describe()),
        span,
        format!("{} is not {}", num_str(v), range.describe()),
    );
}

/// Largest integer attribute accepted (dimensions, counts): keeps every product in range.
pub const MAX_INT: f64 = 1e9;

pub fn to_int(ctx: &mut Ctx, v: &Val, span: Span, name: &str, range: Range) -> Option<i64> {
    match v {
        Val::Num { v: x, .. } => {
            if *x != x.trunc() {
                ctx.error(
                    codes::E0212,
                    format!("{} must be an integer", quoted(name)),
                    span,
                    format!("{} is not an integer", num_str(*x)),
                );
                return None;
            }
            if !range.contains(*x) {
                range_error(ctx, name, range, *x, span);
                return None;
            }
            if x.abs() > MAX_INT {
                ctx.error(
                    codes::E0202,
                    format!("{} is too large", quoted(name)),
                    span,
                    format!("{} is larger than {}", num_str(*x), num_str(MAX_INT)),
                );
                return None;
            }
            Some(*x as i64)
        }
        Val::Poison => None,
        other => {
            report_unknown_or_type(ctx, name, Ty::Int, other, span);
            None
        }
    }
}

pub fn to_float(ctx: &mut Ctx, v: &Val, span: Span, name: &str, range: Range) -> Option<f64> {
    match v {
        Val::Num { v: x, .. } => {
            if !range.contains(*x) {
                range_error(ctx, name, range, *x, span);
                return None;
            }
            Some(*x)
        }
        Val::Poison => None,
        other => {
            report_unknown_or_type(ctx, name, Ty::Float, other, span);
            None
        }
    }
}

pub fn to_bool(ctx: &mut Ctx, v: &Val, span: Span, name: &str) -> Option<bool> {
    match v {
        Val::Bool(b) => Some(*b),
        Val::Poison => None,
        other => {
            report_unknown_or_type(ctx, name, Ty::Bool, other, span);
            None
        }
    }
}

/// A bare identifier that is not a value where a number or bool was expected: most likely a
/// misspelt variable, so say "unknown name" when a local is close.
fn report_unknown_or_type(ctx: &mut Ctx, name: &str, ty: Ty, found: &Val, span: Span) {
    if let Val::Sym(Sym {
        name: n,
        args: None,
        name_span,
    }) = found
    {
        if let Some(s) = super::suggest(n, ctx.locals.iter().map(|s| s.as_str())) {
            let d = fm_grammar::Diagnostic::error(codes::E0102, format!("unknown name `{n}`"))
                .with_primary(*name_span, "not found in this scope")
                .with_help(format!("did you mean `{s}`?"));
            ctx.emit(d);
            return;
        }
    }
    type_error(ctx, name, ty, found, span);
}

pub fn to_sym(ctx: &mut Ctx, v: &Val, span: Span, name: &str, ty: Ty) -> Option<String> {
    match v {
        Val::Sym(Sym {
            name: n,
            args: None,
            name_span,
        }) => {
            if let Ty::Enum(allowed) = ty {
                if !allowed.contains(&n.as_str()) {
                    unknown_value(ctx, name, n, *name_span, allowed);
                    return None;
                }
            }
            Some(n.clone())
        }
        Val::Poison => None,
        other => {
            type_error(ctx, name, ty, other, span);
            None
        }
    }
}

pub fn unknown_value(ctx: &mut Ctx, param: &str, found: &str, span: Span, allowed: &[&str]) {
    let mut d = fm_grammar::Diagnostic::error(
        codes::E0104,
        format!("`{found}` is not a valid value for `{param}`"),
    )
    .with_primary(span, "unknown value");
    if let Some(s) = super::suggest(found, allowed.iter().copied()) {
        d = d.with_help(format!("did you mean `{s}`?"));
    }
    let list: Vec<String> = allowed.iter().map(|a| format!("`{a}`")).collect();
    d = d.with_note(format!("`{param}` is one of {}", list.join(", ")));
    ctx.emit(d);
}

pub fn to_activation(ctx: &mut Ctx, v: &Val, span: Span, name: &str) -> Option<ActSpec> {
    let Val::Sym(sym) = v else {
        if !matches!(v, Val::Poison) {
            type_error(ctx, name, Ty::Activation, v, span);
        }
        return None;
    };
    let Some(&func) = ActivationFn::ALL.iter().find(|f| f.name() == sym.name) else {
        unknown_value(ctx, name, &sym.name, sym.name_span, table::ACTIVATIONS);
        return None;
    };
    let mut spec = ActSpec {
        func,
        alpha: 0.01,
        axis: -1,
    };
    if let Some(args) = &sym.args {
        let sig = table::lookup(Kind::Function, func.name())?;
        let (pos, named) = split_args(args.clone());
        let b = bind(
            ctx,
            func.name(),
            sig.params,
            sig.positional,
            pos,
            named,
            span,
        )?;
        if func == ActivationFn::LeakyRelu {
            spec.alpha = b.float(ctx, "alpha")?;
        }
        if matches!(func, ActivationFn::Softmax | ActivationFn::LogSoftmax) {
            spec.axis = b.int(ctx, "axis")?;
        }
    }
    Some(spec)
}

pub fn to_init(ctx: &mut Ctx, v: &Val, span: Span, name: &str) -> Option<Init> {
    let Val::Sym(sym) = v else {
        if !matches!(v, Val::Poison) {
            type_error(ctx, name, Ty::Init, v, span);
        }
        return None;
    };
    let Some((f, sig)) = table::member_named::<InitFn>(&sym.name) else {
        unknown_value(ctx, name, &sym.name, sym.name_span, table::INITS);
        return None;
    };
    let (pos, named) = split_args(sym.args.clone().unwrap_or_default());
    let b = bind(ctx, sig.name, sig.params, sig.positional, pos, named, span)?;
    let init = init_of(ctx, f, &b)?;
    if let Init::Uniform { lo, hi } = init {
        if lo >= hi {
            ctx.error(
                codes::E0202,
                "`uniform` needs `lo < hi`",
                span,
                format!("{} is not less than {}", num_str(lo), num_str(hi)),
            );
            return None;
        }
    }
    Some(init)
}

/// The initialiser `f` with its arguments as bound (given or defaulted).
fn init_of(ctx: &mut Ctx, f: InitFn, b: &Bound) -> Option<Init> {
    Some(match f {
        InitFn::Zeros => Init::Zeros,
        InitFn::Ones => Init::Ones,
        InitFn::Constant => Init::Constant(b.float(ctx, "value")?),
        InitFn::Uniform => Init::Uniform {
            lo: b.float(ctx, "lo")?,
            hi: b.float(ctx, "hi")?,
        },
        InitFn::Normal => Init::Normal {
            mean: b.float(ctx, "mean")?,
            std: b.float(ctx, "std")?,
        },
        InitFn::GlorotUniform => Init::GlorotUniform,
        InitFn::GlorotNormal => Init::GlorotNormal,
        InitFn::HeUniform => Init::HeUniform,
        InitFn::HeNormal => Init::HeNormal,
        InitFn::LecunNormal => Init::LecunNormal,
        InitFn::Orthogonal => Init::Orthogonal,
    })
}
