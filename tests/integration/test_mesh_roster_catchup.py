# ctest-labels: slow mesh
"""Roster anti-entropy, black box, in the network-namespace fleet harness (scripts/fleet.py):
the genesis pushes each new roster to every member once, and a member switched off at that
moment used to keep its older roster for good (its vmhost then refused every creation: "the
roster names no controller pin key", as the real-host rig found). Now fleetd, which holds the
roster that names it the controller, sends it to each alive node that was not yet sent the
current version (fleetd/dispatch.c, "Roster anti-entropy").

Played here: laptop-b's vmhost is stopped while the genesis names fleetd's pin key in a new
roster version (the push to laptop-b fails and says so); laptop-b comes back with its older
roster, and within a few heartbeats holds the new one, sent by fleetd, without any
`apply-roster`. A roster fleetd sends again to a node that holds it already changes nothing.
"""
import glob
import json
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
from fleet import BUILD, Fleet, sh, wait  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, WireGuard)")

GENESIS, AWAY, CTL = "laptop-a", "laptop-b", "cloud"


def fleetd_log(f):
    text = ""
    for path in glob.glob(os.path.join(f.nodes[CTL]["state"], "log", "fleetd*.log")):
        with open(path, errors="replace") as fh:
            text += fh.read()
    return text


def test_a_member_that_missed_a_roster_push_gets_it_from_fleetd():
    f = Fleet(heartbeat="2s")
    try:
        f.up(pin_key=False)
        before = f.roster(AWAY)["version"]
        # laptop-b is switched off while the genesis names fleetd's pin key in a new version
        f.stop_daemon(AWAY, "vmhost")
        pub = os.path.join(f.nodes[CTL]["state"], "fleetd", "pin.pub")
        wait(lambda: os.path.exists(pub) and os.path.getsize(pub) > 0, 30, "fleetd's pin key")
        key = open(pub).read().strip()
        r = sh(*f.in_ns(GENESIS, os.path.join(BUILD, "provision", "totebox-pair"),
                        "controller-key", key, "--state-dir", f.mesh_dir(GENESIS)), check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        assert re.search(r"roster version \d+ not pushed to '%s'" % AWAY, r.stdout), r.stdout
        version = f.roster(GENESIS)["version"]
        assert version > before and f.roster(AWAY)["version"] == before
        wait(lambda: f.roster(CTL)["version"] == version, 30, "the controller holds it")
        # laptop-b comes back with its older roster; fleetd sends it the new one
        f.refresh(AWAY)
        wait(lambda: f.roster(AWAY)["version"] == version, 60,
             "laptop-b to hold the roster fleetd sent")
        assert f.roster(AWAY).get("controller_pin_key") == key
        assert ("node '%s' held an older roster: sent it version %d" % (AWAY, version)
                in fleetd_log(f)), fleetd_log(f)[-3000:]
        # the others held it already: sent once at most, taken by no one, nothing changed
        assert "node '%s' held an older roster" % GENESIS not in fleetd_log(f)
        assert f.roster(GENESIS) == f.roster(CTL) == f.roster(AWAY)
        wait(f.nodes_alive, 60, "three nodes alive after laptop-b's return")
        print(json.dumps({"roster_version": version}))
    finally:
        f.down()
