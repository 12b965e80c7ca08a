#!/bin/sh
# install.sh BUILD_ID: runs inside the image during its one customisation boot (cloud-init
# runcmd, as root), from the payload disk. Installs the static agent, its user, the hardened
# unit, the vault mount and format units, the udev rule for the channel, then schedules
# seal.sh to run after cloud-final. Every step is announced on the serial console; a failure
# names its step and powers off, so the host sees it at once.
set -eu
payload=$(cd "$(dirname "$0")" && pwd)
build_id=${1:?usage: install.sh BUILD_ID}
console=/dev/ttyS0
[ -w "$console" ] || console=/dev/console
step=start
say() { echo "totebox-build: $*" >"$console"; echo "totebox-build: $*"; }
on_exit() {
  rc=$?
  [ "$rc" -eq 0 ] && return 0
  say "FAILED step $step (exit $rc)"
  systemctl --no-block poweroff
}
trap on_exit EXIT

step=user
getent group totebox-agent >/dev/null || groupadd --system totebox-agent
getent passwd totebox-agent >/dev/null ||
  useradd --system --gid totebox-agent --home-dir /nonexistent --no-create-home \
    --shell /usr/sbin/nologin --comment "Totebox vault agent" totebox-agent
say "ok step $step"

step=agent
install -m 0755 -o root -g root "$payload/totebox-agent" /usr/local/bin/totebox-agent
want=$(cat "$payload/agent.sha256")
got=$(sha256sum /usr/local/bin/totebox-agent | cut -d' ' -f1)
[ "$want" = "$got" ] || { say "agent checksum '$got' is not '$want'"; exit 1; }
say "ok step $step"

step=units
install -d -m 0755 /usr/local/libexec/totebox /vault
install -m 0755 "$payload/vault-format" "$payload/vault-skeleton" /usr/local/libexec/totebox/
install -m 0644 "$payload/totebox-agent.service" "$payload/vault.mount" \
  "$payload/totebox-vault-format.service" /etc/systemd/system/
install -m 0644 "$payload/60-totebox-agent.rules" /etc/udev/rules.d/
install -m 0644 "$payload/totebox-agent.default" /etc/default/totebox-agent
install -m 0644 "$payload/image-release" /etc/totebox-image-release
systemctl daemon-reload
systemctl enable totebox-agent.service
say "ok step $step"

step=verify
# The units must load on this image's own systemd; warnings are shown, errors fail the build.
if command -v systemd-analyze >/dev/null; then
  # Only complaints about our own units fail the build: verify also loads their dependencies,
  # and an image's other units may draw warnings that are not ours to fix.
  rc=0
  out=$(systemd-analyze verify /etc/systemd/system/totebox-agent.service \
    /etc/systemd/system/vault.mount /etc/systemd/system/totebox-vault-format.service 2>&1) || rc=$?
  [ -z "$out" ] || say "systemd-analyze verify says: $out"
  if [ "$rc" -ne 0 ] && printf '%s' "$out" | grep -qE '(totebox-agent|totebox-vault-format)\.service|vault\.mount'; then
    exit 1
  fi
  score=$(systemd-analyze security totebox-agent.service 2>/dev/null | sed -n 's/.*Overall exposure level for [^:]*: //p')
  say "unit exposure: ${score:-unknown}"
fi
say "ok step $step"

step=schedule-seal
install -m 0755 "$payload/seal.sh" /run/totebox-seal.sh
systemd-run --no-block --unit="totebox-seal-$build_id" --property=Type=oneshot \
  --property=After=cloud-final.service /bin/sh /run/totebox-seal.sh
say "ok step $step"
