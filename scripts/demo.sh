#!/usr/bin/env bash
# The README's main command: installs what is needed, builds, and runs a fleet on this machine.
# Today: a one-node fleet (fleetd + vmhost on loopback) that shows the node with its live CPU
# and RAM figures, refreshed every heartbeat. Ctrl-C stops everything it started.
#   --duration SECONDS   stop by itself after SECONDS (for scripts); default: run until Ctrl-C
#   --interval DURATION  heartbeat interval (default 2s so the demo moves; production is 10s)
set -euo pipefail
cd "$(dirname "$0")/.."

duration=0
interval=2s
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --interval) interval=$2; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "demo: unknown option '$1'" >&2; exit 2 ;;
  esac
done

bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null

run=$(mktemp -d /tmp/totebox-demo.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$run"
  echo "demo: stopped; removed $run"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

api_port=19170
hb_port=19171
cat > "$run/roster.json" <<JSON
{"v":1,"version":1,"fleet_id":"demo","controller":"genesis","nodes":[
 {"id":"genesis","name":"laptop-a","role":"cloud","mesh_address":"127.0.0.1"}]}
JSON
build/fleetd/fleetd --set roster_file="$run/roster.json" --set state_dir="$run" \
  --set api_port=$api_port --set heartbeat_port=$hb_port --set heartbeat_listen=127.0.0.1 \
  --set heartbeat_interval="$interval" 2>"$run/fleetd.log" &
pids+=($!)
build/vmhost/vmhost --set node_id=genesis --set fleetd_port=$hb_port \
  --set heartbeat_source=127.0.0.1 --set heartbeat_interval="$interval" \
  --set state_dir="$run" --set libvirt_uri="qemu:///embed?root=$run/libvirt" 2>"$run/vmhost.log" &
pids+=($!)

echo "demo: fleetd REST API on http://127.0.0.1:$api_port/v1/nodes (logs in $run)"
start=$(date +%s)
while :; do
  sleep 2
  if ! body=$(curl -sf "http://127.0.0.1:$api_port/v1/nodes"); then
    echo "demo: fleetd is not answering; see $run/fleetd.log" >&2
    exit 1
  fi
  jq -r '.nodes[] | "\(.id)\t\(.state)\tcpu \(.cpu_percent // "-" | tostring | .[0:5])%\tRAM \(.mem_available_mib // "-")/\(.mem_total_mib // "-") MiB available\theartbeat \(.heartbeat_age_ms // "-") ms ago"' <<<"$body"
  if [ "$duration" -gt 0 ] && [ $(( $(date +%s) - start )) -ge "$duration" ]; then
    break
  fi
done
