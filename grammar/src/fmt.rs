//! The canonical layout of a `.fm` file (`fmc fmt`).
//!
//! Layout rules:
//! - items in source order, one blank line between items, an optional `version` line first;
//! - bodies and sections indented by 4 spaces, one statement or `key: value` entry per line (no
//!   commas); a blank line between two statements or entries is kept (one at most);
//! - spaces after commas and colons and around binary operators, `{ key: value }` dictionaries
//!   with inner spaces, numbers exactly as written, strings re-escaped (`\"`, `\\`, `\n`, `\t`);
//! - **pipelines**: a pipeline written on one line stays on one line when it fits in 100
//!   columns; otherwise its head stays on the statement line and every stage goes on its own
//!   continuation line (`-> Stage`, indented 4 more than the statement: 8 spaces in a body). A
//!   pipeline written over several lines keeps its line breaks: the stages that shared a line in
//!   the source share it in the output (`-> Conv2D(32, 3) -> MaxPool2D(2)`), and a line that
//!   would exceed 100 columns is broken before each of its `->`. Only statement and entry values
//!   are broken this way; pipelines nested inside calls, lists or parentheses stay inline;
//! - a dictionary that is an entry's whole value and was written over several lines (or does not
//!   fit) gets one `key: value` per line; every other expression is printed on one line;
//! - **comments** stay where they were: a comment with code before it on its line stays at the
//!   end of the output line holding that code (keeping its column when there is room, else two
//!   spaces after the code); a comment on its own line goes on its own line just before the
//!   output line that contains or follows it, indented like that line (a blank line before it is
//!   kept); a comment that would follow a `//` comment on the same line goes on its own line
//!   instead; `///` doc comments are printed before their item, and a `///` comment that is not
//!   a doc (one between `model m` and `{`, say) moves into the item's body rather than end up
//!   right before the item, where it would become doc.
//!
//! The result is a fixed point: formatting the output again changes nothing, and parsing it
//! gives the same AST up to spans. Only call this on files that parsed without errors.

use crate::ast::*;
use crate::lexer;

/// The widest line the formatter aims for (comments excluded).
pub const MAX_WIDTH: usize = 100;
const INDENT: usize = 4;

pub fn format(file: &File, source: &str) -> String {
    let mut f = Formatter {
        src: source,
        lines: Vec::new(),
    };
    if let Some((text, span)) = &file.version {
        f.push(0, format!("version {text}"), Some((span.start, span.end)));
    }
    for (i, item) in file.items.iter().enumerate() {
        if i > 0 || file.version.is_some() {
            f.blank();
        }
        f.item(item);
    }
    attach_comments(f.lines, &file.comments, source)
}

/// One output line before comments are merged in.
struct Line {
    indent: usize,
    text: String,
    /// Source offsets of the first and last code on the line; `None` for blank lines.
    src: Option<(usize, usize)>,
    /// A closing `}`: comments placed before it are indented one level deeper.
    close: bool,
    /// A `///` line or an item header: a `///` comment placed right before it would become
    /// (part of) the item's doc.
    doc: bool,
}

struct Formatter<'s> {
    src: &'s str,
    lines: Vec<Line>,
}

impl Formatter<'_> {
    fn push(&mut self, indent: usize, text: String, src: Option<(usize, usize)>) {
        self.lines.push(Line {
            indent,
            text,
            src,
            close: false,
            doc: false,
        });
    }

    fn mark_doc(&mut self) {
        if let Some(line) = self.lines.last_mut() {
            line.doc = true;
        }
    }

    fn blank(&mut self) {
        self.lines.push(Line {
            indent: 0,
            text: String::new(),
            src: None,
            close: false,
            doc: false,
        });
    }

    fn close(&mut self, indent: usize, item_end: usize) {
        let at = item_end.saturating_sub(1);
        self.lines.push(Line {
            indent,
            text: "}".to_string(),
            src: Some((at, item_end)),
            close: true,
            doc: false,
        });
    }

    fn doc(&mut self, doc: &[String], item_start: usize) {
        for line in doc {
            let text = if line.is_empty() {
                "///".to_string()
            } else {
                format!("/// {line}")
            };
            self.push(0, text, Some((item_start, item_start)));
            self.mark_doc();
        }
    }

    /// Keeps one blank line where the source had at least one between two statements or
    /// entries.
    fn blank_between(&mut self, prev_end: usize, next_start: usize) {
        let gap = self.src.get(prev_end..next_start).unwrap_or("");
        let mut newlines = 0;
        let mut line_blank = false;
        for c in gap.chars() {
            if c == '\n' {
                if line_blank && newlines > 0 {
                    self.blank();
                    return;
                }
                newlines += 1;
                line_blank = true;
            } else if !c.is_whitespace() {
                line_blank = false;
            }
        }
    }

    fn item(&mut self, item: &Item) {
        match item {
            Item::Model(m) => {
                self.doc(&m.doc, m.span.start);
                let brace = self.brace_after(m.name.span.end);
                self.push(
                    0,
                    format!("model {} {{", m.name.name),
                    Some((m.span.start, brace)),
                );
                self.mark_doc();
                self.stmts(&m.body);
                self.close(0, m.span.end);
            }
            Item::Block(b) => {
                self.doc(&b.doc, b.span.start);
                let params: Vec<String> = b.params.iter().map(|p| self.param(p)).collect();
                let after_params = b.params.last().map_or(b.name.span.end, |p| p.span.end);
                let brace = self.brace_after(after_params);
                self.push(
                    0,
                    format!("block {}({}) {{", b.name.name, params.join(", ")),
                    Some((b.span.start, brace)),
                );
                self.mark_doc();
                self.stmts(&b.body);
                self.close(0, b.span.end);
            }
            Item::Data(s) => self.section("data", s),
            Item::Train(s) => self.section("train", s),
        }
    }

    fn section(&mut self, keyword: &str, s: &Section) {
        self.doc(&s.doc, s.span.start);
        let header = match &s.name {
            Some(n) => format!("{keyword} {} {{", n.name),
            None => format!("{keyword} {{"),
        };
        let after = s
            .name
            .as_ref()
            .map_or(s.span.start + keyword.len(), |n| n.span.end);
        let brace = self.brace_after(after);
        self.push(0, header, Some((s.span.start, brace)));
        self.mark_doc();
        let mut prev_end = None;
        for e in &s.entries {
            if let Some(prev) = prev_end {
                self.blank_between(prev, e.span.start);
            }
            if let ExprKind::Step { name, body } = &e.value.kind {
                // `step NAME { ... }` prints as its dictionary would.
                let dict = Expr {
                    kind: ExprKind::Dict(body.clone()),
                    span: e.value.span,
                };
                self.value(
                    INDENT,
                    format!("step {} ", name.name),
                    &dict,
                    e.span.start,
                    true,
                );
                prev_end = Some(e.span.end);
                continue;
            }
            self.value(
                INDENT,
                format!("{}: ", e.key.name),
                &e.value,
                e.span.start,
                true,
            );
            prev_end = Some(e.span.end);
        }
        self.close(0, s.span.end);
    }

    /// Just past the `{` that opens a body, searching from `from`.
    fn brace_after(&self, from: usize) -> usize {
        let mut pos = from;
        let end = self.src.len();
        loop {
            pos = lexer::skip_trivia(self.src, pos, end);
            if pos >= end {
                return end;
            }
            if self.src.as_bytes()[pos] == b'{' {
                return pos + 1;
            }
            pos = lexer::token_at(self.src, pos, end).1;
        }
    }

    fn param(&self, p: &Param) -> String {
        let mut s = p.name.name.clone();
        if let Some(ty) = &p.ty {
            s.push_str(match ty.kind {
                ParamTyKind::Int => ": int",
                ParamTyKind::Float => ": float",
                ParamTyKind::Bool => ": bool",
                ParamTyKind::Ident => ": ident",
            });
        }
        if let Some(d) = &p.default {
            s.push_str(" = ");
            inline(d, &mut s);
        }
        s
    }

    fn stmts(&mut self, body: &[Stmt]) {
        let mut prev_end = None;
        for stmt in body {
            let span = stmt.span();
            if let Some(prev) = prev_end {
                self.blank_between(prev, span.start);
            }
            match stmt {
                Stmt::Input {
                    name,
                    dtype,
                    dims,
                    sample,
                    ..
                } => {
                    let mut text = format!("input {}: {}[", name.name, dtype.name);
                    for (i, d) in dims.iter().enumerate() {
                        if i > 0 {
                            text.push_str(", ");
                        }
                        inline(d, &mut text);
                    }
                    text.push(']');
                    if let Some(s) = sample {
                        text.push_str(" ~ ");
                        inline(s, &mut text);
                    }
                    self.push(INDENT, text, Some((span.start, span.end)));
                }
                Stmt::Target {
                    name, dtype, dims, ..
                } => {
                    let mut text = format!("target {}: {}[", name.name, dtype.name);
                    for (i, d) in dims.iter().enumerate() {
                        if i > 0 {
                            text.push_str(", ");
                        }
                        inline(d, &mut text);
                    }
                    text.push(']');
                    self.push(INDENT, text, Some((span.start, span.end)));
                }
                Stmt::Let { name, value, .. } => {
                    self.value(
                        INDENT,
                        format!("let {} = ", name.name),
                        value,
                        span.start,
                        false,
                    );
                }
                Stmt::Output { name, value, .. } => {
                    let prefix = match name {
                        Some(n) => format!("output {} = ", n.name),
                        None => "output ".to_string(),
                    };
                    self.value(INDENT, prefix, value, span.start, false);
                }
                Stmt::Return { value, .. } => {
                    self.value(INDENT, "return ".to_string(), value, span.start, false);
                }
            }
            prev_end = Some(span.end);
        }
    }

    /// A statement or entry: `prefix` then the value, breaking a pipeline (or an entry's
    /// dictionary) over several lines by the rules in the module documentation.
    fn value(&mut self, indent: usize, prefix: String, value: &Expr, start: usize, entry: bool) {
        let (head, stages) = value.pipeline();
        if stages.is_empty() {
            if let (true, ExprKind::Dict(entries)) = (entry, &value.kind) {
                if self.dict_multiline(indent, &prefix, start, value, entries) {
                    return;
                }
            }
            let mut text = prefix;
            inline(value, &mut text);
            self.push(indent, text, Some((start, value.span.end)));
            return;
        }

        // Where the source broke the pipeline: before stage i.
        let breaks: Vec<bool> = stages
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let prev_end = if i == 0 {
                    head.span.end
                } else {
                    stages[i - 1].span.end
                };
                self.src
                    .get(prev_end..s.span.start)
                    .is_some_and(|gap| gap.contains('\n'))
            })
            .collect();

        let mut head_text = prefix;
        inline(head, &mut head_text);
        let stage_texts: Vec<String> = stages
            .iter()
            .map(|s| {
                let mut t = String::from("-> ");
                inline(s, &mut t);
                t
            })
            .collect();

        if !breaks.iter().any(|&b| b) {
            let width = indent
                + head_text.chars().count()
                + stage_texts
                    .iter()
                    .map(|t| 1 + t.chars().count())
                    .sum::<usize>();
            if width <= MAX_WIDTH {
                let mut text = head_text;
                for t in &stage_texts {
                    text.push(' ');
                    text.push_str(t);
                }
                self.push(indent, text, Some((start, value.span.end)));
                return;
            }
        }

        // Groups of elements sharing a line: element 0 is the head, element i+1 is stage i.
        // Without source breaks (too long), every stage starts its own line.
        let all_break = !breaks.iter().any(|&b| b);
        let mut groups: Vec<Vec<usize>> = vec![vec![0]];
        for (i, &b) in breaks.iter().enumerate() {
            if b || all_break {
                groups.push(vec![i + 1]);
            } else if let Some(last) = groups.last_mut() {
                last.push(i + 1);
            }
        }
        let cont = indent + INDENT;
        for group in groups {
            let line_indent = if group[0] == 0 { indent } else { cont };
            let texts: Vec<&str> = group
                .iter()
                .map(|&e| {
                    if e == 0 {
                        head_text.as_str()
                    } else {
                        stage_texts[e - 1].as_str()
                    }
                })
                .collect();
            let spans: Vec<(usize, usize)> = group
                .iter()
                .map(|&e| {
                    if e == 0 {
                        (start, head.span.end)
                    } else {
                        (stages[e - 1].span.start, stages[e - 1].span.end)
                    }
                })
                .collect();
            let width =
                line_indent + texts.iter().map(|t| t.chars().count() + 1).sum::<usize>() - 1;
            if width <= MAX_WIDTH || group.len() == 1 {
                let src = (spans[0].0, spans[spans.len() - 1].1);
                self.push(line_indent, texts.join(" "), Some(src));
            } else {
                for (k, (text, span)) in texts.iter().zip(&spans).enumerate() {
                    let ind = if k == 0 { line_indent } else { cont };
                    self.push(ind, text.to_string(), Some(*span));
                }
            }
        }
    }

    /// Prints `key: {` / entries / `}` when the dictionary was written over several lines or
    /// does not fit; returns false (nothing printed) otherwise.
    fn dict_multiline(
        &mut self,
        indent: usize,
        prefix: &str,
        start: usize,
        dict: &Expr,
        entries: &[Entry],
    ) -> bool {
        let written_multiline = self
            .src
            .get(dict.span.start..dict.span.end)
            .is_some_and(|t| t.contains('\n'));
        let mut one_line = prefix.to_string();
        inline(dict, &mut one_line);
        let fits = indent + one_line.chars().count() <= MAX_WIDTH;
        if entries.is_empty() || (!written_multiline && fits) {
            return false;
        }
        self.push(
            indent,
            format!("{prefix}{{"),
            Some((start, dict.span.start + 1)),
        );
        let mut prev_end = None;
        for e in entries {
            if let Some(prev) = prev_end {
                self.blank_between(prev, e.span.start);
            }
            let mut text = format!("{}: ", e.key.name);
            inline(&e.value, &mut text);
            self.push(indent + INDENT, text, Some((e.span.start, e.span.end)));
            prev_end = Some(e.span.end);
        }
        self.close(indent, dict.span.end);
        true
    }
}

/// Prints an expression on one line.
fn inline(e: &Expr, out: &mut String) {
    match &e.kind {
        ExprKind::Number { text, .. } => out.push_str(text),
        ExprKind::Str(s) => {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\t' => out.push_str("\\t"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        ExprKind::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        ExprKind::Name(n) => out.push_str(&n.name),
        ExprKind::Call { callee, args } => {
            out.push_str(&callee.name);
            out.push('(');
            for (i, a) in args.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                if let Some(n) = &a.name {
                    out.push_str(&n.name);
                    out.push_str(": ");
                }
                inline(&a.value, out);
            }
            out.push(')');
        }
        ExprKind::Pipe { .. } => {
            let (head, stages) = e.pipeline();
            inline(head, out);
            for s in stages {
                out.push_str(" -> ");
                inline(s, out);
            }
        }
        ExprKind::Repeat { count, body } => {
            out.push_str("repeat ");
            inline(count, out);
            out.push_str(" { ");
            for (i, s) in body.iter().enumerate() {
                if i > 0 {
                    out.push_str(" -> ");
                }
                inline(s, out);
            }
            out.push_str(" }");
        }
        ExprKind::Binary { op, lhs, rhs } => {
            inline(lhs, out);
            out.push(' ');
            out.push_str(op.symbol());
            out.push(' ');
            inline(rhs, out);
        }
        ExprKind::Neg(inner) => {
            out.push('-');
            inline(inner, out);
        }
        ExprKind::Paren(inner) => {
            out.push('(');
            inline(inner, out);
            out.push(')');
        }
        ExprKind::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                inline(item, out);
            }
            out.push(']');
        }
        ExprKind::Dict(entries) => {
            if entries.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push_str("{ ");
            for (i, en) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&en.key.name);
                out.push_str(": ");
                inline(&en.value, out);
            }
            out.push_str(" }");
        }
        ExprKind::Step { name, body } => {
            out.push_str("step ");
            out.push_str(&name.name);
            out.push(' ');
            let dict = Expr {
                kind: ExprKind::Dict(body.clone()),
                span: e.span,
            };
            inline(&dict, out);
        }
        ExprKind::Duration { value, unit } => {
            inline(value, out);
            let singular = matches!(&value.kind, ExprKind::Number { text, .. } if text == "1");
            out.push_str(match (unit, singular) {
                (DurationUnit::Epochs, true) => " epoch",
                (DurationUnit::Epochs, false) => " epochs",
                (DurationUnit::Steps, true) => " step",
                (DurationUnit::Steps, false) => " steps",
            });
        }
    }
}

/// Merges the comments into the laid-out lines (rules in the module documentation) and
/// renders the text.
fn attach_comments(lines: Vec<Line>, comments: &[Comment], src: &str) -> String {
    let mut trailing: Vec<Vec<&Comment>> = vec![Vec::new(); lines.len()];
    let mut before: Vec<Vec<&Comment>> = vec![Vec::new(); lines.len() + 1];
    let code_lines: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].src.is_some())
        .collect();
    let src_of = |i: usize| lines[i].src.unwrap_or((0, 0));

    for c in comments {
        let prev_code = prev_code_end(src, comments, c.span.start);
        let own_line = match prev_code {
            None => true,
            Some(p) => src
                .get(p..c.span.start)
                .is_none_or(|gap| gap.contains('\n')),
        };
        let mut next_line_of = None;
        if !own_line {
            let p = prev_code.unwrap_or(0);
            // The last line whose code starts before the comment's code.
            let k = code_lines.partition_point(|&i| src_of(i).0 < p);
            if k > 0 {
                let line = code_lines[k - 1];
                // Nothing can follow a `//` comment on its line: a further comment goes on its
                // own line before the next line (where formatting again would put it too).
                let ends_with_line_comment = trailing[line]
                    .last()
                    .is_some_and(|t| t.text.starts_with("//"));
                if !ends_with_line_comment {
                    trailing[line].push(c);
                    continue;
                }
                next_line_of = Some(k);
            }
        }
        // The first line that contains or follows the comment.
        let k = next_line_of
            .unwrap_or_else(|| code_lines.partition_point(|&i| src_of(i).1 < c.span.end));
        let mut target = code_lines.get(k).copied().unwrap_or(lines.len());
        // Never between an item's doc lines and its header: that would detach the doc.
        while target > 0 && target < lines.len() && lines[target - 1].doc && lines[target].doc {
            target -= 1;
        }
        before[target].push(c);
    }

    // A `///` comment that is not a doc (say, one that was between `model m` and `{`) must not
    // end up right before an item's doc or header, where it would turn into doc: it moves to
    // the first line inside the item instead.
    for i in 0..lines.len() {
        if !lines[i].doc || (i > 0 && lines[i - 1].doc) {
            continue;
        }
        let mut stray = Vec::new();
        while before[i].last().is_some_and(|c| is_doc_like(&c.text)) {
            stray.extend(before[i].pop());
        }
        if stray.is_empty() {
            continue;
        }
        stray.reverse();
        // The group is the item's `///` lines, then its header.
        let header = (i..lines.len())
            .find(|&h| !lines[h].text.starts_with("///"))
            .unwrap_or(i);
        let into = (header + 1).min(lines.len());
        stray.append(&mut before[into]);
        before[into] = stray;
    }

    let line_index = crate::LineIndex::new(src);
    let mut out = String::new();
    let emit_before = |out: &mut String, list: &[&Comment], indent: usize| {
        for c in list {
            // A blank line before an own-line comment is kept (once, and not right after `{`).
            let ws_start = src[..c.span.start]
                .trim_end_matches([' ', '\t', '\r', '\n'])
                .len();
            let blank_before = src[ws_start..c.span.start].matches('\n').count() >= 2;
            let after_blank_or_open =
                out.is_empty() || out.ends_with("\n\n") || out.trim_end().ends_with('{');
            if blank_before && ws_start > 0 && !after_blank_or_open {
                out.push('\n');
            }
            push_indent(out, indent);
            out.push_str(&c.text);
            out.push('\n');
        }
    };
    for (i, line) in lines.iter().enumerate() {
        let indent = line.indent + if line.close { INDENT } else { 0 };
        emit_before(&mut out, &before[i], indent);
        if line.text.is_empty() {
            out.push('\n');
            continue;
        }
        let line_start = out.len();
        push_indent(&mut out, line.indent);
        out.push_str(&line.text);
        for (k, c) in trailing[i].iter().enumerate() {
            if k == 0 {
                let width = out[line_start..].chars().count();
                let column = line_index.line_col(src, c.span.start).1 - 1;
                if column >= width + 2 {
                    push_indent(&mut out, column - width);
                } else {
                    out.push_str("  ");
                }
            } else {
                out.push(' ');
            }
            out.push_str(&c.text);
        }
        out.push('\n');
    }
    emit_before(&mut out, &before[lines.len()], 0);
    out
}

fn push_indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// The end of the last code (not whitespace, not a comment) before `pos`.
fn prev_code_end(src: &str, comments: &[Comment], mut pos: usize) -> Option<usize> {
    let bytes = src.as_bytes();
    loop {
        while pos > 0 && bytes[pos - 1].is_ascii_whitespace() {
            pos -= 1;
        }
        if pos == 0 {
            return None;
        }
        // A comment ending here: skip over it.
        let k = comments.partition_point(|c| c.span.end < pos);
        match comments.get(k) {
            Some(c) if c.span.end == pos => pos = c.span.start,
            _ => return Some(pos),
        }
    }
}

/// `///` but not `////`: what the parser would take as doc before an item.
fn is_doc_like(text: &str) -> bool {
    text.starts_with("///") && !text.starts_with("////")
}
