#!/usr/bin/env bash
# Provisions the cloud node: joins the mesh with role "cloud" (the roster then names it as the
# node that runs the fleet controller), writes the configs and starts fleetd and vmhost.
set -euo pipefail
PROG=provision-vm-infrastructure-cloud
# shellcheck source=provision/provision-common.sh
. "$(cd "$(dirname "$0")" && pwd)/provision-common.sh"

usage() {
        cat <<USAGE
usage: $PROG --join CODE --genesis-endpoint HOST[:9173] --name NAME --endpoint HOST:PORT [options]
       $PROG --join CODE --pair-listen ADDR --name NAME --endpoint HOST:PORT [options]
         (the genesis is behind NAT: it runs --genesis --pair-connect THIS-HOST and dials in)
       $PROG --refresh [options]
USAGE
        usage_common
}

parse_common "$@"
[ "$MODE" != genesis ] || die "the cloud node joins an existing mesh: use --join CODE"
[ -z "$ROLE" ] || [ "$ROLE" = cloud ] || die "the cloud script provisions role 'cloud' only"
ROLE=cloud
provision_main cloud
