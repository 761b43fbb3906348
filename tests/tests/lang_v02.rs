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
    // The classifier's data section scales by 1/255: give it pixels in 0..255.
    let pixels = dir.join("pixels.npy");
    let arr = ndarray::ArrayD::from_shape_vec(
        ndarray::IxDyn(&[64, 8, 8]),
        gen.iter().map(|v| v * 255.0).collect(),
    )
    .unwrap();
    fm_runtime::data::npy::write_npy(&pixels, &Tensor::F32(arr)).unwrap();
    let probs = dir.join("probs.npy");
    let r = fmc(&[
        "predict",
        &example("digits_mlp.fm"),
        "--weights",
        &s(&mlp_run.join("weights.safetensors")),
        "--input",
        &s(&pixels),
        "-o",
        &s(&probs),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (_, p) = floats(&s(&probs));
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
    let held_out = dir.join("test.npy");
    let arr = ndarray::ArrayD::from_shape_vec(
        ndarray::IxDyn(&[360, 8, 8]),
        test.iter().map(|v| v * 255.0).collect(),
    )
    .unwrap();
    fm_runtime::data::npy::write_npy(&held_out, &Tensor::F32(arr)).unwrap();
    let recon = dir.join("recon.npy");
    let r = fmc(&[
        "predict",
        &example("vae_digits.fm"),
        "--weights",
        &s(&run.join("weights.safetensors")),
        "--input",
        &s(&held_out),
        "-o",
        &s(&recon),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (shape, out) = floats(&s(&recon));
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
