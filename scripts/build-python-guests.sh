#!/usr/bin/env bash
# Builds the Python example operators into components with componentize-py, installed (pinned)
# into target/guest-tools/python the first time. Each app module under examples/*-python/ or
# examples/*/python/ that exports a handler (`Handler = weir.export(...)`,
# `weir.export_stateful(...)` for the stateful-operator world, `weir.export_migrating(...)` for
# the migrating-operator world, `weir.export_source(...)` for a source) becomes examples/target/python/<dir>_<module>.wasm,
# e.g. examples/wordcount-python/split.py -> wordcount_split.wasm,
# examples/swap/python/count_v2.py -> swap_count_v2.wasm. Rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

COMPONENTIZE_PY=0.25.1
venv=target/guest-tools/python
if [ ! -x "$venv/bin/componentize-py" ] || ! "$venv/bin/componentize-py" --version | grep -q "$COMPONENTIZE_PY"; then
  echo "==> installing componentize-py $COMPONENTIZE_PY"
  if ! command -v python3 >/dev/null || ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    echo "error: the Python example operators need python3 with venv to install componentize-py" >&2
    echo "       (Debian: apt-get install python3-venv); the Rust examples need neither" >&2
    exit 1
  fi
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "componentize-py==$COMPONENTIZE_PY"
fi

build() {
  # An operator with private state exports the checkpoint hooks too.
  local world=operator
  grep -qF "export_stateful(" "$1" && world=stateful-operator
  # One whose state encoding evolves exports its migration hook too.
  grep -qF "export_migrating(" "$1" && world=migrating-operator
  # A window function exports its world's handler.
  grep -qF "export_aggregate(" "$1" && world=window-aggregate
  grep -qF "export_reduce(" "$1" && world=window-reduce
  grep -qF "export_process_window(" "$1" && world=window-process
  # A source exports the source world's handler.
  grep -qF "export_source(" "$1" && world=source
  "$venv/bin/componentize-py" -d wit -w "$world" componentize \
    -p guest-sdk/python -p "$3" "$2" -o "$4" >/dev/null
  stamp "$4" Python= "componentize-py=$COMPONENTIZE_PY"
}
source scripts/guest-lib.sh
build_examples python py "weir.export" guest-sdk/python build
