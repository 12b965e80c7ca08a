"""vmhost's pin gate on the create path, without booting a VM: a create is refused before
anything is made unless its pin is signed by the controller key the genesis-signed roster names
and names this node, its own WireGuard key, this VM, the entity and the image. Played as whoever
can reach the node API with a forged, edited, replayed or missing pin."""
import base64
import os
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, os.path.dirname(__file__))
from test_vmhost_harness import (FleetTrust, Vmhost, destroy_all, make_root,  # noqa: E402
                                 remove_root, validate)

BODY = {"request_id": "req-p", "vm_id": "vm-p", "entity": "acme-e", "memory_mib": 128,
        "vcpus": 1, "image": "nope", "vault_disk_mib": 16, "fleet_id": "fleet-t"}


@pytest.fixture(scope="module")
def env():
    root = make_root("tbx-vmhost-pin-")
    trust = FleetTrust(nodes=("node1", "node2"))
    vh = Vmhost(root, node_id="node1", mesh_state_dir=trust.mesh_dir(root, "node1"))
    yield {"vh": vh, "trust": trust, "root": root}
    vh.stop()
    destroy_all(root)
    remove_root(root)


def refused(env, body):
    status, doc, ctype = env["vh"].call("POST", "/v1/vms", body)
    assert ctype == "application/problem+json", (status, doc)
    validate(doc, "problem.schema.json")
    assert env["vh"].call("GET", "/v1/inventory")[1]["vms"] == []  # nothing was made
    return status, doc["type"].rsplit("/", 1)[1], doc["detail"]


def test_a_valid_pin_passes_the_gate(env):
    # the next check (the image) answers: the pin was accepted
    status, kind, _ = refused(env, env["trust"].create(BODY, "node1"))
    assert (status, kind) == (422, "unknown-image")


def test_no_pin_is_refused(env):
    status, kind, detail = refused(env, BODY)
    assert (status, kind) == (403, "pin-refused") and "missing" in detail


def test_pin_for_another_node(env):
    status, kind, detail = refused(env, env["trust"].create(BODY, "node2"))
    assert (status, kind) == (409, "pinned-elsewhere") and "node2" in detail


def test_pin_naming_another_wireguard_key(env):
    t = env["trust"]
    pin = t.pin("vm-p", "node1", BODY["entity"], "nope", "req-p", wg=t.wg_public("node2"))
    status, kind, _ = refused(env, dict(BODY, pin=pin))
    assert (status, kind) == (409, "pinned-elsewhere")


def test_pin_signed_by_another_key(env):
    pin = env["trust"].pin("vm-p", "node1", BODY["entity"], "nope", "req-p",
                           key=Ed25519PrivateKey.generate())
    status, kind, detail = refused(env, dict(BODY, pin=pin))
    assert (status, kind) == (403, "pin-refused") and "bad-signature" in detail


@pytest.mark.parametrize("field,value", [("node_id", "node1"), ("vm_id", "vm-p"),
                                         ("entity", BODY["entity"]), ("image", "nope")])
def test_edited_pin_field(env, field, value):
    t = env["trust"]
    # signed for something else, then edited to match this request
    orig = {"node_id": "node2", "vm_id": "vm-q", "entity": "other", "image": "other"}
    args = {"vm_id": "vm-p", "node": "node1", "entity": BODY["entity"], "image": "nope"}
    args[{"node_id": "node"}.get(field, field)] = orig[field]
    pin = t.pin(args["vm_id"], args["node"], args["entity"], args["image"], "req-p",
                edit={field: value})
    if field == "node_id":
        pin["node_wg_key"] = t.wg_public("node1")
    status, kind, detail = refused(env, dict(BODY, pin=pin))
    assert (status, kind) == (403, "pin-refused") and "bad-signature" in detail


def test_pin_of_another_vm(env):
    pin = env["trust"].pin("vm-other", "node1", BODY["entity"], "nope", "req-o")
    status, kind, detail = refused(env, dict(BODY, pin=pin))
    assert (status, kind) == (403, "pin-refused") and "other-vm" in detail


def test_pin_for_another_entity_or_image(env):
    t = env["trust"]
    for entity, image, word in (("other", "nope", "other-entity"),
                                (BODY["entity"], "other", "other-image")):
        pin = t.pin("vm-p", "node1", entity, image, "req-p")
        status, kind, detail = refused(env, dict(BODY, pin=pin))
        assert (status, kind) == (403, "pin-refused") and word in detail


def test_truncated_or_unsigned_pin_is_a_bad_request(env):
    pin = env["trust"].pin("vm-p", "node1", BODY["entity"], "nope", "req-p")
    short = dict(pin, signature=pin["signature"][:-8])
    status, kind, _ = refused(env, dict(BODY, pin=short))
    assert (status, kind) == (400, "bad-request")
    unsigned = {k: v for k, v in pin.items() if k != "signature"}
    status, kind, detail = refused(env, dict(BODY, pin=unsigned))
    assert (status, kind) == (403, "pin-refused") and "unsigned" in detail
    status, kind, _ = refused(env, dict(BODY, pin=dict(pin, extra=1)))
    assert (status, kind) == (400, "bad-request")


def test_roster_not_signed_by_the_genesis_names_no_key(env):
    """A roster.json edited on the node (another controller key, the signature kept) makes the
    roster not verify: every pin is refused, including one signed by the edited-in key."""
    vh2_root = make_root("tbx-vmhost-pin2-")
    t = env["trust"]
    mesh = t.mesh_dir(vh2_root, "node1")
    rogue = Ed25519PrivateKey.generate()
    from cryptography.hazmat.primitives import serialization
    raw = rogue.public_key().public_bytes(serialization.Encoding.Raw,
                                          serialization.PublicFormat.Raw)
    import json
    doc = t.roster()
    doc["controller_pin_key"] = base64.b64encode(raw).decode()
    with open(os.path.join(mesh, "roster.json"), "w") as f:
        json.dump(doc, f)
    vh2 = Vmhost(vh2_root, node_id="node1", mesh_state_dir=mesh)
    try:
        pin = t.pin("vm-p", "node1", BODY["entity"], "nope", "req-p", key=rogue)
        status, doc, _ = vh2.call("POST", "/v1/vms", dict(BODY, pin=pin))
        assert status == 403 and doc["type"].endswith("/pin-refused"), doc
        assert "roster names no controller pin key" in doc["detail"]
    finally:
        vh2.stop()
        remove_root(vh2_root)
