"""Upgrade: fleetd reads heartbeats one protocol version either side of its own
(common/heartbeat.h, docs/contracts.md "Protocol versions"). A heartbeat of version N+1 with
fields this fleetd does not know (a newer vmhost) is accepted by the fields it knows and counted
as newer; one of the previous release's vmhost (version 1 without boot or disk_free_mib) is
accepted as before; one two steps away is never read: it is counted as a version drop in
/metrics and /v1/health, and logged as a warning that names the reason."""
import json

import test_fleetd_harness as H


def send(f, i, doc):
    f.send_raw(H.node_address(i), json.dumps(doc).encode())


def metric(f, name):
    st, h, body = f.request("GET", "/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            if line.split(" ")[0] == name:
                return float(line.split(" ")[1])
    raise AssertionError(name + " not in /metrics")


def test_heartbeat_versions_one_step_either_side():
    with H.Fleetd(nodes=3) as f:
        # N-1: the previous release's vmhost (no boot, no disk_free_mib)
        older = H.heartbeat("n1", 1)
        assert "boot" not in older and "disk_free_mib" not in older
        send(f, 1, older)
        # N+1: a newer vmhost, with fields this fleetd does not know
        newer = dict(H.heartbeat("n2", 1, avail=12345), v=2, gpu_percent=3, numa=[1, 2])
        send(f, 2, newer)
        f.wait(lambda: f.node("n1")["state"] == "alive" and f.node("n2")["state"] == "alive",
               what="n1 and n2 alive")
        assert f.node("n2")["mem_available_mib"] == 12345
        # N+2: refused whatever it holds, and not as malformed
        send(f, 3, dict(H.heartbeat("n3", 1), v=3))
        f.wait(lambda: metric(f, 'totebox_fleetd_heartbeats_dropped_total{reason="version"}')
               == 1, what="the version drop counted")
        assert metric(f, 'totebox_fleetd_heartbeats_dropped_total{reason="malformed"}') == 0
        assert metric(f, "totebox_fleetd_heartbeats_newer_version_total") == 1
        assert f.node("n3")["state"] == "unseen"
        _, health = f.json("GET", "/v1/health", expect=200)
        assert health["heartbeat_protocol"] == {"version": 1, "reads": [1, 2],
                                                "newer_accepted": 1, "refused": 1}
        # a version-1 heartbeat with an unknown field stays malformed: strict at our version
        send(f, 1, dict(H.heartbeat("n1", 2), gpu_percent=3))
        f.wait(lambda: metric(f, 'totebox_fleetd_heartbeats_dropped_total{reason="malformed"}')
               == 1, what="the malformed drop counted")
        log = f.read_log()
        assert "heartbeat version 3 is outside the versions 1..2 this build reads" in log, log
        assert "WARN" in log.split("heartbeat version 3")[0].splitlines()[-1].upper()


class VersionedNode(H.FakeNode):
    """A node API whose inventory carries a protocol version and a field fleetd does not know."""
    version = 2

    def __init__(self, *a):
        super().__init__(*a)
        self.RequestHandlerClass = VersionedHandler


class VersionedHandler(H.FakeNodeHandler):
    def do_GET(self):
        s = self.server
        self.answer(200, {"v": s.version, "node": s.node_id, "digest": s.digest(), "vms": [],
                          "creations": s.creations, "gpus": [{"model": "x"}]})


def test_inventory_versions():
    with H.Fleetd(nodes=2) as f:
        newer = VersionedNode(H.node_address(1), f.node_api_port, "n1")
        far = VersionedNode(H.node_address(2), f.node_api_port, "n2")
        far.version = 3
        try:
            def beat():
                for i, n in ((1, newer), (2, far)):
                    f.hb(i, **n.figures())
                return True

            f.wait(lambda: beat() and f.node("n1")["inventory"] == "ok", what="n1's inventory")
            f.wait(lambda: beat() and "inventory version 3" in f.read_log(),
                   what="n2's inventory refused")
            assert f.node("n2")["inventory"] != "ok"
            log = f.read_log()
            assert "inventory version 3 is outside the versions 1..2 this fleetd reads" in log
            line = [x for x in log.splitlines() if "inventory version 3" in x][0]
            assert "warn" in line.lower(), line
            assert "inventory version 2" not in log
        finally:
            for n in (newer, far):
                n.shutdown()
                n.server_close()
