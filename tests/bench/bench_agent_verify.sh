#!/bin/bash
# Benchmark: full verification of a ~1 GiB vault of ~10,000 files of mixed sizes by
# `totebox-agent verify` (BLAKE2b-256 on every core) beside coreutils `b2sum -l 256` (one thread)
# over the same files in one run, page cache warm. Prints both times and the ratio, then the
# static binary's size and the daemon's idle RSS. Creates its data in a temp dir and removes it.
# usage: tests/bench/bench_agent_verify.sh [BUILD_DIR] [TOTAL_MIB] [FILES]
set -euo pipefail
BUILD=${1:-build}
TOTAL_MIB=${2:-1024}
FILES=${3:-10000}
AGENT=$(realpath "$BUILD/agent/totebox-agent")
DIR=$(mktemp -d /tmp/totebox-bench.XXXXXX)
AGENT_PID=
cleanup() {
        [ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null
        chattr -R -i -a "$DIR" 2>/dev/null || true
        rm -rf "$DIR"
}
trap cleanup EXIT

V="$DIR/vault"
"$AGENT" seal "$V" >/dev/null
echo "creating $FILES files, $TOTAL_MIB MiB in total, in $DIR ..."
/usr/bin/python3 - "$V/app-console-input" "$TOTAL_MIB" "$FILES" <<'PY'
import os, random, sys
inbox, total, n = sys.argv[1], int(sys.argv[2]) << 20, int(sys.argv[3])
rng = random.Random(42)
# mixed sizes: log-uniform weights from 1 KiB to 4 MiB, scaled to the total
w = [2 ** rng.uniform(10, 22) for _ in range(n)]
scale = total / sum(w)
block = os.urandom(8 << 20)
for i, x in enumerate(w):
    size = max(1, int(x * scale))
    off = rng.randrange(0, len(block) - min(size, len(block)) + 1)
    tmp = os.path.join(inbox, ".f%05d" % i)
    with open(tmp, "wb") as f:
        left = size
        f.write(os.urandom(16))  # every file distinct
        left -= 16
        while left > 0:
            k = min(left, len(block) - off)
            f.write(block[off:off + k])
            left -= k
            off = 0
    os.rename(tmp, os.path.join(inbox, "f%05d.bin" % i))
PY
"$AGENT" seal "$V"
cd "$V"
du -sh assets | sed 's/^/vault size: /'
cat assets/* >/dev/null  # warm the page cache for both tools

best() { # best of 3 runs of a command: "WALL CPU" seconds (CPU = user + sys, less load-sensitive)
        local bw= bc=
        for _ in 1 2 3; do
                local t
                t=$( { /usr/bin/time -f "%e %U %S" "$@" >/dev/null; } 2>&1 | tail -1)
                local w c
                w=$(echo "$t" | awk '{print $1}')
                c=$(echo "$t" | awk '{print $2 + $3}')
                bw=$(awk -v a="$w" -v b="$bw" 'BEGIN { print (b == "" || a < b) ? a : b }')
                bc=$(awk -v a="$c" -v b="$bc" 'BEGIN { print (b == "" || a < b) ? a : b }')
        done
        echo "$bw $bc"
}
read -r T_AGENT C_AGENT < <(best "$AGENT" verify --json "$V")
read -r T_B2 C_B2 < <(best b2sum -l 256 assets/*)
RECORDS=$(ls assets | wc -l)
echo "cores: $(nproc), records: $RECORDS, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
printf 'totebox-agent verify (full, %s threads): %.3f s wall, %.3f s user+sys\n' "$(nproc)" "$T_AGENT" "$C_AGENT"
printf 'b2sum -l 256 (coreutils, one run):      %.3f s wall, %.3f s user+sys\n' "$T_B2" "$C_B2"
printf 'ratio b2sum / agent: %.2fx wall, %.2fx user+sys\n' "$(echo "$T_B2 / $T_AGENT" | bc -l)" \
        "$(echo "$C_B2 / $C_AGENT" | bc -l)"

SIZE=$(stat -c %s "$AGENT")
strip -o "$DIR/agent.stripped" "$AGENT"
printf 'binary: %s bytes (%.2f MiB) as built, %s bytes stripped\n' "$SIZE" \
        "$(echo "$SIZE / 1048576" | bc -l)" "$(stat -c %s "$DIR/agent.stripped")"
rss_idle() { # start the daemon on $1 with no channel, wait for the start verification, read VmRSS
        "$AGENT" run --vault "$1" --set channel= --set log_level=error &
        AGENT_PID=$!
        sleep "$2"
        grep VmRSS "/proc/$AGENT_PID/status" | awk '{print $2 " kB"}'
        kill "$AGENT_PID"
        wait "$AGENT_PID" 2>/dev/null || true
        AGENT_PID=
}
echo "idle RSS, empty vault:            $(rss_idle "$DIR/empty" 1)"
echo "idle RSS, this $RECORDS-record vault: $(rss_idle "$V" 6)"
