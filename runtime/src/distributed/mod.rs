//! Data-parallel training's communication: the [`Collective`] operations a data-parallel step
//! needs (sum all-reduce, also in buckets started while the backward pass still runs, gather of
//! per-rank outputs, broadcast) and how a global batch is split into per-rank shards.
//!
//! Nothing here needs an MPI library: [`Single`] is the one-process group, and the MPI group is
//! `fmc`'s (`fmc::distributed::mpi`, compiled only with `--features mpi`).

use std::ops::Range;

/// The collective operations of a fixed group of processes ("ranks"). Every rank must call the
/// same operations in the same order with buffers of the same length (a data-parallel step
/// does: every rank runs the same loop over the same global batches).
pub trait Collective {
    /// This process's index in the group, `0..size()`.
    fn rank(&self) -> usize;
    /// How many processes the group has.
    fn size(&self) -> usize;
    /// Replaces `buf` on every rank by the element-wise sum over all ranks.
    fn all_reduce_sum(&self, buf: &mut [f32]);
    /// The concatenation, in rank order, of every rank's `local`; rank `r` gives
    /// `counts[r]` elements (every rank passes the same `counts`).
    fn all_gather(&self, local: &[f32], counts: &[usize]) -> Vec<f32>;
    /// Replaces `buf` on every rank by rank 0's.
    fn broadcast_from_root(&self, buf: &mut [f32]);
    /// Replaces `buf` on every rank by the element-wise sum over all ranks, in buckets:
    /// `buckets` are consecutive ranges covering `buf`, and `produce` computes their values,
    /// handing each to `sink.start(k, fill)` as soon as it is known (once per bucket, in
    /// increasing `k`, the same order on every rank). The sum of a bucket may start right away,
    /// overlapping whatever `produce` does next; this returns when every sum has arrived in
    /// `buf`. An error of `produce` is returned once the sums it started have arrived.
    ///
    /// This default sums each bucket with [`Collective::all_reduce_sum`] when it is started.
    fn all_reduce_sum_buckets(
        &self,
        buf: &mut [f32],
        buckets: &[Range<usize>],
        produce: &mut dyn FnMut(&mut dyn BucketSink) -> Result<(), String>,
    ) -> Result<(), String> {
        struct Blocking<'b, C: ?Sized> {
            group: &'b C,
            buf: &'b mut [f32],
            buckets: &'b [Range<usize>],
            started: usize,
        }
        impl<C: Collective + ?Sized> BucketSink for Blocking<'_, C> {
            fn start(&mut self, k: usize, fill: &mut dyn FnMut(&mut [f32])) -> Result<(), String> {
                check_order(k, self.started, self.buckets.len())?;
                let part = &mut self.buf[self.buckets[k].clone()];
                fill(part);
                self.group.all_reduce_sum(part);
                self.started += 1;
                Ok(())
            }
        }
        let mut sink = Blocking {
            group: self,
            buf,
            buckets,
            started: 0,
        };
        produce(&mut sink)?;
        check_all_started(sink.started, buckets.len())
    }
    /// Ends the whole group after an error on this rank (the other ranks would otherwise wait
    /// in their next collective forever); returns only for a group of one.
    fn abort(&self, code: i32) {
        let _ = code;
    }
}

/// Where [`Collective::all_reduce_sum_buckets`]'s `produce` hands its buckets.
pub trait BucketSink {
    /// Bucket `k`'s values are known: `fill` writes them (into a slice of the bucket's length),
    /// and their sum over the ranks starts. Buckets must start in increasing order.
    fn start(&mut self, k: usize, fill: &mut dyn FnMut(&mut [f32])) -> Result<(), String>;
    /// Lets the sums already started progress (called between pieces of `produce`'s work: an
    /// MPI library without a progress thread moves a non-blocking collective on only inside
    /// MPI calls).
    fn progress(&mut self) {}
}

/// Bucket `k` may start after `started` buckets of `total`.
pub fn check_order(k: usize, started: usize, total: usize) -> Result<(), String> {
    if k != started || k >= total {
        return Err(format!(
            "internal error: gradient bucket {k} started after {started} of {total}"
        ));
    }
    Ok(())
}

/// After `produce`: every bucket must have started (else the other ranks would wait forever).
pub fn check_all_started(started: usize, total: usize) -> Result<(), String> {
    if started != total {
        return Err(format!(
            "internal error: {started} of {total} gradient buckets were sent"
        ));
    }
    Ok(())
}

/// Splits values of the given sizes (in bytes), taken in the given order, into buckets of
/// about `cap` bytes, as PyTorch DDP does: a bucket closes once it holds `cap` bytes or more,
/// so a value larger than `cap` is a bucket of its own (values are never split). Returns the
/// number of values in each bucket; a `cap` of 0 puts every value in its own bucket.
pub fn buckets_by_size(sizes: &[usize], cap: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let (mut count, mut bytes) = (0, 0);
    for &s in sizes {
        count += 1;
        bytes += s;
        if bytes >= cap {
            out.push(count);
            (count, bytes) = (0, 0);
        }
    }
    if count > 0 {
        out.push(count);
    }
    out
}

/// The group of one process: every operation is the identity.
pub struct Single;

impl Collective for Single {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_reduce_sum(&self, _buf: &mut [f32]) {}
    fn all_gather(&self, local: &[f32], _counts: &[usize]) -> Vec<f32> {
        local.to_vec()
    }
    fn broadcast_from_root(&self, _buf: &mut [f32]) {}
}

/// The samples of a global batch of `len` samples that `rank` of `size` ranks computes:
/// contiguous, in rank order, as even as possible. When `size` does not divide `len`, the
/// first `len % size` ranks take one sample more (a batch of 32 on 3 ranks: 11, 11, 10); a rank
/// whose shard is empty (a last batch smaller than the number of ranks) contributes nothing.
pub fn shard(len: usize, rank: usize, size: usize) -> Range<usize> {
    let size = size.max(1);
    let base = len / size;
    let extra = len % size;
    let start = rank * base + rank.min(extra);
    let count = base + usize::from(rank < extra);
    start..(start + count).min(len)
}

/// Every rank's shard size of a global batch of `len` samples, in rank order.
pub fn shard_sizes(len: usize, size: usize) -> Vec<usize> {
    (0..size.max(1))
        .map(|r| shard(len, r, size).len())
        .collect()
}

/// The MPI launcher's environment, when this process was started by one (Open MPI's
/// `mpirun`, MPICH/Hydra, PMIx or SLURM's `srun`): the world size it announces.
pub fn launcher_world_size() -> Option<usize> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
}

/// This process's rank in the job of an MPI launcher (Open MPI's `mpirun`, MPICH/Hydra, PMIx
/// or SLURM's `srun`), when one started it; read from the environment, without MPI.
pub fn launcher_rank() -> Option<usize> {
    ["OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_close_at_the_cap() {
        // The CNN example's trainable tensors in reverse order (bytes), a 256 KB cap.
        let cnn = [40, 5120, 512, 294912, 256, 73728, 128, 1152];
        assert_eq!(buckets_by_size(&cnn, 256 << 10), vec![4, 4]);
        assert_eq!(buckets_by_size(&cnn, 1 << 20), vec![8]);
        assert_eq!(buckets_by_size(&cnn, 0), vec![1; 8]);
        assert_eq!(buckets_by_size(&[10, 10, 10, 10, 10], 20), vec![2, 2, 1]);
        assert!(buckets_by_size(&[], 20).is_empty());
    }

    /// The default bucketed sum of a group of one: the buffer as `produce` filled it; a
    /// bucket started out of order is an error.
    #[test]
    fn single_bucketed_sum() {
        let mut buf = vec![0f32; 5];
        let buckets = [0..2, 2..5];
        Single
            .all_reduce_sum_buckets(&mut buf, &buckets, &mut |sink| {
                sink.start(0, &mut |d| d.copy_from_slice(&[1.0, 2.0]))?;
                sink.progress();
                sink.start(1, &mut |d| d.copy_from_slice(&[3.0, 4.0, 5.0]))
            })
            .unwrap();
        assert_eq!(buf, [1.0, 2.0, 3.0, 4.0, 5.0]);
        let skipped = Single
            .all_reduce_sum_buckets(&mut buf, &buckets, &mut |sink| sink.start(1, &mut |_| {}));
        assert!(skipped
            .unwrap_err()
            .contains("bucket 1 started after 0 of 2"));
        let missing = Single
            .all_reduce_sum_buckets(&mut buf, &buckets, &mut |sink| sink.start(0, &mut |_| {}));
        assert!(missing.unwrap_err().contains("1 of 2 gradient buckets"));
    }

    #[test]
    fn shards_cover_the_batch_in_order() {
        assert_eq!(shard_sizes(32, 2), vec![16, 16]);
        assert_eq!(shard_sizes(32, 3), vec![11, 11, 10]);
        assert_eq!(shard_sizes(2, 3), vec![1, 1, 0]);
        assert_eq!(shard(32, 1, 3), 11..22);
        assert_eq!(shard(32, 2, 3), 22..32);
        for len in 0..40 {
            for size in 1..6 {
                let mut next = 0;
                for r in 0..size {
                    let s = shard(len, r, size);
                    assert_eq!(s.start, next);
                    next = s.end;
                }
                assert_eq!(next, len);
            }
        }
    }
}
