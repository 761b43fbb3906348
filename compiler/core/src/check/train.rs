//! `train [MODEL] { ... }` sections to [`TrainSpec`]s with every default of language.md section 6,
//! and the E03xx checks: a loss that does not fit its output, clipping twice, monitors.

use super::bind::{self, split_args, Bound};
use super::data::{entries_by_key, DataResult};
use super::expand;
use super::expand::ModelResult;
use super::items::Items;
use super::table::{self, Family, Kind, LossFn, MetricFn, OptimizerFn, Range, ScheduleFn};
use super::values::{const_eval, shape_str, Sym, Val};
use super::{suggest, Ctx};
use crate::graph::{Activation, DType, ModelGraph, Op};
use fm_codes as codes;
use fm_grammar::ast::{Entry, Expr, ExprKind, Ident, Section, Span};
use fm_grammar::Diagnostic;
use fm_runtime::config::{
    AccuracyKind, Checkpoint, CheckpointKeep, Clip, EarlyStopping, Every, Loss, Metric,
    OptimizerKind, OptimizerSpec, OutputLoss, OutputMetric, Schedule, StepSpec, TrainSpec,
    Validation,
};

use super::overrides::TRAIN_KEYS as KEYS;

pub fn resolve_all(
    ctx: &mut Ctx,
    items: &Items,
    models: &mut [ModelResult],
    data: &[DataResult],
) -> Vec<TrainSpec> {
    items
        .trains
        .iter()
        .filter_map(|s| {
            let before = ctx.error_count();
            let spec = resolve(ctx, items, s, models, data);
            let spec = (ctx.error_count() == before).then_some(spec).flatten()?;
            let graph = models
                .iter()
                .find(|m| m.name == spec.model)?
                .graph
                .as_ref()?;
            let span = s
                .entries
                .iter()
                .find(|e| e.key.name == "batch_size")
                .map_or_else(|| head_span(s), |e| e.value.span);
            let limits = ctx.limits;
            super::limits::check_training_memory(ctx, span, graph, &spec, &limits);
            (ctx.error_count() == before).then_some(spec)
        })
        .collect()
}

/// True when a `loss:` value is an objective expression (language.md 9.3) rather than a loss
/// name, a loss with settings (`huber(delta: 2)`) or a per-output dictionary.
/// A bare name is an objective when it names a model value; a call when it calls a function
/// of 9.3 or a loss with positional (tensor) arguments. Anything else is a loss name, so a
/// misspelt one is reported as an unknown loss.
fn is_objective(e: &Expr, graph: Option<&ModelGraph>) -> bool {
    match &e.kind {
        ExprKind::Name(n) => graph.is_some_and(|g| g.values.iter().any(|(v, _)| *v == n.name)),
        ExprKind::Call { callee, args } => {
            if table::lookup(Kind::Loss, &callee.name).is_some() {
                args.iter().any(|a| a.name.is_none())
            } else {
                super::functions::is_function(&callee.name)
                    || graph.is_some_and(|g| g.values.iter().any(|(v, _)| *v == callee.name))
            }
        }
        ExprKind::Dict(_) | ExprKind::Str(_) | ExprKind::Bool(_) => false,
        _ => true,
    }
}

/// Checks an objective expression against the model and returns the node of its per-sample
/// value; E0221 when it is not a per-sample scalar.
fn objective(
    ctx: &mut Ctx,
    items: &Items,
    graph: &mut ModelGraph,
    e: &Expr,
    what: &str,
    metric: bool,
) -> Option<usize> {
    match expand::eval_objective(ctx, items, graph, e, metric) {
        Val::Tensor(t) if t.shape.iter().product::<usize>() == 1 && t.dtype == DType::F32 => {
            Some(t.node)
        }
        Val::Tensor(t) => {
            ctx.emit(
                Diagnostic::error(codes::E0221, format!("{what} is not a per-sample scalar"))
                    .with_primary(
                        e.span,
                        format!("this is {} per sample", shape_str(t.dtype, &t.shape)),
                    )
                    .with_help(if metric {
                        "reduce it, e.g. `mean(...)` or `sum(..., axis: -1)`; the metric reports its mean over the samples"
                    } else {
                        "reduce it, e.g. `mean(...)` or `sum(..., axis: -1)`; training minimises its mean over the batch"
                    }),
            );
            None
        }
        Val::Poison => None,
        Val::Num { .. } => {
            ctx.error(
                codes::E0221,
                format!("{what} is a constant"),
                e.span,
                "it must depend on the model",
            );
            None
        }
        Val::Sym(Sym {
            name,
            args: None,
            name_span,
        }) => {
            let mut d = Diagnostic::error(codes::E0102, format!("unknown name `{name}`"))
                .with_primary(name_span, "not a model value or a loss");
            let mut values: Vec<String> = graph.values.iter().map(|(n, _)| n.clone()).collect();
            values.extend(table::names(Kind::Loss).map(String::from));
            if let Some(sg) = suggest(&name, values.iter().map(|n| n.as_str())) {
                d = d.with_help(format!("did you mean `{sg}`?"));
            }
            ctx.emit(d);
            None
        }
        other => {
            ctx.error(
                codes::E0221,
                format!("{what} must be a tensor expression"),
                e.span,
                format!("found {}", other.describe()),
            );
            None
        }
    }
}

/// True when an entry of a metric list is a metric over model values (language.md 9.3): a
/// model value's name, a metric called on values (`accuracy(logits, label)`), a function of
/// 9.3 (`mean(q)`) or arithmetic. A bare metric name (`accuracy`), or one with settings only
/// (`top_k(5)`), is a metric of the outputs.
fn is_value_metric(e: &Expr, graph: Option<&ModelGraph>) -> bool {
    let is_value = |n: &str| graph.is_some_and(|g| g.values.iter().any(|(v, _)| v == n));
    match &e.kind {
        ExprKind::Name(n) => {
            table::member_named::<MetricFn>(&n.name).is_none() && is_value(&n.name)
        }
        // `top_k(5)` is the metric of an output with its setting; `top_k(q, label)` takes values.
        ExprKind::Call { callee, args }
            if table::member_named::<MetricFn>(&callee.name).is_some() =>
        {
            args.iter()
                .any(|a| a.name.is_none() && !matches!(a.value.kind, ExprKind::Number { .. }))
        }
        ExprKind::Call { callee, .. } => {
            super::functions::is_function(&callee.name) || is_value(&callee.name)
        }
        ExprKind::Dict(_) | ExprKind::Str(_) | ExprKind::Bool(_) | ExprKind::List(_) => false,
        _ => true,
    }
}

/// The logged name of a metric over model values: its source text with every run of other
/// characters than letters, digits, `_` and `.` made one `_` (`accuracy(logits, label)` is
/// `accuracy_logits_label`), so it is a column of `metrics.csv` and a key of the JSON logs.
fn value_metric_name(src: &str, span: Span) -> String {
    let text = src.get(span.start..span.end).unwrap_or("metric");
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_string()
}

/// Takes the metrics over model values out of a `metrics: [...]` list, checks each against
/// the model (a per-sample scalar, reported as its mean), and leaves the metrics of outputs in
/// the entry. Returns (logged name, node, span) of each that checked, in the order written,
/// and whether all did.
fn value_metric_list(
    ctx: &mut Ctx,
    items: &Items,
    e: &mut Entry,
    graph: Option<&mut ModelGraph>,
) -> (Vec<(String, usize, Span)>, bool) {
    let ExprKind::List(list) = &e.value.kind else {
        return (vec![], true);
    };
    let (values, names): (Vec<Expr>, Vec<Expr>) = list
        .iter()
        .cloned()
        .partition(|x| is_value_metric(x, graph.as_deref()));
    if values.is_empty() {
        return (vec![], true);
    }
    e.value.kind = ExprKind::List(names);
    let Some(graph) = graph else {
        return (vec![], false);
    };
    let mut out: Vec<(String, usize, Span)> = Vec::new();
    let mut ok = true;
    for x in &values {
        let name = value_metric_name(ctx.src, x.span);
        let what = format!("the metric `{name}`");
        let Some(node) = objective(ctx, items, graph, x, &what, true) else {
            ok = false;
            continue;
        };
        if let Some((_, _, first)) = out.iter().find(|(n, _, _)| *n == name) {
            ctx.emit(
                Diagnostic::error(codes::E0105, format!("the metric `{name}` is listed twice"))
                    .with_primary(x.span, "listed again here")
                    .with_secondary(*first, "first listed here"),
            );
            ok = false;
            continue;
        }
        out.push((name, node, x.span));
    }
    (out, ok)
}

/// The trainable parameters an `update:` list names (named calls, 9.4).
fn update_params(ctx: &mut Ctx, e: &Entry, graph: &ModelGraph) -> Option<Vec<usize>> {
    let names: Vec<(String, Span)> = match &e.value.kind {
        ExprKind::Name(n) => vec![(n.name.clone(), n.span)],
        ExprKind::List(items) => {
            let mut out = Vec::new();
            for i in items {
                match &i.kind {
                    ExprKind::Name(n) => out.push((n.name.clone(), n.span)),
                    _ => {
                        ctx.error(
                            codes::E0201,
                            "`update:` lists named calls",
                            i.span,
                            "expected a call's name",
                        );
                        return None;
                    }
                }
            }
            out
        }
        _ => {
            ctx.error(
                codes::E0201,
                "`update:` names a call or lists calls",
                e.value.span,
                "expected e.g. `update: d` or `update: [g, d]`",
            );
            return None;
        }
    };
    let mut params = Vec::new();
    let mut ok = true;
    for (name, span) in names {
        let owned: Vec<usize> = graph
            .params
            .iter()
            .enumerate()
            .filter(|(_, p)| {
                p.trainable
                    && (p.name.starts_with(&format!("{name}/"))
                        || p.name.starts_with(&format!("{name}.")))
            })
            .map(|(i, _)| i)
            .collect();
        if owned.is_empty() {
            let mut calls: Vec<String> = Vec::new();
            for p in &graph.params {
                if p.trainable {
                    let head = p.name.split(['/', '.']).next().unwrap_or("").to_string();
                    if !calls.contains(&head) {
                        calls.push(head);
                    }
                }
            }
            let mut d =
                Diagnostic::error(codes::E0118, format!("`update:` names nothing: `{name}`"))
                    .with_primary(span, "no named call with trainable weights has this name");
            if let Some(sg) = suggest(&name, calls.iter().map(|s| s.as_str())) {
                d = d.with_help(format!("did you mean `{sg}`?"));
            } else if !calls.is_empty() {
                let all: Vec<String> = calls.iter().map(|c| format!("`{c}`")).collect();
                d = d.with_note(format!("the model's weights belong to {}", all.join(", ")));
            }
            ctx.emit(d);
            ok = false;
            continue;
        }
        for p in owned {
            if !params.contains(&p) {
                params.push(p);
            }
        }
    }
    params.sort_unstable();
    ok.then_some(params)
}

/// Step keys (language.md 9.4). A step without its own `schedule:` follows the section's,
/// scaled to its optimizer's rate.
const STEP_KEYS: &[&str] = &["update", "loss", "loss_weights", "optimizer", "schedule"];

/// One `step NAME { ... }` entry.
fn step(
    ctx: &mut Ctx,
    items: &Items,
    name: &Ident,
    body: &[Entry],
    graph: &mut ModelGraph,
) -> Option<StepSpec> {
    let mut ok = true;
    let by_key = entries_by_key(ctx, body, STEP_KEYS, "a `step`");
    if body
        .iter()
        .any(|e| !STEP_KEYS.contains(&e.key.name.as_str()))
    {
        ok = false;
    }
    let (losses_v, objective_v) = match by_key.get("loss") {
        Some(e) if is_objective(&e.value, Some(graph)) => (
            Some(vec![]),
            Some(objective(
                ctx,
                items,
                graph,
                &e.value,
                "the loss expression",
                false,
            )),
        ),
        Some(e) => (
            losses(ctx, e, by_key.get("loss_weights").copied(), Some(graph)),
            None,
        ),
        None => {
            ctx.error(
                codes::E0304,
                format!("the step `{}` needs a `loss`", name.name),
                name.span,
                "add e.g. `loss: binary_crossentropy(p_fake, 1)`",
            );
            (None, None)
        }
    };
    let objective_v = match objective_v {
        Some(Some(n)) => Some(n),
        Some(None) => {
            ok = false;
            None
        }
        None => None,
    };
    let optimizer = match by_key.get("optimizer") {
        Some(e) => optimizer(ctx, e),
        None => {
            ctx.error(
                codes::E0304,
                format!("the step `{}` needs an `optimizer`", name.name),
                name.span,
                "add e.g. `optimizer: Adam(lr: 2e-4, beta1: 0.5)`",
            );
            None
        }
    };
    let update = match by_key.get("update") {
        Some(e) => update_params(ctx, e, graph).map(Some),
        None => Some(None),
    };
    let own_schedule = match by_key.get("schedule") {
        Some(e) => match schedule(ctx, e) {
            // A step's own `ReduceOnPlateau` watches that step's loss by default.
            Some(Schedule::ReduceOnPlateau {
                monitor,
                factor,
                patience,
                min_lr,
            }) => Some(Some(Schedule::ReduceOnPlateau {
                monitor: step_monitor(&name.name, &monitor),
                factor,
                patience,
                min_lr,
            })),
            Some(sch) => Some(Some(sch)),
            None => None,
        },
        None => Some(None),
    };
    if !ok {
        return None;
    }
    Some(StepSpec {
        name: name.name.clone(),
        losses: losses_v?,
        objective: objective_v,
        optimizer: optimizer?,
        schedule: own_schedule?,
        update: update?,
    })
}

/// What the `monitor:` of a step's own `ReduceOnPlateau` watches (language.md 9.4, an
/// extension documented in `compiler/fmc/CLI.md`): `loss` and `val_loss` are that step's loss,
/// `NAME_loss` and `val_NAME_loss`; any other name is a log key as written.
fn step_monitor(step: &str, monitor: &str) -> String {
    match monitor {
        "loss" => format!("{step}_loss"),
        "val_loss" => format!("val_{step}_loss"),
        other => other.to_string(),
    }
}

/// The monitor of a `schedule: ReduceOnPlateau(...)` entry and where it is written (the
/// schedule's name when it takes the default `val_loss`); None for other schedules.
fn plateau_monitor(ctx: &mut Ctx, e: &Entry) -> Option<(String, Span)> {
    let Val::Sym(Sym {
        name,
        args,
        name_span,
    }) = const_eval(ctx, &e.value)
    else {
        return None;
    };
    if name != "ReduceOnPlateau" {
        return None;
    }
    let written = args
        .unwrap_or_default()
        .into_iter()
        .find(|a| a.name.as_ref().is_some_and(|n| n.name == "monitor"))
        .and_then(|a| match a.val {
            Val::Sym(s) => Some((s.name, s.name_span)),
            _ => None,
        });
    Some(written.unwrap_or(("val_loss".into(), name_span)))
}

/// The model a `train` section trains: its name, or the file's only model.
fn pick_model<'m>(
    ctx: &mut Ctx,
    s: &Section,
    models: &'m [ModelResult],
) -> Option<&'m ModelResult> {
    match &s.name {
        Some(name) => {
            let found = models.iter().find(|m| m.name == name.name);
            if found.is_none() {
                let mut d =
                    Diagnostic::error(codes::E0107, format!("unknown model `{}`", name.name))
                        .with_primary(name.span, "no model with this name in this file");
                if let Some(sg) = suggest(&name.name, models.iter().map(|m| m.name.as_str())) {
                    d = d.with_help(format!("did you mean `{sg}`?"));
                }
                ctx.emit(d);
            }
            found
        }
        None => match models {
            [only] => Some(only),
            [] => {
                ctx.error(
                    codes::E0107,
                    "this `train` section has no model to train",
                    head_span(s),
                    "the file declares no model",
                );
                None
            }
            _ => {
                let names: Vec<String> = models.iter().map(|m| format!("`{}`", m.name)).collect();
                ctx.emit(
                    Diagnostic::error(codes::E0107, "which model does this `train` section train?")
                        .with_primary(head_span(s), "the file has several models")
                        .with_help(format!("name one: `train {} {{ ... }}`", models[0].name))
                        .with_note(format!("the models are {}", names.join(", "))),
                );
                None
            }
        },
    }
}

/// The `train` keyword, for diagnostics about the whole section.
fn head_span(s: &Section) -> Span {
    Span::new(s.span.start, (s.span.start + 5).min(s.span.end))
}

fn resolve(
    ctx: &mut Ctx,
    items: &Items,
    s: &Section,
    models: &mut [ModelResult],
    data: &[DataResult],
) -> Option<TrainSpec> {
    let model_index = pick_model(ctx, s, models).map(|m| m.name.clone());
    let model_index = model_index.and_then(|n| models.iter().position(|m| m.name == n));
    // `step NAME { ... }` entries (9.4), checked against the model first: their loss
    // expressions add nodes to its graph.
    let plain: Vec<Entry> = s
        .entries
        .iter()
        .filter(|e| !matches!(e.value.kind, ExprKind::Step { .. }))
        .cloned()
        .collect();
    let mut steps: Vec<StepSpec> = Vec::new();
    let mut steps_ok = true;
    let mut step_names: Vec<(String, Span)> = Vec::new();
    for e in &s.entries {
        let ExprKind::Step { name, body } = &e.value.kind else {
            continue;
        };
        if let Some((_, first)) = step_names.iter().find(|(n, _)| *n == name.name) {
            ctx.emit(
                Diagnostic::error(
                    codes::E0105,
                    format!("the step `{}` is defined twice", name.name),
                )
                .with_primary(name.span, "defined again here")
                .with_secondary(*first, "first defined here"),
            );
            steps_ok = false;
            continue;
        }
        step_names.push((name.name.clone(), name.span));
        let graph = model_index.and_then(|i| models[i].graph.as_mut());
        match graph {
            Some(g) => match step(ctx, items, name, body, g) {
                Some(st) => steps.push(st),
                None => steps_ok = false,
            },
            None => steps_ok = false,
        }
    }
    let has_steps = !step_names.is_empty();
    if has_steps {
        for key in ["loss", "loss_weights", "optimizer"] {
            if let Some(e) = plain.iter().find(|e| e.key.name == key) {
                ctx.emit(
                    Diagnostic::error(
                        codes::E0309,
                        format!("`{key}` belongs in each `step` when a `train` section has steps"),
                    )
                    .with_primary(e.key.span, "given beside `step` entries")
                    .with_help("move it into the `step` blocks"),
                );
                steps_ok = false;
            }
        }
    }
    // `loss:` as an expression (9.3).
    let mut objective_node = None;
    let mut loss_is_objective = false;
    if let Some(e) = plain.iter().find(|e| e.key.name == "loss") {
        if !has_steps && is_objective(&e.value, model_index.and_then(|i| models[i].graph.as_ref()))
        {
            loss_is_objective = true;
            match model_index.and_then(|i| models[i].graph.as_mut()) {
                Some(g) => match objective(ctx, items, g, &e.value, "the loss expression", false) {
                    Some(n) => objective_node = Some(n),
                    None => steps_ok = false,
                },
                None => steps_ok = false,
            }
        }
    }
    // Metrics over model values (9.3): they add nodes to the model's graph too. What stays
    // in the list are the metrics of outputs (`accuracy`).
    let mut plain = plain;
    let mut value_metrics: Vec<(String, usize, Span)> = Vec::new();
    if let Some(e) = plain.iter_mut().find(|e| e.key.name == "metrics") {
        let graph = model_index.and_then(|i| models[i].graph.as_mut());
        let (checked, all_ok) = value_metric_list(ctx, items, e, graph);
        value_metrics = checked;
        steps_ok &= all_ok;
    }
    let model = model_index.map(|i| &models[i]);
    let graph = model.and_then(|m| m.graph.as_ref());
    let by_key = entries_by_key(ctx, &plain, KEYS, "a `train` section");
    let mut ok = model.is_some() && steps_ok;

    let data_spec = match by_key.get("data") {
        None => None,
        Some(e) => match const_eval(ctx, &e.value) {
            Val::Sym(Sym {
                name,
                name_span,
                args: None,
            }) => match data.iter().find(|d| d.name == name) {
                Some(d) => {
                    ok &= d.spec.is_some();
                    d.spec.clone()
                }
                None => {
                    let mut d =
                        Diagnostic::error(codes::E0108, format!("unknown data section `{name}`"))
                            .with_primary(name_span, "no `data` section with this name");
                    if let Some(sg) = suggest(&name, data.iter().map(|d| d.name.as_str())) {
                        d = d.with_help(format!("did you mean `{sg}`?"));
                    }
                    ctx.emit(d);
                    ok = false;
                    None
                }
            },
            Val::Poison => None,
            other => {
                ctx.error(
                    codes::E0201,
                    "`data` must name a `data` section",
                    e.value.span,
                    format!("found {}", other.describe()),
                );
                None
            }
        },
    };

    if let (Some(d), Some(g), Some(e)) = (&data_spec, graph, by_key.get("data")) {
        ok &= data_fits_inputs(ctx, d, g, e.value.span);
    }
    let losses = match by_key.get("loss") {
        _ if has_steps || loss_is_objective => Some(vec![]),
        Some(e) => losses(ctx, e, by_key.get("loss_weights").copied(), graph),
        None => {
            ctx.error(
                codes::E0304,
                "this `train` section needs a `loss`",
                head_span(s),
                "add e.g. `loss: sparse_categorical_crossentropy`",
            );
            None
        }
    };
    if let (Some(d), Some(g)) = (&data_spec, graph) {
        let named: Vec<&OutputLoss> = match &losses {
            Some(l) if !l.is_empty() => l.iter().collect(),
            _ => steps.iter().flat_map(|s| &s.losses).collect(),
        };
        ok &= data_fits_targets(
            ctx,
            items,
            d,
            g,
            &named,
            objective_node.is_some() || has_steps,
        );
    }
    let optimizer = match by_key.get("optimizer") {
        _ if has_steps => steps.first().map(|s| s.optimizer),
        Some(e) => optimizer(ctx, e),
        // Keras' `compile` default.
        None => Some(OptimizerSpec {
            kind: OptimizerKind::RmsProp {
                rho: 0.9,
                momentum: 0.0,
                epsilon: 1e-7,
            },
            lr: 0.001,
            weight_decay: 0.0,
            clip: None,
        }),
    };
    let schedule = match by_key.get("schedule") {
        Some(e) => schedule(ctx, e),
        None => Some(Schedule::Constant),
    };
    let epochs = int_entry(
        ctx,
        by_key.get("epochs").copied(),
        "epochs",
        Range::Positive,
        1,
    );
    let batch_size = int_entry(
        ctx,
        by_key.get("batch_size").copied(),
        "batch_size",
        Range::Positive,
        32,
    );
    let seed = int_entry(
        ctx,
        by_key.get("seed").copied(),
        "seed",
        Range::NonNegative,
        0,
    );
    let shuffle = match by_key.get("shuffle") {
        Some(e) => {
            let v = const_eval(ctx, &e.value);
            bind::to_bool(ctx, &v, e.value.span, "shuffle")
        }
        None => Some(true),
    };
    let validation = match by_key.get("validation") {
        Some(e) => validation(ctx, e, data_spec.as_ref()),
        None => Some(Validation::None),
    };
    // Metrics of outputs compare each output with its target, which only named losses read.
    let no_output_targets = if loss_is_objective {
        Some("the loss is an expression")
    } else if has_steps {
        Some("the `train` section has `step`s")
    } else {
        None
    };
    let metrics = match by_key.get("metrics") {
        Some(e) => metrics(ctx, e, losses.as_deref(), graph, no_output_targets),
        None => Some(vec![]),
    };
    // A metric over values that reads a `target` declaration needs the loss to read them.
    let declared_read = objective_node.is_some() || steps.iter().any(|st| st.objective.is_some());
    if let (false, Some(g)) = (declared_read, graph) {
        for (name, node, span) in &value_metrics {
            let need = crate::lower::needed(g, &[*node]);
            let read = g.targets.iter().find(|t| need[t.node]);
            if let Some(t) = read {
                ctx.emit(
                    Diagnostic::error(
                        codes::E0312,
                        format!("the metric `{name}` reads the target `{}`, which no loss reads", t.name),
                    )
                    .with_primary(*span, format!("reads `{}`", t.name))
                    .with_secondary(t.span, "declared here")
                    .with_note("`target` declarations are read from the data only when the loss is an expression (language.md 9.3); named losses read one target per output"),
                );
                ok = false;
            }
        }
    }
    let early_stopping = by_key.get("early_stopping").map(|e| early_stopping(ctx, e));
    let checkpoint = by_key.get("checkpoint").map(|e| checkpoint(ctx, e));

    // Monitors must name something training logs (a warning: the run still works).
    if let (Some(metrics), Some(validation)) = (&metrics, &validation) {
        let mut logged = vec!["loss".to_string()];
        for st in &steps {
            logged.push(format!("{}_loss", st.name));
        }
        let several = losses.as_ref().is_some_and(|l| l.len() > 1);
        for (name, _, _) in &value_metrics {
            logged.push(name.clone());
        }
        for m in metrics {
            logged.push(if several {
                format!("{}_{}", m.output, m.metric.name())
            } else {
                m.metric.name()
            });
        }
        if *validation != Validation::None {
            let val: Vec<String> = logged.iter().map(|l| format!("val_{l}")).collect();
            logged.extend(val);
        }
        let mut monitors: Vec<(String, Span)> = Vec::new();
        for key in ["early_stopping", "checkpoint"] {
            if let Some(e) = by_key.get(key) {
                monitors.push(monitor_of(ctx, e).unwrap_or(("val_loss".into(), e.key.span)));
            }
        }
        if let Some(m) = by_key.get("schedule").and_then(|e| plateau_monitor(ctx, e)) {
            monitors.push(m);
        }
        // Each step's own `ReduceOnPlateau` (9.4), its monitor as the step resolves it.
        for e in &s.entries {
            let ExprKind::Step { name, body } = &e.value.kind else {
                continue;
            };
            let own = body.iter().find(|b| b.key.name == "schedule");
            if let Some((m, span)) = own.and_then(|b| plateau_monitor(ctx, b)) {
                monitors.push((step_monitor(&name.name, &m), span));
            }
        }
        for (m, span) in monitors {
            if !logged.contains(&m) {
                let mut d = Diagnostic::warning(codes::W0102, format!("no metric produces `{m}`"))
                    .with_primary(span, "this monitor is never logged");
                if m.starts_with("val_") && *validation == Validation::None {
                    d = d.with_help(
                        "add `validation: split(0.2)` (or `test`) so validation metrics exist",
                    );
                } else if let Some(sg) = suggest(&m, logged.iter().map(|s| s.as_str())) {
                    d = d.with_help(format!("did you mean `{sg}`?"));
                }
                let all: Vec<String> = logged.iter().map(|l| format!("`{l}`")).collect();
                ctx.emit(d.with_note(format!("training logs {}", all.join(", "))));
            }
        }
    }

    let model = model?;
    if !ok {
        return None;
    }
    Some(TrainSpec {
        model: model.name.clone(),
        data: data_spec,
        losses: losses?,
        optimizer: optimizer?,
        schedule: schedule?,
        epochs: epochs? as usize,
        batch_size: batch_size? as usize,
        validation: validation?,
        shuffle: shuffle?,
        seed: seed? as u64,
        metrics: metrics?,
        early_stopping: early_stopping.transpose_opt()?,
        checkpoint: checkpoint.transpose_opt()?,
        objective: objective_node,
        steps,
        value_metrics: value_metrics
            .into_iter()
            .map(|(n, node, _)| (n, node))
            .collect(),
    })
}

/// `Option<Option<T>>` where the inner `None` means "reported": absent stays `Some(None)`.
trait TransposeOpt<T> {
    fn transpose_opt(self) -> Option<Option<T>>;
}
impl<T> TransposeOpt<T> for Option<Option<T>> {
    fn transpose_opt(self) -> Option<Option<T>> {
        match self {
            None => Some(None),
            Some(None) => None,
            Some(Some(t)) => Some(Some(t)),
        }
    }
}

fn int_entry(
    ctx: &mut Ctx,
    e: Option<&Entry>,
    name: &str,
    range: Range,
    default: i64,
) -> Option<i64> {
    match e {
        Some(e) => {
            let v = const_eval(ctx, &e.value);
            bind::to_int(ctx, &v, e.value.span, name, range)
        }
        None => Some(default),
    }
}

fn monitor_of(ctx: &mut Ctx, e: &Entry) -> Option<(String, Span)> {
    match const_eval(ctx, &e.value) {
        Val::Dict(entries) => entries
            .into_iter()
            .find(|(k, _, _)| k.name == "monitor")
            .and_then(|(_, v, _)| match v {
                Val::Sym(s) => Some((s.name, s.name_span)),
                _ => None,
            }),
        _ => None,
    }
}

/// A built-in of `kind` from a symbolic value, bound to its table entry.
fn bind_sym(
    ctx: &mut Ctx,
    kind: Kind,
    v: &Val,
    span: Span,
) -> Option<(&'static table::Sig, Bound)> {
    let Val::Sym(sym) = v else {
        if !matches!(v, Val::Poison) {
            ctx.error(
                codes::E0201,
                format!("expected a {}", kind.noun()),
                span,
                format!("found {}", v.describe()),
            );
        }
        return None;
    };
    let Some(sig) = table::lookup(kind, &sym.name) else {
        let code = match kind {
            Kind::Loss => codes::E0109,
            Kind::Optimizer => codes::E0110,
            Kind::Schedule => codes::E0111,
            _ => codes::E0112,
        };
        let mut d = Diagnostic::error(code, format!("unknown {} `{}`", kind.noun(), sym.name))
            .with_primary(sym.name_span, format!("not a known {}", kind.noun()));
        if let Some(s) = suggest(&sym.name, table::names(kind)) {
            d = d.with_help(format!("did you mean `{s}`?"));
        } else {
            let all: Vec<String> = table::names(kind).map(|n| format!("`{n}`")).collect();
            d = d.with_note(format!("expected one of {}", all.join(", ")));
        }
        ctx.emit(d);
        return None;
    };
    let (pos, named) = split_args(sym.args.clone().unwrap_or_default());
    let b = bind::bind(ctx, sig.name, sig.params, sig.positional, pos, named, span)?;
    Some((sig, b))
}

/// A member of a typed family from a symbolic value, bound to its row.
fn bind_member<F: Family>(ctx: &mut Ctx, v: &Val, span: Span) -> Option<(F, Bound)> {
    let (sig, b) = bind_sym(ctx, F::KIND, v, span)?;
    Some((F::of_rule(sig.rule)?, b))
}

pub(crate) fn loss_of(ctx: &mut Ctx, v: &Val, span: Span) -> Option<Loss> {
    let (f, b) = bind_member::<LossFn>(ctx, v, span)?;
    Some(match f {
        LossFn::Mse => Loss::Mse,
        LossFn::Mae => Loss::Mae,
        LossFn::Huber => Loss::Huber {
            delta: b.float(ctx, "delta")?,
        },
        LossFn::BinaryCrossentropy => Loss::BinaryCrossentropy {
            from_logits: b.bool(ctx, "from_logits")?,
        },
        LossFn::CategoricalCrossentropy => Loss::CategoricalCrossentropy {
            from_logits: b.bool(ctx, "from_logits")?,
        },
        LossFn::SparseCategoricalCrossentropy => Loss::SparseCategoricalCrossentropy {
            from_logits: b.bool(ctx, "from_logits")?,
        },
    })
}

fn loss_name(l: &Loss) -> &'static str {
    LossFn::of(l).name()
}

/// The activation the output ends in (an activation stage, or a Dense/Conv `activation:`),
/// when it applies over the last axis.
pub fn final_activation(g: &ModelGraph, node: usize) -> Option<Activation> {
    let n = g.nodes.get(node)?;
    let last = n.shape.len().checked_sub(1);
    let act = match &n.op {
        Op::Activation(a) => *a,
        Op::Dense { activation, .. } | Op::Conv { activation, .. } => *activation,
        _ => return None,
    };
    match act {
        Activation::Softmax { axis } if Some(axis) != last => None,
        a => Some(a),
    }
}

fn losses(
    ctx: &mut Ctx,
    e: &Entry,
    weights: Option<&Entry>,
    graph: Option<&ModelGraph>,
) -> Option<Vec<OutputLoss>> {
    let v = const_eval(ctx, &e.value);
    // (output name, loss, span of the loss value)
    let mut per_output: Vec<(String, Loss, Span)> = Vec::new();
    let mut ok = true;
    match &v {
        Val::Dict(entries) => {
            for (k, lv, s) in entries {
                if let Some(g) = graph {
                    if !g.outputs.iter().any(|o| o.name == k.name) {
                        unknown_output(ctx, k, g);
                        ok = false;
                        continue;
                    }
                }
                match loss_of(ctx, lv, *s) {
                    Some(l) => per_output.push((k.name.clone(), l, *s)),
                    None => ok = false,
                }
            }
            if let (Some(g), true) = (graph, ok) {
                for o in &g.outputs {
                    if !per_output.iter().any(|(n, _, _)| *n == o.name) {
                        ctx.error(
                            codes::E0305,
                            format!("the output `{}` has no loss", o.name),
                            e.value.span,
                            format!("add `{}: ...` here", o.name),
                        );
                        ok = false;
                    }
                }
            }
        }
        other => {
            let l = loss_of(ctx, other, e.value.span)?;
            match graph {
                Some(g) => {
                    for o in &g.outputs {
                        per_output.push((o.name.clone(), l, e.value.span));
                    }
                }
                None => per_output.push((String::new(), l, e.value.span)),
            }
        }
    }
    let mut weight_of: Vec<(String, f64)> = Vec::new();
    if let Some(w) = weights {
        match const_eval(ctx, &w.value) {
            Val::Dict(entries) => {
                for (k, wv, s) in entries {
                    if let Some(g) = graph {
                        if !g.outputs.iter().any(|o| o.name == k.name) {
                            unknown_output(ctx, &k, g);
                            ok = false;
                            continue;
                        }
                    }
                    match bind::to_float(ctx, &wv, s, &k.name, Range::NonNegative) {
                        Some(x) => weight_of.push((k.name.clone(), x)),
                        None => ok = false,
                    }
                }
            }
            Val::Poison => ok = false,
            other => {
                ctx.error(
                    codes::E0201,
                    "`loss_weights` must be a dictionary",
                    w.value.span,
                    format!(
                        "expected `{{ output: weight }}`, found {}",
                        other.describe()
                    ),
                );
                ok = false;
            }
        }
    }
    let g = graph?;
    if !ok {
        return None;
    }
    let mut out = Vec::new();
    for (name, loss, span) in per_output {
        let o = g.outputs.iter().find(|o| o.name == name)?;
        let node = &g.nodes[o.node];
        let last = node.shape.last().copied().unwrap_or(1);
        let act = final_activation(g, o.node);
        let shape = shape_str(node.dtype, &node.shape);
        let lname = loss_name(&loss);
        let misfit = |ctx: &mut Ctx, msg: String, help: &str| {
            ctx.emit(
                Diagnostic::error(
                    codes::E0301,
                    format!("`{lname}` does not fit the output `{name}`"),
                )
                .with_primary(span, msg)
                .with_secondary(o.span, format!("the output is {shape}"))
                .with_help(help.to_string()),
            );
        };
        let mut fused = false;
        match loss {
            Loss::BinaryCrossentropy { from_logits } => {
                if matches!(act, Some(Activation::Softmax { .. })) {
                    misfit(ctx, "binary cross-entropy on a softmax output".into(), "use `sigmoid` on a last dimension of 1, or `categorical_crossentropy`/`sparse_categorical_crossentropy` with softmax");
                    ok = false;
                } else if last != 1 {
                    misfit(
                        ctx,
                        format!("binary cross-entropy needs a last dimension of 1, found {last}"),
                        "end the model in `Dense(1, sigmoid)`",
                    );
                    ok = false;
                }
                fused = !from_logits && act == Some(Activation::Sigmoid);
            }
            Loss::CategoricalCrossentropy { from_logits }
            | Loss::SparseCategoricalCrossentropy { from_logits } => {
                if last < 2 {
                    misfit(ctx, format!("a categorical cross-entropy needs at least 2 classes, found a last dimension of {last}"), "for two classes with one output unit use `binary_crossentropy`");
                    ok = false;
                } else if act == Some(Activation::Sigmoid) {
                    misfit(ctx, "categorical cross-entropy on a sigmoid output".into(), "end the model in `softmax`, or use `binary_crossentropy` for independent labels");
                    ok = false;
                }
                fused = !from_logits && matches!(act, Some(Activation::Softmax { .. }));
                if from_logits
                    && matches!(
                        act,
                        Some(Activation::Softmax { .. }) | Some(Activation::Sigmoid)
                    )
                {
                    ctx.emit(
                        Diagnostic::warning(
                            codes::W0103,
                            "`from_logits: true` on an output that is already a probability",
                        )
                        .with_primary(span, "the output ends in softmax")
                        .with_help("drop the final softmax, or use `from_logits: false`"),
                    );
                }
            }
            _ => {}
        }
        if let Some(w) = positions_warning(g, o.node, &name, &loss, span) {
            ctx.emit(w);
        }
        if node.dtype != crate::graph::DType::F32 {
            misfit(
                ctx,
                format!("the output is {shape}"),
                "a loss needs an f32 output",
            );
            ok = false;
        }
        let weight = weight_of
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, w)| *w)
            .unwrap_or(1.0);
        out.push(OutputLoss {
            output: name,
            loss,
            weight,
            fused_with_activation: fused,
        });
    }
    ok.then_some(out)
}

/// W0104: a classification loss on an output that keeps the positions of a convolution or
/// pooling layer (`Conv2D -> Dense(10, softmax)`, Flatten forgotten). `Dense`, activations and
/// other position-wise layers between them keep the positions; `Flatten`, global pools,
/// `Reshape`, recurrent and attention layers end the search (their outputs are meant per step).
fn positions_warning(
    g: &ModelGraph,
    output: usize,
    name: &str,
    loss: &Loss,
    span: Span,
) -> Option<Diagnostic> {
    let shape = &g.nodes[output].shape;
    if shape.len() < 2 {
        return None;
    }
    let sparse = match loss {
        Loss::SparseCategoricalCrossentropy { .. } => true,
        Loss::CategoricalCrossentropy { .. } | Loss::BinaryCrossentropy { .. } => false,
        _ => return None,
    };
    let mut at = output;
    let source = loop {
        let n = &g.nodes[at];
        match &n.op {
            Op::Conv { .. } | Op::Pool { .. } => break at,
            Op::Dense { .. }
            | Op::Activation(_)
            | Op::Dropout { .. }
            | Op::BatchNorm { .. }
            | Op::LayerNorm { .. }
            | Op::GroupNorm { .. }
            | Op::UpSampling { .. }
            | Op::Rescale { .. }
            | Op::Add
            | Op::Sub
            | Op::Mul => at = *n.inputs.first()?,
            _ => return None,
        }
    };
    let positions = &shape[..shape.len() - 1];
    let per_sample: Vec<String> = if sparse { positions } else { &shape[..] }
        .iter()
        .map(|d| d.to_string())
        .collect();
    let grid: Vec<String> = positions.iter().map(|d| d.to_string()).collect();
    let src = &g.nodes[source];
    let pool = match &src.op {
        Op::Conv { kernel, .. } => format!("GlobalAvgPool{}D", kernel.len()),
        Op::Pool { size, .. } => format!("GlobalAvgPool{}D", size.len()),
        _ => "GlobalAvgPool2D".into(),
    };
    Some(
        Diagnostic::warning(
            codes::W0104,
            format!(
                "`{}` on `{name}` needs a label for each of its {} positions",
                loss_name(loss),
                grid.join("x")
            ),
        )
        .with_primary(
            span,
            format!(
                "expects targets of shape [{}] per sample",
                per_sample.join(", ")
            ),
        )
        .with_secondary(
            src.span,
            format!(
                "`{name}` keeps the {} positions of this `{}`: it is {}",
                grid.join("x"),
                src.op.type_name(),
                shape_str(g.nodes[output].dtype, shape)
            ),
        )
        .with_help(format!(
            "for one label per sample, add Flatten or a global pool (`{pool}`) before the `Dense`"
        ))
        .with_note("`Dense` acts on the last axis only, as in Keras"),
    )
}

fn unknown_output(ctx: &mut Ctx, k: &Ident, g: &ModelGraph) {
    let mut d = Diagnostic::error(
        codes::E0305,
        format!("model `{}` has no output `{}`", g.name, k.name),
    )
    .with_primary(k.span, "unknown output");
    if let Some(s) = suggest(&k.name, g.outputs.iter().map(|o| o.name.as_str())) {
        d = d.with_help(format!("did you mean `{s}`?"));
    }
    ctx.emit(d);
}

fn optimizer(ctx: &mut Ctx, e: &Entry) -> Option<OptimizerSpec> {
    let v = const_eval(ctx, &e.value);
    let (f, b) = bind_member::<OptimizerFn>(ctx, &v, e.value.span)?;
    let kind = match f {
        OptimizerFn::Sgd => OptimizerKind::Sgd {
            momentum: b.float(ctx, "momentum")?,
            nesterov: b.bool(ctx, "nesterov")?,
        },
        OptimizerFn::Adam => OptimizerKind::Adam {
            beta1: b.float(ctx, "beta1")?,
            beta2: b.float(ctx, "beta2")?,
            epsilon: b.float(ctx, "epsilon")?,
        },
        OptimizerFn::AdamW => OptimizerKind::AdamW {
            beta1: b.float(ctx, "beta1")?,
            beta2: b.float(ctx, "beta2")?,
            epsilon: b.float(ctx, "epsilon")?,
        },
        OptimizerFn::RmsProp => OptimizerKind::RmsProp {
            rho: b.float(ctx, "rho")?,
            momentum: b.float(ctx, "momentum")?,
            epsilon: b.float(ctx, "epsilon")?,
        },
        OptimizerFn::Adagrad => OptimizerKind::Adagrad {
            initial_accumulator: b.float(ctx, "initial_accumulator")?,
            epsilon: b.float(ctx, "epsilon")?,
        },
    };
    let mut clip = None;
    let mut first: Option<(&str, Span)> = None;
    let mut ok = true;
    for name in ["clip_norm", "global_clip_norm", "clip_value"] {
        let Some(value) = b.opt_float(ctx, name) else {
            ok = false;
            continue;
        };
        let Some(value) = value else { continue };
        let span = b.given(name).map(|(_, s)| *s).unwrap_or(e.value.span);
        if let Some((fname, fspan)) = first {
            ctx.emit(
                Diagnostic::error(codes::E0302, "at most one clipping option")
                    .with_primary(span, format!("`{name}` given as well"))
                    .with_secondary(fspan, format!("`{fname}` given here"))
                    .with_help("keep one of `clip_norm`, `global_clip_norm`, `clip_value`"),
            );
            ok = false;
            continue;
        }
        first = Some((name, span));
        clip = Some(match name {
            "clip_norm" => Clip::Norm(value),
            "global_clip_norm" => Clip::GlobalNorm(value),
            _ => Clip::Value(value),
        });
    }
    let lr = b.float(ctx, "lr")?;
    let weight_decay = b.float(ctx, "weight_decay")?;
    ok.then_some(OptimizerSpec {
        kind,
        lr,
        weight_decay,
        clip,
    })
}

fn every(d: (u64, bool)) -> Every {
    if d.1 {
        Every::Steps(d.0)
    } else {
        Every::Epochs(d.0)
    }
}

fn schedule(ctx: &mut Ctx, e: &Entry) -> Option<Schedule> {
    let v = const_eval(ctx, &e.value);
    let (f, b) = bind_member::<ScheduleFn>(ctx, &v, e.value.span)?;
    Some(match f {
        ScheduleFn::Constant => Schedule::Constant,
        ScheduleFn::Step => Schedule::Step {
            every: every(b.duration(ctx, "every")?),
            gamma: b.float(ctx, "gamma")?,
        },
        ScheduleFn::Exponential => Schedule::Exponential {
            rate: b.float(ctx, "rate")?,
            every: every(b.duration(ctx, "every")?),
            staircase: b.bool(ctx, "staircase")?,
        },
        ScheduleFn::Cosine => Schedule::Cosine {
            warmup: every(b.duration(ctx, "warmup")?),
            min_lr: b.float(ctx, "min_lr")?,
        },
        ScheduleFn::ReduceOnPlateau => Schedule::ReduceOnPlateau {
            monitor: b.sym(ctx, "monitor")?,
            factor: b.float(ctx, "factor")?,
            patience: b.int(ctx, "patience")? as u64,
            min_lr: b.float(ctx, "min_lr")?,
        },
    })
}

fn validation(
    ctx: &mut Ctx,
    e: &Entry,
    data: Option<&fm_runtime::config::DataSpec>,
) -> Option<Validation> {
    let v = const_eval(ctx, &e.value);
    match &v {
        Val::Sym(Sym {
            name,
            args: None,
            name_span,
        }) => match name.as_str() {
            "none" => Some(Validation::None),
            "test" => {
                if let Some(d) = data {
                    if d.test.is_none() {
                        ctx.emit(
                            Diagnostic::error(codes::E0307, format!("data section `{}` has no test split", d.name))
                                .with_primary(*name_span, "`validation: test` needs one")
                                .with_help("add `test: ...` to the data section, or use `validation: split(0.2)`"),
                        );
                        return None;
                    }
                }
                Some(Validation::Test)
            }
            _ => {
                bind::unknown_value(
                    ctx,
                    "validation",
                    name,
                    *name_span,
                    &["none", "test", "split"],
                );
                None
            }
        },
        Val::Sym(Sym {
            name,
            args: Some(args),
            ..
        }) if name == "split" => {
            super::data::split_fraction(ctx, args, e.value.span).map(Validation::Split)
        }
        Val::Sym(Sym {
            name, name_span, ..
        }) => {
            bind::unknown_value(
                ctx,
                "validation",
                name,
                *name_span,
                &["none", "test", "split"],
            );
            None
        }
        Val::Poison => None,
        other => {
            ctx.error(
                codes::E0201,
                "`validation` must be `none`, `test` or `split(f)`",
                e.value.span,
                format!("found {}", other.describe()),
            );
            None
        }
    }
}

/// A metric as listed, before it is resolved against an output's loss.
#[derive(Clone, Copy, PartialEq)]
enum Listed {
    Accuracy,
    TopK(usize),
    Mse,
    Mae,
    Precision,
    Recall,
    F1,
}

/// The metrics of a list (`[accuracy, top_k(5)]`), each checked once.
fn listed_metrics(ctx: &mut Ctx, v: Val, span: Span) -> Option<Vec<(Listed, Span)>> {
    let items = match v {
        Val::List(items) => items,
        Val::Poison => return None,
        other => vec![(other, span)],
    };
    let mut out: Vec<(Listed, Span)> = Vec::new();
    let mut ok = true;
    for (mv, span) in items {
        let Some((f, b)) = bind_member::<MetricFn>(ctx, &mv, span) else {
            ok = false;
            continue;
        };
        let m = match f {
            MetricFn::Accuracy => Listed::Accuracy,
            MetricFn::TopK => match b.int(ctx, "k") {
                Some(k) => Listed::TopK(k as usize),
                None => {
                    ok = false;
                    continue;
                }
            },
            MetricFn::Mse => Listed::Mse,
            MetricFn::Mae => Listed::Mae,
            MetricFn::Precision => Listed::Precision,
            MetricFn::Recall => Listed::Recall,
            MetricFn::F1 => Listed::F1,
        };
        if out.iter().any(|(o, _)| *o == m) {
            ctx.error(
                codes::E0105,
                format!("the metric `{}` is listed twice", f.name()),
                span,
                "listed again here",
            );
            ok = false;
            continue;
        }
        out.push((m, span));
    }
    ok.then_some(out)
}

/// `metrics: [...]` (every output gets each metric) or `metrics: { out: [...], ... }` (per
/// output, language.md 9.3), resolved against each output's loss and shape as Keras does.
fn metrics(
    ctx: &mut Ctx,
    e: &Entry,
    losses: Option<&[OutputLoss]>,
    graph: Option<&ModelGraph>,
    no_output_targets: Option<&str>,
) -> Option<Vec<OutputMetric>> {
    if let Some(reason) = no_output_targets {
        return no_output_metrics(ctx, e, graph, reason);
    }
    let losses = losses.unwrap_or_default();
    let per_output: Vec<(String, Vec<(Listed, Span)>)> = match const_eval(ctx, &e.value) {
        Val::Dict(entries) => {
            let mut ok = true;
            let mut lists = Vec::new();
            for (k, v, s) in entries {
                if let Some(g) = graph {
                    if !g.outputs.iter().any(|o| o.name == k.name) {
                        unknown_output(ctx, &k, g);
                        ok = false;
                        continue;
                    }
                }
                if lists.iter().any(|(n, _)| *n == k.name) {
                    ctx.error(
                        codes::E0105,
                        format!("the output `{}` is given twice", k.name),
                        k.span,
                        "given again here",
                    );
                    ok = false;
                    continue;
                }
                match listed_metrics(ctx, v, s) {
                    Some(l) => lists.push((k.name.clone(), l)),
                    None => ok = false,
                }
            }
            if !ok {
                return None;
            }
            // In output order, whatever order the map lists them.
            let mut ordered = Vec::new();
            for l in losses {
                if let Some(i) = lists.iter().position(|(n, _)| *n == l.output) {
                    ordered.push(lists.swap_remove(i));
                }
            }
            ordered
        }
        v => {
            let listed = listed_metrics(ctx, v, e.value.span)?;
            losses
                .iter()
                .map(|l| (l.output.clone(), listed.clone()))
                .collect()
        }
    };
    let mut out = Vec::new();
    for (output, listed) in per_output {
        let loss = losses.iter().find(|l| l.output == output).map(|l| l.loss);
        // Keras: binary for binary cross-entropy or one output unit, sparse for sparse
        // cross-entropy, categorical otherwise.
        let last = graph.and_then(|g| {
            let o = g.outputs.iter().find(|o| o.name == output)?;
            Some(g.nodes[o.node].shape.last().copied().unwrap_or(1))
        });
        let kind = match loss {
            Some(Loss::BinaryCrossentropy { .. }) => AccuracyKind::Binary,
            _ if last == Some(1) => AccuracyKind::Binary,
            Some(Loss::SparseCategoricalCrossentropy { .. }) => AccuracyKind::Sparse,
            _ => AccuracyKind::Categorical,
        };
        for (m, _) in listed {
            let metric = match m {
                Listed::Accuracy => Metric::Accuracy(kind),
                Listed::TopK(k) => Metric::TopK(k),
                Listed::Mse => Metric::Mse,
                Listed::Mae => Metric::Mae,
                Listed::Precision => Metric::Precision,
                Listed::Recall => Metric::Recall,
                Listed::F1 => Metric::F1(kind),
            };
            out.push(OutputMetric {
                output: output.clone(),
                metric,
            });
        }
    }
    Some(out)
}

/// E0312 for every metric of an output in a section whose loss reads no output targets (an
/// expression, or `step`s): such a metric has nothing to compare the output with. An empty
/// list is fine.
fn no_output_metrics(
    ctx: &mut Ctx,
    e: &Entry,
    graph: Option<&ModelGraph>,
    reason: &str,
) -> Option<Vec<OutputMetric>> {
    let mut listed: Vec<(String, Option<String>, Span)> = Vec::new();
    let mut push_items = |x: &Expr, output: Option<String>| match &x.kind {
        ExprKind::List(items) => {
            for i in items {
                listed.push((metric_word(i), output.clone(), i.span));
            }
        }
        _ => listed.push((metric_word(x), output, x.span)),
    };
    match &e.value.kind {
        ExprKind::Dict(entries) => {
            for en in entries {
                push_items(&en.value, Some(en.key.name.clone()));
            }
        }
        _ => push_items(&e.value, None),
    }
    if listed.is_empty() {
        return Some(vec![]);
    }
    // A concrete suggestion: the first output and, when the model declares one, a target.
    let output = graph
        .and_then(|g| g.outputs.first())
        .map(|o| o.name.clone());
    let target = graph
        .and_then(|g| g.targets.first())
        .map(|t| t.name.clone());
    for (word, out, span) in listed {
        let of = out.as_ref().map_or(String::new(), |o| format!(" of `{o}`"));
        let mut d = Diagnostic::error(
            codes::E0312,
            format!("the metric `{word}`{of} has no target to compare with: {reason}"),
        )
        .with_primary(span, "a metric of an output needs the output's target");
        let pred = out.clone().or_else(|| output.clone()).unwrap_or("q".into());
        d = match (&target, word.as_str()) {
            (Some(t), "accuracy" | "top_k" | "mse" | "mae") => d.with_help(format!(
                "name the values it compares: `{word}({pred}, {t})` (language.md 9.3)"
            )),
            _ => d.with_help(format!(
                "name model values instead, e.g. `metrics: [mean({pred})]`, or use named losses (`loss: {{ {pred}: mse }}`)"
            )),
        };
        ctx.emit(d.with_note(
            "named losses read one target per output; an expression loss reads `target` declarations",
        ));
    }
    None
}

/// The metric a list entry names (`accuracy`, `top_k(5)` -> `top_k`), for messages.
fn metric_word(x: &Expr) -> String {
    match &x.kind {
        ExprKind::Name(n) => n.name.clone(),
        ExprKind::Call { callee, .. } => callee.name.clone(),
        _ => "metric".into(),
    }
}

fn dict_entries(ctx: &mut Ctx, e: &Entry) -> Option<Vec<(Ident, Val, Span)>> {
    match const_eval(ctx, &e.value) {
        Val::Dict(entries) => Some(entries),
        Val::Poison => None,
        other => {
            ctx.error(
                codes::E0201,
                format!("`{}` must be a dictionary", e.key.name),
                e.value.span,
                format!(
                    "expected `{{ key: value, ... }}`, found {}",
                    other.describe()
                ),
            );
            None
        }
    }
}

/// Checks dictionary keys against `keys` (reporting unknown and duplicate ones).
fn dict_check<'d>(
    ctx: &mut Ctx,
    entries: &'d [(Ident, Val, Span)],
    keys: &[&str],
    what: &str,
) -> Option<Vec<&'d (Ident, Val, Span)>> {
    let mut ok = true;
    let mut seen: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for en in entries {
        let k = &en.0;
        if !keys.contains(&k.name.as_str()) {
            let mut d = Diagnostic::error(
                codes::E0113,
                format!("unknown key `{}` in `{what}`", k.name),
            )
            .with_primary(k.span, "unknown key");
            if let Some(s) = suggest(&k.name, keys.iter().copied()) {
                d = d.with_help(format!("did you mean `{s}`?"));
            }
            ctx.emit(d);
            ok = false;
        } else if seen.contains(&k.name.as_str()) {
            ctx.error(
                codes::E0105,
                format!("the key `{}` is given twice", k.name),
                k.span,
                "given again here",
            );
            ok = false;
        } else {
            seen.push(&k.name);
            out.push(en);
        }
    }
    ok.then_some(out)
}

fn monitor_value(ctx: &mut Ctx, v: &Val, span: Span) -> Option<String> {
    bind::to_sym(ctx, v, span, "monitor", table::Ty::Ident)
}

fn early_stopping(ctx: &mut Ctx, e: &Entry) -> Option<EarlyStopping> {
    let entries = dict_entries(ctx, e)?;
    let entries = dict_check(
        ctx,
        &entries,
        &["monitor", "patience", "min_delta", "restore_best"],
        "early_stopping",
    )?;
    let mut es = EarlyStopping {
        monitor: "val_loss".into(),
        patience: 3,
        min_delta: 0.0,
        restore_best: true,
    };
    for (k, v, s) in entries {
        match k.name.as_str() {
            "monitor" => es.monitor = monitor_value(ctx, v, *s)?,
            "patience" => {
                es.patience = bind::to_int(ctx, v, *s, "patience", Range::NonNegative)? as u64
            }
            "min_delta" => {
                es.min_delta = bind::to_float(ctx, v, *s, "min_delta", Range::NonNegative)?
            }
            _ => es.restore_best = bind::to_bool(ctx, v, *s, "restore_best")?,
        }
    }
    Some(es)
}

fn checkpoint(ctx: &mut Ctx, e: &Entry) -> Option<Checkpoint> {
    let entries = dict_entries(ctx, e)?;
    let entries = dict_check(ctx, &entries, &["monitor", "keep", "every"], "checkpoint")?;
    let mut c = Checkpoint {
        monitor: "val_loss".into(),
        keep: CheckpointKeep::Best,
        every: Every::Epochs(1),
    };
    for (k, v, s) in entries {
        match k.name.as_str() {
            "monitor" => c.monitor = monitor_value(ctx, v, *s)?,
            "keep" => {
                c.keep =
                    match bind::to_sym(ctx, v, *s, "keep", table::Ty::Enum(table::KEEP))?.as_str() {
                        "last" => CheckpointKeep::Last,
                        _ => CheckpointKeep::Best,
                    }
            }
            _ => match v {
                Val::Dur { n, unit } => {
                    let i = bind::to_int(
                        ctx,
                        &Val::Num { v: *n, int: true },
                        *s,
                        "every",
                        Range::Positive,
                    )? as u64;
                    c.every = every((i, *unit == fm_grammar::ast::DurationUnit::Steps));
                }
                other => {
                    bind::type_error(ctx, "every", table::Ty::Duration, other, *s);
                    return None;
                }
            },
        }
    }
    Some(c)
}

/// A data section feeds every model input: one input takes any source; several inputs need
/// `npz(path, x: { input: "key", ... })` naming each input exactly once.
fn data_fits_inputs(
    ctx: &mut Ctx,
    d: &fm_runtime::config::DataSpec,
    g: &ModelGraph,
    span: Span,
) -> bool {
    use fm_runtime::config::{NpzKeys, Source};
    // Sampled inputs (9.2) are drawn, not read.
    let inputs: Vec<&str> = g
        .inputs
        .iter()
        .enumerate()
        .filter(|(k, _)| !g.sampled.iter().any(|(i, _)| i == k))
        .map(|(_, i)| i.name.as_str())
        .collect();
    let keys: Option<Vec<&str>> = match &d.train {
        Source::Npz {
            x: NpzKeys::Named(keys),
            ..
        } => Some(keys.iter().map(|(k, _)| k.as_str()).collect()),
        _ => None,
    };
    let message = match keys {
        None if inputs.len() > 1 => format!(
            "model `{}` has {} inputs, but data section `{}` gives one",
            g.name,
            inputs.len(),
            d.name
        ),
        Some(keys) => {
            let mut a = keys.clone();
            let mut b = inputs.clone();
            a.sort();
            b.sort();
            if a == b {
                return true;
            }
            let shown: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
            format!(
                "data section `{}` gives the inputs {}",
                d.name,
                shown.join(", ")
            )
        }
        None => return true,
    };
    let names: Vec<String> = inputs.iter().map(|k| format!("`{k}`")).collect();
    ctx.emit(
        Diagnostic::error(codes::E0306, "the data does not match the model's inputs")
            .with_primary(span, message)
            .with_note(format!("model `{}` takes {}", g.name, names.join(", ")))
            .with_help("name one npz key per input: `npz(\"data.npz\", x: { input: \"key\", ... }, y: \"labels\")`"),
    );
    false
}

/// The data's targets fit the losses: `y: standardize` (or `scale`) only on regression
/// targets (class indices and one-hot rows must stay as they are), and a `y: { name: "key" }`
/// map names the targets the model reads: its outputs, or its `target` declarations when the
/// loss is an expression (`declared`).
fn data_fits_targets(
    ctx: &mut Ctx,
    items: &Items,
    d: &fm_runtime::config::DataSpec,
    g: &ModelGraph,
    losses: &[&OutputLoss],
    declared: bool,
) -> bool {
    use fm_runtime::config::{NpzKeys, Source, TestSource, Transform};
    let section = items
        .data
        .iter()
        .find(|s| s.name.as_ref().is_some_and(|n| n.name == d.name));
    let entry = |key: &str| section.and_then(|s| s.entries.iter().find(|e| e.key.name == key));
    let mut ok = true;
    let classification = losses.iter().find(|l| {
        matches!(
            l.loss,
            Loss::BinaryCrossentropy { .. }
                | Loss::CategoricalCrossentropy { .. }
                | Loss::SparseCategoricalCrossentropy { .. }
        )
    });
    let rescales =
        d.y.iter()
            .find(|t| matches!(t, Transform::Standardize | Transform::Scale { .. }));
    if let (Some(l), Some(t), Some(e)) = (classification, rescales, entry("y")) {
        let what = match t {
            Transform::Standardize => "`standardize`",
            _ => "`scale`",
        };
        ctx.emit(
            Diagnostic::error(
                codes::E0310,
                format!("{what} on the targets of a classification loss"),
            )
            .with_primary(
                e.value.span,
                format!("changes the class targets of output `{}`", l.output),
            )
            .with_note(format!(
                "`{}` reads class indices or one-hot rows (or 0/1 labels), which must keep their values",
                loss_name(&l.loss)
            ))
            .with_help("transform the targets of regression losses only (`mse`, `mae`, `huber`); leave out `y:` here"),
        );
        ok = false;
    }
    let mut sources = vec![&d.train];
    if let Some(TestSource::Source(s)) = &d.test {
        sources.push(s);
    }
    let readable: Vec<&str> = if declared {
        g.targets.iter().map(|t| t.name.as_str()).collect()
    } else {
        g.outputs.iter().map(|o| o.name.as_str()).collect()
    };
    for (source, key) in sources.into_iter().zip(["train", "test"]) {
        let Source::Npz {
            y: NpzKeys::Named(keys),
            ..
        } = source
        else {
            continue;
        };
        // The span of each name in the `y: { ... }` map as written.
        let spans: Vec<(String, Span)> = entry(key)
            .and_then(|e| match &e.value.kind {
                ExprKind::Call { args, .. } => args.iter().find_map(|a| match &a.value.kind {
                    ExprKind::Dict(entries) if a.name.as_ref().is_some_and(|n| n.name == "y") => {
                        Some(
                            entries
                                .iter()
                                .map(|en| (en.key.name.clone(), en.key.span))
                                .collect(),
                        )
                    }
                    _ => None,
                }),
                _ => None,
            })
            .unwrap_or_default();
        for (name, _) in keys {
            if readable.contains(&name.as_str()) {
                continue;
            }
            let Some((_, span)) = spans.iter().find(|(n, _)| n == name) else {
                continue;
            };
            let (a, what) = if declared {
                ("a", "target declaration")
            } else {
                ("an", "output")
            };
            let mut diag = Diagnostic::error(
                codes::E0311,
                format!(
                    "`y:` maps `{name}`, which is not {a} {what} of model `{}`",
                    g.name
                ),
            )
            .with_primary(*span, format!("no {what} with this name"));
            if let Some(sg) = suggest(name, readable.iter().copied()) {
                diag = diag.with_help(format!("did you mean `{sg}`?"));
            }
            let all: Vec<String> = readable.iter().map(|n| format!("`{n}`")).collect();
            diag = diag.with_note(if all.is_empty() {
                "the loss reads no targets".to_string()
            } else {
                format!("the loss reads the targets {}", all.join(", "))
            });
            ctx.emit(diag);
            ok = false;
        }
    }
    ok
}
