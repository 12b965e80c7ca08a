"""Long operations against a real fleetd: confirm and the VM verbs answer 202 with Location
/v1/operations/{id}; the operation goes running -> succeeded (result: the VM) or failed (error:
a problem document); operations are durable: a creation whose node was silent when fleetd was
killed (kill -9) completes after the restart, and a verb call cut short by it is settled as
interrupted, never left running. Lists are paginated."""
import json
import signal
import socket
import time

import test_fleetd_harness as H
from test_fleetd_api import schema


def body(entity, mib=256):
    return {"entity": entity, "memory_mib": mib, "vcpus": 1, "image": "base",
            "vault_disk_mib": 64}


def accepted(f, method, path):
    st, h, payload = f.request(method, path)
    doc = json.loads(payload)
    assert st == 202, (st, doc)
    assert h["location"] == "/v1/operations/" + doc["id"], h
    schema("operation.schema.json").validate(doc)
    return doc


def op(f, op_id):
    _, doc = f.json("GET", "/v1/operations/" + op_id, expect=200)
    schema("operation.schema.json").validate(doc)
    return doc


def until_done(f, op_id, timeout=20):
    return f.wait(lambda: (lambda d: d if d["state"] != "running" else None)(op(f, op_id)),
                  timeout=timeout, what="operation " + op_id)


class Silent:
    """A node API that accepts connections and never answers (a node wedged mid-call)."""

    def __init__(self, address, port):
        self.s = socket.socket()
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.s.bind((address, port))
        self.s.listen(16)

    def close(self):
        self.s.close()


def alive(f, *nodes):
    for i in nodes:
        f.hb(i, avail=9000)
    f.wait(lambda: all(f.node("n%d" % i)["state"] == "alive" for i in nodes), what="alive")


def test_confirm_and_verbs_are_operations():
    f = H.Fleetd(nodes=2, settings={"dispatch_attempts": "1", "dispatch_backoff": "10ms"})
    f.start()
    node = H.FakeNode(H.node_address(1), f.node_api_port, "n1")
    try:
        alive(f, 1, 2)
        _, p = f.json("POST", "/v1/plans", dict(body("alpha"), node="n1"), expect=201)
        o = accepted(f, "POST", "/v1/plans/%s/confirm" % p["id"])
        assert o["kind"] == "create" and o["plan_id"] == p["id"] and o["actor"] == "token:tester"
        assert o["resources"]["vm"] == "/v1/vms/" + o["vm_id"]
        done = until_done(f, o["id"])
        assert done["state"] == "succeeded" and done["progress"] == 100 and done["error"] is None
        assert done["result"]["status"] == "active" and done["result"]["id"] == o["vm_id"]
        assert done["updated_ms"] >= done["created_ms"]
        # a repeated confirm names the same operation
        assert accepted(f, "POST", "/v1/plans/%s/confirm" % p["id"])["id"] == o["id"]
        vm_id = o["vm_id"]
        s = accepted(f, "POST", "/v1/vms/%s/suspend" % vm_id)
        assert s["kind"] == "suspend" and s["plan_id"] is None
        s = until_done(f, s["id"])
        assert s["state"] == "succeeded" and s["result"]["lifecycle"] == "suspended", s
        # refusals that need no node call are answered at once, no operation
        st, problem = f.json("POST", "/v1/vms/%s/suspend" % vm_id, expect=409)
        assert problem["type"].endswith("/wrong-lifecycle")
        # a failed call: the operation fails with the problem; the node is down
        node.shutdown()
        node.server_close()
        r = accepted(f, "POST", "/v1/vms/%s/resume" % vm_id)
        r = until_done(f, r["id"])
        assert r["state"] == "failed" and r["result"] is None, r
        assert r["error"]["status"] in (502, 504) and "resume" in r["error"]["detail"], r
        schema("problem.schema.json").validate(r["error"])
        # a creation that fails: the operation says why
        _, p = f.json("POST", "/v1/plans", dict(body("beta"), node="n2"), expect=201)
        c = until_done(f, accepted(f, "POST", "/v1/plans/%s/confirm" % p["id"])["id"])
        assert c["state"] == "failed" and c["error"]["type"].endswith("/creation-failed"), c
        # the list: oldest first, filters, pages
        _, lst = f.json("GET", "/v1/operations", expect=200)
        assert [x["id"] for x in lst["operations"]] == [o["id"], s["id"], r["id"], c["id"]]
        assert lst["next_after"] is None
        _, page = f.json("GET", "/v1/operations?limit=2", expect=200)
        assert [x["id"] for x in page["operations"]] == [o["id"], s["id"]]
        _, page2 = f.json("GET", "/v1/operations?limit=2&after=" + page["next_after"],
                          expect=200)
        assert [x["id"] for x in page2["operations"]] == [r["id"], c["id"]]
        _, failed = f.json("GET", "/v1/operations?state=failed", expect=200)
        assert [x["id"] for x in failed["operations"]] == [r["id"], c["id"]]
        f.json("GET", "/v1/operations?state=done", expect=400)
        f.json("GET", "/v1/operations?limit=0", expect=400)
        f.json("GET", "/v1/operations/xyz", expect=400)
        st, nf = f.json("GET", "/v1/operations/" + "0" * 32, expect=404)
        assert nf["type"].endswith("/unknown-operation")
        f.json("DELETE", "/v1/operations/" + o["id"], expect=405)
    finally:
        f.close()


def test_operations_survive_kill_9():
    """kill -9 with a creation whose node never answers and a verb call in flight: after the
    restart the creation completes once the node answers, and the verb is settled as
    interrupted (its lifecycle was not recorded), neither is left running."""
    f = H.Fleetd(nodes=2, settings={"dispatch_backoff": "100ms", "dispatch_backoff_max": "200ms",
                                    "node_api_timeout": "3s"})
    f.start()
    n2 = H.FakeNode(H.node_address(2), f.node_api_port, "n2")
    silent = Silent(H.node_address(1), f.node_api_port)
    try:
        alive(f, 1, 2)
        _, p = f.json("POST", "/v1/plans", dict(body("alpha"), node="n1"), expect=201)
        create = accepted(f, "POST", "/v1/plans/%s/confirm" % p["id"])
        _, p2 = f.json("POST", "/v1/plans", dict(body("beta"), node="n2"), expect=201)
        vm2 = until_done(f, accepted(f, "POST", "/v1/plans/%s/confirm" % p2["id"])["id"])
        assert vm2["state"] == "succeeded"
        n2.shutdown()
        n2.server_close()
        silent2 = Silent(H.node_address(2), f.node_api_port)  # n2 wedges
        verb = accepted(f, "POST", "/v1/vms/%s/archive" % vm2["vm_id"])
        assert op(f, create["id"])["state"] == "running"
        assert op(f, verb["id"])["state"] == "running"
        time.sleep(0.3)
        f.stop(sig=signal.SIGKILL)
        silent.close()
        silent2.close()
        node1 = H.FakeNode(H.node_address(1), f.node_api_port, "n1")
        f.start()
        alive(f, 1, 2)
        v = op(f, verb["id"])
        assert v["state"] == "failed" and v["error"]["type"].endswith("/interrupted"), v
        assert "restarted" in v["error"]["detail"]
        c = until_done(f, create["id"])
        assert c["state"] == "succeeded" and c["result"]["node_id"] == "n1", c
        assert [x for x in node1.posts if x[0] == create["vm_id"]]
        _, running = f.json("GET", "/v1/operations?state=running", expect=200)
        assert running["operations"] == []
        assert "cut short by a restart" in f.read_log()
        node1.shutdown()
        node1.server_close()
    finally:
        silent.close()
        f.close()


def test_fleetctl_follows_operations():
    """fleetctl waits for the operation by default: the creation's end and the verb's outcome are
    what it prints and what its exit status says; --no-wait returns the running operation."""
    f = H.Fleetd(nodes=1)
    f.start()
    node = H.FakeNode(H.node_address(1), f.node_api_port, "n1")
    try:
        alive(f, 1)
        r = f.ctl("plan", "--entity", "alpha", "--memory", "256", "--vcpus", "1", "--image",
                  "base", "--disk", "64", "--yes")
        assert "is active on node 'n1'" in r.stdout, r.stdout
        vm_id = f.json("GET", "/v1/vms")[1]["vms"][0]["id"]
        assert "VM '%s' is now 'suspended'" % vm_id in f.ctl("suspend", vm_id).stdout
        done = json.loads(f.ctl("--json", "resume", vm_id).stdout)
        assert done["id"] == vm_id and done["lifecycle"] == "active"
        op = json.loads(f.ctl("--json", "--no-wait", "suspend", vm_id).stdout)
        assert op["kind"] == "suspend" and op["state"] in ("running", "succeeded"), op
        assert until_done(f, op["id"])["state"] == "succeeded"
        node.shutdown()
        node.server_close()
        r = f.ctl("resume", vm_id, check=False)  # the node is gone: the operation fails
        assert r.returncode == 1 and "resume" in r.stderr, r
    finally:
        f.close()
