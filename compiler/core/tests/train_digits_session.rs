//! Trains the digits README's anchor MLP (64 -> 128 relu -> 10 softmax, Adam 1e-3, batch 32,
//! 20 epochs) through `exec::Session` on the interpreter and checks the test accuracy on the
//! README's ordered split (Keras: 0.90 +- 0.01).

use fm_compiler::exec::Session;
use fm_compiler::graph::*;
use fm_runtime::config::*;
use fm_runtime::tensor::Tensor;
use ndarray::{ArrayD, IxDyn};

fn read_idx(name: &str, header: usize) -> Vec<u8> {
    let path = format!("{}/../../examples/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(path).unwrap()[header..].to_vec()
}

fn mlp() -> ModelGraph {
    let node =
        |op: Op, inputs: Vec<usize>, shape: Vec<usize>, name: Option<&str>, params: Vec<usize>| {
            Node {
                op,
                inputs,
                shape,
                dtype: DType::F32,
                span: Default::default(),
                name: name.map(String::from),
                params,
            }
        };
    let param = |name: &str, shape: Vec<usize>, init: Init, node: usize| ParamInfo {
        name: name.into(),
        role: if name.ends_with(".bias") {
            Role::Bias
        } else {
            Role::Kernel
        },
        shape,
        init,
        trainable: true,
        l1: 0.0,
        l2: 0.0,
        node,
    };
    ModelGraph {
        name: "digits_mlp".into(),
        doc: vec![],
        span: Default::default(),
        inputs: vec![InputInfo {
            name: "image".into(),
            dtype: DType::F32,
            shape: vec![8, 8],
            node: 0,
            span: Default::default(),
        }],
        nodes: vec![
            node(Op::Input { index: 0 }, vec![], vec![8, 8], None, vec![]),
            node(Op::Flatten, vec![0], vec![64], Some("flatten"), vec![]),
            node(
                Op::Dense {
                    units: 128,
                    activation: Activation::Relu,
                    use_bias: true,
                },
                vec![1],
                vec![128],
                Some("dense"),
                vec![0, 1],
            ),
            node(
                Op::Dense {
                    units: 10,
                    activation: Activation::Softmax { axis: 0 },
                    use_bias: true,
                },
                vec![2],
                vec![10],
                Some("dense_1"),
                vec![2, 3],
            ),
        ],
        outputs: vec![OutputInfo {
            name: "probs".into(),
            node: 3,
            span: Default::default(),
        }],
        params: vec![
            param("dense.kernel", vec![64, 128], Init::GlorotUniform, 2),
            param("dense.bias", vec![128], Init::Zeros, 2),
            param("dense_1.kernel", vec![128, 10], Init::GlorotUniform, 3),
            param("dense_1.bias", vec![10], Init::Zeros, 3),
        ],
        ..Default::default()
    }
}

fn spec() -> TrainSpec {
    let losses = vec![OutputLoss {
        output: "probs".into(),
        loss: Loss::SparseCategoricalCrossentropy { from_logits: false },
        weight: 1.0,
        fused_with_activation: true,
    }];
    let adam = OptimizerKind::Adam {
        beta1: 0.9,
        beta2: 0.999,
        epsilon: 1e-7,
    };
    TrainSpec {
        epochs: 20,
        shuffle: true,
        ..TrainSpec::new("digits_mlp", losses, OptimizerSpec::new(adam, 1e-3))
    }
}

#[test]
fn digits_mlp_reaches_keras_accuracy() {
    let images = read_idx("digits-images-idx3-ubyte", 16);
    let labels = read_idx("digits-labels-idx1-ubyte", 8);
    let n = labels.len();
    assert_eq!(n, 1797);
    let x = |range: std::ops::Range<usize>| {
        let data: Vec<f32> = images[range.start * 64..range.end * 64]
            .iter()
            .map(|&b| b as f32 / 255.0)
            .collect();
        Tensor::F32(ArrayD::from_shape_vec(IxDyn(&[range.len(), 8, 8]), data).unwrap())
    };
    let y = |range: std::ops::Range<usize>| {
        let data: Vec<i32> = labels[range.clone()].iter().map(|&b| b as i32).collect();
        Tensor::I32(ArrayD::from_shape_vec(IxDyn(&[range.len()]), data).unwrap())
    };
    let train = 1437;
    let mut session = Session::new(mlp(), spec()).unwrap();
    let mut order: Vec<usize> = (0..train).collect();
    let mut rng = fm_compiler::init::Rng::new(0, 999);
    let mut last_loss = 0.0;
    for _epoch in 0..20 {
        for i in (1..order.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        let mut total = 0.0;
        for chunk in order.chunks(32) {
            let xb: Vec<f32> = chunk
                .iter()
                .flat_map(|&i| {
                    images[i * 64..i * 64 + 64]
                        .iter()
                        .map(|&b| b as f32 / 255.0)
                })
                .collect();
            let yb: Vec<i32> = chunk.iter().map(|&i| labels[i] as i32).collect();
            let xb = Tensor::F32(ArrayD::from_shape_vec(IxDyn(&[chunk.len(), 8, 8]), xb).unwrap());
            let yb = Tensor::I32(ArrayD::from_shape_vec(IxDyn(&[chunk.len()]), yb).unwrap());
            let out = session.train_step(&[xb], &[yb], 1e-3).unwrap();
            total += out.loss * chunk.len() as f64;
        }
        last_loss = total / train as f64;
    }
    let test = session.evaluate(&[x(train..n)], &[y(train..n)]).unwrap();
    let probs = test.outputs[0].as_f32().unwrap();
    let correct = (0..n - train)
        .filter(|&i| {
            let row = probs.index_axis(ndarray::Axis(0), i);
            let best = row
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0;
            best == labels[train + i] as usize
        })
        .count();
    let acc = correct as f64 / (n - train) as f64;
    eprintln!(
        "final train loss {last_loss:.4}, test loss {:.4}, test accuracy {acc:.4}",
        test.loss
    );
    assert!(acc >= 0.88, "test accuracy {acc}");
    assert!(last_loss < 0.1, "train loss {last_loss}");
}
