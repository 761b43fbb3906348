//! `fmc fmt FILE... [--check]`: canonical layout via the grammar's formatter. Files are rewritten
//! atomically; `--check` prints a unified diff instead and exits 1 when any file would change.

use super::Global;
use fm_compiler::diag::SourceFile;
use std::io::Write;
use std::path::{Path, PathBuf};

pub fn run(g: &mut Global, files: &[PathBuf], check: bool) -> i32 {
    let mut status = 0;
    for path in files {
        let bytes = match fm_compiler::check::limits::read_source(path) {
            Ok(b) => b,
            Err(e) => {
                g.fail(&format!("cannot read `{}`: {e}", path.display()));
                status = 1;
                continue;
            }
        };
        let source = String::from_utf8_lossy(&bytes).into_owned();
        let (ast, diags) = fm_grammar::parse_bytes(&bytes);
        if !diags.is_empty() {
            let name = path.display().to_string();
            g.print_diagnostics(
                &diags,
                &SourceFile {
                    name: &name,
                    text: &source,
                },
            );
            status = 1;
            continue;
        }
        let formatted = fm_grammar::fmt::format(&ast, &source);
        if formatted == source {
            continue;
        }
        if check {
            let name = path.display().to_string();
            let _ = g
                .out
                .write_all(unified_diff(&name, &source, &formatted).as_bytes());
            status = 1;
        } else if let Err(e) = write_atomically(path, formatted.as_bytes()) {
            g.fail(&format!("cannot write `{}`: {e}", path.display()));
            status = 1;
        }
    }
    status
}

/// Writes to a temporary file beside `path`, then renames it into place. A symbolic link is
/// followed (the file it names is rewritten, the link stays), and an existing file keeps its
/// permissions: renaming over the link replaced it with a new file of default permissions and
/// left the file it named unformatted.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let resolved = std::fs::canonicalize(path).ok();
    let path = resolved.as_deref().unwrap_or(path);
    let permissions = std::fs::metadata(path).ok().map(|m| m.permissions());
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.fmc-tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        if let Some(p) = permissions {
            f.set_permissions(p)?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A unified diff (3 lines of context) of two texts, line by line. Myers' algorithm in linear
/// memory; past a time bound (a file where almost every line changes) the diff gets coarser but
/// stays correct, so `fmt --check` is bounded on any input.
pub fn unified_diff(name: &str, old: &str, new: &str) -> String {
    let diff = similar::TextDiff::configure()
        .algorithm(similar::Algorithm::Myers)
        .deadline(std::time::Instant::now() + std::time::Duration::from_secs(2))
        .diff_lines(old, new);
    let mut out = String::new();
    let formatted = format!("{name} (formatted)");
    let mut unified = diff.unified_diff();
    unified.context_radius(3).header(name, &formatted);
    let _ = std::fmt::Write::write_fmt(&mut out, format_args!("{unified}"));
    out
}

#[cfg(test)]
mod tests {
    use super::unified_diff;

    #[test]
    fn diff_shows_changed_lines_with_context() {
        let d = unified_diff("a.fm", "a\nb\nc\n", "a\nB\nc\n");
        assert_eq!(
            d,
            "--- a.fm\n+++ a.fm (formatted)\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"
        );
    }
}
