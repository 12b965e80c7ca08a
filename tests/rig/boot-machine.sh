#!/usr/bin/env bash
# PID 1 of one rig machine's new PID, mount, UTS and IPC namespaces (started by
# tests/integration/rig.py inside the machine's own network namespace): mounts the machine's root
# as an overlay (the shared Debian base below, the machine's own upper directory above, so its
# state outlives a reboot), its kernel file systems (proc, a sysfs of its network namespace with
# the host's cgroup hierarchies bound in, devtmpfs /dev with its own devpts and /dev/shm, tmpfs
# /run and /tmp), enters it with pivot_root and execs systemd as PID 1 (container=other).
# Usage: boot-machine.sh BASE MACHINE_DIR
set -euo pipefail
# shellcheck source=tests/fresh/root-fs.sh
. "$(dirname "$0")/../fresh/root-fs.sh"
base=$1 dir=$2
root=$dir/root
mkdir -p "$dir/upper" "$dir/work" "$root"

mount --make-rprivate /
mount -t overlay overlay -o "lowerdir=$base,upperdir=$dir/upper,workdir=$dir/work" "$root"
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount --rbind /sys/fs/cgroup "$root/sys/fs/cgroup"
mount_dev_run_tmp "$root"

cd "$root"
mkdir -p .oldroot
pivot_root . .oldroot
umount -l /.oldroot
rmdir /.oldroot
exec env -i container=other PATH=/usr/sbin:/usr/bin:/sbin:/bin /lib/systemd/systemd
