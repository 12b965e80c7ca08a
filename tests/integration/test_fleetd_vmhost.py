"""fleetd with a real vmhost node: heartbeats from vmhost, the inventory fetched over the node
API when the digest changes, a plan confirmed and dispatched to POST /v1/vms, its outcome
visible on the VM. Skipped, saying why, while the vmhost binary has no node API (it is being
built on another branch); after the merge it runs for real."""
import http.client
import json
import os
import re
import subprocess
import tempfile
import time

import pytest

import test_fleetd_harness as H

VMHOST = os.path.join(H.BUILD, "vmhost", "vmhost")


def vmhost_keys():
    if not os.access(VMHOST, os.X_OK):
        return set()
    out = subprocess.run([VMHOST, "--help"], capture_output=True, text=True).stdout
    return set(re.findall(r"^\s+([a-z_]+)\s", out, re.M))


def inventory(address, port):
    conn = http.client.HTTPConnection(address, port, timeout=2)
    conn.request("GET", "/v1/inventory")
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, body


def test_fleetd_with_real_vmhost():
    keys = vmhost_keys()
    if not any(k.startswith("node_api") for k in keys):
        pytest.skip("vmhost does not answer /v1/inventory yet: its binary has no node_api_* "
                    "config key (the node API lands with the vmhost branch)")
    f = H.Fleetd(nodes=1, settings={"heartbeat_interval": "1s"})
    tmp = tempfile.TemporaryDirectory(prefix="vmhost-it-")
    settings = {"node_id": "n1", "fleetd_address": "127.0.0.1", "fleetd_port": f.hb_port,
                "heartbeat_source": H.node_address(1), "heartbeat_interval": "1s",
                "libvirt_uri": "test:///default", "state_dir": tmp.name,
                "node_api_listen": H.node_address(1), "node_api_address": H.node_address(1),
                "node_api_port": f.node_api_port, "node_api_allow": "127.0.0.1",
                "virt_type": "qemu"}
    args = [VMHOST]
    for k, v in settings.items():
        if k in keys:
            args += ["--set", "%s=%s" % (k, v)]
    log = open(os.path.join(tmp.name, "vmhost.log"), "wb")
    proc = subprocess.Popen(args, stdout=log, stderr=log)
    try:
        answered = None
        for _ in range(100):
            try:
                answered = inventory(H.node_address(1), f.node_api_port)
                break
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.1)
        if not answered or answered[0] != 200:
            pytest.skip("vmhost does not answer /v1/inventory yet (%s)" %
                        (answered[0] if answered else "no answer"))
        f.start()
        f.wait(lambda: f.node("n1")["state"] in ("alive", "unhealthy"), timeout=15,
               what="vmhost heartbeats")
        f.wait(lambda: f.node("n1")["inventory"] == "ok", timeout=15, what="inventory fetched")
        if f.node("n1")["state"] != "alive":
            pytest.skip("vmhost's libvirt is not healthy here; placement refuses the node")
        req = {"entity": "itest", "memory_mib": 64, "vcpus": 1, "image": "base",
               "vault_disk_mib": 16}
        st, plan = f.json("POST", "/v1/plans", req)  # no node has it yet: refused, not failed later
        assert st == 422 and plan["type"].endswith("/no-node-has-image"), plan
        disk = os.path.join(tmp.name, "base.raw")
        with open(disk, "wb") as out:
            out.write(b"\0" * (1 << 20))
        f.ctl("image", "push", disk, "--name", "base")
        _, plan = f.json("POST", "/v1/plans", req)
        if plan.get("status") == 422:
            pytest.skip("the node has no room for a 64 MiB VM: " + plan["detail"])
        _, vm = f.confirm_vm(plan["id"])
        done = f.wait(lambda: (lambda v: v if v["status"] != "creating" else None)(
            f.json("GET", "/v1/vms/" + vm["id"], expect=200)[1]), timeout=60, what="dispatch")
        assert done["status"] in ("active", "failed")
        if done["status"] == "failed":
            assert done["reason"]
        st, body = inventory(H.node_address(1), f.node_api_port)
        ids = [v["id"] for v in json.loads(body)["vms"]]
        assert ids.count(vm["id"]) <= 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
        f.close()
        tmp.cleanup()
