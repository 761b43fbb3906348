//! The IR text parser (`.fmir`) on arbitrary text; what parses (and so verifies) prints again.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(f) = fm_compiler::ir::parse::parse_function(text) {
            let _ = fm_compiler::ir::print::print_function(&f);
        }
    }
});
