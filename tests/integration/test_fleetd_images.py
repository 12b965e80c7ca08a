"""Base images through the fleet: a real fleetd and two real vmhosts (test:///default libvirt) on
loopback. fleetctl pushes an image (SHA-256 checked end to end); a cut upload to fleetd resumes at
its offset; the push resumes after fleetd is killed mid-stream and after the connection to a node
is cut (a throttling proxy in front of node n2's API); corrupted bytes are refused with nothing
visible; a name reused for other content is 409 with both digests; oversized uploads, unknown
nodes and path-traversal names are 4xx; a plan for an image no node has is refused, and
placement chooses only a node that holds the image."""
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest

import test_fleetd_harness as H
from harness import validate

VMHOST = os.path.join(H.BUILD, "vmhost", "vmhost")
MiB = 1024 * 1024


class ThrottleProxy:
    """TCP proxy for one node API: listens on the roster's address, forwards to vmhost's real
    listener at rate bytes/s (client to server), and cut() drops every open connection."""

    def __init__(self, listen, port, target, rate):
        self.target, self.rate = target, rate
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((listen, port))
        self.sock.listen(16)
        self.conns = []
        self.lock = threading.Lock()
        self.stopped = False
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                s = socket.create_connection(self.target, timeout=5)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns += [c, s]
            threading.Thread(target=self.pipe, args=(c, s, self.rate), daemon=True).start()
            threading.Thread(target=self.pipe, args=(s, c, None), daemon=True).start()

    def pipe(self, a, b, rate):
        try:
            while True:
                data = a.recv(64 * 1024 if rate is None else 16 * 1024)
                if not data:
                    break
                b.sendall(data)
                if rate:
                    time.sleep(len(data) / rate)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def close(self):
        self.stopped = True
        self.sock.close()
        self.cut()


class Vmhost:
    def __init__(self, node, hb_address, api_listen, api_port, fleetd):
        self.node, self.api = node, (api_listen, api_port)
        self.tmp = tempfile.TemporaryDirectory(prefix="vmhost-img-", dir="/tmp")
        os.chmod(self.tmp.name, 0o755)  # searchable by the user vmhost drops to
        self.state = os.path.join(self.tmp.name, "state")
        settings = {"node_id": node, "fleetd_address": "127.0.0.1",
                    "fleetd_port": fleetd.hb_port, "heartbeat_source": hb_address,
                    "heartbeat_interval": "1s", "libvirt_uri": "test:///default",
                    "state_dir": self.state, "node_api_listen": api_listen,
                    "node_api_port": api_port, "node_api_allow": "127.0.0.1",
                    "virt_type": "qemu"}
        args = [VMHOST]
        for k, v in settings.items():
            args += ["--set", "%s=%s" % (k, v)]
        self.log = open(os.path.join(self.tmp.name, "vmhost.log"), "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log)

    def call(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection(*self.api, timeout=30)
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        conn.close()
        return r.status, (json.loads(data) if data else None)

    def images(self):
        return {i["name"]: i for i in self.call("GET", "/v1/images")[1]["images"]}

    def files(self):
        return sorted(os.listdir(os.path.join(self.state, "images")))

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.log.close()
        self.tmp.cleanup()


@pytest.fixture
def fleet():
    if not os.access(VMHOST, os.X_OK):
        pytest.fail("vmhost is not built at " + VMHOST)
    f = H.Fleetd(nodes=2, settings={"heartbeat_interval": "1s", "node_api_timeout": "5s",
                                    "image_max_bytes": str(64 * MiB)})
    # n1's API on its roster address; n2's behind a throttling proxy on its roster address
    n2_real = (H.node_address(2 + 256 * 256 * 2), H.free_port())  # 127.3.0.2
    v1 = Vmhost("n1", H.node_address(1), H.node_address(1), f.node_api_port, f)
    v2 = Vmhost("n2", H.node_address(2), n2_real[0], n2_real[1], f)
    proxy = ThrottleProxy(H.node_address(2), f.node_api_port, n2_real, None)
    f.start()
    env = {"f": f, "v1": v1, "v2": v2, "proxy": proxy, "tmp": tempfile.TemporaryDirectory()}
    try:
        for n in ("n1", "n2"):
            f.wait(lambda: f.node(n)["state"] == "alive" and f.node(n)["inventory"] == "ok",
                   timeout=20, what="node %s alive with its inventory" % n)
        yield env
    finally:
        proxy.close()
        f.close()
        v1.close()
        v2.close()
        env["tmp"].cleanup()


def image_file(env, name, size, seed):
    path = os.path.join(env["tmp"].name, name)
    block = hashlib.sha256(seed.encode()).digest() * (MiB // 32)
    with open(path, "wb") as out:
        for i in range(size // MiB):
            out.write(block[i % 32:] + block[:i % 32])
        out.write(block[:size % MiB])
    with open(path, "rb") as fh:
        return path, hashlib.file_digest(fh, "sha256").hexdigest()


def raw_put(address, path, data, headers=None):
    """PUT with 'Expect: 100-continue', as fleetctl and fleetd send it: the body goes only after
    the server's 100, so a refusal before the body is read cleanly. (status, JSON)."""
    s = socket.create_connection(address, timeout=60)
    head = "PUT %s HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\nExpect: 100-continue\r\n" % (
        path, len(data))
    for k, v in (headers or {}).items():
        head += "%s: %s\r\n" % (k, v)
    s.sendall((head + "\r\n").encode())
    f = s.makefile("rb")

    def response():
        status = int(f.readline().split()[1])
        hdrs = {}
        while True:
            line = f.readline().strip()
            if not line:
                break
            k, v = line.decode().split(":", 1)
            hdrs[k.strip().lower()] = v.strip()
        return status, hdrs

    status, hdrs = response()
    if status == 100:
        s.sendall(data)
        status, hdrs = response()
    body = f.read(int(hdrs.get("content-length", 0)))
    s.close()
    return status, json.loads(body) if body else None


def put(f, name, data, sha, size=None, offset=0, nodes=None):
    q = "/v1/images/%s/upload?sha256=%s&size=%d&offset=%d" % (
        name, sha, len(data) if size is None else size, offset)
    if nodes:
        q += "&nodes=" + nodes
    return raw_put(("127.0.0.1", f.api_port), q, data,
                   {"Authorization": "Bearer " + f.token,
                    "Content-Type": "application/octet-stream"})


def vput(v, name, data, sha, size=None):
    q = "/v1/images/%s/upload?sha256=%s&size=%d&offset=0" % (
        name, sha, len(data) if size is None else size)
    return raw_put(v.api, q, data)


def push_state(f, name):
    return f.json("GET", "/v1/images/%s/push" % name, expect=200)[1]


def wait_push(f, name, timeout=60):
    return f.wait(lambda: (lambda p: p if p["state"] != "running" else None)(push_state(f, name)),
                  timeout=timeout, what="push of %s" % name)


def node_sha(v, name):
    img = v.images()[name]
    vol = img["files"]["disk"]["volume"]
    with open(os.path.join(v.state, "images", vol), "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def test_push_to_every_alive_node_list_and_remove(fleet):
    f, v1, v2 = fleet["f"], fleet["v1"], fleet["v2"]
    path, sha = image_file(fleet, "base.raw", 3 * MiB + 123, "a")
    r = f.ctl("image", "push", path, "--name", "base-a")
    assert "n1" in r.stdout and "n2" in r.stdout and "done" in r.stdout, r.stdout + r.stderr
    for v in (v1, v2):
        inv = v.call("GET", "/v1/inventory")[1]
        validate(inv, "inventory.schema.json")
        assert inv["images"] == [{"name": "base-a", "sha256": sha, "size": 3 * MiB + 123}]
        assert v.images()["base-a"]["source_sha256"] == sha
        assert node_sha(v, "base-a") == sha
        assert not [x for x in v.files() if x.startswith(".partial")]
    p = push_state(f, "base-a")
    assert p["state"] == "done" and p["size"] == 3 * MiB + 123
    assert all(n["bytes_sent"] == p["size"] and n["resumed_from"] == 0 for n in p["nodes"])
    # the staged copy is gone once every node has the image (base images are not vault data)
    assert not os.listdir(os.path.join(f.state_dir, "images"))
    # the nodes' inventories report it: fleetd's list names both nodes
    f.wait(lambda: any(i["name"] == "base-a" and sorted(i["nodes"]) == ["n1", "n2"]
                       for i in f.json("GET", "/v1/images", expect=200)[1]["images"]),
           what="both nodes listing base-a")
    out = f.ctl("image", "list").stdout
    assert "base-a" in out and sha[:12] in out and "n1,n2" in out, out
    # pushed again: every node already has it, nothing is sent
    r = f.ctl("image", "push", path, "--name", "base-a")
    p = push_state(f, "base-a")
    assert p["state"] == "done" and all(n["bytes_sent"] == 0 for n in p["nodes"]), p
    r = f.ctl("image", "remove", "base-a", "--node", "n1")
    assert "removed from 1 nodes" in r.stdout, r.stdout + r.stderr
    assert "base-a" not in v1.images() and "base-a" in v2.images()
    st, doc = f.json("DELETE", "/v1/images/base-a?node=n1")
    assert st == 404, doc


def test_push_no_wait_prints_its_operation(fleet):
    """fleetctl image push --no-wait returns once fleetd holds the image, printing the push's
    operation; the operation, read later, ends with the push record."""
    f, proxy = fleet["f"], fleet["proxy"]
    path, sha = image_file(fleet, "nw.raw", 4 * MiB, "nw")
    proxy.rate = 2 * MiB  # n2's copy takes a second or two: still running when fleetctl ends
    try:
        r = f.ctl("--no-wait", "image", "push", path, "--name", "nw", "--node", "n2")
    finally:
        proxy.rate = None
    m = re.search(r"^operation ([0-9a-f]{32}) \(image-push, /v1/images/nw/push\) is running", r.stdout,
                  re.M)
    assert m, r.stdout + r.stderr
    done = f.finish({"id": m.group(1), "kind": "image-push"}, timeout=60)
    assert done["state"] == "succeeded" and done["result"]["sha256"] == sha, done


def test_push_resumes_after_fleetd_is_killed_mid_stream(fleet):
    f, v2, proxy = fleet["f"], fleet["v2"], fleet["proxy"]
    size = 12 * MiB
    path, sha = image_file(fleet, "big.raw", size, "b")
    proxy.rate = 3 * MiB  # new connections through the proxy are throttled
    ctl = subprocess.Popen([H.FLEETCTL, "image", "push", path, "--name", "big", "--node", "n2"],
                           env=dict(os.environ, FLEETCTL_URL="http://127.0.0.1:%d" % f.api_port,
                                    FLEETCTL_TOKEN=f.token),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    def under_way():
        st, _, body = f.request("GET", "/v1/images/big/push")
        return st == 200 and json.loads(body)["nodes"][0]["bytes_sent"] > 2 * MiB
    f.wait(under_way, timeout=30, what="the push under way")
    f.stop(sig=signal.SIGKILL)
    ctl.wait(timeout=30)
    assert ctl.returncode != 0
    proxy.cut()
    st, doc = v2.call("GET", "/v1/images/big/upload?sha256=" + sha)
    assert st == 200 and 0 < doc["offset"] < size and not doc["complete"], doc
    assert "big" not in v2.images()  # nothing visible before every byte is checked
    cut_at = doc["offset"]
    proxy.rate = None
    f.start()
    # the push's operation was cut short with fleetd: failed as interrupted, never left running
    ops = [o for o in f.json("GET", "/v1/operations", expect=200)[1]["operations"]
           if o["kind"] == "image-push" and o["resources"] == {"push": "/v1/images/big/push"}]
    assert len(ops) == 1 and ops[0]["state"] == "failed", ops
    assert ops[0]["error"]["status"] == 503 and "push it again" in ops[0]["error"]["detail"], ops
    f.wait(lambda: f.node("n2")["state"] == "alive", timeout=20, what="n2 alive again")
    r = f.ctl("image", "push", path, "--name", "big", "--node", "n2", check=False)
    p = push_state(f, "big")
    node = p["nodes"][0]
    assert p["state"] == "done", (p, r.stderr)
    assert node["resumed_from"] >= cut_at and node["bytes_sent"] == size - node["resumed_from"]
    assert node_sha(v2, "big") == sha


def test_push_resumes_after_the_connection_is_cut(fleet):
    f, v2, proxy = fleet["f"], fleet["v2"], fleet["proxy"]
    size = 10 * MiB
    path, sha = image_file(fleet, "cut.raw", size, "c")
    proxy.rate = 3 * MiB
    with open(path, "rb") as fh:
        st, doc = put(f, "cut", fh.read(), sha, nodes="n2")
    # the push is a long operation: 202 and the operation that follows it
    assert st == 202 and doc["kind"] == "image-push" and doc["vm_id"] is None, doc
    assert doc["resources"] == {"push": "/v1/images/cut/push"}, doc
    op = doc
    f.wait(lambda: push_state(f, "cut")["nodes"][0]["bytes_sent"] > 2 * MiB, timeout=30,
           what="the push under way")
    # another push of the name while this one runs is refused before its body
    st, doc = put(f, "cut", b"y" * 4096, hashlib.sha256(b"y" * 4096).hexdigest())
    assert st == 409 and doc["type"].endswith("/push-in-progress"), doc
    proxy.rate = None
    proxy.cut()
    p = wait_push(f, "cut")
    node = p["nodes"][0]
    assert p["state"] == "done" and node["attempts"] >= 2, p
    assert 0 < node["offset"] < size  # the last attempt started where the node's bytes ended
    assert node_sha(v2, "cut") == sha
    done = f.finish(op)
    assert done["state"] == "succeeded" and done["progress"] == 100, done
    assert done["result"]["state"] == "done" and done["result"]["name"] == "cut", done
    from test_fleetd_api import schema
    schema("operation.schema.json").validate(done)


def test_corrupted_bytes_are_refused_and_nothing_is_visible(fleet):
    f, v1 = fleet["f"], fleet["v1"]
    data = os.urandom(MiB)
    claimed = hashlib.sha256(b"other content").hexdigest()
    st, doc = put(f, "bad", data, claimed)
    assert st == 422 and doc["type"].endswith("/checksum-mismatch"), doc
    assert doc["received_sha256"] == hashlib.sha256(data).hexdigest()
    assert doc["sha256"] == claimed
    assert not os.listdir(os.path.join(f.state_dir, "images"))
    assert f.request("GET", "/v1/images/bad/push")[0] == 404
    # straight at vmhost (what a corrupting path between fleetd and the node would give it)
    st, doc = vput(v1, "bad", data, claimed)
    assert st == 422 and doc["type"].endswith("/checksum-mismatch"), doc
    assert "bad" not in v1.images() and v1.files() == []
    assert v1.call("GET", "/v1/images/bad/upload?sha256=" + claimed)[1]["offset"] == 0


def test_a_name_reused_for_other_content_is_409_with_both_digests(fleet):
    f, v1 = fleet["f"], fleet["v1"]
    path, sha = image_file(fleet, "one.raw", MiB, "one")
    f.ctl("image", "push", path, "--name", "same", "--node", "n1")
    f.wait(lambda: any(i["name"] == "same" for i in f.json("GET", "/v1/images")[1]["images"]),
           what="the image listed")
    other = os.urandom(MiB)
    osha = hashlib.sha256(other).hexdigest()
    st, doc = put(f, "same", other, osha)
    assert st == 409 and doc["type"].endswith("/image-name-reused"), doc
    assert doc["existing_sha256"] == sha and doc["sha256"] == osha and doc["node"] == "n1"
    assert not os.listdir(os.path.join(f.state_dir, "images"))  # refused before a byte
    st, doc = vput(v1, "same", other, osha)
    assert st == 409 and sha in doc["detail"] and osha in doc["detail"], doc
    assert node_sha(v1, "same") == sha
    r = f.ctl("image", "push", path + "x", "--name", "same", check=False)
    assert r.returncode != 0


def test_limits_unknown_nodes_and_bad_names(fleet):
    f, v1 = fleet["f"], fleet["v1"]
    data = b"x" * 4096
    sha = hashlib.sha256(data).hexdigest()
    st, doc = raw_put(("127.0.0.1", f.api_port),
                      "/v1/images/x1/upload?sha256=%s&size=4096&offset=0" % sha, data)
    assert st == 401, doc  # no token: refused before the body
    st, doc = put(f, "huge", data, sha, size=64 * MiB + 1)
    assert st == 413 and doc["type"].endswith("/image-too-large"), doc
    st, doc = put(f, "short", data, sha, size=100)  # the body is longer than the image
    assert st == 413, doc
    st, doc = put(f, "x1", data, sha, nodes="nope")
    assert st == 422 and doc["type"].endswith("/unknown-node"), doc
    st, doc = put(f, "x1", data, "ABC")
    assert st == 400, doc
    st, doc = put(f, "x1", data[5:], sha, size=4096, offset=5)  # fleetd holds nothing of it
    assert st == 409 and doc["upload_offset"] == 0, doc
    # "a..b" is a valid name (common/ident.c: no "/", it cannot leave the directory)
    for bad in ("..", "%2e%2e", ".hidden", "-x", "Upper", "a%2fb", "a" * 64, "a%00b"):
        st, doc = put(f, bad, data, sha)
        # a NUL ends the decoded path ("/v1/images/a": 405); the others are 400 or 404
        assert st in (400, 404, 405), (bad, st, doc)
        st2, _ = vput(v1, bad, data, sha)
        assert st2 in (400, 404, 405), (bad, st2)
    st, doc = put(f, "..", data, sha)
    assert doc["type"].endswith("/invalid-image-name"), doc
    assert not os.listdir(os.path.join(f.state_dir, "images"))
    assert v1.files() == [] and fleet["v2"].files() == []
    assert not [p for p in os.listdir(f.state_dir) if p.startswith(".partial")]


def test_plans_name_only_nodes_with_the_image(fleet):
    f = fleet["f"]
    req = {"entity": "acme", "memory_mib": 64, "vcpus": 1, "image": "only-n2",
           "vault_disk_mib": 16}
    st, doc = f.json("POST", "/v1/plans", req)
    assert st == 422 and doc["type"].endswith("/no-node-has-image"), doc
    assert "no node has image 'only-n2'" in doc["detail"]
    path, sha = image_file(fleet, "n2.raw", MiB, "n2")
    f.ctl("image", "push", path, "--name", "only-n2", "--node", "n2")
    # n1 wins ties (the smaller id) and both nodes have the same RAM: only the image decides
    st, plan = f.json("POST", "/v1/plans", req)
    assert st == 201 and plan["node_id"] == "n2", plan
    n1 = [c for c in plan["candidates"] if c["node_id"] == "n1"][0]
    assert n1["verdict"] == "refused" and "image" in n1["reason"], n1


def test_a_cut_upload_to_fleetd_resumes_at_its_offset(fleet):
    f = fleet["f"]
    path, sha = image_file(fleet, "up.raw", 4 * MiB, "up")
    with open(path, "rb") as fh:
        data = fh.read()
    s = socket.create_connection(("127.0.0.1", f.api_port))
    s.sendall(("PUT /v1/images/up/upload?sha256=%s&size=%d&offset=0 HTTP/1.1\r\nHost: t\r\n"
               "Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n"
               % (sha, len(data), f.token, len(data))).encode() + data[:MiB + 7])
    time.sleep(0.5)
    s.close()  # cut in the middle of the body
    held = f.wait(lambda: (lambda d: d["upload_offset"] or None)(
        f.json("GET", "/v1/images/up/upload?sha256=" + sha, expect=200)[1]),
        what="fleetd holding the first bytes")
    assert 0 < held <= MiB + 7
    r = f.ctl("image", "push", path, "--name", "up")
    assert "holds %d bytes already: resuming there" % held in r.stderr, r.stderr
    assert push_state(f, "up")["state"] == "done"
    for v in (fleet["v1"], fleet["v2"]):
        assert node_sha(v, "up") == sha
