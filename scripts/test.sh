#!/usr/bin/env bash
# The whole test suite: unit tests, the guest SDK and example operators under the native test
# harness, and the end-to-end tests that run the real weir binary on real components.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh

log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "==> host, SDK and end-to-end tests"
cargo test --release --workspace 2>&1 | tee -a "$log"
echo "==> example operators, natively under the SDK's test harness"
cargo test --release --manifest-path examples/Cargo.toml --lib 2>&1 | tee -a "$log"

# One closing line over every test binary above (cargo test stops at the first failing binary,
# and `set -o pipefail` makes that fail this script).
read -r passed failed < <(awk '/^test result:/ { p += $4; f += $6 } END { print p + 0, f + 0 }' "$log")
echo "weir: $passed passed, $failed failed"
