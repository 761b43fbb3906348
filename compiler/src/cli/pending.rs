//! Subcommands whose back end is not written yet. THE LEAD PLUGS IN HERE: replace each function
//! body with a call into the training / evaluation / prediction / plotting code (and move it to
//! its own file, like `check.rs`). Until then each says so and exits 2.

use super::Global;
use std::ffi::OsString;
use std::path::Path;

fn not_yet(g: &mut Global, what: &str) -> i32 {
    let _ = writeln!(g.err, "fmc {what}: not implemented yet");
    2
}

pub fn train(g: &mut Global, _file: &Path, _args: &[OsString]) -> i32 {
    not_yet(g, "train")
}

pub fn eval(g: &mut Global, _file: &Path, _args: &[OsString]) -> i32 {
    not_yet(g, "eval")
}

pub fn predict(g: &mut Global, _file: &Path, _args: &[OsString]) -> i32 {
    not_yet(g, "predict")
}

pub fn plot(g: &mut Global, _run: &Path, _args: &[OsString]) -> i32 {
    not_yet(g, "plot")
}
