#!/usr/bin/python3
"""Benchmark: from a confirmation's answer to the healthy node's API receiving the creation,
with another node wedged (its API answers after 5 s, fleetd's node_api_timeout is 3 s, a call
to it in flight almost always; each confirmation at a random moment), beside the peer: the same fleetd and stubs with no node wedged. Real
fleetd, node-API stubs on loopback (tests/integration/test_fleetd_dispatch.py's). Prints both
medians and maxima.

usage: tests/bench/bench_fleetd_dispatch.py [--runs N]   (env TOTEBOX_BUILD_DIR as for the tests)
"""
import argparse
import os
import random
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import test_fleetd_harness as H  # noqa: E402
from test_fleetd_dispatch import PLAN, Stub  # noqa: E402


def measure(runs, wedged):
    f = H.Fleetd(nodes=2, settings={"node_api_timeout": "3s", "dispatch_backoff": "100ms",
                                    "dispatch_backoff_max": "100ms", "dispatch_attempts": "1000",
                                    "log_level": os.environ.get("BENCH_LOG", "warn")})
    got = {}
    in_flight = threading.Event()

    def slow(req):
        in_flight.set()
        if wedged:
            time.sleep(5)
            return False  # never done: fleetd keeps retrying it, a call always in flight

    def fast(req):
        got.setdefault(req["vm_id"], time.monotonic())

    n1 = Stub(H.node_address(1), f.node_api_port, "n1", slow)
    n2 = Stub(H.node_address(2), f.node_api_port, "n2", fast)
    out = []
    try:
        f.start()
        f.hb(1, avail=1000000, total=2000000)
        f.wait(lambda: f.node("n1")["state"] == "alive")
        _, p = f.json("POST", "/v1/plans", dict(PLAN, entity="w"), expect=201)
        f.json("POST", "/v1/plans/%s/confirm" % p["id"], expect=202)
        in_flight.wait(10)
        f.hb(2, avail=3000000, total=4000000)
        f.wait(lambda: f.node("n2")["state"] == "alive")
        rng = random.Random(13)
        for i in range(runs):
            time.sleep(rng.uniform(0, 1))  # a random moment of n1's call cycle (3 s + backoff)
            f.hb(1, avail=1000000, total=2000000)
            f.hb(2, avail=3000000, total=4000000)
            _, p = f.json("POST", "/v1/plans", dict(PLAN, entity="h%d" % i), expect=201)
            assert p["node_id"] == "n2"
            t0 = time.monotonic()
            _, op = f.json("POST", "/v1/plans/%s/confirm" % p["id"], expect=202)
            vm_id = op["vm_id"]
            f.wait(lambda: vm_id in got, timeout=60, what="the creation on n2")
            out.append(got[vm_id] - t0)
    finally:
        for s in (n1, n2):
            s.shutdown()
            s.server_close()
        f.close()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    a = ap.parse_args()
    for name, wedged in (("with n1 wedged", True), ("peer: no node wedged", False)):
        t = measure(a.runs, wedged)
        print("confirm -> healthy node receives the creation, %-22s median %6.1f ms  max %6.1f ms"
              "  (%d runs)" % (name + ":", statistics.median(t) * 1000, max(t) * 1000, len(t)))


if __name__ == "__main__":
    main()
