//! `fmc compile FILE --emit KIND [-o OUT]`. `ast` is the parser's dump; `ir` and `ir-opt` the
//! tensor IR before and after the passes; `rust` the code `model!` expands to; `clif` the JIT's
//! Cranelift IR. FILE may also be an IR function in text form (`.fmir`), for `ir`, `ir-opt` and
//! `clif`.

use super::{EmitKind, Global};
use fm_compiler::diag::SourceFile;
use fm_compiler::ir::{print::print_function, Function};
use std::path::Path;

pub fn run(
    g: &mut Global,
    file: &Path,
    emit: EmitKind,
    output: Option<&Path>,
    model: Option<&str>,
) -> i32 {
    let is_fmir = file.extension().is_some_and(|e| e == "fmir");
    let text = match emit {
        EmitKind::Ir | EmitKind::IrOpt | EmitKind::Clif if is_fmir => {
            read_fmir(file).and_then(|f| match emit {
                EmitKind::Ir => Ok(print_function(&f)),
                EmitKind::IrOpt => optimized(f).map(|f| print_function(&f)),
                _ => fm_jit::emit_clif(&f),
            })
        }
        EmitKind::Ast => {
            let bytes = match fm_compiler::check::limits::read_source(file) {
                Ok(b) => b,
                Err(e) => {
                    g.fail(&format!("cannot read `{}`: {e}", file.display()));
                    return 1;
                }
            };
            let source = String::from_utf8_lossy(&bytes).into_owned();
            let (ast, diags) = fm_grammar::parse_bytes(&bytes);
            if !diags.is_empty() {
                let name = file.display().to_string();
                g.print_diagnostics(
                    &diags,
                    &SourceFile {
                        name: &name,
                        text: &source,
                    },
                );
                return 1;
            }
            Ok(fm_grammar::dump_ast(&ast, &source))
        }
        EmitKind::Ir | EmitKind::IrOpt | EmitKind::Clif | EmitKind::Rust => {
            let sel = match super::session::select(g, file, model, &[]) {
                Ok(s) => s,
                Err(code) => return code,
            };
            match emit {
                EmitKind::Clif => clif_text(&sel),
                EmitKind::Rust => rust_text(&sel, file),
                _ => ir_text(&sel, emit == EmitKind::IrOpt),
            }
        }
    };
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            g.fail(&e);
            return 1;
        }
    };
    match output {
        Some(path) => match super::fmt::write_atomically(path, text.as_bytes()) {
            Ok(()) => 0,
            Err(e) => {
                g.fail(&format!("cannot write `{}`: {e}", path.display()));
                1
            }
        },
        None => {
            let _ = g.out.write_all(text.as_bytes());
            0
        }
    }
}

/// What `model!` expands to for this model, pretty-printed with the `.fm` lines in comments.
fn rust_text(sel: &super::session::Selected, file: &Path) -> Result<String, String> {
    use fm_compiler::emit::rust;
    let checked = fm_compiler::check::check_source(&sel.source, file);
    let selected = rust::Selected {
        graph: sel.graph.clone(),
        spec: sel.spec.clone(),
        has_train: sel.has_train,
    };
    let name = file.file_name().map_or_else(
        || file.display().to_string(),
        |f| f.to_string_lossy().into_owned(),
    );
    let code = rust::emit(&selected, &checked.trains, &sel.source, &name)?;
    rust::pretty(&code)
}

/// The train step (when the file trains the model) and inference functions, before or after
/// the passes (the standard ones, then the backend's: `split_sums` and `fuse`, whose kernel
/// plan is printed after each function).
fn ir_text(sel: &super::session::Selected, optimized_ir: bool) -> Result<String, String> {
    use fm_compiler::ir::verify::verify;
    let mut fns = Vec::new();
    if sel.has_train {
        // One function per `step` (language.md 9.4), exactly as training compiles them.
        fns.extend(fm_compiler::lower::train_step_fns(&sel.graph, &sel.spec));
    }
    fns.push(fm_compiler::lower::predict_fn(&sel.graph));
    let mut out = String::new();
    for f in fns {
        verify(&f).map_err(|e| {
            format!(
                "internal compiler error: `{}` fails verification: {e}",
                f.name
            )
        })?;
        let f = if optimized_ir { optimized(f)? } else { f };
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&format!(
            "// model `{}`: {} instructions\n",
            sel.graph.name,
            f.insts.len()
        ));
        out.push_str(&print_function(&f));
    }
    Ok(out)
}

/// `f` after the standard passes and the backend's (`split_sums`, `fuse`).
fn optimized(f: Function) -> Result<Function, String> {
    let f = fm_compiler::passes::standard().run(f)?.0;
    Ok(fm_compiler::passes::backend().run(f)?.0)
}

/// An IR function in text form (`.fmir`), parsed and verified.
fn read_fmir(file: &Path) -> Result<Function, String> {
    let bytes = fm_compiler::check::limits::read_source(file)
        .map_err(|e| format!("cannot read `{}`: {e}", file.display()))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("cannot read `{}`: it is not UTF-8 text", file.display()))?;
    fm_compiler::ir::parse::parse_function(&text).map_err(|e| format!("{}:{e}", file.display()))
}

/// The Cranelift IR the JIT generates for the train step (when the file trains the model) and
/// the inference function, exactly as the `train`/`predict` commands compile them: every
/// kernel once, then the entry function that calls them. Deterministic (golden-tested).
fn clif_text(sel: &super::session::Selected) -> Result<String, String> {
    let mut fns = Vec::new();
    if sel.has_train {
        // One function per `step` (language.md 9.4), exactly as training compiles them.
        fns.extend(fm_compiler::lower::train_step_fns(&sel.graph, &sel.spec));
    }
    fns.push(fm_compiler::lower::predict_fn(&sel.graph));
    let mut out = String::new();
    for f in fns {
        fm_compiler::ir::verify::verify(&f).map_err(|e| {
            format!(
                "internal compiler error: `{}` fails verification: {e}",
                f.name
            )
        })?;
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&format!(
            "; model `{}`, function `{}`\n",
            sel.graph.name, f.name
        ));
        out.push_str(&fm_jit::emit_clif(&f)?);
    }
    Ok(out)
}
