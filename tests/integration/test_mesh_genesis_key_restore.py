# ctest-labels: slow mesh
"""The genesis key's backup and restore, black box, in the network-namespace fleet harness
(scripts/fleet.py; no VM image): three nodes joined by the real provision scripts and ceremony,
vmhost on each, fleetd on the cloud node.

The operator backs up the genesis key on laptop-a right after genesis (`totebox-pair
backup-genesis-key`); then laptop-a is lost (its vmhost stops, its genesis.key is gone), and the
operator restores the key on laptop-b (`totebox-pair restore-genesis-key`). laptop-b then
removes laptop-a (`remove-node`): the cloud node's vmhost accepts the roster laptop-b signed
(the key is the same one every member's genesis.pub names), laptop-a's key leaves the cloud's
peers and fleetd no longer lists laptop-a. Then laptop-b, the new genesis, admits a node
(laptop-a's machine reinstalled under a new name) with a ceremony, and the cloud takes that
roster too.

Playing the adversary first: a backup on a node without the key, over an existing file or
without a passphrase file is refused; a restore with the wrong passphrase, of a file for
another fleet, of a truncated or altered file, or on a node that holds a key already is refused
and leaves the node's state as it was. Prints the backup's and the restore's times (Argon2id at
libsodium's moderate limits: 3 passes, 256 MiB)."""
import hashlib
import os
import shutil
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
from fleet import BUILD, PAIR_PORT, Fleet, sh, wait  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, WireGuard)")

PAIR = os.path.join(BUILD, "provision", "totebox-pair")
OLD, NEW, CTL = "laptop-a", "laptop-b", "cloud"
PASSPHRASE = "correct horse battery staple"
STATE = {}


@pytest.fixture(scope="module")
def fleet():
    f = Fleet(heartbeat="2s")
    try:
        f.up()
        yield f
    finally:
        f.down()


def snapshot(directory):
    """Every file of a state directory: name, mode and SHA-256 (nothing written on refusal)."""
    out = {}
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            with open(path, "rb") as fh:
                out[name] = (os.stat(path).st_mode, hashlib.sha256(fh.read()).hexdigest())
    return out


def write(f, name, text, mode=0o600):
    path = os.path.join(f.dir, name)
    with open(path, "w") as fh:
        fh.write(text)
    os.chmod(path, mode)
    return path


def test_backup_refusals(fleet):
    passfile = write(fleet, "pass", PASSPHRASE + "\n")
    STATE["pass"] = passfile
    out = os.path.join(fleet.dir, "refused.backup")
    r = fleet.pair(CTL, "backup-genesis-key", out, "--passphrase-file", passfile)
    assert r.returncode != 0 and "no genesis key" in r.stderr, r.stderr
    r = fleet.pair(OLD, "backup-genesis-key", out)
    assert r.returncode != 0 and "missing --passphrase-file" in r.stderr, r.stderr
    r = fleet.pair(OLD, "backup-genesis-key", out, "--passphrase-file",
             write(fleet, "short", "short\n"))
    assert r.returncode != 0 and "shorter than 8 characters" in r.stderr, r.stderr
    assert not os.path.exists(out)


def test_backup_right_after_genesis(fleet):
    backup = os.path.join(fleet.dir, "genesis.backup")
    t0 = time.time()
    r = fleet.pair(OLD, "backup-genesis-key", backup, "--passphrase-file", STATE["pass"])
    STATE["backup_s"] = time.time() - t0
    assert r.returncode == 0, r.stdout + r.stderr
    ros = fleet.roster(OLD)
    assert f"genesis key of fleet '{ros['fleet_id']}'" in r.stdout, r.stdout
    assert os.stat(backup).st_mode & 0o777 == 0o600
    text = open(backup).read()
    # what it is, in clear; the key itself only sealed
    assert f"\nfleet_id={ros['fleet_id']}\n" in text, text
    assert f"\ngenesis_public_key={ros['genesis_public_key']}\n" in text, text
    secret = open(os.path.join(fleet.mesh_dir(OLD), "genesis.key")).read().strip()
    assert secret not in text and secret[:20] not in text
    # never over a file
    before = open(backup, "rb").read()
    r = fleet.pair(OLD, "backup-genesis-key", backup, "--passphrase-file", STATE["pass"])
    assert r.returncode != 0 and "never overwrites" in r.stderr, r.stderr
    assert open(backup, "rb").read() == before
    STATE["backup"] = backup
    print(f"\nbackup-genesis-key took {STATE['backup_s']:.2f} s "
          f"(Argon2id, 3 passes, 256 MiB)")


def other_fleet_backup(f):
    """A genesis key backup of another fleet, made as its own genesis would (no interface)."""
    d = tempfile.mkdtemp(prefix="other-fleet-", dir=f.dir)
    sh(PAIR, "genesis", "--name", "elsewhere", "--fleet-id", "fleet-other", "--no-wg",
       "--state-dir", d)
    path = os.path.join(f.dir, "other-fleet.backup")
    sh(PAIR, "backup-genesis-key", path, "--passphrase-file", STATE["pass"], "--state-dir", d)
    shutil.rmtree(d)
    return path


def test_restore_refusals_change_nothing(fleet):
    text = open(STATE["backup"]).read()
    head, sealed = text.rsplit("sealed=", 1)
    # a character of the ciphertext (base64 character 120: sealed byte 90, past the 64-byte head)
    flipped = sealed[:120] + ("A" if sealed[120] != "A" else "B") + sealed[121:]
    cases = [
        (STATE["backup"], write(fleet, "wrong", "a wrong passphrase\n"),
         "wrong passphrase, or the file was altered"),
        (other_fleet_backup(fleet), STATE["pass"], "the file is for another fleet"),
        (write(fleet, "cut.backup", text[:len(text) // 2]), STATE["pass"], "cut short"),
        (write(fleet, "altered.backup", head + "sealed=" + flipped), STATE["pass"],
         "wrong passphrase, or the file was altered"),
        (write(fleet, "relabelled.backup", text.replace("made_on=laptop-a", "made_on=laptop-x")),
         STATE["pass"], "wrong passphrase, or the file was altered"),
    ]
    before = snapshot(fleet.mesh_dir(NEW))
    for path, passfile, why in cases:
        r = fleet.pair(NEW, "restore-genesis-key", path, "--passphrase-file", passfile)
        assert r.returncode != 0 and why in r.stderr, (path, r.stdout, r.stderr)
    assert snapshot(fleet.mesh_dir(NEW)) == before
    # the genesis itself holds a key: never replaced
    before = snapshot(fleet.mesh_dir(OLD))
    r = fleet.pair(OLD, "restore-genesis-key", STATE["backup"], "--passphrase-file",
             STATE["pass"])
    assert r.returncode != 0 and "holds a genesis key already" in r.stderr, r.stderr
    assert snapshot(fleet.mesh_dir(OLD)) == before


def test_lose_the_genesis_restore_on_laptop_b_and_remove_it(fleet):
    STATE["old_key"] = fleet.wg_key(OLD)
    # laptop-a dies: its daemons stop, its genesis key is gone with its disk
    fleet.stop_daemon(OLD, "vmhost")
    os.unlink(os.path.join(fleet.mesh_dir(OLD), "genesis.key"))
    r = fleet.pair(OLD, "remove-node", NEW)
    assert r.returncode != 0 and "no genesis key" in r.stderr, r.stderr
    version = fleet.roster(CTL)["version"]
    t0 = time.time()
    r = fleet.pair(NEW, "restore-genesis-key", STATE["backup"], "--passphrase-file",
             STATE["pass"])
    restore_s = time.time() - t0
    assert r.returncode == 0, r.stdout + r.stderr
    assert "restored on 'laptop-b'" in r.stdout, r.stdout
    key = os.path.join(fleet.mesh_dir(NEW), "genesis.key")
    assert os.stat(key).st_mode & 0o777 == 0o600
    print(f"\nrestore-genesis-key took {restore_s:.2f} s (Argon2id, 3 passes, 256 MiB)")
    # laptop-b signs the next roster version; the cloud's vmhost accepts it
    r = fleet.pair(NEW, "remove-node", OLD)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"roster version {version + 1} removes node '{OLD}'" in r.stdout, r.stdout
    assert f"roster version {version + 1} pushed to '{CTL}'" in r.stdout, r.stdout
    ros = fleet.roster(CTL)
    assert ros["version"] == version + 1
    assert OLD not in [n["id"] for n in ros["nodes"]]
    assert [x["id"] for x in ros["revoked"]] == [OLD]
    assert STATE["old_key"] not in fleet.wg_peers(CTL)
    wait(lambda: fleet.api("GET", "/v1/roster")["version"] == version + 1, 30,
         "fleetd to take the roster laptop-b signed")
    ids = [n["id"] for n in fleet.api("GET", "/v1/nodes")["nodes"]]
    assert sorted(ids) == sorted([NEW, CTL]), ids


def test_the_new_genesis_admits_a_node(fleet):
    """laptop-a's machine, reinstalled under a new name, joins through laptop-b's ceremony."""
    version = fleet.roster(CTL)["version"]
    state = os.path.join(fleet.dir, "laptop-c-mesh")
    ifname = f"tbx{fleet.tag}w9"
    g = fleet.popen(NEW, [PAIR, "serve", "--listen", fleet.nodes[NEW]["underlay"],
                          "--state-dir", fleet.mesh_dir(NEW), "--code-ttl", "120"])
    code = Fleet.read_until(g, r"pairing code: (\S+)").group(1)
    j = fleet.popen(OLD, [PAIR, "join", code, "--genesis",
                          f"{fleet.nodes[NEW]['underlay']}:{PAIR_PORT}", "--name", "laptop-c",
                          "--state-dir", state, "--ifname", ifname, "--wg-port", "51821",
                          "--endpoint", fleet.nodes[OLD]["underlay"] + ":51821"])
    try:
        out_j, out_g = fleet.confirm_sas(j, g)
        assert j.returncode == 0 and g.returncode == 0, out_j + "\n---\n" + out_g
        assert f"roster version {version + 1} pushed to '{CTL}'" in out_g, out_g
        ros = fleet.roster(CTL)
        assert ros["version"] == version + 1
        assert "laptop-c" in [n["id"] for n in ros["nodes"]]
        assert fleet.wg_key(OLD, ifname) in fleet.wg_peers(CTL)
    finally:
        sh(*fleet.in_ns(OLD, "ip", "link", "del", ifname), check=False)
        sock = f"/var/run/wireguard/{ifname}.sock"
        if os.path.exists(sock):
            os.unlink(sock)
