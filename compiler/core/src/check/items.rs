//! Top-level names: models, blocks, data and train sections. Reports duplicates, blocks that take
//! a built-in's name, duplicate block parameters, and recursion between blocks (at the call that
//! closes the cycle).

use super::{table, Ctx};
use fm_codes as codes;
use fm_grammar::ast::{self, Expr, ExprKind, Span, Stmt};
use fm_grammar::Diagnostic;
use std::collections::HashMap;

/// The file's items by kind. Later duplicates are reported and left out.
pub struct Items<'f> {
    pub models: Vec<&'f ast::Model>,
    pub blocks: HashMap<String, &'f ast::Block>,
    pub data: Vec<&'f ast::Section>,
    pub trains: Vec<&'f ast::Section>,
    /// Blocks that take part in a recursion cycle (already reported; calls to them are poison).
    pub recursive: Vec<String>,
}

pub fn collect<'f>(ctx: &mut Ctx, file: &'f ast::File) -> Items<'f> {
    let mut items = Items {
        models: Vec::new(),
        blocks: HashMap::new(),
        data: Vec::new(),
        trains: Vec::new(),
        recursive: Vec::new(),
    };
    let mut model_names: HashMap<&str, Span> = HashMap::new();
    let mut data_names: HashMap<&str, Span> = HashMap::new();
    let mut block_spans: HashMap<&str, Span> = HashMap::new();
    for item in &file.items {
        match item {
            ast::Item::Model(m) => {
                if duplicate(ctx, "model", &m.name, &mut model_names) {
                    items.models.push(m);
                }
            }
            ast::Item::Block(b) => {
                if table::is_builtin_callable(&b.name.name) {
                    let d = Diagnostic::error(
                        codes::E0114,
                        format!("a block cannot be named `{}`", b.name.name),
                    )
                    .with_primary(
                        b.name.span,
                        "this is the name of a built-in layer or function",
                    )
                    .with_help("rename the block");
                    ctx.emit(d);
                    continue;
                }
                if duplicate(ctx, "block", &b.name, &mut block_spans) {
                    check_params(ctx, b);
                    items.blocks.insert(b.name.name.clone(), b);
                }
            }
            ast::Item::Data(s) => match &s.name {
                Some(name) => {
                    if duplicate(ctx, "data section", name, &mut data_names) {
                        items.data.push(s);
                    }
                }
                None => ctx.error(
                    codes::E0218,
                    "a `data` section needs a name",
                    s.span,
                    "expected `data NAME { ... }`",
                ),
            },
            ast::Item::Train(s) => items.trains.push(s),
        }
    }
    items.recursive = find_recursion(ctx, &items.blocks);
    items
}

/// Reports `name` if already defined; returns true when it is new.
fn duplicate<'f>(
    ctx: &mut Ctx,
    what: &str,
    name: &'f ast::Ident,
    seen: &mut HashMap<&'f str, Span>,
) -> bool {
    if let Some(first) = seen.get(name.name.as_str()) {
        let d = Diagnostic::error(
            codes::E0105,
            format!("the {what} `{}` is defined twice", name.name),
        )
        .with_primary(name.span, "defined again here")
        .with_secondary(*first, "first defined here");
        ctx.emit(d);
        false
    } else {
        seen.insert(&name.name, name.span);
        true
    }
}

fn check_params(ctx: &mut Ctx, b: &ast::Block) {
    let mut seen: HashMap<&str, Span> = HashMap::new();
    for p in &b.params {
        duplicate(ctx, "parameter", &p.name, &mut seen);
        if p.name.name == "name" {
            ctx.error(
                codes::E0105,
                "a block parameter cannot be called `name`",
                p.name.span,
                "every block call already takes `name:` (its naming scope)",
            );
        }
        if p.ty.is_none() && p.default.is_some() {
            ctx.error(
                codes::E0201,
                "a tensor parameter cannot have a default",
                p.span,
                "give the parameter a type (`int`, `float`, `bool`, `ident`) or drop the default",
            );
        }
    }
}

/// Every block called (as a stage or a call) in a block body, with the call's span.
fn block_calls<'f>(
    b: &'f ast::Block,
    blocks: &HashMap<String, &'f ast::Block>,
) -> Vec<(&'f str, Span)> {
    fn walk<'f>(
        e: &'f Expr,
        stage: bool,
        blocks: &HashMap<String, &ast::Block>,
        out: &mut Vec<(&'f str, Span)>,
    ) {
        match &e.kind {
            ExprKind::Name(id) if stage && blocks.contains_key(&id.name) => {
                out.push((&id.name, e.span))
            }
            ExprKind::Call { callee, args } => {
                if blocks.contains_key(&callee.name) {
                    out.push((&callee.name, e.span));
                }
                for a in args {
                    walk(&a.value, false, blocks, out);
                }
            }
            ExprKind::Pipe { lhs, stage } => {
                walk(lhs, false, blocks, out);
                walk(stage, true, blocks, out);
            }
            ExprKind::Repeat { count, body } => {
                walk(count, false, blocks, out);
                for s in body {
                    walk(s, true, blocks, out);
                }
            }
            ExprKind::Binary { lhs, rhs, .. } => {
                walk(lhs, false, blocks, out);
                walk(rhs, false, blocks, out);
            }
            ExprKind::Neg(x) | ExprKind::Paren(x) => walk(x, stage, blocks, out),
            ExprKind::List(xs) => xs.iter().for_each(|x| walk(x, false, blocks, out)),
            ExprKind::Dict(es) => es.iter().for_each(|en| walk(&en.value, false, blocks, out)),
            ExprKind::Duration { value, .. } => walk(value, false, blocks, out),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for s in &b.body {
        match s {
            Stmt::Let { value, .. } | Stmt::Output { value, .. } | Stmt::Return { value, .. } => {
                walk(value, false, blocks, &mut out)
            }
            Stmt::Input { .. } | Stmt::Target { .. } => {}
        }
    }
    out
}

/// Depth-first search over block calls; a call to a block on the current path closes a cycle.
fn find_recursion(ctx: &mut Ctx, blocks: &HashMap<String, &ast::Block>) -> Vec<String> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(
        ctx: &mut Ctx,
        name: &str,
        blocks: &HashMap<String, &ast::Block>,
        marks: &mut HashMap<String, Mark>,
        path: &mut Vec<String>,
        recursive: &mut Vec<String>,
    ) {
        marks.insert(name.to_string(), Mark::Active);
        path.push(name.to_string());
        let Some(block) = blocks.get(name) else {
            return;
        };
        for (callee, span) in block_calls(block, blocks) {
            match marks.get(callee).copied().unwrap_or(Mark::New) {
                Mark::Active => {
                    let start = path.iter().position(|p| p == callee).unwrap_or(0);
                    let cycle = &path[start..];
                    let mut d =
                        Diagnostic::error(codes::E0106, format!("block `{callee}` calls itself"))
                            .with_primary(span, "recursive call");
                    if cycle.len() > 1 {
                        let chain: Vec<String> = cycle.iter().map(|c| format!("`{c}`")).collect();
                        d = d.with_note(format!("{} -> `{callee}`", chain.join(" -> ")));
                    }
                    d = d.with_help("blocks are expanded at compile time, so they cannot recurse; use `repeat N { ... }` for a stack of copies");
                    ctx.emit(d);
                    for c in cycle {
                        if !recursive.contains(c) {
                            recursive.push(c.clone());
                        }
                    }
                }
                Mark::New => visit(ctx, callee, blocks, marks, path, recursive),
                Mark::Done => {}
            }
        }
        path.pop();
        marks.insert(name.to_string(), Mark::Done);
    }
    let mut marks: HashMap<String, Mark> = HashMap::new();
    let mut recursive = Vec::new();
    // Visit in source order so reports are deterministic.
    let mut names: Vec<(&String, Span)> = blocks.iter().map(|(n, b)| (n, b.span)).collect();
    names.sort_by_key(|(_, s)| s.start);
    for (name, _) in names {
        if marks.get(name.as_str()).copied().unwrap_or(Mark::New) == Mark::New {
            let mut path = Vec::new();
            visit(ctx, name, blocks, &mut marks, &mut path, &mut recursive);
        }
    }
    recursive
}
