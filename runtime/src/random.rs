//! Random numbers every backend must draw identically: [`Rng`], the stream parameter
//! initialisers draw from, and [`uniform`], the counter-based numbers of dropout masks.

/// A small, fast, well-mixed generator (SplitMix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64, stream: u64) -> Self {
        Rng(seed ^ stream.wrapping_mul(0xd1b5_4a32_d192_ed03) ^ 0x5851_f42d_4c95_7f2d)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    /// Standard normal truncated to [-2, 2] by resampling (as Keras's `truncated_normal`).
    pub fn truncated_normal(&mut self) -> f64 {
        loop {
            let z = self.normal();
            if z.abs() <= 2.0 {
                return z;
            }
        }
    }
}

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
