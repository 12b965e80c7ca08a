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
        _, vm = f.json("POST", "/v1/plans/%s/confirm" % p["id"], expect=201)
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
        f.json("POST", "/v1/plans/%s/confirm" % p1["id"], expect=201)
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
    finally:
        f.close()
