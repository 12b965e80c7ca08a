#!/usr/bin/env bash
# Installs every Debian package Totebox Fleet needs to build, test and run: the union of the
# lists in scripts/packages/*.txt (one file per part; '#' starts a comment).
# Idempotent: only missing packages are installed. Runs as root or through sudo.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

mapfile -t PACKAGES < <(sed 's/#.*//' "$here"/packages/*.txt | tr -s ' \t' '\n' | sed '/^$/d' | sort -u)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
else
  echo "install-deps: installing ${#missing[@]} packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# libvirt's QEMU driver, when privileged, resolves the 'libvirt-qemu' user at start even when
# qemu.conf names another. Debian creates it in libvirt-daemon-system, which we do not install
# (it starts libvirtd); create the same system user so qemu:///embed works for root.
if ! getent passwd libvirt-qemu >/dev/null; then
  $SUDO useradd --system --no-create-home --home-dir /var/lib/libvirt \
    --shell /usr/sbin/nologin --user-group libvirt-qemu
  echo "install-deps: created the system user 'libvirt-qemu'"
fi

# vmhost, started as root, drops to 'totebox-vmhost' (the totebox-node package makes it; without
# it vmhost falls back to nobody, which the tests accept): the same user as the package's.
if ! getent passwd totebox-vmhost >/dev/null; then
  $SUDO useradd --system --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin --user-group totebox-vmhost
  echo "install-deps: created the system user 'totebox-vmhost'"
fi

# promtool lints fleetd's /metrics in the tests. Debian ships it only inside the prometheus
# package, whose installation would add (and on systemd start) a Prometheus server: take the
# one binary out of Debian's .deb instead (dpkg-deb -x), checked by apt as any download.
PROMTOOL=/usr/local/libexec/totebox/promtool
if [ ! -x "$PROMTOOL" ]; then
  tmp=$(mktemp -d)
  (
    cd "$tmp" || exit 1
    $SUDO apt-get download -q prometheus >/dev/null 2>&1 ||
      { $SUDO apt-get update -q >/dev/null && $SUDO apt-get download -q prometheus >/dev/null; }
  )
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
  $SUDO install -D -m 0755 "$tmp/x/usr/bin/promtool" "$PROMTOOL"
  rm -rf "$tmp"
  echo "install-deps: promtool from Debian's prometheus package at $PROMTOOL"
fi

# The tests lint the OpenAPI documents with @redocly/cli (npm), pinned by tests/lint's
# package-lock.json and installed with 'npm ci' (integrity-checked against the lock) into a
# cache directory outside the tree; reinstalled only when the lock changes. Debian's nodejs and
# npm are installed first where no npm is present.
LINT_DIR=/usr/local/libexec/totebox/lint
if ! command -v npm >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -q --no-install-recommends nodejs npm
fi
if ! cmp -s "$here/../tests/lint/package-lock.json" "$LINT_DIR/package-lock.json" ||
  [ ! -x "$LINT_DIR/node_modules/.bin/redocly" ]; then
  $SUDO mkdir -p "$LINT_DIR"
  $SUDO cp "$here/../tests/lint/package.json" "$here/../tests/lint/package-lock.json" "$LINT_DIR/"
  (cd "$LINT_DIR" && $SUDO npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
  echo "install-deps: @redocly/cli at $LINT_DIR/node_modules/.bin/redocly"
fi
