# shellcheck shell=bash
# Sourced by tests/fresh/enter-root.sh and tests/rig/boot-machine.sh, in a new mount namespace:
# mount_dev_run_tmp ROOT mounts a root's /dev (devtmpfs, its own devpts instance and /dev/shm)
# and its tmpfs /run and /tmp.
mount_dev_run_tmp() {
        local root=$1
        mount -t devtmpfs devtmpfs "$root/dev"
        mkdir -p "$root/dev/pts" "$root/dev/shm"
        mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$root/dev/pts"
        mount --bind "$root/dev/pts/ptmx" "$root/dev/ptmx"
        mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm"
        mount -t tmpfs -o mode=0755 tmpfs "$root/run"
        mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
}
