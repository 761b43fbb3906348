//! Trains the maze agent with DQN and shows its greedy policy.
//!
//! `cargo run --release [-- SEED]` from this directory.

use dqn_maze::{greedy_policy, moves_to_goal, render, train, Config, Maze, CELLS};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), fm::Error> {
    let maze = Maze::default();
    let mut config = Config::default();
    if let Some(seed) = std::env::args().nth(1).and_then(|a| a.parse().ok()) {
        config.seed = seed;
    }
    let start = std::time::Instant::now();
    let (q, report) = train(&maze, &config)?;
    println!(
        "{} episodes, {} moves, {} updates, {} target refreshes in {:.1} s",
        report.episodes,
        report.moves,
        report.updates,
        report.target_syncs,
        start.elapsed().as_secs_f64()
    );
    match report.solved_after {
        Some(e) => println!("greedy policy first optimal from every start after episode {e}"),
        None => println!("greedy policy never optimal from every start"),
    }
    let policy = greedy_policy(&q)?;
    print!("{}", render(&maze, &policy));
    let best = maze.shortest_paths();
    let (mut taken, mut shortest) = (0, 0);
    for s in maze.starts() {
        taken += moves_to_goal(&maze, &policy, s, CELLS).unwrap_or(CELLS);
        shortest += best[s].unwrap_or(0);
    }
    println!(
        "moves to the goal over all {} starts: {taken} (shortest possible {shortest})",
        maze.starts().len()
    );
    let path = std::env::temp_dir().join("dqn_maze_qnet.safetensors");
    q.save(&path)?;
    println!("saved the Q-network to {}", path.display());
    Ok(())
}
