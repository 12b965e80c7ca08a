"""vmhost's node API without booting a VM: only allowed addresses get an answer, bad bodies get
problem+json 4xx and change nothing, there is no migrate/undefine/delete verb, and a pushed
roster needs the genesis key's signature."""
import os
import socket
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from test_vmhost_harness import Vmhost, destroy_all, make_root, remove_root, validate  # noqa: E402


@pytest.fixture(scope="module")
def vh():
    root = make_root("tbx-vmhost-api-")
    v = Vmhost(root, max_body_bytes=4096)
    yield v
    v.stop()
    destroy_all(root)
    remove_root(root)


def problem(vh, method, path, body=None):
    status, doc, ctype = vh.call(method, path, body)
    assert ctype == "application/problem+json", (status, doc)
    validate(doc, "problem.schema.json")
    assert doc["status"] == status
    return status, doc["type"].rsplit("/", 1)[1], doc["detail"]


def test_other_addresses_get_no_answer(vh):
    with pytest.raises((ConnectionError, OSError)):
        vh.call("GET", "/v1/inventory", source="127.0.0.2")
    assert "connection from '127.0.0.2' refused" in vh.read_log()


def test_empty_inventory(vh):
    status, inv, _ = vh.call("GET", "/v1/inventory")
    assert status == 200
    assert inv["vms"] == []
    validate(inv, "inventory.schema.json")
    # SHA-256("[]")
    assert inv["digest"] == "4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945"


@pytest.mark.parametrize("body", [
    "", "not json", "[]", '{"request_id":"r"}',
    '{"request_id":"r","vm_id":"A B","entity":"e","memory_mib":256,"vcpus":1,"image":"i",'
    '"vault_disk_mib":64}',
    '{"request_id":"r","vm_id":"v","entity":"e","memory_mib":256,"vcpus":1,"image":"i",'
    '"vault_disk_mib":64,"node":"elsewhere"}',
    '{"a":' * 40 + '1' + '}' * 40,
    # ids by common/ident.h, as fleetd checks them at plan time
    '{"request_id":"r","vm_id":"v","entity":"Acme <&>","memory_mib":256,"vcpus":1,"image":"i",'
    '"vault_disk_mib":64}',
    '{"request_id":"r","vm_id":"v","entity":"e","memory_mib":256,"vcpus":1,"image":"Ubuntu",'
    '"vault_disk_mib":64}',
    '{"request_id":"r 1","vm_id":"v","entity":"e","memory_mib":256,"vcpus":1,"image":"i",'
    '"vault_disk_mib":64}',
])
def test_bad_create_bodies(vh, body):
    status, kind, _ = problem(vh, "POST", "/v1/vms", body)
    assert (status, kind) == (400, "bad-request")


def test_body_limit(vh):
    status, kind, _ = problem(vh, "POST", "/v1/vms", "x" * 5000)
    assert (status, kind) == (413, "body-too-large")


def test_create_without_a_roster_key_is_refused(vh):
    # no roster names a controller pin key here: no pin can verify, nothing is made
    # (test_vmhost_pin_api.py has the pin cases and unknown-image behind a valid pin)
    body = {"request_id": "r", "vm_id": "v", "entity": "e", "memory_mib": 256, "vcpus": 1,
            "image": "nope", "vault_disk_mib": 64}
    status, kind, detail = problem(vh, "POST", "/v1/vms", body)
    assert (status, kind) == (403, "pin-refused")
    assert "roster names no controller pin key" in detail
    assert vh.call("GET", "/v1/inventory")[1]["vms"] == []


@pytest.mark.parametrize("method,path", [
    ("POST", "/v1/vms/v/migrate"), ("POST", "/v1/vms/v/undefine"), ("DELETE", "/v1/vms/v"),
    ("POST", "/v1/vms/v/delete-disk"), ("GET", "/v2/anything"),
])
def test_no_such_verbs(vh, method, path):
    status, kind, _ = problem(vh, method, path)
    assert status in (404, 405)


def test_image_import_bad_requests(vh):
    status, kind, _ = problem(vh, "POST", "/v1/images",
                              {"name": "x", "path": "relative", "sha256": "0" * 64})
    assert (status, kind) == (400, "bad-request")
    status, kind, _ = problem(vh, "POST", "/v1/images",
                              {"name": "x", "path": "/nonexistent.qcow2", "sha256": "0" * 64})
    assert (status, kind) == (422, "image-unreadable")


def test_roster_needs_the_genesis_key(vh):
    roster = ('{"v":1,"version":2,"fleet_id":"f","controller":"n1","nodes":[{"id":"n1",'
              '"role":"cloud","mesh_address":"10.77.0.1"}],"signature":"' + "A" * 86 + '=="}')
    status, kind, _ = problem(vh, "POST", "/v1/roster", roster)
    assert (status, kind) == (403, "no-genesis-key")
    status, kind, _ = problem(vh, "POST", "/v1/roster", '{"v":1}')
    assert (status, kind) == (400, "bad-roster")


@pytest.mark.skipif(not os.path.exists("/sys/module/kvm_pvm"), reason="needs this machine's PVM KVM")
def test_virt_type_auto_picks_tcg_here():
    """/dev/kvm exists here but is the PVM flavour that cannot boot guests: auto must pick qemu."""
    root = make_root("tbx-vmhost-auto-")
    v = Vmhost(root, virt_type="auto")
    try:
        assert "(virt_type 'qemu')" in v.read_log()
    finally:
        v.stop()
        remove_root(root)
