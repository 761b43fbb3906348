//! CLIF generation: one function per [`Kernel`] (the driver in `mod.rs` calls them in
//! schedule order).
//!
//! Every kernel has the signature `(ptrs: i64, n: i64, seed: i64, step: i64) -> i32`: `ptrs`
//! points to the kernel's operand buffer pointers (inputs, then the output), `n` is the batch
//! size, the result is 0 or the error status of a precompiled kernel. Loops process f32x4
//! vectors while four elements remain and finish with a scalar tail, so no access ever passes
//! the end of a buffer whose length is the op's element count.

use super::kernel::*;
use super::math::V;
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::types::{F32, F32X4, I32, I32X4, I64};
use cranelift_codegen::ir::{
    AbiParam, InstBuilder, MemFlagsData, Signature, StackSlotData, StackSlotKind, Value,
};
use cranelift_codegen::isa::CallConv;
use cranelift_frontend::{FunctionBuilder, Variable};
use cranelift_jit::JITModule;
use cranelift_module::{FuncId, Module};
use fm_compiler::ir::{BinaryOp, PoolKind, ReduceOp, UnaryOp};
use std::collections::HashMap;

use super::externs::Extern;

/// The signature of every kernel.
pub fn kernel_signature(cc: CallConv) -> Signature {
    let mut s = Signature::new(cc);
    for _ in 0..4 {
        s.params.push(AbiParam::new(I64));
    }
    s.returns.push(AbiParam::new(I32));
    s
}

/// Loads and stores may be unaligned but never trap (bounds are guaranteed by construction).
fn mem() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

/// What one reduction kernel reads and writes (shared by its loop levels).
struct Reduction<'k> {
    op: ReduceOp,
    blocks: &'k [(Sym, bool)],
    unrolled: bool,
    input: Value,
    out: Value,
}

pub struct Gen<'a, 'm> {
    pub b: FunctionBuilder<'a>,
    module: &'m mut JITModule,
    externs: &'m HashMap<Extern, FuncId>,
    ptrs: Value,
    n: Value,
    seed: Value,
    step: Value,
}

impl<'a, 'm> Gen<'a, 'm> {
    /// Starts a kernel body: creates the entry block with the four parameters.
    pub fn new(
        mut b: FunctionBuilder<'a>,
        module: &'m mut JITModule,
        externs: &'m HashMap<Extern, FuncId>,
    ) -> Self {
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let p = b.block_params(entry).to_vec();
        Gen {
            b,
            module,
            externs,
            ptrs: p[0],
            n: p[1],
            seed: p[2],
            step: p[3],
        }
    }

    pub fn finish(mut self, status: Value) {
        self.b.ins().return_(&[status]);
        self.b.seal_all_blocks();
        let cfg = self.module.isa().frontend_config();
        self.b.finalize(cfg);
    }

    fn i64c(&mut self, v: i64) -> Value {
        self.b.ins().iconst(I64, v)
    }

    fn sym(&mut self, s: Sym) -> Value {
        let c = self.i64c(s.c);
        if s.n == 0 {
            return c;
        }
        let nn = self.b.ins().imul_imm_s(self.n, s.n);
        self.b.ins().iadd(nn, c)
    }

    fn operand(&mut self, k: usize) -> Value {
        self.b.ins().load(I64, mem(), self.ptrs, (8 * k) as i32)
    }

    /// Address of element `idx` (an i64 element index) of a 4-byte-element buffer.
    fn at(&mut self, base: Value, idx: Value) -> Value {
        let off = self.b.ins().ishl_imm_u(idx, 2);
        self.b.ins().iadd(base, off)
    }

    fn callee(&mut self, f: Extern) -> cranelift_codegen::ir::FuncRef {
        let id = self.externs[&f];
        self.module.declare_func_in_func(id, self.b.func)
    }

    /// `for i in (start..).step_by(step) while i + step <= end { body(i) }`; returns the first
    /// index not processed.
    fn for_loop(
        &mut self,
        start: Value,
        end: Value,
        step: i64,
        body: &mut dyn FnMut(&mut Self, Value),
    ) -> Value {
        let var: Variable = self.b.declare_var(I64);
        self.b.def_var(var, start);
        let header = self.b.create_block();
        let body_blk = self.b.create_block();
        let exit = self.b.create_block();
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(header);
        let i = self.b.use_var(var);
        let next = self.b.ins().iadd_imm_s(i, step);
        let more = self.b.ins().icmp(IntCC::SignedLessThanOrEqual, next, end);
        self.b.ins().brif(more, body_blk, &[], exit, &[]);
        self.b.switch_to_block(body_blk);
        let i = self.b.use_var(var);
        body(self, i);
        let i = self.b.use_var(var);
        let next = self.b.ins().iadd_imm_s(i, step);
        self.b.def_var(var, next);
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(exit);
        self.b.use_var(var)
    }

    /// Vector loop plus scalar tail over `0..len`; `body(i, vector?)`.
    fn for_vec(&mut self, len: Value, body: &mut dyn FnMut(&mut Self, Value, bool)) {
        let zero = self.i64c(0);
        let rest = self.for_loop(zero, len, 4, &mut |g, i| body(g, i, true));
        self.for_loop(rest, len, 1, &mut |g, i| body(g, i, false));
    }

    fn fill(&mut self, dst: Value, len: Value, value: f32) {
        let s = self.b.ins().f32const(value);
        let v = self.b.ins().splat(F32X4, s);
        self.for_vec(len, &mut |g, i, vector| {
            let a = g.at(dst, i);
            g.b.ins().store(mem(), if vector { v } else { s }, a, 0);
        });
    }

    /// Bit-exact copy of `len` 4-byte elements.
    fn copy_contig(&mut self, dst: Value, src: Value, len: Value) {
        self.for_vec(len, &mut |g, i, vector| {
            let ty = if vector { I32X4 } else { I32 };
            let s = g.at(src, i);
            let x = g.b.ins().load(ty, mem(), s, 0);
            let d = g.at(dst, i);
            g.b.ins().store(mem(), x, d, 0);
        });
    }

    /// `dst[i] += src[i]` for `len` floats.
    fn accumulate(&mut self, dst: Value, src: Value, len: Value) {
        self.for_vec(len, &mut |g, i, vector| {
            let ty = if vector { F32X4 } else { F32 };
            let s = g.at(src, i);
            let x = g.b.ins().load(ty, mem(), s, 0);
            let d = g.at(dst, i);
            let y = g.b.ins().load(ty, mem(), d, 0);
            let z = g.b.ins().fadd(y, x);
            g.b.ins().store(mem(), z, d, 0);
        });
    }

    /// `if 0 <= idx < bound { then } else { otherwise }`.
    fn if_in_range(
        &mut self,
        idx: Value,
        bound: i64,
        then: &mut dyn FnMut(&mut Self),
        otherwise: &mut dyn FnMut(&mut Self),
    ) {
        // An unsigned comparison rejects negative indices too.
        let ok = self.b.ins().icmp_imm_s(IntCC::UnsignedLessThan, idx, bound);
        let t = self.b.create_block();
        let e = self.b.create_block();
        let m = self.b.create_block();
        self.b.ins().brif(ok, t, &[], e, &[]);
        self.b.switch_to_block(t);
        then(self);
        self.b.ins().jump(m, &[]);
        self.b.switch_to_block(e);
        otherwise(self);
        self.b.ins().jump(m, &[]);
        self.b.switch_to_block(m);
    }

    fn load_index(&mut self, base: Value, k: Value) -> Value {
        let a = self.at(base, k);
        self.b.ins().sload32(mem(), a, 0)
    }

    /// Emits the body of `kernel` and returns its status value.
    pub fn kernel(&mut self, kernel: &Kernel) -> Value {
        match kernel {
            Kernel::Elementwise { len, inputs, nodes } => self.elementwise(*len, inputs, nodes),
            Kernel::Reduce {
                op,
                blocks,
                unrolled,
            } => self.reduce(*op, blocks, *unrolled),
            Kernel::Copy {
                out_len,
                fill_zero,
                shifted_dst,
                regions,
            } => {
                let out_k = regions.iter().map(|r| r.src + 1).max().unwrap_or(0);
                let mut out = self.operand(out_k);
                if *fill_zero {
                    let len = self.sym(*out_len);
                    self.fill(out, len, 0.0);
                }
                if *shifted_dst {
                    out = self.operand(out_k + 1);
                }
                for r in regions {
                    let src = self.operand(r.src);
                    let so = self.sym(r.src_off);
                    let d0 = self.sym(r.dst_off);
                    self.copy_level(r, 0, src, out, so, d0);
                }
            }
            Kernel::Gather {
                count,
                rows,
                row_len,
            } => {
                let table = self.operand(0);
                let idx = self.operand(1);
                let out = self.operand(2);
                let count = self.sym(*count);
                let rl = *row_len as i64;
                let zero = self.i64c(0);
                self.for_loop(zero, count, 1, &mut |g, k| {
                    let i = g.load_index(idx, k);
                    let dst_i = g.b.ins().imul_imm_s(k, rl);
                    let dst = g.at(out, dst_i);
                    let len = g.i64c(rl);
                    g.if_in_range(
                        i,
                        *rows as i64,
                        &mut |g| {
                            let src_i = g.b.ins().imul_imm_s(i, rl);
                            let src = g.at(table, src_i);
                            g.copy_contig(dst, src, len);
                        },
                        &mut |g| g.fill(dst, len, 0.0),
                    );
                });
            }
            Kernel::ScatterAdd {
                count,
                rows,
                row_len,
            } => {
                let idx = self.operand(0);
                let vals = self.operand(1);
                let out = self.operand(2);
                let rl = *row_len as i64;
                let total = self.i64c(*rows as i64 * rl);
                self.fill(out, total, 0.0);
                let count = self.sym(*count);
                let zero = self.i64c(0);
                self.for_loop(zero, count, 1, &mut |g, k| {
                    let i = g.load_index(idx, k);
                    g.if_in_range(
                        i,
                        *rows as i64,
                        &mut |g| {
                            let di = g.b.ins().imul_imm_s(i, rl);
                            let dst = g.at(out, di);
                            let si = g.b.ins().imul_imm_s(k, rl);
                            let src = g.at(vals, si);
                            let len = g.i64c(rl);
                            g.accumulate(dst, src, len);
                        },
                        &mut |_| {},
                    );
                });
            }
            Kernel::OneHot { count, depth } => {
                let idx = self.operand(0);
                let out = self.operand(1);
                let count = self.sym(*count);
                let total = self.b.ins().imul_imm_s(count, *depth as i64);
                self.fill(out, total, 0.0);
                let zero = self.i64c(0);
                let d = *depth as i64;
                self.for_loop(zero, count, 1, &mut |g, k| {
                    let i = g.load_index(idx, k);
                    g.if_in_range(
                        i,
                        d,
                        &mut |g| {
                            let row = g.b.ins().imul_imm_s(k, d);
                            let e = g.b.ins().iadd(row, i);
                            let a = g.at(out, e);
                            let one = g.b.ins().f32const(1.0);
                            g.b.ins().store(mem(), one, a, 0);
                        },
                        &mut |_| {},
                    );
                });
            }
            Kernel::RandomUniform { len, salt } => self.random_uniform(*len, *salt),
            Kernel::Bucketize { count, edges } => return self.bucketize(*count, edges),
            Kernel::LowerTriangle { rows, cols } => {
                let out = self.operand(0);
                let zero = self.i64c(0);
                let nr = self.i64c(*rows as i64);
                let nc = self.i64c(*cols as i64);
                let cols = *cols as i64;
                self.for_loop(zero, nr, 1, &mut |g, r| {
                    let zero = g.i64c(0);
                    g.for_loop(zero, nc, 1, &mut |g, c| {
                        let below = g.b.ins().icmp(IntCC::SignedLessThanOrEqual, c, r);
                        let one = g.b.ins().f32const(1.0);
                        let z = g.b.ins().f32const(0.0);
                        let v = g.b.ins().select(below, one, z);
                        let row = g.b.ins().imul_imm_s(r, cols);
                        let e = g.b.ins().iadd(row, c);
                        let a = g.at(out, e);
                        g.b.ins().store(mem(), v, a, 0);
                    });
                });
            }
            Kernel::Const(bits) => {
                let out = self.operand(0);
                let v = self.b.ins().f32const(f32::from_bits(*bits));
                self.b.ins().store(mem(), v, out, 0);
            }
            Kernel::BatchSize => {
                let out = self.operand(0);
                let v = self.b.ins().fcvt_from_uint(F32, self.n);
                self.b.ins().store(mem(), v, out, 0);
            }
            Kernel::MatMul {
                lead,
                m,
                k,
                n,
                ta,
                tb,
            } => self.matmul(*lead, *m, *k, *n, *ta, *tb),
            Kernel::Conv {
                kind,
                geom,
                bias,
                relu,
            } if *bias || *relu => {
                debug_assert_eq!(*kind, ConvKind::Forward);
                let shape = self.shape_struct(geom, true);
                let x = self.operand(0);
                let w = self.operand(1);
                let (b, y) = if *bias {
                    (self.operand(2), self.operand(3))
                } else {
                    (self.i64c(0), self.operand(2))
                };
                let relu = self.i64c(i64::from(*relu));
                let f = self.callee(Extern::Conv2dFwdFused);
                let threads = self.i64c(0);
                let call = self.b.ins().call(f, &[shape, x, w, b, relu, y, threads]);
                return self.b.inst_results(call)[0];
            }
            Kernel::Conv { kind, geom, .. } => {
                let shape = self.shape_struct(geom, true);
                let ops: Vec<Value> = (0..3).map(|k| self.operand(k)).collect();
                let name = match kind {
                    ConvKind::Forward => Extern::Conv2dFwd,
                    ConvKind::BackInput => Extern::Conv2dBwdInput,
                    ConvKind::BackKernel => Extern::Conv2dBwdKernel,
                };
                let f = self.callee(name);
                // 0: the process-wide limit (`--threads`); the kernel splits only work big
                // enough to pay for the threads.
                let threads = self.i64c(0);
                let call = self
                    .b
                    .ins()
                    .call(f, &[shape, ops[0], ops[1], ops[2], threads]);
                return self.b.inst_results(call)[0];
            }
            Kernel::Pool {
                kind,
                back,
                geom,
                relu,
            } => {
                let shape = self.shape_struct(geom, false);
                let (name, args): (Extern, Vec<usize>) = match (kind, back) {
                    (PoolKind::Max, false) => (Extern::MaxPool2dFwd, vec![0, 1]),
                    (PoolKind::Avg, false) => (Extern::AvgPool2dFwd, vec![0, 1]),
                    (PoolKind::Max, true) if *relu => (Extern::MaxPool2dBwdRelu, vec![0, 1, 2]),
                    (PoolKind::Max, true) => (Extern::MaxPool2dBwd, vec![0, 1, 2]),
                    (PoolKind::Avg, true) => (Extern::AvgPool2dBwd, vec![1, 2]),
                };
                let mut vals = vec![shape];
                for k in args {
                    vals.push(self.operand(k));
                }
                let f = self.callee(name);
                let call = self.b.ins().call(f, &vals);
                return self.b.inst_results(call)[0];
            }
        }
        self.b.ins().iconst(I32, 0)
    }

    /// Writes a `Conv2dShape` (`conv`) or `Pool2dShape` into a stack slot; returns its address.
    fn shape_struct(&mut self, g: &Geom, conv: bool) -> Value {
        let mut fields: Vec<Value> = vec![self.sym(g.batch)];
        let mut fixed: Vec<usize> = vec![g.in_h, g.in_w, g.in_c];
        if conv {
            fixed.extend([g.kernel[0], g.kernel[1], g.out_c]);
            fixed.extend(g.stride);
            fixed.extend(g.dilation);
        } else {
            fixed.extend(g.kernel);
            fixed.extend(g.stride);
        }
        fixed.extend(g.pad_before);
        fixed.extend(g.pad_after);
        for v in fixed {
            fields.push(self.i64c(v as i64));
        }
        let slot = self.b.create_sized_stack_slot(StackSlotData::new(
            StackSlotKind::ExplicitSlot,
            (fields.len() * 8) as u32,
            3,
        ));
        for (k, v) in fields.into_iter().enumerate() {
            self.b.ins().stack_store(I64, v, slot, (k * 8) as i32);
        }
        self.b.ins().stack_addr(I64, slot, 0)
    }

    fn matmul(&mut self, lead: Sym, m: Sym, k: Sym, n: Sym, ta: bool, tb: bool) {
        let a = self.operand(0);
        let bp = self.operand(1);
        let c = self.operand(2);
        let lead = self.sym(lead);
        let m = self.sym(m);
        let k = self.sym(k);
        let n = self.sym(n);
        let one = self.i64c(1);
        let (ars, acs) = if ta { (one, m) } else { (k, one) };
        let (brs, bcs) = if tb { (one, k) } else { (n, one) };
        let mk = self.b.ins().imul(m, k);
        let kn = self.b.ins().imul(k, n);
        let mn = self.b.ins().imul(m, n);
        let f = self.callee(Extern::Sgemm);
        let zero = self.i64c(0);
        self.for_loop(zero, lead, 1, &mut |g, l| {
            let ao = g.b.ins().imul(l, mk);
            let ap = g.at(a, ao);
            let bo = g.b.ins().imul(l, kn);
            let bpp = g.at(bp, bo);
            let co = g.b.ins().imul(l, mn);
            let cp = g.at(c, co);
            let alpha = g.b.ins().f32const(1.0);
            let beta = g.b.ins().f32const(0.0);
            let one = g.i64c(1);
            let threads = g.i64c(0); // the process-wide limit, as for convolutions
            g.b.ins().call(
                f,
                &[
                    m, k, n, alpha, ap, ars, acs, bpp, brs, bcs, beta, cp, n, one, threads,
                ],
            );
        });
    }

    fn mix(&mut self, z: Value) -> Value {
        let s = self.b.ins().ushr_imm_u(z, 30);
        let z = self.b.ins().bxor(z, s);
        let z = self.b.ins().imul_imm_s(z, 0xbf58_476d_1ce4_e5b9u64 as i64);
        let s = self.b.ins().ushr_imm_u(z, 27);
        let z = self.b.ins().bxor(z, s);
        let z = self.b.ins().imul_imm_s(z, 0x94d0_49bb_1331_11ebu64 as i64);
        let s = self.b.ins().ushr_imm_u(z, 31);
        self.b.ins().bxor(z, s)
    }

    /// Bit-identical to `interp::random::uniform`.
    /// `Op::Bucketize`: for each x, the number of `edges` <= x, found by a binary search
    /// unrolled over the powers of two below `edges.len()` (the edges live in a read-only data
    /// object of the module). Returns the status (1 if the data object cannot be defined).
    fn bucketize(&mut self, count: Sym, edges: &[u32]) -> Value {
        let n = edges.len() as i64;
        let table = if n == 0 {
            None
        } else {
            match self.data_object(edges) {
                Some(t) => Some(t),
                None => return self.b.ins().iconst(I32, 1),
            }
        };
        let x = self.operand(0);
        let out = self.operand(1);
        let len = self.sym(count);
        let zero = self.i64c(0);
        self.for_loop(zero, len, 1, &mut |g, i| {
            let a = g.at(x, i);
            let v = g.b.ins().load(F32, mem(), a, 0);
            let mut pos = g.i64c(0);
            if let Some(table) = table {
                // Largest pos with edges[pos - 1] <= v, one power of two at a time.
                let mut step = 1i64 << (63 - n.leading_zeros());
                while step > 0 {
                    let cand = g.b.ins().iadd_imm_s(pos, step);
                    let within = g.b.ins().icmp_imm_s(IntCC::SignedLessThanOrEqual, cand, n);
                    let last = g.i64c(n - 1);
                    let idx = g.b.ins().iadd_imm_s(cand, -1);
                    let idx = g.b.ins().smin(idx, last);
                    let ea = g.at(table, idx);
                    let e = g.b.ins().load(F32, mem(), ea, 0);
                    let le = g.b.ins().fcmp(FloatCC::LessThanOrEqual, e, v);
                    let ok = g.b.ins().band(within, le);
                    pos = g.b.ins().select(ok, cand, pos);
                    step >>= 1;
                }
            }
            let r = g.b.ins().ireduce(I32, pos);
            let oa = g.at(out, i);
            g.b.ins().store(mem(), r, oa, 0);
        });
        self.b.ins().iconst(I32, 0)
    }

    /// The address of a read-only copy of `words` (f32 or i32 bits) in the module.
    fn data_object(&mut self, words: &[u32]) -> Option<Value> {
        let id = self.module.declare_anonymous_data(false, false).ok()?;
        let mut desc = cranelift_module::DataDescription::new();
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        desc.define(bytes.into_boxed_slice());
        desc.set_align(16);
        self.module.define_data(id, &desc).ok()?;
        let gv = self.module.declare_data_in_func(id, self.b.func);
        Some(self.b.ins().symbol_value(I64, gv))
    }

    fn random_uniform(&mut self, len: Sym, salt: u64) {
        let out = self.operand(0);
        let a = self
            .b
            .ins()
            .bxor_imm_s(self.seed, 0x9e37_79b9_7f4a_7c15u64 as i64);
        let a = self.mix(a);
        let a = self.b.ins().bxor(a, self.step);
        let a = self.mix(a);
        let a = self
            .b
            .ins()
            .bxor_imm_s(a, salt.wrapping_mul(0x2545_f491_4f6c_dd1d) as i64);
        let key = self.mix(a);
        let len = self.sym(len);
        let zero = self.i64c(0);
        self.for_loop(zero, len, 1, &mut |g, i| {
            let h = g.b.ins().imul_imm_s(i, 0x9e37_79b9_7f4a_7c15u64 as i64);
            let h = g.b.ins().bxor(key, h);
            let bits = g.mix(h);
            let top = g.b.ins().ushr_imm_u(bits, 40);
            let f = g.b.ins().fcvt_from_uint(F32, top);
            let scale = g.b.ins().f32const(1.0 / (1u64 << 24) as f32);
            let v = g.b.ins().fmul(f, scale);
            let a = g.at(out, i);
            g.b.ins().store(mem(), v, a, 0);
        });
    }

    fn copy_level(
        &mut self,
        r: &Region,
        level: usize,
        src: Value,
        dst: Value,
        so: Value,
        d0: Value,
    ) {
        let size = self.sym(r.dims[level]);
        let ss = r.src_strides[level];
        let ds = r.dst_strides[level];
        let zero = self.i64c(0);
        if level + 1 < r.dims.len() {
            self.for_loop(zero, size, 1, &mut |g, i| {
                let a = g.b.ins().imul_imm_s(i, ss);
                let a = g.b.ins().iadd(so, a);
                let b = g.b.ins().imul_imm_s(i, ds);
                let b = g.b.ins().iadd(d0, b);
                g.copy_level(r, level + 1, src, dst, a, b);
            });
            return;
        }
        let s = self.at(src, so);
        let d = self.at(dst, d0);
        if ss == 1 && ds == 1 {
            self.copy_contig(d, s, size);
        } else if ss == 0 && ds == 1 {
            let x = self.b.ins().load(I32, mem(), s, 0);
            let xv = self.b.ins().splat(I32X4, x);
            self.for_vec(size, &mut |g, i, vector| {
                let a = g.at(d, i);
                g.b.ins().store(mem(), if vector { xv } else { x }, a, 0);
            });
        } else {
            self.for_loop(zero, size, 1, &mut |g, i| {
                let si = g.b.ins().imul_imm_s(i, ss);
                let sa = g.at(s, si);
                let x = g.b.ins().load(I32, mem(), sa, 0);
                let di = g.b.ins().imul_imm_s(i, ds);
                let da = g.at(d, di);
                g.b.ins().store(mem(), x, da, 0);
            });
        }
    }

    /// `m = op(m, v)` for vectors or scalars, with the interpreter's NaN rule for max.
    fn combine(&mut self, op: ReduceOp, m: Value, v: Value, vector: bool) -> Value {
        match op {
            ReduceOp::Sum => self.b.ins().fadd(m, v),
            ReduceOp::Max => {
                let gt = self.b.ins().fcmp(FloatCC::GreaterThan, v, m);
                let nan = self.b.ins().fcmp(FloatCC::Unordered, v, v);
                let take = self.b.ins().bor(gt, nan);
                if vector {
                    V { b: &mut self.b }.sel(take, v, m)
                } else {
                    self.b.ins().select(take, v, m)
                }
            }
        }
    }

    fn reduce(&mut self, op: ReduceOp, blocks: &[(Sym, bool)], unrolled: bool) {
        let input = self.operand(0);
        let out = self.operand(1);
        let init = match op {
            ReduceOp::Sum => 0.0,
            ReduceOp::Max => f32::NEG_INFINITY,
        };
        let out_len = blocks
            .iter()
            .filter(|b| !b.1)
            .fold(Sym::ONE, |a, b| a.mul(b.0));
        let ol = self.sym(out_len);
        self.fill(out, ol, init);
        let zero = self.i64c(0);
        let r = Reduction {
            op,
            blocks,
            unrolled,
            input,
            out,
        };
        self.reduce_level(&r, 0, zero, zero);
    }

    /// Loops over block `level` of `r` at input offset `io` and output offset `oo`.
    fn reduce_level(&mut self, r: &Reduction, level: usize, io: Value, oo: Value) {
        let (size, reduced) = r.blocks[level];
        let size = self.sym(size);
        let zero = self.i64c(0);
        if level + 1 < r.blocks.len() {
            let rest = &r.blocks[level + 1..];
            let in_stride = rest.iter().fold(Sym::ONE, |a, b| a.mul(b.0));
            let out_stride = rest
                .iter()
                .filter(|b| !b.1)
                .fold(Sym::ONE, |a, b| a.mul(b.0));
            let is = self.sym(in_stride);
            let os = self.sym(out_stride);
            self.for_loop(zero, size, 1, &mut |g, i| {
                let a = g.b.ins().imul(i, is);
                let a = g.b.ins().iadd(io, a);
                let b = if reduced {
                    oo
                } else {
                    let b = g.b.ins().imul(i, os);
                    g.b.ins().iadd(oo, b)
                };
                g.reduce_level(r, level + 1, a, b);
            });
            return;
        }
        let op = r.op;
        let src = self.at(r.input, io);
        let dst = self.at(r.out, oo);
        if !reduced {
            // Combine a contiguous run of inputs into as many outputs, in sequence over the
            // outer reduced blocks (the interpreter's order for a non-last axis).
            self.for_vec(size, &mut |g, i, vector| {
                let ty = if vector { F32X4 } else { F32 };
                let sa = g.at(src, i);
                let x = g.b.ins().load(ty, mem(), sa, 0);
                let da = g.at(dst, i);
                let m = g.b.ins().load(ty, mem(), da, 0);
                let v = g.combine(op, m, x, vector);
                g.b.ins().store(mem(), v, da, 0);
            });
            return;
        }
        let acc = if r.unrolled || op == ReduceOp::Max {
            self.reduce_run_unrolled(op, src, size)
        } else {
            // In sequence, from the initial value in `dst`.
            let sacc = self.b.declare_var(F32);
            let init = self.b.ins().load(F32, mem(), dst, 0);
            self.b.def_var(sacc, init);
            self.for_loop(zero, size, 1, &mut |g, i| {
                let sa = g.at(src, i);
                let x = g.b.ins().load(F32, mem(), sa, 0);
                let m = g.b.use_var(sacc);
                let v = g.combine(op, m, x, false);
                g.b.def_var(sacc, v);
            });
            let v = self.b.use_var(sacc);
            self.b.ins().store(mem(), v, dst, 0);
            return;
        };
        let m = self.b.ins().load(F32, mem(), dst, 0);
        let v = self.combine(op, m, acc, false);
        self.b.ins().store(mem(), v, dst, 0);
    }

    /// Reduces `size` contiguous floats at `src` to one, in the order of ndarray's
    /// `unrolled_fold`: eight running partials `p0..p7` (two f32x4 accumulators) over chunks
    /// of eight, then `((((init + (p0+p4)) + (p1+p5)) + (p2+p6)) + (p3+p7))`, then the tail
    /// in sequence.
    fn reduce_run_unrolled(&mut self, op: ReduceOp, src: Value, size: Value) -> Value {
        let init = match op {
            ReduceOp::Sum => 0.0,
            ReduceOp::Max => f32::NEG_INFINITY,
        };
        let lo = self.b.declare_var(F32X4);
        let hi = self.b.declare_var(F32X4);
        let s = self.b.ins().f32const(init);
        let v0 = self.b.ins().splat(F32X4, s);
        self.b.def_var(lo, v0);
        self.b.def_var(hi, v0);
        let zero = self.i64c(0);
        let rest = self.for_loop(zero, size, 8, &mut |g, i| {
            let sa = g.at(src, i);
            let x = g.b.ins().load(F32X4, mem(), sa, 0);
            let y = g.b.ins().load(F32X4, mem(), sa, 16);
            let a = g.b.use_var(lo);
            let a = g.combine(op, a, x, true);
            g.b.def_var(lo, a);
            let b = g.b.use_var(hi);
            let b = g.combine(op, b, y, true);
            g.b.def_var(hi, b);
        });
        let a = self.b.use_var(lo);
        let b = self.b.use_var(hi);
        let pairs = self.combine(op, a, b, true);
        let mut acc = self.b.ins().f32const(init);
        for lane in 0..4u8 {
            let x = self.b.ins().extractlane(pairs, lane);
            acc = self.combine(op, acc, x, false);
        }
        let sacc = self.b.declare_var(F32);
        self.b.def_var(sacc, acc);
        self.for_loop(rest, size, 1, &mut |g, i| {
            let sa = g.at(src, i);
            let x = g.b.ins().load(F32, mem(), sa, 0);
            let m = g.b.use_var(sacc);
            let v = g.combine(op, m, x, false);
            g.b.def_var(sacc, v);
        });
        self.b.use_var(sacc)
    }

    fn elementwise(&mut self, len: Sym, inputs: &[InMode], nodes: &[ENode]) {
        let ins: Vec<Value> = (0..inputs.len()).map(|k| self.operand(k)).collect();
        let out = self.operand(inputs.len());
        let len = self.sym(len);
        // Each cyclic input's index `i % m`, carried along instead of divided out.
        let cycle: Vec<Option<(Variable, usize)>> = inputs
            .iter()
            .map(|mode| match *mode {
                InMode::Cycle(m) => {
                    let var = self.b.declare_var(I64);
                    let zero = self.i64c(0);
                    self.b.def_var(var, zero);
                    Some((var, m))
                }
                _ => None,
            })
            .collect();
        self.for_vec(len, &mut |g, i, vector| {
            let mut vals: Vec<Value> = Vec::with_capacity(nodes.len());
            for node in nodes {
                let v = match *node {
                    ENode::In(k) if cycle[k].is_some() => {
                        let (var, m) = cycle[k].expect("cyclic input");
                        let j = g.b.use_var(var);
                        g.cycle_load(ins[k], j, m, vector)
                    }
                    ENode::In(k) => {
                        let (ty, lane_ty, at_i) = match inputs[k] {
                            InMode::Full => (F32X4, F32, true),
                            InMode::FullInt => (I32X4, I32, true),
                            InMode::Splat | InMode::Cycle(_) => (F32X4, F32, false),
                        };
                        let a = if at_i { g.at(ins[k], i) } else { ins[k] };
                        if vector && at_i {
                            g.b.ins().load(ty, mem(), a, 0)
                        } else {
                            let x = g.b.ins().load(lane_ty, mem(), a, 0);
                            g.b.ins().splat(ty, x)
                        }
                    }
                    ENode::Const(bits) => V { b: &mut g.b }.c(f32::from_bits(bits)),
                    ENode::Un(op, a) => g.unary(op, vals[a]),
                    ENode::Bin(op, a, b) => g.binary(op, vals[a], vals[b]),
                    ENode::Sel(c, a, b) => {
                        let z = V { b: &mut g.b }.c(0.0);
                        let m = g.b.ins().fcmp(FloatCC::NotEqual, vals[c], z);
                        V { b: &mut g.b }.sel(m, vals[a], vals[b])
                    }
                };
                vals.push(v);
            }
            let r = *vals.last().expect("non-empty expression");
            let a = g.at(out, i);
            if vector {
                g.b.ins().store(mem(), r, a, 0);
            } else {
                let x = g.b.ins().extractlane(r, 0);
                g.b.ins().store(mem(), x, a, 0);
            }
            for &(var, m) in cycle.iter().flatten() {
                let j = g.b.use_var(var);
                let next = g.wrap_add(j, if vector { 4 } else { 1 }, m);
                g.b.def_var(var, next);
            }
        });
    }

    /// `(j + step) % m` for `j < m`.
    fn wrap_add(&mut self, j: Value, step: i64, m: usize) -> Value {
        let m = m as i64;
        let next = self.b.ins().iadd_imm_s(j, step);
        if step < m {
            // One subtraction brings it back below m.
            let wrapped = self.b.ins().iadd_imm_s(next, -m);
            let over = self
                .b
                .ins()
                .icmp_imm_s(IntCC::SignedGreaterThanOrEqual, next, m);
            self.b.ins().select(over, wrapped, next)
        } else {
            let mc = self.i64c(m);
            self.b.ins().urem(next, mc)
        }
    }

    /// Lanes `(j + l) % m` (`l < 4` for a vector, else the one lane `j`) of a cyclic input
    /// `base` of `m` elements, `j < m`, as an f32x4.
    fn cycle_load(&mut self, base: Value, j: Value, m: usize, vector: bool) -> Value {
        if !vector {
            let a = self.at(base, j);
            let x = self.b.ins().load(F32, mem(), a, 0);
            return self.b.ins().splat(F32X4, x);
        }
        if m.is_multiple_of(4) {
            // The vector steps from a multiple of 4, so its four lanes never wrap.
            let a = self.at(base, j);
            return self.b.ins().load(F32X4, mem(), a, 0);
        }
        let mut r = None;
        for lane in 0..4u8 {
            let idx = if lane == 0 {
                j
            } else {
                self.wrap_add(j, lane as i64, m)
            };
            let a = self.at(base, idx);
            let x = self.b.ins().load(F32, mem(), a, 0);
            r = Some(match r {
                None => self.b.ins().splat(F32X4, x),
                Some(v) => self.b.ins().insertlane(v, x, lane),
            });
        }
        r.expect("four lanes")
    }

    fn unary(&mut self, op: UnaryOp, x: Value) -> Value {
        let mut v = V { b: &mut self.b };
        match op {
            UnaryOp::Neg => v.b.ins().fneg(x),
            UnaryOp::Exp => v.exp(x),
            UnaryOp::Log => v.log(x),
            UnaryOp::Sqrt => v.b.ins().sqrt(x),
            UnaryOp::Tanh => v.tanh(x),
            UnaryOp::Sigmoid => v.sigmoid(x),
            UnaryOp::Erf => v.erf(x),
            UnaryOp::Abs => v.b.ins().fabs(x),
            UnaryOp::Sign => {
                let zero = v.c(0.0);
                let one = v.c(1.0);
                let mone = v.c(-1.0);
                let gt = v.cmp(FloatCC::GreaterThan, x, zero);
                let lt = v.cmp(FloatCC::LessThan, x, zero);
                let r = v.sel(lt, mone, zero);
                v.sel(gt, one, r)
            }
            UnaryOp::ToFloat => v.b.ins().fcvt_from_sint(F32X4, x),
            UnaryOp::StopGradient => x,
        }
    }

    fn binary(&mut self, op: BinaryOp, a: Value, b: Value) -> Value {
        if op == BinaryOp::Pow {
            let f = self.callee(Extern::Powf);
            let mut r = a;
            for lane in 0..4u8 {
                let x = self.b.ins().extractlane(a, lane);
                let y = self.b.ins().extractlane(b, lane);
                let call = self.b.ins().call(f, &[x, y]);
                let z = self.b.inst_results(call)[0];
                r = self.b.ins().insertlane(r, z, lane);
            }
            return r;
        }
        let mut v = V { b: &mut self.b };
        match op {
            BinaryOp::Add => v.add(a, b),
            BinaryOp::Sub => v.sub(a, b),
            BinaryOp::Mul => v.mul(a, b),
            BinaryOp::Div => v.div(a, b),
            BinaryOp::Max | BinaryOp::Min => {
                let cc = if op == BinaryOp::Max {
                    FloatCC::GreaterThan
                } else {
                    FloatCC::LessThan
                };
                let c = v.cmp(cc, a, b);
                let nan = v.cmp(FloatCC::Unordered, a, a);
                let take = v.b.ins().bor(c, nan);
                v.sel(take, a, b)
            }
            BinaryOp::Greater => {
                let m = v.cmp(FloatCC::GreaterThan, a, b);
                v.flag(m)
            }
            BinaryOp::GreaterEq => {
                let m = v.cmp(FloatCC::GreaterThanOrEqual, a, b);
                v.flag(m)
            }
            BinaryOp::Equal => {
                let m = v.cmp(FloatCC::Equal, a, b);
                v.flag(m)
            }
            BinaryOp::Pow => unreachable!("handled above"),
        }
    }
}
