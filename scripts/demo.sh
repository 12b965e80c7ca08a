#!/usr/bin/env bash
# The README's main command: installs what is needed, builds, and brings up on this machine the
# minimum production fleet: laptop-a (genesis) and laptop-b (relay) and a cloud node running
# fleetd, each in its own network namespace, joined by the real provision scripts and the
# pairing ceremony over wireguard-go, each with its own vmhost on qemu:///embed. It then plans
# and confirms a Totebox VM through the REST API, boots it under TCG, waits for its agent's
# first report and prints where to look. Ctrl-C tears everything down.
#   --duration SECONDS   stop by itself after SECONDS (for scripts); default: run until Ctrl-C
#   --heartbeat DURATION heartbeat interval (default 2s so the demo moves; production is 10s)
#   --entity NAME        the entity of the demo's Totebox VM (default acme-ltd)
#   --keep               keep the work directory (logs, disks) for inspection
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in -h|--help) sed -n '2,13p' "$0"; exit 0 ;; esac
# shellcheck source=scripts/lib/as-root.sh
. scripts/lib/as-root.sh
as_root "$PWD/scripts/demo.sh" "$@"

bash scripts/install-deps.sh
cmake -S . -B build >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
export TOTEBOX_BUILD_DIR=$PWD/build TOTEBOX_SOURCE_DIR=$PWD
exec /usr/bin/python3 scripts/fleet.py "$@"
