#!/usr/bin/env bash
# Runs every fuzz target for SECONDS seconds each (default 20) from the committed seed corpus,
# on the stable toolchain (`--sanitizer none`). New corpus entries go to a scratch directory,
# so the committed corpus changes only by hand. A crash leaves its input in
# tests/fuzz/artifacts/TARGET/ and makes this script fail: add it as a regression test
# (tests/tests/fuzz_regressions.rs) and to the corpus.
#
#   tests/fuzz/run.sh 20                 # CI: about 2 minutes plus the build
#   tests/fuzz/run.sh 3600 parse_check   # a long run of one target
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-20}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(parse_check idx npy npz csv safetensors ir_text onnx_import keras_import)
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
cargo fuzz build --sanitizer none
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
status=0
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t"
    echo "fuzz: $t for ${seconds}s"
    # -rss_limit_mb: every input must stay far below the machine; -timeout: and be fast.
    if ! cargo fuzz run --sanitizer none "$t" "$scratch/$t" "corpus/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len=65536 \
        -print_final_stats=1 2>"$scratch/$t.log"; then
        tail -40 "$scratch/$t.log"
        echo "fuzz: $t FAILED (input in tests/fuzz/artifacts/$t/)"
        status=1
    else
        grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$scratch/$t.log" | sed "s/^/fuzz: $t /"
    fi
done
exit $status
