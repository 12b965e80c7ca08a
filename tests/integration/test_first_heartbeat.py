"""The first vertical slice: real vmhost -> UDP heartbeat -> real fleetd -> REST.

Starts both daemons on private ports and a private directory, sees the node appear with live
figures, validates the REST output against schemas/, and checks that bad heartbeats (malformed,
oversized, unknown address, wrong node id, replayed) are dropped without harm.
"""
import json
import os
import pathlib
import re
import socket
import subprocess

import pytest

from harness import BUILD, Daemon, Workdir, free_port, http, validate, wait_for

FLEETD = f"{BUILD}/fleetd/fleetd"
FLEETCTL = f"{BUILD}/fleetctl/fleetctl"
VMHOST = f"{BUILD}/vmhost/vmhost"
DIGEST = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.fixture
def fleet():
    wd = Workdir()
    api, hb = free_port(), free_port(socket.SOCK_DGRAM)
    roster = {"v": 1, "version": 1, "fleet_id": "test", "controller": "node1", "nodes": [
        {"id": "node1", "role": "cloud", "mesh_address": "127.0.0.1"},
        {"id": "node2", "role": "node", "mesh_address": "127.0.0.2"}]}
    wd.write("roster.json", json.dumps(roster))
    out = subprocess.run([FLEETCTL, "--state-dir", wd.path, "token", "create", "test"],
                         capture_output=True, text=True, check=True).stdout
    token = re.search(r"(tbx_[A-Za-z0-9_-]{43})", out).group(1)
    auth = {"Authorization": f"Bearer {token}"}
    daemons = []
    try:
        fleetd = Daemon(FLEETD, ["--set", "roster_file=roster.json", "--set", f"api_port={api}",
                                 "--set", f"heartbeat_port={hb}", "--set", "heartbeat_listen=127.0.0.1",
                                 "--set", f"state_dir={wd.path}", "--set", "log_level=debug"],
                        wd.path, "fleetd")
        daemons.append(fleetd)
        base = f"http://127.0.0.1:{api}"
        wait_for(lambda: _get_ok(base, auth), what="fleetd REST API")
        vmhost = Daemon(VMHOST, ["--set", "node_id=node1", "--set", f"fleetd_port={hb}",
                                 "--set", "heartbeat_interval=200ms", "--set", f"state_dir={wd.path}",
                                 "--set", "heartbeat_source=127.0.0.1",
                                 "--set", f"node_api_port={free_port()}",
                                 "--set", f"libvirt_uri=qemu:///embed?root={wd.path}/libvirt"],
                        wd.path, "vmhost")
        daemons.append(vmhost)
        yield {"base": base, "hb_port": hb, "fleetd": fleetd, "vmhost": vmhost, "auth": auth}
    finally:
        for d in reversed(daemons):
            d.stop()
        wd.cleanup()


def _get_ok(base, auth):
    try:
        return http("GET", base + "/v1/nodes", headers=auth)[0] == 200
    except OSError:
        return False


AUTH = {}


def _node(base, node_id):
    status, _, body = http("GET", f"{base}/v1/nodes/{node_id}", headers=AUTH)
    return body if status == 200 else None


@pytest.fixture(autouse=True)
def _auth(fleet):
    AUTH.clear()
    AUTH.update(fleet["auth"])


def test_node_appears_with_live_figures(fleet):
    base = fleet["base"]
    node = wait_for(lambda: (n := _node(base, "node1")) and n["state"] == "alive" and n,
                    what="node1 alive")
    assert node["mem_total_mib"] > 0
    assert 0 < node["mem_available_mib"] <= node["mem_total_mib"]
    assert node["cpus"] >= 1 and 0 <= node["cpu_percent"] <= 100
    assert node["heartbeat_age_ms"] < 2000
    validate(node, "node.schema.json")
    status, headers, listing = http("GET", base + "/v1/nodes", headers=AUTH)
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert len(headers["X-Request-Id"]) >= 16
    validate(listing, "node.schema.json", "/$defs/node_list")
    states = {n["id"]: n["state"] for n in listing["nodes"]}
    assert states == {"node1": "alive", "node2": "unseen"}
    # heartbeats keep coming: the count grows
    first = node["heartbeats"]
    wait_for(lambda: _node(base, "node1")["heartbeats"] > first + 2, what="more heartbeats")


def test_heartbeat_output_matches_schema(fleet):
    """Capture a real heartbeat datagram from vmhost and validate it."""
    work = Workdir("totebox-hb-")  # vmhost's user (it drops when started as root) must reach it
    tmp_path = pathlib.Path(work.path)
    port = free_port(socket.SOCK_DGRAM)
    # a sparse 1 GiB disk in the VM directory: the room for VM disks counts what it may still take
    os.makedirs(tmp_path / "vms")
    with open(tmp_path / "vms" / "sparse.raw", "wb") as f:
        f.truncate(1 << 30)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", port))
        s.settimeout(5)
        out = subprocess.Popen([VMHOST, "--set", "node_id=capture", "--set", f"fleetd_port={port}",
                                "--set", "heartbeat_interval=100ms",
                                "--set", f"node_api_port={free_port()}",
                                "--set", f"state_dir={tmp_path}",
                                "--set", f"libvirt_uri=qemu:///embed?root={tmp_path}/libvirt"],
                               stderr=subprocess.DEVNULL)
        try:
            data, _ = s.recvfrom(2048)
        finally:
            out.terminate()
            out.wait()
    assert len(data) <= 1200
    validate(json.loads(data), "heartbeat.schema.json")
    v = os.statvfs(tmp_path / "vms")
    free_mib = v.f_bavail * v.f_frsize // (1 << 20)
    assert abs(json.loads(data)["disk_free_mib"] - (free_mib - 1024)) < 256, (data, free_mib)
    boot = json.loads(data)["boot"]  # vmhost names its run with a random boot id
    assert len(boot) == 16 and int(boot, 16) >= 0


def _send(port, payload, source="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.sendto(payload, ("127.0.0.1", port))


def _hb(node, seq, epoch=1, **kw):
    hb = {"v": 1, "node": node, "epoch": epoch, "seq": seq, "interval_ms": 10000, "cpus": 1,
          "cpu_percent": 1.0, "mem_total_mib": 1000, "mem_available_mib": 900,
          "mem_committed_mib": 0, "libvirt_age_ms": 100, "vm_count": 0, "inventory_digest": DIGEST,
          "creations": 0}
    hb.update(kw)
    return json.dumps(hb).encode()


def test_bad_heartbeats_dropped_and_counted(fleet):
    base, port = fleet["base"], fleet["hb_port"]
    wait_for(lambda: _node(base, "node1"), what="node1")
    bad = [
        (b"not json at all", "malformed JSON"),
        (b"{" + b" " * 1500 + b"}", "exceeds 1200"),
        (_hb("node2", 1, cpu_percent=250), "cpu_percent"),
        (_hb("node2", 1, extra=1), "unknown field 'extra'"),
        (_hb("node1", 1), "names node 'node1' but the roster says 'node2'"),
    ]
    for payload, _ in bad:
        _send(port, payload, source="127.0.0.2")
    _send(port, _hb("node2", 1), source="127.0.0.3")  # not in the roster
    log = wait_for(lambda: (t := fleet["fleetd"].text()).count("dropped") >= 6 and t,
                   what="six drops logged")
    for _, reason in bad:
        assert reason in log, reason
    assert "'127.0.0.3' dropped: address is not in the roster" in log
    # none of it changed node2, and fleetd still serves
    assert _node(base, "node2")["state"] == "unseen"
    assert fleet["fleetd"].alive()

    # a heartbeat whose vmhost never reached libvirt makes the node unhealthy, not alive
    _send(port, _hb("node2", 4, epoch=6, libvirt_age_ms=-1), source="127.0.0.2")
    wait_for(lambda: _node(base, "node2")["state"] == "unhealthy", what="node2 unhealthy")
    # a good heartbeat from node2's address (a restart: new epoch, fresh seq) is accepted; a
    # replay of it is dropped
    boot = "0123456789abcdef"
    _send(port, _hb("node2", 2, epoch=7, boot=boot), source="127.0.0.2")
    wait_for(lambda: _node(base, "node2")["state"] == "alive", what="node2 alive")
    _send(port, _hb("node2", 2, epoch=7, boot=boot, mem_available_mib=1), source="127.0.0.2")
    _send(port, _hb("node2", 1, epoch=7, boot=boot, mem_available_mib=1), source="127.0.0.2")
    wait_for(lambda: fleet["fleetd"].text().count("is not newer than") >= 2, what="replays dropped")
    assert _node(base, "node2")["mem_available_mib"] == 900
    # one datagram with a far-future epoch does not lock node2 out
    _send(port, _hb("node2", 1, epoch=2**62, boot="f" * 16, mem_available_mib=800),
          source="127.0.0.2")
    wait_for(lambda: _node(base, "node2")["mem_available_mib"] == 800, what="far-future taken")
    _send(port, _hb("node2", 3, epoch=7, boot=boot, mem_available_mib=700), source="127.0.0.2")
    wait_for(lambda: _node(base, "node2")["mem_available_mib"] == 700, what="real one after it")


def test_rest_errors_are_problem_json(fleet):
    base = fleet["base"]
    for method, path, code in [("GET", "/v1/nodes/nope", 404), ("GET", "/v1/nodes/UPPER", 400),
                               ("POST", "/v1/nodes", 405), ("GET", "/nothing", 404)]:
        status, headers, body = http(method, base + path, body=b"" if method == "POST" else None,
                                     headers=AUTH)
        assert status == code, (path, status, body)
        assert headers["Content-Type"] == "application/problem+json"
        validate(body, "problem.schema.json")
        assert body["status"] == code


def test_requests_without_a_valid_token_are_refused(fleet):
    base = fleet["base"]
    for headers in ({}, {"Authorization": "Bearer tbx_" + "A" * 43}, {"Authorization": "Basic x"}):
        status, hdrs, body = http("GET", base + "/v1/nodes", headers=headers)
        assert status == 401, (headers, status, body)
        assert hdrs["Content-Type"] == "application/problem+json"
        validate(body, "problem.schema.json")


def test_check_config_reports_file_line_token(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("api_port = 9170\nheartbeat_port = 99999\n")
    r = subprocess.run([FLEETD, "--config", str(conf), "--check-config"], capture_output=True,
                       text=True)
    assert r.returncode == 2
    assert f"{conf}:2: value '99999' for 'heartbeat_port' is outside 1..65535" in r.stderr
    good = tmp_path / "good.conf"
    good.write_text("api_port = 9170\n")
    r = subprocess.run([VMHOST, "--config", str(good), "--check-config"], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "unknown key 'api_port'" in r.stderr
    r = subprocess.run([FLEETD, "--config", str(good), "--check-config"], capture_output=True,
                       text=True)
    assert r.returncode == 0 and "configuration OK" in r.stdout
