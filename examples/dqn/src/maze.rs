//! The maze: an 8x8 grid world with walls and a goal, its moves and rewards, shortest paths,
//! and whether a policy is optimal. Plain Rust with no dependency, so fm's `fmc`-only DQN test
//! (tests/tests/dqn_fmc.rs) plays in this same maze.

/// The maze, row by row: `#` is a wall, `G` the goal; every other cell is a possible start.
/// The farthest cell is 21 moves from the goal, and several cells have two ways there.
pub const MAZE: [&str; ROWS] = [
    "..#.....", //
    ".##.###.", //
    "....#...", //
    "###.#.##", //
    "....#...", //
    ".####.#.", //
    "......#.", //
    "#.###..G",
];
pub const ROWS: usize = 8;
pub const COLS: usize = 8;
pub const CELLS: usize = ROWS * COLS;
/// Moves, in the order of the Q-network's outputs.
pub const MOVES: [(isize, isize); 4] = [(-1, 0), (0, 1), (1, 0), (0, -1)];
pub const MOVE_ARROWS: [char; 4] = ['^', '>', 'v', '<'];

/// The grid world: each move costs `STEP_REWARD`; reaching the goal gives `GOAL_REWARD` and
/// ends the episode; a move into a wall or off the grid leaves the agent where it is.
pub struct Maze {
    walls: [bool; CELLS],
    pub goal: usize,
}

pub const STEP_REWARD: f32 = -0.05;
pub const GOAL_REWARD: f32 = 1.0;

/// One move of experience: from `cell`, `action` gave `reward` and led to `next`; `done` when
/// it reached the goal.
#[derive(Clone, Copy, Debug)]
pub struct Transition {
    pub cell: usize,
    pub action: usize,
    pub reward: f32,
    pub next: usize,
    pub done: bool,
}

impl Default for Maze {
    fn default() -> Self {
        Maze::parse(&MAZE)
    }
}

impl Maze {
    pub fn parse(rows: &[&str; ROWS]) -> Maze {
        let mut walls = [false; CELLS];
        let mut goal = 0;
        for (r, row) in rows.iter().enumerate() {
            for (c, ch) in row.chars().enumerate() {
                walls[r * COLS + c] = ch == '#';
                if ch == 'G' {
                    goal = r * COLS + c;
                }
            }
        }
        Maze { walls, goal }
    }

    pub fn is_wall(&self, cell: usize) -> bool {
        self.walls[cell]
    }

    /// Every open cell other than the goal: the start cells.
    pub fn starts(&self) -> Vec<usize> {
        (0..CELLS)
            .filter(|&c| !self.walls[c] && c != self.goal)
            .collect()
    }

    /// The cell after `action` from `cell`, the reward, and whether the episode ended.
    pub fn step(&self, cell: usize, action: usize) -> (usize, f32, bool) {
        let (dr, dc) = MOVES[action];
        let r = (cell / COLS) as isize + dr;
        let c = (cell % COLS) as isize + dc;
        let inside = (0..ROWS as isize).contains(&r) && (0..COLS as isize).contains(&c);
        let next = if inside && !self.walls[r as usize * COLS + c as usize] {
            r as usize * COLS + c as usize
        } else {
            cell
        };
        if next == self.goal {
            (next, GOAL_REWARD, true)
        } else {
            (next, STEP_REWARD, false)
        }
    }

    /// [`Maze::step`] as a transition.
    pub fn transition(&self, cell: usize, action: usize) -> Transition {
        let (next, reward, done) = self.step(cell, action);
        Transition {
            cell,
            action,
            reward,
            next,
            done,
        }
    }

    /// The fewest moves from each cell to the goal (breadth-first search; `None` for walls and
    /// cells that cannot reach it).
    pub fn shortest_paths(&self) -> [Option<usize>; CELLS] {
        let mut dist = [None; CELLS];
        dist[self.goal] = Some(0);
        let mut queue = std::collections::VecDeque::from([self.goal]);
        while let Some(cell) = queue.pop_front() {
            let d = dist[cell].unwrap_or(0);
            // Moves are reversible, so the cells one move from `cell` are its predecessors.
            for a in 0..4 {
                let (n, _, _) = self.step(cell, a);
                if n != cell && n != self.goal && dist[n].is_none() {
                    dist[n] = Some(d + 1);
                    queue.push_back(n);
                }
            }
        }
        dist
    }
}

/// Follows `policy` from `start`: the number of moves to the goal, or `None` when it does not
/// get there within `limit` moves.
pub fn moves_to_goal(
    maze: &Maze,
    policy: &[usize; CELLS],
    start: usize,
    limit: usize,
) -> Option<usize> {
    let mut cell = start;
    for n in 1..=limit {
        let (next, _, done) = maze.step(cell, policy[cell]);
        if done {
            return Some(n);
        }
        cell = next;
    }
    None
}

/// Whether `policy` reaches the goal in the fewest possible moves from every start cell.
pub fn is_optimal(maze: &Maze, policy: &[usize; CELLS]) -> bool {
    let best = maze.shortest_paths();
    maze.starts()
        .into_iter()
        .all(|s| moves_to_goal(maze, policy, s, CELLS) == best[s])
}
