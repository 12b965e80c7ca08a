"""The pairing server split by privilege, played as an attacker who owns the process that reads
network frames: that process must hold no genesis key (not in its memory, not as an open file,
not openable), no netlink socket and no capabilities, must run as another user (when the test
runs as root) under no_new_privs and a seccomp filter, and must die with the process that holds
the key. The ceremony itself still works (test_pairing_adversarial.py covers it in depth)."""
import base64
import os
import re
import signal
import subprocess
import time

import pytest

from test_agent_privilege import status  # noqa: E402
from test_pairing_adversarial import (confirm, finish, free_port, genesis, join, spawn,  # noqa: F401
                                      work)


def serve_split(procs, state, port):
    """Starts the server; returns (process, code, network pid, parent pid)."""
    p = spawn(procs, "serve", "--state-dir", state, "--listen", "127.0.0.1", "--pair-port",
              str(port), "--io-timeout", "5", "--sas-timeout", "20")
    seen = []
    net = code = None
    while not (net and code):
        line = p.stdout.readline()
        assert line, "".join(seen)
        seen.append(line)
        m = re.search(r"network frames are read by process (\d+) \(uid (\d+).*process (\d+)", line)
        if m:
            net = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
        m = re.search(r"pairing code: (\S+)", line)
        if m:
            code = m.group(1)
    while "listening" not in seen[-1]:
        seen.append(p.stdout.readline())
    assert net[2] == p.pid, seen
    return p, code, net[0], net[1]


def netlink_inodes():
    with open("/proc/net/netlink") as f:
        next(f)
        return {line.split()[-1] for line in f if line.strip()}


def memory_holds(pid, needles):
    """Which of needles (bytes) appear anywhere in pid's readable memory."""
    found = set()
    with open("/proc/%d/maps" % pid) as maps, open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for line in maps:
            parts = line.split()
            if "r" not in parts[1] or (len(parts) > 5 and parts[5] in ("[vvar]", "[vsyscall]")):
                continue
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            try:
                mem.seek(lo)
                chunk = mem.read(hi - lo)
            except OSError:
                continue
            found |= {n for n in needles if n in chunk}
    return found


def assert_holds_nothing(pid, uid, state, code):
    st = status(pid)
    for cap in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert int(st[cap], 16) == 0, (cap, st[cap])
    assert st["NoNewPrivs"] == "1" and st["Seccomp"] == "2", st
    if os.geteuid() == 0:
        assert uid != 0 and st["Uid"].split() == [str(uid)] * 4, st["Uid"]
        assert int(st["CapBnd"], 16) == 0, st["CapBnd"]
    links = []
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            links.append(os.readlink("/proc/%d/fd/%s" % (pid, fd)))
        except OSError:
            pass
    assert not [link for link in links if link.startswith(state) or "genesis" in link], links
    nl = netlink_inodes()
    assert not [link for link in links if re.sub(r"\D", "", link) in nl and "socket" in link], links
    sk = open(os.path.join(state, "genesis.key"), "rb").read().strip()
    raw = base64.b64decode(sk)
    wg = open(os.path.join(state, "wg.key"), "rb").read().strip()
    needles = {raw[:32], raw, sk, wg, base64.b64decode(wg), code.encode()}
    held = memory_holds(pid, needles)
    assert code.encode() in held  # the scan sees what the process does hold
    assert not held - {code.encode()}, "the network process holds key material"


def test_network_process_holds_no_key(work):
    d, procs = work
    state = genesis(d)
    g, code, pid, uid = serve_split(procs, state, free_port())
    assert pid != g.pid
    assert_holds_nothing(pid, uid, state, code)
    if os.geteuid() == 0:  # the key file, as the network process's user
        r = subprocess.run(["setpriv", "--reuid", str(uid), "--regid", str(uid),
                            "--clear-groups", "cat", os.path.join(state, "genesis.key")],
                           capture_output=True)
        assert r.returncode != 0 and not r.stdout


def test_no_key_during_the_ceremony_and_join_works(work):
    d, procs = work
    state = genesis(d)
    port = free_port()
    g, code, pid, uid = serve_split(procs, state, port)
    j = join(procs, d, code, port)
    sas_g, sas_j = confirm(g, j)  # the handshake is done, the SAS phase runs
    assert sas_g == sas_j
    rc, out = finish(j)
    assert rc == 0 and "joined: fleet" in out, out
    rc, out = finish(g)
    assert rc == 0 and "joined: node 'n1'" in out, out
    assert not os.path.exists("/proc/%d" % pid)  # gone with the ceremony


def test_network_process_dies_with_the_key_holder(work):
    d, procs = work
    state = genesis(d)
    g, code, pid, uid = serve_split(procs, state, free_port())
    os.kill(g.pid, signal.SIGKILL)
    g.wait()
    deadline = time.time() + 5
    while os.path.exists("/proc/%d" % pid) and time.time() < deadline:
        time.sleep(0.05)
    assert not os.path.exists("/proc/%d" % pid), status(pid)
