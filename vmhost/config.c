/* vmhost's config keys: one table read by the loader, --help, --print-config and the docs. */
#include <stddef.h>

#include "vmhost/vmhost.h"

#define K(name, type, field, min, max, def, help)                                                  \
        {                                                                                          \
                name, type, offsetof(struct vmhost_config, field), min, max, def, help             \
        }

const struct config_key vmhost_config_table[] = {
    K("node_id", CONFIG_STRING, node_id, NODE_ID_MAX + 1, NODE_ID_MAX + 1, "node1",
      "this node's id, as in the roster"),
    K("fleet_id", CONFIG_STRING, fleet_id, NODE_ID_MAX + 1, NODE_ID_MAX + 1, "fleet",
      "the fleet id written into each VM's pin (a create request may name it too)"),
    K("fleetd_address", CONFIG_STRING, fleetd_address, 64, 64, "127.0.0.1",
      "the fleet controller's mesh address"),
    K("fleetd_port", CONFIG_UINT, fleetd_port, 1, 65535, "9171",
      "the fleet controller's heartbeat UDP port"),
    K("heartbeat_source", CONFIG_STRING, heartbeat_source, 64, 64, "",
      "source address of heartbeats (this node's mesh address); empty lets routing choose"),
    K("heartbeat_interval", CONFIG_DURATION, heartbeat_interval_ms, 100, 3600000, "10s",
      "how often to sample the node and send a heartbeat"),
    K("libvirt_uri", CONFIG_STRING, libvirt_uri, 512, 512, "qemu:///system",
      "libvirt connection URI; qemu:///embed?root=DIR needs no daemon"),
    K("virt_type", CONFIG_STRING, virt_type, 8, 8, "auto",
      "kvm, qemu (TCG) or auto (kvm where /dev/kvm boots guests)"),
    K("state_dir", CONFIG_STRING, state_dir, 4096, 4096, "/var/lib/totebox/vmhost",
      "directory for vmhost's state: storage pool, channel sockets, seeds"),
    K("safety_margin_mib", CONFIG_UINT, safety_margin_mib, 0, 1048576, "512",
      "available RAM that must remain after a VM is created"),
    K("node_api_listen", CONFIG_STRING, node_api_listen, 256, 256, "127.0.0.1",
      "the address the node API listens on (this node's mesh address)"),
    K("node_api_port", CONFIG_UINT, node_api_port, 1, 65535, "9172", "node API TCP port"),
    K("node_api_allow", CONFIG_STRING, node_api_allow, 256, 256, "",
      "comma-separated client addresses allowed; empty: only the roster's controller"),
    K("max_body_bytes", CONFIG_UINT, max_body_bytes, 1024, 4194304, "1048576",
      "largest node API request body"),
    K("max_record_bytes", CONFIG_UINT, max_record_bytes, 1, 68719476736ull, "1073741824",
      "largest record a deposit or read moves through the Diode (bytes)"),
    K("roster_file", CONFIG_STRING, roster_file, 4096, 4096, "",
      "initial roster (used until a newer signed roster is pushed)"),
    K("genesis_public_key", CONFIG_STRING, genesis_public_key, 64, 64, "",
      "base64 Ed25519 genesis key that signs rosters; empty refuses every pushed roster"),
    K("mesh_state_dir", CONFIG_STRING, mesh_state_dir, 4096, 4096, "",
      "the node's mesh state (totebox-pair --state-dir): the genesis key learned at pairing and "
      "the roster; accepted rosters are stored there too"),
    K("audit_key", CONFIG_STRING, audit_key, 256, 256, "",
      "fleetd's audit verifier key (C2SP vkey, state_dir/audit.pub on the controller); empty: "
      "the key of the first audit checkpoint accepted is pinned"),
    K("wg_interface", CONFIG_STRING, wg_interface, 32, 32, "",
      "WireGuard interface rosters are applied to; empty: none"),
    K("archive_grace", CONFIG_DURATION, archive_grace_ms, 0, 3600000, "60s",
      "how long an archived VM may take to shut down before it is powered off"),
    K("user", CONFIG_STRING, user, 33, 33, VMHOST_USER,
      "the user vmhost runs as once its helper is started, when started as root (no user of that "
      "name: nobody); the helper stays root"),
    K("log_level", CONFIG_STRING, log_level, 16, 16, "info", "error, warn, info or debug"),
    {0},
};
