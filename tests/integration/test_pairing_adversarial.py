"""The pairing ceremony under attack, on loopback with private ports and state directories
(--no-wg: the protocol alone; the mesh test covers the interfaces). Wrong code, expired code,
concurrent joins, replayed and reflected messages, SAS not confirmed or mismatched, rosters
signed by another key or older, and a man in the middle guessing (or knowing) the code."""
import base64
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
from fleet import Fleet  # noqa: E402

BUILD = os.environ.get("TOTEBOX_BUILD_DIR", "build")
PAIR = os.path.join(BUILD, "provision", "totebox-pair")
WRONG = "00000-00000"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def work():
    if not os.path.exists(PAIR):
        pytest.skip("totebox-pair not built")
    d = tempfile.mkdtemp(prefix="tbpair-")
    procs = []
    yield d, procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    shutil.rmtree(d, ignore_errors=True)


def spawn(procs, *args):
    p = subprocess.Popen([PAIR] + list(args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, bufsize=1)
    procs.append(p)
    return p


def read_until(p, pattern, timeout=30):
    """Reads p's output lines until one matches (scripts/fleet.py's reader)."""
    return Fleet.read_until(p, pattern, timeout)

def genesis(d, name="gen"):
    state = os.path.join(d, name)
    r = subprocess.run([PAIR, "genesis", "--state-dir", state, "--name", name, "--endpoint",
                        "127.0.0.1:51820", "--no-wg"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return state


def serve(procs, state, port, *extra):
    p = spawn(procs, "serve", "--state-dir", state, "--listen", "127.0.0.1", "--pair-port",
              str(port), "--io-timeout", "5", "--sas-timeout", "20", *extra)
    code = read_until(p, r"pairing code: (\S+)").group(1)
    read_until(p, r"listening")
    return p, code


def join(procs, d, code, port, name="n1", role="node"):
    return spawn(procs, "join", code, "--genesis", "127.0.0.1:%d" % port, "--state-dir",
                 os.path.join(d, name), "--name", name, "--role", role, "--endpoint",
                 "127.0.0.2:51820", "--no-wg", "--io-timeout", "5", "--sas-timeout", "20")


def confirm(g, j):
    """Both operators type the SAS the other side shows; returns both SAS."""
    sas_j = read_until(j, r"SAS: (\d{3} \d{3})").group(1)
    sas_g = read_until(g, r"SAS: (\d{3} \d{3})").group(1)
    j.stdin.write(sas_g + "\n")
    j.stdin.flush()
    g.stdin.write(sas_j + "\n")
    g.stdin.flush()
    return sas_g, sas_j


def finish(p, timeout=30):
    out, _ = p.communicate(timeout=timeout)
    return p.returncode, out


def roster_version(state):
    return json.load(open(os.path.join(state, "roster.json")))["version"]


def test_successful_join(work):
    d, procs = work
    state = genesis(d)
    port = free_port()
    g, code = serve(procs, state, port)
    j = join(procs, d, code, port)
    sas_g, sas_j = confirm(g, j)
    assert sas_g == sas_j
    rc, out = finish(j)
    assert rc == 0 and "joined: fleet" in out, out
    assert roster_version(state) == 2
    assert roster_version(os.path.join(d, "n1")) == 2
    # Nothing secret on the genesis' output: the code appears once (its announcement).
    rc, out = finish(g)
    assert rc == 0
    assert code not in out


def test_wrong_code_fails_both_and_burns(work):
    d, procs = work
    state = genesis(d)
    port = free_port()
    g, code = serve(procs, state, port)
    assert code != WRONG
    rc, out = finish(join(procs, d, WRONG, port))
    assert rc != 0 and "wrong-code" in out, out
    read_until(g, r"pairing failed: wrong-code.*burned")
    rc, out = finish(join(procs, d, code, port, name="n2"))
    assert rc != 0 and "already used" in out, out
    assert roster_version(state) == 1
    assert not os.path.exists(os.path.join(d, "n2", "roster.json"))


def test_expired_code_refused(work):
    d, procs = work
    state = genesis(d)
    port = free_port()
    g, code = serve(procs, state, port, "--code-ttl", "1")
    time.sleep(1.5)
    rc, out = finish(join(procs, d, code, port))
    assert rc != 0 and "expired" in out, out
    assert roster_version(state) == 1


def test_concurrent_joins_exactly_one_succeeds(work):
    d, procs = work
    state = genesis(d)
    port = free_port()
    g, code = serve(procs, state, port)
    j1 = join(procs, d, code, port, name="a1")
    j2 = join(procs, d, code, port, name="a2")
    results = {}

    def drive(j, name):
        line = j.stdout.readline()
        m = re.search(r"SAS: (\d{3} \d{3})", line)
        if not m:
            rest, _ = j.communicate(timeout=30)
            results[name] = (j.wait(), line + rest)
            return
        results[name + "-sas"] = m.group(1)
        rest, _ = j.communicate(input=read_until(g, r"SAS: (\d{3} \d{3})").group(1) + "\n",
                                timeout=30)
        results[name] = (j.returncode, line + rest)

    t1 = threading.Thread(target=drive, args=(j1, "a1"))
    t2 = threading.Thread(target=drive, args=(j2, "a2"))
    t1.start()
    t2.start()
    # The genesis operator types the winner's SAS once it is known.
    deadline = time.time() + 30
    while not any(k.endswith("-sas") for k in results) and time.time() < deadline:
        if "a1" in results and "a2" in results:
            break
        time.sleep(0.05)
    for k in list(results):
        if k.endswith("-sas"):
            g.stdin.write(results[k] + "\n")
            g.stdin.flush()
    t1.join(60)
    t2.join(60)
    ok = [n for n in ("a1", "a2") if results[n][0] == 0]
    assert len(ok) == 1, results
    loser = "a2" if ok == ["a1"] else "a1"
    assert "busy" in results[loser][1] or "already used" in results[loser][1], results[loser]
    assert roster_version(state) == 2


def test_sas_not_confirmed_adds_no_peer(work):
    d, procs = work
    state = genesis(d)
    port = free_port()
    g, code = serve(procs, state, port)
    j = join(procs, d, code, port)
    read_until(j, r"SAS: ")
    read_until(g, r"SAS: ")
    j.stdin.write("no\n")
    j.stdin.flush()
    rc, out = finish(j)
    assert rc != 0 and "sas-not-confirmed" in out, out
    read_until(g, r"pairing failed: sas-not-confirmed")
    assert roster_version(state) == 1
    assert not os.path.exists(os.path.join(d, "n1", "roster.json"))


def test_genesis_operator_refuses(work):
    d, procs = work
    state = genesis(d)
    port = free_port()
    g, code = serve(procs, state, port)
    j = join(procs, d, code, port)
    sas_j = read_until(j, r"SAS: (\d{3} \d{3})").group(1)
    sas_g = read_until(g, r"SAS: (\d{3} \d{3})").group(1)
    j.stdin.write(sas_g + "\n")
    j.stdin.flush()
    wrong = "%06d" % ((int(sas_j.replace(" ", "")) + 1) % 1000000)
    g.stdin.write(wrong + "\n")
    g.stdin.flush()
    rc, out = finish(j)
    assert rc != 0 and "sas-mismatch" in out, out
    assert roster_version(state) == 1
    assert not os.path.exists(os.path.join(d, "n1", "roster.json"))


def frame(obj):
    b = json.dumps(obj, separators=(",", ":")).encode()
    return struct.pack(">I", len(b)) + b


def read_frame(s):
    hdr = b""
    while len(hdr) < 4:
        chunk = s.recv(4 - len(hdr))
        if not chunk:
            return None
        hdr += chunk
    n = struct.unpack(">I", hdr)[0]
    body = b""
    while len(body) < n:
        chunk = s.recv(n - len(body))
        if not chunk:
            return None
        body += chunk
    return json.loads(body)


class Recorder:
    """A TCP relay that records every frame the joiner sends."""

    def __init__(self, target_port):
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.port = self.lsock.getsockname()[1]
        self.target = target_port
        self.frames = []
        self.replies = []
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        c, _ = self.lsock.accept()
        s = socket.create_connection(("127.0.0.1", self.target))

        def pump(src, dst, record):
            while True:
                f = read_frame(src)
                if f is None:
                    break
                (self.frames if record else self.replies).append(f)
                dst.sendall(frame(f))
            dst.close()

        threading.Thread(target=pump, args=(s, c, False), daemon=True).start()
        pump(c, s, True)


def test_replayed_session_fails(work):
    """Every frame of a successful join, replayed into a new ceremony with the same code: the
    fresh nonce changes sid and ISK, so the replayed key confirmation fails and burns the code."""
    d, procs = work
    state = genesis(d)
    port = free_port()
    g, code = serve(procs, state, port)
    rec = Recorder(port)
    j = join(procs, d, code, rec.port)
    confirm(g, j)
    assert finish(j)[0] == 0
    assert finish(g)[0] == 0
    port2 = free_port()
    g2, _ = serve(procs, state, port2, "--code", code)
    s = socket.create_connection(("127.0.0.1", port2))
    answers = []
    for f in rec.frames:
        s.sendall(frame(f))
        a = read_frame(s)
        answers.append(a)
        if a is None or a.get("type") == "error":
            break
    assert any(a and a.get("type") == "error" and a["code"] == "wrong-code" for a in answers), \
        answers
    read_until(g2, r"pairing failed: wrong-code")
    assert roster_version(state) == 2


WGKEY = base64.b64encode(b"\x01" * 32).decode()


def evil_hello(s, v=2, proto="totebox-pair/2", name="evil"):
    s.sendall(frame({"v": v, "type": "hello", "proto": proto, "id": name,
                     "nonce": "AAAAAAAAAAAAAAAAAAAAAA=="}))
    return read_frame(s)


def evil_share(point):
    return frame({"v": 2, "type": "share", "point": point, "role": "node",
                  "wg_public_key": WGKEY, "endpoint": ""})


def test_reflected_confirmation_fails(work):
    """A joiner without the code sends a valid point, then reflects the genesis' own key
    confirmation tag back: refused as a wrong code. Reflecting the genesis' own share, or
    sending the identity, is no guess: the code stays good."""
    d, procs = work
    state = genesis(d)
    port = free_port()
    g, code = serve(procs, state, port)
    s = socket.create_connection(("127.0.0.1", port))
    hello = evil_hello(s)
    assert hello["type"] == "hello" and len(base64.b64decode(hello["commit"])) == 64
    # A valid ristretto255 encoding (draft-21 vector Ya).
    s.sendall(evil_share("1rrEgPLDhsOU78fEetuZJdzSYwtk8kDFD40O7EgrkVc="))
    share = read_frame(s)
    assert share["type"] == "share" and "tag" in share
    s.sendall(frame({"v": 2, "type": "confirm", "tag": share["tag"]}))
    err = read_frame(s)
    assert err["type"] == "error" and err["code"] == "wrong-code", err
    read_until(g, r"pairing failed: wrong-code.*burned")
    # A fresh ceremony: the identity point, then the genesis' own share reflected.
    port2 = free_port()
    g2, code2 = serve(procs, state, port2)
    for point in ["A" * 43 + "=", None]:
        s = socket.create_connection(("127.0.0.1", port2))
        hello = evil_hello(s)
        if point is None:  # its own share is only known once opened: take one, then reflect
            s.sendall(evil_share("1rrEgPLDhsOU78fEetuZJdzSYwtk8kDFD40O7EgrkVc="))
            break
        s.sendall(evil_share(point))
        err = read_frame(s)
        assert err["type"] == "error" and err["code"] == "protocol", err
        read_until(g2, r"rejected before any guess: protocol: invalid or identity point.*still "
                       r"valid")
    assert roster_version(state) == 1


def test_version_mismatch_is_precise(work):
    """A version-1 joiner (the protocol before the commitment) and a version-9 frame each get a
    'version' error that names the versions; a v1 peer gets it framed in v1, so it can read it.
    A version mismatch never reached the code: it is still good."""
    d, procs = work
    state = genesis(d)
    port = free_port()
    g, code = serve(procs, state, port)
    s = socket.create_connection(("127.0.0.1", port))
    err = evil_hello(s, v=1, proto="totebox-pair/1", name="x")
    assert err["type"] == "error" and err["code"] == "version" and err["v"] == 1, err
    assert "version 1 is not supported" in err["detail"], err
    s = socket.create_connection(("127.0.0.1", port))
    err = evil_hello(s, v=9, proto="totebox-pair/9", name="x")
    assert err["type"] == "error" and err["code"] == "version" and err["v"] == 2, err
    s = socket.create_connection(("127.0.0.1", port))
    err = evil_hello(s, v=2, proto="totebox-pair/9", name="x")
    assert err["code"] == "version", err
    j = join(procs, d, code, port)
    confirm(g, j)
    assert finish(j)[0] == 0


def test_mitm_guessing_code_is_detected(work):
    """The attacker runs the protocol with each side using a guessed code: its own pairing
    server for the joiner, its own join towards the genesis. Both honest sides see a wrong
    code, the genesis' code is burned and nobody is added."""
    d, procs = work
    state = genesis(d)
    port = free_port()
    g, code = serve(procs, state, port)
    evil_state = genesis(d, "evil")
    evil_port = free_port()
    evil_srv, _ = serve(procs, evil_state, evil_port, "--code", WRONG)
    # Towards the honest joiner (who types the real code) ...
    rc, out = finish(join(procs, d, code, evil_port, name="victim"))
    assert rc != 0 and "wrong-code" in out, out
    # ... and towards the genesis.
    rc, out = finish(join(procs, d, WRONG, port, name="evil-joiner"))
    assert rc != 0 and "wrong-code" in out, out
    read_until(g, r"pairing failed: wrong-code.*burned")
    assert roster_version(state) == 1
    assert not os.path.exists(os.path.join(d, "victim", "roster.json"))


def test_mitm_knowing_code_caught_by_sas(work):
    """Even an attacker who learned the code (shoulder surfing) and relays between two sessions
    gets different SAS on the two honest sides: the joiner's operator types the genesis' SAS
    and it does not match."""
    d, procs = work
    state = genesis(d)
    port = free_port()
    g, code = serve(procs, state, port)
    evil_state = genesis(d, "evil")
    evil_port = free_port()
    evil_srv, _ = serve(procs, evil_state, evil_port, "--code", code)
    victim = join(procs, d, code, evil_port, name="victim")
    evil_j = join(procs, d, code, port, name="evil-joiner")
    sas_victim = read_until(victim, r"SAS: (\d{3} \d{3})").group(1)
    sas_genesis = read_until(g, r"SAS: (\d{3} \d{3})").group(1)
    assert sas_victim != sas_genesis
    victim.stdin.write(sas_genesis + "\n")
    victim.stdin.flush()
    rc, out = finish(victim)
    assert rc != 0 and "sas-mismatch" in out, out
    # The genesis operator reads the SAS on the real joiner's screen: it does not match either.
    g.stdin.write(sas_victim + "\n")
    g.stdin.flush()
    read_until(g, r"pairing failed: sas-mismatch")
    assert roster_version(state) == 1
    assert not os.path.exists(os.path.join(d, "victim", "roster.json"))
    evil_j.kill()


def test_roster_other_key_or_older_refused(work):
    d, procs = work
    state = genesis(d)
    v1 = os.path.join(d, "roster-v1.json")
    shutil.copy(os.path.join(state, "roster.json"), v1)
    port = free_port()
    g, code = serve(procs, state, port)
    j = join(procs, d, code, port)
    confirm(g, j)
    assert finish(j)[0] == 0
    node = os.path.join(d, "n1")
    # Older version, validly signed: refused.
    r = subprocess.run([PAIR, "apply-roster", v1, "--state-dir", node, "--no-wg"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "not newer" in r.stderr, r.stderr
    # Same version again: refused.
    r = subprocess.run([PAIR, "apply-roster", os.path.join(state, "roster.json"),
                        "--state-dir", node, "--no-wg"], capture_output=True, text=True)
    assert r.returncode != 0 and "not newer" in r.stderr, r.stderr
    # A higher version signed by another genesis key: refused.
    other = genesis(d, "other")
    forged = json.load(open(os.path.join(other, "roster.json")))
    r = subprocess.run([PAIR, "apply-roster", os.path.join(other, "roster.json"),
                        "--state-dir", node, "--no-wg"], capture_output=True, text=True)
    assert r.returncode != 0 and "not signed" in r.stderr, r.stderr
    # Our own roster with its version bumped but the old signature: refused.
    mine = json.load(open(os.path.join(state, "roster.json")))
    mine["version"] = 99
    path = os.path.join(d, "bumped.json")
    json.dump(mine, open(path, "w"))
    r = subprocess.run([PAIR, "apply-roster", path, "--state-dir", node, "--no-wg"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "not signed" in r.stderr, r.stderr
    assert roster_version(node) == 2
    assert forged["version"] == 1


def test_wire_messages_match_schema(work):
    """Every frame of a real ceremony, both directions, validates against
    schemas/pairing-message.schema.json."""
    jsonschema = pytest.importorskip("jsonschema")
    source = os.environ.get("TOTEBOX_SOURCE_DIR", os.path.join(BUILD, ".."))
    schema = json.load(open(os.path.join(source, "schemas", "pairing-message.schema.json")))
    validator = jsonschema.Draft202012Validator(schema)
    d, procs = work
    state = genesis(d)
    port = free_port()
    g, code = serve(procs, state, port)
    rec = Recorder(port)
    j = join(procs, d, code, rec.port)
    confirm(g, j)
    assert finish(j)[0] == 0
    finish(g)
    frames = rec.frames + rec.replies
    assert {f["type"] for f in frames} == {"hello", "share", "confirm", "sealed"}
    for f in frames:
        errors = [e.message for e in validator.iter_errors(f)]
        assert not errors, (f, errors)


def test_name_taken_refused(work):
    d, procs = work
    state = genesis(d)
    port = free_port()
    g, code = serve(procs, state, port)
    j = join(procs, d, code, port, name="gen")
    confirm(g, j)
    rc, out = finish(j)
    assert rc != 0 and "name-taken" in out, out
    assert roster_version(state) == 1
