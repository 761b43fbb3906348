//! The stable E00xx syntax error codes and their long explanations (`fmc explain E0001`).
//!
//! | code  | meaning |
//! |-------|---------|
//! | E0001 | unexpected token: something else was expected here |
//! | E0002 | unterminated string |
//! | E0003 | unterminated block comment |
//! | E0004 | invalid number literal |
//! | E0005 | nesting too deep (brackets, or an expression chain too long) |
//! | E0006 | the file is not valid UTF-8 |
//! | E0007 | unknown escape sequence in a string |
//! | E0008 | unclosed `{` of a model, block, data or train body |
//! | E0009 | `version` given twice |

pub const UNEXPECTED_TOKEN: &str = "E0001";
pub const UNTERMINATED_STRING: &str = "E0002";
pub const UNTERMINATED_COMMENT: &str = "E0003";
pub const INVALID_NUMBER: &str = "E0004";
pub const NESTING_TOO_DEEP: &str = "E0005";
pub const INVALID_UTF8: &str = "E0006";
pub const UNKNOWN_ESCAPE: &str = "E0007";
pub const UNCLOSED_BODY: &str = "E0008";
pub const DUPLICATE_VERSION: &str = "E0009";

/// Every syntax code, in order.
pub const ALL: &[&str] = &[
    UNEXPECTED_TOKEN,
    UNTERMINATED_STRING,
    UNTERMINATED_COMMENT,
    INVALID_NUMBER,
    NESTING_TOO_DEEP,
    INVALID_UTF8,
    UNKNOWN_ESCAPE,
    UNCLOSED_BODY,
    DUPLICATE_VERSION,
];

/// The long explanation of a syntax code, with an example and the fix; `None` for codes this
/// crate does not own.
pub fn explain(code: &str) -> Option<&'static str> {
    Some(match code {
        "E0001" => {
            "\
E0001: unexpected token

The parser found a token that cannot appear at this point. The message lists what
could appear instead and the primary span points at the offending token.

Example:

    model m {
        input x: f32[3]
        output y = x -> Dense(3 -> Dense(2)
    }

`Dense(3` is still open when `->` arrives; call arguments contain no `->` outside
their own parentheses, so the parser expected `)` or `,`.

Fix: close the call: `x -> Dense(3) -> Dense(2)`.

Other common causes: a missing `:` in `input x: f32[3]`, a missing `=` in
`let h = ...`, a keyword used as a name (`let model = ...`), or a pipeline line that
starts with `->` after a statement has ended. After an error the parser skips to the
next statement keyword (`input`, `let`, `output`, `return`), section key, item
keyword (`model`, `block`, `data`, `train`) or `}`, and goes on, so several
independent errors are reported together."
        }
        "E0002" => {
            "\
E0002: unterminated string

A string literal was opened with `\"` but the file ended before the closing `\"`.

Example:

    data d {
        train: idx(\"images.idx, \"labels.idx\")
    }

Here the first string runs on to the `\"` before `labels` and the second one never
ends.

Fix: close every string with `\"`. A quote inside a string is written `\\\"`, a
backslash `\\\\`; `\\n` and `\\t` are a newline and a tab."
        }
        "E0003" => {
            "\
E0003: unterminated block comment

A `/*` comment has no matching `*/` before the end of the file. Block comments do
not nest: the first `*/` ends the comment.

Example:

    /* temporarily disabled
    model m { ... }

Fix: add `*/` where the comment should end, or use `//` line comments."
        }
        "E0004" => {
            "\
E0004: invalid number

A number literal is malformed or out of range. Numbers are integers (`32`) or
floats (`0.5`, `1e-3`, `2.5E+2`): digits, an optional `.` followed by digits, and
an optional exponent `e`/`E`, an optional sign and at least one digit. A duration
needs a space between the number and its unit.

Example:

    optimizer: Adam(lr: 1e)
    epochs: 5epochs

Fix: `Adam(lr: 1e-3)`, and `5` (or `every: 5 epochs` where a duration is meant)."
        }
        "E0005" => {
            "\
E0005: nesting too deep

Brackets `(`, `[` and `{` may be nested at most 256 deep, and one expression tree
may be at most 512 levels deep: every pipeline stage, operator, unary minus, call
with arguments, list or parenthesis adds a level, so a pipeline can have about 500
stages. The limits keep the compiler's stack bounded.

Example:

    output y = ((((((((...x...))))))))    // 300 levels

Fix: split the expression with `let` bindings, or use `repeat N { ... }` for long
runs of identical stages."
        }
        "E0006" => {
            "\
E0006: invalid UTF-8

`.fm` files are UTF-8 text. The primary span points at the first byte that is not
valid UTF-8; the file is parsed up to that byte.

Example: a comment saved in Latin-1 by an old editor,

    // caf\\xE9 au lait    <- the byte 0xE9 alone is not UTF-8

Fix: save the file as UTF-8 (identifiers and keywords are ASCII; non-ASCII text may
only appear in comments and strings)."
        }
        "E0007" => {
            "\
E0007: unknown escape sequence

Strings support the escapes `\\\"` (quote), `\\\\` (backslash), `\\n` (newline) and
`\\t` (tab). Any other character after a backslash is an error.

Example:

    train: npy(\"data\\x.npy\", \"data\\y.npy\")

Fix: use forward slashes in paths (`\"data/x.npy\"`; they work on every platform) or
double the backslash (`\"data\\\\x.npy\"`)."
        }
        "E0008" => {
            "\
E0008: unclosed `{`

The body of a `model`, `block`, `data` or `train` item was not closed with `}`
before the file ended or the next item began. The secondary label shows the `{`
that is still open.

Example:

    model m {
        input x: f32[3]
        output y = x -> Dense(1)

    train { loss: mse }

Fix: add `}` at the end of the body."
        }
        "E0009" => {
            "\
E0009: `version` given twice

A file may declare its language version once, normally on its first line.

Example:

    version 0.1
    version 0.1    <- the second declaration is the error

Fix: delete the second `version` line."
        }
        _ => return None,
    })
}
