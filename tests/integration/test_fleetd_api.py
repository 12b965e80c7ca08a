"""fleetd over real UDP and HTTP with synthetic nodes on 127.0.1.x: liveness and its audit
entries, heartbeat drops, plans and confirmations, the answers' schemas, metrics, OpenAPI,
the panel's static files, roster reloads, and hostile input on every route (never a 5xx,
always problem+json with a request id)."""
import json
import os
import random
import re
import signal
import time

import jsonschema
import pytest

import test_fleetd_harness as H

SCHEMAS = os.path.join(H.SOURCE, "schemas")


def schema(name):
    store = {}
    for n in os.listdir(SCHEMAS):
        if n.endswith(".schema.json"):
            with open(os.path.join(SCHEMAS, n)) as f:
                d = json.load(f)
            store[d["$id"]] = d
    doc = store["https://totebox.example/schemas/" + name]
    jsonschema.Draft202012Validator.check_schema(doc)
    resolver = jsonschema.RefResolver(doc["$id"], doc, store=store)
    return jsonschema.Draft202012Validator(doc, resolver=resolver)


@pytest.fixture
def fleet():
    # a wide suspect window: the tick (every 250 ms) must see each state even on a loaded machine
    f = H.Fleetd(nodes=3, settings={"heartbeat_interval": "500ms", "suspect_after": "1s",
                                    "evict_after": "2500ms"})
    f.start()
    yield f
    f.close()


def test_liveness_states_and_audit(fleet):
    fleet.hb(1)
    fleet.wait(lambda: fleet.node("n1")["state"] == "alive", what="alive")
    fleet.wait(lambda: fleet.node("n1")["state"] == "suspect", what="suspect")
    fleet.wait(lambda: fleet.node("n1")["state"] == "evicted", what="evicted")
    assert fleet.node("n1")["placeable"] is False
    fleet.hb(1)
    fleet.wait(lambda: fleet.node("n1")["state"] == "alive", what="back to alive")
    time.sleep(0.3)  # let the tick record it
    moves = [(e["detail"]["from"], e["detail"]["to"]) for e in fleet.audit("node.state")
             if e["subject"] == "n1"]
    assert moves == [("unseen", "alive"), ("alive", "suspect"), ("suspect", "evicted"),
                     ("evicted", "alive")]
    log = fleet.read_log()
    assert log.count("node 'n1' is now 'suspect'") == 1
    assert log.count("node 'n1' is now 'evicted'") == 1


def test_wedged_libvirt_is_unhealthy(fleet):
    fleet.hb(2, libvirt_age=1501)  # more than 3 intervals of 500 ms
    fleet.wait(lambda: fleet.node("n2")["state"] == "unhealthy", what="unhealthy")
    assert fleet.node("n2")["placeable"] is False


def metric(text, name):
    m = re.search("^" + re.escape(name) + r" (\d+)$", text, re.M)
    return int(m.group(1)) if m else None


def test_heartbeat_drops_are_counted(fleet):
    fleet.send_raw(H.node_address(2), json.dumps(H.heartbeat("n1", 1)).encode())  # wrong address
    fleet.send_raw("127.0.9.9", json.dumps(H.heartbeat("n1", 1)).encode())  # not in the roster
    fleet.send_raw(H.node_address(1), b"{not json")
    fleet.send_raw(H.node_address(1), b"x" * 1300)
    fleet.hb(1, seq=5)
    fleet.hb(1, seq=5)  # replayed
    fleet.hb(1, seq=4)  # older

    def dropped():
        _, _, body = fleet.request("GET", "/metrics")
        t = body.decode()
        return (metric(t, 'totebox_fleetd_heartbeats_dropped_total{reason="node_mismatch"}') == 1 and
                metric(t, 'totebox_fleetd_heartbeats_dropped_total{reason="unknown_address"}') == 1 and
                metric(t, 'totebox_fleetd_heartbeats_dropped_total{reason="malformed"}') == 1 and
                metric(t, 'totebox_fleetd_heartbeats_dropped_total{reason="oversized"}') == 1 and
                metric(t, 'totebox_fleetd_heartbeats_dropped_total{reason="replayed"}') == 2 and
                metric(t, "totebox_fleetd_heartbeats_accepted_total") == 1)
    fleet.wait(dropped, what="drop counters")


def plan_body(entity="acme", mib=2048):
    return {"entity": entity, "memory_mib": mib, "vcpus": 2, "image": "totebox-base",
            "vault_disk_mib": 1024}


def test_plan_confirm_and_schemas():
    with H.Fleetd(nodes=3) as f:
        f.hb(1, avail=8000)
        f.hb(2, avail=12000)
        f.hb(3, avail=12000)
        f.wait(lambda: f.node("n3")["state"] == "alive")
        schema("vm-request.schema.json").validate(plan_body())
        st, plan = f.json("POST", "/v1/plans", plan_body(), expect=201)
        schema("plan.schema.json").validate(plan)
        assert plan["node_id"] == "n2"  # tie with n3 goes to the smaller id
        chosen = [c for c in plan["candidates"] if c["chosen"]]
        assert [c["node_id"] for c in chosen] == ["n2"]
        assert {c["node_id"] for c in plan["candidates"]} == {"ctl", "n1", "n2", "n3"}
        st, plan_again = f.json("GET", "/v1/plans/" + plan["id"], expect=200)
        assert plan_again["state"] == "open"
        st, op = f.json("POST", "/v1/plans/%s/confirm" % plan["id"], expect=202)
        schema("operation.schema.json").validate(op)
        st, vm = f.json("GET", "/v1/vms/" + op["vm_id"], expect=200)
        schema("vm-resource.schema.json").validate(vm)
        assert vm["status"] == "creating" and vm["node_id"] == "n2"
        st, op2 = f.json("POST", "/v1/plans/%s/confirm" % plan["id"], expect=202)
        assert op2["id"] == op["id"] and op2["vm_id"] == vm["id"]
        st, vms = f.json("GET", "/v1/vms", expect=200)
        assert [v["id"] for v in vms["vms"]] == [vm["id"]]
        f.json("DELETE", "/v1/plans/" + plan["id"], expect=409)
        st, doc = f.json("POST", "/v1/plans", plan_body(), expect=409)
        assert doc["type"].endswith("/entity-has-vm")
        # the reservation shows on the node and in the next plan
        assert f.node("n2")["reserved_mib"] == 2048
        st, p2 = f.json("POST", "/v1/plans", plan_body("beta"), expect=201)
        assert p2["node_id"] == "n3"
        f.json("DELETE", "/v1/plans/" + p2["id"], expect=200)
        f.json("POST", "/v1/plans/%s/confirm" % p2["id"], expect=410)
        st, none = f.json("POST", "/v1/plans", plan_body("gamma", 100000), expect=422)
        assert len(none["candidates"]) == 4 and all(c["reason"] for c in none["candidates"])
        audit_schema = schema("audit-entry.schema.json")
        entries = f.audit()
        for e in entries:
            audit_schema.validate(e)
        kinds = [e["kind"] for e in entries]
        assert "plan.created" in kinds and "vm.confirmed" in kinds and "plan.dropped" in kinds
        r = f.ctl("audit", "verify")
        assert "intact" in r.stdout


def test_back_to_back_confirms_never_oversubscribe():
    with H.Fleetd(nodes=1) as f:
        f.hb(1, avail=6000)
        f.wait(lambda: f.node("n1")["state"] == "alive")
        _, a = f.json("POST", "/v1/plans", plan_body("alpha", 3000), expect=201)
        _, b = f.json("POST", "/v1/plans", plan_body("beta", 3000), expect=201)
        f.json("POST", "/v1/plans/%s/confirm" % a["id"], expect=202)
        st, doc = f.json("POST", "/v1/plans/%s/confirm" % b["id"], expect=409)
        assert doc["type"].endswith("/plan-stale")


def test_health_metrics_openapi(fleet):
    st, h = fleet.json("GET", "/v1/health", expect=200)
    assert list(h.keys())[:2] == ["status", "integrity"]
    assert h["integrity"]["status"] in ("ok", "unknown", "mismatch")
    st, headers, body = fleet.request("GET", "/metrics")
    assert st == 200 and headers["content-type"].startswith("text/plain")
    text = body.decode()
    for name in ("totebox_fleetd_nodes", "totebox_fleetd_heartbeats_received_total",
                 "totebox_fleetd_plans_total", "totebox_fleetd_confirmations_total",
                 "totebox_fleetd_vms", "totebox_fleetd_integrity_mismatches_total",
                 "totebox_fleetd_http_request_duration_seconds"):
        assert "# TYPE " + name in text
    for line in text.splitlines():
        assert line.startswith("#") or re.match(r'^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? [0-9.e+-]+$', line), line
    st, headers, body = fleet.request("GET", "/v1/openapi.json", token="")
    assert st == 200
    doc = json.loads(body)
    assert doc["openapi"].startswith("3.1")
    for path in ("/v1/nodes", "/v1/nodes/{id}", "/v1/vms", "/v1/vms/{id}", "/v1/plans",
                 "/v1/plans/{id}", "/v1/plans/{id}/confirm", "/v1/vms/{id}/suspend",
                 "/v1/vms/{id}/resume", "/v1/vms/{id}/archive", "/v1/vms/{id}/verify",
                 "/v1/audit", "/v1/roster",
                 "/v1/health", "/v1/openapi.json", "/metrics"):
        assert path in doc["paths"], path
    st, roster = fleet.json("GET", "/v1/roster", expect=200)
    assert roster["version"] == 1


def test_roster_reload_on_change_and_sighup(fleet):
    extra = {"id": "n77", "role": "node", "mesh_address": "127.0.7.7"}
    fleet.write_roster(H.roster_doc(3, version=2, extra=[extra]))
    fleet.wait(lambda: fleet.json("GET", "/v1/nodes/n77")[0] == 200, what="roster reload")
    fleet.send_raw("127.0.7.7", json.dumps(H.heartbeat("n77", 1)).encode())
    fleet.wait(lambda: fleet.node("n77")["state"] == "alive")
    # rewrite with the same mtime resolution is caught by SIGHUP
    fleet.write_roster(H.roster_doc(3, version=3))
    fleet.proc.send_signal(signal.SIGHUP)
    fleet.wait(lambda: fleet.json("GET", "/v1/nodes/n77")[0] == 404, what="node removed")
    assert fleet.json("GET", "/v1/roster")[1]["version"] == 3


def test_panel_static_files(tmp_path):
    panel = tmp_path / "panel"
    (panel / "assets").mkdir(parents=True)
    (panel / "index.html").write_text("<!doctype html><title>F9</title>")
    (panel / "assets" / "app.js").write_text("console.log(1)")
    (panel / "assets" / "style.css").write_text("body{}")
    (panel / "empty").mkdir()
    (tmp_path / "secret.txt").write_text("TOPSECRETCONTENT")
    os.symlink(tmp_path / "secret.txt", panel / "leak.txt")
    with H.Fleetd(nodes=1, settings={"panel_dir": str(panel)}) as f:
        st, h, body = f.request("GET", "/", token="")
        assert st == 200 and h["content-type"].startswith("text/html") and b"F9" in body
        st, h, body = f.request("GET", "/panel/assets/app.js", token="")
        assert st == 200 and h["content-type"].startswith("text/javascript")
        st, h, _ = f.request("GET", "/panel/assets/style.css", token="")
        assert h["content-type"].startswith("text/css")
        for bad in ("/panel/../secret.txt", "/panel/%2e%2e/secret.txt", "/panel/assets/../../secret.txt",
                    "/panel/leak.txt", "/panel/empty", "/panel/empty/", "/panel/.hidden",
                    "/panel/nothere.html", "/panel//etc/passwd", "/panel/assets"):
            st, h, body = f.request("GET", bad, token="")
            assert st == 404, bad
            assert b"TOPSECRETCONTENT" not in body
            assert h["content-type"] == "application/problem+json"
        st, h, _ = f.request("POST", "/", token="", raw=b"")
        assert st == 405
    with H.Fleetd(nodes=1) as f:
        assert f.request("GET", "/", token="")[0] == 404


# -- hostile input on every route ---------------------------------------------------------------

ROUTES = [("GET", "/v1/nodes"), ("GET", "/v1/nodes/n1"), ("GET", "/v1/vms"), ("GET", "/v1/vms/x"),
          ("POST", "/v1/vms/x/suspend"), ("POST", "/v1/vms/x/resume"), ("POST", "/v1/vms/x/archive"),
          ("POST", "/v1/vms/x/verify"),
          ("POST", "/v1/plans"), ("GET", "/v1/plans/" + "0" * 32),
          ("POST", "/v1/plans/%s/confirm" % ("0" * 32)), ("DELETE", "/v1/plans/" + "0" * 32),
          ("GET", "/v1/audit"), ("GET", "/v1/roster"), ("GET", "/v1/health"), ("GET", "/metrics")]


def check_problem(st, h, body, expect=None):
    assert st < 500, (st, body)
    assert re.match(r"^[A-Za-z0-9_-]{1,64}$", h.get("x-request-id", "")), h
    if expect is not None:
        assert st == expect, (st, body)
    if st >= 400:
        assert h["content-type"] == "application/problem+json", h
        doc = json.loads(body)
        assert doc["status"] == st and doc["title"] and doc["detail"] and doc["type"]


def test_auth_on_every_route(fleet):
    for method, path in ROUTES:
        st, h, body = fleet.request(method, path, token="")
        check_problem(st, h, body, 401)
        assert h["www-authenticate"].startswith("Bearer")
        st, h, body = fleet.request(method, path, token="tbx_" + "A" * 43)
        check_problem(st, h, body, 401)
        st, h, body = fleet.request(method, path, headers={"Authorization": "Basic eDp5"}, token="")
        check_problem(st, h, body, 401)
    fleet.ctl("token", "revoke", "tester")
    st, h, body = fleet.request("GET", "/v1/nodes")
    check_problem(st, h, body, 401)


def test_wrong_methods_and_paths(fleet):
    for method, path in ROUTES:
        other = "PUT" if method != "PUT" else "PATCH"
        st, h, body = fleet.request(other, path, raw=b"")
        check_problem(st, h, body, 405)
        assert "allow" in h
    for path in ("/v1", "/v1/", "/v1/nodes/", "/v1/vms/x/migrate", "/v1/vms/x/delete",
                 "/v1/plans/x/y", "/nope", "/v1/nodes/" + "a" * 600, "/v1/vms/%00"):
        st, h, body = fleet.request("GET" if "migrate" not in path and "delete" not in path else "POST",
                                    path)
        check_problem(st, h, body)
        assert st in (400, 404, 405, 414), (path, st)


def test_bad_ids(fleet):
    st, h, body = fleet.request("GET", "/v1/nodes/BAD_ID")
    check_problem(st, h, body, 400)
    st, h, body = fleet.request("GET", "/v1/nodes/n999")
    check_problem(st, h, body, 404)
    check_problem(*fleet.request("GET", "/v1/vms/nope"), expect=404)
    check_problem(*fleet.request("GET", "/v1/vms/" + "x" * 100), expect=400)  # malformed
    for verb in ("suspend", "resume", "archive", "verify"):
        check_problem(*fleet.request("POST", "/v1/vms/nope/" + verb, raw=b""), expect=404)
        check_problem(*fleet.request("POST", "/v1/vms/nope/" + verb, raw=b'{"force":true}'), expect=400)
        # a malformed VM id is bad input, not an unknown VM
        for bad in ("x" * 64, "UPPER", "a_b", "a%20b", "a.b", "%C3%A9"):
            st, h, body = fleet.request("POST", "/v1/vms/%s/%s" % (bad, verb), raw=b"")
            check_problem(st, h, body, 400)
            assert json.loads(body)["type"].endswith("/invalid-vm-id"), body
    # GET and the wrong method on verify
    check_problem(*fleet.request("GET", "/v1/vms/nope/verify"), expect=405)
    check_problem(*fleet.request("DELETE", "/v1/vms/nope/verify"), expect=405)
    check_problem(*fleet.request("POST", "/v1/vms/nope/verify/now", raw=b""), expect=404)
    assert fleet.audit("vm.verify") == []  # bad input changes nothing
    for pid in ("nothex", "0" * 31, "0" * 33, "G" * 32):  # malformed: 400, as for nodes and VMs
        check_problem(*fleet.request("GET", "/v1/plans/" + pid), expect=400)
        check_problem(*fleet.request("POST", "/v1/plans/%s/confirm" % pid, raw=b""), expect=400)
        check_problem(*fleet.request("DELETE", "/v1/plans/" + pid), expect=400)
    check_problem(*fleet.request("GET", "/v1/plans/" + "0" * 32), expect=404)
    check_problem(*fleet.request("POST", "/v1/plans/%s/confirm" % ("0" * 32), raw=b"[]"), expect=400)


def test_bad_plan_bodies(fleet):
    good = plan_body()
    cases = [
        (b"", 400), (b"{", 400), (b"[]", 400), (b"null", 400), (b"\xff\xfe", 400),
        (b"[" * 50 + b"]" * 50, 400), (b'{"a":' * 20 + b"1" + b"}" * 20, 400),
        (json.dumps(dict(good, extra=1)).encode(), 422),
        (json.dumps({k: v for k, v in good.items() if k != "image"}).encode(), 422),
        (json.dumps(dict(good, memory_mib="2048")).encode(), 422),
        (json.dumps(dict(good, memory_mib=-5)).encode(), 422),
        (json.dumps(dict(good, memory_mib=2**70)).encode(), 422),  # out of range, as -5 is
        (json.dumps(dict(good, memory_mib=1.5)).encode(), 422),
        (json.dumps(dict(good, vcpus=0)).encode(), 422),
        (json.dumps(dict(good, entity="UPPER")).encode(), 422),
        (json.dumps(dict(good, entity="a" * 49)).encode(), 422),
        (json.dumps(dict(good, entity="a\u0000b")).encode(), 400),
        (json.dumps(dict(good, image="../../etc/passwd")).encode(), 422),
        (b'{"entity":"a","entity":"b"}', 400),
        (b" " * 70000, 413),
    ]
    for raw, expect in cases:
        st, h, body = fleet.request("POST", "/v1/plans", raw=raw)
        check_problem(st, h, body, expect)
    st, h, body = fleet.request("POST", "/v1/plans", raw=json.dumps(good).encode(),
                                headers={"Content-Type": "text/plain"})
    check_problem(st, h, body, 415)


def test_plan_refuses_ids_a_node_would_refuse(fleet):
    # common/ident.h is the one rule: an image name or entity a vmhost would refuse at dispatch
    # is refused here, at plan time, with the rule in the problem, and no plan is made.
    _, before = fleet.json("GET", "/v1/plans")
    for field, value in (("image", "Ubuntu"), ("image", "_base"), ("image", "a" * 64),
                         ("image", ".hidden"), ("entity", "Acme Ltd"), ("entity", "acme-")):
        st, h, body = fleet.request("POST", "/v1/plans",
                                    raw=json.dumps(dict(plan_body(), **{field: value})).encode())
        check_problem(st, h, body, 422)
        detail = json.loads(body)["detail"]
        assert "field '%s'" % field in detail and "^[a-z0-9]" in detail, detail
    _, after = fleet.json("GET", "/v1/plans")
    assert after == before


def test_bad_queries(fleet):
    for q in ("limit=abc", "limit=0", "limit=1001", "limit=-1", "after=x", "after=99999999999999999999",
              "kind=DROP%20TABLE", "kind=" + "a" * 40):
        check_problem(*fleet.request("GET", "/v1/audit?" + q), expect=400)
    check_problem(*fleet.request("GET", "/v1/audit?limit=5&kind=node.state"), expect=200)


def test_request_id(fleet):
    st, h, _ = fleet.request("GET", "/v1/health", headers={"X-Request-Id": "abc-123"})
    assert h["x-request-id"] == "abc-123"
    st, h, _ = fleet.request("GET", "/v1/health", headers={"X-Request-Id": "bad id\t<>"})
    assert h["x-request-id"] != "bad id\t<>" and len(h["x-request-id"]) == 32


def test_random_input_never_5xx(fleet):
    rng = random.Random(1234)
    alphabet = b'{}[]":,0123456789.-abcdefnulltrue \\\x00\xff'
    for i in range(300):
        raw = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 200)))
        method, path = rng.choice(ROUTES)
        if rng.random() < 0.3:
            path = path + "/" + "".join(c for c in raw[:20].decode(errors="ignore")
                                        if c.isprintable() and c not in "/ ?#%\\")
        st, h, body = fleet.request(method, path, raw=raw if method != "GET" else None)
        check_problem(st, h, body)
    st, doc = fleet.json("GET", "/v1/health", expect=200)


def test_inventory_integrity_and_lifecycle_end_to_end():
    f = H.Fleetd(nodes=1, settings={"heartbeat_interval": "500ms", "suspect_after": "1s",
                                    "evict_after": "1500ms", "dispatch_backoff": "50ms"})
    node = H.FakeNode(H.node_address(1), f.node_api_port, "n1")
    try:
        f.start()
        beat = lambda: f.hb(1, avail=16000, **node.figures())
        beat()
        f.wait(lambda: f.node("n1")["state"] == "alive")
        _, plan = f.json("POST", "/v1/plans", plan_body("acme", 1024), expect=201)
        _, vm = f.confirm_vm(plan["id"])
        f.wait(lambda: f.json("GET", "/v1/vms/" + vm["id"])[1]["status"] == "active")
        beat()
        f.wait(lambda: f.node("n1")["reserved_mib"] == 0, what="reservation released")
        assert f.json("GET", "/v1/health")[1]["integrity"]["status"] == "ok"
        # the vault reports a mismatch, and a VM nobody placed appears
        with node.lock:
            node.vms[vm["id"]]["integrity"] = {"status": "mismatch", "root": "ab" * 32,
                                               "tree_size": 9, "mismatches": [
                                                   {"kind": "modified-asset", "path": "/v/a",
                                                    "detail": "hash differs"}]}
            node.vms["intruder"] = {"id": "intruder", "state": "running"}
        beat()
        f.wait(lambda: f.json("GET", "/v1/health")[1]["status"] == "integrity-mismatch",
               what="fleet-level integrity")
        health = f.json("GET", "/v1/health")[1]
        assert health["integrity"]["mismatched_vms"][0]["vm_id"] == vm["id"]
        entries = f.audit("integrity.mismatch")
        assert len(entries) == 1 and entries[0]["detail"]["integrity"]["mismatches"][0]["kind"] == "modified-asset"
        assert f.node("n1")["unknown_vms"] == ["intruder"]
        assert len(f.audit("vm.unknown")) == 1
        text = f.request("GET", "/metrics")[2].decode()
        assert metric(text, "totebox_fleetd_integrity_mismatch_vms") == 1
        assert metric(text, "totebox_fleetd_integrity_mismatches_total") == 1
        # lifecycle through the node
        _, op = f.verb(vm["id"], "suspend", expect=202)
        assert op["state"] == "succeeded" and op["result"]["lifecycle"] == "suspended", op
        f.json("POST", "/v1/vms/%s/suspend" % vm["id"], expect=409)
        _, op = f.verb(vm["id"], "archive", expect=202)
        assert op["result"]["lifecycle"] == "archived", op
        f.json("POST", "/v1/vms/%s/resume" % vm["id"], expect=409)
        _, p = f.json("POST", "/v1/vms/%s/verify" % vm["id"], expect=409)
        assert p["type"].endswith("/archived"), p
        assert f.audit("vm.verify") == []  # refused before any call: nothing recorded
        # an evicted node's VMs are unreachable, not moved
        f.wait(lambda: f.json("GET", "/v1/vms/" + vm["id"])[1]["state"] == "unreachable",
               what="unreachable")
        v = f.json("GET", "/v1/vms/" + vm["id"])[1]
        assert v["node_id"] == "n1" and v["lifecycle"] == "archived"
    finally:
        node.shutdown()
        node.server_close()
        f.close()


def test_openapi_document_is_consistent(fleet):
    """Every $ref resolves, every component is a valid JSON Schema, and live answers match the
    components they are documented with."""
    doc = json.loads(fleet.request("GET", "/v1/openapi.json", token="")[2])
    with open(os.path.join(SCHEMAS, "openapi.json")) as f:
        assert json.load(f) == doc  # the embedded copy is the file

    def walk(o):
        if isinstance(o, dict):
            for k, v in o.items():
                if k == "$ref":
                    assert v.startswith("#/"), v
                    node = doc
                    for part in v[2:].split("/"):
                        node = node[part]
                else:
                    walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
    walk(doc)
    for name, comp in doc["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(comp)

    def validator(name):
        resolver = jsonschema.RefResolver("", doc)
        return jsonschema.Draft202012Validator(doc["components"]["schemas"][name], resolver=resolver)
    fleet.hb(1)
    fleet.wait(lambda: fleet.node("n1")["state"] == "alive")
    for n in fleet.json("GET", "/v1/nodes", expect=200)[1]["nodes"]:
        validator("Node").validate(n)
    validator("Health").validate(fleet.json("GET", "/v1/health", expect=200)[1])
    st, problem = fleet.json("GET", "/v1/nodes/n999", expect=404)
    validator("Problem").validate(problem)
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert op["responses"], (path, method)


def test_metrics_pass_promtool(fleet):
    """promtool (from Debian's prometheus package, extracted by scripts/install-deps.sh; or PROMTOOL)
    lints the exposition."""
    import shutil
    import subprocess
    promtool = (os.environ.get("PROMTOOL") or shutil.which("promtool") or
                ("/usr/local/libexec/totebox/promtool"
                 if os.access("/usr/local/libexec/totebox/promtool", os.X_OK) else None))
    if not promtool:
        pytest.skip("promtool not installed (scripts/install-deps.sh puts it in "
                    "/usr/local/libexec/totebox)")
    fleet.hb(1)
    body = fleet.request("GET", "/metrics")[2]
    r = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), r
