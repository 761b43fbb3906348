//! `fmc fmt FILE... [--check]`: canonical layout via the grammar's formatter. Files are rewritten
//! atomically; `--check` prints a unified diff instead and exits 1 when any file would change.

use super::Global;
use fm_compiler::diag::SourceFile;
use std::io::Write;
use std::path::{Path, PathBuf};

pub fn run(g: &mut Global, files: &[PathBuf], check: bool) -> i32 {
    let mut status = 0;
    for path in files {
        let bytes = match std::fs::read(path) {
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

/// Writes to a temporary file beside `path`, then renames it into place.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
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
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A unified diff (3 lines of context) of two texts, line by line.
pub fn unified_diff(name: &str, old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    // Longest common subsequence table (files are small).
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    // Edit script: (' ', '-', '+') with the line.
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    let mut out = format!("--- {name}\n+++ {name} (formatted)\n");
    let context = 3;
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, o)| o.0 != ' ')
        .map(|(k, _)| k)
        .collect();
    let mut k = 0;
    while k < changed.len() {
        let start = changed[k].saturating_sub(context);
        let mut end = changed[k];
        while k < changed.len() && changed[k] <= end + 2 * context {
            end = changed[k];
            k += 1;
        }
        let end = (end + context + 1).min(ops.len());
        // Line numbers at the hunk start.
        let old_start = ops[..start].iter().filter(|o| o.0 != '+').count() + 1;
        let new_start = ops[..start].iter().filter(|o| o.0 != '-').count() + 1;
        let old_len = ops[start..end].iter().filter(|o| o.0 != '+').count();
        let new_len = ops[start..end].iter().filter(|o| o.0 != '-').count();
        out.push_str(&format!(
            "@@ -{old_start},{old_len} +{new_start},{new_len} @@\n"
        ));
        for (c, line) in &ops[start..end] {
            out.push_str(&format!("{c}{line}\n"));
        }
    }
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
