//! Size limits, computed before anything is allocated: how many layers a model expands to, how
//! deeply block calls nest, and how much memory its parameters, its activations and one training
//! step at the configured batch size need. Over a limit is a coded error naming the largest
//! contributors (E0219 for the model, E0308 for the training setup), never an abort.
//!
//! The expansion size is a lower bound computed from the text alone (a `repeat` whose count is
//! not a literal counts once), so a model it rejects is certainly too large; the expander keeps
//! its own count as a second guard and stops as soon as that count passes [`MAX_NODES`].

use super::items::Items;
use super::Ctx;
use crate::graph::ModelGraph;
use crate::summary::{readable_bytes, thousands};
use fm_codes as codes;
use fm_grammar::ast::{self, Expr, ExprKind, Span, Stmt};
use fm_grammar::Diagnostic;
use fm_runtime::config::{OptimizerKind, TrainSpec};
use std::collections::HashMap;

/// Largest `.fm` source read (64 MiB: [`MAX_NODES`] layers written out take a few MB), so that a
/// path naming a device (`/dev/zero`) or a huge file is an error, not exhausted memory.
pub const MAX_SOURCE_BYTES: u64 = 64 << 20;

/// Reads a `.fm` (or `.fmir`) source, at most [`MAX_SOURCE_BYTES`].
pub fn read_source(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    fm_runtime::fsutil::read_bounded(path, MAX_SOURCE_BYTES, "the most a source may hold")
}

/// Most layers (graph nodes plus block calls) one model may expand to.
pub const MAX_NODES: usize = 100_000;
/// Deepest nesting of block calls (a block calling a block calling a block ...).
pub const MAX_BLOCK_DEPTH: usize = 256;

/// Categories of a `categorical` sampled input (its cumulative table is part of the IR).
pub const MAX_CATEGORIES: usize = 1_000_000;
/// Deepest nesting of expression evaluation and block calls together that the expander follows
/// (each level is a few stack frames; the checker runs on a stack sized for this).
pub const MAX_DEPTH: usize = 4_096;
/// Stack for the checker thread: [`MAX_DEPTH`] levels of expansion with room to spare. Only the
/// pages actually touched are committed.
pub const CHECK_STACK: usize = 256 << 20;

/// The memory budget models are checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes.
    pub memory: u64,
    /// True when the budget came from `--memory-limit` (the message says where it came from).
    pub from_flag: bool,
}

impl Default for Limits {
    /// The machine's physical memory.
    fn default() -> Self {
        Limits {
            memory: machine_memory().unwrap_or(u64::MAX),
            from_flag: false,
        }
    }
}

impl Limits {
    pub fn with_memory(bytes: u64) -> Self {
        Limits {
            memory: bytes,
            from_flag: true,
        }
    }

    /// "the `--memory-limit` of 8.00 GB", or "this machine's memory" (no amount: messages stay
    /// the same on every machine).
    pub fn describe(&self) -> String {
        if self.from_flag {
            format!(
                "the `--memory-limit` of {}",
                readable_bytes(self.memory as f64)
            )
        } else {
            "this machine's memory (set a budget with `--memory-limit`)".to_string()
        }
    }
}

pub use fm_runtime::system::machine_memory;

/// Parses `--memory-limit`: `512M`, `8G`, `1.5GB`, `1000000` (bytes), case-insensitive, binary
/// units (K = 1024).
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let t = t
        .strip_suffix("ib")
        .or_else(|| t.strip_suffix('b'))
        .unwrap_or(&t);
    let (num, shift) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 10),
        Some('m') => (&t[..t.len() - 1], 20),
        Some('g') => (&t[..t.len() - 1], 30),
        Some('t') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a memory size (examples: 512M, 8G, 1.5G)"))?;
    let bytes = v * (1u64 << shift) as f64;
    if !(bytes.is_finite() && bytes >= 1.0) {
        return Err(format!("`{text}` is not a positive memory size"));
    }
    Ok(bytes.min(u64::MAX as f64) as u64)
}

/// Per-block lower bounds on the expansion: layers produced and block-call nesting depth.
pub struct BlockSizes {
    size: HashMap<String, u64>,
    depth: HashMap<String, u64>,
}

/// Sizes every block bottom-up over the (acyclic, after `items.recursive`) call graph, without
/// recursion on the call chain: a chain of thousands of blocks is sized in linear time.
pub fn size_blocks(items: &Items) -> BlockSizes {
    let mut sizes = BlockSizes {
        size: HashMap::new(),
        depth: HashMap::new(),
    };
    let mut names: Vec<&String> = items.blocks.keys().collect();
    names.sort();
    let mut expanded: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for root in names {
        if sizes.size.contains_key(root.as_str()) {
            continue;
        }
        // Post-order walk: a block is sized once all the blocks it calls are.
        let mut stack: Vec<(&str, bool)> = vec![(root.as_str(), false)];
        while let Some((name, callees_done)) = stack.pop() {
            if sizes.size.contains_key(name) {
                continue;
            }
            // Seen before but not sized: a cycle `find_recursion` already reported.
            if !callees_done && !expanded.insert(name) {
                sizes.size.insert(name.to_string(), 0);
                sizes.depth.insert(name.to_string(), 0);
                continue;
            }
            let Some(block) = items.blocks.get(name) else {
                continue;
            };
            if items.recursive.iter().any(|r| r == name) {
                sizes.size.insert(name.to_string(), 0);
                sizes.depth.insert(name.to_string(), 0);
                continue;
            }
            if !callees_done {
                stack.push((name, true));
                for c in called_blocks(&block.body, items) {
                    if !sizes.size.contains_key(c) {
                        stack.push((c, false));
                    }
                }
                continue;
            }
            let (size, depth) = body_cost(&block.body, items, &sizes);
            sizes.size.insert(name.to_string(), size);
            sizes.depth.insert(name.to_string(), depth + 1);
        }
    }
    sizes
}

/// The blocks called anywhere in `body`.
fn called_blocks<'f>(body: &'f [Stmt], items: &Items) -> Vec<&'f str> {
    let mut out = Vec::new();
    for s in body {
        if let Stmt::Let { value, .. } | Stmt::Output { value, .. } | Stmt::Return { value, .. } = s
        {
            walk_calls(value, items, &mut out);
        }
    }
    out
}

fn walk_calls<'f>(e: &'f Expr, items: &Items, out: &mut Vec<&'f str>) {
    match &e.kind {
        ExprKind::Name(id) if items.blocks.contains_key(&id.name) => out.push(&id.name),
        ExprKind::Call { callee, args } => {
            if items.blocks.contains_key(&callee.name) {
                out.push(&callee.name);
            }
            args.iter().for_each(|a| walk_calls(&a.value, items, out));
        }
        ExprKind::Pipe { lhs, stage } => {
            walk_calls(lhs, items, out);
            walk_calls(stage, items, out);
        }
        ExprKind::Repeat { count, body } => {
            walk_calls(count, items, out);
            body.iter().for_each(|s| walk_calls(s, items, out));
        }
        ExprKind::Binary { lhs, rhs, .. } => {
            walk_calls(lhs, items, out);
            walk_calls(rhs, items, out);
        }
        ExprKind::Neg(x) | ExprKind::Paren(x) => walk_calls(x, items, out),
        ExprKind::List(xs) => xs.iter().for_each(|x| walk_calls(x, items, out)),
        _ => {}
    }
}

/// Layers and block-call depth of a body whose callees are sized.
fn body_cost(body: &[Stmt], items: &Items, sizes: &BlockSizes) -> (u64, u64) {
    let mut total = 0u64;
    let mut depth = 0u64;
    for s in body {
        if let Stmt::Let { value, .. } | Stmt::Output { value, .. } | Stmt::Return { value, .. } = s
        {
            let (n, d) = expr_cost(value, false, items, sizes, &mut |_, _, _| {});
            total = total.saturating_add(n);
            depth = depth.max(d);
        }
    }
    (total, depth)
}

/// Layers (nodes plus block calls) an expression expands to, and its block-call depth. `site`
/// sees every block call with its span and size.
fn expr_cost(
    e: &Expr,
    stage: bool,
    items: &Items,
    sizes: &BlockSizes,
    site: &mut dyn FnMut(&str, Span, u64),
) -> (u64, u64) {
    let block = |name: &str| -> Option<(u64, u64)> {
        items.blocks.contains_key(name).then(|| {
            (
                sizes.size.get(name).copied().unwrap_or(0).saturating_add(1),
                sizes.depth.get(name).copied().unwrap_or(0),
            )
        })
    };
    match &e.kind {
        ExprKind::Name(id) if stage => match block(&id.name) {
            Some((n, d)) => {
                site(&id.name, e.span, n);
                (n, d)
            }
            None => (1, 0),
        },
        ExprKind::Call { callee, args } => {
            let (mut n, mut d) = match block(&callee.name) {
                Some((n, d)) => {
                    site(&callee.name, e.span, n);
                    (n, d)
                }
                None => (1, 0),
            };
            for a in args {
                let (an, ad) = expr_cost(&a.value, false, items, sizes, site);
                n = n.saturating_add(an);
                d = d.max(ad);
            }
            (n, d)
        }
        ExprKind::Pipe { lhs, stage } => {
            let (a, ad) = expr_cost(lhs, false, items, sizes, site);
            let (b, bd) = expr_cost(stage, true, items, sizes, site);
            (a.saturating_add(b), ad.max(bd))
        }
        ExprKind::Repeat { count, body } => {
            let times = match &count.kind {
                ExprKind::Number { value, is_int, .. } if *is_int && *value >= 1.0 => *value as u64,
                _ => 1,
            };
            let mut n = 0u64;
            let mut d = 0u64;
            for s in body {
                let mut inner = |name: &str, span: Span, k: u64| site(name, span, k * times);
                let (sn, sd) = expr_cost(s, true, items, sizes, &mut inner);
                n = n.saturating_add(sn);
                d = d.max(sd);
            }
            (n.saturating_mul(times), d)
        }
        ExprKind::Binary { lhs, rhs, .. } => {
            let (a, ad) = expr_cost(lhs, false, items, sizes, site);
            let (b, bd) = expr_cost(rhs, false, items, sizes, site);
            (a.saturating_add(b), ad.max(bd))
        }
        ExprKind::Neg(x) | ExprKind::Paren(x) => expr_cost(x, stage, items, sizes, site),
        ExprKind::List(xs) => xs.iter().fold((0, 0), |(n, d), x| {
            let (xn, xd) = expr_cost(x, false, items, sizes, site);
            (n.saturating_add(xn), d.max(xd))
        }),
        _ => (0, 0),
    }
}

/// Reports a model whose expansion is certainly over [`MAX_NODES`] layers, or whose block calls
/// nest deeper than [`MAX_BLOCK_DEPTH`], naming the largest block calls. True when reported (the model
/// is then not expanded).
pub fn model_too_large(ctx: &mut Ctx, m: &ast::Model, items: &Items, sizes: &BlockSizes) -> bool {
    let mut sites: Vec<(String, Span, u64)> = Vec::new();
    let mut total = 0u64;
    let mut depth = 0u64;
    for s in &m.body {
        if let Stmt::Let { value, .. } | Stmt::Output { value, .. } = s {
            let mut site = |name: &str, span: Span, n: u64| sites.push((name.to_string(), span, n));
            let (n, d) = expr_cost(value, false, items, sizes, &mut site);
            total = total.saturating_add(n);
            depth = depth.max(d);
        }
    }
    if depth as usize > MAX_BLOCK_DEPTH {
        let mut d = Diagnostic::error(
            codes::E0219,
            format!("model `{}` nests block calls too deeply", m.name.name),
        )
        .with_primary(
            m.name.span,
            format!("block calls nest {depth} deep; at most {MAX_BLOCK_DEPTH} are allowed"),
        );
        if let Some((name, span, _)) = sites.iter().max_by_key(|(n, _, _)| sizes.depth[n]) {
            d = d.with_secondary(*span, format!("the chain starts with `{name}` here"));
        }
        ctx.emit(d.with_help(
            "call the blocks one after another in the model instead of from each other",
        ));
        return true;
    }
    if total as usize <= MAX_NODES {
        return false;
    }
    sites.sort_by(|a, b| b.2.cmp(&a.2).then(a.1.start.cmp(&b.1.start)));
    let mut d = Diagnostic::error(
        codes::E0219,
        format!("model `{}` is too large", m.name.name),
    )
    .with_primary(
        m.name.span,
        format!(
            "it expands to at least {} layers; at most {} are allowed",
            count(total),
            thousands(MAX_NODES)
        ),
    );
    for (name, span, n) in sites.iter().take(3) {
        d = d.with_secondary(
            *span,
            format!("this call of `{name}` expands to {} layers", count(*n)),
        );
    }
    // The block whose body multiplies most: the one whose size is largest relative to its body.
    if let Some((name, _, _)) = sites.first() {
        if let Some(b) = items.blocks.get(name) {
            let mut inner: Vec<(String, Span, u64)> = Vec::new();
            for s in &b.body {
                if let Stmt::Let { value, .. } | Stmt::Return { value, .. } = s {
                    let mut site = |n: &str, sp: Span, k: u64| inner.push((n.to_string(), sp, k));
                    expr_cost(value, false, items, sizes, &mut site);
                }
            }
            if inner.len() > 1 {
                d = d.with_note(format!(
                    "`{name}` calls {} blocks of {} layers or more each, so every level multiplies the size",
                    inner.len(),
                    count(inner.iter().map(|x| x.2).min().unwrap_or(0))
                ));
            }
        }
    }
    ctx.emit(d.with_help("reduce the repeat counts, or call blocks fewer times"));
    true
}

fn count(n: u64) -> String {
    if n == u64::MAX {
        "more than 18,446,744,073,709,551,615".to_string()
    } else {
        thousands(n as usize)
    }
}

/// Elements of a per-sample or parameter shape, saturating.
fn numel(shape: &[usize]) -> u64 {
    shape.iter().fold(1u64, |a, &d| a.saturating_mul(d as u64))
}

/// Bytes of the parameters, and per sample of the activations, with the layers that hold most.
pub struct Footprint {
    pub param_bytes: u64,
    pub activation_bytes: u64,
    /// (layer, bytes), largest first.
    pub params_by_layer: Vec<(String, u64)>,
    pub activations_by_layer: Vec<(String, u64)>,
}

pub fn footprint(g: &ModelGraph) -> Footprint {
    let mut by_layer: HashMap<usize, u64> = HashMap::new();
    let mut param_bytes = 0u64;
    for p in &g.params {
        let b = numel(&p.shape).saturating_mul(4);
        param_bytes = param_bytes.saturating_add(b);
        let e = by_layer.entry(p.node).or_insert(0);
        *e = e.saturating_add(b);
    }
    let name = |i: usize| {
        let n = &g.nodes[i];
        n.name.clone().unwrap_or_else(|| {
            let op = format!("{:?}", n.op);
            let end = op.find([' ', '(', '{']).unwrap_or(op.len());
            op[..end].to_lowercase()
        })
    };
    let mut params_by_layer: Vec<(String, u64)> =
        by_layer.into_iter().map(|(i, b)| (name(i), b)).collect();
    params_by_layer.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut activation_bytes = 0u64;
    let mut activations_by_layer = Vec::new();
    for (i, n) in g.nodes.iter().enumerate() {
        let b = numel(&n.shape).saturating_mul(4);
        activation_bytes = activation_bytes.saturating_add(b);
        activations_by_layer.push((i, b));
    }
    activations_by_layer.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    activations_by_layer.truncate(3);
    Footprint {
        param_bytes,
        activation_bytes,
        params_by_layer,
        activations_by_layer: activations_by_layer
            .into_iter()
            .map(|(i, b)| (name(i), b))
            .collect(),
    }
}

fn bytes(b: u64) -> String {
    readable_bytes(b as f64)
}

fn contributors(d: Diagnostic, what: &str, list: &[(String, u64)]) -> Diagnostic {
    let top: Vec<String> = list
        .iter()
        .take(3)
        .filter(|(_, b)| *b > 0)
        .map(|(n, b)| format!("`{n}` {}", bytes(*b)))
        .collect();
    if top.is_empty() {
        d
    } else {
        d.with_note(format!("largest {what}: {}", top.join(", ")))
    }
}

/// E0219 when the parameters alone, or the activations of one sample, exceed the budget.
pub fn check_model_memory(ctx: &mut Ctx, g: &ModelGraph, name_span: Span, limits: &Limits) -> bool {
    let f = footprint(g);
    let (what, amount, list, label) = if f.param_bytes > limits.memory {
        (
            "parameters",
            f.param_bytes,
            &f.params_by_layer,
            "its parameters",
        )
    } else if f.activation_bytes > limits.memory {
        (
            "activations",
            f.activation_bytes,
            &f.activations_by_layer,
            "the activations of one sample",
        )
    } else {
        return false;
    };
    let d = Diagnostic::error(
        codes::E0219,
        format!("model `{}` does not fit in memory", g.name),
    )
    .with_primary(
        name_span,
        format!(
            "{label} take {}, more than {}",
            bytes(amount),
            limits.describe()
        ),
    );
    let d = contributors(d, what, list);
    ctx.emit(d.with_help("make the largest layers smaller"));
    true
}

/// Optimizer state tensors per parameter.
fn optimizer_slots(kind: &OptimizerKind) -> u64 {
    match kind {
        OptimizerKind::Sgd { momentum, .. } => u64::from(*momentum != 0.0),
        OptimizerKind::RmsProp { momentum, .. } => 1 + u64::from(*momentum != 0.0),
        _ => 2,
    }
}

/// The planned memory of one training step: weights, gradients and optimizer state, plus the
/// activations of `batch` samples and their gradients.
pub fn training_bytes(f: &Footprint, spec: &TrainSpec) -> (u64, u64) {
    let per_param = 2 + optimizer_slots(&spec.optimizer.kind);
    let state = f.param_bytes.saturating_mul(per_param);
    let acts = f
        .activation_bytes
        .saturating_mul(spec.batch_size as u64)
        .saturating_mul(2);
    (state, acts)
}

/// E0308 when one training step at the configured batch size needs more than the budget.
pub fn check_training_memory(
    ctx: &mut Ctx,
    span: Span,
    g: &ModelGraph,
    spec: &TrainSpec,
    limits: &Limits,
) {
    let f = footprint(g);
    let (state, acts) = training_bytes(&f, spec);
    let total = state.saturating_add(acts);
    if total <= limits.memory {
        return;
    }
    let mut d = Diagnostic::error(
        codes::E0308,
        format!(
            "training `{}` needs more memory than the budget",
            g.name
        ),
    )
    .with_primary(
        span,
        format!(
            "one step at batch size {} needs about {}, more than {}",
            spec.batch_size,
            bytes(total),
            limits.describe()
        ),
    )
    .with_note(format!(
        "weights, gradients and optimizer state: {}; activations and their gradients for {} samples: {}",
        bytes(state),
        spec.batch_size,
        bytes(acts)
    ));
    if acts >= state {
        d = contributors(d, "activations per sample", &f.activations_by_layer);
        d = d.with_help("lower `batch_size`, or make the largest layers smaller");
    } else {
        d = contributors(d, "parameters", &f.params_by_layer);
        d = d.with_help("make the largest layers smaller, or use `SGD` (no optimizer state)");
    }
    ctx.emit(d);
}

#[cfg(test)]
mod tests {
    use super::parse_memory;

    #[test]
    fn memory_sizes_parse_with_binary_units() {
        assert_eq!(parse_memory("1000"), Ok(1000));
        assert_eq!(parse_memory("512M"), Ok(512 << 20));
        assert_eq!(parse_memory("8g"), Ok(8 << 30));
        assert_eq!(parse_memory("1.5GB"), Ok(3 << 29));
        assert_eq!(parse_memory("2GiB"), Ok(2 << 30));
        assert!(parse_memory("lots").is_err());
        assert!(parse_memory("0").is_err());
        assert!(parse_memory("-1G").is_err());
    }
}
