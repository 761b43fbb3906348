//! A readable, deterministic dump of the AST (`fmc compile --emit ast`, golden tests).
//!
//! One node per line, two spaces of indent per level, each node followed by `@line:col` of its
//! start. Pipelines are shown flat (`Pipe` with the head and then one `-> stage` per line)
//! instead of as the left-nested tree they are, and named arguments and entries are written as
//! `name: Node`.

use std::fmt::Write as _;

use crate::ast::*;
use crate::LineIndex;

pub fn dump_ast(file: &File, source: &str) -> String {
    let mut d = Dumper {
        out: String::new(),
        lines: LineIndex::new(source),
        source,
    };
    if let Some((text, span)) = &file.version {
        d.line(0, &format!("Version {text}"), *span);
    }
    for item in &file.items {
        d.item(item);
    }
    for c in &file.comments {
        d.line(0, &format!("Comment {:?}", c.text), c.span);
    }
    d.out
}

struct Dumper<'s> {
    out: String,
    lines: LineIndex,
    source: &'s str,
}

impl Dumper<'_> {
    fn line(&mut self, indent: usize, text: &str, span: Span) {
        let (l, c) = self.lines.line_col(self.source, span.start);
        for _ in 0..indent {
            self.out.push_str("  ");
        }
        let _ = writeln!(self.out, "{text} @{l}:{c}");
    }

    fn doc(&mut self, indent: usize, doc: &[String]) {
        for line in doc {
            for _ in 0..indent {
                self.out.push_str("  ");
            }
            let _ = writeln!(self.out, "doc {line:?}");
        }
    }

    fn item(&mut self, item: &Item) {
        match item {
            Item::Model(m) => {
                self.line(0, &format!("Model {}", m.name.name), m.span);
                self.doc(1, &m.doc);
                for s in &m.body {
                    self.stmt(1, s);
                }
            }
            Item::Block(b) => {
                self.line(0, &format!("Block {}", b.name.name), b.span);
                self.doc(1, &b.doc);
                for p in &b.params {
                    let mut text = format!("Param {}", p.name.name);
                    if let Some(ty) = &p.ty {
                        let ty = match ty.kind {
                            ParamTyKind::Int => "int",
                            ParamTyKind::Float => "float",
                            ParamTyKind::Bool => "bool",
                            ParamTyKind::Ident => "ident",
                        };
                        let _ = write!(text, ": {ty}");
                    }
                    self.line(1, &text, p.span);
                    if let Some(default) = &p.default {
                        self.expr(2, "default: ", default);
                    }
                }
                for s in &b.body {
                    self.stmt(1, s);
                }
            }
            Item::Data(s) => self.section(&format!("Data {}", name_of(&s.name)), s),
            Item::Train(s) => {
                let header = match &s.name {
                    Some(n) => format!("Train {}", n.name),
                    None => "Train".to_string(),
                };
                self.section(&header, s)
            }
        }
    }

    fn section(&mut self, header: &str, s: &Section) {
        self.line(0, header, s.span);
        self.doc(1, &s.doc);
        for e in &s.entries {
            self.expr(1, &format!("{}: ", e.key.name), &e.value);
        }
    }

    fn stmt(&mut self, indent: usize, stmt: &Stmt) {
        match stmt {
            Stmt::Input {
                name,
                dtype,
                dims,
                sample,
                span,
            } => {
                let dims: Vec<&str> = dims
                    .iter()
                    .map(|d| self.source.get(d.span.start..d.span.end).unwrap_or("?"))
                    .collect();
                let text = format!("Input {}: {}[{}]", name.name, dtype.name, dims.join(", "));
                self.line(indent, &text, *span);
                if let Some(s) = sample {
                    self.expr(indent + 1, "~ ", s);
                }
            }
            Stmt::Target {
                name,
                dtype,
                dims,
                span,
            } => {
                let dims: Vec<&str> = dims
                    .iter()
                    .map(|d| self.source.get(d.span.start..d.span.end).unwrap_or("?"))
                    .collect();
                let text = format!("Target {}: {}[{}]", name.name, dtype.name, dims.join(", "));
                self.line(indent, &text, *span);
            }
            Stmt::Let { name, value, span } => {
                self.line(indent, &format!("Let {}", name.name), *span);
                self.expr(indent + 1, "", value);
            }
            Stmt::Output { name, value, span } => {
                let text = match name {
                    Some(n) => format!("Output {}", n.name),
                    None => "Output".to_string(),
                };
                self.line(indent, &text, *span);
                self.expr(indent + 1, "", value);
            }
            Stmt::Return { value, span } => {
                self.line(indent, "Return", *span);
                self.expr(indent + 1, "", value);
            }
        }
    }

    fn expr(&mut self, indent: usize, prefix: &str, e: &Expr) {
        match &e.kind {
            ExprKind::Number { text, .. } => {
                self.line(indent, &format!("{prefix}Number {text}"), e.span)
            }
            ExprKind::Str(s) => self.line(indent, &format!("{prefix}Str {s:?}"), e.span),
            ExprKind::Bool(b) => self.line(indent, &format!("{prefix}Bool {b}"), e.span),
            ExprKind::Name(n) => self.line(indent, &format!("{prefix}Name {}", n.name), e.span),
            ExprKind::Call { callee, args } => {
                self.line(indent, &format!("{prefix}Call {}", callee.name), e.span);
                for a in args {
                    let p = a
                        .name
                        .as_ref()
                        .map_or(String::new(), |n| format!("{}: ", n.name));
                    self.expr(indent + 1, &p, &a.value);
                }
            }
            ExprKind::Pipe { .. } => {
                self.line(indent, &format!("{prefix}Pipe"), e.span);
                let (head, stages) = e.pipeline();
                self.expr(indent + 1, "", head);
                for s in stages {
                    self.expr(indent + 1, "-> ", s);
                }
            }
            ExprKind::Repeat { count, body } => {
                self.line(indent, &format!("{prefix}Repeat"), e.span);
                self.expr(indent + 1, "count: ", count);
                for s in body {
                    self.expr(indent + 1, "-> ", s);
                }
            }
            ExprKind::Binary { op, lhs, rhs } => {
                self.line(indent, &format!("{prefix}Binary {}", op.symbol()), e.span);
                self.expr(indent + 1, "", lhs);
                self.expr(indent + 1, "", rhs);
            }
            ExprKind::Neg(inner) => {
                self.line(indent, &format!("{prefix}Neg"), e.span);
                self.expr(indent + 1, "", inner);
            }
            ExprKind::Paren(inner) => {
                self.line(indent, &format!("{prefix}Paren"), e.span);
                self.expr(indent + 1, "", inner);
            }
            ExprKind::List(items) => {
                self.line(indent, &format!("{prefix}List"), e.span);
                for i in items {
                    self.expr(indent + 1, "", i);
                }
            }
            ExprKind::Dict(entries) => {
                self.line(indent, &format!("{prefix}Dict"), e.span);
                for en in entries {
                    self.expr(indent + 1, &format!("{}: ", en.key.name), &en.value);
                }
            }
            ExprKind::Step { name, body } => {
                self.line(indent, &format!("{prefix}Step {}", name.name), e.span);
                for en in body {
                    self.expr(indent + 1, &format!("{}: ", en.key.name), &en.value);
                }
            }
            ExprKind::Duration { value, unit } => {
                let value = match &value.kind {
                    ExprKind::Number { text, .. } => text.clone(),
                    _ => "?".to_string(),
                };
                let unit = match unit {
                    DurationUnit::Epochs => "epochs",
                    DurationUnit::Steps => "steps",
                };
                self.line(indent, &format!("{prefix}Duration {value} {unit}"), e.span);
            }
        }
    }
}

fn name_of(name: &Option<Ident>) -> &str {
    name.as_ref().map_or("?", |n| n.name.as_str())
}
