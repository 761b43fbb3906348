//! `fmc summary FILE [--ascii] [--model NAME]`.

use super::{load_checked, Global};
use std::path::Path;

pub fn run(g: &mut Global, file: &Path, ascii: bool, model: Option<&str>) -> i32 {
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
    }
    let _ = g.out.write_all(text.as_bytes());
    0
}
