//! The JIT's vector transcendentals (polynomial approximations) against the interpreter (libm)
//! over their whole input range: dense grids, every binade, random bit patterns, and the edges
//! 0, -0, ±inf, NaN and huge magnitudes. The stated bounds are those in `jit/math.rs`.

mod jit_common;

use fm_compiler::interp::{self, Context, Value};
use fm_compiler::ir::{fixed, ArgKind, Builder, ResultKind, UnaryOp};
use fm_runtime::tensor::DType;
use jit_common::{flush, flush_value, Rng};
use ndarray::{ArrayD, IxDyn};

/// Runs `op` over `xs` on both backends; returns (jit, interpreter) values. Compiled code runs
/// with denormals flushed (FTZ/DAZ), so the interpreter's inputs and results are flushed too.
fn run_unary(op: UnaryOp, xs: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut b = Builder::new("unary");
    let x = b.arg("x", ArgKind::Input, fixed(&[xs.len()]), DType::F32);
    let y = b.unary(op, x);
    b.result("y", ResultKind::Output(0), y);
    let f = b.finish();
    let args = [Value::F(
        ArrayD::from_shape_vec(IxDyn(&[xs.len()]), xs.to_vec()).unwrap(),
    )];
    let ctx = Context {
        batch: 1,
        seed: 0,
        step: 0,
        sample_offset: 0,
    };
    let got = fm_jit::run(&f, &args, ctx).unwrap();
    let flushed = [flush_value(&args[0])];
    let want = interp::run(&f, &flushed, ctx).unwrap();
    (
        // Sign and bit operations (neg, abs) pass subnormals through unflushed.
        got[0].float().iter().copied().map(flush).collect(),
        want[0].float().iter().copied().map(flush).collect(),
    )
}

/// Inputs covering the range: a dense grid on [-lim, lim], every power of two with
/// neighbours, random bit patterns, and the special values.
fn inputs(lim: f32) -> Vec<f32> {
    let mut xs = Vec::new();
    let steps = 200_001;
    for i in 0..steps {
        xs.push(-lim + 2.0 * lim * i as f32 / (steps - 1) as f32);
    }
    for e in -149..128 {
        let p = 2f32.powi(e);
        for v in [p, p * 1.000_001, p * 0.999_999, p * 1.5] {
            xs.push(v);
            xs.push(-v);
        }
    }
    let mut rng = Rng::new(11);
    for _ in 0..100_000 {
        xs.push(f32::from_bits(rng.next_u64() as u32));
    }
    xs.extend([
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        f32::MAX,
        f32::MIN,
        f32::MIN_POSITIVE,
        -f32::MIN_POSITIVE,
        1e-45,
        -1e-45,
    ]);
    xs
}

/// Error of `got` against `want`: NaN must match NaN, infinities and zeros (with their sign)
/// must match exactly, and finite values must satisfy `|got - want| <= rel * |want| + abs`.
/// Returns the largest `|got - want| / (rel * |want| + abs)` (<= 1 passes) and its input.
fn worst(xs: &[f32], got: &[f32], want: &[f32], rel: f32, abs: f32) -> (f32, f32) {
    let mut w = (0f32, 0f32);
    for ((&x, &g), &e) in xs.iter().zip(got).zip(want) {
        let score = if g.to_bits() == e.to_bits() {
            0.0
        } else if e.is_nan() || g.is_nan() {
            if e.is_nan() && g.is_nan() {
                0.0
            } else {
                f32::INFINITY
            }
        } else if e.is_infinite() || g.is_infinite() {
            if e == g {
                0.0
            } else {
                f32::INFINITY
            }
        } else if e == 0.0 && g == 0.0 && e.is_sign_negative() != g.is_sign_negative() {
            f32::INFINITY
        } else {
            (g as f64 - e as f64).abs() as f32 / (rel * e.abs() + abs)
        };
        if score > w.0 || score.is_nan() {
            w = (score, x);
        }
    }
    w
}

/// Returns the fraction of results bit-identical to libm.
fn check(op: UnaryOp, lim: f32, rel: f32, abs: f32) -> f64 {
    let xs = inputs(lim);
    let (got, want) = run_unary(op, &xs);
    let (score, x) = worst(&xs, &got, &want, rel, abs);
    let same = got
        .iter()
        .zip(&want)
        .filter(|(g, w)| g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()))
        .count();
    eprintln!(
        "{op:?}: {:.3}% of {} results bit-identical to libm",
        100.0 * same as f64 / got.len() as f64,
        got.len()
    );
    let i = xs.iter().position(|v| v.to_bits() == x.to_bits()).unwrap();
    eprintln!(
        "{op:?}: worst {score:.3} of the bound at x = {x:e} (jit {:e}, libm {:e})",
        got[i], want[i]
    );
    assert!(
        score <= 1.0,
        "{op:?}({x:e}) = {:e}, libm says {:e}",
        got[i],
        want[i]
    );
    same as f64 / got.len() as f64
}

/// Near the smallest normal float, libm's correctly rounded result and the JIT's may fall on
/// either side of the flush-to-zero threshold: allow that much absolute error.
const TINY: f32 = 2.0 * f32::MIN_POSITIVE;

#[test]
fn exp_within_1_5e_7_relative() {
    // Evaluated in double and rounded once: nearly always libm's result exactly.
    assert!(check(UnaryOp::Exp, 100.0, 1.5e-7, TINY) > 0.999);
}

#[test]
fn log_within_1_5e_7_relative() {
    assert!(check(UnaryOp::Log, 100.0, 1.5e-7, TINY) > 0.999);
}

#[test]
fn tanh_within_1e_7_relative() {
    // glibc's tanhf transcribed: the interpreter's result exactly.
    assert!(check(UnaryOp::Tanh, 12.0, 1e-7, TINY) > 0.9999);
}

#[test]
fn sigmoid_within_3e_7_relative() {
    // The interpreter's formula around a nearly exact exp.
    assert!(check(UnaryOp::Sigmoid, 100.0, 3e-7, TINY) > 0.999);
}

#[test]
fn erf_within_1_5e_7_relative() {
    // musl's erff transcribed: nearly always the interpreter's result exactly.
    assert!(check(UnaryOp::Erf, 6.0, 1.5e-7, TINY) > 0.999);
}

#[test]
fn sqrt_exact() {
    assert_eq!(check(UnaryOp::Sqrt, 1e6, 0.0, 0.0), 1.0);
}

#[test]
fn sign_and_abs_and_neg_exact() {
    for op in [UnaryOp::Sign, UnaryOp::Abs, UnaryOp::Neg] {
        assert_eq!(check(op, 10.0, 0.0, 0.0), 1.0);
    }
}
