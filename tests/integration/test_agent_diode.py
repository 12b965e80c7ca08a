"""The Diode, agent side, black-box and without a VM: the test plays vmhost on a private unix
socket (the agent's channel), deposits records in data frames, lists and reads them back, and
checks every receipt as fleetctl does: the ledger line's hash and size, the RFC 9162 inclusion
proof into the signed tree head, the head's Ed25519 signature by the vault key. It also plays
the adversary: a dropped channel mid-deposit (resumed), a repeated deposit id (one record), the
same id with other content, content that does not hash as announced, frames out of order, and
every limit."""
import base64
import hashlib
import json
import os
import signal
import sys
import subprocess
import tempfile

import jsonschema
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

sys.path.insert(0, os.path.dirname(__file__))
import test_agent_channel  # noqa: E402

BUILD = os.environ.get("TOTEBOX_BUILD_DIR", "build")
SOURCE = os.environ.get("TOTEBOX_SOURCE_DIR", ".")
AGENT = os.path.join(BUILD, "agent", "totebox-agent")
SCHEMA = json.load(open(os.path.join(SOURCE, "schemas", "agent-message.schema.json")))


class Host(test_agent_channel.Host):
    """test_agent_channel's host, reading the Diode's data frames too."""

    def accept(self):
        super().accept()
        self.buf = b""

    def _fill(self):
        chunk = self.conn.recv(1 << 20)
        assert chunk, "agent closed the channel"
        self.buf += chunk

    def recv_item(self):
        """A JSON message, or ('data', id, offset, bytes) for a data frame."""
        while b"\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\n", 1)
        if line.startswith(b"!D "):
            _, fid, off, n = line.decode().split(" ")
            while len(self.buf) < int(n):
                self._fill()
            data, self.buf = self.buf[:int(n)], self.buf[int(n):]
            return ("data", fid, int(off), data)
        msg = json.loads(line)
        jsonschema.validate(msg, SCHEMA)
        return msg

    def recv(self, *types, request_id=None):
        for _ in range(200):
            m = self.recv_item()
            if isinstance(m, dict) and m["type"] in types and \
                    (request_id is None or m.get("request_id") == request_id):
                return m
        raise AssertionError("no %s message" % (types,))

    def send_msg(self, obj):
        jsonschema.validate(obj, SCHEMA)
        self.conn.sendall(json.dumps(obj).encode() + b"\n")

    def frames(self, fid, data, offset=0, chunk=256 * 1024):
        for i in range(offset, len(data), chunk):
            part = data[i:i + chunk]
            self.conn.sendall(b"!D %s %d %d\n" % (fid.encode(), i, len(part)) + part)


def b2(data):
    return hashlib.blake2b(data, digest_size=32).hexdigest()


def node(l, r):
    return hashlib.sha256(b"\x01" + l + r).digest()


def root_from_inclusion(index, size, leaf, proof):
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        raise AssertionError("index past the tree")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise AssertionError("proof too long")
        if fn & 1 or fn == sn:
            r = node(p, r)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    assert sn == 0, "proof too short"
    return r


def check_record(msg, data=None):
    """What fleetctl checks before it believes a receipt or writes a record out."""
    line = msg["line"].encode()
    entry = json.loads(line)
    assert entry["seq"] == msg["seq"] and entry["path"] == msg["path"]
    assert entry["blake2b_256"] == msg["blake2b_256"] and entry["size"] == msg["size"]
    leaf = hashlib.sha256(b"\x00" + line).digest()
    sth = msg["sth"]
    root = root_from_inclusion(msg["leaf_index"], sth["size"], leaf,
                               [bytes.fromhex(h) for h in msg["proof"]])
    assert root.hex() == sth["root"]
    signed = b"totebox-sth-v1\n" + sth["size"].to_bytes(8, "big") + root + \
        sth["time_ms"].to_bytes(8, "big")
    Ed25519PublicKey.from_public_bytes(base64.b64decode(msg["public_key"])).verify(
        base64.b64decode(sth["signature"]), signed)
    if data is not None:
        assert len(data) == entry["size"] and b2(data) == entry["blake2b_256"]
    return entry


@pytest.fixture
def env():
    d = tempfile.mkdtemp(prefix="totebox-agent-diode-")
    host = Host(os.path.join(d, "channel.sock"))
    procs = []

    def start(*extra):
        p = subprocess.Popen([AGENT, "run", "--vault", os.path.join(d, "vault"), "--channel",
                              os.path.join(d, "channel.sock"), "--set", "scan_interval=200ms",
                              "--set", "max_record_bytes=8388608", *extra],
                             stderr=open(os.path.join(d, "agent.log"), "ab"))
        procs.append(p)
        host.accept()
        host.recv("report")  # the start report
        return p

    yield d, host, start
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            p.wait(10)
    subprocess.run(["rm", "-rf", d])


def deposit(host, did, name, data, supersedes=None, rid=None, sizeof=None, hashof=None):
    rid = rid or "r-" + did
    host.send_msg({"v": 1, "type": "deposit-begin", "request_id": rid, "deposit_id": did,
               "name": name, "size": len(data) if sizeof is None else sizeof,
               "blake2b_256": hashof or b2(data), "supersedes": supersedes})
    m = host.recv("deposit-ready", "deposit-receipt", "error", request_id=rid)
    if m["type"] != "deposit-ready":
        return m
    host.frames(did, data, m["offset"])
    host.send_msg({"v": 1, "type": "deposit-end", "request_id": rid, "deposit_id": did})
    return host.recv("deposit-receipt", "error", request_id=rid)


def read(host, seq, rid="rd1"):
    host.send_msg({"v": 1, "type": "record-read", "request_id": rid, "seq": seq})
    m = host.recv("record", "error", request_id=rid)
    if m["type"] == "error":
        return m, None
    data = b""
    while True:
        it = host.recv_item()
        if isinstance(it, tuple):
            assert it[1] == rid and it[2] == len(data)
            data += it[3]
        elif it["type"] == "record-end" and it["request_id"] == rid:
            assert it["size"] == len(data)
            return m, data


def ledger(d):
    with open(os.path.join(d, "vault", "ledger", "ledger.jsonl")) as f:
        return [json.loads(x) for x in f]


def test_deposit_receipt_list_read(env):
    d, host, start = env
    start()
    data = os.urandom(700 * 1024 + 17)  # several frames
    r = deposit(host, "dep-1", "my report (v1).txt", data)
    assert r["type"] == "deposit-receipt", r
    e = check_record(r, data)
    assert r["seq"] == 1 and r["name"] == "00000001-my_report__v1_.txt"
    with open(os.path.join(d, "vault", e["path"]), "rb") as f:
        assert f.read() == data
    assert not [n for n in os.listdir(os.path.join(d, "vault", "app-console-input"))]
    host.recv("report")  # the seal report after a deposit

    r2 = deposit(host, "dep-2", "fix.txt", b"corrected\n", supersedes=1)
    assert r2["type"] == "deposit-receipt" and check_record(r2)["supersedes"] == 1
    for i in range(3, 6):
        assert deposit(host, "dep-%d" % i, "n%d" % i, b"x" * i)["seq"] == i

    host.send_msg({"v": 1, "type": "record-list", "request_id": "l1", "limit": 2})
    page = host.recv("record-list", request_id="l1")
    assert [x["seq"] for x in page["records"]] == [1, 2] and page["next_after"] == 2
    assert page["total"] == 5
    host.send_msg({"v": 1, "type": "record-list", "request_id": "l2", "after": 4, "limit": 2})
    page = host.recv("record-list", request_id="l2")
    assert [x["seq"] for x in page["records"]] == [5] and page["next_after"] is None

    m, got = read(host, 1)
    check_record(m, got)
    assert got == data
    m, _ = read(host, 99, rid="rd2")
    assert m["type"] == "error" and m["code"] == "not-found"


def test_dropped_channel_resumes_and_repeats_are_one_record(env):
    d, host, start = env
    start()
    data = os.urandom(1024 * 1024)
    host.send_msg({"v": 1, "type": "deposit-begin", "request_id": "a1", "deposit_id": "big",
               "name": "big.bin", "size": len(data), "blake2b_256": b2(data)})
    assert host.recv("deposit-ready", request_id="a1")["offset"] == 0
    host.frames("big", data[:512 * 1024])
    host.conn.close()  # the channel drops mid-deposit
    host.accept()
    host.send_msg({"v": 1, "type": "deposit-begin", "request_id": "a2", "deposit_id": "big",
               "name": "big.bin", "size": len(data), "blake2b_256": b2(data)})
    ready = host.recv("deposit-ready", request_id="a2")
    assert 0 < ready["offset"] <= 512 * 1024
    host.frames("big", data, ready["offset"])
    host.send_msg({"v": 1, "type": "deposit-end", "request_id": "a2", "deposit_id": "big"})
    r = host.recv("deposit-receipt", request_id="a2")
    check_record(r, data)
    # the same deposit again (the host restarted before it saw the receipt): the same record
    again = deposit(host, "big", "big.bin", data, rid="a3")
    assert again["type"] == "deposit-receipt" and again["seq"] == r["seq"]
    other = deposit(host, "big", "big.bin", b"other", rid="a4")
    assert other["type"] == "error" and other["code"] == "conflict"
    assert [x["seq"] for x in ledger(d)] == [1]


def test_agent_restart_mid_deposit_resumes(env):
    d, host, start = env
    p = start()
    data = os.urandom(600 * 1024)
    host.send_msg({"v": 1, "type": "deposit-begin", "request_id": "b1", "deposit_id": "k",
               "name": "k.bin", "size": len(data), "blake2b_256": b2(data)})
    host.recv("deposit-ready", request_id="b1")
    host.frames("k", data[:300 * 1024])
    host.send_msg({"v": 1, "type": "record-list", "request_id": "sync"})
    host.recv("record-list", request_id="sync")  # the frames before it were written
    p.send_signal(signal.SIGKILL)
    p.wait()
    start()
    r = deposit(host, "k", "k.bin", data, rid="b2")
    assert r["type"] == "deposit-receipt"
    check_record(r, data)
    assert [x["seq"] for x in ledger(d)] == [1]


def test_refusals_change_nothing(env):
    d, host, start = env
    start()
    bad = deposit(host, "h1", "a.txt", b"actual bytes", hashof=b2(b"announced bytes"))
    assert bad["type"] == "error" and bad["code"] == "hash-mismatch"
    assert ledger(d) == []
    # a retry with the right content starts from 0 and seals
    assert deposit(host, "h1", "a.txt", b"actual bytes")["seq"] == 1
    cases = [
        ({"name": "x" * 201}, "bad-request"),
        ({"name": "../etc/passwd"}, "bad-request"),
        ({"name": "a.supersedes-1"}, "bad-request"),
        ({"size": 9 * 1024 * 1024}, "too-large"),
        ({"supersedes": 77}, "bad-request"),
        ({"deposit_id": "no/slash"}, "bad-request"),
        ({"extra": 1}, "bad-request"),
    ]
    for i, (change, code) in enumerate(cases):
        msg = {"v": 1, "type": "deposit-begin", "request_id": "c%d" % i, "deposit_id": "c%d" % i,
               "name": "n", "size": 1, "blake2b_256": b2(b"z")}
        msg.update(change)
        host.conn.sendall(json.dumps(msg).encode() + b"\n")
        m = host.recv("error", "deposit-ready", request_id="c%d" % i)
        assert m["type"] == "error" and m["code"] == code, (change, m)
    # frames out of order, past the size, and a malformed header
    host.send_msg({"v": 1, "type": "deposit-begin", "request_id": "o1", "deposit_id": "o1",
               "name": "o", "size": 10, "blake2b_256": b2(b"0123456789")})
    host.recv("deposit-ready", request_id="o1")
    host.conn.sendall(b"!D o1 5 5\n56789")
    assert host.recv("error", request_id="o1")["code"] == "out-of-step"
    host.send_msg({"v": 1, "type": "deposit-end", "request_id": "o2", "deposit_id": "o1"})
    assert host.recv("error", request_id="o2")["code"] == "out-of-step"
    host.send_msg({"v": 1, "type": "deposit-begin", "request_id": "o3", "deposit_id": "o3",
               "name": "o", "size": 3, "blake2b_256": b2(b"abc")})
    host.recv("deposit-ready", request_id="o3")
    host.conn.sendall(b"!D o3 0 00003\nabc")
    assert host.recv("error", request_id="o3")["code"] == "out-of-step"
    assert [x["seq"] for x in ledger(d)] == [1]
    r = subprocess.run([AGENT, "verify", os.path.join(d, "vault")], capture_output=True)
    assert r.returncode == 0, r.stdout


def test_a_swapped_part_file_is_not_sealed(env):
    """A producer (who may write into the inbox) replaces the deposit's part file with its own
    bytes before deposit-end: the agent's own hash is for another inode, so the seal reads the
    file, finds it is not what was announced and seals nothing."""
    d, host, start = env
    start()
    data = os.urandom(64 * 1024)
    host.send_msg({"v": 1, "type": "deposit-begin", "request_id": "s1", "deposit_id": "swap",
                   "name": "s.bin", "size": len(data), "blake2b_256": b2(data)})
    host.recv("deposit-ready", request_id="s1")
    host.frames("swap", data)
    host.send_msg({"v": 1, "type": "record-list", "request_id": "sync"})
    host.recv("record-list", request_id="sync")
    inbox = os.path.join(d, "vault", "app-console-input")
    evil = os.path.join(inbox, ".evil.tmp")
    with open(evil, "wb") as f:
        f.write(os.urandom(len(data)))
    os.rename(evil, os.path.join(inbox, ".deposit-swap.part"))
    host.send_msg({"v": 1, "type": "deposit-end", "request_id": "s2", "deposit_id": "swap"})
    m = host.recv("deposit-receipt", "error", request_id="s2")
    assert m["type"] == "error" and m["code"] == "hash-mismatch", m
    assert ledger(d) == []
