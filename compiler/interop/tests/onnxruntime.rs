//! `fmc export` against onnxruntime, without Python at test time: `tests/onnxruntime/gen.py`
//! exported every example model (and the models beside it) with committed weights (`NAME.safetensors`, a few training steps
//! in), ran ONNX's checker (`full_check`) and onnxruntime 1.32 on committed inputs
//! (`NAME.x.npz`), and committed onnxruntime's outputs (`NAME.ort.npz`; `MANIFEST.txt` lists
//! the versions and what `fmc predict` gave then).
//!
//! Here the same weights are exported again and
//! 1. fm's own prediction (interpreter, the model's `x:` transforms applied as `fmc predict`
//!    does) must equal onnxruntime's outputs, and
//! 2. the exported graph, imported back with fm's ONNX importer, must predict them too;
//!
//! both within 1e-5 relative to the output's largest magnitude (`TOLERANCE`).

use fm_compiler::exec::{default_spec, Session};
use fm_compiler::graph::{DType, ModelGraph};
use fm_runtime::data::FittedTransforms;
use fm_runtime::tensor::Tensor;
use ndarray::{ArrayD, IxDyn};
use std::path::{Path, PathBuf};

/// Largest |fm - onnxruntime| allowed, relative to the largest |onnxruntime| of the output.
const TOLERANCE: f32 = 1e-5;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onnxruntime")
}

/// The example's model as written (what `fmc export` exports), and the same model with its
/// sampled inputs (`input z: f32[32] ~ normal(0, 1)`) made plain inputs, so that fm predicts
/// on the values onnxruntime was given (in ONNX they are inputs).
fn graphs(example: &str) -> (ModelGraph, ModelGraph) {
    let beside = dir().join(format!("{example}.fm"));
    let path = match beside.exists() {
        true => beside,
        false => root().join("examples").join(format!("{example}.fm")),
    };
    let written = std::fs::read_to_string(&path).unwrap();
    let checked = fm_compiler::check::check_source_with(&written, &path, &Default::default());
    assert!(!checked.has_errors(), "{:?}", checked.diagnostics);
    let exported = checked.models[0].clone();
    let source: String = written
        .lines()
        .map(|l| match l.trim_start().starts_with("input ") {
            true => l.split('~').next().unwrap().trim_end(),
            false => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let checked = fm_compiler::check::check_source_with(&source, &path, &Default::default());
    // The data section gives no values for a formerly sampled input (E0306): the model is fine.
    let errors: Vec<_> = checked
        .diagnostics
        .iter()
        .filter(|d| d.is_error() && d.code.as_str() != "E0306")
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    (exported, checked.models[0].clone())
}

fn npz(file: &Path, key: &str, dtype: DType) -> Tensor {
    let spec = format!("{}:{key}", file.display());
    let a = fm_runtime::data::read_array(&spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
    let shape = IxDyn(&a.shape);
    match dtype {
        DType::F32 => Tensor::F32(ArrayD::from_shape_vec(shape, a.data.to_f32()).unwrap()),
        DType::I32 => Tensor::I32(ArrayD::from_shape_vec(shape, a.to_i32().unwrap()).unwrap()),
    }
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

/// Max |got - want| relative to max |want|.
fn rel(got: &ArrayD<f32>, want: &ArrayD<f32>) -> f32 {
    assert_eq!(
        got.len(),
        want.len(),
        "{:?} vs {:?}",
        got.shape(),
        want.shape()
    );
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    got.iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
        / scale
}

/// Checks one example.
fn check(example: &str) {
    let (exported, g) = graphs(example);
    let wpath = dir().join(format!("{example}.safetensors"));
    let weights = fm_runtime::weights::load_weights(&wpath).expect("committed weights");
    let transforms = match weights.meta.transforms.as_deref() {
        Some(json) => FittedTransforms::from_json(json).expect("transforms"),
        None => FittedTransforms::default(),
    };
    let xfile = dir().join(format!("{example}.x.npz"));
    let yfile = dir().join(format!("{example}.ort.npz"));
    // The ONNX graph's inputs: the model's inputs that its outputs read.
    let onnx =
        fm_interop::export::export(&exported, &weights.tensors, &transforms, "w").expect("exports");
    let m = <fm_interop::onnx::ModelProto as prost::Message>::decode(onnx.as_slice()).unwrap();
    let onnx_inputs: Vec<String> = m
        .graph
        .as_ref()
        .unwrap()
        .input
        .iter()
        .map(|i| i.name().to_string())
        .collect();
    let raw: Vec<Tensor> = g
        .inputs
        .iter()
        .map(|i| {
            if onnx_inputs.contains(&i.name) {
                let t = npz(&xfile, &i.name, i.dtype);
                // ONNX's inputs keep trailing size-1 axes; fm's shapes are the declared ones.
                let mut shape = vec![t.shape()[0]];
                shape.extend(&i.shape);
                match t {
                    Tensor::F32(a) => Tensor::F32(a.into_shape_with_order(shape).unwrap()),
                    Tensor::I32(a) => Tensor::I32(a.into_shape_with_order(shape).unwrap()),
                }
            } else {
                // An input the outputs do not read (a GAN's real images): any values.
                let n = npz(&xfile, &onnx_inputs[0], DType::F32).shape()[0];
                let mut shape = vec![n];
                shape.extend(&i.shape);
                Tensor::F32(ArrayD::zeros(IxDyn(&shape)))
            }
        })
        .collect();
    let want: Vec<ArrayD<f32>> = g
        .outputs
        .iter()
        .map(|o| npz(&yfile, &o.name, DType::F32).to_f32())
        .collect();
    // 1. fm's own prediction, the data inputs transformed first (what `fmc predict` does;
    //    sampled inputs are fm's draws, untransformed).
    let sampled = |k: usize| exported.sampled.iter().any(|(i, _)| *i == k);
    let data: Vec<Tensor> = (0..raw.len())
        .filter(|&k| !sampled(k))
        .map(|k| raw[k].clone())
        .collect();
    let mut data = transforms
        .apply_inputs(data)
        .expect("transforms apply")
        .into_iter();
    let inputs: Vec<Tensor> = (0..raw.len())
        .map(|k| match sampled(k) {
            true => raw[k].clone(),
            false => data.next().expect("one per data input"),
        })
        .collect();
    let got = predict(&g, &weights.tensors, &inputs);
    for ((o, w), y) in g.outputs.iter().zip(&want).zip(&got) {
        let r = rel(y, w);
        eprintln!(
            "{example}: fm vs onnxruntime, `{}`: {r:.2e} relative",
            o.name
        );
        assert!(
            r <= TOLERANCE,
            "{example}: fm's output `{}` differs from onnxruntime's by {r} (relative)",
            o.name
        );
    }
    // 2. The exported graph read back by fm's importer (it takes the raw inputs: the
    //    transforms are the graph's first operators).
    let imported = fm_interop::import::onnx::import(&onnx, "model.onnx", &g.name).expect("imports");
    fm_interop::import::check(&imported, "model.onnx").expect("checks");
    let checked = fm_compiler::check::check_source_with(
        &imported.source,
        Path::new("imported.fm"),
        &Default::default(),
    );
    let g2 = checked.models[0].clone();
    let raw2: Vec<Tensor> = raw
        .iter()
        .zip(&g.inputs)
        .filter(|(_, i)| onnx_inputs.contains(&i.name))
        .map(|(t, _)| t.clone())
        .collect();
    let got = predict(&g2, &imported.tensors, &raw2);
    for ((o, w), y) in g.outputs.iter().zip(&want).zip(&got) {
        let r = rel(y, w);
        eprintln!(
            "{example}: re-imported vs onnxruntime, `{}`: {r:.2e}",
            o.name
        );
        assert!(
            r <= TOLERANCE,
            "{example}: exported and imported back, output `{}` differs from onnxruntime's by {r}\n{}",
            o.name,
            imported.source
        );
    }
}

#[test]
fn digits_mlp() {
    check("digits_mlp");
}

#[test]
fn digits_two_heads() {
    check("digits_two_heads");
}

#[test]
fn digits_cnn() {
    check("digits_cnn");
}

#[test]
fn mnist_mlp_and_cnn() {
    check("mnist_mlp");
    check("mnist_cnn");
}

#[test]
fn lstm_sequence() {
    check("lstm_sequence");
}

#[test]
fn resnet_tiny() {
    check("resnet_tiny");
}

#[test]
fn binary_classifier_and_linear_regression() {
    check("binary_classifier");
    check("linear_regression");
}

#[test]
fn version_0_2_models() {
    // The GAN's generator and the VAE's decoder (sampled inputs, fm 0.2 expressions: numbers,
    // `exp`, `*`); word2vec's `dot` of two embeddings (one id per sample: rank-1 inputs).
    check("gan_digits");
    check("vae_digits");
    check("word2vec");
}

#[test]
fn group_norm_and_up_sampling() {
    // GroupNorm is exported as its arithmetic (ONNX's GroupNormalization is channels-first and,
    // before opset 21, scales per group), which fm's importer reads back as `GroupNorm`.
    check("groupnorm_upsampling");
}

#[test]
fn position_embedding() {
    // keras-hub's PositionEmbedding: Shape, a Slice of the table (when it holds more positions
    // than the sequence), Expand; read back as `PositionEmbedding`.
    check("position_embedding");
}

#[test]
fn text_transformer() {
    // MultiHeadAttention exported as its arithmetic (projections, scaled scores, softmax,
    // output projection) and GELU as its erf form, both read back as the layers.
    check("text_transformer");
}

#[test]
fn causal_and_cross_attention() {
    // A causal mask, and a query, value and key of their own widths and lengths.
    check("attention");
}

#[test]
fn every_exported_example_has_a_reference() {
    // The examples `fmc export` accepts are exactly those with committed references (a new
    // example must be added to gen.py's run and to a test above).
    let mut missing = Vec::new();
    for e in std::fs::read_dir(root().join("examples"))
        .unwrap()
        .flatten()
    {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "fm") {
            continue;
        }
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        let g = graphs(&name).0;
        let w: Vec<(String, Tensor)> = g
            .params
            .iter()
            .map(|p| (p.name.clone(), Tensor::F32(ArrayD::zeros(IxDyn(&p.shape)))))
            .collect();
        let exports = fm_interop::export::export(&g, &w, &Default::default(), "w").is_ok();
        let has = dir().join(format!("{name}.ort.npz")).exists();
        if exports != has {
            missing.push(format!("{name}: exports {exports}, reference {has}"));
        }
    }
    assert!(missing.is_empty(), "{missing:?}");
}
