/* The roster: which nodes are in the fleet (id, name, role, WireGuard key, mesh address,
 * endpoint) and which runs the fleet controller. Versioned and signed by the genesis key
 * (Ed25519 over the canonical JSON without "signature"). Schema: schemas/roster.schema.json. */
#pragma once
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "common/heartbeat.h"

#define ROSTER_MAX_BYTES    (4 * 1024 * 1024)
#define ROSTER_MAX_NODES    16384
#define ROSTER_NAME_MAX     63
#define ROSTER_ENDPOINT_MAX 63
#define WG_KEY_B64_LEN      44

enum roster_role { ROSTER_ROLE_NODE, ROSTER_ROLE_RELAY, ROSTER_ROLE_CLOUD };

struct roster_node {
        char id[NODE_ID_MAX + 1];
        char name[ROSTER_NAME_MAX + 1];
        enum roster_role role;
        char wg_public_key[WG_KEY_B64_LEN + 1]; /* base64, may be empty on a test roster */
        char mesh_address[INET_ADDRSTRLEN];
        struct in_addr addr;
        char endpoint[ROSTER_ENDPOINT_MAX + 1]; /* "host:port" or empty when not reachable */
};

/* A node the genesis removed (totebox-pair remove-node): kept in the roster so that every
 * member can tell a revoked node from a stranger (fleetd counts its heartbeats as `revoked`,
 * its VMs show as on a removed node) and so that its mesh address is never handed out again. */
struct roster_revoked {
        char id[NODE_ID_MAX + 1];
        char wg_public_key[WG_KEY_B64_LEN + 1];
        char mesh_address[INET_ADDRSTRLEN];
        struct in_addr addr;
};

struct roster {
        uint64_t version;
        char fleet_id[NODE_ID_MAX + 1];
        char controller[NODE_ID_MAX + 1];            /* node id running fleetd */
        char genesis_public_key[WG_KEY_B64_LEN + 1]; /* base64 Ed25519, informative */
        /* base64 Ed25519: the key the controller signs pins with (common/pin.h); empty when the
         * genesis has named none. Signed like the rest; absent from the canonical form when empty,
         * so rosters from before the field verify unchanged. */
        char controller_pin_key[WG_KEY_B64_LEN + 1];
        size_t n_nodes;
        struct roster_node *nodes;
        /* removed nodes; absent from the canonical form when there are none, so rosters from
         * before the field verify unchanged */
        size_t n_revoked;
        struct roster_revoked *revoked;
        bool signed_;
        uint8_t signature[64];
        struct roster_addr_index *by_addr; /* sorted by address for lookups */
};

struct roster_addr_index {
        uint32_t addr; /* host order */
        uint32_t node;
};

/* Parses a roster; NULL with err filled on any error (unknown fields, duplicates, bad ids). */
struct roster *roster_parse(const char *buf, size_t len, char *err, size_t errsize);
struct roster *roster_load_file(const char *path, char *err, size_t errsize);
void roster_free(struct roster *r);
const struct roster_node *roster_find_by_address(const struct roster *r, struct in_addr addr);
const struct roster_node *roster_find_by_id(const struct roster *r, const char *id);
/* The revoked entry with this id, or NULL. */
const struct roster_revoked *roster_find_revoked(const struct roster *r, const char *id);
/* The revoked entry with this mesh address, or NULL. */
const struct roster_revoked *roster_find_revoked_by_address(const struct roster *r,
                                                            struct in_addr addr);
const char *roster_role_name(enum roster_role role);
int roster_role_parse(const char *s, enum roster_role *ret);
/* Serialises to JSON (a new reference), with the signature when signed. */
json_t *roster_to_json(const struct roster *r);
/* The bytes that are signed: canonical JSON (sorted keys, compact) without "signature".
 * Returns a malloc'd string. */
char *roster_canonical(const struct roster *r);
/* Signs with a 64-byte Ed25519 secret key. */
int roster_sign(struct roster *r, const uint8_t sk[64]);
/* A new roster from its JSON form o (consumed: its reference is dropped), checked as any roster
 * is and signed with sk; NULL with err set when it does not parse, or when signing fails. */
struct roster *roster_from_json_signed(json_t *o, const uint8_t sk[64], char *err, size_t errsize);
/* 0 when signed by pk, else -EBADMSG (or -ENOKEY when unsigned). */
int roster_verify(const struct roster *r, const uint8_t pk[32]);
