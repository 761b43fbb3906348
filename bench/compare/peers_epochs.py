"""Issue 11's peer measurements: PyTorch eager, Keras 3 (compiled tf.function step) and JAX
(jit) training the MNIST MLP and CNN over whole epochs of an IDX data set, the way a user would.

    python bench/compare/peers_epochs.py --framework torch --model mnist_cnn --batch 32 \
        --x X.idx --y Y.idx --threads 2 --epochs 3            # one JSON line per epoch
    python ... --steps 1                                      # start-up: stop after one step
    python ... --latency                                      # batch-1 predict latency

Every framework: inputs scaled by 1/255 in memory once, a fresh shuffle per epoch, batches
gathered by index, Adam(1e-3, eps 1e-7), sparse categorical cross-entropy on the softmax (fused
with it where the framework fuses), accuracy accumulated as fm's step computes it, flush-to-zero
for denormals where the framework has a switch (PyTorch; TensorFlow and XLA flush by default).
Samples per second of an epoch count its training steps only (no evaluation).
"""

import argparse
import gzip
import json
import os
import statistics
import sys
import time


def read_idx(path):
    import numpy as np

    raw = open(path, "rb").read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def parse():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--framework", choices=["torch", "keras", "jax"], required=True)
    p.add_argument("--model", choices=["mnist_mlp", "mnist_cnn"], required=True)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--x", required=True)
    p.add_argument("--y", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--steps", type=int, default=0, help="stop after this many steps (start-up)")
    p.add_argument("--latency", action="store_true", help="batch-1 predict latency instead")
    return p.parse_args()


def emit(args, backend, **fields):
    print(json.dumps({"framework": args.framework, "backend": backend, "model": args.model,
                      "batch": args.batch, "threads": args.threads, **fields}), flush=True)


def latency_of(call, seconds=2.0):
    """Median seconds of one call over `seconds` of calls (after a warm-up)."""
    for _ in range(20):
        call()
    times = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 50:
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def run_torch(args, x, y):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    backend = f"torch-{torch.__version__.split('+')[0]}"
    if args.model == "mnist_mlp":
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
        X = torch.from_numpy(x.reshape(-1, 28, 28))
    else:
        model = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3), nn.ReLU(), nn.Flatten(),
            nn.Linear(576, 64), nn.ReLU(), nn.Linear(64, 10))
        X = torch.from_numpy(x.reshape(-1, 1, 28, 28))  # NCHW, PyTorch's own layout
    Y = torch.from_numpy(y.astype("int64"))
    if args.latency:
        model.eval()
        one = X[:1].clone()
        with torch.inference_mode():
            emit(args, backend, latency_us=latency_of(lambda: torch.softmax(model(one), -1)) * 1e6)
        return
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    model.train()
    n, steps = len(X), 0
    for epoch in range(args.epochs):
        perm = torch.randperm(n)
        correct = torch.zeros((), dtype=torch.int64)
        start = time.perf_counter()
        for i in range(0, n, args.batch):
            idx = perm[i:i + args.batch]
            xb, yb = X[idx], Y[idx]
            opt.zero_grad(set_to_none=True)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            loss.backward()
            opt.step()
            correct += (logits.argmax(1) == yb).sum()
            steps += 1
            if args.steps and steps >= args.steps:
                loss.item()
                return
        loss = loss.item()
        seconds = time.perf_counter() - start
        emit(args, backend, epoch=epoch, seconds=seconds, samples_per_s=n / seconds,
             loss=loss, accuracy=int(correct) / n)


def keras_model(keras, name):
    L = keras.layers
    if name == "mnist_mlp":
        layers = [L.Flatten(), L.Dense(128, activation="relu"), L.Dense(10, activation="softmax")]
        shape = (28, 28)
    else:
        layers = [L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2),
                  L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(2),
                  L.Conv2D(64, 3, activation="relu"), L.Flatten(),
                  L.Dense(64, activation="relu"), L.Dense(10, activation="softmax")]
        shape = (28, 28, 1)
    model = keras.Sequential([keras.Input(shape), *layers])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model, shape


def run_keras(args, x, y):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    keras.utils.set_random_seed(0)
    backend = f"keras-{keras.__version__}/tf-{tf.__version__}"
    model, shape = keras_model(keras, args.model)
    X = x.reshape(-1, *shape)
    if args.latency:
        one = tf.constant(X[:1])
        call = tf.function(lambda t: model(t, training=False))
        emit(args, backend, latency_us=latency_of(lambda: call(one).numpy()) * 1e6)
        return
    if args.steps:
        model.fit(X[:args.batch * args.steps], y[:args.batch * args.steps],
                  batch_size=args.batch, epochs=1, verbose=0)
        return

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds = time.perf_counter() - self.start
            emit(args, backend, epoch=epoch, seconds=seconds, samples_per_s=len(X) / seconds,
                 loss=logs["loss"], accuracy=logs["accuracy"])

    model.fit(X, y, batch_size=args.batch, epochs=args.epochs, shuffle=True, verbose=0,
              callbacks=[Timer()])


def run_jax(args, x, y):
    os.environ.setdefault(
        "XLA_FLAGS",
        f"--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={args.threads}")
    import jax
    import jax.numpy as jnp
    import numpy as np

    backend = f"jax-{jax.__version__}"
    key = jax.random.PRNGKey(0)

    def glorot(key, shape, fan_in, fan_out):
        limit = (6.0 / (fan_in + fan_out)) ** 0.5
        return jax.random.uniform(key, shape, jnp.float32, -limit, limit)

    keys = jax.random.split(key, 8)
    if args.model == "mnist_mlp":
        params = {"w1": glorot(keys[0], (784, 128), 784, 128), "b1": jnp.zeros(128),
                  "w2": glorot(keys[1], (128, 10), 128, 10), "b2": jnp.zeros(10)}
        X = x.reshape(-1, 784)

        def forward(p, xb):
            h = jax.nn.relu(xb @ p["w1"] + p["b1"])
            return h @ p["w2"] + p["b2"]
    else:
        convs = [(1, 32), (32, 64), (64, 64)]
        params = {}
        for i, (cin, cout) in enumerate(convs):
            params[f"k{i}"] = glorot(keys[i], (3, 3, cin, cout), 9 * cin, 9 * cout)
            params[f"c{i}"] = jnp.zeros(cout)
        params["w1"] = glorot(keys[3], (576, 64), 576, 64)
        params["b1"] = jnp.zeros(64)
        params["w2"] = glorot(keys[4], (64, 10), 64, 10)
        params["b2"] = jnp.zeros(10)
        X = x.reshape(-1, 28, 28, 1)

        def conv(h, k, c):
            h = jax.lax.conv_general_dilated(h, k, (1, 1), "VALID",
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
            return jax.nn.relu(h + c)

        def pool(h):
            return jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1),
                                         "VALID")

        def forward(p, xb):
            h = pool(conv(xb, p["k0"], p["c0"]))
            h = pool(conv(h, p["k1"], p["c1"]))
            h = conv(h, p["k2"], p["c2"]).reshape(xb.shape[0], -1)
            h = jax.nn.relu(h @ p["w1"] + p["b1"])
            return h @ p["w2"] + p["b2"]

    def loss_fn(p, xb, yb):
        logits = forward(p, xb)
        loss = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), yb[:, None], 1))
        return loss, jnp.sum(jnp.argmax(logits, 1) == yb)

    b1, b2, eps, lr = 0.9, 0.999, 1e-7, 1e-3

    @jax.jit
    def step(p, m, v, t, xb, yb):
        (loss, correct), g = jax.value_and_grad(loss_fn, has_aux=True)(p, xb, yb)
        t = t + 1
        m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
        v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
        scale = lr * jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        p = jax.tree_util.tree_map(lambda p, m, v: p - scale * m / (jnp.sqrt(v) + eps), p, m, v)
        return p, m, v, t, loss, correct

    if args.latency:
        one = jnp.asarray(X[:1])
        predict = jax.jit(lambda p, xb: jax.nn.softmax(forward(p, xb)))
        emit(args, backend,
             latency_us=latency_of(lambda: predict(params, one).block_until_ready()) * 1e6)
        return
    m = jax.tree_util.tree_map(jnp.zeros_like, params)
    v = jax.tree_util.tree_map(jnp.zeros_like, params)
    t = jnp.zeros((), jnp.float32)
    rng = np.random.default_rng(0)
    n, steps = len(X), 0
    for epoch in range(args.epochs):
        perm = rng.permutation(n)
        correct = 0
        start = time.perf_counter()
        for i in range(0, n, args.batch):
            idx = perm[i:i + args.batch]
            params, m, v, t, loss, c = step(params, m, v, t, X[idx], y[idx])
            correct += c
            steps += 1
            if args.steps and steps >= args.steps:
                loss.block_until_ready()
                return
        loss = float(loss)
        seconds = time.perf_counter() - start
        emit(args, backend, epoch=epoch, seconds=seconds, samples_per_s=n / seconds, loss=loss,
             accuracy=int(correct) / n)


def main():
    args = parse()
    x = (read_idx(args.x).astype("float32") / 255.0).astype("float32")
    y = read_idx(args.y).astype("int32")
    {"torch": run_torch, "keras": run_keras, "jax": run_jax}[args.framework](args, x, y)


if __name__ == "__main__":
    sys.exit(main())
