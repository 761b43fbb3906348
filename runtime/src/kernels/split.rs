//! Splitting work over the kernels' persistent thread pool.
//!
//! One process-wide pool of `cores - 1` workers (started on first use) runs the parts of a
//! parallel kernel call; the calling thread takes parts too, so a call on two cores uses both.
//! A call costs a few microseconds (workers spin briefly before sleeping, so back-to-back
//! kernels of one training step find them awake) and allocates nothing. Work is split into parts
//! by the caller, so which thread runs a part never changes a result.
//!
//! One call runs on the pool at a time. A call made while the pool is busy (another thread's
//! kernel, or a kernel called from inside a part) runs its parts in order on the calling thread.

use std::cell::Cell;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::fpenv::DenormalMode;

/// Below this much work per thread, waking a worker costs more than it saves.
const MIN_FLOPS_PER_THREAD: f64 = 2.0e5;

/// How long an idle worker polls for the next call before it sleeps.
const SPIN: Duration = Duration::from_micros(200);

/// A gap between two polls of an idle worker this long means it was descheduled (a poll takes
/// well under a microsecond): it then sleeps at once instead of spinning out [`SPIN`].
const PREEMPTED: Duration = Duration::from_micros(20);

/// Cores available to this process, read once (the query reads cgroup files on Linux, too slow
/// for a per-call lookup in tile-granular code).
fn available_cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The process-wide thread limit of `fmc --threads N` (0: one per available core).
static THREAD_LIMIT: AtomicUsize = AtomicUsize::new(0);

/// Sets how many threads a kernel called with `threads == 0` may use (0: one per core).
pub fn set_thread_limit(threads: usize) {
    THREAD_LIMIT.store(threads, Ordering::Relaxed);
}

/// The number of parts worth splitting `flops` of work into, when it divides into `units`
/// independent pieces. `requested == 0` means the process-wide limit ([`set_thread_limit`]),
/// by default one per available core.
pub(crate) fn useful_threads(requested: usize, units: usize, flops: f64) -> usize {
    let requested = match (requested, THREAD_LIMIT.load(Ordering::Relaxed)) {
        (0, 0) => available_cores(),
        (0, limit) => limit,
        (n, _) => n,
    };
    let by_work = (flops / MIN_FLOPS_PER_THREAD) as usize;
    requested.min(units).min(by_work).max(1)
}

/// Below this many elements per thread, a memory-bound loop is not worth a second thread.
const MIN_ELEMENTS_PER_THREAD: f64 = 32.0 * 1024.0;

/// The number of threads worth using on a memory-bound loop over `elements` that divides into
/// `units` independent pieces, under the process-wide limit.
pub fn threads_for_elements(units: usize, elements: usize) -> usize {
    useful_threads(
        0,
        units,
        elements as f64 / MIN_ELEMENTS_PER_THREAD * MIN_FLOPS_PER_THREAD,
    )
}

/// Runs `work(p)` for every `p` in `0..parts` on at most `threads` threads of the kernels' pool
/// (the caller included); returns the first error in part order. For callers outside this
/// module, such as the JIT splitting a generated loop over the batch.
pub fn parallel_parts<E, F>(parts: usize, threads: usize, work: F) -> Result<(), E>
where
    E: Send,
    F: Fn(usize) -> Result<(), E> + Sync,
{
    for_each_part(parts, threads, work)
}

/// Splits `0..total` into `parts` contiguous ranges whose lengths differ by at most one
/// (fewer when `total < parts`; none when `total == 0`).
#[cfg(test)]
pub(crate) fn even_ranges(total: usize, parts: usize) -> Vec<Range<usize>> {
    (0..parts.max(1).min(total))
        .map(|p| even_range(total, parts.max(1).min(total), p))
        .collect()
}

/// Range `p` of [`even_ranges`]`(total, parts)` without building the list (`parts <= total`).
pub(crate) fn even_range(total: usize, parts: usize, p: usize) -> Range<usize> {
    let (base, extra) = (total / parts, total % parts);
    let start = p * base + p.min(extra);
    start..start + base + usize::from(p < extra)
}

/// A raw pointer that may cross into a worker: each part writes a disjoint region through it.
pub(crate) struct SendPtr<T>(pub(crate) *mut T);
impl<T> Clone for SendPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SendPtr<T> {}
// SAFETY: users only hand out disjoint regions to the parts of one call.
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}
impl<T> SendPtr<T> {
    // A method (not field access) so closures capture the whole Send wrapper.
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}

/// Runs `work(p)` for every `p` in `0..parts` on at most `threads` threads (the caller and
/// `threads - 1` pool workers). Returns the first error in part order; a panic in a part is
/// re-raised here.
pub(crate) fn for_each_part<E, F>(parts: usize, threads: usize, work: F) -> Result<(), E>
where
    E: Send,
    F: Fn(usize) -> Result<(), E> + Sync,
{
    if parts <= 1 || threads <= 1 {
        return (0..parts).try_for_each(work);
    }
    // The first error by part index (the lowest failing part wins, whatever finished first).
    let error: Mutex<Option<(usize, E)>> = Mutex::new(None);
    let run = |p: usize| {
        if let Err(e) = work(p) {
            let mut slot = error.lock().unwrap_or_else(|e| e.into_inner());
            if slot.as_ref().is_none_or(|(q, _)| p < *q) {
                *slot = Some((p, e));
            }
        }
    };
    Pool::get().run(parts, threads - 1, &run);
    match error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

/// Splits `data` (laid out as `total` rows of `row_len` elements) into the row ranges
/// `even_ranges(total, parts)` and runs `work(rows, chunk)` on each, in parallel when there is
/// more than one. Returns the first error.
pub(crate) fn for_each_row_chunk<T, E, F>(
    data: &mut [T],
    row_len: usize,
    total: usize,
    parts: usize,
    work: F,
) -> Result<(), E>
where
    T: Send,
    E: Send,
    F: Fn(Range<usize>, &mut [T]) -> Result<(), E> + Sync,
{
    let parts = parts.max(1).min(total);
    if parts <= 1 {
        return work(0..total, data);
    }
    assert!(
        data.len() >= total * row_len,
        "row chunks outside the buffer"
    );
    let base = SendPtr(data.as_mut_ptr());
    for_each_part(parts, parts, |p| {
        let rows = even_range(total, parts, p);
        // SAFETY: the row ranges of distinct parts are disjoint and inside `data` (checked
        // above), which stays mutably borrowed until every part has finished.
        let chunk = unsafe {
            std::slice::from_raw_parts_mut(
                base.get().add(rows.start * row_len),
                rows.len() * row_len,
            )
        };
        work(rows, chunk)
    })
}

thread_local! {
    /// Whether the current thread is running a part of a pool call (a nested call then runs
    /// inline instead of waiting for the pool it is part of).
    static IN_PART: Cell<bool> = const { Cell::new(false) };
}

/// The call being run: a type-erased `&dyn Fn(usize)`, valid while `pending > 0`.
#[derive(Clone, Copy)]
struct Job {
    work: *const (dyn Fn(usize) + Sync),
    parts: usize,
    /// Workers `0..helpers` take parts; the others sit this call out.
    helpers: usize,
    mode: DenormalMode,
}
// SAFETY: the pointee is `Sync` and outlives every use (see `Pool::run`).
unsafe impl Send for Job {}

struct Pool {
    workers: usize,
    /// Held for the whole of one call; a caller that finds it held runs inline.
    calling: Mutex<()>,
    /// The current job and its generation, for workers waking from sleep.
    job: Mutex<(u64, Option<Job>)>,
    wake: Condvar,
    /// The generation of the current job, for spinning workers.
    generation: AtomicU64,
    /// `generation << 32 | next part index`: workers claim parts only of the job they read.
    claim: AtomicU64,
    /// Parts not finished yet.
    pending: AtomicUsize,
    panicked: AtomicBool,
}

impl Pool {
    fn get() -> &'static Pool {
        static POOL: OnceLock<&'static Pool> = OnceLock::new();
        POOL.get_or_init(|| {
            let workers = available_cores().saturating_sub(1);
            let pool: &'static Pool = Box::leak(Box::new(Pool {
                workers,
                calling: Mutex::new(()),
                job: Mutex::new((0, None)),
                wake: Condvar::new(),
                generation: AtomicU64::new(0),
                claim: AtomicU64::new(0),
                pending: AtomicUsize::new(0),
                panicked: AtomicBool::new(false),
            }));
            for i in 0..workers {
                // A worker that cannot start only means fewer helpers: parts are claimed by
                // whoever is there, the caller included.
                let _ = std::thread::Builder::new()
                    .name(format!("fm-kernel-{i}"))
                    .spawn(move || pool.worker(i));
            }
            pool
        })
    }

    fn run(&self, parts: usize, helpers: usize, work: &(dyn Fn(usize) + Sync)) {
        let inline = || {
            for p in 0..parts {
                work(p)
            }
        };
        if self.workers == 0 || IN_PART.with(Cell::get) {
            return inline();
        }
        let Ok(_calling) = self.calling.try_lock() else {
            return inline();
        };
        // SAFETY (lifetime erasure): this function does not return before `pending` is zero,
        // and no worker touches `work` after finishing its last claimed part.
        let work_ptr: *const (dyn Fn(usize) + Sync) = unsafe {
            std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(work)
        };
        let job = Job {
            work: work_ptr,
            parts,
            helpers,
            mode: DenormalMode::current(),
        };
        self.pending.store(parts, Ordering::SeqCst);
        self.panicked.store(false, Ordering::SeqCst);
        let gen = {
            let mut slot = self.job.lock().unwrap_or_else(|e| e.into_inner());
            let gen = slot.0 + 1;
            *slot = (gen, Some(job));
            self.claim.store(gen << 32, Ordering::SeqCst);
            self.generation.store(gen, Ordering::SeqCst);
            gen
        };
        self.wake.notify_all();
        self.take_parts(gen, job);
        // The workers hold the remaining parts; they are about as long as ours.
        let mut spins = 0u32;
        while self.pending.load(Ordering::Acquire) != 0 {
            spins += 1;
            if spins < 1 << 14 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        if self.panicked.load(Ordering::SeqCst) {
            panic!("a kernel part panicked on a pool thread");
        }
    }

    /// Claims and runs parts of job `gen` until none is left.
    fn take_parts(&self, gen: u64, job: Job) {
        loop {
            let cur = self.claim.load(Ordering::Acquire);
            let index = (cur & 0xFFFF_FFFF) as usize;
            if cur >> 32 != gen || index >= job.parts {
                return;
            }
            if self
                .claim
                .compare_exchange(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue;
            }
            let was = IN_PART.with(|f| f.replace(true));
            let caller_mode = DenormalMode::current();
            job.mode.apply();
            // SAFETY: part `index` of job `gen` is claimed and unfinished, so the caller is
            // still waiting in `run` and `work` is alive.
            let work = unsafe { &*job.work };
            if catch_unwind(AssertUnwindSafe(|| work(index))).is_err() {
                self.panicked.store(true, Ordering::SeqCst);
            }
            caller_mode.apply();
            IN_PART.with(|f| f.set(was));
            self.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }

    fn worker(&self, index: usize) {
        let mut seen = 0u64;
        loop {
            // Poll for a new job for a while, then sleep until one is published. A poll that
            // finds much more time gone than a poll takes means this thread was descheduled:
            // the machine has more runnable threads than cores, and spinning on takes a core
            // from someone else for a job that will wait for a core anyway, so sleep now.
            let start = Instant::now();
            let mut last = Duration::ZERO;
            while self.generation.load(Ordering::Acquire) == seen {
                for _ in 0..64 {
                    std::hint::spin_loop();
                }
                let now = start.elapsed();
                if now >= SPIN || now - last >= PREEMPTED {
                    break;
                }
                last = now;
            }
            let (gen, job) = {
                let mut slot = self.job.lock().unwrap_or_else(|e| e.into_inner());
                while slot.0 == seen {
                    slot = self.wake.wait(slot).unwrap_or_else(|e| e.into_inner());
                }
                *slot
            };
            seen = gen;
            if let Some(job) = job.filter(|j| index < j.helpers) {
                self.take_parts(gen, job);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_ranges_cover_everything_once() {
        assert_eq!(even_ranges(10, 3), vec![0..4, 4..7, 7..10]);
        assert_eq!(even_ranges(2, 5), vec![0..1, 1..2]);
        assert_eq!(even_ranges(0, 3), Vec::<Range<usize>>::new());
        assert_eq!(even_ranges(7, 1), vec![0..7]);
    }

    #[test]
    fn useful_threads_respects_work_and_units() {
        assert_eq!(useful_threads(4, 100, 1.0e3), 1);
        assert_eq!(useful_threads(4, 100, 1.0e9), 4);
        assert_eq!(useful_threads(4, 2, 1.0e9), 2);
        assert_eq!(useful_threads(3, 0, 1.0e9), 1);
    }

    #[test]
    fn every_part_runs_once_and_the_first_error_wins() {
        for parts in [1usize, 2, 3, 17] {
            let hits: Vec<AtomicUsize> = (0..parts).map(|_| AtomicUsize::new(0)).collect();
            let r = for_each_part(parts, parts, |p| {
                hits[p].fetch_add(1, Ordering::SeqCst);
                if p % 2 == 1 {
                    Err(p)
                } else {
                    Ok(())
                }
            });
            assert!(hits.iter().all(|h| h.load(Ordering::SeqCst) == 1));
            assert_eq!(r, if parts > 1 { Err(1) } else { Ok(()) });
        }
    }

    #[test]
    fn a_pool_worker_runs_parts_beside_the_caller() {
        if available_cores() < 2 {
            return;
        }
        // Part 0 waits for part 1 to start: only a second thread can make that happen. (A call
        // that finds the pool busy with another test's kernel runs inline; so try a few times.)
        let attempt = || {
            let started = AtomicBool::new(false);
            let deadline = Instant::now() + Duration::from_secs(3);
            for_each_part::<(), _>(2, 2, |p| {
                if p == 1 {
                    started.store(true, Ordering::SeqCst);
                    return Ok(());
                }
                while !started.load(Ordering::SeqCst) {
                    if Instant::now() > deadline {
                        return Err(());
                    }
                    std::thread::yield_now();
                }
                Ok(())
            })
        };
        assert!(
            (0..10).any(|_| attempt().is_ok()),
            "no worker picked up part 1"
        );
    }

    #[test]
    fn nested_calls_run_inline() {
        let total = AtomicUsize::new(0);
        for_each_part::<(), _>(3, 2, |_| {
            for_each_part::<(), _>(4, 4, |q| {
                total.fetch_add(q + 1, Ordering::SeqCst);
                Ok(())
            })
        })
        .unwrap();
        assert_eq!(total.load(Ordering::SeqCst), 30);
    }

    #[test]
    fn row_chunks_are_disjoint_and_complete() {
        let mut data = vec![0u32; 7 * 3];
        for_each_row_chunk::<_, (), _>(&mut data, 3, 7, 3, |rows, chunk| {
            assert_eq!(chunk.len(), rows.len() * 3);
            for (i, x) in chunk.iter_mut().enumerate() {
                *x = (rows.start * 3 + i) as u32;
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(data, (0..21).collect::<Vec<u32>>());
    }
}
