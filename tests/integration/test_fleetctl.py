"""fleetctl against a real fleetd: tokens on the state dir, tables and --json, plan with y/N and
--yes, lifecycle verbs refused with the API's reason, audit and audit verify (and a rewritten
history caught), exit statuses."""
import json
import sqlite3

import test_fleetd_harness as H


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
        r = f.ctl(*plan_args("acme"), input="n\n")
        assert "CHOSEN" in r.stdout and "not confirmed" in r.stdout
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
