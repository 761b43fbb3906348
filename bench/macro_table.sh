#!/usr/bin/env bash
# Issue 10's table: the Rust that `model!` emits against the Cranelift JIT and PyTorch (CPU,
# eager), on the MNIST MLP and CNN examples: predict at batch 1 and 128, the train step at batch
# 32 and 128, all on one thread. Each row is measured REPEATS times, the backends of a row back
# to back, and the table reports the median over the repeats of each backend's median time per
# call: wall time, and CPU time (what waiting for a core on a loaded machine does not inflate).
# The machine's load average is recorded before and after. Then, with COLD_BUILD=1, the cold
# release build of the example crate (examples/rust_digits, one dependency on `fm`): its time
# and the crates it compiles.
#
#   bench/macro_table.sh                     # about 10 minutes
#   REPEATS=5 SECONDS_PER_ROW=3 bench/macro_table.sh
#   COLD_BUILD=1 bench/macro_table.sh
#
# Environment: REPEATS (default 3), SECONDS_PER_ROW (measured seconds per backend and row,
# default 2), BUILD (0: use the fm-bench already built), VENV (a Python with torch; default target/bench-venv, as bench/issue11.sh makes
# it; no PyTorch column without it), OUT (default target/bench-macro).
set -euo pipefail
cd "$(dirname "$0")/.."
REPEATS=${REPEATS:-3}
SECONDS_PER_ROW=${SECONDS_PER_ROW:-2}
VENV=${VENV:-target/bench-venv}
OUT=${OUT:-target/bench-macro}
mkdir -p "$OUT"
rm -f "$OUT"/*.jsonl "$OUT"/load.txt "$OUT"/build.txt

[ "${BUILD:-1}" = 1 ] && cargo build --release -p fm-bench >&2
PY="$VENV/bin/python"
[ -x "$PY" ] || { echo "no Python at $PY: the PyTorch column stays empty" >&2; PY=""; }

echo "before: $(uptime)" >> "$OUT/load.txt"
for r in $(seq "$REPEATS"); do
    for model in mnist_mlp mnist_cnn; do
        for row in predict:1 predict:128 train:32 train:128; do
            mode=${row%%:*} batch=${row##*:}
            echo "repeat $r: $model $mode batch $batch" >&2
            target/release/fm-bench --models "$model" --backends jit,macro --modes "$mode" \
                --batch "$batch" --threads 1 --seconds "$SECONDS_PER_ROW" --runs 5 >> "$OUT/fm.jsonl"
            if [ -n "$PY" ]; then
                "$PY" bench/compare/torch_bench.py --threads 1 --models "$model" --modes "$mode" \
                    --batch "$batch" --seconds "$SECONDS_PER_ROW" --runs 5 >> "$OUT/torch.jsonl"
            fi
        done
    done
    echo "after repeat $r: $(uptime)" >> "$OUT/load.txt"
done

if [ "${COLD_BUILD:-0}" = 1 ]; then
    target=$(mktemp -d)
    trap 'rm -rf "$target"' EXIT
    ( cd examples/rust_digits &&
      /usr/bin/time -f "%e s wall, %U s user, %S s system" \
          env CARGO_TARGET_DIR="$target" cargo build --release 2> "$OLDPWD/$OUT/build.log" ) ||
        { cat "$OUT/build.log" >&2; exit 1; }
    {
        echo "cold build of examples/rust_digits: $(tail -1 "$OUT/build.log")"
        echo "crates compiled: $(grep -c '^ *Compiling' "$OUT/build.log")"
        grep '^ *Compiling' "$OUT/build.log" | awk '{print $2}' | tr '\n' ' '
        echo
        echo "load: $(uptime)"
    } > "$OUT/build.txt"
    cat "$OUT/build.txt" >&2
fi

python3 bench/compare/macro_table.py "$OUT"
