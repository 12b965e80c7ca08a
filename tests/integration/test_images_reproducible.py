# ctest-labels: image-build
"""images/build-test-image is reproducible (reproducible-builds.org): two builds from the same
inputs, started in different wall-clock seconds, from different directories, under a different
umask, TZ and TMPDIR, give bit-for-bit the same vmlinuz, initrd.img, root.qcow2 and manifest.json.

The adversary's side: a comparison that could never fail proves nothing, so the inputs that
must matter are changed one at a time (SOURCE_DATE_EPOCH, the image name, the agent) and each
must change the output; the only time inside the image is SOURCE_DATE_EPOCH (every initramfs
entry's mtime is at most it, the gzip header carries none, the ext4 was made at it); and the
manifest's recorded inputs are checked against the real files. A mismatch is explained entry by
entry (the cpio members, the ext4 superblock), and by diffoscope when it is installed.

Runs the real script with the real tools (about 5 s a build once the kernel .deb is cached)."""
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

SRC = os.environ.get("TOTEBOX_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.join(SRC, "images", "build-test-image")
DEB_CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                         "totebox", "debs")
FILES = ("vmlinuz", "initrd.img", "root.qcow2", "manifest.json")
EPOCH = 1767225600  # 2026-01-01T00:00:00Z: fixed, so the test does not depend on git history


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def next_second():
    """Sleeps into a later wall-clock second, so a time stamp leaking into a build shows."""
    time.sleep(1.1 - (time.time() % 1.0))


def build(out, epoch=EPOCH, umask=0o022, extra=(), cwd=None, env_extra=None):
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(epoch), **(env_extra or {}))
    r = subprocess.run([BUILD, out, "--cache", DEB_CACHE, *extra], env=env, cwd=cwd,
                       capture_output=True, text=True, timeout=600,
                       preexec_fn=lambda: os.umask(umask))
    assert r.returncode == 0, f"build-test-image failed:\n{r.stdout}\n{r.stderr}"
    with open(os.path.join(out, "manifest.json")) as f:
        return json.load(f)


def cpio_members(path):
    """name -> (mode, uid, gid, nlink, mtime, ino, dev, sha256 of data) of a gzip'd newc cpio."""
    data = gzip.decompress(open(path, "rb").read())
    out, off = {}, 0
    while off + 110 <= len(data):
        hdr = data[off:off + 110]
        assert hdr[:6] == b"070701", f"not a newc cpio at offset {off}"
        fld = [int(hdr[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        ino, mode, uid, gid, nlink, mtime, size = fld[:7]
        dev = (fld[7], fld[8], fld[9], fld[10])
        namesize = fld[11]
        name = data[off + 110:off + 110 + namesize - 1].decode()
        off = (off + 110 + namesize + 3) & ~3
        body = data[off:off + size]
        off = (off + size + 3) & ~3
        if name == "TRAILER!!!":
            break
        out[name] = (mode, uid, gid, nlink, mtime, ino, dev, hashlib.sha256(body).hexdigest())
    return out


def raw_of(qcow2, dest):
    subprocess.run(["qemu-img", "convert", "-q", "-O", "raw", qcow2, dest], check=True)
    return dest


def superblock(raw):
    return subprocess.run(["dumpe2fs", "-h", raw], capture_output=True, text=True,
                          check=True).stdout.splitlines()


def explain(a, b, name, tmp):
    """Why two builds of one file differ, as lines a reader can act on."""
    pa, pb = os.path.join(a, name), os.path.join(b, name)
    lines = [f"{name} differs: {sha256(pa)} vs {sha256(pb)}"]
    if name == "initrd.img":
        ma, mb = cpio_members(pa), cpio_members(pb)
        for k in sorted(set(ma) | set(mb)):
            if ma.get(k) != mb.get(k):
                lines.append(f"  cpio member '{k}': {ma.get(k)} vs {mb.get(k)}")
    elif name == "root.qcow2":
        sa = set(superblock(raw_of(pa, os.path.join(tmp, "a.raw"))))
        sb = set(superblock(raw_of(pb, os.path.join(tmp, "b.raw"))))
        lines += [f"  ext4 only in first: {x}" for x in sorted(sa - sb)]
        lines += [f"  ext4 only in second: {x}" for x in sorted(sb - sa)]
    if shutil.which("diffoscope"):
        r = subprocess.run(["diffoscope", "--text", "-", pa, pb], capture_output=True, text=True)
        lines.append(r.stdout[:8000])
    return "\n".join(lines)


@pytest.fixture(scope="module")
def tmp():
    d = tempfile.mkdtemp(prefix="tbx-repro-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def twice(tmp):
    """Two builds from the same inputs under as many differing conditions as a builder has."""
    a, b = os.path.join(tmp, "first", "out"), os.path.join(tmp, "second", "elsewhere", "out")
    os.makedirs(os.path.join(tmp, "tmpdir-b"))
    build(a, umask=0o022, cwd="/", env_extra={"TZ": "UTC"})
    next_second()
    build(b, umask=0o077, cwd=tmp, env_extra={"TZ": "Pacific/Kiritimati", "LANG": "C.UTF-8",
                                              "TMPDIR": os.path.join(tmp, "tmpdir-b")})
    return a, b


def test_two_builds_are_bit_for_bit_identical(twice, tmp):
    a, b = twice
    diffs = [explain(a, b, n, tmp) for n in FILES
             if sha256(os.path.join(a, n)) != sha256(os.path.join(b, n))]
    assert not diffs, "\n".join(diffs)
    for n in FILES:
        r = subprocess.run(["cmp", os.path.join(a, n), os.path.join(b, n)])
        assert r.returncode == 0, f"cmp says {n} differs"


def test_the_only_time_in_the_image_is_source_date_epoch(twice, tmp):
    a, _ = twice
    initrd = os.path.join(a, "initrd.img")
    with open(initrd, "rb") as f:
        head = f.read(10)
    assert head[:2] == b"\x1f\x8b" and head[4:8] == b"\0\0\0\0", "gzip header holds a time"
    assert head[3] & 0x08 == 0, "gzip header holds a file name"
    members = cpio_members(initrd)
    assert "init" in members and "sbin/totebox-agent" in members
    for name, (mode, uid, gid, _, mtime, ino, dev, _) in members.items():
        assert mtime <= EPOCH, f"'{name}' has mtime {mtime}, after SOURCE_DATE_EPOCH {EPOCH}"
        assert (uid, gid) == (0, 0), f"'{name}' is owned by {uid}:{gid}"
        assert dev == (0, 0, 0, 0), f"'{name}' records device numbers {dev}"
        assert mode & 0o022 == 0, f"'{name}' is group/other writable ({oct(mode)})"
    # Written by us (the agent, the directories): exactly the epoch, not the build's clock.
    assert members["sbin/totebox-agent"][4] == EPOCH
    assert members["."][4] == EPOCH
    sb = superblock(raw_of(os.path.join(a, "root.qcow2"), os.path.join(tmp, "sb.raw")))
    created = [ln for ln in sb if ln.startswith("Filesystem created:")][0]
    want = time.strftime("%a %b %e %H:%M:%S %Y", time.gmtime(EPOCH))
    r = subprocess.run(["dumpe2fs", "-h", os.path.join(tmp, "sb.raw")], capture_output=True,
                       text=True, env=dict(os.environ, TZ="UTC"), check=True)
    assert f"Filesystem created:       {want}" in r.stdout, created
    m = json.load(open(os.path.join(a, "manifest.json")))
    assert m["source_date_epoch"] == EPOCH
    assert m["source_date"] == "2026-01-01T00:00:00Z"
    uuid = [ln.split()[-1] for ln in sb if ln.startswith("Filesystem UUID:")][0]
    seed = [ln.split()[-1] for ln in sb if ln.startswith("Directory Hash Seed:")][0]
    assert uuid == seed == m["root_fs_uuid"]


def test_manifest_records_the_inputs(twice):
    a, _ = twice
    m = json.load(open(os.path.join(a, "manifest.json")))
    inp = m["inputs"]
    deb = os.path.join(DEB_CACHE, inp["kernel_deb"]["file"])
    assert sha256(deb) == inp["kernel_deb"]["sha256"]
    pkg = subprocess.run(["dpkg-deb", "-f", deb, "Package", "Version"], capture_output=True,
                         text=True, check=True).stdout
    assert f"Package: {inp['kernel_deb']['package']}" in pkg
    assert f"Version: {inp['kernel_deb']['version']}" in pkg
    assert inp["busybox"]["sha256"] == sha256("/bin/busybox")
    assert inp["agent"]["sha256"] == m["agent_sha256"]
    assert inp["init"]["sha256"] == sha256(os.path.join(SRC, "images", "test-guest", "init"))
    for tool, pkgname in (("cpio", "cpio"), ("e2fsprogs", "e2fsprogs"), ("gzip", "gzip")):
        v = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkgname], capture_output=True,
                           text=True, check=True).stdout
        assert inp["tools"][tool] == v
    for role in ("disk", "kernel", "initrd"):
        entry = m["files"][role]
        assert sha256(os.path.join(a, entry["path"])) == entry["sha256"]


def test_each_input_changes_the_output(twice, tmp):
    """The comparison can fail: the epoch, the name and the agent each show in the output."""
    a, _ = twice
    later = os.path.join(tmp, "later")
    build(later, epoch=EPOCH + 86400)
    for n in ("initrd.img", "root.qcow2", "manifest.json"):
        assert sha256(os.path.join(a, n)) != sha256(os.path.join(later, n)), \
            f"{n} does not depend on SOURCE_DATE_EPOCH"
    assert sha256(os.path.join(a, "vmlinuz")) == sha256(os.path.join(later, "vmlinuz"))

    renamed = os.path.join(tmp, "renamed")
    m = build(renamed, extra=("--name", "totebox-other"))
    assert m["root_fs_uuid"] != json.load(open(os.path.join(a, "manifest.json")))["root_fs_uuid"]
    assert sha256(os.path.join(a, "root.qcow2")) != sha256(os.path.join(renamed, "root.qcow2"))
    assert sha256(os.path.join(a, "initrd.img")) == sha256(os.path.join(renamed, "initrd.img"))

    src = os.path.join(tmp, "agent.c")
    with open(src, "w") as f:
        f.write("int main(void) { return 7; }\n")
    agent = os.path.join(tmp, "agent")
    subprocess.run(["cc", "-static", "-Os", "-o", agent, src], check=True)
    other = os.path.join(tmp, "other-agent")
    m = build(other, extra=("--agent", agent))
    assert m["inputs"]["agent"] == dict(m["inputs"]["agent"], source="given",
                                        sha256=sha256(agent))
    assert cpio_members(os.path.join(other, "initrd.img"))["sbin/totebox-agent"][7] == sha256(agent)
    assert sha256(os.path.join(a, "initrd.img")) != sha256(os.path.join(other, "initrd.img"))


@pytest.mark.parametrize("bad", ["yesterday", "-1", "1e9", "12345678901234"])
def test_a_bad_source_date_epoch_is_refused_and_writes_nothing(tmp, bad):
    out = os.path.join(tmp, "bad-" + str(abs(hash(bad))))
    r = subprocess.run([BUILD, out, "--cache", DEB_CACHE],
                       env=dict(os.environ, SOURCE_DATE_EPOCH=bad),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert f"SOURCE_DATE_EPOCH '{bad}' is not a number of seconds" in r.stderr
    assert not os.path.exists(out)


def test_the_default_epoch_is_the_last_commit_else_the_changelog(tmp):
    """Without SOURCE_DATE_EPOCH: the source tree's last commit; in a tree without git history
    (a tarball), the newest debian/changelog entry, as dpkg-parsechangelog reads it."""
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    git = subprocess.run(["git", "-c", "safe.directory=*", "-C", SRC, "log", "-1", "--format=%ct"],
                         capture_output=True, text=True)
    if git.returncode == 0 and git.stdout.strip():
        out = os.path.join(tmp, "default-git")
        subprocess.run([BUILD, out, "--cache", DEB_CACHE], env=env, check=True,
                       capture_output=True, timeout=600)
        m = json.load(open(os.path.join(out, "manifest.json")))
        assert m["source_date_epoch"] == int(git.stdout)
    tree = os.path.join(tmp, "tarball")
    shutil.copytree(os.path.join(SRC, "images"), os.path.join(tree, "images"))
    os.makedirs(os.path.join(tree, "debian"))
    shutil.copy(os.path.join(SRC, "debian", "changelog"), os.path.join(tree, "debian"))
    out = os.path.join(tmp, "default-changelog")
    subprocess.run([os.path.join(tree, "images", "build-test-image"), out, "--cache", DEB_CACHE],
                   env=env, check=True, capture_output=True, timeout=600)
    m = json.load(open(os.path.join(out, "manifest.json")))
    want = subprocess.run(["dpkg-parsechangelog", "-l", os.path.join(tree, "debian", "changelog"),
                           "-STimestamp"], capture_output=True, text=True, check=True).stdout
    assert m["source_date_epoch"] == int(want)
