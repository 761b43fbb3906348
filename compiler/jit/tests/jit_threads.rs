//! Results do not depend on the thread count: the MNIST MLP (its Adam update of the 100,352
//! first-layer weights is split over the threads, as its batch loops are) and the MNIST CNN
//! (convolutions, pooling, GEMMs split over the threads) train to the same bits with one
//! thread and with two. The thread limit is process-wide, so this file holds one test.

mod jit_common;

use fm_runtime::kernels::set_thread_limit;
use jit_common::*;

fn train(name: &str, batch: usize, threads: usize) -> Vec<(String, Vec<u32>)> {
    set_thread_limit(threads);
    let (graph, spec) = load_example(name);
    let (mut s, _) = fm_jit::session::new_session(graph, spec).unwrap();
    let (inputs, targets) = synthetic_batch(&s, batch, 11);
    let lr = s.spec.optimizer.lr as f32;
    for _ in 0..3 {
        s.train_step(&inputs, &targets, lr).unwrap();
    }
    s.state()
        .into_iter()
        .map(|(n, t)| (n, t.to_f32().iter().map(|v| v.to_bits()).collect()))
        .collect()
}

#[test]
fn one_and_two_threads_train_to_the_same_bits() {
    for (name, batch) in [("mnist_mlp.fm", 128), ("mnist_cnn.fm", 32)] {
        let one = train(name, batch, 1);
        let two = train(name, batch, 2);
        assert_eq!(one.len(), two.len());
        for ((n, a), (_, b)) in one.iter().zip(&two) {
            assert!(a == b, "{name}: `{n}` differs between 1 and 2 threads");
        }
    }
    set_thread_limit(0);
}

/// Not a check: the best step time (wall, of many steps, so mostly free of other processes'
/// load) with one and with two threads. `cargo test --release -p fm-jit --test jit_threads --
/// --ignored --nocapture`.
#[test]
#[ignore]
fn step_time_with_one_and_two_threads() {
    for (name, batch) in [
        ("mnist_mlp.fm", 32),
        ("mnist_mlp.fm", 128),
        ("mnist_cnn.fm", 32),
        ("mnist_cnn.fm", 128),
    ] {
        let mut line = format!("{name} batch {batch}:");
        for threads in [1, 2] {
            set_thread_limit(threads);
            let (graph, spec) = load_example(name);
            let (mut s, _) = fm_jit::session::new_session(graph, spec).unwrap();
            let (inputs, targets) = synthetic_batch(&s, batch, 11);
            let lr = s.spec.optimizer.lr as f32;
            let mut best = f64::INFINITY;
            let steps = if name.contains("cnn") { 60 } else { 400 };
            for _ in 0..steps {
                let t = std::time::Instant::now();
                s.train_step(&inputs, &targets, lr).unwrap();
                best = best.min(t.elapsed().as_secs_f64());
            }
            line.push_str(&format!(" {threads} thread(s) {:.3} ms;", best * 1e3));
        }
        println!("{line}");
    }
    set_thread_limit(0);
}
