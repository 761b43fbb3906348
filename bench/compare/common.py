"""What the Keras and PyTorch benchmarks share with fm's `fm-bench` binary: the models and
batch sizes (keep in step with `MODELS` in bench/src/lib.rs), the timing method and the JSON
line format.

Timing method (identical to fm-bench): build the model, warm up (at least 3 calls and 0.3 s; for
Keras this includes tracing the tf.function), calibrate the time per call (at least 3 calls and
0.2 s), then time `runs` runs of a fixed number of calls (chosen so one run lasts about
`seconds / runs`) and report the median time per call.
"""

import argparse
import json
import statistics
import time

import numpy as np

# name -> (per-sample input shape in NHWC / Keras layout, batch sizes)
MODELS = {
    "digits_mlp": ((8, 8), (32, 128)),
    "digits_cnn": ((8, 8, 1), (32,)),
    "mnist_mlp": ((28, 28), (32, 128)),
    "mnist_cnn": ((28, 28, 1), (32,)),
}
CLASSES = 10


def parse_args(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--threads", type=int, default=1,
                   help="intra-op threads (inter-op is always 1); fm's interpreter uses 1")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--modes", default="train,predict")
    p.add_argument("--seconds", type=float, default=3.0, help="measured time per row")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--batch", type=int, default=None,
                   help="measure only this batch size (as fm-bench --batch)")
    args = p.parse_args()
    args.models = [m for m in args.models.split(",") if m]
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        p.error(f"unknown model(s): {', '.join(unknown)}")
    args.modes = [m for m in args.modes.split(",") if m]
    return args


def synthetic_batch(model, batch, seed=0):
    """Inputs uniform in [0, 1) and integer labels, as fm-bench uses (not the same numbers)."""
    shape, _ = MODELS[model]
    rng = np.random.default_rng(seed)
    x = rng.random((batch, *shape), dtype=np.float32)
    y = rng.integers(0, CLASSES, size=(batch,), dtype=np.int64)
    return x, y


def median_seconds(call, seconds, runs):
    start = time.perf_counter()
    warmup_calls = 0
    while warmup_calls < 3 or time.perf_counter() - start < 0.3:
        call()
        warmup_calls += 1
    # Calibrate after the warm-up, which includes one-off costs (tracing, allocation).
    start = time.perf_counter()
    calibration_calls = 0
    while calibration_calls < 3 or time.perf_counter() - start < 0.2:
        call()
        calibration_calls += 1
    per_call = (time.perf_counter() - start) / calibration_calls
    calls = max(1, round(seconds / runs / per_call))
    times = []
    cpu = []
    for _ in range(runs):
        t0 = time.perf_counter()
        c0 = time.process_time()
        for _ in range(calls):
            call()
        times.append((time.perf_counter() - t0) / calls)
        cpu.append((time.process_time() - c0) / calls)
    # The CPU time of the process (every thread): what fm-bench's `cpu_ms_per_step` is with
    # one kernel thread, unaffected by waiting for a core on a loaded machine.
    median_seconds.cpu = statistics.median(cpu)
    return statistics.median(times)


def batches(args, name):
    """The batch sizes to measure `name` at: `--batch`, else the model's defaults."""
    return (args.batch,) if args.batch else MODELS[name][1]


def report(framework, backend, threads, model, mode, batch, seconds):
    print(json.dumps({
        "framework": framework,
        "backend": backend,
        "threads": threads,
        "model": model,
        "mode": mode,
        "batch": batch,
        "ms_per_step": seconds * 1e3,
        "cpu_ms_per_step": getattr(median_seconds, "cpu", float("nan")) * 1e3,
        "samples_per_s": batch / seconds,
    }), flush=True)
