#!/usr/bin/env bash
# Builds everything a run or a test needs: the wasm32-wasip2 target, the example guests as
# components (Rust; Python with componentize-py; JavaScript with componentize-qjs; C with clang
# and wasi-libc), and the weir host (release). `scripts/build.sh rust` builds the Rust guests
# only, which needs nothing but Rust. Safe to run again; only what changed is rebuilt.
set -euo pipefail
cd "$(dirname "$0")/.."
only=${1:-all}
case "$only" in
  all|rust) ;;
  *) echo "usage: scripts/build.sh [rust]" >&2; exit 2 ;;
esac

if ! command -v cargo >/dev/null; then
  echo "error: cargo is not installed; install Rust from rustup first" >&2
  exit 1
fi
if command -v rustup >/dev/null; then
  if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    echo "==> installing the wasm32-wasip2 target"
    rustup target add wasm32-wasip2
  fi
fi

echo "==> building the example guests (wasm32-wasip2 components)"
cargo build --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml
if [ "$only" = all ]; then
  echo "==> building the Python example guests (componentize-py)"
  scripts/build-python-guests.sh
  echo "==> building the JavaScript example guests (componentize-qjs)"
  scripts/build-js-guests.sh
  echo "==> building the C example guests (clang + wasi-libc)"
  scripts/build-c-guests.sh
fi
echo "==> building weir"
cargo build --release -p weir
