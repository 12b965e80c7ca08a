#!/usr/bin/python3
"""Benchmark: the Diode's deposit throughput against a raw copy into the same kind of port.

Deposit: vmhost (qemu:///embed, TCG) runs a Totebox booted from the offline test image with the
real totebox-agent; a record of SIZE bytes (default 256 MiB, random) is posted to vmhost's node
API (POST /v1/vms/ID/records) and timed to its receipt: vmhost spools it, streams it over the
VM's virtio-serial channel in data frames, the agent writes it to its ext4/ext2 vault disk,
checks its BLAKE2b-256 and seals it (fdatasync included). The spool phase (loopback HTTP into a
file) is timed apart from the log and subtracted for the channel figure.

Raw: the same test image with tests/bench/diode_discard.c in place of the agent, booted by QEMU
directly with the same virtio-serial port (org.totebox.agent.0 on a unix socket, TCG, 1 vCPU,
256 MiB), and `cat FILE > port`: the file's bytes written into the socket, the guest reading and
discarding them and answering once it has all of them.

Prints both rates and the ratio (target: deposit >= 50 % of raw).

usage: tests/bench/bench_diode_deposit.py [--mib N]   (env TOTEBOX_BUILD_DIR as for the tests)
"""
import argparse
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from test_vmhost_harness import (BUILD, FleetTrust, Vmhost, build_image, destroy_all,  # noqa: E402
                                 make_root, remove_root, sha256, wait_for)


def raw_copy(root, path, size, store):
    img = os.path.join(root, "discard-image")
    prog = os.path.join(root, "discard")
    if not os.path.exists(img):
        subprocess.run(["cc", "-static", "-O2", "-o", prog,
                        os.path.join(HERE, "diode_discard.c")], check=True)
        build_image(img, agent=prog)
    manifest = json.load(open(os.path.join(img, "manifest.json")))
    sock = os.path.join(root, "raw.sock")
    vault = os.path.join(root, "raw-vault.img")
    if os.path.exists(sock):
        os.unlink(sock)
    with open(vault, "wb") as f:  # blank: the test guest's /init formats it
        f.truncate(size * 2 + (128 << 20))
    qemu = subprocess.Popen(
        ["qemu-system-x86_64", "-machine", "pc", "-accel", "tcg", "-m", "256", "-smp", "1",
         "-nodefaults", "-display", "none", "-no-user-config",
         "-kernel", os.path.join(img, manifest["files"]["kernel"]["path"]),
         "-initrd", os.path.join(img, manifest["files"]["initrd"]["path"]),
         "-append", manifest["cmdline"], "-serial", "file:" + os.path.join(root, "raw-console.log"),
         "-drive", "file=%s,if=none,id=vault,format=raw" % vault,
         "-device", "virtio-blk-pci,drive=vault,serial=vault",
         "-device", "virtio-serial-pci",
         "-chardev", "socket,id=agent,path=%s,server=on,wait=off" % sock,
         "-device", "virtserialport,chardev=agent,name=org.totebox.agent.0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: os.path.exists(sock), 30, "QEMU's socket")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sock)
        log = os.path.join(root, "raw-console.log")
        wait_for(lambda: "starting agent" in open(log, errors="replace").read(), 300,
                 "the discarding reader to start")
        time.sleep(1)
        t0 = time.monotonic()
        s.sendall(b"%d%s\n" % (size, b" w" if store else b""))
        with open(path, "rb") as f:  # cat FILE > port
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                s.sendall(chunk)
        answer = b""
        s.settimeout(600)
        while b"\n" not in answer:
            answer += s.recv(64)
        dt = time.monotonic() - t0
        assert answer.startswith(b"DONE %d" % size), answer
        s.close()
        return dt
    finally:
        qemu.kill()
        qemu.wait()


def deposit(root, path, size):
    manifest = build_image(os.path.join(root, "image"),
                           agent=os.path.join(BUILD, "agent", "totebox-agent"))
    trust = FleetTrust(nodes=("node1",))
    vh = Vmhost(root, mesh_state_dir=trust.mesh_dir(root, "node1"),
                max_record_bytes=str(size + (1 << 20)), log_level="info")
    try:
        st, body, _ = vh.call("POST", "/v1/images", {"name": "test", "path": manifest,
                                                     "sha256": sha256(manifest)})
        assert st == 201, body
        create = {"request_id": "bench-1", "vm_id": "bench", "entity": "bench",
                  "memory_mib": 256, "vcpus": 1, "image": "test",
                  "vault_disk_mib": size // (1 << 20) * 2 + 128, "fleet_id": "fleet-t"}
        st, body, _ = vh.call("POST", "/v1/vms", trust.create(create, "node1"))
        assert st == 201, body
        wait_for(lambda: vh.call("GET", "/v1/vms/bench")[1].get("vault_public_key"), 300,
                 "the agent's first report")
        conn = http.client.HTTPConnection(vh.address, vh.port, timeout=3600)
        t0 = time.monotonic()
        with open(path, "rb") as f:
            conn.request("POST", "/v1/vms/bench/records?name=big.bin", body=f,
                         headers={"Content-Type": "application/octet-stream",
                                  "Content-Length": str(size)})
            r = conn.getresponse()
            receipt = json.loads(r.read())
        dt = time.monotonic() - t0
        assert r.status == 201, receipt
        assert receipt["size"] == size
        phases = [l for l in vh.read_log().splitlines() if "bytes sent from offset" in l]
        return dt, phases[-1].split(": deposit ")[-1] if phases else "?"
    finally:
        vh.stop()
        destroy_all(root)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=256)
    args = ap.parse_args()
    size = args.mib << 20
    root = make_root("tbx-bench-diode-")
    try:
        path = os.path.join(root, "record.bin")
        with open(path, "wb") as f:
            for _ in range(args.mib):
                f.write(os.urandom(1 << 20))
        raw = raw_copy(root, path, size, store=False)
        raw_store = raw_copy(root, path, size, store=True)
        dep, phases = deposit(root, path, size)
        mib = size / (1 << 20)
        print("record: %d MiB, random; TCG guest, 1 vCPU, 256 MiB" % args.mib)
        print("  raw copy into the port (cat FILE > port, guest discards):  %6.1f s  %6.1f MiB/s"
              % (raw, mib / raw))
        print("  raw copy into the port, guest stores it (cat port > FILE; fdatasync): "
              "%6.1f s  %6.1f MiB/s" % (raw_store, mib / raw_store))
        print("  Diode deposit to the receipt (spool, frames, write, hash, seal): %6.1f s  %6.1f MiB/s"
              % (dep, mib / dep))
        print("    vmhost: %s" % phases)
        print("  deposit / raw: %.0f %%; deposit / raw stored: %.0f %%"
              % (100 * raw / dep, 100 * raw_store / dep))
    finally:
        remove_root(root)


if __name__ == "__main__":
    main()
