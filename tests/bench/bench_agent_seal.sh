#!/bin/bash
# Benchmark: the seal rate of `totebox-agent seal` for RECORDS small records (default 10,000 of
# 64 bytes) on a loop-mounted ext4 vault, beside sqlite3 committing as many rows one transaction
# each (journal_mode=WAL, synchronous=FULL: a durable append per record, the usual peer) on the
# same file system; then where a seal's time goes: strace -T over a 500-record pass, summed per
# sync call. Needs root (mount). Creates everything in a temp dir and removes it.
# usage: tests/bench/bench_agent_seal.sh [BUILD_DIR] [RECORDS]
set -euo pipefail
BUILD=${1:-build}
N=${2:-10000}
AGENT=$(realpath "$BUILD/agent/totebox-agent")
DIR=$(mktemp -d /tmp/totebox-bench-seal.XXXXXX)
cleanup() {
        chattr -R -i -a "$DIR/mnt" 2>/dev/null || true
        umount "$DIR/mnt" 2>/dev/null || true
        rm -rf "$DIR"
}
trap cleanup EXIT
truncate -s 2G "$DIR/ext4.img"
mkfs.ext4 -q -F "$DIR/ext4.img"
mkdir "$DIR/mnt"
mount -o loop "$DIR/ext4.img" "$DIR/mnt"
V="$DIR/mnt/vault"
"$AGENT" seal "$V" >/dev/null

fill() { # N records into the inbox, written elsewhere and renamed in
        /usr/bin/python3 - "$V/app-console-input" "$1" "$2" <<'PY'
import os, sys
inbox, n, first = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(first, first + n):
    tmp = os.path.join(inbox, ".r%06d" % i)
    with open(tmp, "wb") as f:
        f.write(b"record %06d " % i + os.urandom(25).hex().encode() + b"\n")
    os.rename(tmp, os.path.join(inbox, "r%06d.txt" % i))
PY
}
fill "$N" 0
sync
t0=$(date +%s.%N)
"$AGENT" seal "$V" >/dev/null
t1=$(date +%s.%N)
t2=$(date +%s.%N)
sqlite3 "$DIR/mnt/peer.db" "PRAGMA journal_mode=WAL;" "PRAGMA synchronous=FULL;" \
        "CREATE TABLE r(seq INTEGER PRIMARY KEY, line TEXT);" >/dev/null
/usr/bin/python3 - "$N" <<'PY' | sqlite3 "$DIR/mnt/peer.db" >/dev/null
import os, sys
print("PRAGMA synchronous=FULL;")
for i in range(int(sys.argv[1])):
    print("INSERT INTO r(line) VALUES('%s');" % os.urandom(32).hex())  # autocommit: one each
PY
t3=$(date +%s.%N)
python3 - "$N" "$t0" "$t1" "$t2" "$t3" <<'PY'
import sys
n, t0, t1, t2, t3 = int(sys.argv[1]), *map(float, sys.argv[2:])
a, s = t1 - t0, t3 - t2
print("%d records of 64 bytes, loop-mounted ext4" % n)
print("  totebox-agent seal: %7.2f s  %7.1f records/s  %6.2f ms a record" % (a, n / a, 1000 * a / n))
print("  sqlite3 (WAL, synchronous=FULL, one commit a row): %7.2f s  %7.1f rows/s  %6.2f ms a row"
      % (s, n / s, 1000 * s / n))
PY
fill 500 "$N"
sync
strace -f -T -e trace=fsync,fdatasync,renameat,renameat2,unlinkat,openat,pwrite64,write \
        -o "$DIR/strace.txt" "$AGENT" seal "$V" >/dev/null
python3 - "$DIR/strace.txt" <<'PY'
import collections, re, sys
tot, cnt = collections.Counter(), collections.Counter()
for line in open(sys.argv[1]):
    m = re.search(r"(\w+)\(.*<([\d.]+)>$", line.strip())
    if m:
        tot[m.group(1)] += float(m.group(2))
        cnt[m.group(1)] += 1
print("where 500 seals wait (strace -T; the rest is the agent's own work and strace's):")
for k, _ in tot.most_common():
    print("  %-10s %6d calls  %7.3f s  %6.3f ms each  %5.1f a record"
          % (k, cnt[k], tot[k], 1000 * tot[k] / cnt[k], cnt[k] / 500))
PY
