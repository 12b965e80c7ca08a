"""Shared helpers for vmhost's integration tests: build the test image, start a private vmhost
on free loopback ports with its own state directory and qemu:///embed root, call its node API,
and clean up every domain it started. As root, vmhost runs as 'nobody' (the embedded QEMU
driver refuses root without a libvirt-qemu user)."""
import atexit
import glob
import hashlib
import http.client
import threading
import socketserver
import http.server
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import harness
from harness import BUILD, free_port, validate  # noqa: F401 (the test modules import them here)
from harness import SOURCE as SRC

VMHOST = os.path.join(BUILD, "vmhost", "vmhost")
# The kernel .deb cache, fixed at import: some tests and benchmarks change HOME later.
DEB_CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                         "totebox", "debs")


def run_as():
    """(uid, gid) to run vmhost as: nobody when we are root, else ourselves."""
    if os.getuid() != 0:
        return None
    pw = pwd.getpwnam("nobody")
    return pw.pw_uid, pw.pw_gid


_RUNNABLE = {}


def runnable(path):
    """path, or a copy of it that run_as()'s user can execute. A clone under /root (mode 0700,
    where a root user on a minimal Debian clones) is not traversable by nobody; the copy, in a
    directory of its own, is removed when this process ends."""
    ids = run_as()
    if not ids or _RUNNABLE.get(path) == path:
        return path
    if path not in _RUNNABLE:
        probe = subprocess.run(["test", "-x", path], user=ids[0], group=ids[1])
        if probe.returncode == 0:
            _RUNNABLE[path] = path
        else:
            d = tempfile.mkdtemp(prefix="tbx-bin-")
            os.chmod(d, 0o755)
            copy = os.path.join(d, os.path.basename(path))
            shutil.copy2(path, copy)
            os.chmod(copy, 0o755)
            # vmhost runs its helper program from beside itself
            helper = os.path.join(os.path.dirname(path), "vmhost-helper")
            if os.path.basename(path) == "vmhost" and os.path.exists(helper):
                shutil.copy2(helper, os.path.join(d, "vmhost-helper"))
                os.chmod(os.path.join(d, "vmhost-helper"), 0o755)
            atexit.register(shutil.rmtree, d, True)
            _RUNNABLE[path] = copy
    return _RUNNABLE[path]


def give(path):
    ids = run_as()
    if ids:
        os.chown(path, *ids)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_image(out, agent=None):
    """The small offline test image; agent: a static program to run as the guest's agent (by
    default the fixed-report stand-in, which boots fastest)."""
    subprocess.run([os.path.join(SRC, "images", "build-test-image"), out, "--cache", DEB_CACHE]
                   + (["--agent", agent] if agent else []),
                   check=True,
                   stdout=subprocess.DEVNULL)
    os.chmod(out, 0o755)
    for name in os.listdir(out):
        os.chmod(os.path.join(out, name), 0o644)
    return os.path.join(out, "manifest.json")


class Vmhost:
    def __init__(self, root, node_id="node1", **settings):
        self.root = root
        self.port = free_port()
        self.hb_port = settings.pop("hb_port", None) or free_port(socket.SOCK_DGRAM)
        extra_env = settings.pop("env", None) or {}
        # as_root: the process's own user even as root (QEMU then runs as root too)
        ids = None if settings.pop("as_root", False) else run_as()
        # wrap: a command vmhost is run under that execs it (nsenter into a mount namespace)
        wrap = list(settings.pop("wrap", None) or [])
        self.uri = "qemu:///embed?root=%s/libvirt" % root
        self.log_path = os.path.join(root, "vmhost-%s.log" % node_id)
        opts = {"node_id": node_id, "libvirt_uri": self.uri, "state_dir": root + "/state",
                "virt_type": "qemu", "node_api_port": self.port, "node_api_listen": "127.0.0.1",
                "node_api_allow": "127.0.0.1", "fleetd_port": self.hb_port,
                "heartbeat_interval": "1s", "archive_grace": "2s", "log_level": "debug"}
        opts.update(settings)
        self.address = opts["node_api_listen"]
        self.port = int(opts["node_api_port"])
        args = wrap + [runnable(VMHOST)]
        for k, v in opts.items():
            args += ["--set", "%s=%s" % (k, v)]
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):  # sanitizer runs
            if k in os.environ:
                extra_env.setdefault(k, os.environ[k])
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     user=ids[0] if ids else None,
                                     group=ids[1] if ids else None,
                                     env=dict({"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                               "HOME": root}, **extra_env))
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if self.call("GET", "/v1/inventory")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("vmhost did not answer; log:\n" + self.read_log())

    def read_log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def call(self, method, path, body=None, source=None, timeout=120):
        conn = http.client.HTTPConnection(self.address, self.port, timeout=timeout,
                                          source_address=(source, 0) if source else None)
        data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        raw = r.read()
        conn.close()
        return r.status, (json.loads(raw) if raw else None), r.getheader("Content-Type")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def virsh(root, *args, as_root=False):
    ids = None if as_root else run_as()
    return subprocess.run(["virsh", "-q", "-c", "qemu:///embed?root=%s/libvirt" % root] +
                          list(args), capture_output=True, text=True,
                          user=ids[0] if ids else None, group=ids[1] if ids else None,
                          env={"PATH": "/usr/bin:/bin", "HOME": root})


def destroy_all(root, as_root=False):
    """Powers off every domain of the embed root (vmhost must be stopped)."""
    if not os.path.isdir(os.path.join(root, "libvirt")):
        return
    names = virsh(root, "list", "--name", as_root=as_root).stdout.split()
    for name in names:
        virsh(root, "destroy", name, as_root=as_root)
    if as_root:
        remove_embed_cgroups(names)


def remove_embed_cgroups(names):
    """Removes the empty cgroups an embed driver running as root made for these domains
    (machine/qemu-embed-HASH-N-NAME.libvirt-qemu in each controller; the destroy from virsh's own
    embed instance leaves them): the host keeps nothing of a test."""
    for name in names:
        for d in glob.glob("/sys/fs/cgroup/*/machine/qemu-embed-*-%s.libvirt-qemu" % name):
            try:
                with open(os.path.join(d, "cgroup.procs")) as f:
                    if f.read().strip():
                        continue
                os.rmdir(d)
            except OSError:
                pass


def make_root(prefix):
    root = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(root, 0o755)
    give(root)
    return root


def remove_root(root):
    shutil.rmtree(root, ignore_errors=True)


def wait_for(fn, timeout, what):
    """harness.wait_for at a slower pace: these predicates ask vmhost, virsh or debugfs."""
    return harness.wait_for(fn, timeout, what, interval=0.5)



class NodeRelay(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """Listens where fleetd expects a node's API and relays each call to vmhost (target_port),
    playing the network or the node's root account between them:
    - while `hold` is set, a call whose path ends with it reaches vmhost, but its answer is held
      for `hold_s` seconds and then dropped (the node acted, fleetd never hears of it; `held`
      lists them);
    - while `rewrite` is set, each GET /v1/inventory answer is passed through it (a node that
      lies in its answers)."""
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, listen, port, target_port, handler=None):
        self.target_port = target_port
        self.hold, self.hold_s, self.held = None, 0, []
        self.rewrite = None
        super().__init__((listen, port), handler or _NodeRelayHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def close(self):
        self.shutdown()
        self.server_close()


class _NodeRelayHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def relay(self):
        hold, rewrite = self.server.hold, self.server.rewrite  # as when the call came in
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        conn = http.client.HTTPConnection("127.0.0.1", self.server.target_port, timeout=120)
        conn.request(self.command, self.path, body=body,
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        payload = r.read()
        conn.close()
        if hold and self.path.endswith(hold):
            self.server.held.append((self.path, r.status))
            time.sleep(self.server.hold_s)
            self.close_connection = True
            return
        if rewrite and self.path == "/v1/inventory" and r.status == 200:
            payload = json.dumps(rewrite(json.loads(payload))).encode()
        self.send_response(r.status)
        self.send_header("Content-Type", r.getheader("Content-Type") or "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = relay
    do_POST = relay


def _b64(raw):
    import base64
    return base64.b64encode(raw).decode()


def canonical(doc):
    """jansson's JSON_SORT_KEYS | JSON_COMPACT, what rosters and pins are signed over."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


PIN_DOMAIN = b"totebox-pin-v1\n"


class FleetTrust:
    """What the fleet gives its nodes, made here: a genesis key, the controller's pin key, each
    node's WireGuard key, a genesis-signed roster naming the pin key, and pins signed with it.
    Tests that call a vmhost's node API directly play fleetd with it. pin_public: name another
    controller key in the roster (a real fleetd's, from its pin.pub) instead of our own."""

    def __init__(self, nodes=("node1",), fleet_id="fleet-t", controller="ctl", pin_public=None,
                 addresses=None):
        """nodes: the vmhost nodes; the controller, unless one of them, is one more node at
        127.0.0.1 (where the tests' heartbeat sockets listen: vmhost sends its heartbeats to
        the roster's controller)."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
        self.fleet_id = fleet_id
        self.nodes = ([] if controller in nodes else [controller]) + list(nodes)
        self.controller = controller
        self.addresses = addresses or dict(
            {n: "10.255.0.%d" % (i + 1) for i, n in enumerate(nodes)}, **{controller: "127.0.0.1"})
        self.genesis = Ed25519PrivateKey.generate()
        self.pin_key = Ed25519PrivateKey.generate()
        self.pin_public = pin_public or _b64(self._raw_public(self.pin_key))
        self.wg = {n: X25519PrivateKey.generate() for n in self.nodes}
        self.version = 1

    @staticmethod
    def _raw_public(key):
        from cryptography.hazmat.primitives import serialization
        return key.public_key().public_bytes(serialization.Encoding.Raw,
                                             serialization.PublicFormat.Raw)

    def wg_public(self, node):
        return _b64(self._raw_public(self.wg[node]))

    def wg_private(self, node):
        from cryptography.hazmat.primitives import serialization
        return _b64(self.wg[node].private_bytes(serialization.Encoding.Raw,
                                                serialization.PrivateFormat.Raw,
                                                serialization.NoEncryption()))

    def roster(self, version=None):
        doc = {"v": 1, "version": version or self.version, "fleet_id": self.fleet_id,
               "controller": self.controller,
               "genesis_public_key": _b64(self._raw_public(self.genesis)),
               "controller_pin_key": self.pin_public,
               "nodes": [{"id": n, "name": n, "role": "cloud" if n == self.controller else "node",
                          "wg_public_key": self.wg_public(n), "mesh_address": self.addresses[n],
                          "endpoint": ""} for n in self.nodes]}
        doc["signature"] = _b64(self.genesis.sign(canonical(doc)))
        return doc

    def mesh_dir(self, root, node, owner=None):
        """The node's mesh state (what totebox-pair leaves): genesis.pub, roster.json, wg.key
        (0600, owned by the user vmhost runs as, or by owner: (uid, gid))."""
        d = os.path.join(root, "mesh-" + node)
        os.makedirs(d, exist_ok=True)
        files = {"genesis.pub": (_b64(self._raw_public(self.genesis)) + "\n", 0o644),
                 "roster.json": (json.dumps(self.roster()), 0o644),
                 "wg.key": (self.wg_private(node) + "\n", 0o600)}
        for name, (text, mode) in files.items():
            path = os.path.join(d, name)
            with open(path, "w") as f:
                f.write(text)
            os.chmod(path, mode)
        for path in [os.path.join(d, name) for name in files] + [d]:
            if owner:
                os.chown(path, *owner)
            else:
                give(path)
        return d

    def pin(self, vm_id, node, entity, image, request_id, key=None, wg=None, edit=None):
        """A pin as fleetd signs it (key: another signer; wg: name another WireGuard key);
        edit: fields changed after signing (the adversary)."""
        doc = {"v": 1, "fleet_id": self.fleet_id, "vm_id": vm_id, "node_id": node,
               "node_wg_key": wg or self.wg_public(node), "entity": entity, "image": image,
               "request_id": request_id}
        doc["signature"] = _b64((key or self.pin_key).sign(PIN_DOMAIN + canonical(doc)))
        doc.update(edit or {})
        return doc

    def give_fleetd(self, fleetd):
        """Makes our pin key a fleetd's (state_dir/pin.key, before it starts) and its roster
        ours, as the genesis would after `totebox-pair controller-key`."""
        from cryptography.hazmat.primitives import serialization
        seed = self.pin_key.private_bytes(serialization.Encoding.Raw,
                                          serialization.PrivateFormat.Raw,
                                          serialization.NoEncryption())
        os.makedirs(fleetd.state_dir, exist_ok=True)
        path = os.path.join(fleetd.state_dir, "pin.key")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, (_b64(seed) + "\n").encode())
        os.close(fd)
        fleetd.write_roster(self.roster())

    def create(self, body, node):
        """A create body with the pin fleetd would add."""
        return dict(body, pin=self.pin(body["vm_id"], node, body["entity"], body["image"],
                                       body["request_id"]))


def test_build_test_image_manifest_matches_files():
    """images/build-test-image (the script other parts reuse) writes a manifest whose sizes and
    checksums are those of the files beside it."""
    out = tempfile.mkdtemp(prefix="tbx-img-")
    try:
        manifest = build_image(out)
        with open(manifest) as f:
            m = json.load(f)
        assert m["kind"] == "direct-kernel"
        for role in ("disk", "kernel", "initrd"):
            entry = m["files"][role]
            path = os.path.join(out, entry["path"])
            assert os.path.getsize(path) == entry["size"]
            assert sha256(path) == entry["sha256"]
    finally:
        shutil.rmtree(out, ignore_errors=True)
