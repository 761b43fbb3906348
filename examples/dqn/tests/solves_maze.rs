//! DQN with the `model!` Q-network solves the maze: after the default training budget (seed 0),
//! the greedy policy reaches the goal in the fewest possible moves from every start cell, and
//! the network's values are the true discounted returns.

use dqn_maze::{
    greedy_policy, is_optimal, moves_to_goal, optimal_value, render, train, Config, Maze, Qnet,
    CELLS,
};
use fm::ndarray::Array2;

#[test]
fn every_open_cell_can_reach_the_goal() {
    let maze = Maze::default();
    let best = maze.shortest_paths();
    let starts = maze.starts();
    assert_eq!(starts.len(), 39);
    assert!(starts.iter().all(|&s| best[s].is_some()));
    assert_eq!(starts.iter().filter_map(|&s| best[s]).max(), Some(21));
}

#[test]
fn the_greedy_policy_solves_the_maze() {
    let maze = Maze::default();
    let config = Config::default();
    // An untrained network does not: the check below can fail.
    assert!(!is_optimal(
        &maze,
        &greedy_policy(&Qnet::new(config.seed)).unwrap()
    ));

    let start = std::time::Instant::now();
    let (q, report) = train(&maze, &config).unwrap();
    let policy = greedy_policy(&q).unwrap();
    eprintln!("{report:?} in {:.1} s", start.elapsed().as_secs_f64());
    eprint!("{}", render(&maze, &policy));
    assert_eq!(report.episodes, config.episodes);
    assert!(report.target_syncs > 10, "{report:?}");
    let solved = report
        .solved_after
        .expect("the greedy policy was never optimal");
    assert!(solved <= 250, "first optimal after episode {solved}");

    // From every start, the fewest possible moves.
    let best = maze.shortest_paths();
    for s in maze.starts() {
        let taken = moves_to_goal(&maze, &policy, s, CELLS);
        assert_eq!(taken, best[s], "from cell {s}:\n{}", render(&maze, &policy));
    }

    // The best move's value is the discounted return of the shortest path.
    let mut x = Array2::<f32>::zeros((CELLS, CELLS));
    for c in 0..CELLS {
        x[[c, c]] = 1.0;
    }
    let values = q.predict(x.into_dyn().view()).unwrap();
    let mut worst = 0.0f32;
    for s in maze.starts() {
        let v = (0..4)
            .map(|a| values[[s, a]])
            .fold(f32::NEG_INFINITY, f32::max);
        worst = worst.max((v - optimal_value(best[s].unwrap(), config.gamma)).abs());
    }
    eprintln!("largest error of max Q against the true value: {worst:.4}");
    assert!(worst < 0.05, "max Q is off the true value by up to {worst}");

    // Saved and reloaded, the network acts the same.
    let path = std::env::temp_dir().join(format!("dqn-maze-{}.safetensors", std::process::id()));
    q.save(&path).unwrap();
    let reloaded = Qnet::load(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(greedy_policy(&reloaded).unwrap(), policy);
}

/// The target network is a clone: training the online network leaves it as it was.
#[test]
fn a_cloned_target_network_keeps_its_weights() {
    let mut online = Qnet::new(3);
    let target = online.clone();
    let x = Array2::<f32>::eye(CELLS).into_dyn();
    let before = target.predict(x.view()).unwrap();
    assert_eq!(online.predict(x.view()).unwrap(), before);
    let y = before.mapv(|v| v + 1.0);
    online.train_step(x.view(), y.view()).unwrap();
    assert_eq!(target.predict(x.view()).unwrap(), before);
    assert_ne!(online.predict(x.view()).unwrap(), before);
    assert_eq!(online.param("dense.kernel").unwrap().shape(), [CELLS, 64]);
    assert_ne!(online.param("dense.kernel"), target.param("dense.kernel"));
}
