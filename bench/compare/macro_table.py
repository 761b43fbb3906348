"""Issue 10's Markdown table from bench/macro_table.sh's results directory: per model, mode and
batch, the median over repeats of each backend's time per call (wall and CPU), and the ratios
of the emitted Rust (`model!`) to the JIT and to PyTorch by CPU time (below 1: model! is faster).

    python3 bench/compare/macro_table.py target/bench-macro
"""

import json
import os
import statistics
import sys

MODELS = {"mnist_mlp": "MNIST MLP", "mnist_cnn": "MNIST CNN"}
ROWS = [("predict", 1), ("predict", 128), ("train", 32), ("train", 128)]


def main():
    out = sys.argv[1]
    got = {}
    for name in ("fm.jsonl", "torch.jsonl"):
        path = os.path.join(out, name)
        if not os.path.exists(path):
            continue
        for line in open(path):
            r = json.loads(line)
            who = r["backend"] if r["framework"] == "fm" else "torch"
            key = (r["model"], r["mode"], r["batch"], who)
            got.setdefault(key, []).append((r["ms_per_step"], r.get("cpu_ms_per_step")))

    def med(key, k):
        xs = [x[k] for x in got.get(key, []) if x[k] is not None]
        return statistics.median(xs) if xs else None

    def cell(key):
        wall, cpu = med(key, 0), med(key, 1)
        if wall is None:
            return "-"
        return f"{wall:.3f} ({cpu:.3f})" if cpu is not None else f"{wall:.3f}"

    def ratio(a, b):
        return f"{a / b:.2f}" if a is not None and b else "-"

    print("| model | step | batch | model! ms (CPU) | JIT ms (CPU) | PyTorch ms (CPU) "
          "| model! / JIT | model! / PyTorch |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for model, label in MODELS.items():
        for mode, batch in ROWS:
            keys = {who: (model, mode, batch, who) for who in ("macro", "jit", "torch")}
            m, j, t = (med(keys[w], 1) for w in ("macro", "jit", "torch"))
            print(f"| {label} | {mode} | {batch} | {cell(keys['macro'])} | {cell(keys['jit'])} "
                  f"| {cell(keys['torch'])} | {ratio(m, j)} | {ratio(m, t)} |")
    reps = max((len(v) for v in got.values()), default=0)
    print(f"\nMedians of {reps} repeats; ratios by CPU time.")
    for name in ("load.txt", "build.txt"):
        path = os.path.join(out, name)
        if os.path.exists(path):
            print()
            print(open(path).read().rstrip())


if __name__ == "__main__":
    main()
