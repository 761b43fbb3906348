#!/usr/bin/env python3
"""Generate the Keras 3 reference cases that fm's reference interpreter is checked against.

Each case is a small model written twice: once as `.fm` source (model.fm) and once as a Keras
functional model built from the same layers. The initial weights come from a seeded NumPy RNG (not
Keras initialisers), are assigned to the Keras variables by their fm names (language.md section 7)
and saved as init.safetensors. Keras then computes the reference numbers: the inference output, the
training loss and its gradients, and every parameter (plus optimizer slots) after three optimizer
steps on the same batch. See README.md beside this file for the layout.

Every case is run twice, in float32 (the committed reference) and in float64; the largest
difference between the two is recorded in meta.json so that a numerically sensitive case shows
itself and can get a wider tolerance.

Usage: python tests/reference/gen.py [--only SUBSTRING] [--out DIR]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")

import numpy as np  # noqa: E402
import safetensors  # noqa: E402
import safetensors.numpy  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402
from keras import layers, ops  # noqa: E402

try:  # keras-hub only for the `position_embedding` case
    import keras_hub  # noqa: E402
except ImportError:
    keras_hub = None

HERE = Path(__file__).resolve().parent
# The Rust side compares with |fm - ref| <= TOLERANCE * max(|ref|, 1).
TOLERANCE = 1e-5
STEPS = 3

# --------------------------------------------------------------------------------------------
# Losses and optimizers: the fm spelling and the matching Keras object.
# --------------------------------------------------------------------------------------------


@dataclass
class Loss:
    fm: str
    make: Callable[[], keras.losses.Loss]
    # How targets are drawn: "regression", "binary", "categorical", "sparse".
    target: str
    soft_labels: bool = False
    target_scale: float = 1.0


def mse():
    return Loss("mse", keras.losses.MeanSquaredError, "regression")


LOSSES = {
    "mse": mse(),
    "mae": Loss("mae", keras.losses.MeanAbsoluteError, "regression"),
    "huber": Loss("huber", lambda: keras.losses.Huber(delta=1.0), "regression", target_scale=2.0),
    "huber_05": Loss(
        "huber(delta: 0.5)", lambda: keras.losses.Huber(delta=0.5), "regression", target_scale=1.5
    ),
    "bce": Loss("binary_crossentropy", keras.losses.BinaryCrossentropy, "binary"),
    "bce_logits": Loss(
        "binary_crossentropy(from_logits: true)",
        lambda: keras.losses.BinaryCrossentropy(from_logits=True),
        "binary",
    ),
    "cce": Loss("categorical_crossentropy", keras.losses.CategoricalCrossentropy, "categorical"),
    "cce_logits": Loss(
        "categorical_crossentropy(from_logits: true)",
        lambda: keras.losses.CategoricalCrossentropy(from_logits=True),
        "categorical",
        soft_labels=True,
    ),
    "scce": Loss(
        "sparse_categorical_crossentropy",
        keras.losses.SparseCategoricalCrossentropy,
        "sparse",
    ),
    "scce_logits": Loss(
        "sparse_categorical_crossentropy(from_logits: true)",
        lambda: keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        "sparse",
    ),
}


@dataclass
class Opt:
    fm: str
    make: Callable[[], keras.optimizers.Optimizer]
    # (fm slot name, attribute of the Keras optimizer holding one slot variable per parameter)
    slots: list[tuple[str, str]]


def num(v) -> str:
    """An fm number literal: Python's repr, with the exponent written without padding (1e-6)."""
    text = repr(v)
    if "e" in text:
        mantissa, exp = text.split("e")
        text = f"{mantissa}e{int(exp)}"
    return text


def sgd(**kw):
    keras_kw = {"learning_rate": kw.get("lr", 0.01)}
    fm_args = [f"lr: {num(kw.get('lr', 0.01))}"]
    slots = []
    if kw.get("momentum"):
        keras_kw["momentum"] = kw["momentum"]
        fm_args.append(f"momentum: {num(kw['momentum'])}")
        slots.append(("momentum", "momentums"))
    if kw.get("nesterov"):
        keras_kw["nesterov"] = True
        fm_args.append("nesterov: true")
    _common(kw, keras_kw, fm_args)
    return Opt(f"SGD({', '.join(fm_args)})", lambda: keras.optimizers.SGD(**keras_kw), slots)


def _common(kw, keras_kw, fm_args):
    """weight_decay and the three clipping options, shared by every optimizer."""
    for fm_key, keras_key in [
        ("weight_decay", "weight_decay"),
        ("clip_norm", "clipnorm"),
        ("global_clip_norm", "global_clipnorm"),
        ("clip_value", "clipvalue"),
    ]:
        if fm_key in kw:
            keras_kw[keras_key] = kw[fm_key]
            fm_args.append(f"{fm_key}: {num(kw[fm_key])}")


def adam(cls="Adam", **kw):
    keras_kw = {"learning_rate": kw.get("lr", 0.001)}
    fm_args = [f"lr: {num(kw.get('lr', 0.001))}"]
    for fm_key, keras_key in [("beta1", "beta_1"), ("beta2", "beta_2"), ("epsilon", "epsilon")]:
        if fm_key in kw:
            keras_kw[keras_key] = kw[fm_key]
            fm_args.append(f"{fm_key}: {num(kw[fm_key])}")
    _common(kw, keras_kw, fm_args)
    keras_cls = getattr(keras.optimizers, cls)
    return Opt(
        f"{cls}({', '.join(fm_args)})",
        lambda: keras_cls(**keras_kw),
        [("m", "_momentums"), ("v", "_velocities")],
    )


def rmsprop(**kw):
    keras_kw = {"learning_rate": kw.get("lr", 0.001)}
    fm_args = [f"lr: {num(kw.get('lr', 0.001))}"]
    slots = [("velocity", "_velocities")]
    for key in ["rho", "momentum", "epsilon"]:
        if key in kw:
            keras_kw[key] = kw[key]
            fm_args.append(f"{key}: {num(kw[key])}")
    if kw.get("momentum"):
        slots.append(("momentum", "_momentums"))
    _common(kw, keras_kw, fm_args)
    return Opt(f"RMSprop({', '.join(fm_args)})", lambda: keras.optimizers.RMSprop(**keras_kw), slots)


def adagrad(**kw):
    keras_kw = {"learning_rate": kw.get("lr", 0.001)}
    fm_args = [f"lr: {num(kw.get('lr', 0.001))}"]
    if "initial_accumulator" in kw:
        keras_kw["initial_accumulator_value"] = kw["initial_accumulator"]
        fm_args.append(f"initial_accumulator: {num(kw['initial_accumulator'])}")
    if "epsilon" in kw:
        keras_kw["epsilon"] = kw["epsilon"]
        fm_args.append(f"epsilon: {num(kw['epsilon'])}")
    _common(kw, keras_kw, fm_args)
    return Opt(
        f"Adagrad({', '.join(fm_args)})",
        lambda: keras.optimizers.Adagrad(**keras_kw),
        [("accumulator", "_accumulators")],
    )


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------


class Registry:
    """Records which Keras layer carries which fm layer name, in fm's naming order."""

    def __init__(self):
        self.layers: list[tuple[str, keras.layers.Layer]] = []

    def __call__(self, fm_name: str, layer: keras.layers.Layer) -> keras.layers.Layer:
        self.layers.append((fm_name, layer))
        return layer


@dataclass
class Case:
    name: str
    desc: str
    fm_model: str  # the model (and any blocks), without the train section
    inputs: dict  # fm input name -> (per-sample shape, "f32" | ("i32", vocab))
    build: Callable  # (Registry, {name: keras.Input}) -> keras tensor or {output name: tensor}
    loss: Loss | dict = field(default_factory=mse)
    opt: Opt = field(default_factory=lambda: sgd(lr=0.1))
    batch: int = 4
    training: bool = True  # False for Dropout cases: inference numbers only
    loss_weights: dict | None = None
    notes: list[str] = field(default_factory=list)


CASES: list[Case] = []


def add(*args, **kw):
    CASES.append(Case(*args, **kw))


def L(make, *args, **kw):
    """A layer to be constructed later: every build (float32, float64) needs fresh layers."""
    return functools.partial(make, *args, **kw)


def chain(*stages):
    """A build function for a one-input pipeline of (fm name or None, L(layer...)) stages."""

    def build(reg, ins):
        (t,) = ins.values()
        for fm_name, make in stages:
            layer = make()
            t = (reg(fm_name, layer) if fm_name else layer)(t)
        return t

    return build


def leaky(slope):
    return lambda t: keras.activations.leaky_relu(t, negative_slope=slope)


# -- Dense with each activation -------------------------------------------------------------
ACTIVATIONS = {
    "linear": "linear",
    "relu": "relu",
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "softmax": "softmax",
    "gelu": lambda t: keras.activations.gelu(t, approximate=False),
    "elu": "elu",
    "softplus": "softplus",
    "silu": "silu",
    "leaky_relu": leaky(0.01),
    "log_softmax": "log_softmax",
}
for act, keras_act in ACTIVATIONS.items():
    add(
        f"dense_{act}",
        f"Dense(4, {act}) on a 6-vector; mse; SGD",
        f"model dense_{act} {{\n    input x: f32[6]\n    output pred = x -> Dense(4, {act})\n}}",
        {"x": ([6], "f32")},
        chain(("dense", L(layers.Dense, 4, activation=keras_act))),
        batch=5,
    )

add(
    "fn_leaky_relu_alpha",
    "Dense then the leaky_relu function with alpha 0.2",
    "model fn_leaky {\n    input x: f32[6]\n    output pred = x -> Dense(4) -> leaky_relu(alpha: 0.2)\n}",
    {"x": ([6], "f32")},
    chain(("dense", L(layers.Dense, 4)), (None, L(layers.Activation, leaky(0.2)))),
)
add(
    "fn_softmax_axis0",
    "softmax over the first per-sample axis of a [3, 4] tensor",
    "model fn_softmax_axis {\n    input x: f32[3, 4]\n"
    "    output pred = x -> Dense(4) -> softmax(axis: 0)\n}",
    {"x": ([3, 4], "f32")},
    chain(("dense", L(layers.Dense, 4)), (None, L(layers.Softmax, axis=1))),
)
add(
    "fn_log_softmax_axis0",
    "log_softmax over the first per-sample axis of a [3, 4] tensor",
    "model fn_log_softmax_axis {\n    input x: f32[3, 4]\n"
    "    output pred = x -> Dense(4) -> log_softmax(axis: 0)\n}",
    {"x": ([3, 4], "f32")},
    chain(
        ("dense", L(layers.Dense, 4)),
        (None, L(layers.Activation, lambda t: keras.activations.log_softmax(t, axis=1))),
    ),
)
add(
    "fn_activation_chain",
    "activation functions as pipeline stages: relu, tanh, sigmoid, gelu, elu, softplus, silu",
    "model fn_chain {\n    input x: f32[5]\n    let a = x -> Dense(4) -> relu\n"
    "    let b = x -> Dense(4) -> gelu -> elu\n"
    "    let c = x -> Dense(4) -> softplus -> silu\n"
    "    output pred = (a + b) * c -> tanh -> sigmoid\n}",
    {"x": ([5], "f32")},
    lambda reg, ins: ops.sigmoid(
        ops.tanh(
            ops.multiply(
                ops.add(
                    ops.relu(reg("dense", layers.Dense(4))(ins["x"])),
                    ops.elu(ops.gelu(reg("dense_1", layers.Dense(4))(ins["x"]), approximate=False)),
                ),
                ops.silu(ops.softplus(reg("dense_2", layers.Dense(4))(ins["x"]))),
            )
        )
    ),
)

add(
    "dense_l1_l2",
    "Dense layers with l1 and l2 kernel regularisers (loss includes them)",
    "model dense_reg {\n    input x: f32[6]\n"
    "    output pred = x -> Dense(5, relu, l1: 0.01, l2: 0.02) -> Dense(2, l2: 0.05)\n}",
    {"x": ([6], "f32")},
    chain(
        (
            "dense",
            L(layers.Dense, 5, activation="relu", kernel_regularizer=keras.regularizers.L1L2(0.01, 0.02)),
        ),
        ("dense_1", L(layers.Dense, 2, kernel_regularizer=keras.regularizers.L1L2(0.0, 0.05))),
    ),
    opt=adam(lr=0.01),
)
add(
    "dense_rank3_no_bias",
    "Dense on a rank-2 per-sample input (applies to the last axis), use_bias false",
    "model dense_rank3 {\n    input x: f32[3, 5]\n"
    "    output pred = x -> Dense(4, tanh, use_bias: false) -> Dense(2)\n}",
    {"x": ([3, 5], "f32")},
    chain(
        ("dense", L(layers.Dense, 4, activation="tanh", use_bias=False)),
        ("dense_1", L(layers.Dense, 2)),
    ),
)
add(
    "named_layers",
    "explicit name: does not advance the counters (hidden, dense, head)",
    "model named {\n    input x: f32[4]\n    output pred = x\n"
    '        -> Dense(4, relu, name: "hidden")\n        -> Dense(3)\n'
    '        -> Dense(2, name: "head")\n}',
    {"x": ([4], "f32")},
    chain(
        ("hidden", L(layers.Dense, 4, activation="relu")),
        ("dense", L(layers.Dense, 3)),
        ("head", L(layers.Dense, 2)),
    ),
)

# -- Convolutions ------------------------------------------------------------------------------
CONV2D = [
    # name, input shape, fm args, keras kwargs
    ("conv2d_valid", [6, 6, 2], "3, 3", dict(filters=3, kernel_size=3)),
    ("conv2d_one_filter", [5, 5, 2], "1, 3", dict(filters=1, kernel_size=3)),
    ("conv2d_same", [6, 6, 2], "3, 3, padding: same", dict(filters=3, kernel_size=3, padding="same")),
    ("conv2d_stride2_valid", [7, 7, 2], "3, 3, stride: 2", dict(filters=3, kernel_size=3, strides=2)),
    (
        "conv2d_stride2_same",
        [6, 6, 2],
        "3, 3, stride: 2, padding: same",
        dict(filters=3, kernel_size=3, strides=2, padding="same"),
    ),
    (
        "conv2d_dilation2_valid",
        [7, 7, 2],
        "2, 3, dilation: 2",
        dict(filters=2, kernel_size=3, dilation_rate=2),
    ),
    (
        "conv2d_dilation2_same",
        [6, 6, 2],
        "2, 3, dilation: 2, padding: same",
        dict(filters=2, kernel_size=3, dilation_rate=2, padding="same"),
    ),
    (
        "conv2d_kernel_2x3_same_relu",
        [5, 6, 2],
        "3, [2, 3], relu, padding: same",
        dict(filters=3, kernel_size=(2, 3), activation="relu", padding="same"),
    ),
    (
        "conv2d_kernel_2x3_valid",
        [5, 6, 2],
        "3, [2, 3]",
        dict(filters=3, kernel_size=(2, 3)),
    ),
]
for name, shape, fm_args, kw in CONV2D:
    add(
        name,
        f"Conv2D({fm_args}) on {shape}",
        f"model {name} {{\n    input image: f32{shape}\n    output pred = image -> Conv2D({fm_args})\n}}",
        {"image": (shape, "f32")},
        chain(("conv2d", L(layers.Conv2D, **kw))),
    )
add(
    "conv2d_l2_no_bias_flatten",
    "Conv2D without bias and with l2, then Flatten and Dense",
    "model conv_flat {\n    input image: f32[5, 5, 1]\n    output pred = image\n"
    "        -> Conv2D(2, 3, tanh, use_bias: false, l2: 0.01)\n"
    "        -> Flatten\n        -> Dense(3)\n}",
    {"image": ([5, 5, 1], "f32")},
    chain(
        (
            "conv2d",
            L(
                layers.Conv2D,
                2,
                3,
                activation="tanh",
                use_bias=False,
                kernel_regularizer=keras.regularizers.L2(0.01),
            ),
        ),
        (
            None,
            L(
                layers.Flatten,
            ),
        ),
        ("dense", L(layers.Dense, 3)),
    ),
)
CONV1D = [
    ("conv1d_valid", "4, 3", dict(filters=4, kernel_size=3)),
    (
        "conv1d_stride2_same",
        "4, 3, stride: 2, padding: same",
        dict(filters=4, kernel_size=3, strides=2, padding="same"),
    ),
    (
        "conv1d_dilation2_same_relu",
        "2, 3, relu, dilation: 2, padding: same",
        dict(filters=2, kernel_size=3, activation="relu", dilation_rate=2, padding="same"),
    ),
]
for name, fm_args, kw in CONV1D:
    add(
        name,
        f"Conv1D({fm_args}) on [8, 3]",
        f"model {name} {{\n    input seq: f32[8, 3]\n    output pred = seq -> Conv1D({fm_args})\n}}",
        {"seq": ([8, 3], "f32")},
        chain(("conv1d", L(layers.Conv1D, **kw))),
    )

# -- Pooling (a Dense before the pool gives the gradient something to reach) ---------------------
POOLS = [
    # name, input shape, fm stage, keras layer
    ("maxpool2d_valid", [5, 5, 2], "MaxPool2D(2)", lambda: layers.MaxPooling2D(2)),
    (
        "maxpool2d_same",
        [5, 5, 2],
        "MaxPool2D(2, padding: same)",
        lambda: layers.MaxPooling2D(2, padding="same"),
    ),
    ("avgpool2d_valid", [5, 5, 2], "AvgPool2D(2)", lambda: layers.AveragePooling2D(2)),
    (
        "avgpool2d_same",
        [5, 5, 2],
        "AvgPool2D(2, padding: same)",
        lambda: layers.AveragePooling2D(2, padding="same"),
    ),
    (
        "maxpool2d_3_stride2_same",
        [6, 6, 2],
        "MaxPool2D(3, stride: 2, padding: same)",
        lambda: layers.MaxPooling2D(3, strides=2, padding="same"),
    ),
    (
        "avgpool2d_3_stride2_same",
        [6, 6, 2],
        "AvgPool2D(3, stride: 2, padding: same)",
        lambda: layers.AveragePooling2D(3, strides=2, padding="same"),
    ),
    (
        "avgpool2d_3_stride1_same",
        [4, 4, 2],
        "AvgPool2D(3, stride: 1, padding: same)",
        lambda: layers.AveragePooling2D(3, strides=1, padding="same"),
    ),
    (
        "maxpool2d_3_stride1_valid",
        [5, 5, 2],
        "MaxPool2D(3, stride: 1)",
        lambda: layers.MaxPooling2D(3, strides=1),
    ),
    ("maxpool1d_valid", [7, 3], "MaxPool1D(2)", lambda: layers.MaxPooling1D(2)),
    ("maxpool1d_same", [7, 3], "MaxPool1D(2, padding: same)", lambda: layers.MaxPooling1D(2, padding="same")),
    ("avgpool1d_valid", [7, 3], "AvgPool1D(2)", lambda: layers.AveragePooling1D(2)),
    (
        "avgpool1d_3_stride2_same",
        [7, 3],
        "AvgPool1D(3, stride: 2, padding: same)",
        lambda: layers.AveragePooling1D(3, strides=2, padding="same"),
    ),
    ("global_avg_pool2d", [4, 3, 2], "GlobalAvgPool2D", lambda: layers.GlobalAveragePooling2D()),
    ("global_max_pool2d", [4, 3, 2], "GlobalMaxPool2D", lambda: layers.GlobalMaxPooling2D()),
    ("global_avg_pool1d", [5, 2], "GlobalAvgPool1D", lambda: layers.GlobalAveragePooling1D()),
    ("global_max_pool1d", [5, 2], "GlobalMaxPool1D", lambda: layers.GlobalMaxPooling1D()),
]
for name, shape, stage, make in POOLS:
    add(
        name,
        f"Dense(3) then {stage} on {shape}",
        f"model {name} {{\n    input x: f32{shape}\n    output pred = x -> Dense(3) -> {stage}\n}}",
        {"x": (shape, "f32")},
        chain(
            ("dense", L(layers.Dense, 3)),
            (
                None,
                L(
                    make,
                ),
            ),
        ),
    )

# -- Shape layers -------------------------------------------------------------------------------
add(
    "flatten",
    "Dense on [2, 3, 2], Flatten, Dense",
    "model flat {\n    input x: f32[2, 3, 2]\n    output pred = x -> Dense(2) -> Flatten -> Dense(3)\n}",
    {"x": ([2, 3, 2], "f32")},
    chain(
        ("dense", L(layers.Dense, 2)),
        (
            None,
            L(
                layers.Flatten,
            ),
        ),
        ("dense_1", L(layers.Dense, 3)),
    ),
)
add(
    "reshape",
    "Reshape([6, -1]) between two Dense layers",
    "model reshaped {\n    input x: f32[3, 4]\n"
    "    output pred = x -> Dense(4) -> Reshape([6, -1]) -> Dense(2)\n}",
    {"x": ([3, 4], "f32")},
    chain(("dense", L(layers.Dense, 4)), (None, L(layers.Reshape, (6, -1))), ("dense_1", L(layers.Dense, 2))),
)
add(
    "rescale",
    "Rescale(0.5, offset: 1) then Dense",
    "model rescaled {\n    input x: f32[4]\n    output pred = x -> Rescale(0.5, offset: 1) -> Dense(2)\n}",
    {"x": ([4], "f32")},
    chain((None, L(layers.Rescaling, 0.5, offset=1.0)), ("dense", L(layers.Dense, 2))),
)
add(
    "dropout_inference",
    "Dropout is the identity at inference (no training numbers: dropout masks are random)",
    "model dropped {\n    input x: f32[6]\n"
    "    output pred = x -> Dense(8, relu) -> Dropout(0.5) -> Dense(2)\n}",
    {"x": ([6], "f32")},
    chain(
        ("dense", L(layers.Dense, 8, activation="relu")),
        (None, L(layers.Dropout, 0.5)),
        ("dense_1", L(layers.Dense, 2)),
    ),
    training=False,
)

# -- Normalisation ------------------------------------------------------------------------------
add(
    "batch_norm_dense",
    "BatchNorm (defaults: momentum 0.99, epsilon 1e-3) between Dense layers; batch stats in "
    "training, moving stats in inference",
    "model bn_dense {\n    input x: f32[5]\n    output pred = x -> Dense(4) -> BatchNorm -> Dense(2)\n}",
    {"x": ([5], "f32")},
    chain(
        ("dense", L(layers.Dense, 4)),
        ("batch_norm", L(layers.BatchNormalization, momentum=0.99, epsilon=1e-3)),
        ("dense_1", L(layers.Dense, 2)),
    ),
    batch=8,
    notes=["dense.bias has a gradient that is zero in exact arithmetic (BatchNorm removes the mean)"],
)
add(
    "batch_norm_conv",
    "BatchNorm(momentum: 0.9, epsilon: 0.01) after a bias-free Conv2D: statistics over batch, H, W",
    "model bn_conv {\n    input image: f32[4, 4, 2]\n    output pred = image\n"
    "        -> Conv2D(3, 3, padding: same, use_bias: false)\n"
    "        -> BatchNorm(momentum: 0.9, epsilon: 0.01)\n        -> relu\n}",
    {"image": ([4, 4, 2], "f32")},
    chain(
        ("conv2d", L(layers.Conv2D, 3, 3, padding="same", use_bias=False)),
        ("batch_norm", L(layers.BatchNormalization, momentum=0.9, epsilon=0.01)),
        (
            None,
            L(
                layers.ReLU,
            ),
        ),
    ),
    batch=5,
)
add(
    "layer_norm",
    "LayerNorm (epsilon 1e-5) over the last axis of [3, 6]",
    "model ln {\n    input x: f32[3, 6]\n    output pred = x -> Dense(6) -> LayerNorm -> Dense(2)\n}",
    {"x": ([3, 6], "f32")},
    chain(
        ("dense", L(layers.Dense, 6)),
        ("layer_norm", L(layers.LayerNormalization, epsilon=1e-5)),
        ("dense_1", L(layers.Dense, 2)),
    ),
    notes=["dense.bias has a gradient that is zero in exact arithmetic (LayerNorm removes the mean)"],
)
add(
    "layer_norm_epsilon",
    "LayerNorm(epsilon: 0.1) directly on the input",
    "model ln_eps {\n    input x: f32[6]\n    output pred = x -> LayerNorm(epsilon: 0.1) -> Dense(3)\n}",
    {"x": ([6], "f32")},
    chain(("layer_norm", L(layers.LayerNormalization, epsilon=0.1)), ("dense", L(layers.Dense, 3))),
)

# -- Extensions beyond language.md's required set: GroupNorm, UpSampling2D --------------------
add(
    "group_norm_dense",
    "GroupNorm(2) (default epsilon 1e-3, as Keras) on 8 features: 2 groups of 4, no positions",
    "model gn_dense {\n    input x: f32[5]\n    output pred = x -> Dense(8, tanh) -> GroupNorm(2) -> Dense(2)\n}",
    {"x": ([5], "f32")},
    chain(
        ("dense", L(layers.Dense, 8, activation="tanh")),
        ("group_norm", L(layers.GroupNormalization, groups=2, epsilon=1e-3)),
        ("dense_1", L(layers.Dense, 2)),
    ),
)
def build_position_embedding(reg, ins):
    h = reg("dense", layers.Dense(3, activation="tanh"))(ins["x"])
    pe = reg("position_embedding", keras_hub.layers.PositionEmbedding(sequence_length=6))(h)
    return reg("dense_1", layers.Dense(2))(layers.Flatten()(ops.add(h, pe)))


add(
    "position_embedding",
    "keras-hub PositionEmbedding(sequence_length 6) on a [4, 3] sequence: its first 4 rows are "
    "added to the sequence (the last 2 get no gradient)",
    "model pe {\n    input x: f32[4, 2]\n    let h = x -> Dense(3, tanh)\n"
    "    let s = h + PositionEmbedding(h, 6)\n    output pred = s -> Flatten -> Dense(2)\n}",
    {"x": ([4, 2], "f32")},
    build_position_embedding,
    batch=3,
)
add(
    "group_norm_conv",
    "GroupNorm(groups: 2, epsilon: 1e-5) after Conv2D: statistics over H, W and each group's 3 "
    "channels; sparse CE",
    "model gn_conv {\n    input image: f32[5, 4, 2]\n    output probs = image\n"
    "        -> Conv2D(6, 3, padding: same, activation: relu)\n"
    "        -> GroupNorm(groups: 2, epsilon: 1e-5)\n"
    "        -> GlobalAvgPool2D\n        -> Dense(3, softmax)\n}",
    {"image": ([5, 4, 2], "f32")},
    chain(
        ("conv2d", L(layers.Conv2D, 6, 3, padding="same", activation="relu")),
        ("group_norm", L(layers.GroupNormalization, groups=2, epsilon=1e-5)),
        (None, L(layers.GlobalAveragePooling2D)),
        ("dense", L(layers.Dense, 3, activation="softmax")),
    ),
    loss=LOSSES["scce"],
    batch=3,
)
add(
    "up_sampling2d",
    "UpSampling2D(size: [2, 3]) (nearest) between two Conv2D layers",
    "model upsample {\n    input image: f32[3, 2, 2]\n    output pred = image\n"
    "        -> Conv2D(3, 2, padding: same, activation: tanh)\n"
    "        -> UpSampling2D(size: [2, 3])\n"
    "        -> Conv2D(2, 3)\n        -> Flatten\n        -> Dense(2)\n}",
    {"image": ([3, 2, 2], "f32")},
    chain(
        ("conv2d", L(layers.Conv2D, 3, 2, padding="same", activation="tanh")),
        (None, L(layers.UpSampling2D, size=(2, 3), interpolation="nearest")),
        ("conv2d_1", L(layers.Conv2D, 2, 3)),
        (None, L(layers.Flatten)),
        ("dense", L(layers.Dense, 2)),
    ),
)

# -- Embedding ----------------------------------------------------------------------------------
add(
    "embedding",
    "Embedding(10, 4) on i32 tokens (repeated ids), GlobalAvgPool1D, Dense softmax; sparse CE",
    "model embed {\n    input tokens: i32[5]\n    output probs = tokens\n"
    "        -> Embedding(10, 4)\n        -> GlobalAvgPool1D\n        -> Dense(3, softmax)\n}",
    {"tokens": ([5], ("i32", 10))},
    chain(
        ("embedding", L(layers.Embedding, 10, 4)),
        (
            None,
            L(
                layers.GlobalAveragePooling1D,
            ),
        ),
        ("dense", L(layers.Dense, 3, activation="softmax")),
    ),
    loss=LOSSES["scce"],
)

# -- Recurrent ----------------------------------------------------------------------------------
RNNS = [
    ("simple_rnn", "SimpleRNN", "simple_rnn", lambda **k: layers.SimpleRNN(**k)),
    ("lstm", "LSTM", "lstm", lambda **k: layers.LSTM(**k)),
    ("gru", "GRU", "gru", lambda **k: layers.GRU(reset_after=True, **k)),
]
for case_name, kind, fm_name, make in RNNS:
    add(
        case_name,
        f"{kind}(4) (last state) then Dense(2)",
        f"model {case_name}_last {{\n    input seq: f32[5, 3]\n"
        f"    output pred = seq -> {kind}(4) -> Dense(2)\n}}",
        {"seq": ([5, 3], "f32")},
        chain((fm_name, L(make, units=4)), ("dense", L(layers.Dense, 2))),
    )
    add(
        f"{case_name}_sequences",
        f"{kind}(4, return_sequences: true) then Dense(2) on every step",
        f"model {case_name}_seq {{\n    input seq: f32[5, 3]\n"
        f"    output pred = seq -> {kind}(4, return_sequences: true) -> Dense(2)\n}}",
        {"seq": ([5, 3], "f32")},
        chain((fm_name, L(make, units=4, return_sequences=True)), ("dense", L(layers.Dense, 2))),
    )
add(
    "simple_rnn_relu",
    "SimpleRNN(4, activation: relu)",
    "model rnn_relu {\n    input seq: f32[5, 3]\n"
    "    output pred = seq -> SimpleRNN(4, activation: relu) -> Dense(2)\n}",
    {"seq": ([5, 3], "f32")},
    chain(("simple_rnn", L(layers.SimpleRNN, 4, activation="relu")), ("dense", L(layers.Dense, 2))),
)
add(
    "lstm_stacked",
    "two stacked LSTMs (sequences then last state)",
    "model lstm_stack {\n    input seq: f32[6, 3]\n"
    "    output pred = seq -> LSTM(4, return_sequences: true) -> LSTM(3) -> Dense(2)\n}",
    {"seq": ([6, 3], "f32")},
    chain(
        ("lstm", L(layers.LSTM, 4, return_sequences=True)),
        ("lstm_1", L(layers.LSTM, 3)),
        ("dense", L(layers.Dense, 2)),
    ),
)

# -- Attention ----------------------------------------------------------------------------------
MHA_NOTE = (
    "key.bias has a gradient that is zero in exact arithmetic (softmax is shift invariant); "
    "compare it with an absolute tolerance"
)
add(
    "mha_self",
    "MultiHeadAttention(2) self-attention on [5, 8] (key_dim 4)",
    "model mha_self {\n    input seq: f32[5, 8]\n    output pred = seq -> MultiHeadAttention(2)\n}",
    {"seq": ([5, 8], "f32")},
    lambda reg, ins: reg("multi_head_attention", layers.MultiHeadAttention(2, 4))(ins["seq"], ins["seq"]),
    notes=[MHA_NOTE],
)
add(
    "mha_causal",
    "MultiHeadAttention(2, key_dim: 3, causal: true) self-attention on [5, 8]",
    "model mha_causal {\n    input seq: f32[5, 8]\n"
    "    output pred = seq -> MultiHeadAttention(2, key_dim: 3, causal: true)\n}",
    {"seq": ([5, 8], "f32")},
    lambda reg, ins: reg("multi_head_attention", layers.MultiHeadAttention(2, 3))(
        ins["seq"], ins["seq"], use_causal_mask=True
    ),
    notes=[MHA_NOTE],
)
add(
    "mha_cross",
    "MultiHeadAttention(2) with query [4, 8] and value [6, 8] (key = value)",
    "model mha_cross {\n    input q: f32[4, 8]\n    input v: f32[6, 8]\n"
    "    output pred = q -> MultiHeadAttention(v, 2)\n}",
    {"q": ([4, 8], "f32"), "v": ([6, 8], "f32")},
    lambda reg, ins: reg("multi_head_attention", layers.MultiHeadAttention(2, 4))(ins["q"], ins["v"]),
    notes=[MHA_NOTE],
)
add(
    "mha_query_value_key",
    "MultiHeadAttention(q, v, k, 4) with query [4, 8], value [6, 8], key [6, 8] (key_dim 2)",
    "model mha_qvk {\n    input q: f32[4, 8]\n    input v: f32[6, 8]\n    input k: f32[6, 8]\n"
    "    output pred = MultiHeadAttention(q, v, k, 4)\n}",
    {"q": ([4, 8], "f32"), "v": ([6, 8], "f32"), "k": ([6, 8], "f32")},
    lambda reg, ins: reg("multi_head_attention", layers.MultiHeadAttention(4, 2))(
        ins["q"], ins["v"], ins["k"]
    ),
    notes=[MHA_NOTE],
)

add(
    "mha_image",
    "MultiHeadAttention(2) self-attention over the 3x4 positions of an image [3, 4, 6] (key_dim 3)",
    "model mha_image {\n    input img: f32[3, 4, 6]\n    output pred = img -> MultiHeadAttention(2)\n}",
    {"img": ([3, 4, 6], "f32")},
    lambda reg, ins: reg("multi_head_attention", layers.MultiHeadAttention(2, 3))(ins["img"], ins["img"]),
    notes=[MHA_NOTE],
)

# -- Arithmetic, concat, blocks -----------------------------------------------------------------


def build_arith(reg, ins):
    p = reg("dense", layers.Dense(3))(ins["a"])  # [4, 3]
    q = reg("dense_1", layers.Dense(3, activation="tanh"))(ins["b"])  # [3]
    q = ops.expand_dims(q, 1)  # fm broadcasts over the per-sample axes: [3] -> [1, 3]
    s = ops.add(p, q)
    d = ops.subtract(p, ins["a"])
    m = ops.multiply(s, q)
    return reg("dense_2", layers.Dense(2))(ops.concatenate([m, d], axis=-1))


add(
    "arith_broadcast",
    "+, -, * with broadcasting [4, 3] with [3], concat on the last axis; two inputs (x.npz)",
    "model arith {\n    input a: f32[4, 3]\n    input b: f32[3]\n"
    "    let p = a -> Dense(3)\n    let q = b -> Dense(3, tanh)\n"
    "    let s = p + q\n    let d = p - a\n    let m = s * q\n"
    "    output pred = concat(m, d) -> Dense(2)\n}",
    {"a": ([4, 3], "f32"), "b": ([3], "f32")},
    build_arith,
)


def build_concat0(reg, ins):
    p = reg("dense", layers.Dense(3))(ins["a"])
    q = reg("dense_1", layers.Dense(3, activation="relu"))(ins["b"])
    return ops.concatenate([p, q], axis=1)


add(
    "concat_axis0",
    "concat(p, q, axis: 0) of [2, 3] and [4, 3]",
    "model concat0 {\n    input a: f32[2, 3]\n    input b: f32[4, 3]\n"
    "    let p = a -> Dense(3)\n    let q = b -> Dense(3, relu)\n"
    "    output pred = concat(p, q, axis: 0)\n}",
    {"a": ([2, 3], "f32"), "b": ([4, 3], "f32")},
    build_concat0,
)


def build_block_repeat(reg, ins):
    t = ins["x"]
    for scope in ["mlp", "mlp_1"]:
        t = reg(f"{scope}/dense", layers.Dense(5, activation="relu"))(t)
        t = reg(f"{scope}/dense_1", layers.Dense(5))(t)
    return reg("dense", layers.Dense(2))(t)


add(
    "block_repeat",
    "a two-layer block repeated twice: names mlp/dense, mlp/dense_1, mlp_1/dense, ...",
    "block mlp(x, units: int) {\n    let h = x -> Dense(units, relu)\n    return h -> Dense(units)\n}\n\n"
    "model stacked {\n    input x: f32[4]\n    output pred = x -> repeat 2 { mlp(5) } -> Dense(2)\n}",
    {"x": ([4], "f32")},
    build_block_repeat,
    opt=sgd(lr=0.05),
)


def build_resnet(reg, ins):
    t = reg("conv2d", layers.Conv2D(3, 3, padding="same"))(ins["image"])
    t = ops.relu(t)
    h = reg("residual/conv2d", layers.Conv2D(3, 3, padding="same", use_bias=False))(t)
    h = reg("residual/batch_norm", layers.BatchNormalization())(h)
    h = ops.relu(h)
    h = reg("residual/conv2d_1", layers.Conv2D(3, 3, padding="same", use_bias=False))(h)
    h = reg("residual/batch_norm_1", layers.BatchNormalization())(h)
    t = ops.relu(ops.add(t, h))
    t = layers.GlobalAveragePooling2D()(t)
    return reg("dense", layers.Dense(3))(t)


add(
    "resnet_block",
    "residual block (Conv2D, BatchNorm, relu, identity shortcut), GlobalAvgPool2D, logits; "
    "sparse CE from logits; SGD nesterov with weight decay",
    "block residual(x, filters: int) {\n    let h = x\n"
    "        -> Conv2D(filters, 3, padding: same, use_bias: false)\n"
    "        -> BatchNorm -> relu\n"
    "        -> Conv2D(filters, 3, padding: same, use_bias: false)\n"
    "        -> BatchNorm\n    return relu(x + h)\n}\n\n"
    "model resnet_case {\n    input image: f32[4, 4, 2]\n    output logits = image\n"
    "        -> Conv2D(3, 3, padding: same) -> relu\n        -> residual(3)\n"
    "        -> GlobalAvgPool2D\n        -> Dense(3)\n}",
    {"image": ([4, 4, 2], "f32")},
    build_resnet,
    loss=LOSSES["scce_logits"],
    opt=sgd(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    batch=6,
)


def build_transformer(reg, ins):
    t = reg("embedding", layers.Embedding(12, 8))(ins["tokens"])
    a = reg("encoder/layer_norm", layers.LayerNormalization(epsilon=1e-5))(t)
    a = reg("encoder/multi_head_attention", layers.MultiHeadAttention(2, 4))(a, a)
    h = ops.add(t, a)
    f = reg("encoder/layer_norm_1", layers.LayerNormalization(epsilon=1e-5))(h)
    f = reg("encoder/dense", layers.Dense(16, activation=ACTIVATIONS["gelu"]))(f)
    f = reg("encoder/dense_1", layers.Dense(8))(f)
    t = ops.add(h, f)
    t = reg("layer_norm", layers.LayerNormalization(epsilon=1e-5))(t)
    t = layers.GlobalAveragePooling1D()(t)
    return reg("dense", layers.Dense(3, activation="softmax"))(t)


add(
    "transformer_block",
    "pre-norm encoder block (LayerNorm, self-attention, residual, gelu feed-forward) over "
    "embedded tokens; sparse CE; SGD momentum",
    "block encoder(x, heads: int, ff: int) {\n"
    "    let a = x -> LayerNorm -> MultiHeadAttention(heads)\n    let h = x + a\n"
    "    let f = h -> LayerNorm -> Dense(ff, gelu) -> Dense(dim(h, -1))\n    return h + f\n}\n\n"
    "model tiny_transformer {\n    input tokens: i32[6]\n    output probs = tokens\n"
    "        -> Embedding(12, 8)\n        -> encoder(2, 16)\n        -> LayerNorm\n"
    "        -> GlobalAvgPool1D\n        -> Dense(3, softmax)\n}",
    {"tokens": ([6], ("i32", 12))},
    build_transformer,
    loss=LOSSES["scce"],
    opt=sgd(lr=0.1, momentum=0.9),
    batch=5,
    notes=[MHA_NOTE],
)


def build_two_heads(reg, ins):
    h = reg("dense", layers.Dense(8, activation="relu"))(ins["x"])
    return {
        "value": reg("dense_1", layers.Dense(1))(h),
        "label": reg("dense_2", layers.Dense(3, activation="softmax"))(h),
    }


add(
    "two_outputs",
    "two outputs with a loss per output and loss_weights (y.npz, output/NAME)",
    "model two_heads {\n    input x: f32[6]\n    let h = x -> Dense(8, relu)\n"
    "    output value = h -> Dense(1)\n    output label = h -> Dense(3, softmax)\n}",
    {"x": ([6], "f32")},
    build_two_heads,
    loss={"value": LOSSES["mse"], "label": LOSSES["scce"]},
    loss_weights={"value": 0.5, "label": 1.0},
    opt=adam(lr=0.01),
    batch=6,
)

# -- Losses -------------------------------------------------------------------------------------
LOSS_CASES = [
    # case, loss key, output units, output activation
    ("loss_mse", "mse", 3, "linear"),
    ("loss_mae", "mae", 3, "linear"),
    ("loss_huber", "huber", 3, "linear"),
    ("loss_huber_delta_05", "huber_05", 3, "linear"),
    ("loss_bce_sigmoid", "bce", 1, "sigmoid"),
    ("loss_bce_logits", "bce_logits", 1, "linear"),
    ("loss_cce_softmax", "cce", 4, "softmax"),
    ("loss_cce_logits_soft_labels", "cce_logits", 4, "linear"),
    ("loss_scce_softmax", "scce", 4, "softmax"),
    ("loss_scce_logits", "scce_logits", 4, "linear"),
]
for name, key, units, act in LOSS_CASES:
    fm_act = "" if act == "linear" else f", {act}"
    add(
        name,
        f"loss {LOSSES[key].fm} on Dense({units}{fm_act}); SGD",
        f"model {name} {{\n    input x: f32[5]\n"
        f"    output pred = x -> Dense(8, tanh) -> Dense({units}{fm_act})\n}}",
        {"x": ([5], "f32")},
        chain(
            ("dense", L(layers.Dense, 8, activation="tanh")),
            ("dense_1", L(layers.Dense, units, activation=act)),
        ),
        loss=LOSSES[key],
        batch=6,
    )
add(
    "loss_scce_sequence",
    "sparse CE on a per-step softmax [5, 3] (targets [B, 5]; Keras averages over batch and steps)",
    "model seq_tagger {\n    input seq: f32[5, 3]\n"
    "    output probs = seq -> GRU(4, return_sequences: true) -> Dense(3, softmax)\n}",
    {"seq": ([5, 3], "f32")},
    chain(
        ("gru", L(layers.GRU, 4, return_sequences=True)), ("dense", L(layers.Dense, 3, activation="softmax"))
    ),
    loss=LOSSES["scce"],
)
add(
    "loss_mse_rank3",
    "mse on a [3, 2] output per sample (Keras: mean over the last axis, then over batch and rows)",
    "model mse_rank3 {\n    input x: f32[3, 4]\n    output pred = x -> Dense(2)\n}",
    {"x": ([3, 4], "f32")},
    chain(("dense", L(layers.Dense, 2))),
)

# -- Optimizers ---------------------------------------------------------------------------------
OPT_CASES = [
    ("opt_sgd", sgd(lr=0.1)),
    ("opt_sgd_momentum", sgd(lr=0.1, momentum=0.9)),
    ("opt_sgd_nesterov", sgd(lr=0.1, momentum=0.9, nesterov=True)),
    ("opt_sgd_weight_decay", sgd(lr=0.1, weight_decay=0.05)),
    ("opt_sgd_clip_norm", sgd(lr=0.1, clip_norm=0.1)),
    ("opt_sgd_global_clip_norm", sgd(lr=0.1, global_clip_norm=0.2)),
    ("opt_sgd_clip_value", sgd(lr=0.1, clip_value=0.05)),
    ("opt_adam", adam(lr=0.01)),
    ("opt_adam_custom", adam(lr=0.02, beta1=0.8, beta2=0.99, epsilon=1e-6)),
    ("opt_adam_weight_decay", adam(lr=0.01, weight_decay=0.1)),
    ("opt_adam_clip_norm", adam(lr=0.01, clip_norm=0.1)),
    ("opt_adam_global_clip_norm", adam(lr=0.01, global_clip_norm=0.2)),
    ("opt_adam_clip_value", adam(lr=0.01, clip_value=0.05)),
    ("opt_adamw", adam("AdamW", lr=0.01)),
    ("opt_adamw_weight_decay", adam("AdamW", lr=0.01, weight_decay=0.1)),
    ("opt_rmsprop", rmsprop(lr=0.01)),
    ("opt_rmsprop_momentum", rmsprop(lr=0.01, momentum=0.9)),
    ("opt_rmsprop_rho", rmsprop(lr=0.01, rho=0.8, epsilon=1e-6)),
    ("opt_adagrad", adagrad(lr=0.1)),
    ("opt_adagrad_init", adagrad(lr=0.1, initial_accumulator=0.5, epsilon=1e-6)),
]
for name, opt in OPT_CASES:
    add(
        name,
        f"optimizer {opt.fm} on Dense(3, tanh) -> Dense(2); mse",
        f"model {name} {{\n    input x: f32[4]\n    output pred = x -> Dense(3, tanh) -> Dense(2)\n}}",
        {"x": ([4], "f32")},
        chain(("dense", L(layers.Dense, 3, activation="tanh")), ("dense_1", L(layers.Dense, 2))),
        opt=opt,
        batch=6,
    )


# --------------------------------------------------------------------------------------------
# Running a case
# --------------------------------------------------------------------------------------------


def layer_params(fm_name: str, layer) -> list[tuple[str, object]]:
    """The (fm tensor name, Keras variable) pairs of one layer, in language.md section 7's names."""
    if isinstance(layer, layers.MultiHeadAttention):
        out = []
        for part, dense in [
            ("query", layer._query_dense),
            ("key", layer._key_dense),
            ("value", layer._value_dense),
            ("output", layer._output_dense),
        ]:
            out.append((f"{fm_name}.{part}.kernel", dense.kernel))
            out.append((f"{fm_name}.{part}.bias", dense.bias))
        return out
    if isinstance(layer, (layers.SimpleRNN, layers.LSTM, layers.GRU)):
        cell = layer.cell
        return [
            (f"{fm_name}.kernel", cell.kernel),
            (f"{fm_name}.recurrent_kernel", cell.recurrent_kernel),
            (f"{fm_name}.bias", cell.bias),
        ]
    if isinstance(layer, layers.BatchNormalization):
        return [
            (f"{fm_name}.gamma", layer.gamma),
            (f"{fm_name}.beta", layer.beta),
            (f"{fm_name}.moving_mean", layer.moving_mean),
            (f"{fm_name}.moving_variance", layer.moving_variance),
        ]
    if isinstance(layer, (layers.LayerNormalization, layers.GroupNormalization)):
        return [(f"{fm_name}.gamma", layer.gamma), (f"{fm_name}.beta", layer.beta)]
    if isinstance(layer, layers.Embedding):
        return [(f"{fm_name}.embeddings", layer.embeddings)]
    if keras_hub is not None and isinstance(layer, keras_hub.layers.PositionEmbedding):
        return [(f"{fm_name}.embeddings", layer.position_embeddings)]
    if isinstance(layer, (layers.Dense, layers.Conv1D, layers.Conv2D)):
        out = [(f"{fm_name}.kernel", layer.kernel)]
        if layer.bias is not None:
            out.append((f"{fm_name}.bias", layer.bias))
        return out
    raise TypeError(f"no parameter layout for {type(layer).__name__}")


def initial_value(rng: np.random.Generator, name: str, shape: tuple) -> np.ndarray:
    """A seeded draw whose scale keeps activations of order one (not a Keras initialiser)."""
    tensor = name.rsplit(".", 1)[1]
    if tensor in ("kernel", "recurrent_kernel"):
        if any(name.endswith(f".{p}.kernel") for p in ("query", "key", "value")):
            fan_in = shape[0]  # [D, heads, key_dim]
        else:
            fan_in = int(np.prod(shape[:-1]))
        s = np.sqrt(3.0 / fan_in)
        return rng.uniform(-s, s, shape)
    if tensor == "embeddings":
        return rng.uniform(-1.0, 1.0, shape)
    if tensor in ("bias", "beta"):
        return rng.uniform(-0.2, 0.2, shape)
    if tensor == "gamma":
        return rng.uniform(0.5, 1.5, shape)
    if tensor == "moving_mean":
        return rng.uniform(-0.5, 0.5, shape)
    if tensor == "moving_variance":
        return rng.uniform(0.5, 1.5, shape)
    raise ValueError(name)


def seed_of(name: str) -> int:
    return zlib.crc32(name.encode())


def make_inputs(case: Case, rng) -> dict[str, np.ndarray]:
    xs = {}
    for name, (shape, kind) in case.inputs.items():
        full = (case.batch, *shape)
        if kind == "f32":
            xs[name] = rng.normal(0.0, 1.0, full).astype(np.float32)
        else:
            _, vocab = kind
            xs[name] = rng.integers(0, vocab, full).astype(np.int32)
    return xs


def make_targets(loss: Loss, out_shape: tuple, rng) -> np.ndarray:
    if loss.target == "regression":
        return (rng.normal(0.0, 1.0, out_shape) * loss.target_scale).astype(np.float32)
    if loss.target == "binary":
        return rng.integers(0, 2, out_shape).astype(np.float32)
    classes = out_shape[-1]
    if loss.target == "sparse":
        return rng.integers(0, classes, out_shape[:-1]).astype(np.int32)
    if loss.soft_labels:
        raw = rng.uniform(0.0, 1.0, out_shape)
        return (raw / raw.sum(axis=-1, keepdims=True)).astype(np.float32)
    return np.eye(classes, dtype=np.float32)[rng.integers(0, classes, out_shape[:-1])]


def build_model(case: Case, floatx: str):
    keras.config.set_floatx(floatx)
    keras.utils.clear_session()
    reg = Registry()
    ins = {}
    for name, (shape, kind) in case.inputs.items():
        dtype = floatx if kind == "f32" else "int32"
        ins[name] = keras.Input(shape=tuple(shape), dtype=dtype, name=name)
    out = case.build(reg, ins)
    model_in = ins if len(ins) > 1 else next(iter(ins.values()))
    model = keras.Model(model_in, out)
    params = [p for fm_name, layer in reg.layers for p in layer_params(fm_name, layer)]
    names = [n for n, _ in params]
    assert len(set(names)) == len(names), f"{case.name}: duplicate parameter names {names}"
    return model, params


def feed(case: Case, xs: dict[str, np.ndarray], floatx: str):
    cast = {k: (v.astype(floatx) if v.dtype == np.float32 else v) for k, v in xs.items()}
    return cast if len(cast) > 1 else next(iter(cast.values()))


def to_numpy(t) -> np.ndarray:
    if isinstance(t, tf.IndexedSlices):
        t = tf.convert_to_tensor(t)
    return np.asarray(t)


def run_case(case: Case, floatx: str, init: dict, xs: dict, ys) -> tuple[dict, dict]:
    """Runs the case in Keras; returns the reference tensors and facts for meta.json."""
    model, params = build_model(case, floatx)
    by_id = {id(v): n for n, v in params}

    def reset():
        for n, v in params:
            v.assign(init[n].astype(floatx))

    reset()
    multi_out = isinstance(case.loss, dict)
    if multi_out:
        losses = {k: l.make() for k, l in case.loss.items()}
    else:
        losses = case.loss.make()
    opt = case.opt.make()
    model.compile(optimizer=opt, loss=losses, loss_weights=case.loss_weights)
    x = feed(case, xs, floatx)
    if multi_out:
        y = {k: (v.astype(floatx) if v.dtype == np.float32 else v) for k, v in ys.items()}
    else:
        y = ys.astype(floatx) if ys.dtype == np.float32 else ys

    out = {}
    pred = model(x, training=False)
    if isinstance(pred, dict):
        for k, v in pred.items():
            out[f"output/{k}"] = to_numpy(v)
    else:
        out["output"] = to_numpy(pred)
    facts = {}
    if not case.training:
        return out, facts

    trainable = model.trainable_variables
    unnamed = [
        v.path for v in model.variables if id(v) not in by_id and "seed_generator" not in v.path
    ]
    assert not unnamed, f"{case.name}: Keras variables without an fm name: {unnamed}"

    @tf.function
    def loss_and_grads():
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            loss = model.compute_loss(x=x, y=y, y_pred=y_pred, training=True)
        return loss, tape.gradient(loss, trainable)

    loss, grads = loss_and_grads()
    out["loss"] = to_numpy(loss).reshape(())  # Keras returns shape [1] here
    for v, g in zip(trainable, grads):
        assert g is not None, f"{case.name}: no gradient for {by_id[id(v)]}"
        out[f"grad/{by_id[id(v)]}"] = to_numpy(g)

    # Three real Keras training steps from the initial weights (BatchNorm's moving statistics
    # were moved by the training-mode pass above, so everything is reset first).
    reset()
    step_losses = []
    for _ in range(STEPS):
        logs = model.train_on_batch(x, y, return_dict=True)
        step_losses.append(float(logs["loss"]))
    facts["train_on_batch_losses"] = step_losses
    # The first step's loss is the loss at the initial weights: a check that the GradientTape
    # computation above is the loss Keras trains on.
    first = float(out["loss"])
    assert abs(step_losses[0] - first) <= 1e-5 * max(abs(first), 1), (case.name, step_losses[0], first)
    assert int(opt.iterations.numpy()) == STEPS

    for n, v in params:
        out[f"step{STEPS}/{n}"] = to_numpy(v)
    for v in trainable:
        for slot, attr in case.opt.slots:
            slot_vars = getattr(opt, attr)
            out[f"step{STEPS}/opt/{by_id[id(v)]}/{slot}"] = to_numpy(slot_vars[opt._get_variable_index(v)])
    return out, facts


def fm_train_section(case: Case) -> str:
    if isinstance(case.loss, dict):
        loss = "{ " + ", ".join(f"{k}: {l.fm}" for k, l in case.loss.items()) + " }"
    else:
        loss = case.loss.fm
    lines = [f"    loss: {loss}"]
    if case.loss_weights:
        lines.append(
            "    loss_weights: { " + ", ".join(f"{k}: {num(w)}" for k, w in case.loss_weights.items()) + " }"
        )
    lines += [f"    optimizer: {case.opt.fm}", f"    batch_size: {case.batch}", "    shuffle: false"]
    return "train {\n" + "\n".join(lines) + "\n}\n"


def save_npy_or_npz(path_stem: Path, arrays: dict[str, np.ndarray]):
    if len(arrays) == 1:
        np.save(path_stem.with_suffix(".npy"), next(iter(arrays.values())))
    else:
        np.savez(path_stem.with_suffix(".npz"), **arrays)


def versions() -> dict:
    return {
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "tensorflow": tf.__version__,
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
    }


def generate(case: Case, out_root: Path):
    rng = np.random.default_rng(seed_of(case.name))
    # Shapes come from a float32 build; values are drawn in the fm naming order.
    model, params = build_model(case, "float32")
    init = {n: initial_value(rng, n, tuple(v.shape)).astype(np.float32) for n, v in params}
    xs = make_inputs(case, rng)
    if isinstance(model.output, dict):
        out_shapes = {k: (case.batch, *t.shape[1:]) for k, t in model.output.items()}
        ys = {k: make_targets(case.loss[k], out_shapes[k], rng) for k in case.loss}
    else:
        out_shapes = {"": (case.batch, *model.output.shape[1:])}
        ys = make_targets(case.loss, out_shapes[""], rng)

    ref32, facts = run_case(case, "float32", init, xs, ys)
    ref64, _ = run_case(case, "float64", init, xs, ys)
    keras.config.set_floatx("float32")

    # Relative deviation of the f32 reference from the f64 computation, on the Rust test's scale.
    deviation = {}
    for k, a in ref32.items():
        b = ref64[k]
        deviation[k] = float(np.max(np.abs(a.astype(np.float64) - b) / np.maximum(np.abs(b), 1.0)))
    worst_key = max(deviation, key=deviation.get)
    worst = deviation[worst_key]

    d = out_root / case.name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    (d / "model.fm").write_text(
        f"// Reference case `{case.name}` (generated by tests/reference/gen.py): {case.desc}.\n"
        + case.fm_model
        + "\n\n"
        + fm_train_section(case)
    )
    safetensors.numpy.save_file(init, str(d / "init.safetensors"))
    save_npy_or_npz(d / "x", xs)
    save_npy_or_npz(d / "y", ys if isinstance(ys, dict) else {"y": ys})
    expected = {k: np.array(v, dtype=np.float32, order="C") for k, v in ref32.items()}  # keeps 0-d
    safetensors.numpy.save_file(expected, str(d / "expected.safetensors"))

    meta = {
        "name": case.name,
        "description": case.desc,
        "versions": versions(),
        "seed": seed_of(case.name),
        "batch": case.batch,
        "inputs": {
            n: {"shape": list(s), "dtype": "f32" if k == "f32" else "i32"}
            for n, (s, k) in case.inputs.items()
        },
        "outputs": {k or "output": list(s[1:]) for k, s in out_shapes.items()},
        "loss": ({k: l.fm for k, l in case.loss.items()} if isinstance(case.loss, dict) else case.loss.fm),
        "loss_weights": case.loss_weights,
        "optimizer": case.opt.fm,
        "optimizer_slots": [s for s, _ in case.opt.slots],
        "steps": STEPS if case.training else 0,
        "training_numbers": case.training,
        "parameters": [n for n, _ in params],
        "trainable": [n for n, v in params if v.trainable],
        "tolerance": TOLERANCE,
        "f32_vs_f64_max_relative_deviation": {"value": worst, "key": worst_key},
        **facts,
        "notes": case.notes,
    }
    if worst > TOLERANCE / 4:
        # A case whose float32 reference is itself this far from float64 cannot be held to the
        # default tolerance: suggest one with a safety factor.
        meta["suggested_tolerance"] = float(f"{4 * worst:.1g}")
        meta["notes"] = case.notes + [
            f"numerically sensitive: f32 vs f64 deviation {worst:.2e} at {worst_key}"
        ]
    (d / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    for f in d.iterdir():
        f.chmod(0o644)  # safetensors writes 0600
    return meta


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="generate only the cases whose name contains this")
    ap.add_argument("--out", default=str(HERE / "cases"), help="output directory")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    args = ap.parse_args()
    names = [c.name for c in CASES]
    assert len(set(names)) == len(names), "duplicate case names"
    if args.list:
        for c in CASES:
            print(f"{c.name}\t{c.desc}")
        return
    keras.utils.set_random_seed(0)
    out_root = Path(args.out)
    out_root.mkdir(parents=True, exist_ok=True)
    selected = [c for c in CASES if not args.only or args.only in c.name]
    for c in selected:
        meta = generate(c, out_root)
        dev = meta["f32_vs_f64_max_relative_deviation"]
        flag = "  SENSITIVE" if "suggested_tolerance" in meta else ""
        print(f"{c.name:32s} f32-vs-f64 {dev['value']:.1e} ({dev['key']}){flag}", flush=True)
    print(f"{len(selected)} cases written to {out_root}", file=sys.stderr)


if __name__ == "__main__":
    main()
