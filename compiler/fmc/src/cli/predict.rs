//! `fmc predict FILE --weights W --input X [-o Y]`: inference; writes `.npy` (several outputs:
//! one file per output, `Y.NAME.npy`), or prints the results when no `-o` is given.

use super::session::{self, runtime_error, BackendChoice};
use super::Global;
use fm_runtime::data::{prepare_inputs, read_array, LoadOptions};
use fm_runtime::tensor::Tensor;
use fm_runtime::train;
use fm_runtime::RuntimeError;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct PredictArgs {
    /// The `.fm` file.
    pub file: PathBuf,
    /// Trained weights (safetensors written by `fmc train`).
    #[arg(long, value_name = "W.safetensors")]
    pub weights: PathBuf,
    /// Inputs (IDX, .npy, .npz[:key], .csv); a model with several inputs takes an .npz whose
    /// keys are the input names.
    #[arg(long, value_name = "X")]
    pub input: String,
    /// Write the outputs here as .npy (several outputs: `Y.NAME.npy`) instead of printing them.
    #[arg(short = 'o', long, value_name = "Y.npy")]
    pub output: Option<PathBuf>,
    /// The model to run when the file has several.
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// Samples per batch (default: the `train` section's `batch_size`, 32 without one); bounds
    /// memory.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: Option<u64>,
    /// Where the model runs.
    #[arg(long, value_enum, default_value_t = BackendChoice::Jit)]
    pub backend: BackendChoice,
    /// Threads of the GEMM and convolution kernels (default: one per core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub threads: Option<u64>,
    /// Accept NaN and infinity in the inputs.
    #[arg(long)]
    pub allow_nan: bool,
}

pub fn run(g: &mut Global, args: &PredictArgs) -> i32 {
    session::set_threads(args.threads);
    let sel = match session::select(g, &args.file, args.model.as_deref(), &[]) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut backend = match session::backend(g, &sel, args.backend) {
        Ok(b) => b,
        Err(code) => return code,
    };
    let result: Result<Vec<Tensor>, RuntimeError> = (|| {
        let meta = train::load_init(&mut backend, &args.weights)?;
        let transforms = session::stored_transforms(&meta, &sel.spec)?;
        let md = session::model_data(&sel.graph, &sel.spec);
        let raw = if md.inputs.len() == 1 {
            vec![read_array(&args.input)?]
        } else {
            md.inputs
                .iter()
                .map(|i| read_array(&format!("{}:{}", args.input, i.name)))
                .collect::<Result<Vec<_>, _>>()?
        };
        let inputs = prepare_inputs(
            &raw,
            &md,
            &transforms,
            LoadOptions {
                allow_nan: args.allow_nan,
            },
        )?;
        train::predict(
            &mut backend,
            &inputs,
            args.batch_size.map_or(sel.spec.batch_size, |n| n as usize),
        )
    })();
    let outputs = match result {
        Ok(o) => o,
        Err(e) => return runtime_error(g, &e),
    };
    match &args.output {
        Some(path) => {
            for (o, t) in sel.graph.outputs.iter().zip(&outputs) {
                let target = if outputs.len() == 1 {
                    path.clone()
                } else {
                    path.with_extension(format!("{}.npy", o.name))
                };
                if let Err(e) = fm_runtime::data::npy::write_npy(&target, t) {
                    return runtime_error(g, &e);
                }
            }
            0
        }
        None => {
            for (o, t) in sel.graph.outputs.iter().zip(&outputs) {
                if outputs.len() > 1 {
                    let _ = writeln!(g.out, "{}:", o.name);
                }
                print_rows(g, t);
            }
            0
        }
    }
}

/// One line per sample, values separated by spaces.
fn print_rows(g: &mut Global, t: &Tensor) {
    let values = t.to_f32();
    let n = t.len();
    let per = values.len().checked_div(n).unwrap_or(0);
    let flat: Vec<f32> = values.iter().copied().collect();
    for row in flat.chunks(per.max(1)) {
        let cells: Vec<String> = row.iter().map(|v| format!("{v:.6}")).collect();
        let _ = writeln!(g.out, "{}", cells.join(" "));
    }
}
