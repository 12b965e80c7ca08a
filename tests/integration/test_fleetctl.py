# ctest-labels: golden
"""fleetctl against a real fleetd: tokens on the state dir (created, last used, expiry), tables,
CSV, JSON and YAML (the API's objects; golden files in tests/golden/fleetctl/), column selection,
filters, plan with y/N and --yes, lifecycle verbs refused with the API's reason, problem objects
under -f json, audit and audit verify (and a rewritten history caught), exit statuses."""
import csv
import io
import json
import os
import sqlite3
import time

import yaml

import test_fleetd_harness as H

GOLDEN = os.path.join(H.SOURCE, "tests", "golden", "fleetctl")
# Names YAML would misread without quotes, and characters it must escape.
TRICKY = ['laptop: "a" #1', "yes", "- x", "2026-12-01", "0x1F", "~", "null", "Zoë 🚀",
          "tab\there", "line\u2028sep", "\u0085next", "C1 \u0090", "back\\slash", " padded "]


def check_golden(name, text):
    path = os.path.join(GOLDEN, name)
    if os.environ.get("TOTEBOX_UPDATE_GOLDEN") == "1":
        os.makedirs(GOLDEN, exist_ok=True)
        with open(path, "w", newline="") as f:
            f.write(text)
    with open(path, newline="") as f:
        want = f.read()
    assert text == want, "fleetctl output differs from %s:\n%s" % (path, text)


def hb_cpu(f, i, cpu, avail=16000, total=32768):
    node = "n%d" % i
    f.seq[node] = f.seq.get(node, 0) + 1
    doc = H.heartbeat(node, f.seq[node], avail=avail, total=total)
    doc["cpu_percent"] = cpu
    f.send_raw(H.node_address(i), json.dumps(doc).encode())


def without_ages(o):
    """An answer without what changes between two calls (ages, the inventory fetch's state)."""
    if isinstance(o, dict):
        return {k: without_ages(v) for k, v in o.items()
                if not k.endswith("_age_ms") and k not in ("inventory", "uptime_ms")}
    if isinstance(o, list):
        return [without_ages(v) for v in o]
    return o


def plan_args(entity):
    return ["plan", "--entity", entity, "--memory", "1024", "--vcpus", "1", "--image", "base",
            "--disk", "64"]


def test_fleetctl_end_to_end():
    with H.Fleetd(nodes=2) as f:
        f.hb(1, avail=8000)
        f.hb(2, avail=9000)
        f.wait(lambda: f.node("n2")["state"] == "alive")
        out = f.ctl("nodes").stdout
        assert out.splitlines()[0].split()[:2] == ["ID", "STATE"]
        assert any(line.split()[:2] == ["n2", "alive"] for line in out.splitlines())
        nodes = json.loads(f.ctl("--json", "nodes").stdout)["nodes"]
        assert {n["id"] for n in nodes} == {"ctl", "n1", "n2"}
        assert json.loads(f.ctl("nodes", "n1", "--json").stdout)["id"] == "n1"

        # "n" keeps the plan unconfirmed; nothing is created
        r = f.ctl(*plan_args("acme"), input="n\n", check=False)
        assert "CHOSEN" in r.stdout and "not confirmed" in r.stdout
        assert r.returncode == 1  # declined: nothing created, and a script sees it
        assert json.loads(f.ctl("--json", "vms").stdout)["vms"] == []
        # "y" confirms; --no-wait: no node API answers here, the creation stays running
        r = f.ctl(*plan_args("acme"), "--no-wait", input="y\n")
        assert "recorded; creating it on its node" in r.stdout and "is running" in r.stdout, r
        # --yes for scripts: the operation, as JSON
        r = f.ctl("--yes", "--json", "--no-wait", *plan_args("beta"))
        op = json.loads(r.stdout)
        assert op["kind"] == "create" and op["state"] == "running", op
        assert "running" in f.ctl("operations", op["id"]).stdout
        vm = f.json("GET", "/v1/vms/" + op["vm_id"], expect=200)[1]
        assert vm["entity"] == "beta" and vm["status"] == "creating"
        vms = json.loads(f.ctl("vms", "--json").stdout)["vms"]
        assert sorted(v["entity"] for v in vms) == ["acme", "beta"]
        assert "creating" in f.ctl("vms").stdout

        # refusals carry the API's reason and exit 1
        r = f.ctl(*plan_args("acme"), "--yes", check=False)
        assert r.returncode == 1 and "already has Totebox VM" in r.stderr
        r = f.ctl("suspend", vm["id"], check=False)
        assert r.returncode == 1 and "not created yet" in r.stderr
        r = f.ctl("verify", vm["id"], check=False)
        assert r.returncode == 1 and "not created yet" in r.stderr
        r = f.ctl("verify", "Not_An_Id", check=False)
        assert r.returncode == 1 and "is not a VM id" in r.stderr
        assert "verify VM" in f.ctl("--help", check=False).stdout + f.ctl("--help", check=False).stderr
        r = f.ctl("resume", "nope", check=False)
        assert r.returncode == 1 and "no VM" in r.stderr
        r = f.ctl("confirm", "0" * 32, check=False)
        assert r.returncode == 1
        r = f.ctl("bogus", check=False)
        assert r.returncode == 2
        r = f.ctl("nodes", token=False, check=False)
        assert r.returncode == 1 and "401" in r.stderr

        plan = json.loads(f.ctl("--json", *plan_args("gamma")).stdout)
        assert "dropped" in f.ctl("drop", plan["id"]).stdout

        assert "fleet:" in f.ctl("health").stdout
        assert json.loads(f.ctl("roster").stdout)["fleet_id"] == "f1"
        audit = f.ctl("audit", "--kind", "vm.confirmed").stdout
        assert audit.count("vm.confirmed") == 2
        assert "intact" in f.ctl("audit", "verify").stdout

        # tokens: list, revoke
        f.ctl("token", "create", "robot")
        lst = json.loads(f.ctl("--json", "token", "list").stdout)
        assert {t["name"] for t in lst} == {"tester", "robot"}
        assert f.ctl("token", "create", "robot", check=False).returncode == 1
        f.ctl("token", "revoke", "robot")
        assert f.ctl("token", "revoke", "robot", check=False).returncode == 1


def test_fleetctl_and_fleetd_share_the_audit_chain():
    with H.Fleetd(nodes=1) as f:
        f.hb(1)
        f.wait(lambda: f.node("n1")["state"] == "alive")
        f.ctl("token", "create", "other")  # appended by fleetctl's own process
        _, plan = f.json("POST", "/v1/plans", {"entity": "acme", "memory_mib": 1024, "vcpus": 1,
                                                "image": "base", "vault_disk_mib": 64}, expect=201)
        f.ctl("token", "revoke", "other")
        f.json("DELETE", "/v1/plans/" + plan["id"], expect=200)
        kinds = [e["kind"] for e in f.audit()]
        assert kinds[-4:] == ["token.created", "plan.created", "token.revoked", "plan.dropped"]
        assert "intact" in f.ctl("audit", "verify").stdout


def test_audit_verify_catches_rewrite():
    f = H.Fleetd(nodes=1)
    try:
        f.start()
        f.hb(1)
        f.wait(lambda: f.node("n1")["state"] == "alive")
        f.stop()
        db = sqlite3.connect(f.state_dir + "/fleetd.db")
        db.executescript("DROP TRIGGER audit_no_update;"
                         "UPDATE audit SET actor='someone-else' WHERE seq=2;")
        db.close()
        r = f.ctl("audit", "verify", check=False)
        assert r.returncode == 1 and "entry 2" in r.stderr
    finally:
        f.close()


def test_state_dir_missing():
    f = H.Fleetd(nodes=1, auth=False)
    try:
        f.state_dir = f.dir + "/nothing-here"
        r = f.ctl("audit", "verify", check=False)
        assert r.returncode == 1 and "no fleetd state" in r.stderr
    finally:
        f.close()


def tricky_fleetd():
    f = H.Fleetd(nodes=2)
    extra = [{"id": "odd%d" % i, "name": name, "role": "node", "mesh_address": "127.9.0.%d" % (i + 1)}
             for i, name in enumerate(TRICKY)]
    f.write_roster(H.roster_doc(2, extra=extra))
    return f


def test_output_formats_and_golden_files():
    with tricky_fleetd() as f:
        hb_cpu(f, 1, 37.5, avail=8000, total=16384)
        hb_cpu(f, 2, 2.4, avail=9000, total=32768)
        f.wait(lambda: f.node("n2")["state"] == "alive" and f.node("n1")["state"] == "alive")
        cols = "id,role,state,cpu,ram,available,reserved,vms,address"
        check_golden("nodes.table", f.ctl("nodes", "-c", cols).stdout)
        check_golden("nodes.csv", f.ctl("nodes", "-f", "csv", "-c", cols).stdout)
        check_golden("node-unseen.yaml", f.ctl("nodes", "odd0", "-f", "yaml").stdout)
        check_golden("roster.yaml", f.ctl("-f", "yaml", "roster").stdout)
        check_golden("roster.json", f.ctl("-f", "json", "roster").stdout)

        # the default table: CPU rounded, total RAM
        rows = [line.split() for line in f.ctl("nodes").stdout.splitlines()]
        head = rows[0]
        assert head[:6] == ["ID", "STATE", "CPU", "RAM_MIB", "AVAILABLE_MIB", "RESERVED_MIB"]
        n1 = next(r for r in rows if r[0] == "n1")
        assert n1[2] == "38%" and n1[3] == "16384"
        assert next(r for r in rows if r[0] == "n2")[2] == "2%"

        # YAML and JSON are the same API objects; the tricky names survive both
        for cmd in (["nodes"], ["roster"], ["health"], ["vms"], ["audit"]):
            j = json.loads(f.ctl("-f", "json", *cmd).stdout)
            y = yaml.safe_load(f.ctl("-f", "yaml", *cmd).stdout)
            assert without_ages(y) == without_ages(j), cmd
        names = {n["id"]: n["name"] for n in yaml.safe_load(f.ctl("-f", "yaml", "nodes").stdout)["nodes"]}
        assert [names["odd%d" % i] for i in range(len(TRICKY))] == TRICKY

        # CSV: RFC 4180 quoting, one row per node, names as they are
        table = list(csv.reader(io.StringIO(f.ctl("-f", "csv", "-c", "id,name", "nodes").stdout, newline="")))
        assert table[0] == ["ID", "NAME"]
        assert {r[0]: r[1] for r in table[1:]}["odd0"] == TRICKY[0]
        assert len(table) == 1 + 3 + len(TRICKY)

        # column selection: order as asked, case-insensitive; an unknown name lists the columns
        assert f.ctl("nodes", "-c", "STATE,id").stdout.splitlines()[0].split() == ["STATE", "ID"]
        r = f.ctl("nodes", "-c", "id,bogus", check=False)
        assert r.returncode == 2 and "no column 'bogus'" in r.stderr and "address" in r.stderr
        r = f.ctl("nodes", "-f", "xml", check=False)
        assert r.returncode == 2 and "not one of" in r.stderr


def test_filters_map_to_the_list_filters():
    with H.Fleetd(nodes=3) as f:
        f.hb(1, avail=8000)
        f.hb(2, avail=9000)
        f.wait(lambda: f.node("n2")["state"] == "alive" and f.node("n1")["state"] == "alive")
        ids = [line.split()[0] for line in f.ctl("nodes", "state=alive").stdout.splitlines()[1:]]
        assert ids == ["n1", "n2"]
        ids = [line.split()[0] for line in f.ctl("nodes", "state=unseen").stdout.splitlines()[1:]]
        assert ids == ["ctl", "n3"]
        assert [n["id"] for n in json.loads(f.ctl("-f", "json", "nodes", "role=cloud").stdout)["nodes"]] == ["ctl"]
        f.ctl("--yes", "--no-wait", *plan_args("acme"))  # placed on n2 (most RAM)
        f.hb(2, avail=9000)
        f.ctl("--yes", "--no-wait", *plan_args("beta"))
        vms = json.loads(f.ctl("-f", "json", "vms").stdout)["vms"]
        by_node = {v["entity"]: v["node_id"] for v in vms}
        for node in ("n1", "n2"):
            listed = json.loads(f.ctl("-f", "json", "vms", "node=" + node).stdout)["vms"]
            assert sorted(v["entity"] for v in listed) == sorted(e for e, n in by_node.items() if n == node)
        out = f.ctl("vms", "entity=beta", "-c", "entity").stdout.split()
        assert out == ["ENTITY", "beta"]
        # a filter the API does not have, a bad value (the API's own 400), a filter with an id
        r = f.ctl("nodes", "colour=red", check=False)
        assert r.returncode == 2 and "cannot filter by 'colour'" in r.stderr and "state=" in r.stderr
        r = f.ctl("nodes", "state=sleepy", check=False)
        assert r.returncode == 1 and "400" in r.stderr
        r = f.ctl("nodes", "n1", "state=alive", check=False)
        assert r.returncode == 2
        # a value with URL metacharacters goes as one value, not as more query parameters
        r = f.ctl("-f", "json", "vms", "entity=a&limit=1", check=False)
        assert r.returncode in (0, 1)
        if r.returncode == 0:
            assert json.loads(r.stdout)["vms"] == []


def test_errors_are_problem_objects_under_json():
    with H.Fleetd(nodes=1) as f:
        r = f.ctl("-f", "json", "vms", "nope", check=False)
        p = json.loads(r.stdout)
        assert r.returncode == 1 and p["status"] == 404 and p["title"] and r.stderr == ""
        H_validate(p)
        r = f.ctl("-f", "yaml", "nodes", token=False, check=False)
        p = yaml.safe_load(r.stdout)
        assert r.returncode == 1 and p["status"] == 401
        r = f.ctl("-f", "json", "--url", "http://127.0.0.1:%d" % H.free_port(), "nodes", check=False)
        p = json.loads(r.stdout)
        assert r.returncode == 3 and p["title"] == "fleetd unreachable"
        r = f.ctl("--version")
        assert r.stdout.startswith("fleetctl ") and r.stdout.split()[1][0].isdigit()


def H_validate(problem):
    import harness
    harness.validate(problem, "problem.schema.json")


def test_token_times_and_expiry():
    with H.Fleetd(nodes=1) as f:
        t0 = time.time()
        lst = json.loads(f.ctl("-f", "json", "token", "list").stdout)
        assert lst[0]["name"] == "tester" and lst[0]["last_used_ms"] is None
        f.ctl("nodes")
        row = next(l.split() for l in f.ctl("token", "list").stdout.splitlines() if l.startswith("tester"))
        head = f.ctl("token", "list").stdout.splitlines()[0].split()
        assert head == ["NAME", "STATE", "CREATED", "LAST_USED", "EXPIRES"]
        assert row[1] == "live" and row[2].endswith("Z") and row[3] != "never" and row[4] == "never"
        used = json.loads(f.ctl("-f", "json", "token", "list").stdout)[0]["last_used_ms"]
        assert abs(used / 1000 - t0) < 60

        made = json.loads(f.ctl("-f", "json", "token", "create", "robot", "--expires", "30d").stdout)
        exp = time.mktime(time.strptime(made["expires_at"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
        assert abs(exp - (t0 + 30 * 86400)) < 120
        st, _ = f.json("GET", "/v1/nodes", token=made["token"])
        assert st == 200
        # the adversary: the clock passes the expiry (the row says so); the token is refused
        db = sqlite3.connect(f.state_dir + "/fleetd.db")
        db.execute("UPDATE tokens SET expires_ms = ? WHERE name = 'robot'", (int(time.time() * 1000) - 1,))
        db.commit()
        db.close()
        st, h, body = f.request("GET", "/v1/nodes", token=made["token"])
        p = json.loads(body)
        assert st == 401 and h["content-type"] == "application/problem+json" and "expired" in p["detail"]
        assert "robot" in f.ctl("token", "list").stdout and "expired" in f.ctl("token", "list").stdout
        # a short one expires by itself
        short = json.loads(f.ctl("-f", "json", "token", "create", "brief", "--expires", "1s").stdout)
        time.sleep(1.2)
        assert f.request("GET", "/v1/nodes", token=short["token"])[0] == 401
        for bad in ("30", "0d", "-1d", "30x", "99999w", "d"):
            r = f.ctl("token", "create", "x" + str(len(bad)), "--expires", bad, check=False)
            assert r.returncode == 2 and "not a duration" in r.stderr, bad
