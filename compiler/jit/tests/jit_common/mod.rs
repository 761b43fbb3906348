//! Helpers shared by the JIT test files: loading examples, synthetic batches, and the
//! tolerance used to compare compiled code with the interpreter.

#![allow(dead_code)]

use fm_compiler::exec::Session;
use fm_compiler::graph::ModelGraph;
use fm_compiler::ir::{eval_shape, ArgKind, Function};
use fm_runtime::config::TrainSpec;
use fm_runtime::tensor::{DType, Tensor};
use ndarray::{ArrayD, IxDyn};
use std::path::{Path, PathBuf};

pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// The model and `train` setup of an example file (which must have exactly one of each).
pub fn load_example(name: &str) -> (ModelGraph, TrainSpec) {
    let (_, checked) = fm_compiler::check::check_file(&examples_dir().join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(!checked.has_errors(), "{name}: {:?}", checked.diagnostics);
    let graph = checked.models[0].clone();
    let spec = checked
        .trains
        .iter()
        .find(|t| t.model == graph.name)
        .cloned()
        .unwrap_or_else(|| panic!("{name}: no train section"));
    (graph, spec)
}

/// A small deterministic generator (xorshift64*), so tests need no extra crate.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    pub fn below(&mut self, n: usize) -> i32 {
        (self.next_u64() % n.max(1) as u64) as i32
    }
}

/// A tensor for argument `index` of `f` at batch size `n`: floats in [-1, 1) (or [0, 1) for
/// targets, which suits every loss), integers in `0..classes` (token ids and class labels).
pub fn synthetic_arg(
    f: &Function,
    index: usize,
    n: usize,
    classes: usize,
    rng: &mut Rng,
) -> Tensor {
    let a = &f.args[index];
    let shape = eval_shape(&a.shape, n);
    let count: usize = shape.iter().product();
    match a.dtype {
        DType::F32 => {
            let target = matches!(a.kind, ArgKind::Target);
            let data = (0..count)
                .map(|_| {
                    let u = rng.unit();
                    if target {
                        u
                    } else {
                        2.0 * u - 1.0
                    }
                })
                .collect();
            Tensor::F32(ArrayD::from_shape_vec(IxDyn(&shape), data).unwrap())
        }
        DType::I32 => {
            let data = (0..count).map(|_| rng.below(classes)).collect();
            Tensor::I32(ArrayD::from_shape_vec(IxDyn(&shape), data).unwrap())
        }
    }
}

/// Synthetic inputs and targets of a session's train step for batch size `n`.
pub fn synthetic_batch(s: &Session, n: usize, seed: u64) -> (Vec<Tensor>, Vec<Tensor>) {
    let mut rng = Rng::new(seed);
    let f = &s.train_fn;
    // Integer values must index every embedding table and class axis: 2 is always in range.
    let classes = 2;
    let mut inputs = Vec::new();
    let mut targets = Vec::new();
    for (i, a) in f.args.iter().enumerate() {
        match a.kind {
            ArgKind::Input => inputs.push(synthetic_arg(f, i, n, classes, &mut rng)),
            ArgKind::Target => targets.push(synthetic_arg(f, i, n, classes, &mut rng)),
            _ => {}
        }
    }
    (inputs, targets)
}

/// Largest difference of `got` from `want`, relative to `max(|want|, floor)`: values much
/// smaller than `floor` (gradients that cancel to rounding noise) are compared absolutely.
pub fn max_rel_diff(got: &ArrayD<f32>, want: &ArrayD<f32>, floor: f32) -> f32 {
    assert_eq!(got.shape(), want.shape());
    got.iter()
        .zip(want.iter())
        .map(|(&g, &w)| {
            if g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()) {
                0.0
            } else {
                (g - w).abs() / w.abs().max(floor)
            }
        })
        .fold(0.0, f32::max)
}

pub fn tensor_f32(t: &Tensor) -> ArrayD<f32> {
    t.to_f32()
}

/// Debugging aid: runs `f` with every instruction made a result on both backends and returns
/// the first instruction whose values differ by more than `tol` (index, op name, difference).
pub fn first_divergence(
    f: &Function,
    args: &[fm_compiler::interp::Value<f32>],
    ctx: fm_compiler::interp::Context,
    tol: f32,
) -> Option<(usize, String, f32)> {
    use fm_compiler::interp::Value;
    use fm_compiler::ir::{FnResult, ResultKind};
    let mut g = f.clone();
    g.results = (0..f.insts.len())
        .map(|v| FnResult {
            name: format!("v{v}"),
            kind: ResultKind::Output(v),
            value: v,
        })
        .collect();
    let want = fm_compiler::interp::run(&g, args, ctx).unwrap();
    let got = fm_jit::run(&g, args, ctx).unwrap();
    for (v, (a, b)) in got.iter().zip(&want).enumerate() {
        let d = match (a, b) {
            (Value::F(a), Value::F(b)) => max_rel_diff(a, b, 1e-2),
            (Value::I(a), Value::I(b)) if a == b => 0.0,
            _ => f32::INFINITY,
        };
        if d > tol {
            return Some((v, f.insts[v].op.name().to_string(), d));
        }
    }
    None
}

/// `x`, or a zero of its sign when it is subnormal: what compiled code (which runs with
/// FTZ/DAZ) sees of an input and makes of a result.
pub fn flush(x: f32) -> f32 {
    if x != 0.0 && x.abs() < f32::MIN_POSITIVE {
        0.0f32.copysign(x)
    } else {
        x
    }
}

/// [`flush`] over a value's floats.
pub fn flush_value(v: &fm_compiler::interp::Value<f32>) -> fm_compiler::interp::Value<f32> {
    use fm_compiler::interp::Value;
    match v {
        Value::F(a) => Value::F(a.mapv(flush)),
        Value::I(a) => Value::I(a.clone()),
    }
}

/// Whether setting FTZ/DAZ really flushes on this machine. Valgrind, for one, ignores those
/// MXCSR bits, so tests that depend on flushing skip their subnormal cases under it.
pub fn ftz_effective() -> bool {
    let _flush = fm_runtime::kernels::FlushDenormals::enable();
    std::hint::black_box(1e-40f32) * std::hint::black_box(1.0f32) == 0.0
}
