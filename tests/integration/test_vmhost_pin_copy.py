# ctest-labels: slow
"""The pin against root on a node, with real daemons: a real fleetd and two real vmhosts
(qemu:///embed, TCG, the small test image), given keys and a genesis-signed roster the way the
genesis would. fleetd creates VM A on one node and VM B on the other; every pin comes from
fleetd's own key. Then the adversary, root on B's node: copies A's disks, seed and domain XML
there and, one case at a time, edits the metadata's node attribute; splices in B's valid pin;
forges a pin with another key; edits the node in A's pin keeping its signature; strips the pin.
After each, the node's vmhost restarts (it reads the planted definition) and refuses to start
the copy, and nothing of it runs. fleetd, which fetches that node's inventory, says `misplaced`
in /v1/health, counts it in /metrics, shows it in fleetctl, and writes exactly one vm.misplaced
audit entry for the whole occurrence, however many inventories report it; the occurrence ends
when the copy is gone."""
import json
import os
import re
import shutil
import sys
from xml.sax.saxutils import escape

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, os.path.dirname(__file__))
import test_fleetd_harness as H  # noqa: E402
from test_vmhost_harness import (VMHOST, FleetTrust, Vmhost, build_image, destroy_all,  # noqa: E402
                                 give, make_root, remove_root, sha256)

NODES = ("n1", "n2")
FETCHES = 'totebox_fleetd_inventory_fetches_total{outcome="attempted"}'


@pytest.fixture(scope="module")
def fleet():
    if not os.access(VMHOST, os.X_OK):
        pytest.skip("no vmhost binary in the build")
    roots = {n: make_root("tbx-pincopy-%s-" % n) for n in NODES}
    manifest = build_image(os.path.join(roots["n1"], "image"))
    f = H.Fleetd(nodes=2, settings={"heartbeat_interval": "1s", "dispatch_backoff": "200ms"})
    trust = FleetTrust(nodes=("ctl",) + NODES, fleet_id="f1", controller="ctl",
                       addresses={"ctl": "127.0.0.1", "n1": H.node_address(1),
                                  "n2": H.node_address(2)})
    trust.give_fleetd(f)
    state = {"f": f, "trust": trust, "roots": roots, "vh": {}}

    def start_vmhost(n):
        i = NODES.index(n) + 1
        state["vh"][n] = Vmhost(roots[n], node_id=n, hb_port=f.hb_port, fleet_id="f1",
                                fleetd_address="127.0.0.1", heartbeat_source=H.node_address(i),
                                node_api_listen=H.node_address(i), node_api_port=f.node_api_port,
                                mesh_state_dir=trust.mesh_dir(roots[n], n))
    state["start_vmhost"] = start_vmhost
    try:
        for n in NODES:
            start_vmhost(n)
            st, body, _ = state["vh"][n].call("POST", "/v1/images", {
                "name": "test", "path": manifest, "sha256": sha256(manifest)})
            assert st == 201, body
        f.start()
        f.wait(lambda: all(f.node(n)["state"] == "alive" and f.node(n)["inventory"] == "ok"
                           for n in NODES), timeout=30, what="both vmhosts heard from")
        yield state
    finally:
        for v in state["vh"].values():
            v.stop()
        f.close()
        for r in roots.values():
            destroy_all(r)
            remove_root(r)


def plan_confirm(f, entity):
    _, plan = f.json("POST", "/v1/plans", {"entity": entity, "memory_mib": 128, "vcpus": 1,
                                            "image": "test", "vault_disk_mib": 16}, expect=201)
    return f.confirm_vm(plan["id"])[1]  # 202: the VM recorded, its creation an operation


def metric(f, name):
    _, _, text = f.request("GET", "/metrics")
    m = re.search(r"^%s (\d+)$" % re.escape(name), text.decode(), re.M)
    return int(m.group(1))


def domain_xml_path(root, vm_id):
    return os.path.join(root, "libvirt", "etc", "qemu", vm_id + ".xml")


def test_fleetd_pins_and_both_nodes_start_their_own(fleet):
    f = fleet["f"]
    # back to back: the first one's reservation sends the second to the other node
    a, b = plan_confirm(f, "pin-alpha"), plan_confirm(f, "pin-beta")
    assert a["node_id"] != b["node_id"], (a, b)
    for vm in (a, b):
        f.wait(lambda: f.json("GET", "/v1/vms/" + vm["id"])[1]["status"] == "active",
               timeout=120, what="%s created with fleetd's pin" % vm["id"])
    fleet["a"], fleet["b"] = a, b
    st, health = f.json("GET", "/v1/health", expect=200)
    assert health["misplaced"] == {"status": "ok", "vms": []}
    assert health["pin_key"] == {"public_key": fleet["trust"].pin_public, "in_roster": True}
    # the pin fleetd signed is in the domain's metadata on the node it names
    xml = open(domain_xml_path(fleet["roots"][a["node_id"]], a["id"])).read()
    pin = json.loads(re.search(r' pin="([^"]*)"', xml).group(1).replace("&quot;", '"'))
    assert (pin["vm_id"], pin["node_id"], pin["fleet_id"]) == (a["id"], a["node_id"], "f1")
    assert pin["node_wg_key"] == fleet["trust"].wg_public(a["node_id"])


def plant(fleet, xml):
    """Root on B's node: A's definition (as edited) into the node's libvirt; vmhost restarts
    and reads it; then it is asked to start the copy."""
    a, dst = fleet["a"], fleet["b"]["node_id"]
    root = fleet["roots"][dst]
    fleet["vh"][dst].stop()
    with open(domain_xml_path(root, a["id"]), "w") as fh:
        fh.write(xml)
    fleet["start_vmhost"](dst)
    vh = fleet["vh"][dst]
    status, doc, _ = vh.call("POST", "/v1/vms/%s/start" % a["id"])
    # nothing of the copy runs there
    st, copy, _ = vh.call("GET", "/v1/vms/" + a["id"])
    assert st == 200 and copy["state"] == "shutoff", copy
    assert not os.path.exists(os.path.join(root, "libvirt", "run", "qemu", a["id"] + ".pid"))
    # B on that node is untouched
    assert vh.call("GET", "/v1/vms/" + fleet["b"]["id"])[1]["state"] == "running"
    return status, doc


def copied_xml(fleet):
    """A's disks, seed and definition copied from its node to B's, paths rewritten."""
    a, src, dst = fleet["a"], fleet["a"]["node_id"], fleet["b"]["node_id"]
    rs, rd = fleet["roots"][src], fleet["roots"][dst]
    for sub, suffixes in (("vms", ("-os.qcow2", "-vault.img")), ("seeds", (".iso",))):
        for sfx in suffixes:
            target = os.path.join(rd, "state", sub, a["id"] + sfx)
            shutil.copy(os.path.join(rs, "state", sub, a["id"] + sfx), target)
            give(target)
    return open(domain_xml_path(rs, a["id"])).read().replace(rs, rd)


def set_attr(xml, name, value):
    """Sets (or, with None, removes) an attribute of the Totebox metadata element."""
    xml = re.sub(r' %s="[^"]*"' % name, "", xml, count=1)
    if value is None:
        return xml
    return xml.replace("<totebox:vm ", '<totebox:vm %s="%s" ' % (name, value), 1)


def attr(value):
    return escape(value, {'"': "&quot;"})


def test_copy_with_the_node_attribute_edited_is_refused_and_misplaced(fleet):
    f, a, dst = fleet["f"], fleet["a"], fleet["b"]["node_id"]
    fetches = metric(f, FETCHES)
    fleet["xml"] = copied_xml(fleet)
    status, doc = plant(fleet, set_attr(fleet["xml"], "node", dst))
    assert status == 409 and doc["type"].endswith("/pinned-elsewhere"), doc
    assert "pinned to node '%s'" % a["node_id"] in doc["detail"]
    # fleetd hears of it from the node's inventory: a fleet-level alarm
    health = f.wait(lambda: (lambda h: h if h["status"] == "misplaced" else None)(
        f.json("GET", "/v1/health")[1]), timeout=30, what="health 'misplaced'")
    assert health["misplaced"]["vms"] == [{"vm_id": a["id"], "entity": "pin-alpha",
                                           "pinned_to": a["node_id"], "reported_by": dst}]
    assert metric(f, "totebox_fleetd_misplaced_vms") == 1
    assert metric(f, "totebox_fleetd_misplaced_total") == 1
    assert metric(f, FETCHES) > fetches
    vm = f.json("GET", "/v1/vms/" + a["id"], expect=200)[1]
    assert vm["misplaced_on"] == [dst] and vm["node_id"] == a["node_id"]  # never moved
    out = f.ctl("health").stdout
    assert "fleet: misplaced" in out and "MISPLACED: VM '%s'" % a["id"] in out, out
    assert "MISPLACED:%s" % dst in f.ctl("vms").stdout
    assert len(f.audit("vm.misplaced")) == 1


def test_spliced_pin_of_another_vm_is_refused(fleet):
    b, dst = fleet["b"], fleet["b"]["node_id"]
    own = open(domain_xml_path(fleet["roots"][dst], b["id"])).read()
    b_pin = re.search(r' pin="([^"]*)"', own).group(1)  # valid, names this node and its key
    status, doc = plant(fleet, set_attr(set_attr(fleet["xml"], "node", dst), "pin", b_pin))
    assert status == 409 and doc["type"].endswith("/pin-refused"), doc
    assert "other-vm" in doc["detail"]


def test_forged_pin_is_refused(fleet):
    t, a, dst = fleet["trust"], fleet["a"], fleet["b"]["node_id"]
    forged = t.pin(a["id"], dst, "pin-alpha", "test", a["request_id"],
                   key=Ed25519PrivateKey.generate())
    status, doc = plant(fleet, set_attr(set_attr(fleet["xml"], "node", dst), "pin",
                                        attr(json.dumps(forged, separators=(",", ":")))))
    assert status == 409 and doc["type"].endswith("/pin-refused"), doc
    assert "bad-signature" in doc["detail"]


def test_pin_with_its_node_edited_is_refused(fleet):
    t, dst = fleet["trust"], fleet["b"]["node_id"]
    pin = json.loads(re.search(r' pin="([^"]*)"', fleet["xml"]).group(1).replace("&quot;", '"'))
    pin.update(node_id=dst, node_wg_key=t.wg_public(dst))  # the signature kept
    status, doc = plant(fleet, set_attr(set_attr(fleet["xml"], "node", dst), "pin",
                                        attr(json.dumps(pin, separators=(",", ":")))))
    assert status == 409 and doc["type"].endswith("/pin-refused"), doc
    assert "bad-signature" in doc["detail"]


def test_copy_without_a_pin_is_refused(fleet):
    dst = fleet["b"]["node_id"]
    status, doc = plant(fleet, set_attr(set_attr(fleet["xml"], "node", dst), "pin", None))
    assert status == 409 and doc["type"].endswith("/pin-refused"), doc
    assert "missing" in doc["detail"]


def test_one_audit_entry_for_the_whole_occurrence_and_it_ends(fleet):
    f, a, dst = fleet["f"], fleet["a"], fleet["b"]["node_id"]
    # fleetd fetches the node's inventory again and again while the copy is there (B's agent
    # reports every 5 s, each report a new digest): still one occurrence
    fetches = metric(f, FETCHES)
    f.wait(lambda: metric(f, FETCHES) >= fetches + 3, timeout=60,
           what="three more inventory fetches")
    assert f.json("GET", "/v1/health")[1]["status"] == "misplaced"
    entries = f.audit("vm.misplaced")
    assert len(entries) == 1, entries
    assert entries[0]["subject"] == a["id"]
    assert entries[0]["detail"]["reported_by"] == dst
    assert entries[0]["detail"]["pinned_to"] == a["node_id"]
    assert metric(f, "totebox_fleetd_misplaced_total") == 1
    # the copy goes: the occurrence ends, and nothing more is audited
    root = fleet["roots"][dst]
    fleet["vh"][dst].stop()
    os.unlink(domain_xml_path(root, a["id"]))
    fleet["start_vmhost"](dst)
    f.wait(lambda: f.json("GET", "/v1/health")[1]["misplaced"]["status"] == "ok", timeout=30,
           what="the alarm to end")
    assert metric(f, "totebox_fleetd_misplaced_vms") == 0
    assert len(f.audit("vm.misplaced")) == 1
    assert f.json("GET", "/v1/vms/" + a["id"])[1]["misplaced_on"] == []
    # and A still runs on its own node, where its pin verifies
    assert fleet["vh"][a["node_id"]].call("GET", "/v1/vms/" + a["id"])[1]["state"] == "running"
