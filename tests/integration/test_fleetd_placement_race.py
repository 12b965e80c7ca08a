# ctest-labels: race
"""Placement under concurrent operators, over real UDP heartbeats and HTTP: three synthetic
nodes with room for exactly one 1024 MiB VM each (2048 MiB total, 512 MiB margin), each with a
fake node API (the harness's FakeNode: idempotent POST /v1/vms, GET /v1/inventory, both
carrying the node's creation counter). While the operators work, every node keeps sending
heartbeats with its pre-creation figures (nothing committed, the counter before any creation)
but the digest of its current inventory, so fleetd fetches inventories that already list the new
VMs: the window in which a listing used to release a reservation while the figures still said
"empty". Never two VMs on one node, whatever the order: operators that plan and confirm each,
all plans first then all confirms together, and re-plans after a 409."""
import threading
import time

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
        self.stop = threading.Event()
        self.sender = threading.Thread(target=self.beat_loop, daemon=True)

    def beat(self, i):
        node = self.nodes[i - 1]
        fig = node.figures()
        if self.stale:  # sampled before the creations: nothing committed, the old counter
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
