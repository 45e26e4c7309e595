#!/usr/bin/env bash
# Time from `weir new` to the job's end (its first record out is a few ms before), per language:
# `weir new` then `weir run job.toml --build` in a fresh directory outside the repository, with
# an empty build cache.
#
#   scripts/new-project-times.sh [--cold] [--template map|keyed|source] [LANG ...]
#
# Warm (the default): the toolchains are the ones already installed (target/guest-tools, the
# suite's). --cold: into an empty tools directory, so Python and JavaScript install theirs
# (componentize-py from PyPI, componentize-qjs from npm) within the timed run. Rust compiles the
# SDK's dependencies in the new project either way (a project has its own target directory).
set -euo pipefail
cd "$(dirname "$0")/.."
weir=$PWD/target/release/weir
tools=$PWD/target/guest-tools
template=map
langs=()
while [ $# -gt 0 ]; do
  case "$1" in
    --cold) tools=; shift ;;
    --template) template=$2; shift 2 ;;
    rust|python|js|c) langs+=("$1"); shift ;;
    *) echo "usage: scripts/new-project-times.sh [--cold] [--template T] [rust|python|js|c ...]" >&2; exit 2 ;;
  esac
done
[ ${#langs[@]} -gt 0 ] || langs=(rust python js c)
[ -x "$weir" ] || { echo "error: build weir first (scripts/build.sh)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for lang in "${langs[@]}"; do
  export WEIR_CACHE_DIR="$work/cache-$lang" WEIR_TOOLS="${tools:-$work/tools-$lang}"
  cd "$work"
  start=$(date +%s.%N)
  "$weir" new "p-$lang" --lang "$lang" --template "$template" >/dev/null
  cd "p-$lang"
  if ! "$weir" run job.toml --build >"$work/log-$lang" 2>&1; then
    echo "$lang: failed; its log:" >&2
    cat "$work/log-$lang" >&2
    exit 1
  fi
  end=$(date +%s.%N)
  first=$(grep -o 'first record out after [0-9.]* [a-z]*' "$work/log-$lang" | tail -1)
  mode=warm
  [ -n "$tools" ] || mode=cold
  printf '%-7s %s  new -> job done: %6.1f s (%s)\n' "$lang" "$mode" \
    "$(echo "$end - $start" | bc)" "$first"
done
