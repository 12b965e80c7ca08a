# ctest-labels: slow
"""fleetd's verify verb and lifecycle self-correction with real daemons: a real fleetd, a real
vmhost (qemu:///embed, TCG) booting the offline test image with the real totebox-agent.
fleetd forwards POST /v1/vms/{id}/verify to the node, answers 202 with the node's request id and
audits it; the request reaches the agent over the channel, the agent verifies its vault and its
report comes back through vmhost's inventory: fleetd audits it once (vm.verified) and shows it
on the VM (verification.last, pending false). Then a suspend
whose answer is lost: an HTTP relay between fleetd and vmhost passes the call to vmhost but holds
the answer past fleetd's node_api_timeout, so fleetd answers 504 while the node did suspend the
VM; fleetd then corrects its record from the node's inventory and audits the correction.
Refusals: verify on a suspended and on an archived VM (409, nothing forwarded or audited)."""
import http.client
import http.server
import os
import socketserver
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import test_fleetd_harness as H  # noqa: E402
from test_vmhost_harness import (VMHOST, FleetTrust, Vmhost, build_image, destroy_all, make_root,  # noqa: E402
                                 remove_root, sha256)


class Relay(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """Listens where fleetd expects node n1's API and relays each call to vmhost. While
    `hold` is set, a call whose path ends with it reaches vmhost, but its answer is held for
    `hold_s` seconds and then dropped: the node acted, fleetd never hears of it."""
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, listen, port, target_port):
        self.target_port = target_port
        self.hold = None
        self.hold_s = 0
        self.held = []
        super().__init__((listen, port), RelayHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def close(self):
        self.shutdown()
        self.server_close()


class RelayHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def relay(self):
        hold = self.server.hold  # as it was when the call came in
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        conn = http.client.HTTPConnection("127.0.0.1", self.server.target_port, timeout=120)
        conn.request(self.command, self.path, body=body,
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        payload = r.read()
        conn.close()
        if hold and self.path.endswith(hold):
            self.server.held.append((self.path, r.status))
            time.sleep(self.server.hold_s)
            self.close_connection = True
            return
        self.send_response(r.status)
        self.send_header("Content-Type", r.getheader("Content-Type") or "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = relay
    do_POST = relay


@pytest.fixture(scope="module")
def fleet():
    if not os.access(VMHOST, os.X_OK):
        pytest.skip("no vmhost binary in the build")
    root = make_root("tbx-fverify-")
    manifest = build_image(os.path.join(root, "image"),
                           agent=os.path.join(H.BUILD, "agent", "totebox-agent"))
    f = H.Fleetd(nodes=1, settings={"heartbeat_interval": "2s", "suspect_after": "6s",
                                    "evict_after": "10s", "node_api_timeout": "2s",
                                    "dispatch_backoff": "200ms"})
    trust = FleetTrust(nodes=("ctl", "n1"), fleet_id="f1", controller="ctl",
                       addresses={"ctl": "127.0.0.1", "n1": H.node_address(1)})
    trust.give_fleetd(f)
    vh = Vmhost(root, node_id="n1", hb_port=f.hb_port, fleetd_address="127.0.0.1",
                heartbeat_source=H.node_address(1), fleet_id="f1",
                mesh_state_dir=trust.mesh_dir(root, "n1"))
    relay = Relay(H.node_address(1), f.node_api_port, vh.port)
    state = {"f": f, "vh": vh, "relay": relay, "root": root}
    try:
        st, body, _ = vh.call("POST", "/v1/images", {"name": "test", "path": manifest,
                                                     "sha256": sha256(manifest)})
        assert st == 201, body
        f.start()
        f.wait(lambda: f.node("n1")["state"] == "alive" and f.node("n1")["inventory"] == "ok",
               timeout=20, what="vmhost's heartbeats and inventory")
        _, plan = f.json("POST", "/v1/plans", {"entity": "verify-it", "memory_mib": 256,
                                                "vcpus": 1, "image": "test",
                                                "vault_disk_mib": 64}, expect=201)
        _, vm = f.confirm_vm(plan["id"])
        state["vm"] = vm["id"]
        yield state
    finally:
        relay.close()
        vh.stop()
        f.close()
        destroy_all(root)
        remove_root(root)


def vm_of(f, vm_id):
    return f.json("GET", "/v1/vms/" + vm_id, expect=200)[1]


def test_verify_round_trip(fleet):
    f, vm_id = fleet["f"], fleet["vm"]
    # the agent's first report (a full verification at start) reaches fleetd
    v = f.wait(lambda: (lambda v: v if v["integrity"]["status"] == "ok" else None)(vm_of(f, vm_id)),
               timeout=150, what="the agent's first report in fleetd's view")
    assert v["status"] == "active" and v["lifecycle"] == "active"
    t0 = time.time()
    _, op = f.verb(vm_id, "verify", expect=202)  # an operation, followed to its end
    assert op["state"] == "succeeded", op
    ans = op["result"]
    rid = ans["request_id"]
    assert ans["vm_id"] == vm_id and ans["node_id"] == "n1" and rid
    assert ans["vm"]["verification"]["requested"]["request_id"] == rid
    assert ans["vm"]["verification"]["requested"]["by"] == "token:tester"
    entries = f.audit("vm.verify")
    assert len(entries) == 1
    assert entries[0]["actor"] == "token:tester" and entries[0]["subject"] == vm_id
    assert entries[0]["detail"] == {"node_id": "n1", "outcome": "requested", "request_id": rid}

    # the agent verifies and answers with the request id; vmhost keeps that report apart from
    # the scheduled ones, and fleetd polls the node until it has it
    v = f.wait(lambda: (lambda v: v if not v["verification"]["pending"] else None)(vm_of(f, vm_id)),
               timeout=60, what="the requested verification's report in fleetd's view")
    print("verify round trip (request to fleetd's view): %.1f s" % (time.time() - t0))
    assert v["verification"]["requested"]["request_id"] == rid
    assert v["integrity"]["status"] == "ok"
    done = f.audit("vm.verified")
    assert len(done) == 1, done
    result = done[0]["detail"]["result"]
    assert result["trigger"] == "request" and result["request_id"] == rid
    assert result["mismatches"] == 0 and result["records"] >= 0
    assert done[0]["detail"]["requested_by"] == "token:tester"
    time.sleep(3)  # more inventory polls: the result is audited once
    assert len(f.audit("vm.verified")) == 1


def test_lost_suspend_answer_is_corrected_from_the_inventory(fleet):
    f, vm_id, relay = fleet["f"], fleet["vm"], fleet["relay"]
    f.wait(lambda: vm_of(f, vm_id)["integrity"]["status"] == "ok", timeout=150,
           what="the agent's first report")
    relay.hold, relay.hold_s = "/suspend", 3.0  # longer than node_api_timeout (2 s)
    try:
        st, op = f.verb(vm_id, "suspend")
    finally:
        relay.hold = None
    p = op["error"]
    assert st == 202 and op["state"] == "failed", op
    assert p["status"] == 504 and p["type"].endswith("/node-timeout"), op
    # the node did suspend it (a managed save under TCG may outlast fleetd's timeout)
    f.wait(lambda: relay.held, timeout=60, what="vmhost's answer to the held suspend")
    assert relay.held == [("/v1/vms/%s/suspend" % vm_id, 200)]
    v = f.wait(lambda: (lambda v: v if v["lifecycle"] == "suspended" else None)(vm_of(f, vm_id)),
               timeout=20, what="fleetd's record corrected from the node's inventory")
    assert v["lifecycle_unconfirmed"] is None
    fixes = [e for e in f.audit("vm.lifecycle") if e["detail"].get("source") == "inventory"]
    assert len(fixes) == 1, fixes
    assert fixes[0]["actor"] == "fleetd"
    assert fixes[0]["detail"]["was"] == "active" and fixes[0]["detail"]["lifecycle"] == "suspended"
    assert "suspend" in fixes[0]["detail"]["after"]
    text = f.request("GET", "/metrics")[2].decode()
    assert "totebox_fleetd_lifecycle_corrections_total 1" in text

    # verify needs a running agent: refused on a suspended VM, and later on an archived one
    n = len(f.audit("vm.verify"))
    _, p = f.json("POST", "/v1/vms/%s/verify" % vm_id, expect=409)
    assert p["type"].endswith("/wrong-lifecycle"), p
    _, op = f.verb(vm_id, "archive", expect=202)
    assert op["state"] == "succeeded" and op["result"]["lifecycle"] == "archived", op
    _, p = f.json("POST", "/v1/vms/%s/verify" % vm_id, expect=409)
    assert p["type"].endswith("/archived"), p
    f.json("POST", "/v1/vms/tbx-nobody-000000/verify", expect=404)
    assert len(f.audit("vm.verify")) == n  # refusals before any call change nothing
    assert vm_of(f, vm_id)["lifecycle"] == "archived"
