# shellcheck shell=bash
# Sourced by the README's two commands (scripts/demo.sh, scripts/test.sh): they need root
# (packages, network namespaces, WireGuard, libvirt). Run by root they go on as they are; run by
# another user they run themselves again through sudo, so the same command works on a minimal
# Debian with no sudo (as root) and on a workstation (as a user with sudo).
# Usage: as_root /absolute/path/of/the/script "$@"
as_root() {
  [ "$(id -u)" -eq 0 ] && return 0
  if command -v sudo >/dev/null 2>&1; then
    exec sudo --preserve-env=TOTEBOX_TEST_ARGS,CI -- "$@"
  fi
  echo "$(basename "$1"): needs root (packages, network namespaces, WireGuard, libvirt) and" \
    "this machine has no sudo: run it as root" >&2
  exit 2
}
