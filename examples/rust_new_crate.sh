#!/usr/bin/env bash
# What a new user does from the README's "Use it from Rust", checked: a brand-new crate outside
# fm's workspace (`cargo new`), one dependency line on `fm` (by path), the digits CNN and its
# data copied next to `src/main.rs`, and the README's code block, verbatim, as `src/main.rs`.
# It must build, train, save, load, evaluate and predict, and its test-split loss and accuracy
# must equal what `fmc eval` computes from the weights it saved (1e-4 relative).
#
# Run from anywhere: `examples/rust_new_crate.sh`. The crate's build shares
# `examples/rust_digits/target` (the same dependencies and profile: only the new crate compiles
# when that example was built first); set CARGO_TARGET_DIR to build elsewhere.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cd "$work"
cargo new --quiet --bin hello_fm
cd hello_fm
# `cargo new` ends Cargo.toml with an empty [dependencies] table: the one line a user adds.
echo "fm = { path = \"$root/runtime/fm\" }" >> Cargo.toml
cp "$root/examples/digits_cnn.fm" src/
mkdir src/data
cp "$root"/examples/data/digits-* src/data/
awk '/^## Use it from Rust/ { s = 1 } s && /^```rust/ { p = 1; next } p && /^```/ { exit } p' \
    "$root/README.md" > src/main.rs
test -s src/main.rs || { echo "no rust code block under 'Use it from Rust' in README.md" >&2; exit 1; }
# The dependency versions fm's example crate is built with (so its build is reused).
cp "$root/examples/rust_digits/Cargo.lock" .

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/examples/rust_digits/target}"
start=$(date +%s)
cargo run --release --quiet > out.txt
cat out.txt
echo "new crate: built and ran in $(( $(date +%s) - start )) s"
test -s digits_cnn.safetensors

# The same weights through fmc.
fmc=(cargo run --release --quiet --manifest-path "$root/Cargo.toml" -p fmc --)
if [ -x "$root/target/release/fmc" ]; then fmc=("$root/target/release/fmc"); fi
CARGO_TARGET_DIR="$root/target" "${fmc[@]}" eval src/digits_cnn.fm --weights digits_cnn.safetensors --json > fmc.txt
cat fmc.txt
grep -q '^\[4, 10\]$' out.txt || { echo "predict did not return [4, 10]" >&2; exit 1; }
for metric in loss accuracy; do
    ours=$(awk -v m="$metric" '$1 == m ":" { print $2 }' out.txt)
    theirs=$(grep -Eo "\"$metric\":[0-9.eE+-]+" fmc.txt | cut -d: -f2)
    awk -v a="$ours" -v b="$theirs" -v m="$metric" 'BEGIN {
        d = a - b; if (d < 0) d = -d; s = b < 0 ? -b : b;
        if (a == "" || b == "" || d > 1e-4 * s + 1e-6) { printf "%s: model! %s, fmc eval %s\n", m, a, b; exit 1 }
        printf "%s: model! %s, fmc eval %s: equal\n", m, a, b }'
done
