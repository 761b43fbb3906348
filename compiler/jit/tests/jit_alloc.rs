//! A JIT training step copies and allocates nothing per parameter: the parameters and Adam's
//! slots are read where they are and updated in place, the batch goes into arrays kept from
//! the previous step. Counted with an allocator that tallies the calling thread's allocations,
//! telling apart the 64-byte-aligned packing buffer `matrixmultiply` allocates (and frees) in
//! each GEMM call: the one allocation per kernel call left, outside fm's code.

mod jit_common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use fm_compiler::exec::Session;
use jit_common::*;

struct Counting;

/// Allocations and bytes, other than 64-byte-aligned ones; then the 64-byte-aligned ones.
type Tally = (usize, usize, usize, usize);

thread_local! {
    static COUNT: Cell<Tally> = const { Cell::new((0, 0, 0, 0)) };
}

fn tally(size: usize, align: usize) {
    let _ = COUNT.try_with(|c| {
        let (n, bytes, gemm_n, gemm_bytes) = c.get();
        c.set(if align >= 64 {
            (n, bytes, gemm_n + 1, gemm_bytes + size)
        } else {
            (n + 1, bytes + size, gemm_n, gemm_bytes)
        });
    });
}

// SAFETY: forwards to the system allocator; the tally is a thread-local `Cell` with a const
// initialiser, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        tally(layout.size(), layout.align());
        // SAFETY: caller contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: caller contract.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        tally(new_size, layout.align());
        // SAFETY: caller contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The tally of this thread's allocations while `f` runs.
fn counted(f: impl FnOnce()) -> Tally {
    let before = COUNT.with(Cell::get);
    f();
    let after = COUNT.with(Cell::get);
    (
        after.0 - before.0,
        after.1 - before.1,
        after.2 - before.2,
        after.3 - before.3,
    )
}

#[test]
fn a_jit_train_step_allocates_only_its_returned_outputs() {
    let (graph, spec) = load_example("mnist_mlp.fm");
    let interp = Session::new(graph.clone(), spec.clone()).unwrap();
    let (mut session, report) = fm_jit::session::new_session(graph, spec).unwrap();
    assert!(report.refused.is_empty(), "{:?}", report.refused);
    let batch = 32;
    let (inputs, targets) = synthetic_batch(&interp, batch, 3);
    let lr = interp.spec.optimizer.lr as f32;
    let param_bytes: usize = session.params.iter().map(|p| p.len() * 4).sum();
    // The first steps plan the buffers and size the arrays kept between steps.
    for _ in 0..3 {
        session.train_step(&inputs, &targets, lr).unwrap();
    }
    let steps = 10;
    let mut outputs_len = 0;
    let (allocs, bytes, gemm_allocs, gemm_bytes) = counted(|| {
        for _ in 0..steps {
            let r = session.train_step(&inputs, &targets, lr).unwrap();
            outputs_len = r
                .outputs
                .iter()
                .map(|t| t.shape().iter().product::<usize>())
                .sum();
        }
    });
    eprintln!(
        "per step: {} allocations of {} bytes; GEMM packing: {} of {} bytes",
        allocs / steps,
        bytes / steps,
        gemm_allocs / steps,
        gemm_bytes / steps
    );
    // Per step: the output array it returns (the probabilities, 32 x 10) and the list holding
    // it; nothing proportional to the 101,770 parameters (407 KB, three times with Adam's
    // slots, which were cloned, copied in and copied out on every step before).
    assert!(
        allocs <= 2 * steps,
        "{} allocations per step",
        allocs / steps
    );
    assert!(
        bytes <= (outputs_len * 4 + 512) * steps,
        "{} bytes per step for {outputs_len} output values",
        bytes / steps
    );
    // One packing buffer per GEMM call or per part of one split over threads (five matrix
    // products per step), together smaller than the state a step used to copy.
    assert!(
        gemm_allocs <= 10 * steps,
        "{} GEMM allocations per step",
        gemm_allocs / steps
    );
    assert!(
        gemm_bytes < param_bytes * steps,
        "{} GEMM bytes per step",
        gemm_bytes / steps
    );
}
