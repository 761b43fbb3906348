//! Language 0.2 end to end (language.md section 9): the examples that need shared weights,
//! sampled inputs, objective expressions, several training steps and lagged weights train from
//! the shipped data and reach real outcomes.

use fm_runtime::data::read_array;
use fm_runtime::tensor::Tensor;
use fm_tests::{fmc, root};
use std::path::PathBuf;

fn example(name: &str) -> String {
    root().join("examples").join(name).display().to_string()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fm-v02-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn floats(path: &str) -> (Vec<usize>, Vec<f32>) {
    let a = read_array(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    (a.shape.clone(), a.data.to_f32())
}

/// The GAN's samples look like digits to a classifier trained on the real digits (a confident,
/// varied labelling, far above chance) and are not copies of training images.
#[test]
fn gan_digits_generates_digits_that_are_not_copies() {
    let dir = tmp("gan");
    let s = |p: &PathBuf| p.display().to_string();
    let gan_run = dir.join("gan");
    let r = fmc(&[
        "train",
        &example("gan_digits.fm"),
        "--run-dir",
        &s(&gan_run),
        "-q",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let weights = s(&gan_run.join("weights.safetensors"));
    // Both steps' losses are logged.
    let log = std::fs::read_to_string(gan_run.join("metrics.csv")).unwrap();
    assert!(log.lines().next().unwrap().contains("disc_loss"), "{log}");
    assert!(log.lines().next().unwrap().contains("gen_loss"), "{log}");

    let samples = dir.join("samples.npy");
    let r = fmc(&[
        "predict",
        &example("gan_digits.fm"),
        "--weights",
        &weights,
        "--samples",
        "64",
        "-o",
        &s(&samples),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let grid = dir.join("grid.png");
    let r = fmc(&[
        "predict",
        &example("gan_digits.fm"),
        "--weights",
        &weights,
        "--samples",
        "64",
        "-o",
        &s(&grid),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let png = std::fs::read(&grid).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    let (shape, gen) = floats(&s(&samples));
    assert_eq!(shape, vec![64, 8, 8, 1]);
    assert!(gen.iter().all(|v| (0.0..=1.0).contains(v)));

    // Not copies: every sample's nearest training image is clearly different.
    let (_, real) = floats(
        &root()
            .join("examples/data/digits-images-idx3-ubyte")
            .display()
            .to_string(),
    );
    let real: Vec<f32> = real.iter().map(|v| v / 255.0).collect();
    let mut nearest_min = f32::MAX;
    for g in gen.chunks(64) {
        let nearest = real
            .chunks(64)
            .map(|r| {
                let d: f32 = g.iter().zip(r).map(|(a, b)| (a - b) * (a - b)).sum();
                (d / 64.0).sqrt()
            })
            .fold(f32::MAX, f32::min);
        nearest_min = nearest_min.min(nearest);
    }
    assert!(
        nearest_min > 0.05,
        "a sample is within RMS {nearest_min} of a training image"
    );

    // A classifier trained on the real digits labels the samples confidently and variedly.
    let mlp_run = dir.join("mlp");
    let r = fmc(&[
        "train",
        &example("digits_mlp.fm"),
        "--run-dir",
        &s(&mlp_run),
        "-q",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (_, p) = predict_on_images(&dir, "digits_mlp.fm", &mlp_run, &gen);
    let mut labels = std::collections::BTreeSet::new();
    let mut confidence = 0.0;
    for row in p.chunks(10) {
        let (k, best) =
            row.iter().enumerate().fold(
                (0, f32::MIN),
                |acc, (i, &v)| if v > acc.1 { (i, v) } else { acc },
            );
        labels.insert(k);
        confidence += best / 64.0;
    }
    eprintln!("GAN samples: mean classifier confidence {confidence:.3}, {} labels, nearest RMS {nearest_min:.3}", labels.len());
    assert!(
        confidence > 0.6,
        "mean confidence {confidence} (chance: 0.1)"
    );
    assert!(
        labels.len() >= 6,
        "only labels {labels:?}: the generator collapsed"
    );
}

/// `fmc predict` of example `fm` with the weights of `run` on 8x8 `images` in [0, 1], given as
/// the pixels 0..255 the digits' data sections scale by 1/255; returns the shape and values.
fn predict_on_images(
    dir: &std::path::Path,
    fm: &str,
    run: &std::path::Path,
    images: &[f32],
) -> (Vec<usize>, Vec<f32>) {
    let pixels = dir.join(format!("{fm}.pixels.npy"));
    let scaled = images.iter().map(|v| v * 255.0).collect();
    let count = images.len() / 64;
    fm_runtime::data::npy::write_npy(&pixels, &f32s(&[count, 8, 8], scaled)).unwrap();
    let out = dir.join(format!("{fm}.out.npy")).display().to_string();
    let weights = run.join("weights.safetensors").display().to_string();
    let pixels = pixels.display().to_string();
    let r = fmc(&[
        "predict",
        &example(fm),
        "--weights",
        &weights,
        "--input",
        &pixels,
        "-o",
        &out,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    floats(&out)
}

/// The VAE reconstructs held-out digits far better than the best constant image (the mean of
/// the training images), through a sampled latent code.
#[test]
fn vae_digits_reconstructs_held_out_digits() {
    let dir = tmp("vae");
    let s = |p: &PathBuf| p.display().to_string();
    let run = dir.join("run");
    let r = fmc(&[
        "train",
        &example("vae_digits.fm"),
        "--run-dir",
        &s(&run),
        "-q",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The held-out split: the last 360 of the 1797 images.
    let (_, pixels) = floats(
        &root()
            .join("examples/data/digits-images-idx3-ubyte")
            .display()
            .to_string(),
    );
    let images: Vec<f32> = pixels.iter().map(|v| v / 255.0).collect();
    let (train, test) = images.split_at(1437 * 64);
    let (shape, out) = predict_on_images(&dir, "vae_digits.fm", &run, test);
    assert_eq!(shape, vec![360, 8, 8, 1]);
    let mse = |a: &[f32], b: &[f32]| {
        a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>() / a.len() as f32
    };
    let mut mean = vec![0.0f32; 64];
    for img in train.chunks(64) {
        for (m, v) in mean.iter_mut().zip(img) {
            *m += v / 1437.0;
        }
    }
    let constant: Vec<f32> = test.chunks(64).flat_map(|_| mean.iter().copied()).collect();
    let baseline = mse(&constant, test);
    let vae = mse(&out, test);
    eprintln!("VAE held-out reconstruction MSE {vae:.4} (mean image: {baseline:.4})");
    // Stated value: below 0.045 per pixel (measured 0.041 at 60 epochs, 0.038 at 200), where
    // the mean training image gives 0.074. The latent code is sampled at prediction too.
    assert!(
        vae < 0.045,
        "reconstruction MSE {vae} (mean image {baseline})"
    );
    assert!(
        vae < 0.65 * baseline,
        "reconstruction MSE {vae} vs mean image {baseline}"
    );
}

/// Word2Vec (skip-gram with negatives drawn by `categorical` from the unigram counts^0.75) on
/// the generated corpus with planted word groups: every group word's nearest neighbour (cosine
/// of the `words` vectors) is a word of its own group, and words of a group are far more
/// similar to each other than to other groups' words.
#[test]
fn word2vec_nearest_neighbours_are_the_planted_groups() {
    let dir = tmp("w2v");
    let run = dir.join("run");
    let r = fmc(&[
        "train",
        &example("word2vec.fm"),
        "--run-dir",
        &run.display().to_string(),
        "-q",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let weights = fm_runtime::weights::load_weights(&run.join("weights.safetensors")).unwrap();
    let table = weights.get("words.embeddings").expect("words.embeddings");
    let (v, d) = (table.shape()[0], table.shape()[1]);
    let vecs: Vec<f32> = table.to_f32().into_raw_vec_and_offset().0;
    let vocab_text =
        std::fs::read_to_string(root().join("examples/data/word2vec/vocab.txt")).unwrap();
    let vocab: Vec<&str> = vocab_text.lines().collect();
    assert_eq!(vocab.len(), v);
    let row = |w: &str| {
        let k = vocab.iter().position(|x| *x == w).unwrap();
        &vecs[k * d..(k + 1) * d]
    };
    let cos = |a: &[f32], b: &[f32]| {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
        dot / (na * nb).max(1e-12)
    };
    let groups: [&[&str]; 5] = [
        &[
            "cat", "dog", "horse", "cow", "sheep", "goat", "pig", "rabbit",
        ],
        &[
            "red", "blue", "green", "yellow", "purple", "orange", "brown", "pink",
        ],
        &[
            "apple", "banana", "cherry", "grape", "lemon", "mango", "peach", "plum",
        ],
        &[
            "car", "bus", "truck", "train", "bike", "boat", "plane", "ship",
        ],
        &[
            "hammer", "saw", "drill", "wrench", "shovel", "rake", "axe", "chisel",
        ],
    ];
    let group_of = |w: &str| groups.iter().position(|g| g.contains(&w));
    let mut misses = Vec::new();
    for g in groups {
        for &w in g {
            let nearest = vocab
                .iter()
                .filter(|&&x| x != w)
                .max_by(|a, b| cos(row(w), row(a)).total_cmp(&cos(row(w), row(b))))
                .unwrap();
            if group_of(nearest) != group_of(w) {
                misses.push(format!("{w} -> {nearest}"));
            }
        }
    }
    let (mut within, mut nw, mut between, mut nb) = (0.0, 0, 0.0, 0);
    for (i, g) in groups.iter().enumerate() {
        for (j, h) in groups.iter().enumerate() {
            for &a in *g {
                for &b in *h {
                    if a == b {
                        continue;
                    }
                    if i == j {
                        within += cos(row(a), row(b));
                        nw += 1;
                    } else {
                        between += cos(row(a), row(b));
                        nb += 1;
                    }
                }
            }
        }
    }
    let (within, between) = (within / nw as f32, between / nb as f32);
    eprintln!(
        "word2vec: {} of 40 nearest neighbours outside their group; mean cosine within groups {within:.3}, between {between:.3}",
        misses.len()
    );
    assert!(
        misses.is_empty(),
        "nearest neighbours outside the group: {misses:?}"
    );
    assert!(
        within > between + 0.4,
        "within-group cosine {within} vs between groups {between}"
    );
}

/// Writes `source` as `DIR/NAME.fm`, runs `fmc train` on it (`--run-dir DIR/run -q`), then
/// `fmc eval` of the weights on the file's test split; returns the held-out loss (the eval line
/// is printed under `label`).
fn train_then_eval_loss(dir: &std::path::Path, name: &str, source: &str, label: &str) -> f64 {
    let fm = dir.join(format!("{name}.fm"));
    std::fs::write(&fm, source).unwrap();
    let run = dir.join("run");
    let fm = fm.display().to_string();
    let r = fmc(&["train", &fm, "--run-dir", &run.display().to_string(), "-q"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let weights = run.join("weights.safetensors").display().to_string();
    let r = fmc(&["eval", &fm, "--weights", &weights]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    eprintln!("{label}: {}", r.stdout.trim());
    r.stdout
        .split_whitespace()
        .skip_while(|w| *w != "loss:")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no loss in {}", r.stdout))
}

/// Writes `arrays` as an uncompressed `.npz`.
fn write_npz(path: &std::path::Path, arrays: &[(&str, Tensor)]) {
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

/// An f32 tensor of `shape` holding `v`.
fn f32s(shape: &[usize], v: Vec<f32>) -> Tensor {
    Tensor::F32(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(shape), v).unwrap())
}

/// An i32 tensor of `shape` holding `v`.
fn i32s(shape: &[usize], v: Vec<i32>) -> Tensor {
    Tensor::I32(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(shape), v).unwrap())
}

/// A replay of `n` transitions for Q-regressions: states uniform in [-1, 1]^4, actions uniform
/// in 0..4, and the reward of an action the state's element at that index (so the best Q-values
/// are the state itself).
struct Replay {
    state: Vec<f32>,
    action: Vec<i32>,
    reward: Vec<f32>,
}

impl Replay {
    fn new(n: usize, seed: u64) -> Replay {
        let mut st = seed;
        let state: Vec<f32> = (0..n * 4).map(|_| 2.0 * lcg(&mut st) - 1.0).collect();
        let action: Vec<i32> = (0..n).map(|_| (lcg(&mut st) * 4.0) as i32).collect();
        let reward = state
            .chunks(4)
            .zip(&action)
            .map(|(s, &a)| s[a as usize])
            .collect();
        Replay {
            state,
            action,
            reward,
        }
    }

    /// Writes the replay as an `.npz` with the keys `state`, `action` and `reward`.
    fn write(&self, path: &std::path::Path) {
        let n = self.action.len();
        write_npz(
            path,
            &[
                ("state", f32s(&[n, 4], self.state.clone())),
                ("action", i32s(&[n], self.action.clone())),
                ("reward", f32s(&[n], self.reward.clone())),
            ],
        );
    }
}

/// A pseudo-random number in [0, 1) (a 64-bit LCG).
fn lcg(state: &mut u64) -> f32 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*state >> 40) as f32 / (1u64 << 24) as f32
}

/// A two-output model (a softmax classification head and a regression head) trains from one
/// `.npz` whose target keys are the output names (language.md 9.3), and both heads learn.
#[test]
fn two_outputs_read_their_targets_from_one_npz() {
    let dir = tmp("two_heads");
    let n = 600;
    let mut st = 7u64;
    let x: Vec<f32> = (0..n * 4).map(|_| 2.0 * lcg(&mut st) - 1.0).collect();
    let class: Vec<i32> = x
        .chunks(4)
        .map(|r| (0..3).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap() as i32)
        .collect();
    let value: Vec<f32> = x.chunks(4).map(|r| r[0] - 0.5 * r[3]).collect();
    write_npz(
        &dir.join("heads.npz"),
        &[
            ("x", f32s(&[n, 4], x)),
            ("class", i32s(&[n], class)),
            ("value", f32s(&[n, 1], value)),
        ],
    );
    let source = "data heads {
    train: npz(\"heads.npz\", x: \"x\")
    test: split(0.2)
}
model two_heads {
    input x: f32[4]
    let h = x -> Dense(32, relu)
    output class = h -> Dense(3, softmax)
    output value = h -> Dense(1)
}
train two_heads {
    data: heads
    loss: { class: sparse_categorical_crossentropy, value: mse }
    optimizer: Adam(lr: 0.01)
    epochs: 40
    seed: 0
}
";
    let loss = train_then_eval_loss(&dir, "two_heads", source, "two heads");
    // The untrained loss is about ln(3) + Var(value) = 1.10 + 0.42; both heads must learn.
    assert!(loss < 0.25, "held-out loss {loss}");
}

/// `target` declarations (language.md 9.3) read one `.npz` key each: a Q-regression on the
/// picked action (the DQN's loss without the lagged network) learns the reward of each action.
#[test]
fn declared_targets_read_their_npz_keys() {
    let dir = tmp("targets");
    Replay::new(800, 11).write(&dir.join("replay.npz"));
    let source = "version 0.2
data replay {
    train: npz(\"replay.npz\", x: \"state\")
    test: split(0.2)
}
model q {
    input state: f32[4]
    target action: i32[]
    target reward: f32[]
    output q_values = state -> Dense(32, relu) -> Dense(4)
}
train q {
    data: replay
    loss: mse(pick(q_values, action), reward)
    optimizer: Adam(lr: 0.01)
    epochs: 40
    seed: 0
}
";
    let loss = train_then_eval_loss(&dir, "q", source, "declared targets");
    // Predicting 0 gives the variance of a uniform [-1, 1] reward, 0.33.
    assert!(loss < 0.03, "held-out loss {loss}");
}

/// Metrics over model values (language.md 9.3): `mean(q)`, `accuracy(q, action)`,
/// `top_k(q, action, k: 2)` and a per-sample loss are logged during training, and `fmc eval`
/// reports each as the mean over the samples, equal on the interpreter and the JIT to what the
/// predicted Q-values give when computed here.
#[test]
fn metrics_over_model_values_are_means_of_the_predictions() {
    let dir = tmp("value-metrics");
    let n = 200;
    let Replay { action, reward, .. } = {
        let replay = Replay::new(n, 5);
        replay.write(&dir.join("replay.npz"));
        replay
    };
    let npz = dir.join("replay.npz");
    let fm = dir.join("q.fm");
    std::fs::write(
        &fm,
        "version 0.2
data replay {
    train: npz(\"replay.npz\", x: \"state\")
}
model q {
    input state: f32[4]
    target action: i32[]
    target reward: f32[]
    let q = state -> Dense(16, relu) -> Dense(4)
    output q_values = q
}
train q {
    data: replay
    loss: mse(pick(q, action), reward)
    optimizer: Adam(lr: 0.01)
    metrics: [mean(q), accuracy(q, action), top_k(q, action, k: 2), mse(pick(q, action), reward)]
    epochs: 3
    seed: 0
}
",
    )
    .unwrap();
    let names = [
        "mean_q",
        "accuracy_q_action",
        "top_k_q_action_k_2",
        "mse_pick_q_action_reward",
    ];
    let fm_s = fm.display().to_string();
    let summary = fmc(&["summary", &fm_s]);
    assert_eq!(summary.code, 0, "{}", summary.stderr);
    for name in names {
        assert!(
            summary.stdout.contains(&format!("`{name}`")),
            "{}",
            summary.stdout
        );
    }
    let run = dir.join("run");
    let r = fmc(&["train", &fm_s, "--run-dir", &run.display().to_string()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The progress line and every epoch's record carry the metrics.
    let last = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(last.lines().last().unwrap()).unwrap();
    for name in names {
        assert!(last[name].as_f64().is_some_and(f64::is_finite), "{last}");
        assert!(r.stderr.contains(&format!("{name}: ")), "{}", r.stderr);
    }
    let weights = run.join("weights.safetensors").display().to_string();
    let npz_s = npz.display().to_string();
    let states = format!("{npz_s}:state");
    let q_npy = dir.join("q.npy").display().to_string();
    let r = fmc(&[
        "predict",
        &fm_s,
        "--weights",
        &weights,
        "--input",
        &states,
        "-o",
        &q_npy,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (shape, q) = floats(&q_npy);
    assert_eq!(shape, vec![n, 4]);
    // The metrics as Keras defines them, from the predictions.
    let mut want = [0.0f64; 4];
    for (i, row) in q.chunks(4).enumerate() {
        let a = action[i] as usize;
        want[0] += row.iter().map(|&v| v as f64).sum::<f64>() / 4.0;
        let above = row.iter().filter(|&&v| v > row[a]).count();
        want[1] += (above == 0) as u8 as f64;
        want[2] += (above < 2) as u8 as f64;
        want[3] += (row[a] as f64 - reward[i] as f64).powi(2);
    }
    want.iter_mut().for_each(|w| *w /= n as f64);
    // Neither all hits nor all misses, so the comparison below can tell.
    assert!(want[1] > 0.0 && want[2] < 1.0, "{want:?}");
    for backend in ["interp", "jit"] {
        let r = fmc(&[
            "eval",
            &fm_s,
            "--weights",
            &weights,
            "--x",
            &states,
            "--y",
            &npz_s,
            "--json",
            "--backend",
            backend,
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let got: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
        for (name, w) in names.iter().zip(want) {
            let g = got[*name].as_f64().unwrap_or(f64::NAN);
            eprintln!("{backend} {name}: fm {g:.7} computed {w:.7}");
            assert!(
                (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                "{backend} {name}: {g} vs {w}"
            );
        }
        // The loss is the mse metric here.
        let loss = got["loss"].as_f64().unwrap();
        assert!((loss - want[3]).abs() <= 1e-5, "{loss} vs {}", want[3]);
    }
}

/// `fmc eval` reads only the inputs its outputs, loss and metrics depend on (as `predict`
/// does, language.md 9.2): here `next_state` feeds only an unused `let`, so an `.npz` without
/// it evaluates to the same numbers as one with it.
#[test]
fn eval_reads_only_the_inputs_the_loss_and_metrics_need() {
    let dir = tmp("eval-inputs");
    let n = 64;
    let mut st = 3u64;
    let mut column =
        |len: usize| -> Vec<f32> { (0..len).map(|_| 2.0 * lcg(&mut st) - 1.0).collect() };
    let state = column(n * 4);
    let next_state = column(n * 4);
    let reward = column(n);
    let action: Vec<i32> = (0..n as i32).map(|i| i % 3).collect();
    let actions = i32s(&[n], action);
    let full = dir.join("full.npz");
    write_npz(
        &full,
        &[
            ("state", f32s(&[n, 4], state.clone())),
            ("next_state", f32s(&[n, 4], next_state)),
            ("action", actions.clone()),
            ("reward", f32s(&[n], reward.clone())),
        ],
    );
    let part = dir.join("part.npz");
    write_npz(
        &part,
        &[
            ("state", f32s(&[n, 4], state)),
            ("action", actions),
            ("reward", f32s(&[n], reward)),
        ],
    );
    let fm = dir.join("q.fm");
    std::fs::write(
        &fm,
        "version 0.2
block qnet(s) {
    return s -> Dense(8, relu) -> Dense(3)
}
model q {
    input state: f32[4]
    input next_state: f32[4]
    target action: i32[]
    target reward: f32[]
    let q = qnet(state, name: \"qn\")
    let q_next = qn(next_state)
    output q_values = q
}
train q {
    loss: mse(pick(q, action), reward)
    optimizer: SGD(lr: 0.1)
    metrics: [mean(q)]
}
",
    )
    .unwrap();
    let fm = fm.display().to_string();
    let weights = dir.join("w.safetensors").display().to_string();
    let full = full.display().to_string();
    let part = part.display().to_string();
    let run = dir.join("run").display().to_string();
    let r = fmc(&[
        "train",
        &fm,
        "-q",
        "--x",
        &full,
        "--y",
        &full,
        "--save",
        &weights,
        "--run-dir",
        &run,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let eval = |x: &str| {
        let r = fmc(&[
            "eval",
            &fm,
            "--weights",
            &weights,
            "--x",
            x,
            "--y",
            x,
            "--json",
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stdout
    };
    let with_all = eval(&full);
    assert!(with_all.contains("\"mean_q\""), "{with_all}");
    assert_eq!(eval(&part), with_all);
}

/// A two-step model whose steps have their own `ReduceOnPlateau` (language.md 9.4): `c`
/// watches its validation loss (`val_loss`, which a step's schedule reads as `val_c_loss`) and
/// `g` its training loss (`monitor: loss`, read as `g_loss`). `g`'s rate is large, so its loss
/// stalls and its rate is cut.
fn plateau_steps_source(g_schedule: &str, epochs: u64) -> String {
    format!(
        "version 0.2
data pairs {{
    train: npz(\"pairs.npz\", x: \"x\", y: \"t\")
}}
model two {{
    input x: f32[4]
    target t: f32[]
    let u = x -> Dense(1, name: \"c\")
    let v = x -> Dense(1, name: \"g\")
    output score = u
}}
train two {{
    data: pairs
    validation: split(0.25)
    step c {{ update: c, loss: mse(u, t), optimizer: SGD(lr: 0.3), schedule: ReduceOnPlateau(factor: 0.5, patience: 1) }}
    step g {{ update: g, loss: mse(v, t), optimizer: SGD(lr: 0.6), schedule: {g_schedule} }}
    epochs: {epochs}
    batch_size: 16
    seed: 0
}}
"
    )
}

/// The bytes of a safetensors file's tensors (its header holds the run's metadata).
fn tensor_bytes(path: &std::path::Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    bytes[8 + n..].to_vec()
}

/// Keras 3's `ReduceLROnPlateau` (mode `min`, `min_delta` 1e-4, no cooldown) over the
/// monitored value of each epoch: the (1-based) epochs after which it cuts the rate, and the
/// rate it cuts it to (an f32, as Keras's optimizer variable).
fn plateau_cuts(values: &[f64], lr: f32, factor: f64, patience: u64) -> Vec<(usize, f32)> {
    let (mut best, mut wait, mut lr, mut cuts) = (f64::INFINITY, 0, lr, Vec::new());
    for (e, &v) in values.iter().enumerate() {
        if v < best - 1e-4 {
            best = v;
            wait = 0;
        } else {
            wait += 1;
            if wait >= patience && lr > 0.0 {
                lr = (lr as f64 * factor) as f32;
                wait = 0;
                cuts.push((e + 1, lr));
            }
        }
    }
    cuts
}

/// A step's own `ReduceOnPlateau` (language.md 9.4): each step's rate is cut at the epochs
/// Keras's rule gives for the values the run logged (`val_c_loss` for `c`, `g_loss` for `g`);
/// a cut applies from the next epoch on (the run equals one with `g`'s rate halved by a `Step`
/// schedule at that epoch, bit for bit, on the JIT and the interpreter); and `--resume` from a checkpoint inside the run, whose
/// state holds each step's plateau, ends bit-identical to the uninterrupted run.
#[test]
fn a_steps_own_reduce_on_plateau_cuts_its_rate_and_resumes_exactly() {
    let dir = tmp("step-plateau");
    let n = 128;
    let mut st = 21u64;
    let x: Vec<f32> = (0..n * 4).map(|_| 2.0 * lcg(&mut st) - 1.0).collect();
    // A linear target plus noise no model can fit, so the losses stall.
    let t: Vec<f32> = x
        .chunks(4)
        .map(|r| r[0] - 0.5 * r[2] + (lcg(&mut st) - 0.5))
        .collect();
    write_npz(
        &dir.join("pairs.npz"),
        &[("x", f32s(&[n, 4], x)), ("t", f32s(&[n], t))],
    );
    let plateau = "ReduceOnPlateau(monitor: loss, factor: 0.5, patience: 1)";
    let epochs = 12;
    let write = |name: &str, source: String| {
        let path = dir.join(name);
        std::fs::write(&path, source).unwrap();
        path.display().to_string()
    };
    let fm = write("plateau.fm", plateau_steps_source(plateau, epochs));
    let summary = fmc(&["summary", &fm]);
    assert_eq!(summary.code, 0, "{}", summary.stderr);
    assert!(
        summary.stdout.contains("monitor: val_c_loss")
            && summary.stdout.contains("monitor: g_loss"),
        "{}",
        summary.stdout
    );
    let train = |fm: &str, run: &str, more: &[&str]| {
        let run = dir.join(run);
        let mut args = vec!["train", fm, "--run-dir", run.to_str().unwrap()];
        args.extend(more);
        let r = fmc(&args);
        assert_eq!(r.code, 0, "{}", r.stderr);
        (run, r.stderr)
    };
    let (full, log) = train(&fm, "full", &[]);
    // The monitored values as logged, and the cuts Keras's rule makes of them.
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(full.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), epochs as usize);
    let column = |key: &str| -> Vec<f64> {
        rows.iter()
            .map(|r| r[key].as_f64().unwrap_or_else(|| panic!("no {key} in {r}")))
            .collect()
    };
    let events = |log: &str, step: &str| -> Vec<String> {
        log.lines()
            .filter(|l| l.contains(&format!("learning rate of step `{step}`")))
            .map(str::to_string)
            .collect()
    };
    let mut first_cut = None;
    for (step, monitor, lr) in [("c", "val_c_loss", 0.3f32), ("g", "g_loss", 0.6)] {
        let values = column(monitor);
        let cuts = plateau_cuts(&values, lr, 0.5, 1);
        eprintln!("step {step}: {monitor} {values:?}; cuts {cuts:?}");
        assert!(!cuts.is_empty(), "step {step} never plateaus: {values:?}");
        let want: Vec<String> = cuts
            .iter()
            .map(|(e, lr)| {
                format!(
                    "Epoch {e}: ReduceLROnPlateau reducing learning rate of step `{step}` to {lr}."
                )
            })
            .collect();
        assert_eq!(events(&log, step), want, "{log}");
        if step == "g" {
            first_cut = Some(cuts[0].0 as u64);
        }
    }
    // `g`'s first cut halves its rate from the next epoch on: a run stopped one epoch later
    // ends where a `Step` schedule halving the rate at that epoch does.
    let e = first_cut.unwrap();
    let cut = write("cut.fm", plateau_steps_source(plateau, e + 1));
    let stepped = write(
        "stepped.fm",
        plateau_steps_source(&format!("Step(every: {e} epochs, gamma: 0.5)"), e + 1),
    );
    for backend in ["jit", "interp"] {
        let more = ["-q", "--backend", backend];
        let (a, _) = train(&cut, &format!("cut-{backend}"), &more);
        let (b, _) = train(&stepped, &format!("stepped-{backend}"), &more);
        assert!(
            tensor_bytes(&a.join("weights.safetensors"))
                == tensor_bytes(&b.join("weights.safetensors")),
            "{backend}: the plateau's cut after epoch {e} is not a halved rate from epoch {}",
            e + 1
        );
    }
    // Resume inside the epoch after the first cut: the checkpoint holds each step's plateau.
    let steps_per_epoch = rows[0]["step"].as_u64().unwrap();
    let stop = (e * steps_per_epoch + 2).to_string();
    let (first, _) = train(&fm, "first", &["-q", "--steps", &stop]);
    let last = first.join("checkpoints/last.safetensors");
    let header = {
        let bytes = std::fs::read(&last).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        String::from_utf8_lossy(&bytes[8..8 + n]).into_owned()
    };
    assert!(header.contains("step_plateaus"), "{header}");
    let (resumed, resumed_log) = train(&fm, "resumed", &["--resume", last.to_str().unwrap()]);
    assert!(
        tensor_bytes(&full.join("weights.safetensors"))
            == tensor_bytes(&resumed.join("weights.safetensors")),
        "the resumed run ends elsewhere than the uninterrupted one"
    );
    // The cuts after the resume point are the uninterrupted run's.
    for step in ["c", "g"] {
        let later = |log: &str| -> Vec<String> {
            events(log, step)
                .into_iter()
                .filter(|l| {
                    l.trim_start_matches("Epoch ")
                        .split(':')
                        .next()
                        .and_then(|v| v.parse::<u64>().ok())
                        .is_some_and(|v| v > e)
                })
                .collect()
        };
        assert_eq!(later(&resumed_log), later(&log), "step {step}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Binary and categorical accuracy over model values (language.md 9.3; the kind follows from
/// the target, as Keras's from the loss): `accuracy(p, flag)` with one sigmoid score per sample
/// against a 0/1 target is Keras's `binary_accuracy` (hit when `p > 0.5` is the flag), and
/// `accuracy(probs, onehot)` against a one-hot target is `categorical_accuracy` (hit when the
/// largest score is the target's class). `fmc eval` reports each, on the interpreter and the
/// JIT, equal to what the predictions `fmc predict` writes give when computed here.
#[test]
fn binary_and_categorical_accuracy_over_values_match_the_predictions() {
    let dir = tmp("value-accuracy");
    let n = 300;
    let mut st = 17u64;
    let x: Vec<f32> = (0..n * 4).map(|_| 2.0 * lcg(&mut st) - 1.0).collect();
    // Learnable but noisy labels: the flag is x0 > 0 and the class the largest of x0..x2,
    // each flipped now and then, so that neither accuracy is 0 or 1 after a short run.
    let mut flag = Vec::new();
    let mut onehot = Vec::new();
    let mut classes = Vec::new();
    for r in x.chunks(4) {
        let f = (r[0] > 0.0) != (lcg(&mut st) < 0.15);
        flag.push(f32::from(u8::from(f)));
        let mut c = (0..3).fold(0, |b, k| if r[k] > r[b] { k } else { b });
        if lcg(&mut st) < 0.2 {
            c = (c + 1) % 3;
        }
        classes.push(c);
        onehot.extend((0..3).map(|k| f32::from(u8::from(k == c))));
    }
    let npz = dir.join("labels.npz");
    write_npz(
        &npz,
        &[
            ("x", f32s(&[n, 4], x)),
            ("flag", f32s(&[n], flag.clone())),
            ("onehot", f32s(&[n, 3], onehot)),
        ],
    );
    let fm = dir.join("acc.fm");
    std::fs::write(
        &fm,
        "version 0.2
data labels {
    train: npz(\"labels.npz\", x: \"x\")
}
model acc {
    input x: f32[4]
    target flag: f32[]
    target onehot: f32[3]
    let p = x -> Dense(1, sigmoid)
    let probs = x -> Dense(3, softmax)
    output p_out = p
    output probs_out = probs
}
train acc {
    data: labels
    loss: binary_crossentropy(p, flag) + categorical_crossentropy(probs, onehot)
    optimizer: Adam(lr: 0.01)
    metrics: [accuracy(p, flag), accuracy(probs, onehot)]
    epochs: 2
    seed: 0
}
",
    )
    .unwrap();
    let fm_s = fm.display().to_string();
    let run = dir.join("run");
    let r = fmc(&[
        "train",
        &fm_s,
        "-q",
        "--run-dir",
        &run.display().to_string(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let weights = run.join("weights.safetensors").display().to_string();
    let npz_s = npz.display().to_string();
    let xs = format!("{npz_s}:x");
    let out = dir.join("pred.npy");
    let r = fmc(&[
        "predict",
        &fm_s,
        "--weights",
        &weights,
        "--input",
        &xs,
        "-o",
        &out.display().to_string(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (p_shape, p) = floats(&dir.join("pred.p_out.npy").display().to_string());
    let (probs_shape, probs) = floats(&dir.join("pred.probs_out.npy").display().to_string());
    assert_eq!((p_shape, probs_shape), (vec![n, 1], vec![n, 3]));
    // Keras's definitions, from the predictions.
    let binary = p
        .iter()
        .zip(&flag)
        .filter(|(&p, &f)| f32::from(u8::from(p > 0.5)) == f)
        .count() as f64
        / n as f64;
    let categorical = probs
        .chunks(3)
        .zip(&classes)
        .filter(|(row, &c)| (0..3).fold(0, |b, k| if row[k] > row[b] { k } else { b }) == c)
        .count() as f64
        / n as f64;
    eprintln!("binary accuracy {binary}, categorical accuracy {categorical}");
    for a in [binary, categorical] {
        assert!(a > 0.4 && a < 1.0, "{binary} {categorical}");
    }
    for backend in ["interp", "jit"] {
        let r = fmc(&[
            "eval",
            &fm_s,
            "--weights",
            &weights,
            "--x",
            &xs,
            "--y",
            &npz_s,
            "--json",
            "--backend",
            backend,
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let got: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
        for (name, want) in [
            ("accuracy_p_flag", binary),
            ("accuracy_probs_onehot", categorical),
        ] {
            let g = got[name].as_f64().unwrap_or(f64::NAN);
            // A count over 300 samples: equal up to the rounding of the mean.
            assert!(
                (g - want).abs() < 1e-6,
                "{backend} {name}: fm {g}, computed {want}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
