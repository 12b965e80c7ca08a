/* totebox-agent's internal API: the vault (skeleton, key, state), the ledger (JSON Lines, one
 * entry per sealed record), sealing, full verification, the host channel and reports. One file
 * per concern; see docs/agent.md for the formats and the design. */
#pragma once
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <sodium.h>

#include "common/config.h"
#include "common/diode_frame.h"
#include "common/merkle.h"
#include "common/sth.h"

#define AGENT_HASH_LEN        32   /* BLAKE2b-256 content hash, as `b2sum -l 256` */
#define LEDGER_LINE_MAX       1024 /* longest ledger line accepted */
#define LEDGER_PATH_MAX       240  /* "assets/" + sequence + sanitized name */
#define LEDGER_FILE           "ledger.jsonl"
#define AGENT_STATE_DIR       ".totebox-agent"
#define AGENT_MISMATCH_MAX    10000 /* kept in memory; the rest are only counted */
#define AGENT_REPORT_MISMATCH 48    /* sent in one report line (65536 bytes at most) */
#define CHANNEL_LINE_MAX      65536
#define CHANNEL_ID_MAX        128
/* What vault_open_regular returns for a path that exists but is not a regular file (a FIFO, a
 * device, a directory): no open(2) or fstat(2) returns it, so it cannot be mistaken. */
#define AGENT_ENOTREG EMEDIUMTYPE

/* ---- configuration (config.c) ---- */
struct agent_config {
        char vault_dir[4096];
        char channel[4096];
        char key_file[4096];
        char vault_id[128];
        uint64_t verify_interval_ms;
        uint64_t scan_interval_ms;
        uint64_t verify_threads;
        uint64_t queue_max;
        uint64_t max_record_bytes;
        uint64_t seal_batch;
        char log_level[16];
};
extern const struct config_key agent_config_table[];

/* ---- mismatches (mismatch.c) ---- */
struct mismatch {
        const char *kind; /* one of the contract's kinds, a string literal */
        char path[LEDGER_PATH_MAX + 16];
        char detail[256];
};

struct mismatch_list {
        struct mismatch *items;
        size_t n, cap;
        uint64_t total; /* including those beyond AGENT_MISMATCH_MAX */
};

void mismatch_list_init(struct mismatch_list *l);
void mismatch_list_done(struct mismatch_list *l);
void mismatch_list_clear(struct mismatch_list *l);
void mismatch_add(struct mismatch_list *l, const char *kind, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
size_t mismatch_count_kind(const struct mismatch_list *l, const char *kind);
bool mismatch_has_ledger_kind(const struct mismatch_list *l);

/* ---- ledger entries and the ledger file (ledger.c) ---- */
enum ledger_protect { LEDGER_PROTECT_IMMUTABLE, LEDGER_PROTECT_READ_ONLY };

struct ledger_entry {
        uint64_t seq;
        char time[40];
        char path[LEDGER_PATH_MAX + 1];
        uint64_t size;
        uint8_t hash[AGENT_HASH_LEN];
        uint64_t supersedes; /* 0 when none */
        enum ledger_protect protect;
        uint8_t prev[32]; /* SHA-256 of the previous line's bytes; zeros for the first */
};

/* Parses one line (without its newline). 0, or -EINVAL with err naming the field. */
int ledger_entry_parse(const char *line, size_t len, struct ledger_entry *ret, char *err,
                       size_t errlen);
/* The two halves of ledger_entry_parse: the canonical layout only (fast, no error text), and
 * any valid JSON object with the entry's keys (jansson). Exposed for tests and fuzzing. */
int ledger_entry_parse_canonical(const char *line, size_t len, struct ledger_entry *ret);
int ledger_entry_parse_json(const char *line, size_t len, struct ledger_entry *ret, char *err,
                            size_t errlen);
/* Formats e canonically (no newline) into buf; returns the length or -ENOSPC. */
int ledger_entry_format(const struct ledger_entry *e, char *buf, size_t size);
void ledger_line_hash(const char *line, size_t len, uint8_t ret[32]);
/* Asset paths are "assets/NAME" with NAME of [A-Za-z0-9._-], no leading dot. */
bool ledger_path_valid(const char *path);
/* The path rule of an entry: "assets/" + its own seq as "%08" PRIu64 + "-" + NAME, so no two
 * entries can name one asset and an asset's name says which entry recorded it. */
bool ledger_path_matches_seq(const char *path, uint64_t seq);

/* What full verification keeps of an entry that parsed (the path index): about 60 bytes plus
 * the path, where a struct ledger_entry is about 400. Lines that do not parse keep nothing. */
struct ledger_record {
        uint64_t seq;
        uint64_t size;
        uint64_t line; /* 0-based line index in the file */
        uint8_t hash[AGENT_HASH_LEN];
        uint32_t path_off; /* into ledger.paths: "assets/..." NUL-terminated */
        uint8_t protect;   /* enum ledger_protect */
};

#define LEDGER_MARKS 4

/* Two uses. The daemon's copy (seq_only) keeps every line's leaf hash and sequence number, for
 * consistency proofs (40 bytes a line). Full verification keeps no per-line array at all: the
 * records of entries that parsed, the Merkle frontier, and the roots at the sizes it asked for
 * with ledger_mark() before loading; so its memory is bounded by the tree's frontier and the path
 * index, not by the ledger's length. */
struct ledger {
        struct ledger_record *recs; /* verification: entries that parsed, in file order */
        size_t nrecs, recs_cap;
        char *paths; /* the records' paths */
        size_t paths_len, paths_cap;
        uint64_t *seqs;      /* seq_only: one per kept line (0: did not parse) */
        bool seq_only;       /* the daemon's copy: leaves and seqs */
        merkle_hash *leaves; /* seq_only: one per kept line, over the line's exact bytes */
        size_t n, cap;       /* n: lines; cap: of seqs/leaves */
        /* seq_only: the first kept lines (kept <= n); lines from keep_max on are not kept, so
         * a hostile ledger past the signed head costs the daemon nothing per line either */
        size_t kept;
        uint64_t keep_max;
        struct merkle_frontier frontier;
        uint64_t mark_size[LEDGER_MARKS]; /* roots remembered while loading */
        merkle_hash mark_root[LEDGER_MARKS];
        size_t nmarks;
        /* set before loading: lines from signed_size on are reported `unsigned` (UINT64_MAX:
         * no valid signed head to compare with); pending_leaf: an interrupted seal's lines,
         * [k][protect] the leaf of the k-th line past the head (owned) */
        uint64_t signed_size;
        size_t npending;
        merkle_hash (*pending_leaf)[2];
        uint64_t first_immutable_line; /* UINT64_MAX: no entry says "immutable" */
        uint8_t last_line_hash[32];
        uint64_t next_seq;  /* one above the highest sequence seen */
        uint64_t bytes;     /* sum of recorded sizes */
        uint64_t file_size; /* bytes of the file as loaded and appended to */
        bool ends_clean;    /* empty or ends with a newline */
        bool exists;
};

void ledger_init(struct ledger *l);
uint64_t ledger_seq_at(const struct ledger *l, size_t i);
const char *ledger_record_path(const struct ledger *l, const struct ledger_record *r);
void ledger_done(struct ledger *l);
/* Asks for the root at size to be kept while loading (at most LEDGER_MARKS sizes). */
void ledger_mark(struct ledger *l, uint64_t size);
/* Reads the ledger file at path. Structural problems become mismatches (edited, deleted,
 * reordered, truncated, unsigned); an unreadable file is an error (-errno, AGENT_ENOTREG). */
int ledger_load(struct ledger *l, const char *path, struct mismatch_list *mm);
/* Adds one formatted line (already written to disk) to the in-memory ledger: O(log n). */
int ledger_push(struct ledger *l, const struct ledger_entry *e, const char *line, size_t len);
/* The root of the first size lines: 0, or -ENOENT when neither kept leaves nor a mark has it. */
int ledger_root(const struct ledger *l, uint64_t size, merkle_hash ret);

/* ---- the vault on disk (vault.c) ---- */
struct vault {
        char dir[4096];
        int dir_fd, inbox_fd, assets_fd, ledger_dir_fd, state_fd;
        int ledger_fd; /* O_APPEND writer; -1 in read-only mode */
        bool read_only;
        bool copied; /* verify --copied: a file copy of the vault, whose inode flags were lost */
        bool ledger_append_only; /* FS_APPEND_FL is set on the ledger (as found, not vault.json) */
        uid_t owner_uid;         /* the owner of the state directory: everything is the agent's */
        gid_t owner_gid;
        bool have_key;
        uint8_t pk[STH_PUBLIC_KEY_LEN];
        uint8_t sk[STH_SECRET_KEY_LEN];
        struct sth last_sth; /* the stored tree head (size 0 with no signature: none) */
        bool have_sth;
        struct ledger ledger;
        bool intent_pending; /* a seal intent is stored and not yet resolved */
        /* The trust anchor: every line of the in-memory ledger is covered by the stored signed
         * tree head or was appended by this agent. Only then is a head stored or a record
         * sealed; otherwise head_why says why, and the old head is kept as evidence. */
        bool head_ok;
        /* lines past the head when the lines it covers match it: maybe an interrupted seal's */
        size_t head_past;
        unsigned seal_batch; /* records one seal may carry (1..SEAL_BATCH_MAX) */
        char head_why[200];
        /* writable mode: full verification's fresh read of the ledger file, to compare with
         * the ledger above; empty between verifications (here, not on the stack: the Merkle
         * frontier alone is 2 KiB) */
        struct ledger reread;
};

/* Opens (and in writable mode creates) the skeleton, the key and the ledger. key_file "" means
 * DIR/.totebox-agent/vault.key. err gets a one-line reason on failure. */
int vault_open(struct vault *v, const char *dir, const char *key_file, bool read_only,
               struct mismatch_list *mm, char *err, size_t errlen);
void vault_close(struct vault *v);
/* Signs a tree head over the whole ledger now; stores it when store is true. Storing is
 * refused (-ENOTRECOVERABLE) unless head_ok: a ledger inconsistent with the last signed head is
 * evidence, never covered by a new head. */
int vault_sign_sth(struct vault *v, uint64_t time_ms, bool store, struct sth *ret);
/* The head a report carries: a fresh one (stored) when head_ok, else the stored head unchanged,
 * else an unstored head of the empty tree. */
int vault_report_sth(struct vault *v, uint64_t time_ms, struct sth *ret);
/* Checks the in-memory ledger against the stored signed head; sets head_ok / head_why. */
void vault_check_head(struct vault *v);
/* openat(dir_fd, name, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC) that never blocks on a FIFO
 * or a device and returns only a regular file: fd, -errno, or -AGENT_ENOTREG. */
int vault_open_regular(int dir_fd, const char *name, int flags);
/* strerror(-r), with "not a regular file" for -AGENT_ENOTREG. */
const char *agent_strerror(int r);
/* Best effort: sets FS_IMMUTABLE_FL (or FS_APPEND_FL) on fd. 0 when set. */
int vault_set_flag(int fd, int flag);
int vault_get_flags(int fd, int *ret_flags);
/* Reads DIR/.totebox-agent/sth.json into s (signature unchecked). */
int vault_sth_load(int state_fd, struct sth *s);
/* The tree-head loader's parser (sth.json's text, strict keys and types); exposed for fuzzing. */
int vault_sth_parse(const char *buf, size_t len, struct sth *ret);
int vault_sth_format(const struct sth *s, char *buf, size_t size);
/* Writes a small file in the state directory atomically and durably (temporary name, fsync,
 * rename, fsync of the directory). */
int vault_write_state(int state_fd, const char *name, const void *data, size_t len, mode_t mode);
int sth_to_json_fields(const struct sth *s, char *root_hex, char *sig_b64);

/* ---- privilege (privilege.c) ---- */
/* Capability lists ending in -1: what run/seal and verify keep. */
extern const int agent_caps_daemon[];
extern const int agent_caps_verify[];
/* Keeps only the listed capabilities (of those held) in every set, clears the bounding set of the
 * rest where permitted, locks the securebits and sets no_new_privs. ret_kept: what remains. */
int agent_drop_privileges(const int *keep, uint64_t *ret_kept, char *err, size_t errlen);

/* ---- fault injection for crash tests (fault.c) ---- */
/* TOTEBOX_AGENT_CRASH_AT=POINT[:N]: true the Nth time POINT is reached. */
bool agent_fault_hit(const char *point);
void agent_fault_die(void) __attribute__((noreturn));
/* SIGKILLs the process when agent_fault_hit(point). */
void agent_fault_point(const char *point);

/* ---- the seal intent (intent.c) ---- */
#define SEAL_BATCH_MAX 256 /* records one seal (one intent, one ledger write) may carry */

/* One record of a seal: its ledger entry (protect is decided after the move and stored as
 * "immutable"; prev is the planned chain, recovery recomputes it from the ledger) and its name in
 * the inbox. */
struct seal_intent {
        struct ledger_entry e;
        char inbox[256];
};

/* The intent of one seal of n records (1..SEAL_BATCH_MAX) with consecutive sequence numbers. */
struct seal_intent_set {
        struct seal_intent *items; /* owned; intent_set_done frees */
        size_t n;
        uint8_t signature[64]; /* the vault key's, over everything before it (intent_load checks) */
        size_t signed_len;
};

int intent_store(int state_fd, const struct seal_intent *items, size_t n,
                 const uint8_t sk[STH_SECRET_KEY_LEN]);
/* -ENOENT when there is none, -EINVAL when it does not parse, -AGENT_ENOTREG, -EKEYREJECTED
 * when pk (NULL: no key to check with) did not sign it. ret is untouched on failure. */
int intent_load(int state_fd, const uint8_t *pk, struct seal_intent_set *ret);
/* The intent file's parser (exposed for fuzzing). ret is untouched on failure. */
int intent_parse(const char *buf, size_t len, struct seal_intent_set *ret);
void intent_set_done(struct seal_intent_set *s);
/* Whether assets/NAME is one of the set's assets (s may be NULL). */
bool intent_set_has_asset(const struct seal_intent_set *s, const char *name);
int intent_remove(int state_fd);
/* Renames an intent that cannot be acted on to intent.bad (kept as evidence). */
int intent_set_aside(int state_fd);

/* ---- sealing (seal.c) ---- */
struct seal_result {
        size_t sealed;
        size_t skipped; /* still being written, not regular, or refused */
        size_t failed;
};

/* Seals every eligible file in the inbox. max_bytes bounds one record. */
int seal_scan_inbox(struct vault *v, uint64_t max_bytes, struct seal_result *ret,
                    struct mismatch_list *log);
/* Makes a moved record read-only and immutable where allowed, durably; sets e->protect. Shared
 * by sealing and recovery. */
int seal_protect(int fd, struct ledger_entry *e);
/* Appends line[from..len) and a newline with one write() and a syncfs, then adds e to the
 * in-memory ledger. from > 0 completes a torn line this agent started. */
int seal_append_line(struct vault *v, const struct ledger_entry *e, const char *line, size_t len,
                     size_t from);
/* Signs and stores a tree head over the in-memory ledger (refused unless head_ok). */
int seal_store_head(struct vault *v);
/* Completes or abandons a seal cut short by a crash (recover.c); called before every inbox pass.
 * Notes what it did in log (kinds "seal-recovered", "seal-abandoned", "seal-failed"). */
int seal_recover(struct vault *v, struct mismatch_list *log);
/* Splits "NAME.supersedes-N" into the kept name and N; returns 0 when there is no suffix. */
uint64_t seal_parse_supersedes(const char *name, char *ret_name, size_t size);
/* What a deposit's content must hash to; known: the agent hashed it as it wrote inode (dev,
 * ino) of size bytes, so that file need not be read again. */
struct seal_expect {
        uint8_t hash[AGENT_HASH_LEN];
        bool known;
        dev_t dev;
        ino_t ino;
        uint64_t size;
};

/* Seals one named inbox file now (the Diode's deposits, which wait in the inbox under a dot-name
 * the scanner skips). plan_name names the asset as an inbox name would ("NAME" or
 * "NAME.supersedes-N"); -EBADMSG when the content's hash is not expect's (nothing stored). */
int seal_named(struct vault *v, const char *inbox_name, const char *plan_name, uint64_t max_bytes,
               const struct seal_expect *expect, struct ledger_entry *ret);
bool seal_supersedes_valid(const struct vault *v, uint64_t seq);

/* ---- full verification (verify.c) ---- */
struct verify_result {
        uint64_t records;
        uint64_t bytes;
        uint64_t duration_ms;
        struct mismatch_list mm;
};

/* Full check of an open vault: ledger structure (already in mm from loading), every asset
 * re-hashed on threads workers (0 = one per online CPU), flags, unrecorded files, and the stored
 * signed tree head. trusted_pk / trusted_sth (may be NULL) come from whoever keeps the last
 * accepted state (the host, or an operator's --public-key/--trusted-sth). */
int verify_vault(struct vault *v, unsigned threads, const uint8_t *trusted_pk,
                 const struct sth *trusted_sth, struct verify_result *ret);
/* The same; trusted_checked: trusted_sth's size and root come from a note whose signature the
 * caller checked (a C2SP checkpoint), so only its size and root are compared. */
int verify_vault_at(struct vault *v, unsigned threads, const uint8_t *trusted_pk,
                    const struct sth *trusted_sth, bool trusted_checked, struct verify_result *ret);
void verify_result_done(struct verify_result *r);
/* Hashes a file with BLAKE2b-256; exposed for the seal path and tests. */
int verify_hash_fd(int fd, uint8_t ret[AGENT_HASH_LEN], uint64_t *ret_size);

/* ---- channel requests and reports (request.c, report.c) ---- */
enum agent_request_type { AGENT_REQ_CONSISTENCY, AGENT_REQ_VERIFY };

struct agent_request {
        enum agent_request_type type;
        char request_id[CHANNEL_ID_MAX + 1];
        uint64_t from_size, to_size;
};

/* Parses one host line. On -EINVAL, err says why and ret->request_id holds the id when one
 * could be read (so the error reply can name it). */
int agent_request_parse(const char *line, size_t len, struct agent_request *ret, char *err,
                        size_t errlen);

/* Each returns a malloc'ed JSON line without the newline, or NULL. */
/* sk: the vault key (seed || public key), which also signs the report's checkpoint note. */
char *report_build(const char *trigger, const char *request_id, const char *vault_id,
                   const uint8_t sk[STH_SECRET_KEY_LEN], const struct sth *sth,
                   const struct verify_result *vr);
char *report_build_consistency(const char *request_id, uint64_t from, uint64_t to,
                               const merkle_hash *proof, size_t len);
char *report_build_error(const char *request_id, const char *detail);
/* The consistency answer for a request against the in-memory ledger; NULL + err on refusal. */
char *report_answer_consistency(const struct ledger *l, const struct agent_request *req, char *err,
                                size_t errlen);

/* ---- the host channel (channel.c) ---- */
#define CHANNEL_FRAME_DATA (64u * 1024) /* record bytes per outgoing data frame */

struct channel {
        char path[4096];
        int fd;
        bool is_socket;
        uint64_t retry_at_ms;
        char **queue; /* ring of lines, each ending in '\n' */
        size_t q_head, q_count, q_max, q_off;
        uint64_t dropped;
        struct diode_decoder dec; /* incoming lines and data frames */
        /* one outgoing record (a record-read answer), sent as data frames between lines */
        int src_fd;
        uint64_t src_off, src_size;
        char src_id[DIODE_ID_MAX + 1];
        char *src_end; /* the line queued once the last frame is out */
        uint8_t *fbuf; /* the frame being written */
        size_t flen, foff;
};

int channel_init(struct channel *c, const char *path, size_t queue_max);
void channel_done(struct channel *c);
/* Opens or reconnects when due; never blocks. 0 when open. */
int channel_ensure_open(struct channel *c, uint64_t now_ms);
/* Queues line (copied, newline added). When the queue is full the oldest line is dropped. */
int channel_send(struct channel *c, const char *line);
/* Writes what it can without blocking. */
int channel_flush(struct channel *c, uint64_t now_ms);
short channel_poll_events(const struct channel *c);
/* Closes after a hang-up or error; reopened by channel_ensure_open a second later. */
void channel_reset(struct channel *c, uint64_t now_ms);
/* Reads what is there; calls ops->line for each complete line (NULL for an over-long one) and
 * ops->data for data frames. */
int channel_read(struct channel *c, uint64_t now_ms, const struct diode_frame_ops *ops, void *ctx);
/* Streams fd's size bytes as data frames named id, then queues end_line (copied). Takes fd.
 * -EBUSY while another record is being sent. */
int channel_send_stream(struct channel *c, int fd, uint64_t size, const char *id,
                        const char *end_line);

/* ---- the Diode (diode.c): deposits, listing and reading records, on the host's command ---- */
#define DIODE_NAME_MAX 200 /* bytes of a deposit's name */
#define DIODE_LIST_MAX 100 /* records in one record-list answer */
#define DIODE_WBUF     (1u << 20)

struct diode_deposit {
        bool active;
        char id[DIODE_ID_MAX + 1];
        char request_id[CHANNEL_ID_MAX + 1];
        char plan_name[DIODE_NAME_MAX + 32]; /* NAME or NAME.supersedes-N */
        uint64_t size, received;             /* received: bytes taken, written or in wbuf */
        uint8_t hash[AGENT_HASH_LEN];
        int fd;        /* the part file */
        uint8_t *wbuf; /* bytes not yet written: a port read is a page, a write per page costs */
        size_t wlen;   /* they sit at received - wlen */
        crypto_generichash_state hs; /* over the bytes as they were written */
        dev_t dev;                   /* the part file's inode */
        ino_t ino;
};

struct diode {
        struct vault *v;
        struct channel *ch;
        uint64_t max_record_bytes;
        struct diode_deposit dep;
};

void diode_init(struct diode *d, struct vault *v, struct channel *ch, uint64_t max_record_bytes);
void diode_done(struct diode *d);
/* A host line: 0 when it is not a Diode request (the caller parses it), 1 handled, 2 handled and
 * a record was sealed (the caller sends a seal report). */
int diode_on_line(struct diode *d, const char *line, size_t len);
void diode_on_data(struct diode *d, const char *id, uint64_t offset, const uint8_t *p, size_t n,
                   bool last);
/* The stream is out of step (a bad frame header, the channel dropped): the deposit stops; its
 * part file stays for a resume. */
void diode_abort(struct diode *d, const char *why);

/* ---- subcommands ---- */
int agent_cmd_run(int argc, char **argv);
int agent_cmd_verify(int argc, char **argv);
int agent_cmd_seal(int argc, char **argv);
