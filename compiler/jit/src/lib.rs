//! The Cranelift JIT backend: compiles an IR [`Function`] to native code and runs it.
//!
//! Pipeline: the core's backend passes (`split_sums`, which puts sums in the interpreter's
//! order, and `fuse`, which chooses the kernels) run first, verified; [`schedule`] turns the
//! planned kernels into kernel calls, [`codegen`] emits one CLIF function per distinct kernel, and [`memory`] plans the
//! buffers for each batch size; [`Compiled::run`] calls the kernels in order. MatMul, convolutions and pooling call the precompiled kernels
//! of `fm_runtime::kernels::ffi`. The driver ([`Compiled::run`]) checks argument shapes before
//! any generated code runs, and flushes denormals (FTZ/DAZ) while it runs. Compiled functions
//! are cached per process by their IR text, which includes every shape (the batch symbolic);
//! buffer plans are made per batch size.

mod codegen;
mod externs;
mod kernel;
mod math;
mod memory;
mod schedule;
pub mod session;

use cranelift_codegen::ir::{Function as ClifFunction, UserFuncName};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, FuncId, Linkage, Module};
use externs::Extern;
use fm_compiler::exec::ResultWatch;
use fm_compiler::interp::{Context, Value};
use fm_compiler::ir::{eval_shape, print::print_function, Function, Op};
use fm_compiler::passes::PassTiming;
use fm_runtime::tensor::DType;
use ndarray::{ArrayD, IxDyn};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

pub use session::JitExecutor;

/// What compiling one function cost and produced (printed by `fmc -v`).
#[derive(Clone, Debug, PartialEq)]
pub struct CompileStats {
    pub function: String,
    /// Kernel calls per run.
    pub calls: usize,
    /// Distinct compiled kernels (equal kernels are shared).
    pub kernels: usize,
    /// IR instructions folded into another instruction's loop.
    pub fused: usize,
    /// CLIF instructions over all compiled functions.
    pub clif_insts: usize,
    /// The backend passes' times (included in `compile_ms`).
    pub passes: Vec<PassTiming>,
    pub compile_ms: f64,
}

/// A compiled kernel: `(operand pointers, batch size, seed, step, first sample) -> status`
/// (0 = ok).
type KernelFn = unsafe extern "C" fn(*const *mut u8, i64, i64, i64, i64) -> i32;

/// A function compiled to native code.
pub struct Compiled {
    /// The function as given (what the cache and `function()` compare against).
    source: Function,
    /// The function after the backend passes, which the schedule and buffers refer to.
    func: Function,
    sched: schedule::Schedule,
    /// The kernel calls in order, each with its operand pointers as (value, element offset).
    calls: Vec<Call>,
    clif: String,
    stats: CompileStats,
    plans: Mutex<Buffers>,
    /// Owns the generated code; never freed (compiled functions live in the process cache).
    _module: ModuleHolder,
}

/// Buffer plans by batch size, and what is reused from run to run (so a run allocates nothing
/// once its batch size has been seen).
#[derive(Default)]
struct Buffers {
    plans: HashMap<usize, Arc<Prepared>>,
    /// 16-byte words, so that every planned (64-byte-rounded) offset is 16-byte aligned.
    arena: Vec<u128>,
    /// Each value's buffer address in the current run (as integers: the struct must be Send).
    bufs: Vec<usize>,
    /// One kernel call's operand pointers.
    ptrs: Vec<usize>,
}

/// What a batch size fixes: the buffer plan and the shapes of the arguments and results.
struct Prepared {
    plan: memory::Plan,
    arg_shapes: Vec<Vec<usize>>,
    result_shapes: Vec<Vec<usize>>,
}

struct ModuleHolder(#[allow(dead_code)] JITModule);
// SAFETY: after `finalize_definitions` the module is only kept alive so that its code stays
// mapped; it is never mutated again, and the generated code itself is reentrant.
unsafe impl Send for ModuleHolder {}
unsafe impl Sync for ModuleHolder {}

fn host_isa() -> Result<Arc<dyn cranelift_codegen::isa::TargetIsa>, String> {
    let mut flags = settings::builder();
    let set = |f: &mut settings::Builder, k: &str, v: &str| {
        f.set(k, v)
            .map_err(|e| format!("internal error: cranelift flag {k}: {e}"))
    };
    set(&mut flags, "opt_level", "speed")?;
    set(
        &mut flags,
        "enable_verifier",
        if cfg!(debug_assertions) {
            "true"
        } else {
            "false"
        },
    )?;
    set(&mut flags, "use_colocated_libcalls", "false")?;
    set(&mut flags, "is_pic", "false")?;
    let isa = cranelift_native::builder()
        .map_err(|e| format!("internal error: unsupported host: {e}"))?
        .finish(settings::Flags::new(flags))
        .map_err(|e| format!("internal error: {e}"))?;
    Ok(isa)
}

fn new_module() -> Result<JITModule, String> {
    let mut jb = JITBuilder::with_isa(host_isa()?, default_libcall_names());
    for f in Extern::ALL {
        jb.symbol(f.name(), f.address());
    }
    Ok(JITModule::new(jb))
}

fn count_insts(f: &ClifFunction) -> usize {
    f.layout
        .blocks()
        .map(|b| f.layout.block_insts(b).count())
        .sum()
}

/// Compiles `f` (uncached).
fn compile_uncached(source: &Function) -> Result<Compiled, String> {
    let start = Instant::now();
    let (legal, passes) = fm_compiler::passes::backend().run(source.clone())?;
    let f = &legal;
    let mut sched = schedule::schedule(f)?;
    let fixed: Vec<Option<usize>> = sched
        .steps
        .iter_mut()
        .map(|step| run_time_length(&mut step.kernel))
        .collect();
    let mut module = new_module()?;
    let cc = module.isa().default_call_conv();
    let mut externs: HashMap<Extern, FuncId> = HashMap::new();
    for f in Extern::ALL {
        let id = module
            .declare_function(f.name(), Linkage::Import, &f.signature(cc))
            .map_err(|e| format!("internal error: {e}"))?;
        externs.insert(f, id);
    }
    let sig = codegen::kernel_signature(cc);
    let mut ctx = module.make_context();
    let mut fctx = FunctionBuilderContext::new();
    let mut ids: HashMap<&kernel::Kernel, FuncId> = HashMap::new();
    let mut kernel_index: HashMap<FuncId, usize> = HashMap::new();
    let mut clif = String::new();
    let mut clif_insts = 0;
    let mut calls: Vec<(FuncId, Vec<(usize, i64)>)> = Vec::new();
    let err = |e: cranelift_module::ModuleError| format!("internal error: cranelift: {e:?}");
    for step in &sched.steps {
        let id = match ids.get(&step.kernel) {
            Some(&id) => id,
            None => {
                let k = ids.len();
                let id = module
                    .declare_function(&format!("k{k}"), Linkage::Local, &sig)
                    .map_err(err)?;
                ctx.func = ClifFunction::with_name_signature(
                    UserFuncName::user(0, id.as_u32()),
                    sig.clone(),
                );
                {
                    let b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
                    let mut g = codegen::Gen::new(b, &mut module, &externs);
                    let status = g.kernel(&step.kernel);
                    g.finish(status);
                }
                clif_insts += count_insts(&ctx.func);
                clif.push_str(&format!(
                    "; k{k}: {}\n{}\n",
                    step.kernel.name(),
                    ctx.func.display()
                ));
                module.define_function(id, &mut ctx).map_err(err)?;
                module.clear_context(&mut ctx);
                ids.insert(&step.kernel, id);
                kernel_index.insert(id, k);
                id
            }
        };
        calls.push((id, step.pointers()));
    }
    module.finalize_definitions().map_err(err)?;
    // The call sequence runs from Rust (`Compiled::run`) rather than from a generated entry
    // function: an unrolled sequence model makes thousands of calls, and generating code for
    // each cost more compile time than all the kernels together. A call costs about 1 ns.
    let mut kernels: HashMap<FuncId, KernelFn> = HashMap::new();
    for &(id, _) in &calls {
        kernels.entry(id).or_insert_with(|| {
            let ptr = module.get_finalized_function(id);
            // SAFETY: `ptr` is a finalized kernel with signature (i64 x4) -> i32 (system
            // calling convention), which is ABI-compatible with `KernelFn`.
            unsafe { std::mem::transmute::<*const u8, KernelFn>(ptr) }
        });
    }
    clif.push_str(&format!("; calls of `{}`:\n", f.name));
    for (id, ptrs) in &calls {
        let args: Vec<String> = ptrs
            .iter()
            .map(|&(v, off)| match off {
                0 => format!("%{v}"),
                o => format!("%{v}+{o}"),
            })
            .collect();
        clif.push_str(&format!("; k{}({})\n", kernel_index[id], args.join(", ")));
    }
    let calls: Vec<Call> = calls
        .into_iter()
        .zip(&sched.steps)
        .zip(fixed)
        .map(|(((id, operands), step), fixed)| Call {
            kernel: kernels[&id],
            operands,
            rows: batch_rows(&step.kernel),
            fixed,
        })
        .collect();
    let stats = CompileStats {
        function: f.name.clone(),
        calls: sched.steps.len(),
        kernels: ids.len(),
        fused: sched.fused,
        clif_insts,
        passes,
        compile_ms: start.elapsed().as_secs_f64() * 1e3,
    };
    Ok(Compiled {
        source: source.clone(),
        func: legal,
        sched,
        calls,
        clif,
        stats,
        plans: Mutex::new(Buffers::default()),
        _module: ModuleHolder(module),
    })
}

/// Whether to give every buffer its own allocation (env `FM_JIT_CHECK_BOUNDS`), for memory
/// checkers; slower, otherwise identical.
fn check_bounds() -> bool {
    static CHECK: OnceLock<bool> = OnceLock::new();
    *CHECK.get_or_init(|| std::env::var_os("FM_JIT_CHECK_BOUNDS").is_some())
}

type Cache = Mutex<HashMap<String, Arc<Compiled>>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// Compiles `f`, or returns the process-wide cached compilation of an identical function.
pub fn compile(f: &Function) -> Result<Arc<Compiled>, String> {
    let key = print_function(f);
    if let Some(c) = cache().lock().map_err(|_| "JIT cache poisoned")?.get(&key) {
        return Ok(c.clone());
    }
    let c = Arc::new(compile_uncached(f)?);
    cache()
        .lock()
        .map_err(|_| "JIT cache poisoned")?
        .insert(key, c.clone());
    Ok(c)
}

/// What running `f` at one batch size needs in memory, as the JIT plans it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    /// The arena every value of `f` lives in (buffers reused once their value is dead; a
    /// range for each argument too, used only when the argument is not in standard layout).
    pub arena: usize,
    /// The arguments (parameters, optimizer state, the batch), which are read in place.
    pub arguments: usize,
}

/// Plans `f`'s memory at batch size `batch` without compiling it: the backend passes, the
/// schedule and the buffer plan, exactly as [`compile`] and a run of `batch` samples do.
pub fn plan_memory(f: &Function, batch: usize) -> Result<MemoryPlan, String> {
    let (legal, _) = fm_compiler::passes::backend().run(f.clone())?;
    let sched = schedule::schedule(&legal)?;
    let arena = memory::plan(&legal, &sched, batch).size;
    let arguments = f
        .args
        .iter()
        .map(|a| eval_shape(&a.shape, batch).iter().product::<usize>() * 4)
        .sum();
    Ok(MemoryPlan { arena, arguments })
}

/// Whether this process has already compiled a function identical to `f`.
pub fn is_cached(f: &Function) -> bool {
    let key = print_function(f);
    cache()
        .lock()
        .map(|c| c.contains_key(&key))
        .unwrap_or(false)
}

/// Statistics of every function compiled so far in this process, by function name.
pub fn stats() -> Vec<CompileStats> {
    let mut v: Vec<CompileStats> = cache()
        .lock()
        .map(|c| c.values().map(|c| c.stats.clone()).collect())
        .unwrap_or_default();
    v.sort_by(|a, b| a.function.cmp(&b.function));
    v
}

/// Deterministic CLIF text of every kernel compiled for `f`, then the list of calls.
pub fn emit_clif(f: &Function) -> Result<String, String> {
    Ok(compile(f)?.clif.clone())
}

/// Compiles (cached) and runs `f`, like [`fm_compiler::interp::run`].
pub fn run(f: &Function, args: &[Value<f32>], ctx: Context) -> Result<Vec<Value<f32>>, String> {
    compile(f)?.run(args, ctx)
}

impl Compiled {
    pub fn stats(&self) -> &CompileStats {
        &self.stats
    }

    pub fn function(&self) -> &Function {
        &self.source
    }

    /// Runs on `args` (in `f.args` order); returns the results in order.
    pub fn run(&self, args: &[Value<f32>], ctx: Context) -> Result<Vec<Value<f32>>, String> {
        let ran = self.execute(args, ctx, None)?;
        Ok(ran.results())
    }

    /// Runs like [`Compiled::run`], handing `watch` each group of results (lists of result
    /// indices) right after the kernel call that completes the group (and every group before
    /// it) has run, then `watch.progress()` after every further call: the caller can send
    /// gradients while the rest of the backward pass runs (see `Executor::run_watched`).
    pub fn run_watched(
        &self,
        args: &[Value<f32>],
        ctx: Context,
        groups: &[Vec<usize>],
        watch: &mut dyn ResultWatch,
    ) -> Result<Vec<Value<f32>>, String> {
        let ran = self.execute(args, ctx, Some((groups, watch)))?;
        Ok(ran.results())
    }

    /// For each group of results: the number of kernel calls after which all of its results
    /// hold their final values (0 for arguments and values no call writes).
    pub fn ready_after(&self, groups: &[Vec<usize>]) -> Result<Vec<usize>, String> {
        let f = &self.func;
        let s = &self.sched;
        let mut written = vec![0usize; f.insts.len()];
        for (k, step) in s.steps.iter().enumerate() {
            written[step.output] = k + 1;
        }
        groups
            .iter()
            .map(|g| {
                g.iter()
                    .map(|&i| match f.results.get(i) {
                        Some(r) if f.insts[r.value].dtype == DType::F32 => {
                            Ok(written[s.root[r.value]])
                        }
                        _ => Err(format!("internal error: no f32 result {i} to watch")),
                    })
                    .try_fold(0, |m, k| k.map(|k| m.max(k)))
            })
            .collect()
    }

    /// The number of kernel calls of a run.
    pub fn calls(&self) -> usize {
        self.calls.len()
    }
}

impl Ran<'_> {
    /// Every result, copied out of the buffers.
    fn results(&self) -> Vec<Value<f32>> {
        (0..self.compiled.func.results.len())
            .map(|i| match self.result(i) {
                (shape, Data::F(x)) => Value::F(array(shape, x)),
                (shape, Data::I(x)) => Value::I(array(shape, x)),
            })
            .collect()
    }
}

impl Compiled {
    /// Runs on `args` without copying them, then writes result `i` into `args[a]` when
    /// `updates[i] == Some(a)` (an in-place state update: parameters, optimizer slots) and into
    /// `results[i]` otherwise, reusing the allocations already there when the shapes fit. Once
    /// a batch size has been run, this allocates nothing. `results` is resized to the number
    /// of results; the entries of updated results are left as they were.
    pub fn run_in_place(
        &self,
        args: &mut [Value<f32>],
        updates: &[Option<usize>],
        ctx: Context,
        results: &mut Vec<Value<f32>>,
    ) -> Result<(), String> {
        let n_results = self.func.results.len();
        if updates.len() != n_results || updates.iter().flatten().any(|&a| a >= args.len()) {
            return Err(format!(
                "internal error: {} result updates for {} results",
                updates.len(),
                n_results
            ));
        }
        results.resize_with(n_results, || Value::F(ArrayD::zeros(IxDyn(&[0]))));
        let ran = self.execute(args, ctx, None)?;
        // A result that is an argument itself (a parameter the step leaves unchanged) is read
        // where the argument is: write the results that are not updates first, then the
        // updates, and refuse the one order that could read an argument already overwritten.
        for (i, update) in updates.iter().enumerate() {
            if let (Some(a), Some(src)) = (update, ran.argument_of(i)) {
                if src != *a && updates.contains(&Some(src)) {
                    return Err(format!(
                        "internal error: result {i} reads argument {src}, which another result \
                         overwrites"
                    ));
                }
            }
        }
        for (i, slot) in results.iter_mut().enumerate() {
            if updates[i].is_none() {
                let (shape, data) = ran.result(i);
                write(slot, shape, data);
            }
        }
        for (i, update) in updates.iter().enumerate() {
            let Some(a) = *update else { continue };
            if ran.argument_of(i) == Some(a) {
                continue; // unchanged, and already in place
            }
            let (shape, data) = ran.result(i);
            write(&mut args[a], shape, data);
        }
        Ok(())
    }

    /// Checks `args` and runs every kernel; the results are then read from the returned
    /// [`Ran`], which holds the buffers (and the pointers it keeps into `args` are used only
    /// by [`Ran::argument_of`]'s bookkeeping, never to read them after `args` changes).
    /// With a watch, its groups of results are reported as the calls complete them.
    fn execute(
        &self,
        args: &[Value<f32>],
        ctx: Context,
        mut watch: Option<(&[Vec<usize>], &mut dyn ResultWatch)>,
    ) -> Result<Ran<'_>, String> {
        let ready = match &watch {
            Some((groups, _)) => self.ready_after(groups)?,
            None => Vec::new(),
        };
        let f = &self.func;
        if args.len() != f.args.len() {
            return Err(format!(
                "{} takes {} arguments, got {}",
                f.name,
                f.args.len(),
                args.len()
            ));
        }
        let n = ctx.batch;
        let mut guard = self.plans.lock().map_err(|_| "JIT plan lock poisoned")?;
        let prep = guard
            .plans
            .entry(n)
            .or_insert_with(|| {
                Arc::new(Prepared {
                    plan: memory::plan(f, &self.sched, n),
                    arg_shapes: f.args.iter().map(|a| eval_shape(&a.shape, n)).collect(),
                    result_shapes: f
                        .results
                        .iter()
                        .map(|r| eval_shape(&f.insts[r.value].shape, n))
                        .collect(),
                })
            })
            .clone();
        for ((a, v), want) in f.args.iter().zip(args).zip(&prep.arg_shapes) {
            if v.shape() != want.as_slice() {
                return Err(format!(
                    "argument `{}` has shape {:?}, expected {:?}",
                    a.name,
                    v.shape(),
                    want
                ));
            }
            let ok = matches!(
                (a.dtype, v),
                (DType::F32, Value::F(_)) | (DType::I32, Value::I(_))
            );
            if !ok {
                return Err(format!("argument `{}` has the wrong element type", a.name));
            }
        }
        let Buffers {
            arena, bufs, ptrs, ..
        } = &mut *guard;
        let plan = &prep.plan;
        let words = plan.size.div_ceil(16).max(1);
        if arena.len() < words {
            *arena = vec![0u128; words];
        }
        let base = arena.as_mut_ptr() as *mut u8;
        let s = &self.sched;
        // With FM_JIT_CHECK_BOUNDS set, every buffer (arguments included) is its own
        // exact-size allocation instead of a range of the arena or the caller's array, so
        // valgrind or a sanitizer sees any access past its end.
        let mut separate: Vec<Vec<u32>> = Vec::new();
        let mut own: Vec<*mut u8> = Vec::new();
        if check_bounds() {
            own = vec![std::ptr::null_mut::<u8>(); f.insts.len()];
            for (v, inst) in f.insts.iter().enumerate() {
                if s.materialized[v] {
                    let len: usize = eval_shape(&inst.shape, n).iter().product();
                    separate.push(vec![0u32; len]);
                    own[v] = separate
                        .last_mut()
                        .map_or(std::ptr::null_mut(), |b| b.as_mut_ptr() as *mut u8);
                }
            }
        }
        bufs.clear();
        bufs.extend((0..f.insts.len()).map(|v| {
            let r = s.root[v];
            if !s.materialized[r] {
                0
            } else if check_bounds() {
                own[r] as usize
            } else {
                // SAFETY: plan offsets lie inside the arena (plan.size bytes).
                unsafe { base.add(plan.offset[r]) as usize }
            }
        }));
        // Arguments in standard layout are read where they are (no copy); the others are
        // copied into their planned buffers. Kernels never write to an argument's buffer.
        for (v, inst) in f.insts.iter().enumerate() {
            if let Op::Arg { index } = inst.op {
                let planned = bufs[v] as *mut u8;
                bufs[v] = match &args[index] {
                    Value::F(a) => argument_buffer(a, planned),
                    Value::I(a) => argument_buffer(a, planned),
                } as usize;
            }
        }
        // Reshapes of arguments read the argument where it is.
        for v in 0..f.insts.len() {
            let r = s.root[v];
            if r != v && matches!(f.insts[r].op, Op::Arg { .. }) {
                bufs[v] = bufs[r];
            }
        }
        // Denormals flush to zero while compiled code runs (as TensorFlow does around its
        // kernels): dying ReLUs push Adam's state into the denormal range, where x86 arithmetic
        // is many times slower. Values that small are below every tolerance we compare with.
        let mut flush = Some(fm_runtime::kernels::FlushDenormals::enable());
        let mut status = 0;
        // The groups reported so far (in order: a group waits for the ones before it).
        let mut reported = 0;
        // Position k: k calls have run.
        for k in 0..=self.calls.len() {
            if let Some(call) = k.checked_sub(1).map(|c| &self.calls[c]) {
                ptrs.clear();
                // SAFETY (of the `offset`): offsets are those of slices and pads within their
                // buffers, computed from the same shapes as the buffers.
                ptrs.extend(call.operands.iter().map(|&(v, off)| unsafe {
                    (bufs[v] as *mut u8).offset(off as isize * 4) as usize
                }));
                // SAFETY: every pointer the kernels use comes from `bufs`: arena ranges sized
                // by the plan, or the caller's argument arrays (shapes checked above), for the
                // shapes the kernels were generated from at this batch size `n`. Kernels write
                // only to their outputs, which are arena buffers.
                status = unsafe { call.run(ptrs, n, ctx) };
                if status != 0 {
                    break;
                }
            }
            let Some((groups, watch)) = &mut watch else {
                continue;
            };
            if reported > 0 {
                watch.progress();
            }
            if reported < groups.len() && ready[reported] <= k {
                // The watch computes in the caller's floating-point mode, as after the run.
                drop(flush.take());
                while reported < groups.len() && ready[reported] <= k {
                    let values: Vec<&[f32]> = groups[reported]
                        .iter()
                        .map(|&i| {
                            let len: usize = prep.result_shapes[i].iter().product();
                            // SAFETY: the result's buffer holds `len` f32 elements (checked by
                            // `ready_after`), final once call `ready[reported]` has run: no
                            // later call writes it (a result's buffer is never reused).
                            unsafe {
                                std::slice::from_raw_parts(
                                    bufs[f.results[i].value] as *const f32,
                                    len,
                                )
                            }
                        })
                        .collect();
                    watch.ready(reported, &values)?;
                    reported += 1;
                }
                flush = Some(fm_runtime::kernels::FlushDenormals::enable());
            }
        }
        drop(flush);
        if status != 0 {
            return Err(format!(
                "internal error: a precompiled kernel rejected its arguments (status {status})"
            ));
        }
        Ok(Ran {
            compiled: self,
            guard,
            prep,
            _separate: separate,
        })
    }
}

/// One kernel call of a compiled function.
struct Call {
    kernel: KernelFn,
    /// Operand pointers as (value, element offset).
    operands: Vec<(usize, i64)>,
    /// For an elementwise loop over `rows * N` elements (N the batch): `rows`, and which
    /// operands advance with the element index (the others are broadcast scalars). Such a call
    /// may run as several calls on slices of the batch, on the kernels' thread pool: each
    /// element is computed by the same code whichever slice it is in, so results do not
    /// depend on the split.
    rows: Option<(usize, Vec<bool>)>,
    /// For an elementwise loop of a fixed length (see [`run_time_length`]): that length, which
    /// the call passes where a batch loop gets the batch size.
    fixed: Option<usize>,
}

impl Call {
    /// Runs the kernel on operand pointers `ptrs` for batch size `n`.
    ///
    /// # Safety
    /// `ptrs` are the operands' buffers for batch size `n`, as the kernel was generated for.
    unsafe fn run(&self, ptrs: &[usize], n: usize, ctx: Context) -> i32 {
        let call = |p: &[usize], n: usize| {
            // SAFETY: caller contract, for the batch slice `p` addresses.
            unsafe {
                (self.kernel)(
                    p.as_ptr() as *const *mut u8,
                    n as i64,
                    ctx.seed as i64,
                    ctx.step as i64,
                    ctx.sample_offset as i64,
                )
            }
        };
        let n = self.fixed.unwrap_or(n);
        let Some((rows, advances)) = &self.rows else {
            return call(ptrs, n);
        };
        let threads = fm_runtime::kernels::threads_for_elements(n, rows * n);
        if threads <= 1 || ptrs.len() > MAX_SPLIT_OPERANDS {
            return call(ptrs, n);
        }
        let parts = threads;
        // A fixed-length loop splits at multiples of 16 elements (64 bytes): no two threads
        // write one cache line, and every part but the last runs whole vector iterations, as
        // the same elements do in one call.
        let align = if self.fixed.is_some() { 16 } else { 1 };
        let bound = |p: usize| {
            if p == parts {
                n
            } else {
                n * p / parts / align * align
            }
        };
        let result = fm_runtime::kernels::parallel_parts(parts, threads, |p| {
            let (start, len) = (bound(p), bound(p + 1) - bound(p));
            let mut slice = [0usize; MAX_SPLIT_OPERANDS];
            for (k, (&ptr, &adv)) in ptrs.iter().zip(advances).enumerate() {
                slice[k] = if adv { ptr + start * rows * 4 } else { ptr };
            }
            match call(&slice[..ptrs.len()], len) {
                0 => Ok(()),
                status => Err(status),
            }
        });
        result.err().unwrap_or(0)
    }
}

/// Operand pointers a batch-split call carries on the stack.
const MAX_SPLIT_OPERANDS: usize = 16;

/// Fixed-length elementwise loops at least this long (the optimizer's update of a large
/// parameter: the MNIST MLP's 100,352 kernel weights) are worth splitting over the threads.
const SPLIT_FIXED_AT_LEAST: i64 = 1 << 16;

/// Makes a long fixed-length elementwise loop take its length at run time (where a batch loop
/// takes the batch size), so that a call can split it over the kernels' pool as it splits
/// batch loops; returns the length. Loops with an input read as `i % m` keep their form.
fn run_time_length(kernel: &mut kernel::Kernel) -> Option<usize> {
    match kernel {
        kernel::Kernel::Elementwise { len, inputs, .. }
            if len.n == 0
                && len.c >= SPLIT_FIXED_AT_LEAST
                && !inputs.iter().any(|m| matches!(m, kernel::InMode::Cycle(_))) =>
        {
            let fixed = len.c as usize;
            *len = kernel::Sym { n: 1, c: 0 };
            Some(fixed)
        }
        _ => None,
    }
}

/// `Some((rows, advances))` for a kernel that is an elementwise loop over `rows * N` elements.
fn batch_rows(kernel: &kernel::Kernel) -> Option<(usize, Vec<bool>)> {
    match kernel {
        kernel::Kernel::Elementwise { len, inputs, .. } if len.c == 0 && len.n > 0 => {
            let advances = inputs
                .iter()
                .map(|m| !matches!(m, kernel::InMode::Splat | kernel::InMode::Cycle(_)))
                .chain([true])
                .collect();
            Some((len.n as usize, advances))
        }
        _ => None,
    }
}

/// The argument's elements where the kernels can read them: the array itself when it is in
/// standard layout, else a copy in the planned buffer `planned`.
fn argument_buffer<T: Copy>(a: &ArrayD<T>, planned: *mut u8) -> *mut u8 {
    if !check_bounds() {
        if let Some(x) = a.as_slice() {
            return x.as_ptr() as *mut u8;
        }
    }
    let a = a.as_standard_layout();
    let x = a.as_slice().expect("standard layout");
    // SAFETY: the planned buffer holds the argument's element count (its shape was checked),
    // 4 bytes each, like `T`.
    unsafe { std::ptr::copy_nonoverlapping(x.as_ptr(), planned as *mut T, x.len()) };
    planned
}

/// A finished run: its buffers, locked until the results have been read.
struct Ran<'a> {
    compiled: &'a Compiled,
    guard: std::sync::MutexGuard<'a, Buffers>,
    prep: Arc<Prepared>,
    /// The per-value allocations of FM_JIT_CHECK_BOUNDS mode.
    _separate: Vec<Vec<u32>>,
}

impl Ran<'_> {
    /// Result `i`: its shape and its elements.
    fn result(&self, i: usize) -> (&[usize], Data<'_>) {
        let f = &self.compiled.func;
        let r = &f.results[i];
        let shape = &self.prep.result_shapes[i];
        let len: usize = shape.iter().product();
        let src = self.guard.bufs[r.value];
        // SAFETY: the result buffer holds `len` initialised 4-byte elements (an arena range
        // the lock keeps alive, or an argument array the caller has not changed yet).
        let data = unsafe {
            match f.insts[r.value].dtype {
                DType::F32 => Data::F(std::slice::from_raw_parts(src as *const f32, len)),
                DType::I32 => Data::I(std::slice::from_raw_parts(src as *const i32, len)),
            }
        };
        (shape, data)
    }

    /// The argument index that result `i` is (through reshapes), if it is one.
    fn argument_of(&self, i: usize) -> Option<usize> {
        let f = &self.compiled.func;
        match f.insts[self.compiled.sched.root[f.results[i].value]].op {
            Op::Arg { index } => Some(index),
            _ => None,
        }
    }
}

/// Writes a result into `dst`, in place when its shape and type fit.
fn write(dst: &mut Value<f32>, shape: &[usize], data: Data<'_>) {
    match (dst, data) {
        (Value::F(a), Data::F(x)) if a.shape() == shape && a.is_standard_layout() => a
            .as_slice_mut()
            .expect("standard layout")
            .copy_from_slice(x),
        (Value::I(a), Data::I(x)) if a.shape() == shape && a.is_standard_layout() => a
            .as_slice_mut()
            .expect("standard layout")
            .copy_from_slice(x),
        (dst, Data::F(x)) => *dst = Value::F(array(shape, x)),
        (dst, Data::I(x)) => *dst = Value::I(array(shape, x)),
    }
}

/// A result's elements, borrowed from the buffer that holds them.
enum Data<'a> {
    F(&'a [f32]),
    I(&'a [i32]),
}

fn array<T: Copy>(shape: &[usize], data: &[T]) -> ArrayD<T> {
    ArrayD::from_shape_vec(IxDyn(shape), data.to_vec()).expect("result shape")
}
