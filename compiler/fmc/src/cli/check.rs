//! `fmc check FILE`: parse and check; prints only diagnostics (and, with `-v`, the time taken).

use super::{load_checked, Global};
use std::path::Path;
use std::time::Instant;

pub fn run(g: &mut Global, file: &Path) -> i32 {
    let start = Instant::now();
    match load_checked(g, file) {
        Ok((_, checked)) => {
            if g.verbose {
                let layers: usize = checked.models.iter().map(|m| m.nodes.len()).sum();
                let _ = writeln!(
                    g.err,
                    "checked `{}` in {:.1} ms: {} model(s), {layers} graph nodes, {} train section(s)",
                    file.display(),
                    start.elapsed().as_secs_f64() * 1e3,
                    checked.models.len(),
                    checked.trains.len()
                );
            }
            0
        }
        Err(code) => code,
    }
}
