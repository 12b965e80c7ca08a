"""The real-host rig: three booted Debian machines on this one, behind NAT, for test_rig.py.

Each machine is systemd as PID 1 in its own PID, mount, UTS, IPC and network namespaces, on its
own root: an overlay of one shared Debian 12 base (made by mmdebstrap for this run) and the
machine's own upper directory, which outlives a reboot (tests/rig/boot-machine.sh). The base
holds a local apt repository of the packages built from this tree (dpkg-buildpackage -b) and
apt's lists and archives of Debian's packages they need, downloaded from the configured mirror
while the base is made (the .deb files are cached between runs in CACHE, as the fresh test
does); the machines have no route off this machine, so what they install comes from there, with
apt, as an operator types it.

Networks, all in namespaces made here:
  internet  203.0.113.0/24, a bridge in its own namespace; cloud 203.0.113.10
  office    10.1.0.0/24 behind a NAT router (203.0.113.1, MASQUERADE, no port forward):
            laptop-a 10.1.0.10, laptop-b 10.1.0.11
  home      10.2.0.0/24 behind a second NAT router (203.0.113.2)
The rig plays the cables and DHCP: it makes each machine's eth0 and gives it its address before
the machine boots; a reboot keeps the machine's network namespace, as a host keeps its NIC.
Everything is named after a tag and ended by PID at the end."""
import glob
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid

from test_packages import SRC, copy_tree
import harness

CACHE = "/var/cache/totebox-rig"
BOOT = os.path.join(SRC, "tests", "rig", "boot-machine.sh")
MIRRORS = ["deb http://deb.debian.org/debian bookworm main",
           "deb http://deb.debian.org/debian bookworm-updates main",
           "deb http://deb.debian.org/debian-security bookworm-security main"]
BASE_PACKAGES = "systemd-sysv,dbus,iproute2,iptables,iputils-ping,procps,ca-certificates"
# What each machine's operator installs (the controller package on the cloud node only).
NODE_PACKAGES = "totebox-node wireguard-go"
CLOUD_PACKAGES = "totebox-node totebox-controller totebox-cli wireguard-go"
ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root",
       "LANG=C.UTF-8", "TERM=dumb", "USER=root", "LOGNAME=root", "SHELL=/bin/bash"]

# name -> (segment, address, gateway)
MACHINES = {"laptop-a": ("office", "10.1.0.10", "10.1.0.1"),
            "laptop-b": ("office", "10.1.0.11", "10.1.0.1"),
            "cloud": ("internet", "203.0.113.10", None)}
ROUTERS = {"office": ("203.0.113.1", "10.1.0.1"), "home": ("203.0.113.2", "10.2.0.1")}


class RigError(Exception):
    pass


def run(args, check=True, timeout=120, **kw):
    r = harness.run(args, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RigError("%s: exit %d\n%s%s" % (" ".join(args), r.returncode, r.stdout[-3000:],
                                               r.stderr[-3000:]))
    return r


def wait(pred, timeout, what, step=0.5):
    try:
        return harness.wait_for(pred, timeout, what, interval=step)
    except AssertionError as e:
        raise RigError(str(e)) from None


class Rig:
    def __init__(self):
        self.tag = "%04d" % (os.getpid() % 10000)
        self.work = tempfile.mkdtemp(prefix="totebox-rig-", dir="/var/tmp")
        self.base = os.path.join(self.work, "base")
        self.procs = {}     # machine -> the unshare Popen
        self.times = {}     # phase -> seconds
        self.netns = []
        self.cgroups = []

    def phase(self, name, t0):
        self.times[name] = round(time.time() - t0, 1)

    def ns(self, name):
        return "rig%s-%s" % (self.tag, name)

    # --- the packages and the base root ---------------------------------------------------

    def build_debs(self):
        t0 = time.time()
        src = os.path.join(self.work, "src")
        copy_tree(src)
        env = dict(os.environ, DEB_BUILD_OPTIONS="parallel=2 nocheck noautodbgsym")
        run(["dpkg-buildpackage", "-b", "-us", "-uc"], cwd=src, env=env, timeout=900)
        self.debs = sorted(glob.glob(os.path.join(self.work, "totebox-*.deb")))
        if not self.debs:
            raise RigError("dpkg-buildpackage made no .deb")
        shutil.rmtree(src)
        self.phase("build the packages", t0)

    def make_base(self):
        """One Debian 12 root for every machine: minbase with systemd, the local repository of
        the built packages, and apt's lists and archives for what the machines will install."""
        t0 = time.time()
        os.makedirs(CACHE, exist_ok=True)
        repo = os.path.join(self.work, "repo")
        os.makedirs(repo)
        for d in self.debs:
            shutil.copy(d, repo)
        run(["sh", "-c", "cd '%s' && dpkg-scanpackages . > Packages 2>/dev/null" % repo])
        hooks = [
            "--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives",
            "--setup-hook=cp -n -l %s/*.deb \"$1\"/var/cache/apt/archives/ 2>/dev/null || true"
            % CACHE,
            "--customize-hook=cp -a %s \"$1\"/srv/totebox-apt" % repo,
            "--customize-hook=echo 'deb [trusted=yes] file:/srv/totebox-apt ./' > "
            "\"$1\"/etc/apt/sources.list.d/totebox.list",
            # No console in a rig machine: its gettys would only fail.
            "--customize-hook=chroot \"$1\" systemctl mask -q console-getty.service "
            "getty@tty1.service",
            "--customize-hook=chroot \"$1\" apt-get update -q",
            "--customize-hook=chroot \"$1\" apt-get install --download-only -y -q "
            "--no-install-recommends %s" % CLOUD_PACKAGES,
            "--customize-hook=cp -n -l \"$1\"/var/cache/apt/archives/*.deb %s/ 2>/dev/null "
            "|| true" % CACHE,
        ]
        run(["mmdebstrap", "--quiet", "--variant=minbase", "--include=" + BASE_PACKAGES,
             "--skip=cleanup/apt/lists,cleanup/apt/cache"] + hooks +
            ["bookworm", self.base] + MIRRORS, timeout=900)
        self.phase("make the base root", t0)

    # --- networks -------------------------------------------------------------------------

    def netns_add(self, name):
        ns = self.ns(name)
        run(["ip", "netns", "add", ns])
        self.netns.append(ns)
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        return ns

    def in_ns(self, ns, *args):
        return run(["ip", "netns", "exec", ns] + list(args))

    def bridge(self, ns, addr=None):
        run(["ip", "-n", ns, "link", "add", "br0", "type", "bridge"])
        if addr:
            run(["ip", "-n", ns, "addr", "add", addr, "dev", "br0"])
        run(["ip", "-n", ns, "link", "set", "br0", "up"])

    def cable(self, ns, ifname, switch_ns, port):
        """A veth from ns (ifname) to a port of switch_ns's bridge."""
        run(["ip", "-n", ns, "link", "add", ifname, "type", "veth", "peer", "name", port,
             "netns", switch_ns])
        run(["ip", "-n", switch_ns, "link", "set", port, "master", "br0", "up"])
        run(["ip", "-n", ns, "link", "set", ifname, "up"])

    def net_up(self):
        inet = self.netns_add("internet")
        self.bridge(inet)
        for seg, (wan, lan) in ROUTERS.items():
            r = self.netns_add(seg)
            self.cable(r, "wan", inet, seg)
            run(["ip", "-n", r, "addr", "add", wan + "/24", "dev", "wan"])
            self.bridge(r, lan + "/24")
            self.in_ns(r, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
            self.in_ns(r, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j",
                       "MASQUERADE")
        for name, (seg, addr, gw) in MACHINES.items():
            ns = self.netns_add(name)
            self.cable(ns, "eth0", self.ns(seg), name)
            run(["ip", "-n", ns, "addr", "add", addr + "/24", "dev", "eth0"])
            if gw:
                run(["ip", "-n", ns, "route", "add", "default", "via", gw])

    def move(self, name, seg, addr, gw):
        """Unplugs name's cable and plugs it into another segment with a new address (what a
        laptop carried home sees: a new LAN, a new DHCP lease). Returns the new address."""
        ns, old_seg = self.ns(name), MACHINES[name][0]
        run(["ip", "-n", self.ns(old_seg), "link", "del", name])  # both ends of the veth go
        self.cable(ns, "eth0", self.ns(seg), name)
        run(["ip", "-n", ns, "addr", "add", addr + "/24", "dev", "eth0"])
        if gw:
            run(["ip", "-n", ns, "route", "replace", "default", "via", gw])
        MACHINES[name] = (seg, addr, gw)
        return addr

    def readdress(self, name, addr):
        """The same LAN, a new address (a new DHCP lease)."""
        ns = self.ns(name)
        seg, old, gw = MACHINES[name]
        run(["ip", "-n", ns, "addr", "flush", "dev", "eth0"])
        run(["ip", "-n", ns, "addr", "add", addr + "/24", "dev", "eth0"])
        if gw:
            run(["ip", "-n", ns, "route", "replace", "default", "via", gw])
        MACHINES[name] = (seg, addr, gw)

    # --- machines -------------------------------------------------------------------------

    def mdir(self, name):
        return os.path.join(self.work, "machines", name)

    def first_boot_setup(self, name):
        """What an installer leaves: the host name and a machine id."""
        etc = os.path.join(self.mdir(name), "upper", "etc")
        os.makedirs(etc, exist_ok=True)
        with open(os.path.join(etc, "hostname"), "w") as f:
            f.write(name + "\n")
        with open(os.path.join(etc, "machine-id"), "w") as f:
            f.write(uuid.uuid4().hex + "\n")

    def cgroup_dirs(self, name):
        """The machine's own cgroups: below the named systemd hierarchy and the unified one
        (this machine's hybrid layout), or below the root of a pure cgroup2 mount."""
        leaf = "totebox-rig-%s-%s" % (self.tag, name)
        if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            return [os.path.join("/sys/fs/cgroup", leaf)]
        return [os.path.join("/sys/fs/cgroup", h, leaf)
                for h in ("systemd", "unified") if os.path.isdir("/sys/fs/cgroup/" + h)]

    def boot(self, name):
        """Starts the machine (systemd as PID 1) and waits until it is running."""
        t0 = time.time()
        if not os.path.isdir(self.mdir(name)):
            self.first_boot_setup(name)
        cgs = self.cgroup_dirs(name)
        for cg in cgs:
            os.makedirs(cg, exist_ok=True)
            if cg not in self.cgroups:
                self.cgroups.append(cg)

        def enter_cgroup():
            # systemd takes the cgroup it starts in as its root, below the host's.
            for cg in cgs:
                with open(os.path.join(cg, "cgroup.procs"), "w") as f:
                    f.write(str(os.getpid()))
        log = open(os.path.join(self.work, name + ".console"), "a")
        p = subprocess.Popen(["nsenter", "--net=/run/netns/" + self.ns(name), "unshare",
                              "--pid", "--fork", "--mount", "--uts", "--ipc", "--kill-child",
                              "--", BOOT, self.base, self.mdir(name)],
                             stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                             preexec_fn=enter_cgroup, start_new_session=True)
        log.close()
        self.procs[name] = p
        wait(lambda: self.pid1(name), 30, name + "'s PID 1")
        state = wait(lambda: self.sh(name, "systemctl is-system-running", check=False)
                     .stdout.strip() in ("running", "degraded") and "up", 120,
                     name + " to finish booting")
        self.phase("boot " + name, t0)
        return state

    def pid1(self, name):
        """The host PID of the machine's PID 1 (the child of its unshare), or None."""
        p = self.procs.get(name)
        if not p or p.poll() is not None:
            return None
        try:
            with open("/proc/%d/task/%d/children" % (p.pid, p.pid)) as f:
                kids = f.read().split()
        except OSError:
            return None
        if not kids:
            return None
        try:
            with open("/proc/%s/comm" % kids[0]) as f:
                return int(kids[0]) if f.read().strip() == "systemd" else None
        except OSError:
            return None

    def enter(self, name):
        pid = self.pid1(name)
        if not pid:
            raise RigError(name + " is not running")
        return ["nsenter", "-t", str(pid), "-m", "-u", "-i", "-n", "-p", "-r", "-w",
                "env", "-i"] + ENV

    def sh(self, name, script, check=True, timeout=300, input=None):
        """Runs script in a login shell on the machine, as root typing it would."""
        r = subprocess.run(self.enter(name) + ["bash", "-lc", "cd; " + script],
                           capture_output=True, text=True, timeout=timeout, input=input)
        if check and r.returncode != 0:
            raise RigError("%s$ %s: exit %d\n%s%s" % (name, script, r.returncode,
                                                       r.stdout[-4000:], r.stderr[-4000:]))
        return r

    def popen(self, name, script):
        return Session(subprocess.Popen(self.enter(name) + ["bash", "-lc", "cd; " + script],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1))

    def reboot(self, name):
        """systemctl reboot inside: PID 1 exits; the machine starts again on the same overlay
        and network namespace. Returns the seconds from the command to running again."""
        t0 = time.time()
        p = self.procs[name]
        self.sh(name, "systemctl reboot", check=False, timeout=30)
        p.wait(timeout=120)
        self.boot(name)
        return round(time.time() - t0, 1)

    def halt(self, name):
        p = self.procs.get(name)
        if p and p.poll() is None:
            pid = self.pid1(name)
            if pid:
                os.kill(pid, signal.SIGKILL)  # the kernel ends the whole PID namespace
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def down(self):
        for name in list(self.procs):
            self.halt(name)
        for ns in reversed(self.netns):
            run(["ip", "netns", "del", ns], check=False)
        for cg in self.cgroups:
            # depth first: systemd's own slices and scopes below the machine's cgroup
            for d, _, _ in sorted(os.walk(cg), key=lambda t: -t[0].count("/")):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
        if not os.environ.get("TOTEBOX_RIG_KEEP"):
            shutil.rmtree(self.work, ignore_errors=True)


class Session:
    """A command typed on a machine whose output is read line by line as it comes (a thread
    collects it), and whose stdin the operator types into."""

    def __init__(self, popen):
        import threading
        self.p, self.lines, self.cond = popen, [], threading.Condition()
        self.pos = 0
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for line in self.p.stdout:
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.lines.append(None)
            self.cond.notify_all()

    def read_until(self, pattern, timeout=120):
        """The first match of pattern in a line not read yet; raises with what was seen."""
        deadline = time.time() + timeout
        with self.cond:
            while time.time() < deadline:
                while self.pos < len(self.lines):
                    line = self.lines[self.pos]
                    self.pos += 1
                    if line is None:
                        raise RigError("exited (%s) before %r:\n%s" % (
                            self.p.wait(), pattern, self.output()))
                    m = re.search(pattern, line)
                    if m:
                        return m
                self.cond.wait(timeout=max(0.1, deadline - time.time()))
        raise RigError("no line matching %r in:\n%s" % (pattern, self.output()))

    def type(self, text):
        self.p.stdin.write(text + "\n")
        self.p.stdin.flush()

    def output(self):
        return "".join(x for x in self.lines if x)

    def wait(self, timeout=240):
        rc = self.p.wait(timeout=timeout)
        self.t.join(timeout=10)
        return rc, self.output()
