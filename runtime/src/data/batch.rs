//! Batching: the order of samples in each epoch and the batches themselves.
//!
//! The order of epoch `e` is a permutation derived from `(seed, e)` alone, with a counter-based
//! generator (SplitMix64), so a resumed run needs only the epoch number to continue exactly.
//! The last, partial batch is kept (as Keras does).

use super::dataset::{Batch, Dataset};
use std::ops::Range;

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny generator whose state is a counter.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.state)
    }
    /// Uniform in `0..bound` (Lemire's multiply-shift with rejection, so unbiased). `bound > 0`.
    pub fn below(&mut self, bound: u64) -> u64 {
        let threshold = bound.wrapping_neg() % bound;
        loop {
            let product = self.next_u64() as u128 * bound as u128;
            if (product as u64) >= threshold {
                return (product >> 64) as u64;
            }
        }
    }
}

/// The SplitMix64 finaliser: a bijective mix of 64 bits.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The sample order of `epoch` (0-based) for `n` samples: a Fisher-Yates shuffle driven by a
/// generator seeded from `(seed, epoch)`.
pub fn epoch_permutation(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut rng = SplitMix64::new(mix64(seed) ^ mix64(epoch.wrapping_add(0x005E_ED0F_E90C)));
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

/// The sample order of `epoch`: shuffled, or `0..n` when `shuffle` is off.
pub fn epoch_order(n: usize, shuffle: bool, seed: u64, epoch: u64) -> Vec<usize> {
    if shuffle {
        epoch_permutation(n, seed, epoch)
    } else {
        (0..n).collect()
    }
}

/// Number of batches of `batch_size` in `n` samples, the last one partial.
pub fn batch_count(n: usize, batch_size: usize) -> usize {
    n.div_ceil(batch_size.max(1))
}

/// Positions (into an epoch's order) of batch `index`.
pub fn batch_range(n: usize, batch_size: usize, index: usize) -> Range<usize> {
    let start = (index * batch_size).min(n);
    start..(start + batch_size).min(n)
}

/// Batch `index` of an epoch whose sample order is `order`.
pub fn batch(data: &Dataset, order: &[usize], batch_size: usize, index: usize) -> Batch {
    let range = batch_range(order.len(), batch_size, index);
    data.gather(&order[range])
}

/// Batches in file order (evaluation and prediction).
pub fn sequential_batches(n: usize, batch_size: usize) -> impl Iterator<Item = Range<usize>> {
    (0..batch_count(n, batch_size)).map(move |i| batch_range(n, batch_size, i))
}
