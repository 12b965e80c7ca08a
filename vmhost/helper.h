/* vmhost's privileged helper (vmhost/helper.c): a process forked at start that is the only part
 * of vmhost that talks to the kernel's WireGuard (generic netlink, or wireguard-go's UAPI socket)
 * or reads the node's WireGuard private key. vmhost asks it through typed messages
 * (common/imsg.h) on a socketpair: one struct per operation, sizes and version checked, an
 * unknown message ends the helper. The helper trusts vmhost no more than the network: it
 * applies only a roster that verifies under the genesis key, never an older one than it has
 * applied. libvirt is still called by vmhost itself; docs/architecture.md says what is left. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "common/imsg.h"
#include "common/roster.h"
#include "common/wg.h"

#define VMH_VERSION 1

enum vmh_type {
        VMH_APPLY_PEERS = 1, /* vmhost -> helper: struct vmh_apply_peers */
        VMH_APPLIED,         /* helper -> vmhost: struct vmh_result */
        VMH_WG_KEY,          /* vmhost -> helper: struct vmh_wg_key_req */
        VMH_WG_KEY_IS,       /* helper -> vmhost: struct vmh_wg_key */
};

/* Apply the roster vmhost stored (state_dir/roster.json) to the interface: it must be this
 * version, signed by the genesis key, and not older than what the helper applied before. */
struct vmh_apply_peers {
        uint64_t version;
};

struct vmh_result {
        int32_t result; /* 0 or a negative errno */
};

/* This node's WireGuard public key: the interface's, or the mesh state's wg.key's. */
struct vmh_wg_key_req {
        uint32_t reserved; /* 0 */
};

struct vmh_wg_key {
        int32_t result;
        char key[WG_KEY_B64_LEN + 1]; /* base64, when result is 0 */
};

union vmh_msg {
        struct vmh_apply_peers apply_peers;
        struct vmh_result result;
        struct vmh_wg_key_req wg_key_req;
        struct vmh_wg_key wg_key;
};

extern const struct imsg_proto vmh_proto;

/* Decodes one message: framing, then the fields of its struct. */
int vmh_decode(const void *buf, size_t n, uint16_t *ret_type, union vmh_msg *ret, char *err,
               size_t errsize);

struct vmhost;
/* The helper's state: what it learned at start, before it serves. */
struct vmh_helper {
        const struct vmhost *vh; /* its configuration, copied at fork */
        uint8_t genesis_pk[32];
        bool have_genesis;
        uint64_t applied_version;
};
/* Answers one received message on fd; -EPROTO (err says why) for one that does not decode or
 * goes the other way. */
int vmh_handle(struct vmh_helper *h, int fd, const void *buf, size_t n, char *err, size_t errsize);

/* vmhost's side: starts the helper (before any thread), and the calls. */
int vmh_start(struct vmhost *vh);
void vmh_stop(struct vmhost *vh);
int vmh_apply_peers(struct vmhost *vh, uint64_t version);
int vmh_wg_public_key(struct vmhost *vh, char ret[WG_KEY_B64_LEN + 1]);
