//! Gradient checks: the autodiff pass against central finite differences in f64, for every
//! layer family, activation and loss, on hand-built layer graphs with random inputs.

mod support;

use fm_compiler::graph::*;
use fm_compiler::interp::{self, Context, Value};
use fm_compiler::ir::{batched, ArgKind, Builder, Function, ResultKind};
use fm_compiler::lower::{self, loss, Mode};
use fm_runtime::config::*;
use ndarray::{ArrayD, IxDyn};
use support::Lcg;

/// Builds layer graphs by hand (the checker is tested separately).
struct Graph {
    g: ModelGraph,
}

impl Graph {
    fn new(inputs: &[(&str, DType, &[usize])]) -> Self {
        let mut g = ModelGraph {
            name: "m".into(),
            doc: vec![],
            span: Default::default(),
            inputs: vec![],
            nodes: vec![],
            outputs: vec![],
            params: vec![],
            ..Default::default()
        };
        for (i, (name, dtype, shape)) in inputs.iter().enumerate() {
            g.nodes.push(Node {
                op: Op::Input { index: i },
                inputs: vec![],
                shape: shape.to_vec(),
                dtype: *dtype,
                span: Default::default(),
                name: None,
                params: vec![],
            });
            g.inputs.push(InputInfo {
                name: name.to_string(),
                dtype: *dtype,
                shape: shape.to_vec(),
                node: i,
                span: Default::default(),
            });
        }
        Graph { g }
    }

    fn add(
        &mut self,
        op: Op,
        inputs: &[usize],
        shape: &[usize],
        name: &str,
        params: &[(Role, &[usize], bool)],
    ) -> usize {
        let id = self.g.nodes.len();
        let mut ids = vec![];
        for (role, shape, trainable) in params {
            ids.push(self.g.params.len());
            self.g.params.push(ParamInfo {
                name: format!("{name}.{}", role.suffix()),
                role: *role,
                shape: shape.to_vec(),
                init: Init::GlorotUniform,
                trainable: *trainable,
                l1: 0.0,
                l2: 0.0,
                node: id,
            });
        }
        self.g.nodes.push(Node {
            op,
            inputs: inputs.to_vec(),
            shape: shape.to_vec(),
            dtype: DType::F32,
            span: Default::default(),
            name: Some(name.into()),
            params: ids,
        });
        id
    }

    fn output(mut self, node: usize) -> ModelGraph {
        self.g.outputs.push(OutputInfo {
            name: "out".into(),
            node,
            span: Default::default(),
        });
        self.g
    }
}

fn spec(loss: Loss) -> TrainSpec {
    let losses = vec![OutputLoss {
        output: "out".into(),
        loss,
        weight: 1.0,
        fused_with_activation: false,
    }];
    let sgd = OptimizerKind::Sgd {
        momentum: 0.0,
        nesterov: false,
    };
    TrainSpec {
        batch_size: 4,
        ..TrainSpec::new("m", losses, OptimizerSpec::new(sgd, 0.01))
    }
}

fn random(shape: &[usize], rng: &mut Lcg, scale: f64) -> ArrayD<f64> {
    ArrayD::from_shape_fn(IxDyn(shape), |_| rng.next() * scale)
}

/// Builds `loss(inputs, targets, params)` and, separately, the same plus its gradients.
fn functions(graph: &ModelGraph, spec: &TrainSpec) -> (Function, Function) {
    let build = |with_grads: bool| {
        support::loss_function(graph, with_grads, |b| {
            let inputs = lower::input_args(b, graph, None);
            let targets = lower::target_args(b, graph, spec);
            let params = lower::param_args(b, graph);
            let fwd = lower::forward(b, graph, &inputs, &params, Mode::Train);
            (
                loss::total_loss(b, graph, spec, &fwd, &targets, &params),
                params,
            )
        })
    };
    (build(false), build(true))
}

/// Compares autodiff gradients with central differences on every trainable parameter.
fn check(
    graph: ModelGraph,
    loss: Loss,
    batch: usize,
    targets: Vec<Value<f64>>,
    inputs: Vec<Value<f64>>,
    seed: u64,
) {
    let spec = spec(loss);
    let (loss_fn, grad_fn) = functions(&graph, &spec);
    let mut rng = Lcg(seed);
    let mut params: Vec<ArrayD<f64>> = graph
        .params
        .iter()
        .map(|p| random(&p.shape, &mut rng, 0.5))
        .collect();
    // Keep normalisation variances positive.
    for (k, p) in graph.params.iter().enumerate() {
        if p.name.ends_with("moving_variance") || p.name.ends_with("gamma") {
            params[k].mapv_inplace(|v| 1.0 + 0.5 * v.abs());
        }
    }
    let ctx = Context {
        batch,
        seed: 1,
        step: 0,
        sample_offset: 0,
    };
    let args = |params: &[ArrayD<f64>]| -> Vec<Value<f64>> {
        let mut a: Vec<Value<f64>> = inputs.clone();
        a.extend(targets.iter().cloned());
        a.extend(params.iter().map(|p| Value::F(p.clone())));
        a
    };
    let out = interp::run(&grad_fn, &args(&params), ctx).unwrap();
    // The optimization passes must not change a single bit of the results.
    let optimized = fm_compiler::passes::optimize(&grad_fn).unwrap();
    assert!(
        optimized.insts.len() < grad_fn.insts.len(),
        "passes removed nothing"
    );
    assert_eq!(interp::run(&optimized, &args(&params), ctx).unwrap(), out);
    let loss0 = out[0].scalar();
    assert!(loss0.is_finite(), "loss {loss0}");
    // Up to 12 elements per parameter, spread over the tensor.
    support::check_against_finite_differences(&graph, &loss_fn, ctx, &params, args, &out, 12, "");
}

fn f_input(shape: &[usize], rng: &mut Lcg) -> Value<f64> {
    Value::F(random(shape, rng, 1.0))
}

fn labels(n: usize, classes: usize) -> Value<f64> {
    Value::I(ArrayD::from_shape_fn(IxDyn(&[n]), |i| {
        ((i[0] * 7 + 3) % classes) as i32
    }))
}

fn dense_model(act: Activation, inp: usize, units: usize) -> ModelGraph {
    let mut g = Graph::new(&[("x", DType::F32, &[inp])]);
    let h = g.add(
        Op::Dense {
            units: 5,
            activation: Activation::Tanh,
            use_bias: true,
        },
        &[0],
        &[5],
        "dense",
        &[(Role::Kernel, &[inp, 5], true), (Role::Bias, &[5], true)],
    );
    let o = g.add(
        Op::Dense {
            units,
            activation: act,
            use_bias: true,
        },
        &[h],
        &[units],
        "dense_1",
        &[
            (Role::Kernel, &[5, units], true),
            (Role::Bias, &[units], true),
        ],
    );
    g.output(o)
}

#[test]
fn dense_every_activation_mse() {
    let acts = [
        Activation::Linear,
        Activation::Relu,
        Activation::LeakyRelu { alpha: 0.1 },
        Activation::Elu,
        Activation::Gelu,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Softmax { axis: 0 },
        Activation::LogSoftmax { axis: 0 },
        Activation::Softplus,
        Activation::Silu,
    ];
    for (i, act) in acts.into_iter().enumerate() {
        let mut rng = Lcg(10 + i as u64);
        let x = f_input(&[4, 3], &mut rng);
        let y = f_input(&[4, 4], &mut rng);
        check(
            dense_model(act, 3, 4),
            Loss::Mse,
            4,
            vec![y],
            vec![x],
            99 + i as u64,
        );
    }
}

#[test]
fn every_loss() {
    let mut rng = Lcg(5);
    let x = f_input(&[4, 3], &mut rng);
    let reg = f_input(&[4, 4], &mut rng);
    let probs = Value::F(random(&[4, 4], &mut rng, 1.0).mapv(|v| (v + 1.0) / 2.0));
    let onehot = Value::F(ArrayD::from_shape_fn(IxDyn(&[4, 4]), |i| {
        if i[1] == (i[0] * 3) % 4 {
            1.0
        } else {
            0.0
        }
    }));
    let bin = Value::F(ArrayD::from_shape_fn(IxDyn(&[4, 1]), |i| (i[0] % 2) as f64));
    let cases: Vec<(Activation, usize, Loss, Value<f64>)> = vec![
        (Activation::Linear, 4, Loss::Mse, reg.clone()),
        (Activation::Linear, 4, Loss::Mae, reg.clone()),
        (
            Activation::Linear,
            4,
            Loss::Huber { delta: 0.3 },
            reg.clone(),
        ),
        (
            Activation::Sigmoid,
            4,
            Loss::BinaryCrossentropy { from_logits: false },
            probs.clone(),
        ),
        (
            Activation::Sigmoid,
            1,
            Loss::BinaryCrossentropy { from_logits: false },
            bin.clone(),
        ),
        (
            Activation::Linear,
            1,
            Loss::BinaryCrossentropy { from_logits: true },
            bin,
        ),
        (
            Activation::Softmax { axis: 0 },
            4,
            Loss::CategoricalCrossentropy { from_logits: false },
            onehot.clone(),
        ),
        (
            Activation::Linear,
            4,
            Loss::CategoricalCrossentropy { from_logits: true },
            onehot.clone(),
        ),
        (
            Activation::Softmax { axis: 0 },
            4,
            Loss::SparseCategoricalCrossentropy { from_logits: false },
            labels(4, 4),
        ),
        (
            Activation::Linear,
            4,
            Loss::SparseCategoricalCrossentropy { from_logits: true },
            labels(4, 4),
        ),
        (
            Activation::Sigmoid,
            4,
            Loss::SparseCategoricalCrossentropy { from_logits: false },
            labels(4, 4),
        ),
        (
            Activation::Sigmoid,
            4,
            Loss::CategoricalCrossentropy { from_logits: false },
            onehot,
        ),
    ];
    for (i, (act, units, l, y)) in cases.into_iter().enumerate() {
        check(
            dense_model(act, 3, units),
            l,
            4,
            vec![y],
            vec![x.clone()],
            7 + i as u64,
        );
    }
}

#[allow(clippy::too_many_arguments)] // one argument per conv hyper-parameter
fn conv_model(
    kernel: &[usize],
    stride: &[usize],
    dilation: &[usize],
    padding: Padding,
    in_shape: &[usize],
    out_shape: &[usize],
    pool: Option<Op>,
    pooled: &[usize],
) -> ModelGraph {
    let c = *in_shape.last().unwrap();
    let f = *out_shape.last().unwrap();
    let mut kshape = kernel.to_vec();
    kshape.extend([c, f]);
    let mut g = Graph::new(&[("x", DType::F32, in_shape)]);
    let mut h = g.add(
        Op::Conv {
            filters: f,
            kernel: kernel.to_vec(),
            stride: stride.to_vec(),
            padding,
            dilation: dilation.to_vec(),
            activation: Activation::Tanh,
            use_bias: true,
        },
        &[0],
        out_shape,
        "conv",
        &[(Role::Kernel, &kshape, true), (Role::Bias, &[f], true)],
    );
    if let Some(p) = pool {
        h = g.add(p, &[h], pooled, "pool", &[]);
    }
    let rank = kernel.len();
    let gp = g.add(
        Op::GlobalPool {
            kind: PoolKind::Avg,
            rank,
        },
        &[h],
        &[f],
        "gap",
        &[],
    );
    let o = g.add(
        Op::Dense {
            units: 3,
            activation: Activation::Softmax { axis: 0 },
            use_bias: true,
        },
        &[gp],
        &[3],
        "dense",
        &[(Role::Kernel, &[f, 3], true), (Role::Bias, &[3], true)],
    );
    g.output(o)
}

#[test]
fn convolution_and_pooling() {
    let sce = Loss::SparseCategoricalCrossentropy { from_logits: false };
    let mut rng = Lcg(3);
    let x = f_input(&[2, 7, 6, 2], &mut rng);
    let cases = vec![
        conv_model(
            &[3, 3],
            &[1, 1],
            &[1, 1],
            Padding::Valid,
            &[7, 6, 2],
            &[5, 4, 3],
            None,
            &[],
        ),
        conv_model(
            &[3, 3],
            &[1, 1],
            &[1, 1],
            Padding::Same,
            &[7, 6, 2],
            &[7, 6, 3],
            None,
            &[],
        ),
        conv_model(
            &[3, 2],
            &[2, 2],
            &[1, 1],
            Padding::Same,
            &[7, 6, 2],
            &[4, 3, 3],
            None,
            &[],
        ),
        conv_model(
            &[2, 2],
            &[1, 1],
            &[2, 2],
            Padding::Valid,
            &[7, 6, 2],
            &[5, 4, 3],
            None,
            &[],
        ),
        conv_model(
            &[3, 3],
            &[1, 1],
            &[1, 1],
            Padding::Same,
            &[7, 6, 2],
            &[7, 6, 3],
            Some(Op::Pool {
                kind: PoolKind::Max,
                size: vec![2, 2],
                stride: vec![2, 2],
                padding: Padding::Valid,
            }),
            &[3, 3, 3],
        ),
        conv_model(
            &[3, 3],
            &[1, 1],
            &[1, 1],
            Padding::Same,
            &[7, 6, 2],
            &[7, 6, 3],
            Some(Op::Pool {
                kind: PoolKind::Avg,
                size: vec![2, 2],
                stride: vec![2, 2],
                padding: Padding::Same,
            }),
            &[4, 3, 3],
        ),
    ];
    for (i, g) in cases.into_iter().enumerate() {
        check(
            g,
            sce,
            2,
            vec![labels(2, 3)],
            vec![x.clone()],
            40 + i as u64,
        );
    }
    // Conv1D with stride and same padding, then max pooling 1-D.
    let x1 = f_input(&[2, 9, 2], &mut rng);
    let g = conv_model(
        &[3],
        &[2],
        &[1],
        Padding::Same,
        &[9, 2],
        &[5, 3],
        Some(Op::Pool {
            kind: PoolKind::Max,
            size: vec![2],
            stride: vec![2],
            padding: Padding::Same,
        }),
        &[3, 3],
    );
    check(g, sce, 2, vec![labels(2, 3)], vec![x1], 77);
}

#[test]
fn normalisation_layers() {
    let mut rng = Lcg(8);
    let x = f_input(&[4, 3, 5], &mut rng);
    let y = f_input(&[4, 3, 5], &mut rng);
    let mut g = Graph::new(&[("x", DType::F32, &[3, 5])]);
    let bn = g.add(
        Op::BatchNorm {
            momentum: 0.99,
            epsilon: 1e-3,
        },
        &[0],
        &[3, 5],
        "batch_norm",
        &[
            (Role::Gamma, &[5], true),
            (Role::Beta, &[5], true),
            (Role::MovingMean, &[5], false),
            (Role::MovingVariance, &[5], false),
        ],
    );
    let ln = g.add(
        Op::LayerNorm { epsilon: 1e-5 },
        &[bn],
        &[3, 5],
        "layer_norm",
        &[(Role::Gamma, &[5], true), (Role::Beta, &[5], true)],
    );
    check(g.output(ln), Loss::Mse, 4, vec![y], vec![x], 5);
}

#[test]
fn group_norm_and_up_sampling() {
    // Conv2D -> UpSampling2D(2, 3) -> GroupNorm(2 groups of 2 channels): the kernel's gradient
    // flows back through the nearest-neighbour copies (a sum over each cell's copies) and the
    // group statistics over positions and channels.
    let mut rng = Lcg(12);
    let x = f_input(&[3, 3, 2, 2], &mut rng);
    let y = f_input(&[3, 6, 6, 4], &mut rng);
    let mut g = Graph::new(&[("x", DType::F32, &[3, 2, 2])]);
    let conv = g.add(
        Op::Conv {
            filters: 4,
            kernel: vec![2, 2],
            stride: vec![1, 1],
            padding: Padding::Same,
            dilation: vec![1, 1],
            activation: Activation::Tanh,
            use_bias: true,
        },
        &[0],
        &[3, 2, 4],
        "conv2d",
        &[
            (Role::Kernel, &[2, 2, 2, 4], true),
            (Role::Bias, &[4], true),
        ],
    );
    let up = g.add(
        Op::UpSampling { size: vec![2, 3] },
        &[conv],
        &[6, 6, 4],
        "up_sampling2d",
        &[],
    );
    let gn = g.add(
        Op::GroupNorm {
            groups: 2,
            epsilon: 1e-3,
        },
        &[up],
        &[6, 6, 4],
        "group_norm",
        &[(Role::Gamma, &[4], true), (Role::Beta, &[4], true)],
    );
    check(g.output(gn), Loss::Mse, 3, vec![y], vec![x], 13);

    // GroupNorm on a vector of features (no positions): 3 groups of 2 after a Dense layer.
    let x = f_input(&[4, 5], &mut rng);
    let y = f_input(&[4, 6], &mut rng);
    let mut g = Graph::new(&[("x", DType::F32, &[5])]);
    let dense = g.add(
        Op::Dense {
            units: 6,
            activation: Activation::Linear,
            use_bias: true,
        },
        &[0],
        &[6],
        "dense",
        &[(Role::Kernel, &[5, 6], true), (Role::Bias, &[6], true)],
    );
    let gn = g.add(
        Op::GroupNorm {
            groups: 3,
            epsilon: 1e-2,
        },
        &[dense],
        &[6],
        "group_norm",
        &[(Role::Gamma, &[6], true), (Role::Beta, &[6], true)],
    );
    check(g.output(gn), Loss::Mse, 4, vec![y], vec![x], 14);
}

#[test]
fn position_embedding() {
    // Dense -> x + PositionEmbedding(x, 6) on a [4, 3] sequence: the table's first 4 rows get
    // the summed gradient of every sample, its last 2 rows none (a zero gradient, checked too),
    // and the Dense gets the gradient through the residual only.
    let mut rng = Lcg(21);
    let x = f_input(&[3, 4, 2], &mut rng);
    let y = f_input(&[3, 4, 3], &mut rng);
    let mut g = Graph::new(&[("x", DType::F32, &[4, 2])]);
    let d = g.add(
        Op::Dense {
            units: 3,
            activation: Activation::Tanh,
            use_bias: true,
        },
        &[0],
        &[4, 3],
        "dense",
        &[(Role::Kernel, &[2, 3], true), (Role::Bias, &[3], true)],
    );
    let p = g.add(
        Op::PositionEmbedding { sequence_length: 6 },
        &[d],
        &[4, 3],
        "position_embedding",
        &[(Role::Embeddings, &[6, 3], true)],
    );
    let s = g.add(Op::Add, &[d, p], &[4, 3], "add", &[]);
    check(g.output(s), Loss::Mse, 3, vec![y], vec![x], 22);
}

#[test]
fn recurrent_layers() {
    for (kind, gates, seq) in [
        (RnnKind::Simple, 1, false),
        (RnnKind::Lstm, 4, true),
        (RnnKind::Gru, 3, false),
    ] {
        let mut rng = Lcg(gates as u64);
        let x = f_input(&[3, 4, 2], &mut rng);
        let units = 3;
        let mut g = Graph::new(&[("x", DType::F32, &[4, 2])]);
        let bias: Vec<usize> = if kind == RnnKind::Gru {
            vec![2, gates * units]
        } else {
            vec![gates * units]
        };
        let out_shape: Vec<usize> = if seq { vec![4, units] } else { vec![units] };
        let r = g.add(
            Op::Rnn {
                kind,
                units,
                return_sequences: seq,
                activation: Activation::Tanh,
            },
            &[0],
            &out_shape,
            "rnn",
            &[
                (Role::Kernel, &[2, gates * units], true),
                (Role::RecurrentKernel, &[units, gates * units], true),
                (Role::Bias, &bias, true),
            ],
        );
        let y = f_input(&[&[3][..], &out_shape[..]].concat(), &mut rng);
        check(g.output(r), Loss::Mse, 3, vec![y], vec![x], 11);
    }
}

#[test]
fn attention_embedding_and_arithmetic() {
    let tokens = Value::I(ArrayD::from_shape_fn(IxDyn(&[2, 5]), |i| {
        ((i[0] * 5 + i[1] * 3) % 7) as i32
    }));
    let mut g = Graph::new(&[("tokens", DType::I32, &[5])]);
    let e = g.add(
        Op::Embedding { vocab: 7, dim: 4 },
        &[0],
        &[5, 4],
        "embedding",
        &[(Role::Embeddings, &[7, 4], true)],
    );
    let a = g.add(
        Op::Attention {
            heads: 2,
            key_dim: 3,
            causal: true,
        },
        &[e, e, e],
        &[5, 4],
        "multi_head_attention",
        &[
            (Role::QueryKernel, &[4, 2, 3], true),
            (Role::QueryBias, &[2, 3], true),
            (Role::KeyKernel, &[4, 2, 3], true),
            (Role::KeyBias, &[2, 3], true),
            (Role::ValueKernel, &[4, 2, 3], true),
            (Role::ValueBias, &[2, 3], true),
            (Role::OutputKernel, &[2, 3, 4], true),
            (Role::OutputBias, &[4], true),
        ],
    );
    let s = g.add(Op::Add, &[e, a], &[5, 4], "add", &[]);
    let gp = g.add(
        Op::GlobalPool {
            kind: PoolKind::Max,
            rank: 1,
        },
        &[s],
        &[4],
        "gmp",
        &[],
    );
    let m = g.add(Op::Mul, &[s, gp], &[5, 4], "mul", &[]);
    let c = g.add(Op::Concat { axis: 1 }, &[m, s], &[5, 8], "concat", &[]);
    let f = g.add(Op::Flatten, &[c], &[40], "flatten", &[]);
    let o = g.add(
        Op::Dense {
            units: 3,
            activation: Activation::Linear,
            use_bias: false,
        },
        &[f],
        &[3],
        "dense",
        &[(Role::Kernel, &[40, 3], true)],
    );
    check(
        g.output(o),
        Loss::SparseCategoricalCrossentropy { from_logits: true },
        2,
        vec![labels(2, 3)],
        vec![tokens],
        3,
    );
}

/// Dropout: identity in inference; in training keeps about 1 - rate of the values, scaled by
/// 1 / (1 - rate), with a mask that is a pure function of (seed, step).
#[test]
fn dropout_masks_are_seeded_and_scaled() {
    let mut g = Graph::new(&[("x", DType::F32, &[1000])]);
    let d = g.add(Op::Dropout { rate: 0.3 }, &[0], &[1000], "dropout", &[]);
    let graph = g.output(d);
    let run_mode = |mode: Mode, seed: u64, step: u64| {
        let mut b = Builder::new("dropout");
        let x = b.arg("x", ArgKind::Input, batched(&[1000]), DType::F32);
        let fwd = lower::forward(&mut b, &graph, &[x], &[], mode);
        b.result("out", ResultKind::Output(0), fwd.outputs[0]);
        let f = b.finish();
        let input = Value::F(ArrayD::from_elem(IxDyn(&[2, 1000]), 1.0f64));
        interp::run(
            &f,
            &[input],
            Context {
                batch: 2,
                seed,
                step,
                sample_offset: 0,
            },
        )
        .unwrap()[0]
            .float()
            .clone()
    };
    let infer = run_mode(Mode::Infer, 0, 0);
    assert!(infer.iter().all(|&v| v == 1.0));
    let a = run_mode(Mode::Train, 5, 10);
    let kept = a.iter().filter(|&&v| v != 0.0).count() as f64 / a.len() as f64;
    assert!((kept - 0.7).abs() < 0.03, "kept {kept}");
    assert!(a.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.7).abs() < 1e-12));
    assert_eq!(a, run_mode(Mode::Train, 5, 10));
    assert_ne!(a, run_mode(Mode::Train, 5, 11));
    assert_ne!(a, run_mode(Mode::Train, 6, 10));
}
