//! `fmc train --set KEY=VALUE`: overriding `train` keys before checking.
//!
//! The override is applied to the source text (the key's value is replaced, or a new entry is
//! added before the section's closing `}`), so the result is checked exactly like a file the user
//! wrote, and diagnostics point into the overridden text.

// A `Diagnostic` is the natural error here; it is returned once per command line.
#![allow(clippy::result_large_err)]

use fm_codes as codes;
use fm_grammar::ast::Item;
use fm_grammar::Diagnostic;

/// The keys a `train` section accepts.
pub const TRAIN_KEYS: &[&str] = &[
    "data",
    "loss",
    "loss_weights",
    "optimizer",
    "schedule",
    "epochs",
    "batch_size",
    "validation",
    "shuffle",
    "seed",
    "metrics",
    "early_stopping",
    "checkpoint",
];

/// Splits `KEY=VALUE`.
pub fn parse_assignment(text: &str) -> Result<(String, String), Diagnostic> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
            Ok((k.trim().to_string(), v.trim().to_string()))
        }
        _ => Err(Diagnostic::error(
            codes::E0113,
            format!("`--set {text}` is not of the form KEY=VALUE"),
        )
        .with_help("for example `--set epochs=3` or `--set optimizer=\"SGD(lr: 0.1)\"`")),
    }
}

/// Applies the overrides to the `train` section of `model` (or the only/first one) and returns
/// the new source. An unknown key, or a file without a `train` section, is an error.
pub fn apply(
    source: &str,
    model: Option<&str>,
    overrides: &[(String, String)],
) -> Result<String, Diagnostic> {
    let mut text = source.to_string();
    for (key, value) in overrides {
        if !TRAIN_KEYS.contains(&key.as_str()) {
            let mut d = Diagnostic::error(
                codes::E0113,
                format!("unknown `train` key `{key}` in `--set`"),
            );
            if let Some(s) = super::suggest(key, TRAIN_KEYS.iter().copied()) {
                d = d.with_help(format!("did you mean `{s}`?"));
            }
            return Err(d);
        }
        if value.contains('\n') {
            return Err(Diagnostic::error(
                codes::E0201,
                format!("the value of `--set {key}` must be one line"),
            ));
        }
        // Re-parse after each edit so spans stay exact.
        let (parsed, _) = fm_grammar::parse(&text);
        let section = parsed
            .items
            .iter()
            .filter_map(|i| match i {
                Item::Train(s) => Some(s),
                _ => None,
            })
            .find(|s| match (model, &s.name) {
                (Some(m), Some(n)) => n.name == m,
                (Some(_), None) => true,
                (None, _) => true,
            });
        let Some(section) = section else {
            return Err(Diagnostic::error(
                codes::E0107,
                "the file has no `train` section to override",
            )
            .with_help("add `train { ... }` to the file"));
        };
        match section.entries.iter().find(|e| e.key.name == *key) {
            Some(entry) => {
                text.replace_range(entry.value.span.start..entry.value.span.end, value);
            }
            None => {
                // Insert before the closing brace of the section.
                let close = text[..section.span.end]
                    .rfind('}')
                    .unwrap_or(section.span.end);
                text.insert_str(close, &format!("    {key}: {value}\n"));
            }
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "model m {\n    input x: f32[3]\n    output y = x -> Dense(1)\n}\n\ntrain {\n    loss: mse\n    epochs: 5\n}\n";

    fn run(overrides: &[(&str, &str)]) -> Result<String, Diagnostic> {
        let o: Vec<(String, String)> = overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        apply(SRC, None, &o)
    }

    #[test]
    fn replaces_and_adds_keys() {
        let out = run(&[("epochs", "3"), ("optimizer", "SGD(lr: 0.1)")]).unwrap();
        assert!(out.contains("    epochs: 3\n"));
        assert!(out.contains("    optimizer: SGD(lr: 0.1)\n}"));
        let checked = super::super::check_source(&out, std::path::Path::new("m.fm"));
        assert!(!checked.has_errors(), "{:?}", checked.diagnostics);
        assert_eq!(checked.trains[0].epochs, 3);
        assert_eq!(checked.trains[0].optimizer.lr, 0.1);
    }

    #[test]
    fn unknown_keys_and_bad_assignments_are_errors() {
        let e = run(&[("epoch", "3")]).unwrap_err();
        assert_eq!(e.code, codes::E0113);
        assert_eq!(e.help, vec!["did you mean `epochs`?".to_string()]);
        assert!(parse_assignment("epochs").is_err());
        assert_eq!(
            parse_assignment("optimizer=SGD(lr: 0.1)").unwrap(),
            ("optimizer".to_string(), "SGD(lr: 0.1)".to_string())
        );
    }
}
