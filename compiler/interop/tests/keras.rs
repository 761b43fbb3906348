//! Keras 3 import against Keras itself: `tests/keras/*.keras` were saved by Keras 3.15 (JAX
//! backend) with `tests/keras/gen.py`, with Keras's predictions beside them (`*.npz`). The
//! imported `.fm` file must check, keep Keras's layer names, turn the compile config into a
//! `train` section, and predict what Keras predicted; then Keras -> `.fm` -> ONNX -> `.fm` must
//! keep the predictions.

use fm_compiler::exec::{default_spec, Session};
use fm_compiler::graph::ModelGraph;
use fm_runtime::tensor::Tensor;
use ndarray::ArrayD;
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keras")
}

fn graph_of(source: &str) -> ModelGraph {
    let checked =
        fm_compiler::check::check_source_with(source, Path::new("k.fm"), &Default::default());
    assert!(
        !checked.has_errors(),
        "{source}\n{:#?}",
        checked.diagnostics
    );
    checked.models[0].clone()
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

fn npz(name: &str, key: &str) -> Tensor {
    let p = dir().join(format!("{name}.npz:{key}"));
    let a = fm_runtime::data::read_array(p.to_str().unwrap()).unwrap();
    Tensor::F32(ArrayD::from_shape_vec(a.shape.clone(), a.data.to_f32()).unwrap())
}

/// Max |a - b| relative to the largest |b|.
fn rel(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

fn import(name: &str) -> fm_interop::import::Imported {
    let bytes = std::fs::read(dir().join(format!("{name}.keras"))).unwrap();
    fm_interop::import::keras::import(&bytes, &format!("{name}.keras"), name)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn check_model(name: &str, inputs: &[&str]) -> String {
    let imported = import(name);
    let g = graph_of(&imported.source);
    let xs: Vec<Tensor> = inputs.iter().map(|k| npz(name, k)).collect();
    let want = npz(name, "y").to_f32();
    let got = predict(&g, &imported.tensors, &xs);
    let r = rel(&got[0], &want);
    eprintln!("{name}: fm vs Keras {r:.2e} relative");
    assert!(
        r <= 1e-5,
        "{name}: fm vs Keras differ by {r} (relative)\n{}",
        imported.source
    );
    // Keras -> .fm -> ONNX -> .fm.
    let onnx = fm_interop::export::export(&g, &imported.tensors, &Default::default(), "w")
        .expect("exports");
    let back = fm_interop::import::onnx::import(&onnx, "m.onnx", name).expect("imports");
    let g2 = graph_of(&back.source);
    let got2 = predict(&g2, &back.tensors, &xs);
    let r2 = rel(&got2[0], &want);
    eprintln!("{name}: after ONNX {r2:.2e}");
    assert!(
        r2 <= 1e-5,
        "{name}: after ONNX, fm vs Keras differ by {r2}\n{}",
        back.source
    );
    // The JSON config alone gives the same architecture, freshly initialised.
    let json = std::fs::read(dir().join(format!("{name}.json"))).unwrap();
    let fresh = fm_interop::import::keras::import(&json, &format!("{name}.json"), name).unwrap();
    assert!(fresh.tensors.is_empty());
    assert_eq!(graph_of(&fresh.source).total_params(), g.total_params());
    imported.source
}

#[test]
fn the_seeds_mnist_mlp() {
    let src = check_model("mnist_mlp", &["x"]);
    assert!(src.contains("Dense(128, relu, name: \"dense\")"), "{src}");
    assert!(
        src.contains("loss: sparse_categorical_crossentropy"),
        "{src}"
    );
    assert!(src.contains("optimizer: Adam(lr: 0.001"), "{src}");
    assert!(src.contains("metrics: [accuracy]"), "{src}");
}

#[test]
fn the_seeds_mnist_cnn() {
    let src = check_model("mnist_cnn", &["x"]);
    assert!(
        src.contains("Conv2D(64, 3, relu, name: \"conv2d_2\")"),
        "{src}"
    );
    assert!(
        src.contains("MaxPool2D(2, name: \"max_pooling2d_1\")"),
        "{src}"
    );
}

#[test]
fn a_functional_model_with_batch_norm_residual_concat_lstm_and_gru() {
    let src = check_model("functional_mix", &["x_image", "x_seq"]);
    assert!(src.contains("name: \"stem\""), "{src}");
    assert!(
        src.contains("LSTM(6, return_sequences: true, name: \"lstm\")"),
        "{src}"
    );
}

#[test]
fn a_truncated_keras_file_is_e0402_naming_the_file() {
    let bytes = std::fs::read(dir().join("mnist_mlp.keras")).unwrap();
    let e =
        fm_interop::import::keras::import(&bytes[..bytes.len() / 3], "cut.keras", "m").unwrap_err();
    assert_eq!(e.code, fm_codes::E0402);
    assert_eq!(e.file, "cut.keras");
}

#[test]
fn a_config_that_decompresses_past_its_bound_is_e0402_not_an_abort() {
    // A zip bomb: 257 MiB of spaces deflate to a few hundred KB; reading them whole (and a
    // `config.json` of gigabytes) ran out of memory.
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let deflated = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(1))
        .large_file(true);
    zip.start_file("config.json", deflated).unwrap();
    let spaces = vec![b' '; 1 << 20];
    for _ in 0..257 {
        zip.write_all(&spaces).unwrap();
    }
    zip.start_file("model.weights.h5", deflated).unwrap();
    let bytes = zip.finish().unwrap().into_inner();
    assert!(bytes.len() < 4 << 20, "{} bytes", bytes.len());
    let e = fm_interop::import::keras::import(&bytes, "bomb.keras", "m").unwrap_err();
    assert_eq!(e.code, fm_codes::E0402);
    assert_eq!(
        e.to_string(),
        "bomb.keras: config.json: decompresses to more than 256 MB, which no Keras model config needs"
    );
}

#[test]
fn weights_of_the_wrong_shape_are_e0402_naming_the_tensor() {
    let bytes = std::fs::read(dir().join("mnist_mlp.keras")).unwrap();
    let mut imported = fm_interop::import::keras::import(&bytes, "m.keras", "m").unwrap();
    fm_interop::import::check(&imported, "m.keras").expect("fits as saved");
    let k = imported
        .tensors
        .iter()
        .position(|(n, _)| n == "dense.kernel")
        .unwrap();
    imported.tensors[k].1 = Tensor::F32(ArrayD::zeros(ndarray::IxDyn(&[3, 4])));
    let e = fm_interop::import::check(&imported, "m.keras").unwrap_err();
    assert_eq!(e.code, fm_codes::E0402);
    assert!(
        e.message
            .contains("tensor 'dense.kernel' has shape [3, 4], expected [784, 128]"),
        "{e}"
    );
}

#[test]
fn nested_models_become_blocks_and_layers_called_twice_named_calls() {
    // Keras: `encoder` (a Sequential with BatchNorm) and `shared` (a Dense) are each called on
    // both inputs; `head` is a Functional model used as a layer.
    let src = check_model("nested_shared", &["x_left", "x_right"]);
    assert!(src.starts_with("// Imported by `fmc import`"), "{src}");
    assert!(src.contains("version 0.2\n"), "{src}");
    assert!(src.contains("block encoder_block(x) {"), "{src}");
    assert!(
        src.contains("let encoder_1 = left -> encoder_block(name: \"encoder\")"),
        "{src}"
    );
    // The second calls run the first calls' weights by name.
    assert!(src.contains("let encoder_2 = right -> encoder\n"), "{src}");
    assert!(
        src.contains("let shared_2 = encoder_2 -> shared\n"),
        "{src}"
    );
    assert!(src.contains("block head_block(input_layer_1) {"), "{src}");
    assert!(src.contains("-> head_block(name: \"head\")"), "{src}");
    let imported = import("nested_shared");
    let names: Vec<&str> = imported.tensors.iter().map(|(n, _)| n.as_str()).collect();
    for n in [
        "encoder/dense.kernel",
        "encoder/batch_normalization.moving_variance",
        "encoder/dense_1.bias",
        "shared.kernel",
        "head/inner.kernel",
        "head/skip.bias",
    ] {
        assert!(names.contains(&n), "{n} not in {names:?}");
    }
    // Shared weights are stored once.
    assert_eq!(names.iter().filter(|n| n.starts_with("shared.")).count(), 2);
}

#[test]
fn a_sequential_model_inside_a_sequential_model() {
    let src = check_model("sequential_nested", &["x"]);
    assert!(src.contains("block conv_block_block(x) {"), "{src}");
    assert!(
        src.contains("Conv2D(4, 3, relu, padding: same, name: \"conv2d\")"),
        "{src}"
    );
}

#[test]
fn an_hdf5_file_without_a_dataset_is_e0402_naming_the_file_and_the_dataset() {
    // sequential_nested.keras with `layers/dense/vars/1` (the Dense bias) deleted by h5py.
    let bytes = std::fs::read(dir().join("missing_dataset.keras")).unwrap();
    let e = fm_interop::import::keras::import(&bytes, "missing_dataset.keras", "m").unwrap_err();
    assert_eq!(e.code, fm_codes::E0402);
    assert_eq!(
        e.to_string(),
        "missing_dataset.keras: model.weights.h5: dataset layers/dense/vars/1: is missing: \
         layer 'dense_2' (Dense) has 2 weights"
    );
}
