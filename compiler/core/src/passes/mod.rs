//! Passes over IR functions, as values: each is a [`Pass`] with a name, run by a [`Pipeline`]
//! that verifies the function after every pass (a failure is a compiler bug) and times it.
//!
//! - [`standard`]: `simplify`, `cse`, `dce`, the rewrites every backend runs (they change no
//!   bit of any result);
//! - [`backend`]: `split_sums` (sums in the interpreter's order), `split_concats` (no concat
//!   wider than 64 values) and `fuse` (the kernel plan), which the JIT compiles and
//!   `fmc compile --emit ir-opt` prints.

pub mod cse;
pub mod dce;
pub mod fuse;
pub mod simplify;
pub mod split_concats;
pub mod split_sums;

use crate::ir::verify::verify;
use crate::ir::*;
use std::time::Instant;

/// One transformation of a function. A pass that rewrites instructions returns a function
/// without kernels (`kernels: None`); `fuse` adds them.
pub trait Pass: Send + Sync {
    /// The name `-v` and verifier errors use (`simplify`, `cse`, ...).
    fn name(&self) -> &'static str;
    fn run(&self, f: Function) -> Result<Function, String>;
}

/// A pass made of a plain rewrite function.
pub struct Rewrite {
    pub name: &'static str,
    pub rewrite: fn(&Function) -> Function,
}

impl Pass for Rewrite {
    fn name(&self) -> &'static str {
        self.name
    }
    fn run(&self, f: Function) -> Result<Function, String> {
        Ok((self.rewrite)(&f))
    }
}

/// What one pass cost on one function.
#[derive(Clone, Debug, PartialEq)]
pub struct PassTiming {
    pub pass: &'static str,
    pub ms: f64,
}

/// Passes run in order, each followed by the verifier.
pub struct Pipeline {
    pub passes: Vec<Box<dyn Pass>>,
}

impl Pipeline {
    /// Runs every pass on `f`, verifying after each; returns the result and each pass's time
    /// (the verifier's time included).
    pub fn run(&self, f: Function) -> Result<(Function, Vec<PassTiming>), String> {
        let mut f = f;
        let mut timings = Vec::with_capacity(self.passes.len());
        for pass in &self.passes {
            let start = Instant::now();
            let name = pass.name();
            f = pass.run(f)?;
            verify(&f).map_err(|e| {
                format!(
                    "internal compiler error: after pass `{name}` on `{}`: {e}",
                    f.name
                )
            })?;
            timings.push(PassTiming {
                pass: name,
                ms: start.elapsed().as_secs_f64() * 1e3,
            });
        }
        Ok((f, timings))
    }

    /// The passes by name, in the order given (for `.fmir` tests and tools).
    pub fn named(names: &[&str]) -> Result<Pipeline, String> {
        let passes = names
            .iter()
            .map(|&n| {
                all()
                    .into_iter()
                    .find(|p| p.name() == n)
                    .ok_or_else(|| format!("unknown pass `{n}` (passes: {})", ALL.join(", ")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Pipeline { passes })
    }
}

/// Every pass's name, in pipeline order.
pub const ALL: [&str; 6] = [
    "simplify",
    "cse",
    "dce",
    "split_sums",
    "split_concats",
    "fuse",
];

fn all() -> Vec<Box<dyn Pass>> {
    let mut v = standard().passes;
    v.extend(backend().passes);
    v
}

/// Algebraic simplification, common subexpressions, dead code: what every backend runs.
pub fn standard() -> Pipeline {
    Pipeline {
        passes: vec![
            Box::new(Rewrite {
                name: "simplify",
                rewrite: simplify::simplify,
            }),
            Box::new(Rewrite {
                name: "cse",
                rewrite: cse::cse,
            }),
            Box::new(Rewrite {
                name: "dce",
                rewrite: dce::dce,
            }),
        ],
    }
}

/// What the compiled backends run after [`standard`]: sums split into single axes in the
/// interpreter's order, wide concats split into trees, then the kernel plan.
pub fn backend() -> Pipeline {
    Pipeline {
        passes: vec![
            Box::new(Rewrite {
                name: "split_sums",
                rewrite: split_sums::split_sums,
            }),
            Box::new(Rewrite {
                name: "split_concats",
                rewrite: split_concats::split_concats,
            }),
            Box::new(fuse::Fuse),
        ],
    }
}

/// The standard pipeline on `f` (verified after every pass).
pub fn optimize(f: &Function) -> Result<Function, String> {
    Ok(standard().run(f.clone())?.0)
}

/// Rebuilds `f` keeping instruction `v` when `keep[v]`, with operands renamed through `map`
/// (an operand may be redirected to another value by earlier rewrites).
pub(super) fn rebuild(f: &Function, keep: &[bool], redirect: &[ValueId]) -> Function {
    let mut new_id = vec![usize::MAX; f.insts.len()];
    let mut insts = Vec::new();
    for (v, inst) in f.insts.iter().enumerate() {
        if !keep[v] {
            continue;
        }
        let mut inst = inst.clone();
        for a in inst.args.iter_mut() {
            *a = new_id[redirect[*a]];
        }
        new_id[v] = insts.len();
        insts.push(inst);
    }
    Function {
        name: f.name.clone(),
        args: f.args.clone(),
        insts,
        kernels: None,
        results: f
            .results
            .iter()
            .map(|r| FnResult {
                value: new_id[redirect[r.value]],
                ..r.clone()
            })
            .collect(),
    }
}
