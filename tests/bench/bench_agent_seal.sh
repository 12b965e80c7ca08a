#!/bin/bash
# Benchmark: the seal rate of `totebox-agent seal` for RECORDS small records (default 10,000 of
# 64 bytes) on a loop-mounted ext4 vault, one record a seal (--batch 1, the protocol before group
# commit) and group-committed (256 a seal, the default), with the syncs a record each takes
# (strace -c over 500-record passes); beside two peers on the same file system: sqlite3 committing
# as many rows one transaction each (journal_mode=WAL, synchronous=FULL: a durable append per
# record) and a plain `cp` of the same files with one `sync -f` per 256; then where a
# group-committed pass waits: strace -T over a 500-record pass, summed per call. Needs root (mount). Creates everything in a temp dir and removes it.
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
# one timed pass: seconds for the pass (sealing the N records waiting in the inbox)
pass() { # BATCH
        local t0 t1
        t0=$(date +%s.%N)
        "$AGENT" seal --batch "$1" "$V" >/dev/null
        t1=$(date +%s.%N)
        python3 -c "print($t1 - $t0)"
}
# syncs of a pass over 500 records (strace -c -f: fsync, fdatasync, syncfs, sync)
syncs() { # BATCH FIRST
        fill 500 "$2"
        sync
        strace -f -c -e trace=fsync,fdatasync,syncfs,sync -o "$DIR/strace-c.txt" \
                "$AGENT" seal --batch "$1" "$V" >/dev/null
        awk '$NF ~ /^(fsync|fdatasync|syncfs|sync)$/ { n += $4 } END { print n + 0 }' \
                "$DIR/strace-c.txt"
}
fill "$N" 0
sync
one=$(pass 1)
fill "$N" "$N"
sync
grouped=$(pass 256)
s_one=$(syncs 1 $((2 * N)))
s_grouped=$(syncs 256 $((2 * N + 500)))
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
# the second peer: a plain copy of each record, then one sync(1) per 256 (group commit by hand)
mkdir "$DIR/mnt/cp-peer" "$DIR/src"
/usr/bin/python3 - "$DIR/src" "$N" <<'PY'
import os, sys
for i in range(int(sys.argv[2])):
    with open(os.path.join(sys.argv[1], "r%06d.txt" % i), "wb") as f:
        f.write(b"record %06d " % i + os.urandom(25).hex().encode() + b"\n")
PY
sync
t4=$(date +%s.%N)
(cd "$DIR/src" && ls | xargs -n 256 sh -c 'cp "$@" "$0" && sync -f "$0"' "$DIR/mnt/cp-peer")
t5=$(date +%s.%N)
python3 - "$N" "$one" "$grouped" "$s_one" "$s_grouped" "$t2" "$t3" "$t4" "$t5" <<'PY'
import sys
n = int(sys.argv[1])
one, grouped = float(sys.argv[2]), float(sys.argv[3])
s_one, s_grouped = int(sys.argv[4]), int(sys.argv[5])
t2, t3, t4, t5 = map(float, sys.argv[6:])
s, c = t3 - t2, t5 - t4
print("%d records of 64 bytes, loop-mounted ext4" % n)
print("  totebox-agent seal --batch 1   (one record a seal): %7.2f s  %8.1f records/s  %6.2f ms a record  %5.2f syncs a record"
      % (one, n / one, 1000 * one / n, s_one / 500))
print("  totebox-agent seal (group commit, 256 a seal):     %7.2f s  %8.1f records/s  %6.2f ms a record  %5.2f syncs a record"
      % (grouped, n / grouped, 1000 * grouped / n, s_grouped / 500))
print("  sqlite3 (WAL, synchronous=FULL, one commit a row): %7.2f s  %8.1f rows/s     %6.2f ms a row"
      % (s, n / s, 1000 * s / n))
print("  cp + sync -f, 256 files a sync (no hash, no ledger): %5.2f s  %8.1f files/s    %6.2f ms a file"
      % (c, n / c, 1000 * c / n))
PY
fill 500 $((2 * N + 1000))
sync
strace -f -T -e trace=fsync,fdatasync,syncfs,renameat,renameat2,unlinkat,openat,pwrite64,write \
        -o "$DIR/strace.txt" "$AGENT" seal "$V" >/dev/null
python3 - "$DIR/strace.txt" <<'PY'
import collections, re, sys
tot, cnt = collections.Counter(), collections.Counter()
for line in open(sys.argv[1]):
    m = re.search(r"(\w+)\(.*<([\d.]+)>$", line.strip())
    if m:
        tot[m.group(1)] += float(m.group(2))
        cnt[m.group(1)] += 1
print("where a group-committed pass of 500 seals waits (strace -T; the rest is the agent's own work and strace's):")
for k, _ in tot.most_common():
    print("  %-10s %6d calls  %7.3f s  %6.3f ms each  %5.2f a record"
          % (k, cnt[k], tot[k], 1000 * tot[k] / cnt[k], cnt[k] / 500))
PY
