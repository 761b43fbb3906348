//! The recovering parser: pest pairs to the AST, with syntax diagnostics.
//!
//! pest parses one piece at a time. The driver below walks the top level item by item; inside a
//! `model` or `block` body it parses statement by statement, inside a `data` or `train` section
//! entry by entry, each time calling one entry rule of `fm.pest` on the rest of the source. When a
//! piece fails, the error is recorded and the driver resynchronises at the next statement keyword
//! (`input let output return`), entry key, item keyword (`model block data train`) or closing `}`,
//! so that several independent errors are reported together.
//!
//! Stack safety: the pre-scan (`lexer.rs`) bounds bracket nesting before pest runs; chains
//! (`->`, `+ -`, `* /`, unary minus) are parsed by pest as repetitions and folded here
//! iteratively, with the resulting expression depth bounded by [`MAX_EXPR_DEPTH`] so that the
//! AST can be dropped and walked recursively.

use std::collections::HashMap;

use pest::error::{ErrorVariant, InputLocation};
use pest::iterators::Pair;
use pest::Parser as _;
use pest_derive::Parser;

use crate::ast::*;
use crate::diagnostic::Diagnostic;
use crate::lexer::{self, skip_trivia, token_at, word_at, TokKind};
use fm_codes as codes;

#[derive(Parser)]
#[grammar = "fm.pest"]
struct FmParser;

/// The deepest expression tree the parser builds (a pipeline of this many stages, this many
/// terms joined by `+`, ...). Deeper expressions are rejected with E0005.
pub const MAX_EXPR_DEPTH: usize = 512;

/// The most syntax errors reported for one file.
pub const MAX_ERRORS: usize = 100;

const STMT_KEYWORDS: &[&str] = &["input", "let", "output", "return"];

/// Parses `src[..]`, stopping at the first fatal lexical error found by the pre-scan.
pub fn parse_source(src: &str) -> (File, Vec<Diagnostic>) {
    let pre = lexer::prescan(src);
    let end = pre.fatal.as_ref().map_or(src.len(), |(pos, _)| *pos);
    let max_depth = pre.max_depth;
    let fatal = pre.fatal.map(|(_, d)| d);
    if max_depth <= IN_PLACE_DEPTH {
        return parse_until(src, end, pre.comments, fatal);
    }
    on_deep_stack(|| parse_until(src, end, pre.comments, fatal)).unwrap_or_else(|| {
        let d = Diagnostic::error(
            codes::E0005,
            "brackets nested too deeply for the available stack",
        )
        .with_help("split the expression with `let` bindings");
        (File::default(), vec![d])
    })
}

/// Bracket depth up to which parsing runs on the caller's stack. pest needs roughly 8 KiB of
/// stack per nesting level (debug and release alike), so 24 levels stay under 200 KiB.
pub(crate) const IN_PLACE_DEPTH: usize = 24;

/// Runs `f` on a helper thread with a stack large enough for [`lexer::MAX_NESTING`] levels.
/// `None` when no thread could be started.
pub(crate) fn on_deep_stack<T: Send>(f: impl FnOnce() -> T + Send) -> Option<T> {
    // Reserved, not committed: only the pages actually touched are used.
    const DEEP_STACK: usize = 64 << 20;
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("fm-parse".to_string())
            .stack_size(DEEP_STACK)
            .spawn_scoped(scope, f)
            .ok()?;
        match handle.join() {
            Ok(v) => Some(v),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Parses `src[..end]`; `fatal` (if any) is an error at `end` that stopped the scan. Errors at
/// or after `end` are consequences of it and are dropped.
pub fn parse_until(
    src: &str,
    end: usize,
    comments: Vec<lexer::RawComment>,
    fatal: Option<Diagnostic>,
) -> (File, Vec<Diagnostic>) {
    let comments: Vec<_> = comments.into_iter().filter(|c| c.span.end <= end).collect();
    let mut driver = Driver {
        src,
        end,
        diags: Vec::new(),
        doc_used: vec![false; comments.len()],
        comment_by_end: comments
            .iter()
            .map(|c| (c.span.end, c.span.start))
            .collect(),
        comments: &comments,
    };
    let mut file = driver.file();
    file.comments = comments
        .iter()
        .zip(&driver.doc_used)
        .filter(|(_, used)| !**used)
        .map(|(c, _)| Comment {
            text: src[c.span.start..c.span.end].to_string(),
            span: c.span,
        })
        .collect();
    let mut diags = driver.diags;
    if let Some(fatal) = fatal {
        diags.retain(|d| d.primary.as_ref().is_none_or(|l| l.span.start < end));
        diags.push(fatal);
    }
    diags.sort_by_key(|d| d.primary.as_ref().map_or(usize::MAX, |l| l.span.start));
    if diags.len() >= MAX_ERRORS {
        diags.truncate(MAX_ERRORS);
        if let Some(last) = diags.last_mut() {
            last.notes.push(format!(
                "stopped after {MAX_ERRORS} syntax errors; the rest of the file was not checked"
            ));
        }
    }
    (file, diags)
}

struct Driver<'s> {
    src: &'s str,
    /// Parsing stops here (the end of the source, or the first fatal lexical error).
    end: usize,
    diags: Vec<Diagnostic>,
    comments: &'s [lexer::RawComment],
    /// Comment start by comment end, for trimming trailing comments off spans.
    comment_by_end: HashMap<usize, usize>,
    /// Which comments became an item's `doc`.
    doc_used: Vec<bool>,
}

/// What the body loop of a model/block collects.
struct Body {
    stmts: Vec<Stmt>,
    /// Just past the closing `}` (or where the body had to stop).
    end: usize,
}

impl<'s> Driver<'s> {
    // ------------------------------------------------------------------ top level

    fn file(&mut self) -> File {
        let mut file = File::default();
        let mut pos = 0;
        loop {
            pos = skip_trivia(self.src, pos, self.end);
            if pos >= self.end || self.gave_up() {
                break;
            }
            pos = match word_at(self.src, pos, self.end) {
                Some("version") => self.version(pos, &mut file),
                Some("model") => self.model(pos, &mut file.items),
                Some("block") => self.block(pos, &mut file.items),
                Some("data") => self.section(pos, true, &mut file.items),
                Some("train") => self.section(pos, false, &mut file.items),
                _ => {
                    self.unexpected(
                        pos,
                        "`model`, `block`, `data` or `train`",
                        "expected an item",
                    );
                    let (_, tok_end) = token_at(self.src, pos, self.end);
                    self.skip_to_item(tok_end)
                }
            };
        }
        file
    }

    fn version(&mut self, start: usize, file: &mut File) -> usize {
        match self.run(Rule::version_decl, start) {
            Ok((pair, end)) => {
                if let Some(num) = pair.into_inner().find(|p| p.as_rule() == Rule::number) {
                    let span = self.span(&num, start);
                    if let Some((_, first)) = &file.version {
                        let d = Diagnostic::error(codes::E0009, "`version` given twice")
                            .with_primary(span, "second `version`")
                            .with_secondary(*first, "first given here");
                        self.diags.push(d);
                    } else {
                        file.version = Some((num.as_str().to_string(), span));
                    }
                }
                end
            }
            Err(_) => self.skip_to_item(start + "version".len()),
        }
    }

    fn model(&mut self, start: usize, items: &mut Vec<Item>) -> usize {
        let doc = self.take_doc(start);
        let (pair, head_end) = match self.run(Rule::model_head, start) {
            Ok(ok) => ok,
            Err(_) => return self.skip_to_item(start + "model".len()),
        };
        let mut name = None;
        let mut open = Span::new(head_end - 1, head_end);
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::ident => name = Some(self.ident(&p, start)),
                Rule::lbrace => open = self.span(&p, start),
                _ => {}
            }
        }
        let Some(name) = name else {
            return head_end;
        };
        let what = format!("model `{}`", name.name);
        let body = self.body(head_end, open, &what);
        items.push(Item::Model(Model {
            doc,
            name,
            body: body.stmts,
            span: Span::new(start, body.end),
        }));
        body.end
    }

    fn block(&mut self, start: usize, items: &mut Vec<Item>) -> usize {
        let doc = self.take_doc(start);
        let (pair, head_end) = match self.run(Rule::block_head, start) {
            Ok(ok) => ok,
            Err(_) => return self.skip_to_item(start + "block".len()),
        };
        let mut name = None;
        let mut params = Vec::new();
        let mut open = Span::new(head_end - 1, head_end);
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::ident => name = Some(self.ident(&p, start)),
                Rule::param => params.push(self.param(p, start)),
                Rule::lbrace => open = self.span(&p, start),
                _ => {}
            }
        }
        let Some(name) = name else {
            return head_end;
        };
        let what = format!("block `{}`", name.name);
        let body = self.body(head_end, open, &what);
        items.push(Item::Block(Block {
            doc,
            name,
            params,
            body: body.stmts,
            span: Span::new(start, body.end),
        }));
        body.end
    }

    fn param(&mut self, pair: Pair<'s, Rule>, base: usize) -> Param {
        let span = self.span(&pair, base);
        let mut name = None;
        let mut ty = None;
        let mut default = None;
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::ident => name = Some(self.ident(&p, base)),
                Rule::param_ty => {
                    let kind = match p.as_str() {
                        "int" => ParamTyKind::Int,
                        "float" => ParamTyKind::Float,
                        "bool" => ParamTyKind::Bool,
                        _ => ParamTyKind::Ident,
                    };
                    ty = Some(ParamTy {
                        kind,
                        span: self.span(&p, base),
                    });
                }
                Rule::sum => default = Some(self.expr(p, base).0),
                _ => {}
            }
        }
        Param {
            name: name.unwrap_or_else(|| Ident {
                name: String::new(),
                span,
            }),
            ty,
            default,
            span,
        }
    }

    /// The statements of a model or block body, after its `{`.
    fn body(&mut self, mut pos: usize, open: Span, what: &str) -> Body {
        let mut stmts = Vec::new();
        let mut after_stmt = false;
        loop {
            if self.gave_up() {
                return Body {
                    stmts,
                    end: self.end,
                };
            }
            pos = skip_trivia(self.src, pos, self.end);
            if pos >= self.end {
                self.unclosed(open, pos, what);
                return Body { stmts, end: pos };
            }
            if self.src.as_bytes()[pos] == b'}' {
                return Body {
                    stmts,
                    end: pos + 1,
                };
            }
            let word = word_at(self.src, pos, self.end);
            let rule = match word {
                Some("input") => Some(Rule::input_stmt),
                Some("target") => Some(Rule::target_stmt),
                Some("let") => Some(Rule::let_stmt),
                Some("output") => Some(Rule::output_stmt),
                Some("return") => Some(Rule::return_stmt),
                _ => None,
            };
            if let Some(rule) = rule {
                let errors_before = self.diags.len();
                match self.run(rule, pos) {
                    Ok((pair, end)) => {
                        let stmt = self.stmt(pair, pos);
                        if self.diags.len() == errors_before {
                            stmts.push(stmt);
                        }
                        pos = end;
                        // Only an expression could go on (`->`, an operator).
                        after_stmt = rule != Rule::input_stmt;
                    }
                    Err(_) => {
                        pos = self.resync_stmt(pos + word.map_or(0, str::len));
                        after_stmt = false;
                    }
                }
                continue;
            }
            if self.is_item_start(pos) {
                self.unclosed(open, pos, what);
                return Body { stmts, end: pos };
            }
            let (kind, tok_end) = token_at(self.src, pos, self.end);
            if after_stmt {
                let d = self.unexpected_diag(
                    pos,
                    "`->`, an operator or a new statement",
                    "expected `->`, an operator, or a statement keyword",
                );
                let d = if kind == TokKind::Word {
                    d.with_help("a statement starts with `input`, `let`, `output` or `return`; a pipeline stage needs `->` before it")
                } else {
                    d
                };
                self.diags.push(d);
            } else {
                let d = self.unexpected_diag(
                    pos,
                    "`input`, `let`, `output`, `return` or `}`",
                    "expected a statement",
                );
                let d = if self.src[pos..].starts_with("->") {
                    d.with_help("a pipeline starts with a value: `output y = x -> Stage`")
                } else {
                    d
                };
                self.diags.push(d);
            }
            after_stmt = false;
            pos = self.resync_stmt(tok_end);
        }
    }

    fn stmt(&mut self, pair: Pair<'s, Rule>, base: usize) -> Stmt {
        let span = self.span(&pair, base);
        let rule = pair.as_rule();
        let mut idents = Vec::new();
        let mut exprs = Vec::new();
        let mut out_name = None;
        let mut sample = None;
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::ident => idents.push(self.ident(&p, base)),
                Rule::call => sample = Some(self.expr(p, base).0),
                Rule::output_name => {
                    out_name = p
                        .into_inner()
                        .find(|q| q.as_rule() == Rule::ident)
                        .map(|q| self.ident(&q, base));
                }
                Rule::expr | Rule::sum => exprs.push(self.expr(p, base).0),
                _ => {}
            }
        }
        let placeholder = || Expr {
            kind: ExprKind::List(Vec::new()),
            span,
        };
        let missing = || Ident {
            name: String::new(),
            span,
        };
        let mut idents = idents.into_iter();
        match rule {
            Rule::input_stmt => Stmt::Input {
                name: idents.next().unwrap_or_else(missing),
                dtype: idents.next().unwrap_or_else(missing),
                dims: exprs,
                sample,
                span,
            },
            Rule::target_stmt => Stmt::Target {
                name: idents.next().unwrap_or_else(missing),
                dtype: idents.next().unwrap_or_else(missing),
                dims: exprs,
                span,
            },
            Rule::let_stmt => Stmt::Let {
                name: idents.next().unwrap_or_else(missing),
                value: exprs.pop().unwrap_or_else(placeholder),
                span,
            },
            Rule::output_stmt => Stmt::Output {
                name: out_name,
                value: exprs.pop().unwrap_or_else(placeholder),
                span,
            },
            _ => Stmt::Return {
                value: exprs.pop().unwrap_or_else(placeholder),
                span,
            },
        }
    }

    /// A `data` or `train` section.
    fn section(&mut self, start: usize, is_data: bool, items: &mut Vec<Item>) -> usize {
        let doc = self.take_doc(start);
        let rule = if is_data {
            Rule::data_head
        } else {
            Rule::train_head
        };
        let kw_len = if is_data { "data".len() } else { "train".len() };
        let (pair, head_end) = match self.run(rule, start) {
            Ok(ok) => ok,
            Err(_) => return self.skip_to_item(start + kw_len),
        };
        let mut name = None;
        let mut open = Span::new(head_end - 1, head_end);
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::ident => name = Some(self.ident(&p, start)),
                Rule::lbrace => open = self.span(&p, start),
                _ => {}
            }
        }
        let what = match (&name, is_data) {
            (Some(n), true) => format!("data `{}`", n.name),
            (Some(n), false) => format!("train `{}`", n.name),
            (None, _) => "train".to_string(),
        };
        let mut entries = Vec::new();
        let mut pos = head_end;
        let end = loop {
            if self.gave_up() {
                break self.end;
            }
            pos = skip_trivia(self.src, pos, self.end);
            if pos >= self.end {
                self.unclosed(open, pos, &what);
                break pos;
            }
            if self.src.as_bytes()[pos] == b'}' {
                break pos + 1;
            }
            if self.is_item_start(pos) {
                self.unclosed(open, pos, &what);
                break pos;
            }
            let errors_before = self.diags.len();
            match self.run(Rule::entry, pos) {
                Ok((pair, entry_end)) => {
                    let (entry, _) = self.entry(pair, pos);
                    if self.diags.len() == errors_before {
                        entries.push(entry);
                    }
                    pos = skip_trivia(self.src, entry_end, self.end);
                    if self.src.as_bytes().get(pos) == Some(&b',') && pos < self.end {
                        pos += 1;
                    }
                }
                Err(_) => {
                    let (_, tok_end) = token_at(self.src, pos, self.end);
                    pos = self.resync_section(tok_end);
                }
            }
        };
        let section = Section {
            doc,
            name,
            entries,
            span: Span::new(start, end),
        };
        items.push(if is_data {
            Item::Data(section)
        } else {
            Item::Train(section)
        });
        end
    }

    /// A `key: value` entry and the depth of its value.
    fn entry(&mut self, pair: Pair<'s, Rule>, base: usize) -> (Entry, usize) {
        let span = self.span(&pair, base);
        let mut key = None;
        let mut value = None;
        let mut depth = 1;
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::key => key = Some(self.ident(&p, base)),
                Rule::expr => {
                    let (e, d) = self.expr(p, base);
                    depth = d;
                    value = Some(e);
                }
                Rule::step_entry => {
                    let (k, e, d) = self.step_entry(p, base);
                    key = Some(k);
                    depth = d;
                    value = Some(e);
                }
                _ => {}
            }
        }
        let entry = Entry {
            key: key.unwrap_or_else(|| Ident {
                name: String::new(),
                span,
            }),
            value: value.unwrap_or(Expr {
                kind: ExprKind::List(Vec::new()),
                span,
            }),
            span,
        };
        (entry, depth)
    }

    /// `step NAME { entries }`: the key `step` and a [`ExprKind::Step`] value.
    fn step_entry(&mut self, pair: Pair<'s, Rule>, base: usize) -> (Ident, Expr, usize) {
        let span = self.span(&pair, base);
        let mut key = Ident {
            name: "step".into(),
            span,
        };
        let mut name = None;
        let mut body = Vec::new();
        let mut depth = 1;
        let mut dict_span = span;
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::kw_step => key.span = self.span(&p, base),
                Rule::ident => name = Some(self.ident(&p, base)),
                Rule::dict => {
                    dict_span = self.span(&p, base);
                    for q in p.into_inner() {
                        if q.as_rule() == Rule::entry {
                            let (e, d) = self.entry(q, base);
                            depth = depth.max(d + 1);
                            body.push(e);
                        }
                    }
                }
                _ => {}
            }
        }
        let name = name.unwrap_or_else(|| Ident {
            name: String::new(),
            span,
        });
        // The value spans the `{ ... }` (the entry spans `step NAME { ... }`).
        let value = Expr {
            kind: ExprKind::Step { name, body },
            span: dict_span,
        };
        (key, value, depth)
    }

    // ------------------------------------------------------------------ expressions

    /// Converts an expression pair; returns the expression and its depth. Errors (E0004,
    /// E0005, E0007) are recorded and a harmless value is returned in place of the bad part;
    /// the caller drops the statement when errors were recorded.
    fn expr(&mut self, pair: Pair<'s, Rule>, base: usize) -> (Expr, usize) {
        let span = self.span(&pair, base);
        match pair.as_rule() {
            Rule::expr | Rule::sum | Rule::product => self.chain(pair, base),
            Rule::repeat => self.repeat(pair, base),
            Rule::unary => {
                let mut minuses = Vec::new();
                let mut operand = None;
                for p in pair.into_inner() {
                    if p.as_rule() == Rule::minus {
                        minuses.push(self.span(&p, base).start);
                    } else {
                        operand = Some(self.expr(p, base));
                    }
                }
                let (mut e, mut depth) = operand.unwrap_or_else(|| (placeholder(span), 1));
                // Innermost minus first.
                for start in minuses.into_iter().rev() {
                    if depth >= MAX_EXPR_DEPTH {
                        self.too_deep(Span::new(start, start + 1));
                        break;
                    }
                    let s = Span::new(start, e.span.end);
                    e = Expr {
                        kind: ExprKind::Neg(Box::new(e)),
                        span: s,
                    };
                    depth += 1;
                }
                (e, depth)
            }
            Rule::number => (self.number(&pair, base), 1),
            Rule::string => (self.string(pair, base), 1),
            Rule::boolean => (
                Expr {
                    kind: ExprKind::Bool(pair.as_str() == "true"),
                    span,
                },
                1,
            ),
            Rule::numeric => {
                let mut value = None;
                let mut unit = None;
                for p in pair.into_inner() {
                    match p.as_rule() {
                        Rule::number => value = Some(self.number(&p, base)),
                        Rule::duration_unit => {
                            unit = Some(if p.as_str().starts_with("step") {
                                DurationUnit::Steps
                            } else {
                                DurationUnit::Epochs
                            })
                        }
                        _ => {}
                    }
                }
                let value = value.unwrap_or_else(|| placeholder(span));
                match unit {
                    None => (value, 1),
                    Some(unit) => (
                        Expr {
                            kind: ExprKind::Duration {
                                value: Box::new(value),
                                unit,
                            },
                            span,
                        },
                        2,
                    ),
                }
            }
            Rule::call => {
                let mut callee = None;
                let mut call_args = None;
                for p in pair.into_inner() {
                    match p.as_rule() {
                        Rule::ident => callee = Some(self.ident(&p, base)),
                        Rule::call_args => call_args = Some(p),
                        _ => {}
                    }
                }
                let callee = callee.unwrap_or_else(|| Ident {
                    name: String::new(),
                    span,
                });
                let Some(call_args) = call_args else {
                    return (
                        Expr {
                            kind: ExprKind::Name(callee),
                            span,
                        },
                        1,
                    );
                };
                let mut args = Vec::new();
                let mut depth = 1;
                for p in call_args.into_inner() {
                    if p.as_rule() != Rule::arg {
                        continue;
                    }
                    let (arg, d) = self.arg(p, base);
                    depth = depth.max(d + 1);
                    args.push(arg);
                }
                self.bounded(
                    Expr {
                        kind: ExprKind::Call { callee, args },
                        span,
                    },
                    depth,
                )
            }
            Rule::paren => {
                let inner = pair
                    .into_inner()
                    .find(|p| p.as_rule() == Rule::expr)
                    .map(|p| self.expr(p, base));
                let (e, d) = inner.unwrap_or_else(|| (placeholder(span), 1));
                self.bounded(
                    Expr {
                        kind: ExprKind::Paren(Box::new(e)),
                        span,
                    },
                    d + 1,
                )
            }
            Rule::list => {
                let mut items = Vec::new();
                let mut depth = 1;
                for p in pair.into_inner() {
                    if p.as_rule() == Rule::expr {
                        let (e, d) = self.expr(p, base);
                        depth = depth.max(d + 1);
                        items.push(e);
                    }
                }
                self.bounded(
                    Expr {
                        kind: ExprKind::List(items),
                        span,
                    },
                    depth,
                )
            }
            Rule::dict => {
                let mut entries = Vec::new();
                let mut depth = 1;
                for p in pair.into_inner() {
                    if p.as_rule() == Rule::entry {
                        let (e, d) = self.entry(p, base);
                        depth = depth.max(d + 1);
                        entries.push(e);
                    }
                }
                self.bounded(
                    Expr {
                        kind: ExprKind::Dict(entries),
                        span,
                    },
                    depth,
                )
            }
            _ => (placeholder(span), 1),
        }
    }

    /// One call argument (`64` or `padding: same`) and its value's depth.
    fn arg(&mut self, pair: Pair<'s, Rule>, base: usize) -> (Arg, usize) {
        let span = self.span(&pair, base);
        let mut name = None;
        let mut value = None;
        for q in pair.into_inner() {
            if q.as_rule() == Rule::arg_name {
                name = q
                    .into_inner()
                    .find(|r| r.as_rule() == Rule::ident)
                    .map(|r| self.ident(&r, base));
            } else {
                value = Some(self.expr(q, base));
            }
        }
        let (value, depth) = value.unwrap_or_else(|| (placeholder(span), 1));
        (Arg { name, value, span }, depth)
    }

    /// Returns `e` unless `depth` exceeds the limit, in which case E0005 is recorded and a leaf
    /// is returned instead (dropping `e` is safe: it was built within the limit plus one).
    fn bounded(&mut self, e: Expr, depth: usize) -> (Expr, usize) {
        if depth > MAX_EXPR_DEPTH {
            self.too_deep(e.span);
            (placeholder(e.span), 1)
        } else {
            (e, depth)
        }
    }

    /// Folds `a op b op c ...` (pipelines, sums, products) left-associatively, iteratively.
    fn chain(&mut self, pair: Pair<'s, Rule>, base: usize) -> (Expr, usize) {
        let span = self.span(&pair, base);
        let mut acc: Option<(Expr, usize)> = None;
        let mut pending_op: Option<(Rule, Span)> = None;
        for p in pair.into_inner() {
            let rule = p.as_rule();
            match rule {
                Rule::arrow | Rule::plus | Rule::minus | Rule::star | Rule::slash => {
                    pending_op = Some((rule, self.span(&p, base)));
                }
                _ => {
                    let (rhs, rhs_depth) = self.expr(p, base);
                    acc = Some(match (acc.take(), pending_op.take()) {
                        (Some((lhs, lhs_depth)), Some((op, op_span))) => {
                            let depth = lhs_depth.max(rhs_depth) + 1;
                            if depth > MAX_EXPR_DEPTH {
                                self.too_deep(op_span);
                                return (lhs, lhs_depth);
                            }
                            let s = lhs.span.to(rhs.span);
                            let kind = match op {
                                Rule::arrow => ExprKind::Pipe {
                                    lhs: Box::new(lhs),
                                    stage: Box::new(rhs),
                                },
                                _ => ExprKind::Binary {
                                    op: match op {
                                        Rule::plus => BinOp::Add,
                                        Rule::minus => BinOp::Sub,
                                        Rule::star => BinOp::Mul,
                                        _ => BinOp::Div,
                                    },
                                    lhs: Box::new(lhs),
                                    rhs: Box::new(rhs),
                                },
                            };
                            (Expr { kind, span: s }, depth)
                        }
                        (_, _) => (rhs, rhs_depth),
                    });
                }
            }
        }
        acc.unwrap_or_else(|| (placeholder(span), 1))
    }

    fn repeat(&mut self, pair: Pair<'s, Rule>, base: usize) -> (Expr, usize) {
        let span = self.span(&pair, base);
        let mut count = None;
        let mut body = Vec::new();
        let mut depth = 1;
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::sum => {
                    let (e, d) = self.expr(p, base);
                    depth = depth.max(d + 1);
                    count = Some(e);
                }
                Rule::call | Rule::repeat => {
                    let (e, d) = self.expr(p, base);
                    depth = depth.max(d + 1);
                    body.push(e);
                }
                _ => {}
            }
        }
        let count = count.unwrap_or_else(|| placeholder(span));
        self.bounded(
            Expr {
                kind: ExprKind::Repeat {
                    count: Box::new(count),
                    body,
                },
                span,
            },
            depth,
        )
    }

    fn number(&mut self, pair: &Pair<'s, Rule>, base: usize) -> Expr {
        let span = self.span(pair, base);
        let text = pair.as_str();
        let value = if is_valid_number(text) {
            match text.parse::<f64>() {
                Ok(v) if v.is_finite() => v,
                _ => {
                    let d =
                        Diagnostic::error(codes::E0004, format!("number `{text}` is out of range"))
                            .with_primary(span, "too large for a 64-bit float");
                    self.diags.push(d);
                    0.0
                }
            }
        } else {
            let mut d = Diagnostic::error(codes::E0004, format!("invalid number `{text}`"))
                .with_primary(span, "not a number")
                .with_help("numbers look like `32`, `0.5`, `1e-3` or `2.5E+2`");
            if let Some(unit) = ["epochs", "epoch", "steps", "step"]
                .iter()
                .find(|u| text.ends_with(*u))
            {
                let digits = &text[..text.len() - unit.len()];
                if is_valid_number(digits) {
                    d.help = vec![format!("a duration needs a space: `{digits} {unit}`")];
                }
            }
            self.diags.push(d);
            0.0
        };
        Expr {
            kind: ExprKind::Number {
                text: text.to_string(),
                value,
                is_int: !text.contains(['.', 'e', 'E']),
            },
            span,
        }
    }

    fn string(&mut self, pair: Pair<'s, Rule>, base: usize) -> Expr {
        let span = self.span(&pair, base);
        let body = pair.into_inner().next();
        let (raw, body_start) = match &body {
            Some(b) => (b.as_str(), base + b.as_span().start()),
            None => ("", span.start + 1),
        };
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.char_indices();
        while let Some((i, c)) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some((_, '"')) => out.push('"'),
                Some((_, '\\')) => out.push('\\'),
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((j, other)) => {
                    let s = Span::new(body_start + i, body_start + j + other.len_utf8());
                    let shown: String = other.escape_debug().collect();
                    let d = Diagnostic::error(
                        codes::E0007,
                        format!("unknown escape `\\{shown}` in string"),
                    )
                    .with_primary(s, "unknown escape")
                    .with_help(
                        "the escapes are `\\\"`, `\\\\`, `\\n` and `\\t`; paths can use `/`",
                    );
                    self.diags.push(d);
                }
                None => {}
            }
        }
        Expr {
            kind: ExprKind::Str(out),
            span,
        }
    }

    // ------------------------------------------------------------------ helpers

    /// The pair's span, without trailing whitespace and comments: pest includes the trivia
    /// skipped before a trailing lookahead (`name = { ident ~ !lparen }`) in the rule's span.
    fn span(&self, pair: &Pair<'s, Rule>, base: usize) -> Span {
        let s = pair.as_span();
        let start = base + s.start();
        let mut end = base + s.end();
        let bytes = self.src.as_bytes();
        loop {
            let untrimmed = end;
            while end > start && bytes[end - 1].is_ascii_whitespace() {
                end -= 1;
            }
            // A comment can only end here if whitespace followed it, it is a `*/`, or the file
            // ends: skip the hash lookup otherwise (this runs for every node).
            let maybe_comment = end < untrimmed || end == self.src.len() || bytes[end - 1] == b'/';
            if !maybe_comment || end == start {
                break;
            }
            match self.comment_by_end.get(&end) {
                Some(&comment_start) if comment_start >= start => end = comment_start,
                _ => break,
            }
        }
        Span::new(start, end)
    }

    fn ident(&self, pair: &Pair<'s, Rule>, base: usize) -> Ident {
        Ident {
            name: pair.as_str().to_string(),
            span: self.span(pair, base),
        }
    }

    /// Runs one entry rule of the grammar on the source from `pos`. On failure the error is
    /// recorded and its position returned.
    fn run(&mut self, rule: Rule, pos: usize) -> Result<(Pair<'s, Rule>, usize), usize> {
        let src: &'s str = self.src;
        match FmParser::parse(rule, &src[pos..self.end]) {
            Ok(mut pairs) => match pairs.next() {
                Some(pair) => {
                    let end = pos + pair.as_span().end();
                    Ok((pair, end))
                }
                None => Err(pos),
            },
            Err(err) => {
                let at = pos
                    + match err.location {
                        InputLocation::Pos(p) => p,
                        InputLocation::Span((s, _)) => s,
                    };
                let (positives, negatives) = match &err.variant {
                    ErrorVariant::ParsingError {
                        positives,
                        negatives,
                    } => (positives.clone(), negatives.clone()),
                    ErrorVariant::CustomError { .. } => (Vec::new(), Vec::new()),
                };
                // `epochs:` followed by the next `key:` on the following line: the value is
                // missing (the grammar refuses to take the next key as the value). pest reports
                // the `:` of the next key; point at the key instead.
                if positives.is_empty() && !negatives.is_empty() {
                    if let Some(key_start) = self.key_before_colon(pos, at) {
                        let key = &src[key_start..at];
                        let key = key.trim_end();
                        let span = Span::new(key_start, key_start + key.len());
                        let d = Diagnostic::error(
                            codes::E0001,
                            format!("expected an expression, found the next entry `{key}:`"),
                        )
                        .with_primary(span, "expected a value before this entry")
                        .with_help("the value of the previous entry is missing");
                        self.diags.push(d);
                        return Err(key_start);
                    }
                }
                let expected = render_expected(&positives);
                let mut d = if expected.is_empty() {
                    self.unexpected_diag(at, "", "unexpected token")
                } else {
                    let label = format!("expected {expected}");
                    self.unexpected_diag(at, &expected, &label)
                };
                if positives
                    .iter()
                    .any(|r| matches!(r, Rule::rparen | Rule::rbrack | Rule::rbrace))
                {
                    if let Some(open) = unclosed_opener(src, pos, at) {
                        let bracket = &src[open.start..open.end];
                        d = d.with_secondary(open, format!("`{bracket}` opened here"));
                        if let Some(help) = tuple_hint(src, open, at, self.end) {
                            d = d.with_help(help);
                        }
                    }
                }
                self.diags.push(d);
                Err(at)
            }
        }
    }

    /// When `colon` is a `:` preceded by a word (after `from`), the word's start.
    fn key_before_colon(&self, from: usize, colon: usize) -> Option<usize> {
        if self.src.as_bytes().get(colon) != Some(&b':') {
            return None;
        }
        let bytes = self.src.as_bytes();
        let mut end = colon;
        while end > from && bytes[end - 1].is_ascii_whitespace() {
            end -= 1;
        }
        let mut start = end;
        while start > from && lexer::is_ident_char(bytes[start - 1]) {
            start -= 1;
        }
        (start < end && lexer::is_ident_start(bytes[start])).then_some(start)
    }

    fn unexpected_diag(&self, pos: usize, expected: &str, label: &str) -> Diagnostic {
        let found = lexer::describe_token(self.src, pos, self.end);
        let (kind, tok_end) = token_at(self.src, pos, self.end);
        let span = if kind == TokKind::Eof {
            Span::new(pos, pos)
        } else {
            Span::new(pos, tok_end)
        };
        let message = if expected.is_empty() {
            format!("unexpected {found}")
        } else {
            format!("expected {expected}, found {found}")
        };
        let d = Diagnostic::error(codes::E0001, message).with_primary(span, label);
        match self.habit_hint(pos, expected) {
            Some(help) => d.with_help(help),
            None => d,
        }
    }

    /// Help for habits from other languages (and non-ASCII names).
    fn habit_hint(&self, pos: usize, expected: &str) -> Option<&'static str> {
        let rest = &self.src[pos..self.end];
        let c = rest.chars().next()?;
        Some(match c {
            ';' => "statements and entries end with the line; remove the `;`",
            '#' => "comments start with `//`",
            '\'' => "strings are written in double quotes: \"...\"",
            '=' if expected.contains("`:`") || expected.contains("`)`") => {
                "entries and named arguments are written `key: value`"
            }
            ':' if expected.contains("`=`") => "bindings are written `let name = value`",
            _ if !c.is_ascii() => {
                "names are ASCII (letters, digits and `_`); other text may only appear in strings and comments"
            }
            _ => return None,
        })
    }

    fn unexpected(&mut self, pos: usize, expected: &str, label: &str) {
        let d = self.unexpected_diag(pos, expected, label);
        self.diags.push(d);
    }

    fn unclosed(&mut self, open: Span, pos: usize, what: &str) {
        let found = lexer::describe_token(self.src, pos, self.end);
        let (kind, tok_end) = token_at(self.src, pos, self.end);
        let span = if kind == TokKind::Eof {
            Span::new(pos, pos)
        } else {
            Span::new(pos, tok_end)
        };
        let d = Diagnostic::error(
            codes::E0008,
            format!("expected `}}` to close {what}, found {found}"),
        )
        .with_primary(span, "expected `}`")
        .with_secondary(open, "unclosed `{`");
        self.diags.push(d);
    }

    /// After [`MAX_ERRORS`] errors the rest of the file is not looked at (a binary or CSV file
    /// passed by mistake would otherwise produce thousands).
    fn gave_up(&self) -> bool {
        self.diags.len() >= MAX_ERRORS
    }

    fn too_deep(&mut self, span: Span) {
        let d = Diagnostic::error(
            codes::E0005,
            format!("expression nested more than {MAX_EXPR_DEPTH} deep"),
        )
        .with_primary(span, "too deeply nested")
        .with_help("split the expression with `let` bindings, or use `repeat N { ... }`");
        self.diags.push(d);
    }

    /// `///` comments directly before an item (only whitespace between) become its doc.
    fn take_doc(&mut self, item_start: usize) -> Vec<String> {
        let mut idx = self.comments.partition_point(|c| c.span.end <= item_start);
        let mut next_start = item_start;
        let mut lines = Vec::new();
        while idx > 0 {
            let c = &self.comments[idx - 1];
            let gap = &self.src[c.span.end..next_start];
            if !c.is_doc || !gap.chars().all(char::is_whitespace) {
                break;
            }
            self.doc_used[idx - 1] = true;
            let text = &self.src[c.span.start + 3..c.span.end];
            lines.push(text.strip_prefix(' ').unwrap_or(text).to_string());
            next_start = c.span.start;
            idx -= 1;
        }
        lines.reverse();
        lines
    }

    /// An item keyword that starts an item here: `model`, `block`, or `data`/`train` not used as
    /// a section key (`data: mnist`).
    ///
    /// `model` and `block` start an item unless followed by `:`; `data` and `train` only when
    /// followed by `{` or `NAME {`, so that `train npy(...)` (an entry missing its `:`) is not
    /// taken for a new item.
    fn is_item_start(&self, pos: usize) -> bool {
        let Some(w) = word_at(self.src, pos, self.end) else {
            return false;
        };
        if !matches!(w, "model" | "block" | "data" | "train") {
            return false;
        }
        let bytes = &self.src.as_bytes()[..self.end];
        let next = skip_trivia(self.src, pos + w.len(), self.end);
        match (w, bytes.get(next).copied()) {
            ("model" | "block", next_byte) => next_byte != Some(b':'),
            (_, Some(b'{')) => true,
            (_, Some(_)) => match token_at(self.src, next, self.end) {
                (TokKind::Word, name_end) => {
                    bytes.get(skip_trivia(self.src, name_end, self.end)) == Some(&b'{')
                }
                _ => false,
            },
            (_, None) => false,
        }
    }

    /// Only blanks between the start of the line and `pos` (looks back over blanks only, so
    /// it stays cheap on very long lines).
    fn at_line_start(&self, pos: usize) -> bool {
        let before = self.src[..pos].trim_end_matches([' ', '\t', '\r', '\u{FEFF}']);
        before.is_empty() || before.ends_with('\n')
    }

    /// Skips tokens from `pos` to the next item keyword that starts a line.
    fn skip_to_item(&self, mut pos: usize) -> usize {
        loop {
            pos = skip_trivia(self.src, pos, self.end);
            if pos >= self.end {
                return self.end;
            }
            let (kind, tok_end) = token_at(self.src, pos, self.end);
            if kind == TokKind::Word && self.is_item_start(pos) && self.at_line_start(pos) {
                return pos;
            }
            pos = tok_end;
        }
    }

    /// Skips the rest of a broken statement: stops at the next statement or item keyword that
    /// starts a line, or at the `}` that closes the body.
    fn resync_stmt(&self, mut pos: usize) -> usize {
        let mut stack: Vec<u8> = Vec::new();
        loop {
            pos = skip_trivia(self.src, pos, self.end);
            if pos >= self.end {
                return self.end;
            }
            let (kind, tok_end) = token_at(self.src, pos, self.end);
            match kind {
                TokKind::Word => {
                    let w = &self.src[pos..tok_end];
                    // Only at the start of a line: a keyword in the middle of a line is most
                    // likely the misuse that caused the error (`let x = input`).
                    if (STMT_KEYWORDS.contains(&w) || self.is_item_start(pos))
                        && self.at_line_start(pos)
                    {
                        return pos;
                    }
                }
                TokKind::Punct => {
                    let b = self.src.as_bytes()[pos];
                    if !track_bracket(&mut stack, b) && b == b'}' {
                        return pos;
                    }
                }
                _ => {}
            }
            pos = tok_end;
        }
    }

    /// Skips the rest of a broken section entry: stops at the next `key:` outside brackets, an
    /// item keyword or the `}` that closes the section.
    fn resync_section(&self, mut pos: usize) -> usize {
        let mut stack: Vec<u8> = Vec::new();
        loop {
            pos = skip_trivia(self.src, pos, self.end);
            if pos >= self.end {
                return self.end;
            }
            let (kind, tok_end) = token_at(self.src, pos, self.end);
            match kind {
                TokKind::Word => {
                    if self.is_item_start(pos) && self.at_line_start(pos) {
                        return pos;
                    }
                    let next = skip_trivia(self.src, tok_end, self.end);
                    if stack.is_empty() && next < self.end && self.src.as_bytes()[next] == b':' {
                        return pos;
                    }
                }
                TokKind::Punct => {
                    let b = self.src.as_bytes()[pos];
                    if !track_bracket(&mut stack, b) && b == b'}' {
                        return pos;
                    }
                }
                _ => {}
            }
            pos = tok_end;
        }
    }
}

/// Updates the open-bracket stack with byte `b`. Returns false for a closer that matches no open
/// bracket on the stack (it belongs to an enclosing construct).
fn track_bracket(stack: &mut Vec<u8>, b: u8) -> bool {
    let opener = match b {
        b'(' | b'[' | b'{' => {
            stack.push(b);
            return true;
        }
        b')' => b'(',
        b']' => b'[',
        b'}' => b'{',
        _ => return true,
    };
    match stack.iter().rposition(|&o| o == opener) {
        Some(i) => {
            stack.truncate(i);
            true
        }
        None => false,
    }
}

/// The innermost bracket opened in `src[from..to]` and not closed before `to`.
fn unclosed_opener(src: &str, from: usize, to: usize) -> Option<Span> {
    let mut stack: Vec<usize> = Vec::new();
    let bytes = src.as_bytes();
    let mut pos = from;
    while pos < to {
        pos = skip_trivia(src, pos, to);
        if pos >= to {
            break;
        }
        let (kind, tok_end) = token_at(src, pos, to);
        if kind == TokKind::Punct {
            match bytes[pos] {
                b'(' | b'[' | b'{' => stack.push(pos),
                b')' | b']' | b'}' => {
                    stack.pop();
                }
                _ => {}
            }
        }
        pos = tok_end;
    }
    stack.last().map(|&p| Span::new(p, p + 1))
}

/// Help for a Python tuple (`Conv2D(32, (3, 3))`): a `,` inside parentheses that do not belong
/// to a call. Suggests the list with the same elements when it fits on the line.
fn tuple_hint(src: &str, open: Span, comma: usize, end: usize) -> Option<String> {
    let bytes = src.as_bytes();
    if bytes.get(open.start) != Some(&b'(') || bytes.get(comma) != Some(&b',') {
        return None;
    }
    let before = src[..open.start].trim_end();
    if before
        .bytes()
        .last()
        .is_some_and(|b| lexer::is_ident_char(b) || b == b')' || b == b']')
    {
        return None;
    }
    // The matching `)` on the same line, if any.
    let end = src[open.start..end]
        .find('\n')
        .map_or(end, |i| open.start + i);
    let mut depth = 0usize;
    let mut pos = open.start;
    let mut close = None;
    while pos < end {
        pos = skip_trivia(src, pos, end);
        if pos >= end {
            break;
        }
        let (kind, tok_end) = token_at(src, pos, end);
        if kind == TokKind::Punct {
            match bytes[pos] {
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        close = Some(pos);
                        break;
                    }
                }
                _ => {}
            }
        }
        pos = tok_end;
    }
    let generic = "lists (kernel sizes, strides, shapes) are written in brackets, not parentheses";
    match close {
        Some(c) if c - open.start <= 40 => Some(format!(
            "did you mean `[{}]`? {generic}",
            src[open.start + 1..c].trim()
        )),
        _ => Some(generic.to_string()),
    }
}

fn placeholder(span: Span) -> Expr {
    Expr {
        kind: ExprKind::List(Vec::new()),
        span,
    }
}

/// `digits ('.' digits)? ([eE] [+-]? digits)?`
pub fn is_valid_number(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > start
    };
    if !digits(&mut i) {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == b.len()
}

/// Renders pest's expected rules as "`)` or `,`". Continuation tokens (arithmetic operators,
/// duration units, the `(` of a call, the `:` of a named argument) are left out when something
/// else was expected too: after `Dense(3` the useful answer is `)` or `,`.
fn render_expected(rules: &[Rule]) -> String {
    let is_continuation = |r: &Rule| {
        matches!(
            r,
            Rule::plus
                | Rule::minus
                | Rule::star
                | Rule::slash
                | Rule::duration_unit
                | Rule::lparen
                | Rule::colon
        )
    };
    let main: Vec<Rule> = rules
        .iter()
        .copied()
        .filter(|r| !is_continuation(r))
        .collect();
    let chosen = if main.is_empty() {
        rules.to_vec()
    } else {
        main
    };
    let stage = |r: &Rule| matches!(r, Rule::kw_repeat | Rule::repeat | Rule::ident | Rule::call);
    if chosen.len() == 2 && chosen.iter().all(stage) {
        return "a pipeline stage (a layer, function or block, or `repeat`)".to_string();
    }
    let mut names: Vec<(u8, &str)> = chosen.iter().map(|r| rule_name(*r)).collect();
    names.sort();
    names.dedup_by(|a, b| a.1 == b.1);
    let names: Vec<&str> = names.into_iter().map(|(_, n)| n).collect();
    match names.len() {
        0 => String::new(),
        1 => names[0].to_string(),
        n => format!("{} or {}", names[..n - 1].join(", "), names[n - 1]),
    }
}

/// A rule's display name and a sort key (words first, then closing tokens).
fn rule_name(rule: Rule) -> (u8, &'static str) {
    match rule {
        Rule::ident | Rule::output_name | Rule::arg_name => (1, "identifier"),
        Rule::key | Rule::entry => (2, "a `key: value` entry"),
        Rule::param => (1, "a parameter"),
        Rule::param_ty => (1, "`int`, `float`, `bool` or `ident`"),
        Rule::expr
        | Rule::sum
        | Rule::product
        | Rule::unary
        | Rule::paren
        | Rule::list
        | Rule::dict
        | Rule::arg => (3, "an expression"),
        Rule::call | Rule::call_args | Rule::repeat => (3, "a pipeline stage"),
        Rule::number | Rule::numeric => (4, "a number"),
        Rule::string | Rule::string_body => (4, "a string"),
        Rule::boolean | Rule::kw_true | Rule::kw_false => (4, "`true` or `false`"),
        Rule::duration_unit => (5, "`epochs` or `steps`"),
        Rule::kw_model => (6, "`model`"),
        Rule::kw_block => (6, "`block`"),
        Rule::kw_data => (6, "`data`"),
        Rule::kw_train => (6, "`train`"),
        Rule::kw_input => (6, "`input`"),
        Rule::kw_let => (6, "`let`"),
        Rule::kw_output => (6, "`output`"),
        Rule::kw_return => (6, "`return`"),
        Rule::kw_repeat => (6, "`repeat`"),
        Rule::kw_version => (6, "`version`"),
        Rule::kw_target => (6, "`target`"),
        Rule::kw_step => (6, "`step`"),
        Rule::step_entry => (2, "a `step NAME { ... }` entry"),
        Rule::target_stmt => (1, "a `target` declaration"),
        Rule::tilde => (8, "`~`"),
        Rule::colon => (7, "`:`"),
        Rule::eq => (7, "`=`"),
        Rule::lparen => (7, "`(`"),
        Rule::lbrack => (7, "`[`"),
        Rule::lbrace => (7, "`{`"),
        Rule::arrow => (8, "`->`"),
        Rule::plus => (8, "`+`"),
        Rule::minus => (8, "`-`"),
        Rule::star => (8, "`*`"),
        Rule::slash => (8, "`/`"),
        Rule::comma => (9, "`,`"),
        Rule::rparen => (10, "`)`"),
        Rule::rbrack => (10, "`]`"),
        Rule::rbrace => (10, "`}`"),
        _ => (12, "a token"),
    }
}
