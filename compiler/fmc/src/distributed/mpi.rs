//! The [`Collective`] of an MPI job (rsmpi over the system's MPI library, e.g. Open MPI).

use fm_runtime::distributed::Collective;
use mpi::datatype::PartitionMut;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::*;
use mpi::Count;

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
    fn abort(&self, code: i32) {
        if self.size() > 1 {
            self.world.abort(code)
        }
    }
}
