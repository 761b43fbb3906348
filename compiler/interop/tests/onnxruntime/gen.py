#!/usr/bin/env python3
"""Writes the onnxruntime references that `tests/onnxruntime.rs` reads (run by hand after a
change to `fmc export`; the tests themselves never need Python). Needs a release build of fmc
and `pip install onnx==1.23.2 onnxruntime==1.32.0 numpy safetensors`:

    python3 compiler/interop/tests/onnxruntime/gen.py [--fmc target/release/fmc]

For every example model that `fmc export` accepts (`examples/*.fm`), and the models beside
this script:
1. weights: `fmc train` for a few steps (so BatchNorm's moving statistics are no longer 0 and
   1), optimizer state dropped -> NAME.safetensors (the data transforms stay in its metadata);
2. `fmc export` with those weights, then `onnx.checker.check_model(full_check=True)`;
3. seeded random inputs in the model's raw input range -> NAME.x.npz (one array per ONNX input);
4. onnxruntime's outputs on them -> NAME.ort.npz (one array per ONNX output);
5. `fmc predict` on the same inputs, compared with onnxruntime; the largest differences and
   the versions used go to MANIFEST.txt.
"""
import argparse, glob, os, subprocess, sys, tempfile

import numpy as np
import onnx
import onnxruntime as ort
from safetensors import safe_open
from safetensors.numpy import save_file

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.normpath(os.path.join(here, "../../../.."))
# Training data for examples whose own data files are not shipped with the repository.
# (shared/ beside the clone, as in CI, or the machine's /work/shared.)
MNIST = next((p for p in [os.path.join(root, "../shared/data/mnist10k"), "/work/shared/data/mnist10k"]
              if os.path.isdir(p)), "shared/data/mnist10k")
EXTRA_DATA = {
    "mnist_mlp": ["--x", f"{MNIST}/mnist10k-images-idx3-ubyte.gz", "--y", f"{MNIST}/mnist10k-labels-idx1-ubyte.gz"],
    "mnist_cnn": ["--x", f"{MNIST}/mnist10k-images-idx3-ubyte.gz", "--y", f"{MNIST}/mnist10k-labels-idx1-ubyte.gz"],
}
# Examples that name no data of their own train on seeded random data: (inputs, targets).
SYNTHETIC = {
    "binary_classifier": lambda r: (r.uniform(0, 1, (64, 57)), r.integers(0, 2, (64, 1)).astype(float)),
    "linear_regression": lambda r: (r.normal(0, 1, (64, 13)), r.normal(0, 1, (64, 1))),
    "lstm_sequence": lambda r: (r.normal(0, 1, (32, 50, 8)), r.integers(0, 5, (32,))),
    "resnet_tiny": lambda r: (r.uniform(0, 1, (16, 32, 32, 3)), r.integers(0, 10, (16,))),
    "groupnorm_upsampling": lambda r: (r.normal(0, 1, (16, 6, 6, 4)), r.normal(0, 1, (16, 6, 18, 4))),
    "position_embedding": lambda r: (r.normal(0, 1, (16, 5, 3)), r.normal(0, 1, (16, 2))),
    "text_transformer": lambda r: (r.integers(0, 5000, (64, 64)), r.integers(0, 2, (64,))),
    "attention": lambda r: (r.normal(0, 1, (16, 4, 6)), r.normal(0, 1, (16, 2))),
}
STEPS = 3
SAMPLES = 6


def run(*args):
    return subprocess.run(list(args), check=True, capture_output=True, text=True)


def same_weights(path, tensors, meta):
    """Whether `path` already holds these tensors and metadata (the file is then left as it is:
    safetensors orders the metadata differently from run to run)."""
    if not os.path.exists(path):
        return False
    with safe_open(path, "np") as f:
        return (f.metadata() == meta and set(f.keys()) == set(tensors)
                and all(np.array_equal(f.get_tensor(k), v) for k, v in tensors.items()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fmc", default=os.path.join(root, "target/release/fmc"))
    a = ap.parse_args()
    fmc = a.fmc
    rng = np.random.default_rng(17)
    manifest = [
        f"onnx {onnx.__version__}, onnxruntime {ort.__version__}, numpy {np.__version__}; "
        f"{STEPS} training steps, {SAMPLES} samples per model",
        "model: onnx checker, max |onnxruntime - fmc predict (jit)| per output",
    ]
    # The examples, and the models beside this script (layers no example uses).
    models = sorted(glob.glob(os.path.join(root, "examples/*.fm"))) + sorted(glob.glob(os.path.join(here, "*.fm")))
    for fm in models:
        name = os.path.basename(fm)[:-3]
        with tempfile.TemporaryDirectory() as d:
            w = os.path.join(d, "w.safetensors")
            extra = EXTRA_DATA.get(name, [])
            if name in SYNTHETIC:
                x, t = SYNTHETIC[name](rng)
                np.save(os.path.join(d, "x.npy"), x.astype(np.int32 if x.dtype.kind == "i" else np.float32))
                np.save(os.path.join(d, "y.npy"), t.astype(np.int32 if t.dtype.kind == "i" else np.float32))
                extra = ["--x", os.path.join(d, "x.npy"), "--y", os.path.join(d, "y.npy")]
            try:
                run(fmc, "train", fm, "--steps", str(STEPS), "--save", w, "--run-dir",
                    os.path.join(d, "run"), "-q", *extra)
            except subprocess.CalledProcessError as e:
                print(f"{name}: not trained ({e.stderr.strip().splitlines()[-1]})")
                continue
            path = os.path.join(d, "model.onnx")
            try:
                run(fmc, "export", fm, "--weights", w, "-o", path, "-q")
            except subprocess.CalledProcessError as e:
                print(f"{name}: not exported ({e.stderr.strip().splitlines()[0]})")
                manifest.append(f"{name}: not exported: {e.stderr.strip().splitlines()[0]}")
                continue
            # The weights without optimizer state, with the metadata (data transforms).
            with safe_open(w, "np") as f:
                meta = f.metadata()
                tensors = {k: f.get_tensor(k) for k in f.keys() if not k.startswith(("opt/", "lag/"))}
            weights = os.path.join(here, f"{name}.safetensors")
            if not same_weights(weights, tensors, meta):
                save_file(tensors, weights, metadata=meta)
            # Export again from the committed file: the model the references are for.
            run(fmc, "export", fm, "--weights", weights, "-o", path, "-q")
            onnx.checker.check_model(onnx.load(path), full_check=True)
            sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            feed = {}
            nodes = [n.name for n in onnx.load(path).graph.node]
            for inp in sess.get_inputs():
                shape = (SAMPLES, *inp.shape[1:])
                if "int" in inp.type:
                    feed[inp.name] = rng.integers(0, 5, shape).astype(np.int32)
                elif any(n.startswith(inp.name + "/transform/") for n in nodes):
                    # Raw pixels, as the data section's `scale(1 / 255)` expects (sampled
                    # inputs, such as a GAN's noise, are not transformed).
                    feed[inp.name] = rng.integers(0, 256, shape).astype(np.float32)
                else:
                    feed[inp.name] = rng.uniform(-1, 1, shape).astype(np.float32)
            got = sess.run(None, feed)
            outs = [o.name for o in sess.get_outputs()]
            np.savez(os.path.join(here, f"{name}.x.npz"), **feed)
            np.savez(os.path.join(here, f"{name}.ort.npz"), **dict(zip(outs, got)))
            # fmc predict takes the inputs without the trailing size-1 axes ONNX needs too.
            xin = os.path.join(here, f"{name}.x.npz")
            y = os.path.join(d, "fm.npy")
            try:
                run(fmc, "predict", fm, "--weights", weights, "--input", xin, "-o", y, "-q")
            except subprocess.CalledProcessError as e:
                line = f"{name}: checker ok; fmc predict refused the inputs ({e.stderr.strip()})"
                print(line)
                manifest.append(line)
                continue
            diffs = []
            for k, o in enumerate(outs):
                fmv = np.load(y if len(outs) == 1 else y[:-4] + f".{o}.npy")
                diffs.append(f"{o} {float(np.abs(got[k] - fmv.reshape(got[k].shape)).max()):.2g}")
            line = f"{name}: checker ok, {', '.join(diffs)}"
            print(line)
            manifest.append(line)
    with open(os.path.join(here, "MANIFEST.txt"), "w") as f:
        f.write("\n".join(manifest) + "\n")


if __name__ == "__main__":
    main()
