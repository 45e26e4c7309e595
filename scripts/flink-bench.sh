#!/usr/bin/env bash
# Runs the reference workloads on Apache Flink 2.3 and on weir, alternately, so that both are
# measured on this machine in the same minutes (its speed varies by up to 2x between hours).
#
#   scripts/flink-bench.sh [--quick] [--job NAME] [--rounds R]
#
# `--job swap` compares the pause of replacing a keyed operator's function instead: weir's
# live swap and restart swap (`weir bench --job swap`) against Flink's stop-with-savepoint and
# resubmission (Swap.java), at 1 K and 1 M keys.
#
# Flink's jars come from the `apache-flink-libraries` package (the jars PyFlink ships), fetched
# once into target/flink with pip; the jobs are examples/bench/flink/Reference.java, compiled with
# javac (a JDK 17 must be installed). Each Flink job runs in a local MiniCluster at parallelism 2
# with Flink's default settings. Every line has the same fields as `weir bench`, with `engine=`
# in front:
#   cpu_us_per_record  user + system CPU of the process at n, minus the same job at n = 1, over n
#   records_per_s      n over the wall time at n minus the wall time at n = 1 (so the JVM's and
#                      the MiniCluster's start do not count against Flink)
#   peak_rss_mib       the process's peak resident memory
#   verified           the result against the generator's definition (computed separately)
# This is a side-by-side harness for people, not part of the test suite: Flink needs seconds to
# start and hundreds of MiB per run.
set -euo pipefail
cd "$(dirname "$0")/.."

FLINK_VERSION=2.3.0
quick=0
only=""
rounds=1
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --job) only="$2"; shift ;;
    --rounds) rounds="$2"; shift ;;
    *) echo "usage: $0 [--quick] [--job NAME] [--rounds R]" >&2; exit 2 ;;
  esac
  shift
done

for tool in java javac python3; do
  if ! command -v "$tool" >/dev/null; then
    echo "error: $tool is needed (a JDK 17 for Flink, python3 with pip to fetch its jars)" >&2
    exit 1
  fi
done
if [ ! -x target/release/weir ]; then
  echo "error: build weir first: scripts/build.sh" >&2
  exit 1
fi

dir=target/flink
if [ ! -f "$dir/lib/flink-dist-$FLINK_VERSION.jar" ]; then
  echo "==> fetching Apache Flink $FLINK_VERSION's jars (apache-flink-libraries, ~330 MB)" >&2
  rm -rf "$dir/download" "$dir/unpacked" "$dir/lib"
  python3 -m pip download --no-deps --quiet "apache-flink-libraries==$FLINK_VERSION" -d "$dir/download"
  python3 -m zipfile -e "$dir"/download/*.whl "$dir/unpacked"
  mv "$dir/unpacked/pyflink/lib" "$dir/lib"
  rm -rf "$dir/download" "$dir/unpacked"
fi
classes="$dir/classes"
sources="examples/bench/flink/Reference.java examples/bench/flink/Swap.java"
for source in $sources; do
  class="$classes/$(basename "$source" .java).class"
  if [ ! -f "$class" ] || [ "$source" -nt "$class" ]; then
    mkdir -p "$classes"
    javac -cp "$dir/lib/*" -d "$classes" $sources
    break
  fi
done
classpath="$dir/lib/*:$classes"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# Runs one Flink job; leaves "wall user sys max_rss_kib" in $scratch/time and its output in
# $scratch/out.
flink_run() {
  /usr/bin/time -f "%e %U %S %M" -o "$scratch/time" \
    java -cp "$classpath" Reference "$1" "$2" >"$scratch/out" 2>"$scratch/err" || {
    echo "error: the Flink job $1 failed:" >&2
    tail -20 "$scratch/err" >&2
    exit 1
  }
}

flink_job() {
  local job=$1 n=$2
  local expected got base
  expected=$(java -cp "$classpath" Reference expect "$job" "$n")
  flink_run "$job" 1
  base=$(cat "$scratch/time")
  flink_run "$job" "$n"
  got=$(grep -E '^[0-9]+,[0-9]+$' "$scratch/out" | awk -F, '{c += $1; s += $2} END {printf "%.0f,%.0f", c, s}')
  local verified="verified=ok"
  if [ "$got" != "$expected" ]; then
    verified="verified=FAILED expected=$expected got=$got"
  fi
  read -r wall user sys rss <"$scratch/time"
  read -r bwall buser bsys _ <<<"$base"
  awk -v job="$job" -v n="$n" -v wall="$wall" -v user="$user" -v sys="$sys" \
    -v bwall="$bwall" -v buser="$buser" -v bsys="$bsys" -v rss="$rss" -v v="$verified" \
    'BEGIN {
      cpu = user + sys; bcpu = buser + bsys
      run = wall - bwall; if (run <= 0) run = wall
      c = (cpu - bcpu) / n * 1e6; if (c < 0) c = 0
      printf "engine=flink job=%s n=%.0f seconds=%.3f records_per_s=%.0f cpu_us_per_record=%.3f peak_rss_mib=%.1f %s\n",
        job, n, wall, n / run, c, rss / 1024, v
    }'
  [ "$verified" = "verified=ok" ]
}

ok=0
for round in $(seq "$rounds"); do
  for job in stateless stateless-unchained wordcount window swap; do
    if [ -n "$only" ] && [ "$only" != "$job" ]; then
      continue
    fi
    if [ "$job" = swap ]; then
      # The pause of replacing a keyed operator's function: weir live and by restart, Flink by
      # stop-with-savepoint and a resubmission from it (examples/bench/flink/Swap.java).
      quick_flag=""
      keys="1000 1000000"
      if [ $quick = 1 ]; then quick_flag=--quick; keys="1000 20000"; fi
      target/release/weir bench --job swap $quick_flag | sed 's/^/engine=weir /' || ok=1
      for k in $keys; do
        java -Xmx3g -cp "$classpath" Swap "$k" 2>"$scratch/err" || {
          echo "error: the Flink swap job failed:" >&2
          tail -20 "$scratch/err" >&2
          ok=1
        }
      done
      continue
    fi
    case "$job" in
      wordcount) n=5000000; [ $quick = 1 ] && n=200000 ;;
      window) n=25000000; [ $quick = 1 ] && n=1000000 ;;
      *) n=20000000; [ $quick = 1 ] && n=1000000 ;;
    esac
    target/release/weir bench --job "$job" --n "$n" | sed 's/^/engine=weir /' || ok=1
    flink_job "$job" "$n" || ok=1
  done
done
exit $ok
