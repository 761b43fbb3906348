//! Reverse-mode automatic differentiation as an IR pass: one local gradient rule per primitive.
//!
//! [`gradients`] appends the backward pass of `loss` with respect to the chosen values to the
//! function being built, and returns the value holding each gradient. Only values on a path
//! from a differentiated value to the loss get adjoints, so the backward pass of a frozen branch
//! (targets, BatchNorm statistics, dropout masks) costs nothing.

use crate::ir::*;
use std::collections::HashMap;

/// Appends d`loss`/d`wrt[i]` to `b` for every `wrt` value. `loss` must be a scalar. Values with
/// no path to the loss get a zero gradient.
pub fn gradients(b: &mut Builder, loss: ValueId, wrt: &[ValueId]) -> Vec<ValueId> {
    let n = loss + 1;
    // Forward: which values depend on a differentiated value.
    let mut depends = vec![false; n];
    for &w in wrt {
        if w < n {
            depends[w] = true;
        }
    }
    for v in 0..n {
        if !depends[v]
            && b.func.insts[v].args.iter().any(|&a| depends[a])
            && differentiable(&b.func.insts[v].op)
        {
            depends[v] = true;
        }
    }
    let mut adjoint: HashMap<ValueId, ValueId> = HashMap::new();
    let one = b.constant(1.0);
    adjoint.insert(loss, one);
    for v in (0..n).rev() {
        let Some(&g) = adjoint.get(&v) else { continue };
        if !depends[v] {
            continue;
        }
        let inst = b.func.insts[v].clone();
        b.origin = match inst.origin {
            Origin::Node(n) => Origin::Backward(n),
            other => other,
        };
        let contributions = rule(b, v, &inst, g);
        for (arg_pos, grad) in contributions {
            let a = inst.args[arg_pos];
            if !depends[a] {
                continue;
            }
            let total = match adjoint.get(&a) {
                Some(&prev) => b.add(prev, grad),
                None => grad,
            };
            adjoint.insert(a, total);
        }
    }
    wrt.iter()
        .map(|&w| match adjoint.get(&w) {
            Some(&g) => g,
            None => b.zeros_like(w),
        })
        .collect()
}

/// Ops through which no gradient flows.
fn differentiable(op: &Op) -> bool {
    !matches!(
        op,
        Op::Unary(UnaryOp::StopGradient | UnaryOp::Sign | UnaryOp::ToFloat)
            | Op::Binary(BinaryOp::Greater | BinaryOp::GreaterEq | BinaryOp::Equal)
            | Op::OneHot { .. }
            | Op::Bucketize { .. }
            | Op::RandomUniform { .. }
            | Op::LowerTriangle { .. }
            | Op::Const { .. }
            | Op::BatchSize
    )
}

/// The gradient contributions `(operand position, gradient)` of instruction `y = inst` given the
/// adjoint `g` of its result.
fn rule(b: &mut Builder, y: ValueId, inst: &Inst, g: ValueId) -> Vec<(usize, ValueId)> {
    let a = |i: usize| inst.args[i];
    match &inst.op {
        Op::Arg { .. } | Op::Const { .. } | Op::BatchSize | Op::RandomUniform { .. } => vec![],
        Op::Unary(u) => {
            let x = a(0);
            let dx = match u {
                UnaryOp::Neg => b.neg(g),
                UnaryOp::Exp => b.mul(g, y),
                UnaryOp::Log => b.div(g, x),
                UnaryOp::Sqrt => {
                    let two_y = b.mul_scalar(y, 2.0);
                    b.div(g, two_y)
                }
                UnaryOp::Tanh => {
                    let y2 = b.square(y);
                    let one = b.constant(1.0);
                    let d = b.sub(one, y2);
                    b.mul(g, d)
                }
                UnaryOp::Sigmoid => {
                    let one = b.constant(1.0);
                    let om = b.sub(one, y);
                    let d = b.mul(y, om);
                    b.mul(g, d)
                }
                UnaryOp::Erf => {
                    // d/dx erf(x) = 2/sqrt(pi) * exp(-x^2)
                    let x2 = b.square(x);
                    let nx2 = b.neg(x2);
                    let e = b.exp(nx2);
                    let d = b.mul_scalar(e, std::f64::consts::FRAC_2_SQRT_PI);
                    b.mul(g, d)
                }
                UnaryOp::Abs => {
                    let s = b.unary(UnaryOp::Sign, x);
                    b.mul(g, s)
                }
                UnaryOp::Sign | UnaryOp::ToFloat | UnaryOp::StopGradient => return vec![],
            };
            vec![(0, dx)]
        }
        Op::Binary(op) => {
            let (x0, x1) = (a(0), a(1));
            match op {
                BinaryOp::Add => vec![(0, g), (1, g)],
                BinaryOp::Sub => {
                    let ng = b.neg(g);
                    vec![(0, g), (1, ng)]
                }
                BinaryOp::Mul => {
                    let d0 = b.mul(g, x1);
                    let d1 = b.mul(g, x0);
                    vec![(0, d0), (1, d1)]
                }
                BinaryOp::Div => {
                    let d0 = b.div(g, x1);
                    let gy = b.mul(g, y);
                    let q = b.div(gy, x1);
                    let d1 = b.neg(q);
                    vec![(0, d0), (1, d1)]
                }
                BinaryOp::Max | BinaryOp::Min => {
                    // The left operand wins strictly; ties send the gradient right. The mask
                    // compares the result with the right operand: `max(a, b) > b` is exactly
                    // `a > b` (NaN on either side makes both false), and reading the result,
                    // which the forward pass keeps anyway, lets `a` (a ReLU's pre-activation)
                    // fuse into its one use instead of being kept for the backward pass.
                    let left = if *op == BinaryOp::Max {
                        b.binary(BinaryOp::Greater, y, x1)
                    } else {
                        b.binary(BinaryOp::Greater, x1, y)
                    };
                    let zero = b.zeros_like(g);
                    let d0 = b.select(left, g, zero);
                    let d1 = b.select(left, zero, g);
                    vec![(0, d0), (1, d1)]
                }
                BinaryOp::Pow => {
                    // d/da a^p = p * a^(p-1); d/dp a^p = a^p * ln a
                    let one = b.constant(1.0);
                    let pm1 = b.sub(x1, one);
                    let ap = b.binary(BinaryOp::Pow, x0, pm1);
                    let d = b.mul(x1, ap);
                    let d0 = b.mul(g, d);
                    let la = b.log(x0);
                    let yl = b.mul(y, la);
                    let d1 = b.mul(g, yl);
                    vec![(0, d0), (1, d1)]
                }
                BinaryOp::Greater | BinaryOp::GreaterEq | BinaryOp::Equal => vec![],
            }
        }
        Op::Select => {
            let zero = b.zeros_like(g);
            let d1 = b.select(a(0), g, zero);
            let d2 = b.select(a(0), zero, g);
            vec![(1, d1), (2, d2)]
        }
        Op::Reduce {
            op,
            axes,
            keep_dims,
        } => {
            let x = a(0);
            let xs = b.shape(x).clone();
            let kept: Shape = xs
                .iter()
                .enumerate()
                .map(|(i, &d)| if axes.contains(&i) { Dim::Fixed(1) } else { d })
                .collect();
            let g_kept = if *keep_dims {
                g
            } else {
                b.reshape(g, kept.clone())
            };
            match op {
                ReduceOp::Sum => {
                    let dx = b.broadcast_to(g_kept, &xs);
                    vec![(0, dx)]
                }
                ReduceOp::Max => {
                    // Split equally among ties, as TensorFlow's reduce_max gradient.
                    let y_kept = if *keep_dims { y } else { b.reshape(y, kept) };
                    let y_b = b.broadcast_to(y_kept, &xs);
                    let mask = b.binary(BinaryOp::Equal, x, y_b);
                    let count = b.sum(mask, axes, true);
                    let share = b.div(g_kept, count);
                    let share_b = b.broadcast_to(share, &xs);
                    let dx = b.mul(mask, share_b);
                    vec![(0, dx)]
                }
            }
        }
        Op::MatMul {
            transpose_a: ta,
            transpose_b: tb,
        } => {
            let (x0, x1) = (a(0), a(1));
            let d0 = if !ta {
                b.matmul(g, x1, false, !tb)
            } else {
                b.matmul(x1, g, *tb, true)
            };
            let d1 = if !tb {
                b.matmul(x0, g, !ta, false)
            } else {
                b.matmul(g, x0, true, *ta)
            };
            vec![(0, d0), (1, d1)]
        }
        Op::Conv2d { window } => {
            let (x, k) = (a(0), a(1));
            let xs = b.shape(x).clone();
            let hw = [xs[1].fixed().unwrap_or(0), xs[2].fixed().unwrap_or(0)];
            let dx = b.push(
                Op::Conv2dBackInput {
                    window: window.clone(),
                    input_hw: hw,
                },
                vec![g, k],
            );
            let dk = b.push(
                Op::Conv2dBackKernel {
                    window: window.clone(),
                },
                vec![x, g],
            );
            vec![(0, dx), (1, dk)]
        }
        Op::Pool2d { kind, window } => {
            let dx = b.push(
                Op::Pool2dBack {
                    kind: *kind,
                    window: window.clone(),
                },
                vec![a(0), g],
            );
            vec![(0, dx)]
        }
        Op::Conv2dBackInput { .. } | Op::Conv2dBackKernel { .. } | Op::Pool2dBack { .. } => {
            panic!(
                "internal compiler error: second-order gradients of {} are not supported",
                inst.op.name()
            )
        }
        Op::Reshape { .. } => {
            let xs = b.shape(a(0)).clone();
            vec![(0, b.reshape(g, xs))]
        }
        Op::Permute { perm } => {
            let mut inv = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inv[p] = i;
            }
            vec![(0, b.permute(g, inv))]
        }
        Op::Broadcast { shape } => {
            let xs = b.shape(a(0)).clone();
            let axes: Vec<usize> = (0..shape.len()).filter(|&i| xs[i] != shape[i]).collect();
            let dx = b.sum(g, &axes, true);
            vec![(0, dx)]
        }
        Op::Slice { axis, start, end } => {
            let d = b.shape(a(0))[*axis].fixed().unwrap_or(0);
            let dx = b.push(
                Op::Pad {
                    axis: *axis,
                    before: *start,
                    after: d - end,
                },
                vec![g],
            );
            vec![(0, dx)]
        }
        Op::Pad { axis, before, .. } => {
            let d = b.shape(a(0))[*axis].fixed().unwrap_or(0);
            vec![(0, b.slice(g, *axis, *before, before + d))]
        }
        Op::Concat { axis } => {
            let mut start = 0;
            let mut out = Vec::new();
            for (i, &x) in inst.args.iter().enumerate() {
                let d = b.shape(x)[*axis].fixed().unwrap_or(0);
                out.push((i, b.slice(g, *axis, start, start + d)));
                start += d;
            }
            out
        }
        Op::Gather => {
            let rows = b.shape(a(0))[0].fixed().unwrap_or(0);
            let dt = b.push(Op::ScatterAdd { rows }, vec![a(1), g]);
            vec![(0, dt)]
        }
        Op::ScatterAdd { .. }
        | Op::OneHot { .. }
        | Op::Bucketize { .. }
        | Op::LowerTriangle { .. } => vec![],
    }
}
