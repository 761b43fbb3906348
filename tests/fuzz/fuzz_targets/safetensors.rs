//! The weights (safetensors) reader on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let _ = fm_runtime::weights::decode_weights(Path::new("fuzz.safetensors"), data);
});
