"""totebox-agent, black-box: seal real files into a vault in a private temp directory, tamper
with it in every way the issue lists, and check that `totebox-agent verify` names each one
(exit 1, the right mismatch kind), never crashes on bad ledger input, and exits 0 only on a
clean vault. Content hashes are checked against coreutils `b2sum -l 256`."""
import base64
import hashlib
import json
import re
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time

import jsonschema
import pytest

from harness import sh

BUILD = os.environ.get("TOTEBOX_BUILD_DIR", "build")
SOURCE = os.environ.get("TOTEBOX_SOURCE_DIR", ".")
AGENT = os.path.join(BUILD, "agent", "totebox-agent")


def run(*args, check=False):
    return sh(*args, check=check, timeout=60)


def unprotect(path):
    subprocess.run(["chattr", "-R", "-i", "-a", path], capture_output=True)


@pytest.fixture
def tmp():
    d = tempfile.mkdtemp(prefix="totebox-agent-test-")
    yield d
    unprotect(d)
    shutil.rmtree(d, ignore_errors=True)


def put(vault, name, data):
    """Write like a well-behaved producer: a dot-file, then a rename into the inbox."""
    inbox = os.path.join(vault, "app-console-input")
    os.makedirs(inbox, exist_ok=True)
    tmpname = os.path.join(inbox, "." + name + ".part")
    with open(tmpname, "wb") as f:
        f.write(data)
    os.rename(tmpname, os.path.join(inbox, name))


def seal(vault):
    r = run(AGENT, "seal", vault)
    assert r.returncode == 0, r.stderr
    return r.stdout


def verify(vault, *extra):
    r = run(AGENT, "verify", "--json", *extra, vault)
    assert r.returncode in (0, 1), (r.returncode, r.stdout, r.stderr)
    out = json.loads(r.stdout)
    assert out["ok"] == (r.returncode == 0)
    return r.returncode, out


def kinds(out):
    return {m["kind"] for m in out["mismatches"]}


def make_vault(tmp, n=3, name="v"):
    vault = os.path.join(tmp, name)
    seal(vault)  # first start: skeleton, key, empty ledger
    for i in range(n):
        put(vault, "record-%d.txt" % i, ("record %d\n" % i).encode() * (i + 1))
    seal(vault)
    return vault


def ledger_path(vault):
    return os.path.join(vault, "ledger", "ledger.jsonl")


def ledger_lines(vault):
    with open(ledger_path(vault), "rb") as f:
        return f.read().split(b"\n")[:-1]


def rewrite_ledger(vault, data):
    p = ledger_path(vault)
    subprocess.run(["chattr", "-a", p], capture_output=True)
    with open(p, "wb") as f:
        f.write(data)
    subprocess.run(["chattr", "+a", p], capture_output=True)


def asset(vault, seq):
    entry = json.loads(ledger_lines(vault)[seq - 1])
    return os.path.join(vault, entry["path"])


def test_clean_vault_checks_and_matches_b2sum(tmp):
    vault = make_vault(tmp)
    rc, out = verify(vault)
    assert rc == 0 and out["records"] == 3 and out["tree_size"] == 3, out
    schema = json.load(open(os.path.join(SOURCE, "schemas", "ledger-entry.schema.json")))
    for line in ledger_lines(vault):
        entry = json.loads(line)
        jsonschema.validate(entry, schema)
        b2 = run("b2sum", "-l", "256", os.path.join(vault, entry["path"]), check=True)
        assert b2.stdout.split()[0] == entry["blake2b_256"]
    human = run(AGENT, "verify", vault)
    assert human.returncode == 0 and "everything checks" in human.stdout
    key = os.path.join(vault, ".totebox-agent", "vault.key")
    assert os.stat(key).st_mode & 0o777 == 0o600


BOUNDARY_SIZES = [0, 1, 127, 128, 129, 255, 256, 257, 32767, 32768, 32769, 32768 + 128,
                  32768 + 129, 65536, 65537, 300001]


@pytest.mark.parametrize("threads", ["1", "2", "5"])
def test_sizes_at_block_and_buffer_boundaries(tmp, threads):
    """Verification hashes several files at once, each streamed through a 32 KiB buffer in
    128-byte blocks: sizes on either side of those edges, more files than lanes, agree with
    b2sum, and a flipped last byte in any of them is named."""
    vault = os.path.join(tmp, "v")
    seal(vault)
    for i, size in enumerate(BOUNDARY_SIZES):
        put(vault, "size-%02d-%d.bin" % (i, size), os.urandom(size))
    seal(vault)
    rc, out = verify(vault, "--threads", threads)
    assert rc == 0 and out["records"] == len(BOUNDARY_SIZES), out
    for line in ledger_lines(vault):
        entry = json.loads(line)
        b2 = run("b2sum", "-l", "256", os.path.join(vault, entry["path"]), check=True)
        assert b2.stdout.split()[0] == entry["blake2b_256"], entry
    flipped = []
    for line in ledger_lines(vault):
        entry = json.loads(line)
        if entry["size"] == 0:
            continue
        path = os.path.join(vault, entry["path"])
        subprocess.run(["chattr", "-i", path], capture_output=True)
        os.chmod(path, 0o644)
        with open(path, "r+b") as f:
            f.seek(entry["size"] - 1)
            last = f.read(1)
            f.seek(entry["size"] - 1)
            f.write(bytes([last[0] ^ 1]))
        os.chmod(path, 0o444)
        subprocess.run(["chattr", "+i", path], capture_output=True)
        flipped.append(entry["path"])
    rc, out = verify(vault, "--threads", threads)
    named = {m["path"] for m in out["mismatches"] if m["kind"] == "modified-asset"}
    assert rc == 1 and named == set(flipped), out


def test_files_being_written_are_not_sealed(tmp):
    vault = make_vault(tmp, n=0)
    inbox = os.path.join(vault, "app-console-input")
    with open(os.path.join(inbox, "open-for-writing.bin"), "wb") as busy:
        busy.write(b"half")
        busy.flush()
        open(os.path.join(inbox, ".hidden"), "wb").close()
        open(os.path.join(inbox, "upload.part"), "wb").close()
        os.mkfifo(os.path.join(inbox, "a-fifo"))
        os.mkdir(os.path.join(inbox, "a-dir"))
        out = seal(vault)
        assert "sealed 0" in out, out
    out = seal(vault)  # closed now: sealed
    assert "sealed 1" in out, out
    assert len(ledger_lines(vault)) == 1


def test_supersedes(tmp):
    vault = make_vault(tmp, n=2)
    put(vault, "record-0.txt.supersedes-1", b"corrected\n")
    seal(vault)
    last = json.loads(ledger_lines(vault)[-1])
    assert last["supersedes"] == 1 and last["path"].endswith("-record-0.txt")
    assert verify(vault)[0] == 0


def modify_asset(vault):
    p = asset(vault, 2)
    unprotect(p)
    os.chmod(p, 0o644)
    with open(p, "ab") as f:
        f.write(b"tampered")
    os.chmod(p, 0o444)
    subprocess.run(["chattr", "+i", p], capture_output=True)


def delete_asset(vault):
    p = asset(vault, 2)
    unprotect(p)
    os.unlink(p)


def unrecorded_asset(vault):
    with open(os.path.join(vault, "assets", "smuggled.bin"), "wb") as f:
        f.write(b"x")


def unrecorded_ledger_dir(vault):
    with open(os.path.join(vault, "ledger", "notes.txt"), "wb") as f:
        f.write(b"x")


def edit_entry(vault):
    lines = ledger_lines(vault)
    lines[1] = lines[1].replace(b'"size":', b'"size":1')
    rewrite_ledger(vault, b"\n".join(lines) + b"\n")


def edit_last_entry(vault):
    lines = ledger_lines(vault)
    lines[2] = lines[2].replace(b'"size":', b'"size":1')
    rewrite_ledger(vault, b"\n".join(lines) + b"\n")


def delete_entry(vault):
    lines = ledger_lines(vault)
    del lines[1]
    rewrite_ledger(vault, b"\n".join(lines) + b"\n")


def delete_ledger(vault):
    unprotect(ledger_path(vault))
    os.unlink(ledger_path(vault))


def reorder_entries(vault):
    lines = ledger_lines(vault)
    lines[1], lines[2] = lines[2], lines[1]
    rewrite_ledger(vault, b"\n".join(lines) + b"\n")


def truncate_entries(vault):
    lines = ledger_lines(vault)
    rewrite_ledger(vault, b"\n".join(lines[:2]) + b"\n")


def truncate_mid_line(vault):
    data = open(ledger_path(vault), "rb").read()
    rewrite_ledger(vault, data[:-40])


def clear_immutable(vault):
    subprocess.run(["chattr", "-i", asset(vault, 1)], check=True)


def make_asset_writable(vault):
    p = asset(vault, 1)
    subprocess.run(["chattr", "-i", p], check=True)
    os.chmod(p, 0o644)


def clear_append_only(vault):
    subprocess.run(["chattr", "-a", ledger_path(vault)], check=True)


def forge_tree_head(vault):
    p = os.path.join(vault, ".totebox-agent", "sth.json")
    sth = json.load(open(p))
    sig = bytearray(base64.b64decode(sth["signature"]))
    sig[0] ^= 1
    sth["signature"] = base64.b64encode(bytes(sig)).decode()
    json.dump(sth, open(p, "w"))


def forge_root(vault):
    p = os.path.join(vault, ".totebox-agent", "sth.json")
    sth = json.load(open(p))
    sth["root"] = "00" * 32
    json.dump(sth, open(p, "w"))


TAMPERS = [
    (modify_asset, "modified-asset"),
    (delete_asset, "deleted-asset"),
    (unrecorded_asset, "unrecorded-file"),
    (unrecorded_ledger_dir, "unrecorded-file"),
    (edit_entry, "ledger-edited"),
    (edit_last_entry, "ledger-edited"),
    (delete_entry, "ledger-deleted"),
    (delete_ledger, "ledger-deleted"),
    (reorder_entries, "ledger-reordered"),
    (truncate_entries, "ledger-truncated"),
    (truncate_mid_line, "ledger-truncated"),
    (clear_immutable, "flag-cleared"),
    (make_asset_writable, "flag-cleared"),
    (clear_append_only, "flag-cleared"),
    (forge_tree_head, "forged-tree-head"),
    (forge_root, "forged-tree-head"),
]


def copy_vault(src, dst):
    unprotect(src)
    shutil.copytree(src, dst, symlinks=True)
    # restore the protection the copy lost (chattr flags are not copied)
    for d in (src, dst):
        for name in os.listdir(os.path.join(d, "assets")):
            subprocess.run(["chattr", "+i", os.path.join(d, "assets", name)], capture_output=True)
        subprocess.run(["chattr", "+a", ledger_path(d)], capture_output=True)


def test_rollback_against_trusted_head(tmp):
    vault = make_vault(tmp, n=2)
    old = os.path.join(tmp, "old")
    copy_vault(vault, old)
    put(vault, "later.txt", b"later\n")
    seal(vault)
    trusted = os.path.join(tmp, "trusted", "sth.json")
    os.makedirs(os.path.dirname(trusted))
    shutil.copy(os.path.join(vault, ".totebox-agent", "sth.json"), trusted)
    assert verify(vault, "--trusted-sth", trusted)[0] == 0
    rc, out = verify(old, "--trusted-sth", trusted)  # the vault restored from an old copy
    assert rc == 1 and "rollback" in kinds(out), out


def test_inconsistent_tree_head(tmp):
    vault = make_vault(tmp, n=2)
    fork = os.path.join(tmp, "fork")
    copy_vault(vault, fork)
    put(vault, "a.txt", b"history A\n")
    seal(vault)
    put(fork, "b.txt", b"history B\n")
    seal(fork)
    trusted = os.path.join(tmp, "trusted", "sth.json")
    os.makedirs(os.path.dirname(trusted))
    shutil.copy(os.path.join(vault, ".totebox-agent", "sth.json"), trusted)
    rc, out = verify(fork, "--trusted-sth", trusted)
    assert rc == 1 and "inconsistent-tree-head" in kinds(out), out


def test_key_changed(tmp):
    a = make_vault(tmp, n=1, name="a")
    b = make_vault(tmp, n=1, name="b")
    pk_a = open(os.path.join(a, ".totebox-agent", "vault.pub")).read().strip()
    assert verify(a, "--public-key", pk_a)[0] == 0
    rc, out = verify(b, "--public-key", pk_a)
    assert rc == 1 and "key-changed" in kinds(out), out


BAD_LEDGERS = [
    b"not json at all\n",
    b"\x00\xff\xfe binary \x80\n",
    b"{}\n",
    b"[1,2,3]\n",
    b'{"seq":"1"}\n',
    b"\n",
    b"{" * 5000 + b"\n",
    b"x" * 100000 + b"\n",
    b'{"seq":1,"time":"t","path":"assets/../../etc/passwd","size":1,"blake2b_256":"'
    + b"0" * 64 + b'","supersedes":null,"protect":"immutable","prev":"' + b"0" * 64 + b'"}\n',
    b'{"seq":1,"seq":2}\n',
]


@pytest.mark.parametrize("garbage", BAD_LEDGERS, ids=range(len(BAD_LEDGERS)))
def test_bad_ledger_input_is_a_named_mismatch(tmp, garbage):
    vault = make_vault(tmp, n=2)
    rewrite_ledger(vault, open(ledger_path(vault), "rb").read() + garbage)
    rc, out = verify(vault)
    assert rc == 1 and "ledger-edited" in kinds(out), out


def test_unreadable_layout_is_refused(tmp):
    bad = os.path.join(tmp, "notavault")
    os.makedirs(bad)
    r = run(AGENT, "verify", bad)
    assert r.returncode == 2 and "layout" in r.stderr
    open(os.path.join(tmp, "file"), "w").close()
    r = run(AGENT, "seal", os.path.join(tmp, "file"))
    assert r.returncode != 0 and "layout" in r.stderr


def test_read_only_fallback_without_the_capability(tmp):
    """As an unprivileged user chattr +i is refused: the asset is read-only and the ledger says so."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv missing")
    vault = os.path.join(tmp, "v")
    os.makedirs(vault)
    os.chmod(tmp, 0o755)
    os.chown(vault, 65534, 65534)
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    r = subprocess.run(as_nobody + [AGENT, "seal", vault], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    inbox = os.path.join(vault, "app-console-input")
    with open(os.path.join(inbox, "x.txt"), "wb") as f:
        f.write(b"data")
    os.chown(os.path.join(inbox, "x.txt"), 65534, 65534)
    r = subprocess.run(as_nobody + [AGENT, "seal", vault], capture_output=True, text=True)
    assert r.returncode == 0 and "sealed 1" in r.stdout, r.stdout + r.stderr
    entry = json.loads(ledger_lines(vault)[0])
    assert entry["protect"] == "read-only"
    assert os.stat(os.path.join(vault, entry["path"])).st_mode & 0o777 == 0o444
    assert verify(vault)[0] == 0


# ---- issue 14: the attacker on the vault disk -------------------------------------------------
# Each case below is an attack tried against a copy of a real vault, with the mismatch kind that
# must name it. `verify` runs with a timeout: a hang is a failure, not a wait.

STATE = ".totebox-agent"


def state(vault, name):
    return os.path.join(vault, STATE, name)


def sth_bytes(vault):
    with open(state(vault, "sth.json"), "rb") as f:
        return f.read()


def b2sum(data):
    return hashlib.blake2b(data, digest_size=32).hexdigest()


def forged_line(vault, seq, path, data, prev_line):
    entry = {"seq": seq, "time": "2026-12-01T12:00:00.000Z", "path": path, "size": len(data),
             "blake2b_256": b2sum(data), "supersedes": None, "protect": "immutable",
             "prev": hashlib.sha256(prev_line).hexdigest()}
    return json.dumps(entry, separators=(",", ":")).encode()


def append_forged_entry(vault):
    """A line with the right seq and prev, naming a planted file, appended (O_APPEND passes
    FS_APPEND_FL): indistinguishable from the agent's own, except that nothing signed it."""
    lines = ledger_lines(vault)
    seq = len(lines) + 1
    data = b"planted by the attacker\n"
    path = "assets/%08d-planted.txt" % seq
    with open(os.path.join(vault, path), "wb") as f:
        f.write(data)
    os.chmod(os.path.join(vault, path), 0o444)
    subprocess.run(["chattr", "+i", os.path.join(vault, path)], capture_output=True)
    with open(ledger_path(vault), "ab") as f:
        f.write(forged_line(vault, seq, path, data, lines[-1]) + b"\n")


def resign_head(vault):
    """The attacker holds the vault disk, so also the vault key: signs a head over the ledger."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    seed = open(state(vault, "vault.key"), "rb").read()
    key = Ed25519PrivateKey.from_private_bytes(seed)
    leaves = [hashlib.sha256(b"\x00" + line).digest() for line in ledger_lines(vault)]

    def mth(hs):
        if len(hs) == 1:
            return hs[0]
        k = 1
        while k * 2 < len(hs):
            k *= 2
        return hashlib.sha256(b"\x01" + mth(hs[:k]) + mth(hs[k:])).digest()

    root = mth(leaves) if leaves else hashlib.sha256(b"").digest()
    t = 1796000000000
    msg = b"totebox-sth-v1\n" + len(leaves).to_bytes(8, "big") + root + t.to_bytes(8, "big")
    sig = base64.b64encode(key.sign(msg)).decode()
    with open(state(vault, "sth.json"), "w") as f:
        json.dump({"size": len(leaves), "root": root.hex(), "time_ms": t, "signature": sig}, f)


def re_record_asset(vault):
    """A new entry naming an asset already recorded (same path, size and hash), chained
    correctly and covered by a head the attacker signed with the vault's own key."""
    lines = ledger_lines(vault)
    old = json.loads(lines[1])
    entry = dict(old, seq=len(lines) + 1, prev=hashlib.sha256(lines[-1]).hexdigest(),
                 supersedes=None)
    with open(ledger_path(vault), "ab") as f:
        f.write(json.dumps(entry, separators=(",", ":")).encode() + b"\n")
    resign_head(vault)


def re_record_renamed_asset(vault):
    """The same content under a path whose number is not the entry's own sequence number."""
    lines = ledger_lines(vault)
    data = b"renumbered\n"
    path = "assets/%08d-renumbered.txt" % 2
    full = os.path.join(vault, path.replace("00000002", "00000009"))
    with open(full, "wb") as f:
        f.write(data)
    os.chmod(full, 0o444)
    subprocess.run(["chattr", "+i", full], capture_output=True)
    line = forged_line(vault, len(lines) + 1, path.replace("00000002", "00000009"), data,
                       lines[-1])
    with open(ledger_path(vault), "ab") as f:
        f.write(line + b"\n")
    resign_head(vault)


def append_only_off_in_vault_json(vault):
    subprocess.run(["chattr", "-a", ledger_path(vault)], check=True)
    with open(state(vault, "vault.json"), "w") as f:
        f.write('{"v":1,"ledger_append_only":false}\n')


def set_mode(rel, mode):
    def tamper(vault):
        p = asset(vault, 1) if rel is None else os.path.join(vault, rel)
        subprocess.run(["chattr", "-i", p], capture_output=True)
        os.chmod(p, mode)
        if rel is None:
            subprocess.run(["chattr", "+i", p], capture_output=True)
    if rel == "ledger/ledger.jsonl":
        def tamper(vault):  # noqa: F811 (the ledger is append-only: chmod needs the flag off)
            p = ledger_path(vault)
            subprocess.run(["chattr", "-a", p], check=True)
            os.chmod(p, mode)
            subprocess.run(["chattr", "+a", p], check=True)
    tamper.__name__ = "mode_%04o_%s" % (mode, (rel or "asset").replace("/", "_"))
    return tamper


def change_owner(vault):
    p = asset(vault, 1)
    subprocess.run(["chattr", "-i", p], check=True)
    os.chown(p, 4242, 4242)
    subprocess.run(["chattr", "+i", p], check=True)


def change_ledger_owner(vault):
    subprocess.run(["chattr", "-a", ledger_path(vault)], check=True)
    os.chown(ledger_path(vault), 4242, 4242)
    subprocess.run(["chattr", "+a", ledger_path(vault)], check=True)


def hard_link_from_outside(vault):
    p = asset(vault, 1)
    subprocess.run(["chattr", "-i", p], check=True)
    os.link(p, os.path.join(os.path.dirname(vault), "outside-link"))
    subprocess.run(["chattr", "+i", p], check=True)


ISSUE14_TAMPERS = [
    (append_forged_entry, "unsigned"),
    (re_record_asset, "ledger-edited"),
    (re_record_renamed_asset, "ledger-edited"),
    (append_only_off_in_vault_json, "flag-cleared"),
    (set_mode(None, 0o4555), "mode-changed"),
    (set_mode(None, 0o0000), "mode-changed"),
    (change_owner, "owner-changed"),
    (change_ledger_owner, "owner-changed"),
    (set_mode("ledger/ledger.jsonl", 0o666), "mode-changed"),
    (set_mode("assets", 0o777), "mode-changed"),
    (hard_link_from_outside, "hard-linked"),
]


ALL_TAMPERS = TAMPERS + ISSUE14_TAMPERS


@pytest.mark.parametrize("tamper,kind", ALL_TAMPERS, ids=[t[0].__name__ for t in ALL_TAMPERS])
def test_tamper_is_named(tmp, tamper, kind):
    vault = make_vault(tmp)
    assert verify(vault)[0] == 0
    tamper(vault)
    rc, out = verify(vault)
    assert rc == 1, out
    assert kind in kinds(out), out["mismatches"]
    human = run(AGENT, "verify", vault)
    assert human.returncode == 1 and ("MISMATCH " + kind) in human.stdout


def start_daemon_and_stop(vault):
    """One start of the daemon: it opens the vault, runs its start-up verification and reports;
    then it is stopped."""
    p = subprocess.Popen([AGENT, "run", "--vault", vault, "--set", "channel=",
                          "--set", "scan_interval=100ms", "--set", "verify_threads=1"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        for line in p.stderr:
            lines.append(line)
            if "full verification (start)" in line:
                break
        time.sleep(0.3)  # a scan interval or two: give it every chance to store a head
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=10)
    return "".join(lines)


def seal_once(vault):
    return run(AGENT, "seal", vault)


EVIDENCE_TAMPERS = [
    (append_forged_entry, "unsigned"),
    (truncate_entries, "ledger-truncated"),
    (edit_entry, "ledger-edited"),
    (edit_last_entry, "ledger-edited"),
    (delete_entry, "ledger-deleted"),
]


@pytest.mark.parametrize("after", ["seal", "daemon"])
@pytest.mark.parametrize("tamper,kind", EVIDENCE_TAMPERS, ids=[t[0].__name__ for t in EVIDENCE_TAMPERS])
def test_evidence_survives_a_seal_pass(tmp, tamper, kind, after):
    """A cut, edited or extended ledger, then the agent runs (one seal pass with a record
    waiting, or one daemon start): the stored head is not replaced, nothing is sealed on top,
    and verify still names the tampering."""
    vault = make_vault(tmp)
    head = sth_bytes(vault)
    tamper(vault)
    before = open(ledger_path(vault), "rb").read()
    put(vault, "after-the-tampering.txt", b"a record that arrives later\n")
    if after == "seal":
        r = seal_once(vault)
        assert r.returncode != 0 and "sealed 0" in r.stdout, r.stdout + r.stderr
        assert "signed tree head" in r.stderr, r.stderr
    else:
        log = start_daemon_and_stop(vault)
        assert "signed tree head" in log, log
    assert sth_bytes(vault) == head
    assert open(ledger_path(vault), "rb").read() == before
    rc, out = verify(vault)
    assert rc == 1 and kind in kinds(out), out["mismatches"]


def test_resealed_forged_entry_is_still_unsigned(tmp):
    vault = make_vault(tmp)
    append_forged_entry(vault)
    seal_once(vault)
    seal_once(vault)
    rc, out = verify(vault)
    assert rc == 1 and "unsigned" in kinds(out), out
    named = [m for m in out["mismatches"] if m["kind"] == "unsigned"]
    assert named[0]["path"] == "assets/00000004-planted.txt", named


def make_special(path, what):
    unprotect(path)
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)
    if what == "fifo":
        os.mkfifo(path)
    else:
        os.mknod(path, 0o644 | stat.S_IFCHR, os.makedev(1, 3))  # like /dev/null


SPECIAL_FILES = [
    ("ledger/ledger.jsonl", "ledger-edited"),
    (STATE + "/sth.json", "forged-tree-head"),
    (STATE + "/vault.pub", "mode-changed"),
    (STATE + "/vault.json", "mode-changed"),
    (STATE + "/intent", "mode-changed"),
]


@pytest.mark.parametrize("what", ["fifo", "device"])
@pytest.mark.parametrize("rel,kind", SPECIAL_FILES, ids=[s[0].split("/")[-1] for s in SPECIAL_FILES])
def test_special_files_are_named_never_opened(tmp, rel, kind, what):
    vault = make_vault(tmp)
    make_special(os.path.join(vault, rel), what)
    r = subprocess.run([AGENT, "verify", "--json", vault], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 1, (r.stdout, r.stderr)
    out = json.loads(r.stdout)
    assert kind in kinds(out), out["mismatches"]
    assert any("not a regular file" in m["detail"] for m in out["mismatches"]), out
    # the agent itself neither hangs nor moves its head over it
    head = json.loads(sth_bytes(vault)) if rel != STATE + "/sth.json" else None
    subprocess.run([AGENT, "seal", vault], capture_output=True, text=True, timeout=10)
    if head is not None:
        now = json.loads(sth_bytes(vault))
        assert (now["size"], now["root"]) == (head["size"], head["root"])


@pytest.mark.parametrize("what", ["fifo", "device", "other-name", "directory"])
def test_trusted_sth_only_a_regular_file_named_sth_json(tmp, what):
    vault = make_vault(tmp)
    d = os.path.join(tmp, "trusted")
    os.makedirs(d)
    target = os.path.join(d, "sth.json")
    if what == "other-name":
        target = os.path.join(d, "head.json")
        shutil.copy(state(vault, "sth.json"), target)
    elif what == "directory":
        os.mkdir(target)
    else:
        make_special(target, what)
    r = subprocess.run([AGENT, "verify", "--trusted-sth", target, vault], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 2 and "--trusted-sth" in r.stderr, (r.stdout, r.stderr)


def hostile_ledger(tmp):
    vault = make_vault(tmp)
    unprotect(ledger_path(vault))
    with open(ledger_path(vault), "ab") as f:
        f.write(b"garbage line that is no ledger entry\n" * 1000000)
    with open(AGENT, "rb") as f:
        if b"__asan_init" in f.read():
            pytest.skip("by design: AddressSanitizer's quarantine and shadow say nothing about the agent's own use")
    return vault


def test_hostile_ledger_memory_is_bounded(tmp):
    """1 M garbage lines: verification memory must not grow with the ledger's length (it was
    about 400 bytes a line: 411 MiB). Peak RSS of the verifier, from GNU time."""
    vault = hostile_ledger(tmp)
    if not os.path.exists("/usr/bin/time"):
        pytest.skip("needs GNU time for the peak RSS")
    r = subprocess.run(["/usr/bin/time", "-v", AGENT, "verify", "--json", vault],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    peak_kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1))
    print("verify of 1 M garbage lines: peak RSS %.1f MiB" % (peak_kib / 1024))
    assert peak_kib < 40 * 1024, peak_kib  # was 411 MiB


def test_forged_intent_does_not_get_a_forged_line_signed(tmp):
    """The one line past the head that recovery signs is an interrupted seal's: the attacker
    writes that story too (an intent naming the forged line, the asset in place) and runs seal.
    The intent is signed by the vault key, so the forged one is set aside and nothing is signed."""
    vault = make_vault(tmp)
    head = sth_bytes(vault)
    append_forged_entry(vault)
    line = ledger_lines(vault)[-1]
    with open(state(vault, "intent"), "wb") as f:
        f.write(line + b"\n" + b"planted.txt".hex().encode() + b"\n")
    r = seal_once(vault)
    assert r.returncode != 0 and "signed tree head" in r.stderr, r.stdout + r.stderr
    assert sth_bytes(vault) == head
    rc, out = verify(vault)
    assert rc == 1 and "unsigned" in kinds(out), out


def test_hostile_ledger_daemon_memory_is_bounded(tmp):
    """The same ledger under the daemon: it keeps leaves only up to one past the signed head
    (nothing after that can be signed or proven), so its start costs no memory per garbage line
    either (it was 469 MiB). Peak RSS (VmHWM) once its start-up verification is done."""
    vault = hostile_ledger(tmp)
    p = subprocess.Popen([AGENT, "run", "--vault", vault, "--set", "channel="],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for line in p.stderr:
            if "full verification (start)" in line:
                break
        with open("/proc/%d/status" % p.pid) as f:
            hwm = int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1))
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=10)
    print("daemon start on 1 M garbage lines: peak RSS %.1f MiB" % (hwm / 1024))
    assert hwm < 40 * 1024, hwm


@pytest.mark.parametrize("name", [".sth.json.tmp", ".intent.tmp", ".vault.pub.tmp"])
def test_fifo_at_a_temporary_state_name_does_not_hang_the_agent(tmp, name):
    """The agent writes its state files under a temporary name and renames them: a FIFO left
    there must not block it."""
    vault = make_vault(tmp)
    os.mkfifo(state(vault, name))
    put(vault, "next.txt", b"next\n")
    r = subprocess.run([AGENT, "seal", vault], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and "sealed 1" in r.stdout, r.stdout + r.stderr
    assert verify(vault)[0] == 0
