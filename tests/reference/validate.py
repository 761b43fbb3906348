#!/usr/bin/env python3
"""Check the generated reference cases without Keras.

1. Structure: every case directory has its files; every tensor is f32 and has the name and the
   shape that language.md section 7 gives it; `expected.safetensors` holds exactly the keys the
   README promises (output, loss, grad/P for each trainable P, step3/P for each P,
   step3/opt/P/SLOT); inputs and targets have the declared shapes and dtypes; files are small.
2. Independent NumPy re-computation of the inference output of the layer cases (Dense with every
   activation, Conv1D/Conv2D, pooling, BatchNorm, LayerNorm, Embedding, SimpleRNN, LSTM, GRU,
   MultiHeadAttention, ...) from init.safetensors and x, and of loss, gradients and three optimizer
   steps of every `opt_*` case (hand-written backward pass of the two-layer MLP plus the Keras 3
   update rules written out). This shows that the names map to the right Keras tensors (gate
   order, attention layouts) and that the update rules in README.md are the ones Keras ran.

Usage: python tests/reference/validate.py  (exit status 1 on the first failure)
"""

from __future__ import annotations

import json
import re
import sys
from math import erf
from pathlib import Path

import numpy as np
import safetensors.numpy

CASES = Path(__file__).resolve().parent / "cases"
MAX_CASE_BYTES = 50_000
# Gate multiples of the recurrent layers' kernels.
GATES = {"simple_rnn": 1, "lstm": 4, "gru": 3}


def fail(msg):
    raise AssertionError(msg)


def base_kind(layer_name: str) -> str:
    """dense_2 -> dense, residual/conv2d_1 -> conv2d, hidden -> hidden."""
    last = layer_name.rsplit("/", 1)[-1]
    return re.sub(r"_\d+$", "", last)


def check_layout(name: str, shape: tuple, params: dict):
    """The shape rules of language.md section 7, with cross-checks between a layer's tensors."""
    layer, tensor = name.split(".", 1)
    kind = base_kind(layer)
    rank = len(shape)
    if kind == "multi_head_attention":
        part, t = tensor.split(".")
        q = params[f"{layer}.query.kernel"].shape
        d, heads, key_dim = q
        want = {
            ("query", "kernel"): (d, heads, key_dim),
            ("key", "kernel"): (params[f"{layer}.key.kernel"].shape[0], heads, key_dim),
            ("value", "kernel"): (params[f"{layer}.value.kernel"].shape[0], heads, key_dim),
            ("output", "kernel"): (heads, key_dim, d),
            ("output", "bias"): (d,),
        }.get((part, t), (heads, key_dim))
        if shape != want:
            fail(f"{name}: shape {shape}, layout wants {want}")
    elif kind in GATES:
        g = GATES[kind]
        units = params[f"{layer}.recurrent_kernel"].shape[0]
        inp = params[f"{layer}.kernel"].shape[0]
        want = {
            "kernel": (inp, g * units),
            "recurrent_kernel": (units, g * units),
            "bias": (2, g * units) if kind == "gru" else (g * units,),
        }[tensor]
        if shape != want:
            fail(f"{name}: shape {shape}, layout wants {want}")
    elif kind in ("batch_norm", "layer_norm", "group_norm"):
        if rank != 1:
            fail(f"{name}: rank {rank}")
    elif kind == "position_embedding":
        if tensor != "embeddings" or rank != 2 or shape[1] != params["dense.kernel"].shape[1]:
            fail(f"{name}: embeddings must be [sequence_length, D]")
    elif kind == "embedding":
        if tensor != "embeddings" or rank != 2:
            fail(f"{name}: embeddings must be [vocab, dim]")
    elif kind == "conv2d":
        if (tensor == "kernel" and rank != 4) or (tensor == "bias" and shape != (params[f"{layer}.kernel"].shape[-1],)):
            fail(f"{name}: {shape}")
    elif kind == "conv1d":
        if (tensor == "kernel" and rank != 3) or (tensor == "bias" and shape != (params[f"{layer}.kernel"].shape[-1],)):
            fail(f"{name}: {shape}")
    else:  # dense and explicitly named dense layers
        if (tensor == "kernel" and rank != 2) or (tensor == "bias" and shape != (params[f"{layer}.kernel"].shape[-1],)):
            fail(f"{name}: {shape}")


def load_xy(d: Path, stem: str):
    if (d / f"{stem}.npy").exists():
        return np.load(d / f"{stem}.npy")
    with np.load(d / f"{stem}.npz") as z:
        return {k: z[k] for k in z.files}


def check_structure(d: Path):
    meta = json.loads((d / "meta.json").read_text())
    size = sum(f.stat().st_size for f in d.iterdir())
    if size > MAX_CASE_BYTES:
        fail(f"{d.name}: {size} bytes")
    init = safetensors.numpy.load_file(str(d / "init.safetensors"))
    exp = safetensors.numpy.load_file(str(d / "expected.safetensors"))
    if sorted(init) != sorted(meta["parameters"]):
        fail(f"{d.name}: init names {sorted(init)} != {meta['parameters']}")
    for n, v in {**init, **exp}.items():
        if v.dtype != np.float32:
            fail(f"{d.name}: {n} is {v.dtype}")
        if not np.all(np.isfinite(v)):
            fail(f"{d.name}: {n} not finite")
    for n, v in init.items():
        check_layout(n, v.shape, init)

    x = load_xy(d, "x")
    xs = x if isinstance(x, dict) else {next(iter(meta["inputs"])): x}
    if sorted(xs) != sorted(meta["inputs"]):
        fail(f"{d.name}: inputs {sorted(xs)}")
    for n, spec in meta["inputs"].items():
        want_dtype = np.float32 if spec["dtype"] == "f32" else np.int32
        if xs[n].dtype != want_dtype or xs[n].shape != (meta["batch"], *spec["shape"]):
            fail(f"{d.name}: input {n} {xs[n].dtype}{xs[n].shape}")

    outputs = meta["outputs"]
    out_keys = ["output"] if list(outputs) == ["output"] else [f"output/{k}" for k in outputs]
    for k, name in zip(out_keys, outputs):
        if exp[k].shape != (meta["batch"], *outputs[name]):
            fail(f"{d.name}: {k} shape {exp[k].shape}")
    want = set(out_keys)
    if meta["training_numbers"]:
        want.add("loss")
        if exp["loss"].shape != ():
            fail(f"{d.name}: loss shape {exp['loss'].shape}")
        for p in meta["trainable"]:
            want.add(f"grad/{p}")
            for slot in meta["optimizer_slots"]:
                want.add(f"step3/opt/{p}/{slot}")
        for p in meta["parameters"]:
            want.add(f"step3/{p}")
    if set(exp) != want:
        fail(f"{d.name}: expected keys differ: extra {set(exp) - want}, missing {want - set(exp)}")
    for k, v in exp.items():
        for prefix in ("grad/", "step3/opt/", "step3/"):
            if k.startswith(prefix):
                p = k[len(prefix) :].rsplit("/", 1)[0] if prefix == "step3/opt/" else k[len(prefix) :]
                if v.shape != init[p].shape:
                    fail(f"{d.name}: {k} shape {v.shape} != {init[p].shape}")
                break
    return meta, init, exp, x


# ------------------------------------------------------------------------------------------------
# NumPy forward passes (float64)
# ------------------------------------------------------------------------------------------------


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def softmax(z, axis=-1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


ACT = {
    "linear": lambda z: z,
    "relu": lambda z: np.maximum(z, 0),
    "sigmoid": sigmoid,
    "tanh": np.tanh,
    "softmax": softmax,
    "gelu": lambda z: 0.5 * z * (1 + np.vectorize(erf)(z / np.sqrt(2))),
    "elu": lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
    "softplus": lambda z: np.log1p(np.exp(z)),
    "silu": lambda z: z * sigmoid(z),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.01 * z),
    "log_softmax": lambda z: np.log(softmax(z)),
}


def dense(p, name, x, act="linear"):
    z = x @ p[f"{name}.kernel"]
    if f"{name}.bias" in p:
        z = z + p[f"{name}.bias"]
    return ACT[act](z)


def same_pads(size, k, stride, dilation=1):
    out = -(-size // stride)
    total = max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def conv(x, kernel, bias, stride=1, padding="valid", dilation=1):
    """N-d convolution (channels last) straight from the definition; x is [B, *spatial, C]."""
    spatial = x.shape[1:-1]
    ks = kernel.shape[:-2]
    if padding == "same":
        pads = [same_pads(s, k, stride, dilation) for s, k in zip(spatial, ks)]
        x = np.pad(x, [(0, 0), *pads, (0, 0)])
    outs = [(x.shape[1 + i] - (k - 1) * dilation - 1) // stride + 1 for i, k in enumerate(ks)]
    y = np.zeros((x.shape[0], *outs, kernel.shape[-1]))
    for pos in np.ndindex(*outs):
        for kpos in np.ndindex(*ks):
            idx = tuple(p * stride + k * dilation for p, k in zip(pos, kpos))
            y[(slice(None), *pos)] += x[(slice(None), *idx)] @ kernel[kpos]
    return y + (bias if bias is not None else 0)


def pool(x, size, stride, padding, mode):
    """Max or average pooling; padded cells are NaN so that they are neither max nor counted."""
    nd = x.ndim - 2
    if padding == "same":
        pads = [same_pads(x.shape[1 + i], size, stride) for i in range(nd)]
        x = np.pad(x, [(0, 0), *pads, (0, 0)], constant_values=np.nan)
    outs = [(x.shape[1 + i] - size) // stride + 1 for i in range(nd)]
    y = np.zeros((x.shape[0], *outs, x.shape[-1]))
    for pos in np.ndindex(*outs):
        window = x[(slice(None), *(slice(p * stride, p * stride + size) for p in pos))]
        window = window.reshape(x.shape[0], -1, x.shape[-1])
        y[(slice(None), *pos)] = np.nanmax(window, 1) if mode == "max" else np.nanmean(window, 1)
    return y


def rnn(p, name, x, kind, return_sequences=False, act=np.tanh):
    W, U, b = p[f"{name}.kernel"], p[f"{name}.recurrent_kernel"], p[f"{name}.bias"]
    units = U.shape[0]
    h = np.zeros((x.shape[0], units))
    c = np.zeros_like(h)
    seq = []
    for t in range(x.shape[1]):
        xt = x[:, t]
        if kind == "simple_rnn":
            h = act(xt @ W + h @ U + b)
        elif kind == "lstm":  # gate order i, f, c, o
            z = xt @ W + h @ U + b
            i, f, g, o = np.split(z, 4, axis=-1)
            c = sigmoid(f) * c + sigmoid(i) * act(g)
            h = sigmoid(o) * act(c)
        else:  # gru, reset_after: gate order z, r, h; bias [input bias, recurrent bias]
            xz, xr, xh = np.split(xt @ W + b[0], 3, axis=-1)
            rz, rr, rh = np.split(h @ U + b[1], 3, axis=-1)
            z = sigmoid(xz + rz)
            r = sigmoid(xr + rr)
            hh = act(xh + r * rh)
            h = z * h + (1 - z) * hh
        seq.append(h)
    return np.stack(seq, 1) if return_sequences else h


def mha(p, name, q, v, k=None, causal=False):
    k = v if k is None else k
    proj = {}
    for part, src in [("query", q), ("key", k), ("value", v)]:
        proj[part] = np.einsum("btd,dhk->bthk", src, p[f"{name}.{part}.kernel"]) + p[f"{name}.{part}.bias"]
    key_dim = proj["query"].shape[-1]
    scores = np.einsum("bqhk,bshk->bhqs", proj["query"] / np.sqrt(key_dim), proj["key"])
    if causal:
        mask = np.tril(np.ones(scores.shape[-2:], bool))
        scores = np.where(mask, scores, -np.inf)
    att = softmax(scores, -1)
    o = np.einsum("bhqs,bshk->bqhk", att, proj["value"])
    return np.einsum("bqhk,hkd->bqd", o, p[f"{name}.output.kernel"]) + p[f"{name}.output.bias"]


def batch_norm_inference(p, name, x, eps=1e-3):
    return (x - p[f"{name}.moving_mean"]) / np.sqrt(p[f"{name}.moving_variance"] + eps) * p[
        f"{name}.gamma"
    ] + p[f"{name}.beta"]


def layer_norm(p, name, x, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * p[f"{name}.gamma"] + p[f"{name}.beta"]


def group_norm(p, name, x, groups, eps=1e-3):
    """Keras GroupNormalization: statistics of each channel group over its channels and positions."""
    shape = x.shape
    g = x.reshape(*shape[:-1], groups, shape[-1] // groups)
    axes = tuple(range(1, g.ndim - 2)) + (g.ndim - 1,)
    mu = g.mean(axes, keepdims=True)
    var = g.var(axes, keepdims=True)
    normed = ((g - mu) / np.sqrt(var + eps)).reshape(shape)
    return normed * p[f"{name}.gamma"] + p[f"{name}.beta"]


def up_sampling(x, size):
    """Nearest-neighbour upsampling of [B, H, W, C]: each cell repeated size[0] x size[1] times."""
    return np.repeat(np.repeat(x, size[0], axis=1), size[1], axis=2)


def forward_model(name: str, p: dict, x):
    """The inference output of the layer cases, written independently of Keras."""
    if name.startswith("dense_") and name[6:] in ACT:
        return dense(p, "dense", x, name[6:])
    pools = {
        "maxpool2d_valid": (2, 2, "valid", "max"),
        "maxpool2d_same": (2, 2, "same", "max"),
        "avgpool2d_valid": (2, 2, "valid", "avg"),
        "avgpool2d_same": (2, 2, "same", "avg"),
        "maxpool2d_3_stride2_same": (3, 2, "same", "max"),
        "avgpool2d_3_stride2_same": (3, 2, "same", "avg"),
        "avgpool2d_3_stride1_same": (3, 1, "same", "avg"),
        "maxpool2d_3_stride1_valid": (3, 1, "valid", "max"),
        "maxpool1d_valid": (2, 2, "valid", "max"),
        "maxpool1d_same": (2, 2, "same", "max"),
        "avgpool1d_valid": (2, 2, "valid", "avg"),
        "avgpool1d_3_stride2_same": (3, 2, "same", "avg"),
    }
    if name in pools:
        return pool(dense(p, "dense", x), *pools[name])
    if name.startswith("global_"):
        h = dense(p, "dense", x)
        axes = tuple(range(1, h.ndim - 1))
        return h.mean(axes) if "avg" in name else h.max(axes)
    convs = {
        "conv2d_valid": {},
        "conv2d_same": {"padding": "same"},
        "conv2d_stride2_valid": {"stride": 2},
        "conv2d_stride2_same": {"stride": 2, "padding": "same"},
        "conv2d_dilation2_valid": {"dilation": 2},
        "conv2d_dilation2_same": {"dilation": 2, "padding": "same"},
        "conv2d_kernel_2x3_same_relu": {"padding": "same"},
        "conv2d_kernel_2x3_valid": {},
    }
    if name in convs:
        y = conv(x, p["conv2d.kernel"], p["conv2d.bias"], **convs[name])
        return np.maximum(y, 0) if name.endswith("relu") else y
    conv1 = {
        "conv1d_valid": {},
        "conv1d_stride2_same": {"stride": 2, "padding": "same"},
        "conv1d_dilation2_same_relu": {"dilation": 2, "padding": "same"},
    }
    if name in conv1:
        y = conv(x, p["conv1d.kernel"], p["conv1d.bias"], **conv1[name])
        return np.maximum(y, 0) if name.endswith("relu") else y
    b = None if isinstance(x, dict) else x.shape[0]
    simple = {
        "fn_leaky_relu_alpha": lambda: (lambda z: np.where(z > 0, z, 0.2 * z))(dense(p, "dense", x)),
        "fn_softmax_axis0": lambda: softmax(dense(p, "dense", x), 1),
        "fn_log_softmax_axis0": lambda: np.log(softmax(dense(p, "dense", x), 1)),
        "named_layers": lambda: dense(p, "head", dense(p, "dense", dense(p, "hidden", x, "relu"))),
        "dense_rank3_no_bias": lambda: dense(p, "dense_1", dense(p, "dense", x, "tanh")),
        "dense_l1_l2": lambda: dense(p, "dense_1", dense(p, "dense", x, "relu")),
        "flatten": lambda: dense(p, "dense_1", dense(p, "dense", x).reshape(b, -1)),
        "reshape": lambda: dense(p, "dense_1", dense(p, "dense", x).reshape(b, 6, -1)),
        "rescale": lambda: dense(p, "dense", x * 0.5 + 1),
        "dropout_inference": lambda: dense(p, "dense_1", dense(p, "dense", x, "relu")),
        "batch_norm_dense": lambda: dense(p, "dense_1", batch_norm_inference(p, "batch_norm", dense(p, "dense", x))),
        "batch_norm_conv": lambda: np.maximum(
            batch_norm_inference(p, "batch_norm", conv(x, p["conv2d.kernel"], None, padding="same"), 0.01), 0
        ),
        "layer_norm": lambda: dense(p, "dense_1", layer_norm(p, "layer_norm", dense(p, "dense", x))),
        "layer_norm_epsilon": lambda: dense(p, "dense", layer_norm(p, "layer_norm", x, 0.1)),
        "position_embedding": lambda: dense(
            p, "dense_1", (dense(p, "dense", x, "tanh") + p["position_embedding.embeddings"][:4]).reshape(b, -1)
        ),
        "group_norm_dense": lambda: dense(p, "dense_1", group_norm(p, "group_norm", dense(p, "dense", x, "tanh"), 2)),
        "group_norm_conv": lambda: dense(
            p,
            "dense",
            group_norm(
                p, "group_norm", np.maximum(conv(x, p["conv2d.kernel"], p["conv2d.bias"], padding="same"), 0), 2, 1e-5
            ).mean((1, 2)),
            "softmax",
        ),
        "up_sampling2d": lambda: dense(
            p,
            "dense",
            conv(
                up_sampling(np.tanh(conv(x, p["conv2d.kernel"], p["conv2d.bias"], padding="same")), (2, 3)),
                p["conv2d_1.kernel"],
                p["conv2d_1.bias"],
            ).reshape(b, -1),
        ),
        "embedding": lambda: dense(p, "dense", p["embedding.embeddings"][x].mean(1), "softmax"),
        "simple_rnn": lambda: dense(p, "dense", rnn(p, "simple_rnn", x, "simple_rnn")),
        "simple_rnn_sequences": lambda: dense(p, "dense", rnn(p, "simple_rnn", x, "simple_rnn", True)),
        "simple_rnn_relu": lambda: dense(
            p, "dense", rnn(p, "simple_rnn", x, "simple_rnn", act=lambda z: np.maximum(z, 0))
        ),
        "lstm": lambda: dense(p, "dense", rnn(p, "lstm", x, "lstm")),
        "lstm_sequences": lambda: dense(p, "dense", rnn(p, "lstm", x, "lstm", True)),
        "lstm_stacked": lambda: dense(p, "dense", rnn(p, "lstm_1", rnn(p, "lstm", x, "lstm", True), "lstm")),
        "gru": lambda: dense(p, "dense", rnn(p, "gru", x, "gru")),
        "gru_sequences": lambda: dense(p, "dense", rnn(p, "gru", x, "gru", True)),
        "mha_self": lambda: mha(p, "multi_head_attention", x, x),
        "mha_causal": lambda: mha(p, "multi_head_attention", x, x, causal=True),
        "mha_cross": lambda: mha(p, "multi_head_attention", x["q"], x["v"]),
        "mha_query_value_key": lambda: mha(p, "multi_head_attention", x["q"], x["v"], x["k"]),
        "concat_axis0": lambda: np.concatenate(
            [dense(p, "dense", x["a"]), dense(p, "dense_1", x["b"], "relu")], axis=1
        ),
    }
    if name in simple:
        return simple[name]()
    if name.startswith("loss_") and name not in ("loss_scce_sequence", "loss_mse_rank3"):
        act = {"loss_bce_sigmoid": "sigmoid", "loss_cce_softmax": "softmax", "loss_scce_softmax": "softmax"}
        return dense(p, "dense_1", dense(p, "dense", x, "tanh"), act.get(name, "linear"))
    if name == "fn_activation_chain":
        a = dense(p, "dense", x, "relu")
        bb = ACT["elu"](ACT["gelu"](dense(p, "dense_1", x)))
        c = ACT["silu"](ACT["softplus"](dense(p, "dense_2", x)))
        return sigmoid(np.tanh((a + bb) * c))
    if name == "conv2d_l2_no_bias_flatten":
        return dense(p, "dense", np.tanh(conv(x, p["conv2d.kernel"], None)).reshape(b, -1))
    if name == "loss_scce_sequence":
        return dense(p, "dense", rnn(p, "gru", x, "gru", True), "softmax")
    if name == "loss_mse_rank3":
        return dense(p, "dense", x)
    if name.startswith("opt_"):
        return dense(p, "dense_1", dense(p, "dense", x, "tanh"))
    if name == "two_outputs":
        h = dense(p, "dense", x, "relu")
        return {"value": dense(p, "dense_1", h), "label": dense(p, "dense_2", h, "softmax")}
    if name == "arith_broadcast":
        pp = dense(p, "dense", x["a"])
        q = dense(p, "dense_1", x["b"], "tanh")[:, None, :]
        return dense(p, "dense_2", np.concatenate([(pp + q) * q, pp - x["a"]], -1))
    if name == "block_repeat":
        h = x
        for s in ("mlp", "mlp_1"):
            h = dense(p, f"{s}/dense_1", dense(p, f"{s}/dense", h, "relu"))
        return dense(p, "dense", h)
    if name == "transformer_block":
        t = p["embedding.embeddings"][x]
        a = layer_norm(p, "encoder/layer_norm", t)
        h = t + mha(p, "encoder/multi_head_attention", a, a)
        f = dense(p, "encoder/dense_1", dense(p, "encoder/dense", layer_norm(p, "encoder/layer_norm_1", h), "gelu"))
        return dense(p, "dense", layer_norm(p, "layer_norm", h + f).mean(1), "softmax")
    if name == "resnet_block":
        t = np.maximum(conv(x, p["conv2d.kernel"], p["conv2d.bias"], padding="same"), 0)
        h = conv(t, p["residual/conv2d.kernel"], None, padding="same")
        h = np.maximum(batch_norm_inference(p, "residual/batch_norm", h), 0)
        h = conv(h, p["residual/conv2d_1.kernel"], None, padding="same")
        h = batch_norm_inference(p, "residual/batch_norm_1", h)
        return dense(p, "dense", np.maximum(t + h, 0).mean((1, 2)))
    return None


def loss_value(spec: str, pred, y):
    """A Keras loss in NumPy: the mean over the batch (and every other axis but the class axis)."""
    kind, _, args = spec.partition("(")
    from_logits = "from_logits: true" in args
    if kind == "mse":
        return np.mean((pred - y) ** 2)
    if kind == "mae":
        return np.mean(np.abs(pred - y))
    if kind == "huber":
        delta = float(args.split(":")[1].rstrip(")")) if args else 1.0
        r = np.abs(pred - y)
        return np.mean(np.where(r <= delta, 0.5 * r**2, delta * (r - 0.5 * delta)))
    if kind == "binary_crossentropy":
        prob = sigmoid(pred) if from_logits else pred
        return np.mean(-(y * np.log(prob) + (1 - y) * np.log(1 - prob)))
    prob = softmax(pred) if from_logits else pred
    if kind == "categorical_crossentropy":
        return np.mean(-np.sum(y * np.log(prob), -1))
    if kind == "sparse_categorical_crossentropy":
        return np.mean(-np.log(np.take_along_axis(prob, y[..., None].astype(np.int64), -1)))
    raise ValueError(spec)


# Kernel regularisers of the cases that have them: (parameter, l1, l2).
REGULARISERS = {
    "dense_l1_l2": [("dense.kernel", 0.01, 0.02), ("dense_1.kernel", 0.0, 0.05)],
    "conv2d_l2_no_bias_flatten": [("conv2d.kernel", 0.0, 0.01)],
}


def batch_norm_training_output(p, x):
    """batch_norm_dense in training mode: batch mean and biased batch variance."""
    h = dense(p, "dense", x)
    normed = (h - h.mean(0)) / np.sqrt(h.var(0) + 1e-3) * p["batch_norm.gamma"] + p["batch_norm.beta"]
    return dense(p, "dense_1", normed), h.mean(0), h.var(0)


def training_loss(name, meta, p, pred, y):
    if isinstance(meta["loss"], dict):
        total = sum(meta["loss_weights"][k] * loss_value(meta["loss"][k], pred[k], y[k]) for k in meta["loss"])
    else:
        total = loss_value(meta["loss"], pred, y)
    for param, l1, l2 in REGULARISERS.get(name, []):
        total += l1 * np.abs(p[param]).sum() + l2 * (p[param] ** 2).sum()
    return total


# ------------------------------------------------------------------------------------------------
# Optimizer cases: MLP backward pass and the Keras 3 update rules, in NumPy
# ------------------------------------------------------------------------------------------------


def mlp_loss_and_grads(p, x, y):
    """x -> Dense(3, tanh) -> Dense(2), mse averaged over batch and outputs."""
    h = np.tanh(x @ p["dense.kernel"] + p["dense.bias"])
    out = h @ p["dense_1.kernel"] + p["dense_1.bias"]
    loss = np.mean((out - y) ** 2)
    d_out = 2 * (out - y) / out.size
    d_h = d_out @ p["dense_1.kernel"].T * (1 - h**2)
    grads = {
        "dense_1.kernel": h.T @ d_out,
        "dense_1.bias": d_out.sum(0),
        "dense.kernel": x.T @ d_h,
        "dense.bias": d_h.sum(0),
    }
    return loss, grads


def parse_optimizer(text: str):
    kind, args = re.fullmatch(r"(\w+)\((.*)\)", text).groups()
    kw = {}
    for part in filter(None, (a.strip() for a in args.split(","))):
        k, v = (s.strip() for s in part.split(":"))
        kw[k] = {"true": True, "false": False}.get(v, None) if v in ("true", "false") else float(v)
    return kind, kw


def optimizer_steps(kind, kw, p, x, y, steps):
    """The Keras 3 update rules: clip, then decoupled weight decay, then the optimizer update."""
    p = {k: v.astype(np.float64) for k, v in p.items()}
    lr = kw.get("lr", 0.01 if kind == "SGD" else 0.001)
    wd = kw.get("weight_decay", 0.004 if kind == "AdamW" else 0.0)
    eps = kw.get("epsilon", 1e-7)
    slots = {k: {} for k in p}
    for k in p:
        if kind in ("Adam", "AdamW"):
            slots[k] = {"m": np.zeros_like(p[k]), "v": np.zeros_like(p[k])}
        elif kind == "SGD" and kw.get("momentum"):
            slots[k] = {"momentum": np.zeros_like(p[k])}
        elif kind == "RMSprop":
            slots[k] = {"velocity": np.zeros_like(p[k])}
            if kw.get("momentum"):
                slots[k]["momentum"] = np.zeros_like(p[k])
        elif kind == "Adagrad":
            slots[k] = {"accumulator": np.full_like(p[k], kw.get("initial_accumulator", 0.1))}
    first = None
    for t in range(1, steps + 1):
        loss, g = mlp_loss_and_grads(p, x, y)
        first = loss if first is None else first
        if "clip_norm" in kw:
            c = kw["clip_norm"]
            g = {k: v * c / max(np.linalg.norm(v), c) for k, v in g.items()}
        elif "global_clip_norm" in kw:
            c = kw["global_clip_norm"]
            norm = np.sqrt(sum(np.sum(v**2) for v in g.values()))
            g = {k: v * c / max(norm, c) for k, v in g.items()}
        elif "clip_value" in kw:
            g = {k: np.clip(v, -kw["clip_value"], kw["clip_value"]) for k, v in g.items()}
        for k in p:
            p[k] -= p[k] * wd * lr
            s = slots[k]
            if kind == "SGD":
                mom = kw.get("momentum", 0.0)
                if mom:
                    s["momentum"] = mom * s["momentum"] - lr * g[k]
                    p[k] += mom * s["momentum"] - lr * g[k] if kw.get("nesterov") else s["momentum"]
                else:
                    p[k] -= lr * g[k]
            elif kind in ("Adam", "AdamW"):
                b1, b2 = kw.get("beta1", 0.9), kw.get("beta2", 0.999)
                s["m"] += (g[k] - s["m"]) * (1 - b1)
                s["v"] += (g[k] ** 2 - s["v"]) * (1 - b2)
                alpha = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
                p[k] -= s["m"] * alpha / (np.sqrt(s["v"]) + eps)
            elif kind == "RMSprop":
                rho = kw.get("rho", 0.9)
                s["velocity"] = rho * s["velocity"] + (1 - rho) * g[k] ** 2
                inc = lr * g[k] / np.sqrt(s["velocity"] + eps)
                if "momentum" in s:
                    s["momentum"] = kw["momentum"] * s["momentum"] + inc
                    p[k] -= s["momentum"]
                else:
                    p[k] -= inc
            elif kind == "Adagrad":
                s["accumulator"] += g[k] ** 2
                p[k] -= lr * g[k] / np.sqrt(s["accumulator"] + eps)
    return first, p, slots


def close(name, got, ref, tol=1e-5):
    ref = np.asarray(ref, np.float64)
    err = np.max(np.abs(np.asarray(got, np.float64) - ref) / np.maximum(np.abs(ref), 1.0))
    if not err <= tol:
        fail(f"{name}: NumPy re-computation differs by {err:.2e}")
    return err


def main():
    dirs = sorted(d for d in CASES.iterdir() if d.is_dir())
    forward_checked = opt_checked = loss_checked = 0
    worst = 0.0
    for d in dirs:
        meta, init, exp, x = check_structure(d)
        p = {k: v.astype(np.float64) for k, v in init.items()}
        xx = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in x.items()} if isinstance(x, dict) else (
            x.astype(np.float64) if x.dtype == np.float32 else x
        )
        ref = forward_model(d.name, p, xx)
        y = load_xy(d, "y")
        y = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in y.items()} if isinstance(y, dict) else (
            y.astype(np.float64) if y.dtype == np.float32 else y
        )
        if ref is not None:
            for k, v in (ref.items() if isinstance(ref, dict) else [("", ref)]):
                key = f"output/{k}" if k else "output"
                worst = max(worst, close(f"{d.name}/{key}", v, exp[key]))
            forward_checked += 1
            # Training mode equals inference mode unless the model has BatchNorm or Dropout.
            if meta["training_numbers"] and not any("batch_norm" in n for n in meta["parameters"]):
                close(f"{d.name}/loss", training_loss(d.name, meta, p, ref, y), exp["loss"])
                loss_checked += 1
        if d.name == "batch_norm_dense":
            out, mean, var = batch_norm_training_output(p, xx)
            close(f"{d.name}/loss", training_loss(d.name, meta, p, out, y), exp["loss"])
            loss_checked += 1
        if d.name.startswith("opt_"):
            kind, kw = parse_optimizer(meta["optimizer"])
            loss, _ = mlp_loss_and_grads(p, xx, y)
            close(f"{d.name}/loss", loss, exp["loss"])
            _, grads = mlp_loss_and_grads(p, xx, y)
            for k, g in grads.items():
                close(f"{d.name}/grad/{k}", g, exp[f"grad/{k}"])
            _, final, slots = optimizer_steps(kind, kw, init, xx, y, meta["steps"])
            for k, v in final.items():
                worst = max(worst, close(f"{d.name}/step3/{k}", v, exp[f"step3/{k}"]))
                for slot, sv in slots[k].items():
                    close(f"{d.name}/step3/opt/{k}/{slot}", sv, exp[f"step3/opt/{k}/{slot}"])
            opt_checked += 1
    print(
        f"{len(dirs)} cases: structure ok; re-computed in NumPy: {forward_checked} inference outputs, "
        f"{loss_checked} training losses, {opt_checked} optimizer cases (gradients, 3 steps, slots); "
        f"worst relative difference {worst:.1e}"
    )


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
