//! `fmc import MODEL.keras|MODEL.json|MODEL.onnx [-o OUT.fm]`: a Keras 3 model (a `.keras`
//! file, or a JSON config alone) or an ONNX model as a formatted `.fm` file and
//! `OUT.safetensors` beside it (`fm_interop::import`). Both are written only when the whole
//! model imported and checked; a JSON config has no weights, so only the `.fm` file is written
//! (fm initialises the weights when it trains).

use super::session::runtime_error;
use super::Global;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// The model to import: a Keras 3 `.keras` file, a Keras JSON config (`model.to_json()`), or
    /// an ONNX file (`.onnx`); recognised by content.
    pub model: PathBuf,
    /// The `.fm` file to write (default: the model's name with `.fm`); the weights go beside it
    /// as `OUT.safetensors`.
    #[arg(short = 'o', long, value_name = "OUT.fm")]
    pub output: Option<PathBuf>,
}

pub fn run(g: &mut Global, args: &ImportArgs) -> i32 {
    let out = args
        .output
        .clone()
        .unwrap_or_else(|| args.model.with_extension("fm"));
    let weights = out.with_extension("safetensors");
    for p in [&out, &weights] {
        if let Err(e) = fm_runtime::fsutil::check_writable(p) {
            return runtime_error(g, &e);
        }
    }
    let bytes = match fm_runtime::fsutil::read_within_memory(&args.model) {
        Ok(b) => b,
        Err(e) => {
            return runtime_error(
                g,
                &fm_runtime::RuntimeError::at(
                    fm_runtime::ErrorKind::MissingFile,
                    &args.model,
                    format!("cannot be read: {e}"),
                ),
            )
        }
    };
    let file = args.model.display().to_string();
    let name = model_name(&out);
    // A zip (`.keras`) or JSON is Keras, and so is a file named `.keras` or `.json` (so a
    // damaged one is reported as what it claims to be); anything else is read as ONNX's protobuf.
    let named_keras = args
        .model
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("keras") || e.eq_ignore_ascii_case("json"));
    let keras =
        named_keras || bytes.starts_with(b"PK") || bytes.trim_ascii_start().starts_with(b"{");
    let imported = if keras {
        fm_interop::import::keras::import(&bytes, &file, &name)
    } else {
        fm_interop::import::onnx::import(&bytes, &file, &name)
    };
    let imported = match imported.and_then(|i| fm_interop::import::check(&i, &file).map(|()| i)) {
        Ok(i) => i,
        Err(e) => return super::interop_error(g, &e),
    };
    let fm_name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let meta = fm_runtime::weights::WeightsMeta::new(&name, imported.source.as_bytes());
    let with_weights = !imported.tensors.is_empty();
    if with_weights {
        if let Err(e) = fm_runtime::weights::save_weights(&weights, &imported.tensors, &meta) {
            return runtime_error(g, &e);
        }
    }
    if let Err(e) = fm_runtime::fsutil::atomic_write(&out, imported.source.as_bytes()) {
        if with_weights {
            let _ = std::fs::remove_file(&weights);
        }
        return runtime_error(g, &e);
    }
    if !g.quiet {
        let _ = if with_weights {
            writeln!(
                g.err,
                "wrote {} and {} ({} tensors); `fmc summary {fm_name}` shows the model",
                out.display(),
                weights.display(),
                imported.tensors.len()
            )
        } else {
            writeln!(
                g.err,
                "wrote {} (no weights: `fmc train` initialises them); `fmc summary {fm_name}` shows the model",
                out.display()
            )
        };
    }
    0
}

/// The model's name: the output file's stem as an identifier.
fn model_name(out: &Path) -> String {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "imported".into());
    fm_interop::import::onnx::sanitize(&stem)
}
