"""vmhost as production runs it (issue 18): started as root on qemu:///system, a client of a
libvirtd running as root whose QEMU driver runs each guest as libvirt-qemu (libvirt's DAC
driver), vmhost itself dropped to totebox-vmhost (no capabilities, no_new_privs, seccomp, no
libvirt mapped), its helper root.

What it shows: the drop on qemu:///system; an image import and a signed create whose domain the
system daemon runs, its QEMU as libvirt-qemu, its agent reporting over the channel the helper
passed up; what QEMU's user may reach in the state directory; suspend (a managed save), resume
and archive (shut down) seen in libvirt's state; a domain destroyed behind vmhost's back seen at
once (lifecycle events); a libvirtd restart that vmhost rides out (it reconnects, the guest runs
on, verbs work again). It found that QEMU as libvirt-qemu could open none of its files (state_dir
was 0700, images and seeds too: libvirt's DAC driver chowns files, never directories), and that
the seed ISO was 0644; vmhost/policy.c's policy_state_dir_mode and vmhost/seed.c fix both.

The daemon is the test's own. This machine has no systemd as PID 1 and runs no libvirtd, and
the host must not change, so the test makes a private mount namespace (`unshare --mount
--propagation private sleep infinity`, a holder that dies with the test by PR_SET_PDEATHSIG)
and runs virtlogd, libvirtd, vmhost and every virsh of the checks in it with `nsenter -t HOLDER
-m` (Debian 12's libvirt-daemon ships the monolithic libvirtd, no virtqemud; it needs virtlogd
beside it). In the namespace:
- a tmpfs over /run (libvirt's sockets, /run/libvirt/qemu); the daemons' PID files are named
  with -p in the test's directory, not /run/libvirtd.pid;
- an overlay over /var whose upper layer is a tmpfs: /var/lib/libvirt, /var/cache/libvirt and
  /var/log/libvirt (which the daemon needs and the host lacks: libvirt-daemon-system is not
  installed) are made there, since a tmpfs needs a mount point the host does not have;
- a tmpfs over /etc/libvirt: a libvirtd.conf that logs into the test's directory, and a
  qemu.conf whose one setting is `cgroup_controllers = [ ]` (the daemon must make no cgroup on
  the host); all else is the packaged default: user and group libvirt-qemu, dynamic_ownership,
  a mount namespace per QEMU, virtlogd for its output;
- a /dev/kvm node (10:232, 0660, group libvirt-qemu) bound over the host's, which is root's
  alone (0600) with no kvm group, where Debian's udev rule and packages make it 0660 root:kvm
  with libvirt-qemu in kvm. Without it libvirt's QEMU capability cache never stays valid (the
  probe finds KVM, the check as libvirt-qemu does not: "KVM was enabled when probing ... but it
  is not available now") and every call probes QEMU again, 2-4 s each: a create took 60-70 s.
  Guests still run under TCG (virt_type qemu).
Files inside the namespace are read from outside through /proc/HOLDER/root. Teardown destroys
and undefines the domains, stops libvirtd and virtlogd by PID, kills any QEMU whose command line
names the test's directory (none should be left; it fails if one was) and then the holder: the
namespace and its mounts go with it, and the teardown checks that no mount is left."""
import ctypes
import glob
import json
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys

import pytest
from harness import proc_status as status

sys.path.insert(0, os.path.dirname(__file__))
from test_vmhost_harness import (VMHOST, FleetTrust, Vmhost, build_image, make_root,  # noqa: E402
                                 remove_root, sha256, wait_for)
from test_vmhost_helper import children  # noqa: E402

VM = "sysd-1"
CREATE = {"request_id": "req-sysd-1", "vm_id": VM, "entity": "acme-co", "memory_mib": 128,
          "vcpus": 1, "image": "test", "vault_disk_mib": 16, "fleet_id": "fleet-t"}
QEMU_CONF = ("# the test's private system daemon: no cgroups on the host; the rest as packaged\n"
             "cgroup_controllers = [ ]\n")
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
HOST_DIRS = ("/var/lib/libvirt", "/var/cache/libvirt", "/var/log/libvirt", "/etc/libvirt/qemu",
             "/etc/libvirt/storage", "/run/libvirt/qemu", "/run/libvirt/libvirt-sock")


def _die_with_parent():
    """In the child before exec: SIGKILL when the test process ends, however it ends."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class SystemLibvirt:
    """A private qemu:///system: virtlogd and libvirtd as root, in a mount namespace of their
    own (see the module's docstring). enter: the command prefix that runs a program in it."""

    def __init__(self, root):
        self.root = root
        self.daemons = {}
        self.holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--",
                                        "sleep", "infinity"], preexec_fn=_die_with_parent)
        mine = os.readlink("/proc/self/ns/mnt")
        wait_for(lambda: os.readlink("/proc/%d/ns/mnt" % self.holder.pid) != mine, 10,
                 "the namespace holder to unshare")
        self.ns = os.readlink("/proc/%d/ns/mnt" % self.holder.pid)
        self.enter = ["nsenter", "-t", str(self.holder.pid), "-m", "--"]
        ovl = os.path.join(root, "ns-overlay")
        os.makedirs(ovl)
        for args in (["mount", "-t", "tmpfs", "-o", "mode=0755", "tbx-sys-run", "/run"],
                     ["mount", "-t", "tmpfs", "-o", "mode=0755", "tbx-sys-ovl", ovl],
                     ["mkdir", ovl + "/upper", ovl + "/work"],
                     ["mount", "-t", "overlay", "tbx-sys-var", "-o",
                      "lowerdir=/var,upperdir=%s/upper,workdir=%s/work" % (ovl, ovl), "/var"],
                     ["mkdir", "-p", "/var/lib/libvirt", "/var/cache/libvirt",
                      "/var/log/libvirt"],
                     ["mount", "-t", "tmpfs", "-o", "mode=0755", "tbx-sys-etc", "/etc/libvirt"],
                     # /dev/kvm as production has it: usable by QEMU's user (see the docstring)
                     ["mknod", "-m", "0660", ovl + "/kvm", "c", "10", "232"],
                     ["chown", "root:%d" % pwd.getpwnam("libvirt-qemu").pw_gid, ovl + "/kvm"],
                     ["mount", "--bind", ovl + "/kvm", "/dev/kvm"]):
            self.run(*args, check=True)
        self.write("/etc/libvirt/qemu.conf", QEMU_CONF)
        self.write("/etc/libvirt/libvirtd.conf",
                   'log_outputs = "3:file:%s/libvirtd.log"\n' % root)
        self.start("virtlogd", "/run/libvirt/virtlogd-sock")
        self.start("libvirtd", "/run/libvirt/libvirt-sock")

    def path(self, p):
        """p inside the namespace, as the test process reaches it."""
        return "/proc/%d/root%s" % (self.holder.pid, p)

    def write(self, p, text):
        with open(self.path(p), "w") as f:
            f.write(text)

    def run(self, *args, check=False):
        return subprocess.run(self.enter + list(args), capture_output=True, text=True,
                              check=check, env={"PATH": PATH, "HOME": self.root})

    def virsh(self, *args):
        return self.run("virsh", "-q", "-c", "qemu:///system", *args)

    def start(self, name, sock):
        log = open(os.path.join(self.root, name + ".out"), "ab")
        self.daemons[name] = subprocess.Popen(
            self.enter + [name, "-p", os.path.join(self.root, name + ".pid")], stdout=log,
            stderr=subprocess.STDOUT, env={"PATH": PATH}, preexec_fn=_die_with_parent)
        log.close()
        wait_for(lambda: os.path.exists(self.path(sock)), 30, name + "'s socket")
        if name == "libvirtd":
            wait_for(lambda: self.virsh("version").returncode == 0, 30, "libvirtd to answer")

    def stop(self, name):
        p = self.daemons.pop(name, None)
        if p and p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def log(self):
        try:
            with open(os.path.join(self.root, "libvirtd.log"), errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def qemu_pid(self, name):
        """The PID of domain name's QEMU (libvirt's pid file), or None."""
        try:
            with open(self.path("/run/libvirt/qemu/%s.pid" % name)) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def our_qemus(self):
        """QEMU processes left of this test: those whose command line names its directory."""
        out = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if argv and b"qemu-system" in argv[0] and any(self.root.encode() in a for a in argv):
                out.append(int(pid))
        return out

    def close(self):
        for name in self.virsh("list", "--all", "--name").stdout.split():
            self.virsh("destroy", name)
            self.virsh("undefine", "--managed-save", name)
        self.stop("libvirtd")
        self.stop("virtlogd")
        strays = self.our_qemus()
        for pid in strays:
            os.kill(pid, signal.SIGKILL)
        self.holder.kill()
        self.holder.wait()
        return strays


def host_mounts():
    with open("/proc/self/mountinfo") as f:
        return f.read()


@pytest.fixture(scope="module")
def env():
    if os.getuid() != 0:
        pytest.skip("by design: a system libvirtd and vmhost's drop need root")
    if not os.access(VMHOST, os.X_OK):
        pytest.skip("by design: no vmhost binary in the build")
    try:
        pwd.getpwnam("libvirt-qemu")
    except KeyError:
        pytest.skip("no libvirt-qemu user (scripts/install-deps.sh makes it)")
    root = make_root("tbx-vmhost-sys-")
    host = {d: os.path.exists(d) for d in HOST_DIRS}
    sysd = vh = None
    hb = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    hb.bind(("127.0.0.1", 0))
    hb.settimeout(5)
    try:
        manifest = build_image(os.path.join(root, "image"))
        sysd = SystemLibvirt(root)
        trust = FleetTrust()
        mesh = trust.mesh_dir(root, "node1", owner=(0, 0))
        os.chmod(mesh, 0o700)
        vh = Vmhost(root, as_root=True, wrap=sysd.enter, libvirt_uri="qemu:///system",
                    hb_port=hb.getsockname()[1], mesh_state_dir=mesh)
        yield {"root": root, "sysd": sysd, "vh": vh, "trust": trust, "manifest": manifest,
               "hb": hb, "host": host}
    finally:
        if vh:
            vh.stop()
        strays = sysd.close() if sysd else []
        hb.close()
        left = [line for line in host_mounts().splitlines() if "tbx-sys-" in line or root in line]
        remove_root(root)
        assert not strays, "QEMU processes left after the domains were destroyed: %s" % strays
        assert not left, left


def vm(env, vm_id=VM):
    st, body, _ = env["vh"].call("GET", "/v1/vms/" + vm_id)
    assert st == 200, body
    return body


def domstate(env, name=VM):
    r = env["sysd"].virsh("domstate", name)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_vmhost_drops_privilege_on_qemu_system(env):
    vh = env["vh"]
    helpers = [c for c in children(vh.proc.pid)
               if open("/proc/%d/comm" % c).read().strip() == "vmhost-helper"]
    assert len(helpers) == 1, children(vh.proc.pid)
    me, helper = status(vh.proc.pid), status(helpers[0])
    user = pwd.getpwnam("totebox-vmhost")
    assert me["Uid"].split() == [str(user.pw_uid)] * 4, me["Uid"]
    assert int(me["CapEff"], 16) == 0 and int(me["CapPrm"], 16) == 0, me
    assert me["NoNewPrivs"] == "1" and me["Seccomp"] == "2", me
    assert helper["Uid"].split()[0] == "0" and int(helper["CapEff"], 16) != 0, helper
    with open("/proc/%d/maps" % vh.proc.pid) as f:
        assert "libvirt" not in f.read()
    with open("/proc/%d/maps" % helpers[0]) as f:
        assert "libvirt" in f.read()
    # both in the test's namespace, the helper a client of the test's daemon
    for pid in (vh.proc.pid, helpers[0]):
        assert os.readlink("/proc/%d/ns/mnt" % pid) == env["sysd"].ns
    log = vh.read_log()
    assert "connected to libvirt 'qemu:///system'" in log, log[-3000:]
    assert "cannot set up the storage pools" not in log, log[-3000:]
    pools = env["sysd"].virsh("pool-list", "--name").stdout.split()
    assert sorted(pools) == ["totebox-images", "totebox-vms"], pools


def test_vm_runs_under_the_system_daemon_as_libvirt_qemu(env):
    vh, sysd = env["vh"], env["sysd"]
    st, body, _ = vh.call("POST", "/v1/images", {"name": "test", "path": env["manifest"],
                                                  "sha256": sha256(env["manifest"])})
    assert st == 201, (body, vh.read_log()[-3000:])
    st, doc, _ = vh.call("POST", "/v1/vms", env["trust"].create(CREATE, "node1"))
    assert st == 201 and doc["state"] == "running", (st, doc, vh.read_log()[-3000:],
                                                     sysd.log())
    assert domstate(env) == "running"
    vols = sysd.virsh("vol-list", "totebox-vms").stdout
    assert VM + "-os.qcow2" in vols and VM + "-vault.img" in vols, vols
    pid = sysd.qemu_pid(VM)
    assert pid, sysd.log()
    qemu = status(pid)
    libvirt_qemu = pwd.getpwnam("libvirt-qemu")
    assert qemu["Uid"].split() == [str(libvirt_qemu.pw_uid)] * 4, qemu["Uid"]
    assert qemu["Gid"].split()[0] == str(libvirt_qemu.pw_gid), qemu["Gid"]
    # no cgroup of the host's was made for it: QEMU is where libvirtd is
    with open("/proc/%d/cgroup" % pid) as a, \
            open("/proc/%d/cgroup" % sysd.daemons["libvirtd"].pid) as b:
        assert a.read() == b.read()
    v = wait_for(lambda: vm(env).get("vault_public_key") and vm(env), 180,
                 "the agent's report (its vault key) over the channel")
    assert v["agent"]["connected"] is True and v["agent"]["reports"] >= 1, v
    assert "VM '%s': agent channel connected" % VM in vh.read_log()


def test_qemu_reaches_only_what_it_needs(env):
    """libvirt-qemu searches state_dir, vms, images and seeds (0711: QEMU opens its disks,
    kernel, initrd and seed by path; libvirt's DAC driver chowns files, never directories) and
    lists none; in them no file is another user's to read (the seed, which names the entity, is
    0600 like the disks); the helper's other directories stay closed."""
    state = os.path.join(env["root"], "state")
    modes = {d: os.stat(os.path.join(state, d)).st_mode & 0o777
             for d in ("", "images", "seeds", "vms", "channels", "console")}
    assert modes == {"": 0o711, "images": 0o711, "seeds": 0o711, "vms": 0o755,
                     "channels": 0o700, "console": 0o700}, {d: oct(m) for d, m in modes.items()}
    for d in ("", "images", "seeds", "vms"):
        for name in os.listdir(os.path.join(state, d)):
            st = os.lstat(os.path.join(state, d, name))
            if not stat.S_ISDIR(st.st_mode):
                assert not st.st_mode & 0o044, (d, name, oct(st.st_mode))
    seed = os.stat(os.path.join(state, "seeds", VM + ".iso"))
    assert stat.S_IMODE(seed.st_mode) == 0o600, oct(seed.st_mode)
    assert seed.st_uid == pwd.getpwnam("libvirt-qemu").pw_uid  # DAC's, while the VM runs


def test_suspend_and_resume_change_the_libvirt_state(env):
    vh = env["vh"]
    st, body, _ = vh.call("POST", "/v1/vms/%s/suspend" % VM)
    assert st == 200 and body["state"] == "saved", (st, body, vh.read_log()[-3000:])
    assert domstate(env) == "shut off"
    info = env["sysd"].virsh("dominfo", VM).stdout
    assert [ln for ln in info.splitlines() if ln.startswith("Managed save:")] == \
        ["Managed save:   yes"], info
    st, body, _ = vh.call("POST", "/v1/vms/%s/resume" % VM)
    assert st == 200 and body["state"] == "running", (st, body, vh.read_log()[-3000:])
    assert domstate(env) == "running"
    assert status(env["sysd"].qemu_pid(VM))["Uid"].split()[0] == \
        str(pwd.getpwnam("libvirt-qemu").pw_uid)


def test_destroy_behind_our_back_shows_at_once(env):
    vh = env["vh"]
    r = env["sysd"].virsh("destroy", VM)
    assert r.returncode == 0, r.stderr
    assert vm(env)["state"] == "shutoff"
    wait_for(lambda: "domain '%s' stopped" % VM in vh.read_log(), 10, "the lifecycle event")
    st, body, _ = vh.call("POST", "/v1/vms/%s/start" % VM)
    assert st == 200 and body["state"] == "running", (st, body, vh.read_log()[-3000:])
    assert domstate(env) == "running"


def test_libvirtd_restart_is_survived(env):
    vh, sysd = env["vh"], env["sysd"]
    qemu = sysd.qemu_pid(VM)
    sysd.stop("libvirtd")
    wait_for(lambda: "libvirt connection closed" in vh.read_log(), 30,
             "vmhost to see the connection close")
    sysd.start("libvirtd", "/run/libvirt/libvirt-sock")
    wait_for(lambda: vh.read_log().count("connected to libvirt") >= 2, 30,
             "vmhost to reconnect")
    # the guest ran on; the new daemon took it up, and vmhost's verbs reach it again
    assert sysd.qemu_pid(VM) == qemu and os.path.exists("/proc/%d" % qemu)
    assert domstate(env) == "running"
    st, inv, _ = vh.call("GET", "/v1/inventory")
    assert [(v["id"], v["state"]) for v in inv["vms"]] == [(VM, "running")], inv

    def fresh():
        hb = json.loads(env["hb"].recv(2048))
        return hb if 0 <= hb["libvirt_age_ms"] < 6000 else None
    wait_for(fresh, 30, "a heartbeat with a fresh libvirt age")


def test_archive_shuts_the_domain_down(env):
    vh = env["vh"]
    st, body, _ = vh.call("POST", "/v1/vms/%s/archive" % VM)
    assert st == 200 and body["lifecycle"] == "archived", (st, body, vh.read_log()[-3000:])
    # the test guest ignores ACPI: after the grace period (2 s) vmhost powers it off
    wait_for(lambda: domstate(env) == "shut off", 60, "the archived domain to shut off")
    wait_for(lambda: vm(env)["state"] == "shutoff", 30, "vmhost to see it off")
    assert VM in env["sysd"].virsh("list", "--all", "--name").stdout.split()  # kept


def test_the_daemon_wrote_nothing_on_the_host(env):
    """What the daemon made lives in the namespace: not one of its directories on the host."""
    sysd = env["sysd"]
    assert os.path.exists(sysd.path("/var/lib/libvirt/qemu/save"))
    assert os.path.exists(sysd.path("/var/cache/libvirt/qemu/capabilities"))
    assert not glob.glob(os.path.join(env["root"], "ns-overlay", "*"))  # a tmpfs, there only
    assert {d: os.path.exists(d) for d in HOST_DIRS} == env["host"]
    assert not glob.glob("/sys/fs/cgroup/*/machine*/*%s*" % VM.replace("-", "*"))
