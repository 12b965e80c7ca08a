#!/usr/bin/python3
"""Benchmark: the time from QEMU's start to the guest agent's first report on its virtio-serial
channel org.totebox.agent.0, for the Totebox image (images/build-totebox-image: SeaBIOS, GRUB,
kernel + initramfs-tools initrd, systemd, cloud-init, the vault's format and mount, the agent)
beside the small test image (images/build-test-image: direct kernel boot, busybox /init), both
under TCG with one vCPU, one after the other in the same run, with the same real agent when
build/agent/totebox-agent exists. Issue 16's target for the Totebox image is 30 s. Each boot
prints its wall-clock time and QEMU's CPU time by then: on a machine shared with other people's
guests the wall clock stretches with the load, the guest's own work much less, so compare
changes by the second column.

Then where the Totebox image's time went, from two sources:
  - the console as the host saw it: every serial line is stamped on arrival, and the first line
    of each boot phase (GRUB, kernel, systemd, each cloud-init stage, the vault, the agent) is
    printed with its time since QEMU started;
  - systemd inside the guest, from a measuring copy of the image (the image itself is never
    changed): a raw copy with one extra unit, totebox-boot-analysis.service, which waits for
    the boot to finish and writes `systemd-analyze time`, the critical chains of
    totebox-agent.service and cloud-init-local.service, `blame`, the loaded modules and
    `cloud-init analyze blame` to a second virtio-serial port, org.totebox.bench.0,
    that only this benchmark attaches. The copy is made through a loop device (root needed);
    --no-analysis boots the image as it is and prints only the console breakdown.

The boot is the one tests/integration/test_images_build.py runs: a blank 64 MiB vault disk with
serial "vault" (the image formats it), a NoCloud seed shaped like vmhost's (instance-id and
hostname in meta-data; #cloud-config user-data with a totebox: block; network-config with no
interfaces), the channel on a unix socket, no network. The report's vault_id (the guest's host
name unless the agent is told otherwise) shows whether cloud-init set the host name first.

usage: tests/bench/bench_images_boot.py --image TOTEBOX.qcow2 [--runs N] [--no-analysis]
         [--test-image DIR] [--totebox-only] [--keep DIR] [--limit SECONDS]
         (env TOTEBOX_BUILD_DIR; the image is built by images/build-totebox-image, e.g. as
         tests/integration/test_images_build.py leaves it in build/images-test/totebox.qcow2)
"""
import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from test_vmhost_harness import BUILD, build_image  # noqa: E402

AGENT = os.path.join(BUILD, "agent", "totebox-agent")
CHANNEL = "org.totebox.agent.0"
BENCH_PORT = "org.totebox.bench.0"

# The first console line of each phase, in boot order: (phase, pattern).
PHASES = [
    ("GRUB (first output)", r"GNU GRUB|Welcome to GRUB|Booting .Debian"),
    ("kernel starts", r"Linux version \d"),
    ("initrd /init (initramfs-tools)", r"Loading, please wait|Begin: Loading essential drivers"),
    ("root mounted, systemd starts", r"systemd\[1\]: systemd \d+|Welcome to .*Debian"),
    ("udev trigger done", r"Finished .*(Coldplug All udev Devices|systemd-udev-trigger)"),
    ("vault formatted", r"Finished .*(Format the Totebox vault|totebox-vault-format)"),
    ("cloud-init local starts", r"running 'init-local'"),
    ("cloud-init network stage starts", r"running 'init' at"),
    ("sysinit.target", r"Reached target .*(System Initialization|sysinit\.target)"),
    ("vault mounted", r"Mounted .*(vault\.mount|Totebox vault disk)"),
    ("agent started", r"Started .*(totebox-agent|Totebox vault agent)"),
    ("cloud-init config stage starts", r"running 'modules:config'"),
    ("cloud-init final stage starts", r"running 'modules:final'"),
    ("cloud-init finished", r"Cloud-init v\. \S+ finished"),
    ("multi-user.target", r"Reached target .*(Multi-User System|multi-user\.target)"),
    ("test image: agent starting", r"totebox-test-guest: starting agent"),
]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

ANALYSIS_UNIT = """[Unit]
Description=Boot analysis for tests/bench/bench_images_boot.py (measuring copy only)
ConditionPathExists=/dev/virtio-ports/%s

[Service]
Type=exec
ExecStart=/bin/sh /usr/local/libexec/totebox-boot-analysis

[Install]
WantedBy=multi-user.target
""" % BENCH_PORT

# Waits for the boot to end (the unit is Type=exec, so its own job is done and cannot hold the
# wait), then writes what systemd and cloud-init measured to the bench port, ending with a mark.
ANALYSIS_SCRIPT = """#!/bin/sh
port=/dev/virtio-ports/%s
systemctl is-system-running --wait >/dev/null 2>&1
{
  echo "== systemd-analyze time"; systemd-analyze time
  echo "== critical-chain totebox-agent.service"
  systemd-analyze critical-chain --no-pager totebox-agent.service
  echo "== critical-chain cloud-init-local.service"
  systemd-analyze critical-chain --no-pager cloud-init-local.service 2>&1 | tail -n +3
  echo "== blame"; systemd-analyze blame --no-pager
  echo "== modules"; lsmod | tail -n +2 | cut -d' ' -f1 | sort | tr '\\n' ' '; echo
  echo "== agent start"; systemctl show -p ExecMainStartTimestampMonotonic totebox-agent.service
  echo "== kernel"; dmesg | grep -E 'Run /init|Freeing unused kernel|EXT4-fs \\(vda1\\): mounted' | head -n 5
  if command -v cloud-init >/dev/null; then echo "== cloud-init analyze blame"; cloud-init analyze blame 2>&1 | head -n 25; fi
  echo "== end"
} >"$port" 2>&1
""" % BENCH_PORT


class Reader(threading.Thread):
    """Collects a byte stream (QEMU's serial on stdout, or a connected socket) into stamped
    lines: [(seconds since t0, text)]."""

    def __init__(self, stream, t0, log=None):
        super().__init__(daemon=True)
        self.stream, self.t0, self.log = stream, t0, log
        self.lines, self.partial = [], b""

    def run(self):
        read = self.stream.recv if hasattr(self.stream, "recv") else self.stream.read1
        while True:
            try:
                data = read(65536)
            except OSError:
                data = b""
            if not data:
                break
            if self.log:
                self.log.write(data)
            now = time.monotonic() - self.t0
            self.partial += data
            *done, self.partial = self.partial.split(b"\n")
            for ln in done:
                text = ANSI.sub("", ln.decode("utf-8", "replace")).replace("\r", "")
                self.lines.append((now, text))

    def text(self):
        return "\n".join(t for _, t in self.lines)


def connect(path, qemu, deadline):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    while True:
        try:
            s.connect(path)
            return s
        except OSError:
            if qemu.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("QEMU's socket '%s' never appeared" % path)
            time.sleep(0.05)


def first_line(s, deadline):
    buf = b""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        s.settimeout(left)
        try:
            d = s.recv(65536)
        except socket.timeout:
            return None
        if not d:
            return None
        buf += d
    return buf.split(b"\n", 1)[0]


def make_seed(d):
    with open(os.path.join(d, "meta-data"), "w") as f:
        f.write("instance-id: bench-boot-1\nlocal-hostname: bench-boot-1\n")
    with open(os.path.join(d, "user-data"), "w") as f:
        f.write("#cloud-config\nhostname: bench-boot-1\ntotebox:\n  vm_id: bench-boot-1\n"
                "  vault:\n    id: bench\n    device_serial: \"vault\"\n    mount: \"/vault\"\n"
                "  channel: \"/dev/virtio-ports/%s\"\n" % CHANNEL)
    with open(os.path.join(d, "network-config"), "w") as f:
        f.write("version: 2\nethernets: {}\n")
    seed = os.path.join(d, "seed.iso")
    subprocess.run(["genisoimage", "-quiet", "-output", seed, "-volid", "cidata", "-joliet", "-rock",
                    *(os.path.join(d, n) for n in ("user-data", "meta-data", "network-config"))],
                   check=True)
    return seed


def cpu_seconds(pid):
    """QEMU's CPU time so far (all its threads): the guest's work, which a loaded machine does
    not inflate the way it inflates the wall-clock time."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def boot(d, os_args, limit, bench_port=False):
    """One boot in directory d; returns ((seconds to the first report, QEMU's CPU seconds by
    then) or None, report, console Reader, analysis text or None)."""
    vault = os.path.join(d, "vault.raw")
    with open(vault, "wb") as f:
        f.truncate(64 << 20)
    sock, bsock = os.path.join(d, "agent.sock"), os.path.join(d, "bench.sock")
    args = ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-m", "1024", "-smp", "1",
            "-nodefaults", "-display", "none", "-no-reboot", "-nic", "none", "-serial", "stdio",
            *os_args,
            "-drive", f"file={vault},if=none,id=vault,format=raw",
            "-device", "virtio-blk-pci,drive=vault,serial=vault",
            "-device", "virtio-serial-pci",
            "-chardev", f"socket,id=agent,path={sock},server=on,wait=off",
            "-device", f"virtserialport,chardev=agent,name={CHANNEL}", "-device", "virtio-rng-pci"]
    if bench_port:
        args += ["-chardev", f"socket,id=bench,path={bsock},server=on,wait=off",
                 "-device", f"virtserialport,chardev=bench,name={BENCH_PORT}"]
    log = open(os.path.join(d, "console.log"), "wb")
    t0 = time.monotonic()
    qemu = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=open(os.path.join(d, "qemu.log"), "wb"))
    console = Reader(qemu.stdout, t0, log)
    console.start()
    deadline = t0 + limit
    analysis = None
    try:
        s = connect(sock, qemu, deadline)
        b = connect(bsock, qemu, deadline) if bench_port else None
        line = first_line(s, deadline)
        secs = (time.monotonic() - t0, cpu_seconds(qemu.pid)) if line else None
        if b:
            r = Reader(b, t0)
            r.start()
            while time.monotonic() < deadline and "== end" not in r.text():
                time.sleep(0.5)
            analysis = r.text()
        s.close()
    finally:
        qemu.kill()
        qemu.wait()
        console.join(5)
        log.close()
    report = json.loads(line) if line else None
    return secs, report, console, analysis


def phases(console):
    out = []
    for name, pat in PHASES:
        rx = re.compile(pat)
        hit = next((t for t, ln in console.lines if rx.search(ln)), None)
        if hit is not None:
            out.append((hit, name))
    return sorted(out)


def measuring_copy(image, d):
    """A raw copy of the image with the analysis unit enabled (loop device, then detached)."""
    raw = os.path.join(d, "measure.raw")
    subprocess.run(["qemu-img", "convert", "-O", "raw", image, raw], check=True)
    mnt = os.path.join(d, "mnt")
    os.makedirs(mnt)
    loop = subprocess.run(["losetup", "--find", "--show", "--offset", "1048576", raw],
                          capture_output=True, text=True, check=True).stdout.strip()
    try:
        subprocess.run(["mount", loop, mnt], check=True)
        try:
            unit = os.path.join(mnt, "etc/systemd/system/totebox-boot-analysis.service")
            with open(unit, "w") as f:
                f.write(ANALYSIS_UNIT)
            script = os.path.join(mnt, "usr/local/libexec/totebox-boot-analysis")
            with open(script, "w") as f:
                f.write(ANALYSIS_SCRIPT)
            os.chmod(script, 0o755)
            wants = os.path.join(mnt, "etc/systemd/system/multi-user.target.wants")
            os.makedirs(wants, exist_ok=True)
            os.symlink("../totebox-boot-analysis.service",
                       os.path.join(wants, "totebox-boot-analysis.service"))
        finally:
            subprocess.run(["umount", mnt], check=True)
    finally:
        subprocess.run(["losetup", "-d", loop], check=True)
    return raw


def totebox_boot(image, d, limit, analysis):
    seed = make_seed(d)
    if analysis:
        disk, fmt = measuring_copy(image, d), "raw"
    else:
        disk, fmt = os.path.join(d, "os.qcow2"), "qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                        os.path.abspath(image), disk], check=True)
    os_args = ["-drive", f"file={disk},if=none,id=os,format={fmt},discard=unmap",
               "-device", "virtio-blk-pci,drive=os,serial=os,bootindex=0",
               "-drive", f"file={seed},if=none,id=seed,format=raw,readonly=on",
               "-device", "virtio-blk-pci,drive=seed,serial=cidata"]
    return boot(d, os_args, limit, bench_port=analysis)


def test_image_boot(tdir, d, limit):
    with open(os.path.join(tdir, "manifest.json")) as f:
        m = json.load(f)
    disk = os.path.join(d, "os.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                    os.path.join(os.path.abspath(tdir), "root.qcow2"), disk], check=True)
    os_args = ["-kernel", os.path.join(tdir, "vmlinuz"), "-initrd", os.path.join(tdir, "initrd.img"),
               "-append", m["cmdline"],
               "-drive", f"file={disk},if=none,id=os,format=qcow2",
               "-device", "virtio-blk-pci,drive=os,serial=os"]
    return boot(d, os_args, limit)


def show(label, secs, report):
    who = ("vault_id '%s'" % report.get("vault_id")) if report else "no report"
    took = "%6.1f s  %6.1f s" % secs if secs else "  none      none "
    print("  %-28s %s    %s" % (label, took, who))


def load():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", required=True, help="the Totebox image (qcow2)")
    ap.add_argument("--test-image", help="a built test image directory (default: build one)")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--limit", type=int, default=600, help="seconds to wait for a report")
    ap.add_argument("--no-analysis", action="store_true",
                    help="boot the image itself (no measuring copy, no in-guest figures)")
    ap.add_argument("--totebox-only", action="store_true", help="skip the test image's boot")
    ap.add_argument("--keep", help="keep consoles and disks in this directory")
    a = ap.parse_args()
    analysis = not a.no_analysis
    if analysis and os.geteuid() != 0:
        raise SystemExit("the measuring copy needs root (loop device); use --no-analysis")
    root = a.keep or tempfile.mkdtemp(prefix="bench-boot-")
    os.makedirs(root, exist_ok=True)
    agent = AGENT if os.path.exists(AGENT) else None
    tdir = a.test_image
    if not tdir and not a.totebox_only:
        tdir = os.path.join(root, "test-image")
        build_image(tdir, agent)
    print("boot to the agent's first report, TCG, 1 vCPU, 1 GiB (%s agent; load %s)"
          % ("real" if agent else "stand-in", load()))
    print("  %-28s %8s  %8s" % ("", "wall", "QEMU CPU"))
    last = None
    for run in range(a.runs):
        td = os.path.join(root, "run%d-test" % run)
        bd = os.path.join(root, "run%d-totebox" % run)
        os.makedirs(td), os.makedirs(bd)
        if not a.totebox_only:
            ts, tr, _, _ = test_image_boot(tdir, td, a.limit)
            show("test image (direct kernel)", ts, tr)
        bs, br, console, text = totebox_boot(a.image, bd, a.limit, analysis)
        show("Totebox image", bs, br)
        last = (bs, console, text)
    bs, console, text = last
    print("\nTotebox image, console as the host saw it (s since QEMU start, first line of each phase):")
    for t, name in phases(console):
        print("  %6.1f  %s" % (t, name))
    if bs:
        print("  %6.1f  agent's first report on %s" % (bs[0], CHANNEL))
    if text:
        print("\nTotebox image, systemd inside the guest (measuring copy):")
        for ln in text.splitlines():
            if ln.strip() and ln != "== end":
                print("  " + ln)
    if not a.keep:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print("\nkept: %s" % root)


if __name__ == "__main__":
    main()
