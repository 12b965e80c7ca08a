"""A controller lost with no backup: `fleetctl rebuild` makes a new state directory from what the
nodes hold. Two nodes (node APIs that keep what fleetd sent them, pins included, as vmhost does)
hold VMs that a real fleetd placed and signed; one VM is suspended; one node also holds a VM whose
pin another key signed, and one with no pin. fleetd is killed and its state is gone; the rebuild
on a new state directory recovers every pinned VM with its node, plan id and lifecycle, names the
two it refused and what no node holds, and a fleetd started on it serves the VMs, reconciles
the nodes and has an audit record that verifies."""
import base64
import json
import os
import signal

import test_fleetd_harness as H


class PinNode(H.FakeNode):
    """A node API that keeps the pin, vCPUs and image of each creation, as vmhost's inventory
    lists them."""

    def __init__(self, *a):
        super().__init__(*a)
        self.bodies = {}


class PinNodeHandler(H.FakeNodeHandler):
    def do_POST(self):
        n = int(self.headers["Content-Length"])
        raw = self.rfile.read(n)
        req = json.loads(raw)
        self.rfile = __import__("io").BytesIO(raw)
        super().do_POST()
        if "pin" in req:
            with self.server.lock:
                vm = self.server.vms.get(req["vm_id"])
                if vm is not None:
                    vm.update(pin=req["pin"], vcpus=req["vcpus"], image=req["image"])


def node(f, i):
    n = PinNode(H.node_address(i), f.node_api_port, "n%d" % i)
    n.RequestHandlerClass = PinNodeHandler
    return n


def test_rebuild_from_nodes_recovers_pinned_vms_and_names_the_rest():
    f1 = H.Fleetd(nodes=2, settings={"dispatch_backoff": "50ms"})
    nodes = []
    f2 = None
    try:
        f1.start()
        with open(os.path.join(f1.state_dir, "pin.pub")) as fp:
            pin_pub = fp.read().strip()
        roster = H.roster_doc(2, version=2)
        roster["controller_pin_key"] = pin_pub
        for k, n in enumerate(roster["nodes"]):  # pins name each node's WireGuard key
            n["wg_public_key"] = base64.b64encode(bytes([k + 1]) * 32).decode()
        f1.write_roster(roster)
        f1.wait(lambda: f1.json("GET", "/v1/health", expect=200)[1]["pin_key"]["in_roster"],
                what="the roster naming the pin key")
        nodes = [node(f1, 1), node(f1, 2)]

        def beat():
            for i, n in enumerate(nodes, 1):
                f1.hb(i, avail=10**6, total=2 * 10**6, **n.figures())

        beat()
        f1.wait(lambda: f1.node("n2")["state"] == "alive")
        vms = {}
        for i, (entity, target) in enumerate([("acme", "n1"), ("beta", "n2"), ("gamma", "n1")]):
            _, plan = f1.json("POST", "/v1/plans", {"entity": entity, "memory_mib": 512,
                                                     "vcpus": 2, "image": "base",
                                                     "vault_disk_mib": 64, "node": target},
                              expect=201)
            _, vm = f1.confirm_vm(plan["id"])
            vms[vm["id"]] = (vm["node_id"], plan["id"])

        def all_active():
            beat()
            got = f1.json("GET", "/v1/vms", expect=200)[1]["vms"]
            return all(v["status"] == "active" for v in got) and len(got) == 3
        f1.wait(all_active, timeout=20, what="three VMs active")
        suspended = sorted(vms)[0]
        f1.verb(suspended, "suspend", expect=202)
        holder = nodes[int(vms[suspended][0][1:]) - 1]
        assert holder.vms[suspended]["lifecycle"] == "suspended"
        assert all("pin" in v for n in nodes for v in n.vms.values())
        # what an attacker (or a hand-made domain) leaves on n2: a pin of another key, no pin
        forged = dict(holder.vms[suspended])
        forged_pin = dict(forged["pin"], vm_id="tbx-evil-000001", entity="evil")
        forged_pin["signature"] = base64.b64encode(b"\x01" * 64).decode()
        nodes[1].vms["tbx-evil-000001"] = dict(forged, id="tbx-evil-000001", entity="evil",
                                                pin=forged_pin)
        nodes[1].vms["tbx-bare-000001"] = dict(forged, id="tbx-bare-000001", entity="bare")
        del nodes[1].vms["tbx-bare-000001"]["pin"]
        f1.stop(signal.SIGKILL)  # the controller is lost, and its state with it

        f2 = H.Fleetd(nodes=2, auth=False)
        f2.write_roster(roster)
        f2.settings["node_api_port"] = f1.node_api_port
        r = f2.ctl("rebuild", "--roster", f2.roster_file, "--node-port", str(f1.node_api_port),
                   "-f", "json")
        report = json.loads(r.stdout)
        assert sorted(report["recovered"]) == sorted(vms)
        refused = {x["vm"]: x["why"] for x in report["not_recovered"]}
        assert "bad-signature" in refused["tbx-evil-000001"], refused
        assert "no pin" in refused["tbx-bare-000001"], refused
        assert [n["answered"] for n in report["nodes"]] == [False, True, True]  # ctl runs no vmhost
        assert any("audit record" in x for x in report["lost"])
        assert any("tokens" in x for x in report["lost"])
        # the same for a person: one line per node, per refusal and per loss
        text = f2.ctl("--state-dir", os.path.join(f2.dir, "other"), "rebuild", "--roster",
                      f2.roster_file, "--node-port", str(f1.node_api_port)).stdout
        assert "recovered 3 VMs" in text, text
        assert "not recovered: VM 'tbx-evil-000001' on node 'n2'" in text, text
        assert "lost: API tokens" in text, text
        # a second rebuild never overwrites a state directory
        r = f2.ctl("rebuild", "--roster", f2.roster_file, check=False)
        assert r.returncode == 1 and "not empty" in r.stderr

        f2.start()
        got = {v["id"]: v for v in f2.json("GET", "/v1/vms", expect=200)[1]["vms"]}
        assert sorted(got) == sorted(vms)
        for vm_id, (target, plan_id) in vms.items():
            assert got[vm_id]["node_id"] == target
            assert got[vm_id]["plan_id"] == plan_id
        assert got[suspended]["lifecycle"] == "suspended"
        assert "intact" in f2.ctl("audit", "verify").stdout
        kinds = [e["kind"] for e in f2.audit()]
        assert kinds.count("vm.rebuilt") == 3 and "fleetd.rebuilt" in kinds

        def reconciled():
            for i, n in enumerate(nodes, 1):
                f2.hb(i, avail=10**6, total=2 * 10**6, **n.figures())
            n2 = f2.node("n2")
            return n2["inventory"] == "ok" and n2
        n2 = f2.wait(reconciled, timeout=10, what="n2 reconciled")
        assert sorted(n2["unknown_vms"]) == ["tbx-bare-000001", "tbx-evil-000001"]
    finally:
        for n in nodes:
            n.shutdown()
            n.server_close()
        f1.close()
        if f2:
            f2.close()
