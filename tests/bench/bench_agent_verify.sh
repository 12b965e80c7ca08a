#!/bin/bash
# Benchmark: full verification of a ~1 GiB vault of ~10,000 files of mixed sizes by
# `totebox-agent verify` (BLAKE2b-256, eight files at once per core) beside coreutils
# `b2sum -l 256` (one thread) over the same files in one run, page cache warm; then the same on
# as many 4 KiB records. Prints both times and the ratios, then the static binary's size and
# the daemon's idle RSS. Creates its data in a temp dir and removes it. The hash functions alone,
# per instruction set, beside libsodium: build/tests/bench/bench_agent_hashing.
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
cat "$V"/assets/* >/dev/null  # warm the page cache for both tools

best() { # best of 3 runs of a command: "WALL CPU" seconds (CPU = user + sys, less load-sensitive)
        local bw="" bc=""
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
compare() { # LABEL VAULT: the agent's full verification beside b2sum over the same assets
        local t_agent c_agent t_b2 c_b2
        read -r t_agent c_agent < <(best "$AGENT" verify --json "$2")
        read -r t_b2 c_b2 < <(best b2sum -l 256 "$2"/assets/*)
        echo "== $1: $(ls "$2/assets" | wc -l) records, $(du -sh "$2/assets" | cut -f1)"
        printf 'totebox-agent verify (full, %s threads): %.3f s wall, %.3f s user+sys\n' "$(nproc)" \
                "$t_agent" "$c_agent"
        printf 'b2sum -l 256 (coreutils, one run):      %.3f s wall, %.3f s user+sys\n' "$t_b2" "$c_b2"
        printf 'ratio b2sum / agent: %.2fx wall, %.2fx user+sys\n' "$(echo "$t_b2 / $t_agent" | bc -l)" \
                "$(echo "$c_b2 / $c_agent" | bc -l)"
}
echo "cores: $(nproc), load average: $(cut -d' ' -f1-3 /proc/loadavg)," \
        "CPU has: $(grep -o -w -E 'avx512f|avx2|sha_ni' /proc/cpuinfo | sort -u | tr '\n' ' ')"
compare "mixed sizes" "$V"
RECORDS=$(ls "$V/assets" | wc -l)

# the same number of small records (4 KiB): the per-record cost (open, flags, ledger line)
S="$DIR/small"
"$AGENT" seal "$S" >/dev/null
/usr/bin/python3 - "$S/app-console-input" "$FILES" <<'PY'
import os, sys
for i in range(int(sys.argv[2])):
    tmp = os.path.join(sys.argv[1], ".s%05d" % i)
    with open(tmp, "wb") as f:
        f.write(os.urandom(4096))
    os.rename(tmp, os.path.join(sys.argv[1], "s%05d.bin" % i))
PY
"$AGENT" seal "$S" >/dev/null
cat "$S"/assets/* >/dev/null
compare "small records" "$S"

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
