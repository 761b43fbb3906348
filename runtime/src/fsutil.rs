//! Writing files so that an interrupted run never leaves a truncated one.
//!
//! A regular file is written to a temporary name in the same directory, flushed to disk, and
//! renamed over the destination (rename is atomic within one file system). A destination that
//! exists and is not a regular file (a device such as `/dev/null` or `/dev/full`, a FIFO) is
//! written directly: renaming over it would replace the device node.
//!
//! A process killed while writing leaves its temporary file (`.NAME.PID.N.tmp`) behind; the
//! first write of a later process into that directory removes those of processes that no
//! longer run.

use crate::error::RuntimeError;
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Writes `bytes` to `path` atomically.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), RuntimeError> {
    atomic_write_with(path, |w| w.write_all(bytes))
}

/// Writes to `path` atomically through a buffered writer filled by `fill`.
pub fn atomic_write_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), RuntimeError> {
    if let Ok(meta) = fs::metadata(path) {
        if meta.is_dir() {
            return Err(RuntimeError::at(
                crate::error::ErrorKind::Write,
                path,
                "cannot write: it is a directory",
            ));
        }
        if !meta.is_file() {
            return write_in_place(path, fill);
        }
    }
    let tmp = temp_path(path);
    remove_stale_temps(tmp.parent().unwrap_or(Path::new(".")));
    let result = (|| -> std::io::Result<()> {
        let file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        let mut writer = BufWriter::new(file);
        fill(&mut writer)?;
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    match result {
        Ok(()) => {
            sync_parent_dir(path);
            Ok(())
        }
        Err(err) => {
            let _ = fs::remove_file(&tmp);
            Err(RuntimeError::write_io(path, &err))
        }
    }
}

/// Checks, before any work is done, that `path` can be written later: not a directory, and its
/// directory exists and takes new files (probed with an empty temporary file, removed again).
pub fn check_writable(path: &Path) -> Result<(), RuntimeError> {
    if let Ok(meta) = fs::metadata(path) {
        if meta.is_dir() {
            return Err(RuntimeError::at(
                crate::error::ErrorKind::Write,
                path,
                "cannot write: it is a directory",
            ));
        }
        if !meta.is_file() {
            // A device or FIFO is written in place.
            return OpenOptions::new()
                .write(true)
                .open(path)
                .map(drop)
                .map_err(|err| RuntimeError::write_io(path, &err));
        }
    }
    let tmp = temp_path(path);
    match OpenOptions::new().write(true).create_new(true).open(&tmp) {
        Ok(_) => {
            let _ = fs::remove_file(&tmp);
            Ok(())
        }
        Err(err) => Err(RuntimeError::write_io(path, &err)),
    }
}

/// Creates `dir` and its parents, with an error naming it.
pub fn create_dir_all(dir: &Path) -> Result<(), RuntimeError> {
    fs::create_dir_all(dir).map_err(|err| RuntimeError::write_io(dir, &err))
}

fn write_in_place(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), RuntimeError> {
    let result = (|| -> std::io::Result<()> {
        let file = OpenOptions::new().write(true).open(path)?;
        let mut writer = BufWriter::new(file);
        fill(&mut writer)?;
        writer.flush()
    })();
    result.map_err(|err| RuntimeError::write_io(path, &err))
}

/// `DIR/.NAME.PID.N.tmp`: hidden, unique per process and call, matched by `*.tmp` in .gitignore.
fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp_name = format!(".{name}.{}.{n}.tmp", std::process::id());
    match path.parent() {
        Some(parent) => parent.join(tmp_name),
        None => PathBuf::from(tmp_name),
    }
}

/// The process id in a temporary file's name `.NAME.PID.N.tmp`, if it is one.
fn temp_owner(file_name: &str) -> Option<u32> {
    let inner = file_name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let mut parts = inner.rsplitn(3, '.');
    let n = parts.next()?;
    let pid = parts.next()?;
    let name = parts.next()?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(n) && !name.is_empty()).then_some(())?;
    pid.parse().ok().filter(|_| digits(pid))
}

/// Whether process `pid` may still be running (and writing its temporary file). Where that
/// cannot be known (no `/proc`), it is assumed to run, so nothing is removed.
fn may_be_running(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let proc_root = Path::new("/proc");
    if !proc_root.join("self").exists() {
        return true;
    }
    proc_root.join(pid.to_string()).exists()
}

/// Removes the temporary files that killed processes left in `dir`; once per directory per
/// process, as a run rewrites the same files every epoch.
fn remove_stale_temps(dir: &Path) {
    static CLEANED: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
    {
        let mut cleaned = CLEANED.lock().unwrap_or_else(|e| e.into_inner());
        if !cleaned
            .get_or_insert_with(HashSet::new)
            .insert(dir.to_path_buf())
        {
            return;
        }
    }
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temp_owner) else {
            continue;
        };
        if !may_be_running(pid) && entry.file_type().is_ok_and(|t| t.is_file()) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Makes the rename durable; failures are ignored (some file systems cannot sync directories).
fn sync_parent_dir(path: &Path) {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(dir) = File::open(parent) {
        let _ = dir.sync_all();
    }
}

/// Reads a whole file as `std::fs::read` does, but never more than `limit` bytes: a path naming
/// a device that never ends (`/dev/zero`) or a file larger than the limit is an
/// `ErrorKind::FileTooLarge` error after at most `limit + 1` bytes, not exhausted memory.
/// `what` says where the limit comes from, for the message.
pub fn read_bounded(path: &Path, limit: u64, what: &str) -> std::io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let too_large = || {
        std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("is larger than {} ({what})", human_bytes(limit)),
        )
    };
    let meta = file.metadata()?;
    if meta.is_file() && meta.len() > limit {
        return Err(too_large());
    }
    let mut out = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(out)
}

/// Reads weights or a model to import: a regular file whole (its size is known; the model's
/// checks judge it), anything else (a device, a pipe) up to the memory budget
/// (`--memory-limit`, else this machine's memory), since it may never end.
pub fn read_within_memory(path: &Path) -> std::io::Result<Vec<u8>> {
    if fs::metadata(path)?.is_file() {
        return fs::read(path);
    }
    let (limit, from_flag) = crate::data::read::decompressed_limit();
    let what = if from_flag {
        "the `--memory-limit`"
    } else {
        "this machine's memory; set a budget with `--memory-limit`"
    };
    read_bounded(path, limit, what)
}

/// `64 MiB`, `2.50 GB`: a byte count as a person reads it in a message.
fn human_bytes(n: u64) -> String {
    if n >= 1 << 30 {
        format!("{:.2} GB", n as f64 / 1e9)
    } else if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::temp_owner;

    #[test]
    fn temp_names_are_recognised() {
        assert_eq!(temp_owner(".weights.safetensors.4242.7.tmp"), Some(4242));
        assert_eq!(temp_owner(".metrics.jsonl.1.0.tmp"), Some(1));
        assert_eq!(temp_owner("weights.safetensors.4242.7.tmp"), None);
        assert_eq!(temp_owner(".4242.7.tmp"), None);
        assert_eq!(temp_owner(".notes.tmp"), None);
        assert_eq!(temp_owner(".a.b.7.tmp"), None);
        assert_eq!(temp_owner(".a.12x.7.tmp"), None);
    }
}
