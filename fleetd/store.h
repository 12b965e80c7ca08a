/* fleetd's durable state: one SQLite database in WAL mode holding only what fleetd alone knows
 * (tokens, plans, confirmed VMs and their pins, the audit record). Shared by fleetd and fleetctl,
 * which opens the same file for the commands that work on the state directory. */
#pragma once
#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/merkle.h"
#include "fleetd/fleetd.h"

#define STORE_FILE     "fleetd.db"
#define TOKEN_NAME_MAX 48
#define TOKEN_PREFIX   "tbx_"
#define TOKEN_TEXT_LEN (4 + 43) /* prefix + base64url of 32 bytes, no padding */
#define AUDIT_HASH_HEX 64

struct store {
        sqlite3 *db;
        pthread_mutex_t mu; /* one writer at a time inside this process; taken last */
        char last_hash[AUDIT_HASH_HEX + 1];
        uint64_t last_seq;
};

struct plan_row {
        char id[PLAN_ID_LEN + 1];
        struct plan_request req;
        char node_id[NODE_ID_MAX + 1];
        char state[16]; /* open, confirmed, dropped */
        char vm_id[VM_ID_MAX + 1];
        uint64_t created_ms, expires_ms; /* wall clock */
        char *body;                      /* the plan as answered (malloc'd) */
};

/* The schema version this build writes (PRAGMA user_version). store_open migrates an older
 * store step by step, each step in its own transaction; a newer one is -EPROTONOSUPPORT. */
#define STORE_SCHEMA_VERSION 3

/* Opens (creating when absent, mode 0700 dir / 0600 file) dir/fleetd.db, migrating it. */
int store_open(const char *dir, struct store **ret);
/* The schema version of dir/fleetd.db without changing it; -ENOENT when there is none. */
int store_file_version(const char *dir, int *ret);
/* What the migration to version did (for logs and docs), NULL outside 1..STORE_SCHEMA_VERSION. */
const char *store_migration_what(int version);
/* meta: a value per key ("fleet_id"). get: -ENOENT when unset. claim: sets key to value when
 * unset; the value held is in ret_held either way, and -EXDEV when it differs from value. */
int store_meta_get(struct store *s, const char *key, char *buf, size_t size);
int store_meta_claim(struct store *s, const char *key, const char *value, char *ret_held,
                     size_t size);
void store_close(struct store *s);
int store_begin(struct store *s);  /* takes s->mu and BEGIN IMMEDIATE */
int store_commit(struct store *s); /* COMMIT and releases s->mu */
void store_rollback(struct store *s);

/* Plans (inside or outside a transaction). */
int store_plan_insert(struct store *s, const struct plan_row *p);
/* Fills ret (ret->body malloc'd); -ENOENT when absent. */
int store_plan_get(struct store *s, const char *id, struct plan_row *ret);
int store_plan_set_state(struct store *s, const char *id, const char *state, const char *vm_id);
void plan_row_done(struct plan_row *p);
/* Calls fn for at most limit plans in creation order, after the plan named after (NULL: from
 * the first), whose state is state (NULL: any; "expired" is an open plan past its expiry at
 * now_ms, and "open" one that is not); ret->body is not filled. */
int store_plan_list(struct store *s, const char *after, const char *state, uint64_t now_ms,
                    unsigned limit, int (*fn)(void *ctx, const struct plan_row *p), void *ctx);
/* Drops the stored answers (candidate lists) of plans never confirmed that expired before
 * before_ms; their rows stay. Returns how many. */
int store_plan_prune(struct store *s, uint64_t before_ms);

/* VMs. */
int store_vm_insert(struct store *s, const struct fleet_vm *vm);
int store_vm_update(struct store *s, const struct fleet_vm *vm);
/* Records vm's stored fields and, when kind is not NULL, its audit entry (subject vm->id, detail
 * stolen) in one transaction: a crash keeps both or neither. */
int store_vm_update_audited(struct store *s, const struct fleet_vm *vm, const char *kind,
                            const char *actor, json_t *detail);
/* The same for a re-homing (import): vm->node_id too, audited vm.rehomed (detail stolen). */
int store_vm_rehome_audited(struct store *s, const struct fleet_vm *vm, const char *actor,
                            json_t *detail);
/* Calls fn for every stored VM, in creation order. */
int store_vm_load(struct store *s, int (*fn)(void *ctx, const struct fleet_vm *vm), void *ctx);

/* Operations (operations.c): id, state and the operation's JSON document, in creation order. */
/* 1 when inserted, 0 when an operation of that id exists (unchanged), or a negative errno. */
/* Import plans (fleetd/export.c), kept until confirmed or expired so that a restart between
 * plan and confirm loses none. put: -ENOSPC when max plans are open (unexpired) at now_ms.
 * take: the plan's doc, removed in the same statement (one confirmation per plan); -ENOENT
 * when there is none open with that id. */
int store_import_plan_put(struct store *s, const char *id, const char *doc, uint64_t expires_ms,
                          uint64_t now_ms, unsigned max);
int store_import_plan_take(struct store *s, const char *id, uint64_t now_ms, char **ret_doc);
int store_op_insert(struct store *s, const char *id, const char *state, uint64_t created_ms,
                    const char *doc);
int store_op_update(struct store *s, const char *id, const char *state, const char *doc);
/* The document (malloc'd) of operation id; -ENOENT when none. */
int store_op_get(struct store *s, const char *id, char **ret_doc);
/* Calls fn for at most limit operations after the one named after (NULL: from the first) whose
 * state is state (NULL: any), oldest first. */
int store_op_list(struct store *s, const char *after, const char *state, unsigned limit,
                  int (*fn)(void *ctx, const char *doc), void *ctx);
/* Deletes finished operations older than the newest keep rows. */
int store_op_prune(struct store *s, unsigned keep);

/* Tokens: secrets are shown once and stored as SHA-256 hashes. */
int store_token_create(struct store *s, const char *name, char ret_token[TOKEN_TEXT_LEN + 1]);
/* The same with an expiry (wall clock, ms; 0: never): from then on the token is refused. */
int store_token_create_until(struct store *s, const char *name, uint64_t expires_ms,
                             char ret_token[TOKEN_TEXT_LEN + 1]);
int store_token_revoke(struct store *s, const char *name);
/* 0 when token is a live token (its name in ret_name, size >= TOKEN_NAME_MAX + 1; its last use
 * recorded to the minute), -EKEYEXPIRED when it is past its expiry, else -EACCES. */
int store_token_check(struct store *s, const char *token, char *ret_name);
/* [{name, created_ms, revoked_ms, expires_ms, last_used_ms}] (null where not set). */
json_t *store_token_list(struct store *s);
bool token_name_valid(const char *name);

/* audit.c: the append-only hash-chained record. Each entry's hash is SHA-256 over the canonical
 * JSON of {seq, time_ms, kind, subject, actor, detail, prev_hash}; its RFC 9162 leaf hash
 * (SHA-256 of 0x00 and the same bytes) is kept in the row's leaf column. Checkpoints over the
 * leaves, their signing and their witnesses are audit_log.h's. */
#define AUDIT_NO_UPDATE_TRIGGER                                                                    \
        "CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit"                      \
        " BEGIN SELECT RAISE(ABORT, 'the audit record is append-only'); END;"

/* Appends one entry (detail: an object, reference stolen; may be NULL). Takes s->mu unless
 * called inside store_begin/commit (in_tx). */
int audit_append(struct store *s, bool in_tx, const char *kind, const char *subject,
                 const char *actor, json_t *detail);
/* Entries with seq > after, at most limit, oldest first; kind filters when non-NULL. */
json_t *audit_list(struct store *s, uint64_t after, unsigned limit, const char *kind);
/* Checks every link; 0 with the count, or -EBADMSG with the first broken seq and why. */
int audit_verify(struct store *s, uint64_t *ret_count, char *err, size_t errsize);
/* Loads the chain head into s (at open). */
int audit_load_head(struct store *s);
/* Walks every row as audit_verify does and returns the leaf hashes computed from the rows'
 * content (malloc'd, in seq order), also when a row is broken: then -EBADMSG with the first
 * problem in err. -EIO / -ENOMEM leave the out-parameters untouched. */
int audit_walk(struct store *s, merkle_hash **ret_leaves, uint64_t *ret_n, char *err,
               size_t errsize);
/* The stored leaf column of the entries after seq `after`, in seq order (malloc'd, NULL when
 * none); -EBADMSG if seqs have holes. */
int audit_leaves_load(struct store *s, uint64_t after, merkle_hash **ret_leaves, uint64_t *ret_n);
/* Audit schema 1 (hash chain) to 2 (leaf column): existing entries become the first leaves;
 * run inside the store's migration transaction. */
int audit_migrate(struct store *s);
