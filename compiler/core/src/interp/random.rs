//! Counter-based random numbers: every value is a pure function of (seed, step, salt, index), so
//! dropout masks are reproducible from the seed and a resumed run draws the same masks.

/// SplitMix64's finaliser: a strong 64-bit mixing function.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Uniform in [0, 1) with 24 bits of resolution (exactly representable in f32).
pub fn uniform(seed: u64, step: u64, salt: u64, index: u64) -> f32 {
    let key =
        mix(mix(mix(seed ^ 0x9e37_79b9_7f4a_7c15) ^ step)
            ^ salt.wrapping_mul(0x2545_f491_4f6c_dd1d));
    let bits = mix(key ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    (bits >> 40) as f32 / (1u64 << 24) as f32
}
