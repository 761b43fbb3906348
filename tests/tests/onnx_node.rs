//! ONNX's own backend node tests (`tests/onnx_node/cases/`, selected from the `onnx` package by
//! `tests/onnx_node/select_cases.py`) through `fmc import` and both of fm's backends.
//!
//! Each case is one small ONNX graph with inputs and expected outputs. A case either imports
//! (then its outputs must match ONNX's on the interpreter and on the JIT within ONNX's own
//! node-test tolerance, rtol 1e-3 and atol 1e-7), or it is refused with E0412 naming the
//! node: an operator setting fm has no layer for (asymmetric padding, `ceil_mode`, two
//! computed operands of a MatMul, ...). The test pins both lists: `PASS` below must import and
//! match, everything else must be refused with E0412 (never a panic, a wrong answer or another
//! code), and the README's table counts them per operator.
//!
//! fm compiles weights into the model, while many node tests pass a node's weights as graph
//! inputs (a Conv's kernel, a Gemm's B, an LSTM's W/R/B, a Reshape's shape). The harness turns
//! those inputs into initializers holding the data set's values before importing ([`WEIGHT_INPUTS`]);
//! the data operands stay inputs.

use fm_compiler::exec::{default_spec, Session};
use fm_interop::onnx::{tensor_values, ModelProto, TensorProto, Values};
use fm_runtime::tensor::Tensor;
use ndarray::{ArrayD, IxDyn};
use prost::Message;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn cases() -> Vec<PathBuf> {
    let dir = fm_tests::root().join("tests/onnx_node/cases");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("cases")
        .flatten()
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

fn read_pb(path: &Path) -> (Vec<usize>, Values) {
    let bytes = std::fs::read(path).unwrap();
    let t = TensorProto::decode(bytes.as_slice()).unwrap();
    let v = tensor_values(&t).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (v.shape, v.values)
}

enum Outcome {
    Pass,
    Refused(String),
    Wrong(String),
}

/// Which inputs of a node are weights (by position), per operator.
const WEIGHT_INPUTS: &[(&str, &[usize])] = &[
    ("Conv", &[1, 2]),
    ("BatchNormalization", &[1, 2, 3, 4]),
    ("Gemm", &[1, 2]),
    ("MatMul", &[1]),
    ("Gather", &[0]),
    ("Reshape", &[1]),
    ("Squeeze", &[1]),
    ("Unsqueeze", &[1]),
    ("LSTM", &[1, 2, 3, 4, 5, 6, 7]),
    ("GRU", &[1, 2, 3, 4, 5]),
    ("RNN", &[1, 2, 3, 4, 5]),
    ("Clip", &[1, 2]),
    ("ReduceSum", &[1]),
    ("ReduceMean", &[1]),
    ("ReduceMax", &[1]),
    ("ReduceMin", &[1]),
    ("LayerNormalization", &[1, 2]),
    ("GroupNormalization", &[1, 2]),
    ("Resize", &[1, 2, 3]),
];

/// The model with weight inputs turned into initializers holding `set`'s values; returns it
/// and the indices of the graph inputs that stay inputs.
fn freeze(model: &ModelProto, set: &Path) -> (Vec<u8>, Vec<usize>) {
    let mut m = model.clone();
    let g = m.graph.as_mut().unwrap();
    let mut weights = std::collections::HashSet::new();
    for n in &g.node {
        if let Some((_, pos)) = WEIGHT_INPUTS.iter().find(|(op, _)| *op == n.op_type()) {
            for &p in *pos {
                if let Some(i) = n.input.get(p).filter(|s| !s.is_empty()) {
                    weights.insert(i.clone());
                }
            }
        }
    }
    let mut kept = Vec::new();
    let mut inputs = Vec::new();
    for (j, input) in g.input.iter().enumerate() {
        if weights.contains(input.name()) {
            let bytes = std::fs::read(set.join(format!("input_{j}.pb"))).unwrap();
            let mut t = TensorProto::decode(bytes.as_slice()).unwrap();
            t.name = Some(input.name().to_string());
            g.initializer.push(t);
        } else {
            kept.push(j);
            inputs.push(input.clone());
        }
    }
    g.input = inputs;
    (m.encode_to_vec(), kept)
}

fn run_case(dir: &Path) -> Outcome {
    let bytes = std::fs::read(dir.join("model.onnx")).unwrap();
    let model = ModelProto::decode(bytes.as_slice()).unwrap();
    let mut sets: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    sets.sort();
    for set in sets {
        let (frozen, kept) = freeze(&model, &set);
        let imported = match fm_interop::import::onnx::import(&frozen, "model.onnx", "case")
            .and_then(|i| fm_interop::import::check(&i, "model.onnx").map(|()| i))
        {
            Ok(i) => i,
            Err(e) if e.code == fm_codes::E0412 => return Outcome::Refused(e.to_string()),
            Err(e) => return Outcome::Wrong(format!("refused with {}: {e}", e.code)),
        };
        let checked = fm_compiler::check::check_source_with(
            &imported.source,
            Path::new("case.fm"),
            &Default::default(),
        );
        let g = checked.models[0].clone();
        let mut inputs = Vec::new();
        for ((_, perm), j) in imported.inputs.iter().zip(&kept) {
            let (shape, values) = read_pb(&set.join(format!("input_{j}.pb")));
            let fm_shape: Vec<usize> = perm.iter().map(|&a| shape[a]).collect();
            let t = match values {
                Values::F32(v) => {
                    let a = ArrayD::from_shape_vec(IxDyn(&shape), v).unwrap();
                    Tensor::F32(
                        a.permuted_axes(perm.clone())
                            .as_standard_layout()
                            .to_owned(),
                    )
                }
                Values::I64(v) => {
                    let a = ArrayD::from_shape_vec(
                        IxDyn(&shape),
                        v.iter().map(|&x| x as i32).collect(),
                    )
                    .unwrap();
                    Tensor::I32(
                        a.permuted_axes(perm.clone())
                            .as_standard_layout()
                            .to_owned(),
                    )
                }
            };
            assert_eq!(t.shape(), fm_shape.as_slice());
            inputs.push(t);
        }
        for backend in ["interp", "jit"] {
            let session = Session::new(g.clone(), default_spec(&g)).expect("lowers");
            let mut session = if backend == "jit" {
                fm_jit::session::into_jit(session).0
            } else {
                session
            };
            session.set_state(&imported.tensors).expect("weights fit");
            let got = match session.predict(&inputs) {
                Ok(o) => o,
                Err(e) => return Outcome::Wrong(format!("{backend}: {e}")),
            };
            for (k, o) in got.iter().enumerate() {
                let (shape, want) = read_pb(&set.join(format!("output_{k}.pb")));
                let want = match want {
                    Values::F32(v) => v,
                    Values::I64(v) => v.iter().map(|&x| x as f32).collect(),
                };
                // ONNX's expected output in fm's layout: size-1 axes fm lacks dropped, axes
                // permuted to fm's order.
                let layout = &imported.outputs[k];
                let kept_axes: Vec<(usize, usize)> = layout
                    .iter()
                    .enumerate()
                    .filter_map(|(i, a)| a.map(|a| (i, a)))
                    .collect();
                let squeezed: Vec<usize> = kept_axes.iter().map(|&(i, _)| shape[i]).collect();
                let mut perm: Vec<usize> = (0..kept_axes.len()).collect();
                perm.sort_by_key(|&p| kept_axes[p].1);
                let want = ArrayD::from_shape_vec(IxDyn(&squeezed), want).unwrap();
                let want: Vec<f32> = want
                    .permuted_axes(perm)
                    .as_standard_layout()
                    .iter()
                    .copied()
                    .collect();
                let o = o.to_f32();
                if o.len() != want.len() {
                    return Outcome::Wrong(format!(
                        "{backend}: output {k} has {} values, ONNX {}",
                        o.len(),
                        want.len()
                    ));
                }
                for (i, (a, b)) in o.iter().zip(&want).enumerate() {
                    if (a - b).abs() > 1e-7 + 1e-3 * b.abs() {
                        return Outcome::Wrong(format!(
                            "{backend}: output {k}[{i}] = {a}, ONNX {b}\n{}",
                            imported.source
                        ));
                    }
                }
            }
        }
    }
    Outcome::Pass
}

/// The cases that import and match ONNX on both backends.
const PASS: &[&str] = &[
    "test_abs",
    "test_add",
    "test_averagepool_1d_default",
    "test_averagepool_2d_default",
    "test_averagepool_2d_precomputed_pads",
    "test_averagepool_2d_precomputed_same_upper",
    "test_averagepool_2d_precomputed_strides",
    "test_averagepool_2d_same_upper",
    "test_averagepool_2d_strides",
    "test_basic_conv_with_padding",
    "test_basic_conv_without_padding",
    "test_batchnorm_epsilon",
    "test_batchnorm_example",
    "test_clip_default_inbounds",
    "test_clip_default_inbounds_expanded",
    "test_concat_2d_axis_1",
    "test_concat_2d_axis_negative_1",
    "test_concat_3d_axis_1",
    "test_concat_3d_axis_2",
    "test_concat_3d_axis_negative_1",
    "test_concat_3d_axis_negative_2",
    "test_conv_with_strides_no_padding",
    "test_conv_with_strides_padding",
    "test_div",
    "test_div_example",
    "test_elu",
    "test_elu_default",
    "test_elu_example",
    "test_exp",
    "test_exp_example",
    "test_flatten_axis1",
    "test_flatten_default_axis",
    "test_flatten_negative_axis3",
    "test_gelu_default_1",
    "test_gelu_default_2",
    "test_gelu_tanh_1",
    "test_gelu_tanh_2",
    "test_gemm_alpha",
    "test_gemm_beta",
    "test_gemm_default_no_bias",
    "test_gemm_default_scalar_bias",
    "test_gemm_default_single_elem_vector_bias",
    "test_gemm_default_vector_bias",
    "test_gemm_default_zero_bias",
    "test_gemm_transposeB",
    "test_globalaveragepool",
    "test_globalaveragepool_precomputed",
    "test_globalmaxpool",
    "test_globalmaxpool_precomputed",
    "test_group_normalization_epsilon",
    "test_group_normalization_example",
    "test_identity",
    "test_layer_normalization_2d_axis1",
    "test_layer_normalization_2d_axis_negative_1",
    "test_layer_normalization_3d_axis1_epsilon",
    "test_layer_normalization_3d_axis2_epsilon",
    "test_layer_normalization_3d_axis_negative_1_epsilon",
    "test_layer_normalization_3d_axis_negative_2_epsilon",
    "test_layer_normalization_4d_axis1",
    "test_layer_normalization_4d_axis2",
    "test_layer_normalization_4d_axis3",
    "test_layer_normalization_4d_axis_negative_1",
    "test_layer_normalization_4d_axis_negative_2",
    "test_layer_normalization_4d_axis_negative_3",
    "test_layer_normalization_default_axis",
    "test_leakyrelu",
    "test_leakyrelu_default",
    "test_leakyrelu_example",
    "test_log",
    "test_log_example",
    "test_logsoftmax_axis_1",
    "test_logsoftmax_axis_2",
    "test_logsoftmax_default_axis",
    "test_logsoftmax_example_1",
    "test_logsoftmax_large_number",
    "test_logsoftmax_negative_axis",
    "test_lstm_batchwise",
    "test_lstm_defaults",
    "test_lstm_with_initial_bias",
    "test_matmul_2d",
    "test_maxpool_1d_default",
    "test_maxpool_2d_default",
    "test_maxpool_2d_precomputed_pads",
    "test_maxpool_2d_precomputed_same_upper",
    "test_maxpool_2d_precomputed_strides",
    "test_maxpool_2d_same_upper",
    "test_maxpool_2d_strides",
    "test_mul",
    "test_mul_example",
    "test_neg",
    "test_neg_example",
    "test_reduce_l1_do_not_keepdims_example_expanded",
    "test_reduce_l1_do_not_keepdims_random_expanded",
    "test_reduce_l1_keep_dims_example_expanded",
    "test_reduce_l1_keep_dims_random_expanded",
    "test_reduce_l1_negative_axes_keep_dims_example_expanded",
    "test_reduce_l1_negative_axes_keep_dims_random_expanded",
    "test_reduce_log_sum_desc_axes_expanded",
    "test_reduce_log_sum_negative_axes_expanded",
    "test_reduce_max_do_not_keepdims_example",
    "test_reduce_max_do_not_keepdims_random",
    "test_reduce_max_keepdims_example",
    "test_reduce_max_keepdims_random",
    "test_reduce_max_negative_axes_keepdims_example",
    "test_reduce_max_negative_axes_keepdims_random",
    "test_reduce_mean_do_not_keepdims_example",
    "test_reduce_mean_do_not_keepdims_random",
    "test_reduce_mean_keepdims_example",
    "test_reduce_mean_keepdims_random",
    "test_reduce_mean_negative_axes_keepdims_example",
    "test_reduce_mean_negative_axes_keepdims_random",
    "test_reduce_min_do_not_keepdims_example",
    "test_reduce_min_do_not_keepdims_random",
    "test_reduce_min_keepdims_example",
    "test_reduce_min_keepdims_random",
    "test_reduce_min_negative_axes_keepdims_example",
    "test_reduce_min_negative_axes_keepdims_random",
    "test_reduce_sum_do_not_keepdims_example",
    "test_reduce_sum_do_not_keepdims_random",
    "test_reduce_sum_keepdims_example",
    "test_reduce_sum_keepdims_random",
    "test_reduce_sum_negative_axes_keepdims_example",
    "test_reduce_sum_negative_axes_keepdims_random",
    "test_reduce_sum_square_do_not_keepdims_example_expanded",
    "test_reduce_sum_square_do_not_keepdims_random_expanded",
    "test_reduce_sum_square_keepdims_example_expanded",
    "test_reduce_sum_square_keepdims_random_expanded",
    "test_reduce_sum_square_negative_axes_keepdims_example_expanded",
    "test_reduce_sum_square_negative_axes_keepdims_random_expanded",
    "test_relu",
    "test_resize_upsample_scales_nearest",
    "test_rnn_seq_length",
    "test_sigmoid",
    "test_sigmoid_example",
    "test_simple_rnn_batchwise",
    "test_simple_rnn_defaults",
    "test_simple_rnn_with_initial_bias",
    "test_softmax_axis_1",
    "test_softmax_axis_2",
    "test_softmax_default_axis",
    "test_softmax_example",
    "test_softmax_large_number",
    "test_softmax_negative_axis",
    "test_softplus",
    "test_softplus_example",
    "test_sqrt",
    "test_sqrt_example",
    "test_sub",
    "test_sub_example",
    "test_tanh",
    "test_tanh_example",
    "test_transpose_all_permutations_0",
    "test_transpose_all_permutations_1",
    "test_unsqueeze_axis_0",
    "test_unsqueeze_axis_1",
    "test_unsqueeze_axis_2",
    "test_unsqueeze_negative_axes",
    "test_unsqueeze_three_axes",
    "test_unsqueeze_two_axes",
    "test_unsqueeze_unsorted_axes",
];

#[test]
fn onnx_node_tests() {
    let mut table: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut wrong = Vec::new();
    let mut passed = Vec::new();
    let mut refused = Vec::new();
    for dir in cases() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let op = std::fs::read_to_string(dir.join("op"))
            .unwrap()
            .trim()
            .to_string();
        let entry = table.entry(op).or_default();
        match run_case(&dir) {
            Outcome::Pass => {
                entry.0 += 1;
                passed.push(name);
            }
            Outcome::Refused(why) => {
                entry.1 += 1;
                refused.push(format!("{name}: {why}"));
            }
            Outcome::Wrong(why) => wrong.push(format!("{name}: {why}")),
        }
    }
    let summary: Vec<String> = table
        .iter()
        .map(|(op, (p, r))| format!("| {op} | {p} | {r} |"))
        .collect();
    eprintln!(
        "| op | pass | refused (E0412) |\n|---|---|---|\n{}",
        summary.join("\n")
    );
    eprintln!("refused:\n{}", refused.join("\n"));
    assert!(
        wrong.is_empty(),
        "wrong answers or errors:\n{}",
        wrong.join("\n")
    );
    let expected: Vec<&str> = PASS.to_vec();
    assert_eq!(
        passed, expected,
        "the passing cases changed: update PASS and the README table"
    );
}
