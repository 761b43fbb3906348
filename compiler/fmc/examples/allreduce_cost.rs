//! Measures the sum all-reduce of `f32` buffers between MPI ranks, the communication of one
//! data-parallel step (README, "Training on several machines"):
//!
//!     cargo build --release -p fmc --features mpi --example allreduce_cost
//!     mpirun -np 2 target/release/examples/allreduce_cost
//!
//! Prints, per buffer size, the median time of one all-reduce and its cost per byte.

use fm_runtime::distributed::Collective;
use fmc::distributed::mpi::MpiWorld;
use std::time::Instant;

fn main() {
    let world = MpiWorld::init().expect("MPI initialised once");
    if world.rank() == 0 {
        println!("ranks: {}", world.size());
        println!("{:>12} {:>12} {:>14}", "bytes", "median_us", "ns_per_byte");
    }
    for floats in [1usize << 8, 1 << 12, 1 << 16, 1 << 18, 1 << 20, 1 << 22] {
        let mut buf = vec![1f32; floats];
        let reps = (64 << 20) / (floats * 4).max(1 << 16);
        let mut times = Vec::with_capacity(reps);
        for _ in 0..reps.max(5) {
            world.all_reduce_sum(&mut buf[..1]); // a barrier of sorts
            let t = Instant::now();
            world.all_reduce_sum(&mut buf);
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        if world.rank() == 0 {
            let bytes = floats * 4;
            println!(
                "{bytes:>12} {:>12.1} {:>14.3}",
                median * 1e6,
                median * 1e9 / bytes as f64
            );
        }
    }
}
