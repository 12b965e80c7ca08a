"""vmhost's privileged helper (vmhost/helper.c, the program vmhost-helper), seen from outside:
vmhost runs it as a second process that holds nothing of vmhost's (no node API listener, no
heartbeat socket: no socket of vmhost's at all) but its ends of the two socketpairs and stderr,
that is the only one of the two that maps libvirt, that answers the pin gate's key lookups (here
from the mesh state's wg.key, which vmhost itself no longer reads), and that dies with vmhost."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from test_vmhost_harness import FleetTrust, Vmhost, destroy_all, make_root, remove_root  # noqa: E402


def children(pid):
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open("/proc/%s/stat" % p) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(p))
    return out


def fds(pid):
    out = {}
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            out[int(fd)] = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            pass
    return out


def test_helper_holds_nothing_of_vmhost_and_dies_with_it():
    root = make_root("tbx-vmhost-helper-")
    trust = FleetTrust(nodes=("node1", "node2"))
    vh = Vmhost(root, mesh_state_dir=trust.mesh_dir(root, "node1"))
    try:
        helpers = [c for c in children(vh.proc.pid)
                   if open("/proc/%d/comm" % c).read().strip() == "vmhost-helper"]
        assert len(helpers) == 1, children(vh.proc.pid)
        helper = helpers[0]
        assert "helper: process %d (" % helper in vh.read_log()
        held = fds(helper)
        assert held[3].startswith("socket:") and held[4].startswith("socket:"), held
        # not one socket of vmhost's went to the helper (an inherited one has the same inode)
        mine = {v for v in fds(vh.proc.pid).values() if v.startswith("socket:")}
        theirs = {v for v in held.values() if v.startswith("socket:")}
        assert not mine & theirs, (mine, theirs)
        # libvirt is the helper's alone
        with open("/proc/%d/maps" % vh.proc.pid) as f:
            assert "libvirt" not in f.read()
        with open("/proc/%d/maps" % helper) as f:
            assert "libvirt" in f.read()
        # the pin gate asks the helper for this node's key: a create with a pin for node1's key
        # passes the gate (and fails later only for want of an image)
        s, body, _ = vh.call("POST", "/v1/vms", trust.create({
            "request_id": "h1", "vm_id": "vm-h", "entity": "e", "memory_mib": 128, "vcpus": 1,
            "image": "nope", "vault_disk_mib": 32}, "node1"))
        assert s == 422 and body["type"].endswith("/unknown-image"), (s, body)
        # a pin naming another WireGuard key than the helper reports is refused by the gate
        body = {"request_id": "h2", "vm_id": "vm-h", "entity": "e", "memory_mib": 128,
                "vcpus": 1, "image": "nope", "vault_disk_mib": 32}
        body["pin"] = trust.pin("vm-h", "node1", "e", "nope", "h2", wg=trust.wg_public("node2"))
        s, doc, _ = vh.call("POST", "/v1/vms", body)
        assert s == 409 and doc["type"].endswith("/pinned-elsewhere"), (s, doc)
        vh.proc.send_signal(signal.SIGKILL)
        vh.proc.wait()
        deadline = time.time() + 5
        while os.path.exists("/proc/%d" % helper) and time.time() < deadline:
            time.sleep(0.05)
        assert not os.path.exists("/proc/%d" % helper)
    finally:
        vh.stop()
        destroy_all(root)
        remove_root(root)
