#!/usr/bin/python3
"""The minimum production fleet on one machine, through the real scripts and daemons.

Three nodes, each in its own network namespace (no default route, so nothing leaves the machine):
laptop-a (genesis, role node), laptop-b (role relay) and cloud (role cloud, runs fleetd). They
are joined by the real provision scripts and the pairing ceremony over wireguard-go; the SAS each
side prints is typed into the other, as an operator would. Each node runs its own vmhost on
libvirt's qemu:///embed. fleetd's REST API and the F9 panel are forwarded to loopback.

Used by scripts/demo.sh (the README's main command) and by the end-to-end tests, so the flow is
written once. Everything it starts it ends by PID; everything it creates is named after a tag.
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

SOURCE = os.path.abspath(os.environ.get("TOTEBOX_SOURCE_DIR",
                                        os.path.join(os.path.dirname(__file__), "..")))
BUILD = os.path.abspath(os.environ.get("TOTEBOX_BUILD_DIR", os.path.join(SOURCE, "build")))
ONPREM = os.path.join(SOURCE, "provision", "provision-vm-infrastructure-onprem.sh")
CLOUD = os.path.join(SOURCE, "provision", "provision-vm-infrastructure-cloud.sh")

# name, provision script, role; the first is the genesis
NODES = [("laptop-a", ONPREM, "node"), ("laptop-b", ONPREM, "relay"), ("cloud", CLOUD, "cloud")]
UNDERLAY = "192.168.77"  # addresses inside our own namespaces only
API_PORT, HB_PORT, NODE_API_PORT, PAIR_PORT = 9170, 9171, 9172, 9173


def log(msg):
    print(f"[fleet {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sh(*args, check=True, timeout=120, **kw):
    return subprocess.run(list(args), check=check, capture_output=True, text=True,
                          timeout=timeout, **kw)


class FleetError(Exception):
    pass


class Fleet:
    def __init__(self, workdir=None, tag=None, heartbeat="2s", keep=False, extra_fleetd=None):
        self.tag = tag or "%04d" % (os.getpid() % 10000)
        self.dir = workdir or tempfile.mkdtemp(prefix=f"totebox-fleet-{self.tag}-")
        os.chmod(self.dir, 0o755)  # each vmhost drops to its own user, which must reach its state
        self.heartbeat = heartbeat
        self.keep = keep
        self.extra_fleetd = extra_fleetd or {}
        self.procs = []          # helper processes we started (ceremonies, forwarder)
        self.forward_port = None
        self.token = None
        self.image = None
        self.nodes = {}          # name -> {"ns", "underlay", "mesh", "state"}
        for i, (name, script, role) in enumerate(NODES, start=1):
            self.nodes[name] = {"ns": f"tbx{self.tag}-{name}", "underlay": f"{UNDERLAY}.{i}",
                                "state": os.path.join(self.dir, name), "script": script,
                                "role": role, "ifname": f"tbx{self.tag}w{i}", "mesh": None}
        self.lan = f"tbx{self.tag}-lan"

    # --- namespaces ---------------------------------------------------------------------

    def in_ns(self, node, *args):
        return ["ip", "netns", "exec", self.nodes[node]["ns"]] + list(args)

    def netns_up(self):
        sh("ip", "netns", "add", self.lan)
        sh("ip", "-n", self.lan, "link", "set", "lo", "up")
        sh("ip", "-n", self.lan, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.lan, "link", "set", "br0", "up")
        for i, (name, n) in enumerate(self.nodes.items(), start=1):
            sh("ip", "netns", "add", n["ns"])
            sh("ip", "-n", n["ns"], "link", "set", "lo", "up")
            sh("ip", "-n", n["ns"], "link", "add", f"u{i}", "type", "veth", "peer", "name",
               f"p{i}", "netns", self.lan)
            sh("ip", "-n", n["ns"], "addr", "add", n["underlay"] + "/24", "dev", f"u{i}")
            sh("ip", "-n", n["ns"], "link", "set", f"u{i}", "up")
            sh("ip", "-n", self.lan, "link", "set", f"p{i}", "master", "br0", "up")
        log(f"namespaces up: {', '.join(n['ns'] for n in self.nodes.values())} "
            f"(underlay {UNDERLAY}.0/24, no default route)")

    # --- provisioning -------------------------------------------------------------------

    def script_args(self, node):
        n = self.nodes[node]
        return ["--name", node, "--state-dir", n["state"], "--ifname", n["ifname"],
                "--endpoint", n["underlay"] + ":51820", "--no-systemd", "--no-install",
                "--build-dir", BUILD, "--heartbeat-interval", self.heartbeat,
                "--libvirt-uri", f"qemu:///embed?root={n['state']}/libvirt"]

    def popen(self, node, args):
        p = subprocess.Popen(self.in_ns(node, *args), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             bufsize=1)
        self.procs.append(p)
        return p

    @staticmethod
    def read_until(p, pattern, timeout=90):
        deadline = time.time() + timeout
        seen = []
        while time.time() < deadline:
            line = p.stdout.readline()
            if not line:
                break
            seen.append(line)
            m = re.search(pattern, line)
            if m:
                return m
        raise FleetError("no line matching %r in:\n%s" % (pattern, "".join(seen)))

    def genesis(self):
        name = NODES[0][0]
        p = self.popen(name, ["bash", ONPREM, "--genesis", "--no-pair"] + self.script_args(name))
        out, _ = p.communicate(timeout=180)
        if p.returncode != 0:
            raise FleetError(f"genesis failed:\n{out}")
        log(f"{name}: genesis done (mesh created, roster version 1)")

    def join(self, node):
        """One ceremony: a new code on the genesis, the join on node, SAS typed across."""
        gname = NODES[0][0]
        n = self.nodes[node]
        g = self.popen(gname, ["bash", ONPREM, "--genesis", "--pair-listen",
                               self.nodes[gname]["underlay"]] + self.script_args(gname))
        code = self.read_until(g, r"pairing code: (\S+)").group(1)
        t0 = time.time()
        j = self.popen(node, ["bash", n["script"], "--join", code, "--genesis-endpoint",
                              f"{self.nodes[gname]['underlay']}:{PAIR_PORT}", "--role", n["role"]]
                       + self.script_args(node))
        out_j, out_g = self.confirm_sas(j, g, f"{node}: SAS on {node} is '%s', on {gname} '%s'")
        if j.returncode != 0 or g.returncode != 0:
            raise FleetError(f"join of {node} failed:\n{out_j}\n--- genesis:\n{out_g}")
        log(f"{node}: joined as {n['role']} in {time.time() - t0:.1f} s")

    def confirm_sas(self, j, g, what="SAS on the joiner '%s', on the genesis '%s'"):
        """Types each side's SAS into the other, as the operators would, when they agree; waits
        for both ceremonies to end and returns their outputs (joiner, genesis)."""
        sas_j = self.read_until(j, r"SAS: (\d{3} \d{3})").group(1)
        sas_g = self.read_until(g, r"SAS: (\d{3} \d{3})").group(1)
        log((what % (sas_j, sas_g)) + "; confirming both")
        if sas_j != sas_g:
            raise FleetError(f"SAS differ ('{sas_j}' vs '{sas_g}'): not confirming")
        j.stdin.write(sas_g + "\n")
        j.stdin.flush()
        g.stdin.write(sas_j + "\n")
        g.stdin.flush()
        out_j, _ = j.communicate(timeout=180)
        out_g, _ = g.communicate(timeout=180)
        return out_j, out_g

    # --- a node's mesh state, for tests of the roster ------------------------------------

    def mesh_dir(self, node):
        return os.path.join(self.nodes[node]["state"], "mesh")

    def pair(self, node, *args):
        """totebox-pair ARGS on node's mesh state, inside its namespace (not checked)."""
        return sh(*self.in_ns(node, os.path.join(BUILD, "provision", "totebox-pair"), *args,
                              "--state-dir", self.mesh_dir(node)), check=False)

    def roster(self, node):
        with open(os.path.join(self.mesh_dir(node), "roster.json")) as fh:
            return json.load(fh)

    def wg_key(self, node, ifname=None):
        return sh(*self.in_ns(node, "wg", "show", ifname or self.nodes[node]["ifname"],
                              "public-key")).stdout.strip()

    def wg_peers(self, node):
        return sh(*self.in_ns(node, "wg", "show", self.nodes[node]["ifname"],
                              "peers")).stdout.split()

    def mesh_address(self, node):
        return sh(os.path.join(BUILD, "provision", "totebox-pair"), "show", "--state-dir",
                  os.path.join(self.nodes[node]["state"], "mesh"), "--field",
                  "mesh_address").stdout.strip()

    def refresh(self, node):
        """Re-applies the stored roster: rewrites configs and restarts the node's daemons."""
        p = self.popen(node, ["bash", self.nodes[node]["script"], "--refresh"]
                       + self.script_args(node))
        out, _ = p.communicate(timeout=180)
        if p.returncode != 0:
            raise FleetError(f"refresh of {node} failed:\n{out}")

    # --- fleetd through loopback ----------------------------------------------------------

    def controller(self):
        return NODES[2][0]

    def forward(self):
        """socat on the host's loopback, one 'ip netns exec' socat per connection into cloud."""
        port = int(os.environ.get("TOTEBOX_DEMO_PORT", "0")) or _free_port()
        ns = self.nodes[self.controller()]["ns"]
        p = subprocess.Popen(["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork",
                              f"EXEC:ip netns exec {ns} socat STDIO TCP\\:127.0.0.1\\:{API_PORT}"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(p)
        self.forward_port = port
        wait(lambda: self.api_raw("GET", "/v1/openapi.json")[0] == 200, 30, "fleetd REST API")
        return port

    @property
    def url(self):
        return f"http://127.0.0.1:{self.forward_port}"

    def api_raw(self, method, path, body=None, token=None, timeout=15):
        headers = {}
        if token or self.token:
            headers["Authorization"] = f"Bearer {token or self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw, status = r.read(), r.status
        except urllib.error.HTTPError as e:
            raw, status = e.read(), e.code
        except OSError:
            return 0, None
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def api(self, method, path, body=None):
        status, data = self.api_raw(method, path, body)
        if status // 100 != 2:
            raise FleetError(f"{method} {path}: {status} {data}")
        return data

    def fleetctl(self, *args, check=True):
        """fleetctl on the controller's state directory (tokens, audit verify)."""
        ctl = self.nodes[self.controller()]
        return sh(os.path.join(BUILD, "fleetctl", "fleetctl"), "--state-dir",
                  os.path.join(ctl["state"], "fleetd"), *args, check=check)

    def ctl(self, *args, check=True, timeout=300):
        """fleetctl as an operator runs it: through the REST API with the fleet's token."""
        return sh(*self.ctl_argv(*args), check=check, timeout=timeout)

    def ctl_argv(self, *args):
        return [os.path.join(BUILD, "fleetctl", "fleetctl"), "--url", self.url,
                "--token", self.token, *args]

    def deposit(self, vm_id, path, name=None):
        """Deposits a file into a Totebox through the Diode; the receipt (JSON)."""
        extra = ["--name", name] if name else []
        return json.loads(self.ctl("--json", "deposit", vm_id, path, *extra).stdout)

    def create_token(self, name="demo"):
        out = self.fleetctl("token", "create", name).stdout
        m = re.search(r"(tbx_[A-Za-z0-9_-]{43})", out)
        if not m:
            raise FleetError(f"no token in: {out}")
        self.token = m.group(1)
        return self.token

    def nodes_alive(self):
        status, data = self.api_raw("GET", "/v1/nodes")
        if status != 200:
            return False
        states = {n["id"]: n["state"] for n in data["nodes"]}
        return states if all(s == "alive" for s in states.values()) and len(states) == 3 else False

    # --- images and VMs -------------------------------------------------------------------

    def build_image(self, out=None):
        out = out or os.path.join(self.dir, "image")
        agent = os.path.join(BUILD, "agent", "totebox-agent")
        t0 = time.time()
        sh(os.path.join(SOURCE, "images", "build-test-image"), out, "--agent", agent,
           "--name", "totebox-test", timeout=600)
        log(f"test image built in {time.time() - t0:.1f} s (agent: {agent})")
        self.image = out
        return out

    def node_api(self, node, method, path, body=None):
        """Calls node's vmhost API from the controller's mesh address (the only one it answers).
        Returns (status, parsed JSON or text)."""
        ctl = self.controller()
        args = ["curl", "-s", "-o", "/dev/stdout", "-w", "\n%{http_code}", "--max-time", "30",
                "--interface", self.nodes[ctl]["mesh"], "-X", method]
        if body is not None:
            args += ["-H", "Content-Type: application/json", "--data", json.dumps(body)]
        r = sh(*self.in_ns(ctl, *args, f"http://{self.nodes[node]['mesh']}:{NODE_API_PORT}{path}"),
               check=False)
        text, _, code = r.stdout.rpartition("\n")
        try:
            return int(code), json.loads(text)
        except ValueError:
            return int(code or 0), text

    def daemon_pid(self, node, name):
        for n, d, pid in self.daemons():
            if n == node and d == name:
                return pid
        return None

    def stop_daemon(self, node, name, sig=signal.SIGTERM):
        """Ends one of node's daemons by the PID its provision script recorded."""
        pid = self.daemon_pid(node, name)
        if pid is None:
            raise FleetError(f"no {name} PID recorded on {node}")
        os.kill(pid, sig)
        wait(lambda: not os.path.exists(f"/proc/{pid}"), 20, f"{name} on {node} to exit")

    def import_image(self, node, name="totebox-test"):
        """Imports the test image into node's store through its node API (checksum verified)."""
        manifest = os.path.join(self.image, "manifest.json")
        sha = sh("sha256sum", manifest).stdout.split()[0]
        status, body = self.node_api(node, "POST", "/v1/images",
                                     {"name": name, "path": manifest, "sha256": sha})
        if status not in (200, 201, 409):
            raise FleetError(f"image import on {node}: {status} {body}")
        # placement names only nodes that hold a plan's image: wait until fleetd's view (the
        # node's next heartbeat and inventory) lists it there
        deadline = time.time() + 60
        while time.time() < deadline:
            listed = self.api("GET", "/v1/images")["images"]
            if any(i["name"] == name and node in i["nodes"] for i in listed):
                return
            time.sleep(0.5)
        raise FleetError(f"fleetd does not list image '{name}' on {node} after 60 s")

    def plan(self, entity, memory_mib=256, vcpus=1, image="totebox-test", vault_disk_mib=64):
        return self.api_raw("POST", "/v1/plans", {"entity": entity, "memory_mib": memory_mib,
                                                  "vcpus": vcpus, "image": image,
                                                  "vault_disk_mib": vault_disk_mib})

    def confirm(self, plan_id):
        """(202, the operation that follows the VM's creation) or (status, problem)."""
        return self.api_raw("POST", f"/v1/plans/{plan_id}/confirm")

    def vm(self, vm_id):
        status, data = self.api_raw("GET", f"/v1/vms/{vm_id}")
        return data if status == 200 else None

    # --- a Totebox as one file ------------------------------------------------------------

    def export(self, vm_id):
        """fleetctl export of a suspended or archived Totebox: the file it left on the VM's node
        (path, size, SHA-256, BLAKE2b-256, the fleet key as a PEM), as fleetctl prints it."""
        return json.loads(self.ctl("--json", "export", vm_id).stdout)

    def exports_dir(self, node):
        return os.path.join(self.nodes[node]["state"], "vmhost", "exports")

    def carry(self, tar, node):
        """The operator's hands (a USB stick, scp): an export's three files copied into node's
        exports/, where an import reads them. fleetd never moves them."""
        dst_dir = self.exports_dir(node)
        os.makedirs(dst_dir, exist_ok=True)
        for ext in ("", ".sha256", ".sig"):
            dst = os.path.join(dst_dir, os.path.basename(tar) + ext)
            shutil.copyfile(tar + ext, dst)
            os.chmod(dst, 0o644)
        # owned as the node's state directory is (vmhost reads it as its own user)
        sh("chown", "-R", "--reference=" + os.path.dirname(dst_dir), dst_dir)
        return os.path.join(dst_dir, os.path.basename(tar))

    def import_file(self, name, node):
        """fleetctl import NAME --node N --yes: the re-homing plan, then its confirmation."""
        return self.ctl("import", name, "--node", node, "--yes").stdout

    # --- lifecycle ----------------------------------------------------------------------

    def up(self, vm_entity=None, pin_key=True):
        """The three nodes joined, fleetd alive; pin_key: the genesis names fleetd's pin key
        (publish_pin_key), which a test may want to do itself."""
        self.netns_up()
        self.genesis()
        for name, _, _ in NODES[1:]:
            self.join(name)
        for name in self.nodes:
            self.nodes[name]["mesh"] = self.mesh_address(name)
        log("mesh addresses: " + ", ".join(f"{k} {v['mesh']}" for k, v in self.nodes.items()))
        self.forward()
        self.create_token()
        if pin_key:
            self.publish_pin_key()
        wait(self.nodes_alive, 60, "three nodes alive in fleetd")
        log(f"fleetd on {self.controller()} sees three alive nodes")

    def publish_pin_key(self):
        """The genesis names the controller's pin key (fleetd's pin.pub on the cloud node) in a
        new roster version and pushes it to every node: what the cloud's provision script asks
        the operator to do. Until then every vmhost refuses the VMs fleetd creates."""
        ctl, gname = self.controller(), NODES[0][0]
        pub = os.path.join(self.nodes[ctl]["state"], "fleetd", "pin.pub")
        wait(lambda: os.path.exists(pub) and os.path.getsize(pub) > 0, 30, "fleetd's pin key")
        key = open(pub).read().strip()
        r = sh(*self.in_ns(gname, os.path.join(BUILD, "provision", "totebox-pair"),
                           "controller-key", key, "--state-dir",
                           os.path.join(self.nodes[gname]["state"], "mesh")), check=False)
        if r.returncode != 0 or len(re.findall(r"version \d+ pushed to '", r.stdout)) < len(self.nodes):
            raise FleetError(f"publishing the pin key failed:\n{r.stdout}{r.stderr}")
        wait(lambda: (self.api_raw("GET", "/v1/health")[1] or {}).get("pin_key", {})
             .get("in_roster"), 30, "fleetd to see its pin key in the roster")
        log(f"{gname}: roster names {ctl}'s fleetd pin key {key}")

    def daemons(self):
        """(node, name, pid) of every daemon the provision scripts started for us."""
        out = []
        for node, n in self.nodes.items():
            for name in ("vmhost", "fleetd"):
                try:
                    with open(os.path.join(n["state"], "run", name + ".pid")) as f:
                        out.append((node, name, int(f.read().strip())))
                except (OSError, ValueError):
                    pass
        return out

    def qemu_pids(self):
        """QEMU processes of our embedded libvirt roots (their pid files live there)."""
        pids = []
        for n in self.nodes.values():
            root = os.path.join(n["state"], "libvirt")
            for dirpath, _, files in os.walk(root):
                for f in files:
                    if f.endswith(".pid"):
                        try:
                            pids.append(int(open(os.path.join(dirpath, f)).read().strip()))
                        except (OSError, ValueError):
                            pass
        return [p for p in pids if _is_qemu(p)]

    def down(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        for _, _, pid in self.daemons():
            _stop_pid(pid)
        for pid in self.qemu_pids():
            _stop_pid(pid)
        for n in self.nodes.values():
            # wireguard-go exits when its interface goes; the namespace takes the interface
            pid = _wireguard_go_pid(n["ifname"])
            sh("ip", "netns", "del", n["ns"], check=False)
            if pid:
                _stop_pid(pid)
            sock = f"/var/run/wireguard/{n['ifname']}.sock"
            if os.path.exists(sock):
                os.unlink(sock)
        sh("ip", "netns", "del", self.lan, check=False)
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        log("torn down: processes, namespaces, interfaces" +
            ("" if self.keep else " and the work directory"))


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _is_qemu(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"qemu-system" in f.read().split(b"\0")[0]
    except OSError:
        return False


def _wireguard_go_pid(ifname):
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"wireguard-go") and ifname.encode() in argv:
                return int(d)
    return None


def _stop_pid(pid, timeout=10):
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait(predicate, timeout, what, interval=0.5):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise FleetError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def demo_records(fleet, vm_id):
    """Three records into the demo Totebox through the Diode, one read back and checked."""
    receipts = []
    for i, text in enumerate(["deed of sale, plot 7\n", "lease, unit 3\n", "minutes, 2026-12-01\n"]):
        path = os.path.join(fleet.dir, f"record-{i + 1}.txt")
        with open(path, "w") as f:
            f.write(text)
        r = fleet.deposit(vm_id, path)
        receipts.append(r)
        log(f"deposited {path}: seq {r['seq']}, {r['path']}, {r['size']} bytes, "
            f"BLAKE2b-256 {r['blake2b_256'][:16]}..., covered by checkpoint size {r['sth']['size']}")
    back = os.path.join(fleet.dir, "record-1.back")
    out = fleet.ctl("read", vm_id, str(receipts[0]["seq"]), "--output", back).stdout.strip()
    log(f"read back seq {receipts[0]['seq']} into {back}: {out}")
    return receipts


def demo(args):
    fleet = Fleet(heartbeat=args.heartbeat, keep=args.keep)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1) or (_ for _ in ()).throw(KeyboardInterrupt))
    try:
        fleet.build_image()
        fleet.up()
        for name in fleet.nodes:
            fleet.import_image(name)
        log("test image imported on every node")
        status, plan = fleet.plan(args.entity)
        if status != 201 and status != 200:
            raise FleetError(f"plan refused: {status} {plan}")
        log(f"plan {plan['id']}: '{args.entity}' on {plan['node_id']} "
            f"(candidates: " + ", ".join(f"{c['node_id']} {c['available_mib']} MiB {c['verdict']}"
                                          for c in plan["candidates"]) + ")")
        status, op = fleet.confirm(plan["id"])
        if status != 202:
            raise FleetError(f"confirm refused: {status} {op}")
        vm_id = op["vm_id"]
        log(f"confirmed: VM '{vm_id}' is being created on {plan['node_id']} "
            f"(operation {op['id']}, GET /v1/operations/{op['id']})")
        t0 = time.time()
        v = wait(lambda: (v := fleet.vm(vm_id)) and v["status"] != "creating" and v, 300,
                 f"the creation of VM {vm_id}")
        if v["status"] != "active":
            raise FleetError(f"VM '{vm_id}' {v['status']} on {v['node_id']}: {v.get('reason')}")
        log(f"VM '{vm_id}' active after {time.time() - t0:.1f} s (node {v['node_id']} reports it "
            f"'{v.get('state')}'); waiting for its agent")
        v = wait(lambda: (v := fleet.vm(vm_id)) and (v.get("integrity") or {}).get("status")
                 in ("ok", "mismatch") and v, 300, "the agent's first report")
        log(f"agent's first report after {time.time() - t0:.1f} s: integrity "
            f"{v['integrity']['status']}, tree size {v['integrity'].get('tree_size')}")
        records = demo_records(fleet, vm_id)
        ctl = " ".join(fleet.ctl_argv())
        print(f"""
Totebox Fleet is running: three nodes joined over WireGuard, one Totebox VM ('{vm_id}') holding
{len(records)} records deposited through the Diode.

  F9 panel     {fleet.url}/   (token: {fleet.token})
  REST API     {fleet.url}/v1/nodes   (Authorization: Bearer {fleet.token})
  fleetctl     {ctl} nodes
               {ctl} vms
               {ctl} audit
  the Diode    {ctl} deposit {vm_id} FILE --name NAME
               {ctl} records {vm_id}
               {ctl} read {vm_id} 1 --output FILE   (checks the hash and the inclusion proof)
  one file     {ctl} suspend {vm_id}; {ctl} export {vm_id}   (VM.tar, .sha256, .sig on its node)
               {ctl} import {vm_id}.tar --node NODE   (after copying the three files there)
  work dir     {fleet.dir}

Ctrl-C stops everything.""", flush=True)
        end = time.time() + args.duration if args.duration else None
        while end is None or time.time() < end:
            time.sleep(1)
    except KeyboardInterrupt:
        log("stopping")
    except FleetError as e:
        log(f"error: {e}")
        return 1
    finally:
        fleet.down()
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=int, default=0, help="stop after SECONDS (0: Ctrl-C)")
    ap.add_argument("--heartbeat", default="2s", help="heartbeat interval (production: 10s)")
    ap.add_argument("--entity", default="acme-ltd", help="the entity of the demo's Totebox VM")
    ap.add_argument("--keep", action="store_true", help="keep the work directory for inspection")
    sys.exit(demo(ap.parse_args()))


if __name__ == "__main__":
    main()
