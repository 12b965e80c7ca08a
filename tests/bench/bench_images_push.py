#!/usr/bin/python3
"""Benchmark: pushing a base image (default 512 MiB) through fleetd to one vmhost on loopback,
beside the peer: `curl -T` uploading the same file straight to that vmhost's node API upload
route (what an operator did by hand before), with `sha256sum` for the digest curl's PUT needs.
Real fleetd, real vmhost (test:///default), real fleetctl; a fresh image name each run. Also
prints both daemons' peak resident memory: streaming keeps it far below the image's size.

fleetd's path is end to end, as the operator waits for it: fleetctl hashes the file, uploads it
to fleetd (which stages it and hashes it from disk), fleetd streams it to the node (which hashes
it from disk again). The peer's path: sha256sum, then curl's upload and the node's check.

usage: tests/bench/bench_images_push.py [--mib N] [--runs N]   (env TOTEBOX_BUILD_DIR)
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import test_fleetd_harness as H  # noqa: E402
from test_fleetd_images import Vmhost  # noqa: E402


def timed(args, env=None):
    t0 = time.monotonic()
    r = subprocess.run(args, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit("%s failed: %s%s" % (args[0], r.stdout, r.stderr))
    return time.monotonic() - t0, r.stdout


def hwm(pid):
    """Peak resident set (KiB) of a process: what bounded streaming keeps small."""
    with open("/proc/%d/status" % pid) as fh:
        return int([ln for ln in fh if ln.startswith("VmHWM:")][0].split()[1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=512)
    ap.add_argument("--runs", type=int, default=2)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-images-")
    path = os.path.join(tmp, "image.raw")
    with open(path, "wb") as out:  # incompressible, like a qcow2's data
        for _ in range(a.mib):
            out.write(os.urandom(1 << 20))
    size = a.mib << 20
    f = H.Fleetd(nodes=1, settings={"heartbeat_interval": "1s", "log_level": "warn"})
    alive = lambda: f.node("n1")["state"] == "alive" and f.node("n1")["inventory"] == "ok"
    v = Vmhost("n1", H.node_address(1), H.node_address(1), f.node_api_port, f)
    env = dict(os.environ, FLEETCTL_URL="http://127.0.0.1:%d" % f.api_port,
               FLEETCTL_TOKEN=f.token)
    rows = {"fleetctl image push (through fleetd)": [], "sha256sum": [],
            "curl -T to the node API": [], "sha256sum + curl": []}
    try:
        f.start()
        for run in range(a.runs):
            # a loaded machine (the hashing of 512 MiB) may have made n1 late: pushes go to
            # alive nodes only
            f.wait(alive, timeout=60, what="n1 alive")
            t, _ = timed([H.FLEETCTL, "image", "push", path, "--name", "bench-f%d" % run,
                          "--node", "n1"], env)
            rows["fleetctl image push (through fleetd)"].append(t)
            t_sum, out = timed(["sha256sum", path])
            sha = out.split()[0]
            url = "http://%s:%d/v1/images/bench-c%d/upload?sha256=%s&size=%d&offset=0" % (
                H.node_address(1), f.node_api_port, run, sha, size)
            t_curl, out = timed(["curl", "-sS", "--fail-with-body", "-T", path,
                                 "-H", "Content-Type: application/octet-stream", url])
            assert '"source_sha256"' in out, out
            rows["sha256sum"].append(t_sum)
            rows["curl -T to the node API"].append(t_curl)
            rows["sha256sum + curl"].append(t_sum + t_curl)
            for name in ("bench-f%d" % run, "bench-c%d" % run):
                assert v.images()[name]["source_sha256"] == sha
                v.call("DELETE", "/v1/images/" + name)
        peak = {name: hwm(proc.pid) for name, proc in (("fleetd", f.proc), ("vmhost", v.proc))}
    finally:
        f.close()
        v.close()
        shutil.rmtree(tmp)
    print("image push, %d MiB, %d runs, loopback, one vmhost (median, best; MiB/s of the median)"
          % (a.mib, a.runs))
    for name, ts in rows.items():
        med = statistics.median(ts)
        print("  %-40s %7.2f s  %7.2f s  %7.0f MiB/s" % (name, med, min(ts), a.mib / med))
    print("peak resident memory (VmHWM) after every run: fleetd %d KiB, vmhost %d KiB"
          % (peak["fleetd"], peak["vmhost"]))


if __name__ == "__main__":
    main()
