"""Trains the Keras twins of examples/digits_mlp.fm and examples/digits_cnn.fm on the same data
and split as `fmc train` (the first 1437 digits train, the last 360 test; x scaled by 1/255;
Adam 1e-3, batch 32, shuffled each epoch) for several seeds and prints the test accuracy of
each, for the README's accuracy comparison. Runs on the CPU; nothing here is used by the tests.

    /work/venv/bin/python bench/compare/keras_digits_accuracy.py [--seeds 0 1 2]
"""

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def read_idx(name):
    with open(os.path.join(ROOT, "examples", "data", name), "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def build(name, keras):
    L = keras.layers
    if name == "digits_mlp":
        layers = [L.Flatten(), L.Dense(128, activation="relu"), L.Dense(10, activation="softmax")]
        shape = (8, 8)
    else:
        layers = [
            L.Conv2D(32, 3, activation="relu", padding="same"),
            L.Conv2D(64, 3, activation="relu", padding="same"),
            L.MaxPooling2D(2),
            L.Dropout(0.25),
            L.Conv2D(128, 3, activation="relu", padding="same"),
            L.GlobalAveragePooling2D(),
            L.Dropout(0.4),
            L.Dense(10, activation="softmax"),
        ]
        shape = (8, 8, 1)
    return keras.Sequential([keras.Input(shape), *layers]), shape


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--models", nargs="+", default=["digits_mlp", "digits_cnn"])
    args = ap.parse_args()
    import keras

    x = read_idx("digits-images-idx3-ubyte").astype("float32") / 255.0
    y = read_idx("digits-labels-idx1-ubyte").astype("int32")
    n_train = 1437
    epochs = {"digits_mlp": 20, "digits_cnn": 30}
    for name in args.models:
        for seed in args.seeds:
            keras.utils.set_random_seed(seed)
            model, shape = build(name, keras)
            xs = x.reshape((-1,) + shape)
            model.compile(
                optimizer=keras.optimizers.Adam(1e-3),
                loss="sparse_categorical_crossentropy",
                metrics=["accuracy"],
            )
            model.fit(xs[:n_train], y[:n_train], batch_size=32, epochs=epochs[name], verbose=0)
            loss, acc = model.evaluate(xs[n_train:], y[n_train:], verbose=0)
            print(f"keras {name} seed={seed} test_loss: {loss:.4f} - test_accuracy: {acc:.4f}", flush=True)


if __name__ == "__main__":
    main()
