/* fleetd's shared state and the interfaces between its files. Locking: f->lock guards the node
 * table, the VM table and the metrics; the store has its own mutex and is always taken last. */
#pragma once
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "common/config.h"
#include "common/heartbeat.h"
#include "common/ident.h"
#include "common/image_transfer.h"
#include "common/vm_lifecycle.h"
#include "common/roster.h"
#include "common/witness_key.h"

#define FLEETD_LISTEN_MAX 4
#define ENTITY_MAX        IDENT_ENTITY_MAX
#define VM_ID_MAX         IDENT_VM_MAX
#define PLAN_ID_LEN       IDENT_PLAN_LEN /* hex */
#define IMAGE_MAX         IDENT_IMAGE_MAX
#define REASON_MAX        256

struct fleetd_config {
        char api_listen[256]; /* comma-separated IPv4 addresses */
        uint64_t api_port;
        char heartbeat_listen[64];
        uint64_t heartbeat_port;
        char roster_file[4096];
        char state_dir[4096];
        uint64_t heartbeat_interval_ms;
        uint64_t suspect_after_ms;
        uint64_t evict_after_ms;
        uint64_t safety_margin_mib;
        char placement_prefer_roles[64]; /* role tiers, best first: "node+relay,cloud" */
        uint64_t disk_cow_allowance_mib; /* a new VM's OS overlay may grow this much */
        uint64_t disk_margin_mib;        /* room for VM disks left on a node after a new VM */
        uint64_t plan_ttl_ms;
        uint64_t node_api_port;
        uint64_t node_api_timeout_ms;
        uint64_t dispatch_attempts;
        uint64_t dispatch_backoff_ms;
        uint64_t dispatch_backoff_max_ms;
        uint64_t max_body_bytes;
        uint64_t max_record_bytes; /* the Diode: largest deposit (spooled in state_dir/diode) */
        uint64_t max_json_depth;
        uint64_t vault_verify_interval_ms, vault_stall_grace_ms;
        uint64_t image_max_bytes;
        bool auth;
        char panel_dir[4096];
        char log_level[16];
};

extern const struct config_key fleetd_config_table[];
/* Checks across keys (the placement policy's roles); 0 or -EINVAL with the reason in err. */
int fleetd_config_check(const void *cfg, char *err, size_t errsize);

/* Liveness, worst last. UNHEALTHY: heartbeats arrive but vmhost's libvirt calls do not succeed. */
enum node_state {
        NODE_UNSEEN,
        NODE_ALIVE,
        NODE_UNHEALTHY,
        NODE_SUSPECT,
        NODE_EVICTED,
        NODE_STATE_MAX
};

enum inventory_status { INV_NONE, INV_WANTED, INV_OK, INV_FAILED };

/* Replay protection: the last accepted seq of each of a node's last few boots (boot id and
 * epoch), so that a datagram of any boot still known is ordered within its own boot. */
#define NODE_BOOTS     4
#define NODE_FRESH_SEQ 3 /* a new boot may start at most this far in, plus its silence */
struct node_boot {
        char boot[HEARTBEAT_BOOT_LEN + 1];
        uint64_t epoch;
        uint64_t seq;      /* the last accepted */
        uint64_t accepted; /* heartbeats accepted from this boot */
        uint64_t last_ms;  /* monotonic: when its last one was accepted; 0: slot unused */
};

/* One point of a node's history: the figures of a heartbeat, at fleetd's monotonic time (in
 * tenths of a second: 13 years of uptime). 16 bytes: at 10,000 nodes the whole history stays within
 * NODE_HISTORY_BUDGET. */
struct node_sample {
        uint32_t at_ds;
        uint16_t cpu_centi; /* CPU utilisation in hundredths of a percent */
        uint16_t unused;
        uint32_t available_mib, committed_mib;
};
/* At most one sample per heartbeat interval for NODE_HISTORY_MAX intervals (an hour at the
 * default 10 s). A fleet too large for NODE_HISTORY_BUDGET bytes of history keeps fewer samples
 * per node, spaced further apart, over the same span (node_history_capacity). */
#define NODE_HISTORY_MAX    360
#define NODE_HISTORY_MIN    12
#define NODE_HISTORY_BUDGET (4u << 20)

struct node_history {
        uint32_t total_mib;   /* the node's total memory at its last sample */
        unsigned capacity;    /* samples kept: NODE_HISTORY_MIN..NODE_HISTORY_MAX */
        unsigned next, count; /* ring: s[next] is written next */
        struct node_sample s[];
};

/* What fleetd keeps of a node's last accepted heartbeat: the figures, without the node id (the
 * roster's, checked at ingest) and the boot id (in boots[]): 160 bytes instead of struct
 * heartbeat's 256. The names are struct heartbeat's. */
struct node_figures {
        uint64_t epoch, seq, interval_ms;
        uint64_t mem_total_mib, mem_available_mib, mem_committed_mib;
        int64_t libvirt_age_ms;
        uint64_t creations;
        uint64_t disk_free_mib;
        double cpu_percent;
        uint32_t cpus, vm_count;
        bool disk_known;
        char inventory_digest[DIGEST_HEX_LEN + 1];
};

/* One per roster node; 10,000 of them at 10,000 nodes, so the small fields are packed together
 * (see docs/fleetd.md, "Memory budget"). */
struct fleet_node {
        /* what placement reads, first, so that a scan of 10,000 nodes touches one cache line
         * per node */
        bool seen;
        bool dispatch_busy; /* a dispatch worker is calling this node */
        bool counter_reset; /* the node's creation counter went back for good (set by ingest) */
        enum node_state reported;   /* the state last logged and audited */
        uint64_t last_seen_ms;      /* monotonic */
        uint64_t reserved_mib;      /* promised to confirmed creations not yet reflected */
        uint64_t reserved_disk_mib; /* their disks, likewise */
        int64_t hb_avail_mib;       /* min(MemAvailable, total - committed) of the last heartbeat */
        int64_t hb_libvirt_age_ms;  /* of the last heartbeat */
        const struct roster_node *rn; /* the roster entry; owned by the roster */
        uint64_t heartbeats;
        struct node_figures hb; /* of the last accepted heartbeat */
        enum inventory_status inv;
        unsigned inv_failures;
        char inv_digest[DIGEST_HEX_LEN + 1]; /* digest of the inventory last reconciled */
        uint64_t inv_next_ms;                /* monotonic: next fetch attempt */
        json_t *unknown_vms;    /* ids the node reports that fleetd never placed (array) */
        uint64_t inv_verb_mark; /* f->verb_events when the fetch in flight was sent */
        /* ids the node reports that are pinned to another node (array): each id's presence is
         * one occurrence of the "misplaced" alarm, audited when it begins */
        json_t *misplaced_vms;
        struct node_boot boots[NODE_BOOTS];
        uint64_t inv_fetches;    /* inventory fetches sent to the node since fleetd started */
        uint64_t inv_fetch_sent; /* the number of the fetch in flight (or last sent); one
                                    fetch per node is in flight at a time */
        /* roster anti-entropy (dispatch.c): the roster version the node was found to hold, or
         * was sent, and when it may be sent again after no answer (monotonic) */
        uint64_t roster_synced, roster_next_ms;
        /* the base images the node's last inventory listed ([{name, sha256, size}]), or NULL
         * when it never listed any (a vmhost without image reports: holdings unknown) */
        json_t *images;
        unsigned
            low_beats;     /* heartbeats in a row from one boot with a counter below the figures' */
        unsigned low_boot; /* that boot's slot in boots[] */
        struct node_history *history; /* owned; allocated at the first accepted heartbeat */
};

enum hb_drop {
        HB_DROP_MALFORMED,
        HB_DROP_OVERSIZED,
        HB_DROP_UNKNOWN_ADDRESS,
        HB_DROP_NODE_MISMATCH,
        HB_DROP_REPLAYED,
        HB_DROP_VERSION, /* a protocol version outside what this fleetd reads */
        HB_DROP_REVOKED, /* from the address of a node the genesis removed */
        HB_DROP_MAX
};

struct node_id_index {
        const char *id;
        uint32_t node;
};

struct node_table {
        struct roster *roster;
        struct fleet_node *nodes;    /* parallel to roster->nodes */
        struct node_id_index *by_id; /* sorted by id: O(log n) lookups */
        uint64_t received;
        uint64_t accepted;
        uint64_t dropped[HB_DROP_MAX];
        uint64_t newer; /* accepted heartbeats of a newer protocol version (an upgrade under way) */
        uint32_t last_accepted; /* the node of the last accepted heartbeat */
};

enum vm_status { VM_CREATING, VM_ACTIVE, VM_FAILED };

struct fleet_vm {
        char id[VM_ID_MAX + 1];
        char entity[ENTITY_MAX + 1];
        char node_id[NODE_ID_MAX + 1];
        char plan_id[PLAN_ID_LEN + 1];
        char request_id[PLAN_ID_LEN + 1];
        char image[IMAGE_MAX + 1];
        uint64_t memory_mib, vcpus, vault_disk_mib;
        uint64_t created_ms; /* wall clock */
        enum vm_status status;
        enum vm_lifecycle lifecycle;
        char reason[REASON_MAX];
        /* soft state */
        unsigned attempts;
        uint64_t next_attempt_ms; /* monotonic */
        bool reserved;            /* memory_mib counted in its node's reserved_mib */
        uint64_t reserved_disk;   /* MiB counted in its node's reserved_disk_mib (while reserved) */
        uint64_t reserve_until;   /* the node's creation counter whose figures reflect the VM;
                                     0 while not known */
        uint64_t settle_fetch;    /* not 0: an inventory of fetch number >= this that lacks the
                                     VM, or lists it holding nothing, shows that it holds no
                                     memory there */
        uint64_t reflect_fetch;   /* only an inventory of fetch number >= this may name the
                                     counter that reflects the VM (0: any; UINT64_MAX: none, a
                                     start is in flight): older ones may predate the start */
        bool missing;             /* the node's inventory lacks it */
        char observed[16];        /* libvirt state from the last inventory, "" if none */
        char integrity[16];       /* unknown / ok / mismatch */
        json_t *integrity_obj;    /* the last integrity object, or NULL */
        /* a verb call in flight, and f->verb_events at its last start or end: an inventory sent
         * before that may predate the call, so its lifecycle is not trusted */
        bool verb_busy;
        uint64_t verb_mark;
        char lc_unsure[REASON_MAX]; /* the last lifecycle call that got no clear answer, or "" */
        /* the last verification fleetd asked for, and the last full one the node reported */
        char verify_request_id[IDENT_REQUEST_MAX + 1];
        char verify_done_id[IDENT_REQUEST_MAX +
                            1]; /* verify_request_id once its report has arrived */
        char verify_actor[64];
        uint64_t verify_requested_ms;  /* wall clock */
        uint64_t verify_poll_until_ms; /* monotonic: fetch the inventory until then, or 0 */
        json_t *verification;          /* {trigger, request_id, at_ms, duration_ms, ...} or NULL */
        /* the vault's witness (vault_witness.c): the durable part is the vault_witness row */
        char witness[16]; /* none / ok / pending / fork / rollback / lying-host */
        char witness_detail[240];
        uint64_t witness_size, witness_cosigned_ms, witness_alarms, witness_evidence_seen;
        uint8_t witness_last_alarm[16];
        unsigned witness_named; /* bit per alarm ever named: 1 fork, 2 rollback, 4 lying-host */
        bool witness_post;      /* tell the node the checkpoint fleetd holds */
        uint64_t clean_count, clean_day; /* clean scheduled verifications, audited daily */
        /* the nodes a re-homing took it from (export.c), each holding a retired copy: NULL, or
         * an array of node ids from the audit record's vm.rehomed entries */
        json_t *retired_nodes;
        uint64_t retire_asked_ms; /* monotonic: the last archive asked of a retired copy */
};

struct fleet_transport {
        /* Calls the node API; *ret_body is malloc'd (or NULL). Returns 0 when an HTTP answer
         * came back (any status), a negative errno when none did. */
        int (*call)(void *ctx, const char *address, uint16_t port, const char *method,
                    const char *path, const char *body, uint64_t timeout_ms, long *ret_status,
                    char **ret_body);
        void *ctx;
};

#define LATENCY_BUCKETS 10
/* REST requests are counted by route (api_routes' index; two more slots for the panel's files and
 * for no route) and by status code among these, the rest as "other": bounded cardinality. */
#define METRICS_ROUTES_MAX  64
#define METRICS_ROUTE_PANEL METRICS_ROUTES_MAX
#define METRICS_ROUTE_NONE  (METRICS_ROUTES_MAX + 1)
#define METRICS_CODES       24
struct fleet_metrics {
        uint64_t plans_created, plans_rejected, confirmations, confirm_rejected;
        uint64_t dispatch_attempts, dispatch_failures, inventory_fetches, inventory_failures;
        uint64_t integrity_mismatches, state_changes, requests;
        uint64_t verify_requests, verify_failures, lifecycle_corrections;
        uint64_t misplaced_occurrences;
        uint64_t vault_cosignatures, vault_witness_alarms;
        uint64_t latency_bucket[LATENCY_BUCKETS + 1]; /* cumulative at render time */
        double latency_sum_s;
        uint64_t latency_count;
        uint64_t state_change[NODE_STATE_MAX][NODE_STATE_MAX]; /* [from][to] */
        uint64_t http_requests[METRICS_ROUTES_MAX + 2][METRICS_CODES + 1];
};

struct store;
struct audit_log;
struct fleet_images;

struct fleetd {
        struct fleetd_config cfg;
        pthread_mutex_t lock; /* guards table, vms, metrics */
        struct node_table table;
        struct fleet_vm *vms;
        size_t n_vms, cap_vms;
        struct fleet_metrics metrics;
        struct store *store;
        struct fleet_transport transport;
        int udp_fd;
        struct MHD_Daemon *http[FLEETD_LISTEN_MAX];
        unsigned n_http;
        pthread_t dispatcher;
        pthread_cond_t wake;
        bool dispatcher_running, stopping;
        unsigned dispatch_workers; /* worker threads calling nodes (dispatch.c) */
        unsigned op_threads;       /* operations' verb calls in flight (operations.c) */
        struct timespec roster_mtime;
        uint64_t started_ms;
        uint64_t started_wall_ms;
        uint64_t verb_events;    /* counts starts and ends of verb calls to nodes (under lock) */
        struct audit_log *audit; /* audit_push.c: the key, checkpoints, the nodes' witness */
        struct fleet_images *images; /* images.c: staged uploads and pushes to nodes */
        /* the pin key (pin_sign.c): Ed25519, its public half named by the roster */
        uint8_t pin_sk[64];
        char pin_pk[WG_KEY_B64_LEN + 1];
        /* the key fleetd cosigns vault checkpoints with (state_dir/vault-witness.key) */
        struct witness_key vault_witness;
        bool have_vault_witness;
};

/* nodes.c */
int node_table_init(struct node_table *t, struct roster *roster);
void node_table_done(struct node_table *t);
/* Moves soft state (heartbeats, reservations, inventories) of nodes still in the roster from old
 * into the new table t, by node id. */
void node_table_carry(struct node_table *t, const struct node_table *old);
struct fleet_node *node_table_find(const struct node_table *t, const char *id);
/* Recomputes the placement figures (hb_avail_mib, hb_libvirt_age_ms) from n->hb. */
void node_refresh_figures(struct fleet_node *n);
/* Applies one datagram from src; returns 0 when accepted, else -(1 + enum hb_drop) with a
 * reason in err. */
int node_table_ingest(struct node_table *t, const char *buf, size_t len, struct in_addr src,
                      uint64_t now_ms, char *err, size_t errsize);
const char *node_state_name(enum node_state s);
/* What a node id that has no entry in the table is: "removed" when the roster lists it as
 * revoked, else "not-in-roster". */
const char *node_absent_name(const struct node_table *t, const char *id);
const char *hb_drop_name(enum hb_drop d);
/* The node's samples of the last window_ms, oldest first, as
 * [{"at": RFC 3339, "cpu_percent", "available_mib", "committed_mib", "total_mib"}];
 * wall_ms / now_ms: the wall and monotonic clocks now. */
unsigned node_history_capacity(size_t n);
json_t *node_history_json(const struct fleet_node *n, uint64_t now_ms, uint64_t wall_ms,
                          uint64_t window_ms);

/* liveness.c */
static inline uint64_t node_heartbeat_age(const struct fleet_node *n, uint64_t now_ms)
{
        return now_ms > n->last_seen_ms ? now_ms - n->last_seen_ms : 0;
}

/* How long a node may be silent before it is suspect: suspect_after plus a quarter interval for
 * jitter (a heartbeat sent late, or delivered late, after one that was lost: suspect_after is
 * meant as "missed two", so one lost datagram with jitter must stay below it), never past
 * evict_after. */
static inline uint64_t node_suspect_bound(const struct fleetd_config *cfg)
{
        uint64_t b = cfg->suspect_after_ms + cfg->heartbeat_interval_ms / 4;

        return b < cfg->evict_after_ms ? b : cfg->evict_after_ms;
}

/* Silent for more than evict_after: evicted; more than node_suspect_bound: suspect; heartbeats
 * whose libvirt_age_ms is -1 or older than 3 intervals: unhealthy (a wedged vmhost); else
 * alive. */
static inline enum node_state node_state_at(const struct fleet_node *n,
                                            const struct fleetd_config *cfg, uint64_t now_ms)
{
        uint64_t age;

        if (!n->seen)
                return NODE_UNSEEN;
        age = node_heartbeat_age(n, now_ms);
        if (age > cfg->evict_after_ms)
                return NODE_EVICTED;
        if (age > node_suspect_bound(cfg))
                return NODE_SUSPECT;
        if (n->hb_libvirt_age_ms < 0 ||
            (uint64_t)n->hb_libvirt_age_ms > 3 * cfg->heartbeat_interval_ms)
                return NODE_UNHEALTHY;
        return NODE_ALIVE;
}
/* Logs and audits every node whose state changed since the last tick; returns how many. */
unsigned liveness_tick(struct fleetd *f, uint64_t now_ms);

/* placement.c */
struct plan_request {
        char entity[ENTITY_MAX + 1];
        uint64_t memory_mib, vcpus, vault_disk_mib;
        char image[IMAGE_MAX + 1];
        char node[NODE_ID_MAX + 1]; /* the operator's target node, "" when the fleet chooses */
};

enum cand_verdict {
        CAND_CHOSEN,
        CAND_FITS,      /* fits, but another node has more room */
        CAND_FITS_ROLE, /* fits, but a node of a role the policy prefers fits too */
        CAND_NOT_ALIVE,
        CAND_UNHEALTHY,
        CAND_STALE,
        CAND_NO_HEARTBEAT,
        CAND_BELOW_MARGIN,
        CAND_NO_IMAGE, /* the node does not hold the plan's image */
        CAND_NO_DISK,
};

struct plan_candidate {
        uint32_t node; /* index in the node table */
        enum node_state state;
        int64_t available_mib; /* after reservations */
        int64_t left_mib;      /* available - the VM */
        uint64_t heartbeat_age_ms;
        unsigned tier;         /* the node role's place in placement_prefer_roles (0: first) */
        bool disk_known;       /* the node reports its room for VM disks */
        int64_t disk_free_mib; /* that room, after reservations */
        int64_t disk_left_mib; /* disk_free - the VM's disks (vault + allowance) */
        enum cand_verdict verdict;
};

/* Fills cands (n_nodes long) and returns the index of the chosen node in the table, or -1.
 * Pure: reads the table, never changes it. */
long placement_choose(const struct node_table *t, const struct fleetd_config *cfg,
                      const struct plan_request *req, uint64_t now_ms,
                      struct plan_candidate *cands);
/* Evaluates one node alone (the re-check on confirm). */
void placement_check_node(const struct fleet_node *n, const struct fleetd_config *cfg,
                          const struct plan_request *req, uint64_t now_ms,
                          struct plan_candidate *ret);
/* The disk a new VM takes on its node: the vault disk and the copy-on-write allowance. */
static inline uint64_t placement_disk_mib(const struct fleetd_config *cfg, uint64_t vault_disk_mib)
{
        return vault_disk_mib + cfg->disk_cow_allowance_mib;
}
const char *cand_verdict_reason(enum cand_verdict v);
/* The tier of role in policy (placement_prefer_roles: tiers separated by ',', roles of one tier
 * by '+', best first); a role the policy does not name comes after every tier. */
unsigned placement_role_tier(const char *policy, enum roster_role role);
/* 0, or -EINVAL with the first unknown or repeated role named in err. */
int placement_policy_check(const char *policy, char *err, size_t errsize);
static inline int64_t node_available_mib(const struct fleet_node *n)
{
        return n->hb_avail_mib - (int64_t)n->reserved_mib;
}
int plan_request_parse(const char *body, size_t len, unsigned max_depth, struct plan_request *ret,
                       char *err, size_t errsize);

/* vms.c: the VM table (durable rows mirrored in memory) */
struct fleet_vm *vm_table_find(struct fleetd *f, const char *id);
struct fleet_vm *vm_table_find_entity(struct fleetd *f, const char *entity);
struct fleet_vm *vm_table_add(struct fleetd *f, const struct fleet_vm *vm);
void vm_table_free(struct fleetd *f);
void vm_reserve(struct fleetd *f, struct fleet_vm *vm);
void vm_release(struct fleetd *f, struct fleet_vm *vm);
/* The node acknowledged the creation with answer (its JSON body): the reservation lasts until a
 * heartbeat's creation counter reaches the one the answer names. */
void vm_acknowledged(struct fleetd *f, struct fleet_vm *vm, const char *answer);
/* The node listed the VM in the inventory of fetch number fetch, whose creation counter was
 * creations (0: none); holds: the listing shows it holding memory (vm_listing_holds). */
void vm_listed(struct fleetd *f, struct fleet_vm *vm, uint64_t creations, uint64_t fetch,
               bool holds);
/* Whether an inventory's vm object shows a domain that holds its memory (vm_holds_memory). */
bool vm_listing_holds(json_t *v);
/* A start of vm (resume) is about to be sent: its memory is reserved (again) until figures
 * sampled after the start's acknowledgement; no listing made before the call ends counts. */
void vm_reserve_start(struct fleetd *f, struct fleet_vm *vm);
/* The start call is over: answer is the node's body when it said it did it (its counter
 * tells when the figures reflect it), NULL when it refused or gave no clear answer (then an
 * inventory asked for from now on decides). */
void vm_start_done(struct fleetd *f, struct fleet_vm *vm, const char *answer);
/* The creation was given up without a clear answer: the node may hold the VM, so its memory
 * stays reserved until an inventory fetched from now on lists it (then as vm_listed) or lacks
 * it (then released). */
void vm_hold_until_listed(struct fleetd *f, struct fleet_vm *vm);
/* Reserves vm again as if fleetd had just started: what reflects it is not known any more; the
 * node's next inventory (and, for a creation in flight, its acknowledgement) tells. */
void vm_reserve_again(struct fleetd *f, struct fleet_vm *vm);
/* Releases the reservations on node n that its last heartbeat's figures reflect, and those
 * that the inventory of fetch number fetch (0: none) shows to hold nothing; vms_listed is that
 * inventory's vms array (or NULL). */
void vm_settle_node(struct fleetd *f, struct fleet_node *n, uint64_t fetch, json_t *vms_listed);
json_t *vm_to_json(struct fleetd *f, const struct fleet_vm *vm, uint64_t now_ms);
const char *vm_status_name(enum vm_status s);

/* etag.c: the revisions of what operators change, and If-Match */
#define FLEET_ETAG_SIZE 35 /* a quoted BLAKE2b-128 in hex, and its NUL */
struct plan_row;
void fleet_etag(const char *text, size_t len, char buf[FLEET_ETAG_SIZE]);
/* Under f->lock. */
void vm_etag(const struct fleet_vm *vm, char buf[FLEET_ETAG_SIZE]);
void plan_etag(const struct plan_row *p, char buf[FLEET_ETAG_SIZE]);
/* True when an If-Match header (NULL: none) lets a change to the resource tagged etag run. */
bool etag_if_match(const char *header, const char *etag);
/* As etag_if_match; when it does not, a precondition-failed problem in o naming what (and the
 * current tag in its body). */
struct plan_outcome;
bool etag_precondition(const char *if_match, const char *tag, const char *what,
                       struct plan_outcome *o);

/* outcome.c: what a domain call did, for the API edge. The domain says what happened (done, or
 * a negative errno with a problem type and its detail); api_problems.c alone chooses the HTTP
 * status (docs/fleetd.md, "Errors"). */
enum outcome_done {
        OUTCOME_NONE,     /* nothing said yet */
        OUTCOME_OK,       /* done, or already done (an idempotent repeat) */
        OUTCOME_CREATED,  /* a new resource (a plan, a VM) */
        OUTCOME_ACCEPTED, /* started; an operation or a request id follows it */
        OUTCOME_FAILED,   /* err and problem say why */
};
struct plan_outcome {
        enum outcome_done done;
        int err;             /* 0, or a negative errno when done is OUTCOME_FAILED */
        const char *problem; /* the problem type (a docs/fleetd.md slug); NULL on success */
        char detail[512];
        json_t *body;               /* the plan or the VM (new reference) */
        char etag[FLEET_ETAG_SIZE]; /* the resource's revision after the call, or "" */
        long node_status; /* a node's refusal this problem relays (its HTTP status), or 0 */
};
/* Fills o with a problem: a negative errno, its type and the formatted detail. */
void outcome_fail(struct plan_outcome *o, int err, const char *problem, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The HTTP status api_problems.c gives a problem type with err (500 for a type it does not
 * know); for the few records that keep the status beside the type (operations, audit). */
unsigned api_problem_status(const char *type, int err);
/* The HTTP status of an outcome: its problem's, or 200, 201 or 202 for what it did. */
unsigned api_outcome_status(const struct plan_outcome *o);
/* A problem document (RFC 9457) of type with err's status and detail (new reference). */
json_t *api_problem_doc(const char *type, int err, const char *detail);
/* The problem document of a failed outcome (new reference). */
json_t *api_outcome_problem(const struct plan_outcome *o);

/* plans.c: plan, confirm, drop (the operator's placement verbs) */
void plans_create(struct fleetd *f, const struct plan_request *req, const char *actor,
                  struct plan_outcome *ret);
void plans_confirm(struct fleetd *f, const char *plan_id, const char *actor,
                   struct plan_outcome *ret);
void plans_drop(struct fleetd *f, const char *plan_id, const char *actor, struct plan_outcome *ret);
/* As plans_confirm and plans_drop, run only while the plan matches if_match (precondition-failed
 * otherwise). */
void plans_confirm_if(struct fleetd *f, const char *plan_id, const char *actor,
                      const char *if_match, struct plan_outcome *ret);
void plans_drop_if(struct fleetd *f, const char *plan_id, const char *actor, const char *if_match,
                   struct plan_outcome *ret);
void plans_get(struct fleetd *f, const char *plan_id, struct plan_outcome *ret);
/* Plans in creation order (summaries without candidates): {plans, next_after}. */
void plans_list(struct fleetd *f, const char *after, const char *state, unsigned limit,
                struct plan_outcome *ret);

/* dispatch.c: creations and inventory fetches, retried with backoff, off the request threads */
int dispatch_start(struct fleetd *f);
void dispatch_stop(struct fleetd *f);

/* images.c: base images staged from the operator and pushed to nodes (docs/fleetd.md). */
int images_start(struct fleetd *f);
void images_stop(struct fleetd *f); /* waits for the push workers; accepts a stopped state */
/* Under f->lock: 1 the node holds image name, 0 it does not, -1 it never reported its images. */
int fleet_node_image(const struct fleet_node *n, const char *name);
/* Under f->lock: some node holds name, or might (heard from, but never listed its images). */
bool fleet_image_anywhere(struct fleetd *f, const char *name);
json_t *images_fleet_list(struct fleetd *f);
json_t *images_push_get(struct fleetd *f, const char *name); /* NULL: no such push */

/* node_client.c: a streamed PUT of len bytes of fd from offset (no whole-file buffer); progress
 * gets the bytes sent since its last call and aborts the transfer with a negative return. */
int node_client_upload(void *ctx, const char *address, uint16_t port, const char *path, int fd,
                       uint64_t offset, uint64_t len, int (*progress)(void *arg, uint64_t sent),
                       void *arg, long *ret_status, char **ret_body);
void dispatch_wake(struct fleetd *f);
/* One pass of the dispatcher at now (unit tests call this directly). */
void dispatch_run_once(struct fleetd *f, uint64_t now_ms);
/* retire (fleetd's own verb, for a failed VM: 200 with the VM; nothing on the node is touched)
 * runs at once; every other verb runs on the VM's node synchronously: the lifecycle verbs
 * suspend, resume, archive
 * (200 with the VM) and verify (202 with the node's request id). */
void dispatch_vm_verb(struct fleetd *f, const char *vm_id, const char *verb, const char *actor,
                      struct plan_outcome *ret);
/* As dispatch_vm_verb, run only while the VM matches if_match (precondition-failed
 * otherwise). */
void dispatch_vm_verb_if(struct fleetd *f, const char *vm_id, const char *verb, const char *actor,
                         const char *if_match, struct plan_outcome *ret);
/* A verb in two halves, for operations.c: the check (under f->lock; a problem in ret and
 * NULL when refused; else the VM is marked busy), then the node call and its outcome (frees
 * call). Not retire. */
struct verb_call;
struct verb_call *dispatch_verb_begin(struct fleetd *f, const char *vm_id, const char *verb,
                                      const char *if_match, struct plan_outcome *ret);
void dispatch_verb_finish(struct fleetd *f, struct verb_call *call, const char *actor,
                          struct plan_outcome *ret);
/* True with the lifecycle it leads to when verb is a lifecycle verb. */
bool dispatch_verb_leads_to(const char *verb, enum vm_lifecycle *ret);
/* True when verb is one dispatch_vm_verb knows. */
bool dispatch_verb_known(const char *verb);

/* inventory.c */
/* Reconciles a node's inventory (JSON text) with fleetd's records; returns 0 or -EINVAL. */
int inventory_apply(struct fleetd *f, const char *node_id, const char *expected_digest,
                    const char *text, size_t len, char *err, size_t errsize);
const char *fleet_integrity_status(struct fleetd *f, json_t **ret_mismatched);
/* Every (VM, node) pair a node reports while the VM is pinned elsewhere: [{vm_id, entity,
 * pinned_to, reported_by}] (new reference); under f->lock. */
json_t *fleet_misplaced_vms(struct fleetd *f);
/* The nodes that report vm while it is pinned elsewhere (new array); under f->lock. */
json_t *fleet_vm_misplaced_on(struct fleetd *f, const char *vm_id);

/* pin_sign.c: the controller's pin key and the pins it signs at dispatch */
/* Loads state_dir/pin.key (the Ed25519 seed, 0600), creating it at first start, and writes its
 * public half to state_dir/pin.pub for the operator to give the genesis. */
int pin_key_open(struct fleetd *f);
/* True when the roster names this controller's pin key. */
bool pin_key_in_roster(const struct fleetd *f);
/* The signed pin of vm for its node (new reference); NULL when out of memory. Under f->lock. */
json_t *pin_sign_vm(const struct fleetd *f, const struct fleet_vm *vm);

/* node_client.c: the libcurl transport; calls leave from source (an IPv4 address) when set */
void node_client_init(struct fleet_transport *t, const char *source);

/* heartbeat_fast.c: 1 and ret filled when buf is a valid heartbeat it can decode on its own,
 * 0 when the caller must use heartbeat_decode (which may accept or refuse it). */
int heartbeat_decode_fast(const char *buf, size_t len, struct heartbeat *ret);

/* heartbeat_listener.c */
int heartbeat_listener_open(const struct fleetd_config *cfg, int *ret_fd);
void heartbeat_listener_drain(struct fleetd *f);
/* Applies one datagram (with f->lock held): node_table_ingest, then the reservations its
 * figures now reflect are released. Returns what node_table_ingest returned. */
int heartbeat_listener_apply(struct fleetd *f, const char *buf, size_t len, struct in_addr src,
                             uint64_t now_ms, char *err, size_t errsize);

/* roster_watch.c */
/* Reloads the roster when forced or when the file's mtime changed; keeps the old one on error. */
int roster_reload(struct fleetd *f, bool force);

/* metrics.c */
/* One REST request: its route (an api_routes index or METRICS_ROUTE_*), its status code and
 * how long it took. */
void metrics_observe_request(struct fleetd *f, unsigned route, unsigned status, double seconds);
char *metrics_render(struct fleetd *f);

/* audit_push.c: the audit record's key and checkpoints, witnessed by the nodes */
/* Loads (or makes) the key and checks the record against fleetd's own last checkpoints:
 * -EBADMSG (logged, finding by finding) when they disagree, and fleetd does not start. */
int audit_open(struct fleetd *f);
/* The thread that signs a checkpoint when the record grew and pushes it to every node. */
int audit_push_start(struct fleetd *f);
/* One pass of it (unit tests call this directly). */
void audit_push_run_once(struct fleetd *f, uint64_t now_ms);
/* {key, size, checkpoint, witnesses: [{node, held, diverged}]} (new reference). */
json_t *audit_status_json(struct fleetd *f);
/* {witnesses: [{node, answer} | {node, error}]}: each live node's GET /v1/audit-checkpoint,
 * fetched now (one call per node, in turn). */
json_t *audit_witnesses_fetch(struct fleetd *f);
/* True when a node holds a checkpoint this record does not extend, or the record lost entries
 * while fleetd ran. */
bool audit_diverged(struct fleetd *f);
void audit_close(struct fleetd *f);

/* vault_witness.c: the fleet as a witness of every vault's checkpoints */
int vault_witness_open(struct fleetd *f);
/* One inventory entry (under f->lock): evidence, the node-cosigned checkpoint, fleetd's own. */
void vault_witness_on_vm(struct fleetd *f, struct fleet_vm *vm, const json_t *v);
/* Posts fleetd's cosigned checkpoints to the nodes that need them (takes f->lock briefly). */
void vault_witness_push(struct fleetd *f);
/* A Totebox whose last full verification is overdue (wall clock now_ms). */
bool vault_vm_stalled(const struct fleetd *f, const struct fleet_vm *vm, uint64_t now_ms);
/* A clean scheduled verification: counted, audited once per VM per UTC day. */
void vault_note_clean(struct fleetd *f, struct fleet_vm *vm, uint64_t at_ms, json_t *result);
json_t *vault_witness_vm_json(const struct fleetd *f, const struct fleet_vm *vm, uint64_t now_ms);
/* The checkpoint fleetd holds for vm_id (its cosigned note, NUL-terminated in note) and its
 * size: 0, -ENOENT (none), -ENOSPC, -EIO. */
int vault_witness_held(struct fleetd *f, const char *vm_id, char *note, size_t size,
                       uint64_t *ret_size);
/* The vault key fleetd pinned for vm_id (base64, into ret_vault_key when not NULL) and, when
 * node_id is not NULL, the VM re-homed there: the held checkpoint is kept, the node's cosigner key
 * is pinned again at its first checkpoint. 0, -ENOENT, -EIO. */
int vault_witness_rehome(struct fleetd *f, const char *vm_id, const char *node_id,
                         char ret_vault_key[64]);
/* "fork", "rollback", "lying-host", or NULL. */
const char *vault_witness_alarm(const struct fleet_vm *vm);
/* The worst alarm ("ok" when none), the VMs with one, and the stalled ones (under f->lock). */
const char *fleet_vault_status(struct fleetd *f, uint64_t now_ms, json_t **ret_alarms,
                               json_t **ret_stalled);

/* operations.c: long operations (a confirmed creation, a verb on a node), durable, polled at
 * /v1/operations/{id} */
#define OP_ID_LEN 32 /* hex */
/* The operation that follows the creation of vm_id from plan_id (one per plan: a repeated
 * confirm names the same one); o gets 202 and the operation, or a problem. */
void ops_confirmed(struct fleetd *f, const char *plan_id, const char *vm_id, const char *actor,
                   struct plan_outcome *o);
/* Checks verb on vm_id now (a problem in o), then runs it on the VM's node in the
 * background: o gets 202 and the operation. */
void ops_verb_start(struct fleetd *f, const char *vm_id, const char *verb, const char *actor,
                    const char *if_match, struct plan_outcome *o);
/* A task (a deposit, an export, an import) run on its own thread, for actor; it fills its outcome
 * as a verb call does and owns arg. op is its operation, for ops_task_progress (NULL when the
 * operation could not be recorded and the task runs in the caller). */
struct op_call;
typedef void (*ops_task_fn)(struct fleetd *f, void *arg, const char *actor, struct op_call *op,
                            struct plan_outcome *ret);
/* While op's task runs (from the task's thread or one it joins before it returns): done of total
 * bytes, shown as the operation's progress (0-99) and `bytes` {done, total}; stored when the
 * percentage moves. */
void ops_task_progress(struct op_call *op, uint64_t done, uint64_t total);
/* Runs run(f, arg) in the background as operation kind of vm_id: o gets 202 and the operation
 * (or, when it cannot be recorded, run's own outcome, run here). */
void ops_task_start(struct fleetd *f, const char *kind, const char *vm_id, const char *actor,
                    ops_task_fn run, void *arg, struct plan_outcome *o);
/* A call already done with success in o (retire): recorded as a succeeded operation, o then 202
 * and the operation (its body stolen); o unchanged when it cannot be recorded. */
void ops_finished(struct fleetd *f, const char *kind, const char *vm_id, const char *actor,
                  struct plan_outcome *o);
/* The operation that follows image name's push, just started (NULL when it cannot be
 * recorded). */
json_t *ops_image_push(struct fleetd *f, const char *name, const char *actor);
void ops_get(struct fleetd *f, const char *id, struct plan_outcome *o);
/* {operations, next_after}, oldest first. */
void ops_list(struct fleetd *f, const char *after, const char *state, unsigned limit,
              struct plan_outcome *o);
/* At start, after the VMs are loaded: settles what a restart cut short. */
void ops_recover(struct fleetd *f);
/* Waits for the background calls (at shutdown, the REST API stopped). */
void ops_wait_idle(struct fleetd *f);
bool op_id_valid(const char *s);

/* export.c: a Totebox as one file (POST /v1/vms/{id}/export) */
void export_start(struct fleetd *f, const char *vm_id, const char *actor, struct plan_outcome *o);
/* POST /v1/imports {file, node}: a plan (kind import, 201) after the node checked the file and
 * fleetd its checkpoint against the one it witnessed; POST /v1/imports/{id}/confirm runs it. */
void import_plan(struct fleetd *f, const char *body, size_t len, const char *actor,
                 struct plan_outcome *o);
void import_confirm(struct fleetd *f, const char *plan_id, const char *actor,
                    struct plan_outcome *o);
/* DELETE /v1/imports/{id}: the plan is taken out unconfirmed (204); nothing was done, so nothing
 * is audited. A plan already confirmed, dropped or expired is unknown (404). */
void import_drop(struct fleetd *f, const char *plan_id, struct plan_outcome *o);
/* At start, the VMs loaded: each VM's retired_nodes from the audit record (vm.rehomed). */
int export_load_retired(struct fleetd *f);
/* Under f->lock, from an inventory: node_id reports vm, which is pinned elsewhere. True when it
 * is the copy a re-homing left on that node, at rest (archived, not running): no alarm. A
 * retired copy that is not at rest (its node was away at the re-homing, and has started it
 * again) is asked to archive, at most every 30 s, and stays misplaced until it is. */
bool export_retired_copy(struct fleetd *f, struct fleet_vm *vm, const char *node_id,
                         const json_t *v);
/* The fleet's Ed25519 public key (the pin key) as a PEM SubjectPublicKeyInfo, for openssl. */
int export_public_pem(const struct fleetd *f, char *buf, size_t size);

/* api.c */
int api_start(struct fleetd *f);
void api_stop(struct fleetd *f);

/* fleetd.c: start-up and shutdown of everything but the sockets */
int fleetd_open(struct fleetd *f);
void fleetd_close(struct fleetd *f);
