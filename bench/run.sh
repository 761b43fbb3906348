#!/usr/bin/env bash
# Measures fm's train-step and predict throughput on the example models and, when a Python with
# Keras/TensorFlow and PyTorch is available, the same models in those, then prints a Markdown
# table of samples per second and ratios (the one in README.md's "Benchmarks" section).
#
#   bench/run.sh                      # defaults below
#   THREADS="1 2" bench/run.sh        # Keras and PyTorch also on 2 threads (fm is single-threaded)
#   SECONDS_PER_ROW=1 bench/run.sh    # quicker, noisier
#
# Environment: PYTHON (default /work/venv/bin/python), THREADS (default "1"), SECONDS_PER_ROW
# (measured seconds per row, default 3), RUNS (timed runs per row, median reported, default 5),
# OUT (results directory, default target/bench-results). Raw JSON lines are kept in OUT.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-/work/venv/bin/python}
THREADS=${THREADS:-1}
SECONDS_PER_ROW=${SECONDS_PER_ROW:-3}
RUNS=${RUNS:-5}
OUT=${OUT:-target/bench-results}
mkdir -p "$OUT"
rm -f "$OUT"/*.jsonl "$OUT"/*.log

cargo build --release -p fm-bench >&2
# Model by model, fm then Keras then PyTorch, so the three numbers of a row are measured close
# together in time (the machine may be shared; its load changes over minutes).
have_python=0
if [ -x "$PYTHON" ]; then have_python=1; else
    echo "no Python at $PYTHON: Keras and PyTorch columns stay empty" >&2
fi
for model in digits_mlp digits_cnn mnist_mlp mnist_cnn; do
    echo "fm $model ..." >&2
    target/release/fm-bench --models "$model" --seconds "$SECONDS_PER_ROW" --runs "$RUNS" \
        | tee -a "$OUT/fm.jsonl" >&2
    [ "$have_python" = 1 ] || continue
    for t in $THREADS; do
        for script in keras_bench torch_bench; do
            echo "$script $model --threads $t ..." >&2
            if ! "$PYTHON" "bench/compare/$script.py" --models "$model" --threads "$t" \
                --seconds "$SECONDS_PER_ROW" --runs "$RUNS" 2>>"$OUT/$script.log" \
                | tee -a "$OUT/$script.jsonl" >&2; then
                echo "$script failed (see $OUT/$script.log); its cells stay empty" >&2
            fi
        done
    done
done

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
echo "Machine: $(nproc) cores, $cpu; $(date -u '+%Y-%m-%d %H:%M UTC'); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
echo
python3 bench/compare/table.py "$OUT"/*.jsonl | tee "$OUT/table.md"
