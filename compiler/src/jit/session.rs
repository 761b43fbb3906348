//! The JIT as an [`exec::Executor`](crate::exec::Executor): a training session whose step
//! functions run as compiled code.

use super::{compile, Compiled};
use crate::exec::{Executor, Session};
use crate::graph::ModelGraph;
use crate::interp::{Context, Value};
use crate::ir::Function;
use fm_runtime::config::TrainSpec;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Runs functions through the JIT, remembering the compilation of each function by name so a
/// step does not re-hash the function (a changed function is recompiled).
#[derive(Default)]
pub struct JitExecutor {
    compiled: Mutex<HashMap<String, Arc<Compiled>>>,
}

impl JitExecutor {
    pub fn new() -> Self {
        Self::default()
    }

    fn get(&self, f: &Function) -> Result<Arc<Compiled>, String> {
        let mut map = self
            .compiled
            .lock()
            .map_err(|_| "JIT backend lock poisoned")?;
        if let Some(c) = map.get(&f.name) {
            if c.function() == f {
                return Ok(c.clone());
            }
        }
        let c = compile(f)?;
        map.insert(f.name.clone(), c.clone());
        Ok(c)
    }
}

impl Executor for JitExecutor {
    fn run(
        &self,
        f: &Function,
        args: &[Value<f32>],
        ctx: Context,
    ) -> Result<Vec<Value<f32>>, String> {
        self.get(f)?.run(args, ctx)
    }
}

/// A [`Session`] (same API as the interpreter's) whose functions run compiled. Compiles the
/// train, eval and predict functions up front so that errors surface here.
pub fn new_session(graph: ModelGraph, spec: TrainSpec) -> Result<Session, String> {
    let backend = JitExecutor::new();
    let s = Session::new(graph, spec)?;
    for f in [&s.train_fn, &s.eval_fn, &s.predict_fn] {
        backend.get(f)?;
    }
    Ok(s.with_backend(Box::new(backend)))
}
