"""fleetd's dispatcher against node-API stubs on loopback: one node wedged (its API answers a
creation only after 5 s, fleetd's timeout is 3 s) beside a healthy one. The healthy node's
creation must reach it while the wedged node's call is still in flight: the stub of the healthy
node asks fleetd, as the creation arrives, whether the wedged node's call has returned yet."""
import http.server
import io
import json
import threading
import time

import test_fleetd_harness as H

PLAN = {"memory_mib": 1024, "vcpus": 1, "image": "base", "vault_disk_mib": 64}


class Stub(H.FakeNode):
    """A FakeNode whose POST /v1/vms first runs before_post(request) on the handler's thread; when
    that returns False the creation is neither done nor answered."""

    def __init__(self, address, port, node_id, before_post):
        self.before_post = before_post
        self.node_id = node_id
        self.vms = {}
        self.posts = []
        self.lock = threading.Lock()
        self.daemon_threads = True
        http.server.ThreadingHTTPServer.__init__(self, (address, port), StubHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


class StubHandler(H.FakeNodeHandler):
    def do_POST(self):
        orig = self.rfile
        if self.path == "/v1/vms":
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            if self.server.before_post(json.loads(raw)) is False:
                return  # no answer at all, nothing created
            self.rfile = io.BytesIO(raw)  # FakeNodeHandler reads the body again
        try:
            super().do_POST()
        except (BrokenPipeError, ConnectionResetError):
            pass  # fleetd gave up waiting: the wedged node's answer goes nowhere
        finally:
            self.rfile = orig


def test_wedged_node_delays_only_itself():
    f = H.Fleetd(nodes=2, settings={"node_api_timeout": "3s", "dispatch_backoff": "1s",
                                    "dispatch_attempts": "3"})
    events = []
    n1_called = threading.Event()
    seen = {}

    def wedged(req):
        events.append(("n1-received", req["vm_id"]))
        n1_called.set()
        time.sleep(5)  # answers after fleetd's 3 s timeout
        events.append(("n1-answered", req["vm_id"]))

    def healthy(req):
        events.append(("n2-received", req["vm_id"]))
        # fleetd waits for this answer, so what it shows now is before n2's outcome
        seen["a"] = f.json("GET", "/v1/vms/" + seen["a_id"], expect=200)[1]

    slow = Stub(H.node_address(1), f.node_api_port, "n1", wedged)
    fast = Stub(H.node_address(2), f.node_api_port, "n2", healthy)
    try:
        f.start()
        f.hb(1, avail=16000, digest=slow.digest())
        f.wait(lambda: f.node("n1")["state"] == "alive")
        _, plan_a = f.json("POST", "/v1/plans", dict(PLAN, entity="slow-e"), expect=201)
        assert plan_a["node_id"] == "n1"
        _, vm_a = f.confirm_vm(plan_a["id"])
        seen["a_id"] = vm_a["id"]
        assert n1_called.wait(10), "the wedged node never got its creation"
        # the wedged node's call is in flight: now a creation for the healthy node
        f.hb(2, avail=30000, digest=fast.digest())
        f.wait(lambda: f.node("n2")["state"] == "alive")
        _, plan_b = f.json("POST", "/v1/plans", dict(PLAN, entity="fast-e"), expect=201)
        assert plan_b["node_id"] == "n2"
        _, vm_b = f.confirm_vm(plan_b["id"])
        b = f.wait(lambda: (lambda v: v if v["status"] == "active" else None)(
            f.json("GET", "/v1/vms/" + vm_b["id"], expect=200)[1]), timeout=20,
            what="the healthy node's VM active")
        assert b["state"] == "running"
        # causality: n2 got its creation while fleetd still waited for n1's first call
        order = [e[0] for e in events]
        assert "n2-received" in order, events
        assert order.index("n2-received") < (order.index("n1-answered") if "n1-answered" in order
                                             else len(order)), events
        assert seen["a"]["status"] == "creating" and seen["a"]["reason"] is None, seen["a"]
        # and n1's call did end by the timeout, after that
        a = f.wait(lambda: (lambda v: v if v["reason"] else None)(
            f.json("GET", "/v1/vms/" + vm_a["id"], expect=200)[1]), timeout=20,
            what="the wedged node's call to time out")
        assert a["status"] == "creating" and "did not answer" in a["reason"], a
    finally:
        for s in (slow, fast):
            s.shutdown()
            s.server_close()
        f.close()
