# shellcheck shell=bash
# Shared by provision-vm-infrastructure-onprem.sh and provision-vm-infrastructure-cloud.sh:
# option parsing, packages, WireGuard, the pairing ceremony (totebox-pair), configs for vmhost
# and fleetd, and starting the daemons (systemd units with hardening, or directly with
# --no-systemd). Every step is idempotent: a re-run reuses the state and rewrites the configs.

PROG=${PROG:-provision}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

MODE=""            # genesis | join | refresh
CODE=""
GENESIS_ENDPOINT=""
NAME=$(hostname -s 2>/dev/null | tr 'A-Z_.' 'a-z--' || echo node)
ROLE=""
ENDPOINT=""
STATE_DIR=/var/lib/totebox
CONF_DIR=""
IFNAME=wg0
WG_PORT=51820
SUBNET=10.77.0.0/24
PAIR_LISTEN=0.0.0.0
PAIR_LISTEN_SET=0
PAIR_CONNECT=""
PAIR_PORT=9173
CODE_TTL=600
SAS_TIMEOUT=300
NO_SYSTEMD=0
NO_INSTALL=0
NO_PAIR=0
BUILD_DIR=""
HEARTBEAT_INTERVAL=10s
LIBVIRT_URI=qemu:///system
FLEETD_API_PORT=9170
FLEETD_HB_PORT=9171
LOG_LEVEL=info
UNITS_DIR=/etc/systemd/system
UNITS_ONLY=0

die() {
        echo "$PROG: error: $*" >&2
        exit 1
}

say() {
        echo "$PROG: $*"
}

usage_common() {
        cat <<USAGE
Options:
  --name NAME               this node's name in the roster (default: short hostname)
  --endpoint HOST:PORT      this node's WireGuard endpoint as the others reach it (empty: behind NAT)
  --genesis-endpoint HOST[:PORT]  the genesis pairing server (with --join; port 9173 by default)
  --state-dir DIR           all state of this node (default /var/lib/totebox); configs in DIR/etc
                            when given, else /etc/totebox
  --ifname NAME             WireGuard interface (default wg0)
  --wg-port PORT            WireGuard UDP port (default 51820)
  --subnet CIDR             genesis: mesh address plan (default 10.77.0.0/24)
  --pair-listen ADDR        genesis: pairing server address (default 0.0.0.0); with --join:
                            wait here for a genesis that dials in (it sits behind NAT)
  --pair-connect HOST[:PORT]  genesis: dial the joiner waiting with --join CODE --pair-listen
                            (a genesis behind NAT with no inbound port; the joiner must be
                            reachable, e.g. the cloud node)
  --pair-port PORT          pairing server port (default 9173)
  --code-ttl SECONDS        genesis: code lifetime (default 600)
  --no-pair                 genesis: create the mesh but open no ceremony now
  --refresh                 rewrite configs from the stored roster and restart the daemons
  --no-systemd              start the daemons directly (where systemd is not PID 1)
  --no-install              do not install Debian packages
  --build-dir DIR           take binaries from a build tree instead of PATH
  --heartbeat-interval DUR  vmhost heartbeat interval (default 10s)
  --libvirt-uri URI         vmhost libvirt URI (default qemu:///system)
  --units-dir DIR           where systemd units go (default /etc/systemd/system)
  --units-only              with --refresh: write the configs and units, start nothing (review)
The SAS: both nodes print it; type the one the OTHER node shows when asked (stdin).
USAGE
}

parse_common() {
        while [ $# -gt 0 ]; do
                case "$1" in
                --genesis) MODE=genesis ;;
                --join) MODE="join"; CODE=${2:?--join needs a code}; shift ;;
                --refresh) MODE=refresh ;;
                --genesis-endpoint) GENESIS_ENDPOINT=${2:?}; shift ;;
                --name) NAME=${2:?}; shift ;;
                --role) ROLE=${2:?}; shift ;;
                --endpoint) ENDPOINT=${2:?}; shift ;;
                --state-dir) STATE_DIR=${2:?}; CONF_DIR=${CONF_DIR:-}; shift ;;
                --ifname) IFNAME=${2:?}; shift ;;
                --wg-port) WG_PORT=${2:?}; shift ;;
                --subnet) SUBNET=${2:?}; shift ;;
                --pair-listen) PAIR_LISTEN=${2:?}; PAIR_LISTEN_SET=1; shift ;;
                --pair-connect) PAIR_CONNECT=${2:?}; shift ;;
                --pair-port) PAIR_PORT=${2:?}; shift ;;
                --code-ttl) CODE_TTL=${2:?}; shift ;;
                --sas-timeout) SAS_TIMEOUT=${2:?}; shift ;;
                --no-pair) NO_PAIR=1 ;;
                --no-systemd) NO_SYSTEMD=1 ;;
                --no-install) NO_INSTALL=1 ;;
                --build-dir) BUILD_DIR=${2:?}; shift ;;
                --heartbeat-interval) HEARTBEAT_INTERVAL=${2:?}; shift ;;
                --libvirt-uri) LIBVIRT_URI=${2:?}; shift ;;
                --fleetd-api-port) FLEETD_API_PORT=${2:?}; shift ;;
                --log-level) LOG_LEVEL=${2:?}; shift ;;
                --units-dir) UNITS_DIR=${2:?}; shift ;;
                --units-only) UNITS_ONLY=1 ;;
                -h | --help) usage; exit 0 ;;
                *) usage >&2; die "unknown option '$1'" ;;
                esac
                shift
        done
        if [ "$STATE_DIR" = /var/lib/totebox ]; then
                CONF_DIR=/etc/totebox
        else
                CONF_DIR=$STATE_DIR/etc
        fi
        MESH_DIR=$STATE_DIR/mesh
        [ -n "$MODE" ] || { usage >&2; die "one of --genesis, --join CODE or --refresh is required"; }
        [[ "$NAME" =~ ^[a-z0-9][a-z0-9-]{0,62}$ ]] || die "node name '$NAME' must match [a-z0-9][a-z0-9-]*"
        if [ "$MODE" = join ] && [ -z "$GENESIS_ENDPOINT" ] && [ "$PAIR_LISTEN_SET" -eq 0 ]; then
                die "--join needs --genesis-endpoint HOST[:PORT] (the genesis node's address) or --pair-listen ADDR (the genesis dials in)"
        fi
        [ "$(id -u)" -eq 0 ] || die "run as root (WireGuard and the daemons' units need it)"
}

# find_bin NAME SUBDIR: a binary from --build-dir, else from PATH.
find_bin() {
        local name=$1 sub=$2
        if [ -n "$BUILD_DIR" ] && [ -x "$BUILD_DIR/$sub/$name" ]; then
                echo "$BUILD_DIR/$sub/$name"
        elif command -v "$name" >/dev/null 2>&1; then
                command -v "$name"
        fi
}

install_packages() {
        [ "$NO_INSTALL" -eq 1 ] && return 0
        local deps="$HERE/../scripts/install-deps.sh"
        if [ -x "$deps" ] || [ -f "$deps" ]; then
                bash "$deps" || die "installing Debian packages failed (see above)"
        else
                DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
                        wireguard-tools wireguard-go libsodium23 libjansson4 libmnl0 \
                        libmicrohttpd12 libcurl4 || die "installing Debian packages failed"
        fi
}

# The kernel module where present, else wireguard-go (totebox-pair picks the same way).
check_wireguard() {
        local probe="tbprobe$$"
        if ip link add "$probe" type wireguard 2>/dev/null; then
                ip link del "$probe"
                say "WireGuard: kernel module"
        elif command -v "${TOTEBOX_WIREGUARD_GO:-wireguard-go}" >/dev/null 2>&1; then
                say "WireGuard: no kernel module; using userspace wireguard-go"
        else
                die "no WireGuard: neither the kernel module nor wireguard-go is available"
        fi
}

pair() {
        "$PAIR_BIN" "$@" --state-dir "$MESH_DIR"
}

run_ceremony() {
        local role=$1
        mkdir -p "$STATE_DIR"
        chmod 0711 "$STATE_DIR"
        case "$MODE" in
        genesis)
                pair genesis --name "$NAME" --role "$role" --endpoint "$ENDPOINT" \
                        --ifname "$IFNAME" --wg-port "$WG_PORT" --subnet "$SUBNET" ||
                        die "creating the mesh failed"
                say "this node holds the genesis key: back it up now, sealed with a passphrase, and keep the file and the passphrase apart: $PAIR_BIN backup-genesis-key FILE --passphrase-file F --state-dir $MESH_DIR (docs/operations.md, \"Backing up the genesis key\")"
                ;;
        join)
                if [ -f "$MESH_DIR/roster.json" ]; then
                        say "already joined ($(pair show --field fleet_id)); setting up the interface"
                        pair up || die "setting up the mesh interface failed"
                        return 0
                fi
                local how=(--genesis "$GENESIS_ENDPOINT")
                [ "$PAIR_LISTEN_SET" -eq 0 ] || how=(--listen "$PAIR_LISTEN" --pair-port "$PAIR_PORT")
                pair join "$CODE" "${how[@]}" --name "$NAME" --role "$role" \
                        --endpoint "$ENDPOINT" --ifname "$IFNAME" --wg-port "$WG_PORT" \
                        --sas-timeout "$SAS_TIMEOUT" || die "joining the mesh failed (see above)"
                ;;
        refresh)
                [ -f "$MESH_DIR/node.conf" ] || die "no mesh state in '$MESH_DIR'"
                pair up || die "setting up the mesh interface failed"
                ;;
        esac
}

# The hub (docs/mesh.md: the relay with an endpoint, else the controller with one) carries the
# traffic between nodes that have no endpoint (laptops behind NAT): it forwards from the mesh
# interface to itself. On a real host (the default paths) that survives a reboot: a sysctl.d
# file, and a drop-in that lets the mesh's packets through a FORWARD chain whose policy is DROP
# each time totebox-mesh.service starts (after the host's own firewall has loaded).
HUB_SYSCTL=/etc/sysctl.d/60-totebox-hub.conf
HUB_DROPIN_DIR=/etc/systemd/system/totebox-mesh.service.d
HUB_MARK="# Written by the Totebox provision scripts: this node is the mesh's hub"

hub_forward_rule() {
        command -v iptables >/dev/null 2>&1 || return 0
        iptables -C FORWARD -i "$IFNAME" -o "$IFNAME" -j ACCEPT 2>/dev/null ||
                iptables -I FORWARD -i "$IFNAME" -o "$IFNAME" -j ACCEPT ||
                die "cannot let the mesh's traffic through the FORWARD chain"
}

hub_forwarding() {
        local hub
        hub=$(pair show --field hub)
        if [ "$hub" != "$(pair show --field node_id)" ] && [ "$ROLE" != relay ]; then
                if [ "$CONF_DIR" = /etc/totebox ] && [ -f "$HUB_SYSCTL" ] &&
                        head -n 1 "$HUB_SYSCTL" | grep -qF "$HUB_MARK"; then
                        rm -f "$HUB_SYSCTL" "$HUB_DROPIN_DIR/hub.conf"
                        say "no longer the hub: removed $HUB_SYSCTL and the forwarding drop-in"
                fi
                return 0
        fi
        sysctl -q -w net.ipv4.ip_forward=1 || die "cannot enable IPv4 forwarding on the hub"
        hub_forward_rule
        [ "$CONF_DIR" = /etc/totebox ] || return 0
        printf '%s\nnet.ipv4.ip_forward = 1\n' "$HUB_MARK" | write_file "$HUB_SYSCTL" 0644
        if [ "$NO_SYSTEMD" -eq 0 ] && [ -d /run/systemd/system ]; then
                mkdir -p "$HUB_DROPIN_DIR"
                write_file "$HUB_DROPIN_DIR/hub.conf" 0644 <<UNIT
$HUB_MARK (forwarding between nodes behind NAT); re-run with --refresh.
[Unit]
After=netfilter-persistent.service nftables.service firewalld.service
[Service]
ExecStartPost=+/bin/sh -c 'command -v iptables >/dev/null || exit 0; iptables -C FORWARD -i $IFNAME -o $IFNAME -j ACCEPT 2>/dev/null || iptables -I FORWARD -i $IFNAME -o $IFNAME -j ACCEPT'
UNIT
                systemctl daemon-reload
        fi
        say "this node is the mesh's hub: forwarding on ($HUB_SYSCTL), FORWARD accepts $IFNAME to $IFNAME"
}

write_file() {
        local path=$1 mode=$2 tmp
        tmp=$(mktemp "$path.XXXXXX")
        cat >"$tmp"
        chmod "$mode" "$tmp"
        mv -f "$tmp" "$path"
}

# The F9 panel's static files: the source tree's panel/ beside a build tree, else the copy
# installed with this script (PREFIX/sbin beside PREFIX/share/totebox/panel: /usr for the
# packages, /usr/local for a default cmake --install).
panel_dir() {
        local here
        here=$(cd "$HERE/.." && pwd)
        if [ -n "$BUILD_DIR" ] && [ -f "$here/panel/index.html" ]; then
                echo "$here/panel"
        elif [ -f "$here/share/totebox/panel/index.html" ]; then
                echo "$here/share/totebox/panel"
        else
                echo "/usr/share/totebox/panel"
        fi
}

write_configs() {
        local self ctl
        self=$(pair show --field mesh_address)
        ctl=$(pair show --field controller_address)
        IS_CONTROLLER=0
        [ "$self" = "$ctl" ] && IS_CONTROLLER=1
        mkdir -p "$CONF_DIR" "$STATE_DIR/vmhost" "$STATE_DIR/fleetd" "$STATE_DIR/log" "$STATE_DIR/run"
        write_file "$CONF_DIR/vmhost.conf" 0644 <<CONF
# vmhost: written by $PROG from the mesh state in $MESH_DIR; re-run with --refresh.
node_id = "$(pair show --field node_id)"
fleetd_address = "$ctl"
fleetd_port = $FLEETD_HB_PORT
heartbeat_source = "$self"
heartbeat_interval = $HEARTBEAT_INTERVAL
libvirt_uri = "$LIBVIRT_URI"
virt_type = auto
state_dir = "$STATE_DIR/vmhost"
safety_margin_mib = 512
node_api_listen = "$self"
mesh_state_dir = "$MESH_DIR"
wg_interface = "$IFNAME"
log_level = $LOG_LEVEL
CONF
        if [ "$IS_CONTROLLER" -eq 1 ]; then
                write_file "$CONF_DIR/fleetd.conf" 0644 <<CONF
# fleetd: written by $PROG; this node is the fleet controller in the roster.
api_listen = "$self,127.0.0.1"
api_port = $FLEETD_API_PORT
heartbeat_listen = "$self"
heartbeat_port = $FLEETD_HB_PORT
roster_file = "$MESH_DIR/roster.json"
state_dir = "$STATE_DIR/fleetd"
heartbeat_interval = $HEARTBEAT_INTERVAL
panel_dir = "$(panel_dir)"
log_level = $LOG_LEVEL
CONF
        fi
        say "configs written to $CONF_DIR (mesh address $self, controller $ctl)"
}

# --- daemons ---

# The units are files shipped in the tree (systemd/) and by the packages (/lib/systemd/system).
# Installed units are used as they are when this node has the default paths and PATH's binaries;
# otherwise (a build tree, --state-dir, --units-dir, --units-only) a copy with this node's paths
# is written to UNITS_DIR, marked so a later package install can take over.
UNIT_MARK="# Written by the Totebox provision scripts"

# shipped_unit NAME: the installed unit file NAME (a package's or cmake --install's), if any.
shipped_unit() {
        local d
        for d in /lib/systemd/system /usr/lib/systemd/system /usr/local/lib/systemd/system \
                "$HERE/../lib/systemd/system"; do
                [ -f "$d/$1" ] && { echo "$d/$1"; return 0; }
        done
        return 1
}

# unit_source NAME: the unit text to adapt: the source tree's, else the installed one.
unit_source() {
        if [ -f "$HERE/../systemd/$1" ]; then
                echo "$HERE/../systemd/$1"
        else
                shipped_unit "$1" || die "no unit file '$1' (neither the source tree's systemd/ nor installed)"
        fi
}

# write_unit NAME BINARY: NAME with this node's binary, configs and state written to UNITS_DIR.
# Without the totebox-fleetd system user (the package makes it) the unit allocates it dynamically.
write_unit() {
        local name=$1 bin=$2 src dynamic=""
        src=$(unit_source "$name")
        getent passwd totebox-fleetd >/dev/null 2>&1 || dynamic="/^User=/i DynamicUser=yes"
        {
                echo "$UNIT_MARK ($PROG) from $src with this node's paths; re-run with --refresh."
                sed -e "s#^ExecStart=[^ ]*/$(basename "$bin") #ExecStart=$bin #" \
                        -e "s#/etc/totebox#$CONF_DIR#g" -e "s#/var/lib/totebox#$STATE_DIR#g" \
                        -e "$dynamic" "$src"
        } | write_file "$UNITS_DIR/$name" 0644
}

# The installed units fit: default paths, binaries from PATH, units not redirected.
use_shipped_units() {
        local vmhost=$1 fleetd=$2
        [ "$STATE_DIR" = /var/lib/totebox ] && [ -z "$BUILD_DIR" ] && [ "$UNITS_ONLY" -eq 0 ] &&
                [ "$UNITS_DIR" = /etc/systemd/system ] || return 1
        shipped_unit totebox-mesh.service >/dev/null || return 1
        [ -z "$vmhost" ] || shipped_unit totebox-vmhost.service >/dev/null || return 1
        [ -z "$fleetd" ] || shipped_unit totebox-fleetd.service >/dev/null || return 1
}

# Copies this script wrote earlier would shadow the installed units: remove them.
remove_written_units() {
        local u
        for u in totebox-mesh.service totebox-vmhost.service totebox-fleetd.service; do
                if [ -f "$UNITS_DIR/$u" ] && head -n 1 "$UNITS_DIR/$u" | grep -qF "$UNIT_MARK"; then
                        rm -f "$UNITS_DIR/$u"
                        say "removed '$UNITS_DIR/$u' (the installed unit takes over)"
                fi
        done
}

install_units() {
        local vmhost=$1 fleetd=$2
        if use_shipped_units "$vmhost" "$fleetd"; then
                remove_written_units
                # A cmake --install ships the sysusers.d entry but does not apply it; a package does.
                if [ -n "$fleetd" ] && ! getent passwd totebox-fleetd >/dev/null 2>&1; then
                        systemd-sysusers || die "cannot create the system user 'totebox-fleetd'"
                fi
                say "using the installed units ($(dirname "$(shipped_unit totebox-mesh.service)"))"
        else
                write_unit totebox-mesh.service "$PAIR_BIN"
                [ -z "$vmhost" ] || write_unit totebox-vmhost.service "$vmhost"
                [ -z "$fleetd" ] || write_unit totebox-fleetd.service "$fleetd"
        fi
        [ "$UNITS_ONLY" -eq 0 ] || return 0
        systemctl daemon-reload
        systemctl enable totebox-mesh.service && systemctl restart totebox-mesh.service
        [ -n "$vmhost" ] && systemctl enable totebox-vmhost.service && systemctl restart totebox-vmhost.service
        if [ -n "$fleetd" ]; then
                systemctl enable totebox-fleetd.service && systemctl restart totebox-fleetd.service
        elif [ -f "$UNITS_DIR/totebox-fleetd.service" ] || shipped_unit totebox-fleetd.service >/dev/null; then
                systemctl disable --now totebox-fleetd.service || true
        fi
}

# Our own daemons only: the PID file must name a live process running that binary.
stop_direct() {
        local name=$1 pidfile="$STATE_DIR/run/$1.pid" pid
        [ -f "$pidfile" ] || return 0
        pid=$(cat "$pidfile")
        if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] &&
                tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$name"; then
                kill "$pid" 2>/dev/null || true
                for _ in 1 2 3 4 5 6 7 8 9 10; do
                        kill -0 "$pid" 2>/dev/null || break
                        sleep 0.2
                done
        fi
        rm -f "$pidfile"
}

start_direct() {
        local name=$1 bin=$2
        stop_direct "$name"
        # Its own session: the daemon outlives this script and whatever signals the script's group.
        setsid nohup "$bin" --config "$CONF_DIR/$name.conf" >>"$STATE_DIR/log/$name.log" 2>&1 </dev/null &
        echo $! >"$STATE_DIR/run/$name.pid"
        say "started $name (pid $!, log $STATE_DIR/log/$name.log)"
}

start_daemons() {
        local vmhost fleetd=""
        vmhost=$(find_bin vmhost vmhost)
        [ "$IS_CONTROLLER" -eq 1 ] && fleetd=$(find_bin fleetd fleetd)
        [ -n "$vmhost" ] || say "warning: no vmhost binary found; not started"
        if [ "$IS_CONTROLLER" -eq 1 ] && [ -z "$fleetd" ]; then
                say "warning: no fleetd binary found; not started"
        fi
        if [ "$UNITS_ONLY" -eq 1 ]; then
                mkdir -p "$UNITS_DIR"
                install_units "$vmhost" "$fleetd"
                say "units written to $UNITS_DIR; nothing started (--units-only)"
                return 0
        fi
        if [ "$NO_SYSTEMD" -eq 0 ] && [ -d /run/systemd/system ]; then
                install_units "$vmhost" "$fleetd"
                return 0
        fi
        [ "$NO_SYSTEMD" -eq 1 ] || say "systemd is not running; starting the daemons directly"
        if [ -n "$fleetd" ]; then start_direct fleetd "$fleetd"; else stop_direct fleetd; fi
        [ -n "$vmhost" ] && start_direct vmhost "$vmhost"
        return 0
}

# The controller's fleetd signs every VM's pin with its own key (state_dir/pin.pub); vmhost
# starts only VMs whose pin verifies under the key the genesis-signed roster names. The operator
# runs the printed command on the genesis: naming the controller's key is the genesis' decision
# (like admitting a node), so no script takes it on its own.
announce_pin_key() {
        local pub="$STATE_DIR/fleetd/pin.pub" key
        [ "$IS_CONTROLLER" -eq 1 ] && [ "$UNITS_ONLY" -eq 0 ] || return 0
        [ -n "$(find_bin fleetd fleetd)" ] || return 0 # no controller package: no fleetd here
        for _ in $(seq 1 50); do
                [ -s "$pub" ] && break
                sleep 0.2
        done
        [ -s "$pub" ] || { say "warning: fleetd wrote no pin key to '$pub' (see its log)"; return 0; }
        key=$(cat "$pub")
        if [ "$(pair show --field controller_pin_key)" = "$key" ]; then
                say "fleetd pin key $key is named by the roster"
        else
                say "fleetd pin key: $key"
                if [ -f "$MESH_DIR/genesis.key" ]; then
                        say "ACTION (this is the genesis): $PAIR_BIN controller-key $key --state-dir $MESH_DIR"
                else
                        say "ACTION on the genesis node: totebox-pair controller-key $key --state-dir <its mesh state dir>"
                fi
                say "(until then every vmhost refuses the VMs fleetd creates: the roster names no pin key)"
        fi
}

# main ROLE_DEFAULT
provision_main() {
        local role_default=$1
        PAIR_BIN=$(find_bin totebox-pair provision)
        [ -n "$PAIR_BIN" ] || die "totebox-pair not found (install it or pass --build-dir)"
        ROLE=${ROLE:-$role_default}
        install_packages
        check_wireguard
        run_ceremony "$ROLE"
        write_configs
        hub_forwarding
        start_daemons
        announce_pin_key
        if [ "$MODE" = genesis ] && [ "$NO_PAIR" -eq 0 ]; then
                local how=(--listen "$PAIR_LISTEN" --pair-port "$PAIR_PORT")
                if [ -n "$PAIR_CONNECT" ]; then
                        how=(--connect "$PAIR_CONNECT")
                        say "opening the pairing ceremony: dialling the joiner at $PAIR_CONNECT"
                else
                        say "opening the pairing ceremony on $PAIR_LISTEN:$PAIR_PORT"
                fi
                pair serve "${how[@]}" \
                        --code-ttl "$CODE_TTL" --sas-timeout "$SAS_TIMEOUT" ||
                        die "the pairing ceremony did not complete"
                # The roster changed: the controller (and so the hub) may have moved.
                write_configs
                hub_forwarding
                start_daemons
        fi
        say "done: node '$(pair show --field node_id)' mesh address $(pair show --field mesh_address)"
}
