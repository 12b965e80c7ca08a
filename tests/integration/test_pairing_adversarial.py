"""The pairing ceremony under attack, on loopback with private ports and state directories
(--no-wg: the protocol alone; the mesh test covers the interfaces), and in network namespaces
where the test needs a firewall or a port of its own. Wrong code, expired code, concurrent
joins, replayed and reflected messages, SAS not confirmed or mismatched, rosters signed by
another key or older, a man in the middle guessing (or knowing) the code, the SAS-grinding man
in the middle (pair_mitm), a relay swapping bound keys, junk and floods that must not burn the
code or block a joiner, trickles cut at the deadline, a black-holed genesis and a WireGuard port
in use; and the other direction (a genesis behind NAT dials a listening joiner)."""
import base64
import json
import os
import re
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from harness import free_port

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
from fleet import Fleet  # noqa: E402

BUILD = os.environ.get("TOTEBOX_BUILD_DIR", "build")
PAIR = os.path.join(BUILD, "provision", "totebox-pair")
WRONG = "00000-00000"


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


def dial(procs, state, port):
    """The genesis behind NAT: serve --connect, dialling a joiner that listens."""
    p = spawn(procs, "serve", "--state-dir", state, "--connect", "127.0.0.1:%d" % port,
              "--io-timeout", "5", "--sas-timeout", "20")
    code = read_until(p, r"pairing code: (\S+)").group(1)
    read_until(p, r"dialling the joiner")
    return p, code


def listen_join(procs, d, code, port, name="n1"):
    j = spawn(procs, "join", code, "--listen", "127.0.0.1", "--pair-port", str(port),
              "--state-dir", os.path.join(d, name), "--name", name, "--role", "cloud",
              "--endpoint", "127.0.0.2:51820", "--no-wg", "--io-timeout", "5",
              "--sas-timeout", "20")
    read_until(j, r"waiting on 127.0.0.1:%d" % port)
    return j


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


@pytest.mark.parametrize("direction", ["joiner-connects", "genesis-dials"])
def test_successful_join(work, direction):
    """Either direction (genesis-dials: a genesis behind NAT, serve --connect to a joiner's
    join --listen): the same ceremony, SAS and roster."""
    d, procs = work
    state = genesis(d)
    port = free_port()
    if direction == "genesis-dials":
        g, code = dial(procs, state, port)
        j = listen_join(procs, d, code, port)
    else:
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
    """A TCP relay that records every frame the joiner sends (and may rewrite frames:
    rewrite(frame, from_joiner) returns the frame to pass on)."""

    def __init__(self, target_port, rewrite=None):
        self.rewrite = rewrite
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
            try:
                while True:
                    f = read_frame(src)
                    if f is None:
                        break
                    (self.frames if record else self.replies).append(f)
                    if self.rewrite:
                        f = self.rewrite(f, record)
                    dst.sendall(frame(f))
            except OSError:  # one side reset the connection: the relay ends
                pass
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


def operators_compare(g, victim, sas_victim, sas_genesis, genesis_outcome):
    """Each operator types the SAS the other screen shows: they differ, the victim says
    sas-mismatch, and the genesis prints genesis_outcome."""
    assert sas_victim != sas_genesis
    victim.stdin.write(sas_genesis + "\n")
    victim.stdin.flush()
    rc, out = finish(victim)
    assert rc != 0 and "sas-mismatch" in out, out
    g.stdin.write(sas_victim + "\n")
    g.stdin.flush()
    read_until(g, genesis_outcome)


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
    # The genesis operator reads the SAS on the real joiner's screen: it does not match either.
    operators_compare(g, victim, sas_victim, sas_genesis, r"pairing failed: sas-mismatch")
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


# --- issue 14: the join ceremony against an adversary ---

MITM = os.path.join(BUILD, "tests", "integration", "pair_mitm")


def mitm(procs, genesis_port, code, mode, *extra):
    if not os.path.exists(MITM):
        pytest.skip("pair_mitm not built")
    port = free_port()
    p = subprocess.Popen([MITM, "--listen", str(port), "--genesis-port", str(genesis_port),
                          "--code", code, "--mode", mode] + list(extra),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    procs.append(p)
    read_until(p, r"mitm: listening")
    return p, port


def test_grinding_mitm_cannot_use_its_ground_share(work):
    """The attack of issue 14, for real: a man in the middle who knows the code joins the
    genesis (which then shows its SAS), plays the genesis towards the victim and, after the
    victim's share, grinds shares of its own until the victim's SAS would agree with the
    genesis' one (on 2 digits, so that the grinding surely succeeds within its 5000 tries:
    that is what it achieved on all 6 against totebox-pair/1). The victim holds the commitment
    from the mitm's hello: it refuses the ground share and shows no SAS at all."""
    d, procs = work
    state = genesis(d)
    port = free_port()
    g, code = serve(procs, state, port)
    m, mport = mitm(procs, port, code, "grind", "--tries", "5000", "--digits", "2")
    victim = join(procs, d, code, mport, name="victim")
    sas_genesis = read_until(m, r"mitm: genesis SAS '(\d{3} \d{3})'").group(1)
    assert read_until(g, r"SAS: (\d{3} \d{3})").group(1) == sas_genesis
    ground = read_until(m, r"mitm: grind tries=(\d+) matched=(\w+) digits=2 candidate SAS "
                           r"'(\d{3} \d{3})' rate=(\d+)/s")
    assert ground.group(2) == "yes", ground.group(0)
    assert ground.group(3)[-2:] == sas_genesis[-2:]
    print("\n" + ground.group(0))
    rc, out = finish(victim)
    assert rc != 0, out
    assert "join failed: protocol: the genesis' share does not open the commitment" in out, out
    assert "SAS:" not in out, out
    read_until(m, r"mitm: victim answered 'protocol'")
    # The mitm gives up (or the genesis' operator, who sees no SAS on the victim's screen,
    # refuses): the guess it made burned the code, and nothing is added.
    g.stdin.write("no\n")
    g.stdin.flush()
    read_until(g, r"pairing failed: .*; the code is burned")
    assert roster_version(state) == 1
    assert not os.path.exists(os.path.join(d, "victim", "roster.json"))


def test_mitm_committed_share_gives_a_sas_it_did_not_choose(work):
    """The same man in the middle sends the share it committed to (all the protocol lets it
    do): the victim's SAS is whatever the two random shares give, independent of the genesis'
    one (they agree with probability 10^-6); the victim's operator types the genesis' SAS and
    the join is refused."""
    d, procs = work
    state = genesis(d)
    port = free_port()
    g, code = serve(procs, state, port)
    m, mport = mitm(procs, port, code, "honest")
    victim = join(procs, d, code, mport, name="victim")
    sas_genesis = read_until(g, r"SAS: (\d{3} \d{3})").group(1)
    predicted = read_until(m, r"victim SAS will be '(\d{3} \d{3})'").group(1)
    sas_victim = read_until(victim, r"SAS: (\d{3} \d{3})").group(1)
    assert sas_victim == predicted  # the attacker knows it, but could not choose it
    # The genesis' operator types the victim's SAS (or the mitm has gone): refused, burned.
    operators_compare(g, victim, sas_victim, sas_genesis, r"pairing failed: .*; the code is burned")
    assert roster_version(state) == 1


def junk_connections(port):
    """Each of these is no guess: (name, bytes to send or None, whether to wait for the
    server to end the connection). What the genesis prints about them is printable ASCII."""
    hello = frame({"v": 2, "type": "hello", "proto": "totebox-pair/2", "id": "junk",
                   "nonce": "AAAAAAAAAAAAAAAAAAAAAA=="})
    return [
        ("connect-and-close", b"", False),
        ("random bytes", os.urandom(64), True),
        ("HTTP GET", b"GET / HTTP/1.1\r\nHost: genesis\r\n\r\n", True),
        ("zero length", struct.pack(">I", 0), True),
        ("huge length", struct.pack(">I", 0xFFFFFFFF), True),
        ("10 MB frame", struct.pack(">I", 10 << 20) + b"x" * (10 << 20), True),
        ("garbage JSON", struct.pack(">I", 5) + b"{nope", True),
        ("terminal escapes", struct.pack(">I", 8) + b"\x1b[2J\x07\xff{\"", True),
        ("silence past the timeout", None, True),
        ("hello, then close", hello, False),
        ("hello, then an invalid share", hello + evil_share("A" * 43 + "="), True),
        ("hello, then silence", hello, True),
    ]


def poke(port, data, wait):
    """Sends data and returns what the server answered before it closed (bytes)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(30)
    got = b""
    try:
        if data:
            s.sendall(data)
        if wait:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass
    s.close()
    return got


def test_junk_never_burns_the_code(work):
    """Anyone who reaches the port, with anything that is not a guess, leaves the code good:
    each kind of junk is rejected with its reason on the genesis console, and then a real join
    with the same code succeeds."""
    d, procs = work
    state = genesis(d)
    port = free_port()
    g, code = serve(procs, state, port, "--io-timeout", "2")
    for name, data, wait in junk_connections(port):
        poke(port, data, wait)
        line = read_until(g, r"pairing attempt from '127\.0\.0\.1' rejected before any guess: "
                             r"(\S+): (.*); the code is still valid")
        assert line.group(2).strip(), (name, line.group(0))
        assert all(" " <= ch <= "~" for ch in line.group(0)), (name, line.group(0))
        print("%-30s -> %s" % (name, line.group(0)))
    j = join(procs, d, code, port)
    confirm(g, j)
    rc, out = finish(j)
    assert rc == 0 and "joined: fleet" in out, out
    assert roster_version(state) == 2


def test_trickle_is_cut_at_the_deadline(work):
    """A frame trickled at one byte every 2 s (a 100-byte frame would take 200 s) is cut at
    the connection's absolute deadline (--io-timeout 3), with that reason, and the code stays
    good."""
    d, procs = work
    state = genesis(d)
    port = free_port()
    g, code = serve(procs, state, port, "--io-timeout", "3")
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(struct.pack(">I", 100))
    sent, answer = 0, b""
    for _ in range(100):
        try:
            s.sendall(b" ")
            sent += 1
        except (BrokenPipeError, ConnectionResetError):
            break
        r, _, _ = select.select([s], [], [], 2)
        if r:
            s.settimeout(10)
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                answer += chunk
            break
    assert sent < 100, "the trickle was never cut"
    assert b"no complete message before the deadline" in answer, answer
    read_until(g, r"rejected before any guess: protocol: timed out.*still valid")
    j = join(procs, d, code, port)
    confirm(g, j)
    assert finish(j)[0] == 0


def test_joiner_deadline_against_a_trickling_genesis(work):
    """A fake genesis that trickles its hello one byte every 2 s does not hold the joiner past
    its own deadline (--io-timeout 5): the joiner says it timed out."""
    d, procs = work
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    port = ls.getsockname()[1]
    stop = threading.Event()

    def trickle():
        c, _ = ls.accept()
        c.sendall(struct.pack(">I", 100))
        while not stop.wait(2):
            try:
                c.sendall(b" ")
            except OSError:
                break
        c.close()

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    rc, out = finish(join(procs, d, "ABCDE-FGHJK", port), timeout=60)
    stop.set()
    assert rc != 0 and "join failed: protocol: timed out: no complete message before the " \
        "deadline" in out, out


def test_junk_flood_does_not_block_a_real_joiner(work):
    """40 connections that say nothing (more than the 16 served at once) are open when the
    real joiner arrives, and another address keeps opening silent connections while it joins
    (at most 200): the junk is dropped to serve the joiner, and the join succeeds."""
    d, procs = work
    state = genesis(d)
    port = free_port()
    g, code = serve(procs, state, port, "--io-timeout", "20")
    junk = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
    stop = threading.Event()
    flood = []

    def churn():
        while not stop.is_set() and len(flood) < 200:
            try:
                flood.append(socket.create_connection(("127.0.0.1", port), timeout=5,
                                                      source_address=("127.0.0.2", 0)))
            except OSError:
                time.sleep(0.01)
            if len(flood) > 32:
                flood[-33].close()

    t = threading.Thread(target=churn, daemon=True)
    t.start()
    j = join(procs, d, code, port)
    confirm(g, j)
    rc, out = finish(j)
    stop.set()
    t.join(30)
    assert rc == 0 and "joined: fleet" in out, out
    for s in junk + flood:
        s.close()
    assert roster_version(state) == 2
    print("\nflood: %d silent connections from a second address during the join" % len(flood))


def closed_by_server(s):
    """Whether the server shut connection s down (EOF waiting), without blocking."""
    r, _, _ = select.select([s], [], [], 0)
    return bool(r) and s.recv(1, socket.MSG_PEEK) == b""


def test_a_flood_from_one_address_pushes_out_only_its_own(work):
    """8 silent connections from the joiner's address (one of them a joiner yet to speak), then
    16 from a second address, one at a time: once the slots are full each newcomer from the
    second address pushes out one of its own, never one of the first address's (with ties
    broken by age, the first address's oldest went at the 9th)."""
    d, procs = work
    state = genesis(d)
    port = free_port()
    g, code = serve(procs, state, port, "--io-timeout", "30")
    first = []
    for _ in range(8):
        first.append(socket.create_connection(("127.0.0.1", port)))
        time.sleep(0.05)
    second = []
    for _ in range(16):
        second.append(socket.create_connection(("127.0.0.1", port),
                                                source_address=("127.0.0.2", 0)))
        time.sleep(0.1)
    time.sleep(0.5)
    lost_first = sum(closed_by_server(s) for s in first)
    lost_second = sum(closed_by_server(s) for s in second)
    for s in first + second:
        s.close()
    assert lost_first == 0, "the second address's flood pushed out %d of the first's" % lost_first
    assert lost_second == 8, lost_second


def fake_genesis(reply):
    """A one-connection server that reads the joiner's hello and answers reply (bytes)."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)

    def serve_one():
        c, _ = ls.accept()
        read_frame(c)
        if reply:
            c.sendall(reply)
        time.sleep(0.5)
        c.close()
        ls.close()

    threading.Thread(target=serve_one, daemon=True).start()
    return ls.getsockname()[1]


def test_joiner_names_every_frame_error(work):
    """Whatever a (broken or hostile) genesis answers, the joiner's failure line carries a
    reason: never 'join failed: protocol: ' with nothing after it."""
    d, procs = work
    cases = [
        (b"", "the other side closed the connection"),
        (struct.pack(">I", 0), "bad frame length 0"),
        (struct.pack(">I", 1 << 24), "bad frame length 16777216"),
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "bad frame length"),
        (struct.pack(">I", 5) + b"{nope", "malformed message"),
        (frame({"v": 2, "type": "hello", "proto": "totebox-pair/2", "id": "g",
                "nonce": "AQAAAAAAAAAAAAAAAAAAAA=="}), "carries no commitment"),
        (frame({"v": 2, "type": "confirm", "tag": "A" * 86 + "=="}), "expected 'hello'"),
        (frame({"v": 1, "type": "error", "code": "busy"}), "version 1 is not supported"),
    ]
    for reply, reason in cases:
        port = fake_genesis(reply)
        rc, out = finish(join(procs, d, "ABCDE-FGHJK", port))
        m = re.search(r"join failed: (\S+): (.*)", out)
        assert rc != 0 and m and m.group(2).strip(), out
        assert reason in m.group(2), (reason, out)


@pytest.fixture
def netns():
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("needs root and iproute2")
    name = "tbpair%d" % os.getpid()
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name])


def test_blackholed_genesis_times_out(work, netns):
    """Inside a network namespace whose firewall drops every SYN to the pairing port, the joiner
    gives up at its deadline with a timeout, not 'Operation now in progress'."""
    if not shutil.which("iptables"):
        pytest.skip("iptables not installed")
    d, procs = work
    port = free_port()
    subprocess.run(["ip", "netns", "exec", netns, "iptables", "-A", "INPUT", "-p", "tcp",
                    "--dport", str(port), "-j", "DROP"], check=True)
    r = subprocess.run(["ip", "netns", "exec", netns, PAIR, "join", "ABCDE-FGHJK", "--genesis",
                        "127.0.0.1:%d" % port, "--state-dir", os.path.join(d, "n1"), "--name",
                        "n1", "--no-wg", "--io-timeout", "2"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "Connection timed out" in r.stderr and "no answer" in r.stderr, r.stderr
    assert "in progress" not in r.stderr, r.stderr


def test_wireguard_port_in_use_leaves_no_genesis(work, netns):
    """Inside a network namespace where another program holds UDP 51820, 'genesis' names the
    port and leaves no state behind (before: 'Invalid argument' and a half-made fleet)."""
    d, procs = work
    holder = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c",
                               "import socket,sys,time\n"
                               "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                               "s.bind(('0.0.0.0',51820))\nprint('bound',flush=True)\n"
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    procs.append(holder)
    assert holder.stdout.readline().strip() == "bound"
    state = os.path.join(d, "gen")
    r = subprocess.run(["ip", "netns", "exec", netns, PAIR, "genesis", "--state-dir", state,
                        "--name", "gen", "--ifname", "tbpg%d" % (os.getpid() % 10000),
                        "--wg-port", "51820"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "WireGuard port 51820/udp is already in use" in r.stderr, r.stderr
    assert "Invalid argument" not in r.stderr, r.stderr
    assert not os.path.exists(state) or os.listdir(state) == [], os.listdir(state)


def test_relay_swapping_keys_without_the_code_fails(work):
    """A relay without the code rewrites what a share binds: the joiner's WireGuard key (its
    own key in, towards the genesis), or the genesis' endpoint (towards the joiner). The first
    gives the two sides different ISKs: key confirmation fails, and the guess the genesis
    processed burns the code; the second no longer opens the genesis' commitment. Nobody is
    added either way."""
    d, procs = work
    state = genesis(d)
    cases = [
        (True, "wg_public_key", WGKEY, "wrong-code"),
        (False, "endpoint", "203.0.113.9:51820",
         "protocol: the genesis' share does not open the commitment"),
    ]
    for from_joiner, field, value, outcome in cases:
        def rewrite(f, joiner, from_joiner=from_joiner, field=field, value=value):
            if f.get("type") == "share" and joiner == from_joiner:
                f = dict(f, **{field: value})
            return f

        port = free_port()
        g, code = serve(procs, state, port)
        rec = Recorder(port, rewrite)
        rc, out = finish(join(procs, d, code, rec.port, name="victim"))
        assert rc != 0 and outcome in out, (field, out)
        if from_joiner:
            read_until(g, r"pairing failed: wrong-code.*burned")
        assert roster_version(state) == 1
        assert not os.path.exists(os.path.join(d, "victim", "roster.json"))


def test_failed_interface_undoes_the_genesis(work, netns):
    """A genesis whose WireGuard interface cannot be set up (here: the userspace WireGuard
    program fails) is undone: no key, roster or node.conf stays to be 'reused' later."""
    d, procs = work
    state = os.path.join(d, "gen")
    r = subprocess.run(["ip", "netns", "exec", netns, PAIR, "genesis", "--state-dir", state,
                        "--name", "gen", "--ifname", "tbpf%d" % (os.getpid() % 10000),
                        "--wg-port", "51821"], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, TOTEBOX_WIREGUARD_GO="/bin/false"))
    assert r.returncode != 0
    assert "cannot set up the mesh interface" in r.stderr and "genesis undone" in r.stderr, \
        r.stderr
    assert not os.path.exists(state) or os.listdir(state) == [], os.listdir(state)



def test_impostor_dialling_a_listening_joiner_gets_one_wrong_guess_and_no_member(work):
    """Anyone can dial a listening joiner. An impostor genesis (its own mesh, so its own code)
    that connects first gets one guess: the joiner fails with wrong-code and joins nothing;
    the real genesis' code was never guessed at, and a new join run with it succeeds."""
    d, procs = work
    real, evil = genesis(d), genesis(d, name="evil")
    port = free_port()
    g, code = dial(procs, real, port)
    g.send_signal(19)  # SIGSTOP: the real genesis is slow; the impostor dials first
    try:
        j = listen_join(procs, d, code, port)
        e, _ = dial(procs, evil, port)
        rc, out = finish(j)
        assert rc != 0 and "wrong-code" in out, out
        assert not os.path.exists(os.path.join(d, "n1", "roster.json"))
        read_until(e, r"pairing failed: wrong-code.*burned")
    finally:
        g.send_signal(18)  # SIGCONT
    assert roster_version(real) == 1
    j = listen_join(procs, d, code, port, name="n2")
    confirm(g, j)
    rc, out = finish(j)
    assert rc == 0 and "joined: fleet" in out, out
    assert roster_version(real) == 2
