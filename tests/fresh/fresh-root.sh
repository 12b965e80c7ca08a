#!/usr/bin/env bash
# The README's two commands on a fresh Debian 12, as a new user would type them.
#
# Builds a minimal Debian 12 root with mmdebstrap (minbase plus ca-certificates, git and
# iproute2: no sudo, so the commands are run as root without it), clones the repository into it,
# enters it in its own mount and PID namespaces with pivot_root (proc, /sys, devtmpfs /dev with
# its own devpts, tmpfs /run and /tmp) and runs there, exactly as the README writes them:
#
#   scripts/demo.sh --duration N
#   scripts/test.sh
#
# Nothing of the host's installed software goes in: only this machine's CA certificates,
# /etc/npmrc and resolv.conf (to reach the package registries, as every machine here has them)
# and the repository's committed HEAD. What the root downloads (.deb files only) is kept in a
# cache on the host between runs: apt's archives, the test image's kernel packages and the image
# builder's packages. The root shares the host's network namespace (it needs the registries);
# every test inside makes its own network namespaces, as on any machine.
#
#   --source DIR       the repository to clone (default: this script's)
#   --work DIR         where the root is made (default: a new directory under /var/tmp);
#                      removed at the end unless --keep
#   --cache DIR        the .deb cache kept between runs (default /var/cache/totebox-fresh)
#   --duration N       the demo's --duration (default 20)
#   --keep             keep the root
# Prints each phase's time; the logs of both commands are in WORK/demo.log and WORK/test.log.
# Exit status: 0 when both commands exited 0; 3 when the demo failed; 4 when the tests failed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
source=$(cd "$here/../.." && pwd) work="" cache=/var/cache/totebox-fresh duration=20 keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --source) source=${2:?}; shift 2 ;;
    --work) work=${2:?}; shift 2 ;;
    --cache) cache=${2:?}; shift 2 ;;
    --duration) duration=${2:?}; shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "fresh-root: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "fresh-root: must run as root" >&2; exit 2; }
[[ $duration =~ ^[0-9]+$ ]] || { echo "fresh-root: --duration '$duration' is not a number" >&2; exit 2; }
for tool in mmdebstrap unshare pivot_root git; do
  command -v "$tool" >/dev/null || { echo "fresh-root: '$tool' not found (scripts/install-deps.sh)" >&2; exit 2; }
done

[ -n "$work" ] || work=$(mktemp -d /var/tmp/totebox-fresh-XXXXXX)
mkdir -p "$work"
root=$work/root
# The caches: what the fresh root downloads, and only that.
apt_cache=$cache/apt test_debs=$cache/test-image-debs image_debs=$cache/image-debs
mkdir -p "$apt_cache" "$test_debs" "$image_debs"

t0=$(date +%s)
phase() { echo "fresh-root: [$(($(date +%s) - t0)) s] $*"; }

# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  if [ "$keep" -eq 0 ] && [ -d "$root" ]; then
    # Tests set the append-only and immutable attributes on vault files.
    chattr -R -i -a "$root" 2>/dev/null || true
    rm -rf "$root"
  fi
}
trap cleanup EXIT

phase "making a minimal Debian 12 root in $root (cache $cache)"
mirrors=("deb http://deb.debian.org/debian bookworm main"
         "deb http://deb.debian.org/debian bookworm-updates main"
         "deb http://deb.debian.org/debian-security bookworm-security main")
# shellcheck disable=SC2016  # $1 is the hook's argument, expanded by mmdebstrap
mmdebstrap --quiet --variant=minbase --include=ca-certificates,git,iproute2 \
  --setup-hook='mkdir -p "$1"/var/cache/apt/archives' \
  --setup-hook="cp -n $apt_cache/*.deb \"\$1\"/var/cache/apt/archives/ 2>/dev/null || true" \
  --customize-hook="cp -n \"\$1\"/var/cache/apt/archives/*.deb $apt_cache/ 2>/dev/null || true" \
  bookworm "$root" "${mirrors[@]}"

phase "copying in the CA certificates, /etc/npmrc and resolv.conf; cloning $source"
if [ -d /usr/local/share/ca-certificates ]; then
  cp -r /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
fi
[ -f /etc/npmrc ] && cp /etc/npmrc "$root/etc/npmrc"
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
# A run inside this root does not make another root (test_fresh_root.py looks for this file).
echo "made by tests/fresh/fresh-root.sh" >"$root/etc/totebox-fresh-root"
git clone --quiet --no-hardlinks "$source" "$root/root/totebox"
mkdir -p "$root/root/.cache/totebox/debs" "$root/var/cache/totebox-images/debs"

# The logs of both commands are files in $work, bind-mounted into the root.
: >"$work/demo.log"
: >"$work/test.log"
touch "$root/root/demo.log" "$root/root/test.log"

phase "entering the root: scripts/demo.sh --duration $duration, then scripts/test.sh (logs: $work/demo.log, $work/test.log)"
set +e
unshare --mount --pid --uts --ipc --fork --kill-child -- \
  /bin/bash "$here/enter-root.sh" "$root" "$duration" \
  "$apt_cache:/var/cache/apt/archives" "$test_debs:/root/.cache/totebox/debs" \
  "$image_debs:/var/cache/totebox-images/debs" \
  "$work/demo.log:/root/demo.log" "$work/test.log:/root/test.log"
rc=$?
set -e
phase "done: exit status $rc"
grep -E "^test.sh: finished|tests passed|tests failed" "$work/test.log" | tail -3 || true
exit "$rc"
