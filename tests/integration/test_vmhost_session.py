"""vmhost through a libvirt daemon (qemu:///session, the same code path as qemu:///system):
disks are volumes of the storage pools, a domain stopped behind vmhost's back shows up at once
(lifecycle events), and when libvirtd dies vmhost reconnects and heartbeats show the outage in
libvirt_age_ms."""
import json
import os
import signal
import socket
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from test_vmhost_harness import (FleetTrust, Vmhost, build_image, give, make_root, remove_root,  # noqa: E402
                                 run_as, sha256, wait_for)
import subprocess  # noqa: E402


def session_env(root):
    env = {"HOME": root + "/home", "XDG_RUNTIME_DIR": root + "/run"}
    for d in ("home", "run"):
        os.makedirs(root + "/" + d, mode=0o700, exist_ok=True)
        give(root + "/" + d)
    return env


def virsh(env, *args):
    ids = run_as()
    return subprocess.run(["virsh", "-q", "-c", "qemu:///session"] + list(args),
                          env=dict(env, PATH="/usr/bin:/bin:/usr/sbin:/sbin"),
                          capture_output=True, text=True,
                          user=ids[0] if ids else None, group=ids[1] if ids else None)


def session_daemons(run_dir):
    """PIDs of the libvirtd serving this test's session (found by its XDG_RUNTIME_DIR)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/comm" % pid) as f:
                if f.read().strip() != "libvirtd":
                    continue
            with open("/proc/%s/environ" % pid, "rb") as f:
                if ("XDG_RUNTIME_DIR=" + run_dir).encode() in f.read().split(b"\0"):
                    pids.append(int(pid))
        except OSError:
            pass
    return pids


@pytest.fixture(scope="module")
def env():
    root = make_root("tbx-vmhost-sess-")
    senv = session_env(root)
    hb = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    hb.bind(("127.0.0.1", 0))
    hb.settimeout(5)
    manifest = build_image(os.path.join(root, "image"))
    trust = FleetTrust()
    vh = Vmhost(root, libvirt_uri="qemu:///session", env=senv, hb_port=hb.getsockname()[1],
                mesh_state_dir=trust.mesh_dir(root, "node1"))
    state = {"root": root, "vh": vh, "env": senv, "hb": hb, "manifest": manifest, "trust": trust}
    yield state
    vh.stop()
    for name in virsh(senv, "list", "--name").stdout.split():
        virsh(senv, "destroy", name)
    for pool in ("totebox-vms", "totebox-images"):
        virsh(senv, "pool-destroy", pool)
        virsh(senv, "pool-undefine", pool)
    for pid in session_daemons(senv["XDG_RUNTIME_DIR"]):
        os.kill(pid, signal.SIGTERM)
    hb.close()
    remove_root(root)


def heartbeat(env):
    return json.loads(env["hb"].recv(2048))


def test_disks_are_pool_volumes(env):
    vh = env["vh"]
    status, body, _ = vh.call("POST", "/v1/images", {"name": "t", "path": env["manifest"],
                                                      "sha256": sha256(env["manifest"])})
    assert status == 201, body
    status, body, _ = vh.call("POST", "/v1/vms", env["trust"].create({
        "request_id": "s1", "vm_id": "sess-1", "entity": "e", "memory_mib": 128, "vcpus": 1,
        "image": "t", "vault_disk_mib": 32}, "node1"))
    assert status == 201 and body["state"] == "running", body
    vols = virsh(env["env"], "vol-list", "totebox-vms").stdout
    assert "sess-1-os.qcow2" in vols and "sess-1-vault.img" in vols
    info = virsh(env["env"], "vol-dumpxml", "--pool", "totebox-vms", "sess-1-os.qcow2").stdout
    assert "<backingStore>" in info and "t.disk.qcow2" in info  # an overlay, not a copy


def test_stop_behind_our_back_shows_at_once(env):
    r = virsh(env["env"], "destroy", "sess-1")
    assert r.returncode == 0, r.stderr
    status, body, _ = env["vh"].call("GET", "/v1/vms/sess-1")
    assert body["state"] == "shutoff", body
    wait_for(lambda: "domain 'sess-1' stopped" in env["vh"].read_log(), 10,
             "the lifecycle event")


def test_reconnects_after_libvirtd_dies(env):
    pids = session_daemons(env["env"]["XDG_RUNTIME_DIR"])
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: env["vh"].read_log().count("connected to libvirt") >= 2, 30,
             "vmhost to reconnect")
    assert "libvirt connection closed" in env["vh"].read_log()
    status, inv, _ = env["vh"].call("GET", "/v1/inventory")
    assert [v["id"] for v in inv["vms"]] == ["sess-1"]

    def fresh():
        hb = heartbeat(env)
        return hb if 0 <= hb["libvirt_age_ms"] < 6000 else None
    wait_for(fresh, 30, "a heartbeat with a fresh libvirt age")
