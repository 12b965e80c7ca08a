"""Durable state: a restart keeps tokens, plans, VMs and the audit chain, and rebuilds soft
state from heartbeats within one interval; kill -9 at random moments during confirmations loses
no confirmed VM and creates none twice (a fake node API on 127.0.1.1 counts creations by
request id, idempotently, as the node API contract says)."""
import json
import random
import signal
import threading
import time

import test_fleetd_harness as H


def test_restart_keeps_state_and_rebuilds_soft_state():
    f = H.Fleetd(nodes=2, settings={"heartbeat_interval": "1s", "suspect_after": "2s",
                                    "evict_after": "3s"})
    try:
        f.start()
        f.hb(1, avail=16000)
        f.wait(lambda: f.node("n1")["state"] == "alive")
        _, plan = f.json("POST", "/v1/plans", {"entity": "acme", "memory_mib": 1024, "vcpus": 1,
                                                "image": "base", "vault_disk_mib": 64}, expect=201)
        _, vm = f.confirm_vm(plan["id"])
        n_audit = len(f.audit())
        f.stop()
        f.start()
        st, vms = f.json("GET", "/v1/vms", expect=200)  # the token survived too
        assert [v["id"] for v in vms["vms"]] == [vm["id"]]
        assert f.node("n1")["state"] == "unseen"
        assert f.node("n1")["reserved_mib"] == 1024  # the creation is still in flight
        t0 = time.time()
        f.hb(1, avail=16000)
        f.wait(lambda: f.node("n1")["state"] == "alive", timeout=1.0, what="alive after restart")
        assert time.time() - t0 < 1.0  # within one heartbeat interval
        assert len(f.audit()) > n_audit
        assert "intact" in f.ctl("audit", "verify").stdout
        f.json("POST", "/v1/plans/%s/confirm" % plan["id"], expect=202)
    finally:
        f.close()


def test_kill9_during_confirm_loses_nothing_and_doubles_nothing():
    f = H.Fleetd(nodes=1, settings={"dispatch_backoff": "50ms", "dispatch_backoff_max": "200ms",
                                    "dispatch_attempts": "100"})
    node = H.FakeNode(H.node_address(1), f.node_api_port, "n1")
    rng = random.Random(7)
    answered = {}  # plan id -> vm id, for every confirm that got an answer
    try:
        f.start()
        seq = [0]

        def beat():
            seq[0] += 1
            f.hb(1, seq=seq[0], avail=1000000, total=2000000, **node.figures())

        beat()
        f.wait(lambda: f.node("n1")["state"] == "alive")
        plans = []
        for i in range(12):
            _, p = f.json("POST", "/v1/plans", {"entity": "e%d" % i, "memory_mib": 256,
                                                 "vcpus": 1, "image": "base",
                                                 "vault_disk_mib": 64}, expect=201)
            plans.append(p["id"])
        for i, pid in enumerate(plans):
            result = {}

            def confirm():
                try:
                    st, doc = f.json("POST", "/v1/plans/%s/confirm" % pid)
                    result["st"], result["doc"] = st, doc
                except OSError:
                    result["st"] = None

            t = threading.Thread(target=confirm)
            t.start()
            time.sleep(rng.uniform(0, 0.02))
            f.stop(signal.SIGKILL)
            t.join()
            if result.get("st") == 202:  # the operation names the VM
                answered[pid] = result["doc"]["vm_id"]
            f.start()
            beat()
            f.wait(lambda: f.node("n1")["state"] == "alive", what="alive after restart")
            if i % 3 == 0:  # sometimes the operator repeats the confirm after the crash
                st, doc = f.json("POST", "/v1/plans/%s/confirm" % pid)
                assert st == 202, doc
                assert answered.setdefault(pid, doc["vm_id"]) == doc["vm_id"]
        # every plan that was answered is there, once; confirm the rest now
        for pid in plans:
            st, doc = f.json("POST", "/v1/plans/%s/confirm" % pid)
            assert st == 202, doc
            assert answered.setdefault(pid, doc["vm_id"]) == doc["vm_id"]

        def all_active():
            beat()
            _, vms = f.json("GET", "/v1/vms", expect=200)
            return all(v["status"] == "active" for v in vms["vms"]) and vms["vms"]
        vms = f.wait(all_active, timeout=20, what="all VMs active")
        assert sorted(v["id"] for v in vms) == sorted(answered.values())
        assert len(vms) == len(plans)
        # none created twice: one request id per VM, and the node holds each once
        with node.lock:
            by_vm = {}
            for vm_id, req in node.posts:
                by_vm.setdefault(vm_id, set()).add(req)
            assert all(len(reqs) == 1 for reqs in by_vm.values()), by_vm
            assert sorted(node.vms) == sorted(answered.values())
        assert "intact" in f.ctl("audit", "verify").stdout
        # the inventory reconciles: nothing unknown, nothing missing, reservations released
        f.wait(lambda: (beat() or True) and f.node("n1")["reserved_mib"] == 0 and
               f.node("n1")["inventory"] == "ok", what="reconciled")
        assert f.node("n1")["unknown_vms"] == []
    finally:
        node.shutdown()
        node.server_close()
        f.close()
