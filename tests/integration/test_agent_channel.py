"""totebox-agent run, black-box: the test plays vmhost on a private unix socket (the channel),
checks every message against schemas/agent-message.schema.json, seals through the inbox, asks
for consistency proofs (verified here with RFC 9162 in Python) and full verifications, feeds
bad input, and checks the agent never hangs when the host stops reading."""
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import jsonschema
import pytest

BUILD = os.environ.get("TOTEBOX_BUILD_DIR", "build")
SOURCE = os.environ.get("TOTEBOX_SOURCE_DIR", ".")
AGENT = os.path.join(BUILD, "agent", "totebox-agent")
SCHEMA = json.load(open(os.path.join(SOURCE, "schemas", "agent-message.schema.json")))


class Host:
    def __init__(self, sock_path):
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(sock_path)
        self.srv.listen(1)
        self.srv.settimeout(20)
        self.conn = None
        self.buf = b""

    def accept(self):
        self.conn, _ = self.srv.accept()
        self.conn.settimeout(20)

    def recv(self):
        while b"\n" not in self.buf:
            chunk = self.conn.recv(65536)
            assert chunk, "agent closed the channel"
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        assert len(line) <= 65536
        msg = json.loads(line)
        jsonschema.validate(msg, SCHEMA)
        return msg

    def recv_type(self, type_, **match):
        for _ in range(50):
            msg = self.recv()
            if msg["type"] == type_ and all(msg.get(k) == v for k, v in match.items()):
                return msg
        raise AssertionError("no %s message" % type_)

    def send(self, data):
        self.conn.sendall(data)


@pytest.fixture
def env():
    d = tempfile.mkdtemp(prefix="totebox-agent-chan-")
    host = Host(os.path.join(d, "channel.sock"))
    procs = []

    def start(*extra):
        p = subprocess.Popen([AGENT, "run", "--vault", os.path.join(d, "vault"), "--channel",
                              os.path.join(d, "channel.sock"), "--set", "scan_interval=200ms",
                              "--set", "log_level=debug", *extra],
                             stderr=open(os.path.join(d, "agent.log"), "ab"))
        procs.append(p)
        host.accept()
        return p

    yield d, host, start
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    subprocess.run(["chattr", "-R", "-i", "-a", d], capture_output=True)
    shutil.rmtree(d, ignore_errors=True)


def put(vault, name, data):
    inbox = os.path.join(vault, "app-console-input")
    tmp = os.path.join(inbox, "." + name)
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, os.path.join(inbox, name))


def node(l, r):
    return hashlib.sha256(b"\x01" + l + r).digest()


def verify_consistency(size1, size2, root1, root2, proof):
    """RFC 9162 2.1.4.2."""
    if size1 == size2:
        return not proof and root1 == root2
    if size1 & (size1 - 1) == 0:
        proof = [root1] + proof
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node(c, fr), node(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == root1 and sr == root2


def test_reports_seals_proofs_and_requests(env):
    d, host, start = env
    vault = os.path.join(d, "vault")
    proc = start()
    rep = host.recv_type("report", trigger="start")
    assert rep["sth"]["size"] == 0 and rep["mismatches"] == []
    heads = {}
    for i in range(5):
        put(vault, "r%d" % i, b"record %d" % i)
        rep = host.recv_type("report", trigger="seal")
        heads[rep["sth"]["size"]] = bytes.fromhex(rep["sth"]["root"])
        while rep["sth"]["size"] < i + 1:
            rep = host.recv_type("report", trigger="seal")
            heads[rep["sth"]["size"]] = bytes.fromhex(rep["sth"]["root"])
    assert rep["records"] == 5 and rep["public_key"]
    for m in sorted(heads):
        host.send(json.dumps({"v": 1, "type": "consistency-request", "request_id": "c%d" % m,
                              "from_size": m, "to_size": 5}).encode() + b"\n")
        c = host.recv_type("consistency", request_id="c%d" % m)
        proof = [bytes.fromhex(h) for h in c["proof"]]
        assert verify_consistency(m, 5, heads[m], heads[5], proof), (m, c)
    host.send(b'{"v":1,"type":"verify-request","request_id":"v1"}\n')
    rep = host.recv_type("report", trigger="request", request_id="v1")
    assert rep["mismatches"] == [] and rep["records"] == 5

    # tamper while running: the next verification names it
    entry = json.loads(open(os.path.join(vault, "ledger", "ledger.jsonl")).readline())
    p = os.path.join(vault, entry["path"])
    subprocess.run(["chattr", "-i", p], check=True)
    os.chmod(p, 0o644)
    open(p, "ab").write(b"!")
    host.send(b'{"v":1,"type":"verify-request","request_id":"v2"}\n')
    rep = host.recv_type("report", trigger="request", request_id="v2")
    got = {m["kind"] for m in rep["mismatches"]}
    assert {"modified-asset", "flag-cleared"} <= got, rep
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


BAD_LINES = [
    (b"garbage\n", None),
    (b'{"v":2,"type":"verify-request","request_id":"x1"}\n', "x1"),
    (b'{"v":1,"type":"migrate","request_id":"x2"}\n', "x2"),
    (b'{"v":1,"type":"consistency-request","request_id":"x3","from_size":0,"to_size":1}\n', "x3"),
    (b'{"v":1,"type":"consistency-request","request_id":"x4","from_size":1,"to_size":99}\n',
     "x4"),
    (b'{"v":1,"type":"consistency-request","request_id":"x5","from_size":-1,"to_size":1}\n',
     "x5"),
    (b'{"v":1,"type":"verify-request","request_id":"x6","extra":1}\n', "x6"),
    (b'[' * 100 + b"\n", None),
    (b'{"v":1,"type":"verify-request","request_id":"' + b"i" * 500 + b'"}\n', None),
    (b"\xff\xfe\x00\x01\n", None),
    (b"x" * 70000 + b"\n", None),
]


def test_bad_input_gets_errors_never_a_crash(env):
    d, host, start = env
    proc = start()
    host.recv_type("report", trigger="start")
    for line, rid in BAD_LINES:
        host.send(line)
        err = host.recv_type("error")
        assert err["detail"], err
        if rid:
            assert err.get("request_id") == rid, (line[:80], err)
    host.send(b'{"v":1,"type":"verify-request","request_id":"after"}\n')
    host.recv_type("report", request_id="after")
    assert proc.poll() is None


def test_host_that_stops_reading_does_not_hang_the_agent(env):
    d, host, start = env
    vault = os.path.join(d, "vault")
    proc = start("--set", "queue_max=4")
    host.recv_type("report", trigger="start")
    # the host stops reading; the agent keeps sealing and its queue stays bounded
    for i in range(200):
        put(vault, "bulk%03d" % i, b"x" * 4096)
        if i % 50 == 0:
            time.sleep(0.3)
    deadline = time.time() + 20
    while time.time() < deadline:
        with open(os.path.join(vault, "ledger", "ledger.jsonl")) as f:
            if sum(1 for _ in f) == 200:
                break
        time.sleep(0.2)
    with open(os.path.join(vault, "ledger", "ledger.jsonl")) as f:
        assert sum(1 for _ in f) == 200
    t0 = time.time()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0 and time.time() - t0 < 5


def test_agent_waits_for_a_missing_host(env):
    d, host, start = env
    vault = os.path.join(d, "vault")
    host.srv.close()
    os.unlink(os.path.join(d, "channel.sock"))
    p = subprocess.Popen([AGENT, "run", "--vault", vault, "--channel",
                          os.path.join(d, "channel.sock"), "--set", "scan_interval=200ms"],
                         stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        put(vault, "while-alone", b"sealed with no host")
        time.sleep(1)
        assert p.poll() is None
        late = Host(os.path.join(d, "channel.sock"))
        late.accept()  # the agent reconnects within about a second
        put(vault, "after", b"x")
        rep = late.recv_type("report", trigger="seal")
        assert rep["sth"]["size"] >= 1
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0
