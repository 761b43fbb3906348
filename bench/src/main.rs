//! `fm-bench`: steady-state train-step and predict throughput of fm's backends on the example
//! models, one JSON object per line on stdout (the format `bench/compare/*.py` also print, so
//! `bench/run.sh` can put them side by side).
//!
//! Method, identical in the Python scripts: compile the model, warm up (at least 3 calls and
//! 0.3 s), calibrate the time per call (at least 3 calls and 0.2 s), then time `--runs` runs of a
//! fixed number of calls (chosen so a run lasts about `--seconds / --runs`) and report the median
//! time per call, and the median CPU time per call of the calling thread (`cpu_ms_per_step`,
//! which waiting for a core on a loaded machine does not inflate; with `--threads 1` every
//! kernel runs on that thread).
//!
//! Usage: fm-bench [--models a,b] [--backends interp,jit,macro] [--modes train,predict]
//!                 [--seconds S] [--runs R] [--batch N] [--threads N] [--per-call]
//!
//! `--batch N` measures only that batch size; `--threads N` lets the kernels use N threads
//! (default 1). `--per-call` times every call on its own after the warm-up, for `--seconds`,
//! and reports the median call: the latency method of `bench/compare/peers_epochs.py
//! --latency` (`--batch 1 --modes predict --per-call` is the batch-1 latency of
//! `bench/issue11.sh`). On a shared machine it is also the figure least moved by the load:
//! a call the scheduler interrupts is one slow call, not a slow run.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use fm_bench::{build, prepare, synthetic_batch, BackendKind, Runner, MODELS};
use fm_runtime::tensor::Tensor;

struct Options {
    models: Vec<String>,
    backends: Vec<BackendKind>,
    modes: Vec<String>,
    seconds: f64,
    runs: usize,
    batch: Option<usize>,
    threads: usize,
    per_call: bool,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        models: MODELS.iter().map(|m| m.name.to_string()).collect(),
        backends: BackendKind::available(),
        modes: vec!["train".into(), "predict".into()],
        seconds: 3.0,
        runs: 5,
        batch: None,
        threads: 1,
        per_call: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        let list = |v: String| v.split(',').map(str::to_string).collect::<Vec<_>>();
        match flag.as_str() {
            "--models" => options.models = list(value()?),
            "--modes" => options.modes = list(value()?),
            "--backends" => {
                options.backends = list(value()?)
                    .iter()
                    .map(|b| BackendKind::parse(b).ok_or_else(|| format!("unknown backend `{b}`")))
                    .collect::<Result<_, _>>()?
            }
            "--seconds" => {
                options.seconds = value()?
                    .parse()
                    .map_err(|_| "--seconds takes a number".to_string())?
            }
            "--runs" => {
                options.runs = value()?
                    .parse()
                    .map_err(|_| "--runs takes a positive integer".to_string())?
            }
            "--batch" => {
                options.batch = Some(
                    value()?
                        .parse()
                        .ok()
                        .filter(|&b| b > 0)
                        .ok_or("--batch takes a positive integer")?,
                )
            }
            "--threads" => {
                options.threads = value()?
                    .parse()
                    .ok()
                    .filter(|&t| t > 0)
                    .ok_or("--threads takes a positive integer")?
            }
            "--per-call" => options.per_call = true,
            "-h" | "--help" => {
                println!(
                    "fm-bench [--models a,b] [--backends interp,jit,macro] [--modes train,predict] \
                     [--seconds S] [--runs R] [--batch N] [--threads N] [--per-call]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if let Some(m) = options
        .models
        .iter()
        .find(|m| !MODELS.iter().any(|k| &k.name == m))
    {
        return Err(format!("unknown model `{m}`"));
    }
    if options.runs == 0 || options.seconds.is_nan() || options.seconds <= 0.0 {
        return Err("--runs and --seconds must be positive".into());
    }
    Ok(options)
}

/// CPU time this thread has run, in nanoseconds (Linux: `/proc/thread-self/schedstat`). On a
/// loaded machine it moves far less than wall time: waiting for a core is not counted.
fn cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Per call: the median wall seconds and the median CPU seconds of this thread (when known),
/// by the method in the module docs.
fn median_seconds(
    options: &Options,
    mut call: impl FnMut() -> Result<(), String>,
) -> Result<(f64, Option<f64>), String> {
    let warmup_start = Instant::now();
    let mut warmup_calls = 0u32;
    while warmup_calls < 3 || warmup_start.elapsed() < Duration::from_millis(300) {
        call()?;
        warmup_calls += 1;
    }
    // Calibrate after the warm-up, which includes one-off costs (allocation, caches).
    let calibration_start = Instant::now();
    let mut calibration_calls = 0u32;
    while calibration_calls < 3 || calibration_start.elapsed() < Duration::from_millis(200) {
        call()?;
        calibration_calls += 1;
    }
    if options.per_call {
        let start = Instant::now();
        let mut times = Vec::new();
        while times.len() < 50 || start.elapsed().as_secs_f64() < options.seconds {
            let t = Instant::now();
            call()?;
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        return Ok((times[times.len() / 2], None));
    }
    let per_call = calibration_start.elapsed().as_secs_f64() / f64::from(calibration_calls);
    let run_budget = options.seconds / options.runs as f64;
    let calls = ((run_budget / per_call).round() as usize).max(1);
    let mut times = Vec::with_capacity(options.runs);
    let mut cpu = Vec::with_capacity(options.runs);
    for _ in 0..options.runs {
        let start = Instant::now();
        let cpu_start = cpu_ns();
        for _ in 0..calls {
            call()?;
        }
        times.push(start.elapsed().as_secs_f64() / calls as f64);
        if let (Some(a), Some(b)) = (cpu_start, cpu_ns()) {
            cpu.push(b.saturating_sub(a) as f64 * 1e-9 / calls as f64);
        }
    }
    times.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    let cpu = (cpu.len() == times.len()).then(|| cpu[cpu.len() / 2]);
    Ok((times[times.len() / 2], cpu))
}

fn report(
    options: &Options,
    model: &str,
    backend: BackendKind,
    mode: &str,
    batch: usize,
    (seconds, cpu): (f64, Option<f64>),
) {
    let line = serde_json::json!({
        "cpu_ms_per_step": cpu.map(|c| c * 1e3),
        "framework": "fm",
        "backend": backend.name(),
        "threads": options.threads,
        "model": model,
        "mode": mode,
        "batch": batch,
        "ms_per_step": seconds * 1e3,
        "samples_per_s": batch as f64 / seconds,
    });
    println!("{line}");
}

fn run(options: &Options) -> Result<(), String> {
    for model in MODELS
        .iter()
        .filter(|m| options.models.iter().any(|n| n == m.name))
    {
        let prepared = prepare(model)?;
        for &backend in &options.backends {
            let batches = options.batch.map_or(model.batches.to_vec(), |b| vec![b]);
            for batch in batches {
                let (inputs, targets) = synthetic_batch(&prepared, batch, 0);
                let mut runner: Box<dyn Runner> = build(&prepared, backend)?;
                for mode in &options.modes {
                    let seconds = match mode.as_str() {
                        "train" => median_seconds(options, || {
                            let loss = runner.train_step(&inputs, &targets)?;
                            check_finite(loss)
                        })?,
                        "predict" => median_seconds(options, || {
                            let outputs: Vec<Tensor> = runner.predict(&inputs)?;
                            std::hint::black_box(outputs);
                            Ok(())
                        })?,
                        other => return Err(format!("unknown mode `{other}`")),
                    };
                    report(options, model.name, backend, mode, batch, seconds);
                }
            }
        }
    }
    Ok(())
}

/// A non-finite loss means the step computed garbage; timing it would be meaningless.
fn check_finite(loss: f64) -> Result<(), String> {
    if loss.is_finite() {
        Ok(())
    } else {
        Err(format!("train step returned a non-finite loss ({loss})"))
    }
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("fm-bench: {e}");
            return ExitCode::from(2);
        }
    };
    // The records say how many threads the kernels had (README's table: 1).
    fm_runtime::kernels::set_thread_limit(options.threads);
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fm-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
