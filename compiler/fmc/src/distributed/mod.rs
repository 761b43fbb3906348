//! Data-parallel training: a [`Backend`] that runs a [`Session`]'s step on this rank's shard of
//! every global batch and combines the ranks through a [`Collective`] (MPI under `mpirun`).
//!
//! One step, on every rank:
//! 1. take the shard of the global batch (`fm_runtime::distributed::shard`: contiguous, the
//!    first `len % ranks` ranks one sample more);
//! 2. `grad_step` on it: the shard's mean loss and the gradient of that mean;
//! 3. one sum all-reduce of every gradient and the loss, each weighted by `shard / batch`, which
//!    makes them the gradient and loss of the global batch's mean (regularisers, the same on
//!    every rank, are weighted to exactly once);
//! 4. `apply_step` with the summed gradients: the same update on every rank, so parameters
//!    and optimizer state stay identical without being sent;
//! 5. BatchNorm moving statistics, which each rank computed from its own shard (batch
//!    statistics are per rank, as in PyTorch DDP), are replaced by rank 0's (DDP's
//!    `broadcast_buffers`), so every rank holds the state rank 0 saves;
//! 6. the outputs of every shard are gathered, so that metrics are those of the global batch.
//!
//! Evaluation and prediction run whole on every rank (each rank holds the same model).

#[cfg(feature = "mpi")]
pub mod mpi;

use fm_compiler::exec::Session;
use fm_runtime::distributed::{shard, shard_sizes, Collective};
use fm_runtime::tensor::Tensor;
use fm_runtime::train::{Backend, StepOutput};
use fm_runtime::{ErrorKind, RuntimeError};
use ndarray::{ArrayD, IxDyn};

/// A session trained data-parallel over `group`.
pub struct DataParallel<'a> {
    session: Session,
    group: &'a dyn Collective,
    /// Indices of the non-trainable parameters (BatchNorm statistics), broadcast from rank 0.
    state_params: Vec<usize>,
}

fn backend_error(message: String) -> RuntimeError {
    RuntimeError::new(ErrorKind::Backend, None, message)
}

impl<'a> DataParallel<'a> {
    /// Splits the session's train step at the gradients (see `Session::split_step`).
    pub fn new(mut session: Session, group: &'a dyn Collective) -> Result<Self, String> {
        session.split_step()?;
        let state_params = (0..session.graph.params.len())
            .filter(|&p| !session.graph.params[p].trainable)
            .collect();
        Ok(DataParallel {
            session,
            group,
            state_params,
        })
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    pub fn into_session(self) -> Session {
        self.session
    }

    fn step(
        &mut self,
        inputs: &[Tensor],
        targets: &[Tensor],
        lr: f32,
    ) -> Result<StepOutput, String> {
        let (rank, size) = (self.group.rank(), self.group.size());
        let n = inputs.first().map_or(0, Tensor::len);
        let mine = shard(n, rank, size);
        let local = mine.len();
        let trainable = fm_compiler::lower::trainable(&self.session.graph);
        // The shard's gradients and loss, weighted by its part of the global batch, in one
        // buffer: a single all-reduce per step.
        let mut buf: Vec<f32> = Vec::new();
        let mut outputs_local: Vec<Tensor> = Vec::new();
        if local > 0 {
            let part = |ts: &[Tensor]| -> Vec<Tensor> {
                ts.iter().map(|t| t.slice_samples(mine.clone())).collect()
            };
            let r = self.session.grad_step(&part(inputs), &part(targets))?;
            let w = local as f32 / n as f32;
            for g in &r.grads {
                buf.extend(g.iter().map(|v| v * w));
            }
            buf.push((r.loss * local as f64 / n as f64) as f32);
            outputs_local = r.outputs;
        } else {
            let len: usize = trainable
                .iter()
                .map(|&p| self.session.graph.params[p].shape.iter().product::<usize>())
                .sum();
            buf.resize(len + 1, 0.0);
        }
        self.group.all_reduce_sum(&mut buf);
        let loss = f64::from(buf.pop().unwrap_or(0.0));
        let mut grads = Vec::with_capacity(trainable.len());
        let mut at = 0;
        for &p in &trainable {
            let shape = &self.session.graph.params[p].shape;
            let len: usize = shape.iter().product();
            let g = ArrayD::from_shape_vec(IxDyn(shape), buf[at..at + len].to_vec())
                .map_err(|e| e.to_string())?;
            grads.push(g);
            at += len;
        }
        self.session.apply_gradients(&grads, lr)?;
        self.sync_state();
        let outputs = self.gather_outputs(outputs_local, n)?;
        Ok(StepOutput {
            loss,
            outputs,
            extra: Vec::new(),
        })
    }

    /// Every rank takes rank 0's BatchNorm moving statistics.
    fn sync_state(&mut self) {
        if self.state_params.is_empty() || self.group.size() == 1 {
            return;
        }
        let mut buf: Vec<f32> = Vec::new();
        for &p in &self.state_params {
            buf.extend(self.session.params[p].iter().copied());
        }
        self.group.broadcast_from_root(&mut buf);
        let mut at = 0;
        for &p in &self.state_params {
            let v = &mut self.session.params[p];
            let len = v.len();
            for (dst, src) in v.iter_mut().zip(&buf[at..at + len]) {
                *dst = *src;
            }
            at += len;
        }
    }

    /// The outputs of the whole global batch, from every rank's shard.
    fn gather_outputs(&self, local: Vec<Tensor>, n: usize) -> Result<Vec<Tensor>, String> {
        let sizes = shard_sizes(n, self.group.size());
        let graph = &self.session.graph;
        graph
            .outputs
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let sample_shape = &graph.nodes[o.node].shape;
                let per_sample: usize = sample_shape.iter().product();
                let mine: Vec<f32> = match local.get(i) {
                    Some(t) => t.to_f32().iter().copied().collect(),
                    None => Vec::new(),
                };
                let counts: Vec<usize> = sizes.iter().map(|s| s * per_sample).collect();
                let all = self.group.all_gather(&mine, &counts);
                let mut shape = vec![n];
                shape.extend_from_slice(sample_shape);
                ArrayD::from_shape_vec(IxDyn(&shape), all)
                    .map(Tensor::F32)
                    .map_err(|e| format!("output `{}`: {e}", o.name))
            })
            .collect()
    }
}

impl Backend for DataParallel<'_> {
    fn train_step(
        &mut self,
        inputs: &[Tensor],
        targets: &[Tensor],
        lr: f32,
    ) -> Result<StepOutput, RuntimeError> {
        self.step(inputs, targets, lr).map_err(backend_error)
    }
    fn evaluate(
        &mut self,
        inputs: &[Tensor],
        targets: &[Tensor],
    ) -> Result<StepOutput, RuntimeError> {
        Backend::evaluate(&mut self.session, inputs, targets)
    }
    fn predict(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
        Backend::predict(&mut self.session, inputs)
    }
    fn state(&self) -> Vec<(String, Tensor)> {
        Backend::state(&self.session)
    }
    fn set_state(&mut self, state: &[(String, Tensor)]) -> Result<(), RuntimeError> {
        Backend::set_state(&mut self.session, state)
    }
}
