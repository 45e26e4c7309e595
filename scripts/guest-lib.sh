# Shared by the guest build scripts (sourced, not run).
#
# build_examples LANG EXT MARKER SDK_DIR BUILD
#   For each module examples/*-LANG/*.EXT that contains MARKER (the line that exports a handler),
#   calls `BUILD module-path module-name dir output.wasm` when the component
#   examples/target/LANG/<dir>_<module>.wasm is older than the module, SDK_DIR or the WIT (e.g.
#   examples/wordcount-python/count.py -> examples/target/python/wordcount_count.wasm).
build_examples() {
  local lang=$1 ext=$2 marker=$3 sdk=$4 build=$5
  local out=examples/target/$lang dir prefix module name wasm
  mkdir -p "$out"
  for dir in examples/*-"$lang"; do
    [ -d "$dir" ] || continue
    prefix=$(basename "$dir" | sed "s/-$lang\$//; s/-/_/g")
    for module in "$dir"/*."$ext"; do
      grep -qF "$marker" "$module" || continue
      name=$(basename "$module" ."$ext")
      wasm="$out/${prefix}_${name}.wasm"
      if [ -f "$wasm" ] && [ -z "$(find "$module" "$sdk" wit \( -name "*.$ext" -o -name '*.wit' \) \
        -newer "$wasm" -print -quit)" ]; then
        continue
      fi
      echo "==> $module -> $wasm"
      "$build" "$module" "$name" "$dir" "$wasm"
    done
  done
}
