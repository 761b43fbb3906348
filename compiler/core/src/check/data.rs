//! `data NAME { ... }` sections to [`DataSpec`]s. Paths resolve relative to the `.fm` file's
//! directory; no file is opened here.

use super::bind::{self, split_args};
use super::items::Items;
use super::table::{self, Kind, TransformFn};
use super::values::{const_eval, Sym, SymArg, Val};
use super::{suggest, Ctx};
use fm_codes as codes;
use fm_grammar::ast::{Entry, Span};
use fm_grammar::Diagnostic;
use fm_runtime::config::{DataSpec, NpzKeys, Source, TestSource, Transform};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub struct DataResult {
    pub name: String,
    pub span: Span,
    /// `None` when the section had errors.
    pub spec: Option<DataSpec>,
}

const KEYS: &[&str] = &["train", "test", "x", "y"];

pub fn resolve_all(ctx: &mut Ctx, items: &Items, base: &Path) -> Vec<DataResult> {
    items
        .data
        .iter()
        .filter_map(|s| {
            let name = s.name.as_ref()?;
            let before = ctx.error_count();
            let spec = resolve(ctx, &name.name, &s.entries, name.span, base);
            let ok = ctx.error_count() == before;
            Some(DataResult {
                name: name.name.clone(),
                span: name.span,
                spec: if ok { spec } else { None },
            })
        })
        .collect()
}

/// Checks the keys of a section or dictionary: unknown keys (with suggestions) and duplicates.
/// Returns the entries by key.
pub fn entries_by_key<'e>(
    ctx: &mut Ctx,
    entries: &'e [Entry],
    keys: &[&str],
    what: &str,
) -> HashMap<&'e str, &'e Entry> {
    let mut out: HashMap<&str, &Entry> = HashMap::new();
    for e in entries {
        if !keys.contains(&e.key.name.as_str()) {
            let mut d = Diagnostic::error(
                codes::E0113,
                format!("unknown key `{}` in {what}", e.key.name),
            )
            .with_primary(e.key.span, "unknown key");
            match suggest(&e.key.name, keys.iter().copied()) {
                Some(s) => d = d.with_help(format!("did you mean `{s}`?")),
                None => {
                    let all: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
                    d = d.with_note(format!("the keys are {}", all.join(", ")));
                }
            }
            ctx.emit(d);
            continue;
        }
        if let Some(first) = out.get(e.key.name.as_str()) {
            let d = Diagnostic::error(
                codes::E0105,
                format!("the key `{}` is given twice", e.key.name),
            )
            .with_primary(e.key.span, "given again here")
            .with_secondary(first.key.span, "first given here");
            ctx.emit(d);
            continue;
        }
        out.insert(&e.key.name, e);
    }
    out
}

fn resolve(
    ctx: &mut Ctx,
    name: &str,
    entries: &[Entry],
    span: Span,
    base: &Path,
) -> Option<DataSpec> {
    let by_key = entries_by_key(ctx, entries, KEYS, "a `data` section");
    let train = match by_key.get("train") {
        Some(e) => {
            let v = const_eval(ctx, &e.value);
            source(ctx, &v, e.value.span, base, false)
        }
        None => {
            ctx.error(
                codes::E0206,
                format!("data section `{name}` needs a `train` source"),
                span,
                "add `train: idx(\"images\", \"labels\")` (or `npy`, `npz`, `csv`)",
            );
            None
        }
    };
    let test = by_key.get("test").and_then(|e| {
        let v = const_eval(ctx, &e.value);
        if let Val::Sym(Sym {
            name,
            args: Some(args),
            ..
        }) = &v
        {
            if name == "split" {
                return split_fraction(ctx, args, e.value.span).map(TestSource::Split);
            }
        }
        source(ctx, &v, e.value.span, base, true).map(TestSource::Source)
    });
    let x = by_key
        .get("x")
        .map(|e| transforms(ctx, e))
        .unwrap_or(Some(vec![]));
    let y = by_key
        .get("y")
        .map(|e| transforms(ctx, e))
        .unwrap_or(Some(vec![]));
    Some(DataSpec {
        name: name.to_string(),
        train: train?,
        test,
        x: x?,
        y: y?,
    })
}

fn resolve_path(base: &Path, p: &str) -> PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

fn source(ctx: &mut Ctx, v: &Val, span: Span, base: &Path, is_test: bool) -> Option<Source> {
    let sources = ["idx", "npy", "npz", "csv"];
    let Val::Sym(sym) = v else {
        if !matches!(v, Val::Poison) {
            ctx.error(
                codes::E0201,
                "expected a data source",
                span,
                format!(
                    "expected `idx(...)`, `npy(...)`, `npz(...)` or `csv(...)`, found {}",
                    v.describe()
                ),
            );
        }
        return None;
    };
    if !sources.contains(&sym.name.as_str()) {
        let mut all: Vec<&str> = sources.to_vec();
        if is_test {
            all.push("split");
        }
        let mut d = Diagnostic::error(codes::E0117, format!("unknown data source `{}`", sym.name))
            .with_primary(sym.name_span, "not a data source");
        if let Some(s) = suggest(&sym.name, all.iter().copied()) {
            d = d.with_help(format!("did you mean `{s}`?"));
        }
        if sym.name == "split" {
            d = d.with_help("`split(f)` is only allowed for `test:`");
        }
        ctx.emit(d);
        return None;
    }
    let sig = table::lookup(Kind::Source, &sym.name)?;
    let mut args = sym.args.clone().unwrap_or_default();
    // `npz(path, x: { image: "img" }, y: { digit: "labels" })`: per-value keys are
    // dictionaries, bound separately.
    let mut npz_dicts: [Option<Val>; 2] = [None, None];
    if sym.name == "npz" {
        for (slot, key) in npz_dicts.iter_mut().zip(["x", "y"]) {
            if let Some(i) = args.iter().position(|a| {
                matches!(&a.name, Some(n) if n.name == key) && matches!(a.val, Val::Dict(_))
            }) {
                *slot = Some(args.remove(i).val);
            }
        }
    }
    let (pos, named) = split_args(args);
    let b = bind::bind(ctx, &sym.name, sig.params, sig.positional, pos, named, span)?;
    let p = |ctx: &mut Ctx, key: &str| b.string(ctx, key).map(|s| resolve_path(base, &s));
    Some(match sym.name.as_str() {
        "idx" => Source::Idx {
            images: p(ctx, "images")?,
            labels: p(ctx, "labels")?,
        },
        "npy" => Source::Npy {
            x: p(ctx, "x")?,
            y: p(ctx, "y")?,
        },
        "npz" => {
            let [x_dict, y_dict] = npz_dicts;
            let keys_of = |ctx: &mut Ctx, dict: Option<Val>, key: &str| match dict {
                Some(Val::Dict(entries)) => {
                    let mut keys = Vec::new();
                    for (k, v, s) in entries {
                        match v {
                            Val::Str(text) => keys.push((k.name.clone(), text)),
                            other => {
                                bind::type_error(ctx, &k.name, table::Ty::Str, &other, s);
                                return None;
                            }
                        }
                    }
                    Some(NpzKeys::Named(keys))
                }
                _ => Some(NpzKeys::One(b.string(ctx, key)?)),
            };
            let x = keys_of(ctx, x_dict, "x");
            let y = keys_of(ctx, y_dict, "y");
            Source::Npz {
                path: p(ctx, "path")?,
                x: x?,
                y: y?,
            }
        }
        _ => Source::Csv {
            path: p(ctx, "path")?,
            label: b.string(ctx, "label")?,
        },
    })
}

fn transforms(ctx: &mut Ctx, e: &Entry) -> Option<Vec<Transform>> {
    let v = const_eval(ctx, &e.value);
    let list = match v {
        Val::List(items) => items,
        other => vec![(other, e.value.span)],
    };
    let mut out = Vec::new();
    let mut ok = true;
    for (v, span) in list {
        match transform(ctx, &v, span) {
            Some(t) => out.push(t),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn transform(ctx: &mut Ctx, v: &Val, span: Span) -> Option<Transform> {
    let Val::Sym(sym) = v else {
        if !matches!(v, Val::Poison) {
            ctx.error(
                codes::E0201,
                "expected a transform",
                span,
                format!(
                    "expected `scale(f, offset: 0)`, `standardize` or `one_hot(n)`, found {}",
                    v.describe()
                ),
            );
        }
        return None;
    };
    let Some((f, sig)) = table::member_named::<TransformFn>(&sym.name) else {
        let mut d = Diagnostic::error(codes::E0117, format!("unknown transform `{}`", sym.name))
            .with_primary(sym.name_span, "not a transform");
        if let Some(s) = suggest(&sym.name, table::names(Kind::Transform)) {
            d = d.with_help(format!("did you mean `{s}`?"));
        }
        ctx.emit(d);
        return None;
    };
    let (pos, named) = split_args(sym.args.clone().unwrap_or_default());
    let b = bind::bind(ctx, sig.name, sig.params, sig.positional, pos, named, span)?;
    Some(match f {
        TransformFn::Scale => Transform::Scale {
            factor: b.float(ctx, "factor")?,
            offset: b.float(ctx, "offset")?,
        },
        TransformFn::Standardize => Transform::Standardize,
        TransformFn::OneHot => Transform::OneHot(b.int(ctx, "classes")? as usize),
    })
}

/// The fraction of `split(fraction)` (a `test:` source, a `validation:` value), bound by the
/// table's `split` row.
pub(crate) fn split_fraction(ctx: &mut Ctx, args: &[SymArg], span: Span) -> Option<f64> {
    let sig = table::lookup(Kind::Source, "split")?;
    let (pos, named) = split_args(args.to_vec());
    let b = bind::bind(ctx, "split", sig.params, sig.positional, pos, named, span)?;
    b.float(ctx, "fraction")
}

/// The positions and names of the string arguments of a data source that are file paths
/// (`npz`'s and `csv`'s other strings are keys and columns).
fn path_params(source: &str) -> &'static [(usize, &'static str)] {
    match source {
        "idx" => &[(0, "images"), (1, "labels")],
        "npy" => &[(0, "x"), (1, "y")],
        "npz" | "csv" => &[(0, "path")],
        _ => &[],
    }
}

/// `source` with every relative data path rewritten so that it names the same file when the
/// text is read from `to_dir` instead of `from_dir` (the copy of a `.fm` file in a run
/// directory). Absolute paths and the rest of the text are unchanged; a file that does not
/// parse is returned as it is.
pub fn rebase_data_paths(source: &str, from_dir: &Path, to_dir: &Path) -> String {
    use fm_grammar::ast::{ExprKind, Item};
    let (file, errors) = fm_grammar::parse(source);
    if !errors.is_empty() {
        return source.to_string();
    }
    let mut edits: Vec<(Span, String)> = Vec::new();
    for item in &file.items {
        let Item::Data(section) = item else { continue };
        for entry in &section.entries {
            let ExprKind::Call { callee, args } = &entry.value.kind else {
                continue;
            };
            let params = path_params(&callee.name);
            let mut position = 0;
            for arg in args {
                let is_path = match &arg.name {
                    Some(n) => params.iter().any(|(_, p)| *p == n.name),
                    None => {
                        position += 1;
                        params.iter().any(|(i, _)| *i == position - 1)
                    }
                };
                if let (true, ExprKind::Str(text)) = (is_path, &arg.value.kind) {
                    if Path::new(text).is_absolute() {
                        continue;
                    }
                    let moved = relative_path(&from_dir.join(text), to_dir);
                    edits.push((arg.value.span, quote(&moved.to_string_lossy())));
                }
            }
        }
    }
    edits.sort_by_key(|(span, _)| std::cmp::Reverse(span.start));
    let mut out = source.to_string();
    for (span, text) in edits {
        out.replace_range(span.start..span.end, &text);
    }
    out
}

/// `target` as seen from the directory `dir`: relative when both resolve to absolute paths (so a
/// project moved as a whole keeps working), else `target` made absolute.
fn relative_path(target: &Path, dir: &Path) -> PathBuf {
    let absolute = |p: &Path| {
        p.canonicalize()
            .or_else(|_| std::path::absolute(p).map(|a| normalize(&a)))
    };
    let (Ok(target), Ok(dir)) = (absolute(target), absolute(dir)) else {
        return target.to_path_buf();
    };
    let t: Vec<_> = target.components().collect();
    let d: Vec<_> = dir.components().collect();
    let common = t.iter().zip(&d).take_while(|(a, b)| a == b).count();
    if common == 0 {
        return target;
    }
    let mut out = PathBuf::new();
    for _ in common..d.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    out
}

/// Removes `.` and folds `..` lexically (for a path that does not exist yet).
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// A `.fm` string literal (the escapes of the grammar: `\"`, `\\`, `\n`, `\t`).
fn quote(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_paths_are_rebased_to_the_copy() {
        let dir = std::env::temp_dir().join(format!("fm-rebase-{}", std::process::id()));
        let project = dir.join("project");
        let run = dir.join("project/runs/m/1");
        std::fs::create_dir_all(project.join("data")).unwrap();
        std::fs::create_dir_all(&run).unwrap();
        let source = "data d {\n    train: idx(\"data/a\", labels: \"data/b\")\n    test: csv(\"t.csv\", label: \"y\")\n}\ndata e {\n    train: npz(\"/abs/e.npz\", x: \"data/not-a-path\")\n}\n";
        let out = rebase_data_paths(source, &project, &run);
        assert_eq!(
            out,
            "data d {\n    train: idx(\"../../../data/a\", labels: \"../../../data/b\")\n    test: csv(\"../../../t.csv\", label: \"y\")\n}\ndata e {\n    train: npz(\"/abs/e.npz\", x: \"data/not-a-path\")\n}\n"
        );
        // A file with syntax errors is left alone.
        assert_eq!(rebase_data_paths("data {", &project, &run), "data {");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
