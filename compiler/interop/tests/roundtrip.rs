//! Export then import: every example model (with random weights, BatchNorm statistics
//! included) exported to ONNX and imported back gives a `.fm` file that checks and predicts what
//! the original predicts, on fm's interpreter, within 1e-5 relative to the output's scale.

use fm_compiler::exec::{default_spec, Session};
use fm_compiler::graph::{DType, ModelGraph};
use fm_runtime::random::Rng;
use fm_runtime::tensor::Tensor;
use ndarray::{ArrayD, IxDyn};
use std::path::Path;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn graph_of(source: &str, path: &Path) -> ModelGraph {
    let checked = fm_compiler::check::check_source_with(source, path, &Default::default());
    // The data section gives no values for a formerly sampled input (E0306): the model is fine.
    let errors: Vec<_> = checked
        .diagnostics
        .iter()
        .filter(|d| d.is_error() && d.code.as_str() != "E0306")
        .collect();
    assert!(errors.is_empty(), "{source}\n{errors:#?}");
    checked.models[0].clone()
}

fn uniform(rng: &mut Rng, shape: &[usize], lo: f32, hi: f32) -> ArrayD<f32> {
    let n = shape.iter().product();
    let v = (0..n)
        .map(|_| lo + (hi - lo) * rng.uniform() as f32)
        .collect();
    ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
}

fn predict(g: &ModelGraph, tensors: &[(String, Tensor)], inputs: &[Tensor]) -> Vec<ArrayD<f32>> {
    let mut s = Session::new(g.clone(), default_spec(g)).expect("lowers");
    s.set_state(tensors).expect("weights fit");
    s.predict(inputs)
        .expect("runs")
        .iter()
        .map(Tensor::to_f32)
        .collect()
}

fn round_trip(example: &str, batch: usize) -> String {
    round_trip_reading(example, batch, "")
}

/// The round trip of a model whose outputs read only the weights named `prefix...` (the
/// inference graph leaves the rest out: a GAN's discriminator).
fn round_trip_reading(example: &str, batch: usize, prefix: &str) -> String {
    let beside = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/onnxruntime")
        .join(example);
    let path = match beside.exists() {
        true => beside,
        false => root().join("examples").join(example),
    };
    // Sampled inputs (`input z: f32[32] ~ normal(0, 1)`) become plain inputs, so that both
    // models predict on the same values (in ONNX they are inputs).
    let source: String = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| match l.trim_start().starts_with("input ") {
            true => l.split('~').next().unwrap().trim_end(),
            false => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let g = graph_of(&source, &path);
    let mut rng = Rng::new(11, 0);
    let weights: Vec<(String, Tensor)> = g
        .params
        .iter()
        .map(|p| {
            let a = if p.name.ends_with("moving_variance") {
                uniform(&mut rng, &p.shape, 0.5, 1.5)
            } else {
                uniform(&mut rng, &p.shape, -0.3, 0.3)
            };
            (p.name.clone(), Tensor::F32(a))
        })
        .collect();
    let inputs: Vec<Tensor> = g
        .inputs
        .iter()
        .map(|i| {
            let shape: Vec<usize> = std::iter::once(batch)
                .chain(i.shape.iter().copied())
                .collect();
            match i.dtype {
                DType::F32 => Tensor::F32(uniform(&mut rng, &shape, 0.0, 1.0)),
                DType::I32 => Tensor::I32(uniform(&mut rng, &shape, 0.0, 5.0).mapv(|v| v as i32)),
            }
        })
        .collect();
    let onnx = fm_interop::export::export(&g, &weights, &Default::default(), "w.safetensors")
        .expect("exports");
    let imported = fm_interop::import::onnx::import(&onnx, "model.onnx", &g.name).expect("imports");
    fm_interop::import::check(&imported, "model.onnx").expect("checks");
    let g2 = graph_of(&imported.source, Path::new("imported.fm"));
    let read: usize = g
        .params
        .iter()
        .filter(|p| p.name.starts_with(prefix))
        .map(|p| p.shape.iter().product::<usize>())
        .sum();
    assert_eq!(g2.total_params(), read, "{}", imported.source);
    let want = predict(&g, &weights, &inputs);
    // The exported graph takes the inputs its outputs read (a GAN's generator: not `real`).
    let inputs2: Vec<Tensor> = g2
        .inputs
        .iter()
        .map(|i2| {
            let k = g
                .inputs
                .iter()
                .position(|i| i.name == i2.name)
                .expect("an input of the original");
            inputs[k].clone()
        })
        .collect();
    let got = predict(&g2, &imported.tensors, &inputs2);
    assert_eq!(want.len(), got.len());
    for (w, o) in want.iter().zip(&got) {
        assert_eq!(w.shape(), o.shape());
        let scale = w.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        let diff = w.iter().zip(o).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        eprintln!("{example}: round trip {:.2e} relative", diff / scale);
        assert!(
            diff <= 1e-5 * scale,
            "{example}: max |difference| {diff} at output scale {scale}\n{}",
            imported.source
        );
    }
    imported.source
}

#[test]
fn digits_mlp() {
    let src = round_trip("digits_mlp.fm", 5);
    assert!(src.contains("Dense(128, relu, name: \"dense\")"), "{src}");
}

#[test]
fn digits_cnn_keeps_layer_names_and_padding() {
    let src = round_trip("digits_cnn.fm", 3);
    assert!(
        src.contains("Conv2D(64, 3, relu, padding: same, name: \"conv2d_1\")"),
        "{src}"
    );
    assert!(
        src.contains("GlobalAvgPool2D(name: \"global_avg_pool2d\")"),
        "{src}"
    );
}

#[test]
fn mnist_mlp_and_cnn() {
    round_trip("mnist_mlp.fm", 3);
    round_trip("mnist_cnn.fm", 2);
}

#[test]
fn lstm_sequence() {
    let src = round_trip("lstm_sequence.fm", 3);
    assert!(src.contains("LSTM(64, return_sequences: true"), "{src}");
}

#[test]
fn resnet_tiny_with_batch_norm_and_residual_adds() {
    let src = round_trip("resnet_tiny.fm", 2);
    assert!(src.contains("BatchNorm("), "{src}");
}

#[test]
fn binary_classifier_and_linear_regression() {
    round_trip("binary_classifier.fm", 4);
    round_trip("linear_regression.fm", 4);
}

#[test]
fn digits_two_heads() {
    let src = round_trip("digits_two_heads.fm", 3);
    assert!(src.contains("output digit"), "{src}");
}

#[test]
fn gan_generator_and_vae() {
    // fm 0.2: the GAN's generator (its sampled noise an input), the VAE's `mu + exp(0.5 *
    // logvar) * eps`.
    let src = round_trip_reading("gan_digits.fm", 4, "g/");
    assert!(src.contains("input z: f32[32]"), "{src}");
    let src = round_trip("vae_digits.fm", 4);
    assert!(src.contains("-> exp"), "{src}");
}

#[test]
fn word2vec_with_one_id_per_sample() {
    // Rank-1 inputs (`i32[]`: one id per sample) and `dot` as Mul + ReduceSum.
    let src = round_trip("word2vec.fm", 6);
    assert!(src.contains("input center: i32[]"), "{src}");
    assert!(src.contains("sum(axis: [0])"), "{src}");
}

#[test]
fn group_norm_arithmetic_reads_back_as_group_norm() {
    // `fmc export` writes GroupNorm as its channels-last arithmetic; the importer reads those
    // eleven nodes back as the layer, with its groups, epsilon and per-channel weights.
    let src = round_trip("groupnorm_upsampling.fm", 3);
    assert!(
        src.contains("GroupNorm(groups: 4, epsilon: 0.001, name: \"group_norm\")"),
        "{src}"
    );
    assert!(
        src.contains("GroupNorm(groups: 3, epsilon: 1e-5, name: \"group_norm_1\")"),
        "{src}"
    );
}

#[test]
fn position_embedding_tables_longer_than_and_as_long_as_the_sequence() {
    let src = round_trip("position_embedding.fm", 3);
    assert!(
        src.contains("PositionEmbedding(7, name: \"position_embedding\")"),
        "{src}"
    );
    assert!(
        src.contains("PositionEmbedding(5, name: \"position_embedding_1\")"),
        "{src}"
    );
    // The reference case checked against keras-hub (tests/reference/cases/).
    round_trip("../tests/reference/cases/position_embedding/model.fm", 4);
}

#[test]
fn text_transformer_attention_reads_back_as_multi_head_attention() {
    // `fmc export` writes MultiHeadAttention as its projections, scaled scores, softmax and
    // output projection; the importer reads those nodes back as the layer with its weights.
    let src = round_trip("text_transformer.fm", 3);
    assert_eq!(
        src.matches("MultiHeadAttention(4, name: ").count(),
        2,
        "{src}"
    );
}

#[test]
fn causal_and_cross_attention() {
    // A causal mask (a stored `[Tq, Tk]` Add) and a query, value and key of their own
    // (value and key of another width and length than the query, key_dim not D / heads).
    let src = round_trip("attention.fm", 2);
    assert!(
        src.contains("MultiHeadAttention(2, causal: true, name: \"self_attention\")"),
        "{src}"
    );
    assert!(
        src.contains("MultiHeadAttention(q, v, k, 3, key_dim: 5, name: \"cross_attention\")"),
        "{src}"
    );
}
