#!/usr/bin/env bash
# Provisions an on-premises node: packages, WireGuard, the pairing ceremony (--genesis creates the
# mesh and opens a ceremony; --join CODE joins it), configs, and vmhost (and fleetd while this
# node is the fleet controller). Idempotent; --refresh re-applies the stored state.
set -euo pipefail
PROG=provision-vm-infrastructure-onprem
# shellcheck source=provision/provision-common.sh
. "$(cd "$(dirname "$0")" && pwd)/provision-common.sh"

usage() {
        cat <<USAGE
usage: $PROG --genesis --name NAME [--endpoint HOST:PORT] [options]
       $PROG --join CODE --genesis-endpoint HOST[:9173] --name NAME [--role node|relay] [options]
       $PROG --refresh [options]
Re-run --genesis on an existing genesis node to open a new ceremony (one code per join).
USAGE
        usage_common
}

parse_common "$@"
case "${ROLE:-node}" in
node | relay) ;;
*) die "on-premises roles are node and relay, not '$ROLE' (use the cloud script)" ;;
esac
if [ "$MODE" = refresh ] && [ -f "$STATE_DIR/mesh/node.conf" ]; then
        ROLE=$(sed -n 's/^role = "\(.*\)"/\1/p' "$STATE_DIR/mesh/node.conf")
fi
provision_main node
