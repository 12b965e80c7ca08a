#!/usr/bin/python3
"""Benchmark: from the create call to the domain running (guest boot excluded), vmhost's
POST /v1/vms against `virt-install --import --noautoconsole` creating an equivalent domain
(same base image as a qcow2 overlay, a vault disk, the seed, direct kernel boot, the agent's
virtio-serial channel, virtio-rng, no network) on the same libvirt, side by side in one run.

Both use one qemu:///session daemon (run as 'nobody' when started as root), so both go through
the same libvirtd and its storage driver. vmhost's figure includes building the NoCloud seed and
the disks; virt-install gets a prebuilt seed. Each domain is destroyed after it is timed so that
booting guests do not load the machine. Prints both medians and the ratio.

usage: tests/bench/bench_vmhost_create.py [--runs N]   (env TOTEBOX_BUILD_DIR as for the tests)
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from test_vmhost_harness import (FleetTrust, Vmhost, build_image, give, make_root, remove_root,  # noqa: E402
                                 run_as, sha256)


def session_env(root):
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": root + "/home",
           "XDG_RUNTIME_DIR": root + "/run"}
    for d in ("home", "run"):
        os.makedirs(root + "/" + d, mode=0o700, exist_ok=True)
        give(root + "/" + d)
    return env


def as_user(args, env, **kw):
    ids = run_as()
    return subprocess.run(args, env=env, user=ids[0] if ids else None,
                          group=ids[1] if ids else None, **kw)


def virsh(env, *args):
    return as_user(["virsh", "-q", "-c", "qemu:///session"] + list(args), env,
                   capture_output=True, text=True)


def bench_vmhost(root, env, manifest, runs):
    trust = FleetTrust()
    vh = Vmhost(root, libvirt_uri="qemu:///session", log_level="info", env=env,
                mesh_state_dir=trust.mesh_dir(root, "node1"))
    times, floor = [], []
    try:
        status, body, _ = vh.call("POST", "/v1/images", {"name": "bench", "path": manifest,
                                                          "sha256": sha256(manifest)})
        assert status == 201, body
        for i in range(runs + 1):
            req = {"request_id": "bench-%d" % i, "vm_id": "bench-vmhost-%d" % i,
                   "entity": "bench", "memory_mib": 256, "vcpus": 1, "image": "bench",
                   "vault_disk_mib": 64}
            t0 = time.monotonic()
            status, body, _ = vh.call("POST", "/v1/vms", trust.create(req, "node1"))
            dt = time.monotonic() - t0
            assert status == 201 and body["state"] == "running", body
            r = virsh(env, "destroy", req["vm_id"])
            if r.returncode != 0:
                raise RuntimeError("virsh destroy failed: " + r.stderr)
            if i > 0:  # the first includes QEMU's one-time capability probe for both tools
                times.append(dt)
                # The floor: libvirt starting the same, already defined domain.
                t0 = time.monotonic()
                r = virsh(env, "start", req["vm_id"])
                floor.append(time.monotonic() - t0)
                if r.returncode != 0:
                    raise RuntimeError("virsh start failed: " + r.stderr)
                virsh(env, "destroy", req["vm_id"])
    finally:
        vh.stop()
    return times, floor, root + "/state/images"


def bench_virt_install(root, env, images, runs):
    base = images + "/bench.disk.qcow2"
    seed = root + "/vi-seed.iso"
    work = root + "/vi"
    os.makedirs(work, exist_ok=True)
    give(work)
    with open(root + "/ud", "w") as f:
        f.write("#cloud-config\n")
    with open(root + "/md", "w") as f:
        f.write("instance-id: bench\n")
    subprocess.run(["cloud-localds", seed, root + "/ud", root + "/md"], check=True)
    give(seed)
    times = []
    for i in range(runs + 1):
        name = "bench-vi-%d" % i
        args = ["virt-install", "--connect", "qemu:///session", "--name", name,
                "--memory", "256", "--vcpus", "1", "--virt-type", "qemu",
                "--osinfo", "detect=on,require=off", "--import", "--noautoconsole",
                "--network", "none", "--graphics", "none",
                "--boot", "kernel=%s/bench.vmlinuz,initrd=%s/bench.initrd,"
                          "kernel_args=console=ttyS0 quiet" % (images, images),
                "--disk", "path=%s/%s-os.qcow2,size=1,format=qcow2,backing_store=%s,"
                          "backing_format=qcow2,bus=virtio" % (work, name, base),
                "--disk", "path=%s/%s-vault.qcow2,size=0.0625,format=qcow2,bus=virtio"
                          % (work, name),
                "--disk", "path=%s,device=disk,bus=virtio,readonly=on" % seed,
                "--channel", "unix,target.type=virtio,target.name=org.totebox.agent.0",
                "--rng", "/dev/urandom", "--memballoon", "none",
                "--serial", "file,path=%s/%s.log" % (work, name)]
        t0 = time.monotonic()
        r = as_user(args, env, capture_output=True, text=True)
        dt = time.monotonic() - t0
        if r.returncode != 0:
            raise RuntimeError("virt-install failed: " + r.stderr)
        virsh(env, "destroy", name)
        if i > 0:
            times.append(dt)
    return times


def cleanup(env):
    for name in virsh(env, "list", "--all", "--name").stdout.split():
        virsh(env, "destroy", name)
        if name.startswith("bench-vi-"):
            virsh(env, "undefine", name)  # only virt-install's own bench domains
    for pool in ("totebox-vms", "totebox-images"):
        virsh(env, "pool-destroy", pool)
        virsh(env, "pool-undefine", pool)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    root = make_root("tbx-bench-")
    env = session_env(root)
    try:
        manifest = build_image(root + "/image")
        ours, floor, images = bench_vmhost(root, env, manifest, a.runs)
        theirs = bench_virt_install(root, env, images, a.runs)
    finally:
        cleanup(env)
        remove_root(root)
    m1, m2 = statistics.median(ours), statistics.median(theirs)
    print("create -> domain running, median of %d (first run of each excluded), qemu:///session, TCG"
          % a.runs)
    print("  vmhost POST /v1/vms             %7.1f ms  (runs: %s)"
          % (m1 * 1000, " ".join("%.0f" % (t * 1000) for t in ours)))
    print("  virt-install --import           %7.1f ms  (runs: %s)"
          % (m2 * 1000, " ".join("%.0f" % (t * 1000) for t in theirs)))
    print("  floor: virsh start (defined)    %7.1f ms  (QEMU start under libvirt; both pay it)"
          % (statistics.median(floor) * 1000))
    print("  ratio vmhost / virt-install     %7.2f  (target <= 0.25)" % (m1 / m2))


if __name__ == "__main__":
    main()
