//! The human-readable text form of IR functions (`fmc compile --emit ir`). Deterministic, one
//! instruction per line: `%12 = matmul %10, %3 : f32[N, 128]`.

use super::*;
use std::fmt::Write;

pub fn dim_str(d: Dim) -> String {
    match d {
        Dim::Batch(1) => "N".into(),
        Dim::Batch(k) => format!("N*{k}"),
        Dim::Fixed(x) => x.to_string(),
    }
}

pub fn shape_str(s: &[Dim]) -> String {
    let dims: Vec<String> = s.iter().map(|&d| dim_str(d)).collect();
    format!("[{}]", dims.join(", "))
}

fn ty(shape: &[Dim], dtype: DType) -> String {
    format!("{}{}", dtype.name(), shape_str(shape))
}

fn window(w: &Window) -> String {
    format!(
        "kernel={}x{} stride={}x{} dilation={}x{} pad={}:{},{}:{}",
        w.kernel[0],
        w.kernel[1],
        w.stride[0],
        w.stride[1],
        w.dilation[0],
        w.dilation[1],
        w.pad[0].0,
        w.pad[0].1,
        w.pad[1].0,
        w.pad[1].1
    )
}

/// The attributes of an op, printed after its operands (`axes=[1] keep_dims`).
pub fn attrs(op: &Op) -> String {
    match op {
        Op::Const { value } => format!("{value:?}"),
        Op::Reduce {
            axes, keep_dims, ..
        } => {
            format!(
                "axes={axes:?}{}",
                if *keep_dims { " keep_dims" } else { "" }
            )
        }
        Op::MatMul {
            transpose_a,
            transpose_b,
        } => {
            let mut s = String::new();
            if *transpose_a {
                s.push_str("transpose_a");
            }
            if *transpose_b {
                if !s.is_empty() {
                    s.push(' ');
                }
                s.push_str("transpose_b");
            }
            s
        }
        Op::Conv2d { window: w }
        | Op::Conv2dBackKernel { window: w }
        | Op::Pool2d { window: w, .. }
        | Op::Pool2dBack { window: w, .. } => window(w),
        Op::Conv2dBackInput {
            window: w,
            input_hw,
        } => {
            format!("{} input={}x{}", window(w), input_hw[0], input_hw[1])
        }
        Op::Permute { perm } => format!("perm={perm:?}"),
        Op::Slice { axis, start, end } => format!("axis={axis} {start}..{end}"),
        Op::Pad {
            axis,
            before,
            after,
        } => format!("axis={axis} before={before} after={after}"),
        Op::Concat { axis } => format!("axis={axis}"),
        Op::ScatterAdd { rows } => format!("rows={rows}"),
        Op::OneHot { depth } => format!("depth={depth}"),
        Op::RandomUniform { salt, .. } => format!("salt={salt}"),
        Op::LowerTriangle { rows, cols } => format!("{rows}x{cols}"),
        Op::Bucketize { edges } => {
            let parts: Vec<String> = edges.iter().map(|e| format!("{e:?}")).collect();
            format!("edges=[{}]", parts.join(", "))
        }
        _ => String::new(),
    }
}

fn arg_kind(k: &ArgKind) -> String {
    match k {
        ArgKind::Input => "input".into(),
        ArgKind::Target => "target".into(),
        ArgKind::Param(_) => "param".into(),
        ArgKind::OptSlot { .. } => "opt".into(),
        ArgKind::LearningRate => "lr".into(),
        ArgKind::Step => "step".into(),
        ArgKind::Grad(_) => "grad".into(),
    }
}

/// Prints a whole function, then its kernels when the fusion pass has chosen them.
pub fn print_function(f: &Function) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "fn {}(", f.name);
    let mut arg_values = vec![0; f.args.len()];
    for (v, inst) in f.insts.iter().enumerate() {
        if let Op::Arg { index } = inst.op {
            arg_values[index] = v;
        }
    }
    for (i, a) in f.args.iter().enumerate() {
        let _ = writeln!(
            out,
            "    %{}: {} {} \"{}\",",
            arg_values[i],
            ty(&a.shape, a.dtype),
            arg_kind(&a.kind),
            a.name
        );
    }
    let _ = writeln!(out, ") {{");
    for (v, inst) in f.insts.iter().enumerate() {
        if matches!(inst.op, Op::Arg { .. }) {
            continue;
        }
        let operands: Vec<String> = inst.args.iter().map(|a| format!("%{a}")).collect();
        let attrs = attrs(&inst.op);
        let mut line = format!("    %{v} = {}", inst.op.name());
        if !operands.is_empty() {
            line.push(' ');
            line.push_str(&operands.join(", "));
        }
        if !attrs.is_empty() {
            line.push(' ');
            line.push_str(&attrs);
        }
        let _ = writeln!(out, "{line} : {}", ty(&inst.shape, inst.dtype));
    }
    let _ = writeln!(out, "    return");
    for r in &f.results {
        let _ = writeln!(out, "        \"{}\" = %{}", r.name, r.value);
    }
    let _ = writeln!(out, "}}");
    if let Some(plan) = &f.kernels {
        out.push_str(&kernels::print_plan(f, plan));
    }
    out
}
