//! `fmc export FILE --weights W -o MODEL.onnx`: the trained model's inference graph as ONNX
//! (`fm_interop::export`), written atomically.

use super::session::{self, runtime_error};
use super::Global;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// The `.fm` file.
    pub file: PathBuf,
    /// Trained weights (safetensors written by `fmc train`); BatchNorm's moving statistics
    /// come from here, and so do the statistics of a `standardize` transform.
    #[arg(long, value_name = "W.safetensors")]
    pub weights: PathBuf,
    /// Where the ONNX model goes (opset 17, a symbolic batch dimension `N`).
    #[arg(short = 'o', long, value_name = "MODEL.onnx")]
    pub output: PathBuf,
    /// The model to export when the file has several.
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
}

pub fn run(g: &mut Global, args: &ExportArgs) -> i32 {
    let sel = match session::select(g, &args.file, args.model.as_deref(), &[]) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if let Err(e) = fm_runtime::fsutil::check_writable(&args.output) {
        return runtime_error(g, &e);
    }
    let file = match fm_runtime::weights::load_weights(&args.weights) {
        Ok(f) => f,
        Err(e) => return runtime_error(g, &e),
    };
    let transforms = match session::stored_transforms(&file.meta, &sel.spec, &args.weights) {
        Ok(t) => t,
        Err(e) => return runtime_error(g, &e),
    };
    let name = args.weights.display().to_string();
    let bytes = match fm_interop::export::export(&sel.graph, &file.tensors, &transforms, &name) {
        Ok(b) => b,
        Err(e) => return super::interop_error(g, &e),
    };
    if let Err(e) = fm_runtime::fsutil::atomic_write(&args.output, &bytes) {
        return runtime_error(g, &e);
    }
    if !g.quiet {
        let _ = writeln!(
            g.err,
            "wrote {} ({} bytes, opset {})",
            args.output.display(),
            bytes.len(),
            fm_interop::onnx::OPSET
        );
    }
    0
}
