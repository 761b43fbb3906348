//! Deep Q-learning (DQN) in a small maze, with the Q-network of `qnet.fm` compiled into this
//! crate by `fm::model!`: an environment, a replay buffer, epsilon-greedy exploration, and a
//! target network that is a copy of the online one, refreshed every few hundred steps.
//!
//! The update is the standard Keras DQN formulation: for a batch of transitions
//! `(s, a, r, s', done)` the regression target is the online network's own `Q(s)` with entry
//! `a` replaced by `r + gamma * (1 - done) * max_a' Q_target(s', a')`, trained with the file's
//! `mse` loss (the other entries contribute nothing to the gradient).

use fm::ndarray::{Array2, ArrayD};
use fm::random::Rng;

// Relative to this file. Defines `Qnet`: `new`, `predict`, `forward`, `train_step`, `Clone`, ...
fm::model!("qnet.fm");

// The environment, without fm (tests/tests/dqn_fmc.rs includes it too).
pub mod maze;
pub use maze::*;

/// The discounted return of reaching the goal in `moves` moves (the value an optimal agent's
/// Q-network should give its best move).
pub fn optimal_value(moves: usize, gamma: f32) -> f32 {
    let mut value = GOAL_REWARD;
    for _ in 1..moves {
        value = STEP_REWARD + gamma * value;
    }
    value
}

/// The network's input for a cell: one-hot over the grid.
pub fn one_hot(cell: usize) -> [f32; CELLS] {
    let mut x = [0.0; CELLS];
    x[cell] = 1.0;
    x
}

/// A fixed-capacity ring of transitions, sampled uniformly with replacement.
pub struct ReplayBuffer {
    items: Vec<Transition>,
    capacity: usize,
    next: usize,
}

impl ReplayBuffer {
    pub fn new(capacity: usize) -> Self {
        ReplayBuffer {
            items: Vec::with_capacity(capacity),
            capacity,
            next: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Adds a transition, replacing the oldest one when full.
    pub fn push(&mut self, t: Transition) {
        if self.items.len() < self.capacity {
            self.items.push(t);
        } else {
            self.items[self.next] = t;
        }
        self.next = (self.next + 1) % self.capacity;
    }

    pub fn sample(&self, n: usize, rng: &mut Rng) -> Vec<Transition> {
        (0..n)
            .map(|_| self.items[(rng.next_u64() % self.items.len() as u64) as usize])
            .collect()
    }
}

/// The training setup. `Default` is what the example and its test use.
#[derive(Clone, Debug)]
pub struct Config {
    pub seed: u64,
    pub gamma: f32,
    /// Episodes to play. Every `check_every` episodes the greedy policy is checked (the first
    /// episode after which it is optimal from every start is reported); training goes on to
    /// the end regardless, so what is returned is the network after the whole budget.
    pub episodes: usize,
    pub check_every: usize,
    /// Moves at most per episode.
    pub max_moves: usize,
    pub replay_capacity: usize,
    /// Transitions collected before the first update.
    pub warmup: usize,
    pub batch_size: usize,
    /// Optimizer steps between refreshes of the target network.
    pub target_every: u64,
    /// Exploration: epsilon falls linearly from 1 to `epsilon_end` over `epsilon_moves` moves.
    pub epsilon_end: f64,
    pub epsilon_moves: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            seed: 0,
            gamma: 0.9,
            episodes: 300,
            check_every: 10,
            max_moves: 60,
            replay_capacity: 10_000,
            warmup: 256,
            batch_size: 32,
            target_every: 200,
            epsilon_end: 0.1,
            epsilon_moves: 4000,
        }
    }
}

/// What [`train`] did.
#[derive(Debug)]
pub struct Report {
    /// Episodes played.
    pub episodes: usize,
    /// Moves made in the maze (over all episodes).
    pub moves: usize,
    /// Optimizer steps of the online network.
    pub updates: u64,
    /// Refreshes of the target network.
    pub target_syncs: usize,
    /// The first checked episode after which the greedy policy was optimal from every start.
    pub solved_after: Option<usize>,
}

/// The greedy move in each cell (index into [`MOVES`]), from one batch through the network.
pub fn greedy_policy(q: &Qnet) -> Result<[usize; CELLS], fm::Error> {
    let mut x = Array2::<f32>::zeros((CELLS, CELLS));
    for c in 0..CELLS {
        x[[c, c]] = 1.0;
    }
    let values = q.predict(x.into_dyn().view())?;
    let mut policy = [0; CELLS];
    for (c, p) in policy.iter_mut().enumerate() {
        *p = argmax((0..4).map(|a| values[[c, a]]));
    }
    Ok(policy)
}

fn argmax(values: impl Iterator<Item = f32>) -> usize {
    values
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, v)| {
            if v > best.1 {
                (i, v)
            } else {
                best
            }
        })
        .0
}

/// Trains a Q-network on `maze` with DQN; returns the online network and what happened.
pub fn train(maze: &Maze, config: &Config) -> Result<(Qnet, Report), fm::Error> {
    let mut online = Qnet::new(config.seed);
    // The target network: a second instance, equal to the online one after each refresh.
    let mut target = online.clone();
    let mut replay = ReplayBuffer::new(config.replay_capacity);
    let mut rng = Rng::new(config.seed, 1);
    let starts = maze.starts();
    let mut report = Report {
        episodes: 0,
        moves: 0,
        updates: 0,
        target_syncs: 0,
        solved_after: None,
    };
    for episode in 1..=config.episodes {
        // Exploring starts: every episode begins in a random open cell.
        let mut cell = starts[(rng.next_u64() % starts.len() as u64) as usize];
        for _ in 0..config.max_moves {
            let progress = (report.moves as f64 / config.epsilon_moves as f64).min(1.0);
            let epsilon = 1.0 + (config.epsilon_end - 1.0) * progress;
            let action = if rng.uniform() < epsilon {
                (rng.next_u64() % 4) as usize
            } else {
                let q = online.forward(&one_hot(cell))?;
                argmax(q.into_iter())
            };
            let moved = maze.transition(cell, action);
            replay.push(moved);
            report.moves += 1;
            if replay.len() >= config.warmup {
                let batch = replay.sample(config.batch_size, &mut rng);
                update(&mut online, &target, &batch, config.gamma)?;
                report.updates += 1;
                if report.updates.is_multiple_of(config.target_every) {
                    target = online.clone();
                    report.target_syncs += 1;
                }
            }
            cell = moved.next;
            if moved.done {
                break;
            }
        }
        report.episodes = episode;
        if report.solved_after.is_none()
            && episode.is_multiple_of(config.check_every)
            && is_optimal(maze, &greedy_policy(&online)?)
        {
            report.solved_after = Some(episode);
        }
    }
    Ok((online, report))
}

/// One DQN step on a batch: targets from the target network, one optimizer step of the online
/// network with the file's loss and optimizer.
fn update(
    online: &mut Qnet,
    target: &Qnet,
    batch: &[Transition],
    gamma: f32,
) -> Result<(), fm::Error> {
    let n = batch.len();
    let mut states = Array2::<f32>::zeros((n, CELLS));
    let mut next_states = Array2::<f32>::zeros((n, CELLS));
    for (i, t) in batch.iter().enumerate() {
        states[[i, t.cell]] = 1.0;
        next_states[[i, t.next]] = 1.0;
    }
    let states = states.into_dyn();
    let q_next = target.predict(next_states.into_dyn().view())?;
    let mut y: ArrayD<f32> = online.predict(states.view())?;
    for (i, t) in batch.iter().enumerate() {
        let best_next = (0..4)
            .map(|a| q_next[[i, a]])
            .fold(f32::NEG_INFINITY, f32::max);
        let future = if t.done { 0.0 } else { gamma * best_next };
        y[[i, t.action]] = t.reward + future;
    }
    online.train_step(states.view(), y.view())?;
    Ok(())
}

/// The maze with the greedy move drawn in each open cell.
pub fn render(maze: &Maze, policy: &[usize; CELLS]) -> String {
    let mut s = String::new();
    for r in 0..ROWS {
        for c in 0..COLS {
            let cell = r * COLS + c;
            s.push(if maze.is_wall(cell) {
                '#'
            } else if cell == maze.goal {
                'G'
            } else {
                MOVE_ARROWS[policy[cell]]
            });
        }
        s.push('\n');
    }
    s
}
