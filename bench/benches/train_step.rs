//! Criterion suite: train-step and predict time of the example models on every available fm
//! backend, with throughput in samples per second.
//!
//! `cargo bench -p fm-bench` runs it (a few minutes); `cargo bench -p fm-bench -- mnist_mlp`
//! runs one model. `bench/run.sh` uses the `fm-bench` binary instead, whose JSON lines are
//! simpler to put next to Keras' and PyTorch's numbers; both share `fm_bench`'s setup.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fm_bench::{build, prepare, synthetic_batch, BackendKind, MODELS};

fn train_and_predict(c: &mut Criterion) {
    // Single-threaded, like fm-bench's table.
    fm_runtime::kernels::set_thread_limit(1);
    for model in MODELS {
        let prepared = match prepare(model) {
            Ok(p) => p,
            Err(e) => panic!("benchmark setup of {}: {e}", model.name),
        };
        for backend in BackendKind::available() {
            let mut group = c.benchmark_group(format!("{}/{}", model.name, backend.name()));
            for &batch in model.batches {
                let (inputs, targets) = synthetic_batch(&prepared, batch, 0);
                let mut runner = build(&prepared, backend)
                    .unwrap_or_else(|e| panic!("{} on {}: {e}", model.name, backend.name()));
                group.throughput(Throughput::Elements(batch as u64));
                group.bench_function(BenchmarkId::new("train_step", batch), |b| {
                    b.iter(|| {
                        runner
                            .train_step(&inputs, &targets)
                            .unwrap_or_else(|e| panic!("train step: {e}"))
                    })
                });
                group.bench_function(BenchmarkId::new("predict", batch), |b| {
                    b.iter(|| {
                        runner
                            .predict(&inputs)
                            .unwrap_or_else(|e| panic!("predict: {e}"))
                    })
                });
            }
            group.finish();
        }
    }
}

criterion_group! {
    name = benches;
    // Short runs keep the whole suite to a few minutes; the interpreter's steps are
    // milliseconds to a second, so 10 samples of ~3 s give a stable median.
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = train_and_predict
}
criterion_main!(benches);
