//! The run directory's logs: `metrics.jsonl` (one object per epoch; with `--steps`, one per
//! step) and `metrics.csv` (one row per epoch), both rewritten atomically after every epoch;
//! `run.json`, the run's status; and finding the checkpoint and directory a `--resume` continues.
//!
//! Epoch records: `epoch` (1-based: epochs completed), `step` (optimizer steps taken), `loss`,
//! the metrics, `val_loss` and the validation metrics, `lr` (the rate of the epoch's last step),
//! `seconds`, `samples_per_second`. Step records: `epoch`, `step`, `loss` (the batch's loss at
//! full f32 precision), `lr`.

use crate::error::RuntimeError;
use crate::fsutil::{atomic_write, create_dir_all};
use serde_json::Value;

/// A record with its keys in display order (serde_json's `Map` would sort them).
pub type Row = Vec<(String, Value)>;

fn row_get<'a>(row: &'a Row, key: &str) -> Option<&'a Value> {
    row.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// One JSON object per row, keys in row order.
fn row_json(row: &Row) -> String {
    let fields: Vec<String> = row
        .iter()
        .map(|(k, v)| format!("{}:{}", Value::String(k.clone()), v))
        .collect();
    format!("{{{}}}", fields.join(","))
}
use std::path::{Path, PathBuf};

pub const JSONL: &str = "metrics.jsonl";
pub const CSV: &str = "metrics.csv";
pub const CHECKPOINTS: &str = "checkpoints";
pub const CURVES: &str = "curves.svg";
pub const WEIGHTS: &str = "weights.safetensors";

/// One epoch's results.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochRecord {
    pub epoch: u64,
    pub step: u64,
    /// `loss`, metrics, then `val_*`, in display order.
    pub logs: Vec<(String, f64)>,
    pub lr: f32,
    pub seconds: f64,
    pub samples_per_second: f64,
}

impl EpochRecord {
    pub fn get(&self, key: &str) -> Option<f64> {
        self.logs.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    fn to_row(&self) -> Row {
        let mut m: Row = vec![
            ("epoch".into(), self.epoch.into()),
            ("step".into(), self.step.into()),
        ];
        for (k, v) in &self.logs {
            m.push((k.clone(), number(*v)));
        }
        m.push(("lr".into(), number_f32(self.lr)));
        m.push(("seconds".into(), number(self.seconds)));
        m.push(("samples_per_second".into(), number(self.samples_per_second)));
        m
    }
}

/// JSON has no NaN: non-finite values are written as null.
fn number(v: f64) -> Value {
    serde_json::Number::from_f64(v)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// An f32 written with the shortest decimal that reads back as the same f32.
fn number_f32(v: f32) -> Value {
    if !v.is_finite() {
        return Value::Null;
    }
    // `{}` on f32 prints the shortest round-tripping decimal; parse it as f64 for JSON.
    let text = format!("{v}");
    text.parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// The log files of a run directory.
pub struct RunLog {
    dir: PathBuf,
    per_step: bool,
    jsonl: Vec<Row>,
    csv_rows: Vec<Row>,
}

impl RunLog {
    /// Opens `dir` (creating it and `checkpoints/`). With `resume_step`, the existing records are
    /// kept up to the checkpoint's step, less the record of an epoch that stopped part-way
    /// (`--steps`), which the resumed run completes: its logs then read as an uninterrupted run's.
    pub fn open(
        dir: &Path,
        per_step: bool,
        resume_step: Option<u64>,
        steps_per_epoch: u64,
    ) -> Result<Self, RuntimeError> {
        create_dir_all(dir)?;
        create_dir_all(&dir.join(CHECKPOINTS))?;
        let mut log = RunLog {
            dir: dir.to_path_buf(),
            per_step,
            jsonl: Vec::new(),
            csv_rows: Vec::new(),
        };
        if let Some(step) = resume_step {
            let keep = |m: &Row| {
                let Some(s) = row_get(m, "step").and_then(Value::as_u64) else {
                    return false;
                };
                // Epoch records carry `seconds`; step records (`--steps`) do not.
                let whole_epoch = row_get(m, "seconds").is_none()
                    || row_get(m, "epoch").and_then(Value::as_u64)
                        == Some(s / steps_per_epoch.max(1))
                        && s.is_multiple_of(steps_per_epoch.max(1));
                s <= step && whole_epoch
            };
            log.jsonl = read_jsonl(&dir.join(JSONL))
                .into_iter()
                .filter(keep)
                .collect();
            log.csv_rows = read_csv_rows(&dir.join(CSV))
                .into_iter()
                .filter(keep)
                .collect();
            // A run that began logging steps (`--steps`) goes on logging steps.
            if log.jsonl.iter().any(|m| row_get(m, "seconds").is_none()) {
                log.per_step = true;
            }
        }
        Ok(log)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records one step (`--steps` mode only).
    pub fn step(&mut self, epoch: u64, step: u64, loss: f32, lr: f32) {
        if self.per_step {
            self.jsonl.push(vec![
                ("epoch".into(), epoch.into()),
                ("step".into(), step.into()),
                ("loss".into(), number_f32(loss)),
                ("lr".into(), number_f32(lr)),
            ]);
        }
    }

    /// Records an epoch and rewrites both files.
    pub fn epoch(&mut self, record: &EpochRecord) -> Result<(), RuntimeError> {
        let m = record.to_row();
        if !self.per_step {
            self.jsonl.push(m.clone());
        }
        self.csv_rows.push(m);
        self.flush()
    }

    /// Rewrites `metrics.jsonl` and `metrics.csv`.
    pub fn flush(&self) -> Result<(), RuntimeError> {
        let mut jsonl = String::new();
        for m in &self.jsonl {
            jsonl.push_str(&row_json(m));
            jsonl.push('\n');
        }
        atomic_write(&self.dir.join(JSONL), jsonl.as_bytes())?;
        atomic_write(&self.dir.join(CSV), csv_text(&self.csv_rows).as_bytes())
    }
}

/// Columns in first-seen order across rows; missing values empty.
fn csv_text(rows: &[Row]) -> String {
    let mut columns: Vec<String> = Vec::new();
    for row in rows {
        for (key, _) in row {
            if !columns.contains(key) {
                columns.push(key.clone());
            }
        }
    }
    let mut out = columns.join(",");
    out.push('\n');
    for row in rows {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| match row_get(row, c) {
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::String(s)) => s.clone(),
                _ => String::new(),
            })
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// The records of a `metrics.jsonl` file (unreadable lines are skipped).
pub fn read_jsonl(path: &Path) -> Vec<Row> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines().filter_map(parse_row).collect()
}

fn read_csv_rows(path: &Path) -> Vec<Row> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let columns: Vec<&str> = header.split(',').collect();
    lines
        .map(|line| {
            columns
                .iter()
                .zip(line.split(','))
                .filter_map(|(c, cell)| {
                    let value = if let Ok(n) = cell.parse::<u64>() {
                        Value::from(n)
                    } else {
                        number(cell.parse::<f64>().ok()?)
                    };
                    Some((c.to_string(), value))
                })
                .collect()
        })
        .collect()
}

/// `BASE/MODEL/N` for the smallest N (from 1) that does not exist yet.
pub fn next_run_dir(base: &Path, model: &str) -> PathBuf {
    let mut n = 1u64;
    loop {
        let dir = base.join(model).join(n.to_string());
        if !dir.exists() {
            return dir;
        }
        n += 1;
    }
}

/// Parses one JSON object keeping its key order (scanning the text for the keys' positions).
fn parse_row(line: &str) -> Option<Row> {
    let Value::Object(map) = serde_json::from_str::<Value>(line).ok()? else {
        return None;
    };
    let mut row: Vec<(usize, String, Value)> = map
        .into_iter()
        .map(|(k, v)| {
            let quoted = Value::String(k.clone()).to_string();
            (line.find(&format!("{quoted}:")).unwrap_or(usize::MAX), k, v)
        })
        .collect();
    row.sort_by_key(|(at, _, _)| *at);
    Some(row.into_iter().map(|(_, k, v)| (k, v)).collect())
}

/// `run.json`: what state a run directory is in.
pub const RUN_INFO: &str = "run.json";

/// The contents of `run.json`: its `status`, the `error` of a failed run, and `saved`, where
/// the final weights went when that is outside the run directory (`--save`), so that `--resume`
/// of that file continues this run.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunInfo {
    pub status: RunStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What state a run is in (`run.json`'s `status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Training (also what a killed run leaves).
    Running,
    Finished,
    Failed,
}

impl RunInfo {
    pub fn read(dir: &Path) -> Option<RunInfo> {
        let text = std::fs::read_to_string(dir.join(RUN_INFO)).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn write(&self, dir: &Path) -> Result<(), RuntimeError> {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        atomic_write(&dir.join(RUN_INFO), text.as_bytes())
    }
}

/// The files of a run directory that `--resume DIR` may continue from, in order of preference
/// when several hold the same step.
fn resume_candidates(dir: &Path) -> Vec<PathBuf> {
    let mut files = vec![
        dir.join(CHECKPOINTS).join("last.safetensors"),
        dir.join(CHECKPOINTS).join("best.safetensors"),
        dir.join(WEIGHTS),
    ];
    if let Some(saved) = RunInfo::read(dir).and_then(|i| i.saved) {
        files.push(saved);
    }
    files
}

/// The checkpoint of a run directory that is furthest into the run (the most optimizer
/// steps); files that do not load as checkpoints are passed over.
pub fn latest_checkpoint(dir: &Path) -> Result<PathBuf, RuntimeError> {
    let mut best: Option<(u64, PathBuf)> = None;
    for file in resume_candidates(dir) {
        if !file.is_file() {
            continue;
        }
        let Ok(w) = crate::weights::load_weights(&file) else {
            continue;
        };
        if w.meta.train_state.is_none() {
            continue;
        }
        if best.as_ref().is_none_or(|(step, _)| w.meta.step > *step) {
            best = Some((w.meta.step, file));
        }
    }
    best.map(|(_, f)| f).ok_or_else(|| {
        RuntimeError::at(
            crate::error::ErrorKind::MissingFile,
            dir,
            "no checkpoint to resume from (expected checkpoints/last.safetensors or weights.safetensors)",
        )
    })
}

/// The run directory a checkpoint file belongs to: `DIR` for `DIR/checkpoints/*.safetensors`
/// and for a file beside a `run.json`; else the run under `runs_base` whose `run.json` names
/// the file as its `--save`d weights.
pub fn run_dir_of(checkpoint: &Path, runs_base: &Path) -> Option<PathBuf> {
    let parent = checkpoint.parent().filter(|p| !p.as_os_str().is_empty());
    let parent = parent.unwrap_or(Path::new("."));
    if parent.file_name().is_some_and(|n| n == CHECKPOINTS) {
        if let Some(dir) = parent.parent() {
            if dir.join(RUN_INFO).is_file() || dir.join(JSONL).is_file() {
                return Some(dir.to_path_buf());
            }
        }
    }
    if parent.join(RUN_INFO).is_file() {
        return Some(parent.to_path_buf());
    }
    let wanted = checkpoint.canonicalize().ok()?;
    let mut runs: Vec<PathBuf> = std::fs::read_dir(runs_base)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join(RUN_INFO).is_file())
        .collect();
    runs.sort();
    runs.into_iter().find(|dir| {
        RunInfo::read(dir)
            .and_then(|i| i.saved)
            .and_then(|s| s.canonicalize().ok())
            .is_some_and(|s| s == wanted)
    })
}

/// After a run failed: a run directory the run created and that holds no checkpoint is
/// removed; otherwise its `run.json` says `failed`, with the error. Either way nothing looks
/// finished: `weights.safetensors` and `curves.svg` are written only at the end of a run.
pub fn mark_failed(dir: &Path, fresh: bool, error: &RuntimeError) {
    let has_checkpoint = latest_checkpoint(dir).is_ok();
    if fresh && !has_checkpoint {
        let _ = std::fs::remove_dir_all(dir);
        return;
    }
    let _ = RunInfo {
        status: RunStatus::Failed,
        saved: RunInfo::read(dir).and_then(|i| i.saved),
        error: Some(error.to_string()),
    }
    .write(dir);
}
