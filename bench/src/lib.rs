//! Shared setup of fm's benchmarks: which example models are measured at which batch sizes, how
//! each model is compiled for a backend, and the synthetic batches fed to it.
//!
//! Both the criterion suite (`benches/train_step.rs`) and the JSON-lines binary
//! (`src/main.rs`, what `bench/run.sh` aggregates) use this module, so they measure exactly the
//! same thing: one call to the backend's `train_step` (forward, backward, loss and optimizer
//! update) or `predict` on a batch that is already in memory. Data loading, shuffling and
//! progress printing are outside the measured region, as in the Keras and PyTorch scripts.

use std::path::{Path, PathBuf};

mod emitted;

use fm_compiler::exec::Session;
use fm_compiler::graph::ModelGraph;
use fm_compiler::ir::{eval_shape, ArgKind};
use fm_runtime::config::TrainSpec;
use fm_runtime::tensor::{DType, Tensor};
use ndarray::{ArrayD, IxDyn};

/// One example model and the batch sizes it is measured at.
#[derive(Clone, Copy, Debug)]
pub struct BenchModel {
    /// The name used in reports (the example's file stem).
    pub name: &'static str,
    /// The `.fm` file, relative to the workspace root.
    pub file: &'static str,
    pub batches: &'static [usize],
}

/// The models of the benchmark table. `bench/compare/*.py` define the same models by hand; keep
/// the names and batch sizes in step with `MODELS` there.
pub const MODELS: &[BenchModel] = &[
    BenchModel {
        name: "digits_mlp",
        file: "examples/digits_mlp.fm",
        batches: &[32, 128],
    },
    BenchModel {
        name: "digits_cnn",
        file: "examples/digits_cnn.fm",
        batches: &[32],
    },
    BenchModel {
        name: "mnist_mlp",
        file: "examples/mnist_mlp.fm",
        batches: &[32, 128],
    },
    BenchModel {
        name: "mnist_cnn",
        file: "examples/mnist_cnn.fm",
        batches: &[32],
    },
];

/// The workspace root (the parent of this crate), where `examples/` lives.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// An execution backend of fm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// The reference interpreter: one IR primitive at a time on ndarray, single-threaded. It is
    /// the correctness oracle, not the fast path.
    Interp,
    /// The Cranelift JIT: the same functions compiled to native code (the default backend).
    Jit,
    /// The same functions emitted as Rust by `fm::model!` and compiled into this binary by
    /// rustc (`src/emitted.rs`).
    Macro,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Interp => "interp",
            BackendKind::Jit => "jit",
            BackendKind::Macro => "macro",
        }
    }

    pub fn parse(name: &str) -> Option<BackendKind> {
        match name {
            "interp" => Some(BackendKind::Interp),
            "jit" => Some(BackendKind::Jit),
            "macro" => Some(BackendKind::Macro),
            _ => None,
        }
    }

    /// Backends this build can run (the default of `fm-bench --backends`).
    pub fn available() -> Vec<BackendKind> {
        vec![BackendKind::Interp, BackendKind::Jit]
    }
}

/// What a benchmark drives: a model compiled for one backend, with its parameters and
/// optimizer state.
pub trait Runner {
    /// One optimizer step; returns the loss.
    fn train_step(&mut self, inputs: &[Tensor], targets: &[Tensor]) -> Result<f64, String>;
    /// Inference on a batch; returns the outputs.
    fn predict(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, String>;
}

/// A session (interpreter or JIT executor), stepping with the `train` section's base learning rate.
struct SessionRunner {
    session: Session,
    lr: f32,
}

impl Runner for SessionRunner {
    fn train_step(&mut self, inputs: &[Tensor], targets: &[Tensor]) -> Result<f64, String> {
        Ok(self.session.train_step(inputs, targets, self.lr)?.loss)
    }
    fn predict(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, String> {
        self.session.predict(inputs)
    }
}

/// A checked model with its training setup, and the shapes of its step's data arguments.
pub struct Prepared {
    pub graph: ModelGraph,
    pub spec: TrainSpec,
    /// `(dtype, per-sample shape)` of each input, in argument order.
    inputs: Vec<(DType, Vec<usize>)>,
    /// `(dtype, per-sample shape, classes)` of each target; `classes` bounds integer labels.
    targets: Vec<(DType, Vec<usize>, usize)>,
}

/// Reads and checks `model.file`, taking its first model and that model's `train` section.
pub fn prepare(model: &BenchModel) -> Result<Prepared, String> {
    let path = workspace_root().join(model.file);
    let source = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let checked = fm_compiler::check::check_source(&source, &path);
    if checked.has_errors() {
        return Err(format!("{} does not check", path.display()));
    }
    let graph = checked
        .models
        .first()
        .cloned()
        .ok_or_else(|| format!("{} declares no model", path.display()))?;
    let spec = checked
        .trains
        .iter()
        .find(|t| t.model == graph.name)
        .cloned()
        .ok_or_else(|| {
            format!(
                "{} has no train section for `{}`",
                path.display(),
                graph.name
            )
        })?;
    // The data arguments of the train step, with the batch axis evaluated at 1 and dropped.
    let train_fn = fm_compiler::lower::train_step_fn(&graph, &spec);
    let per_sample = |shape: &[fm_compiler::ir::Dim]| eval_shape(shape, 1)[1..].to_vec();
    let inputs = train_fn
        .args
        .iter()
        .filter(|a| matches!(a.kind, ArgKind::Input))
        .map(|a| (a.dtype, per_sample(&a.shape)))
        .collect();
    let targets = train_fn
        .args
        .iter()
        .filter(|a| matches!(a.kind, ArgKind::Target))
        .zip(&graph.outputs)
        .map(|(a, out)| {
            let classes = graph.nodes[out.node].shape.last().copied().unwrap_or(1);
            (a.dtype, per_sample(&a.shape), classes)
        })
        .collect();
    Ok(Prepared {
        graph,
        spec,
        inputs,
        targets,
    })
}

/// Compiles the prepared model for `backend` with freshly initialised parameters.
pub fn build(prepared: &Prepared, backend: BackendKind) -> Result<Box<dyn Runner>, String> {
    match backend {
        BackendKind::Interp => Ok(Box::new(SessionRunner {
            session: Session::new(prepared.graph.clone(), prepared.spec.clone())?,
            lr: prepared.spec.optimizer.lr as f32,
        })),
        // The JIT session has the interpreter's API; compile time is paid here, not per step.
        BackendKind::Jit => {
            let (session, report) =
                fm_jit::session::new_session(prepared.graph.clone(), prepared.spec.clone())?;
            if let Some((f, why)) = report.refused.first() {
                return Err(format!("the JIT refused `{f}`: {why}"));
            }
            Ok(Box::new(SessionRunner {
                session,
                lr: prepared.spec.optimizer.lr as f32,
            }))
        }
        BackendKind::Macro => {
            let model =
                emitted::model(&prepared.graph.name, prepared.spec.seed).ok_or_else(|| {
                    format!(
                        "`{}` is not compiled by model! in this binary",
                        prepared.graph.name
                    )
                })?;
            Ok(Box::new(MacroRunner {
                model,
                lr: prepared.spec.optimizer.lr as f32,
            }))
        }
    }
}

/// A model compiled by `model!`, stepping with the `train` section's base learning rate (as
/// [`SessionRunner`]: the schedule is outside the measured step).
struct MacroRunner {
    model: fm::compiled::Model,
    lr: f32,
}

impl Runner for MacroRunner {
    fn train_step(&mut self, inputs: &[Tensor], targets: &[Tensor]) -> Result<f64, String> {
        use fm_runtime::train::Backend;
        Ok(self
            .model
            .train_step(inputs, targets, self.lr)
            .map_err(|e| e.to_string())?
            .loss)
    }
    fn predict(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, String> {
        self.model.predict_batch(inputs).map_err(|e| e.to_string())
    }
}

/// A batch of `batch` samples: inputs uniform in [0, 1), integer labels uniform over the
/// classes, float targets uniform in [0, 1). Deterministic in `seed`.
pub fn synthetic_batch(prepared: &Prepared, batch: usize, seed: u64) -> (Vec<Tensor>, Vec<Tensor>) {
    let mut rng = SplitMix64(seed);
    let mut make = |dtype: DType, sample: &[usize], classes: usize| {
        let mut shape = vec![batch];
        shape.extend_from_slice(sample);
        let count: usize = shape.iter().product();
        match dtype {
            DType::F32 => Tensor::F32(ArrayD::from_shape_fn(IxDyn(&shape), |_| rng.unit())),
            DType::I32 => {
                let values = (0..count)
                    .map(|_| (rng.next() % classes.max(1) as u64) as i32)
                    .collect();
                // `count` is the product of `shape`, so this cannot fail.
                Tensor::I32(ArrayD::from_shape_vec(IxDyn(&shape), values).expect("shape"))
            }
        }
    };
    let inputs = prepared
        .inputs
        .iter()
        .map(|(dtype, shape)| make(*dtype, shape, 1))
        .collect();
    let targets = prepared
        .targets
        .iter()
        .map(|(dtype, shape, classes)| make(*dtype, shape, *classes))
        .collect();
    (inputs, targets)
}

/// SplitMix64: a tiny deterministic generator, enough for benchmark data.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1) with 24 random bits.
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}
