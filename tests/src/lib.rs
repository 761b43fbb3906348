//! Shared helpers for the workspace-level tests: running `fmc` in-process and golden files with a
//! bless mode (`BLESS=1 cargo test -p fm-tests` rewrites the expected files).

pub mod differential;
pub mod random_model;
pub mod reference_backends;

use std::path::{Path, PathBuf};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The output of one `fmc` run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `fmc ARGS...` in-process, as if stdout and stderr were not terminals and NO_COLOR unset.
pub fn fmc(args: &[&str]) -> Run {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let argv = std::iter::once("fmc")
        .chain(args.iter().copied())
        .map(Into::into);
    let code = fmc::cli::run(argv, &mut out, &mut err, fmc::cli::Terminal::default());
    Run {
        code,
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
    }
}

/// True when expected files should be rewritten.
pub fn blessing() -> bool {
    std::env::var_os("BLESS").is_some_and(|v| v != "0")
}

/// Golden files take one bless variable: `BLESS=1` rewrites insta snapshots in place (insta's
/// own `INSTA_UPDATE=always`), as it rewrites every other golden file. Called by
/// [`assert_golden!`] before insta reads its settings.
pub fn bless_insta() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if blessing() && std::env::var_os("INSTA_UPDATE").is_none() {
            std::env::set_var("INSTA_UPDATE", "always");
        }
    });
}

/// `insta::assert_snapshot!` under the `BLESS=1` convention (see [`bless_insta`]); the test
/// crate needs insta as a dependency.
#[macro_export]
macro_rules! assert_golden {
    ($($arg:tt)*) => {{
        $crate::bless_insta();
        insta::assert_snapshot!($($arg)*);
    }};
}

/// Compares `actual` with the golden file (or writes it when blessing). Returns a description of
/// the mismatch, if any.
pub fn golden(path: &Path, actual: &str) -> Option<String> {
    if blessing() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).ok();
        }
        std::fs::write(path, actual).ok();
        return None;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    if expected == actual {
        None
    } else {
        Some(format!(
            "{} differs (run with BLESS=1 to accept):\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        ))
    }
}

/// Every file in `dir` with extension `ext`, sorted.
pub fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == ext))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
