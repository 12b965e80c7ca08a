# ctest-labels: slow packages
# ctest-timeout: 1800
"""The packages built and installed as an operator would, in a throwaway Debian 12 root made by
mmdebstrap (minbase): the tree built there with `apt-get build-dep ./` and `dpkg-buildpackage`
(so Build-Depends is complete), then `apt-get install ./totebox-*.deb` (Debian's dependencies
from the mirror; .deb files are kept in /var/cache/totebox-packages between runs, as hard links
where this machine's /var/cache/apt/archives has them). Then: every package installed and
configured, the units in /lib/systemd/system and enabled, fleetd's system user made by
sysusers.d, /var/lib/totebox made by tmpfiles.d with its mode, the conffiles registered; and a
purge of the node package removes the config the provision scripts wrote but never the mesh
state. No systemd runs in the root (booting it is the real-host rig's job); mmdebstrap's
policy-rc.d keeps daemons from starting."""
import os
import shutil
import subprocess
import tempfile

import pytest

from test_packages import copy_tree

CACHE = "/var/cache/totebox-packages"
RESULTS = "/root/results/"  # in the root
MIRRORS = ["deb http://deb.debian.org/debian bookworm main",
           "deb http://deb.debian.org/debian bookworm-updates main",
           "deb http://deb.debian.org/debian-security bookworm-security main"]
ROLES = ["totebox-mesh", "totebox-node", "totebox-controller", "totebox-cli",
         "totebox-agent-static"]
# What the root records before and after the purge, read back by the test (in /root/results:
# mmdebstrap empties /tmp when it finishes).
INSTALL = r"""
set -e
mkdir -p /root/results /tmp/debs
# The packages built here, from Build-Depends alone: nothing of the host's toolchain.
cd /root/src
apt-get build-dep -y -q --no-install-recommends ./ > /root/results/build-dep.log 2>&1
DEB_BUILD_OPTIONS='parallel=2 noautodbgsym' dpkg-buildpackage -b -us -uc \
  > /root/results/build.log 2>&1
mv /root/*.deb /tmp/debs/
cd /tmp/debs
apt-get install -y -q --no-install-recommends ./totebox-*.deb > /root/results/apt.log 2>&1
dpkg-query -W -f '${Package} ${Status}\n' 'totebox-*' > /root/results/status.txt
dpkg-query -W -f '${Conffiles}\n' totebox-node totebox-controller > /root/results/conffiles.txt
stat -c '%a %U' /var/lib/totebox /var/lib/totebox/mesh > /root/results/modes.txt
getent passwd totebox-fleetd > /root/results/user.txt
ls /etc/systemd/system/multi-user.target.wants/ > /root/results/wants.txt
ls /lib/systemd/system/ > /root/results/units.txt
for exe in /usr/sbin/fleetd /usr/sbin/vmhost /usr/sbin/totebox-pair /usr/bin/fleetctl; do
  [ -x "$exe" ] && echo "$exe"
done > /root/results/exes.txt
# What the provision scripts would have made, then a purge of the node package.
printf 'node_id = "n1"\n' > /etc/totebox/vmhost.conf
printf 'secret\n' > /var/lib/totebox/mesh/wg.key
mkdir -p /var/lib/totebox/vmhost
dpkg --purge totebox-node > /root/results/purge.log 2>&1
"""


def cached_debs_to(dest):
    for d in (CACHE, "/var/cache/apt/archives"):
        if os.path.isdir(d):
            subprocess.run("cp -n -l %s/*.deb '%s'/ 2>/dev/null || cp -n %s/*.deb '%s'/ "
                           "2>/dev/null || true" % (d, dest, d, dest), shell=True)


def test_packages_build_install_configure_and_purge_in_a_debian_root():
    if not shutil.which("mmdebstrap"):
        pytest.skip("mmdebstrap not installed")
    if os.path.exists("/etc/totebox-fresh-root"):
        pytest.skip("by design: inside a fresh root: the outer run installs the packages")
    os.makedirs(CACHE, exist_ok=True)
    work = tempfile.mkdtemp(prefix="totebox-pkgroot-", dir="/var/tmp")
    root, src = os.path.join(work, "root"), os.path.join(work, "src")
    copy_tree(src)
    seed = os.path.join(work, "seed")
    os.makedirs(seed)
    cached_debs_to(seed)
    script = os.path.join(work, "install.sh")
    with open(script, "w") as f:
        f.write(INSTALL)
    try:
        r = subprocess.run(
            ["mmdebstrap", "--quiet", "--variant=minbase",
             "--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives",
             "--setup-hook=cp -n -l %s/*.deb \"$1\"/var/cache/apt/archives/ 2>/dev/null || true"
             % seed,
             "--customize-hook=cp -a %s \"$1\"/root/src" % src,
             "--customize-hook=cp %s \"$1\"/tmp/install.sh" % script,
             "--customize-hook=chroot \"$1\" sh /tmp/install.sh || { tail -n 40 "
             "\"$1\"/root/results/*.log; exit 1; }",
             "--customize-hook=cp -n -l \"$1\"/var/cache/apt/archives/*.deb %s/ 2>/dev/null || true"
             % CACHE,
             "bookworm", root] + MIRRORS,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1700)
        assert r.returncode == 0, r.stdout[-6000:]

        def read(p):
            return open(os.path.join(root, p.lstrip("/"))).read()
        # Built in the root, from what Build-Depends names.
        assert "binary-only upload" in read(RESULTS + "build.log"), read(RESULTS + "build.log")
        status = dict(line.split(" ", 1) for line in read(RESULTS + "status.txt").splitlines())
        for pkg in ROLES:
            assert status.get(pkg) == "install ok installed", (pkg, status)
        for unit in ("totebox-mesh.service", "totebox-vmhost.service", "totebox-fleetd.service"):
            assert unit in read(RESULTS + "units.txt").split(), unit
            assert unit in read(RESULTS + "wants.txt").split(), unit  # dh_installsystemd enabled it
        assert read(RESULTS + "user.txt").startswith("totebox-fleetd:")
        assert read(RESULTS + "modes.txt").split("\n")[:2] == ["711 root", "711 root"]
        conffiles = read(RESULTS + "conffiles.txt")
        assert "/etc/totebox/vmhost.env" in conffiles and "/etc/totebox/fleetd.env" in conffiles
        assert read(RESULTS + "exes.txt").split() == [
            "/usr/sbin/fleetd", "/usr/sbin/vmhost", "/usr/sbin/totebox-pair", "/usr/bin/fleetctl"]
        # The node's runtime came with it: libvirt's daemon, QEMU, WireGuard's tools.
        for exe in ("usr/sbin/libvirtd", "usr/bin/qemu-system-x86_64", "usr/bin/wg",
                    "usr/bin/qemu-img", "usr/bin/genisoimage"):
            assert os.path.exists(os.path.join(root, exe)), exe
        # The purge took the node's config and unit, and left the mesh state alone.
        assert not os.path.exists(os.path.join(root, "etc/totebox/vmhost.conf"))
        assert not os.path.exists(os.path.join(root, "etc/totebox/vmhost.env"))
        assert not os.path.exists(os.path.join(root, "lib/systemd/system/totebox-vmhost.service"))
        assert not os.path.exists(os.path.join(root, "usr/sbin/vmhost"))
        assert read("/var/lib/totebox/mesh/wg.key") == "secret\n"
        assert os.path.isdir(os.path.join(root, "var/lib/totebox/vmhost"))
        assert os.path.exists(os.path.join(root, "etc/totebox/fleetd.env"))  # other roles stay
    finally:
        shutil.rmtree(work, ignore_errors=True)
