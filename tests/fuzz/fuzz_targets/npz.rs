//! The `.npz` reader (zip of `.npy` members) on arbitrary bytes: the key listing and every member.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(keys) = fm_runtime::data::npy::npz_keys("fuzz.npz", data) {
        for k in keys.iter().take(8) {
            let _ = fm_runtime::data::npy::parse_npz_member("fuzz.npz", data, k);
        }
    }
    let _ = fm_runtime::data::npy::parse_npz_member("fuzz.npz", data, "x");
});
