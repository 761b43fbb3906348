//! `fm_interop::export` on the examples: the graph's interface, the operators, and the
//! initializers in ONNX's layouts. (That onnxruntime computes what `fmc predict` computes is
//! checked against committed onnxruntime outputs by `tests/onnxruntime.rs`, and by hand with
//! `tools/check_onnx.py`.)

use fm_compiler::graph::ModelGraph;
use fm_interop::onnx::{self, tensor_shape_proto::dimension::Value, type_proto, ModelProto};
use fm_runtime::tensor::Tensor;
use prost::Message;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn model(example: &str) -> ModelGraph {
    let path = root().join("examples").join(example);
    let (_, checked) =
        fm_compiler::check::check_file_with(&path, &Default::default()).expect("readable");
    assert!(!checked.has_errors(), "{:?}", checked.diagnostics);
    checked.models[0].clone()
}

fn weights(g: &ModelGraph) -> Vec<(String, Tensor)> {
    g.params
        .iter()
        .zip(fm_compiler::init::initial_params(g, 7))
        .map(|(p, a)| (p.name.clone(), Tensor::F32(a)))
        .collect()
}

fn export(g: &ModelGraph) -> ModelProto {
    let bytes = fm_interop::export::export(g, &weights(g), &Default::default(), "w.safetensors")
        .expect("exports");
    ModelProto::decode(bytes.as_slice()).expect("decodes")
}

fn ops(m: &ModelProto) -> Vec<String> {
    let g = m.graph.as_ref().unwrap();
    g.node.iter().map(|n| n.op_type().to_string()).collect()
}

fn dims(v: &onnx::ValueInfoProto) -> Vec<String> {
    let Some(type_proto::Value::TensorType(t)) = &v.r#type.as_ref().unwrap().value else {
        panic!("not a tensor")
    };
    t.shape
        .as_ref()
        .unwrap()
        .dim
        .iter()
        .map(|d| match &d.value {
            Some(Value::DimValue(n)) => n.to_string(),
            Some(Value::DimParam(p)) => p.clone(),
            None => "?".into(),
        })
        .collect()
}

#[test]
fn the_cnn_exports_channels_last_with_transposed_kernels_and_no_dropout() {
    let g = model("digits_cnn.fm");
    let m = export(&g);
    assert_eq!(m.opset_import[0].version(), 17);
    assert_eq!(m.ir_version(), 8);
    let graph = m.graph.as_ref().unwrap();
    assert_eq!(graph.input[0].name(), "image");
    assert_eq!(dims(&graph.input[0]), ["N", "8", "8", "1"]);
    assert_eq!(graph.output[0].name(), "probs");
    assert_eq!(dims(&graph.output[0]), ["N", "10"]);
    assert_eq!(
        ops(&m).join(" "),
        "Transpose Conv Transpose Relu Transpose Conv Transpose Relu Transpose MaxPool Transpose \
         Transpose Conv Transpose Relu Transpose GlobalAveragePool Flatten MatMul Add Softmax Identity"
    );
    // conv2d_1.kernel is [3, 3, 32, 64] in fm and [64, 32, 3, 3] in ONNX.
    let w = weights(&g);
    let fm_kernel = w
        .iter()
        .find(|(n, _)| n == "conv2d_1.kernel")
        .unwrap()
        .1
        .to_f32();
    let init = graph
        .initializer
        .iter()
        .find(|t| t.name() == "conv2d_1.kernel")
        .unwrap();
    assert_eq!(init.dims, [64, 32, 3, 3]);
    let v = onnx::tensor_values(init).unwrap().f32s();
    // ONNX [o, i, y, x] = fm [y, x, i, o]
    for (o, i, y, x) in [(0, 0, 0, 0), (63, 31, 2, 2), (5, 17, 1, 2), (40, 3, 2, 0)] {
        assert_eq!(v[((o * 32 + i) * 3 + y) * 3 + x], fm_kernel[[y, x, i, o]]);
    }
    // "same" padding on 8x8 with a 3x3 kernel: one cell each side.
    let conv = graph.node.iter().find(|n| n.op_type() == "Conv").unwrap();
    let pads = conv.attribute.iter().find(|a| a.name() == "pads").unwrap();
    assert_eq!(pads.ints, [1, 1, 1, 1]);
}

#[test]
fn an_lstm_keeps_kerass_equations_in_onnxs_gate_order() {
    let g = model("lstm_sequence.fm");
    let m = export(&g);
    assert_eq!(
        ops(&m).join(" "),
        "Transpose LSTM Squeeze Transpose Transpose LSTM Squeeze MatMul Add Softmax Identity"
    );
    let graph = m.graph.as_ref().unwrap();
    let w = weights(&g);
    let kernel = w
        .iter()
        .find(|(n, _)| n == "lstm_1.kernel")
        .unwrap()
        .1
        .to_f32();
    let init = graph
        .initializer
        .iter()
        .find(|t| t.name() == "lstm_1.kernel")
        .unwrap();
    assert_eq!(init.dims, [1, 128, 64]);
    let v = onnx::tensor_values(init).unwrap().f32s();
    // Keras [c, gate * 32 + u] with gates i, f, c, o; ONNX [gate' * 32 + u, c] with i, o, f, c.
    let units = 32;
    for (onnx_gate, keras_gate) in [(0, 0), (1, 3), (2, 1), (3, 2)] {
        for (u, c) in [(0, 0), (31, 63), (7, 20)] {
            assert_eq!(
                v[(onnx_gate * units + u) * 64 + c],
                kernel[[c, keras_gate * units + u]]
            );
        }
    }
    let lstm = graph.node.iter().find(|n| n.op_type() == "LSTM").unwrap();
    let acts = lstm
        .attribute
        .iter()
        .find(|a| a.name() == "activations")
        .unwrap();
    assert_eq!(
        acts.strings,
        [b"Sigmoid".to_vec(), b"Tanh".to_vec(), b"Tanh".to_vec()]
    );
}

#[test]
fn weights_of_another_model_are_e0410_naming_the_tensors() {
    let g = model("digits_cnn.fm");
    let other = weights(&model("digits_mlp.fm"));
    let e =
        fm_interop::export::export(&g, &other, &Default::default(), "mlp.safetensors").unwrap_err();
    assert_eq!(e.code, fm_codes::E0410);
    assert_eq!(e.file, "mlp.safetensors");
    assert!(
        e.message.contains("missing tensor 'conv2d.kernel'"),
        "{}",
        e.message
    );
}

#[test]
fn attention_over_an_image_is_e0413_naming_the_layer() {
    // Sequences `[T, D]` are exported (text_transformer: see `attention_is_its_arithmetic`);
    // attention over the positions of an image is not.
    let source = "model m {\n    input image: f32[4, 4, 3]\n    output y = image -> MultiHeadAttention(3, name: \"mha\") -> Flatten -> Dense(2)\n}\n";
    let checked =
        fm_compiler::check::check_source_with(source, Path::new("m.fm"), &Default::default());
    assert!(!checked.has_errors(), "{:?}", checked.diagnostics);
    let g = checked.models[0].clone();
    let e = fm_interop::export::export(&g, &weights(&g), &Default::default(), "w.safetensors")
        .unwrap_err();
    assert_eq!(e.code, fm_codes::E0413);
    assert!(e.to_string().contains("`mha` (MultiHeadAttention)"), "{e}");
    assert!(e.to_string().contains("sequences `[T, D]` only"), "{e}");
}

#[test]
fn attention_is_its_arithmetic() {
    // Per encoder: three projections (MatMul, Reshape, Add; the query's scaled by a Mul;
    // Transpose), the scores' MatMul, Softmax, MatMul by the values, Transpose, Reshape and the
    // output projection; the kernels as `[D, H*K]` and `[H*K, D]` matrices.
    let m = export(&model("text_transformer.fm"));
    let ops = ops(&m);
    assert_eq!(ops.iter().filter(|o| *o == "Softmax").count(), 3, "{ops:?}");
    assert_eq!(ops.iter().filter(|o| *o == "Erf").count(), 2, "{ops:?}");
    let g = m.graph.as_ref().unwrap();
    let shape = |name: &str| -> Vec<i64> {
        g.initializer
            .iter()
            .find(|t| t.name() == name)
            .unwrap_or_else(|| panic!("no initializer {name}"))
            .dims
            .clone()
    };
    assert_eq!(shape("encoder/multi_head_attention.query.kernel"), [64, 64]);
    assert_eq!(shape("encoder/multi_head_attention.query.bias"), [4, 16]);
    assert_eq!(
        shape("encoder/multi_head_attention.output.kernel"),
        [64, 64]
    );
    assert_eq!(shape("encoder/multi_head_attention.output.bias"), [64]);
}

#[test]
fn data_transforms_apply_to_data_inputs_not_to_sampled_noise() {
    // vae_digits: `image` comes from the data (`x: scale(1 / 255)`), `eps` is drawn by fm
    // (`~ normal(0, 1)`): only `image` is scaled, as `fmc predict` and training do.
    let g = model("vae_digits.fm");
    let transforms = fm_runtime::data::FittedTransforms::from_json(
        r#"{"x":[{"Scale":{"factor":0.00392156862745098,"offset":0.0}}],"y":[],"x_stats":[[]],"y_stats":[[]]}"#,
    )
    .expect("transforms");
    let bytes = fm_interop::export::export(&g, &weights(&g), &transforms, "w").expect("exports");
    let m = ModelProto::decode(bytes.as_slice()).unwrap();
    let graph = m.graph.as_ref().unwrap();
    let readers = |input: &str| -> Vec<String> {
        graph
            .node
            .iter()
            .filter(|n| n.input.iter().any(|i| i == input))
            .map(|n| n.name().to_string())
            .collect()
    };
    assert_eq!(readers("image"), ["image/transform/Mul"]);
    assert!(
        readers("eps").iter().all(|n| !n.contains("transform")),
        "{:?}",
        readers("eps")
    );
}
