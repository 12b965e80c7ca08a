# images/lib/common.sh: the shell helpers that build-totebox-image and build-debian-base share.
# It owns the build's voice: stage bookkeeping (each stage printed with its elapsed time; a
# failure names the stage that failed and points at the logs it kept), argument checks, the
# QEMU accelerator choice (KVM only after a probe shows it can really boot a guest), and the
# checksum helper. Sourced, never executed.

# shellcheck shell=bash

IMG_PROG=${IMG_PROG:-$(basename "$0")}
IMG_T0=$(date +%s.%N)
IMG_STAGE=""
IMG_STAGE_T0=""
IMG_KEEP_ON_FAILURE=()
IMG_STAGE_TIMES="" # "name=seconds;..." for manifests

img_now() { date +%s.%N; }

# Seconds between two img_now stamps, one decimal.
img_elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

img_log() { printf '%s: %s\n' "$IMG_PROG" "$*" >&2; }

img_die() {
  img_log "error: $*"
  exit 1
}

# Begins a stage; the previous one (if any) is closed and its time printed.
img_stage() {
  img_stage_end
  IMG_STAGE=$1
  IMG_STAGE_T0=$(img_now)
  img_log "stage '$IMG_STAGE' ..."
}

img_stage_end() {
  [ -n "$IMG_STAGE" ] || return 0
  local secs
  secs=$(img_elapsed "$IMG_STAGE_T0" "$(img_now)")
  img_log "stage '$IMG_STAGE' done in $secs s"
  IMG_STAGE_TIMES+="${IMG_STAGE//[;=]/_}=$secs;"
  IMG_STAGE=""
}

# A file the failure message must point at (a console log, a build log): it is kept.
img_keep_on_failure() { IMG_KEEP_ON_FAILURE+=("$1"); }

# EXIT trap: on failure names the stage and the kept logs; always prints the total time.
img_on_exit() {
  local rc=$?
  local total
  total=$(img_elapsed "$IMG_T0" "$(img_now)")
  if [ "$rc" -ne 0 ]; then
    img_log "FAILED in stage '${IMG_STAGE:-setup}' after $total s (exit $rc)"
    local f
    for f in "${IMG_KEEP_ON_FAILURE[@]}"; do
      [ -e "$f" ] && img_log "kept: $f"
    done
  else
    img_stage_end
    img_log "finished in $total s"
  fi
  if declare -F img_cleanup >/dev/null; then img_cleanup "$rc"; fi
  exit "$rc"
}

img_need() {
  local t
  for t in "$@"; do
    command -v "$t" >/dev/null 2>&1 || img_die "'$t' not found (see scripts/packages/images.txt)"
  done
}

img_sha256() { sha256sum "$1" | cut -d' ' -f1; }

img_is_sha256() { [[ $1 =~ ^[0-9a-f]{64}$ ]]; }

img_size_bytes() { stat -c %s "$1"; }

# KVM is tried only when it can run guest code at all: a one-sector boot program that writes
# to QEMU's isa-debug-exit port must end QEMU with the status it chose. On this project's build
# machines /dev/kvm passes that yet hangs real kernels (docs/images.md), so a KVM boot is also
# watched for progress and abandoned for TCG (build-totebox-image's customise stage).
img_kvm_works() {
  [ -r /dev/kvm ] && [ -w /dev/kvm ] || return 1
  local dir rc
  dir=$(mktemp -d)
  # mov al,0x31; out 0xf4,al; hlt; jmp $-3 ... 0x55aa: QEMU exits with (0x31 << 1) | 1 = 99.
  printf '\xb0\x31\xe6\xf4\xf4\xeb\xfd' >"$dir/boot.bin"
  truncate -s 510 "$dir/boot.bin"
  printf '\x55\xaa' >>"$dir/boot.bin"
  rc=0
  timeout 10 qemu-system-x86_64 -accel kvm -cpu host -m 64 -nodefaults -display none \
    -no-reboot -serial none -drive "file=$dir/boot.bin,format=raw,if=ide" \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04 >/dev/null 2>&1 || rc=$?
  rm -rf "$dir"
  [ "$rc" -eq 99 ]
}

# Prints the accelerator to use: "kvm" or "tcg". $1 is auto|kvm|tcg.
img_pick_accel() {
  case "$1" in
    kvm | tcg) echo "$1" ;;
    auto) if img_kvm_works; then echo kvm; else echo tcg; fi ;;
    *) img_die "unknown accelerator '$1' (auto, kvm or tcg)" ;;
  esac
}

# The build's SOURCE_DATE_EPOCH (reproducible-builds.org): every timestamp an image holds is
# this instant or clamped to it, so two builds from the same inputs are bit-for-bit identical.
# Taken from the environment when set; else the source tree's last commit; else the date of
# debian/changelog's newest entry (a tarball without .git). $1 is the source tree's root.
img_source_date_epoch() {
  local top=$1 sde=${SOURCE_DATE_EPOCH:-}
  if [ -n "$sde" ]; then
    [[ $sde =~ ^[0-9]{1,12}$ ]] || img_die "SOURCE_DATE_EPOCH '$sde' is not a number of seconds"
  elif sde=$(git -c safe.directory='*' -C "$top" log -1 --format=%ct 2>/dev/null) && [ -n "$sde" ]; then
    :
  elif [ -f "$top/debian/changelog" ] &&
    sde=$(sed -n 's/^ -- .*>  //p' "$top/debian/changelog" | head -n1 | xargs -r -I{} date -u -d {} +%s 2>/dev/null) &&
    [ -n "$sde" ]; then
    : # the trailer line of the newest entry, as dpkg-parsechangelog -STimestamp reads it
  else
    img_die "cannot derive SOURCE_DATE_EPOCH (no git history, no debian/changelog); set it"
  fi
  echo "$sde"
}

# A file-system UUID derived from a string: the same image name gives the same UUID in every
# build (a random one would differ each time). Shaped as an RFC 4122 version 4 UUID.
img_uuid_from() {
  local h
  h=$(printf '%s' "$1" | sha256sum | cut -c1-32)
  printf '%s-%s-4%s-8%s-%s\n' "${h:0:8}" "${h:8:4}" "${h:13:3}" "${h:17:3}" "${h:20:12}"
}

# Clamps every mtime under DIR to EPOCH (files newer than it get it), then sets the
# directories' own mtimes, which adding entries changed, to EPOCH as well.
img_clamp_mtimes() {
  local dir=$1 epoch=$2
  find "$dir" -newermt "@$epoch" -print0 | xargs -0r touch -h -d "@$epoch"
  find "$dir" -type d -print0 | xargs -0r touch -h -d "@$epoch"
}

# The installed Debian version of PACKAGE, or "unknown" when dpkg does not know it.
img_pkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo unknown; }
