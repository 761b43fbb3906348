//! Deep Q-learning with `fmc` alone (README "Deep Q-learning", examples/dqn/dqn_maze.fm): the maze
//! lives here, acting is `fmc predict` on every cell, learning is `fmc train` on the replay
//! `.npz`, with the DQN target (a lagged copy of the network) computed by fm. After four rounds
//! of collecting and training, the greedy policy reaches the goal in the fewest moves from every
//! start cell.

use fm_runtime::random::Rng;
use fm_runtime::tensor::Tensor;
use fm_tests::{fmc, root};
use ndarray::{Array1, Array2, ArrayD, Axis};
use std::path::Path;

/// The maze of the DQN example crate: its own source, so both routes play the same maze.
#[allow(dead_code)]
#[path = "../../examples/dqn/src/maze.rs"]
mod maze;
use maze::{moves_to_goal, Maze, Transition, CELLS};

/// Writes `arrays` as an uncompressed `.npz`.
fn write_npz(path: &Path, arrays: &[(&str, Tensor)]) {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, t) in arrays {
        let tmp = path.with_extension(format!("{name}.npy"));
        fm_runtime::data::npy::write_npy(&tmp, t).unwrap();
        zip.start_file(format!("{name}.npy"), opts).unwrap();
        zip.write_all(&std::fs::read(&tmp).unwrap()).unwrap();
        std::fs::remove_file(&tmp).unwrap();
    }
    zip.finish().unwrap();
}

fn one_hot(cells: &[usize]) -> Tensor {
    let mut x = Array2::<f32>::zeros((cells.len(), CELLS));
    for (i, &c) in cells.iter().enumerate() {
        x[[i, c]] = 1.0;
    }
    Tensor::F32(x.into_dyn())
}

/// Writes the replay as `data/dqn_replay.npz` in `dir`, with the keys the example reads.
fn write_replay(dir: &Path, replay: &[Transition]) {
    let column = |f: &dyn Fn(&Transition) -> f32| {
        Tensor::F32(Array1::from_iter(replay.iter().map(f)).into_dyn())
    };
    let cells: Vec<usize> = replay.iter().map(|t| t.cell).collect();
    let nexts: Vec<usize> = replay.iter().map(|t| t.next).collect();
    let actions: ArrayD<i32> = Array1::from_iter(replay.iter().map(|t| t.action as i32)).into_dyn();
    write_npz(
        &dir.join("data/dqn_replay.npz"),
        &[
            ("cell", one_hot(&cells)),
            ("next_cell", one_hot(&nexts)),
            ("action", Tensor::I32(actions)),
            ("reward", column(&|t| t.reward)),
            ("done", column(&|t| f32::from(u8::from(t.done)))),
        ],
    );
}

/// Runs `fmc train FM -q --steps N --save W --run-dir RUN`, then `extra`.
fn train(fm: &str, steps: u64, save: &Path, run: &Path, extra: &[&str]) -> fm_tests::Run {
    let steps = steps.to_string();
    let (save, run) = (save.to_str().unwrap(), run.to_str().unwrap());
    let mut args = vec![
        "train",
        fm,
        "-q",
        "--steps",
        &steps,
        "--save",
        save,
        "--run-dir",
        run,
    ];
    args.extend(extra);
    fmc(&args)
}

/// Every move from every start cell, once.
fn every_move(maze: &Maze) -> Vec<Transition> {
    maze.starts()
        .into_iter()
        .flat_map(|cell| (0..4).map(move |action| maze.transition(cell, action)))
        .collect()
}

/// [`train`], asserting that it succeeds.
fn train_quietly(fm: &str, steps: u64, save: &Path, run: &Path, extra: &[&str]) {
    let r = train(fm, steps, save, run, extra);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// A fresh directory holding the example file and a replay of every move from every free cell;
/// returns the directory and the `.fm` path.
fn example_dir(tag: &str) -> (std::path::PathBuf, String) {
    let maze = Maze::default();
    let dir = std::env::temp_dir().join(format!("fm-dqn-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let fm = dir.join("dqn_maze.fm");
    std::fs::copy(root().join("examples/dqn/dqn_maze.fm"), &fm).unwrap();
    write_replay(&dir, &every_move(&maze));
    (dir, fm.display().to_string())
}

/// Runs `fmc predict FM --weights W --input X`, with `-o OUT` when given.
fn predict(fm: &str, weights: &Path, input: &Path, out: Option<&Path>) -> fm_tests::Run {
    let (weights, input) = (weights.to_str().unwrap(), input.to_str().unwrap());
    let mut args = vec!["predict", fm, "--weights", weights, "--input", input];
    if let Some(out) = out {
        args.extend(["-o", out.to_str().unwrap()]);
    }
    fmc(&args)
}

/// [`predict`] into `out`, asserting that it succeeds; the outputs, read back.
fn predict_to(fm: &str, weights: &Path, input: &Path, out: &Path) -> ArrayD<f32> {
    let r = predict(fm, weights, input, Some(out));
    assert_eq!(r.code, 0, "{}: {}", input.display(), r.stderr);
    fm::io::read_npy(out).unwrap().to_f32()
}

/// `fmc predict` on every cell: the greedy move of each.
fn greedy(fm: &str, weights: &Path, dir: &Path) -> Vec<usize> {
    let q = predict_to(fm, weights, &dir.join("cells.npz"), &dir.join("q.npy"));
    assert_eq!(q.shape(), [CELLS, 4]);
    q.axis_iter(Axis(0))
        .map(|row| (0..4).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap())
        .collect()
}

#[test]
fn fmc_predict_and_train_solve_the_maze() {
    let maze = Maze::default();
    let dir = std::env::temp_dir().join(format!("fm-dqn-fmc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    // The example file, next to the replay it reads (`data/dqn_replay.npz`).
    let fm = dir.join("dqn_maze.fm");
    std::fs::copy(root().join("examples/dqn/dqn_maze.fm"), &fm).unwrap();
    let fm = fm.to_str().unwrap();
    // Every cell once, to act from: only `cell`, the one input `q_values` depends on
    // (language.md 9.2).
    let all: Vec<usize> = (0..CELLS).collect();
    write_npz(&dir.join("cells.npz"), &[("cell", one_hot(&all))]);

    let weights = dir.join("weights.safetensors");
    let starts = maze.starts();
    let mut rng = Rng::new(0, 0);
    let mut replay: Vec<Transition> = Vec::new();
    for round in 0..4 {
        // Act: at random in the first round, then epsilon-greedy on `fmc predict`'s Q-values.
        let policy = (round > 0).then(|| greedy(fm, &weights, &dir));
        let epsilon = (1.0 - 0.3 * round as f64).max(0.1);
        for _ in 0..50 {
            let mut cell = starts[(rng.next_u64() % starts.len() as u64) as usize];
            for _ in 0..60 {
                let action = match &policy {
                    Some(p) if rng.uniform() >= epsilon => p[cell],
                    _ => (rng.next_u64() % 4) as usize,
                };
                let moved = maze.transition(cell, action);
                replay.push(moved);
                cell = moved.next;
                if moved.done {
                    break;
                }
            }
        }
        // Learn: 1500 steps on the whole replay, from the last round's weights.
        write_replay(&dir, &replay);
        let init = weights.display().to_string();
        let extra = match round {
            0 => vec![],
            _ => vec!["--init", init.as_str()],
        };
        train_quietly(fm, 1500, &weights, &dir.join(format!("run{round}")), &extra);
    }

    let policy = greedy(fm, &weights, &dir);
    let best = maze.shortest_paths();
    let policy: [usize; CELLS] = policy.try_into().unwrap();
    let mut taken = 0;
    for &s in &starts {
        let moves = moves_to_goal(&maze, &policy, s, CELLS);
        assert_eq!(moves, best[s], "from cell {s}: policy {policy:?}");
        taken += moves.unwrap();
    }
    eprintln!(
        "fmc-only DQN: {} transitions, {taken} moves from all {} starts (optimal)",
        replay.len(),
        starts.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The tensors of a weights file, by name.
fn tensors(path: &Path) -> Vec<(String, Tensor)> {
    fm_runtime::weights::load_weights(path).unwrap().tensors
}

fn tensor<'t>(all: &'t [(String, Tensor)], name: &str) -> &'t Tensor {
    &all.iter().find(|(n, _)| n == name).unwrap().1
}

/// `--init W` with a W that has no `lag/` tensors (weights from elsewhere, or from a model
/// without lagged weights): the lagged copy starts equal to W's parameters, as it starts equal
/// to the initial weights in a fresh run (language.md 9.5). A `lag/` tensor W has is used, and
/// one of the wrong shape is an error naming it.
#[test]
fn init_without_lagged_tensors_starts_the_copy_from_the_parameters() {
    let (dir, fm) = example_dir("init-lag");
    let train_from = |init: &Path, save: &str| {
        let run = dir.join(format!("run-{save}"));
        train(
            &fm,
            3,
            &dir.join(save),
            &run,
            &["--init", init.to_str().unwrap()],
        )
    };
    // Weights with every tensor (`fmc train` writes the lagged copy too).
    let full = dir.join("full.safetensors");
    train_quietly(&fm, 5, &full, &dir.join("run-full"), &[]);
    let file = fm_runtime::weights::load_weights(&full).unwrap();
    let lags: Vec<String> = file
        .tensors
        .iter()
        .map(|(n, _)| n.clone())
        .filter(|n| n.starts_with("lag/qn/"))
        .collect();
    assert_eq!(
        lags.len(),
        4,
        "{:?}",
        file.tensors.iter().map(|t| &t.0).collect::<Vec<_>>()
    );
    let params: Vec<(String, Tensor)> = file
        .without_optimizer_state()
        .into_iter()
        .filter(|(n, _)| !n.starts_with("lag/"))
        .collect();
    let write = |name: &str, tensors: &[(String, Tensor)]| {
        let path = dir.join(name);
        fm_runtime::weights::save_weights(&path, tensors, &file.meta).unwrap();
        path
    };

    // No `lag/` tensors: the copy starts at W's parameters and stays there (it is refreshed
    // every 100 steps), while the live parameters train.
    let r = train_from(
        &write("params.safetensors", &params),
        "from_params.safetensors",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let after = tensors(&dir.join("from_params.safetensors"));
    for lag in &lags {
        let live = lag.strip_prefix("lag/qn/").unwrap();
        assert_eq!(tensor(&after, lag), tensor(&params, live), "{lag}");
        if live.ends_with("kernel") {
            assert_ne!(
                tensor(&after, live),
                tensor(&params, live),
                "{live} trained"
            );
        }
    }

    // A `lag/` tensor W has is used as it is.
    let mut with_lag = params.clone();
    let zeroed = lags[0].clone();
    let shape = tensor(&file.tensors, &zeroed).shape().to_vec();
    with_lag.push((zeroed.clone(), Tensor::F32(ArrayD::zeros(shape.clone()))));
    let r = train_from(
        &write("one_lag.safetensors", &with_lag),
        "from_one_lag.safetensors",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let after = tensors(&dir.join("from_one_lag.safetensors"));
    assert!(tensor(&after, &zeroed).to_f32().iter().all(|&v| v == 0.0));
    let other = &lags[1];
    assert_eq!(
        tensor(&after, other),
        tensor(&params, other.strip_prefix("lag/qn/").unwrap())
    );

    // ... and shape-checked.
    let mut bad = params.clone();
    bad.push((
        zeroed.clone(),
        Tensor::F32(ArrayD::zeros(vec![shape[0] + 1; shape.len()])),
    ));
    let r = train_from(&write("bad_lag.safetensors", &bad), "never.safetensors");
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("tensor '{zeroed}' has shape")),
        "{}",
        r.stderr
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `fmc predict` reads only the inputs the requested outputs depend on (language.md 9.2):
/// `q_values` needs `cell`, not `next_cell`, and gives the same numbers either way.
#[test]
fn predict_reads_only_the_inputs_the_outputs_need() {
    let (dir, fm) = example_dir("predict-inputs");
    let weights = dir.join("w.safetensors");
    train_quietly(&fm, 5, &weights, &dir.join("run"), &[]);
    let all: Vec<usize> = (0..CELLS).collect();
    let predict_on =
        |npz: &str, out: &str| predict_to(&fm, &weights, &dir.join(npz), &dir.join(out));
    write_npz(&dir.join("cell_only.npz"), &[("cell", one_hot(&all))]);
    let reversed: Vec<usize> = all.iter().rev().copied().collect();
    write_npz(
        &dir.join("both.npz"),
        &[("cell", one_hot(&all)), ("next_cell", one_hot(&reversed))],
    );
    let q = predict_on("cell_only.npz", "q1.npy");
    assert_eq!(q.shape(), [CELLS, 4]);
    assert_eq!(q, predict_on("both.npz", "q2.npy"));
    // Rows differ from cell to cell (the network is not constant).
    assert_ne!(q.index_axis(Axis(0), 0), q.index_axis(Axis(0), CELLS - 1));
    // An input the outputs need is still required, named in the message.
    write_npz(&dir.join("next_only.npz"), &[("next_cell", one_hot(&all))]);
    let r = predict(&fm, &weights, &dir.join("next_only.npz"), None);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("no array 'cell'"), "{}", r.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The route's rounds are new runs from the last weights (`--init`): `--resume` continues one
/// run exactly on its data, so a grown replay is refused (E0409) with a message that names the
/// `--init` route, which then trains on the grown replay.
#[test]
fn resume_on_a_grown_replay_names_the_init_route() {
    let (dir, fm) = example_dir("resume-grown");
    let weights = dir.join("w.safetensors");
    train_quietly(&fm, 5, &weights, &dir.join("run"), &[]);
    // The replay grows: every transition twice.
    let once = every_move(&Maze::default());
    write_replay(&dir, &[once.clone(), once].concat());
    let w = weights.to_str().unwrap();
    let resumed = dir.join("resumed.safetensors");
    let r = train(&fm, 10, &resumed, &dir.join("run2"), &["--resume", w]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("error[E0409]"), "{}", r.stderr);
    assert!(
        r.stderr.contains("the data changed") && r.stderr.contains(&format!("`--init {w}`")),
        "{}",
        r.stderr
    );
    assert!(!resumed.exists());
    // The route the message names.
    train_quietly(&fm, 10, &resumed, &dir.join("run3"), &["--init", w]);
    assert!(resumed.exists());
    let _ = std::fs::remove_dir_all(&dir);
}
