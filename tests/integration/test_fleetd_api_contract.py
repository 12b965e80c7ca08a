"""fleetd's REST answers against the contract, played by a hostile client over real HTTP: a
table of malformed requests (invalid UTF-8 in paths, ids cut inside a character, unknown
fields with such names, a 100 KiB path, a 70 KiB header, bodies where none is taken, integers
past 64 bits, unknown and repeated query parameters), each of which must get its documented
status and a problem document valid against schemas/problem.schema.json; then HEAD, the list
routes' filters and pages, GET /v1/plans, and ETag / If-None-Match."""
import json
import os
import socket

import jsonschema
import pytest

import test_fleetd_harness as H

SCHEMAS = os.path.join(H.SOURCE, "schemas")


def problem_validator():
    with open(os.path.join(SCHEMAS, "problem.schema.json")) as f:
        doc = json.load(f)
    jsonschema.Draft202012Validator.check_schema(doc)
    return jsonschema.Draft202012Validator(doc, format_checker=jsonschema.FormatChecker())


PROBLEM = problem_validator()


def raw_request(port, head, body=b""):
    """Sends bytes as they are (paths with raw bytes, huge lines); returns (status, headers,
    body bytes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head + body)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            head_end = data.find(b"\r\n\r\n")
            if head_end >= 0:
                hdrs = data[:head_end].decode("latin-1").split("\r\n")
                length = [int(h.split(":", 1)[1]) for h in hdrs
                          if h.lower().startswith("content-length:")]
                if length and len(data) >= head_end + 4 + length[0]:
                    break
    head_end = data.find(b"\r\n\r\n")
    lines = data[:head_end].decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
    return status, headers, data[head_end + 4:]


def assert_problem(status, headers, body, expect, type_suffix=None):
    assert status == expect, (status, body[:300])
    assert headers["content-type"] == "application/problem+json", headers
    doc = json.loads(body)  # must be valid UTF-8 JSON
    PROBLEM.validate(doc)
    assert doc["status"] == status
    assert doc["detail"], doc
    if type_suffix:
        assert doc["type"].endswith("/" + type_suffix), doc
    return doc


@pytest.fixture(scope="module")
def fleet():
    f = H.Fleetd(nodes=4)
    f.start()
    for i in (1, 2, 3):
        f.hb(i, avail=8000 + 1000 * i)
    f.wait(lambda: f.node("n3")["state"] == "alive")
    yield f
    f.close()


CUT = "a" * 63 + "\u00e9"  # 64 bytes: a truncation to 64 bytes splits the character
BAD_NAME = "\u00e9" * 200    # a field name whose echo, cut at any length, may split a character


def plan(entity="acme", mib=2048, **kw):
    d = {"entity": entity, "memory_mib": mib, "vcpus": 2, "image": "totebox-base",
         "vault_disk_mib": 1024}
    d.update(kw)
    return json.dumps(d).encode()


# (method, path, body, extra headers, status, problem type)
HOSTILE = [
    ("GET", "/v1/nodes/%ff", None, {}, 400, "invalid-node-id"),
    ("GET", "/v1/nodes/%c3", None, {}, 400, "invalid-node-id"),
    ("GET", "/v1/nodes/%ed%a0%80", None, {}, 400, "invalid-node-id"),  # a surrogate
    ("GET", "/v1/nodes/" + CUT, None, {}, 400, "invalid-node-id"),
    ("GET", "/v1/vms/%ff", None, {}, 400, "invalid-vm-id"),
    ("GET", "/v1/vms/" + CUT, None, {}, 400, "invalid-vm-id"),
    ("POST", "/v1/vms/%ff/suspend", b"", {}, 400, "invalid-vm-id"),
    ("POST", "/v1/vms/" + CUT + "/archive", b"", {}, 400, "invalid-vm-id"),
    ("POST", "/v1/vms/x/%ff", b"", {}, 404, "not-found"),
    ("GET", "/v1/plans/%ff", None, {}, 400, "invalid-plan-id"),
    ("GET", "/v1/plans/" + CUT, None, {}, 400, "invalid-plan-id"),
    ("POST", "/v1/plans/%ff/confirm", b"", {}, 400, "invalid-plan-id"),
    ("DELETE", "/v1/plans/%ff", None, {}, 400, "invalid-plan-id"),
    ("GET", "/%ff", None, {}, 404, "not-found"),
    ("PUT", "/v1/nodes/%ff", b"", {}, 405, "method-not-allowed"),
    ("GET", "/v1/" + CUT * 3, None, {}, 404, "not-found"),
    # unknown fields named with invalid or cut characters
    ("POST", "/v1/plans", plan(**{BAD_NAME: 1}), {}, 422, "invalid-request"),
    ("POST", "/v1/plans", plan(**{CUT: 1}), {}, 422, "invalid-request"),
    ("POST", "/v1/plans", plan(entity=CUT), {}, 422, "invalid-request"),
    ("POST", "/v1/plans", plan(image=BAD_NAME), {}, 422, "invalid-request"),
    ("POST", "/v1/plans", plan(), {"Content-Type": "text/\u00e9" * 30}, 415,
     "unsupported-media-type"),
    # one class of mistake, one status: every integer out of range is a 422
    ("POST", "/v1/plans", plan(mib=2**63), {}, 422, "invalid-request"),
    ("POST", "/v1/plans", plan(mib=-2**63), {}, 422, "invalid-request"),
    ("POST", "/v1/plans", plan(mib=2**64), {}, 422, "invalid-request"),
    ("POST", "/v1/plans", plan(mib=-2**63 - 1), {}, 422, "invalid-request"),
    ("POST", "/v1/plans", plan(mib=-1), {}, 422, "invalid-request"),
    ("POST", "/v1/plans", plan(vcpus=2**70), {}, 422, "invalid-request"),
    # a verb takes no fields, whatever their value
    ("POST", "/v1/vms/tbx-a-000000/suspend", b'{"x":1}', {}, 400, "unexpected-body"),
    ("POST", "/v1/vms/tbx-a-000000/suspend", b'{"x":%d}' % 2**64, {}, 400, "unexpected-body"),
    ("POST", "/v1/plans/%s/confirm" % ("0" * 32), b'{"x":%d}' % -2**64, {}, 400,
     "unexpected-body"),
    # bodies on routes that take none
    ("DELETE", "/v1/plans/" + "0" * 32, b"{", {}, 400, "unexpected-body"),
    ("DELETE", "/v1/plans/" + "0" * 32, b"{}", {}, 400, "unexpected-body"),
    ("GET", "/v1/nodes", b"{}", {}, 400, "unexpected-body"),
    ("GET", "/v1/health", b"x", {}, 400, "unexpected-body"),
    # query parameters
    ("GET", "/v1/nodes?bogus=1", None, {}, 400, "unknown-query"),
    ("GET", "/v1/nodes?%ff=1", None, {}, 400, "unknown-query"),
    ("GET", "/v1/nodes?" + CUT + "=1", None, {}, 400, "unknown-query"),
    ("GET", "/v1/health?verbose", None, {}, 400, "unknown-query"),
    ("GET", "/v1/nodes/n1?x=1", None, {}, 400, "unknown-query"),
    ("GET", "/v1/audit?limit=5&limit=6", None, {}, 400, "invalid-query"),
    ("GET", "/v1/nodes?state=zombie", None, {}, 400, "invalid-query"),
    ("GET", "/v1/nodes?state=%ff", None, {}, 400, "invalid-query"),
    ("GET", "/v1/nodes?limit=0", None, {}, 400, "invalid-query"),
    ("GET", "/v1/nodes?after=" + CUT, None, {}, 400, "invalid-query"),
    ("GET", "/v1/vms?status=running", None, {}, 400, "invalid-query"),
    ("GET", "/v1/vms?node=%ff", None, {}, 400, "invalid-query"),
    ("GET", "/v1/vms?limit=100001", None, {}, 400, "invalid-query"),
    ("GET", "/v1/plans?state=maybe", None, {}, 400, "invalid-query"),
    ("GET", "/v1/plans?after=xyz", None, {}, 400, "invalid-query"),
    ("GET", "/v1/plans?limit=1001", None, {}, 400, "invalid-query"),
    ("GET", "/metrics?x=1", None, {}, 400, "unknown-query"),
]


@pytest.mark.parametrize("method,path,body,headers,status,ptype", HOSTILE)
def test_hostile_input_gets_a_valid_problem(fleet, method, path, body, headers, status, ptype):
    target = path.encode("utf-8")
    head = b"%s %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nConnection: close\r\n" % (
        method.encode(), target, fleet.token.encode())
    hdrs = {"Content-Type": "application/json"} if body is not None else {}
    hdrs.update(headers)
    for k, v in hdrs.items():
        head += k.encode() + b": " + v.encode("utf-8") + b"\r\n"
    if body is not None:
        head += b"Content-Length: %d\r\n" % len(body)
    st, h, payload = raw_request(fleet.api_port, head + b"\r\n", body or b"")
    assert_problem(st, h, payload, status, ptype)


def test_raw_invalid_bytes_in_paths(fleet):
    """Bytes that are not UTF-8, sent unescaped, on every route with an id."""
    for path in (b"/v1/nodes/\xff\xfe", b"/v1/vms/\xc3", b"/v1/plans/\xe2\x82",
                 b"/v1/vms/\xff/verify", b"/v1/nodes/" + b"a" * 63 + b"\xc3\xa9"):
        method = b"POST" if path.endswith(b"verify") else b"GET"
        head = (method + b" " + path + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                fleet.token.encode() + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        st, h, payload = raw_request(fleet.api_port, head)
        assert_problem(st, h, payload, 400)


def test_long_path_and_big_header_are_problem_json(fleet):
    auth = b"Authorization: Bearer " + fleet.token.encode() + b"\r\n"
    head = b"GET /v1/nodes/" + b"a" * (100 * 1024) + b" HTTP/1.1\r\nHost: x\r\n" + auth + \
        b"Connection: close\r\n\r\n"
    assert_problem(*raw_request(fleet.api_port, head), 414, "uri-too-long")
    head = b"GET /v1/nodes?" + b"x" * (8 * 1024) + b"=1 HTTP/1.1\r\nHost: x\r\n" + auth + \
        b"Connection: close\r\n\r\n"
    assert_problem(*raw_request(fleet.api_port, head), 414, "uri-too-long")
    head = b"GET /v1/nodes HTTP/1.1\r\nHost: x\r\n" + auth + b"X-Big: " + b"b" * (70 * 1024) + \
        b"\r\nConnection: close\r\n\r\n"
    assert_problem(*raw_request(fleet.api_port, head), 431, "headers-too-large")
    many = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(400))
    head = b"GET /v1/nodes HTTP/1.1\r\nHost: x\r\n" + auth + many + b"Connection: close\r\n\r\n"
    assert_problem(*raw_request(fleet.api_port, head), 431, "headers-too-large")
    # and it still serves
    assert fleet.json("GET", "/v1/health")[0] == 200


def test_problem_json_up_to_the_connection_buffer(fleet):
    """libmicrohttpd's buffer is 128 KiB a connection (API_CONN_MEMORY, docs/fleetd.md): a
    request line or a header of 120 KiB is still fleetd's own problem, on a keep-alive
    connection too, and the connection after it is served."""
    auth = b"Authorization: Bearer " + fleet.token.encode() + b"\r\n"
    head = b"GET /v1/nodes/" + b"a" * (120 * 1024) + b" HTTP/1.1\r\nHost: x\r\n" + auth + \
        b"Connection: close\r\n\r\n"
    assert_problem(*raw_request(fleet.api_port, head), 414, "uri-too-long")
    head = b"GET /v1/nodes HTTP/1.1\r\nHost: x\r\n" + auth + b"X-Big: " + b"b" * (120 * 1024) + \
        b"\r\n\r\n"
    assert_problem(*raw_request(fleet.api_port, head), 431, "headers-too-large")
    assert fleet.json("GET", "/v1/nodes")[0] == 200


def test_delete_with_a_body_changes_nothing(fleet):
    st, p = fleet.json("POST", "/v1/plans", json.loads(plan("delta")), expect=201)
    st, h, body = fleet.request("DELETE", "/v1/plans/" + p["id"], raw=b"{not json")
    assert_problem(st, h, body, 400, "unexpected-body")
    assert fleet.json("GET", "/v1/plans/" + p["id"], expect=200)[1]["state"] == "open"
    fleet.json("DELETE", "/v1/plans/" + p["id"], expect=200)


def test_head_on_get_routes(fleet):
    for path in ("/v1/nodes", "/v1/nodes/n1", "/v1/vms", "/v1/plans", "/v1/audit", "/v1/roster",
                 "/v1/health", "/metrics", "/v1/openapi.json"):
        st_get, h_get, body_get = fleet.request("GET", path)
        st, h, body = fleet.request("HEAD", path)
        assert st == st_get == 200, path
        assert body == b"" and h["content-type"] == h_get["content-type"], path
    st, h, body = fleet.request("HEAD", "/v1/nodes/n999")
    assert st == 404 and body == b"" and h["content-type"] == "application/problem+json"
    st, h, body = fleet.request("PUT", "/v1/nodes")
    assert st == 405 and h["allow"] == "GET, HEAD"
    st, h, body = fleet.request("PUT", "/v1/plans")
    assert st == 405 and set(h["allow"].split(", ")) == {"GET", "HEAD", "POST"}


def test_node_filters_and_pages(fleet):
    _, full = fleet.json("GET", "/v1/nodes", expect=200)
    ids = [n["id"] for n in full["nodes"]]
    assert ids == sorted(ids) and full["next_after"] is None
    assert set(ids) == {"ctl", "n1", "n2", "n3", "n4"}
    seen, after = [], None
    while True:
        q = "/v1/nodes?limit=2" + ("&after=" + after if after else "")
        _, page = fleet.json("GET", q, expect=200)
        assert len(page["nodes"]) <= 2
        seen += [n["id"] for n in page["nodes"]]
        after = page["next_after"]
        if after is None:
            break
        assert after == page["nodes"][-1]["id"]
    assert seen == ids
    _, alive = fleet.json("GET", "/v1/nodes?state=alive", expect=200)
    assert [n["id"] for n in alive["nodes"]] == ["n1", "n2", "n3"]
    _, unseen = fleet.json("GET", "/v1/nodes?state=unseen&role=node", expect=200)
    assert [n["id"] for n in unseen["nodes"]] == ["n4"]
    _, cloud = fleet.json("GET", "/v1/nodes?role=cloud", expect=200)
    assert [n["id"] for n in cloud["nodes"]] == ["ctl"]
    _, tail = fleet.json("GET", "/v1/nodes?after=n2", expect=200)
    assert [n["id"] for n in tail["nodes"]] == ["n3", "n4"]


def test_plans_list_vm_filters_and_etags(fleet):
    made = []
    for e in ("p-one", "p-two", "p-three"):
        made.append(fleet.json("POST", "/v1/plans", json.loads(plan(e, 1024)), expect=201)[1])
    fleet.json("DELETE", "/v1/plans/" + made[1]["id"], expect=200)
    _, vm = fleet.confirm_vm(made[2]["id"])
    _, lst = fleet.json("GET", "/v1/plans?limit=1000", expect=200)
    by_id = {p["id"]: p for p in lst["plans"]}
    assert [by_id[p["id"]]["state"] for p in made] == ["open", "dropped", "confirmed"]
    assert by_id[made[2]["id"]]["vm_id"] == vm["id"]
    assert by_id[made[0]["id"]]["request"]["entity"] == "p-one"
    _, dropped = fleet.json("GET", "/v1/plans?state=dropped", expect=200)
    assert made[1]["id"] in [p["id"] for p in dropped["plans"]]
    assert all(p["state"] == "dropped" for p in dropped["plans"])
    order = [p["id"] for p in lst["plans"]]
    _, first = fleet.json("GET", "/v1/plans?limit=1", expect=200)
    _, rest = fleet.json("GET", "/v1/plans?limit=1000&after=" + first["next_after"], expect=200)
    assert [p["id"] for p in first["plans"] + rest["plans"]] == order

    _, vms = fleet.json("GET", "/v1/vms?node=%s&status=creating" % vm["node_id"], expect=200)
    assert vm["id"] in [v["id"] for v in vms["vms"]]
    _, none = fleet.json("GET", "/v1/vms?lifecycle=archived", expect=200)
    assert none["vms"] == [] and none["next_after"] is None
    _, ent = fleet.json("GET", "/v1/vms?entity=p-three", expect=200)
    assert [v["id"] for v in ent["vms"]] == [vm["id"]]

    # ETag and If-None-Match on the list routes
    for path in ("/v1/vms", "/v1/plans", "/v1/audit?limit=5"):
        st, h, body = fleet.request("GET", path)
        tag = h["etag"]
        assert st == 200 and tag.startswith('"') and h["cache-control"] == "no-cache"
        st, h2, body2 = fleet.request("GET", path, headers={"If-None-Match": tag})
        assert st == 304 and body2 == b"" and h2["etag"] == tag, path
        st, _, _ = fleet.request("GET", path, headers={"If-None-Match": '"other"'})
        assert st == 200
    st, h, _ = fleet.request("GET", "/v1/plans")
    fleet.json("POST", "/v1/plans", json.loads(plan("p-four", 1024)), expect=201)
    st, h2, _ = fleet.request("GET", "/v1/plans", headers={"If-None-Match": h["etag"]})
    assert st == 200 and h2["etag"] != h["etag"]  # a change is a new tag
    st, h, _ = fleet.request("GET", "/v1/nodes")
    assert "etag" in h
    st, h, _ = fleet.request("GET", "/v1/health")
    assert "etag" not in h and h["cache-control"] == "no-store"


def test_list_answers_match_the_openapi_document(fleet):
    doc = json.loads(fleet.request("GET", "/v1/openapi.json", token="")[2])
    resolver = jsonschema.RefResolver("", doc)
    for path in ("/v1/nodes", "/v1/vms", "/v1/plans", "/v1/audit"):
        op = doc["paths"][path]["get"]
        assert "head" in doc["paths"][path] and "304" in op["responses"], path
        names = {p["name"] for p in op["parameters"] if p["in"] == "query"}
        # every query parameter the document lists is taken, and nothing else is
        for name in names:
            st, h, body = fleet.request("GET", "%s?%s=%s" % (path, name, "zzz-not-valid"))
            assert st in (200, 400), (path, name, st)
            if st == 400:
                assert json.loads(body)["type"].endswith("/invalid-query"), body
        st, h, body = fleet.request("GET", path + "?not_a_parameter=1")
        assert_problem(st, h, body, 400, "unknown-query")
        schema = op["responses"]["200"]["content"]["application/json"]["schema"]
        st, h, body = fleet.request("GET", path)
        jsonschema.Draft202012Validator(schema, resolver=resolver).validate(json.loads(body))


def test_node_list_is_the_nodes_answers_with_any_name():
    """The list is written by hand (and cached); each entry must be what GET /v1/nodes/{id}
    answers, JSON-escaped as jansson escapes, whatever bytes a roster name holds."""
    odd = ['say "hi"\\', "tab\there\nnew", "\u00e9\u2713\U0001F600", "\u0001\u001f\u007f", "</script>"]
    extra = [{"id": "x%d" % i, "name": name, "role": "node", "mesh_address": "127.0.8.%d" % (i + 1)}
             for i, name in enumerate(odd)]
    with H.Fleetd(nodes=2) as f:
        f.write_roster(H.roster_doc(2, version=2, extra=extra))
        f.wait(lambda: f.json("GET", "/v1/nodes/x0")[0] == 200, what="roster reload")
        f.hb(1, avail=7000)
        f.send_raw("127.0.8.1", json.dumps(H.heartbeat("x0", 1)).encode())
        f.wait(lambda: f.node("x0")["state"] == "alive")
        f.hb(2, avail=5000)
        f.wait(lambda: f.node("n2")["state"] == "alive")
        _, lst = f.json("GET", "/v1/nodes", expect=200)
        names = {n["id"]: n["name"] for n in lst["nodes"]}
        assert [names["x%d" % i] for i in range(len(odd))] == odd
        for n in lst["nodes"]:
            one = f.node(n["id"])
            for k in ("heartbeat_age_ms",):
                n.pop(k), one.pop(k)
            assert n == one, n["id"]
        assert isinstance(lst["nodes"][0]["reserved_mib"], int)
        cpu = [n for n in lst["nodes"] if n["id"] == "n1"][0]["cpu_percent"]
        assert cpu == 3.5


def test_random_bytes_in_paths_queries_and_headers(fleet):
    """600 requests with random bytes (any of 0x01..0xff, valid UTF-8 or not, %-escaped or
    raw) in an id, a query name or value, or a header: never a 5xx, and every error a
    problem document valid against the schema."""
    import random
    rng = random.Random(9457)
    routes = [("GET", "/v1/nodes/"), ("GET", "/v1/vms/"), ("GET", "/v1/plans/"),
              ("POST", "/v1/vms/x/"), ("DELETE", "/v1/plans/"), ("GET", "/v1/nodes?"),
              ("GET", "/v1/audit?kind="), ("GET", "/v1/vms?node=")]
    pool = [bytes([b]) for b in range(0x21, 0x7f) if b not in b" ?#%/"] + \
        [bytes([b]) for b in range(0x80, 0x100)] + [b"\xc3\xa9", b"\xe2\x9c\x93", b"\xf0\x9f\x98\x80"]
    checked = 0
    for i in range(600):
        method, prefix = rng.choice(routes)
        junk = b"".join(rng.choice(pool) for _ in range(rng.randint(1, 80)))
        if rng.random() < 0.5:
            junk = b"".join(b"%%%02x" % c for c in junk)
        target = prefix.encode() + junk + (b"=1" if prefix.endswith("?") else b"")
        extra = b""
        if rng.random() < 0.2:
            extra = b"Content-Type: " + junk.replace(b"\r", b"").replace(b"\n", b"") + b"\r\n"
        head = (method.encode() + b" " + target + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                fleet.token.encode() + b"\r\n" + extra + b"Content-Length: 0\r\nConnection: close\r\n\r\n")
        st, h, body = raw_request(fleet.api_port, head)
        assert st < 500, (target, st, body[:200])
        if st >= 400:
            assert_problem(st, h, body, st)
            checked += 1
    assert checked > 500
    assert fleet.json("GET", "/v1/health")[0] == 200
