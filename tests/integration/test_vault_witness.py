# ctest-labels: slow
"""Witnessed vault checkpoints (issue 14) with real daemons: a real fleetd, a real vmhost
(qemu:///embed, TCG) booting the offline test image with the real totebox-agent, whose vault
lives on the VM's raw vault disk. Records are put into the vault's inbox by writing the stopped
VM's ext2 vault disk with debugfs; the agent seals them at its next start.

The agent reports each tree head as a C2SP checkpoint signed by the vault key; vmhost cosigns
it (cosignature/v1) once it accepted the head, fleetd cosigns it once it checked a consistency
proof from the checkpoint it cosigned last, and the test checks all three signatures with an
independent reader (Python's cryptography). Then each adversary is played:

- rollback: the vault disk is replaced by a copy taken one record earlier (ledger, assets and
  sth.json together, all consistent and signed): vmhost refuses the smaller checkpoint and keeps
  it, fleetd checks the vault-signed evidence against what it holds and names `rollback`;
- fork: on that restored disk a different record is sealed, so the vault signs a head of the
  same size with another root: named `fork`;
- lying host: the node's root holds the host's witness key; the node's answers to fleetd go
  through a relay that replaces the cosigned checkpoint by the older one, freshly cosigned with
  that key (a valid signature): fleetd names the host `lying-host`;
- stalled: with fleetd told that the agents verify every 20 s (grace 5 s), the agent (which
  verifies hourly) is flagged `stalled` in health and metrics until a requested verification.
Each name shows in the VM view, /v1/health, /metrics and one audit entry per piece of evidence."""
import base64
import glob
import hashlib
import os
import re
import shutil
import struct
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import test_fleetd_harness as H  # noqa: E402
from test_vmhost_harness import (VMHOST, FleetTrust, NodeRelay, Vmhost, build_image,  # noqa: E402
                                 destroy_all, give, make_root, remove_root, sha256)

ed = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ed25519")
serialization = pytest.importorskip("cryptography.hazmat.primitives.serialization")
EM = "\u2014 "


# --- an independent C2SP reader -----------------------------------------------------------

def note_split(note):
    text, _, sigs = note.rpartition("\n\n")
    return text + "\n", [l for l in sigs.split("\n") if l]


def key_id(name, alg, pk):
    return hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + pk).digest()[:4]


def vkey_parse(vkey):
    name, kid, b64 = vkey.split("+", 2)
    raw = base64.b64decode(b64)
    assert key_id(name, raw[0], raw[1:]).hex() == kid
    return name, raw[0], raw[1:]


def check_note_sig(note, name, pk):
    text, sigs = note_split(note)
    for line in sigs:
        assert line.startswith(EM)
        n, b64 = line[len(EM):].split(" ")
        blob = base64.b64decode(b64)
        if n == name and blob[:4] == key_id(name, 1, pk):
            ed.Ed25519PublicKey.from_public_bytes(pk).verify(blob[4:], text.encode())
            return True
    return False


def check_cosig(note, vkey):
    name, alg, pk = vkey_parse(vkey)
    assert alg == 4
    text, sigs = note_split(note)
    for line in sigs:
        n, b64 = line[len(EM):].split(" ")
        blob = base64.b64decode(b64)
        if n == name and blob[:4] == key_id(name, 4, pk):
            assert len(blob) == 76
            t = struct.unpack(">Q", blob[4:12])[0]
            msg = ("cosignature/v1\ntime %d\n" % t).encode() + text.encode()
            ed.Ed25519PublicKey.from_public_bytes(pk).verify(blob[12:], msg)
            return t
    return None


def cosign(note, skey_text, t):
    """What the node's root can do with the host's key file: a valid cosignature/v1."""
    parts = skey_text.strip().split("+", 4)  # the base64 key may hold "+" too
    name, seed = parts[2], base64.b64decode(parts[4])[1:]
    sk = ed.Ed25519PrivateKey.from_private_bytes(seed)
    pk = sk.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    text, sigs = note_split(note)
    keep = [l for l in sigs if not l.startswith(EM + name + " ")]
    sig = sk.sign(("cosignature/v1\ntime %d\n" % t).encode() + text.encode())
    blob = key_id(name, 4, pk) + struct.pack(">Q", t) + sig
    return text + "\n" + "\n".join(keep + [EM + name + " " + base64.b64encode(blob).decode()]) + "\n"


# --- the fleet ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fleet():
    if not os.access(VMHOST, os.X_OK):
        pytest.skip("no vmhost binary in the build")
    root = make_root("tbx-vwitness-")
    manifest = build_image(os.path.join(root, "image"),
                           agent=os.path.join(H.BUILD, "agent", "totebox-agent"))
    f = H.Fleetd(nodes=1, settings={"heartbeat_interval": "1s", "suspect_after": "6s",
                                    "evict_after": "60s", "node_api_timeout": "5s",
                                    "dispatch_backoff": "200ms", "vault_verify_interval": "20s",
                                    "vault_stall_grace": "5s"})
    trust = FleetTrust(nodes=("ctl", "n1"), fleet_id="f1", controller="ctl",
                       addresses={"ctl": "127.0.0.1", "n1": H.node_address(1)})
    trust.give_fleetd(f)
    state = {"f": f, "root": root, "trust": trust, "vh": None}

    def start_vmhost():
        state["vh"] = Vmhost(root, node_id="n1", hb_port=f.hb_port, fleetd_address="127.0.0.1",
                             heartbeat_source=H.node_address(1), fleet_id="f1",
                             mesh_state_dir=trust.mesh_dir(root, "n1"))
        if "relay" in state:
            state["relay"].target_port = state["vh"].port

    state["start_vmhost"] = start_vmhost
    start_vmhost()
    state["relay"] = NodeRelay(H.node_address(1), f.node_api_port, state["vh"].port)
    try:
        st, body, _ = state["vh"].call("POST", "/v1/images", {"name": "test", "path": manifest,
                                                              "sha256": sha256(manifest)})
        assert st == 201, body
        f.start()
        f.wait(lambda: f.node("n1")["state"] == "alive" and f.node("n1")["inventory"] == "ok",
               timeout=30, what="vmhost's heartbeats and inventory")
        _, plan = f.json("POST", "/v1/plans", {"entity": "witness-it", "memory_mib": 256,
                                                "vcpus": 1, "image": "test",
                                                "vault_disk_mib": 32}, expect=201)
        _, vm = f.confirm_vm(plan["id"])
        state["vm"] = vm["id"]
        yield state
    finally:
        state["relay"].close()
        if state["vh"]:
            state["vh"].stop()
        f.close()
        destroy_all(root)
        remove_root(root)


def vm_of(f, vm_id):
    return f.json("GET", "/v1/vms/" + vm_id, expect=200)[1]


def vault_disk(fleet):
    paths = glob.glob(os.path.join(fleet["root"], "state", "vms", fleet["vm"] + "-vault.img"))
    assert len(paths) == 1, paths
    return paths[0]


def stop_vm(fleet):
    """A power cut: vmhost stopped, the domain destroyed. The guest's vault is ext2 (no journal):
    the agent synced every file it wrote, but the allocation bitmaps of what it wrote since it
    opened the vault may be stale on the disk, so the disk is checked (e2fsck -fy) as an
    operator would before anyone copies or changes it; else a later allocation reuses a block
    the ledger holds."""
    fleet["vh"].stop()
    destroy_all(fleet["root"])
    fsck = subprocess.run(["e2fsck", "-fy", vault_disk(fleet)], capture_output=True, text=True)
    assert fsck.returncode in (0, 1), fsck.stdout + fsck.stderr


def start_vm(fleet):
    fleet["start_vmhost"]()
    st, doc, _ = fleet["vh"].call("POST", "/v1/vms/%s/start" % fleet["vm"])
    assert st == 200, doc


def put_record(fleet, name, data):
    """Root on the node, VM stopped (and its disk checked): a record into the vault's inbox,
    for the agent to seal at its next start."""
    src = os.path.join(fleet["root"], "rec-" + name)
    with open(src, "wb") as fh:
        fh.write(data)
    r = subprocess.run(["debugfs", "-w", "-R", "write %s app-console-input/%s" % (src, name),
                        vault_disk(fleet)], capture_output=True, text=True)
    assert r.returncode == 0 and "Allocated inode" in r.stdout + r.stderr, r.stdout + r.stderr
    os.unlink(src)


def witness_of(fleet, want):
    f = fleet["f"]
    return f.wait(lambda: (lambda w: w if want(w) else None)(vm_of(f, fleet["vm"])["witness"]),
                  timeout=240, what="the VM's witness state")


def health(f):
    return f.json("GET", "/v1/health", expect=200)[1]


def node_witness(fleet):
    st, v, _ = fleet["vh"].call("GET", "/v1/vms/" + fleet["vm"])
    assert st == 200, v
    return v["integrity"]["witness"]


def metric(f, name):
    _, _, text = f.request("GET", "/metrics")
    m = re.search(r"^%s (\d+)$" % re.escape(name), text.decode(), re.M)
    return int(m.group(1)) if m else None


def test_checkpoints_are_cosigned_by_host_and_fleet(fleet):
    f = fleet["f"]
    # first boot: the agent formats the blank vault and reports the empty tree
    w = witness_of(fleet, lambda w: w["state"] == "ok")
    assert w["size"] == 0
    # one record, then another: each head is cosigned by both witnesses
    for i, size in ((1, 1), (2, 2)):
        stop_vm(fleet)
        if size == 2:
            fleet["snapshot"] = vault_disk(fleet) + ".at1"
            shutil.copy(vault_disk(fleet), fleet["snapshot"])
        put_record(fleet, "r%d" % i, b"record %d\n" % i)
        start_vm(fleet)
        w = witness_of(fleet, lambda w, size=size: w["state"] == "ok" and w["size"] == size)
        if size == 1:
            fleet["note1"] = node_witness(fleet)["checkpoint"]
    note = w["checkpoint"]
    vmkey = base64.b64decode(fleet["vh"].call("GET", "/v1/vms/" + fleet["vm"])[1]
                             ["vault_public_key"])
    origin = note.split("\n")[0]
    assert origin == "totebox.vault/" + vmkey.hex()
    assert note.split("\n")[1] == "2"
    assert check_note_sig(note, origin, vmkey), note
    host_vkey = node_witness(fleet)["key"]
    fleet_vkey = health(f)["vault_witness"]["key"]
    assert host_vkey.startswith("totebox.host/n1+") and fleet_vkey.startswith("totebox.fleet/f1+")
    t_host, t_fleet = check_cosig(note, host_vkey), check_cosig(note, fleet_vkey)
    assert t_host and t_fleet and abs(t_fleet - time.time()) < 600
    h = health(f)
    assert h["vault_witness"]["status"] == "ok" and h["vault_witness"]["vms"] == []
    assert f.audit("vault.witnessed") and not f.audit("vault.rollback")
    # the node learns what fleetd cosigned last (fleetd's audit-push thread tells it)
    f.wait(lambda: node_witness(fleet)["fleet_size"] == 2, timeout=20, what="fleet_size 2 on the node")
    print("cosignatures: vault+host+fleet on size 2; fleetd cosigned %d checkpoints" %
          metric(f, "totebox_fleetd_vault_cosignatures_total"))


def test_a_restored_older_vault_disk_is_a_rollback(fleet):
    f = fleet["f"]
    stop_vm(fleet)
    shutil.copy(fleet["snapshot"], vault_disk(fleet))
    give(vault_disk(fleet))
    start_vm(fleet)
    w = witness_of(fleet, lambda w: "rollback" in w["named"])
    assert w["state"] == "rollback" and w["size"] == 2
    ev = f.audit("vault.rollback")
    assert len(ev) == 1, ev
    assert ev[0]["detail"]["size"] == 1 and ev[0]["detail"]["held_size"] == 2
    assert ev[0]["detail"]["checkpoint"].split("\n")[1] == "1"
    h = health(f)
    assert h["status"] == "vault-rollback"
    assert h["vault_witness"]["vms"][0]["state"] == "rollback"
    assert metric(f, 'totebox_fleetd_vault_witness_alarm_vms{kind="rollback"}') == 1
    # the node refused it and kept it: it still holds size 2, cosigned
    nw = node_witness(fleet)
    assert nw["evidence"][0]["reason"] == "rollback" and nw["checkpoint"].split("\n")[1] == "2"
    time.sleep(3)
    assert len(f.audit("vault.rollback")) == 1  # more inventories: the same occurrence


def test_another_record_on_the_restored_disk_is_a_fork(fleet):
    f = fleet["f"]
    stop_vm(fleet)
    put_record(fleet, "r2-other", b"another second record\n")
    start_vm(fleet)
    w = witness_of(fleet, lambda w: "fork" in w["named"])
    assert set(w["named"]) == {"fork", "rollback"}
    ev = f.audit("vault.fork")
    assert len(ev) == 1, ev
    assert ev[0]["detail"]["size"] == 2 and ev[0]["detail"]["held_size"] == 2
    forked = ev[0]["detail"]["checkpoint"]
    assert forked.split("\n")[1] == "2" and forked.split("\n")[2] != w["checkpoint"].split("\n")[2]
    assert check_note_sig(forked, forked.split("\n")[0], bytes.fromhex(
        forked.split("\n")[0].split("/")[1]))  # the vault itself signed the fork
    assert metric(f, 'totebox_fleetd_vault_witness_alarm_vms{kind="rollback"}') == 1


def test_a_host_that_cosigns_an_older_checkpoint_is_a_lying_host(fleet):
    f = fleet["f"]
    skey = open(os.path.join(fleet["root"], "state", "vault-witness.key")).read()
    lie = cosign(fleet["note1"], skey, int(time.time()))
    held = vm_of(f, fleet["vm"])["witness"]["size"]

    def rewrite(inv):
        for v in inv["vms"]:
            if v["id"] == fleet["vm"]:
                v["integrity"]["witness"].update(checkpoint=lie, from_size=0, proof=[])
        return inv
    fleet["relay"].rewrite = rewrite
    try:
        # a new report makes the node's digest change, so fleetd fetches the (rewritten) answer
        fleet["vh"].call("POST", "/v1/vms/%s/verify" % fleet["vm"])
        w = witness_of(fleet, lambda w: "lying-host" in w["named"])
    finally:
        fleet["relay"].rewrite = None
    assert w["state"] == "lying-host" and w["size"] == held
    ev = f.audit("vault.lying_host")
    assert len(ev) == 1, ev
    assert "smaller than" in ev[0]["detail"]["detail"]
    h = health(f)
    assert h["status"] == "lying-host"
    assert set(h["vault_witness"]["vms"][0]["named"]) == {"fork", "rollback", "lying-host"}
    assert metric(f, 'totebox_fleetd_vault_witness_alarm_vms{kind="lying-host"}') == 1
    # what fleetd holds did not move
    assert vm_of(f, fleet["vm"])["witness"]["checkpoint"].split("\n")[1] == str(held)
    # fleetctl's VM view names every alarm
    out = f.ctl("vms", fleet["vm"]).stdout
    assert "CHECKPOINTS" in out and "FORK,ROLLBACK,LYING-HOST" in out, out


def test_what_fleetd_holds_and_names_survives_its_restart(fleet):
    f = fleet["f"]
    before = vm_of(f, fleet["vm"])["witness"]
    counts = {k: len(f.audit(k)) for k in ("vault.rollback", "vault.fork", "vault.lying_host")}
    f.stop()
    f.start()
    w = witness_of(fleet, lambda w: w["state"] == "lying-host")
    assert set(w["named"]) == set(before["named"]) and w["size"] == before["size"]
    assert w["checkpoint"] == before["checkpoint"]  # the durable row: the same cosigned note
    time.sleep(3)  # more inventories: the evidence the node keeps is not audited again
    assert {k: len(f.audit(k)) for k in counts} == counts


def test_an_overdue_verification_is_stalled_until_one_arrives(fleet):
    f = fleet["f"]
    vm_id = fleet["vm"]
    # fleetd expects a verification every 20 s (+5 s); the agent verifies hourly
    f.wait(lambda: vm_id in health(f)["stalled"]["vms"], timeout=60, what="stalled")
    assert vm_of(f, vm_id)["witness"]["stalled"] is True
    assert metric(f, "totebox_fleetd_vaults_stalled") == 1
    f.wait(lambda: f.node("n1")["state"] == "alive", timeout=30, what="the node alive")
    f.json("POST", "/v1/vms/%s/verify" % vm_id, expect=202)
    f.wait(lambda: vm_id not in health(f)["stalled"]["vms"], timeout=60, what="not stalled")
    assert metric(f, "totebox_fleetd_vaults_stalled") == 0
