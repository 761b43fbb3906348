//! `fmc check FILE`: parse and check; prints only diagnostics.

use super::{load_checked, Global};
use std::path::Path;

pub fn run(g: &mut Global, file: &Path) -> i32 {
    match load_checked(g, file) {
        Ok(_) => 0,
        Err(code) => code,
    }
}
