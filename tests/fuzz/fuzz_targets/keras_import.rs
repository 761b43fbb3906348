//! `fmc import` of a Keras model on arbitrary bytes: a `.keras` zip (config and HDF5 weights)
//! or a JSON config, the layer import and fm's check of the generated `.fm` file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(imported) = fm_interop::import::keras::import(data, "fuzz.keras", "fuzz") {
        let _ = fm_interop::import::check(&imported, "fuzz.keras");
    }
});
