//! Random IR programs through the JIT against the interpreter: chains of elementwise ops,
//! broadcasts, reductions, reshapes, permutes, slices, pads, concats, selects and matmuls in
//! random order, with random values returned, so the scheduler meets fusion groups, shared
//! operands and aliasing the examples never produce. Deterministic (seeded), a few seconds.

mod jit_common;

use fm_compiler::interp::{self, Context, Value};
use fm_compiler::ir::builder::broadcast_shapes;
use fm_compiler::ir::*;
use fm_runtime::tensor::DType;
use jit_common::{flush_value, max_rel_diff, Rng};
use ndarray::{ArrayD, IxDyn};

/// Builds one random program of about `len` instructions.
fn program(rng: &mut Rng, len: usize) -> Function {
    let mut b = Builder::new("random");
    let (d1, d2) = (1 + rng.below(6) as usize, 1 + rng.below(7) as usize);
    let mut pool: Vec<ValueId> = vec![
        b.arg("x", ArgKind::Input, batched(&[d1, d2]), DType::F32),
        b.arg("y", ArgKind::Input, batched(&[d1, d2]), DType::F32),
        b.arg("p", ArgKind::Param(0), fixed(&[d1, d2]), DType::F32),
        b.arg("s", ArgKind::Param(1), fixed(&[]), DType::F32),
    ];
    let pick = |rng: &mut Rng, pool: &[ValueId]| pool[rng.below(pool.len()) as usize];
    for _ in 0..len {
        let x = pick(rng, &pool);
        let shape = b.shape(x).clone();
        let rank = shape.len();
        let batched_x = shape.first() == Some(&Dim::N);
        let v = match rng.below(12) {
            0 | 1 => {
                use UnaryOp::*;
                let ops = [
                    Neg,
                    Exp,
                    Log,
                    Sqrt,
                    Tanh,
                    Sigmoid,
                    Erf,
                    Abs,
                    Sign,
                    StopGradient,
                ];
                let op = ops[rng.below(ops.len()) as usize];
                // Keep exp's argument small so values stay comparable.
                let arg = if op == Exp { b.unary(Tanh, x) } else { x };
                b.unary(op, arg)
            }
            2..=4 => {
                use BinaryOp::*;
                let ops = [Add, Sub, Mul, Div, Max, Min, Greater, GreaterEq, Equal];
                let op = ops[rng.below(ops.len()) as usize];
                // A partner the builder can broadcast against x (same shape, scalar, or the
                // fixed parameter against a batched value).
                let partners: Vec<ValueId> = pool
                    .iter()
                    .copied()
                    .filter(|&p| {
                        let ps = b.shape(p);
                        broadcast_shapes(ps, &shape).as_ref() == Some(&shape)
                    })
                    .collect();
                let y = pick(rng, &partners);
                let (l, r) = if rng.below(2) == 0 { (x, y) } else { (y, x) };
                if broadcast_shapes(b.shape(l), b.shape(r)).is_none() {
                    continue;
                }
                let out = b.binary(op, l, r);
                if op == Div {
                    // Avoid division blow-ups near zero dominating the comparison.
                    let t = b.unary(UnaryOp::Tanh, out);
                    b.mul_scalar(t, 3.0)
                } else {
                    out
                }
            }
            5 if rank > 0 => {
                let axes: Vec<usize> = (0..rank).filter(|_| rng.below(2) == 0).collect();
                if axes.is_empty() {
                    continue;
                }
                let op = if rng.below(2) == 0 {
                    ReduceOp::Sum
                } else {
                    ReduceOp::Max
                };
                b.reduce(op, x, &axes, rng.below(2) == 0)
            }
            6 if rank == 3 => {
                let perm = if rng.below(2) == 0 {
                    vec![0, 2, 1]
                } else {
                    vec![0, 1, 2]
                };
                let p = b.permute(x, perm);
                let flat: Shape = p_shape_flat(b.shape(p));
                b.reshape(p, flat)
            }
            7 if rank >= 2 && batched_x => {
                let axis = 1 + rng.below(rank - 1) as usize;
                let d = shape[axis].fixed().unwrap_or(1);
                if d < 2 {
                    continue;
                }
                let start = rng.below(d - 1) as usize;
                let end = start + 1 + rng.below(d - start) as usize;
                let sl = b.slice(x, axis, start, end.min(d));
                b.push(
                    Op::Pad {
                        axis,
                        before: start,
                        after: d - end.min(d),
                    },
                    vec![sl],
                )
            }
            8 if rank >= 2 && batched_x => {
                let axis = 1 + rng.below(rank - 1) as usize;
                let same: Vec<ValueId> = pool
                    .iter()
                    .copied()
                    .filter(|&p| b.shape(p) == &shape)
                    .collect();
                let y = pick(rng, &same);
                let c = b.concat(vec![x, y], axis);
                b.slice(c, axis, 0, shape[axis].fixed().unwrap_or(1))
            }
            9 => {
                let c = b.push(Op::Binary(BinaryOp::Greater), vec![x, x]);
                let z = b.zeros_like(x);
                let t = b.unary(UnaryOp::Tanh, x);
                let w = b.select(c, z, t);
                b.select(w, t, x)
            }
            10 if rank == 3 && batched_x => {
                // [N, d1, d2] x [d2, d2] over the last two axes as a 2-D matmul.
                let dd = shape[2].fixed().unwrap_or(1);
                let flat = b.reshape(
                    x,
                    vec![Dim::Batch(shape[1].fixed().unwrap_or(1)), Dim::Fixed(dd)],
                );
                let w = b.arg("w", ArgKind::Param(2), fixed(&[dd, dd]), DType::F32);
                let m = b.matmul(flat, w, false, rng.below(2) == 0);
                b.reshape(m, shape.clone())
            }
            11 if rank == 3 && batched_x => {
                let r = b.random_uniform(shape.clone(), rng.below(1000) as u64);
                b.mul(r, x)
            }
            _ => continue,
        };
        pool.push(v);
    }
    let last = *pool.last().unwrap();
    b.result("last", ResultKind::Output(0), last);
    for k in 0..2 {
        let v = pick(rng, &pool);
        b.result(&format!("r{k}"), ResultKind::Output(k + 1), v);
    }
    let f = b.finish();
    verify::verify(&f).unwrap_or_else(|e| panic!("generated IR does not verify: {e}"));
    f
}

fn p_shape_flat(s: &Shape) -> Shape {
    let rest: usize = s[1..].iter().map(|d| d.fixed().unwrap_or(1)).product();
    vec![s[0], Dim::Fixed(rest)]
}

fn args_for(f: &Function, n: usize, rng: &mut Rng) -> Vec<Value<f32>> {
    f.args
        .iter()
        .map(|a| {
            let shape = eval_shape(&a.shape, n);
            let count: usize = shape.iter().product();
            let data: Vec<f32> = (0..count).map(|_| 4.0 * rng.unit() - 2.0).collect();
            Value::F(ArrayD::from_shape_vec(IxDyn(&shape), data).unwrap())
        })
        .collect()
}

#[test]
fn random_programs_match_the_interpreter() {
    let mut rng = Rng::new(2024);
    let mut checked = 0;
    for case in 0..300 {
        let len = 4 + rng.below(14) as usize;
        let f = program(&mut rng, len);
        if std::env::var_os("FM_SHOW").is_some() {
            eprintln!("{}", fm_compiler::ir::print::print_function(&f));
        }
        for n in [1, 3, 7] {
            let args = args_for(&f, n, &mut rng);
            let ctx = Context {
                batch: n,
                seed: case,
                step: 1,
                sample_offset: 0,
            };
            let want = interp::run(&f, &args, ctx).unwrap();
            let got = fm_jit::run(&f, &args, ctx).unwrap_or_else(|e| {
                panic!(
                    "case {case}: {e}\n{}",
                    fm_compiler::ir::print::print_function(&f)
                )
            });
            for (r, (g, w)) in f.results.iter().zip(got.iter().zip(&want)) {
                let (g, w) = (flush_value(g).into_float(), flush_value(w).into_float());
                let d = max_rel_diff(&g, &w, 1e-3);
                let nan_ok = g
                    .iter()
                    .zip(w.iter())
                    .all(|(a, b)| a.is_nan() == b.is_nan());
                assert!(
                    nan_ok && d <= 1e-4,
                    "case {case}, batch {n}, result `{}` differs by {d:e}\n{}\njit:    {g}\ninterp: {w}",
                    r.name,
                    fm_compiler::ir::print::print_function(&f)
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 900);
}

/// A data-parallel shard of samples `first..first + n` of a global batch draws the random
/// numbers one process draws for those samples, on the JIT and the interpreter alike; numbers
/// of a shape without a leading batch axis (one per step, not per sample) are the same on
/// every shard.
#[test]
fn a_shard_draws_the_numbers_of_its_samples() {
    let mut b = Builder::new("random");
    let per_sample = b.random_uniform(vec![Dim::N, Dim::Fixed(3), Dim::Fixed(2)], 7);
    let shared = b.random_uniform(vec![Dim::Fixed(4)], 8);
    b.result("a", ResultKind::Output(0), per_sample);
    b.result("b", ResultKind::Output(1), shared);
    let f = b.finish();
    let ctx = |batch, sample_offset| Context {
        batch,
        seed: 11,
        step: 5,
        sample_offset,
    };
    type Runner = fn(&Function, &[Value<f32>], Context) -> Result<Vec<Value<f32>>, String>;
    let runners: [(&str, Runner); 2] = [("interp", interp::run), ("jit", fm_jit::run)];
    for (name, run) in runners {
        let whole = run(&f, &[], ctx(10, 0)).unwrap();
        let whole_a = whole[0].clone().into_float();
        let whole_b = whole[1].clone().into_float();
        for (first, n) in [(0, 4), (4, 3), (7, 3)] {
            let part = run(&f, &[], ctx(n, first)).unwrap();
            let a = part[0].clone().into_float();
            let want: Vec<f32> = whole_a
                .iter()
                .skip(first * 6)
                .take(n * 6)
                .copied()
                .collect();
            assert_eq!(
                a.iter().copied().collect::<Vec<_>>(),
                want,
                "{name}: shard {first}+{n}"
            );
            assert_eq!(
                part[1].clone().into_float(),
                whole_b,
                "{name}: shared numbers"
            );
        }
    }
}
