"""Kernel WireGuard, the path production takes: the project's netlink backend (common/wg*.c,
which vmhost-helper and totebox-pair use) against the real wireguard module.

This machine has no WireGuard module, so the test boots a small guest under TCG: the kernel of
Debian's linux-image-cloud-amd64 (the one the test image uses, which ships wireguard.ko) with a
busybox initramfs holding the module chain, wg_kernel_probe (built by the project, with the shared
libraries it links) and Debian's `wg`. Inside, the probe creates wg0 through rtnetlink, sets a
key, a port and 300 peers of 4 allowed IPs each (more than one netlink message each way), reads
them back over generic netlink, updates the set (removals, a moved endpoint, a keepalive turned
off) and reads it again; then `wg show wg0 dump`, wireguard-tools' own reader, prints the
kernel's view. What the probe set, what it read and what `wg` read must agree exactly.
The guest has no network device: nothing leaves it.
"""
import glob
import os
import shutil
import subprocess
import tempfile

import pytest

from harness import BUILD, SOURCE, run
from test_vmhost_harness import DEB_CACHE

# ctest-labels: mesh

PROBE = os.path.join(BUILD, "tests", "integration", "wg_kernel_probe")
MODULES = ["wireguard"]  # and, found with modinfo, everything it depends on

INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules.order); do
        insmod "/lib/modules/$m.ko" || echo "WGTEST module $m failed"
done
echo "WGTEST probe-begin"
/probe 2>&1
echo "WGTEST probe-end $?"
echo "WGTEST dump-begin"
/wg show wg0 dump 2>&1
echo "WGTEST dump-end $?"
poweroff -f
"""


def kernel_deb():
    debs = sorted(glob.glob(os.path.join(DEB_CACHE, "linux-image-*-cloud-amd64_*.deb")))
    if debs:
        return debs[-1]
    os.makedirs(DEB_CACHE, exist_ok=True)
    dep = run(["apt-cache", "depends", "linux-image-cloud-amd64"]).stdout
    pkg = next((w.split()[-1] for w in dep.splitlines() if "Depends: linux-image-" in w), None)
    assert pkg, "cannot resolve linux-image-cloud-amd64 with apt-cache"
    run(["apt-get", "download", pkg], check=True, cwd=DEB_CACHE, timeout=300)
    return sorted(glob.glob(os.path.join(DEB_CACHE, pkg + "_*.deb")))[-1]


def module_order(moddir, names):
    """Modules in load order: each after the ones it depends on (modinfo's depends field)."""
    files = {os.path.basename(p)[:-3]: p for p in glob.glob(moddir + "/**/*.ko", recursive=True)}
    order = []

    def visit(name):
        name = name.replace("-", "_")
        key = next((k for k in files if k.replace("-", "_") == name), None)
        assert key, "module %s is not in the kernel package" % name
        if key in order:
            return
        deps = run(["modinfo", "-F", "depends", files[key]], check=True).stdout.strip()
        for d in filter(None, deps.split(",")):
            visit(d)
        order.append(key)

    for n in names:
        visit(n)
    return order, files


def copy_with_libraries(binary, root, name):
    """binary as /name in root, with the shared libraries ldd names at their own paths."""
    shutil.copy(binary, os.path.join(root, name))
    for line in run(["ldd", binary], check=True).stdout.splitlines():
        parts = line.split()
        path = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
        if not path.startswith("/"):
            continue
        dest = os.path.join(root, path.lstrip("/"))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copy(path, dest)


@pytest.fixture(scope="module")
def guest_output():
    for tool in ("qemu-system-x86_64", "cpio", "modinfo", "wg"):
        if not shutil.which(tool):
            pytest.skip("needs %s" % tool)
    assert os.path.exists(PROBE), "build wg_kernel_probe first"
    with tempfile.TemporaryDirectory(prefix="totebox-wgk-") as work:
        k = os.path.join(work, "k")
        run(["dpkg-deb", "-x", kernel_deb(), k], check=True)
        kver = os.listdir(os.path.join(k, "lib", "modules"))[0]
        order, files = module_order(os.path.join(k, "lib", "modules", kver), MODULES)
        root = os.path.join(work, "root")
        for d in ("bin", "sbin", "dev", "proc", "sys", "tmp", "lib/modules"):
            os.makedirs(os.path.join(root, d))
        shutil.copy("/bin/busybox", os.path.join(root, "bin", "busybox"))
        for m in order:
            shutil.copy(files[m], os.path.join(root, "lib", "modules", m + ".ko"))
        with open(os.path.join(root, "modules.order"), "w") as f:
            f.write("\n".join(order) + "\n")
        with open(os.path.join(root, "init"), "w") as f:
            f.write(INIT)
        os.chmod(os.path.join(root, "init"), 0o755)
        copy_with_libraries(PROBE, root, "probe")
        copy_with_libraries(shutil.which("wg"), root, "wg")
        initrd = os.path.join(work, "initrd.img")
        listing = subprocess.run(["find", "."], cwd=root, capture_output=True, text=True,
                                 check=True).stdout
        with open(initrd, "wb") as out:
            subprocess.run(["cpio", "-o", "-H", "newc", "--quiet", "-R", "0:0"], cwd=root,
                           input=listing.encode(), stdout=out, check=True)
        r = run(["qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-smp", "1", "-nographic",
                 "-no-reboot", "-nic", "none", "-kernel",
                 glob.glob(os.path.join(k, "boot", "vmlinuz-*"))[0], "-initrd", initrd,
                 "-append", "console=ttyS0 panic=-1 quiet"], timeout=300)
        return r.stdout.replace("\r", "")


def section(out, name):
    begin, end = "WGTEST %s-begin\n" % name, "WGTEST %s-end" % name
    assert begin in out and end in out, "no %s section in the guest's console:\n%s" % (name, out)
    body = out.split(begin, 1)[1].split(end, 1)
    status = body[1].split("\n", 1)[0].strip()
    return body[0].splitlines(), status


def peers(lines, what, phase):
    got = {}
    for line in lines:
        f = line.split()
        if f[:2] == [what, str(phase)]:
            assert f[2] not in got, "peer %s twice" % f[2]
            got[f[2]] = (f[3], int(f[4]), frozenset(f[5].split(",")))
    return got


def test_kernel_backend_sets_and_reads_back_what_wg_sees(guest_output):
    out = guest_output
    assert "WGTEST module" not in out, out
    probe, status = section(out, "probe")
    assert status == "0", "\n".join(probe)
    assert "backend kernel" in probe, "the probe did not get the kernel module:\n" + "\n".join(probe)
    assert probe[-1] == "done"

    set1, got1 = peers(probe, "set", 1), peers(probe, "got", 1)
    assert len(set1) == 300 and all(len(a) == 4 for _, _, a in set1.values())
    assert got1 == set1, "phase 1: read back differs from what was set"

    set2, got2 = peers(probe, "set", 2), peers(probe, "got", 2)
    assert len(set2) == 200, "every third peer removed"
    assert got2 == set2, "phase 2: read back differs from what was set"
    moved = [p for p, (ep, _, _) in set2.items() if ep.startswith("10.79.0.1:")]
    assert len(moved) == 1 and set1[moved[0]][0] != set2[moved[0]][0]
    assert sum(1 for p in set2 if set2[p][1] != set1[p][1]) == 1, "one keepalive turned off"

    # wireguard-tools' reader: "private public port fwmark", then one line per peer:
    # "public psk endpoint allowed-ips handshake rx tx keepalive".
    dump, status = section(out, "dump")
    assert status == "0", "\n".join(dump)
    device = [line for line in probe if line.startswith("device ")][0].split()
    head = dump[0].split("\t")
    assert head[1] == device[1] and head[2] == device[2] == "51820"
    seen = {}
    for line in dump[1:]:
        public, _psk, endpoint, allowed, _hs, _rx, _tx, keepalive = line.split("\t")
        seen[public] = (endpoint, 0 if keepalive == "off" else int(keepalive),
                        frozenset(allowed.split(",")))
    assert seen == set2, "wg show disagrees with the project's backend"
