//! Common-subexpression elimination: identical ops on identical operands compute once.

use super::rebuild;
use crate::ir::*;
use std::collections::HashMap;

/// Redirects every repeated computation to its first occurrence.
/// Every op is pure (random bits are a function of seed, step and salt), so all qualify.
pub fn cse(f: &Function) -> Function {
    let mut seen: HashMap<String, ValueId> = HashMap::new();
    let mut redirect: Vec<ValueId> = (0..f.insts.len()).collect();
    let mut keep = vec![true; f.insts.len()];
    for (v, inst) in f.insts.iter().enumerate() {
        if matches!(inst.op, Op::Arg { .. }) {
            continue;
        }
        let args: Vec<ValueId> = inst.args.iter().map(|&a| redirect[a]).collect();
        let key = format!("{:?}|{:?}|{:?}", inst.op, args, inst.shape);
        match seen.get(&key) {
            Some(&prev) => {
                redirect[v] = prev;
                keep[v] = false;
            }
            None => {
                seen.insert(key, v);
            }
        }
    }
    rebuild(f, &keep, &redirect)
}
