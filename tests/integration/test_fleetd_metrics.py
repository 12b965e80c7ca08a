"""fleetd's /metrics beside a real fleet of synthetic nodes: per node state, heartbeat age,
memory and placement headroom; per VM integrity, verification age and misplaced; node state
changes with from/to (an eviction played by a node that falls silent); REST requests by route
pattern and code, with bounded cardinality against a scan of random paths; build_info; and
promtool check metrics on the whole exposition. Also GET /v1/nodes/{id}/history, the ring of
samples the panel charts."""
import json
import os
import re
import subprocess
import time
import uuid

import pytest

import harness
import test_fleetd_harness as H

PROMTOOL = "/usr/local/libexec/totebox/promtool"
MIB = 1048576


def scrape(f):
    st, _, body = f.request("GET", "/metrics")
    assert st == 200
    return body.decode()


def series(text, name):
    """{labels-string: value} of one metric name."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^%s(\{.*\})? (\S+)$" % re.escape(name), line)
        if m:
            out[m.group(1) or ""] = float(m.group(2))
    return out


def promtool_check(text):
    assert os.access(PROMTOOL, os.X_OK), "promtool missing: scripts/install-deps.sh installs it"
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), r


def test_metrics_per_node_per_vm_requests_and_promtool():
    settings = {"heartbeat_interval": "500ms", "suspect_after": "1s", "evict_after": "2s",
                "safety_margin_mib": "512"}
    with H.Fleetd(nodes=3, settings=settings) as f:
        for i in (1, 2, 3):
            f.hb(i, avail=8000 + i * 1000, total=16384, committed=1024, interval=500)
        f.wait(lambda: all(f.node("n%d" % i)["state"] == "alive" for i in (1, 2, 3)))
        _, plan = f.json("POST", "/v1/plans", {"entity": "acme", "memory_mib": 1024, "vcpus": 1,
                                                "image": "base", "vault_disk_mib": 64}, expect=201)
        f.confirm_vm(plan["id"])
        # n1 falls silent and is evicted; n2 and n3 keep beating
        deadline = time.time() + 10
        while time.time() < deadline and f.node("n1")["state"] != "evicted":
            f.hb(2, avail=10000, total=16384, committed=1024, interval=500)
            f.hb(3, avail=11000, total=16384, committed=1024, interval=500)
            time.sleep(0.3)
        assert f.node("n1")["state"] == "evicted"
        for i in range(3):
            f.request("GET", "/v1/nodes/n%d" % (i + 1))
        for _ in range(40):  # a scan of random paths and ids: no new label values
            f.request("GET", "/v1/nodes/" + uuid.uuid4().hex[:12])
            f.request("GET", "/scan/" + uuid.uuid4().hex)
        f.request("GET", "/v1/nodes", token="wrong")
        text = scrape(f)
        promtool_check(text)

        build = series(text, "totebox_fleetd_build_info")
        assert len(build) == 1 and list(build.values()) == [1.0] and 'version="' in next(iter(build))

        state = series(text, "totebox_fleetd_node_state")
        assert state['{node="n1",state="evicted"}'] == 1 and state['{node="n1",state="alive"}'] == 0
        assert state['{node="n3",state="alive"}'] == 1 and state['{node="ctl",state="unseen"}'] == 1
        assert sum(v for k, v in state.items() if 'node="n2"' in k) == 1

        age = series(text, "totebox_fleetd_node_heartbeat_age_seconds")
        assert age['{node="n1"}'] >= 2 and age['{node="n3"}'] < 2 and '{node="ctl"}' not in age
        assert series(text, "totebox_fleetd_node_memory_total_bytes")['{node="n3"}'] == 16384 * MIB
        assert series(text, "totebox_fleetd_node_memory_available_bytes")['{node="n3"}'] == 11000 * MIB
        assert series(text, "totebox_fleetd_node_memory_committed_bytes")['{node="n3"}'] == 1024 * MIB
        # headroom: min(available, total - committed) - reserved - margin
        head = series(text, "totebox_fleetd_node_placement_headroom_bytes")
        n3 = f.node("n3")
        assert head['{node="n3"}'] == (n3["available_mib"] - 512) * MIB

        changes = series(text, "totebox_fleetd_node_state_changes_total")
        assert changes['{from="unseen",to="alive"}'] == 3
        assert changes['{from="suspect",to="evicted"}'] + changes['{from="alive",to="evicted"}'] >= 1
        assert series(text, "totebox_fleetd_node_evictions_total")[""] >= 1
        assert len(changes) == 20  # every from != to pair, no more

        vm_id = json.loads(f.request("GET", "/v1/vms")[2])["vms"][0]["id"]
        integ = series(text, "totebox_fleetd_vm_integrity")
        node = json.loads(f.request("GET", "/v1/vms")[2])["vms"][0]["node_id"]
        assert integ['{vm="%s",node="%s",state="unknown"}' % (vm_id, node)] == 1
        assert integ['{vm="%s",node="%s",state="mismatch"}' % (vm_id, node)] == 0
        assert series(text, "totebox_fleetd_vm_misplaced")['{vm="%s",node="%s"}' % (vm_id, node)] == 0

        req = series(text, "totebox_fleetd_http_requests_total")
        assert req['{method="GET",route="/v1/nodes/{id}",code="200"}'] >= 3
        assert req['{method="GET",route="/v1/nodes/{id}",code="404"}'] == 40
        assert req['{method="other",route="none",code="404"}'] == 40
        assert req['{method="GET",route="/v1/nodes",code="401"}'] == 1
        assert req['{method="POST",route="/v1/plans/{id}/confirm",code="202"}'] == 1
        assert all(re.fullmatch(r'\{method="[A-Za-z]+",route="(/[^"]*|none)",code="(\d{3}|other)"\}', k)
                   for k in req), req
        assert len(req) < 20  # 80 random paths made two series


def test_vm_series_integrity_verification_and_misplaced():
    """A VM on n1 whose vault reports a mismatch and a full verification, then a copy of it
    reported by n2 (the pin-copy attack): the VM's series say mismatch, the verification's age,
    and misplaced 1, all under its pinned node."""
    f = H.Fleetd(nodes=2, settings={"dispatch_backoff": "50ms"})
    n1 = H.FakeNode(H.node_address(1), f.node_api_port, "n1")
    n2 = H.FakeNode(H.node_address(2), f.node_api_port, "n2")
    try:
        f.start()
        f.hb(1, avail=16000, **n1.figures())
        f.hb(2, avail=8000, **n2.figures())
        f.wait(lambda: f.node("n1")["state"] == "alive" and f.node("n2")["state"] == "alive")
        _, plan = f.json("POST", "/v1/plans", {"entity": "acme", "memory_mib": 1024, "vcpus": 1,
                                                "image": "base", "vault_disk_mib": 64}, expect=201)
        _, vm = f.confirm_vm(plan["id"])
        assert vm["node_id"] == "n1"
        f.wait(lambda: f.json("GET", "/v1/vms/" + vm["id"])[1]["status"] == "active")
        done_ms = int(time.time() * 1000) - 120000  # the verification ran two minutes ago
        with n1.lock:
            n1.vms[vm["id"]]["integrity"] = {"status": "mismatch", "root": "ab" * 32, "tree_size": 3,
                                             "mismatches": [{"kind": "modified-asset", "path": "/v/a",
                                                             "detail": "hash differs"}]}
            n1.vms[vm["id"]]["agent"] = {"last_report_ms": done_ms, "last_report": {
                "trigger": "schedule", "duration_ms": 40, "records": 3, "bytes": 300,
                "mismatches": [{"kind": "modified-asset"}]}}
            copy = dict(n1.vms[vm["id"]])
        f.hb(1, avail=16000, **n1.figures())
        f.wait(lambda: f.json("GET", "/v1/health")[1]["status"] == "integrity-mismatch",
               what="the mismatch")
        with n2.lock:
            n2.vms[vm["id"]] = copy
        f.hb(2, avail=8000, **n2.figures())
        f.wait(lambda: f.json("GET", "/v1/vms/" + vm["id"])[1]["misplaced_on"] == ["n2"],
               what="misplaced")
        text = scrape(f)
        promtool_check(text)
        key = 'vm="%s",node="n1"' % vm["id"]
        integ = series(text, "totebox_fleetd_vm_integrity")
        assert integ["{%s,state=\"mismatch\"}" % key] == 1
        assert integ["{%s,state=\"ok\"}" % key] == 0
        age = series(text, "totebox_fleetd_vm_last_verification_age_seconds")["{%s}" % key]
        assert 115 < age < 200
        assert series(text, "totebox_fleetd_vm_misplaced")["{%s}" % key] == 1
        assert not any('node="n2"' in k for k in series(text, "totebox_fleetd_vm_misplaced"))
    finally:
        n1.shutdown()
        n2.shutdown()
        f.close()


def test_node_history_ring():
    with H.Fleetd(nodes=2) as f:
        for k in range(12):
            f.hb(1, avail=8000 + k, total=16384, interval=100)
            time.sleep(0.12)
        _, doc = f.json("GET", "/v1/nodes/n1/history", expect=200)
        with open(os.path.join(H.SOURCE, "schemas", "openapi.json")) as fh:
            api = json.load(fh)
        import jsonschema
        jsonschema.Draft202012Validator(api["components"]["schemas"]["NodeHistory"]).validate(doc)
        avail = [s["available_mib"] for s in doc["samples"]]
        assert 8 <= len(avail) <= 12 and avail == sorted(avail) and avail[-1] >= 8009
        assert doc["interval_ms"] == 100 and doc["window_s"] == 3600
        # datagrams faster than the interval add no samples: the ring spans its intervals
        for k in range(30):
            f.hb(1, avail=9000, total=16384, interval=100000)
        _, doc2 = f.json("GET", "/v1/nodes/n1/history", expect=200)
        assert len(doc2["samples"]) <= len(doc["samples"]) + 1
        assert f.json("GET", "/v1/nodes/n2/history", expect=200)[1]["samples"] == []
        assert f.json("GET", "/v1/nodes/nope/history", expect=404)[1]["status"] == 404
        st, _, _ = f.request("GET", "/v1/nodes/n1/history", token="wrong")
        assert st == 401
