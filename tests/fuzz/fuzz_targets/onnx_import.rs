//! `fmc import` of an ONNX model on arbitrary bytes: the protobuf decoder, the graph import and
//! fm's check of the generated `.fm` file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(imported) = fm_interop::import::onnx::import(data, "fuzz.onnx", "fuzz") {
        let _ = fm_interop::import::check(&imported, "fuzz.onnx");
    }
});
