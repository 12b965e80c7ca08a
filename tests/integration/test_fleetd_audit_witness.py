# ctest-labels: fleetd vmhost audit
"""fleetd's audit record against an adversary who owns fleetd's state directory while fleetd is
stopped, but not the nodes. A real fleetd and two real vmhost processes (libvirt's test driver):
about 33 entries are written, each node witnesses fleetd's signed checkpoint through its node
API, fleetd is stopped, and then, each on its own copy of the state directory:
  (a) the last 13 rows are deleted with sqlite3            -> "truncation"
  (b) an older copy of the state directory is restored     -> "rollback"
  (c) one entry's detail is edited                         -> "tampered" and "fork"
  (d) an entry is edited and everything the attacker can recompute without the key is
      recomputed (entry hashes, chain, leaf column), fleetd's own checkpoints erased -> "fork"
Each is checked with `fleetctl audit verify --node ...` (non-zero exit, the finding named), and
(b) and (d), which fool a verification without witnesses, are shown to do so. fleetd refuses to
start on (a) and (c); started on (b), it is named by the nodes, which refuse its checkpoint and
keep it as evidence, and its /v1/health says audit-diverged."""
import hashlib
import http.client
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time

import pytest

import test_fleetd_harness as H
import test_vmhost_harness as V

VMHOST = os.path.join(H.BUILD, "vmhost", "vmhost")
NODES = 2


def node_get(i, port):
    conn = http.client.HTTPConnection(H.node_address(i), port, timeout=5)
    conn.request("GET", "/v1/audit-checkpoint")
    r = conn.getresponse()
    body = json.loads(r.read())
    conn.close()
    assert r.status == 200, body
    return body


def start_vmhost(i, f, tmp):
    state = os.path.join(tmp, "vmhost-n%d" % i)
    os.makedirs(state)
    settings = {"node_id": "n%d" % i, "fleetd_address": "127.0.0.1", "fleetd_port": f.hb_port,
                "heartbeat_source": H.node_address(i), "heartbeat_interval": "1s",
                "libvirt_uri": "test:///default", "state_dir": state,
                "node_api_listen": H.node_address(i), "node_api_port": f.node_api_port,
                "node_api_allow": "127.0.0.1", "virt_type": "qemu", "log_level": "debug"}
    args = [VMHOST]
    for k, v in settings.items():
        args += ["--set", "%s=%s" % (k, v)]
    log = open(os.path.join(tmp, "vmhost-n%d.log" % i), "wb")
    proc = subprocess.Popen(args, stdout=log, stderr=log)
    for _ in range(100):
        try:
            node_get(i, f.node_api_port)
            return proc, log, state
        except OSError:
            assert proc.poll() is None, "vmhost n%d exited" % i
            time.sleep(0.1)
    raise AssertionError("vmhost n%d does not answer its node API" % i)


def count(db_path):
    db = sqlite3.connect(db_path)
    try:
        return db.execute("SELECT count(*) FROM audit").fetchone()[0]
    finally:
        db.close()


def snapshot(src_dir, dst_dir):
    """A consistent copy of a (possibly live) state directory: SQLite's backup for the database,
    plain copies of the key and checkpoint files."""
    os.makedirs(dst_dir)
    for name in os.listdir(src_dir):
        if name.startswith("fleetd.db") or name.endswith(".tmp"):
            continue
        if os.path.isdir(os.path.join(src_dir, name)):  # images/, diode/: spools
            shutil.copytree(os.path.join(src_dir, name), os.path.join(dst_dir, name))
        else:
            shutil.copy2(os.path.join(src_dir, name), os.path.join(dst_dir, name))
    src = sqlite3.connect(os.path.join(src_dir, "fleetd.db"))
    dst = sqlite3.connect(os.path.join(dst_dir, "fleetd.db"))
    src.backup(dst)
    src.close()
    dst.close()


def canonical_entry(row):
    seq, time_ms, kind, subject, actor, detail, prev = row
    doc = {"seq": seq, "time_ms": time_ms, "kind": kind, "subject": subject, "actor": actor,
           "detail": json.loads(detail), "prev_hash": prev}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def rewrite_everything(db_path, seq, detail):
    """The attacker without the key: edit one entry, then recompute every entry hash, the chain
    and the leaf column after it, and erase fleetd's own checkpoint row."""
    db = sqlite3.connect(db_path)
    db.executescript("DROP TRIGGER audit_no_update;")
    db.execute("UPDATE audit SET detail = ? WHERE seq = ?", (detail, seq))
    prev = "0" * 64
    rows = db.execute("SELECT seq, time_ms, kind, subject, actor, detail FROM audit"
                      " ORDER BY seq").fetchall()
    for row in rows:
        data = canonical_entry(tuple(row) + (prev,))
        h = hashlib.sha256(data).hexdigest()
        leaf = hashlib.sha256(b"\x00" + data).digest()
        db.execute("UPDATE audit SET prev_hash = ?, hash = ?, leaf = ? WHERE seq = ?",
                   (prev, h, leaf, row[0]))
        prev = h
    db.execute("DELETE FROM audit_checkpoint")
    db.commit()
    db.close()


def verify(f, state_dir, nodes=True):
    args = ["--state-dir", state_dir, "audit", "verify"]
    if nodes:
        for i in range(1, NODES + 1):
            args += ["--node", "%s:%d" % (H.node_address(i), f.node_api_port)]
    return f.ctl(*args, check=False)


def start_fails(state_dir):
    g = H.Fleetd(nodes=NODES, auth=False, state_dir=state_dir)
    try:
        with pytest.raises(RuntimeError) as exc:
            g.start()
        return str(exc.value)
    finally:
        g.close()


@pytest.fixture(scope="module")
def fleet():
    if not os.access(VMHOST, os.X_OK):
        pytest.skip("no vmhost binary")
    f = H.Fleetd(nodes=NODES, settings={"heartbeat_interval": "1s"})
    tmp = V.make_root("audit-witness-")  # searchable by the user vmhost drops to
    procs = []
    try:
        for i in range(1, NODES + 1):
            procs.append(start_vmhost(i, f, tmp))
        f.start()
        db = os.path.join(f.state_dir, "fleetd.db")

        def witnessed(size):
            return all((node_get(i, f.node_api_port)["size"] or 0) >= size
                       for i in range(1, NODES + 1))

        for k in range(12):
            f.ctl("token", "create", "t%d" % k)
        f.wait(lambda: witnessed(count(db)), timeout=30, what="the nodes witness the record")
        older = os.path.join(tmp, "older")
        snapshot(f.state_dir, older)
        older_size = count(os.path.join(older, "fleetd.db"))
        while count(db) < 33:
            f.ctl("token", "create", "u%d" % count(db))
        f.wait(lambda: witnessed(count(db)), timeout=30, what="the nodes witness the record")
        f.stop()
        size = count(db)
        held = {node_get(i, f.node_api_port)["size"] for i in range(1, NODES + 1)}
        assert len(held) == 1 and 33 <= min(held) <= size, (size, held)
        yield {"f": f, "tmp": tmp, "older": older, "older_size": older_size, "size": size,
               "held": held.pop()}
    finally:
        f.stop()
        for proc, log, _ in procs:
            proc.terminate()
            proc.wait(timeout=10)
            log.close()
        f.close()
        shutil.rmtree(tmp, ignore_errors=True)


def copy_state(fleet, name):
    dst = os.path.join(fleet["tmp"], name)
    shutil.copytree(fleet["f"].state_dir, dst)
    return dst


def test_intact_record_verifies_against_every_witness(fleet):
    for i in range(1, NODES + 1):
        V.validate(node_get(i, fleet["f"].node_api_port), "audit-checkpoint.schema.json")
    r = verify(fleet["f"], copy_state(fleet, "intact"))
    assert r.returncode == 0, r.stderr
    # the database's own checkpoint, the checkpoint file and the two nodes
    assert "consistent with 4 signed checkpoints" in r.stdout
    doc = json.loads(fleet["f"].ctl("--state-dir", copy_state(fleet, "intact-json"), "--json",
                                    "audit", "verify").stdout)
    assert doc["ok"] and doc["entries"] == fleet["size"] and doc["findings"] == []


def mth(leaves):
    """RFC 9162 Merkle tree hash over leaf hashes, written independently of common/merkle.c."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


def test_checkpoint_verifies_with_an_independent_c2sp_reader(fleet):
    """The note a node holds, checked the way stock C2SP tooling does (key id, signed-note split,
    Ed25519), and its root recomputed from the database's rows without fleetd's code."""
    ed = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ed25519")
    import base64
    with open(os.path.join(fleet["f"].state_dir, "audit.pub")) as f:
        name, key_id, key = f.read().strip().split("+", 2)
    raw = base64.b64decode(key)
    assert raw[0] == 1 and len(raw) == 33
    assert hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4].hex() == key_id
    note = node_get(1, fleet["f"].node_api_port)["checkpoint"].encode()
    split = note.rindex(b"\n\n")
    text, sigs = note[:split + 1], note[split + 2:]
    line = sigs.decode().splitlines()[0]
    assert line.startswith("\u2014 " + name + " ")
    blob = base64.b64decode(line.split(" ")[2])
    assert blob[:4].hex() == key_id
    ed.Ed25519PublicKey.from_public_bytes(raw[1:]).verify(blob[4:], text)  # raises if bad
    origin, size, root = text.decode().splitlines()
    assert origin == name and int(size) == fleet["held"]
    db = sqlite3.connect(os.path.join(fleet["f"].state_dir, "fleetd.db"))
    rows = db.execute("SELECT seq, time_ms, kind, subject, actor, detail, prev_hash FROM audit"
                      " WHERE seq <= ? ORDER BY seq", (int(size),)).fetchall()
    db.close()
    leaves = [hashlib.sha256(b"\x00" + canonical_entry(r)).digest() for r in rows]
    assert base64.b64encode(mth(leaves)).decode() == root


def test_a_deleted_tail_is_a_truncation(fleet):
    d = copy_state(fleet, "truncated")
    subprocess.run(["sqlite3", os.path.join(d, "fleetd.db"),
                    "DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq > %d;"
                    % (fleet["size"] - 13)], check=True)
    r = verify(fleet["f"], d)
    assert r.returncode == 1
    assert "BROKEN (truncation)" in r.stderr
    assert "node 'n1'" in r.stderr and "node 'n2'" in r.stderr
    assert "entries %d..%d were cut" % (fleet["size"] - 12, fleet["held"]) in r.stderr
    assert "intact" not in r.stdout
    # the witnesses as given: a node's answer saved to a file, and a bare checkpoint note
    answer = os.path.join(fleet["tmp"], "n1-answer.json")
    note = os.path.join(fleet["tmp"], "n2-note")
    with open(answer, "w") as out:
        json.dump(node_get(1, fleet["f"].node_api_port), out)
    with open(note, "w") as out:
        out.write(node_get(2, fleet["f"].node_api_port)["checkpoint"])
    os.unlink(os.path.join(d, "audit-checkpoint"))
    subprocess.run(["sqlite3", os.path.join(d, "fleetd.db"), "DELETE FROM audit_checkpoint;"],
                   check=True)
    r = fleet["f"].ctl("--state-dir", d, "audit", "verify", "--witness", answer, "--witness", note,
                       check=False)
    assert r.returncode == 1, r.stderr
    assert r.stderr.count("BROKEN (rollback)") == 2  # its own checkpoints gone: cut or old
    assert "node 'n1' (%s)" % answer in r.stderr and "the checkpoint in '%s'" % note in r.stderr
    r = fleet["f"].ctl("--state-dir", d, "audit", "verify", "--witness", "/dev/null", check=False)
    assert r.returncode == 3 and "cannot read the witness file" in r.stderr
    d = copy_state(fleet, "truncated-again")
    subprocess.run(["sqlite3", os.path.join(d, "fleetd.db"),
                    "DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq > %d;"
                    % (fleet["size"] - 13)], check=True)
    # without the nodes, fleetd's own checkpoints still name it; fleetd refuses to start
    r = verify(fleet["f"], d, nodes=False)
    assert r.returncode == 1 and "BROKEN (truncation)" in r.stderr
    assert "refusing to start" in start_fails(d)


def test_a_restored_older_copy_is_a_rollback(fleet):
    d = os.path.join(fleet["tmp"], "rolled-back")
    shutil.copytree(fleet["older"], d)
    assert fleet["older_size"] <= fleet["size"] - 13
    # the whole state directory is an older copy: on its own it is self-consistent
    r = verify(fleet["f"], d, nodes=False)
    assert r.returncode == 0, r.stderr
    r = verify(fleet["f"], d)
    assert r.returncode == 1
    assert "BROKEN (rollback)" in r.stderr and "truncation" not in r.stderr
    assert "holds a checkpoint of %d entries, but the record" % fleet["held"] in r.stderr
    # restoring the database alone, the checkpoint file outlives it
    d2 = copy_state(fleet, "db-only-restored")
    for name in os.listdir(d2):
        if name.startswith("fleetd.db"):
            os.unlink(os.path.join(d2, name))
    shutil.copy2(os.path.join(fleet["older"], "fleetd.db"), os.path.join(d2, "fleetd.db"))
    r = verify(fleet["f"], d2, nodes=False)
    assert r.returncode == 1 and "BROKEN (rollback)" in r.stderr
    assert "checkpoint file" in r.stderr
    assert "refusing to start" in start_fails(d2)


def test_an_edited_detail_is_tamper_and_fork(fleet):
    d = copy_state(fleet, "edited")
    subprocess.run(["sqlite3", os.path.join(d, "fleetd.db"),
                    "DROP TRIGGER audit_no_update;"
                    " UPDATE audit SET detail = '{\"who\":\"mallory\"}' WHERE seq = 7;"],
                   check=True)
    r = verify(fleet["f"], d)
    assert r.returncode == 1
    assert "BROKEN (tampered): entry 7 does not match its hash" in r.stderr
    assert "BROKEN (fork)" in r.stderr and "node 'n1'" in r.stderr
    assert "refusing to start" in start_fails(d)


def test_a_full_rewrite_without_the_key_is_a_fork(fleet):
    d = copy_state(fleet, "rewritten")
    rewrite_everything(os.path.join(d, "fleetd.db"), 7, '{"who":"mallory"}')
    os.unlink(os.path.join(d, "audit-checkpoint"))
    # every hash recomputed and fleetd's own checkpoints gone: alone, it looks intact
    r = verify(fleet["f"], d, nodes=False)
    assert r.returncode == 0, r.stderr
    assert "no signed checkpoint" in r.stderr
    r = verify(fleet["f"], d)
    assert r.returncode == 1
    assert "tampered" not in r.stderr
    assert r.stderr.count("BROKEN (fork)") == NODES
    assert "holds a checkpoint of %d entries with root" % fleet["held"] in r.stderr


def test_a_rolled_back_fleetd_is_refused_by_the_nodes(fleet):
    """Started on an older state directory, fleetd signs a smaller tree: each node refuses it,
    keeps it as evidence, and both fleetd's health and audit verify name it."""
    f = fleet["f"]
    d = os.path.join(fleet["tmp"], "rolled-back-running")
    shutil.copytree(fleet["older"], d)
    g = H.Fleetd(nodes=NODES, auth=False, state_dir=d,
                 settings={"heartbeat_interval": "1s", "api_port": H.free_port(),
                           "heartbeat_port": f.hb_port, "node_api_port": f.node_api_port})
    g.api_port = g.settings["api_port"]
    g.hb_port = f.hb_port
    try:
        g.start()
        g.wait(lambda: all(node_get(i, f.node_api_port)["refused_total"] >= 1
                           for i in range(1, NODES + 1)), timeout=30,
               what="the nodes refuse the rolled-back checkpoint")
        held = node_get(1, f.node_api_port)
        V.validate(held, "audit-checkpoint.schema.json")
        assert held["size"] == fleet["held"]  # unchanged
        assert "rollback" in held["refused"][0]["reason"]
        g.wait(lambda: g.json("GET", "/v1/health", expect=200)[1]["status"] == "audit-diverged",
               timeout=10, what="health audit-diverged")
        metrics = g.request("GET", "/metrics")[2].decode()
        assert 'totebox_fleetd_audit_witnesses{state="diverged"} %d' % NODES in metrics
        status = g.json("GET", "/v1/audit/checkpoint", expect=200)[1]
        assert all(w["diverged"] for w in status["witnesses"])
        assert status["size"] < fleet["held"] and status["key"].startswith("fleetd.totebox/f1+")
        r = g.ctl("--state-dir", d, "audit", "verify", "--via-fleetd", check=False)
        assert r.returncode == 1 and r.stderr.count("BROKEN (rollback)") == NODES, r.stderr
        assert "(via fleetd)" in r.stderr
        g.stop()
        r = verify(f, d)
        assert r.returncode == 1
        assert "BROKEN (rollback)" in r.stderr
        assert "BROKEN (refused-checkpoint)" in r.stderr
    finally:
        g.close()


def test_rows_deleted_while_fleetd_runs_turn_health_audit_diverged():
    """No nodes needed: fleetd notices its own record shrinking within a tick."""
    f = H.Fleetd(nodes=1)
    try:
        f.start()
        for k in range(10):
            f.ctl("token", "create", "r%d" % k)
        db = os.path.join(f.state_dir, "fleetd.db")
        f.wait(lambda: f.json("GET", "/v1/audit/checkpoint", expect=200)[1]["size"] == count(db),
               timeout=15, what="a checkpoint of the whole record")
        assert f.json("GET", "/v1/health", expect=200)[1]["status"] != "audit-diverged"
        subprocess.run(["sqlite3", db, "DROP TRIGGER audit_no_delete;"
                        " DELETE FROM audit WHERE seq > %d;" % (count(db) - 5)], check=True)
        f.wait(lambda: f.json("GET", "/v1/health", expect=200)[1]["status"] == "audit-diverged",
               timeout=15, what="health audit-diverged")
        assert "lost entries while fleetd ran" in f.read_log()
    finally:
        f.close()
