#!/usr/bin/python3
"""images/lib/write-manifest.py: writes a Totebox image manifest (schemas/image-manifest.schema.json)
from key=value arguments given by build-totebox-image. It owns the manifest's shape: types are
enforced here (integers, booleans, nulls), so the shell never writes JSON by hand. Stdlib only."""
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


def build(a):
    stages = []
    for item in filter(None, a.get("stages", "").split(";")):
        name, _, secs = item.rpartition("=")
        stages.append({"name": name, "seconds": float(secs)})
    return {
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
