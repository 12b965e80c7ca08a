"""totebox-agent on a real ext4 file system in a loop-mounted image (needs root and a free loop
device; skipped otherwise): FS_IMMUTABLE_FL on every asset and FS_APPEND_FL on the ledger are set
and enforced by the kernel, and clearing them is detected. The mount and the loop device are
removed in every case."""
import json
import os
import shutil
import tempfile

import pytest

from harness import sh

BUILD = os.environ.get("TOTEBOX_BUILD_DIR", "build")
AGENT = os.path.join(BUILD, "agent", "totebox-agent")


@pytest.fixture
def ext4():
    if os.geteuid() != 0 or shutil.which("mkfs.ext4") is None or shutil.which("losetup") is None:
        pytest.skip("needs root, mkfs.ext4 and losetup")
    d = tempfile.mkdtemp(prefix="totebox-agent-ext4-")
    img, mnt = os.path.join(d, "fs.img"), os.path.join(d, "mnt")
    os.mkdir(mnt)
    loop = None
    mounted = False
    try:
        with open(img, "wb") as f:
            f.truncate(32 << 20)
        sh("mkfs.ext4", "-q", "-F", img)
        r = sh("losetup", "--find", "--show", img, check=False)
        if r.returncode != 0:
            pytest.skip("no loop device: " + r.stderr.strip())
        loop = r.stdout.strip()
        sh("mount", "-t", "ext4", loop, mnt)
        mounted = True
        yield mnt
    finally:
        if mounted:
            sh("chattr", "-R", "-i", "-a", mnt, check=False)
            sh("umount", mnt, check=False)
        if loop:
            sh("losetup", "-d", loop, check=False)
        shutil.rmtree(d, ignore_errors=True)


def test_flags_on_ext4(ext4):
    vault = os.path.join(ext4, "vault")
    assert sh(AGENT, "seal", vault).returncode == 0
    inbox = os.path.join(vault, "app-console-input")
    for i in range(3):
        with open(os.path.join(inbox, ".r%d" % i), "wb") as f:
            f.write(os.urandom(10000 * (i + 1)))
        os.rename(os.path.join(inbox, ".r%d" % i), os.path.join(inbox, "r%d" % i))
    assert "sealed 3" in sh(AGENT, "seal", vault).stdout
    ledger = os.path.join(vault, "ledger", "ledger.jsonl")
    assert "a" in sh("lsattr", ledger).stdout.split()[0]
    entries = [json.loads(l) for l in open(ledger)]
    for e in entries:
        p = os.path.join(vault, e["path"])
        assert e["protect"] == "immutable"
        assert "i" in sh("lsattr", p).stdout.split()[0]
        with pytest.raises(PermissionError):
            open(p, "ab")
        with pytest.raises(PermissionError):
            os.unlink(p)
    with pytest.raises(PermissionError):
        open(ledger, "wb")  # no truncation or rewrite of an append-only file
    assert sh(AGENT, "verify", vault, check=False).returncode == 0
    sh("chattr", "-i", os.path.join(vault, entries[0]["path"]))
    sh("chattr", "-a", ledger)
    r = sh(AGENT, "verify", "--json", vault, check=False)
    assert r.returncode == 1
    got = [(m["kind"], m["path"]) for m in json.loads(r.stdout)["mismatches"]]
    assert ("flag-cleared", entries[0]["path"]) in got
    assert ("flag-cleared", "ledger/ledger.jsonl") in got
