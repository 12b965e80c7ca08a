#!/usr/bin/env bash
# PID 1 of tests/fresh/fresh-root.sh's new mount and PID namespaces: mounts the fresh root's
# file systems (proc, /sys, devtmpfs /dev with its own devpts and /dev/shm, tmpfs /run and /tmp),
# bind-mounts the host paths given as HOST:INSIDE (the .deb caches and the two log files),
# pivots into the root and runs the README's two commands there, as root, with an empty
# environment. Exit status: 3 when the demo failed, 4 when the tests failed.
# Usage: enter-root.sh ROOT DEMO_DURATION HOST:INSIDE...
set -euo pipefail
# shellcheck source=tests/fresh/root-fs.sh
. "$(dirname "$0")/root-fs.sh"
root=$1 duration=$2
shift 2

mount --make-rprivate /
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --make-rslave "$root/sys"
mount_dev_run_tmp "$root"
for pair in "$@"; do
  mount --bind "${pair%%:*}" "$root${pair#*:}"
done

cd "$root"
mkdir -p .oldroot
pivot_root . .oldroot
umount -l /.oldroot
rmdir /.oldroot

# shellcheck disable=SC2016  # expanded inside the root
exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
  LANG=C.UTF-8 TERM=dumb ${CI:+CI="$CI"} DURATION="$duration" /bin/bash -c '
    update-ca-certificates >/dev/null
    cd /root/totebox
    echo "fresh-root: inside $(. /etc/os-release && echo "$PRETTY_NAME"); sudo: $(command -v sudo || echo none)"
    echo "fresh-root: scripts/demo.sh --duration $DURATION"
    scripts/demo.sh --duration "$DURATION" >/root/demo.log 2>&1 || exit 3
    echo "fresh-root: scripts/test.sh"
    scripts/test.sh >/root/test.log 2>&1 || exit 4
  '
