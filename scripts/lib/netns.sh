# shellcheck shell=bash
# Network-namespace topology for running several Totebox nodes on one machine.
#
# One "lan" namespace holds a bridge; every node namespace gets a veth pair into it and an
# underlay address 10.99.0.N/24. There is no default route anywhere, so no packet can leave the
# machine. Everything is named "<prefix>-...", so teardown removes exactly what setup made.
#
#   netns_setup PREFIX NODE...    e.g. netns_setup tbx genesis relay cloud
#   netns_underlay_addr PREFIX NODE
#   netns_exec PREFIX NODE CMD... run CMD inside the node's namespace
#   netns_teardown PREFIX         remove the namespaces (their veths go with them)

NETNS_UNDERLAY=10.99.0

netns_name() { printf '%s-%s' "$1" "$2"; }

# The index of NODE in the list given to netns_setup (stored in the lan namespace's name file).
netns_index() {
  local prefix=$1 node=$2 i=1 n nodes
  read -ra nodes < "/run/totebox-netns/$prefix.nodes"
  for n in "${nodes[@]}"; do
    [ "$n" = "$node" ] && { echo "$i"; return 0; }
    i=$((i + 1))
  done
  echo "netns: unknown node '$node' in topology '$prefix'" >&2
  return 1
}

netns_underlay_addr() {
  echo "$NETNS_UNDERLAY.$(netns_index "$1" "$2")"
}

netns_exec() {
  local prefix=$1 node=$2
  shift 2
  ip netns exec "$(netns_name "$prefix" "$node")" "$@"
}

netns_setup() {
  local prefix=$1 i=1 node ns lan
  shift
  lan=$(netns_name "$prefix" lan)
  mkdir -p /run/totebox-netns
  echo "$*" > "/run/totebox-netns/$prefix.nodes"
  ip netns add "$lan"
  ip -n "$lan" link set lo up
  ip -n "$lan" link add br0 type bridge
  ip -n "$lan" link set br0 up
  for node in "$@"; do
    ns=$(netns_name "$prefix" "$node")
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    # veth names are at most 15 bytes: "u<i>" inside the node, "p<i>" on the bridge
    ip -n "$ns" link add "u$i" type veth peer name "p$i" netns "$lan"
    ip -n "$ns" addr add "$NETNS_UNDERLAY.$i/24" dev "u$i"
    ip -n "$ns" link set "u$i" up
    ip -n "$lan" link set "p$i" master br0 up
    i=$((i + 1))
  done
}

netns_teardown() {
  local prefix=$1 node nodes
  if [ -f "/run/totebox-netns/$prefix.nodes" ]; then
    read -ra nodes < "/run/totebox-netns/$prefix.nodes"
    for node in "${nodes[@]}" lan; do
      ip netns del "$(netns_name "$prefix" "$node")" 2>/dev/null || true
    done
    rm -f "/run/totebox-netns/$prefix.nodes"
  fi
}
