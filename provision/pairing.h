/* The pairing ceremony (docs/mesh.md): message codec, the CPace session and its key schedule,
 * short codes and SAS, the node's state directory, and the two roles (genesis server, joiner).
 * Everything here but pair_main.c is the mesh_core library that unit tests link. */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/cpace.h"
#include "common/imsg.h"
#include "common/json_input.h"
#include "common/roster.h"
#include "common/wg.h"

#define PAIR_PROTO        "totebox-pair/2"
#define PAIR_VERSION      2 /* the "v" of every frame; see docs/mesh.md for what changed */
#define PAIR_FRAME_MAX    (64 * 1024) /* a join-accept carries the whole roster */
#define PAIR_COMMIT_LEN   64          /* SHA-512 */
#define PAIR_CONN_MAX     16 /* connections served at once; the oldest unguessed is dropped */
#define PAIR_JSON_DEPTH   8
#define PAIR_NONCE_LEN    16
#define PAIR_DEFAULT_PORT 9173
#define PAIR_CODE_CHARS   10 /* Crockford base32: 50 bits */
#define PAIR_CODE_SIZE    (PAIR_CODE_CHARS + 2)
#define PAIR_SAS_SIZE     8 /* "123 456" */
#define PAIR_KEY_LEN      32
#define PAIR_DETAIL_MAX   200

/* --- messages (pairing_msg.c) --- */

enum pair_msg_type {
        PAIR_MSG_HELLO,
        PAIR_MSG_SHARE,
        PAIR_MSG_CONFIRM,
        PAIR_MSG_SEALED,
        PAIR_MSG_ERROR,
        PAIR_MSG_JOIN_REQUEST, /* sealed */
        PAIR_MSG_JOIN_ACCEPT,  /* sealed */
        PAIR_MSG_ABORT,        /* sealed */
};

/* Why a ceremony failed; the names are what goes on the wire and in messages. */
enum pair_error {
        PAIR_ERR_NONE,
        PAIR_ERR_EXPIRED,
        PAIR_ERR_USED,
        PAIR_ERR_BUSY,
        PAIR_ERR_WRONG_CODE,
        PAIR_ERR_VERSION,
        PAIR_ERR_SAS_NOT_CONFIRMED,
        PAIR_ERR_SAS_MISMATCH,
        PAIR_ERR_NAME_TAKEN,
        PAIR_ERR_PROTOCOL,
        PAIR_ERR_INTERNAL,
};

struct pair_msg {
        enum pair_msg_type type;
        unsigned v; /* the frame's version as decoded (0: PAIR_VERSION when encoding) */
        /* hello */
        char id[NODE_ID_MAX + 1];
        uint8_t nonce[PAIR_NONCE_LEN];
        /* hello (genesis): the commitment to its share, opened by its share */
        bool has_commit;
        uint8_t commit[PAIR_COMMIT_LEN];
        /* share: the point and what the sender binds into the transcript (its role, WireGuard
         * public key and endpoint: the fields below, shared with join-request) */
        uint8_t point[CPACE_POINT_LEN];
        /* share (responder) and confirm */
        bool has_tag;
        uint8_t tag[CPACE_TAG_LEN];
        /* sealed */
        uint64_t seq;
        uint8_t *box; /* malloc'd */
        size_t box_len;
        /* error and abort */
        enum pair_error error;
        char detail[PAIR_DETAIL_MAX + 1];
        /* join-request (name) and the binding of share and join-request (the rest) */
        char name[NODE_ID_MAX + 1];
        enum roster_role role;
        char wg_public_key[WG_KEY_B64_LEN + 1];
        char endpoint[ROSTER_ENDPOINT_MAX + 1];
        /* join-accept */
        char node_id[NODE_ID_MAX + 1];
        char mesh_address[16];
        char genesis_public_key[WG_KEY_B64_LEN + 1];
        json_t *roster; /* a reference */
};

const char *pair_error_name(enum pair_error e);
/* A sentence for the operator. */
const char *pair_error_text(enum pair_error e);
int pair_error_parse(const char *s, enum pair_error *ret);
/* Strict decode of one message (hostile input); err names the field. pair_msg_clear frees. */
int pair_msg_decode(const char *buf, size_t len, struct pair_msg *ret,
                    struct json_input_error *err);
void pair_msg_clear(struct pair_msg *m);
/* Encodes m as compact JSON (malloc'd). */
char *pair_msg_encode(const struct pair_msg *m);
/* Frames: u32 big-endian length (1..PAIR_FRAME_MAX) then the bytes. Reads end at an absolute
 * deadline (pair_clock_ms() time), however slowly the bytes trickle in: -ETIMEDOUT; -EPROTO on
 * a bad length (*ret_len then holds the length and ret_head the 4 bytes); -ECONNRESET on EOF. */
int pair_frame_write(int fd, const char *buf, size_t len);
int pair_frame_read(int fd, int64_t deadline_ms, char **ret_buf, size_t *ret_len,
                    uint8_t ret_head[4]);
/* A TCP connection to HOST[:PORT] (port 9173 by default), bounded by the deadline. */
int pair_connect(const char *target, int64_t deadline);
/* target ("host[:port]") resolved to "a.b.c.d:port" (the dialling genesis resolves before its
 * network process, which opens no files, starts). */
int pair_resolve(const char *target, char *out, size_t size);
/* Listens on ADDR:PORT and returns the first connection accepted before the deadline. */
int pair_accept_one(const char *addr, unsigned port, int64_t deadline);
/* CLOCK_MONOTONIC in milliseconds; deadlines are points on this clock. */
int64_t pair_clock_ms(void);
/* What is left until deadline (0 when past), for poll(). */
int pair_remaining_ms(int64_t deadline_ms);

/* --- the session (pairing.c) --- */

/* Code: PAIR_CODE_CHARS Crockford base32 symbols from the CSPRNG, shown as "XXXXX-XXXXX". */
void pair_code_generate(char out[PAIR_CODE_SIZE]);
/* Canonical form (upper case, no separators, I/L->1, O->0); -EINVAL when not a code. */
int pair_code_normalize(const char *in, char out[PAIR_CODE_CHARS + 1]);

/* What a side binds into the CPace transcript (its AD) besides its id: the node's role, its
 * WireGuard public key and endpoint. */
struct pair_binding {
        enum roster_role role;
        char wg_public_key[WG_KEY_B64_LEN + 1];
        char endpoint[ROSTER_ENDPOINT_MAX + 1];
};

struct pair_session {
        bool initiator; /* the joiner */
        char self_id[NODE_ID_MAX + 1], peer_id[NODE_ID_MAX + 1];
        struct pair_binding bind_self, bind_peer;
        uint8_t ad_self[CPACE_AD_MAX];
        size_t ad_self_len;
        /* responder: its commitment (sent in its hello); initiator: the one it received */
        uint8_t commit[PAIR_COMMIT_LEN];
        uint8_t nonce_self[PAIR_NONCE_LEN], nonce_peer[PAIR_NONCE_LEN];
        struct cpace_ctx cpace;
        uint8_t point_self[CPACE_POINT_LEN], point_peer[CPACE_POINT_LEN];
        uint8_t isk[CPACE_ISK_LEN];
        uint8_t key_send[PAIR_KEY_LEN], key_recv[PAIR_KEY_LEN];
        uint64_t seq_send, seq_recv;
        char sas[PAIR_SAS_SIZE];
        bool keyed;
};

void pair_session_init(struct pair_session *s, bool initiator, const char *self_id);
void pair_session_wipe(struct pair_session *s);
/* A side's AD: lv_cat of the protocol, the CPace role, the id, the node role, the WireGuard
 * public key (32 bytes) and the endpoint. Returns the length or a negative errno. */
ssize_t pair_ad_build(uint8_t out[CPACE_AD_MAX], bool initiator, const char *id,
                      const struct pair_binding *b);
/* The responder's commitment: SHA-512(lv_cat("totebox-pair/2 commit", sid, Y, AD)). */
void pair_commitment(uint8_t out[PAIR_COMMIT_LEN], const uint8_t *sid, size_t sid_len,
                     const uint8_t y[CPACE_POINT_LEN], const uint8_t *ad, size_t ad_len);
/* After the peer's hello: computes this side's share from the code and what it binds. The
 * responder (genesis) also computes its commitment into s->commit, to send in its hello; the
 * initiator (joiner) must pass the commitment the genesis sent (peer_commit), which its share
 * must open later. -EINVAL on a bad code, a reflected nonce or a missing commitment. */
int pair_session_start(struct pair_session *s, const char *code, const char *peer_id,
                       const uint8_t peer_nonce[PAIR_NONCE_LEN], const struct pair_binding *self,
                       const uint8_t *peer_commit);
/* The share this side sends (point and binding; the responder adds its tag). */
void pair_session_share(const struct pair_session *s, struct pair_msg *ret);
/* From the peer's share: ISK, then the AEAD keys and SAS. -EINVAL on a bad binding, an invalid
 * or identity point or our own share reflected (no guess was made: nothing about the code was
 * computed); initiator: -EBADE when the share does not open the genesis' commitment. */
int pair_session_finish(struct pair_session *s, const struct pair_msg *share);
void pair_session_tag(const struct pair_session *s, bool own, uint8_t tag[CPACE_TAG_LEN]);
/* 0 when the peer's key confirmation tag is right, else -EBADMSG (wrong code or MITM). */
int pair_session_check_tag(const struct pair_session *s, const uint8_t tag[CPACE_TAG_LEN]);
/* AEAD (XChaCha20-Poly1305) under the direction's key, sequence numbers strictly in order. */
int pair_session_seal(struct pair_session *s, const char *plain, struct pair_msg *ret_sealed);
int pair_session_open(struct pair_session *s, const struct pair_msg *sealed, char **ret_plain,
                      size_t *ret_len);
/* Compares what the operator typed with our SAS (digits only, constant time). */
bool pair_sas_matches(const struct pair_session *s, const char *typed);

/* --- the node's state directory (pairing_state.c) --- */

struct pair_node_conf {
        char node_id[NODE_ID_MAX + 1];
        char ifname[16];
        uint64_t wg_port;
        char role[8];
        char mesh_address[16];
        char endpoint[ROSTER_ENDPOINT_MAX + 1];
        char subnet[20]; /* genesis only: the address plan, e.g. 10.77.0.0/24 */
};

/* A path under the state directory, malloc'd in *ret (no PATH_MAX buffer in a frame):
 * -ENAMETOOLONG when it would not fit PATH_MAX, -ENOMEM. */
int pair_state_path(const char *dir, const char *name, char **ret);
int pair_state_mkdir(const char *dir);
int pair_conf_save(const char *dir, const struct pair_node_conf *c);
int pair_conf_load(const char *dir, struct pair_node_conf *c);
/* Genesis key (Ed25519): secret key file 0600 (refused when readable by others), public key. */
int pair_genesis_key_save(const char *dir, const uint8_t sk[64]);
int pair_genesis_key_load(const char *dir, uint8_t sk[64]);
/* pair_genesis_key_load for command cmd, which says on stderr when there is no key. */
int pair_genesis_key_require(const char *cmd, const char *dir, uint8_t sk[64]);
/* Like pair_genesis_key_save, but -EEXIST (nothing written) when the node holds a key already. */
int pair_genesis_key_create(const char *dir, const uint8_t sk[64]);
int pair_genesis_pub_save(const char *dir, const uint8_t pk[32]);
int pair_genesis_pub_load(const char *dir, uint8_t pk[32]);
/* The stored roster, or NULL (err filled). */
struct roster *pair_roster_load(const char *dir, char *err, size_t errsize);
/* Accepts r only when it is signed by the stored genesis key and its version is higher than the
 * stored one: -EBADMSG (signature), -ESTALE (not newer), -ENOKEY (no genesis key stored). */
int pair_roster_accept(const char *dir, const struct roster *r, char *err, size_t errsize);
/* Writes without checks (genesis: version 1). */
int pair_roster_store(const char *dir, const struct roster *r);

/* --- the genesis key's backup (pairing_genkey.c) ---
 * A text file: a comment, then `key=value` lines naming in clear what it is (the format, the
 * fleet id, the genesis public key, the address plan, the node it was made on), and last the
 * line `sealed=` with the base64 of the secret key sealed by common/pwseal.h under the
 * passphrase, everything before that line bound as additional data: a changed byte anywhere
 * does not open. */
#define PAIR_GENKEY_FORMAT     "totebox-genesis-key/1"
#define PAIR_GENKEY_MAGIC      "TBXGKEY1" /* the sealed bytes' magic */
#define PAIR_GENKEY_FILE_MAX   4096
#define PAIR_GENKEY_SEALED_MAX 256 /* a 64-byte key sealed is 149 bytes */

struct pair_genkey_file {
        char fleet_id[NODE_ID_MAX + 1];
        char genesis_public_key[WG_KEY_B64_LEN + 1];
        uint8_t pk[32]; /* genesis_public_key decoded */
        char subnet[20];
        char made_on[NODE_ID_MAX + 1];
        size_t ad_len; /* the file's bytes before the sealed line: the additional data */
        uint8_t sealed[PAIR_GENKEY_SEALED_MAX];
        size_t sealed_len;
};

struct pwseal_limits;
/* The backup's text for f's clear fields (ad_len and sealed are set in f) and the secret key,
 * sealed with passphrase under limits: a malloc'd string in *ret. */
int pair_genkey_format(struct pair_genkey_file *f, const uint8_t sk[64], const char *passphrase,
                       const struct pwseal_limits *limits, char **ret, size_t *ret_len);
/* Strict parse of a backup's text (hostile input: anyone may hand an operator a file): every
 * field once, in order, nothing unknown, the sealed line last. -EBADMSG with err filled. */
int pair_genkey_parse(const char *buf, size_t len, struct pair_genkey_file *ret, char *err,
                      size_t errsize);
/* Opens a parsed backup (buf: the text it was parsed from) into sk: -EACCES for a wrong
 * passphrase or an altered file, -EBADMSG when what is sealed is no key of the public key the
 * file names. sk is untouched on failure. */
int pair_genkey_unseal(const char *buf, const struct pair_genkey_file *f, const char *passphrase,
                       uint8_t sk[64]);
/* Genesis: writes the backup of its key to path (never over a file, 0600). */
int pair_genkey_backup(const char *state_dir, const char *path, const char *passphrase_file,
                       FILE *out);
/* A member without the genesis key: checks the backup at path against this node's verified
 * roster (fleet id, genesis public key), opens it, and only then stores genesis.key (and the
 * address plan in node.conf, so that this node can admit joins). A refusal writes nothing. */
int pair_genkey_restore(const char *state_dir, const char *path, const char *passphrase_file,
                        FILE *out);

/* --- the roles (pairing_server.c, pairing_client.c) --- */

struct pair_server_opts {
        const char *state_dir;
        const char *listen_addr;
        unsigned port;
        unsigned code_ttl_s;
        unsigned sas_timeout_s;
        unsigned io_timeout_s;
        unsigned node_api_port; /* where members' vmhost takes POST /v1/roster */
        FILE *out;              /* announcements: code, SAS, results */
        FILE *confirm_in;       /* the operator's SAS confirmation */
        const char *code;       /* tests: a fixed code instead of a fresh one */
        const char *connect;    /* HOST[:PORT]: dial a joiner that waits (genesis behind NAT) */
};

/* Pushes r to every member's vmhost (POST /v1/roster) but self_id and joiner (may be NULL);
 * best effort, each outcome printed to out. */
void pair_roster_push(const struct roster *r, const char *self_id, const char *joiner,
                      unsigned node_api_port, FILE *out);
/* Genesis: names the fleet controller's pin key (base64 Ed25519) in a new roster version,
 * signs, stores, applies and pushes it (pairing_controller.c). */
int pair_controller_key_set(const char *state_dir, const char *pin_key, unsigned node_api_port,
                            bool no_wg, FILE *out);
/* Genesis: removes (revokes) node id: a new roster version without it and with it in `revoked`,
 * signed, stored, applied to this node's interface (unless no_wg) and pushed to every member
 * (pairing_remove.c). Refuses the genesis itself, the controller and an unknown id; an id
 * already revoked is reported and left as it is (0). */
int pair_node_remove(const char *state_dir, const char *id, unsigned node_api_port, bool no_wg,
                     FILE *out);

/* --- the privileged half of the pairing server (pairing_priv.c) ---
 * `totebox-pair serve` runs as two processes. The parent keeps the state directory, the genesis
 * key and the WireGuard interface; the child reads every network frame, runs CPace and talks to
 * the operator, as an unprivileged user with no capabilities under a seccomp filter (no files,
 * no new sockets). The child asks the parent, over a SOCK_SEQPACKET socketpair (common/imsg.h),
 * to sign the roster with the joiner in it and then to apply it: one struct per message, sizes
 * and version checked, an unknown message ends the ceremony. The parent signs at most one join
 * per run, as the code is good for one. */
#define PAIR_PRIV_VERSION 1

enum pair_priv_type {
        PAIR_PRIV_SIGN_JOIN = 1, /* child -> parent: struct pair_priv_sign_join */
        PAIR_PRIV_SIGNED,        /* parent -> child: struct pair_priv_signed + roster JSON */
        PAIR_PRIV_APPLY,         /* child -> parent: struct pair_priv_apply */
        PAIR_PRIV_APPLIED,       /* parent -> child: struct pair_priv_applied */
};

/* The joiner as the handshake bound it (the child checked the join request against it). */
struct pair_priv_sign_join {
        char name[NODE_ID_MAX + 1];
        uint32_t role; /* enum roster_role */
        char wg_public_key[WG_KEY_B64_LEN + 1];
        char endpoint[ROSTER_ENDPOINT_MAX + 1];
};

struct pair_priv_signed {
        uint32_t error; /* enum pair_error: PAIR_ERR_NONE, or why there is no roster */
        char detail[PAIR_DETAIL_MAX + 1];
        uint64_t version;
        char mesh_address[16];
        char genesis_public_key[WG_KEY_B64_LEN + 1];
        uint32_t roster_len;
        uint32_t reserved; /* 0: the roster starts at sizeof(struct pair_priv_signed) */
        char roster[];     /* roster_len bytes of the signed roster's JSON, no NUL */
};
_Static_assert(offsetof(struct pair_priv_signed, roster) == sizeof(struct pair_priv_signed),
               "the roster follows the struct");

/* The joiner has been sent the roster: apply it to the interface and push it to the members. */
struct pair_priv_apply {
        uint64_t version; /* must be the version the parent signed */
};

struct pair_priv_applied {
        int32_t result; /* 0 or a negative errno */
};

extern const struct imsg_proto pair_priv_proto;

/* Decodes one message from the other process: the framing (common/imsg.h), then the fields of
 * its struct (terminated strings, ids, enums in range). ret is a copy, the roster of a SIGNED
 * message a malloc'd NUL-terminated string in *ret_roster (NULL for other types). */
union pair_priv_msg {
        struct pair_priv_sign_join sign_join;
        struct pair_priv_signed signed_;
        struct pair_priv_apply apply;
        struct pair_priv_applied applied;
};
int pair_priv_decode(const void *buf, size_t n, uint16_t *ret_type, union pair_priv_msg *ret,
                     char **ret_roster, char *err, size_t errsize);

/* The parent's side. */
struct pair_priv_parent {
        const struct pair_server_opts *o;
        struct pair_node_conf conf;
        bool signed_once, applied;
        uint64_t signed_version;
        char signed_for[NODE_ID_MAX + 1];
};
/* Answers one message (already received, n bytes) on fd. A message that does not decode is
 * -EPROTO (err says why): the caller ends the child. */
int pair_priv_handle(struct pair_priv_parent *p, int fd, const void *buf, size_t n, char *err,
                     size_t errsize);
/* Serves the child until it closes its end; -EPROTO after a bad message. */
int pair_priv_serve(struct pair_priv_parent *p, int fd);

/* The child's side: one request, its answer. */
int pair_priv_sign_join(int fd, const struct pair_priv_sign_join *req, struct pair_priv_signed *ret,
                        char **ret_roster);
int pair_priv_apply(int fd, uint64_t version);

/* Runs one ceremony: one code, one guess; returns 0 after a successful join, else a negative
 * errno (the reason has been printed). */
int pair_server_run(const struct pair_server_opts *o);

struct pair_join_opts {
        const char *state_dir;
        const char *code;
        const char *genesis; /* host[:port] */
        const char *listen;  /* instead: wait on this address for the genesis to dial in */
        unsigned listen_port;
        const char *name;
        enum roster_role role;
        const char *endpoint; /* this node's WireGuard endpoint, may be empty */
        const char *ifname;
        unsigned wg_port;
        bool no_wg; /* tests of the protocol alone: do not touch interfaces */
        unsigned io_timeout_s;
        unsigned sas_timeout_s;
        FILE *out;
        FILE *confirm_in;
};

int pair_join_run(const struct pair_join_opts *o);

/* --- shared by both roles (pairing_io.c) --- */

/* Sends one message / reads and decodes one before deadline_ms; err always says why a read
 * failed (never empty). */
int pair_send(int fd, const struct pair_msg *m);
int pair_recv(int fd, int64_t deadline_ms, struct pair_msg *ret, char *err, size_t errsize);
int pair_send_sealed(int fd, struct pair_session *s, const struct pair_msg *inner);
/* Reads a sealed message and decodes what is inside. */
int pair_recv_sealed(int fd, int64_t deadline_ms, struct pair_session *s, struct pair_msg *ret,
                     char *err, size_t errsize);
int pair_send_error(int fd, struct pair_session *s, enum pair_error e, const char *detail);
/* A clear-text error framed in version v (a peer speaking an older version can read it). */
int pair_send_error_v(int fd, unsigned v, enum pair_error e, const char *detail);
/* Replaces all but printable ASCII in s (text quoting what a peer sent) with '?'. */
void pair_printable(char *s);
/* Shuts down writing, drains what the peer still sends (briefly), closes. */
void pair_close_gently(int fd);
/* Reads one line from fd into buf (no stdio buffering, so it mixes with poll()). -ETIMEDOUT,
 * or 0 with an empty line on EOF. */
int pair_read_line(int fd, int timeout_ms, char *buf, size_t size);
/* Waits for the operator to type the SAS seen on the other side while watching the peer socket:
 * returns PAIR_ERR_NONE when it matches, PAIR_ERR_SAS_MISMATCH when another SAS was typed,
 * PAIR_ERR_SAS_NOT_CONFIRMED on "no", EOF or timeout; *peer_spoke is set when the socket became
 * readable first. */
enum pair_error pair_confirm_sas(const struct pair_session *s, int in_fd, int sock, int timeout_ms,
                                 FILE *out, bool *peer_spoke);

struct pair_genesis_opts {
        const char *state_dir;
        const char *name;
        const char *endpoint;
        enum roster_role role;
        const char *ifname;
        unsigned wg_port;
        const char *subnet;
        const char *fleet_id;
        bool no_wg;
        FILE *out;
};

/* "10.77.0.0/24": the base address (host bits cleared) and the prefix, 16..30; else -EINVAL. */
struct in_addr;
int pair_subnet_parse(const char *s, struct in_addr *ret_base, unsigned *ret_prefix);
/* Creates the mesh (idempotent: an existing genesis state is reused and its interface set up). */
int pair_genesis_init(const struct pair_genesis_opts *o);
/* Verifies, stores and applies a roster (a node's own copy of what the genesis pushed). */
int pair_apply_roster_file(const char *state_dir, const char *path, bool no_wg, char *err,
                           size_t errsize);
/* Sets up this node's interface from its state and applies the stored roster. */
int pair_mesh_up(const char *state_dir, char *err, size_t errsize);
