#!/usr/bin/env bash
# The README's test command: installs what is needed, builds twice (strict warnings; and
# ASan+UBSan), runs the unit tests and the integration tests that are not slow under the
# sanitizers, then every test on the normal build.
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

# The daemons and tools under the sanitizers, in the integration tests that are not slow (nor
# package or image builds, which run no binary of ours to speak of): each
# finding is written to a log of its own (the daemons' stderr is the tests' to read), and any log
# fails the run. In a fresh root (tests/fresh) the outer run has done this on the same commit.
if [ ! -e /etc/totebox-fresh-root ]; then
        echo "== integration tests (not slow) under ASan+UBSan"
        san_logs=$(mktemp -d /tmp/totebox-sanitizers.XXXXXX)
        (cd build-asan &&
                ASAN_OPTIONS="log_path=$san_logs/asan:detect_leaks=1" \
                UBSAN_OPTIONS="log_path=$san_logs/ubsan:print_stacktrace=1" \
                TOTEBOX_STRICT_SKIPS=1 ctest -L integration -LE "slow|packages|image-build" --output-on-failure)
        if [ -n "$(ls -A "$san_logs")" ]; then
                for f in "$san_logs"/*; do echo "--- $f"; head -c 20000 "$f"; done
                echo "test.sh: the sanitizers reported the findings above"
                exit 1
        fi
        rm -rf "$san_logs"
fi

echo "== all tests"
# Here every tool was installed: a skipped integration test fails (tests/integration/conftest.py).
export TOTEBOX_STRICT_SKIPS=1
# shellcheck disable=SC2086
(cd build && ctest --output-on-failure ${TOTEBOX_TEST_ARGS:-})
echo "test.sh: finished in $(( $(date +%s) - start )) s"
