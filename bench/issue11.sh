#!/usr/bin/env bash
# Issue 11's table: MNIST MLP and CNN training throughput on 60,000 MNIST-shaped samples, fm
# through `fmc train --threads 2` (the user's path) against PyTorch eager, Keras 3 (compiled
# tf.function step) and JAX (jit), all on 2 threads; then batch-1 predict latency, start-up
# (launch to the end of the first training step) and peak RSS of a training run. Prints one
# Markdown table with ratios (fm / best peer; above 1 means fm is better).
#
#   bench/issue11.sh                    # everything (about 30 minutes on 2 cores)
#   EPOCHS=2 FRAMEWORKS="torch" bench/issue11.sh
#
# Environment: EPOCHS (per training run, default 3; the first epoch is a warm-up and the
# median of the others is reported), THREADS (default 2), FRAMEWORKS (default "torch keras
# jax"; empty: fm only), VENV (default target/bench-venv: created and filled from PyPI on first
# use, never needed by the tests), OUT (default target/bench-issue11). Data: the 10,000 real digits of
# shared/data/mnist10k repeated 6 times (MNIST10K points at that folder if it is elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${EPOCHS:-3}
THREADS=${THREADS:-2}
FRAMEWORKS=${FRAMEWORKS-torch keras jax}
VENV=${VENV:-target/bench-venv}
OUT=${OUT:-target/bench-issue11}
MNIST10K=${MNIST10K:-}
for d in "$MNIST10K" ../shared/data/mnist10k ../../shared/data/mnist10k /work/shared/data/mnist10k; do
    if [ -n "$d" ] && [ -f "$d/mnist10k-images-idx3-ubyte.gz" ]; then MNIST10K=$d; break; fi
done
[ -f "$MNIST10K/mnist10k-images-idx3-ubyte.gz" ] || { echo "set MNIST10K to shared/data/mnist10k" >&2; exit 1; }
mkdir -p "$OUT"
rm -f "$OUT"/*.jsonl

# The peers, pinned to the versions of the README's table.
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q torch==2.15.0 tensorflow-cpu==2.21.0 keras==3.15.1 jax==0.10.2 numpy
fi
PY="$VENV/bin/python"

# 60,000 samples: the real digits six times over (IDX, as fmc and the peers read it).
X="$OUT/x60k-idx3-ubyte" Y="$OUT/y60k-idx1-ubyte"
if [ ! -f "$X" ]; then
    python3 - "$MNIST10K" "$X" "$Y" <<'EOF'
import gzip, struct, sys
src, x, y = sys.argv[1:]
img = gzip.open(f"{src}/mnist10k-images-idx3-ubyte.gz").read()[16:]
lab = gzip.open(f"{src}/mnist10k-labels-idx1-ubyte.gz").read()[8:]
open(x, "wb").write(struct.pack(">IIII", 0x803, 60000, 28, 28) + img * 6)
open(y, "wb").write(struct.pack(">II", 0x801, 60000) + lab * 6)
EOF
fi

cargo build --release -p fmc -p fm-bench >&2
FMC=target/release/fmc

# Runs a command with its stdout into file $1, and prints its wall seconds and peak RSS (KiB)
# as JSON fields.
measure() {
    local out=$1 t0 t1
    shift
    t0=$(date +%s.%N)
    /usr/bin/time -o "$OUT/time.txt" -f '%M' "$@" > "$out"
    t1=$(date +%s.%N)
    echo "\"wall_s\": $(python3 -c "print(round($t1 - $t0, 3))"), \"peak_rss_kib\": $(tail -1 "$OUT/time.txt")"
}

for model in mnist_mlp mnist_cnn; do
    for batch in 32 128; do
        # fm: the example's model and train section, with a data section reading the 60,000
        # samples scaled by 1/255 as the peers scale them, and no validation split (all
        # 60,000 samples train, as for the peers).
        src="$OUT/$model.fm"
        {
            printf 'data bench {\n    train: idx("%s", "%s")\n    x: scale(1 / 255)\n}\n\n' \
                "$(realpath "$X")" "$(realpath "$Y")"
            sed -e '/^data /,/^}/d' -e 's/^ *validation:.*//' -e 's/^ *data: .*//' \
                "examples/$model.fm" | sed 's/^train\( [a-z_]*\)\? *{/&\n    data: bench/'
        } > "$src"
        run="$OUT/run-$model-$batch"
        rm -rf "$run"
        echo "fm $model batch $batch ..." >&2
        m=$(measure /dev/null "$FMC" train "$src" --threads "$THREADS" -q \
            --set batch_size="$batch" --set epochs="$EPOCHS" --run-dir "$run")
        python3 - "$run/metrics.jsonl" "$model" "$batch" "$THREADS" "$m" >> "$OUT/train.jsonl" <<'EOF'
import json, sys
path, model, batch, threads, extra = sys.argv[1:]
for line in open(path):
    r = json.loads(line)
    print(json.dumps({"framework": "fm", "model": model, "batch": int(batch),
                      "threads": int(threads), "epoch": r["epoch"] - 1,
                      "samples_per_s": r["samples_per_second"], "accuracy": r.get("accuracy"),
                      **json.loads("{" + extra + "}")}))
EOF
        for fw in $FRAMEWORKS; do
            echo "$fw $model batch $batch ..." >&2
            tmp="$OUT/$fw.tmp"
            m=$(measure "$tmp" "$PY" bench/compare/peers_epochs.py --framework "$fw" \
                --model "$model" --batch "$batch" --x "$X" --y "$Y" --threads "$THREADS" \
                --epochs "$EPOCHS" 2>>"$OUT/peers.log")
            python3 -c 'import json,sys
extra=json.loads("{"+sys.argv[2]+"}")
for l in open(sys.argv[1]):
    if l.startswith("{"): print(json.dumps({**json.loads(l), **extra}))' "$tmp" "$m" >> "$OUT/train.jsonl"
        done
    done
    # Start-up: launch to the end of the first training step (data loading included).
    echo "start-up $model ..." >&2
    m=$(measure /dev/null "$FMC" train "$OUT/$model.fm" --threads "$THREADS" -q --steps 1 \
        --run-dir "$OUT/run-$model-startup")
    echo "{\"framework\": \"fm\", \"model\": \"$model\", \"startup\": true, $m}" >> "$OUT/other.jsonl"
    for fw in $FRAMEWORKS; do
        m=$(measure /dev/null "$PY" bench/compare/peers_epochs.py --framework "$fw" \
            --model "$model" --batch 32 --x "$X" --y "$Y" --threads "$THREADS" --steps 1 \
            2>>"$OUT/peers.log")
        echo "{\"framework\": \"$fw\", \"model\": \"$model\", \"startup\": true, $m}" >> "$OUT/other.jsonl"
    done
    # Batch-1 predict latency.
    echo "latency $model ..." >&2
    target/release/fm-bench --models "$model" --backends jit --modes predict --batch 1 \
        --threads "$THREADS" --seconds 2 --per-call >> "$OUT/other.jsonl"
    for fw in $FRAMEWORKS; do
        "$PY" bench/compare/peers_epochs.py --framework "$fw" --model "$model" --latency \
            --x "$X" --y "$Y" --threads "$THREADS" 2>>"$OUT/peers.log" >> "$OUT/other.jsonl"
    done
done

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
echo "Machine: $(nproc) cores, $cpu; $(date -u '+%Y-%m-%d %H:%M UTC'); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
echo
python3 bench/compare/issue11_table.py "$OUT/train.jsonl" "$OUT/other.jsonl" | tee "$OUT/table.md"
