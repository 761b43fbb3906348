//! Sampled inputs (language.md 9.2) as counter-based random ops: every draw is a pure function
//! of (seed, step, salt, index), so a run and its resumption draw the same values on both
//! backends.

use crate::graph::Sampler;
use crate::ir::*;

/// Draws a batch `[N, shape...]` from `s`.
pub fn draw(b: &mut Builder, s: &Sampler, shape: &[usize], salt: u64) -> ValueId {
    let u = b.random_uniform(batched(shape), salt);
    match s {
        Sampler::Uniform { lo, hi } => {
            let scaled = b.mul_scalar(u, hi - lo);
            b.add_scalar(scaled, *lo)
        }
        Sampler::Normal { mean, std } => {
            // Centre the 24-bit grid so p is never 0.
            let p = b.add_scalar(u, 0.5 / (1u64 << 24) as f64);
            let z = inverse_normal_cdf(b, p);
            let scaled = b.mul_scalar(z, *std);
            b.add_scalar(scaled, *mean)
        }
        Sampler::Categorical { probs } => {
            // Inverse CDF: the index is the number of cumulative probabilities <= u.
            let mut acc = 0.0;
            let mut edges: Vec<f32> = probs[..probs.len().saturating_sub(1)]
                .iter()
                .map(|p| {
                    acc += p;
                    acc as f32
                })
                .collect();
            // Rounding never breaks the order f32 casts keep; clamp the top at 1.
            for e in &mut edges {
                *e = e.min(1.0);
            }
            b.push(Op::Bucketize { edges }, vec![u])
        }
    }
}

/// Acklam's rational approximation of the standard normal quantile (relative error below
/// 1.2e-9, far under f32 resolution), from elementwise primitives only.
fn inverse_normal_cdf(b: &mut Builder, p: ValueId) -> ValueId {
    const A: [f64; 6] = [
        -3.969683028665376e+01,
        2.209460984245205e+02,
        -2.759285104469687e+02,
        1.38357751867269e+02,
        -3.066479806614716e+01,
        2.506628277459239e+00,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e+01,
        1.615858368580409e+02,
        -1.556989798598866e+02,
        6.680131188771972e+01,
        -1.328068155288572e+01,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-03,
        -3.223964580411365e-01,
        -2.400758277161838e+00,
        -2.549732539343734e+00,
        4.374664141464968e+00,
        2.938163982698783e+00,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-03,
        3.224671290700398e-01,
        2.445134137142996e+00,
        3.754408661907416e+00,
    ];
    const P_LOW: f64 = 0.02425;
    // Horner: ((c0 x + c1) x + ...) + c_last.
    let horner = |b: &mut Builder, coef: &[f64], x: ValueId, monic_tail: bool| {
        let mut acc = b.mul_scalar(x, coef[0]);
        for &c in &coef[1..] {
            acc = b.add_scalar(acc, c);
            acc = b.mul(acc, x);
        }
        if monic_tail {
            b.add_scalar(acc, 1.0)
        } else {
            acc
        }
    };
    // Central region: q = p - 0.5, r = q^2; x = q * A(r) / (B(r) r + 1).
    let q = b.add_scalar(p, -0.5);
    let r = b.square(q);
    let num = horner(b, &A[..5], r, false);
    let num = b.add_scalar(num, A[5]);
    let num = b.mul(num, q);
    let den = horner(b, &B, r, true);
    let central = b.div(num, den);
    // Tails: s = min(p, 1 - p), t = sqrt(-2 log s); x = C(t) / (D(t) t + 1), negated above 0.5.
    let one_minus = {
        let np = b.neg(p);
        b.add_scalar(np, 1.0)
    };
    // p rounds to 1.0 in f32 above 1 - 2^-25, so 1 - p can be 0: keep s positive (the
    // deepest tail is then about 5.4 standard deviations).
    let s = b.min(p, one_minus);
    let floor = b.constant(1.0 / (1u64 << 25) as f64);
    let s = b.max(s, floor);
    let ls = b.log(s);
    let m2 = b.mul_scalar(ls, -2.0);
    let t = b.sqrt(m2);
    let tn = horner(b, &C[..5], t, false);
    let tn = b.add_scalar(tn, C[5]);
    let td = horner(b, &D, t, true);
    let lower = b.div(tn, td);
    let half = b.constant(0.5);
    let upper_half = b.binary(BinaryOp::Greater, p, half);
    let neg_lower = b.neg(lower);
    let tail = b.select(upper_half, neg_lower, lower);
    let plow = b.constant(P_LOW);
    let in_tail = b.binary(BinaryOp::Greater, plow, s);
    b.select(in_tail, tail, central)
}
