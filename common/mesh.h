/* Applying a roster to a WireGuard interface. Topology (docs/mesh.md): every pair of nodes where
 * at least one side has an endpoint peers directly; a node with no endpoint (behind NAT) reaches
 * another node with no endpoint through the hub, the first relay with an endpoint (else the
 * controller, else any node with one), whose allowed IPs then carry that node's /32 too; a node
 * with no endpoint keeps its tunnels open with a persistent keepalive. */
#pragma once
#include <netinet/in.h>
#include <stdint.h>

#include "common/roster.h"
#include "common/wg.h"

#define MESH_PREFIX_LEN   24
#define MESH_KEEPALIVE_S  25
#define MESH_DEFAULT_PORT 51820

/* The hub for nodes that cannot reach each other; NULL when the roster has none. */
const struct roster_node *mesh_hub(const struct roster *r);
/* Fills d->peers with the peers self_id should have under r. -ENOENT when self_id is not in r,
 * -EINVAL on a bad key or endpoint in the roster. */
int mesh_plan_peers(const struct roster *r, const char *self_id, struct wg_device *d);
/* Makes the interface's peers equal to the roster's other nodes (removing the rest) and makes
 * sure the interface carries self's mesh address. */
int mesh_apply_roster(const char *ifname, const struct roster *r, const char *self_id);
/* Creates the interface if needed (kernel, else wireguard-go), sets the private key from
 * key_path, the listen port, addr/MESH_PREFIX_LEN, and sets it up. */
int mesh_interface_setup(const char *ifname, const char *key_path, uint16_t port,
                         struct in_addr addr);

/* A node's mesh state directory (totebox-pair --state-dir, docs/mesh.md) holds genesis.pub (the
 * genesis Ed25519 key learned at pairing) and roster.json (the last accepted roster). */
int mesh_genesis_pub_load(const char *state_dir, uint8_t pk[32]);
/* Writes state_dir/roster.json atomically (0644). */
int mesh_roster_store(const char *state_dir, const struct roster *r);
/* Stores r only when the stored genesis key signed it, it is for the same fleet and its version
 * is higher than the stored one: -ENOKEY (no genesis key), -EBADMSG (signature or fleet),
 * -ESTALE (not newer); err says which, with the versions. */
int mesh_roster_accept(const char *state_dir, const struct roster *r, char *err, size_t errsize);
/* For vmhost's POST /v1/roster: parse body, accept it as above, then apply it to ifname as
 * self_id. -EINVAL on a malformed roster; the roster is stored before it is applied. */
int mesh_roster_update(const char *state_dir, const char *body, size_t len, const char *ifname,
                       const char *self_id, char *err, size_t errsize);
