//! Vector (f32x4) transcendentals as branch-free Cephes-style polynomial approximations.
//!
//! Accuracy against libm (what the interpreter uses), tested over the whole f32 range in
//! `tests/jit_math.rs` (dense grids, every binade, random bit patterns): relative error at most
//! 1.5e-7 for `exp` and `log` (about one ulp), at most 3e-7 for `tanh`, `sigmoid` and `erf`.
//! Compiled code runs with denormals flushed (FTZ/DAZ): subnormal inputs read as zero and
//! results below the smallest normal float become zero. Special values follow libm: NaN propagates,
//! `exp(-inf) = 0`, `exp(inf) = inf`, `log(0) = -inf`, `log(x < 0) = NaN`, `tanh(±inf) = ±1`,
//! signed zeros are kept by `tanh` and `erf`.

// Coefficients are written as published (more digits than f32 holds).
#![allow(clippy::excessive_precision)]

use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::types::{F32X4, I32X4};
use cranelift_codegen::ir::{InstBuilder, MemFlagsData, Value};
use cranelift_frontend::FunctionBuilder;

/// Helpers over `F32X4` values.
pub struct V<'a, 'b> {
    pub b: &'a mut FunctionBuilder<'b>,
}

impl V<'_, '_> {
    pub fn c(&mut self, v: f32) -> Value {
        let s = self.b.ins().f32const(v);
        self.b.ins().splat(F32X4, s)
    }
    pub fn ci(&mut self, v: i32) -> Value {
        let s = self
            .b
            .ins()
            .iconst(cranelift_codegen::ir::types::I32, v as i64);
        self.b.ins().splat(I32X4, s)
    }
    pub fn add(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fadd(a, b)
    }
    pub fn sub(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fsub(a, b)
    }
    pub fn mul(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fmul(a, b)
    }
    pub fn div(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fdiv(a, b)
    }
    /// `a * b + c` (not fused, so results do not depend on the host's FMA support).
    pub fn mad(&mut self, a: Value, b: Value, c: Value) -> Value {
        let m = self.mul(a, b);
        self.add(m, c)
    }
    /// Horner evaluation of `coeffs[0] x^(k-1) + ... + coeffs[k-1]`.
    pub fn poly(&mut self, x: Value, coeffs: &[f32]) -> Value {
        let mut acc = self.c(coeffs[0]);
        for &k in &coeffs[1..] {
            let kk = self.c(k);
            acc = self.mad(acc, x, kk);
        }
        acc
    }
    pub fn cmp(&mut self, cc: FloatCC, a: Value, b: Value) -> Value {
        self.b.ins().fcmp(cc, a, b)
    }
    /// `mask ? a : b` lane-wise; `mask` is an `I32X4` comparison result.
    pub fn sel(&mut self, mask: Value, a: Value, b: Value) -> Value {
        let m = self.as_f(mask);
        self.b.ins().bitselect(m, a, b)
    }
    pub fn as_f(&mut self, v: Value) -> Value {
        self.b.ins().bitcast(
            F32X4,
            MemFlagsData::new().with_endianness(cranelift_codegen::ir::Endianness::Little),
            v,
        )
    }
    pub fn as_i(&mut self, v: Value) -> Value {
        self.b.ins().bitcast(
            I32X4,
            MemFlagsData::new().with_endianness(cranelift_codegen::ir::Endianness::Little),
            v,
        )
    }
    /// `|r|` with the sign of `x`, by bit masks (x64 Cranelift has no vector `fcopysign`).
    pub fn copysign(&mut self, r: Value, x: Value) -> Value {
        let abs_mask = self.c(f32::from_bits(0x7fff_ffff));
        let sign_mask = self.c(-0.0);
        let magnitude = self.b.ins().band(r, abs_mask);
        let sign = self.b.ins().band(x, sign_mask);
        self.b.ins().bor(magnitude, sign)
    }
    /// 1.0 where `mask`, else 0.0.
    pub fn flag(&mut self, mask: Value) -> Value {
        let one = self.c(1.0);
        let m = self.as_f(mask);
        self.b.ins().band(m, one)
    }
    /// `2^n` for integer lanes `n` in [-150, 128], as two factors (each a normal float).
    fn pow2_split(&mut self, n: Value) -> (Value, Value) {
        let n1 = self.b.ins().sshr_imm_u(n, 1);
        let n2 = self.b.ins().isub(n, n1);
        let bias = self.ci(127);
        let e1 = self.b.ins().iadd(n1, bias);
        let e2 = self.b.ins().iadd(n2, bias);
        let e1 = self.b.ins().ishl_imm_u(e1, 23);
        let e2 = self.b.ins().ishl_imm_u(e2, 23);
        (self.as_f(e1), self.as_f(e2))
    }

    pub fn exp(&mut self, x: Value) -> Value {
        // Clamp so that the exponent split below stays in range; NaN passes through fmin/fmax.
        let lo = self.c(-104.0);
        let hi = self.c(89.0);
        let x = self.b.ins().fmax(x, lo);
        let x = self.b.ins().fmin(x, hi);
        let log2e = self.c(std::f32::consts::LOG2_E);
        let half = self.c(0.5);
        let t = self.mad(x, log2e, half);
        let t = self.b.ins().floor(t);
        let n = self.b.ins().fcvt_to_sint_sat(I32X4, t);
        // r = x - t*ln2 in two steps (Cody-Waite) for accuracy.
        let c1 = self.c(0.693_359_4);
        let c2 = self.c(-2.121_944_4e-4);
        let tc1 = self.mul(t, c1);
        let r = self.sub(x, tc1);
        let tc2 = self.mul(t, c2);
        let r = self.sub(r, tc2);
        let p = self.poly(
            r,
            &[
                1.987_569_1e-4,
                1.398_2e-3,
                8.333_452e-3,
                4.166_579_6e-2,
                1.666_666_5e-1,
                5.000_000_1e-1,
            ],
        );
        let rr = self.mul(r, r);
        let one = self.c(1.0);
        let y = self.mad(p, rr, r);
        let y = self.add(y, one);
        let (s1, s2) = self.pow2_split(n);
        let y = self.mul(y, s1);
        self.mul(y, s2)
    }

    pub fn log(&mut self, x0: Value) -> Value {
        // Scale subnormal inputs into the normal range first.
        let min_normal = self.c(f32::MIN_POSITIVE);
        let small = self.cmp(FloatCC::LessThan, x0, min_normal);
        let scale = self.c(8_388_608.0); // 2^23
        let scaled = self.mul(x0, scale);
        let x = self.sel(small, scaled, x0);
        let zero_i = self.ci(0);
        let m23 = self.ci(-23);
        let eadj = {
            let m = self.as_f(m23);
            let z = self.as_f(zero_i);
            let sm = self.as_f(small);
            let r = self.b.ins().bitselect(sm, m, z);
            self.as_i(r)
        };
        let bits = self.as_i(x);
        let e = self.b.ins().ushr_imm_u(bits, 23);
        let c126 = self.ci(126);
        let e = self.b.ins().isub(e, c126);
        let e = self.b.ins().iadd(e, eadj);
        let mant_mask = self.ci(0x007f_ffff);
        let half_bits = self.ci(0x3f00_0000);
        let m = self.b.ins().band(bits, mant_mask);
        let m = self.b.ins().bor(m, half_bits);
        let m = self.as_f(m);
        let sqrthf = self.c(std::f32::consts::FRAC_1_SQRT_2);
        let lt = self.cmp(FloatCC::LessThan, m, sqrthf);
        // lt lanes are -1 (all ones) as integers: e += lt subtracts one where m < sqrt(1/2).
        let e = self.b.ins().iadd(e, lt);
        let one = self.c(1.0);
        let mm = self.add(m, m);
        let a = self.sub(mm, one);
        let b = self.sub(m, one);
        let x = self.sel(lt, a, b);
        let z = self.mul(x, x);
        let y = self.poly(
            x,
            &[
                7.037_683_6e-2,
                -1.151_461e-1,
                1.167_699_9e-1,
                -1.242_014_1e-1,
                1.424_932_3e-1,
                -1.666_805_8e-1,
                2.000_071_5e-1,
                -2.499_999_4e-1,
                3.333_333e-1,
            ],
        );
        let y = self.mul(y, x);
        let y = self.mul(y, z);
        let fe = self.b.ins().fcvt_from_sint(F32X4, e);
        let c2 = self.c(-2.121_944_4e-4);
        let y = self.mad(fe, c2, y);
        let h = self.c(0.5);
        let hz = self.mul(h, z);
        let y = self.sub(y, hz);
        let r = self.add(x, y);
        let c1 = self.c(0.693_359_4);
        let r = self.mad(fe, c1, r);
        // Special values of the original input.
        let inf = self.c(f32::INFINITY);
        let is_inf = self.cmp(FloatCC::Equal, x0, inf);
        let r = self.sel(is_inf, inf, r);
        let zero = self.c(0.0);
        let ninf = self.c(f32::NEG_INFINITY);
        let is_zero = self.cmp(FloatCC::Equal, x0, zero);
        let r = self.sel(is_zero, ninf, r);
        let nan = self.c(f32::NAN);
        let neg = self.cmp(FloatCC::LessThan, x0, zero);
        let r = self.sel(neg, nan, r);
        let uno = self.cmp(FloatCC::Unordered, x0, x0);
        self.sel(uno, x0, r)
    }

    pub fn tanh(&mut self, x: Value) -> Value {
        let a = self.b.ins().fabs(x);
        let z = self.mul(x, x);
        let p = self.poly(
            z,
            &[
                -5.704_988_7e-3,
                2.063_908_9e-2,
                -5.373_971_6e-2,
                1.333_144_2e-1,
                -3.333_328_2e-1,
            ],
        );
        let pz = self.mul(p, z);
        let small = self.mad(pz, a, a);
        let two = self.c(2.0);
        let a2 = self.mul(a, two);
        let e = self.exp(a2);
        let one = self.c(1.0);
        let e1 = self.add(e, one);
        let q = self.div(two, e1);
        let large = self.sub(one, q);
        let cut = self.c(0.625);
        let is_small = self.cmp(FloatCC::LessThan, a, cut);
        let r = self.sel(is_small, small, large);
        self.copysign(r, x)
    }

    pub fn sigmoid(&mut self, x: Value) -> Value {
        let a = self.b.ins().fabs(x);
        let na = self.b.ins().fneg(a);
        let e = self.exp(na);
        let one = self.c(1.0);
        let d = self.add(one, e);
        let r = self.div(one, d);
        let er = self.div(e, d);
        let zero = self.c(0.0);
        let pos = self.cmp(FloatCC::GreaterThanOrEqual, x, zero);
        self.sel(pos, r, er)
    }

    pub fn erf(&mut self, x: Value) -> Value {
        let a = self.b.ins().fabs(x);
        // |x| < 1: x * T(x^2).
        let z = self.mul(x, x);
        let t = self.poly(
            z,
            &[
                7.853_861_4e-5,
                -8.010_193_6e-4,
                5.188_327_6e-3,
                -2.685_381_2e-2,
                1.128_358_5e-1,
                -3.761_262_6e-1,
                std::f32::consts::FRAC_2_SQRT_PI,
            ],
        );
        let small = self.mul(a, t);
        // |x| >= 1: 1 - erfc(|x|).
        let one = self.c(1.0);
        let q = self.div(one, a);
        let qq = self.mul(q, q);
        let p = self.poly(
            qq,
            &[
                2.326_82e-2,
                -1.387_039_4e-1,
                3.687_424_7e-1,
                -5.824_733e-1,
                6.210_004_6e-1,
                -4.944_515_3e-1,
                3.404_88e-1,
                -2.741_127e-1,
                5.638_259_4e-1,
            ],
        );
        let r = self.poly(
            qq,
            &[
                -1.047_766_4e1,
                1.297_72e1,
                -7.495_518_7,
                2.921_019,
                -1.015_265_3,
                4.218_463_4e-1,
                -2.820_767_4e-1,
                5.641_895e-1,
            ],
        );
        // Cephes: erfc(x) = exp(-x^2) / x * (P(1/x^2) for 1 <= x < 2, R(1/x^2) above).
        let two = self.c(2.0);
        let lt2 = self.cmp(FloatCC::LessThan, a, two);
        let pr = self.sel(lt2, p, r);
        let nz = self.b.ins().fneg(z);
        let ez = self.exp(nz);
        let erfc = self.mul(ez, q);
        let erfc = self.mul(erfc, pr);
        let large = self.sub(one, erfc);
        let lt1 = self.cmp(FloatCC::LessThan, a, one);
        let r = self.sel(lt1, small, large);
        self.copysign(r, x)
    }
}

/// Scalar `powf` for the `Pow` op, called lane by lane from generated code. libm's `powf`
/// classifies its operands by their bits, which DAZ does not change, so subnormal operands are
/// flushed here as every other op in compiled code sees them (`pow(x, 1e-40)` is `pow(x, 0)`).
pub extern "C" fn fm_jit_powf(a: f32, b: f32) -> f32 {
    let daz = |x: f32| {
        if x.is_subnormal() {
            0.0f32.copysign(x)
        } else {
            x
        }
    };
    daz(a).powf(daz(b))
}
