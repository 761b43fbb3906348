//! `fmc train FILE [options]`: compile, train, report, save.

use super::session::{self, runtime_error, RunOptions};
use super::Global;
use crate::distributed::{self, DataParallel};
use fm_runtime::data::{convert_samples, load_data, prepare, read_xy, Dataset, FittedTransforms};
use fm_runtime::distributed::{launcher_world_size, Collective, Single};
use fm_runtime::metrics::metric_defs;
use fm_runtime::train::record;
use fm_runtime::train::{self, Backend, FitOptions, ProgressMode};
use fm_runtime::weights::WeightsMeta;
use fm_runtime::RuntimeError;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// The `.fm` file.
    pub file: PathBuf,
    /// The model to train when the file has several.
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// Training inputs instead of the file's `data` (IDX, .npy, .npz[:key], .csv; a model with
    /// several inputs takes an .npz whose keys are the input names).
    #[arg(long, value_name = "PATH")]
    pub x: Option<String>,
    /// Training targets (`file.csv:COLUMN` takes a CSV column).
    #[arg(long, value_name = "PATH")]
    pub y: Option<String>,
    /// Held-out inputs, evaluated after training.
    #[arg(long, value_name = "PATH")]
    pub test_x: Option<String>,
    /// Held-out targets.
    #[arg(long, value_name = "PATH")]
    pub test_y: Option<String>,
    /// Override a `train` key, e.g. `--set epochs=3 --set optimizer="SGD(lr: 0.1)"`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Stop after step N of the run, counted from its start (with `--resume`, the steps before
    /// the checkpoint count); `epochs` still sets the schedule's length.
    #[arg(long, value_name = "N")]
    pub steps: Option<u64>,
    /// Start from these weights instead of initialising.
    #[arg(long, value_name = "W.safetensors")]
    pub init: Option<PathBuf>,
    /// Where the final weights and optimizer state go (default RUN_DIR/weights.safetensors).
    #[arg(long, value_name = "W.safetensors")]
    pub save: Option<PathBuf>,
    /// Continue a run exactly from a checkpoint, or from a run directory's latest one; the run's
    /// directory (and its metrics) carries on unless `--run-dir` says otherwise.
    #[arg(long, value_name = "CKPT.safetensors|RUN_DIR")]
    pub resume: Option<PathBuf>,
    /// Where the run's files go (default runs/MODEL/N/).
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunOptions,
    /// Data-parallel training over MPI (`mpirun -np N fmc train ...`; chosen by itself when
    /// an MPI launcher started fmc with several ranks); needs fmc built with `--features mpi`.
    #[arg(long, value_enum, value_name = "HOW")]
    pub distributed: Option<Distributed>,
    /// Data-parallel: gradients are all-reduced in buckets of about this many MB, each sent as
    /// soon as the backward pass has computed it (PyTorch DDP's `bucket_cap_mb`).
    #[arg(long, value_name = "MB", default_value_t = 0.25, value_parser = bucket_mb)]
    pub bucket_mb: f64,
    /// Data-parallel: send the gradient buckets only after the whole backward pass (the same
    /// sums, so the same results; for measuring what the overlap gains).
    #[arg(long)]
    pub no_overlap: bool,
}

fn bucket_mb(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=1024.0).contains(&v) => Ok(v),
        _ => Err(format!("`{s}` is not a size in MB from 0 to 1024")),
    }
}

/// How `fmc train` spreads a run over processes.
#[derive(Clone, Copy, Debug, clap::ValueEnum, PartialEq, Eq)]
pub enum Distributed {
    /// One process.
    None,
    /// Every MPI rank trains on its shard of each global batch.
    Mpi,
}

/// The process group of a run: MPI's world when distributed, else one process.
fn group(g: &mut Global, args: &TrainArgs) -> Result<Box<dyn Collective>, i32> {
    let launched = launcher_world_size().filter(|&n| n > 1);
    let want = match args.distributed {
        Some(d) => d,
        None if launched.is_some() => Distributed::Mpi,
        None => Distributed::None,
    };
    match want {
        Distributed::None => Ok(Box::new(Single)),
        Distributed::Mpi => mpi_world(g, launched),
    }
}

#[cfg(feature = "mpi")]
fn mpi_world(g: &mut Global, _launched: Option<usize>) -> Result<Box<dyn Collective>, i32> {
    match crate::distributed::mpi::MpiWorld::init() {
        Some(w) => Ok(Box::new(w)),
        None => {
            g.fail("MPI was initialized before in this process");
            Err(1)
        }
    }
}

#[cfg(not(feature = "mpi"))]
fn mpi_world(g: &mut Global, launched: Option<usize>) -> Result<Box<dyn Collective>, i32> {
    let why = match launched {
        Some(n) => format!("fmc runs under an MPI launcher with {n} ranks, but this fmc was built without MPI support (each rank would train alone)"),
        None => "`--distributed mpi` needs an fmc built with MPI support".to_string(),
    };
    g.fail(&format!(
        "{why}: build it with `cargo build --release -p fmc --features mpi` (needs libopenmpi-dev and libclang-dev)"
    ));
    Err(1)
}

pub fn run(g: &mut Global, args: &TrainArgs) -> i32 {
    let group = match group(g, args) {
        Ok(group) => group,
        Err(code) => return code,
    };
    // Only rank 0 prints progress and results; errors print on every rank.
    let (quiet, verbose) = (g.quiet, g.verbose);
    if group.rank() > 0 {
        (g.quiet, g.verbose) = (true, false);
    }
    let result = train(g, args, &*group);
    (g.quiet, g.verbose) = (quiet, verbose);
    match result {
        Ok(()) => 0,
        Err(code) => {
            // The other ranks wait in their next collective: end them too.
            group.abort(code);
            code
        }
    }
}

/// Training data: the file's `data` section or `--x/--y`, with the section's transforms.
pub struct TrainData {
    pub train: Dataset,
    pub test: Option<Dataset>,
    pub transforms: FittedTransforms,
}

fn load(g: &mut Global, args: &TrainArgs, sel: &session::Selected) -> Result<TrainData, i32> {
    let md = session::model_data(&sel.graph, &sel.spec);
    let opts = args.run.load_options();
    let section = sel.spec.data.as_ref();
    let result: Result<TrainData, RuntimeError> = (|| {
        let (inputs, targets) = (md.input_names(), md.target_names());
        let mut data = match &args.x {
            Some(x) => {
                let raw = read_xy(x, args.y.as_deref(), &inputs, &targets)?;
                let converted = convert_samples(&raw, &md, opts)?;
                let (tx, ty) = section.map_or((&[][..], &[][..]), |d| (&d.x[..], &d.y[..]));
                let transforms = FittedTransforms::fit(tx, ty, &converted)?;
                let train = prepare(&raw, &md, &transforms, opts)?;
                TrainData {
                    train,
                    test: None,
                    transforms,
                }
            }
            _ => match section {
                Some(d) => {
                    let l = load_data(d, &md, opts)?;
                    TrainData {
                        train: l.train,
                        test: l.test,
                        transforms: l.transforms,
                    }
                }
                None => {
                    return Err(RuntimeError::without_path(
                        fm_runtime::ErrorKind::DataSetup,
                        "no training data: the `train` section names no `data`; give `--x PATH` (and `--y PATH`)",
                    ))
                }
            },
        };
        if let Some(x) = &args.test_x {
            if args.test_y.is_none() && !targets.is_empty() {
                return Err(RuntimeError::without_path(
                    fm_runtime::ErrorKind::DataSetup,
                    format!(
                        "the model reads targets ({}): give the test targets with `--test-y PATH`",
                        targets.join(", ")
                    ),
                ));
            }
            let raw = read_xy(x, args.test_y.as_deref(), &inputs, &targets)?;
            data.test = Some(prepare(&raw, &md, &data.transforms, opts)?);
        }
        Ok(data)
    })();
    result.map_err(|e| runtime_error(g, &in_file(e, &args.file)))
}

/// A data set-up error without a file of its own is about what the `.fm` file asks for (its
/// data section, its splits): it names that file.
fn in_file(mut e: RuntimeError, file: &Path) -> RuntimeError {
    if e.path.is_none() && e.kind == fm_runtime::ErrorKind::DataSetup {
        e.path = Some(file.display().to_string());
    }
    e
}

fn train(g: &mut Global, args: &TrainArgs, group: &dyn Collective) -> Result<(), i32> {
    if args.init.is_some() && args.resume.is_some() {
        let _ = writeln!(g.err, "error: `--init` and `--resume` cannot be used together (`--resume` restores the weights)");
        return Err(2);
    }
    if (args.y.is_some() && args.x.is_none()) || (args.test_y.is_some() && args.test_x.is_none()) {
        let _ = writeln!(
            g.err,
            "error: `--y` needs `--x` and `--test-y` needs `--test-x`"
        );
        return Err(2);
    }
    args.run.set_threads();
    let sel = session::select(g, &args.file, args.model.as_deref(), &args.set)?;
    if !sel.has_train {
        g.fail(&format!(
            "`{}` has no `train` section for model `{}`: add one with at least a `loss` and an `optimizer`",
            args.file.display(),
            sel.graph.name
        ));
        return Err(1);
    }
    // Everything that can be known before training is checked before training.
    if let Some(save) = &args.save {
        fm_runtime::fsutil::check_writable(save).map_err(|e| runtime_error(g, &e))?;
    }
    let data = load(g, args, &sel)?;
    let mut session = session::backend(g, &sel, args.run.backend)?;
    if let Some(init) = &args.init {
        session::load_weights(&mut session, init, &sel.graph.name)
            .map_err(|e| runtime_error(g, &e))?;
    }
    let runs = Path::new("runs");
    // `--resume DIR` continues from the directory's latest checkpoint, in that directory; a
    // checkpoint file continues in the run directory it belongs to, when there is one.
    let (resume, resumed_dir) = match &args.resume {
        None => (None, None),
        Some(p) if p.is_dir() => {
            let latest = record::latest_checkpoint(p).map_err(|e| runtime_error(g, &e))?;
            (Some(latest), Some(p.clone()))
        }
        Some(p) => (
            Some(p.clone()),
            record::run_dir_of(p, &runs.join(&sel.graph.name)),
        ),
    };
    if let Some(checkpoint) = &resume {
        session::check_checkpoint(&session, checkpoint, &sel.graph.name)
            .map_err(|e| runtime_error(g, &e))?;
    }
    // One process trains the session itself; several ranks train it data-parallel, and only
    // rank 0 writes the run directory, checkpoints and weights.
    let root = group.rank() == 0;
    let mut parallel = None;
    let mut single = None;
    if group.size() > 1 {
        let options = distributed::Options {
            bucket_bytes: (args.bucket_mb * 1e6) as usize,
            overlap: !args.no_overlap,
        };
        match DataParallel::new(session, group, options) {
            Ok(p) => parallel = Some(p),
            Err(e) => {
                g.fail(&e);
                return Err(1);
            }
        }
    } else {
        single = Some(session);
    }
    let backend: &mut dyn Backend = match (&mut parallel, &mut single) {
        (Some(p), _) => p,
        (_, Some(s)) => s,
        _ => unreachable!("one backend"),
    };
    let run_dir = args
        .run_dir
        .clone()
        .or(resumed_dir)
        .unwrap_or_else(|| record::next_run_dir(runs, &sel.graph.name));
    let mut meta = WeightsMeta::new(&sel.graph.name, sel.source.as_bytes());
    meta.transforms = Some(data.transforms.to_json());
    let options = FitOptions {
        run_dir: root.then(|| run_dir.clone()),
        steps: args.steps,
        progress: if g.quiet {
            ProgressMode::Quiet
        } else if g.term.stderr_is_tty {
            ProgressMode::Bar
        } else {
            ProgressMode::Lines
        },
        resume,
        save: args.save.clone().filter(|_| root),
        meta,
        run_files: run_files(&run_dir, &sel, &args.file),
    };
    let fitted = train::fit_with_log(
        backend,
        &sel.spec,
        &data.train,
        data.test.as_ref(),
        &options,
        &mut *g.err,
    );
    let history = match fitted {
        Ok(h) => h,
        Err(e) => {
            let e = in_file(e, &args.file);
            let code = runtime_error(g, &e);
            // A run that failed after it started keeps its checkpoints (`run.json`: failed).
            let failed = record::RunInfo::read(&run_dir)
                .is_some_and(|i| i.status == record::RunStatus::Failed);
            if !g.quiet && root && failed && record::latest_checkpoint(&run_dir).is_ok() {
                let _ = writeln!(
                    g.err,
                    "note: the run failed; {} keeps its last checkpoint: `--resume {}` continues the run",
                    run_dir.display(),
                    run_dir.display()
                );
            }
            return Err(code);
        }
    };
    // Every rank evaluates its shard of the test set (a collective); rank 0 prints.
    if let Some(test) = data.test.as_ref() {
        let defs = metric_defs(&sel.spec);
        let logs = train::evaluate(backend, test, sel.spec.batch_size, &defs)
            .map_err(|e| runtime_error(g, &e))?;
        if !root {
            return Ok(());
        }
        let line: Vec<String> = logs
            .iter()
            .map(|(k, v)| format!("test_{k}: {}", train::progress::format_value(*v)))
            .collect();
        let _ = writeln!(g.out, "{}", line.join(" - "));
    }
    if let (Some(p), true) = (&parallel, root && g.verbose) {
        comm_report(g, p, !args.no_overlap);
    }
    if !g.quiet {
        if let Some(saved) = &history.saved {
            let _ = writeln!(g.err, "saved weights to {}", saved.display());
        }
        let _ = writeln!(g.err, "run directory: {}", run_dir.display());
    }
    Ok(())
}

/// `-v` on rank 0 of a data-parallel run: the gradient buckets and where the steps' time went.
fn comm_report(g: &mut Global, p: &DataParallel, overlap: bool) {
    let s = p.stats();
    if s.steps == 0 {
        return;
    }
    let kb: Vec<String> = p
        .bucket_sizes()
        .iter()
        .map(|&n| format!("{:.1}", n as f64 * 4.0 / 1e3))
        .collect();
    let per_step = |d: std::time::Duration| d.as_secs_f64() * 1e3 / s.steps as f64;
    let _ = writeln!(
        g.err,
        "all-reduce: {} bucket(s) of {} KB, {}; per step (rank 0, mean of {}): {:.3} ms, of which \
         {:.3} ms sending and testing during the backward pass, {:.3} ms waiting after it, and \
         {:.3} ms of backward pass after the first bucket started",
        kb.len(),
        kb.join(" + "),
        if overlap {
            "each sent as the backward pass computes it"
        } else {
            "sent after the backward pass (--no-overlap)"
        },
        s.steps,
        per_step(s.step),
        per_step(s.start),
        per_step(s.wait),
        per_step(s.window),
    );
}

/// The resolved `.fm` (its data paths rebased so that the copy reads the same files) and
/// `summary.txt`, which the run writes into its directory when it starts.
fn run_files(run_dir: &Path, sel: &session::Selected, file: &Path) -> Vec<(String, Vec<u8>)> {
    let from = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // The copy's paths are relative to the run directory, which may not exist yet: rebase
    // against the directory it will be.
    let copy = fm_compiler::check::data::rebase_data_paths(&sel.source, from, run_dir);
    let style = fm_compiler::summary::Style {
        unicode: false,
        width: 100,
    };
    let summary = fm_compiler::summary::render(&sel.graph, std::slice::from_ref(&sel.spec), &style);
    vec![
        (format!("{}.fm", sel.graph.name), copy.into_bytes()),
        ("summary.txt".into(), summary.into_bytes()),
    ]
}
