# ctest-labels: slow
"""vmhost's privilege drop (issue 18), seen as an adversary who owns the process that parses the
node API and the agents' lines would see it. vmhost is started as root, as the systemd unit does;
once its helper runs, the network-facing process has no root uid in any of its four ids, no
capability in any set (bounding and ambient too), no_new_privs and a seccomp filter, while the
helper (libvirt, WireGuard, the mesh state) is still root. The state directory is the
unprivileged user's but for the helper's directories (vms, channels, console, seeds), which stay
root's; the mesh state (genesis key, roster, WireGuard key) stays root's, 0700, and vmhost
cannot read it. It still works end to end: an image import, a create that passes the pin gate
(the genesis key vmhost read before the drop, this node's key from the helper), the seed built
by the helper (vmhost may not exec genisoimage), a guest under TCG whose agent reports over a
channel that QEMU bound in root's directory and the helper connected and passed up
(SCM_RIGHTS), and a pushed roster that the helper writes into the mesh state."""
import json
import os
import pwd
import sys

import pytest
from harness import proc_status as status

sys.path.insert(0, os.path.dirname(__file__))
from test_vmhost_harness import (VMHOST, FleetTrust, Vmhost, build_image, destroy_all,  # noqa: E402
                                 make_root, remove_root, sha256, wait_for)
from test_vmhost_helper import children, fds  # noqa: E402

BASE = {"entity": "acme-co", "memory_mib": 128, "vcpus": 1, "image": "test",
        "vault_disk_mib": 16, "fleet_id": "fleet-t"}


def vm(vh, vm_id):
    st, body, _ = vh.call("GET", "/v1/vms/" + vm_id)
    assert st == 200, body
    return body


def listener_inodes(port):
    """The socket inodes listening on TCP port (from /proc/net/tcp)."""
    out = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
                out.add("socket:[%s]" % fields[9])
    return out


def test_vmhost_drops_privilege_and_still_works():
    if os.getuid() != 0:
        pytest.skip("by design: the drop is what vmhost does when started as root")
    if not os.access(VMHOST, os.X_OK):
        pytest.skip("by design: no vmhost binary in the build")
    root = make_root("tbx-vmhost-privsep-")
    trust = FleetTrust(nodes=("node1",))
    vh = None
    try:
        manifest = build_image(os.path.join(root, "image"))
        mesh = trust.mesh_dir(root, "node1", owner=(0, 0))  # root's, as totebox-pair leaves it
        os.chmod(mesh, 0o700)
        vh = Vmhost(root, as_root=True, mesh_state_dir=mesh)
        log = vh.read_log()
        helpers = [c for c in children(vh.proc.pid)
                   if open("/proc/%d/comm" % c).read().strip() == "vmhost-helper"]
        assert len(helpers) == 1, children(vh.proc.pid)
        me, helper = status(vh.proc.pid), status(helpers[0])
        # the network-facing process: no root id, no capability in any set, nothing to gain
        uids, gids = me["Uid"].split(), me["Gid"].split()
        assert len(uids) == 4 and "0" not in uids, me["Uid"]
        assert len(set(uids)) == 1 and "0" not in gids, (me["Uid"], me["Gid"])
        assert me["Groups"] == "", me["Groups"]
        for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(me[cap], 16) == 0, (cap, me[cap])
        assert me["NoNewPrivs"] == "1" and me["Seccomp"] == "2", me
        # the user is the configured one, or nobody where the package did not make it
        user = pwd.getpwuid(int(uids[0])).pw_name
        assert user in ("totebox-vmhost", "nobody"), user
        assert "vmhost runs as uid %s" % uids[0] in log, log[-2000:]
        # the helper is still root, and the node API's listener is the unprivileged process's
        assert helper["Uid"].split()[0] == "0" and int(helper["CapEff"], 16) != 0, helper
        lsock = listener_inodes(vh.port)
        assert lsock and lsock <= set(fds(vh.proc.pid).values()), lsock
        assert not lsock & set(fds(helpers[0]).values())
        # the state directory: the user's, but for the helper's directories
        state = os.path.join(root, "state")
        assert os.stat(state).st_uid == int(uids[0])
        for d in ("vms", "channels", "console", "seeds"):
            st = os.stat(os.path.join(state, d))
            assert st.st_uid == 0 and not st.st_mode & 0o022, (d, oct(st.st_mode))
        for name in ("images", "manifests", "integrity", "creations"):
            assert os.stat(os.path.join(state, name)).st_uid == int(uids[0]), name
        # it works: an image, a create through the pin gate, a guest whose agent reports
        st, body, _ = vh.call("POST", "/v1/images", {"name": "test", "path": manifest,
                                                     "sha256": sha256(manifest)})
        assert st == 201, (body, vh.read_log()[-3000:])
        st, doc, _ = vh.call("POST", "/v1/vms", trust.create(
            dict(BASE, request_id="req-p1", vm_id="vm-p1"), "node1"))
        assert st == 201 and doc["state"] == "running", (st, doc, vh.read_log()[-3000:])
        assert os.stat(os.path.join(state, "seeds", "vm-p1.iso")).st_uid == 0
        wait_for(lambda: (vm(vh, "vm-p1")["agent"] or {}).get("reports", 0) >= 1, 180,
                 "vm-p1's agent's first report over the passed channel")
        assert "VM 'vm-p1': agent channel connected" in vh.read_log()
        # what vmhost holds of the guest is the channel socket the helper passed, never a
        # descriptor into the helper's directories or the mesh state
        held = fds(vh.proc.pid).values()
        for d in (mesh, os.path.join(state, "vms"), os.path.join(state, "channels")):
            assert not [t for t in held if t.startswith(d + "/")], (d, sorted(held))
        # a pushed roster: vmhost stores its copy, the helper the mesh state's (root's, 0700)
        st, body, _ = vh.call("POST", "/v1/roster", trust.roster(version=2))
        assert st == 200 and body["version"] == 2, body
        with open(os.path.join(mesh, "roster.json")) as f:
            assert json.load(f)["version"] == 2
        # and after all that, still unprivileged
        me = status(vh.proc.pid)
        assert "0" not in me["Uid"].split() and int(me["CapEff"], 16) == 0
        # an unprivileged vmhost still shuts down in order: the helper ends, vmhost exits 0
        helper_pid = helpers[0]
        vh.stop()
        assert vh.proc.returncode == 0, vh.read_log()[-2000:]
        assert not os.path.exists("/proc/%d" % helper_pid)
    finally:
        if vh:
            vh.stop()
        destroy_all(root, as_root=True)
        remove_root(root)
