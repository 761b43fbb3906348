#!/usr/bin/env python3
"""Writes ONNX's own backend node tests for the operators `fmc import` maps to fm layers into
cases/ (one folder per case: model.onnx and test_data_set_*/{input,output}_N.pb, the layout of
onnx/backend/test/data/node in ONNX's repository). The cases come from the `onnx` package's
generators (onnx.backend.test.case.node, which is what writes ONNX's committed node data), so
they are ONNX's, Apache-2.0 (LICENSE-onnx, NOTICE-onnx). Needs `pip install onnx==1.23.2`:

    python3 tests/onnx_node/select_cases.py

Run by hand; the tests read the committed cases/.
"""
import os
import shutil

import onnx
from onnx import numpy_helper
from onnx.backend.test.case import node

# The operators of issue 17's import list (and the layout operators between them).
OPS = [
    "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Conv", "MaxPool", "AveragePool",
    "GlobalAveragePool", "GlobalMaxPool", "BatchNormalization", "Relu", "Sigmoid", "Tanh",
    "LeakyRelu", "Elu", "Softplus", "Softmax", "LogSoftmax", "Gelu", "Flatten", "Reshape",
    "Concat", "LSTM", "GRU", "RNN", "Gather", "Identity", "Transpose", "Squeeze", "Unsqueeze",
    # fm 0.2's functions in expressions, and the normalisation and upsampling layers.
    "Neg", "Exp", "Log", "Abs", "Sqrt", "Clip", "ReduceSum", "ReduceMean", "ReduceMax",
    "ReduceMin", "LayerNormalization", "GroupNormalization", "Resize",
]
# Cases bigger than this (model plus data) are left out to keep the repository small.
MAX_BYTES = 30_000

here = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(here, "cases")
shutil.rmtree(out, ignore_errors=True)
os.makedirs(out)
kept = 0
# collect_testcases gathers every case once per process; cases are kept when all their nodes
# are in OPS, filed under the first of OPS that they use.
for case in sorted(node.collect_testcases(None), key=lambda c: c.name):
    model = case.model
    if case.kind != "node" or model is None:
        continue
    used = {n.op_type for n in model.graph.node}
    if not used or not used <= set(OPS):
        continue
    op = next(o for o in OPS if o in used)
    if True:
        blobs = [("model.onnx", model.SerializeToString())]
        # Sequence and optional inputs have no fm form.
        if any(not isinstance(x, __import__("numpy").ndarray) for ds in case.data_sets for part in ds for x in part):
            continue
        for i, (inputs, outputs) in enumerate(case.data_sets):
            d = f"test_data_set_{i}"
            for j, x in enumerate(inputs):
                blobs.append((f"{d}/input_{j}.pb", numpy_helper.from_array(x, model.graph.input[j].name).SerializeToString()))
            for j, y in enumerate(outputs):
                blobs.append((f"{d}/output_{j}.pb", numpy_helper.from_array(y, model.graph.output[j].name).SerializeToString()))
        if sum(len(b) for _, b in blobs) > MAX_BYTES:
            continue
        for name, b in blobs:
            p = os.path.join(out, case.name, name)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "wb") as f:
                f.write(b)
        with open(os.path.join(out, case.name, "op"), "w") as f:
            f.write(op + "\n")
        kept += 1
print(f"{kept} cases in {out} (onnx {onnx.__version__})")
