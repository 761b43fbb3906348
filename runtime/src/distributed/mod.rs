//! Data-parallel training's communication: the [`Collective`] operations a data-parallel step
//! needs (sum all-reduce, gather of per-rank outputs, broadcast) and how a global batch is split
//! into per-rank shards.
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
    /// Ends the whole group after an error on this rank (the other ranks would otherwise wait
    /// in their next collective forever); returns only for a group of one.
    fn abort(&self, code: i32) {
        let _ = code;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
