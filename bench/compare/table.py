"""Aggregates the JSON lines of fm-bench, keras_bench.py and torch_bench.py into Markdown tables:
one per (mode, comparator thread count), each row one (model, batch, fm backend) with fm's,
Keras' and PyTorch's samples per second and fm's throughput as a ratio of theirs (above 1 means
fm is faster). Standard library only, so any python3 can run it.

    python3 bench/compare/table.py RESULTS.jsonl...
"""

import json
import sys

MODE_TITLES = {"train": "Train step", "predict": "Predict (inference)"}


def load(paths):
    rows = []
    for path in paths:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    rows.append(json.loads(line))
    return rows


def fmt_rate(value):
    return "–" if value is None else f"{value:,.0f}"


def fmt_ratio(fm, other):
    return "–" if fm is None or other is None else f"{fm / other:.2f}x"


def tables(rows):
    fm_rows = [r for r in rows if r["framework"] == "fm"]
    # (framework, threads, model, mode, batch) -> samples/s
    others = {
        (r["framework"], r["threads"], r["model"], r["mode"], r["batch"]): r["samples_per_s"]
        for r in rows
        if r["framework"] != "fm"
    }
    versions = sorted({f"{r['framework']}: {r['backend']}" for r in rows if r["framework"] != "fm"})
    thread_counts = sorted({t for (_, t, *_rest) in others}) or [1]
    out = []
    for mode in ("train", "predict"):
        mode_rows = [r for r in fm_rows if r["mode"] == mode]
        if not mode_rows:
            continue
        for threads in thread_counts:
            cores = "1 thread" if threads == 1 else f"{threads} threads"
            out.append(f"#### {MODE_TITLES[mode]}: Keras and PyTorch on {cores}, fm on 1 thread\n")
            out.append("| model | batch | fm backend | fm samples/s | Keras samples/s "
                       "| PyTorch samples/s | fm/Keras | fm/PyTorch |")
            out.append("|---|---:|---|---:|---:|---:|---:|---:|")
            for r in mode_rows:
                key = (threads, r["model"], mode, r["batch"])
                keras = others.get(("keras", *key))
                torch = others.get(("torch", *key))
                fm = r["samples_per_s"]
                out.append(
                    f"| {r['model']} | {r['batch']} | {r['backend']} | {fmt_rate(fm)} "
                    f"| {fmt_rate(keras)} | {fmt_rate(torch)} "
                    f"| {fmt_ratio(fm, keras)} | {fmt_ratio(fm, torch)} |"
                )
            out.append("")
    if versions:
        out.append("Versions: " + "; ".join(versions) + ".")
    return "\n".join(out)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print(tables(load(sys.argv[1:])))


if __name__ == "__main__":
    main()
