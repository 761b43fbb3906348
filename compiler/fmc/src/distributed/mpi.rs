//! The [`Collective`] of an MPI job (rsmpi over the system's MPI library, e.g. Open MPI).

use fm_runtime::distributed::{check_all_started, check_order, BucketSink, Collective};
use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::request::{LocalScope, Request};
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::*;
use mpi::Count;
use std::ops::Range;

/// `MPI_COMM_WORLD` of this process; MPI is finalized when it is dropped.
pub struct MpiWorld {
    world: SimpleCommunicator,
    // Declared last: dropped (MPI_Finalize) after the communicator.
    _universe: mpi::environment::Universe,
}

impl MpiWorld {
    /// Initializes MPI (once per process); `None` when it was initialized before.
    pub fn init() -> Option<MpiWorld> {
        let universe = mpi::initialize()?;
        let world = universe.world();
        Some(MpiWorld {
            world,
            _universe: universe,
        })
    }
}

impl Collective for MpiWorld {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }
    fn size(&self) -> usize {
        self.world.size() as usize
    }
    fn all_reduce_sum(&self, buf: &mut [f32]) {
        let send = buf.to_vec();
        self.world
            .all_reduce_into(&send[..], buf, mpi::collective::SystemOperation::sum());
    }
    fn all_gather(&self, local: &[f32], counts: &[usize]) -> Vec<f32> {
        let total: usize = counts.iter().sum();
        let mut out = vec![0f32; total];
        let counts: Vec<Count> = counts.iter().map(|&c| c as Count).collect();
        let displs: Vec<Count> = counts
            .iter()
            .scan(0, |acc, &c| {
                let d = *acc;
                *acc += c;
                Some(d)
            })
            .collect();
        let mut partition = PartitionMut::new(&mut out[..], counts, &displs[..]);
        self.world.all_gather_varcount_into(local, &mut partition);
        out
    }
    fn broadcast_from_root(&self, buf: &mut [f32]) {
        self.world.process_at_rank(0).broadcast_into(buf);
    }
    /// Each bucket is an `MPI_Iallreduce` started as soon as `produce` fills it; `progress`
    /// tests the pending ones (Open MPI moves a non-blocking collective on only inside MPI
    /// calls); all are waited for before returning.
    fn all_reduce_sum_buckets(
        &self,
        buf: &mut [f32],
        buckets: &[Range<usize>],
        produce: &mut dyn FnMut(&mut dyn BucketSink) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut send = vec![0f32; buf.len()];
        let sends = split(&mut send, buckets);
        let recvs = split(buf, buckets);
        mpi::request::scope(|scope| {
            let mut sink = Immediate {
                world: &self.world,
                scope,
                sends,
                recvs,
                pending: Vec::new(),
                started: 0,
            };
            let produced = produce(&mut sink);
            for r in sink.pending.drain(..) {
                r.wait_without_status();
            }
            produced?;
            check_all_started(sink.started, buckets.len())
        })
    }
    fn abort(&self, code: i32) {
        if self.size() > 1 {
            self.world.abort(code)
        }
    }
}

/// The mutable slices `buckets` (consecutive ranges from 0) of `buf`.
fn split<'a>(mut buf: &'a mut [f32], buckets: &[Range<usize>]) -> Vec<Option<&'a mut [f32]>> {
    let mut out = Vec::with_capacity(buckets.len());
    let mut at = 0;
    for b in buckets {
        let (head, rest) = std::mem::take(&mut buf).split_at_mut(b.end - at);
        out.push(Some(&mut head[b.start - at..]));
        buf = rest;
        at = b.end;
    }
    out
}

/// The bucket sink of [`MpiWorld::all_reduce_sum_buckets`]: non-blocking all-reduces within
/// an rsmpi request scope (every request is waited for before the scope ends).
struct Immediate<'a, 's> {
    world: &'a SimpleCommunicator,
    scope: &'s LocalScope<'a>,
    sends: Vec<Option<&'a mut [f32]>>,
    recvs: Vec<Option<&'a mut [f32]>>,
    pending: Vec<Request<'a, [f32], &'s LocalScope<'a>>>,
    started: usize,
}

impl BucketSink for Immediate<'_, '_> {
    fn start(&mut self, k: usize, fill: &mut dyn FnMut(&mut [f32])) -> Result<(), String> {
        check_order(k, self.started, self.sends.len())?;
        let (Some(send), Some(recv)) = (self.sends[k].take(), self.recvs[k].take()) else {
            return Err(format!("internal error: gradient bucket {k} started twice"));
        };
        fill(send);
        let send: &[f32] = send;
        let request =
            self.world
                .immediate_all_reduce_into(self.scope, send, recv, SystemOperation::sum());
        self.pending.push(request);
        self.started += 1;
        Ok(())
    }

    fn progress(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        for r in pending {
            if let Err(r) = r.test() {
                self.pending.push(r);
            }
        }
    }
}
