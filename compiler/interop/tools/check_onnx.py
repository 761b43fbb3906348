#!/usr/bin/env python3
"""Checks `fmc export` against ONNX itself (not part of the tests; needs `pip install onnx
onnxruntime numpy`):

    python3 compiler/interop/tools/check_onnx.py MODEL.fm WEIGHTS.safetensors INPUT.npy [--fmc PATH]

exports MODEL.fm with WEIGHTS, runs `onnx.checker.check_model(full_check=True)` on the result,
runs it in onnxruntime on INPUT.npy or INPUT.npz (raw inputs, as `fmc predict --input` takes them; an .npz holds one array per input name, sampled inputs included) and compares
with `fmc predict`, printing the largest absolute and relative difference per output. Exit 1 when
a relative difference (|a - b| / max(|b|, 1e-3)) exceeds --rtol (default 1e-5).
"""
import argparse, os, subprocess, sys, tempfile

import numpy as np
import onnx
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("weights")
    ap.add_argument("input")
    ap.add_argument("--fmc", default="target/release/fmc")
    ap.add_argument("--rtol", type=float, default=1e-5)
    ap.add_argument("--backend", default="jit")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "model.onnx")
        subprocess.run([a.fmc, "export", a.model, "--weights", a.weights, "-o", path, "-q"], check=True)
        m = onnx.load(path)
        onnx.checker.check_model(m, full_check=True)
        data = np.load(a.input)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        feed = {}
        for inp in sess.get_inputs():
            # An .npz holds one array per input name (as `fmc predict` takes it).
            x = data[inp.name] if a.input.endswith(".npz") else data
            # fm accepts samples without the input's trailing 1-dimensions; ONNX needs them.
            x = x.reshape((x.shape[0], *inp.shape[1:]))
            feed[inp.name] = x.astype(np.float32 if "float" in inp.type else np.int32)
        got = sess.run(None, feed)
        out = os.path.join(d, "fm.npy")
        subprocess.run([a.fmc, "predict", a.model, "--weights", a.weights, "--input", a.input,
                        "-o", out, "--backend", a.backend, "-q"], check=True)
        outs = [o.name for o in sess.get_outputs()]
        ok = True
        for k, name in enumerate(outs):
            fm = np.load(out if len(outs) == 1 else out[:-4] + f".{name}.npy")
            diff = np.abs(got[k] - fm)
            rel = (diff / np.maximum(np.abs(fm), 1e-3)).max()
            print(f"{a.model}: output {name} {got[k].shape}: onnx checker ok, "
                  f"max |ort - fm| = {diff.max():.3g}, max relative = {rel:.3g}")
            ok &= bool(rel <= a.rtol)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
