#!/usr/bin/env bash
# Installs every Debian package Totebox Fleet needs to build, test and run.
# Idempotent: apt-get skips what is already installed. Runs as root or through sudo.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

PACKAGES=(
  # build
  build-essential cmake pkg-config clang libclang-rt-14-dev clang-format git
  # libraries
  libvirt-dev libjansson-dev libmicrohttpd-dev libsodium-dev libmnl-dev
  libsqlite3-dev libcmocka-dev libcurl4-openssl-dev
  # virtualisation
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils
  # networking: mesh and namespaces
  wireguard-go wireguard-tools iproute2 iptables
  # images: test image and cloud-init seeds
  busybox-static cpio genisoimage cloud-image-utils e2fsprogs
  # tests and tools
  python3-jsonschema python3-pytest sqlite3 curl jq shellcheck
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${#missing[@]} packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
