"""Placement the operator steers, against a real fleetd over real UDP heartbeats and HTTP: a plan
may name a target node (the quote shows its verdict and figures beside the fleet's own choice; a
confirmation that would break the safety margin is refused with the figures), the role policy
puts a Totebox on an on-premises node before the cloud node, a failed VM can be retired (never
an active one), and If-Match guards what operators change (two operators, one wins)."""
import json
import os
import threading

import test_fleetd_harness as H
from test_fleetd_api import schema

CLOUD = {"id": "c1", "role": "cloud", "mesh_address": H.node_address(9)}
RELAY = {"id": "r1", "role": "relay", "mesh_address": H.node_address(10)}


def body(entity="alpha", mib=2048, node=None, disk=1024):
    b = {"entity": entity, "memory_mib": mib, "vcpus": 1, "image": "base", "vault_disk_mib": disk}
    if node:
        b["node"] = node
    return b


def beat(f, node_id, address, **kw):
    f.seq[node_id] = f.seq.get(node_id, 0) + 1
    f.send_raw(address, json.dumps(H.heartbeat(node_id, f.seq[node_id], **kw)).encode())


def fleet_with_roles(settings=None):
    """n1, n2 (role node), r1 (relay) and c1 (cloud), all alive."""
    f = H.Fleetd(nodes=2, settings=settings)
    f.write_roster(H.roster_doc(2, extra=(CLOUD, RELAY)))
    f.start()
    return f


def all_alive(f, figures):
    for node_id, kw in figures.items():
        addr = {"c1": CLOUD["mesh_address"], "r1": RELAY["mesh_address"]}.get(node_id)
        beat(f, node_id, addr or H.node_address(int(node_id[1:])), **kw)
    f.wait(lambda: all(f.node(n)["state"] == "alive" for n in figures), what="nodes alive")


def test_target_node_verdicts_and_margin_refusal():
    with fleet_with_roles() as f:
        all_alive(f, {"n1": {"avail": 3000}, "n2": {"avail": 9000}, "c1": {"avail": 30000}})
        plan_schema = schema("plan.schema.json")
        # no target: the fleet's choice, target null
        _, p = f.json("POST", "/v1/plans", body("free"), expect=201)
        plan_schema.validate(p)
        assert p["node_id"] == p["fleet_choice"] == "n2" and p["target"] is None
        f.json("DELETE", "/v1/plans/" + p["id"], expect=200)
        # a target that fits: the plan is for it, the fleet's choice shown beside it
        _, p = f.json("POST", "/v1/plans", body("alpha", 2048, node="c1"), expect=201)
        plan_schema.validate(p)
        assert p["node_id"] == "c1" and p["fleet_choice"] == "n2"
        t = p["target"]
        assert t["verdict"] == "fits" and t["node_id"] == "c1" and t["role"] == "cloud"
        assert (t["available_mib"], t["needed_mib"], t["margin_mib"], t["left_after_mib"],
                t["reserved_mib"], t["committed_mib"]) == (30000, 2048, 512, 27952, 0, 0)
        assert p["request"]["node"] == "c1"
        _, vm = f.confirm_vm(p["id"])
        assert vm["node_id"] == "c1"
        created = [e for e in f.audit("plan.created") if e["subject"] == p["id"]]
        assert created and created[0]["detail"]["override"] is True, created
        # a target that would break the margin: quoted with the figures, confirmation refused
        _, p = f.json("POST", "/v1/plans", body("beta", 2600, node="n1"), expect=201)
        plan_schema.validate(p)
        t = p["target"]
        assert p["node_id"] == "n1" and p["fleet_choice"] == "n2"
        assert t["verdict"] == "does-not-fit" and t["left_after_mib"] == 400, t
        assert "safety margin" in t["reason"]
        st, problem = f.json("POST", "/v1/plans/%s/confirm" % p["id"], expect=409)
        assert problem["type"].endswith("/plan-stale")
        fig = problem["figures"]
        assert (fig["node_id"], fig["available_mib"], fig["needed_mib"], fig["margin_mib"],
                fig["left_after_mib"], fig["verdict"]) == ("n1", 3000, 2600, 512, 400,
                                                           "does-not-fit"), fig
        assert "3000 MiB available" in problem["detail"] and "2600 needed" in problem["detail"]
        schema("problem.schema.json").validate(problem)
        assert not [v for v in f.json("GET", "/v1/vms")[1]["vms"] if v["entity"] == "beta"]
        # the margin also protects a target that fitted at quote time: a confirm in between
        # takes the room
        _, p1 = f.json("POST", "/v1/plans", body("gamma", 1500, node="n2"), expect=201)
        _, p2 = f.json("POST", "/v1/plans", body("delta", 7000, node="n2"), expect=201)
        assert p1["target"]["verdict"] == p2["target"]["verdict"] == "fits"
        f.json("POST", "/v1/plans/%s/confirm" % p1["id"], expect=202)
        st, problem = f.json("POST", "/v1/plans/%s/confirm" % p2["id"], expect=409)
        assert problem["figures"]["reserved_mib"] == 1500, problem
        assert problem["figures"]["left_after_mib"] == 9000 - 1500 - 7000


def test_target_node_unknown_or_malformed():
    with fleet_with_roles() as f:
        all_alive(f, {"n1": {"avail": 9000}})
        st, problem = f.json("POST", "/v1/plans", body(node="nowhere"), expect=422)
        assert problem["type"].endswith("/unknown-node") and "'nowhere'" in problem["detail"]
        st, problem = f.json("POST", "/v1/plans", body(node="N1!"), expect=422)
        assert "node" in problem["detail"]
        # a target in the roster but silent: quoted as not fitting, never confirmed
        _, p = f.json("POST", "/v1/plans", body(node="c1"), expect=201)
        assert p["target"]["verdict"] == "does-not-fit" and p["target"]["state"] == "unseen"
        assert p["fleet_choice"] == "n1"
        f.json("POST", "/v1/plans/%s/confirm" % p["id"], expect=409)
        assert f.json("GET", "/v1/vms")[1]["vms"] == []


def test_role_policy_prefers_onprem_then_cloud():
    with fleet_with_roles() as f:
        all_alive(f, {"n1": {"avail": 4000}, "r1": {"avail": 6000}, "c1": {"avail": 30000}})
        _, p = f.json("POST", "/v1/plans", body("alpha", 1024), expect=201)
        # r1 (relay, on-premises) has the most room of the on-premises tier; c1 has more still
        assert p["node_id"] == "r1", p
        by = {c["node_id"]: c for c in p["candidates"]}
        assert by["c1"]["verdict"] == "fits" and "placement_prefer_roles" in by["c1"]["reason"]
        assert by["c1"]["role"] == "cloud" and by["r1"]["chosen"]
        # on-premises nodes full: the cloud node takes it
        _, p = f.json("POST", "/v1/plans", body("beta", 8192), expect=201)
        assert p["node_id"] == "c1"
    with fleet_with_roles({"placement_prefer_roles": ""}) as f:
        all_alive(f, {"n1": {"avail": 4000}, "c1": {"avail": 30000}})
        _, p = f.json("POST", "/v1/plans", body("alpha", 1024), expect=201)
        assert p["node_id"] == "c1"  # no preference: most available RAM


def test_role_policy_is_checked_at_start():
    f = H.Fleetd(nodes=1, settings={"placement_prefer_roles": "onprem,cloud"})
    try:
        r = __import__("subprocess").run(
            [H.FLEETD] + sum([["--set", "%s=%s" % kv] for kv in f.settings.items()], []),
            capture_output=True, text=True, timeout=20)
        assert r.returncode == 2 and "unknown node role 'onprem'" in r.stderr, r.stderr
        r = __import__("subprocess").run(
            [H.FLEETD, "--check-config", "--set", "placement_prefer_roles=node,cloud+node"],
            capture_output=True, text=True, timeout=20)
        assert r.returncode == 2 and "named twice" in r.stderr, r.stderr
        r = __import__("subprocess").run(
            [H.FLEETD, "--check-config", "--set", "placement_prefer_roles=relay+node, cloud"],
            capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, r.stderr
    finally:
        f.close()


def test_retire_failed_vm_never_an_active_one():
    """A creation that failed (its node refuses every call) is retired: it stays listed with its
    audit trail, survives a restart, and frees its entity; an active VM is never retired."""
    f = H.Fleetd(nodes=2, settings={"dispatch_attempts": "1", "dispatch_backoff": "10ms"})
    f.start()
    try:
        node = H.FakeNode(H.node_address(2), f.node_api_port, "n2")
        f.hb(1, avail=9000)
        f.hb(2, avail=6000)
        f.wait(lambda: f.node("n2")["state"] == "alive")
        _, p = f.json("POST", "/v1/plans", body("alpha", node="n1"), expect=201)
        _, vm = f.confirm_vm(p["id"])
        failed = f.wait(lambda: (lambda v: v if v["status"] == "failed" else None)(
            f.json("GET", "/v1/vms/" + vm["id"], expect=200)[1]), what="creation failed")
        _, p = f.json("POST", "/v1/plans", body("beta", node="n2"), expect=201)
        _, active = f.confirm_vm(p["id"])
        f.wait(lambda: f.json("GET", "/v1/vms/" + active["id"])[1]["status"] == "active",
               what="beta active")
        # an active VM: refused, unchanged
        st, problem = f.json("POST", "/v1/vms/%s/retire" % active["id"], expect=409)
        assert problem["type"].endswith("/vm-not-failed") and "'active'" in problem["detail"]
        assert f.json("GET", "/v1/vms/" + active["id"])[1]["lifecycle"] == "active"
        # a body is refused as on every verb
        f.json("POST", "/v1/vms/%s/retire" % failed["id"], body={"force": True}, expect=400)
        # an operation as every verb is (202, Location), succeeded when answered: fleetd's own
        # record, no node is called
        st, h, payload = f.request("POST", "/v1/vms/%s/retire" % failed["id"])
        op = json.loads(payload)
        assert st == 202 and h["location"] == "/v1/operations/" + op["id"], (st, op)
        assert op["kind"] == "retire" and op["state"] == "succeeded", op
        schema("operation.schema.json").validate(op)
        r = f.json("GET", h["location"], expect=200)[1]["result"]
        assert r["lifecycle"] == "retired" and r["status"] == "failed" and r["reason"], r
        schema("vm-resource.schema.json").validate(r)
        st, again = f.verb(failed["id"], "retire", expect=202)  # idempotent
        assert again["result"]["lifecycle"] == "retired"
        entries = f.audit("vm.retired")
        assert [e["subject"] for e in entries] == [failed["id"]], entries
        # no other verb applies to it; it stays in the list and under ?lifecycle=retired
        f.json("POST", "/v1/vms/%s/resume" % failed["id"], expect=409)
        _, lst = f.json("GET", "/v1/vms?lifecycle=retired", expect=200)
        assert [v["id"] for v in lst["vms"]] == [failed["id"]]
        r = f.ctl("vms")
        assert "retired" in r.stdout
        text = f.request("GET", "/metrics")[2].decode()
        assert 'totebox_fleetd_vms_lifecycle{lifecycle="retired"} 1' in text
        f.stop()
        f.start()
        assert f.json("GET", "/v1/vms/" + failed["id"])[1]["lifecycle"] == "retired"
        # its entity may have a new VM
        f.hb(1, avail=9000)
        f.wait(lambda: f.node("n1")["state"] == "alive")
        f.json("POST", "/v1/plans", body("alpha"), expect=201)
        node.shutdown()
        node.server_close()
    finally:
        f.close()


def test_fleetctl_plan_node_list_and_retire():
    f = H.Fleetd(nodes=2, settings={"dispatch_attempts": "1", "dispatch_backoff": "10ms"})
    f.start()
    try:
        f.hb(1, avail=3000)
        f.hb(2, avail=9000)
        f.wait(lambda: f.node("n2")["state"] == "alive")
        args = ["plan", "--entity", "alpha", "--memory", "2600", "--vcpus", "1", "--image",
                "base", "--disk", "64", "--yes"]
        r = f.ctl(*args, "--node", "n1", check=False)
        assert r.returncode == 1, r
        assert "target node 'n1' does not fit" in r.stderr
        assert "target node 'n1' (node): does-not-fit" in r.stdout, r.stdout
        assert "left after 400 MiB" in r.stdout and "the fleet's own choice (CHOSEN above): n2" in r.stdout
        assert "target node: n1" in r.stdout
        r = f.ctl("plan", "list")
        assert r.stdout.count("alpha") == 1 and "open" in r.stdout, r.stdout
        # filters as docs/fleetd.md writes them (they were refused as arguments)
        r = f.ctl("plan", "list", "state=open")
        assert r.returncode == 0 and r.stdout.count("alpha") == 1, r.stdout + r.stderr
        r = f.ctl("plan", "list", "state=confirmed")
        assert r.returncode == 0 and "alpha" not in r.stdout, r.stdout + r.stderr
        r = f.ctl("plan", "list", "some-plan-id", check=False)
        assert r.returncode == 2 and "takes filters only" in r.stderr, r.stderr
        # fits: confirmed, and fleetctl follows the creation, which fails (no node API)
        r = f.ctl(*args[:4], "1024", *args[5:], "--node", "n1", check=False)
        vm_id = f.json("GET", "/v1/vms")[1]["vms"][0]["id"]
        assert r.returncode == 1 and "VM '%s' recorded" % vm_id in r.stdout, r
        assert "did not create VM '%s'" % vm_id in r.stderr, r.stderr
        assert f.json("GET", "/v1/vms/" + vm_id)[1]["status"] == "failed"
        r = f.ctl("operations")
        assert "create" in r.stdout and "failed" in r.stdout and vm_id in r.stdout, r.stdout
        r = f.ctl("retire", vm_id)
        assert "is now 'retired'" in r.stdout
        r = f.ctl("plan", "--entity", "x", "--node", "ghost", "--memory", "64", "--vcpus", "1",
                  "--image", "b", "--disk", "16", "--yes", check=False)
        assert r.returncode == 1 and "ghost" in r.stderr
    finally:
        f.close()


def active_vm(f, node, entity="alpha"):
    _, p = f.json("POST", "/v1/plans", body(entity, 256, node=node), expect=201)
    _, vm = f.confirm_vm(p["id"])
    f.wait(lambda: f.json("GET", "/v1/vms/" + vm["id"])[1]["status"] == "active",
           what=entity + " active")
    return vm["id"]


class OneNode:
    """fleetd with n1 alive and its fake node API."""

    def __enter__(self):
        self.f = H.Fleetd(nodes=1)
        self.f.start()
        self.node = H.FakeNode(H.node_address(1), self.f.node_api_port, "n1")
        self.f.hb(1, avail=9000)
        self.f.wait(lambda: self.f.node("n1")["state"] == "alive")
        return self.f

    def __exit__(self, *exc):
        self.node.shutdown()
        self.node.server_close()
        self.f.close()


def get_tag(f, path):
    st, h, payload = f.request("GET", path)
    assert st == 200 and h["etag"].startswith('"'), (st, h)
    return h["etag"], json.loads(payload)


def test_if_match_lost_update_refused():
    """Operator A suspends; operator B, who read the VM while it was active, archives with
    If-Match: 412 with the current ETag (without it, archive from suspended would have run)."""
    with OneNode() as f:
        vm_id = active_vm(f, "n1")
        path = "/v1/vms/" + vm_id
        tag, _ = get_tag(f, path)
        assert get_tag(f, path)[0] == tag  # stable while nothing changes
        f.hb(1, avail=8000)  # soft state moves; the revision does not
        assert get_tag(f, path)[0] == tag
        st, h, payload = f.request("POST", path + "/suspend", headers={"If-Match": tag})
        assert st == 202, payload
        assert f.finish(json.loads(payload))["state"] == "succeeded"
        new_tag = get_tag(f, path)[0]
        assert new_tag != tag
        st, h, payload = f.request("POST", path + "/archive", headers={"If-Match": tag})
        problem = json.loads(payload)
        assert st == 412 and problem["type"].endswith("/precondition-failed"), problem
        assert problem["etag"] == new_tag and "'suspended'" in problem["detail"]
        schema("problem.schema.json").validate(problem)
        assert f.json("GET", path)[1]["lifecycle"] == "suspended"  # nothing changed
        # weak tags never match; a list of tags or * does
        st, _, _ = f.request("POST", path + "/resume", headers={"If-Match": "W/" + new_tag})
        assert st == 412
        st, _, payload = f.request("POST", path + "/resume",
                                   headers={"If-Match": '"0000", %s' % new_tag})
        assert st == 202 and f.finish(json.loads(payload))["state"] == "succeeded"
        st, _, payload = f.request("POST", path + "/suspend", headers={"If-Match": "*"})
        assert st == 202 and f.finish(json.loads(payload))["state"] == "succeeded"
        # a confirm repeated with the revision it was confirmed from (a lost answer): the same
        # operation, not 412
        _, p = f.json("POST", "/v1/plans", body("gamma", 256), expect=201)
        otag, _ = get_tag(f, "/v1/plans/" + p["id"])
        st, _, first = f.request("POST", "/v1/plans/%s/confirm" % p["id"],
                                 headers={"If-Match": otag})
        st2, _, again = f.request("POST", "/v1/plans/%s/confirm" % p["id"],
                                  headers={"If-Match": otag})
        assert st == st2 == 202 and json.loads(first)["id"] == json.loads(again)["id"]
        # plans: DELETE and confirm with a stale revision
        _, p = f.json("POST", "/v1/plans", body("beta"), expect=201)
        ptag, _ = get_tag(f, "/v1/plans/" + p["id"])
        st, h, _ = f.request("DELETE", "/v1/plans/" + p["id"], headers={"If-Match": ptag})
        assert st == 200 and h["etag"] != ptag
        st, _, payload = f.request("POST", "/v1/plans/%s/confirm" % p["id"],
                                   headers={"If-Match": ptag})
        assert st == 412, payload
        # If-None-Match on lists: 304 until the list changes
        st, h, _ = f.request("GET", "/v1/vms")
        st2, _, body304 = f.request("GET", "/v1/vms", headers={"If-None-Match": h["etag"]})
        assert st2 == 304 and body304 == b""
        st, h, _ = f.request("GET", "/v1/plans")
        st2, _, _ = f.request("GET", "/v1/plans", headers={"If-None-Match": h["etag"]})
        assert st2 == 304


def test_if_match_two_operators_one_wins():
    """Both operators read one revision and act at once (suspend and archive, over and over):
    exactly one verb runs each round, the other gets 412; the VM's history shows only winners."""
    with OneNode() as f:
        rounds = 0
        for k in range(6):
            vm_id = active_vm(f, "n1", "race%d" % k)
            path = "/v1/vms/" + vm_id
            tag, _ = get_tag(f, path)
            barrier = threading.Barrier(2)
            out, docs = {}, {}

            def act(verb):
                barrier.wait()
                st, _, payload = f.request("POST", path + "/" + verb, headers={"If-Match": tag})
                out[verb] = st
                docs[verb] = json.loads(payload)
            ts = [threading.Thread(target=act, args=(v,)) for v in ("suspend", "archive")]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            assert sorted(out.values()) == [202, 412], out
            winner = [v for v, st in out.items() if st == 202][0]
            assert f.finish(docs[winner])["state"] == "succeeded"
            lc = f.json("GET", path)[1]["lifecycle"]
            assert lc == {"suspend": "suspended", "archive": "archived"}[winner], (out, lc)
            changes = [e for e in f.audit("vm.lifecycle") if e["subject"] == vm_id]
            assert [e["detail"]["verb"] for e in changes] == [winner], changes
            rounds += 1
        assert rounds == 6


def beat_disk(f, i, disk, seq=None, **kw):
    f.seq["n%d" % i] = seq or f.seq.get("n%d" % i, 0) + 1
    doc = H.heartbeat("n%d" % i, f.seq["n%d" % i], **kw)
    doc["disk_free_mib"] = disk
    schema("heartbeat.schema.json").validate(doc)
    f.send_raw(H.node_address(i), json.dumps(doc).encode())


def test_disk_space_checked_with_margin_and_reservations():
    """n1 has the most RAM but too little room for the vault disk and the copy-on-write
    allowance; n2 has room for exactly one such VM above the disk margin: the second confirm is
    refused by the disk reserved for the first, with the figures."""
    f = H.Fleetd(nodes=3, settings={"disk_cow_allowance_mib": "512", "disk_margin_mib": "1024"})
    f.start()
    try:
        beat_disk(f, 1, 2000, avail=30000)   # 2000 - (1024 + 512) = 464 < 1024
        beat_disk(f, 2, 4000, avail=9000)    # 4000 - 1536 = 2464: one fits, two do not
        f.hb(3, avail=4000)                  # reports no disk: not checked
        f.wait(lambda: all(f.node("n%d" % i)["state"] == "alive" for i in (1, 2, 3)))
        _, p = f.json("POST", "/v1/plans", body("alpha", 1024, disk=1024), expect=201)
        schema("plan.schema.json").validate(p)
        by = {c["node_id"]: c for c in p["candidates"]}
        assert p["node_id"] == "n2", p
        assert by["n1"]["verdict"] == "refused" and "not enough disk" in by["n1"]["reason"]
        assert by["n1"]["disk_free_mib"] == 2000 and by["n3"]["disk_free_mib"] is None
        # the target n1: refused with the disk figures
        _, t = f.json("POST", "/v1/plans", body("beta", 1024, node="n1", disk=1024), expect=201)
        fig = t["target"]
        assert fig["verdict"] == "does-not-fit", fig
        assert (fig["disk_free_mib"], fig["disk_needed_mib"], fig["disk_margin_mib"],
                fig["disk_left_after_mib"]) == (2000, 1536, 1024, 464), fig
        st, problem = f.json("POST", "/v1/plans/%s/confirm" % t["id"], expect=409)
        assert problem["figures"]["disk_left_after_mib"] == 464
        # two quotes on n2, both fit alone; the first confirm reserves its disk
        _, q = f.json("POST", "/v1/plans", body("gamma", 1024, node="n2", disk=1024), expect=201)
        assert q["target"]["verdict"] == "fits"
        f.json("POST", "/v1/plans/%s/confirm" % p["id"], expect=202)
        st, problem = f.json("POST", "/v1/plans/%s/confirm" % q["id"], expect=409)
        fig = problem["figures"]
        assert (fig["disk_reserved_mib"], fig["disk_free_mib"], fig["disk_left_after_mib"]) == \
            (1536, 4000 - 1536, 4000 - 1536 - 1536), fig
        assert "not enough disk" in problem["detail"]
        # the node view shows the room and what is promised of it
        n2 = f.node("n2")
        assert (n2["disk_free_mib"], n2["disk_reserved_mib"]) == (4000, 1536), n2
        schema("node.schema.json").validate(n2)
        assert f.node("n3")["disk_free_mib"] is None
        # a bad value is dropped like any malformed heartbeat: only the good one after it counts
        before = f.node("n1")["heartbeats"]
        f.send_raw(H.node_address(1), json.dumps(dict(H.heartbeat("n1", 999), disk_free_mib=-5))
                   .encode())
        beat_disk(f, 1, 2000, avail=30000, seq=1000)
        f.wait(lambda: f.node("n1")["heartbeats"] > before, what="the good heartbeat")
        assert f.node("n1")["heartbeats"] == before + 1
    finally:
        f.close()
