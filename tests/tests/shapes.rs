//! Shape inference, parameter tables and naming on the checked layer graph, against Keras's
//! numbers (language.md sections 5 and 7).

use fm_compiler::check::{check_source, Checked};
use fm_compiler::graph::{Activation, Init, ModelGraph, Op, Padding};
use std::path::Path;

fn checked(src: &str) -> Checked {
    check_source(src, Path::new("t.fm"))
}

fn graph(src: &str) -> ModelGraph {
    let c = checked(src);
    assert!(!c.has_errors(), "{:#?}", c.diagnostics);
    c.models.into_iter().next().expect("a model")
}

/// A one-input model: `input x: DTYPE SHAPE`, `output y = x -> PIPE`.
fn pipe(input: &str, stages: &str) -> ModelGraph {
    graph(&format!(
        "model m {{\n input x: {input}\n output y = x -> {stages}\n}}\n"
    ))
}

fn out_shape(g: &ModelGraph) -> Vec<usize> {
    g.nodes[g.outputs[0].node].shape.clone()
}

fn params(g: &ModelGraph) -> Vec<(String, Vec<usize>)> {
    g.params
        .iter()
        .map(|p| (p.name.clone(), p.shape.clone()))
        .collect()
}

fn codes(src: &str) -> Vec<&'static str> {
    checked(src)
        .diagnostics
        .iter()
        .map(|d| d.code.as_str())
        .collect()
}

#[test]
fn dense_kernel_and_bias() {
    let g = pipe("f32[5, 7]", "Dense(3, use_bias: false) -> Dense(4)");
    assert_eq!(out_shape(&g), vec![5, 4]);
    assert_eq!(
        params(&g),
        vec![
            ("dense.kernel".into(), vec![7, 3]),
            ("dense_1.kernel".into(), vec![3, 4]),
            ("dense_1.bias".into(), vec![4]),
        ]
    );
    assert_eq!(g.params[0].init, Init::GlorotUniform);
    assert_eq!(g.params[2].init, Init::Zeros);
}

#[test]
fn conv2d_valid_same_stride_dilation() {
    // valid: floor((in - (k-1)*d - 1) / s) + 1
    assert_eq!(
        out_shape(&pipe("f32[28, 28, 1]", "Conv2D(32, 3)")),
        vec![26, 26, 32]
    );
    assert_eq!(
        out_shape(&pipe("f32[28, 28, 1]", "Conv2D(8, 3, stride: 2)")),
        vec![13, 13, 8]
    );
    assert_eq!(
        out_shape(&pipe("f32[28, 28, 1]", "Conv2D(8, 3, dilation: 2)")),
        vec![24, 24, 8]
    );
    assert_eq!(
        out_shape(&pipe("f32[28, 20, 1]", "Conv2D(8, [5, 3])")),
        vec![24, 18, 8]
    );
    // same: ceil(in / s)
    assert_eq!(
        out_shape(&pipe(
            "f32[7, 7, 2]",
            "Conv2D(4, 3, stride: 2, padding: same)"
        )),
        vec![4, 4, 4]
    );
    let g = pipe("f32[8, 8, 3]", "Conv2D(16, [3, 5], relu)");
    assert_eq!(params(&g)[0], ("conv2d.kernel".into(), vec![3, 5, 3, 16]));
    match &g.nodes[1].op {
        Op::Conv {
            kernel,
            stride,
            padding,
            dilation,
            activation,
            ..
        } => {
            assert_eq!(kernel, &vec![3, 5]);
            assert_eq!(stride, &vec![1, 1]);
            assert_eq!(dilation, &vec![1, 1]);
            assert_eq!(*padding, Padding::Valid);
            assert_eq!(*activation, Activation::Relu);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn conv1d_and_pools() {
    let g = pipe(
        "f32[50, 8]",
        "Conv1D(16, 5, padding: same) -> MaxPool1D(2) -> AvgPool1D(3, stride: 1)",
    );
    assert_eq!(out_shape(&g), vec![23, 16]);
    assert_eq!(params(&g)[0], ("conv1d.kernel".into(), vec![5, 8, 16]));
    assert_eq!(
        out_shape(&pipe("f32[7, 7, 3]", "MaxPool2D(2)")),
        vec![3, 3, 3]
    );
    assert_eq!(
        out_shape(&pipe("f32[7, 7, 3]", "AvgPool2D(2, padding: same)")),
        vec![4, 4, 3]
    );
    assert_eq!(out_shape(&pipe("f32[7, 7, 3]", "GlobalMaxPool2D")), vec![3]);
    assert_eq!(out_shape(&pipe("f32[9, 5]", "GlobalAvgPool1D")), vec![5]);
}

#[test]
fn flatten_reshape_dropout_rescale() {
    assert_eq!(out_shape(&pipe("f32[4, 5, 6]", "Flatten")), vec![120]);
    assert_eq!(
        out_shape(&pipe("f32[4, 5, 6]", "Reshape([-1, 6])")),
        vec![20, 6]
    );
    assert_eq!(
        out_shape(&pipe("f32[4, 5, 6]", "Reshape([2, 60])")),
        vec![2, 60]
    );
    let g = pipe("f32[10]", "Dropout(0) -> Rescale(1 / 255, offset: -1)");
    assert_eq!(g.nodes[1].op, Op::Dropout { rate: 0.0 });
    assert_eq!(
        g.nodes[2].op,
        Op::Rescale {
            scale: 1.0 / 255.0,
            offset: -1.0
        }
    );
}

#[test]
fn batch_norm_has_non_trainable_statistics() {
    let g = pipe("f32[6, 6, 8]", "BatchNorm(momentum: 0.9) -> LayerNorm");
    assert_eq!(
        params(&g),
        vec![
            ("batch_norm.gamma".into(), vec![8]),
            ("batch_norm.beta".into(), vec![8]),
            ("batch_norm.moving_mean".into(), vec![8]),
            ("batch_norm.moving_variance".into(), vec![8]),
            ("layer_norm.gamma".into(), vec![8]),
            ("layer_norm.beta".into(), vec![8]),
        ]
    );
    let trainable: Vec<bool> = g.params.iter().map(|p| p.trainable).collect();
    assert_eq!(trainable, vec![true, true, false, false, true, true]);
    assert_eq!(g.total_params(), 48);
    assert_eq!(g.trainable_params(), 32);
    assert_eq!(
        g.nodes[1].op,
        Op::BatchNorm {
            momentum: 0.9,
            epsilon: 1e-3
        }
    );
    assert_eq!(g.nodes[2].op, Op::LayerNorm { epsilon: 1e-5 });
}

#[test]
fn group_norm_and_up_sampling() {
    // Keras: GroupNormalization(groups=4) on [6, 6, 8] has gamma and beta of 8 (16 params);
    // UpSampling2D((2, 3)) maps [6, 6, 8] to [12, 18, 8] with no parameters.
    let g = pipe(
        "f32[6, 6, 8]",
        "GroupNorm(4) -> UpSampling2D(size: [2, 3]) -> UpSampling2D",
    );
    assert_eq!(
        params(&g),
        vec![
            ("group_norm.gamma".into(), vec![8]),
            ("group_norm.beta".into(), vec![8]),
        ]
    );
    assert_eq!(g.trainable_params(), 16);
    assert_eq!(
        g.nodes[1].op,
        Op::GroupNorm {
            groups: 4,
            epsilon: 1e-3
        }
    );
    assert_eq!(g.nodes[2].shape, vec![12, 18, 8]);
    assert_eq!(out_shape(&g), vec![24, 36, 8]);
    assert_eq!(g.nodes[3].op, Op::UpSampling { size: vec![2, 2] });
    assert_eq!(g.nodes[3].op.type_name(), "UpSampling2D");
    assert_eq!(g.nodes[1].op.type_name(), "GroupNormalization");
    // Any rank with channels last; the default of 32 groups needs a multiple of 32 channels.
    assert_eq!(out_shape(&pipe("f32[64]", "GroupNorm")), vec![64]);
    let src = |input: &str, stage: &str| {
        format!("model m {{\n input x: {input}\n output y = x -> {stage}\n}}\n")
    };
    assert_eq!(codes(&src("f32[6, 6, 8]", "GroupNorm(3)")), vec!["E0224"]);
    assert_eq!(codes(&src("f32[6, 6, 8]", "GroupNorm")), vec!["E0224"]);
    assert_eq!(codes(&src("f32[6, 8]", "UpSampling2D")), vec!["E0205"]);
    assert_eq!(
        codes(&src(
            "f32[6, 6, 8]",
            "UpSampling2D(interpolation: bilinear)"
        )),
        vec!["E0104"]
    );
}

#[test]
fn embedding_needs_token_ids() {
    let g = pipe("i32[12]", "Embedding(100, 8)");
    assert_eq!(out_shape(&g), vec![12, 8]);
    assert_eq!(
        params(&g),
        vec![("embedding.embeddings".into(), vec![100, 8])]
    );
    assert_eq!(
        g.params[0].init,
        Init::Uniform {
            lo: -0.05,
            hi: 0.05
        }
    );
    assert_eq!(
        codes("model m {\n input x: f32[12]\n output y = x -> Embedding(100, 8)\n}\n"),
        vec!["E0209"]
    );
}

#[test]
fn recurrent_layers_match_keras_parameter_counts() {
    // Keras: LSTM 4u(C+u+1), GRU (reset_after) 3u(C+u) + 2*3u, SimpleRNN u(C+u+1).
    let g = pipe("f32[50, 8]", "LSTM(64, return_sequences: true) -> GRU(32) ");
    assert_eq!(g.nodes[1].shape, vec![50, 64]);
    assert_eq!(out_shape(&g), vec![32]);
    let p = params(&g);
    assert_eq!(p[0], ("lstm.kernel".into(), vec![8, 256]));
    assert_eq!(p[1], ("lstm.recurrent_kernel".into(), vec![64, 256]));
    assert_eq!(p[2], ("lstm.bias".into(), vec![256]));
    assert_eq!(g.params[2].init, Init::LstmBias);
    assert_eq!(g.params[1].init, Init::Orthogonal);
    assert_eq!(p[5], ("gru.bias".into(), vec![2, 96]));
    let lstm: usize = g.params[..3]
        .iter()
        .map(|p| p.shape.iter().product::<usize>())
        .sum();
    assert_eq!(lstm, 4 * 64 * (8 + 64 + 1));
    let gru: usize = g.params[3..]
        .iter()
        .map(|p| p.shape.iter().product::<usize>())
        .sum();
    assert_eq!(gru, 3 * 32 * (64 + 32) + 2 * 3 * 32);
    let s = pipe("f32[5, 3]", "SimpleRNN(4)");
    assert_eq!(s.total_params(), 4 * (3 + 4 + 1));
    assert_eq!(s.params[0].name, "simple_rnn.kernel");
}

#[test]
fn attention_parameters_and_inputs() {
    let g = pipe("f32[10, 64]", "MultiHeadAttention(4)");
    assert_eq!(out_shape(&g), vec![10, 64]);
    assert_eq!(
        g.nodes[1].op,
        Op::Attention {
            heads: 4,
            key_dim: 16,
            causal: false
        }
    );
    assert_eq!(g.nodes[1].inputs, vec![0, 0, 0]);
    let p = params(&g);
    assert_eq!(
        p[0],
        ("multi_head_attention.query.kernel".into(), vec![64, 4, 16])
    );
    assert_eq!(
        p[1],
        ("multi_head_attention.query.bias".into(), vec![4, 16])
    );
    assert_eq!(
        p[6],
        ("multi_head_attention.output.kernel".into(), vec![4, 16, 64])
    );
    assert_eq!(p[7], ("multi_head_attention.output.bias".into(), vec![64]));
    // Keras: 4 * (64 * 64 + 64) = 16,640
    assert_eq!(g.total_params(), 16_640);
    // Cross-attention: query, value (key = value).
    let g = graph("model m {\n input q: f32[10, 32]\n input v: f32[7, 16]\n output y = MultiHeadAttention(q, v, 2, key_dim: 8, causal: true)\n}\n");
    assert_eq!(out_shape(&g), vec![10, 32]);
    assert_eq!(g.nodes[2].inputs, vec![0, 1, 1]);
    assert_eq!(g.params[4].shape, vec![16, 2, 8]);
}

#[test]
fn activations_concat_dim_and_broadcasting() {
    let g = pipe(
        "f32[3, 4]",
        "softmax(axis: 0) -> leaky_relu(alpha: 0.2) -> log_softmax",
    );
    assert_eq!(
        g.nodes[1].op,
        Op::Activation(Activation::Softmax { axis: 0 })
    );
    assert_eq!(
        g.nodes[2].op,
        Op::Activation(Activation::LeakyRelu { alpha: 0.2 })
    );
    assert_eq!(
        g.nodes[3].op,
        Op::Activation(Activation::LogSoftmax { axis: 1 })
    );
    let g = graph("model m {\n input a: f32[3, 4]\n input b: f32[3, 2]\n output y = concat(a, b) -> Dense(dim(a, 0))\n}\n");
    assert_eq!(g.nodes[2].shape, vec![3, 6]);
    assert_eq!(out_shape(&g), vec![3, 3]);
    let g = graph("model m {\n input a: f32[3, 1]\n input b: f32[4]\n output y = a * b - a\n}\n");
    assert_eq!(out_shape(&g), vec![3, 4]);
    let g = pipe("f32[4]", "Dense(3, leaky_relu(alpha: 0.3))");
    assert!(
        matches!(g.nodes[1].op, Op::Dense { activation: Activation::LeakyRelu { alpha }, .. } if alpha == 0.3)
    );
}

#[test]
fn initialisers_and_regularisers() {
    let g = pipe(
        "f32[4]",
        "Dense(3, init: uniform(-0.1, 0.1), bias_init: constant(0.5), l1: 0.01, l2: 1e-4)",
    );
    assert_eq!(g.params[0].init, Init::Uniform { lo: -0.1, hi: 0.1 });
    assert_eq!(g.params[1].init, Init::Constant(0.5));
    assert_eq!((g.params[0].l1, g.params[0].l2), (0.01, 1e-4));
    assert_eq!((g.params[1].l1, g.params[1].l2), (0.0, 0.0));
}

#[test]
fn naming_scopes_follow_section_7() {
    let src = "\
block residual(x, filters: int) {
    let h = x -> Conv2D(filters, 3, padding: same) -> BatchNorm -> Dense(filters, name: \"proj\")
    return x + h
}
model m {
    input x: f32[8, 8, 4]
    output y = x -> Conv2D(4, 1) -> repeat 2 { residual(4) } -> residual(4, name: \"last\") -> Conv2D(4, 1)
}
";
    let g = graph(src);
    let names: Vec<String> = g.nodes.iter().filter_map(|n| n.name.clone()).collect();
    assert_eq!(
        names,
        vec![
            "x",
            "conv2d",
            "residual/conv2d",
            "residual/batch_norm",
            "residual/proj",
            "residual_1/conv2d",
            "residual_1/batch_norm",
            "residual_1/proj",
            "last/conv2d",
            "last/batch_norm",
            "last/proj",
            "conv2d_1",
        ]
    );
    assert_eq!(g.params[2].name, "residual/conv2d.kernel");
}

#[test]
fn expansion_gives_every_call_its_own_weights() {
    let g = pipe("f32[8]", "repeat 3 { Dense(8) }");
    assert_eq!(g.params.len(), 6);
    assert_eq!(g.params[4].name, "dense_2.kernel");
}

#[test]
fn text_transformer_example_counts() {
    let src =
        std::fs::read_to_string(fm_tests::root().join("examples/text_transformer.fm")).unwrap();
    let g = graph(&src);
    // Embedding 5000*64; per encoder: 2 LayerNorms (256), MHA 16,640, Dense 64->128 (8,320),
    // Dense 128->64 (8,256); final LayerNorm 128; Dense 64->2 (130).
    let per_encoder = 256 + 16_640 + 8_320 + 8_256;
    assert_eq!(g.total_params(), 320_000 + 2 * per_encoder + 128 + 130);
    assert_eq!(out_shape(&g), vec![2]);
    assert!(g
        .params
        .iter()
        .any(|p| p.name == "encoder_1/multi_head_attention.value.kernel"));
}

#[test]
fn train_section_defaults_and_fusion() {
    let src = std::fs::read_to_string(fm_tests::root().join("examples/mnist_cnn.fm")).unwrap();
    let c = check_source(&src, Path::new("/data/proj/mnist_cnn.fm"));
    assert!(!c.has_errors());
    let t = &c.trains[0];
    use fm_runtime::config::*;
    assert_eq!(t.model, "cnn");
    assert_eq!(t.losses.len(), 1);
    assert!(t.losses[0].fused_with_activation);
    assert_eq!(
        t.losses[0].loss,
        Loss::SparseCategoricalCrossentropy { from_logits: false }
    );
    assert_eq!(
        t.optimizer.kind,
        OptimizerKind::Adam {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7
        }
    );
    assert_eq!(t.optimizer.lr, 1e-3);
    let metrics: Vec<Metric> = t.metrics.iter().map(|m| m.metric).collect();
    assert_eq!(metrics, vec![Metric::Accuracy(AccuracyKind::Sparse)]);
    assert_eq!(
        (t.epochs, t.batch_size, t.seed, t.shuffle),
        (5, 32, 42, true)
    );
    assert_eq!(t.validation, Validation::Split(0.2));
    assert_eq!(t.schedule, Schedule::Constant);
    let d = t.data.as_ref().unwrap();
    assert_eq!(
        d.train,
        Source::Idx {
            images: "/data/proj/data/train-images-idx3-ubyte".into(),
            labels: "/data/proj/data/train-labels-idx1-ubyte".into(),
        }
    );
    assert_eq!(
        d.x,
        vec![Transform::Scale {
            factor: 1.0 / 255.0,
            offset: 0.0
        }]
    );
    assert_eq!(c.data.len(), 1);
}

#[test]
fn train_section_resolution() {
    let src = "\
data d {
    train: npz(\"a.npz\", x: { q: \"img\" }, y: \"label\")
    test: split(0.25)
    y: [one_hot(3)]
}
model m {
    input q: f32[4]
    output p = q -> Dense(1, sigmoid)
}
train {
    data: d
    loss: binary_crossentropy
    optimizer: AdamW(lr: 3e-4, global_clip_norm: 1)
    schedule: Step(every: 2 epochs, gamma: 0.5)
    metrics: [accuracy, precision]
    validation: test
    early_stopping: { monitor: val_loss, patience: 2 }
    checkpoint: { keep: last, every: 100 steps }
}
";
    let c = checked(src);
    assert!(!c.has_errors(), "{:#?}", c.diagnostics);
    use fm_runtime::config::*;
    let t = &c.trains[0];
    assert!(t.losses[0].fused_with_activation);
    let metrics: Vec<Metric> = t.metrics.iter().map(|m| m.metric).collect();
    assert_eq!(
        metrics,
        vec![Metric::Accuracy(AccuracyKind::Binary), Metric::Precision]
    );
    assert_eq!(t.optimizer.weight_decay, 0.004);
    assert_eq!(t.optimizer.clip, Some(Clip::GlobalNorm(1.0)));
    assert_eq!(
        t.schedule,
        Schedule::Step {
            every: Every::Epochs(2),
            gamma: 0.5
        }
    );
    assert_eq!(t.validation, Validation::Test);
    assert_eq!(t.early_stopping.as_ref().unwrap().patience, 2);
    assert!(t.early_stopping.as_ref().unwrap().restore_best);
    assert_eq!(t.checkpoint.as_ref().unwrap().every, Every::Steps(100));
    assert_eq!(t.checkpoint.as_ref().unwrap().keep, CheckpointKeep::Last);
    let d = t.data.as_ref().unwrap();
    assert_eq!(d.test, Some(TestSource::Split(0.25)));
    assert_eq!(d.y, vec![Transform::OneHot(3)]);
    assert!(
        matches!(&d.train, Source::Npz { x: NpzKeys::Named(k), y: NpzKeys::One(y), .. } if k == &vec![("q".to_string(), "img".to_string())] && y == "label")
    );
}

#[test]
fn defaults_when_train_is_minimal() {
    let c =
        checked("model m {\n input x: f32[3]\n output y = x -> Dense(2)\n}\ntrain { loss: mse }\n");
    use fm_runtime::config::*;
    let t = &c.trains[0];
    assert_eq!(
        (t.epochs, t.batch_size, t.seed, t.shuffle),
        (1, 32, 0, true)
    );
    assert_eq!(t.validation, Validation::None);
    assert!(t.metrics.is_empty());
    assert!(!t.losses[0].fused_with_activation);
    assert!(matches!(t.optimizer.kind, OptimizerKind::RmsProp { .. }));
}

#[test]
fn poisoned_values_cause_no_cascade() {
    // One error for the Conv2D; nothing for MaxPool2D, Flatten, Dense, nor the loss.
    let src = "model m {\n input x: f32[28, 28]\n output y = x -> Conv2D(8, 3) -> MaxPool2D(2) -> Flatten -> Dense(10, softmax)\n}\ntrain { loss: sparse_categorical_crossentropy }\n";
    assert_eq!(codes(src), vec!["E0205"]);
    // Independent errors are all reported.
    let src =
        "model m {\n input x: f32[8]\n output a = x -> Dense(0)\n output b = x -> Dropout(3)\n}\n";
    assert_eq!(codes(src), vec!["E0202", "E0202"]);
}

#[test]
fn constant_folding_is_real_division() {
    let g = pipe(
        "f32[4]",
        "Dense(6 / 3) -> Dense((2 + 2) * 2) -> Rescale(1 / 255)",
    );
    assert_eq!(g.nodes[1].shape, vec![2]);
    assert_eq!(g.nodes[2].shape, vec![8]);
    assert_eq!(
        g.nodes[3].op,
        Op::Rescale {
            scale: 1.0 / 255.0,
            offset: 0.0
        }
    );
    assert_eq!(
        codes("model m {\n input x: f32[4]\n output y = x -> Dense(7 / 2)\n}\n"),
        vec!["E0212"]
    );
}

#[test]
fn a_named_output_feeds_later_statements_and_shares_the_name_space() {
    let g = graph(
        "model m {\n input x: f32[4]\n output first = x -> Dense(3)\n \
         output second = first -> Dense(2)\n}\n",
    );
    assert_eq!(g.outputs.len(), 2);
    let second = &g.nodes[g.outputs[1].node];
    assert_eq!(second.shape, vec![2]);
    assert_eq!(second.inputs, vec![g.outputs[0].node]);
    // Names are unique within a model: a `let` and an output may not share one.
    assert_eq!(
        codes(
            "model m {\n input x: f32[4]\n let h = x -> Dense(3)\n output h = h -> Dense(2)\n}\n"
        ),
        vec!["E0105"]
    );
}
