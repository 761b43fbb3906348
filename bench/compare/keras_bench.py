"""Keras 3 (TensorFlow backend) train-step and predict throughput of fm's example models.

    /work/venv/bin/python bench/compare/keras_bench.py [--threads 1] [--models ...]

Prints one JSON line per (model, batch, mode), in fm-bench's format. The timed train step is
`model.train_on_batch(x, y)` (forward, sparse categorical cross-entropy, backward, Adam update in
Keras' compiled tf.function, no metrics, as fm's step); predict is `model.predict_on_batch(x)`.
Keras' default `jit_compile="auto"` does not use XLA on a CPU-only machine, so neither do we.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import MODELS, batches, median_seconds, parse_args, report, synthetic_batch  # noqa: E402


def build(name, keras):
    L = keras.layers
    shape, _ = MODELS[name]
    if name in ("digits_mlp", "mnist_mlp"):
        layers = [L.Flatten(), L.Dense(128, activation="relu"), L.Dense(10, activation="softmax")]
    elif name == "digits_cnn":
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
    elif name == "mnist_cnn":
        layers = [
            L.Conv2D(32, 3, activation="relu"),
            L.MaxPooling2D(2),
            L.Conv2D(64, 3, activation="relu"),
            L.MaxPooling2D(2),
            L.Conv2D(64, 3, activation="relu"),
            L.Flatten(),
            L.Dense(64, activation="relu"),
            L.Dense(10, activation="softmax"),
        ]
    else:
        raise ValueError(name)
    model = keras.Sequential([keras.Input(shape), *layers])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    return model


def main():
    args = parse_args(__doc__)
    import tensorflow as tf

    # Must happen before TensorFlow runs anything.
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    keras.utils.set_random_seed(0)
    backend = f"keras-{keras.__version__}/tf-{tf.__version__}"
    for name in args.models:
        for batch in batches(args, name):
            x, y = synthetic_batch(name, batch)
            model = build(name, keras)
            for mode in args.modes:
                if mode == "train":
                    call = lambda: model.train_on_batch(x, y)  # noqa: E731
                elif mode == "predict":
                    call = lambda: model.predict_on_batch(x)  # noqa: E731
                else:
                    sys.exit(f"unknown mode {mode}")
                seconds = median_seconds(call, args.seconds, args.runs)
                report("keras", backend, args.threads, name, mode, batch, seconds)


if __name__ == "__main__":
    main()
