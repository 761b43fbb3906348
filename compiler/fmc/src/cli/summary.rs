//! `fmc summary FILE [--ascii] [--model NAME] [--batch-size N]`.

use super::{load_checked, Global};
use std::path::Path;

pub fn run(
    g: &mut Global,
    file: &Path,
    ascii: bool,
    model: Option<&str>,
    batch_size: Option<usize>,
) -> i32 {
    let (_, checked) = match load_checked(g, file) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let models: Vec<_> = checked
        .models
        .iter()
        .filter(|m| model.is_none_or(|n| m.name == n))
        .collect();
    if models.is_empty() {
        match model {
            Some(n) => {
                let names: Vec<String> = checked
                    .models
                    .iter()
                    .map(|m| format!("`{}`", m.name))
                    .collect();
                g.fail(&format!(
                    "no model `{n}` in `{}` (models: {})",
                    file.display(),
                    names.join(", ")
                ));
                return 2;
            }
            None => {
                g.fail(&format!("`{}` declares no model", file.display()));
                return 1;
            }
        }
    }
    let style = fm_compiler::summary::Style {
        unicode: !ascii && g.term.stdout_is_tty && !g.term.non_utf8_locale,
        width: g.term.columns.unwrap_or(80),
    };
    let mut text = String::new();
    for (i, m) in models.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        text.push_str(&fm_compiler::summary::render(m, &checked.trains, &style));
        if let Some(n) = batch_size {
            let train = checked.trains.iter().find(|t| t.model == m.name);
            match planned_memory(m, train, n) {
                Ok(plan) => text.push_str(&plan),
                Err(e) => {
                    g.fail(&e);
                    return 1;
                }
            }
        }
    }
    let _ = g.out.write_all(text.as_bytes());
    0
}

/// `--batch-size N`: the memory the JIT plans for the training step (each step function of a
/// section with `step`s; the largest) and for predict at batch size `n`. Each figure is the
/// function's arena (every value, buffers reused once dead) plus its arguments (weights,
/// optimizer state, the batch), which it reads in place: an upper bound, since the arena also
/// keeps a range for each argument that only a non-contiguous argument would use. Scratch of
/// the GEMM kernels (a packed tile per thread) is not counted.
fn planned_memory(
    m: &fm_compiler::graph::ModelGraph,
    train: Option<&fm_runtime::config::TrainSpec>,
    n: usize,
) -> Result<String, String> {
    use fm_compiler::summary::readable_bytes;
    let spec = train
        .cloned()
        .unwrap_or_else(|| fm_compiler::exec::default_spec(m));
    let session = fm_compiler::exec::Session::new(m.clone(), spec)?;
    let line = |what: &str, f: &fm_compiler::ir::Function, args: &str| {
        fm_jit::plan_memory(f, n).map(|p| {
            format!(
                " {what}: at most {} (arena {} + {args} {})\n",
                readable_bytes((p.arena + p.arguments) as f64),
                readable_bytes(p.arena as f64),
                readable_bytes(p.arguments as f64)
            )
        })
    };
    let mut out = format!("Planned memory at batch size {n}:\n");
    if train.is_some() {
        let mut largest: Option<(usize, String)> = None;
        for f in std::iter::once(&session.train_fn).chain(&session.more_steps) {
            let p = fm_jit::plan_memory(f, n)?;
            if largest
                .as_ref()
                .is_none_or(|(b, _)| p.arena + p.arguments > *b)
            {
                largest = Some((
                    p.arena + p.arguments,
                    line("Train step", f, "weights, optimizer state and batch")?,
                ));
            }
        }
        out.push_str(&largest.map(|l| l.1).unwrap_or_default());
    }
    out.push_str(&line("Predict", &session.predict_fn, "weights and inputs")?);
    Ok(out)
}
