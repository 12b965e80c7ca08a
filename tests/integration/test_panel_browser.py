# ctest-labels: slow browser
"""The F9 panel in a real headless Chromium (tests/browser/panel.py: Debian's chromium, driven
through Debian's chromium-driver and python3-selenium) against real daemons on loopback: a private fleetd serving the repo's panel/,
a roster of three nodes, two of them real vmhosts (qemu:///embed under TCG, node APIs on
127.1.0.1 and 127.1.0.2) with the small test image carrying the real agent. The browser logs in
(a wrong token refused first), watches the nodes, plans and confirms a VM, waits for the agent's
report, suspends the VM; this module then changes the vault disk offline (a file smuggled into
the sealed assets, the managed save discarded so the guest boots cold); the browser resumes the
VM and must see the mismatch on the VM, in the audit record and on the fleet badge; then it
suspends and exports the Totebox, this module carries the file to the other node, and the browser
plans the import there and confirms it.
Screenshots: tests/browser/artifacts/."""
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import test_fleetd_harness as F  # noqa: E402
import test_vmhost_harness as V  # noqa: E402

sys.path.insert(0, os.path.join(F.SOURCE, "tests", "browser"))
import panel  # noqa: E402

AGENT = os.path.join(F.BUILD, "agent", "totebox-agent")
IMAGE = "totebox-test"


class NodeVmhost(V.Vmhost):
    """vmhost as one roster node: its node API on the node's own loopback address and on the port
    fleetd calls every node on (the harness's Vmhost picks a free port on 127.0.0.1)."""

    port = property(lambda self: self._fixed_port, lambda self, value: None)

    def __init__(self, root, node_id, address, port, **settings):
        self.address, self._fixed_port = address, port
        super().__init__(root, node_id=node_id, node_api_listen=address, node_api_port=port,
                         heartbeat_source=address, **settings)

    def call(self, method, path, body=None, source="127.0.0.1", timeout=120):
        import http.client
        import json
        conn = http.client.HTTPConnection(self.address, self._fixed_port, timeout=timeout,
                                          source_address=(source, 0))
        data = None if body is None else json.dumps(body)
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        raw = r.read()
        conn.close()
        return r.status, (json.loads(raw) if raw else None), r.getheader("Content-Type")


def build_image(out):
    """The test image with the real agent (images/build-test-image --agent)."""
    subprocess.run([os.path.join(F.SOURCE, "images", "build-test-image"), out, "--agent", AGENT,
                    "--cache", V.DEB_CACHE], check=True, stdout=subprocess.DEVNULL)
    os.chmod(out, 0o755)
    for name in os.listdir(out):
        os.chmod(os.path.join(out, name), 0o644)
    return os.path.join(out, "manifest.json")


def debugfs(image, *commands, write=False):
    r = subprocess.run(["debugfs"] + (["-w"] if write else []) + ["-f", "-", image],
                       input="\n".join(commands) + "\n", capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout + r.stderr


def vault_image(node, vm_id):
    return os.path.join(node["root"], "state", "vms", vm_id + "-vault.img")


def settle(node, vm_id, tmpdir):
    """Waits until the guest's vault skeleton is on the disk image, not only in the guest's page
    cache: the vault is ext2 (no journal), and the test later discards the suspended VM's RAM, which
    is a power loss. Read-only, while the VM runs (debugfs -c)."""
    def on_disk():
        r = subprocess.run(["debugfs", "-c", "-R", "ls -l /assets", vault_image(node, vm_id)],
                           capture_output=True, text=True)
        return r.returncode == 0 and "not a directory" not in r.stderr and "40755" in r.stdout
    V.wait_for(on_disk, 60, "the vault skeleton written back to the disk image")


def tamper(node, vm_id, tmpdir):
    """With the VM suspended: stop the node's vmhost (the embed root is then free), discard the
    managed save (the guest's page cache must not hide the change: it boots cold), put a file no
    ledger entry records into the vault's assets/, and start vmhost again on the same state."""
    vh = node["vh"]
    vh.stop()
    r = V.virsh(node["root"], "managedsave-remove", vm_id)
    assert r.returncode == 0, r.stderr
    vault = vault_image(node, vm_id)
    assert os.path.exists(vault), os.listdir(os.path.dirname(vault))
    listing = debugfs(vault, "ls -l /ledger")
    assert "ledger.jsonl" in listing, listing
    smuggled = os.path.join(tmpdir, "smuggled.bin")
    with open(smuggled, "wb") as f:
        f.write(b"not sealed by the agent\n")
    debugfs(vault, "cd /assets", "write %s smuggled.bin" % smuggled, write=True)
    listing = debugfs(vault, "ls -l /assets")
    assert "smuggled.bin" in listing, listing + debugfs(vault, "ls -l /", "stats")
    node["vh"] = NodeVmhost(node["root"], **node["args"])


def written(node, vm_id, n):
    """Waits until the vault disk image holds n ledger lines: the test image's vault is ext2, where
    the ledger's new size reaches the disk with the guest's inode writeback, not at the agent's
    fdatasync (test_export_restore.py); an export made before would hold fewer records than the
    checkpoint the fleet witnessed. Read-only, while the VM runs (debugfs -c)."""
    def on_disk():
        r = subprocess.run(["debugfs", "-c", "-R", "cat /ledger/ledger.jsonl",
                            vault_image(node, vm_id)], capture_output=True)
        return r.returncode == 0 and r.stdout.count(b"\n") >= n
    V.wait_for(on_disk, 120, "%d ledger lines written back to the disk image" % n)


def carry(nodes, vm_id, node_id):
    """The operator's hands: the export's three files copied from its node's exports/ to the
    other node's; returns that node and the file's SHA-256."""
    other = "n2" if node_id == "n1" else "n1"
    src = os.path.join(nodes[node_id]["root"], "state", "exports")
    dst = os.path.join(nodes[other]["root"], "state", "exports")
    os.makedirs(dst, exist_ok=True)
    for ext in ("", ".sha256", ".sig"):
        shutil.copyfile(os.path.join(src, vm_id + ".tar" + ext), os.path.join(dst, vm_id + ".tar" + ext))
        os.chmod(os.path.join(dst, vm_id + ".tar" + ext), 0o644)
    subprocess.run(["chown", "-R", "--reference=" + os.path.dirname(dst), dst], check=True)
    return other, V.sha256(os.path.join(dst, vm_id + ".tar"))


def deposit(f, vm, n):
    """n small records into vm through fleetd's REST API (api-1.txt ... api-N.txt), each
    operation followed to its end."""
    for i in range(1, n + 1):
        st, op = f.deposit(vm, "api-%d.txt" % i, b"record %d\n" % i)
        assert st == 202 and op["state"] == "succeeded", (st, op)


@pytest.fixture
def fleet():
    for need in (panel.CHROMIUM, panel.CHROMEDRIVER, "/usr/sbin/debugfs", AGENT, V.VMHOST,
                 F.FLEETD):
        if not os.path.exists(need):
            pytest.fail("missing %s (scripts/install-deps.sh installs it)" % need)
    tmp = tempfile.mkdtemp(prefix="tbx-panel-")
    os.chmod(tmp, 0o755)
    f = F.Fleetd(nodes=3, settings={"panel_dir": os.path.join(F.SOURCE, "panel"),
                                    "heartbeat_interval": "2s", "log_level": "info",
                                    # a managed save or a cold create under TCG on a loaded
                                    # 2-core machine takes longer than the harness's 2 s
                                    "node_api_timeout": "60s"})
    nodes = {}
    # the genesis' part: a signed roster naming fleetd's pin key (the harness's nodes and
    # addresses), each node's WireGuard key in its mesh state
    trust = V.FleetTrust(nodes=("ctl", "n1", "n2", "n3"), fleet_id="f1", controller="ctl",
                         addresses=dict({"ctl": "127.0.0.1"},
                                        **{"n%d" % i: F.node_address(i) for i in (1, 2, 3)}))
    trust.give_fleetd(f)
    try:
        manifest = build_image(os.path.join(tmp, "image"))
        for i in (1, 2):
            nid = "n%d" % i
            root = V.make_root("tbx-panel-%s-" % nid)
            args = {"node_id": nid, "address": F.node_address(i), "port": f.node_api_port,
                    "hb_port": f.hb_port, "fleetd_address": "127.0.0.1", "fleet_id": "f1",
                    "node_api_allow": "127.0.0.1", "log_level": "info",
                    "mesh_state_dir": trust.mesh_dir(root, nid)}
            nodes[nid] = {"root": root, "args": args, "vh": None}
            nodes[nid]["vh"] = NodeVmhost(root, **args)
            st, body, _ = nodes[nid]["vh"].call("POST", "/v1/images", {
                "name": IMAGE, "path": manifest, "sha256": V.sha256(manifest)})
            assert st == 201, body
        f.start()
        yield f, nodes, tmp
    finally:
        for n in nodes.values():
            if n["vh"]:
                n["vh"].stop()
            V.destroy_all(n["root"])
            V.remove_root(n["root"])
        f.close()
        shutil.rmtree(tmp, ignore_errors=True)


def test_panel_in_chromium(fleet):
    f, nodes, tmp = fleet
    start = time.monotonic()
    vm, node, other = panel.run_panel(
        "http://127.0.0.1:%d/" % f.api_port, f.token, IMAGE,
        settle=lambda vm, node: settle(nodes[node], vm, tmp),
        tamper=lambda vm, node: tamper(nodes[node], vm, tmp),
        deposit=lambda vm, n: deposit(f, vm, n),
        written=lambda vm, node, n: written(nodes[node], vm, n),
        carry=lambda vm, node: carry(nodes, vm, node))
    print("browser test: %.1f s" % (time.monotonic() - start))
    # What the browser showed is what fleetd recorded.
    entries = f.audit("integrity.mismatch")
    assert entries and any(m["kind"] == "unrecorded-file"
                           for e in entries
                           for m in e["detail"]["integrity"].get("mismatches", [])), entries
    assert f.json("GET", "/v1/health", expect=200)[1]["status"] == "integrity-mismatch"
    # the re-homing the browser confirmed: pinned to the new node, the old one holds it archived
    assert f.json("GET", "/v1/vms/" + vm, expect=200)[1]["node_id"] == other
    rehomed = [e for e in f.audit("vm.rehomed") if e["subject"] == vm]
    assert len(rehomed) == 1 and rehomed[0]["detail"]["from_node"] == node, rehomed
    st, old, _ = nodes[node]["vh"].call("GET", "/v1/vms/" + vm)
    assert st == 200 and old["lifecycle"] == "archived", old


def test_panel_views_in_chromium():
    """The operator's views without guests: fleetd with the repo's panel/, fake node APIs on
    n1 and n2 (harness FakeNode), heartbeats with changing CPU and RAM for n1's charts, VMs in
    each lifecycle, and the audit record, whose chain this test then breaks under fleetd (a row
    rewritten in SQLite) for the panel to show."""
    import json
    import sqlite3
    for need in (panel.CHROMIUM, panel.CHROMEDRIVER, F.FLEETD):
        if not os.path.exists(need):
            pytest.fail("missing %s (scripts/install-deps.sh installs it)" % need)
    f = F.Fleetd(nodes=3, settings={"panel_dir": os.path.join(F.SOURCE, "panel"),
                                    "dispatch_attempts": "2", "dispatch_backoff": "50ms"})
    n1 = F.FakeNode(F.node_address(1), f.node_api_port, "n1")
    try:
        f.start()

        def beat(i, cpu, avail, interval=100):
            node = "n%d" % i
            f.seq[node] = f.seq.get(node, 0) + 1
            fig = n1.figures() if i == 1 else {}
            doc = F.heartbeat(node, f.seq[node], avail=avail, total=16384, interval=interval,
                              committed=fig.get("committed", 0),
                              digest=fig.get("digest", F.ZERO_DIGEST),
                              creations=fig.get("creations", 0))
            doc["cpu_percent"] = cpu
            f.send_raw(F.node_address(i), json.dumps(doc).encode())

        for k in range(14):  # n1's last hour, quickly: a sample per (short) interval
            beat(1, 10 + 5 * k, 12000 - 300 * k)
            beat(2, 5, 6000)
            time.sleep(0.12)
        vms = {}
        for entity in ("active", "suspended", "archived"):
            _, plan = f.json("POST", "/v1/plans", {"entity": entity, "memory_mib": 512, "vcpus": 1,
                                                    "image": "base", "vault_disk_mib": 64}, expect=201)
            assert plan["node_id"] == "n1", plan
            _, vm = f.confirm_vm(plan["id"])
            f.wait(lambda: f.json("GET", "/v1/vms/" + vm["id"])[1]["status"] == "active")
            vms[entity] = vm["id"]
            beat(1, 30, 9000)
        f.verb(vms["suspended"], "suspend", expect=202)
        f.verb(vms["archived"], "archive", expect=202)
        with n1.lock:  # what libvirt reports for a saved and an archived domain
            n1.vms[vms["suspended"]]["state"] = "saved"
            n1.vms[vms["archived"]]["state"] = "shutoff"
            # the active VM's agent ran its scheduled full verification
            n1.vms[vms["active"]]["agent"] = {"last_report_ms": int(time.time() * 1000) - 60000,
                                              "last_report": {"trigger": "schedule", "duration_ms": 40,
                                                              "records": 3, "bytes": 300,
                                                              "mismatches": []}}
        # n2 has no node API: a creation there fails after its attempts
        beat(2, 5, 15000, interval=10000)
        _, plan = f.json("POST", "/v1/plans", {"entity": "failed", "memory_mib": 512, "vcpus": 1,
                                                "image": "base", "vault_disk_mib": 64}, expect=201)
        assert plan["node_id"] == "n2", plan
        _, vm = f.confirm_vm(plan["id"])
        vms["failed"] = vm["id"]
        f.wait(lambda: f.json("GET", "/v1/vms/" + vm["id"])[1]["status"] == "failed", timeout=30)
        for k in range(4):
            beat(1, 40, 9000, interval=10000)
        f.wait(lambda: all(v["state"] in ("running", "saved", "shutoff") for v in
                           f.json("GET", "/v1/vms")[1]["vms"] if v["status"] == "active"),
               what="the node's inventory read")

        def break_chain():
            db = sqlite3.connect(f.state_dir + "/fleetd.db")
            db.executescript("DROP TRIGGER audit_no_update;"
                             "UPDATE audit SET actor='someone-else' WHERE seq=2;")
            db.close()

        keep_beating = True

        def beater():
            while keep_beating:
                beat(1, 40, 9000, interval=10000)
                beat(2, 5, 15000, interval=10000)
                time.sleep(1)
        import threading
        t = threading.Thread(target=beater, daemon=True)
        t.start()
        try:
            panel.run_panel_views("http://127.0.0.1:%d/" % f.api_port, f.token, vms, break_chain)
        finally:
            keep_beating = False
            t.join()
    finally:
        n1.shutdown()
        f.close()
