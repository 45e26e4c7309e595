#!/usr/bin/env bash
# Builds the JavaScript example operators into components with componentize-qjs (QuickJS),
# installed (pinned) into target/guest-tools/js the first time. Each module under
# examples/*-js/ that exports a handler (`export const handler = exportOperator(...)`) becomes
# examples/target/js/<dir>_<module>.wasm, e.g. examples/wordcount-js/count.js ->
# wordcount_count.wasm. Modules import the SDK by relative path (../../guest-sdk/js/weir.js),
# resolved from the repository root. Rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

COMPONENTIZE_QJS=0.4.5
tools=target/guest-tools/js
bin="$tools/node_modules/.bin/componentize-qjs"
if [ ! -x "$bin" ] || ! grep -q "\"version\": \"$COMPONENTIZE_QJS\"" "$tools/node_modules/componentize-qjs/package.json"; then
  echo "==> installing componentize-qjs $COMPONENTIZE_QJS"
  if ! command -v npm >/dev/null; then
    echo "error: the JavaScript example operators need npm (Node.js) to install componentize-qjs;" >&2
    echo "       the Rust examples do not" >&2
    exit 1
  fi
  mkdir -p "$tools"
  [ -f "$tools/package.json" ] || echo '{ "private": true }' >"$tools/package.json"
  npm install --silent --prefix "$tools" "componentize-qjs@$COMPONENTIZE_QJS"
fi

build() {
  # An operator with private state exports the checkpoint hooks too.
  local world=operator
  grep -qF "exportStateful(" "$1" && world=stateful-operator
  # A window function exports its world's handler.
  grep -qF "exportAggregate(" "$1" && world=window-aggregate
  grep -qF "exportReduce(" "$1" && world=window-reduce
  grep -qF "exportProcessWindow(" "$1" && world=window-process
  # A source exports the source world's handler.
  grep -qF "exportSource(" "$1" && world=source
  "$bin" --wit wit --world "$world" --js "$1" --module-root . --sync -o "$4" >/dev/null
  stamp "$4" JavaScript= "componentize-qjs=$COMPONENTIZE_QJS"
}
source scripts/guest-lib.sh
build_examples js js "export const" guest-sdk/js build
