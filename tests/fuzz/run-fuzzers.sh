#!/usr/bin/env bash
# Runs every libFuzzer target for SECONDS each (default 60), starting from its seed corpus.
# New inputs go to a scratch directory, never into the committed corpus, and crash
# artifacts to build-fuzz/ (never the tree). With 0 seconds each
# target only runs its seed corpus once (scripts/test.sh does that: the libFuzzer build stays
# buildable and every seed passes under ASan+UBSan with libFuzzer's own driver).
# Names after SECONDS run (and build) only those targets.
#   tests/fuzz/run-fuzzers.sh [SECONDS [fuzz_NAME...]]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-60}
shift || true
cmake -S . -B build-fuzz -DTOTEBOX_FUZZ=ON -DTOTEBOX_SANITIZE=ON -DCMAKE_C_COMPILER=clang >/dev/null
if [ $# -gt 0 ]; then
  cmake --build build-fuzz -j"$(nproc)" --target "$@" >/dev/null
  bins=()
  for name in "$@"; do bins+=("build-fuzz/tests/fuzz/$name"); done
else
  cmake --build build-fuzz -j"$(nproc)" >/dev/null
  bins=(build-fuzz/tests/fuzz/fuzz_*)
fi
for bin in "${bins[@]}"; do
  [ -x "$bin" ] || continue
  name=$(basename "$bin")
  if [ "$secs" -eq 0 ]; then
    "$bin" -runs=0 -artifact_prefix="build-fuzz/$name-" "tests/fuzz/corpus/$name" >"build-fuzz/$name.log" 2>&1 ||
      { cat "build-fuzz/$name.log"; echo "run-fuzzers: $name failed on its seed corpus" >&2; exit 1; }
    continue
  fi
  scratch=$(mktemp -d)
  echo "== $name for ${secs}s"
  "$bin" -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="build-fuzz/$name-" "$scratch" "tests/fuzz/corpus/$name" 2>&1 |
    grep -E "^#[0-9]+ +DONE|ERROR|SUMMARY|stat::(number_of_executed_units|average_exec_per_sec)" || true
  rm -rf "$scratch"
done
