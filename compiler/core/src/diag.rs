//! Rendering [`Diagnostic`]s: rustc-style (`human`, language.md section 8), one line each
//! (`short`), or one JSON object per line (`json`). Columns are 1-based and count characters.
//!
//! A JSON object has `code`, `severity` (`error` | `warning`), `message`, `file`, `line`,
//! `column`, `end_line`, `end_column` (of the primary span; `null` without one), `labels` (each
//! with `line`, `column`, `end_line`, `end_column`, `message`, `primary`) and `notes` (the
//! `= help:` lines prefixed `help: `, then the `= note:` lines).

use fm_grammar::ast::Span;
use fm_grammar::{Diagnostic, Severity};
use serde_json::json;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MessageFormat {
    #[default]
    Human,
    Short,
    Json,
}

/// The source a diagnostic points into.
pub struct SourceFile<'a> {
    /// As shown to the user (`examples/mnist.fm`).
    pub name: &'a str,
    pub text: &'a str,
}

/// 1-based line and column (characters) of a byte offset.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    fm_grammar::line_col(src, offset)
}

/// ANSI styles, or nothing when colour is off.
struct Style {
    on: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.on && !text.is_empty() {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    fn level(&self, sev: Severity, text: &str) -> String {
        match sev {
            Severity::Error => self.paint("1;31", text),
            Severity::Warning => self.paint("1;33", text),
        }
    }
    fn gutter(&self, text: &str) -> String {
        self.paint("1;34", text)
    }
    fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }
}

fn severity_word(sev: Severity) -> &'static str {
    match sev {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

/// Renders one diagnostic in the given format. Human output ends with a blank line; short and
/// JSON output are one line each (with the newline).
pub fn render(d: &Diagnostic, file: &SourceFile, format: MessageFormat, color: bool) -> String {
    match format {
        MessageFormat::Human => render_human(d, file, color),
        MessageFormat::Short => render_short(d, file, color),
        MessageFormat::Json => render_json(d, file) + "\n",
    }
}

fn render_short(d: &Diagnostic, file: &SourceFile, color: bool) -> String {
    let style = Style { on: color };
    let loc = match &d.primary {
        Some(l) => {
            let (line, col) = line_col(file.text, l.span.start);
            format!("{}:{line}:{col}", file.name)
        }
        None => file.name.to_string(),
    };
    format!(
        "{}: {}: {}\n",
        style.bold(&loc),
        style.level(
            d.severity,
            &format!("{}[{}]", severity_word(d.severity), d.code)
        ),
        style.bold(&d.message)
    )
}

/// One label as displayed: line, start column and end column (display columns, 0-based).
struct Shown<'a> {
    line: usize,
    start: usize,
    end: usize,
    message: &'a str,
    primary: bool,
}

/// Display width of a prefix of a source line (tabs count 4).
fn width(text: &str) -> usize {
    text.chars().map(|c| if c == '\t' { 4 } else { 1 }).sum()
}

fn line_text(src: &str, line: usize) -> &str {
    src.split('\n')
        .nth(line - 1)
        .unwrap_or("")
        .trim_end_matches('\r')
}

fn shown<'a>(src: &str, span: Span, message: &'a str, primary: bool) -> Shown<'a> {
    let (line, col) = line_col(src, span.start);
    let text = line_text(src, line);
    let start_byte = text
        .char_indices()
        .nth(col - 1)
        .map(|(i, _)| i)
        .unwrap_or(text.len());
    let (end_line, end_col) = line_col(src, span.end);
    let end_byte = if end_line == line {
        text.char_indices()
            .nth(end_col - 1)
            .map(|(i, _)| i)
            .unwrap_or(text.len())
    } else {
        // A label over several lines is drawn on its first line, to the end of the text.
        text.trim_end().len().max(start_byte)
    };
    let start = width(&text[..start_byte]);
    let end = width(&text[..end_byte.max(start_byte)]).max(start + 1);
    Shown {
        line,
        start,
        end,
        message,
        primary,
    }
}

fn render_human(d: &Diagnostic, file: &SourceFile, color: bool) -> String {
    let style = Style { on: color };
    let mut out = String::new();
    out.push_str(&style.level(
        d.severity,
        &format!("{}[{}]", severity_word(d.severity), d.code),
    ));
    out.push_str(&style.bold(&format!(": {}", d.message)));
    out.push('\n');

    let mut labels: Vec<Shown> = Vec::new();
    if let Some(p) = &d.primary {
        labels.push(shown(file.text, p.span, &p.message, true));
    }
    for s in &d.secondary {
        labels.push(shown(file.text, s.span, &s.message, false));
    }
    let digits = labels
        .iter()
        .map(|l| l.line.to_string().len())
        .max()
        .unwrap_or(1);
    let pad = " ".repeat(digits + 1);
    if let Some(p) = &d.primary {
        let (line, col) = line_col(file.text, p.span.start);
        out.push_str(&format!(
            "{pad}{} {}:{line}:{col}\n",
            style.gutter("-->"),
            file.name
        ));
        out.push_str(&format!("{pad}{}\n", style.gutter("|")));
        labels.sort_by_key(|l| (l.line, l.start, !l.primary));
        let mut lines: Vec<usize> = labels.iter().map(|l| l.line).collect();
        lines.dedup();
        let mut prev: Option<usize> = None;
        for line in lines {
            if let Some(p) = prev {
                if line == p + 2 {
                    // One line between two shown lines: show it rather than `...`.
                    out.push_str(&source_line(&style, file.text, p + 1, digits));
                } else if line > p + 2 {
                    out.push_str(&format!("{pad}{}\n", style.gutter("...").trim_start()));
                }
            }
            out.push_str(&source_line(&style, file.text, line, digits));
            for l in labels.iter().filter(|l| l.line == line) {
                let mark = if l.primary { "^" } else { "-" };
                let marks = mark.repeat(l.end - l.start);
                let text = if l.message.is_empty() {
                    marks
                } else {
                    format!("{marks} {}", l.message)
                };
                let painted = if l.primary {
                    style.level(d.severity, &text)
                } else {
                    style.gutter(&text)
                };
                out.push_str(&format!(
                    "{pad}{} {}{}\n",
                    style.gutter("|"),
                    " ".repeat(l.start),
                    painted
                ));
            }
            prev = Some(line);
        }
    }
    for h in &d.help {
        out.push_str(&format!(
            "{pad}{} {} {h}\n",
            style.gutter("="),
            style.bold("help:")
        ));
    }
    for n in &d.notes {
        out.push_str(&format!(
            "{pad}{} {} {n}\n",
            style.gutter("="),
            style.bold("note:")
        ));
    }
    out.push('\n');
    out
}

fn source_line(style: &Style, src: &str, line: usize, digits: usize) -> String {
    let text = line_text(src, line).replace('\t', "    ");
    let number = format!("{line:>digits$} |");
    let text = text.trim_end();
    if text.is_empty() {
        format!("{}\n", style.gutter(&number))
    } else {
        format!("{} {text}\n", style.gutter(&number))
    }
}

fn render_json(d: &Diagnostic, file: &SourceFile) -> String {
    let pos = |span: Span| {
        let (l, c) = line_col(file.text, span.start);
        let (el, ec) = line_col(file.text, span.end);
        (l, c, el, ec)
    };
    let mut labels = Vec::new();
    if let Some(p) = &d.primary {
        let (l, c, el, ec) = pos(p.span);
        labels.push(json!({"line": l, "column": c, "end_line": el, "end_column": ec, "message": p.message, "primary": true}));
    }
    for s in &d.secondary {
        let (l, c, el, ec) = pos(s.span);
        labels.push(json!({"line": l, "column": c, "end_line": el, "end_column": ec, "message": s.message, "primary": false}));
    }
    let mut notes: Vec<String> = d.help.iter().map(|h| format!("help: {h}")).collect();
    notes.extend(d.notes.iter().cloned());
    let (line, column, end_line, end_column) = match &d.primary {
        Some(p) => {
            let (l, c, el, ec) = pos(p.span);
            (json!(l), json!(c), json!(el), json!(ec))
        }
        None => (json!(null), json!(null), json!(null), json!(null)),
    };
    json!({
        "code": d.code.as_str(),
        "severity": severity_word(d.severity),
        "message": d.message,
        "file": file.name,
        "line": line,
        "column": column,
        "end_line": end_line,
        "end_column": end_column,
        "labels": labels,
        "notes": notes,
    })
    .to_string()
}

/// Renders every diagnostic in order.
pub fn render_all(
    diags: &[Diagnostic],
    file: &SourceFile,
    format: MessageFormat,
    color: bool,
) -> String {
    diags
        .iter()
        .map(|d| render(d, file, format, color))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fm_codes as codes;

    const SRC: &str = "block residual(x, filters: int) {\n    let h = x\n        -> Conv2D(filters, 3)\n        -> BatchNorm -> relu\n        -> Conv2D(filters, 3)\n    return relu(x + h)\n}\n";

    fn span_of(needle: &str) -> Span {
        let start = SRC.find(needle).unwrap();
        Span::new(start, start + needle.len())
    }

    #[test]
    fn human_layout_matches_the_spec() {
        let d = Diagnostic::error(codes::E0203, "shapes do not match in `+`")
            .with_primary(
                span_of("x + h"),
                "cannot add f32[32, 32, 64] and f32[28, 28, 64]",
            )
            .with_secondary(
                span_of("Conv2D(filters, 3)"),
                "`padding: valid` (the default) shrinks 32x32 to 30x30",
            )
            .with_help("pass `padding: same` to keep the spatial size")
            .with_note("while expanding `residual(64)` at resnet.fm:12:12");
        let file = SourceFile {
            name: "resnet.fm",
            text: SRC,
        };
        let out = render(&d, &file, MessageFormat::Human, false);
        let expected = "\
error[E0203]: shapes do not match in `+`
  --> resnet.fm:6:17
  |
3 |         -> Conv2D(filters, 3)
  |            ------------------ `padding: valid` (the default) shrinks 32x32 to 30x30
  ...
6 |     return relu(x + h)
  |                 ^^^^^ cannot add f32[32, 32, 64] and f32[28, 28, 64]
  = help: pass `padding: same` to keep the spatial size
  = note: while expanding `residual(64)` at resnet.fm:12:12

";
        assert_eq!(out, expected);
    }

    #[test]
    fn short_and_json_formats() {
        let d = Diagnostic::error(codes::E0101, "unknown layer `Dnse`")
            .with_primary(span_of("relu(x"), "here");
        let file = SourceFile {
            name: "a.fm",
            text: SRC,
        };
        assert_eq!(
            render(&d, &file, MessageFormat::Short, false),
            "a.fm:6:12: error[E0101]: unknown layer `Dnse`\n"
        );
        let j: serde_json::Value =
            serde_json::from_str(render(&d, &file, MessageFormat::Json, false).trim()).unwrap();
        assert_eq!(j["line"], 6);
        assert_eq!(j["column"], 12);
        assert_eq!(j["end_column"], 18);
        assert_eq!(j["labels"][0]["primary"], true);
    }

    #[test]
    fn adjacent_gap_shows_the_line_and_wide_gutters_align() {
        let src = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nk\nl\n";
        let file = SourceFile {
            name: "g.fm",
            text: src,
        };
        let at = |c: char| {
            let i = src.find(c).unwrap();
            Span::new(i, i + 1)
        };
        let d = Diagnostic::warning(codes::W0101, "w")
            .with_primary(at('l'), "here")
            .with_secondary(at('j'), "there");
        let out = render(&d, &file, MessageFormat::Human, false);
        assert_eq!(
            out,
            "warning[W0101]: w\n   --> g.fm:12:1\n   |\n10 | j\n   | - there\n11 | k\n12 | l\n   | ^ here\n\n"
        );
    }

    #[test]
    fn multi_line_spans_tabs_and_missing_locations() {
        let src = "model m {\n\tinput x: f32[3]\n}\n";
        let file = SourceFile {
            name: "t.fm",
            text: src,
        };
        let start = src.find("input").unwrap();
        let d = Diagnostic::error(codes::E0218, "m")
            .with_primary(Span::new(start, src.len()), "spans lines");
        let out = render(&d, &file, MessageFormat::Human, false);
        // The tab shows as four spaces and the underline starts under `input`.
        assert!(
            out.contains("2 |     input x: f32[3]\n  |     ^^^^^^^^^^^^^^^ spans lines\n"),
            "{out}"
        );
        let nowhere = Diagnostic::error(codes::E0401, "cannot read `x.idx`");
        assert_eq!(
            render(&nowhere, &file, MessageFormat::Human, false),
            "error[E0401]: cannot read `x.idx`\n\n"
        );
        assert_eq!(
            render(&nowhere, &file, MessageFormat::Short, false),
            "t.fm: error[E0401]: cannot read `x.idx`\n"
        );
        let j: serde_json::Value =
            serde_json::from_str(render(&nowhere, &file, MessageFormat::Json, false).trim())
                .unwrap();
        assert!(j["line"].is_null());
    }
}
