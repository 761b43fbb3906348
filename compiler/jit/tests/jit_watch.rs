//! `run_watched`, which lets data-parallel training send gradients while the backward pass
//! still runs: the JIT reports each group of results, in order, right after the kernel call that
//! completes it, with exactly the values the finished run returns; the interpreter reports
//! them after the run.

mod jit_common;

use fm_compiler::exec::{ResultWatch, Session};
use jit_common::*;

/// Copies every reported group and counts the `progress` calls after each report.
#[derive(Default)]
struct Record {
    groups: Vec<(usize, Vec<Vec<f32>>)>,
    /// `progress` calls since the last report, per report.
    progress_after: Vec<usize>,
}

impl ResultWatch for Record {
    fn ready(&mut self, group: usize, values: &[&[f32]]) -> Result<(), String> {
        self.groups
            .push((group, values.iter().map(|v| v.to_vec()).collect()));
        self.progress_after.push(0);
        Ok(())
    }
    fn progress(&mut self) {
        if let Some(p) = self.progress_after.last_mut() {
            *p += 1;
        }
    }
}

/// Every gradient its own group, last parameter first (as data-parallel buckets go); the loss
/// with the last group.
fn watched_step(s: &mut Session, batch: usize) -> (Record, fm_compiler::exec::GradResult) {
    s.split_step().unwrap();
    let (loss, grads) = s.grad_results().unwrap();
    let mut groups: Vec<Vec<usize>> = grads.iter().rev().map(|&g| vec![g]).collect();
    groups.last_mut().unwrap().push(loss);
    let (inputs, targets) = synthetic_batch(s, batch, 3);
    let mut rec = Record::default();
    let r = s
        .grad_step_watched(&inputs, &targets, 0, &groups, &mut rec)
        .unwrap();
    // Reported in order, each once, with the values of the finished run.
    assert_eq!(
        rec.groups.iter().map(|g| g.0).collect::<Vec<_>>(),
        (0..groups.len()).collect::<Vec<_>>()
    );
    for (k, (_, values)) in rec.groups.iter().enumerate() {
        let t = r.grads.len() - 1 - k;
        assert_eq!(
            values[0],
            r.grads[t].iter().copied().collect::<Vec<_>>(),
            "gradient {t}"
        );
    }
    let last = &rec.groups.last().unwrap().1;
    assert_eq!(f64::from(last[1][0]), r.loss);
    (rec, r)
}

#[test]
fn the_jit_reports_gradients_as_the_backward_pass_computes_them() {
    let (graph, spec) = load_example("digits_cnn.fm");
    let (mut jit, report) = fm_jit::session::new_session(graph, spec).unwrap();
    assert!(report.refused.is_empty());
    let (rec, _) = watched_step(&mut jit, 5);
    // The Dense layer's gradients (the first groups) are final long before the convolutions'
    // (the last ones): kernel calls, each followed by `progress`, run between.
    // (Measured: 20 of the 70 calls run after the Dense kernel's gradient is final.)
    let after_dense: usize = rec.progress_after[1..].iter().sum();
    assert!(after_dense >= 15, "{:?}", rec.progress_after);
    assert_eq!(
        *rec.progress_after.last().unwrap(),
        0,
        "the last group ends the run"
    );
}

#[test]
fn the_interpreter_reports_after_the_run() {
    let (graph, spec) = load_example("digits_mlp.fm");
    let mut s = Session::new(graph, spec).unwrap();
    let (rec, _) = watched_step(&mut s, 4);
    assert!(rec.progress_after.iter().all(|&p| p == 0));
}
