"""Harness for fleetd's black-box tests: a private fleetd (ports, state dir, roster of synthetic
nodes on 127.0.1.x), heartbeats sent over real UDP from sockets bound to each node's address,
and a small HTTP client. Other test_fleetd*/test_fleetctl* modules import it; its own tests
check the harness and fleetd's command line."""
import hashlib
import http.client
import http.server
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse

from harness import BUILD, SOURCE, free_port  # noqa: F401 (the test modules use H.free_port)

FLEETD = os.path.join(BUILD, "fleetd", "fleetd")
FLEETCTL = os.path.join(BUILD, "fleetctl", "fleetctl")
ZERO_DIGEST = "0" * 64


def node_address(i):
    return "127.%d.%d.%d" % (1 + i // 65536, (i // 256) % 256, i % 256)


def roster_doc(n, version=1, extra=()):
    nodes = [{"id": "ctl", "role": "cloud", "mesh_address": "127.0.0.1"}]
    nodes += [{"id": "n%d" % i, "role": "node", "mesh_address": node_address(i)} for i in range(1, n + 1)]
    nodes += list(extra)
    return {"v": 1, "version": version, "fleet_id": "f1", "controller": "ctl", "nodes": nodes}


def heartbeat(node, seq, avail=16000, total=32768, committed=0, libvirt_age=10, digest=ZERO_DIGEST,
              epoch=1000, interval=10000, creations=0):
    return {"v": 1, "node": node, "epoch": epoch, "seq": seq, "interval_ms": interval, "cpus": 4,
            "cpu_percent": 3.5, "mem_total_mib": total, "mem_available_mib": avail,
            "mem_committed_mib": committed, "libvirt_age_ms": libvirt_age, "vm_count": 0,
            "inventory_digest": digest, "creations": creations}


class Fleetd:
    """One private fleetd. settings are extra --set keys."""

    def __init__(self, nodes=3, settings=None, auth=True, state_dir=None):
        self.tmp = tempfile.TemporaryDirectory(prefix="fleetd-it-")
        self.dir = self.tmp.name
        self.state_dir = state_dir or os.path.join(self.dir, "state")
        self.roster_file = os.path.join(self.dir, "roster.json")
        self.write_roster(roster_doc(nodes))
        self.api_port = free_port()
        self.hb_port = free_port(socket.SOCK_DGRAM)
        self.node_api_port = free_port()
        self.settings = {"api_listen": "127.0.0.1", "api_port": self.api_port,
                         "heartbeat_listen": "127.0.0.1", "heartbeat_port": self.hb_port,
                         "roster_file": self.roster_file, "state_dir": self.state_dir,
                         "node_api_port": self.node_api_port, "node_api_timeout": "2s",
                         "auth": "true" if auth else "false", "log_level": "debug"}
        self.settings.update(settings or {})
        self.token = self.ctl("token", "create", "tester").stdout.strip() if auth else None
        self.seq = {}
        self.proc = None
        self.log_path = os.path.join(self.dir, "fleetd.log")

    def write_roster(self, doc):
        tmp = self.roster_file + ".new"
        with open(tmp, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, self.roster_file)

    def start(self, wait=True):
        if self.proc and self.proc.poll() is None:
            raise RuntimeError("fleetd is already running (pid %d)" % self.proc.pid)
        args = [FLEETD]
        for k, v in self.settings.items():
            args += ["--set", "%s=%s" % (k, v)]
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log)
        if wait:
            deadline = time.time() + 10
            while time.time() < deadline:
                try:
                    self.request("GET", "/v1/openapi.json")
                    return self
                except OSError:
                    if self.proc.poll() is not None:
                        raise RuntimeError("fleetd exited: " + self.read_log())
                    time.sleep(0.02)
            raise RuntimeError("fleetd did not start: " + self.read_log())
        return self

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()
        self.proc = None

    def close(self):
        self.stop()
        self.tmp.cleanup()

    def __enter__(self):  # a fleetd already started is used as it is
        return self if self.proc and self.proc.poll() is None else self.start()

    def __exit__(self, *exc):
        self.close()

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def ctl(self, *args, input=None, check=True, token=True):
        env = dict(os.environ, FLEETCTL_STATE_DIR=self.state_dir,
                   FLEETCTL_URL="http://127.0.0.1:%d" % getattr(self, "api_port", 1))
        if token and getattr(self, "token", None):
            env["FLEETCTL_TOKEN"] = self.token
        r = subprocess.run([FLEETCTL] + list(args), input=input, capture_output=True, text=True,
                           env=env, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError("fleetctl %s failed (%d): %s" % (args, r.returncode, r.stderr))
        return r

    def send_raw(self, source, payload):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((source, 0))
            s.sendto(payload, ("127.0.0.1", self.hb_port))

    def hb(self, i, **kw):
        node = "n%d" % i
        self.seq[node] = self.seq.get(node, 0) + 1
        doc = heartbeat(node, kw.pop("seq", self.seq[node]), **kw)
        self.send_raw(node_address(i), json.dumps(doc).encode())

    def request(self, method, path, body=None, token=None, headers=None, raw=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.api_port, timeout=30)
        h = dict(headers or {})
        tok = self.token if token is None else token
        if tok:
            h.setdefault("Authorization", "Bearer " + tok)
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            h.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=data, headers=h)
        r = conn.getresponse()
        payload = r.read()
        conn.close()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, payload

    def json(self, method, path, body=None, expect=None, **kw):
        st, h, payload = self.request(method, path, body, **kw)
        doc = json.loads(payload) if payload else None
        if expect is not None:
            assert st == expect, (st, doc)
        return st, doc

    def confirm_vm(self, plan_id, expect=202):
        """POST confirm: (202, the VM it records) -- the answer is the operation that follows
        the VM's creation (Location /v1/operations/ID) -- or (status, problem)."""
        st, doc = self.json("POST", "/v1/plans/%s/confirm" % plan_id, expect=expect)
        if st != 202:
            return st, doc
        return st, self.json("GET", "/v1/vms/" + doc["vm_id"], expect=200)[1]

    def finish(self, op, timeout=20):
        """Follows an operation (a 202's document) until it is no longer running."""
        def done():
            d = self.json("GET", "/v1/operations/" + op["id"], expect=200)[1]
            return d if d["state"] != "running" else None
        return self.wait(done, timeout=timeout, what="operation %s (%s)" % (op["id"], op["kind"]))

    def verb(self, vm_id, verb, expect=None):
        """POST a VM verb and follow its operation: (status, doc) as the verb's outcome reads,
        202 with the finished operation, or the refusal it got at once (409, 412, ...)."""
        st, doc = self.json("POST", "/v1/vms/%s/%s" % (vm_id, verb))
        if st == 202:
            doc = self.finish(doc)
        if expect is not None:
            assert st == expect, (st, doc)
        return st, doc

    def deposit(self, vm_id, name, data, timeout=120, **query):
        """POST a record through the Diode and follow its operation: the finished operation
        (its result the receipt), or (status, problem) of a refusal answered at once."""
        q = "&".join(["name=" + urllib.parse.quote(name)] +
                     ["%s=%s" % kv for kv in sorted(query.items())])
        st, h, payload = self.request("POST", "/v1/vms/%s/records?%s" % (vm_id, q), raw=data,
                                      headers={"Content-Type": "application/octet-stream"})
        doc = json.loads(payload) if payload else None
        if st != 202:
            return st, doc
        assert h["location"] == "/v1/operations/" + doc["id"], (h, doc)
        return st, self.finish(doc, timeout=timeout)

    def wait(self, cond, timeout=10, what="condition"):
        deadline = time.time() + timeout
        while time.time() < deadline:
            v = cond()
            if v:
                return v
            time.sleep(0.05)
        raise AssertionError("timed out waiting for " + what + "\n" + self.read_log()[-3000:])

    def node(self, node_id):
        return self.json("GET", "/v1/nodes/" + node_id, expect=200)[1]

    def audit(self, kind=None):
        q = "/v1/audit?limit=1000" + ("&kind=" + kind if kind else "")
        return self.json("GET", q, expect=200)[1]["entries"]


def inventory_digest(vms):
    canon = json.dumps(sorted(vms, key=lambda v: v["id"]), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()


class FakeNode(http.server.ThreadingHTTPServer):
    """The node API of one node: POST /v1/vms (idempotent by request_id), GET /v1/inventory, the
    lifecycle verbs. creations is the node's creation counter (docs/contracts.md): increased by
    every POST to /v1/vms and every resume, carried by their answers and inventories; heartbeats
    should carry it too (figures()), as vmhost's do. A suspend frees the VM's memory (state
    "saved"); an archived VM runs on (its grace period) until the test stops it."""

    creations = 1  # as after vmhost's start-up increase (also for subclasses' own __init__)

    def __init__(self, address, port, node_id):
        self.node_id = node_id
        self.vms = {}          # vm_id -> vm
        self.posts = []        # (vm_id, request_id) of every POST
        self.lock = threading.Lock()
        super().__init__((address, port), FakeNodeHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def digest(self):
        vms = sorted(self.vms.values(), key=lambda v: v["id"])
        canon = json.dumps(vms, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()

    def figures(self):
        """Heartbeat keywords for what the node holds now: digest, committed memory, counter."""
        with self.lock:
            committed = sum(v.get("memory_mib", 0) for v in self.vms.values() if holds(v))
            return {"digest": self.digest(), "committed": committed,
                    "creations": self.creations}


def holds(vm):
    """vmhost's rule (vm_holds_memory): an active VM, or one that runs, holds its memory."""
    return vm.get("lifecycle", "active") == "active" or \
        vm.get("state", "running") not in ("shutoff", "crashed", "saved")


class FakeNodeHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def answer(self, status, doc):
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        s = self.server
        with s.lock:
            vms = sorted(s.vms.values(), key=lambda v: v["id"])
            self.answer(200, {"node": s.node_id, "digest": s.digest(), "vms": vms,
                              "creations": s.creations})

    def do_POST(self):
        s = self.server
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        parts = self.path.split("/")
        if len(parts) == 5 and parts[2] == "vms":  # /v1/vms/ID/VERB
            with s.lock:
                vm = s.vms.get(parts[3])
                if not vm:
                    return self.answer(404, {"type": "unknown-vm", "detail": "no such VM"})
                verb = parts[4]
                if vm.get("lifecycle") == "archived" and verb != "archive":
                    return self.answer(409, {"type": "archived", "detail": "archived"})
                vm["lifecycle"] = {"suspend": "suspended", "resume": "active",
                                   "archive": "archived"}[verb]
                if verb == "suspend":
                    vm["state"] = "saved"
                if verb != "resume":
                    return self.answer(200, vm)
                vm["state"] = "running"
                s.creations += 1
                return self.answer(200, dict(vm, creations=s.creations))
        with s.lock:
            s.posts.append((req["vm_id"], req["request_id"]))
            old = s.vms.get(req["vm_id"])
            if old and old["request_id"] != req["request_id"]:
                return self.answer(409, {"type": "exists", "detail": "other request"})
            s.creations += 1
            if old:
                return self.answer(200, dict(old, creations=s.creations))
            vm = {"id": req["vm_id"], "entity": req["entity"], "state": "running",
                  "lifecycle": "active", "memory_mib": req["memory_mib"],
                  "request_id": req["request_id"], "integrity": {"status": "ok"}}
            s.vms[req["vm_id"]] = vm
            self.answer(201, dict(vm, creations=s.creations))



# -- the harness's own checks -----------------------------------------------------------------

def test_check_config_and_help():
    r = subprocess.run([FLEETD, "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    for key in ("suspect_after", "evict_after", "safety_margin_mib", "panel_dir", "plan_ttl"):
        assert key in r.stdout
    r = subprocess.run([FLEETD, "--set", "evict_after=nonsense", "--check-config"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "evict_after" in r.stderr


def test_start_and_stop():
    with Fleetd(nodes=1) as f:
        st, doc = f.json("GET", "/v1/health", expect=200)
        assert doc["status"] in ("ok", "degraded")
    assert f.proc is None
