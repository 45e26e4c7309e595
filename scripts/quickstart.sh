#!/usr/bin/env bash
# Sets up what the word-count example needs (Rust, the wasm32-wasip2 target, the Rust example
# operators and weir) and runs it in embedded local mode.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh rust
echo "==> target/release/weir run examples/wordcount/wordcount.toml"
target/release/weir run examples/wordcount/wordcount.toml
echo "==> first lines of examples/wordcount/out/part-0:"
head -n 5 examples/wordcount/out/part-0
