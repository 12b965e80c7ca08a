"""totebox-agent, privilege: once the vault is open the daemon keeps only CAP_LINUX_IMMUTABLE,
CAP_FOWNER, CAP_DAC_OVERRIDE and CAP_LEASE (of those it was started with) in its permitted and
effective sets, nothing inheritable or ambient, a bounding set cut to the same four, and
no_new_privs; and it still seals records immutable (FS_IMMUTABLE_FL), including a producer's
0600 file owned by another user."""
import json
import os
import shutil
import signal
import subprocess
import tempfile

import pytest

from harness import proc_status as status, wait_for

BUILD = os.environ.get("TOTEBOX_BUILD_DIR", "build")
AGENT = os.path.join(BUILD, "agent", "totebox-agent")
KEEP = (1 << 9) | (1 << 3) | (1 << 1) | (1 << 28) | (1 << 0)  # immutable, fowner, dac_override, lease, chown


@pytest.fixture
def tmp():
    d = tempfile.mkdtemp(prefix="totebox-agent-priv-")
    yield d
    subprocess.run(["chattr", "-R", "-i", "-a", d], capture_output=True)
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hold capabilities")
def test_daemon_keeps_only_what_it_needs(tmp):
    vault = os.path.join(tmp, "v")
    mine = status(os.getpid())
    start_prm = int(mine["CapPrm"], 16)
    p = subprocess.Popen([AGENT, "run", "--vault", vault, "--set", "channel=",
                          "--set", "scan_interval=100ms"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        ledger = os.path.join(vault, "ledger", "ledger.jsonl")
        assert wait_for(lambda: os.path.exists(ledger))
        assert wait_for(lambda: int(status(p.pid)["CapPrm"], 16) == start_prm & KEEP)
        st = status(p.pid)
        assert int(st["CapEff"], 16) == start_prm & KEEP, st
        assert int(st["CapInh"], 16) == 0 and int(st["CapAmb"], 16) == 0, st
        assert int(st["CapBnd"], 16) & ~KEEP == 0, st
        assert st["NoNewPrivs"] == "1", st
        # a producer running as another user, writing a private file
        inbox = os.path.join(vault, "app-console-input")
        part = os.path.join(inbox, ".x.part")
        with open(part, "wb") as f:
            f.write(b"from another user\n")
        os.chown(part, 4242, 4242)
        os.chmod(part, 0o600)
        os.rename(part, os.path.join(inbox, "x.txt"))
        assert wait_for(lambda: os.path.getsize(ledger) > 0)
        entry = json.loads(open(ledger).readline())
        assert entry["protect"] == "immutable", entry
        attrs = subprocess.run(["lsattr", "-d", os.path.join(vault, entry["path"])],
                               capture_output=True, text=True).stdout
        assert "i" in attrs.split()[0], attrs
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=10)
    r = subprocess.run([AGENT, "verify", vault], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
