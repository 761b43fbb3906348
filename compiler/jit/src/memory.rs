//! Buffer planning for one batch size: every materialized value gets a range of one arena;
//! ranges are reused once their value is dead (best fit over freed blocks). A kernel's output
//! is allocated before its dead inputs are released, so no kernel reads and writes one range.

use super::kernel::Sym;
use super::schedule::Schedule;
use fm_compiler::ir::{Function, ValueId};

const ALIGN: usize = 64;

#[derive(Clone, Debug)]
pub struct Plan {
    /// Byte offset of each materialized value's buffer (indexed by value; others 0).
    pub offset: Vec<usize>,
    /// Arena size in bytes.
    pub size: usize,
}

fn bytes(f: &Function, v: ValueId, n: usize) -> usize {
    let b = Sym::count(&f.insts[v].shape).eval(n) * 4;
    b.div_ceil(ALIGN).max(1) * ALIGN
}

pub fn plan(f: &Function, s: &Schedule, n: usize) -> Plan {
    let len = f.insts.len();
    // Position 0 is the argument copy-in; step k runs at position k + 1.
    let mut last_use = vec![0usize; len];
    for (k, step) in s.steps.iter().enumerate() {
        for &o in &step.operands[..step.operands.len() - 1] {
            last_use[o] = last_use[o].max(k + 1);
        }
    }
    for r in &f.results {
        last_use[s.root[r.value]] = usize::MAX;
    }
    let mut free: Vec<(usize, usize)> = Vec::new(); // (offset, size)
    let mut top = 0usize;
    let mut offset = vec![0usize; len];
    let mut alloc = |size: usize, free: &mut Vec<(usize, usize)>| -> usize {
        let best = free
            .iter()
            .enumerate()
            .filter(|(_, b)| b.1 >= size)
            .min_by_key(|(_, b)| b.1)
            .map(|(i, _)| i);
        match best {
            Some(i) => {
                let (off, sz) = free[i];
                if sz > size {
                    free[i] = (off + size, sz - size);
                } else {
                    free.swap_remove(i);
                }
                off
            }
            None => {
                let off = top;
                top += size;
                off
            }
        }
    };
    let release = |v: ValueId, free: &mut Vec<(usize, usize)>, offset: &[usize]| {
        free.push((offset[v], bytes(f, v, n)));
    };
    let args: Vec<ValueId> = (0..len)
        .filter(|&v| s.materialized[v] && matches!(f.insts[v].op, fm_compiler::ir::Op::Arg { .. }))
        .collect();
    for &a in &args {
        offset[a] = alloc(bytes(f, a, n), &mut free);
    }
    for &a in &args {
        if last_use[a] == 0 {
            release(a, &mut free, &offset);
        }
    }
    for (k, step) in s.steps.iter().enumerate() {
        let out = step.output;
        offset[out] = alloc(bytes(f, out, n), &mut free);
        let mut dead: Vec<ValueId> = step.operands[..step.operands.len() - 1]
            .iter()
            .copied()
            .filter(|&o| last_use[o] == k + 1)
            .collect();
        dead.sort_unstable();
        dead.dedup();
        if last_use[out] == 0 {
            dead.push(out);
        }
        for d in dead {
            release(d, &mut free, &offset);
        }
    }
    Plan { offset, size: top }
}
