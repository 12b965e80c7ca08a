"""Crash safety of the audit record: 100 plan+confirm cycles against a node-API stub, fleetd
killed with SIGKILL at a random moment of each (while it plans, confirms, dispatches or records
the outcome) and restarted. After every kill the database as the crash left it, and after
every restart the live one, must hold every state change with its audit entry: a plan row has
its plan.created (a dropped one its plan.dropped), a VM row its vm.confirmed, an active VM one
vm.created, a failed VM its vm.failed, a VM's stored lifecycle is the last one audited (some
cycles suspend or resume an earlier VM), and no vm.created names a VM that is not active. No VM is lost (every answered
confirmation is there) or duplicated (one request id per VM on the node, each VM held once),
and `fleetctl audit verify` says the chain is intact."""
import json
import os
import random
import signal
import sqlite3
import threading
import time

import test_fleetd_harness as H

CYCLES = 100


def check_db(path):
    """The invariants, read in one snapshot; returns (vms, plans) as {id: status/state}."""
    db = sqlite3.connect(path, timeout=10)
    try:
        db.execute("BEGIN")
        rows = list(db.execute("SELECT id, status, lifecycle FROM vms"))
        plans = dict(db.execute("SELECT id, state FROM plans"))
        audit, last_lc = {}, {}
        for kind, subject, detail in db.execute("SELECT kind, subject, detail FROM audit"
                                                " ORDER BY seq"):
            audit.setdefault(kind, []).append(subject)
            if kind == "vm.lifecycle":
                last_lc[subject] = json.loads(detail)["lifecycle"]
        db.execute("COMMIT")
    finally:
        db.close()
    created = audit.get("vm.created", [])
    for pid, state in plans.items():
        assert pid in audit.get("plan.created", []), "plan %s has no plan.created" % pid
        if state == "dropped":
            assert pid in audit.get("plan.dropped", []), "plan %s has no plan.dropped" % pid
    vms = {vid: status for vid, status, _ in rows}
    for vid, _, lifecycle in rows:  # the stored lifecycle is the last one audited
        assert lifecycle == last_lc.get(vid, "active"), "VM %s is %s, audited %s" % (
            vid, lifecycle, last_lc.get(vid))
    for vid, status in vms.items():
        assert vid in audit.get("vm.confirmed", []), "VM %s has no vm.confirmed" % vid
        if status == "active":
            assert created.count(vid) == 1, "VM %s is active with %d vm.created" % (
                vid, created.count(vid))
        if status == "failed":
            assert vid in audit.get("vm.failed", []), "VM %s failed with no vm.failed" % vid
    for vid in created:
        assert vms.get(vid) == "active", "vm.created for VM %s, which is %s" % (vid, vms.get(vid))
    return vms, plans


class AnsweringNode(H.FakeNode):
    """A FakeNode that sets self.answered once it has answered a creation: the kill can then
    land in the moments where fleetd records the outcome."""

    def __init__(self, *a):
        self.answered = threading.Event()
        super().__init__(*a)

    def finish_request(self, request, client_address):
        super().finish_request(request, client_address)
        self.answered.set()


def test_kill9_keeps_every_state_change_with_its_audit_entry():
    f = H.Fleetd(nodes=1, settings={"dispatch_backoff": "20ms", "dispatch_backoff_max": "100ms",
                                    "dispatch_attempts": "1000"})
    node = AnsweringNode(H.node_address(1), f.node_api_port, "n1")
    db_path = os.path.join(f.state_dir, "fleetd.db")
    rng = random.Random(int(os.environ.get("TOTEBOX_SEED", "13")))
    answered_plans, answered_vms = set(), {}  # what fleetd answered before it died
    dropped = set()
    seq = [0]
    stats = {"creating at a kill": 0}

    def beat():
        seq[0] += 1
        f.hb(1, seq=seq[0], avail=10000000, total=20000000, digest=node.digest())

    def plan(entity):
        st, doc = f.json("POST", "/v1/plans", {"entity": entity, "memory_mib": 64, "vcpus": 1,
                                                "image": "base", "vault_disk_mib": 16})
        return doc["id"] if st == 201 else None

    def cycle(i, out, verb_on):
        """A plan and its confirmation; every third cycle also a plan dropped, every fourth a
        lifecycle verb on an earlier VM."""
        try:
            if verb_on:
                f.json("POST", "/v1/vms/%s/%s" % verb_on)
            if i % 3 == 0:
                pid = plan("drop-%d" % i)
                if pid:
                    out["dropped"] = pid
                    f.json("DELETE", "/v1/plans/" + pid)
            pid = plan("e%d" % i)
            if not pid:
                return
            out["plan"] = pid
            st, op = f.json("POST", "/v1/plans/%s/confirm" % pid)
            if st == 202:  # the operation names the VM recorded
                out["vm"] = op["vm_id"]
        except (OSError, ValueError):
            pass  # killed mid-call

    try:
        f.start()
        beat()
        f.wait(lambda: f.node("n1")["state"] == "alive")
        for i in range(CYCLES):
            out = {}
            verb_on = None
            if i % 4 == 1 and answered_vms:
                verb_on = (rng.choice(sorted(answered_vms.values())),
                           rng.choice(("suspend", "resume")))
            t = threading.Thread(target=cycle, args=(i, out, verb_on))
            node.answered.clear()
            t.start()
            if i % 2:  # anywhere in the cycle: planning, confirming, dispatching
                time.sleep(rng.uniform(0, 0.015))
            else:  # just after the node answered: while fleetd records the outcome
                node.answered.wait(2)
                time.sleep(rng.uniform(0, 0.002))
            f.stop(signal.SIGKILL)
            t.join()
            if "plan" in out:
                answered_plans.add(out["plan"])
            if "dropped" in out:
                dropped.add(out["dropped"])
            if "vm" in out:
                answered_vms[out["plan"]] = out["vm"]
            vms, plans = check_db(db_path)  # as the crash left it
            stats["creating at a kill"] += sum(1 for s in vms.values() if s == "creating")
            assert answered_plans <= set(plans), answered_plans - set(plans)
            assert set(answered_vms.values()) <= set(vms)
            f.start()
            beat()
            f.wait(lambda: f.node("n1")["state"] == "alive", what="alive after restart")
            check_db(db_path)  # live, while fleetd dispatches what was in flight
        # what was confirmed is created, once; nothing was created that fleetd does not know
        for pid in answered_plans:
            st, doc = f.json("POST", "/v1/plans/%s/confirm" % pid)
            assert st == 202, doc
            assert answered_vms.setdefault(pid, doc["vm_id"]) == doc["vm_id"]

        def all_active():
            beat()
            vms, _ = check_db(db_path)
            return all(s == "active" for s in vms.values()) and vms
        ids = sorted(f.wait(all_active, timeout=60, what="all VMs active"))
        assert ids == sorted(answered_vms.values())
        for vid in ids:  # and fleetd shows what it recorded
            assert f.json("GET", "/v1/vms/" + vid, expect=200)[1]["status"] == "active"
        with node.lock:
            by_vm = {}
            for vm_id, req in node.posts:
                by_vm.setdefault(vm_id, set()).add(req)
            assert all(len(r) == 1 for r in by_vm.values()), by_vm
            assert sorted(node.vms) == sorted(ids)
        assert "intact" in f.ctl("audit", "verify").stdout
        kinds = {}
        db = sqlite3.connect(db_path)
        for kind, n in db.execute("SELECT kind, count(*) FROM audit GROUP BY kind"):
            kinds[kind] = n
        db.close()
        print("%d cycles: %d plans and %d VMs answered, %d VMs in all, %d plans dropped; %s; "
              "audit %s" % (CYCLES, len(answered_plans), len(answered_vms), len(ids),
                            len(dropped), stats, kinds))
    finally:
        node.shutdown()
        node.server_close()
        f.close()
