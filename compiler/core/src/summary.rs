//! `fmc summary`: Keras 3's `model.summary()` for a checked model, then the resolved training
//! setup.
//!
//! The table is what Keras prints for a *functional* model built from the same graph
//! (`keras.Model(inputs, outputs)`): the input layers are rows (`image (InputLayer)`), and a model
//! that is not a plain chain gets a fourth `Connected to` column. Layer names are fm's
//! (language.md section 7: `max_pool2d`); the type column is the Keras class (`MaxPooling2D`).
//! Functions and arithmetic get Keras's operation names (`activation`, `add`, `concatenate`,
//! numbered model-wide). Widths follow Keras and rich exactly: line length
//! `min(88, columns - 4)` (108 with `Connected to`), split at Keras's column positions and
//! shrunk by rich's `ratio_reduce`; `columns` is the terminal width (80 when unknown, as Python's
//! `shutil.get_terminal_size` falls back to).

use crate::check::table::{LossFn, OptimizerFn, ScheduleFn, TransformFn};
use crate::graph::{ModelGraph, Op};
use fm_runtime::config::{
    AccuracyKind, Clip, Every, Loss, Metric, NpzKeys, OptimizerKind, OptimizerSpec, Schedule,
    Source, TestSource, TrainSpec, Transform, Validation,
};
use std::collections::HashMap;

pub struct Style {
    /// Box-drawing characters (rich's HEAVY_HEAD); ASCII otherwise.
    pub unicode: bool,
    /// Terminal columns.
    pub width: usize,
}

/// `93,322`
pub fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Keras's `readable_memory_size`: `364.54 KB`, `0.00 B`.
pub fn readable_bytes(bytes: f64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut size = bytes;
    for unit in units {
        if size / 1024.0 < 1.0 {
            return format!("{size:.2} {unit}");
        }
        size /= 1024.0;
    }
    format!("{size:.2} PB")
}

/// Python's `round` (half to even) for the small values rich's `ratio_reduce` feeds it.
fn round_half_even(x: f64) -> i64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && (r as i64) % 2 != 0 {
        (r - x.signum()) as i64
    } else {
        r as i64
    }
}

/// Cell widths (content + 2 padding) as rich lays out Keras's table.
pub fn column_widths(positions: &[f64], line_length: usize) -> Vec<usize> {
    let mut widths = Vec::new();
    let mut current = 0usize;
    for p in positions {
        let w = ((p * line_length as f64) as usize)
            .saturating_sub(current)
            .max(4);
        widths.push(w + 2);
        current += w;
    }
    let max_width = line_length.saturating_sub(positions.len() + 1);
    let total: usize = widths.iter().sum();
    if total > max_width {
        // rich's ratio_reduce(excess, [1] * n, widths, widths)
        let mut remaining = (total - max_width) as i64;
        let mut ratio_left = widths.len() as i64;
        for w in widths.iter_mut() {
            let distributed =
                (*w as i64).min(round_half_even(remaining as f64 / ratio_left as f64));
            *w = (*w as i64 - distributed).max(3) as usize;
            remaining -= distributed;
            ratio_left -= 1;
        }
    }
    widths
}

/// Greedy word wrap; words longer than the width are folded. Linear in the text.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut cur = String::new();
    let mut cur_len = 0;
    for word in text.split(' ') {
        let mut word = word;
        loop {
            let wlen = word.chars().count();
            if cur_len == 0 && wlen <= width {
                cur = word.to_string();
                cur_len = wlen;
                break;
            }
            if cur_len > 0 && cur_len + 1 + wlen <= width {
                cur.push(' ');
                cur.push_str(word);
                cur_len += 1 + wlen;
                break;
            }
            if cur_len > 0 {
                lines.push(std::mem::take(&mut cur));
                cur_len = 0;
                continue;
            }
            // A word longer than the line: fold it.
            let cut = word
                .char_indices()
                .nth(width)
                .map_or(word.len(), |(i, _)| i);
            lines.push(word[..cut].to_string());
            word = &word[cut..];
        }
    }
    lines.push(cur);
    lines
}

struct BoxChars {
    top: [char; 4],
    head: [char; 3],
    head_row: [char; 4],
    mid: [char; 3],
    row: [char; 4],
    bottom: [char; 4],
}

const HEAVY_HEAD: BoxChars = BoxChars {
    top: ['┏', '━', '┳', '┓'],
    head: ['┃', '┃', '┃'],
    head_row: ['┡', '━', '╇', '┩'],
    mid: ['│', '│', '│'],
    row: ['├', '─', '┼', '┤'],
    bottom: ['└', '─', '┴', '┘'],
};

const ASCII: BoxChars = BoxChars {
    top: ['+', '-', '-', '+'],
    head: ['|', '|', '|'],
    head_row: ['|', '-', '+', '|'],
    mid: ['|', '|', '|'],
    row: ['|', '-', '+', '|'],
    bottom: ['+', '-', '-', '+'],
};

fn rule(widths: &[usize], c: [char; 4]) -> String {
    let mut s = String::new();
    s.push(c[0]);
    for (i, w) in widths.iter().enumerate() {
        if i > 0 {
            s.push(c[2]);
        }
        s.extend(std::iter::repeat_n(c[1], *w));
    }
    s.push(c[3]);
    s.push('\n');
    s
}

fn row(widths: &[usize], cells: &[String], right: &[bool], v: [char; 3]) -> String {
    let wrapped: Vec<Vec<String>> = cells
        .iter()
        .zip(widths)
        .map(|(c, w)| wrap(c, w - 2))
        .collect();
    let height = wrapped.iter().map(|l| l.len()).max().unwrap_or(1);
    let mut s = String::new();
    for line in 0..height {
        s.push(v[0]);
        for (i, w) in widths.iter().enumerate() {
            if i > 0 {
                s.push(v[1]);
            }
            let text = wrapped[i].get(line).map(|t| t.as_str()).unwrap_or("");
            let fill = (w - 2).saturating_sub(text.chars().count());
            s.push(' ');
            if right[i] {
                s.push_str(&" ".repeat(fill));
                s.push_str(text);
            } else {
                s.push_str(text);
                s.push_str(&" ".repeat(fill));
            }
            s.push(' ');
        }
        s.push(v[2]);
        s.push('\n');
    }
    s
}

/// Whether Keras would call the functional model "sequential-like": one input, and every node
/// reads exactly the node before it.
fn sequential_like(g: &ModelGraph) -> bool {
    g.inputs.len() == 1
        && g.outputs.len() == 1
        && g.nodes
            .iter()
            .enumerate()
            .skip(1)
            .all(|(i, n)| n.inputs.len() == 1 && n.inputs[0] == i - 1)
        && !g.nodes.iter().enumerate().skip(1).any(|(i, n)| {
            // MultiHeadAttention lists its input three times.
            n.inputs.iter().any(|&j| j != i - 1)
        })
}

/// Display names: layers keep theirs; functions get Keras operation names, numbered model-wide.
fn display_names(g: &ModelGraph) -> Vec<String> {
    let mut counters: HashMap<&str, usize> = HashMap::new();
    g.nodes
        .iter()
        .map(|n| match &n.name {
            Some(name) => name.clone(),
            None => {
                let base = match n.op {
                    Op::Add => "add",
                    Op::Sub => "subtract",
                    Op::Mul => "multiply",
                    Op::Div => "divide",
                    Op::Func(_) | Op::Clip { .. } => "function",
                    Op::Reduce { .. } | Op::Dot | Op::Pick | Op::Hit(_) => "reduce",
                    Op::Loss(_) => "loss",
                    Op::Concat { .. } => "concatenate",
                    _ => "activation",
                };
                let k = counters.entry(base).or_insert(0);
                let name = if *k == 0 {
                    base.to_string()
                } else {
                    format!("{base}_{k}")
                };
                *k += 1;
                name
            }
        })
        .collect()
}

/// `(None, 26, 26, 32)`
pub fn keras_shape(shape: &[usize]) -> String {
    let mut parts = vec!["None".to_string()];
    parts.extend(shape.iter().map(|d| d.to_string()));
    format!("({})", parts.join(", "))
}

/// The Keras-style table and parameter totals for one model.
pub fn render_table(g: &ModelGraph, style: &Style) -> String {
    let seq = sequential_like(g);
    let (default_len, positions): (usize, &[f64]) = if seq {
        (88, &[0.45, 0.80, 1.0])
    } else {
        (108, &[0.3, 0.56, 0.74, 1.0])
    };
    let line_length = default_len.min(style.width.saturating_sub(4)).max(40);
    let widths = column_widths(positions, line_length);
    let b = if style.unicode { &HEAVY_HEAD } else { &ASCII };
    let mut header = vec![
        "Layer (type)".to_string(),
        "Output Shape".into(),
        "Param #".into(),
    ];
    let mut right = vec![false, false, true];
    if !seq {
        header.push("Connected to".into());
        right.push(false);
    }
    let names = display_names(g);
    let mut out = String::new();
    out.push_str(&format!("Model: \"{}\"\n", g.name));
    out.push_str(&rule(&widths, b.top));
    out.push_str(&row(&widths, &header, &right, b.head));
    out.push_str(&rule(&widths, b.head_row));
    // The model's own nodes: what its values and outputs depend on (not the nodes of `train`
    // loss expressions), without number constants.
    let mut roots: Vec<usize> = g.values.iter().map(|v| v.1).collect();
    roots.extend(g.outputs.iter().map(|o| o.node));
    let shown = crate::lower::needed(g, &roots);
    let mut first = true;
    for (i, n) in g.nodes.iter().enumerate() {
        if (!shown[i] && !g.values.is_empty()) || matches!(n.op, Op::Const { .. }) {
            continue;
        }
        if !first {
            out.push_str(&rule(&widths, b.row));
        }
        first = false;
        let shared = g.shared.iter().find(|(id, _)| *id == i).map(|s| &s.1);
        // Shared weights are stored (and counted) once, at the named call.
        let count: usize = if shared.is_some() {
            0
        } else {
            n.params
                .iter()
                .map(|&p| g.params[p].shape.iter().product::<usize>())
                .sum()
        };
        let mut label = format!("{} ({})", names[i], n.op.type_name());
        if let Some(call) = shared {
            let lagged = n
                .params
                .iter()
                .any(|&p| g.params[p].name.starts_with("lag/"));
            if lagged {
                label.push_str(&format!(" (lagged copy of {call})"));
            } else {
                label.push_str(&format!(" (shared with {call})"));
            }
        }
        let mut cells = vec![label, keras_shape(&n.shape), thousands(count)];
        if !seq {
            // As Keras lists a call's input tensors: `MultiHeadAttention` always gets query and
            // value, and the key only when it differs from the value (it was given).
            let inputs: &[usize] = match n.op {
                Op::Attention { .. } if n.inputs.len() == 3 && n.inputs[2] == n.inputs[1] => {
                    &n.inputs[..2]
                }
                _ => &n.inputs,
            };
            let conns: Vec<String> = inputs
                .iter()
                .map(|&j| match g.nodes[j].op {
                    Op::Const { value } => num(value),
                    _ => format!("{}[0][0]", names[j]),
                })
                .collect();
            cells.push(if conns.is_empty() {
                "-".into()
            } else {
                conns.join(", ")
            });
        }
        out.push_str(&row(&widths, &cells, &right, b.mid));
    }
    out.push_str(&rule(&widths, b.bottom));
    let total = g.total_params();
    let trainable = g.trainable_params();
    let frozen = total - trainable;
    out.push_str(&format!(
        " Total params: {} ({})\n",
        thousands(total),
        readable_bytes(total as f64 * 4.0)
    ));
    out.push_str(&format!(
        " Trainable params: {} ({})\n",
        thousands(trainable),
        readable_bytes(trainable as f64 * 4.0)
    ));
    out.push_str(&format!(
        " Non-trainable params: {} ({})\n",
        thousands(frozen),
        readable_bytes(frozen as f64 * 4.0)
    ));
    out
}

/// Shortest faithful form of a number: `5`, `0.001`, `1e-7`.
pub fn num(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:?}")
    }
}

fn every(e: &Every) -> String {
    match e {
        Every::Epochs(n) => format!("{n} epoch{}", if *n == 1 { "" } else { "s" }),
        Every::Steps(n) => format!("{n} step{}", if *n == 1 { "" } else { "s" }),
    }
}

fn loss_text(l: &Loss) -> String {
    let name = LossFn::of(l).name();
    match l {
        Loss::Mse | Loss::Mae => name.into(),
        Loss::Huber { delta } => format!("{name}(delta: {})", num(*delta)),
        Loss::BinaryCrossentropy { from_logits }
        | Loss::CategoricalCrossentropy { from_logits }
        | Loss::SparseCategoricalCrossentropy { from_logits } => {
            format!("{name}(from_logits: {from_logits})")
        }
    }
}

fn optimizer_text(o: &OptimizerSpec) -> String {
    let mut parts = vec![format!("lr: {}", num(o.lr))];
    match o.kind {
        OptimizerKind::Sgd { momentum, nesterov } => {
            parts.push(format!("momentum: {}", num(momentum)));
            parts.push(format!("nesterov: {nesterov}"));
        }
        OptimizerKind::Adam {
            beta1,
            beta2,
            epsilon,
        }
        | OptimizerKind::AdamW {
            beta1,
            beta2,
            epsilon,
        } => {
            parts.push(format!("beta1: {}", num(beta1)));
            parts.push(format!("beta2: {}", num(beta2)));
            parts.push(format!("epsilon: {}", num(epsilon)));
        }
        OptimizerKind::RmsProp {
            rho,
            momentum,
            epsilon,
        } => {
            parts.push(format!("rho: {}", num(rho)));
            parts.push(format!("momentum: {}", num(momentum)));
            parts.push(format!("epsilon: {}", num(epsilon)));
        }
        OptimizerKind::Adagrad {
            initial_accumulator,
            epsilon,
        } => {
            parts.push(format!("initial_accumulator: {}", num(initial_accumulator)));
            parts.push(format!("epsilon: {}", num(epsilon)));
        }
    }
    parts.push(format!("weight_decay: {}", num(o.weight_decay)));
    match o.clip {
        Some(Clip::Norm(v)) => parts.push(format!("clip_norm: {}", num(v))),
        Some(Clip::GlobalNorm(v)) => parts.push(format!("global_clip_norm: {}", num(v))),
        Some(Clip::Value(v)) => parts.push(format!("clip_value: {}", num(v))),
        None => {}
    }
    format!("{}({})", OptimizerFn::of(&o.kind).name(), parts.join(", "))
}

fn schedule_text(s: &Schedule) -> String {
    let name = ScheduleFn::of(s).name();
    let args = match s {
        Schedule::Constant => return name.into(),
        Schedule::Step { every: e, gamma } => {
            format!("every: {}, gamma: {}", every(e), num(*gamma))
        }
        Schedule::Exponential {
            rate,
            every: e,
            staircase,
        } => format!(
            "rate: {}, every: {}, staircase: {staircase}",
            num(*rate),
            every(e)
        ),
        Schedule::Cosine { warmup, min_lr } => {
            format!("warmup: {}, min_lr: {}", every(warmup), num(*min_lr))
        }
        Schedule::ReduceOnPlateau {
            monitor,
            factor,
            patience,
            min_lr,
        } => format!(
            "monitor: {monitor}, factor: {}, patience: {patience}, min_lr: {}",
            num(*factor),
            num(*min_lr)
        ),
    };
    format!("{name}({args})")
}

fn metric_text(m: &Metric) -> String {
    match m {
        Metric::Accuracy(k) => format!(
            "accuracy ({})",
            match k {
                AccuracyKind::Sparse => "sparse categorical",
                AccuracyKind::Categorical => "categorical",
                AccuracyKind::Binary => "binary, threshold 0.5",
            }
        ),
        Metric::TopK(k) => format!("top_k({k})"),
        Metric::F1(k) => format!(
            "f1 (macro over classes, {})",
            match k {
                AccuracyKind::Binary => "threshold 0.5",
                _ => "the largest score decides",
            }
        ),
        other => other.name(),
    }
}

/// A data source as written; `reads_y`: whether the model reads its targets through `y:` (a
/// model whose loss reads no targets, or one target per name, ignores a plain `y` key).
fn source_text(s: &Source, reads_y: bool) -> String {
    match s {
        Source::Idx { images, labels } => format!(
            "idx({:?}, {:?})",
            images.display().to_string(),
            labels.display().to_string()
        ),
        Source::Npy { x, y } => format!(
            "npy({:?}, {:?})",
            x.display().to_string(),
            y.display().to_string()
        ),
        Source::Npz { path, x, y } => {
            let keys = |k: &NpzKeys| match k {
                NpzKeys::One(k) => format!("{k:?}"),
                NpzKeys::Named(keys) => {
                    let parts: Vec<String> =
                        keys.iter().map(|(i, k)| format!("{i}: {k:?}")).collect();
                    format!("{{ {} }}", parts.join(", "))
                }
            };
            let y = match y {
                NpzKeys::One(_) if !reads_y => String::new(),
                y => format!(", y: {}", keys(y)),
            };
            format!("npz({:?}, x: {}{y})", path.display().to_string(), keys(x))
        }
        Source::Csv { path, label } => {
            format!("csv({:?}, label: {label:?})", path.display().to_string())
        }
    }
}

fn transforms_text(ts: &[Transform]) -> String {
    let parts: Vec<String> = ts
        .iter()
        .map(|t| {
            let name = TransformFn::of(t).name();
            match t {
                Transform::Scale {
                    factor,
                    offset: 0.0,
                } => format!("{name}({})", num(*factor)),
                Transform::Scale { factor, offset } => {
                    format!("{name}({}, offset: {})", num(*factor), num(*offset))
                }
                Transform::Standardize => name.into(),
                Transform::OneHot(n) => format!("{name}({n})"),
            }
        })
        .collect();
    parts.join(", ")
}

/// The resolved training setup, one `key: value` line each.
pub fn render_training(t: &TrainSpec) -> String {
    let mut out = format!("Training `{}`:\n", t.model);
    for l in &t.losses {
        let weight = if l.weight != 1.0 {
            format!(" (weight {})", num(l.weight))
        } else {
            String::new()
        };
        out.push_str(&format!(
            " Loss: {} on `{}`{weight}\n",
            loss_text(&l.loss),
            l.output
        ));
        if l.fused_with_activation {
            let act = match l.loss {
                Loss::BinaryCrossentropy { .. } => "sigmoid",
                _ => "softmax",
            };
            out.push_str(&format!(
                "       computed from the logits: the final {act} and the cross-entropy run as one stable step\n"
            ));
        }
    }
    if t.objective.is_some() {
        out.push_str(" Loss: an expression, minimised as its mean over the batch\n");
    }
    if t.steps.is_empty() {
        out.push_str(&format!(" Optimizer: {}\n", optimizer_text(&t.optimizer)));
    }
    for st in &t.steps {
        let what = match &st.update {
            Some(u) => format!("{} weight tensors", u.len()),
            None => "every weight".to_string(),
        };
        let own = st.schedule.as_ref().map_or(String::new(), |sch| {
            format!("; schedule: {}", schedule_text(sch))
        });
        out.push_str(&format!(
            " Step `{}`: updates {what}; loss: {}; optimizer: {}{own}\n",
            st.name,
            if st.objective.is_some() {
                "an expression".to_string()
            } else {
                st.losses
                    .iter()
                    .map(|l| format!("{} on `{}`", loss_text(&l.loss), l.output))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            optimizer_text(&st.optimizer)
        ));
    }
    out.push_str(&format!(" Schedule: {}\n", schedule_text(&t.schedule)));
    out.push_str(&format!(" Epochs: {}\n", t.epochs));
    out.push_str(&format!(" Batch size: {}\n", t.batch_size));
    out.push_str(&format!(
        " Validation: {}\n",
        match &t.validation {
            Validation::None => "none".to_string(),
            Validation::Split(f) => format!("split({})", num(*f)),
            Validation::Test => "test".into(),
        }
    ));
    out.push_str(&format!(" Shuffle: {}, seed: {}\n", t.shuffle, t.seed));
    // One output: its metrics; several: each output's, after its name.
    let several = t.losses.len() > 1;
    let mut metrics: Vec<String> = Vec::new();
    for m in &t.metrics {
        let text = metric_text(&m.metric);
        match metrics.last_mut() {
            Some(last) if several && last.starts_with(&format!("`{}`: ", m.output)) => {
                last.push_str(&format!(", {text}"));
            }
            _ if several => metrics.push(format!("`{}`: {text}", m.output)),
            _ => metrics.push(text),
        }
    }
    let mut metrics = if several && !metrics.is_empty() {
        vec![metrics.join("; ")]
    } else {
        metrics
    };
    // Metrics over model values (9.3), by their logged names.
    for (name, _) in &t.value_metrics {
        metrics.push(format!("`{name}` (mean over samples of a model value)"));
    }
    out.push_str(&format!(
        " Metrics: {}\n",
        if metrics.is_empty() {
            "none".to_string()
        } else {
            metrics.join(", ")
        }
    ));
    if let Some(es) = &t.early_stopping {
        out.push_str(&format!(
            " Early stopping: monitor {}, patience {}, min_delta {}, restore_best {}\n",
            es.monitor,
            es.patience,
            num(es.min_delta),
            es.restore_best
        ));
    }
    if let Some(c) = &t.checkpoint {
        out.push_str(&format!(
            " Checkpoint: monitor {}, keep {}, every {}\n",
            c.monitor,
            match c.keep {
                fm_runtime::config::CheckpointKeep::Best => "best",
                fm_runtime::config::CheckpointKeep::Last => "last",
            },
            every(&c.every)
        ));
    }
    match &t.data {
        Some(d) => {
            out.push_str(&format!(" Data: `{}`\n", d.name));
            // The `y` key is read for the one target of a one-output model with a named loss;
            // several targets (outputs or declarations) are read by name.
            let reads_y = t.steps.is_empty() && t.objective.is_none() && t.losses.len() == 1;
            out.push_str(&format!("   train: {}\n", source_text(&d.train, reads_y)));
            match &d.test {
                Some(TestSource::Source(s)) => {
                    out.push_str(&format!("   test: {}\n", source_text(s, reads_y)))
                }
                Some(TestSource::Split(f)) => {
                    out.push_str(&format!("   test: split({})\n", num(*f)))
                }
                None => {}
            }
            if !d.x.is_empty() {
                out.push_str(&format!("   x: {}\n", transforms_text(&d.x)));
            }
            if !d.y.is_empty() {
                out.push_str(&format!("   y: {}\n", transforms_text(&d.y)));
            }
        }
        None => out.push_str(" Data: from the command line (--x, --y)\n"),
    }
    out
}

/// The whole summary of one model: doc comment, table, totals, then each `train` section for it.
pub fn render(g: &ModelGraph, trains: &[TrainSpec], style: &Style) -> String {
    let mut out = String::new();
    for line in &g.doc {
        out.push_str(&format!("/// {line}\n"));
    }
    out.push_str(&render_table(g, style));
    for (input, sampler) in &g.sampled {
        let how = match sampler {
            crate::graph::Sampler::Normal { mean, std } => {
                format!("normal(mean: {}, std: {})", num(*mean), num(*std))
            }
            crate::graph::Sampler::Uniform { lo, hi } => {
                format!("uniform(lo: {}, hi: {})", num(*lo), num(*hi))
            }
            crate::graph::Sampler::Categorical { probs } => {
                format!("categorical over {} indices", probs.len())
            }
        };
        out.push_str(&format!(
            " Sampled input `{}`: {how}, drawn for every step and batch\n",
            g.inputs[*input].name
        ));
    }
    for lag in &g.lags {
        let how = match lag.kind {
            crate::graph::LagKind::Copy { every } => {
                format!("a copy refreshed every {every} steps")
            }
            crate::graph::LagKind::Ema { decay } => {
                format!("an exponential moving average (decay {})", num(decay))
            }
        };
        out.push_str(&format!(
            " Lagged weights of `{}`: {how}, stored as `lag/{}/...`\n",
            lag.call, lag.call
        ));
    }
    for t in trains.iter().filter(|t| t.model == g.name) {
        out.push('\n');
        out.push_str(&render_training(t));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keras_number_formats() {
        assert_eq!(thousands(93322), "93,322");
        assert_eq!(thousands(320), "320");
        assert_eq!(thousands(1000000), "1,000,000");
        assert_eq!(readable_bytes(93322.0 * 4.0), "364.54 KB");
        assert_eq!(readable_bytes(0.0), "0.00 B");
        assert_eq!(readable_bytes(101770.0 * 4.0), "397.54 KB");
    }

    #[test]
    fn rich_column_widths_match_keras() {
        // 80-column terminal: line length 76, the widths keras.io shows (33, 24, 15).
        assert_eq!(column_widths(&[0.45, 0.80, 1.0], 76), vec![33, 24, 15]);
        // Wide terminal: line length 88.
        assert_eq!(column_widths(&[0.45, 0.80, 1.0], 88), vec![38, 29, 17]);
    }

    #[test]
    fn half_even_rounding() {
        assert_eq!(round_half_even(3.5), 4);
        assert_eq!(round_half_even(2.5), 2);
        assert_eq!(round_half_even(3.33), 3);
    }
}
