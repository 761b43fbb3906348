//! The IDX reader on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fm_runtime::data::idx::parse_idx("fuzz.idx", data);
});
