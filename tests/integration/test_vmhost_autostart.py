# ctest-labels: slow
"""A power cut with real libvirt (qemu:///embed, TCG, the small test image): vmhost creates two VMs
and archives one; then vmhost stops, the QEMU this test started for the active VM is frozen
(SIGSTOP) and killed (SIGKILL, by PID) only once the new vmhost runs and libvirt's reconnect to
it still waits (libvirt lists the VM as running until then), and root on the node plants a copy
of the active VM under another name with its pin edited (the signature kept). vmhost starts
again on the same state: the active VM runs again (its guest agent reports again, the creation
counter went up), the archived one and the copy stay shut off, and one log line per VM says why.
Then the guest's QEMU dies under a running vmhost (a guest crash): vmhost leaves it shut off,
lifecycle active (docs/vmhost.md)."""
import os
import re
import shutil
import signal
import socket
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from test_vmhost_harness import (VMHOST, FleetTrust, Vmhost, build_image, destroy_all,  # noqa: E402
                                 give, make_root, remove_root, sha256, wait_for)

BASE = {"entity": "acme-co", "memory_mib": 128, "vcpus": 1, "image": "test",
        "vault_disk_mib": 16, "fleet_id": "fleet-t"}


@pytest.fixture(scope="module")
def env():
    if not os.access(VMHOST, os.X_OK):
        pytest.skip("by design: no vmhost binary in the build")
    root = make_root("tbx-autostart-")
    hb = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    hb.bind(("127.0.0.1", 0))
    manifest = build_image(os.path.join(root, "image"))
    trust = FleetTrust(nodes=("node1",))
    state = {"root": root, "trust": trust, "hb": hb}

    def start():
        state["vh"] = Vmhost(root, hb_port=hb.getsockname()[1],
                             mesh_state_dir=trust.mesh_dir(root, "node1"))
        return state["vh"]
    state["start"] = start
    try:
        st, body, _ = start().call("POST", "/v1/images", {"name": "test", "path": manifest,
                                                          "sha256": sha256(manifest)})
        assert st == 201, body
        yield state
    finally:
        state["vh"].stop()
        destroy_all(root)
        hb.close()
        remove_root(root)


def vm(vh, vm_id):
    st, body, _ = vh.call("GET", "/v1/vms/" + vm_id)
    assert st == 200, body
    return body


def qemu_path(root, vm_id, ext):
    return os.path.join(root, "libvirt", "run" if ext == ".pid" else "etc", "qemu", vm_id + ext)


def qemu_pid(root, vm_id):
    with open(qemu_path(root, vm_id, ".pid")) as f:
        return int(f.read().strip())


def gone(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def kill_qemu(pid):
    """SIGKILL to one QEMU this test started (its PID from libvirt's pid file)."""
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: gone(pid), 30, "QEMU %d to die" % pid)


def agent_reports(vh, vm_id):
    a = vm(vh, vm_id)["agent"]
    return a["reports"] if a else 0


def test_power_cut_brings_back_the_active_vm_only(env):
    root, trust, vh = env["root"], env["trust"], env["vh"]
    for vm_id in ("vm-a", "vm-b"):
        body = dict(BASE, request_id="req-" + vm_id, vm_id=vm_id)
        st, doc, _ = vh.call("POST", "/v1/vms", trust.create(body, "node1"))
        assert st == 201 and doc["state"] == "running", doc
    wait_for(lambda: agent_reports(vh, "vm-a") >= 1, 120, "vm-a's agent's first report")
    st, doc, _ = vh.call("POST", "/v1/vms/vm-b/archive")
    assert st == 200 and doc["lifecycle"] == "archived", doc
    wait_for(lambda: vm(vh, "vm-b")["state"] == "shutoff", 60, "the archived VM to power off")
    before = vh.call("GET", "/v1/inventory")[1]["creations"]

    # the power cut, as vmhost sees it: vmhost stops; vm-a's QEMU (ours) is frozen (SIGSTOP)
    # and dies with SIGKILL only once the new vmhost runs, while libvirt's reconnect to it waits
    pid = qemu_pid(root, "vm-a")
    assert not os.path.exists(qemu_path(root, "vm-b", ".pid"))
    vh.stop()
    os.kill(pid, signal.SIGSTOP)
    # root on the node: a copy of vm-a as vm-c, disks and all, its pin edited to name vm-c
    for sub, sfx in (("vms", "-os.qcow2"), ("vms", "-vault.img"), ("seeds", ".iso")):
        target = os.path.join(root, "state", sub, "vm-c" + sfx)
        shutil.copy(os.path.join(root, "state", sub, "vm-a" + sfx), target)
        give(target)
    xml = open(qemu_path(root, "vm-a", ".xml")).read()
    assert ' lifecycle="active"' in xml and "&quot;vm_id&quot;:&quot;vm-a&quot;" in xml
    xml = re.sub(r"<uuid>[^<]*</uuid>", "", xml.replace("vm-a", "vm-c"))
    xml = re.sub(r"<mac address=[^>]*>", "", xml)
    with open(qemu_path(root, "vm-c", ".xml"), "w") as f:
        f.write(xml)
    give(qemu_path(root, "vm-c", ".xml"))

    vh = env["start"]()
    # libvirt lists vm-a as running until its reconnect fails: vmhost must not decide then
    wait_for(lambda: "autostart: libvirt still settles domain 'vm-a'" in vh.read_log(), 30,
             "vmhost to wait for libvirt's reconnect to vm-a")
    time.sleep(1)
    assert "autostart: VM 'vm-a'" not in vh.read_log()
    kill_qemu(pid)
    try:
        a = wait_for(lambda: (lambda v: v if v["state"] == "running" else None)(vm(vh, "vm-a")),
                     90, "vm-a to run again")
    except AssertionError as e:
        log = vh.read_log()
        raise AssertionError("%s\nvmhost's start-up decisions:\n%s\nvmhost's log, last lines:\n%s"
                             % (e, "\n".join(l for l in log.splitlines() if "autostart" in l),
                                log[-3000:]))
    assert a["lifecycle"] == "active"
    # the guest really boots again: its agent reports over the channel to the new vmhost
    wait_for(lambda: agent_reports(vh, "vm-a") >= 1, 120, "vm-a's agent reporting again")
    b, c = vm(vh, "vm-b"), vm(vh, "vm-c")
    assert (b["state"], b["lifecycle"]) == ("shutoff", "archived"), b
    assert (c["state"], c["lifecycle"]) == ("shutoff", "active"), c
    assert not os.path.exists(qemu_path(root, "vm-c", ".pid"))
    assert not os.path.exists(qemu_path(root, "vm-b", ".pid"))
    log = vh.read_log()
    assert "autostart: VM 'vm-a' is active and its pin names this node; started" in log, log
    assert "autostart: VM 'vm-a' is active and already running" not in log, log
    assert "autostart: VM 'vm-b' is archived; left as it is" in log, log
    m = re.search(r"autostart: VM 'vm-c' is active but not started: pin-refused: .*", log)
    assert m and "bad-signature" in m.group(0), log
    # each start attempt is a start path: the counter went past the start-up increase
    inv = vh.call("GET", "/v1/inventory")[1]
    assert inv["creations"] >= before + 3, (before, inv["creations"])
    env["pid"] = qemu_pid(root, "vm-a")
    assert env["pid"] != pid


def test_guest_crash_is_not_restarted(env):
    """QEMU dies under a running vmhost: the VM stays shut off with lifecycle active; vmhost
    restarts it only at its own next start-up (or on `start`)."""
    vh = env["vh"]
    kill_qemu(env["pid"])
    wait_for(lambda: vm(vh, "vm-a")["state"] == "shutoff", 30, "vm-a shown shut off")
    time.sleep(6)  # past one inventory refresh (5 s)
    a = vm(vh, "vm-a")
    assert (a["state"], a["lifecycle"]) == ("shutoff", "active"), a
    assert vh.read_log().count("autostart: VM 'vm-a'") == 1
    st, doc, _ = vh.call("POST", "/v1/vms/vm-a/start")
    assert st == 200 and doc["state"] == "running", doc
