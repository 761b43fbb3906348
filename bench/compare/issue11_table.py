"""The table of `bench/issue11.sh` from its JSON lines: training throughput (median over the
epochs after the first), batch-1 latency, start-up and peak RSS, fm next to PyTorch, Keras and
JAX, with fm's ratio to the best peer and issue 11's target. Standard library only.

    python3 bench/compare/issue11_table.py train.jsonl other.jsonl
"""

import json
import statistics
import sys

PEERS = [("torch", "PyTorch"), ("keras", "Keras"), ("jax", "JAX")]
MODELS = {"mnist_mlp": "MLP 784-128-10", "mnist_cnn": "CNN 32-64-64, dense 64"}
TRAIN_TARGET = {("mnist_mlp", 32): 4, ("mnist_mlp", 128): 3, ("mnist_cnn", 32): 2,
                ("mnist_cnn", 128): 2}
LATENCY_TARGET_US = {"mnist_mlp": 5, "mnist_cnn": 60}
# Data set (60,000 x 784 f32) + 64 MB.
RSS_TARGET_MB = 60000 * 784 * 4 / 1e6 + 64


def rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.startswith("{")]


def fmt(v, digits=0):
    return "–" if v is None else f"{v:,.{digits}f}"


def main():
    train, other = rows(sys.argv[1]), rows(sys.argv[2])
    names = ["fm"] + [p for p, _ in PEERS]
    header = "| {} | fm | " + " | ".join(n for _, n in PEERS) + " | best peer | fm / best | target |"
    rule = "|---|" + "---:|" * (len(names) + 3)
    print(header.format("train, samples/s (median epoch)"))
    print(rule)
    rss = {}
    for model in MODELS:
        for batch in (32, 128):
            got = {}
            for fw in names:
                rs = [r for r in train if r["framework"] == fw and r["model"] == model
                      and r["batch"] == batch and "samples_per_s" in r]
                later = [r["samples_per_s"] for r in rs if r.get("epoch", 0) >= 1]
                values = later or [r["samples_per_s"] for r in rs]
                got[fw] = statistics.median(values) if values else None
                if batch == 32 and rs:
                    rss[(fw, model)] = max(r.get("peak_rss_kib", 0) for r in rs) / 1024
            peers = [(got[p], n) for p, n in PEERS if got[p]]
            best = max(peers) if peers else None
            ratio = got["fm"] / best[0] if best and got["fm"] else None
            print(f"| {MODELS[model]}, batch {batch} | {fmt(got['fm'])} | "
                  + " | ".join(fmt(got[p]) for p, _ in PEERS)
                  + f" | {best[1] if best else '–'} | {fmt(ratio, 2)}x |"
                  f" >= {TRAIN_TARGET[(model, batch)]}x |")
    print()
    print(header.format("batch-1 predict latency, us").replace("fm / best", "best / fm"))
    print(rule)
    for model in MODELS:
        got = {}
        for fw in names:
            rs = [r for r in other if r["framework"] == fw and r["model"] == model]
            if fw == "fm":
                v = [r["ms_per_step"] * 1e3 for r in rs if r.get("mode") == "predict"]
            else:
                v = [r["latency_us"] for r in rs if "latency_us" in r]
            got[fw] = min(v) if v else None
        peers = [(got[p], n) for p, n in PEERS if got[p]]
        best = min(peers) if peers else None
        ratio = best[0] / got["fm"] if best and got["fm"] else None
        print(f"| {MODELS[model]} | {fmt(got['fm'], 1)} | "
              + " | ".join(fmt(got[p], 1) for p, _ in PEERS)
              + f" | {best[1] if best else '–'} | {fmt(ratio, 2)}x |"
              f" <= {LATENCY_TARGET_US[model]} us |")
    print()
    print(header.format("start-up: launch to end of first step, s").replace("fm / best", "best / fm"))
    print(rule)
    for model in MODELS:
        got = {}
        for fw in names:
            v = [r["wall_s"] for r in other
                 if r["framework"] == fw and r["model"] == model and r.get("startup")]
            got[fw] = min(v) if v else None
        peers = [(got[p], n) for p, n in PEERS if got[p]]
        best = min(peers) if peers else None
        ratio = best[0] / got["fm"] if best and got["fm"] else None
        print(f"| {MODELS[model]} | {fmt(got['fm'], 2)} | "
              + " | ".join(fmt(got[p], 2) for p, _ in PEERS)
              + f" | {best[1] if best else '–'} | {fmt(ratio, 1)}x | <= 0.1 s |")
    print()
    print(header.format("peak RSS of training (batch 32), MB").replace("fm / best", "best / fm"))
    print(rule)
    for model in MODELS:
        got = {fw: rss.get((fw, model)) for fw in names}
        peers = [(got[p], n) for p, n in PEERS if got[p]]
        best = min(peers) if peers else None
        ratio = best[0] / got["fm"] if best and got["fm"] else None
        print(f"| {MODELS[model]} | {fmt(got['fm'])} | "
              + " | ".join(fmt(got[p]) for p, _ in PEERS)
              + f" | {best[1] if best else '–'} | {fmt(ratio, 1)}x | <= {RSS_TARGET_MB:.0f} |")


if __name__ == "__main__":
    main()
