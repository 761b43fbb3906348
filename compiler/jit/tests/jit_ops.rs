//! Every IR op compiled on its own by the JIT against the interpreter, at batch sizes 1, 7 and
//! 33 and with feature sizes that are not multiples of 4 (so vector loops end in scalar
//! tails). Data movement, comparisons, sums (added in the interpreter's order), gathers and
//! random bits must be bit-identical; matmul and convolutions may differ by rounding.

mod jit_common;

use fm_compiler::interp::{self, Context, Value};
use fm_compiler::ir::*;
use fm_runtime::tensor::DType;
use jit_common::{flush_value, ftz_effective, max_rel_diff, Rng};
use ndarray::{ArrayD, IxDyn};

const BATCHES: [usize; 3] = [1, 7, 33];

/// Arguments for `f` at batch `n`: floats in [-2, 2) with a few exact zeros, i32 values in
/// [-1, 11) (so index ops see out-of-range indices).
fn args_for(f: &Function, n: usize, seed: u64) -> Vec<Value<f32>> {
    let mut rng = Rng::new(seed);
    f.args
        .iter()
        .map(|a| {
            let shape = eval_shape(&a.shape, n);
            let count: usize = shape.iter().product();
            match a.dtype {
                DType::F32 => Value::F(
                    ArrayD::from_shape_vec(
                        IxDyn(&shape),
                        (0..count)
                            .map(|_| {
                                let u = rng.unit();
                                if u < 0.03 {
                                    0.0
                                } else {
                                    4.0 * rng.unit() - 2.0
                                }
                            })
                            .collect(),
                    )
                    .unwrap(),
                ),
                DType::I32 => Value::I(
                    ArrayD::from_shape_vec(
                        IxDyn(&shape),
                        (0..count).map(|_| rng.below(12) - 1).collect(),
                    )
                    .unwrap(),
                ),
            }
        })
        .collect()
}

/// Runs `f` on both backends over `args`; asserts every result agrees within `tol` relative
/// (0 = bit-identical, NaN matching NaN). Compiled code flushes denormals, so the interpreter
/// gets flushed inputs and its results are flushed.
fn compare_args(f: &Function, args: &[Value<f32>], ctx: Context, tol: f32) {
    let flushed: Vec<Value<f32>> = args.iter().map(flush_value).collect();
    let want: Vec<Value<f32>> = interp::run(f, &flushed, ctx)
        .unwrap()
        .iter()
        .map(flush_value)
        .collect();
    let got: Vec<Value<f32>> = fm_jit::run(f, args, ctx)
        .unwrap_or_else(|e| panic!("{}: {e}", f.name))
        .iter()
        .map(flush_value)
        .collect();
    for ((r, g), w) in f.results.iter().zip(&got).zip(&want) {
        match (g, w) {
            (Value::F(g), Value::F(w)) => {
                let d = max_rel_diff(g, w, 1e-3);
                let same_nan = g
                    .iter()
                    .zip(w.iter())
                    .all(|(a, b)| a.is_nan() == b.is_nan());
                assert!(
                    same_nan && d <= tol,
                    "{} `{}` at batch {}: differs by {d:e}\n jit:    {g}\n interp: {w}",
                    f.name,
                    r.name,
                    ctx.batch
                );
            }
            (Value::I(g), Value::I(w)) => assert_eq!(g, w, "{} `{}`", f.name, r.name),
            _ => panic!("{} `{}`: result types differ", f.name, r.name),
        }
    }
}

fn compare(f: &Function, tol: f32) {
    for (k, &n) in BATCHES.iter().enumerate() {
        let ctx = Context {
            batch: n,
            seed: 42,
            step: 3,
            sample_offset: 0,
        };
        compare_args(f, &args_for(f, n, k as u64 + 1), ctx, tol);
    }
}

/// A function of one result built by `body` from fresh arguments.
fn func(
    name: &str,
    args: &[(Shape, DType)],
    body: impl FnOnce(&mut Builder, &[ValueId]) -> ValueId,
) -> Function {
    let mut b = Builder::new(name);
    let vs: Vec<ValueId> = args
        .iter()
        .enumerate()
        .map(|(i, (s, d))| b.arg(&format!("a{i}"), ArgKind::Input, s.clone(), *d))
        .collect();
    let y = body(&mut b, &vs);
    b.result("y", ResultKind::Output(0), y);
    let f = b.finish();
    verify::verify(&f).unwrap_or_else(|e| panic!("{name}: {e}"));
    f
}

fn f32_arg(dims: &[usize]) -> (Shape, DType) {
    (batched(dims), DType::F32)
}

#[test]
fn unary_ops() {
    use UnaryOp::*;
    for op in [Neg, Abs, Sign, StopGradient, Sqrt] {
        let f = func(&format!("{op:?}"), &[f32_arg(&[5])], |b, a| {
            b.unary(op, a[0])
        });
        compare(&f, 0.0);
    }
    // Polynomial approximations (bounds in tests/jit_math.rs).
    for op in [Exp, Log, Tanh, Sigmoid, Erf] {
        let f = func(&format!("{op:?}"), &[f32_arg(&[5])], |b, a| {
            b.unary(op, a[0])
        });
        compare(&f, 3e-7);
    }
    let f = func("to_f32", &[(batched(&[3]), DType::I32)], |b, a| {
        b.unary(ToFloat, a[0])
    });
    compare(&f, 0.0);
}

#[test]
fn binary_ops() {
    use BinaryOp::*;
    for op in [Add, Sub, Mul, Div, Max, Min, Greater, GreaterEq, Equal, Pow] {
        let f = func(
            &format!("{op:?}"),
            &[f32_arg(&[7]), f32_arg(&[7])],
            |b, a| b.push(Op::Binary(op), vec![a[0], a[1]]),
        );
        compare(&f, 0.0);
    }
}

#[test]
fn select_and_broadcast_scalars_fuse() {
    // A chain the scheduler fuses into one loop, with constants and a broadcast scalar.
    let f = func(
        "chain",
        &[f32_arg(&[6]), f32_arg(&[6]), (fixed(&[]), DType::F32)],
        |b, a| {
            let s = b.broadcast_to(a[2], &batched(&[6]));
            let x = b.mul(a[0], s);
            let y = b.add_scalar(x, 0.5);
            let c = b.push(Op::Binary(BinaryOp::Greater), vec![y, a[1]]);
            let e = b.exp(a[1]);
            b.select(c, y, e)
        },
    );
    compare(&f, 3e-7);
}

/// IEEE edge values through every elementwise op: NaN propagates like the interpreter's
/// (max/min return a NaN left operand, comparisons with NaN are false), signed zeros and
/// infinities survive.
#[test]
fn special_values() {
    let vals = [
        0.0,
        -0.0,
        1.0,
        -1.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MAX,
        f32::MIN_POSITIVE,
        1e-40,
        -3.5,
        2.0,
        88.0,
        -104.0,
    ];
    // A subnormal only where compiled code really flushes it (not under valgrind).
    let vals: Vec<f32> = vals
        .into_iter()
        .filter(|v| !v.is_subnormal() || ftz_effective())
        .collect();
    let n = vals.len();
    let mut a = Vec::new();
    let mut b = Vec::new();
    for &x in &vals {
        for &y in &vals {
            a.push(x);
            b.push(y);
        }
    }
    let len = a.len();
    let args = [
        Value::F(ArrayD::from_shape_vec(IxDyn(&[len]), a).unwrap()),
        Value::F(ArrayD::from_shape_vec(IxDyn(&[len]), b).unwrap()),
    ];
    let ctx = Context {
        batch: 1,
        seed: 0,
        step: 0,
        sample_offset: 0,
    };
    use BinaryOp::*;
    for op in [Add, Sub, Mul, Div, Max, Min, Greater, GreaterEq, Equal, Pow] {
        let f = func(&format!("{op:?}"), &[f32_arg(&[]), f32_arg(&[])], |b, a| {
            b.push(Op::Binary(op), vec![a[0], a[1]])
        });
        let f = reshape_args(f, len);
        compare_args(&f, &args, ctx, 0.0);
    }
    use UnaryOp::*;
    for (op, tol) in [
        (Neg, 0.0),
        (Abs, 0.0),
        (Sign, 0.0),
        (Sqrt, 0.0),
        (Exp, 3e-7),
        (Log, 3e-7),
        (Tanh, 3e-7),
        (Sigmoid, 3e-7),
        (Erf, 3e-7),
    ] {
        let f = func(&format!("{op:?}"), &[f32_arg(&[])], |b, a| {
            b.unary(op, a[0])
        });
        let f = reshape_args(f, len);
        compare_args(&f, &args[..1], ctx, tol);
    }
    let f = func("select", &[f32_arg(&[]), f32_arg(&[])], |b, a| {
        let z = b.zeros_like(a[0]);
        b.select(a[0], a[1], z)
    });
    let f = reshape_args(f, len);
    compare_args(&f, &args, ctx, 0.0);
    let f = func("reduce_max", &[f32_arg(&[])], |b, a| {
        b.reduce_max(a[0], &[0], false)
    });
    let f = reshape_args(f, len);
    compare_args(&f, &args[..1], ctx, 0.0);
    assert!(n > 4);
}

/// Rewrites the `[N]` shapes of a function into fixed `[len]` (batch-free special-value tests).
fn reshape_args(mut f: Function, len: usize) -> Function {
    let fix = |s: &mut Shape| {
        for d in s.iter_mut() {
            if *d == Dim::N {
                *d = Dim::Fixed(len);
            }
        }
    };
    for a in &mut f.args {
        fix(&mut a.shape);
    }
    for i in &mut f.insts {
        fix(&mut i.shape);
        if let Op::Broadcast { shape } = &mut i.op {
            fix(shape);
        }
    }
    f
}

#[test]
fn reductions_in_the_interpreters_order() {
    let axes_sets: [&[usize]; 7] = [&[0], &[1], &[2], &[0, 1], &[1, 2], &[0, 2], &[0, 1, 2]];
    for op in [ReduceOp::Sum, ReduceOp::Max] {
        for axes in axes_sets {
            for keep in [false, true] {
                for dims in [[3, 5], [1, 19], [9, 1]] {
                    let f = func(
                        &format!("{op:?}{axes:?}{keep}{dims:?}"),
                        &[f32_arg(&dims)],
                        |b, a| b.reduce(op, a[0], axes, keep),
                    );
                    compare(&f, 0.0);
                }
            }
        }
    }
    // Long rows exercise the eightfold unrolled order and its tail.
    for len in [8, 13, 64, 67] {
        let f = func("sum_row", &[f32_arg(&[len])], |b, a| {
            b.sum(a[0], &[1], true)
        });
        compare(&f, 0.0);
    }
}

#[test]
fn matmul_all_transposes_and_batched() {
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        // [N, 5] x [5, 7] style, transposes applied to fixed operands.
        let (sa, sb) = match (ta, tb) {
            (false, false) => (batched(&[5]), fixed(&[5, 7])),
            (false, true) => (batched(&[5]), fixed(&[7, 5])),
            (true, false) => (fixed(&[5, 3]), fixed(&[5, 7])),
            (true, true) => (fixed(&[5, 3]), fixed(&[7, 5])),
        };
        let f = func(
            &format!("matmul{ta}{tb}"),
            &[(sa, DType::F32), (sb, DType::F32)],
            |b, a| {
                b.push(
                    Op::MatMul {
                        transpose_a: ta,
                        transpose_b: tb,
                    },
                    vec![a[0], a[1]],
                )
            },
        );
        compare(&f, 1e-5);
    }
    // Batched: [N, 3, 5] x [N, 5, 6] and the gradient forms.
    for (ta, tb, da, db) in [
        (false, false, [3, 5], [5, 6]),
        (true, false, [5, 3], [5, 6]),
        (false, true, [3, 5], [6, 5]),
    ] {
        let f = func("bmm", &[f32_arg(&da), f32_arg(&db)], |b, a| {
            b.push(
                Op::MatMul {
                    transpose_a: ta,
                    transpose_b: tb,
                },
                vec![a[0], a[1]],
            )
        });
        compare(&f, 1e-5);
    }
    // Weight gradient: x^T dy with the batch as the contracted axis.
    let f = func("dw", &[f32_arg(&[5]), f32_arg(&[3])], |b, a| {
        b.push(
            Op::MatMul {
                transpose_a: true,
                transpose_b: false,
            },
            vec![a[0], a[1]],
        )
    });
    compare(&f, 1e-5);
}

fn window(k: usize, s: usize, d: usize, pad: (usize, usize)) -> Window {
    Window {
        kernel: [k, k],
        stride: [s, s],
        dilation: [d, d],
        pad: [pad, pad],
    }
}

#[test]
fn convolutions_forward_and_backward() {
    for w in [
        window(3, 1, 1, (1, 1)),
        window(3, 2, 1, (0, 1)),
        window(2, 1, 2, (0, 0)),
        window(1, 1, 1, (0, 0)),
    ] {
        let (h, c, fo) = (7, 3, 5);
        let [oh, ow] = w.out_size(h, h).unwrap();
        let k = w.kernel[0];
        let fwd = func(
            "conv",
            &[f32_arg(&[h, h, c]), (fixed(&[k, k, c, fo]), DType::F32)],
            |b, a| b.push(Op::Conv2d { window: w.clone() }, vec![a[0], a[1]]),
        );
        compare(&fwd, 1e-4);
        let bi = func(
            "conv_back_input",
            &[f32_arg(&[oh, ow, fo]), (fixed(&[k, k, c, fo]), DType::F32)],
            |b, a| {
                b.push(
                    Op::Conv2dBackInput {
                        window: w.clone(),
                        input_hw: [h, h],
                    },
                    vec![a[0], a[1]],
                )
            },
        );
        compare(&bi, 1e-4);
        let bk = func(
            "conv_back_kernel",
            &[f32_arg(&[h, h, c]), f32_arg(&[oh, ow, fo])],
            |b, a| b.push(Op::Conv2dBackKernel { window: w.clone() }, vec![a[0], a[1]]),
        );
        compare(&bk, 1e-4);
    }
}

#[test]
fn pooling_forward_and_backward() {
    for kind in [PoolKind::Max, PoolKind::Avg] {
        for w in [
            window(2, 2, 1, (0, 0)),
            window(3, 2, 1, (1, 1)),
            window(3, 1, 1, (0, 1)),
        ] {
            let (h, c) = (7, 3);
            let [oh, ow] = w.out_size(h, h).unwrap();
            let fwd = func("pool", &[f32_arg(&[h, h, c])], |b, a| {
                b.push(
                    Op::Pool2d {
                        kind,
                        window: w.clone(),
                    },
                    vec![a[0]],
                )
            });
            compare(&fwd, 1e-6);
            let back = func(
                "pool_back",
                &[f32_arg(&[h, h, c]), f32_arg(&[oh, ow, c])],
                |b, a| {
                    b.push(
                        Op::Pool2dBack {
                            kind,
                            window: w.clone(),
                        },
                        vec![a[0], a[1]],
                    )
                },
            );
            compare(&back, 1e-6);
        }
    }
}

#[test]
fn data_movement_is_exact() {
    let f = func("reshape_permute", &[f32_arg(&[3, 5])], |b, a| {
        let p = b.permute(a[0], vec![0, 2, 1]);
        let r = b.reshape(p, batched(&[15]));
        b.add_scalar(r, 1.0)
    });
    compare(&f, 0.0);
    let f = func(
        "permute_fixed",
        &[(fixed(&[3, 5, 2]), DType::F32)],
        |b, a| b.permute(a[0], vec![2, 0, 1]),
    );
    compare(&f, 0.0);
    let f = func("broadcast", &[(fixed(&[1, 5]), DType::F32)], |b, a| {
        b.broadcast_to(a[0], &batched(&[5]))
    });
    compare(&f, 0.0);
    let f = func("broadcast_rows", &[f32_arg(&[3, 1])], |b, a| {
        b.broadcast_to(a[0], &batched(&[3, 6]))
    });
    compare(&f, 0.0);
    let f = func("slice", &[f32_arg(&[4, 9])], |b, a| b.slice(a[0], 2, 3, 8));
    compare(&f, 0.0);
    let f = func("slice_mid", &[f32_arg(&[4, 9])], |b, a| {
        b.slice(a[0], 1, 1, 3)
    });
    compare(&f, 0.0);
    let f = func("pad", &[f32_arg(&[3, 5])], |b, a| {
        b.push(
            Op::Pad {
                axis: 2,
                before: 2,
                after: 1,
            },
            vec![a[0]],
        )
    });
    compare(&f, 0.0);
    let f = func(
        "concat",
        &[f32_arg(&[3, 2]), f32_arg(&[3, 5]), f32_arg(&[3, 1])],
        |b, a| b.concat(vec![a[0], a[1], a[2]], 2),
    );
    compare(&f, 0.0);
    let f = func(
        "concat_mid",
        &[f32_arg(&[2, 3]), f32_arg(&[5, 3])],
        |b, a| b.concat(vec![a[0], a[1]], 1),
    );
    compare(&f, 0.0);
    let f = func("int_reshape", &[(batched(&[2, 3]), DType::I32)], |b, a| {
        let r = b.reshape(a[0], batched(&[6]));
        b.unary(UnaryOp::ToFloat, r)
    });
    compare(&f, 0.0);
}

#[test]
fn index_ops_are_exact_and_ignore_out_of_range() {
    // Indices are in [-1, 11): -1, 10 and up are out of range for 10 rows.
    let f = func(
        "gather",
        &[(fixed(&[10, 3]), DType::F32), (batched(&[4]), DType::I32)],
        |b, a| b.push(Op::Gather, vec![a[0], a[1]]),
    );
    compare(&f, 0.0);
    let f = func(
        "gather_wide",
        &[(fixed(&[10, 2, 5]), DType::F32), (batched(&[]), DType::I32)],
        |b, a| b.push(Op::Gather, vec![a[0], a[1]]),
    );
    compare(&f, 0.0);
    let f = func(
        "scatter_add",
        &[(batched(&[4]), DType::I32), f32_arg(&[4, 3])],
        |b, a| b.push(Op::ScatterAdd { rows: 10 }, vec![a[0], a[1]]),
    );
    compare(&f, 0.0);
    let f = func("one_hot", &[(batched(&[2]), DType::I32)], |b, a| {
        b.push(Op::OneHot { depth: 10 }, vec![a[0]])
    });
    compare(&f, 0.0);
}

#[test]
fn generators_are_bit_identical() {
    // Dropout's random stream: same bits as the interpreter for several seeds and steps.
    let f = func("random", &[f32_arg(&[])], |b, a| {
        let r = b.random_uniform(batched(&[5, 3]), 0x1234);
        let r2 = b.random_uniform(batched(&[15]), 7);
        let r2 = b.reshape(r2, batched(&[5, 3]));
        let s = b.add(r, r2);
        let x = b.reshape(a[0], batched(&[1, 1]));
        let x = b.broadcast_to(x, &batched(&[5, 3]));
        b.add(s, x)
    });
    for (seed, step) in [(0, 0), (42, 1), (u64::MAX, 12345)] {
        for n in BATCHES {
            let ctx = Context {
                batch: n,
                seed,
                step,
                sample_offset: 0,
            };
            compare_args(&f, &args_for(&f, n, 3), ctx, 0.0);
        }
    }
    let f = func("consts", &[f32_arg(&[])], |b, a| {
        let t = b.push(Op::LowerTriangle { rows: 5, cols: 7 }, vec![]);
        let n = b.batch_size();
        let c = b.constant(0.1);
        let nc = b.add(n, c);
        let s = b.sum_all(t);
        let k = b.add(nc, s);
        let k = b.reshape(k, fixed(&[1]));
        let k = b.broadcast_to(k, &batched(&[]));
        b.add(k, a[0])
    });
    compare(&f, 0.0);
}

/// `bucketize` (the float-to-integer op of categorical sampling) gives the interpreter's
/// counts for edge tables of every size around the unrolled search's powers of two, with
/// repeated edges, inputs exactly on an edge, outside the table, and NaN.
#[test]
fn bucketize_is_exact() {
    let mut rng = Rng::new(9);
    for k in [0usize, 1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 100, 1000] {
        let mut edges: Vec<f32> = (0..k).map(|_| 4.0 * rng.unit() - 2.0).collect();
        if k > 3 {
            edges[1] = edges[0];
            edges[k - 1] = edges[k - 2];
        }
        edges.sort_by(f32::total_cmp);
        let e2 = edges.clone();
        let f = func("bucketize", &[f32_arg(&[6])], move |b, a| {
            b.push(Op::Bucketize { edges: e2 }, vec![a[0]])
        });
        compare(&f, 0.0);
        // Values on the edges themselves, beyond both ends, and NaN.
        let mut xs: Vec<f32> = edges.clone();
        xs.extend([-3.0, 3.0, f32::NAN, 0.0]);
        xs.truncate(6 * 5);
        while !xs.len().is_multiple_of(6) {
            xs.push(1.5);
        }
        let n = xs.len() / 6;
        let args = vec![Value::F(
            ArrayD::from_shape_vec(IxDyn(&[n, 6]), xs).unwrap(),
        )];
        let ctx = Context {
            sample_offset: 0,
            batch: n,
            seed: 0,
            step: 0,
        };
        compare_args(&f, &args, ctx, 0.0);
    }
}

/// `~ categorical(...)` (language.md 9.2): both backends draw the same indices, with the
/// frequencies of the weights, and never an index of weight 0.
#[test]
fn categorical_draws_follow_the_weights() {
    use fm_compiler::graph::Sampler;
    let probs = vec![0.5, 0.0, 0.3, 0.15, 0.05];
    let s = Sampler::Categorical {
        probs: probs.clone(),
    };
    let f = func("categorical", &[f32_arg(&[])], |b, _| {
        fm_compiler::lower::sample::draw(b, &s, &[50], 11)
    });
    let n = 400;
    let args = vec![Value::F(ArrayD::zeros(IxDyn(&[n])))];
    let ctx = Context {
        sample_offset: 0,
        batch: n,
        seed: 5,
        step: 2,
    };
    compare_args(&f, &args, ctx, 0.0);
    let out = interp::run(&f, &args, ctx).unwrap();
    let Value::I(draws) = &out[0] else {
        panic!("categorical draws i32")
    };
    let mut counts = [0usize; 5];
    for &d in draws.iter() {
        counts[d as usize] += 1;
    }
    let total = (n * 50) as f64;
    assert_eq!(counts[1], 0, "{counts:?}");
    for (k, &p) in probs.iter().enumerate() {
        let freq = counts[k] as f64 / total;
        // 20,000 draws: a standard error below 0.004.
        assert!(
            (freq - p).abs() < 0.015,
            "index {k}: {freq} vs {p} ({counts:?})"
        );
    }
}

/// Arguments are checked before compiled code runs: wrong shapes, element types or counts
/// are errors, not out-of-bounds accesses.
#[test]
fn bad_arguments_are_refused_at_the_boundary() {
    let f = func("add", &[f32_arg(&[5]), f32_arg(&[5])], |b, a| {
        b.add(a[0], a[1])
    });
    let ctx = Context {
        batch: 7,
        seed: 0,
        step: 0,
        sample_offset: 0,
    };
    let good = args_for(&f, 7, 1);
    assert!(fm_jit::run(&f, &good, ctx).is_ok());
    let short = args_for(&f, 6, 1);
    let e = fm_jit::run(&f, &short, ctx).unwrap_err();
    assert!(e.contains("shape"), "{e}");
    let e = fm_jit::run(&f, &good[..1], ctx).unwrap_err();
    assert!(e.contains("arguments"), "{e}");
    let ints = vec![Value::I(ArrayD::zeros(IxDyn(&[7, 5]))), good[1].clone()];
    let e = fm_jit::run(&f, &ints, ctx).unwrap_err();
    assert!(e.contains("element type"), "{e}");
    // Batch 0 is a valid, empty run.
    let ctx0 = Context { batch: 0, ..ctx };
    let empty = args_for(&f, 0, 1);
    let out = fm_jit::run(&f, &empty, ctx0).unwrap();
    assert_eq!(out[0].shape(), &[0, 5]);
}

/// A function the JIT cannot compile (dilated pooling has no precompiled kernel) is refused
/// with a reason, and the executor then runs it on the interpreter: correct, never guessed.
#[test]
fn refused_functions_run_on_the_interpreter() {
    use fm_compiler::exec::Executor;
    let w = window(2, 1, 2, (0, 0));
    let f = func("dilated_pool", &[f32_arg(&[6, 6, 2])], |b, a| {
        b.push(
            Op::Pool2d {
                kind: PoolKind::Max,
                window: w.clone(),
            },
            vec![a[0]],
        )
    });
    let ctx = Context {
        batch: 3,
        seed: 0,
        step: 0,
        sample_offset: 0,
    };
    let args = args_for(&f, 3, 1);
    let e = fm_jit::run(&f, &args, ctx).unwrap_err();
    assert!(e.contains("dilated pooling"), "{e}");
    let mut exec = fm_jit::JitExecutor::new();
    assert!(exec.prepare(&f).is_err());
    let got = exec.run(&f, &args, ctx).unwrap();
    let want = interp::run(&f, &args, ctx).unwrap();
    assert_eq!(got, want);
}
