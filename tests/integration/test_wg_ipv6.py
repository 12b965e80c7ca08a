"""WireGuard endpoints over IPv6, as a literal and as a host name, through the project's own
WireGuard code (common/wg*.c via wg_peer_up; here the wireguard-go backend, the one this machine
has; test_wg_kernel.py holds IPv6 endpoints to the kernel module).

Two network namespaces joined by a veth that carries IPv6 only (no IPv4 address, no default
route): node A names B's endpoint as "[fd77:6::2]:51821", node B names A's as
"genesis.totebox.test:51820", which B's own /etc/hosts (ip netns' /etc/netns/NS/hosts) maps to
fd77:6::1. Both ping across the mesh addresses; each side's peer reads back the IPv6 endpoint.
"""
import os
import shutil
import signal
import uuid

import pytest

from harness import BUILD, run, sh, wait_for

# ctest-labels: mesh

TOOL = os.path.join(BUILD, "tests", "integration", "wg_peer_up")


@pytest.fixture
def pair(tmp_path):
    for tool in ("ip", "wg", "wireguard-go", "ping"):
        if not shutil.which(tool):
            pytest.skip("needs %s" % tool)
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    tag = uuid.uuid4().hex[:6]
    ns = {"a": "tbw6-%s-a" % tag, "b": "tbw6-%s-b" % tag}
    ifname = {"a": "tbw6%sa" % tag, "b": "tbw6%sb" % tag}
    hosts_dir = "/etc/netns/%s" % ns["b"]
    try:
        for n in ns.values():
            sh("ip", "netns", "add", n)
            sh("ip", "-n", n, "link", "set", "lo", "up")
        sh("ip", "link", "add", "v6a" + tag, "netns", ns["a"], "type", "veth", "peer", "name",
           "v6b" + tag, "netns", ns["b"])
        for side, addr in (("a", "fd77:6::1/64"), ("b", "fd77:6::2/64")):
            sh("ip", "-n", ns[side], "addr", "add", addr, "dev", "v6%s%s" % (side, tag), "nodad")
            sh("ip", "-n", ns[side], "link", "set", "v6%s%s" % (side, tag), "up")
        os.makedirs(hosts_dir)
        with open(os.path.join(hosts_dir, "hosts"), "w") as f:
            f.write("127.0.0.1 localhost\nfd77:6::1 genesis.totebox.test\n")
        keys = {}
        for side in ns:
            priv = sh("wg", "genkey").stdout.strip()
            path = tmp_path / ("%s.key" % side)
            path.write_text(priv + "\n")
            os.chmod(path, 0o600)
            keys[side] = (str(path), sh("wg", "pubkey", input=priv + "\n").stdout.strip())
        yield ns, ifname, keys, tag
    finally:
        for side, n in ns.items():
            run(["ip", "-n", n, "link", "del", ifname[side]])
            for pid in run(["ip", "netns", "pids", n]).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGTERM)  # wireguard-go, started in our namespace
                except ProcessLookupError:
                    pass
            run(["ip", "netns", "del", n])
            sock = "/var/run/wireguard/%s.sock" % ifname[side]
            if os.path.exists(sock):
                os.unlink(sock)
        shutil.rmtree(hosts_dir, ignore_errors=True)


def up(ns, ifname, key, port, addr, peer_key, endpoint, allowed):
    r = run(["ip", "netns", "exec", ns, TOOL, ifname, key, str(port), addr, peer_key, endpoint,
             allowed], timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return dict(line.split(" ", 1) for line in r.stdout.splitlines())


def test_ipv6_literal_and_hostname_endpoints_carry_the_mesh(pair):
    ns, ifname, keys, tag = pair
    a = up(ns["a"], ifname["a"], keys["a"][0], 51820, "10.99.0.1/24", keys["b"][1],
           "[fd77:6::2]:51821", "10.99.0.2/32")
    b = up(ns["b"], ifname["b"], keys["b"][0], 51821, "10.99.0.2/24", keys["a"][1],
           "genesis.totebox.test:51820", "10.99.0.1/32")
    assert a["endpoint"] == "[fd77:6::2]:51821", a
    assert b["endpoint"] == "[fd77:6::1]:51820", "the host name resolved to A's IPv6 address"
    assert a["backend"] == b["backend"]

    # The underlay has no IPv4 at all: mesh traffic can only have gone over IPv6.
    assert "inet " not in sh("ip", "-n", ns["a"], "-4", "addr", "show", "dev", "v6a" + tag).stdout
    wait_for(lambda: run(["ip", "netns", "exec", ns["b"], "ping", "-c", "1", "-W", "1",
                          "10.99.0.1"]).returncode == 0, 30, "B to ping A over the mesh")
    r = run(["ip", "netns", "exec", ns["a"], "ping", "-c", "3", "-W", "2", "10.99.0.2"])
    assert r.returncode == 0, r.stdout
    seen = sh("ip", "netns", "exec", ns["a"], "wg", "show", ifname["a"], "endpoints").stdout
    assert "[fd77:6::2]:51821" in seen, seen
    handshake = sh("ip", "netns", "exec", ns["b"], "wg", "show", ifname["b"],
                   "latest-handshakes").stdout.split()
    assert len(handshake) == 2 and int(handshake[1]) > 0, handshake


def test_bad_endpoints_are_refused_before_anything_changes(pair):
    ns, ifname, keys, tag = pair
    for bad in ("fd77:6::2:51821", "[fd77:6::2]", "[fd77:6::zz]:1", "no-such-host.invalid:1"):
        r = run(["ip", "netns", "exec", ns["a"], TOOL, ifname["a"], keys["a"][0], "51820",
                 "10.99.0.1/24", keys["b"][1], bad, "10.99.0.2/32"], timeout=60)
        assert r.returncode == 1 and "endpoint '%s'" % bad in r.stderr, (bad, r.stderr)
        assert run(["ip", "-n", ns["a"], "link", "show", ifname["a"]]).returncode != 0, \
            "no interface was made for a bad endpoint"
