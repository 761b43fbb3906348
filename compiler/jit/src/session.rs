//! The JIT as an [`Executor`](fm_compiler::exec::Executor): a training session whose step functions
//! run as compiled code.
//!
//! A function the JIT refuses (an op or shape it cannot compile) runs on the interpreter
//! instead; [`new_session`] reports which, and why, so `fmc -v` can say so. Nothing is ever
//! silently computed differently: the refusal happens at compile time, before any step.

use super::{compile, CompileStats, Compiled};
use fm_compiler::exec::{Executor, Interp, ResultWatch, Session};
use fm_compiler::graph::ModelGraph;
use fm_compiler::interp::{self, Context, Value};
use fm_compiler::ir::Function;
use fm_runtime::config::TrainSpec;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Runs functions through the JIT, remembering the compilation of each function by name so a
/// step does not re-hash the function (a function replaced by a different one is recompiled).
#[derive(Default)]
pub struct JitExecutor {
    /// By function name: the compilation, and the identity of the function last found equal to
    /// its source (see [`Identity`]).
    compiled: Mutex<HashMap<String, (Arc<Compiled>, Identity)>>,
    /// Functions (by name) the JIT refused, with the reason; they run on the interpreter.
    refused: HashMap<String, String>,
}

impl JitExecutor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Compiles `f` ahead of its first run. If the JIT refuses it, `f` is remembered to run on
    /// the interpreter and the reason is returned as the error; otherwise the compile
    /// statistics, and whether the process had compiled `f` before.
    pub fn prepare(&mut self, f: &Function) -> Result<(CompileStats, bool), String> {
        let cached = super::is_cached(f);
        match self.get(f) {
            Ok(c) => Ok((c.stats().clone(), cached)),
            Err(reason) => {
                self.refused.insert(f.name.clone(), reason.clone());
                Err(reason)
            }
        }
    }

    fn get(&self, f: &Function) -> Result<Arc<Compiled>, String> {
        let mut map = self
            .compiled
            .lock()
            .map_err(|_| "JIT backend lock poisoned")?;
        let id = Identity::of(f);
        if let Some((c, seen)) = map.get_mut(&f.name) {
            // Comparing whole functions cost about 15% of a batch-1 prediction; the same
            // function object, unchanged in size, was compared already.
            if *seen == id {
                return Ok(c.clone());
            }
            if c.function() == f {
                *seen = id;
                return Ok(c.clone());
            }
        }
        let c = compile(f)?;
        map.insert(f.name.clone(), (c.clone(), id));
        Ok(c)
    }
}

/// Where a function and its instructions live, and how many there are: a function run again
/// from the same place (a session's step, eval or predict function) is taken to be the function
/// compared before. A session's functions are made once and then only read; a function
/// replaced by another (a new instruction list, allocated while the old one was alive) is
/// compared in full and recompiled if it differs. An edit in place of an instruction of a
/// function already run is not noticed.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Identity {
    function: usize,
    insts: usize,
    lens: (usize, usize, usize),
}

impl Identity {
    fn of(f: &Function) -> Identity {
        Identity {
            function: f as *const Function as usize,
            insts: f.insts.as_ptr() as usize,
            lens: (f.args.len(), f.insts.len(), f.results.len()),
        }
    }
}

impl Executor for JitExecutor {
    fn run(
        &self,
        f: &Function,
        args: &[Value<f32>],
        ctx: Context,
    ) -> Result<Vec<Value<f32>>, String> {
        if self.refused.contains_key(&f.name) {
            return interp::run(f, args, ctx);
        }
        self.get(f)?.run(args, ctx)
    }

    fn run_in_place(
        &self,
        f: &Function,
        args: &mut [Value<f32>],
        updates: &[Option<usize>],
        ctx: Context,
        results: &mut Vec<Value<f32>>,
    ) -> Result<(), String> {
        if self.refused.contains_key(&f.name) {
            return Interp.run_in_place(f, args, updates, ctx, results);
        }
        self.get(f)?.run_in_place(args, updates, ctx, results)
    }

    fn run_watched(
        &self,
        f: &Function,
        args: &[Value<f32>],
        ctx: Context,
        groups: &[Vec<usize>],
        watch: &mut dyn ResultWatch,
    ) -> Result<Vec<Value<f32>>, String> {
        if self.refused.contains_key(&f.name) {
            return Interp.run_watched(f, args, ctx, groups, watch);
        }
        self.get(f)?.run_watched(args, ctx, groups, watch)
    }
}

/// How compiling a session's functions went.
#[derive(Clone, Debug, Default)]
pub struct JitReport {
    /// One entry per compiled function; `cached` when this process had compiled it before.
    pub compiled: Vec<(CompileStats, bool)>,
    /// Functions left to the interpreter: (function name, the JIT's reason).
    pub refused: Vec<(String, String)>,
}

/// A [`Session`] (same API as the interpreter's) whose functions run compiled. Compiles the
/// train step(s), eval and predict functions up front so that refusals surface here, not mid-run.
pub fn new_session(graph: ModelGraph, spec: TrainSpec) -> Result<(Session, JitReport), String> {
    Ok(into_jit(Session::new(graph, spec)?))
}

/// Makes `session` (its state kept) run its functions through the JIT, compiling them now.
pub fn into_jit(session: Session) -> (Session, JitReport) {
    let mut exec = JitExecutor::new();
    let mut report = JitReport::default();
    let functions = std::iter::once(&session.train_fn)
        .chain(&session.more_steps)
        .chain([&session.eval_fn, &session.predict_fn]);
    for f in functions {
        match exec.prepare(f) {
            Ok(done) => report.compiled.push(done),
            Err(reason) => report.refused.push((f.name.clone(), reason)),
        }
    }
    (session.with_backend(Box::new(exec)), report)
}
