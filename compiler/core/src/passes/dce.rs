//! Dead-code elimination: keeps what the results need, and every argument read.

use super::rebuild;
use crate::ir::*;

/// Removes the instructions no result depends on (arguments stay: they are the signature).
pub fn dce(f: &Function) -> Function {
    let mut live = f.result_mask();
    for v in (0..f.insts.len()).rev() {
        if matches!(f.insts[v].op, Op::Arg { .. }) {
            live[v] = true;
        }
        if live[v] {
            for &a in &f.insts[v].args {
                live[a] = true;
            }
        }
    }
    let identity: Vec<ValueId> = (0..f.insts.len()).collect();
    rebuild(f, &live, &identity)
}
