# ctest-labels: slow
"""A VM whose QEMU fails to start, for real, through a real vmhost (qemu:///embed, TCG) and a
real fleetd: the image's kernel is made unreadable to QEMU after the import, so the domain is
defined and its start fails. fleetd shows the VM `failed` with the node's reason (never
`active`), in REST, fleetctl and the audit record; a create retried with the same request id
answers the start failure, not 200; once the kernel is readable again the same retry starts the
defined domain, and fleetd then follows what the node observes (running, created)."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import test_fleetd_harness as H  # noqa: E402
from test_vmhost_harness import (FleetTrust, Vmhost, build_image, destroy_all,  # noqa: E402
                                 make_root, remove_root, sha256)

ENTITY = "no-start"


def vm_where(f, vm_id, cond):
    return (lambda v: v if cond(v) else None)(f.json("GET", "/v1/vms/" + vm_id, expect=200)[1])


def test_start_failure_is_shown_failed_and_a_retry_tells_the_truth():
    root = make_root("tbx-nostart-")
    f = H.Fleetd(nodes=0, settings={"heartbeat_interval": "1s", "node_api_timeout": "60s"})
    # the controller on 127.0.0.2, the node (vmhost) on 127.0.0.1 where its node API listens;
    # a genesis-signed roster naming fleetd's pin key (vmhost's heartbeats go to the roster's
    # controller address, so fleetd listens on every loopback address)
    trust = FleetTrust(nodes=("n1",), fleet_id="f1", controller="ctl",
                       addresses={"ctl": "127.0.0.2", "n1": "127.0.0.1"})
    trust.give_fleetd(f)
    f.settings["heartbeat_listen"] = "0.0.0.0"
    vh = None
    try:
        manifest = build_image(os.path.join(root, "image"))
        vh = Vmhost(root, node_id="n1", hb_port=f.hb_port, fleet_id="f1",
                    node_api_allow="127.0.0.1,127.0.0.2", mesh_state_dir=trust.mesh_dir(root, "n1"))
        st, body, _ = vh.call("POST", "/v1/images", {"name": "test", "path": manifest,
                                                      "sha256": sha256(manifest)})
        assert st == 201, body
        kernel = os.path.join(root, "state", "images", "test.vmlinuz")
        assert os.path.exists(kernel), os.listdir(os.path.join(root, "state", "images"))
        os.chmod(kernel, 0)  # QEMU (not root) cannot open it: the start fails

        f.settings["node_api_port"] = vh.port
        f.start()
        f.wait(lambda: f.node("n1")["state"] == "alive", timeout=30, what="vmhost heartbeats")
        _, plan = f.json("POST", "/v1/plans", {"entity": ENTITY, "memory_mib": 256, "vcpus": 1,
                                                "image": "test", "vault_disk_mib": 64},
                         expect=201)
        _, vm = f.confirm_vm(plan["id"])
        done = f.wait(lambda: vm_where(f, vm["id"], lambda v: v["status"] != "creating"),
                      timeout=120, what="the creation's outcome")
        assert done["status"] == "failed", done
        print("fleetd shows: failed: " + done["reason"])
        assert "could not start" in done["reason"] and "n1" in done["reason"], done
        assert "vmlinuz" in done["reason"] or "ermission" in done["reason"], done
        # the node holds the domain, shut off; fleetd shows that, and keeps it failed
        v = f.wait(lambda: vm_where(f, vm["id"], lambda v: v["state"] == "shutoff"), timeout=30,
                   what="the node's inventory")
        assert v["status"] == "failed" and v["lifecycle"] == "active"
        out = f.ctl("vms").stdout
        assert vm["id"] in out and "failed" in out and "could not start" in out, out
        kinds = [e["kind"] for e in f.audit() if e["subject"] == vm["id"]]
        assert "vm.failed" in kinds and "vm.created" not in kinds, kinds

        # the same request again: the start failure, not 200
        create = {"request_id": vm["request_id"], "vm_id": vm["id"], "entity": ENTITY,
                  "memory_mib": 256, "vcpus": 1, "image": "test", "vault_disk_mib": 64,
                  "fleet_id": "f1"}
        st, body, _ = vh.call("POST", "/v1/vms", create, source="127.0.0.2")
        assert st == 500 and body["type"].endswith("/start"), (st, body)
        assert "did not start" in body["detail"], body
        # readable again: the retry starts the defined domain
        os.chmod(kernel, 0o644)
        st, body, _ = vh.call("POST", "/v1/vms", create, source="127.0.0.2")
        assert st == 200 and body["state"] == "running", (st, body)
        v = f.wait(lambda: vm_where(f, vm["id"], lambda v: v["state"] == "running"), timeout=30,
                   what="fleetd to see it running")
        assert v["status"] == "active", v
        kinds = [e["kind"] for e in f.audit() if e["subject"] == vm["id"]]
        assert kinds.count("vm.created") == 1, kinds
        assert "intact" in f.ctl("audit", "verify").stdout
    finally:
        if vh:
            vh.stop()
        f.close()
        destroy_all(root)
        remove_root(root)
