//! Splitting work over scoped std threads (no pool: a spawn costs about 20 µs, so work is only
//! split when each thread gets at least `MIN_FLOPS_PER_THREAD`).

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use super::fpenv::DenormalMode;

/// Below this much work per thread, spawning costs more than it saves.
const MIN_FLOPS_PER_THREAD: f64 = 4.0e6;

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

/// The number of threads worth using for `flops` of work that divides into `units` independent
/// pieces. `requested == 0` means the process-wide limit ([`set_thread_limit`]), by default one
/// per available core.
pub(crate) fn useful_threads(requested: usize, units: usize, flops: f64) -> usize {
    let requested = match (requested, THREAD_LIMIT.load(Ordering::Relaxed)) {
        (0, 0) => available_cores(),
        (0, limit) => limit,
        (n, _) => n,
    };
    let by_work = (flops / MIN_FLOPS_PER_THREAD) as usize;
    requested.min(units).min(by_work).max(1)
}

/// Splits `0..total` into `parts` contiguous ranges whose lengths differ by at most one
/// (fewer when `total < parts`; none when `total == 0`).
pub(crate) fn even_ranges(total: usize, parts: usize) -> Vec<Range<usize>> {
    let parts = parts.max(1).min(total);
    let mut out = Vec::with_capacity(parts);
    let mut start = 0;
    for p in 0..parts {
        let len = total / parts + usize::from(p < total % parts);
        out.push(start..start + len);
        start += len;
    }
    out
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
    let ranges = even_ranges(total, parts);
    if ranges.len() <= 1 {
        return work(0..total, data);
    }
    let mut chunks = Vec::with_capacity(ranges.len());
    let mut rest = data;
    for r in &ranges {
        let (head, tail) = rest.split_at_mut(r.len() * row_len);
        chunks.push((r.clone(), head));
        rest = tail;
    }
    let mode = DenormalMode::current();
    std::thread::scope(|scope| {
        let mut iter = chunks.into_iter();
        // The calling thread does the first chunk itself.
        let first = iter.next();
        let handles: Vec<_> = iter
            .map(|(r, chunk)| {
                scope.spawn(|| {
                    mode.apply();
                    work(r, chunk)
                })
            })
            .collect();
        let mut result = match first {
            Some((r, chunk)) => work(r, chunk),
            None => Ok(()),
        };
        for h in handles {
            // A panic in a worker is a bug in this module; re-raise it rather than hide it.
            let r = h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            if result.is_ok() {
                result = r;
            }
        }
        result
    })
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
}
