#!/usr/bin/python3
"""Footprint: vmhost's resident memory and CPU use, idle, with three running Totebox VMs (the
test image under TCG), for the embedded driver (qemu:///embed: libvirt's QEMU driver runs inside
vmhost) and for a libvirt daemon (qemu:///session: vmhost is a client, as with qemu:///system).
RSS counts shared library pages; Private (Private_Clean + Private_Dirty) is what vmhost alone
adds, where Private_Clean holds the clean pages of libraries no other process maps at that moment
(so it depends on what else runs: libvirt's libraries are private to the helper unless another
libvirt client runs) and Private_Dirty the memory the process itself wrote (heap, stacks, data);
PSS splits the shared pages between the processes that map them. Both processes are
printed: vmhost and its privileged helper (vmhost-helper: libvirt, and with embed the QEMU driver,
and WireGuard), whether each maps libvirt, and who each runs as (uid, effective capabilities,
seccomp mode: the network-facing vmhost drops to its own user once the helper runs). Targets (issue 18): the unprivileged vmhost < 6 MiB RSS without libvirt, < 8 MiB
private memory for both together.

usage: tests/bench/bench_vmhost_footprint.py [--idle SECONDS]
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)
from bench_vmhost_create import session_env, virsh  # noqa: E402
from harness import proc_status  # noqa: E402
from test_vmhost_harness import (FleetTrust, Vmhost, build_image, destroy_all, make_root, remove_root,  # noqa: E402
                                 sha256)


def mem(pid):
    out = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Rss", "Pss", "Private_Clean", "Private_Dirty"):
                out[k] = int(v.split()[0])
    return out


def helpers(pid):
    """vmhost's privileged helper process(es): its children named vmhost-helper."""
    out = []
    for p in os.listdir("/proc"):
        try:
            with open("/proc/%s/stat" % p) as f:
                head, tail = f.read().rsplit(")", 1)
            if int(tail.split()[1]) == pid and head.endswith("(vmhost-helper"):
                out.append(int(p))
        except (OSError, ValueError):
            continue
    return out


def maps_libvirt(pid):
    with open("/proc/%d/maps" % pid) as f:
        return "libvirt" in f.read()


def who(pid):
    st = proc_status(pid)
    return "uid %s caps %x seccomp %s" % (st["Uid"].split()[0], int(st["CapEff"], 16),
                                          st["Seccomp"])


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(label, uri, idle, extra_env=None):
    root = make_root("tbx-foot-")
    env = session_env(root) if extra_env else None
    vh = None
    try:
        manifest = build_image(root + "/image")
        opts = {"libvirt_uri": uri, "env": env} if uri else {}
        trust = FleetTrust()
        vh = Vmhost(root, log_level="info", heartbeat_interval="10s",
                    mesh_state_dir=trust.mesh_dir(root, "node1"), **opts)
        vh.call("POST", "/v1/images", {"name": "t", "path": manifest, "sha256": sha256(manifest)})
        for i in range(3):
            s, body, _ = vh.call("POST", "/v1/vms", trust.create({
                "request_id": "f%d" % i, "vm_id": "foot-%d" % i, "entity": "e",
                "memory_mib": 128, "vcpus": 1, "image": "t", "vault_disk_mib": 32}, "node1"))
            assert s == 201, body
        time.sleep(20)  # guests boot, agents report, vmhost settles
        pid = vh.proc.pid
        procs = (("vmhost", pid),) + tuple(("helper", h) for h in helpers(pid))
        c0, t0 = {p: cpu_seconds(p) for _, p in procs}, time.monotonic()
        time.sleep(idle)
        total, dirty, own_rss, own_libvirt = 0, 0, 0, True
        for name, p in procs:
            cpu = (cpu_seconds(p) - c0[p]) / (time.monotonic() - t0) * 100
            m = mem(p)
            private = (m["Private_Clean"] + m["Private_Dirty"]) / 1024
            total += private
            dirty += m["Private_Dirty"] / 1024
            if p == pid:
                own_rss, own_libvirt = m["Rss"] / 1024, maps_libvirt(p)
            print("%-30s %-7s RSS %5.1f MiB  PSS %5.1f MiB  private %4.1f MiB (dirty %4.1f)  "
                  "libvirt %-3s  idle CPU %.3f %% of one core  (%s)"
                  % (label, name, m["Rss"] / 1024, m["Pss"] / 1024, private,
                     m["Private_Dirty"] / 1024, "yes" if maps_libvirt(p) else "no", cpu, who(p)))
        print("%-30s private memory of both: %.1f MiB, dirty %.1f MiB (target < 8 MiB: %s for "
              "private, %s for dirty); vmhost RSS %.1f MiB (target < 6 MiB without libvirt: %s)"
              % (label, total, dirty, "met" if total < 8 else "NOT met",
                 "met" if dirty < 8 else "NOT met", own_rss,
                 "met" if own_rss < 6 and not own_libvirt else "NOT met"))
    finally:
        if vh:
            vh.stop()
        if env:
            for name in virsh(env, "list", "--name").stdout.split():
                virsh(env, "destroy", name)
            for pool in ("totebox-vms", "totebox-images"):
                virsh(env, "pool-destroy", pool)
                virsh(env, "pool-undefine", pool)
        else:
            destroy_all(root)
        remove_root(root)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--idle", type=int, default=60)
    a = ap.parse_args()
    print("vmhost idle with 3 running VMs (test image, TCG), over %d s:" % a.idle)
    measure("qemu:///embed (in-process)", None, a.idle)
    measure("qemu:///session (daemon)", "qemu:///session", a.idle, extra_env=True)


if __name__ == "__main__":
    main()
