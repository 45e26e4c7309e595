#!/usr/bin/env bash
# Builds the C example operators into components: clang + wasi-libc (Debian's packages, installed
# with apt-get the first time when missing), the bindings of wit/operator.wit and Rust's Unicode
# tables from weir-c-gen (guest-sdk/c/gen, built with cargo), then `wasm-tools component new`
# with the WASI adapter (libc's stdio imports WASI preview 1).
# Each file under examples/*-c/ that names its hooks with `WEIR_OPERATOR(` becomes
# examples/target/c/<dir>_<file>.wasm, e.g. examples/wordcount-c/count.c -> wordcount_count.wasm.
# Rebuilds only what changed.
#
#   scripts/build-c-guests.sh                    # the examples
#   scripts/build-c-guests.sh my_op.c my_op.wasm  # one operator of your own
set -euo pipefail
if [ $# -ne 0 ] && [ $# -ne 2 ]; then
  echo "usage: scripts/build-c-guests.sh [SOURCE.c OUT.wasm]" >&2
  exit 2
fi
# A file of your own is named relative to where you are; the script works from the repository.
args=()
for a in "$@"; do args+=("$(realpath -m -- "$a")"); done
set -- "${args[@]+"${args[@]}"}"
cd "$(dirname "$0")/.."
source scripts/guest-lib.sh

# Debian 12's clang, lld and wasi-libc (clang 14): the versions are the distribution's, fixed for
# its release.
C_PACKAGES=(clang lld wasi-libc libclang-rt-dev-wasm32)
WASI_LIBC=/usr/lib/wasm32-wasi/libc.a
if ! command -v clang >/dev/null || ! command -v wasm-ld >/dev/null || [ ! -f "$WASI_LIBC" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> installing ${C_PACKAGES[*]} (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${C_PACKAGES[@]}" >/dev/null
  else
    echo "error: C guests need clang, wasm-ld and wasi-libc: apt-get install ${C_PACKAGES[*]}" >&2
    exit 1
  fi
fi

# The generated parts of the SDK: bindings and Unicode tables.
gen=target/guest-tools/c/gen
cargo build --quiet --release -p weir-c-gen
target/release/weir-c-gen wit "$gen"

CFLAGS=(--target=wasm32-wasi -mexec-model=reactor -O2 -flto -std=c11)
# wit-bindgen's code, compiled once (its warnings are not ours to fix).
if [ ! "$gen/stateful_operator.o" -nt "$gen/stateful_operator.c" ]; then
  clang "${CFLAGS[@]}" -w -c "$gen/stateful_operator.c" -o "$gen/stateful_operator.o"
fi

# build SOURCE NAME DIR OUT: one C file (and the SDK) into a component.
build() {
  local core="$4.core.wasm"
  clang "${CFLAGS[@]}" -Wall -Wextra -Wno-unused-parameter $WERROR -I guest-sdk/c -I "$gen" \
    "$1" guest-sdk/c/weir.c "$gen/weir_unicode.c" "$gen/stateful_operator.o" "$gen/stateful_operator_component_type.o" \
    -o "$core"
  "$(wasm_tools)" component new "$core" -o "$4" \
    --adapt "wasi_snapshot_preview1=$gen/wasi_snapshot_preview1.reactor.wasm"
  rm -f "$core"
  stamp "$4" C= # clang records itself
}

# A window function (WEIR_AGGREGATE, WEIR_REDUCE or WEIR_PROCESS_WINDOW): built against its
# world's bindings (weir-c-gen names them as the operator world's) with the window glue.
build_window() {
  local world define
  if grep -qF "WEIR_AGGREGATE(" "$1"; then
    world=window-aggregate define=WEIR_WORLD_AGGREGATE
  elif grep -qF "WEIR_REDUCE(" "$1"; then
    world=window-reduce define=WEIR_WORLD_REDUCE
  else
    world=window-process define=WEIR_WORLD_PROCESS
  fi
  local wgen="$gen/$world" core="$4.core.wasm"
  if [ ! "$wgen/stateful_operator.o" -nt "$wgen/stateful_operator.c" ]; then
    clang "${CFLAGS[@]}" -w -c "$wgen/stateful_operator.c" -o "$wgen/stateful_operator.o"
  fi
  clang "${CFLAGS[@]}" -Wall -Wextra -Wno-unused-parameter $WERROR "-D$define" -I guest-sdk/c \
    -I "$wgen" "$1" guest-sdk/c/weir.c guest-sdk/c/weir_window.c "$gen/weir_unicode.c" \
    "$wgen/stateful_operator.o" "$wgen/stateful_operator_component_type.o" -o "$core"
  "$(wasm_tools)" component new "$core" -o "$4" \
    --adapt "wasi_snapshot_preview1=$gen/wasi_snapshot_preview1.reactor.wasm"
  rm -f "$core"
  stamp "$4" C=
}

is_window() {
  grep -qE "WEIR_(AGGREGATE|REDUCE|PROCESS_WINDOW)\(" "$1"
}

if [ $# -eq 2 ]; then
  WERROR=
  if is_window "$1"; then
    build_window "$1" "$(basename "$1" .c)" "$(dirname "$1")" "$2"
  else
    build "$1" "$(basename "$1" .c)" "$(dirname "$1")" "$2"
  fi
  echo "==> $2"
else
  WERROR=-Werror # the examples stay free of warnings
  build_examples c c "WEIR_OPERATOR(" "guest-sdk/c $gen" build
  for marker in "WEIR_AGGREGATE(" "WEIR_REDUCE(" "WEIR_PROCESS_WINDOW("; do
    build_examples c c "$marker" "guest-sdk/c $gen" build_window
  done
fi
