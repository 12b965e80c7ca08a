#!/usr/bin/env bash
# The README's test command: installs what is needed, builds twice (strict warnings; and
# ASan+UBSan), runs the unit tests under the sanitizers, then every test on the normal build.
# Set TOTEBOX_TEST_ARGS to pass other ctest arguments (e.g. "-LE slow" to skip slow tests).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/as-root.sh
. scripts/lib/as-root.sh
as_root "$PWD/scripts/test.sh" "$@"
start=$(date +%s)

bash scripts/install-deps.sh

cmake -S . -B build -DTOTEBOX_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
cmake -S . -B build-asan -DTOTEBOX_WERROR=ON -DTOTEBOX_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-asan -j"$(nproc)"

echo "== libFuzzer targets (clang, ASan+UBSan) over their seed corpora"
bash tests/fuzz/run-fuzzers.sh 0
echo "run-fuzzers: every seed passed"

echo "== unit tests under ASan+UBSan"
(cd build-asan && ctest -L unit --output-on-failure)

echo "== all tests"
# Here every tool was installed: a skipped integration test fails (tests/integration/conftest.py).
export TOTEBOX_STRICT_SKIPS=1
# shellcheck disable=SC2086
(cd build && ctest --output-on-failure ${TOTEBOX_TEST_ARGS:-})
echo "test.sh: finished in $(( $(date +%s) - start )) s"
