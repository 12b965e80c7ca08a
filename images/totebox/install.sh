#!/bin/sh
# install.sh BUILD_ID: runs inside the image during its one customisation boot (cloud-init
# runcmd, as root), from the payload disk. Installs the static agent, its user, the hardened
# unit, the vault mount and format units, the udev rule for the channel, masks what a Totebox
# VM's boot does not need (step boot), then schedules seal.sh to run after cloud-final. Every
# step is announced on the serial console; a failure names its step and powers off, so the host
# sees it at once.
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

step=boot
# What a Totebox VM's boot does not need (docs/images.md, "Boot time"): each unit below cost
# seconds under TCG, on one vCPU where everything that runs beside the agent's path slows it.
# cloud-init: the VM needs only its local stage (the NoCloud seed, the instance id and the host
# name, set before sysinit.target; the agent's vault_id is that host name). Its network stage
# was ordered before sysinit.target, so the agent waited for a second Python start-up; config and
# final ran modules a vault VM never uses (vmhost's user-data has a host name and a totebox:
# block that no module reads). The VM has no network interface (vmhost's domain XML): nothing for
# ifupdown or a wait-online unit to raise. No display (gettys on tty1-6), no LVM (e2scrub), no
# binfmt, FUSE, loop, device-mapper or EFI pstore users, no debug or tracing file systems, and no
# package updates without a network (apt's timers). The serial console's getty stays.
for unit in cloud-init.service cloud-config.service cloud-final.service \
  cloud-init-hotplugd.socket networking.service ifupdown-pre.service \
  ifupdown-wait-online.service systemd-networkd-wait-online.service \
  e2scrub_reap.service e2scrub_all.timer systemd-binfmt.service \
  proc-sys-fs-binfmt_misc.automount getty-static.service getty@tty1.service \
  modprobe@dm_mod.service modprobe@fuse.service modprobe@loop.service \
  modprobe@efi_pstore.service sys-kernel-debug.mount sys-kernel-tracing.mount \
  dev-hugepages.mount sys-fs-fuse-connections.mount systemd-pstore.service \
  apt-daily.timer apt-daily-upgrade.timer; do
  # --no-reload: this boot's own units (cloud-final runs this script) keep running.
  systemctl mask --quiet --no-reload "$unit"
done
# ... and with no interface, the local stage has no network configuration to write.
if [ -d /etc/cloud/cloud.cfg.d ]; then
  printf '%s\n' '# images/totebox/install.sh: a Totebox VM has no network interface.' \
    'network:' '  config: disabled' >/etc/cloud/cloud.cfg.d/90-totebox.cfg
fi
# udev loaded kvm and kvm_amd (the CPU model offers SVM) for nested guests a vault VM never runs.
mkdir -p /etc/modprobe.d
printf 'blacklist %s\n' kvm kvm_amd kvm_intel >/etc/modprobe.d/totebox-no-kvm.conf
say "ok step $step"

step=schedule-seal
install -m 0755 "$payload/seal.sh" /run/totebox-seal.sh
systemd-run --no-block --unit="totebox-seal-$build_id" --property=Type=oneshot \
  --property=After=cloud-final.service /bin/sh /run/totebox-seal.sh
say "ok step $step"
