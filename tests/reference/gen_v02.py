#!/usr/bin/env python3
"""Keras 3 reference cases for language 0.2 (language.md section 9), in cases_v02/.

The layout is cases/'s (README.md beside this file), with the same tolerance; what differs is
that each case is a hand-written Keras training step (GradientTape, as a Keras user writes a GAN
or a DQN) rather than `train_on_batch`:

- gan_two_steps: two `step`s with their own Adam optimizers and `update:` scopes; the second
  step's forward pass sees the discriminator the first step just changed (Keras' GAN
  `train_step` with two optimizers and two tapes);
- gan_step_schedules: the same with a `schedule:` in each step (Keras `ExponentialDecay` as
  each optimizer's learning rate, evaluated at that optimizer's `iterations`);
- objective_expression: `loss:` an expression over model values and declared targets, with
  `pick`, `huber`, `mean`, `sum`, `max`, `square`, `abs`, `softplus`, `log_sigmoid`, `dot`,
  `exp`, `clip`, `sqrt` and `stop_gradient`;
- shared_weights: one named block call run again on a second input (one Keras layer object
  called twice), trained with a named loss and SGD with momentum;
- lagged_ema / lagged_copy: a DQN-style target from a lagged copy of the Q-network's weights,
  `ema(0.9)` (Polyak averaging after every step) and `copy(every: 2 steps)` (refreshed after the
  second step, so the third step reads the refreshed copy).

expected.safetensors holds `output` (inference on x with the initial weights), `loss` (the
first step's loss; `loss/STEP` per step for several steps), and `step3/` every parameter,
optimizer slot (`opt/PARAM/m`, ...) and lagged tensor (`lag/CALL/PARAM`) after 3 steps.

Usage: /work/venv/bin/python tests/reference/gen_v02.py [--only SUBSTRING]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import gen  # noqa: E402  (sets the TensorFlow backend and deterministic ops)
from gen import np, tf, keras, layers, ops, safetensors  # noqa: E402

STEPS = gen.STEPS
TOLERANCE = gen.TOLERANCE


@dataclass
class Case:
    name: str
    desc: str
    fm: str
    # Input name -> per-sample shape (all f32); targets: name -> (shape, kind), kind "f32"
    # (normal), "binary" (f32 0 or 1) or (int, n) (i32 below n).
    inputs: dict[str, tuple]
    targets: dict[str, tuple]
    # Builds the Keras side: (params [(fm name, variable)], lags [(fm name, variable, of)],
    # forward(xs) -> output, steps [(name, optimizer, Opt, vars, loss(xs, ys))], after_step(k)).
    build: Callable
    batch: int = 8
    notes: list[str] = field(default_factory=list)


def dense(reg, name, units, activation=None):
    layer = layers.Dense(units, activation=activation)
    reg.append((name, layer))
    return layer


def params_of(reg):
    return [p for fm_name, layer in reg for p in gen.layer_params(fm_name, layer)]


def bce(p, target):
    """Keras' per-sample binary cross-entropy of probabilities `p` [B, 1] against a constant."""
    return keras.losses.binary_crossentropy(ops.full_like(p, target), p)


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------


def build_gan(ins):
    reg = []
    g1 = dense(reg, "g/dense", 6, lambda x: keras.activations.leaky_relu(x, negative_slope=0.2))
    g2 = dense(reg, "g/dense_1", 5, "sigmoid")
    d1 = dense(reg, "d/dense", 6, "tanh")
    d2 = dense(reg, "d/dense_1", 1, "sigmoid")
    gen_ = lambda z: g2(g1(z))  # noqa: E731
    disc = lambda x: d2(d1(x))  # noqa: E731
    gen_(ins["z"])
    disc(ins["real"])
    d_vars = [d1.kernel, d1.bias, d2.kernel, d2.bias]
    g_vars = [g1.kernel, g1.bias, g2.kernel, g2.bias]

    def disc_loss(xs, ys):
        p_real = disc(xs["real"])
        p_fake = disc(gen_(xs["z"]))
        return ops.mean(bce(p_real, 1.0) + bce(p_fake, 0.0))

    def gen_loss(xs, ys):
        return ops.mean(bce(disc(gen_(xs["z"])), 1.0))

    steps = [
        ("disc", gen.adam(lr=0.01, beta1=0.5), d_vars, disc_loss),
        ("gen", gen.adam(lr=0.02), g_vars, gen_loss),
    ]
    return params_of(reg), [], lambda xs: gen_(xs["z"]), steps, lambda k: None


GAN_FM = """version 0.2

block generator(z) {
    return z -> Dense(6, leaky_relu(alpha: 0.2)) -> Dense(5, sigmoid)
}

block discriminator(x) {
    return x -> Dense(6, tanh) -> Dense(1, sigmoid)
}

model gan_two_steps {
    input real: f32[5]
    input z: f32[3]
    let fake = generator(z, name: "g")
    let p_real = discriminator(real, name: "d")
    let p_fake = d(fake)
    output image = fake
}

train gan_two_steps {
    step disc {
        update: d
        loss: binary_crossentropy(p_real, 1) + binary_crossentropy(p_fake, 0)
        optimizer: Adam(lr: 0.01, beta1: 0.5)
    }
    step gen {
        update: g
        loss: binary_crossentropy(p_fake, 1)
        optimizer: Adam(lr: 0.02)
    }
    batch_size: 8
    shuffle: false
}
"""


def build_gan_schedules(ins):
    """The GAN of `build_gan` with each step's own learning-rate schedule (Keras's
    `ExponentialDecay` given to that step's optimizer, called with its `iterations`)."""
    params, lags, forward, steps, after = build_gan(ins)
    decay = keras.optimizers.schedules.ExponentialDecay
    slots = [("m", "_momentums"), ("v", "_velocities")]
    disc_opt = gen.Opt(
        "Adam(lr: 0.01, beta1: 0.5)",
        lambda: keras.optimizers.Adam(learning_rate=decay(0.01, 1, 0.5), beta_1=0.5),
        slots,
    )
    gen_opt = gen.Opt(
        "Adam(lr: 0.02)",
        lambda: keras.optimizers.Adam(learning_rate=decay(0.02, 2, 0.1, staircase=True)),
        slots,
    )
    (d_name, _, d_vars, d_loss), (g_name, _, g_vars, g_loss) = steps
    steps = [(d_name, disc_opt, d_vars, d_loss), (g_name, gen_opt, g_vars, g_loss)]
    return params, lags, forward, steps, after


GAN_SCHEDULES_FM = GAN_FM.replace("gan_two_steps", "gan_step_schedules").replace(
    "optimizer: Adam(lr: 0.01, beta1: 0.5)\n",
    "optimizer: Adam(lr: 0.01, beta1: 0.5)\n        schedule: Exponential(rate: 0.5, every: 1 steps)\n",
).replace(
    "optimizer: Adam(lr: 0.02)\n",
    "optimizer: Adam(lr: 0.02)\n        schedule: Exponential(rate: 0.1, every: 2 steps, staircase: true)\n",
)
assert GAN_SCHEDULES_FM.count("schedule:") == 2


def build_objective(ins):
    reg = []
    h1 = dense(reg, "dense", 5, "tanh")
    q1 = dense(reg, "dense_1", 3)
    q1(h1(ins["x"]))

    def loss(xs, ys):
        h = h1(xs["x"])
        q = q1(h)
        picked = ops.take_along_axis(q, ops.expand_dims(ys["action"], -1), axis=-1)
        per_sample = (
            keras.losses.huber(ops.expand_dims(ys["reward"], -1), picked, delta=1.0)
            + 0.1 * ops.mean(ops.square(h), axis=-1)
            + 0.05 * ops.sum(ops.softplus(q), axis=-1)
            - 0.2 * ops.log_sigmoid(ops.sum(h * ops.stop_gradient(h), axis=-1))
            + 0.1 * ops.max(ops.abs(q), axis=-1)
            + 0.05 * ops.sqrt(ops.sum(ops.exp(ops.clip(q, -1.0, 1.0)), axis=-1))
        )
        return ops.mean(per_sample)

    vars_ = [h1.kernel, h1.bias, q1.kernel, q1.bias]
    steps = [("", gen.adam(lr=0.01), vars_, loss)]
    return params_of(reg), [], lambda xs: q1(h1(xs["x"])), steps, lambda k: None


OBJECTIVE_FM = """version 0.2

model objective_expression {
    input x: f32[4]
    target action: i32[]
    target reward: f32[]
    let h = x -> Dense(5, tanh)
    let q = h -> Dense(3)
    output q_values = q
}

train objective_expression {
    loss: huber(pick(q, action), reward) + 0.1 * mean(square(h)) + 0.05 * sum(softplus(q)) - 0.2 * log_sigmoid(dot(h, stop_gradient(h))) + 0.1 * max(abs(q)) + 0.05 * sqrt(sum(exp(clip(q, -1, 1))))
    optimizer: Adam(lr: 0.01)
    batch_size: 8
    shuffle: false
}
"""


def build_shared(ins):
    reg = []
    e1 = dense(reg, "e/dense", 6, "tanh")
    e2 = dense(reg, "e/dense_1", 3)
    head = dense(reg, "dense", 1, "sigmoid")
    enc = lambda x: e2(e1(x))  # noqa: E731

    def forward(xs):
        d = enc(xs["a"]) - enc(xs["b"])
        return head(d * d)

    forward(ins)
    bce_loss = keras.losses.BinaryCrossentropy()

    def loss(xs, ys):
        return bce_loss(ys["same"], forward(xs))

    vars_ = [e1.kernel, e1.bias, e2.kernel, e2.bias, head.kernel, head.bias]
    steps = [("", gen.sgd(lr=0.1, momentum=0.9), vars_, loss)]
    return params_of(reg), [], forward, steps, lambda k: None


SHARED_FM = """version 0.2

block encoder(x) {
    return x -> Dense(6, tanh) -> Dense(3)
}

model shared_weights {
    input a: f32[4]
    input b: f32[4]
    let ea = encoder(a, name: "e")
    let eb = e(b)
    let diff = ea - eb
    output same = diff * diff -> Dense(1, sigmoid)
}

train shared_weights {
    loss: binary_crossentropy
    optimizer: SGD(lr: 0.1, momentum: 0.9)
    batch_size: 8
    shuffle: false
}
"""


def build_lagged(kind):
    def build(ins):
        reg = []
        q1 = dense(reg, "qn/dense", 6, "relu")
        q2 = dense(reg, "qn/dense_1", 3)
        # The lagged copy: two more layers of the same shapes, never trained.
        l1 = layers.Dense(6, activation="relu")
        l2 = layers.Dense(3)
        q2(q1(ins["state"]))
        l2(l1(ins["next_state"]))
        live = [q1.kernel, q1.bias, q2.kernel, q2.bias]
        lag = [l1.kernel, l1.bias, l2.kernel, l2.bias]
        names = ["qn/dense.kernel", "qn/dense.bias", "qn/dense_1.kernel", "qn/dense_1.bias"]
        lags = [(f"lag/qn/{n}", v, n) for n, v in zip(names, lag)]

        def loss(xs, ys):
            q = q2(q1(xs["state"]))
            q_next = l2(l1(xs["next_state"]))
            picked = ops.take_along_axis(q, ops.expand_dims(ys["action"], -1), axis=-1)
            target = ops.expand_dims(ys["reward"] + 0.9 * ops.max(q_next, axis=-1), -1)
            return ops.mean(keras.losses.mean_squared_error(target, picked))

        def after_step(k):
            for w_lag, w in zip(lag, live):
                if kind == "ema":
                    w_lag.assign(0.9 * w_lag + 0.1 * w)
                elif k % 2 == 0:
                    w_lag.assign(w)

        opt = gen.adam(lr=0.01) if kind == "ema" else gen.sgd(lr=0.1)
        steps = [("", opt, live, loss)]
        return params_of(reg), lags, lambda xs: q2(q1(xs["state"])), steps, after_step

    return build


def lagged_fm(name, weights, optimizer):
    return f"""version 0.2

block qnet(s) {{
    return s -> Dense(6, relu) -> Dense(3)
}}

model {name} {{
    input state: f32[4]
    input next_state: f32[4]
    target action: i32[]
    target reward: f32[]
    let q = qnet(state, name: "qn")
    let q_next = qn(next_state, weights: {weights})
    output q_values = q
}}

train {name} {{
    loss: mse(pick(q, action), reward + 0.9 * max(q_next))
    optimizer: {optimizer}
    batch_size: 8
    shuffle: false
}}
"""


CASES = [
    Case(
        "gan_two_steps",
        "a GAN's two optimizer steps per batch: disc (update d) then gen (update g), each with its own Adam",
        GAN_FM,
        {"real": (5,), "z": (3,)},
        {},
        build_gan,
    ),
    Case(
        "gan_step_schedules",
        "the GAN's two steps, each with its own schedule: Exponential(rate: 0.5, every: 1 steps) and "
        "Exponential(rate: 0.1, every: 2 steps, staircase: true) (Keras ExponentialDecay on each optimizer)",
        GAN_SCHEDULES_FM,
        {"real": (5,), "z": (3,)},
        {},
        build_gan_schedules,
    ),
    Case(
        "objective_expression",
        "an objective expression over model values and declared targets (pick, huber, mean, sum, max, "
        "square, abs, softplus, log_sigmoid, dot, exp, clip, sqrt, stop_gradient); Adam",
        OBJECTIVE_FM,
        {"x": (4,)},
        {"action": ((), (int, 3)), "reward": ((), "f32")},
        build_objective,
    ),
    Case(
        "shared_weights",
        "one named block call run again on a second input with the same weights; binary CE; SGD momentum",
        SHARED_FM,
        {"a": (4,), "b": (4,)},
        {"same": ((1,), "binary")},
        build_shared,
        notes=["`same` is the output's target (y.npy), not a declared target"],
    ),
    Case(
        "lagged_ema",
        "a DQN target from a lagged copy with weights: ema(0.9), updated after every step; Adam",
        lagged_fm("lagged_ema", "ema(0.9)", "Adam(lr: 0.01)"),
        {"state": (4,), "next_state": (4,)},
        {"action": ((), (int, 3)), "reward": ((), "f32")},
        build_lagged("ema"),
    ),
    Case(
        "lagged_copy",
        "a DQN target from a lagged copy with weights: copy(every: 2 steps), refreshed after step 2; SGD",
        lagged_fm("lagged_copy", "copy(every: 2 steps)", "SGD(lr: 0.1)"),
        {"state": (4,), "next_state": (4,)},
        {"action": ((), (int, 3)), "reward": ((), "f32")},
        build_lagged("copy"),
    ),
]


# --------------------------------------------------------------------------------------------
# Running a case
# --------------------------------------------------------------------------------------------


def make_data(case: Case, rng):
    xs = {n: rng.normal(0.0, 1.0, (case.batch, *s)).astype(np.float32) for n, s in case.inputs.items()}
    ys = {}
    for n, (shape, kind) in case.targets.items():
        full = (case.batch, *shape)
        if kind == "f32":
            ys[n] = rng.normal(0.0, 1.0, full).astype(np.float32)
        elif kind == "binary":
            ys[n] = rng.integers(0, 2, full).astype(np.float32)
        else:
            ys[n] = rng.integers(0, kind[1], full).astype(np.int32)
    return xs, ys


def run_case(case: Case, floatx: str, init: dict, xs: dict, ys: dict):
    keras.config.set_floatx(floatx)
    keras.utils.clear_session()
    ins = {n: keras.Input(shape=s, dtype=floatx, name=n) for n, s in case.inputs.items()}
    params, lags, forward, steps, after_step = case.build(ins)
    for n, v in params:
        v.assign(init[n].astype(floatx))
    by_name = dict(params)
    for _, v, of in lags:
        v.assign(by_name[of])
    cast = lambda d: {  # noqa: E731
        k: tf.constant(a.astype(floatx) if a.dtype == np.float32 else a) for k, a in d.items()
    }
    x, y = cast(xs), cast(ys)
    out = {"output": gen.to_numpy(forward(x))}

    opts = [(name, opt_spec, opt_spec.make(), vars_, loss) for name, opt_spec, vars_, loss in steps]
    losses = {}
    for k in range(1, STEPS + 1):
        for name, _, opt, vars_, loss in opts:
            with tf.GradientTape() as tape:
                value = loss(x, y)
            grads = tape.gradient(value, vars_)
            assert all(g is not None for g in grads), (case.name, name)
            opt.apply_gradients(zip(grads, vars_))
            if k == 1:
                losses[name] = gen.to_numpy(value).reshape(())
        after_step(k)
    for name, value in losses.items():
        out[f"loss/{name}" if name else "loss"] = value
    names = {id(v): n for n, v in params}
    for n, v in params:
        out[f"step{STEPS}/{n}"] = gen.to_numpy(v)
    for _, opt_spec, opt, vars_, _ in opts:
        assert int(opt.iterations.numpy()) == STEPS
        for v in vars_:
            for slot, attr in opt_spec.slots:
                slot_var = getattr(opt, attr)[opt._get_variable_index(v)]
                out[f"step{STEPS}/opt/{names[id(v)]}/{slot}"] = gen.to_numpy(slot_var)
    for n, v, _ in lags:
        out[f"step{STEPS}/{n}"] = gen.to_numpy(v)
    return out, init, params


def generate(case: Case, out_root: Path):
    rng = np.random.default_rng(gen.seed_of(case.name))
    # Parameters are drawn first (in fm naming order), then the data.
    keras.config.set_floatx("float32")
    keras.utils.clear_session()
    ins = {n: keras.Input(shape=s, name=n) for n, s in case.inputs.items()}
    params, lags, _, _, _ = case.build(ins)
    init = {n: gen.initial_value(rng, n, tuple(v.shape)).astype(np.float32) for n, v in params}
    # A lagged copy starts equal to the initial weights (language.md 9.5); init.safetensors
    # holds it too, as `fmc train --init` wants every state tensor of the model.
    lag_init = {n: init[of] for n, _, of in lags}
    xs, ys = make_data(case, rng)

    ref32, _, _ = run_case(case, "float32", init, xs, ys)
    ref64, _, _ = run_case(case, "float64", init, xs, ys)
    keras.config.set_floatx("float32")
    deviation = {
        k: float(np.max(np.abs(a.astype(np.float64) - ref64[k]) / np.maximum(np.abs(ref64[k]), 1.0)))
        for k, a in ref32.items()
    }
    worst_key = max(deviation, key=deviation.get)
    worst = deviation[worst_key]

    d = out_root / case.name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    (d / "model.fm").write_text(
        f"// Reference case `{case.name}` (generated by tests/reference/gen_v02.py): {case.desc}.\n" + case.fm
    )
    safetensors.numpy.save_file({**init, **lag_init}, str(d / "init.safetensors"))
    np.savez(d / "x.npz", **xs)
    if ys:
        np.savez(d / "y.npz", **ys)
    expected = {k: np.array(v, dtype=np.float32, order="C") for k, v in ref32.items()}
    safetensors.numpy.save_file(expected, str(d / "expected.safetensors"))
    meta = {
        "name": case.name,
        "description": case.desc,
        "versions": gen.versions(),
        "seed": gen.seed_of(case.name),
        "batch": case.batch,
        "inputs": {n: {"shape": list(s), "dtype": "f32"} for n, s in case.inputs.items()},
        "targets": {
            n: {"shape": list(s), "dtype": "i32" if isinstance(k, tuple) else "f32"}
            for n, (s, k) in case.targets.items()
        },
        "steps": STEPS,
        "parameters": list(init),
        "tolerance": TOLERANCE,
        "f32_vs_f64_max_relative_deviation": {"value": worst, "key": worst_key},
        "notes": case.notes,
    }
    if worst > TOLERANCE / 4:
        meta["suggested_tolerance"] = float(f"{4 * worst:.1g}")
        meta["tolerance"] = max(TOLERANCE, meta["suggested_tolerance"])
    (d / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    for f in d.iterdir():
        f.chmod(0o644)
    return meta


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="generate only the cases whose name contains this")
    ap.add_argument("--out", default=str(HERE / "cases_v02"), help="output directory")
    args = ap.parse_args()
    keras.utils.set_random_seed(0)
    out_root = Path(args.out)
    out_root.mkdir(parents=True, exist_ok=True)
    for c in [c for c in CASES if not args.only or args.only in c.name]:
        meta = generate(c, out_root)
        dev = meta["f32_vs_f64_max_relative_deviation"]
        print(f"{c.name:24s} f32-vs-f64 {dev['value']:.1e} ({dev['key']})", flush=True)


if __name__ == "__main__":
    main()
