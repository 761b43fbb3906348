//! Shape and dtype inference for every op: the one place that knows each op's shape rule. The
//! builder uses it to type new instructions and the verifier to re-check whole functions.

use super::{Dim, Op, Shape, UnaryOp};
use fm_runtime::tensor::DType;

pub type ShapeResult = Result<(Shape, DType), String>;

fn show(s: &[Dim]) -> String {
    super::print::shape_str(s)
}

/// Element count as (coefficient, has batch): `c * N` or `c`.
fn volume(s: &[Dim]) -> (usize, bool) {
    let mut c = 1;
    let mut batched = false;
    for d in s {
        match d {
            Dim::Batch(m) => {
                c *= m;
                batched = true;
            }
            Dim::Fixed(x) => c *= x,
        }
    }
    (c, batched)
}

fn batch_first_only(s: &[Dim]) -> bool {
    s.iter().skip(1).all(|d| matches!(d, Dim::Fixed(_)))
}

/// Infers the result of `op` applied to operands of the given shapes and dtypes.
/// `arg` describes function arguments (looked up by the caller for `Op::Arg`).
pub fn infer(op: &Op, ins: &[(&Shape, DType)]) -> ShapeResult {
    let want = |n: usize| -> Result<(), String> {
        if ins.len() == n {
            Ok(())
        } else {
            Err(format!(
                "{} takes {} operands, got {}",
                op.name(),
                n,
                ins.len()
            ))
        }
    };
    let float = |i: usize| -> Result<(), String> {
        if ins[i].1 == DType::F32 {
            Ok(())
        } else {
            Err(format!("{} operand {} must be f32", op.name(), i))
        }
    };
    match op {
        Op::Arg { .. } => Err("arg shapes come from the function signature".into()),
        Op::Const { .. } | Op::BatchSize => {
            want(0)?;
            Ok((vec![], DType::F32))
        }
        Op::Unary(u) => {
            want(1)?;
            match u {
                UnaryOp::ToFloat => {
                    if ins[0].1 != DType::I32 {
                        return Err("to_f32 takes an i32 operand".into());
                    }
                }
                _ => float(0)?,
            }
            Ok((ins[0].0.clone(), DType::F32))
        }
        Op::Binary(_) => {
            want(2)?;
            float(0)?;
            float(1)?;
            if ins[0].0 != ins[1].0 {
                return Err(format!(
                    "{} operands differ in shape: {} and {}",
                    op.name(),
                    show(ins[0].0),
                    show(ins[1].0)
                ));
            }
            Ok((ins[0].0.clone(), DType::F32))
        }
        Op::Select => {
            want(3)?;
            if ins[0].0 != ins[1].0 || ins[1].0 != ins[2].0 {
                return Err("select operands differ in shape".into());
            }
            Ok((ins[1].0.clone(), DType::F32))
        }
        Op::Reduce {
            axes, keep_dims, ..
        } => {
            want(1)?;
            float(0)?;
            let s = ins[0].0;
            if axes.windows(2).any(|w| w[0] >= w[1]) || axes.iter().any(|&a| a >= s.len()) {
                return Err(format!("bad reduction axes {axes:?} for {}", show(s)));
            }
            let mut out = Vec::new();
            for (i, d) in s.iter().enumerate() {
                if axes.contains(&i) {
                    if *keep_dims {
                        out.push(Dim::Fixed(1));
                    }
                } else {
                    out.push(*d);
                }
            }
            if !batch_first_only(&out) {
                return Err("reduction would move the batch axis".into());
            }
            Ok((out, DType::F32))
        }
        Op::MatMul {
            transpose_a,
            transpose_b,
        } => {
            want(2)?;
            float(0)?;
            float(1)?;
            let (a, b) = (ins[0].0, ins[1].0);
            if a.len() < 2 || a.len() != b.len() {
                return Err(format!(
                    "matmul needs operands of equal rank >= 2: {} and {}",
                    show(a),
                    show(b)
                ));
            }
            let r = a.len();
            if a[..r - 2] != b[..r - 2] {
                return Err(format!(
                    "matmul leading axes differ: {} and {}",
                    show(a),
                    show(b)
                ));
            }
            let (m, ka) = if *transpose_a {
                (a[r - 1], a[r - 2])
            } else {
                (a[r - 2], a[r - 1])
            };
            let (kb, n) = if *transpose_b {
                (b[r - 1], b[r - 2])
            } else {
                (b[r - 2], b[r - 1])
            };
            if ka != kb {
                return Err(format!(
                    "matmul contraction differs: {} and {}",
                    show(a),
                    show(b)
                ));
            }
            let mut out: Shape = a[..r - 2].to_vec();
            out.push(m);
            out.push(n);
            if !batch_first_only(&out) {
                return Err("matmul result would have the batch on an inner axis".into());
            }
            Ok((out, DType::F32))
        }
        Op::Conv2d { window } => {
            want(2)?;
            let (x, k) = (ins[0].0, ins[1].0);
            if x.len() != 4 || k.len() != 4 {
                return Err("conv2d takes [N, H, W, C] and [kh, kw, C, F]".into());
            }
            let kf: Vec<usize> = k.iter().filter_map(|d| d.fixed()).collect();
            if kf.len() != 4
                || kf[0] != window.kernel[0]
                || kf[1] != window.kernel[1]
                || Some(kf[2]) != x[3].fixed()
            {
                return Err(format!(
                    "conv2d kernel {} does not fit input {}",
                    show(k),
                    show(x)
                ));
            }
            let (h, w) = (
                x[1].fixed().ok_or("conv2d H")?,
                x[2].fixed().ok_or("conv2d W")?,
            );
            let [oh, ow] = window
                .out_size(h, w)
                .ok_or("conv2d window larger than input")?;
            Ok((
                vec![x[0], Dim::Fixed(oh), Dim::Fixed(ow), Dim::Fixed(kf[3])],
                DType::F32,
            ))
        }
        Op::Conv2dBackInput { window, input_hw } => {
            want(2)?;
            let (dy, k) = (ins[0].0, ins[1].0);
            let c = k.get(2).copied().ok_or("conv2d_back_input kernel rank")?;
            let [oh, ow] = window.out_size(input_hw[0], input_hw[1]).ok_or("window")?;
            if dy.len() != 4 || dy[1] != Dim::Fixed(oh) || dy[2] != Dim::Fixed(ow) {
                return Err(format!("conv2d_back_input: dy {} does not match", show(dy)));
            }
            Ok((
                vec![dy[0], Dim::Fixed(input_hw[0]), Dim::Fixed(input_hw[1]), c],
                DType::F32,
            ))
        }
        Op::Conv2dBackKernel { window } => {
            want(2)?;
            let (x, dy) = (ins[0].0, ins[1].0);
            if x.len() != 4 || dy.len() != 4 {
                return Err("conv2d_back_kernel takes [N, H, W, C] and [N, OH, OW, F]".into());
            }
            Ok((
                vec![
                    Dim::Fixed(window.kernel[0]),
                    Dim::Fixed(window.kernel[1]),
                    x[3],
                    dy[3],
                ],
                DType::F32,
            ))
        }
        Op::Pool2d { window, .. } => {
            want(1)?;
            let x = ins[0].0;
            if x.len() != 4 {
                return Err("pool2d takes [N, H, W, C]".into());
            }
            let (h, w) = (x[1].fixed().ok_or("H")?, x[2].fixed().ok_or("W")?);
            let [oh, ow] = window
                .out_size(h, w)
                .ok_or("pool window larger than input")?;
            Ok((vec![x[0], Dim::Fixed(oh), Dim::Fixed(ow), x[3]], DType::F32))
        }
        Op::Pool2dBack { .. } => {
            want(2)?;
            Ok((ins[0].0.clone(), DType::F32))
        }
        Op::Reshape { shape } => {
            want(1)?;
            if volume(shape) != volume(ins[0].0) || !batch_first_only(shape) {
                return Err(format!(
                    "cannot reshape {} to {}",
                    show(ins[0].0),
                    show(shape)
                ));
            }
            Ok((shape.clone(), ins[0].1))
        }
        Op::Permute { perm } => {
            want(1)?;
            let s = ins[0].0;
            let mut seen = vec![false; s.len()];
            if perm.len() != s.len()
                || perm
                    .iter()
                    .any(|&p| p >= s.len() || std::mem::replace(&mut seen[p], true))
            {
                return Err(format!("bad permutation {perm:?} of {}", show(s)));
            }
            let out: Shape = perm.iter().map(|&p| s[p]).collect();
            if !batch_first_only(&out) {
                return Err("permute would move the batch axis".into());
            }
            Ok((out, ins[0].1))
        }
        Op::Broadcast { shape } => {
            want(1)?;
            let s = ins[0].0;
            if s.len() != shape.len()
                || s.iter()
                    .zip(shape)
                    .any(|(a, b)| a != b && *a != Dim::Fixed(1))
            {
                return Err(format!("cannot broadcast {} to {}", show(s), show(shape)));
            }
            Ok((shape.clone(), ins[0].1))
        }
        Op::Slice { axis, start, end } => {
            want(1)?;
            let s = ins[0].0;
            let d = s
                .get(*axis)
                .and_then(|d| d.fixed())
                .ok_or("slice axis must be fixed")?;
            if start >= end || *end > d {
                return Err(format!("slice {start}..{end} out of range for {d}"));
            }
            let mut out = s.clone();
            out[*axis] = Dim::Fixed(end - start);
            Ok((out, ins[0].1))
        }
        Op::Pad {
            axis,
            before,
            after,
        } => {
            want(1)?;
            let s = ins[0].0;
            let d = s
                .get(*axis)
                .and_then(|d| d.fixed())
                .ok_or("pad axis must be fixed")?;
            let mut out = s.clone();
            out[*axis] = Dim::Fixed(d + before + after);
            Ok((out, ins[0].1))
        }
        Op::Concat { axis } => {
            if ins.is_empty() {
                return Err("concat of nothing".into());
            }
            let first = ins[0].0;
            let mut total = 0;
            for (s, _) in ins {
                if s.len() != first.len()
                    || s.iter()
                        .zip(first)
                        .enumerate()
                        .any(|(i, (a, b))| i != *axis && a != b)
                {
                    return Err("concat operands differ off the concat axis".into());
                }
                total += s
                    .get(*axis)
                    .and_then(|d| d.fixed())
                    .ok_or("concat axis must be fixed")?;
            }
            let mut out = first.clone();
            out[*axis] = Dim::Fixed(total);
            Ok((out, ins[0].1))
        }
        Op::Gather => {
            want(2)?;
            float(0)?;
            if ins[1].1 != DType::I32 {
                return Err("gather indices must be i32".into());
            }
            let mut out = ins[1].0.clone();
            out.extend_from_slice(&ins[0].0[1..]);
            Ok((out, DType::F32))
        }
        Op::ScatterAdd { rows } => {
            want(2)?;
            let (idx, vals) = (ins[0].0, ins[1].0);
            if vals.len() < idx.len() || vals[..idx.len()] != idx[..] {
                return Err("scatter_add values must start with the index shape".into());
            }
            let mut out = vec![Dim::Fixed(*rows)];
            out.extend_from_slice(&vals[idx.len()..]);
            Ok((out, DType::F32))
        }
        Op::OneHot { depth } => {
            want(1)?;
            let mut out = ins[0].0.clone();
            out.push(Dim::Fixed(*depth));
            Ok((out, DType::F32))
        }
        Op::Bucketize { edges } => {
            want(1)?;
            if ins[0].1 != DType::F32 {
                return Err("bucketize reads f32".into());
            }
            if edges.windows(2).any(|w| w[0] > w[1]) || edges.iter().any(|e| !e.is_finite()) {
                return Err("bucketize edges must be finite and ascending".into());
            }
            Ok((ins[0].0.clone(), DType::I32))
        }
        Op::LowerTriangle { rows, cols } => {
            want(0)?;
            Ok((vec![Dim::Fixed(*rows), Dim::Fixed(*cols)], DType::F32))
        }
        Op::RandomUniform { shape, .. } => {
            want(0)?;
            Ok((shape.clone(), DType::F32))
        }
    }
}
