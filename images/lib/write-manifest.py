#!/usr/bin/python3
"""images/lib/write-manifest.py: writes a Totebox image manifest (schemas/image-manifest.schema.json)
from key=value arguments given by build-totebox-image. It owns the manifest's shape: types are
enforced here (integers, booleans, nulls), so the shell never writes JSON by hand. Stdlib only."""
import hashlib
import json
import os
import sys

INTS = {"image_bytes", "image_virtual_bytes", "agent_bytes", "build_seconds_x10"}
BOOLS = {"signature_verified"}


def parse(argv):
    out = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            sys.exit(f"write-manifest: argument '{arg}' is not key=value")
        if key in out:
            sys.exit(f"write-manifest: key '{key}' given twice")
        out[key] = value
    return out


def opt(value):
    return value if value else None


def packages(a):
    """The image's Debian packages as seal.sh listed them: {name: version}, the count the guest
    gave, and whether the list is complete (as many lines as it said). None without a list."""
    path = a.get("packages_file")
    if not path:
        return None
    listed = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            name, _, version = line.strip().partition(" ")
            if name and version:
                listed[name] = version
    said = int(a["packages_said"]) if a.get("packages_said") else None
    text = "".join(f"{k} {v}\n" for k, v in sorted(listed.items()))
    return {"count": len(listed), "said": said, "complete": said == len(listed),
            "sha256": hashlib.sha256(text.encode()).hexdigest(), "versions": listed}


def build(a):
    stages = []
    for item in filter(None, a.get("stages", "").split(";")):
        name, _, secs = item.rpartition("=")
        stages.append({"name": name, "seconds": float(secs)})
    out = {
        "manifest_version": 1,
        "name": a["name"],
        "image": {
            "file": a["image_file"],
            "format": "qcow2",
            "sha256": a["image_sha256"],
            "bytes": int(a["image_bytes"]),
            "virtual_bytes": int(a["image_virtual_bytes"]),
        },
        "source": {
            "kind": a["source_kind"],
            "release": opt(a.get("source_release")),
            "url": opt(a.get("source_url")),
            "file": a["source_file"],
            "sha256": a["source_sha256"],
            "signature": {
                "verified": a.get("signature_verified") == "true",
                "fingerprint": opt(a.get("signature_fingerprint")),
            },
        },
        "agent": {
            "version": a["agent_version"],
            "sha256": a["agent_sha256"],
            "bytes": int(a["agent_bytes"]),
            "path": "/usr/local/bin/totebox-agent",
            "args": a.get("agent_args", ""),
        },
        "build": {
            "tool": a["tool"],
            "started_at": a["started_at"],
            "finished_at": a["finished_at"],
            "seconds": int(a["build_seconds_x10"]) / 10,
            "accel": a["accel"],
            "stages": stages,
        },
    }
    pk = packages(a)
    if pk is not None:
        out["packages"] = pk
    return out


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: write-manifest.py OUTPUT key=value...")
    manifest = build(parse(sys.argv[2:]))
    tmp = sys.argv[1] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, sys.argv[1])


if __name__ == "__main__":
    main()
