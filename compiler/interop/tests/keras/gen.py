#!/usr/bin/env python3
"""Writes the Keras reference models the import tests read (run by hand; needs
`pip install keras jax numpy`, Keras 3 on the JAX backend):

    python3 compiler/interop/tests/keras/gen.py [MODEL...]

For each model: NAME.keras (Keras 3's own `model.save`), NAME.json (`model.to_json()`), and
NAME.npz with `x` (inputs; several inputs as `x_<input name>`) and `y` (Keras's predictions).
Weights are Keras's seeded initial values with BatchNorm statistics set to random values, so the
moving statistics matter; nothing is trained.
"""
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
import keras
import numpy as np
from keras import layers

here = os.path.dirname(os.path.abspath(__file__))
keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)


def mnist_mlp():
    # The seeds' MNIST MLP (language.md section 1).
    return keras.Sequential(
        [keras.Input((28, 28)), layers.Flatten(), layers.Dense(128, activation="relu"),
         layers.Dense(10, activation="softmax")],
        name="mnist_mlp",
    )


def mnist_cnn():
    # The seeds' MNIST CNN (language.md section 1).
    return keras.Sequential(
        [keras.Input((28, 28, 1)),
         layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(2),
         layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(2),
         layers.Conv2D(64, 3, activation="relu"), layers.Flatten(),
         layers.Dense(64, activation="relu"), layers.Dense(10, activation="softmax")],
        name="mnist_cnn",
    )


def functional_mix():
    # A functional model with a residual add, BatchNorm, pooling with `same` padding, a
    # concatenation of two branches and recurrent layers.
    image = keras.Input((12, 12, 3), name="image")
    seq = keras.Input((7, 5), name="seq")
    h = layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(image)
    h = layers.BatchNormalization(name="bn")(h)
    h = layers.Activation("relu")(h)
    r = layers.Conv2D(8, (3, 1), padding="same", name="res")(h)
    h = layers.Add()([h, r])
    h = layers.AveragePooling2D(2, padding="same")(h)
    h = layers.GlobalAveragePooling2D()(h)
    s = layers.LSTM(6, return_sequences=True, name="lstm")(seq)
    s = layers.GRU(4, name="gru")(s)
    z = layers.Concatenate()([h, s])
    z = layers.Dropout(0.5)(z)
    out = layers.Dense(3, activation="softmax", name="head")(z)
    return keras.Model([image, seq], out, name="functional_mix")


def nested_shared():
    # Nested models (a Sequential called on two inputs, so its weights are shared; a Functional
    # model inside) and a layer called twice.
    left = keras.Input((6,), name="left")
    right = keras.Input((6,), name="right")
    encoder = keras.Sequential(
        [keras.Input((6,)), layers.Dense(8, activation="relu"), layers.BatchNormalization(),
         layers.Dense(5)],
        name="encoder",
    )
    shared = layers.Dense(4, activation="tanh", name="shared")
    a = shared(encoder(left))
    b = shared(encoder(right))
    x = keras.Input((4,))
    head = keras.Model(
        x, layers.Add()([layers.Dense(3, name="inner")(x), layers.Dense(3, name="skip")(x)]),
        name="head",
    )
    out = layers.Activation("softmax")(head(layers.Subtract()([a, b])))
    return keras.Model([left, right], out, name="nested_shared")


def sequential_nested():
    # A Sequential inside a Sequential, the inner one without an Input of its own.
    block = keras.Sequential(
        [layers.Conv2D(4, 3, padding="same", activation="relu"), layers.MaxPooling2D(2)],
        name="conv_block",
    )
    return keras.Sequential(
        [keras.Input((8, 8, 1)), block, layers.Flatten(), layers.Dense(3, activation="softmax")],
        name="sequential_nested",
    )


def all_layers(model):
    """The model's layers, those of nested models included."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from all_layers(layer)


ALL = [(mnist_mlp, 4), (mnist_cnn, 3), (functional_mix, 4), (nested_shared, 5),
       (sequential_nested, 3)]
# `gen.py NAME...` rewrites only those models (a .keras zip differs from run to run).
wanted = set(sys.argv[1:])
for build, n in ALL:
    if wanted and build.__name__ not in wanted:
        continue
    model = build()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    for layer in all_layers(model):
        if isinstance(layer, layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, b.shape),
                               rng.normal(0, 0.2, m.shape), rng.uniform(0.5, 1.5, v.shape)])
    xs = [rng.uniform(0, 1, (n, *i.shape[1:])).astype(np.float32) for i in model.inputs]
    y = model.predict(xs if len(xs) > 1 else xs[0], verbose=0)
    model.save(os.path.join(here, f"{model.name}.keras"))
    with open(os.path.join(here, f"{model.name}.json"), "w") as f:
        f.write(model.to_json())
    arrays = {"y": y}
    if len(xs) == 1:
        arrays["x"] = xs[0]
    else:
        for i, x in zip(model.inputs, xs):
            arrays["x_" + i.name] = x
    np.savez(os.path.join(here, f"{model.name}.npz"), **arrays)
    print(model.name, y.shape, f"keras {keras.__version__}")

# A damaged file for the bad-input tests: sequential_nested.keras whose model.weights.h5 lacks
# the last Dense layer's bias (`layers/dense/vars/1`), written again by h5py.
if not wanted or "missing_dataset" in wanted:
    import io
    import zipfile

    import h5py

    src = zipfile.ZipFile(os.path.join(here, "sequential_nested.keras"))
    buf = io.BytesIO(src.read("model.weights.h5"))
    with h5py.File(buf, "r+") as h5:
        del h5["layers/dense/vars/1"]
    with zipfile.ZipFile(os.path.join(here, "missing_dataset.keras"), "w") as out:
        for item in src.infolist():
            data = buf.getvalue() if item.filename == "model.weights.h5" else src.read(item)
            out.writestr(item, data)
    print("missing_dataset.keras: layers/dense/vars/1 removed")
