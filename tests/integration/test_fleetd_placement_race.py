# ctest-labels: race
"""Placement under concurrent operators, over real UDP heartbeats and HTTP: three synthetic
nodes with room for exactly one 1024 MiB VM each (2048 MiB total, 512 MiB margin), each with a
fake node API (the harness's FakeNode: idempotent POST /v1/vms, GET /v1/inventory, both
carrying the node's creation counter). While the operators work, every node keeps sending
heartbeats with its pre-creation figures (nothing committed, the counter before any creation)
but the digest of its current inventory, so fleetd fetches inventories that already list the new
VMs: the window in which a listing used to release a reservation while the figures still said
"empty". Never two VMs on one node, whatever the order: operators that plan and confirm each,
all plans first then all confirms together, and re-plans after a 409. And a resume racing
operators on a full node: a suspend freed n1's VM's memory, the operators plan into it while
its owner resumes it; exactly one of them gets it, whatever the order, and the other is told
why (409 insufficient-memory with the figures, or no node fits)."""
import json
import threading
import time

import jsonschema

import test_fleetd_harness as H

TOTAL, AVAIL, VM_MIB = 2048, 2000, 1024


def plan_body(entity):
    return {"entity": entity, "memory_mib": VM_MIB, "vcpus": 1, "image": "base",
            "vault_disk_mib": 64}


class Fleet:
    """fleetd, three fake node APIs and a thread sending stale heartbeats until stopped."""

    def __init__(self):
        self.f = H.Fleetd(nodes=3, settings={"safety_margin_mib": "512", "dispatch_backoff": "50ms",
                                             "heartbeat_interval": "2s", "suspect_after": "4s",
                                             "evict_after": "6s"})
        self.nodes = [H.FakeNode(H.node_address(i), self.f.node_api_port, "n%d" % i)
                      for i in (1, 2, 3)]
        self.pre = [n.creations for n in self.nodes]  # the counters before any creation
        self.stale = True
        self.frozen = None  # figures (committed, counter) the heartbeats keep sending, when set
        self.stop = threading.Event()
        self.sender = threading.Thread(target=self.beat_loop, daemon=True)

    def beat(self, i):
        node = self.nodes[i - 1]
        fig = node.figures()
        if self.frozen:  # sampled before: the figures and counter then, today's digest
            fig.update(committed=self.frozen[i - 1]["committed"],
                       creations=self.frozen[i - 1]["creations"])
        elif self.stale:  # sampled before the creations: nothing committed, the old counter
            fig.update(committed=0, creations=self.pre[i - 1])
        self.f.hb(i, avail=AVAIL, total=TOTAL, **fig)

    def beat_loop(self):
        while not self.stop.is_set():
            for i in (1, 2, 3):
                self.beat(i)
            time.sleep(0.03)

    def __enter__(self):
        self.f.start()
        for i in (1, 2, 3):
            self.beat(i)
        self.f.wait(lambda: all(self.f.node("n%d" % i)["state"] == "alive" for i in (1, 2, 3)),
                    what="three nodes alive")
        self.sender.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.sender.join()
        for n in self.nodes:
            n.shutdown()
            n.server_close()
        self.f.close()

    def plan(self, entity):
        return self.f.json("POST", "/v1/plans", plan_body(entity))

    def confirm(self, plan_id):
        return self.f.json("POST", "/v1/plans/%s/confirm" % plan_id)

    def vms_by_node(self):
        """Node id -> VM ids, from fleetd's record (VMs not failed) and from the nodes."""
        _, doc = self.f.json("GET", "/v1/vms", expect=200)
        fleet = {}
        for v in doc["vms"]:
            if v["status"] != "failed":
                fleet.setdefault(v["node_id"], []).append(v["id"])
        held = {}
        for n in self.nodes:
            with n.lock:
                if n.vms:
                    held[n.node_id] = sorted(n.vms)
        return fleet, held

    def check_one_per_node(self):
        fleet, held = self.vms_by_node()
        assert all(len(v) == 1 for v in fleet.values()), fleet
        assert all(len(v) == 1 for v in held.values()), held
        return fleet, held

    def wait_delivered(self, n):
        def delivered():
            _, held = self.vms_by_node()
            return sum(len(v) for v in held.values()) >= n
        self.f.wait(delivered, what="%d creations delivered" % n)
        # the nodes' inventories, listing the VMs, reach fleetd while the heartbeats stay stale
        self.f.wait(lambda: all(self.f.node("n%d" % i)["inventory"] == "ok" for i in (1, 2, 3)),
                    what="inventories reconciled")


def run_together(fns):
    barrier = threading.Barrier(len(fns))
    out = [None] * len(fns)

    def run(k):
        barrier.wait()
        out[k] = fns[k]()

    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def operator(fleet, entity, tries=8):
    """Plans and confirms, and plans again after a 409, until placed or no node fits."""
    outcomes = []
    for _ in range(tries):
        st, plan = fleet.plan(entity)
        if st == 422:
            outcomes.append("no-node-fits")
            return outcomes
        assert st == 201, (st, plan)
        st, doc = fleet.confirm(plan["id"])
        outcomes.append(st)
        if st == 202:  # accepted: the operation follows the creation
            return outcomes
        assert st == 409, (st, doc)
    return outcomes


def check_full(fleet):
    """Every node holds one VM; the reservations hold while the figures are stale; once the
    heartbeats reflect the creations they are released, and still no node fits."""
    fleet.wait_delivered(3)
    fleet_vms, held = fleet.check_one_per_node()
    assert sorted(fleet_vms) == sorted(held) == ["n1", "n2", "n3"]
    time.sleep(0.3)  # more stale heartbeats and inventories
    for i in (1, 2, 3):
        assert fleet.f.node("n%d" % i)["reserved_mib"] == VM_MIB
    st, doc = fleet.plan("late")
    assert st == 422 and doc["type"].endswith("no-node-fits"), doc
    fleet.stale = False
    fleet.f.wait(lambda: all(fleet.f.node("n%d" % i)["reserved_mib"] == 0 for i in (1, 2, 3)),
                 what="reservations released by heartbeats that reflect the creations")
    st, doc = fleet.plan("later")
    assert st == 422, doc
    fleet.check_one_per_node()


def test_four_operators_plan_and_confirm_at_once():
    for round_ in range(3):
        with Fleet() as fleet:
            outcomes = run_together([lambda e="op%d-%d" % (k, round_): operator(fleet, e)
                                     for k in range(4)])
            fleet.check_one_per_node()
            placed = [o for o in outcomes if o[-1] == 202]
            assert len(placed) == 3, outcomes
            assert sum(o[-1] == "no-node-fits" for o in outcomes) == 1, outcomes
            check_full(fleet)


def test_all_plans_first_then_confirms_together_then_replans():
    with Fleet() as fleet:
        plans = run_together([lambda e="op%d" % k: fleet.plan(e) for k in range(4)])
        assert all(st == 201 for st, _ in plans), plans
        confirms = run_together([lambda p=p: fleet.confirm(p["id"]) for _, p in plans])
        statuses = sorted(st for st, _ in confirms)
        # every plan chose from the same figures; confirmations re-check against reservations
        assert statuses.count(202) >= 1 and set(statuses) <= {202, 409}, confirms
        fleet.check_one_per_node()
        fleet.wait_delivered(statuses.count(202))
        fleet.check_one_per_node()
        # the refused operators plan again, together, while the heartbeats stay stale
        refused = ["op%d" % k for k, (st, _) in enumerate(confirms) if st == 409]
        outcomes = run_together([lambda e=e: operator(fleet, e) for e in refused])
        fleet.check_one_per_node()
        placed = statuses.count(202) + sum(o[-1] == 202 for o in outcomes)
        assert placed == 3, (confirms, outcomes)
        check_full(fleet)


def test_replan_after_409_while_a_listing_arrives():
    """One operator's confirm takes n1; a second one's plan for n1 was made before: 409. Its
    re-plan comes after n1's inventory lists the VM while n1's heartbeats still show it empty:
    the re-plan must not choose n1."""
    with Fleet() as fleet:
        (st1, p1), (st2, p2) = [fleet.plan("first"), fleet.plan("second")]
        assert st1 == st2 == 201 and p1["node_id"] == p2["node_id"] == "n1", (p1, p2)
        assert fleet.confirm(p1["id"])[0] == 202
        assert fleet.confirm(p2["id"])[0] == 409
        fleet.wait_delivered(1)
        st, p3 = fleet.plan("second")
        assert st == 201 and p3["node_id"] != "n1", p3
        n1 = [c for c in p3["candidates"] if c["node_id"] == "n1"][0]
        assert n1["verdict"] != "fits", n1
        assert fleet.confirm(p3["id"])[0] == 202
        fleet.check_one_per_node()


def fill_and_suspend(fleet, tag):
    """One VM on every node, figures that show them; then n1's VM suspended and figures that
    show its memory free (fleetd believes n1 has room for one VM again)."""
    fleet.stale = False
    placed = [operator(fleet, "%s-%d" % (tag, k)) for k in range(3)]
    assert all(o[-1] == 202 for o in placed), placed
    fleet.wait_delivered(3)
    fleet.f.wait(lambda: all(fleet.f.node("n%d" % i)["reserved_mib"] == 0 for i in (1, 2, 3)),
                 what="reservations released")
    vm = fleet.vms_by_node()[0]["n1"][0]
    st, op = fleet.f.verb(vm, "suspend", expect=202)
    assert op["state"] == "succeeded", op
    assert fleet.f.json("GET", "/v1/vms/" + vm)[1]["lifecycle"] == "suspended"
    fleet.f.wait(lambda: fleet.f.node("n1")["mem_committed_mib"] == 0,
                 what="n1's figures show the suspend")
    return vm


def holding(node):
    with node.lock:
        return sorted(v["id"] for v in node.vms.values() if H.holds(v))


def check_resume_race(fleet, vm, resume, outcomes):
    """Exactly one VM holds n1's room; the loser was told why; while n1's heartbeats still show
    the figures from before the race, its reservation holds it; then no node fits."""
    st, doc = resume
    if st == 202:  # accepted: the node's resume follows, as the operation's call
        assert fleet.f.finish(doc)["state"] == "succeeded", doc
    else:  # an operator's creation was accepted: the node gets it after the 202
        fleet.wait_delivered(4)
    n1 = holding(fleet.nodes[0])
    assert len(n1) == 1, (n1, resume, outcomes)
    placed = [o for o in outcomes if o[-1] == 202]
    if st == 202:  # accepted, its room reserved before the answer
        assert n1 == [vm] and not placed, (n1, outcomes)
    else:
        assert st == 409 and doc["type"].endswith("/insufficient-memory"), doc
        assert doc["needed_mib"] == VM_MIB and doc["safety_margin_mib"] == 512, doc
        assert doc["available_mib"] - VM_MIB < 512, doc
        assert doc["committed_mib"] == 0 and doc["reserved_mib"] + doc["available_mib"] == AVAIL, doc
        assert len(placed) == 1, outcomes
    time.sleep(0.3)  # stale heartbeats, inventories that list the resumed VM
    assert fleet.f.node("n1")["reserved_mib"] == VM_MIB
    assert fleet.plan("late")[0] == 422
    assert len(holding(fleet.nodes[0])) == 1
    fleet.frozen = None
    fleet.f.wait(lambda: fleet.f.node("n1")["reserved_mib"] == 0,
                 what="n1's reservation released by figures at its counter")
    assert fleet.plan("later")[0] == 422
    assert len(holding(fleet.nodes[0])) == 1


def test_resume_races_operators_on_a_full_node():
    for round_ in range(4):
        with Fleet() as fleet:
            vm = fill_and_suspend(fleet, "r%d" % round_)
            fleet.frozen = [n.figures() for n in fleet.nodes]  # from before the race
            resume = lambda: fleet.f.json("POST", "/v1/vms/%s/resume" % vm)
            ops = [lambda e="op%d-%d" % (k, round_): operator(fleet, e) for k in range(3)]
            if round_ % 2:  # the operators a moment ahead
                out = run_together(ops + [lambda: (time.sleep(0.005), resume())[1]])
            else:
                out = run_together([resume] + ops)
            res = out[-1] if round_ % 2 else out[0]
            outcomes = out[:-1] if round_ % 2 else out[1:]
            check_resume_race(fleet, vm, res, outcomes)


def test_resume_refused_when_a_confirm_took_the_room_and_taken_first_otherwise():
    with Fleet() as fleet:
        vm = fill_and_suspend(fleet, "a")
        fleet.frozen = [n.figures() for n in fleet.nodes]
        st, p = fleet.plan("taker")
        assert st == 201 and p["node_id"] == "n1", p
        st, taker = fleet.confirm(p["id"])
        assert st == 202, taker
        fleet.wait_delivered(4)
        st, doc = fleet.f.json("POST", "/v1/vms/%s/resume" % vm)
        assert st == 409 and doc["type"].endswith("/insufficient-memory"), doc
        api = json.loads(fleet.f.request("GET", "/v1/openapi.json", token="")[2])
        schema = api["paths"]["/v1/vms/{id}/resume"]["post"]["responses"]["409"]["content"][
            "application/problem+json"]["schema"]
        jsonschema.Draft202012Validator(schema, resolver=jsonschema.RefResolver("", api)) \
            .validate(doc)
        assert fleet.f.json("GET", "/v1/vms/" + vm)[1]["lifecycle"] == "suspended"
        assert holding(fleet.nodes[0]) == [taker["vm_id"]]
    with Fleet() as fleet:
        vm = fill_and_suspend(fleet, "b")
        fleet.frozen = [n.figures() for n in fleet.nodes]
        st, op = fleet.f.verb(vm, "resume", expect=202)
        assert op["state"] == "succeeded", op
        doc = fleet.f.json("GET", "/v1/vms/" + vm)[1]
        assert doc["lifecycle"] == "active" and doc["reserved"], doc
        st, doc = fleet.plan("taker")
        assert st == 422, doc  # n1's room is the resumed VM's until its figures show it
        assert holding(fleet.nodes[0]) == [vm]
