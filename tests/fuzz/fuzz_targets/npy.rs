//! The `.npy` reader on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = fm_runtime::data::npy::parse_npy("fuzz.npy", data) {
        let _ = a.data.to_f32();
    }
});
