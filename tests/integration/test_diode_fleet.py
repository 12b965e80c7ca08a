# ctest-labels: slow
"""The Diode with real daemons: a real fleetd, a real vmhost (qemu:///embed, TCG) booting the
offline test image with the real totebox-agent in two Toteboxes on one node. Records go in
with `fleetctl deposit` and come back with `fleetctl read`, which checks the hash and the
inclusion proof before it writes anything. The adversary: one Totebox's records asked for
through another's id, an unknown id, a suspended Totebox, a VM the node does not hold; an HTTP
relay between fleetd and vmhost that changes a record's bytes or its proof on the way (refused,
nothing written) and that swallows a deposit's answer (fleetd retries with the same deposit id:
one record); vmhost SIGKILLed mid-deposit (resumed from what the agent holds: one record); and
every limit (size, name, supersedes, page size) as a 4xx. About 60 s."""
import base64
import hashlib
import http.client
import http.server
import json
import os
import re
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import test_fleetd_harness as H  # noqa: E402
from test_fleetd_api import schema  # noqa: E402
from test_vmhost_harness import NodeRelay as Relay  # noqa: E402
from test_vmhost_harness import (VMHOST, FleetTrust, Vmhost, build_image, destroy_all,  # noqa: E402
                                 make_root, remove_root, sha256)


class DiodeRelayHandler(http.server.BaseHTTPRequestHandler):
    """Relays each call to vmhost, bytes as they are, unless told to flip a byte of a record
    (server.tamper = "body"), change its proof ("proof"), drop the answer to the next deposit
    after vmhost made it (server.drop_deposit), or hold deposits until an event is set
    (server.hold, server.held once one waits)."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def relay(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        hold = getattr(self.server, "hold", None)
        if hold is not None and self.command == "POST" and "/records" in self.path:
            self.server.held = True  # a deposit at the node's door, until the test opens it
            hold.wait(60)
        conn = http.client.HTTPConnection("127.0.0.1", self.server.target_port, timeout=300)
        conn.request(self.command, self.path, body=body,
                     headers={"Content-Type": self.headers.get("Content-Type") or
                              "application/json"})
        r = conn.getresponse()
        payload = r.read()
        record = r.getheader("Totebox-Record")
        conn.close()
        is_read = "/records/" in self.path and r.status == 200
        if self.command == "POST" and "/records" in self.path:
            self.server.deposits = getattr(self.server, "deposits", 0) + 1
            if getattr(self.server, "drop_deposit", 0):
                self.server.drop_deposit -= 1
                self.close_connection = True
                return  # vmhost sealed it; fleetd never hears
        tamper = getattr(self.server, "tamper", None)
        if is_read and tamper == "body" and payload:
            payload = bytes([payload[0] ^ 1]) + payload[1:]
        if is_read and tamper == "proof" and record:
            doc = json.loads(base64.b64decode(record))
            doc["sth"]["root"] = "%064x" % (int(doc["sth"]["root"], 16) ^ 1)
            record = base64.b64encode(json.dumps(doc).encode()).decode()
        self.send_response(r.status)
        self.send_header("Content-Type", r.getheader("Content-Type") or "application/json")
        if record:
            self.send_header("Totebox-Record", record)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = relay
    do_POST = relay


def make_vm(f, entity):
    _, plan = f.json("POST", "/v1/plans", {"entity": entity, "memory_mib": 256, "vcpus": 1,
                                            "image": "test", "vault_disk_mib": 64}, expect=201)
    _, vm = f.confirm_vm(plan["id"])
    return vm["id"]


@pytest.fixture(scope="module")
def fleet():
    if not os.access(VMHOST, os.X_OK):
        pytest.skip("by design: no vmhost binary in the build")
    root = make_root("tbx-diode-")
    manifest = build_image(os.path.join(root, "image"),
                           agent=os.path.join(H.BUILD, "agent", "totebox-agent"))
    f = H.Fleetd(nodes=1, settings={"heartbeat_interval": "2s", "suspect_after": "6s",
                                    "evict_after": "10s", "dispatch_backoff": "200ms", "node_api_timeout": "60s",
                                    "max_record_bytes": str(64 << 20)})
    trust = FleetTrust(nodes=("ctl", "n1"), fleet_id="f1", controller="ctl",
                       addresses={"ctl": "127.0.0.1", "n1": H.node_address(1)})
    trust.give_fleetd(f)
    vh = Vmhost(root, node_id="n1", hb_port=f.hb_port, fleetd_address="127.0.0.1",
                heartbeat_source=H.node_address(1), fleet_id="f1",
                mesh_state_dir=trust.mesh_dir(root, "n1"))
    relay = Relay(H.node_address(1), f.node_api_port, vh.port, handler=DiodeRelayHandler)
    relay.tamper, relay.drop_deposit, relay.deposits = None, 0, 0
    relay.hold, relay.held = None, False
    state = {"f": f, "vh": vh, "relay": relay, "root": root, "trust": trust}
    try:
        st, body, _ = vh.call("POST", "/v1/images", {"name": "test", "path": manifest,
                                                     "sha256": sha256(manifest)})
        assert st == 201, body
        f.start()
        f.wait(lambda: f.node("n1")["state"] == "alive" and f.node("n1")["inventory"] == "ok",
               timeout=20, what="vmhost's heartbeats and inventory")
        state["a"] = make_vm(f, "acme")
        state["b"] = make_vm(f, "beta")
        for vm_id in (state["a"], state["b"]):
            f.wait(lambda: (lambda v: v["integrity"]["status"] == "ok")(
                f.json("GET", "/v1/vms/" + vm_id, expect=200)[1]),
                timeout=180, what="the agent's first report of " + vm_id)
        yield state
    finally:
        relay.close()
        state["vh"].stop()
        f.close()
        destroy_all(root)
        remove_root(root)


def b2(data):
    return hashlib.blake2b(data, digest_size=32).hexdigest()


def put(fleet, name, data):
    path = os.path.join(fleet["root"], name.replace("/", "_"))
    with open(path, "wb") as f:
        f.write(data)
    return path


def test_deposit_list_read_and_correct(fleet):
    f, a = fleet["f"], fleet["a"]
    data = os.urandom(300 * 1024 + 5)
    r = f.ctl("--json", "deposit", a, put(fleet, "r1", data), "--name", "report (1).txt")
    receipt = json.loads(r.stdout)
    assert receipt["seq"] == 1 and receipt["path"] == "assets/00000001-report__1_.txt"
    assert receipt["blake2b_256"] == b2(data) and receipt["size"] == len(data)
    assert receipt["vm"] == a and receipt["sth"]["size"] >= 1
    fix = f.ctl("--json", "deposit", a, put(fleet, "r2", b"corrected\n"), "--name", "report.txt",
                "--supersedes", "1")
    assert json.loads(fix.stdout)["supersedes"] == 1
    page = f.json("GET", "/v1/vms/%s/records?limit=1" % a, expect=200)[1]
    assert [x["seq"] for x in page["records"]] == [1] and page["next_after"] == 1
    assert page["total"] == 2
    out = os.path.join(fleet["root"], "back.bin")
    r = f.ctl("read", a, "1", "--output", out)
    assert "verified" in r.stdout
    with open(out, "rb") as fh:
        assert fh.read() == data
    table = f.ctl("records", a).stdout
    assert "assets/00000002-report.txt" in table and b2(b"corrected\n") in table
    audit = f.audit("vm.deposit")
    assert [e["detail"]["seq"] for e in audit] == [1, 2]
    assert audit[0]["actor"] == "token:tester" and audit[0]["subject"] == a


def test_deposit_is_a_long_operation(fleet):
    """A deposit answers 202 with Location /v1/operations/ID once fleetd checked and spooled
    it; the operation ends with the receipt as its result, or with the agent's refusal as its
    error; fleetctl follows it (and with --no-wait prints the running operation)."""
    f, a = fleet["f"], fleet["a"]
    data = b"through an operation\n"
    st, done = f.deposit(a, "op.txt", data, blake2b_256=b2(data))  # follows Location
    assert st == 202 and done["state"] == "succeeded", done
    assert done["kind"] == "deposit" and done["vm_id"] == a, done
    assert done["resources"] == {"vm": "/v1/vms/" + a}, done
    schema("operation.schema.json").validate(done)
    receipt = done["result"]
    assert receipt["blake2b_256"] == b2(data) and receipt["path"].endswith("-op.txt"), receipt
    assert receipt["size"] == len(data) and receipt["sth"]["size"] >= receipt["seq"]
    # refused by the agent (no such record to supersede): the operation fails with its problem
    st, failed = f.deposit(a, "bad.txt", b"x", supersedes=999)
    assert st == 202 and failed["state"] == "failed" and failed["error"]["status"] == 400, failed
    assert "999" in failed["error"]["detail"], failed
    schema("operation.schema.json").validate(failed)
    total = f.json("GET", "/v1/vms/%s/records" % a, expect=200)[1]["total"]
    assert total == receipt["seq"], total  # nothing sealed for the refused one
    r = f.ctl("--no-wait", "deposit", a, put(fleet, "nw", b"no wait\n"), "--name", "nw.txt")
    assert "is running" in r.stdout and "fleetctl operations" in r.stdout, r.stdout
    op_id = r.stdout.split()[1]
    assert f.finish({"id": op_id, "kind": "deposit"}, timeout=120)["state"] == "succeeded"


def test_records_reach_the_named_totebox_only(fleet):
    f, a, b, vh = fleet["f"], fleet["a"], fleet["b"], fleet["vh"]
    before = f.json("GET", "/v1/vms/%s/records" % a, expect=200)[1]["total"]
    # B's vault is its own: nothing of A's is there, and a deposit into B stays in B
    assert f.json("GET", "/v1/vms/%s/records" % b, expect=200)[1]["total"] == 0
    st, doc = f.json("GET", "/v1/vms/%s/records/1" % b)
    assert st == 404 and doc["title"] == "not-found", doc
    f.ctl("deposit", b, put(fleet, "b1", b"beta only"), "--name", "b.txt")
    assert f.json("GET", "/v1/vms/%s/records" % a, expect=200)[1]["total"] == before
    assert f.json("GET", "/v1/vms/%s/records" % b, expect=200)[1]["total"] == 1
    # an unknown id, at fleetd and at the node; a VM this node does not hold
    assert f.json("GET", "/v1/vms/nope/records")[0] == 404
    st, doc, _ = vh.call("GET", "/v1/vms/nope/records")
    assert st == 404, doc
    st, doc, _ = vh.call("POST", "/v1/vms/%s-other/records?name=x" % a, b"x")
    assert st == 404, doc
    # only the controller may ask the node
    st, doc, _ = vh.call("GET", "/v1/vms/%s/records" % a, source=H.node_address(1))
    assert st == 403 and doc["title"] == "not-the-controller", doc
    # a suspended Totebox takes and gives nothing, at fleetd and at the node
    f.verb(b, "suspend", expect=202)
    st, doc = f.json("GET", "/v1/vms/%s/records" % b)
    assert st == 409 and doc["type"].endswith("/vm-not-active"), doc
    r = f.ctl("deposit", b, put(fleet, "b2", b"late"), check=False)
    assert r.returncode == 1 and "(409)" in r.stderr and "suspended" in r.stderr
    st, doc, _ = vh.call("GET", "/v1/vms/%s/records" % b)
    assert st == 409 and doc["title"] == "not-running", doc
    f.verb(b, "resume", expect=202)


def test_tampered_answers_are_refused_and_nothing_is_written(fleet):
    f, a, relay = fleet["f"], fleet["a"], fleet["relay"]
    out = os.path.join(fleet["root"], "tampered.bin")
    try:
        relay.tamper = "body"
        r = f.ctl("read", a, "1", "--output", out, check=False)
        assert r.returncode == 1 and "does not verify" in r.stderr, r.stderr
        assert "BLAKE2b-256" in r.stderr and "was changed" in r.stderr
        relay.tamper = "proof"
        r = f.ctl("read", a, "1", "--output", out, check=False)
        assert r.returncode == 1 and "does not verify" in r.stderr, r.stderr
    finally:
        relay.tamper = None
    assert not os.path.exists(out) and not os.path.exists(out + ".part")


def test_a_lost_answer_is_retried_into_one_record(fleet):
    f, a, relay = fleet["f"], fleet["a"], fleet["relay"]
    before = f.json("GET", "/v1/vms/%s/records" % a, expect=200)[1]["total"]
    relay.drop_deposit = 1
    seen = relay.deposits
    r = f.ctl("--json", "deposit", a, put(fleet, "lost", b"sealed once\n"), "--name", "once.txt")
    assert relay.deposits == seen + 2  # the answer was lost once; fleetd asked again
    receipt = json.loads(r.stdout)
    assert receipt["seq"] == before + 1
    assert f.json("GET", "/v1/vms/%s/records" % a, expect=200)[1]["total"] == before + 1
    # the operator's own retry with the printed deposit id: the same receipt again
    again = f.ctl("--json", "deposit", a, put(fleet, "lost", b"sealed once\n"), "--name",
                  "once.txt", "--deposit-id", receipt["deposit_id"])
    assert json.loads(again.stdout)["seq"] == receipt["seq"]
    other = f.ctl("deposit", a, put(fleet, "other", b"not the same\n"), "--deposit-id",
                  receipt["deposit_id"], check=False)
    assert other.returncode == 1 and "conflict" in other.stderr


def test_vmhost_killed_mid_deposit_resumes_into_one_record(fleet):
    """vmhost is SIGKILLed while it streams a deposit to the agent; the Totebox keeps running,
    fleetd gets no answer and asks again with the same deposit id once vmhost is back, and the
    agent resumes from what it holds: one record, verified on the way back."""
    f, a, old = fleet["f"], fleet["a"], fleet["vh"]
    before = f.json("GET", "/v1/vms/%s/records" % a, expect=200)[1]["total"]
    data = os.urandom(48 << 20)
    path = put(fleet, "killed", data)
    ctl = subprocess.Popen([H.FLEETCTL, "--json", "deposit", a, path, "--deposit-id", "kill-1"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=dict(os.environ, FLEETCTL_URL="http://127.0.0.1:%d" % f.api_port,
                                    FLEETCTL_TOKEN=f.token))
    f.wait(lambda: "deposit 'kill-1': the agent holds 0 of" in old.read_log(), timeout=60,
           what="vmhost streaming the deposit")
    time.sleep(0.5)
    old.proc.kill()
    old.proc.wait()
    old.log.close()
    fleet["vh"] = Vmhost(fleet["root"], node_id="n1", hb_port=f.hb_port,
                         fleetd_address="127.0.0.1", heartbeat_source=H.node_address(1),
                         fleet_id="f1", node_api_port=old.port,
                         mesh_state_dir=fleet["trust"].mesh_dir(fleet["root"], "n1"))
    out, err = ctl.communicate(timeout=300)
    assert ctl.returncode == 0, err
    receipt = json.loads(out)
    assert receipt["seq"] == before + 1 and receipt["blake2b_256"] == b2(data)
    resumed = re.findall(r"deposit 'kill-1': the agent holds (\d+) of", fleet["vh"].read_log())
    assert resumed and int(resumed[-1]) > 0, resumed  # resumed, not sent again from 0
    assert f.json("GET", "/v1/vms/%s/records" % a, expect=200)[1]["total"] == before + 1
    back = os.path.join(fleet["root"], "killed.back")
    f.ctl("read", a, str(receipt["seq"]), "--output", back)
    with open(back, "rb") as fh:
        assert fh.read() == data


def test_limits_are_clear_4xx(fleet):
    f, a = fleet["f"], fleet["a"]
    big = put(fleet, "big", b"\0" * ((64 << 20) + 1))
    r = f.ctl("deposit", a, big, check=False)
    assert r.returncode == 1 and "(413)" in r.stderr, r.stderr
    r = f.ctl("deposit", a, put(fleet, "n", b"x"), "--name", "n" * 201, check=False)
    assert r.returncode == 1 and "(400)" in r.stderr, r.stderr
    r = f.ctl("deposit", a, put(fleet, "n", b"x"), "--supersedes", "999", check=False)
    assert r.returncode == 1 and "(400)" in r.stderr and "999" in r.stderr, r.stderr
    st, doc = f.json("GET", "/v1/vms/%s/records?limit=101" % a)
    assert st == 400, doc
    st, h, _ = f.request("POST", "/v1/vms/%s/records?name=x&blake2b_256=%s" % (a, "0" * 64),
                         raw=b"abc", headers={"Content-Type": "application/octet-stream"})
    assert st == 422
    st, h, _ = f.request("POST", "/v1/vms/%s/records?name=x" % a, raw=b"abc", token="wrong",
                         headers={"Content-Type": "application/octet-stream"})
    assert st == 401


def test_fleetd_killed_mid_deposit_fails_its_operation_and_a_retry_seals_once(fleet):
    """fleetd is SIGKILLed while its deposit operation waits at the node: after the restart the
    operation is failed as interrupted (never left running), naming the retry; the node sealed
    the record meanwhile, and the operator's retry with the same deposit id gets that record
    again, not a second one."""
    import signal
    import threading
    f, a, relay = fleet["f"], fleet["a"], fleet["relay"]
    before = f.json("GET", "/v1/vms/%s/records" % a, expect=200)[1]["total"]
    data = b"sealed while fleetd was down\n"
    gate = threading.Event()
    relay.hold, relay.held = gate, False
    try:
        st, h, payload = f.request("POST", "/v1/vms/%s/records?name=down.txt&deposit_id=down-1" % a,
                                   raw=data, headers={"Content-Type": "application/octet-stream"})
        op = json.loads(payload)
        assert st == 202 and op["state"] == "running", (st, op)
        f.wait(lambda: relay.held, timeout=30, what="the deposit at the node")
        f.stop(sig=signal.SIGKILL)
    finally:
        relay.hold = None
        gate.set()  # the held call goes on: vmhost seals it, no fleetd hears the answer
    f.start()
    f.wait(lambda: f.node("n1")["state"] == "alive", timeout=30, what="n1 alive again")
    done = f.json("GET", "/v1/operations/" + op["id"], expect=200)[1]
    assert done["state"] == "failed" and done["error"]["status"] == 503, done
    assert "same deposit_id" in done["error"]["detail"], done
    f.wait(lambda: f.json("GET", "/v1/vms/" + a, expect=200)[1]["state"] == "running",
           timeout=30, what="the VM's state read again")
    st, again = f.deposit(a, "down.txt", data, deposit_id="down-1")
    assert st == 202 and again["state"] == "succeeded", again
    assert again["result"]["seq"] == before + 1 and again["result"]["blake2b_256"] == b2(data)
    assert f.json("GET", "/v1/vms/%s/records" % a, expect=200)[1]["total"] == before + 1
