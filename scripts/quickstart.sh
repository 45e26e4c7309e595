#!/usr/bin/env bash
# Sets everything up and runs the word-count example in embedded local mode.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
echo "==> target/release/weir run examples/wordcount/wordcount.toml"
target/release/weir run examples/wordcount/wordcount.toml
echo "==> first lines of examples/wordcount/out/part-0:"
head -n 5 examples/wordcount/out/part-0
