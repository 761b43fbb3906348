//! `fmc plot RUN_DIR_OR_JSONL [-o curves.svg]`: loss and metric curves per epoch.

use super::session::runtime_error;
use super::Global;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct PlotArgs {
    /// A run directory or its `metrics.jsonl`.
    pub run: PathBuf,
    /// The SVG to write (default: `curves.svg` in the run directory).
    #[arg(short = 'o', long, value_name = "curves.svg")]
    pub output: Option<PathBuf>,
}

pub fn run(g: &mut Global, args: &PlotArgs) -> i32 {
    let out = args.output.clone().unwrap_or_else(|| {
        let dir = if args.run.is_dir() {
            args.run.clone()
        } else {
            args.run
                .parent()
                .map(|p| p.to_path_buf())
                .unwrap_or_default()
        };
        dir.join("curves.svg")
    });
    match fm_runtime::train::plot::plot(&args.run, &out) {
        Ok(()) => {
            if !g.quiet {
                let _ = writeln!(g.err, "wrote {}", out.display());
            }
            0
        }
        Err(e) => runtime_error(g, &e),
    }
}
