//! Parser, checker, formatter and diagnostic renderer on arbitrary bytes: no panic, no abort,
//! bounded time and memory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let (file, syntax) = fm_grammar::parse_bytes(data);
    let source = String::from_utf8_lossy(data);
    let checked = if syntax.is_empty() {
        // The formatter must accept anything that parses.
        let _ = fm_grammar::fmt::format(&file, &source);
        fm_compiler::check::check(&file, &source, Path::new("fuzz.fm"))
    } else {
        fm_compiler::check::Checked {
            diagnostics: syntax,
            ..Default::default()
        }
    };
    let src = fm_compiler::diag::SourceFile {
        name: "fuzz.fm",
        text: &source,
    };
    for d in &checked.diagnostics {
        let _ = fm_compiler::diag::render(d, &src, fm_compiler::diag::MessageFormat::Human, false);
    }
});
