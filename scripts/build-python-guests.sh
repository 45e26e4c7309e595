#!/usr/bin/env bash
# Builds the Python example operators into components with componentize-py, installed (pinned)
# into target/guest-tools/python the first time. Each app module under examples/*-python/ that
# exports a handler (`Handler = weir.export(...)`) becomes examples/target/python/<dir>_<module>.wasm,
# e.g. examples/wordcount-python/split.py -> wordcount_split.wasm. Rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

COMPONENTIZE_PY=0.25.1
venv=target/guest-tools/python
if [ ! -x "$venv/bin/componentize-py" ] || ! "$venv/bin/componentize-py" --version | grep -q "$COMPONENTIZE_PY"; then
  echo "==> installing componentize-py $COMPONENTIZE_PY"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "componentize-py==$COMPONENTIZE_PY"
fi

out=examples/target/python
mkdir -p "$out"
for dir in examples/*-python; do
  [ -d "$dir" ] || continue
  prefix=$(basename "$dir" | sed 's/-python$//; s/-/_/g')
  for module in "$dir"/*.py; do
    grep -q "weir.export(" "$module" || continue
    name=$(basename "$module" .py)
    wasm="$out/${prefix}_${name}.wasm"
    # Up to date when newer than the module, the SDK and the WIT.
    if [ -f "$wasm" ] && [ -z "$(find "$module" guest-sdk/python wit \( -name '*.py' -o -name '*.wit' \) \
      -newer "$wasm" -print -quit)" ]; then
      continue
    fi
    echo "==> $module -> $wasm"
    "$venv/bin/componentize-py" -d wit -w operator componentize \
      -p guest-sdk/python -p "$dir" "$name" -o "$wasm" >/dev/null
  done
done
