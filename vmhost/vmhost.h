/* vmhost's shared state and the interfaces between its files.
 *
 * Threads: main (signals, heartbeats), the helper's events (virt.c), the agent channels' poll
 * loop (agent_channel.c), the refresher (rebuilds the inventory and its digest from the helper's
 * listing) and the node API. vmhost does not link libvirt: the helper (helper.h) calls it. Locks:
 * ops_lock serialises the verbs (create, start, ...) and may be held across helper calls;
 * helper_lock makes a helper call one request and its answers; state_lock guards the inventory
 * cache and the agent channel table and is never held across a helper call. */
#pragma once
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/config.h"
#include "common/diode_frame.h"
#include "common/heartbeat.h"
#include "common/ident.h"
#include "common/problem.h"
#include "common/image_transfer.h"
#include "common/vm_lifecycle.h"
#include "common/pin.h"
#include "common/roster.h"
#include "common/sth.h"
#include "common/witness_key.h"

#define VM_ID_MAX           IDENT_VM_MAX
#define VM_ENTITY_MAX       IDENT_ENTITY_MAX
#define IMAGE_NAME_MAX      IDENT_IMAGE_MAX
#define REQUEST_ID_MAX      IDENT_REQUEST_MAX
#define VMHOST_XMLNS        "https://totebox.example/xmlns/vm/1"
#define VMHOST_XMLNS_PREFIX "totebox"
#define AGENT_CHANNEL_NAME  "org.totebox.agent.0"
#define AGENT_LINE_MAX      65536
#define VMHOST_POOL_VMS     "totebox-vms"
#define VMHOST_POOL_IMAGES  "totebox-images"

struct vmhost_config {
        char node_id[NODE_ID_MAX + 1];
        char fleet_id[NODE_ID_MAX + 1];
        char fleetd_address[64];
        uint64_t fleetd_port;
        char heartbeat_source[64]; /* source address to bind; empty: let routing choose */
        uint64_t heartbeat_interval_ms;
        char libvirt_uri[512];
        char virt_type[8]; /* kvm, qemu or auto */
        char state_dir[4096];
        uint64_t safety_margin_mib;
        char node_api_listen[256]; /* comma-separated IPv4 addresses */
        uint64_t node_api_port;
        char node_api_allow[256]; /* comma-separated; empty: the roster's controller */
        uint64_t max_body_bytes;
        uint64_t max_record_bytes;   /* the Diode: largest record in or out */
        char roster_file[4096];      /* initial roster until one is pushed */
        char genesis_public_key[64]; /* base64 Ed25519 */
        char wg_interface[32];       /* empty: no WireGuard interface to apply rosters to */
        char mesh_state_dir[4096];   /* totebox-pair's state: genesis.pub and roster.json */
        char audit_key[256];         /* fleetd's audit verifier key (C2SP vkey); empty: pin */
        uint64_t archive_grace_ms;
        char user[33]; /* who vmhost runs as after start, when started as root */
        char log_level[16];
};

#define VMHOST_USER "totebox-vmhost" /* made by the totebox-node package */

extern const struct config_key vmhost_config_table[];

/* sample.c: node figures from /proc */
struct cpu_sample {
        uint64_t total; /* jiffies, all CPUs */
        uint64_t idle;  /* idle + iowait */
};

struct mem_sample {
        uint64_t total_kib;
        uint64_t available_kib;
};

int sample_parse_stat(const char *buf, struct cpu_sample *ret);
int sample_parse_meminfo(const char *buf, struct mem_sample *ret);
/* Utilisation between two samples, 0..100; 0 when no time passed. */
double sample_cpu_percent(const struct cpu_sample *prev, const struct cpu_sample *cur);
int sample_read_cpu(struct cpu_sample *ret);
int sample_read_mem(struct mem_sample *ret);
/* The room for VM disks in dir (fallback when dir is not made yet), in MiB: free space for
 * unprivileged use less what the sparse files in dir may still take. */
int sample_read_disk(const char *dir, const char *fallback, uint64_t *ret_free_mib);

/* heartbeat_sender.c */
struct heartbeat_sender {
        int fd;
        struct sockaddr_in dst; /* the controller's heartbeat address */
        uint64_t epoch;
        char boot[HEARTBEAT_BOOT_LEN + 1]; /* random, drawn at open: names this run */
        uint64_t seq;
        struct cpu_sample last_cpu;
};

int heartbeat_sender_open(struct heartbeat_sender *s, const struct vmhost_config *cfg);
void heartbeat_sender_close(struct heartbeat_sender *s);
/* Points heartbeats at address (dotted quad); 1 when it changed, 0 when not, -EINVAL. */
int heartbeat_sender_set_destination(struct heartbeat_sender *s, const char *address);
/* Samples the node and fills hb (everything but the libvirt fields). */
int heartbeat_sender_sample(struct heartbeat_sender *s, const struct vmhost_config *cfg,
                            struct heartbeat *hb);
int heartbeat_sender_send(struct heartbeat_sender *s, const struct heartbeat *hb);

/* vm_meta.c: the domain metadata element in its own namespace (pin, entity, lifecycle, the
 * vault key once known, the last accepted tree head). */

struct vm_meta {
        char fleet_id[NODE_ID_MAX + 1];
        char node_id[NODE_ID_MAX + 1];
        char entity[VM_ENTITY_MAX + 1];
        char request_id[REQUEST_ID_MAX + 1];
        char image[IMAGE_NAME_MAX + 1];
        char vault_id[33];
        enum vm_lifecycle lifecycle;
        bool has_vault_key;
        uint8_t vault_key[STH_PUBLIC_KEY_LEN];
        bool has_sth;
        uint64_t sth_size;
        uint8_t sth_root[MERKLE_HASH_LEN];
        uint64_t sth_time_ms;
        bool has_pin; /* a pin that parsed; pin_bad when the attribute was there but did not */
        bool pin_bad;
        struct pin pin;
};

/* The element (without namespace declaration prefix handling: libvirt adds it), malloc'd; NULL
 * when a value cannot be written (vm_meta.c is the helper's: vmhost_xml, libxml2's writer). */
char *vm_meta_format(const struct vm_meta *m);
/* Strict: unknown attributes, bad ids or keys are errors. ret untouched on failure. */
int vm_meta_parse(const char *xml, size_t len, struct vm_meta *ret);

/* domain_xml.c (vmhost_xml, the helper's): the domain XML, written with libxml2's xmlTextWriter. */
struct image_info; /* images.h */

struct vm_spec {
        const char *name;
        const char *uuid;      /* may be NULL: libvirt chooses */
        const char *virt_type; /* "kvm" or "qemu" */
        uint64_t memory_mib;
        uint64_t vcpus;
        const struct vm_meta *meta;
        bool in_pool;          /* disks are volumes of VMHOST_POOL_VMS, else files */
        const char *os_volume; /* volume name, or file path when !in_pool */
        const char *vault_volume;
        const char *seed_path;   /* the NoCloud ISO */
        const char *kernel_path; /* NULL: boot from the OS disk */
        const char *initrd_path;
        const char *cmdline;
        const char *channel_path; /* unix socket QEMU binds for the agent channel */
        const char *console_log;
};

/* Returns the domain XML (malloc'd) or NULL on invalid input (a value XML cannot carry: control
 * characters, invalid UTF-8) or ENOMEM. */
char *domain_xml_build(const struct vm_spec *spec);

struct vmhost;

/* storage.c (the helper's): the disks of a VM (pool volumes, or qemu-img files without a storage
 * driver). */
struct vm_disks {
        bool in_pool;
        char os_volume[VM_ID_MAX + 16];
        char vault_volume[VM_ID_MAX + 16];
        char os_path[4200];
        char vault_path[4200];
};

int storage_make_disks(struct vmhost *vh, void *conn, const char *vm_id,
                       const struct image_info *img, uint64_t vault_mib, struct vm_disks *d,
                       char *err, size_t errsize);
/* A dir pool's XML (malloc'd), or NULL when path cannot be written as XML. */
char *storage_pool_xml(const char *name, const char *path);

/* policy.c: the refusals, as pure functions (unit-tested). */
enum refusal {
        REFUSE_NONE = 0,
        REFUSE_PINNED_ELSEWHERE,
        REFUSE_ARCHIVED,
        REFUSE_INSUFFICIENT_MEMORY,
        REFUSE_WRONG_STATE,
        REFUSE_NOT_TOTEBOX,
};

const char *refusal_name(enum refusal r);
enum refusal policy_check_start(const struct vm_meta *m, const char *node_id);
enum refusal policy_check_memory(uint64_t available_mib, uint64_t want_mib, uint64_t margin_mib);
/* auto: kvm only when /dev/kvm is usable and is not the PVM flavour (which cannot boot guests). */
const char *policy_virt_type(const char *configured, bool kvm_usable, bool kvm_pvm);
/* The mode of state_dir (sub "") or of its directory sub. A system daemon's QEMU runs as another
 * user (libvirt-qemu) and opens the disks, base images, kernels and seeds by path; libvirt's DAC
 * driver chowns each such file to that user for the run, never a directory, so state_dir, vms,
 * images and seeds must be searchable by it: 0711 (as libvirt's own /var/lib/libvirt/images),
 * listing nothing. Otherwise (embed, session: QEMU is vmhost's user or the helper's) 0700. */
mode_t policy_state_dir_mode(const char *libvirt_uri, const char *sub);

/* agent_line.c: one line from the agent channel, parsed strictly. */
enum agent_msg_type { AGENT_MSG_REPORT, AGENT_MSG_CONSISTENCY, AGENT_MSG_ERROR };

#define AGENT_MAX_MISMATCHES 256

struct agent_msg {
        enum agent_msg_type type;
        char trigger[16];
        char request_id[REQUEST_ID_MAX + 1];
        char vault_id[65];
        uint8_t public_key[STH_PUBLIC_KEY_LEN];
        struct sth sth;
        uint64_t records, bytes, duration_ms;
        json_t *mismatches; /* report: array of {kind, path, detail}; owned */
        uint64_t from_size, to_size;
        size_t proof_len;
        /* consistency: proof_len hashes (at most MERKLE_MAX_PROOF), malloc'd, never NULL once
         * parsed; owned. On the heap, so that a message fits in a frame beside other things. */
        merkle_hash *proof;
        char detail[512];
        char *checkpoint; /* report: the head as a C2SP checkpoint note, or NULL; owned */
};

int agent_line_parse(const char *line, size_t len, struct agent_msg *ret, char *err,
                     size_t errsize);
void agent_msg_clear(struct agent_msg *m);
bool agent_mismatch_kind_valid(const char *kind);

/* agent_verify.c: the checks on a report, as a state machine without I/O. The host is a
 * witness of the vault's checkpoints (C2SP tlog-witness): it cosigns a checkpoint only once it
 * accepted that head (first use, same head, or a verified consistency proof from the last one)
 * and keeps every refused one, signed by the vault, as evidence. */
#define WITNESS_EVIDENCE_KEPT 16

struct integrity {
        bool has_key;
        uint8_t key[STH_PUBLIC_KEY_LEN];
        bool has_sth;
        struct sth sth; /* last accepted */
        bool pending;   /* waiting for a consistency proof */
        struct sth pending_sth;
        char pending_id[REQUEST_ID_MAX + 1];
        uint64_t checked_at_ms;
        uint64_t malformed;
        uint64_t reports;
        json_t *mismatches;  /* kept: array of {kind, path, detail} */
        bool key_pinned_now; /* set when this report pinned the key (TOFU) */
        bool sth_accepted_now;
        /* the witness */
        const struct witness_key *signer; /* NULL: this host cosigns nothing */
        char *note;                       /* the accepted head's checkpoint + our cosignature */
        char *pending_note;               /* the checkpoint waiting for its proof */
        uint64_t fwd_from;                /* the proof forwarded to fleetd: from this size */
        size_t fwd_len;
        merkle_hash fwd_proof[MERKLE_MAX_PROOF];
        bool fleet_known; /* the size fleetd cosigned last (it says so), for its proof */
        uint64_t fleet_size;
        merkle_hash fleet_root;
        char *fleet_note;
        bool fleet_pending;
        char fleet_rid[REQUEST_ID_MAX + 1];
        json_t *evidence; /* refused checkpoints: [{reason, size, held_size, checkpoint, ...}] */
        uint64_t evidence_total;
        bool witness_changed; /* set when anything above changed (for the inventory and disk) */
};

enum verify_action { VERIFY_DONE, VERIFY_NEED_CONSISTENCY, VERIFY_NEED_FLEET_PROOF };

void integrity_init(struct integrity *in);
void integrity_clear(struct integrity *in);
void integrity_add_mismatch(struct integrity *in, const char *kind, const char *path,
                            const char *detail);
/* Applies a report; VERIFY_NEED_CONSISTENCY means: send a consistency-request with
 * in->pending_id from in->sth.size to in->pending_sth.size. */
enum verify_action integrity_on_report(struct integrity *in, const struct agent_msg *m,
                                       uint64_t now_ms);
/* VERIFY_NEED_FLEET_PROOF: send a consistency-request with in->fleet_rid from in->fleet_size to
 * in->sth.size (the proof fleetd needs from the checkpoint it holds). */
enum verify_action integrity_on_consistency(struct integrity *in, const struct agent_msg *m,
                                            uint64_t now_ms);
/* fleetd's cosigned checkpoint of this vault (its latest): -EBADMSG when it is no checkpoint
 * of this vault. May ask for the proof fleetd needs next. */
enum verify_action integrity_on_fleet_note(struct integrity *in, const char *note, size_t len,
                                           int *ret_err);
json_t *integrity_to_json(const struct integrity *in);
/* The witness part kept across restarts (the cosigned note, the evidence) and back. */
json_t *integrity_witness_save(const struct integrity *in);
void integrity_witness_load(struct integrity *in, const json_t *o);

/* seed.c: the cloud-init NoCloud seed (genisoimage, label cidata). */
int seed_build(const char *path, const char *vm_id, const struct vm_meta *meta, char *err,
               size_t errsize);
/* The same in two halves, so the seed is built while the disks are made. */
int seed_start(const char *path, const char *vm_id, const struct vm_meta *meta, pid_t *ret_pid,
               char *err, size_t errsize);
int seed_wait(pid_t pid, char *err, size_t errsize);

/* The daemon's shared state. */
struct agent_chan;

struct vmhost {
        struct vmhost_config cfg;
        const char *virt_type;          /* resolved: "kvm" or "qemu" */
        atomic_int_fast64_t last_ok_ms; /* monotonic ms of the last successful libvirt call */
        atomic_bool conn_closed;
        atomic_bool stopping;
        pthread_t loop_thread, refresh_thread;
        pthread_mutex_t ops_lock;
        pthread_mutex_t state_lock;
        pthread_cond_t refresh_cond;
        bool refresh_wanted;
        /* inventory cache, under state_lock */
        json_t *vms;    /* sorted by id */
        json_t *images; /* images_summary() at the last refresh */
        char digest[DIGEST_HEX_LEN + 1];
        uint64_t committed_mib;
        uint32_t vm_count;
        uint64_t cache_creations; /* the creation counter read before the listing above */
        /* the creation counter (creations.c): written by creations, starts and resumes under
         * ops_lock */
        atomic_uint_fast64_t creations;
        bool creations_loaded;
        /* agent channels, under state_lock */
        struct agent_chan *chans;
        int chan_wake[2]; /* a pipe that wakes the channels' poll loop (while chan_up) */
        bool chan_up;
        bool chan_retry_now; /* a domain started: connect its channel without waiting */
        pthread_t chan_thread;
        struct roster *roster;  /* the accepted roster, under state_lock */
        uint8_t genesis_pk[32]; /* roster_genesis_key's, read at start (before the drop) */
        bool have_genesis;
        struct witness_key witness; /* cosigns vault checkpoints (state_dir/vault-witness.key) */
        bool have_witness;
        void *http; /* struct MHD_Daemon * */
        /* the privileged helper (helper.c): libvirt and WireGuard; one call at a time */
        bool helper_up;
        int helper_fd;
        int helper_event_fd; /* domain events, up */
        pid_t helper_pid;
        pthread_mutex_t helper_lock;
        /* the export being written (export.c: one at a time, under ops_lock), for
         * GET /v1/vms/{id}/export: its VM ("" when none) under state_lock; the vault disk's bytes
         * read so far over its two passes (hash, then archive) and their total */
        char export_vm[VM_ID_MAX + 1];
        atomic_uint_fast64_t export_done, export_total;
};

/* privdrop.c: after the helper is started, vmhost gives its state directory to cfg.user and drops
 * to it: no capabilities, no_new_privs, a seccomp filter (common/privsep.h). Before any thread. */
int vmhost_privdrop(struct vmhost *vh);

/* virt.c: the domain events from the helper and the refresher (libvirt itself is the helper's). */
int virt_start(struct vmhost *vh);
void virt_stop(struct vmhost *vh);
void virt_touch(struct vmhost *vh);
int64_t virt_age_ms(struct vmhost *vh);
void virt_request_refresh(struct vmhost *vh);

/* creations.c: the node's durable creation counter */
/* Loads the counter and increases it once (a restart counts as a creation); before any refresh. */
int creations_start(struct vmhost *vh);
/* Increases it after a creation request, a start or a resume, durably; with ops_lock held. */
int creations_bump(struct vmhost *vh, uint64_t *ret);
uint64_t creations_current(struct vmhost *vh);

/* inventory.c */
/* images may be NULL or empty: then the digest is that of the VMs alone. */
int inventory_digest(json_t *vms, json_t *images, char hex[DIGEST_HEX_LEN + 1]);
int inventory_refresh(struct vmhost *vh);
/* A new reference to the vm object for id from the cache, or NULL. */
json_t *inventory_get(struct vmhost *vh, const char *id);
struct vmh_domain; /* helper.h: one domain as the helper describes it */
json_t *inventory_vm_json(const struct vmh_domain *dom, const struct vm_meta *m, json_t *integrity,
                          json_t *agent);
int inventory_vm_meta(const struct vmh_domain *dom, struct vm_meta *ret);
/* The helper's listing (a new array of *ret_n domains): -ENOTCONN without libvirt. */
int inventory_list(struct vmhost *vh, uint32_t flags, struct vmh_domain **ret, size_t *ret_n);
/* Writes m as the domain's metadata (live and persistent), through the helper. */
int inventory_set_meta(struct vmhost *vh, const char *id, const struct vm_meta *m);

/* agent_channel.c */
int agent_chan_start(struct vmhost *vh);
void agent_chan_stop(struct vmhost *vh);
void agent_chan_domain_started(struct vmhost *vh, const char *id);
void agent_chan_domain_stopped(struct vmhost *vh, const char *id);
/* Creates the channel state of a Totebox domain from its metadata (pinned key, last tree head). */
void agent_chan_sync(struct vmhost *vh, const char *id, const struct vm_meta *m, bool running);
/* True (and m updated) when the key or the accepted tree head changed since the last call. */
bool agent_chan_take_meta(struct vmhost *vh, const char *id, struct vm_meta *m);
/* New references for the inventory; NULL when no channel state exists. */
json_t *agent_chan_integrity(struct vmhost *vh, const char *id);
json_t *agent_chan_status(struct vmhost *vh, const char *id);
int agent_chan_request_verify(struct vmhost *vh, const char *id, char *ret_request_id, size_t size);
/* fleetd's cosigned checkpoint for id (POST /v1/vms/{id}/witness): -ENOENT (no such channel),
 * -EBADMSG (not this vault's checkpoint); *ret is the witness state. */
int agent_chan_fleet_note(struct vmhost *vh, const char *id, const char *body, size_t len,
                          json_t **ret);

/* The Diode's use of a channel (agent_channel.c; vmhost/diode.c drives it). A waiter gets the
 * answer line to its request_id; a record's meta line and data frames go to its spool file. */
struct diode_wait {
        struct diode_wait *next;
        char request_id[DIODE_ID_MAX + 1];
        pthread_cond_t cond; /* CLOCK_MONOTONIC */
        uint64_t gen;        /* the connection the request went out on */
        json_t *answer;      /* the answer (owned) once done */
        json_t *record;      /* record-read: the "record" line before the frames (owned) */
        int spool_fd;        /* record-read: where the bytes go; -1 otherwise */
        uint64_t spool_max, spooled;
        bool done, dropped, failed;
};

/* Registers w (request_id set) on VM id's connected channel: 0 or -ENOTCONN. */
int agent_chan_wait_add(struct vmhost *vh, const char *id, struct diode_wait *w);
void agent_chan_wait_remove(struct vmhost *vh, const char *id, struct diode_wait *w);
/* 0 when answered, -ECONNRESET when the channel dropped, -ETIMEDOUT. */
int agent_chan_wait(struct vmhost *vh, struct diode_wait *w, uint64_t deadline_mono_ms);
/* Holds the channel for one writer: a dup of its fd while it is still connection gen. Other
 * requests meanwhile wait and go out at agent_chan_write_end. -ECONNRESET. */
int agent_chan_write_begin(struct vmhost *vh, const char *id, uint64_t gen, int *ret_fd);
void agent_chan_write_end(struct vmhost *vh, const char *id, int fd);

/* vms.c: the verbs. Each fills a problem (a negative errno, a type, a detail) on refusal and
 * returns the errno; node_api.c alone chooses the HTTP status (docs/vmhost.md). A call that
 * makes something new returns VMS_CREATED, one that did what was asked (or had done it) 0. */
struct vm_problem {
        int err;
        char type[48];
        char detail[512];
};
#define VMS_CREATED 1

struct vm_create_req {
        char request_id[REQUEST_ID_MAX + 1];
        char vm_id[VM_ID_MAX + 1];
        char entity[VM_ENTITY_MAX + 1];
        char image[IMAGE_NAME_MAX + 1];
        char fleet_id[NODE_ID_MAX + 1];
        uint64_t memory_mib, vcpus, vault_disk_mib;
        bool has_pin;
        struct pin pin; /* signed by the controller (common/pin.h) */
};

int vm_create_req_parse(const char *body, size_t len, struct vm_create_req *ret,
                        struct vm_problem *p);
/* VMS_CREATED created, 0 done before; *ret_vm is a new reference. */
int vms_create(struct vmhost *vh, const struct vm_create_req *req, json_t **ret_vm,
               struct vm_problem *p);
int vms_action(struct vmhost *vh, const char *id, const char *verb, json_t **ret_vm,
               struct vm_problem *p);
void vms_archive_timers(struct vmhost *vh);
/* The domains vmhost's start-up pass (vms_autostart) has still to decide: those libvirt was
 * still settling (its reconnect after a restart holds a job on each domain it had running, and
 * lists it as running even when its QEMU died meanwhile). */
struct autostart_wait {
        bool begun;
        size_t n;
        char (*names)[IDENT_VM_MAX + 1];
};
/* Decides the domains w leaves (all, the first time); returns how many it left for a later
 * listing (at least 1 when it could not list them: all). final: decide every domain as listed,
 * settled or not. */
size_t vms_autostart(struct vmhost *vh, struct autostart_wait *w, bool final);
int vms_problem(struct vm_problem *p, int err, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* node_api.c: the problem types vmhost produces and their HTTP statuses. err 0 in a row matches
 * any errno; a type relayed from a guest agent carries -EREMOTEIO and only the agent's rows (an
 * agent code they lack is 502). */
extern const struct problem_row node_problem_table[];
extern const size_t node_problem_table_len;
const struct problem_row *node_problem_find(const char *type, int err);
/* The status of p (500 for a type the table lacks). */
unsigned node_problem_status(const struct vm_problem *p);

/* audit_witness.c: this node as a witness of fleetd's audit log */
/* POST /v1/audit-checkpoint: 0 with the held state in *ret_state, or a problem
 * (audit-inconsistent / audit-key-mismatch: refused and kept as evidence). */
int audit_witness_accept(struct vmhost *vh, const char *body, size_t len, json_t **ret_state,
                         struct vm_problem *p);
/* GET /v1/audit-checkpoint: {v, node, key, checkpoint, size, received_ms, refused_total,
 * refused: [{reason, received_ms, checkpoint}]} (new reference). */
json_t *audit_witness_state(struct vmhost *vh);

/* images.c: the base-image store. */
struct image_info {
        char name[IMAGE_NAME_MAX + 1];
        char kind[16]; /* "direct-kernel" or "disk" */
        char disk_path[8192];
        char kernel_path[8192]; /* empty for "disk" */
        char initrd_path[8192];
        char cmdline[512];
        uint64_t virtual_size;
};

int images_prepare_dirs(struct vmhost *vh);
int images_lookup(struct vmhost *vh, const char *name, struct image_info *ret);
json_t *images_list(struct vmhost *vh);
int images_import(struct vmhost *vh, const char *body, size_t len, json_t **ret,
                  struct vm_problem *p);
int images_remove(struct vmhost *vh, const char *name, struct vm_problem *p);
/* The import body's and a manifest's parsers, exposed for the fuzz target: name holds
 * IMAGE_NAME_MAX + 1 bytes, path 4000, sum DIGEST_HEX_LEN + 1; path must be absolute. */
int images_parse_import(const char *body, size_t len, char *name, char *path, char *sum,
                        struct vm_problem *p);
int images_manifest_check(const char *path, const char *text, size_t len, struct vm_problem *p);
/* What the store holds, for the inventory: [{name, sha256, size}] sorted by name. New ref. */
json_t *images_summary(struct vmhost *vh);
/* Uploads: GET and PUT /v1/images/{name}/upload (see images.c). begin sets *ret_done (a new
 * reference to the manifest) when the image is already held with that checksum. */
int images_upload_status(struct vmhost *vh, const char *name, const char *hex, json_t **ret,
                         struct vm_problem *p);
int images_upload_begin(struct vmhost *vh, const char *name, const char *hex, uint64_t size,
                        uint64_t offset, struct image_partial *part, json_t **ret_done,
                        struct vm_problem *p);
int images_upload_complete(struct vmhost *vh, const char *name, struct image_partial *part,
                           json_t **ret, struct vm_problem *p);
/* Streams path into a new file dst (O_EXCL) and returns its SHA-256 in hex. */
int images_copy_hash(const char *src, const char *dst, uint64_t max_bytes,
                     char hex[DIGEST_HEX_LEN + 1]);

/* export.c: a Totebox as one file, state_dir/exports/{id}.tar (see export.c) */
/* POST /v1/vms/{id}/export: {manifest (fleetd's record), checkpoint}: 200 with {file, size,
 * sha256, blake2b_256, resumed_bytes}, or a problem (409 vm-not-stopped). */
int export_write(struct vmhost *vh, const char *id, const char *body, size_t len, json_t **ret,
                 struct vm_problem *p);
/* POST /v1/vms/{id}/export-signature: {signature} over {id}.tar.sha256, checked under the
 * roster's controller key, written to {id}.tar.sig. */
/* GET /v1/vms/{id}/export: {vm_id, done_bytes, total_bytes} of the export of id being written
 * now; -ENOENT (no-export) when none is. */
int export_progress(struct vmhost *vh, const char *id, json_t **ret, struct vm_problem *p);
int export_sign(struct vmhost *vh, const char *id, const char *body, size_t len, json_t **ret,
                struct vm_problem *p);
/* POST /v1/imports/inspect {file}: checks exports/FILE (signature, checksum, layout) and
 * answers {file, size, sha256, manifest, checkpoint}. */
int export_inspect(struct vmhost *vh, const char *body, size_t len, json_t **ret,
                   struct vm_problem *p);
/* POST /v1/imports {file, create}: the same checks, the vault disk copied into vms/ (never over
 * one), then the VM created as POST /v1/vms does (the pin must name this node). */
int export_import(struct vmhost *vh, const char *body, size_t len, json_t **ret,
                  struct vm_problem *p);

/* roster_update.c */
int roster_update_start(struct vmhost *vh);
/* The controller's pin key and the fleet id from the current roster, only when the roster
 * verifies under the genesis key; -ENOKEY otherwise. */
int roster_pin_key(struct vmhost *vh, uint8_t ret_pk[32], char ret_fleet_id[NODE_ID_MAX + 1]);
int roster_update_apply(struct vmhost *vh, const char *body, size_t len, json_t **ret,
                        struct vm_problem *p);
/* The WireGuard side: applies r's peers to cfg.wg_interface (a no-op when empty). */
int roster_apply_wireguard(struct vmhost *vh, const struct roster *r);
/* The genesis public key: the one read at start, else the config's, else the mesh state's
 * genesis.pub; -ENOKEY. */
int roster_genesis_key(const struct vmhost *vh, uint8_t pk[32]);
bool roster_update_allowed(struct vmhost *vh, const char *addr);
/* True when addr is the mesh address of a node of the current roster. */
bool roster_member_address(struct vmhost *vh, const char *addr);

/* pin_gate.c: the one check every start path makes (create, start, resume). 0 when the pin
 * verifies under the roster's controller key and names this fleet, this VM (the domain name),
 * this node id, this node's own WireGuard key, the entity and the image; else a problem:
 * pinned-elsewhere when it names another node, else pin-refused with err (-EACCES where a
 * request brings the pin: 403; -EPERM where a start finds it on the domain: 409). */
int pin_gate_check(struct vmhost *vh, const char *vm_id, const struct pin *pin, bool pin_bad,
                   const char *entity, const char *image, int err, struct vm_problem *p);
/* This node's WireGuard public key (base64): from wg_interface when set, else the private key
 * in mesh_state_dir/wg.key; -ENOKEY when neither is readable. */
int pin_gate_own_wg_key(struct vmhost *vh, char ret[WG_KEY_B64_LEN + 1]);

/* diode.c: records in and out of a running Totebox over its own agent channel */
#define DIODE_LIST_LIMIT 100
#define DIODE_NAME_LIMIT 200 /* the agent's DIODE_NAME_MAX */

struct diode_deposit_req {
        char vm_id[VM_ID_MAX + 1];
        char deposit_id[DIODE_ID_MAX + 1];
        char name[256];
        uint64_t size, supersedes;
        uint8_t hash[32]; /* BLAKE2b-256 of the spooled bytes */
};

/* VMS_CREATED and the checked receipt, or a problem. data_fd holds the record's size bytes. */
int diode_deposit(struct vmhost *vh, const struct diode_deposit_req *req, int data_fd,
                  json_t **ret_receipt, struct vm_problem *p);
int diode_list(struct vmhost *vh, const char *id, uint64_t after, uint64_t limit, json_t **ret,
               struct vm_problem *p);
/* 0: the record's bytes are in spool_fd (from offset 0) and *ret_record is its checked entry,
 * proof and head. */
int diode_read(struct vmhost *vh, const char *id, uint64_t seq, int spool_fd, json_t **ret_record,
               struct vm_problem *p);

/* node_api.c */
int node_api_start(struct vmhost *vh);
void node_api_stop(struct vmhost *vh);
bool node_api_address_allowed(const char *allow_list, const char *addr);
