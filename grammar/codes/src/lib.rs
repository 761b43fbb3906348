//! The one registry of fm's diagnostic codes, after rustc's `rustc_error_codes`: every code any
//! crate can emit is a variant of [`Code`], declared once below with its one-line title, and its
//! long explanation (what it means, an example and the fix) is `explanations/CODE.md`, printed
//! by `fmc explain CODE`.
//!
//! Emitting code names a variant (`fm_codes::E0203`), never a string, so a code that is not in
//! the table does not compile. Families (language.md section 8): E00xx syntax (fm-grammar),
//! E01xx names, E02xx types and shapes, E03xx training setup (the checker), E04xx data, weights
//! and files (fm-runtime and the data commands), W01xx warnings.
//!
//! Adding a code: add a line to the table, write `explanations/CODE.md` (an `Example:` and a
//! `Fix:`; for E00xx-E03xx and W01xx the example is a complete `.fm` file that `fmc check`
//! rejects with that code, which `tests/tests/codes.rs` verifies), and a golden case
//! `tests/golden/errors/cODE_*.fm`. A retired code keeps its number unused.

use std::fmt;

macro_rules! registry {
    ($($code:ident: $title:literal,)*) => {
        /// A diagnostic code. `Display` and `as_str` give `E0203`.
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code {
            $(
                #[doc = $title]
                $code,
            )*
        }

        /// Every code, in table order (by family, then number).
        pub const ALL: &[Code] = &[$(Code::$code),*];

        impl Code {
            /// `"E0203"`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Code::$code => stringify!($code),)*
                }
            }

            /// The one-line title: lowercase, no trailing period (`shapes do not match in
            /// elementwise arithmetic`).
            pub const fn title(self) -> &'static str {
                match self {
                    $(Code::$code => $title,)*
                }
            }

            /// The long explanation without the title line: what the code means, `Example:`
            /// and `Fix:`.
            pub const fn explanation(self) -> &'static str {
                match self {
                    $(Code::$code => include_str!(concat!("../explanations/", stringify!($code), ".md")),)*
                }
            }
        }
    };
}

registry! {
    // E00xx: syntax (the parser, fm-grammar).
    E0001: "unexpected token",
    E0002: "unterminated string",
    E0003: "unterminated block comment",
    E0004: "invalid number",
    E0005: "nesting too deep",
    E0006: "invalid UTF-8",
    E0007: "unknown escape sequence",
    E0008: "unclosed `{`",
    E0009: "`version` given twice",

    // E01xx: names (the checker).
    E0101: "unknown layer, function or block",
    E0102: "unknown name",
    E0103: "unknown argument name",
    E0104: "unknown value for an argument",
    E0105: "duplicate name",
    E0106: "recursive block",
    E0107: "unknown or ambiguous model in `train`",
    E0108: "unknown data section",
    E0109: "unknown loss",
    E0110: "unknown optimizer",
    E0111: "unknown schedule",
    E0112: "unknown metric",
    E0113: "unknown key in a section",
    E0114: "block named like a built-in",
    E0116: "unknown element type",
    E0117: "unknown data source or transform",
    E0118: "`update:` names no named call",

    // E02xx: types and shapes (the checker).
    E0201: "wrong argument type",
    E0202: "value out of range",
    E0203: "shapes do not match in elementwise arithmetic",
    E0204: "wrong number of tensor inputs",
    E0205: "input has the wrong rank for the layer",
    E0206: "missing argument",
    E0207: "too many positional arguments",
    E0208: "kernel or window larger than its input",
    E0209: "wrong element type",
    E0210: "invalid reshape or oversized tensor",
    E0211: "axis out of range",
    E0212: "integer required",
    E0213: "attention dimensions do not fit",
    E0214: "shapes do not match in `concat`",
    E0215: "a tensor was expected (or is not allowed) here",
    E0216: "unsupported tensor arithmetic",
    E0218: "misplaced or missing statement",
    E0219: "model too large",
    E0220: "shared call on an input its weights do not fit",
    E0221: "loss or metric expression is not a per-sample scalar",
    E0222: "lagged weights of an unnamed call",
    E0223: "`categorical` weights cannot be used",
    E0224: "channel groups do not divide the channels",
    E0225: "sequence longer than the position embedding",

    // E03xx: training setup (the checker).
    E0301: "loss does not fit the output",
    E0302: "two clipping options",
    E0304: "missing loss",
    E0305: "loss map does not match the outputs",
    E0306: "data does not match the model's inputs",
    E0307: "validation on a missing test split",
    E0308: "training needs more memory than the budget",
    E0309: "`loss` or `optimizer` beside `step` entries",
    E0310: "targets of a classification loss rescaled by `y:`",
    E0311: "`y:` key map names no target the model reads",
    E0312: "metric with no target to compare with",

    // E04xx: data, weights and files (the runtime, commands that read data).
    E0401: "data or weights file cannot be read",
    E0402: "unrecognised or malformed file",
    E0403: "file shorter than its header says",
    E0404: "data shape does not fit the model",
    E0405: "element type cannot be used",
    E0406: "sample counts differ",
    E0407: "class label or token id out of range",
    E0408: "NaN or infinity in the data, or training went non-finite",
    E0409: "data setup does not fit the data",
    E0410: "weights file does not fit the model",
    E0411: "file cannot be written",
    E0412: "model file has a node or layer with no `.fm` form",
    E0413: "layer has no ONNX form",
    E0420: "the backend failed",

    // W01xx: warnings (the checker).
    W0101: "unused `let`",
    W0102: "monitor that no metric produces",
    W0103: "`from_logits: true` on a probability output",
    W0104: "classification loss on an output that keeps spatial positions",
}

pub use Code::*;

impl Code {
    /// The code named `text` (`E0203`, case-insensitive), if it is registered.
    pub fn parse(text: &str) -> Option<Code> {
        let text = text.trim();
        ALL.iter()
            .copied()
            .find(|c| c.as_str().eq_ignore_ascii_case(text))
    }

    /// Whether diagnostics with this code are warnings (W01xx) rather than errors.
    pub fn is_warning(self) -> bool {
        self.as_str().starts_with('W')
    }

    /// The text `fmc explain` prints: `E0203: TITLE`, a blank line, the explanation.
    pub fn explain(self) -> String {
        format!("{self}: {}\n\n{}", self.title(), self.explanation())
    }
}

/// The long explanation of a code given as text, for `fmc explain`; `None` for an unknown code.
pub fn explain(code: &str) -> Option<String> {
    Code::parse(code).map(Code::explain)
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for Code {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Code {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_sorted_and_unique() {
        for pair in ALL.windows(2) {
            assert!(pair[0] < pair[1], "{} before {}", pair[0], pair[1]);
            assert!(
                (pair[0].is_warning(), pair[0].as_str()) < (pair[1].is_warning(), pair[1].as_str()),
                "{} is out of order",
                pair[1]
            );
        }
        for c in ALL {
            let s = c.as_str();
            assert!(
                s.len() == 5
                    && matches!(&s[..1], "E" | "W")
                    && s[1..].bytes().all(|b| b.is_ascii_digit()),
                "{s}"
            );
        }
    }

    #[test]
    fn every_code_has_a_title_an_example_and_a_fix() {
        for &c in ALL {
            let t = c.title();
            assert!(!t.is_empty() && !t.ends_with('.'), "{c}: title `{t}`");
            assert!(
                !t.starts_with(|ch: char| ch.is_ascii_uppercase()) || t.starts_with("NaN"),
                "{c}: titles start lowercase: `{t}`"
            );
            let e = c.explanation();
            assert!(
                e.contains("\nExample"),
                "{c}: the explanation has no `Example`"
            );
            assert!(e.contains("\nFix: "), "{c}: the explanation has no `Fix: `");
            let (example, fix) = (e.find("\nExample").unwrap(), e.find("\nFix: ").unwrap());
            assert!(example < fix, "{c}: the fix comes before the example");
            assert!(
                e.ends_with('\n') && !e.ends_with("\n\n"),
                "{c}: trailing blank lines"
            );
            for line in e.lines() {
                assert!(
                    line.chars().count() <= 100,
                    "{c}: line over 100 characters: {line}"
                );
            }
        }
    }

    #[test]
    fn every_explanation_file_is_registered() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("explanations");
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            let code = name.strip_suffix(".md").unwrap_or(&name);
            assert!(
                Code::parse(code).is_some(),
                "explanations/{name} has no registry entry"
            );
        }
    }

    #[test]
    fn explain_and_parse() {
        assert_eq!(Code::parse("e0203"), Some(E0203));
        assert_eq!(Code::parse("E9999"), None);
        assert!(explain("E0404")
            .unwrap()
            .starts_with("E0404: data shape does not fit the model\n\n"));
        assert!(explain("E0408").unwrap().contains("NaN"));
        assert!(W0101.is_warning() && !E0101.is_warning());
        assert_eq!(E0001.to_string(), "E0001");
        assert_eq!(E0001, "E0001");
    }
}
