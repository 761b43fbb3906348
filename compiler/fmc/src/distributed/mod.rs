//! Data-parallel training: a [`Backend`] that runs a [`Session`]'s step on this rank's shard of
//! every global batch and combines the ranks through a [`Collective`] (MPI under `mpirun`).
//!
//! One step, on every rank:
//! 1. take the shard of the global batch (`fm_runtime::distributed::shard`: contiguous, the
//!    first `len % ranks` ranks one sample more);
//! 2. `grad_step` on it: the shard's mean loss and the gradient of that mean, with the dropout
//!    masks one process draws for those samples (the random counter starts at the shard's
//!    first sample);
//! 3. a sum all-reduce of every gradient and the loss, each weighted by `shard / batch`, which
//!    makes them the gradient and loss of the global batch's mean (regularisers, the same on
//!    every rank, are weighted to exactly once). The gradients go in buckets, as in PyTorch
//!    DDP: in reverse parameter order, a bucket closing at `Options::bucket_bytes`. The JIT
//!    reports each bucket's gradients right after the kernel call that completes them
//!    (`Executor::run_watched`), and the bucket's non-blocking all-reduce starts then, while
//!    the backward pass computes the earlier layers' gradients; all are waited for before the
//!    update. Without overlap (`Options::overlap` false) the same buckets are sent after the
//!    backward pass: the same sums, bit for bit;
//! 4. `apply_step` with the summed gradients: the same update on every rank, so parameters
//!    and optimizer state stay identical without being sent;
//! 5. BatchNorm moving statistics, which each rank computed from its own shard (batch
//!    statistics are per rank, as in PyTorch DDP), are replaced by rank 0's (DDP's
//!    `broadcast_buffers`), so every rank holds the state rank 0 saves;
//! 6. the outputs of every shard are gathered, so that metrics are those of the global batch.
//!
//! Evaluation (validation and test during training) is sharded the same way: each rank
//! evaluates its shard, the shard-weighted losses are summed and the outputs gathered, so the
//! metrics are those of the whole batch. Prediction runs whole on every rank.

#[cfg(feature = "mpi")]
pub mod mpi;

use fm_compiler::exec::{ResultWatch, Session};
use fm_runtime::distributed::{buckets_by_size, shard, shard_sizes, BucketSink, Collective};
use fm_runtime::tensor::Tensor;
use fm_runtime::train::{Backend, StepOutput};
use fm_runtime::{ErrorKind, RuntimeError};
use ndarray::{ArrayD, IxDyn};
use std::ops::Range;
use std::time::{Duration, Instant};

/// A session trained data-parallel over `group`.
pub struct DataParallel<'a> {
    session: Session,
    group: &'a dyn Collective,
    /// Indices of the non-trainable parameters (BatchNorm statistics), broadcast from rank 0.
    state_params: Vec<usize>,
    /// The trainable parameters' indices, in parameter order (the gradients' order).
    trainable: Vec<usize>,
    /// The gradients' all-reduce buckets, in the order they are sent.
    buckets: Vec<Bucket>,
    /// Each bucket's `grad_step` results (the last bucket's end with the loss).
    groups: Vec<Vec<usize>>,
    /// Whether a bucket is sent as soon as the backward pass has computed it (else after it).
    overlap: bool,
    /// The send and receive buffer of the buckets, kept from step to step.
    buf: Vec<f32>,
    stats: CommStats,
}

/// How a data-parallel run sends its gradients.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// A bucket closes once it holds this many bytes of gradients (PyTorch DDP's
    /// `bucket_cap_mb`); 0 sends each parameter's gradient on its own.
    pub bucket_bytes: usize,
    /// Start each bucket's all-reduce while the backward pass still runs.
    pub overlap: bool,
}

/// One all-reduce of gradients.
struct Bucket {
    /// Positions in `DataParallel::trainable`, in the order laid out in the buffer.
    trainable: Vec<usize>,
    /// Its elements in the buffer (the last bucket also holds the loss, its last element).
    range: Range<usize>,
}

/// Where a data-parallel run's time went, summed over its steps.
#[derive(Clone, Copy, Debug, Default)]
pub struct CommStats {
    pub steps: u64,
    /// Whole train steps (shard, forward, backward, all-reduce, update, outputs gathered).
    pub step: Duration,
    /// Waiting for the all-reduces after the backward pass ended.
    pub wait: Duration,
    /// Inside the bucket sink during the backward pass: copying gradients into the send
    /// buffer, starting the all-reduces, testing them.
    pub start: Duration,
    /// From the first bucket's start to the end of the backward pass: the computation an
    /// all-reduce can hide behind.
    pub window: Duration,
}

/// The samples `range` of every tensor.
fn part(ts: &[Tensor], range: &Range<usize>) -> Vec<Tensor> {
    ts.iter().map(|t| t.slice_samples(range.clone())).collect()
}

fn backend_error(message: String) -> RuntimeError {
    RuntimeError::new(ErrorKind::Backend, None, message)
}

impl<'a> DataParallel<'a> {
    /// Splits the session's train step at the gradients (see `Session::split_step`) and the
    /// gradients into buckets: in reverse parameter order (the backward pass computes the last
    /// layers' gradients first), closed at `options.bucket_bytes`.
    pub fn new(
        mut session: Session,
        group: &'a dyn Collective,
        options: Options,
    ) -> Result<Self, String> {
        session.split_step()?;
        let graph = &session.graph;
        let state_params = (0..graph.params.len())
            .filter(|&p| !graph.params[p].trainable)
            .collect();
        let trainable = fm_compiler::lower::trainable(graph);
        let len = |t: usize| graph.params[trainable[t]].shape.iter().product::<usize>();
        let order: Vec<usize> = (0..trainable.len()).rev().collect();
        let bytes: Vec<usize> = order.iter().map(|&t| len(t) * 4).collect();
        let (loss_result, grad_results) = session.grad_results()?;
        if grad_results.len() != trainable.len() {
            return Err(format!(
                "internal error: grad_step returns {} gradients for {} trainable parameters",
                grad_results.len(),
                trainable.len()
            ));
        }
        let mut buckets = Vec::new();
        let mut groups = Vec::new();
        let mut taken = order.into_iter();
        let mut at = 0;
        for count in buckets_by_size(&bytes, options.bucket_bytes) {
            let members: Vec<usize> = taken.by_ref().take(count).collect();
            let size: usize = members.iter().map(|&t| len(t)).sum();
            groups.push(members.iter().map(|&t| grad_results[t]).collect());
            buckets.push(Bucket {
                trainable: members,
                range: at..at + size,
            });
            at += size;
        }
        // The loss travels at the end of the last bucket (a model without trainable
        // parameters sends it alone).
        if buckets.is_empty() {
            buckets.push(Bucket {
                trainable: Vec::new(),
                range: 0..0,
            });
            groups.push(Vec::new());
        }
        if let (Some(b), Some(g)) = (buckets.last_mut(), groups.last_mut()) {
            b.range.end += 1;
            g.push(loss_result);
        }
        Ok(DataParallel {
            session,
            group,
            state_params,
            trainable,
            buckets,
            groups,
            overlap: options.overlap,
            buf: Vec::new(),
            stats: CommStats::default(),
        })
    }

    /// The sizes (in elements, the last one with the loss) of the gradient buckets, in the
    /// order they are sent.
    pub fn bucket_sizes(&self) -> Vec<usize> {
        self.buckets.iter().map(|b| b.range.len()).collect()
    }

    /// Where the steps' time went so far.
    pub fn stats(&self) -> CommStats {
        self.stats
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
        let started = Instant::now();
        let (rank, size) = (self.group.rank(), self.group.size());
        let n = inputs.first().map_or(0, Tensor::len);
        let mine = shard(n, rank, size);
        let local = mine.len();
        // The shard's gradients and loss, each weighted by the shard's part of the global
        // batch, summed over the ranks bucket by bucket.
        let w = local as f32 / n as f32;
        let loss_weight = local as f64 / n as f64;
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(self.buckets.last().map_or(0, |b| b.range.end), 0.0);
        let ranges: Vec<Range<usize>> = self.buckets.iter().map(|b| b.range.clone()).collect();
        let mut outputs_local: Vec<Tensor> = Vec::new();
        let mut produced_at = None;
        let mut in_sink = Duration::ZERO;
        let mut window = Duration::ZERO;
        let session = &mut self.session;
        let (buckets, overlap, groups) = (&self.buckets, self.overlap, &self.groups);
        let summed = self
            .group
            .all_reduce_sum_buckets(&mut buf, &ranges, &mut |sink| {
                let mut sink = Timed {
                    sink,
                    time: &mut in_sink,
                    first: None,
                };
                if local == 0 {
                    for k in 0..buckets.len() {
                        sink.start(k, &mut |dst| dst.fill(0.0))?;
                    }
                } else {
                    let inputs = part(inputs, &mine);
                    let targets = part(targets, &mine);
                    let r = if overlap {
                        // Each bucket starts as soon as the backward pass has computed it.
                        let mut watch = SendBuckets {
                            sink: &mut sink,
                            w,
                            loss_weight,
                            last: buckets.len() - 1,
                        };
                        session
                            .grad_step_watched(&inputs, &targets, mine.start, groups, &mut watch)?
                    } else {
                        let r = session.grad_step(&inputs, &targets, mine.start)?;
                        for (k, b) in buckets.iter().enumerate() {
                            sink.start(k, &mut |dst| {
                                let mut at = 0;
                                for &t in &b.trainable {
                                    let g = r.grads[t].as_slice().expect("standard layout");
                                    for (d, v) in dst[at..at + g.len()].iter_mut().zip(g) {
                                        *d = v * w;
                                    }
                                    at += g.len();
                                }
                                if k == buckets.len() - 1 {
                                    dst[at] = (r.loss * loss_weight) as f32;
                                }
                            })?;
                        }
                        r
                    };
                    outputs_local = r.outputs;
                }
                let end = Instant::now();
                produced_at = Some(end);
                window = end - sink.first.unwrap_or(end);
                Ok(())
            });
        let done = Instant::now();
        summed?;
        let loss = f64::from(*buf.last().unwrap_or(&0.0));
        let mut grads = vec![ArrayD::zeros(IxDyn(&[0])); self.trainable.len()];
        for b in &self.buckets {
            let mut at = b.range.start;
            for &t in &b.trainable {
                let shape = &self.session.graph.params[self.trainable[t]].shape;
                let len: usize = shape.iter().product();
                grads[t] = ArrayD::from_shape_vec(IxDyn(shape), buf[at..at + len].to_vec())
                    .map_err(|e| e.to_string())?;
                at += len;
            }
        }
        self.buf = buf;
        self.session.apply_gradients(&grads, lr)?;
        self.sync_state();
        let outputs = self.gather_outputs(outputs_local, n)?;
        let s = &mut self.stats;
        s.steps += 1;
        s.step += started.elapsed();
        s.wait += done - produced_at.unwrap_or(done);
        s.start += in_sink;
        s.window += window;
        Ok(StepOutput {
            loss,
            outputs,
            extra: Vec::new(),
        })
    }

    /// Loss and outputs of a batch in inference mode, each rank evaluating its shard: the
    /// shard-weighted losses sum to the batch's mean loss, and the outputs are gathered.
    fn evaluate(&mut self, inputs: &[Tensor], targets: &[Tensor]) -> Result<StepOutput, String> {
        let n = inputs.first().map_or(0, Tensor::len);
        let mine = shard(n, self.group.rank(), self.group.size());
        let mut loss = [0f32];
        let mut outputs_local = Vec::new();
        if !mine.is_empty() {
            let r = self
                .session
                .evaluate(&part(inputs, &mine), &part(targets, &mine))?;
            loss[0] = (r.loss * mine.len() as f64 / n as f64) as f32;
            outputs_local = r.outputs;
        }
        self.group.all_reduce_sum(&mut loss);
        let outputs = self.gather_outputs(outputs_local, n)?;
        Ok(StepOutput {
            loss: f64::from(loss[0]),
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

/// A bucket sink that counts the time spent in it.
struct Timed<'s, 't> {
    sink: &'s mut dyn BucketSink,
    time: &'t mut Duration,
    /// When the first bucket started.
    first: Option<Instant>,
}

impl BucketSink for Timed<'_, '_> {
    fn start(&mut self, k: usize, fill: &mut dyn FnMut(&mut [f32])) -> Result<(), String> {
        let t = Instant::now();
        self.first.get_or_insert(t);
        let r = self.sink.start(k, fill);
        *self.time += t.elapsed();
        r
    }
    fn progress(&mut self) {
        let t = Instant::now();
        self.sink.progress();
        *self.time += t.elapsed();
    }
}

/// Sends each bucket of gradients (weighted by the shard's part of the batch) as soon as the
/// backward pass reports it; the last one ends with the weighted loss.
struct SendBuckets<'s> {
    sink: &'s mut dyn BucketSink,
    w: f32,
    loss_weight: f64,
    last: usize,
}

impl ResultWatch for SendBuckets<'_> {
    fn ready(&mut self, group: usize, values: &[&[f32]]) -> Result<(), String> {
        let (w, loss_weight) = (self.w, self.loss_weight);
        let n_grads = values.len() - usize::from(group == self.last);
        self.sink.start(group, &mut |dst| {
            let mut at = 0;
            for g in &values[..n_grads] {
                for (d, v) in dst[at..at + g.len()].iter_mut().zip(*g) {
                    *d = v * w;
                }
                at += g.len();
            }
            if group == self.last {
                // As `GradResult::loss`: the f32 loss widened, weighted in f64.
                dst[at] = (f64::from(values[n_grads][0]) * loss_weight) as f32;
            }
        })
    }
    fn progress(&mut self) {
        self.sink.progress();
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
        DataParallel::evaluate(self, inputs, targets).map_err(backend_error)
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
