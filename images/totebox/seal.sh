#!/bin/sh
# seal.sh: the last act of the customisation boot, run once cloud-final has finished. Removes
# what belongs to this one boot (cloud-init's instance state and logs, machine-id, host keys,
# random seed, journals), returns freed blocks to the host (fstrim, for a compact image) and
# powers off. The host reads "sealed" on the console as the build's success.
set -u
console=/dev/ttyS0
[ -w "$console" ] || console=/dev/console
say() { echo "totebox-build: $*" >"$console"; }
if ! cloud-init clean --logs; then
  say "FAILED step seal (cloud-init clean)"
  systemctl --no-block poweroff
  exit 1
fi
umount /run/totebox-payload 2>/dev/null || true
: >/etc/machine-id
rm -f /var/lib/dbus/machine-id /etc/ssh/ssh_host_* /var/lib/systemd/random-seed
journalctl --rotate >/dev/null 2>&1 || true
journalctl --vacuum-time=1s >/dev/null 2>&1 || true
rm -rf /tmp/* /var/tmp/* 2>/dev/null || true
# The image's package versions, for its manifest (one line each, then the count, so that the host
# can tell a complete list from one the console garbled).
n=$(dpkg-query -W -f='${binary:Package} ${Version}\n' 2>/dev/null | while read -r pkg ver; do
  say "package $pkg $ver"
  echo x
done | wc -l)
say "packages $n"
sync
fstrim -a >/dev/null 2>&1 || true
say "sealed"
systemctl --no-block poweroff
