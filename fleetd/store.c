/* The SQLite store: schema, transactions, plans, VMs and tokens. WAL with synchronous=FULL, so a
 * committed confirmation survives kill -9 and power loss; every write a caller relies on is
 * committed before the caller answers. The audit record lives in audit.c over the same handle. */
#include "fleetd/store.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/sha256.h"
#include "common/small_file.h"

static const char store_schema[] =
    "CREATE TABLE IF NOT EXISTS tokens(name TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE,"
    " created_ms INTEGER NOT NULL, revoked_ms INTEGER, expires_ms INTEGER, last_used_ms INTEGER);"
    "CREATE TABLE IF NOT EXISTS plans(id TEXT PRIMARY KEY, entity TEXT NOT NULL,"
    " memory_mib INTEGER NOT NULL, vcpus INTEGER NOT NULL, image TEXT NOT NULL,"
    " vault_disk_mib INTEGER NOT NULL, node_id TEXT, state TEXT NOT NULL, vm_id TEXT,"
    " created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL, body TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS vms(id TEXT PRIMARY KEY, entity TEXT NOT NULL,"
    " node_id TEXT NOT NULL, plan_id TEXT NOT NULL UNIQUE, request_id TEXT NOT NULL,"
    " image TEXT NOT NULL, memory_mib INTEGER NOT NULL, vcpus INTEGER NOT NULL,"
    " vault_disk_mib INTEGER NOT NULL, created_ms INTEGER NOT NULL, status TEXT NOT NULL,"
    " lifecycle TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',"
    " integrity TEXT NOT NULL DEFAULT 'unknown');"
    "CREATE TABLE IF NOT EXISTS operations(id TEXT PRIMARY KEY, state TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL, doc TEXT NOT NULL);"
    "CREATE UNIQUE INDEX IF NOT EXISTS vms_one_per_entity ON vms(entity)"
    " WHERE status != 'failed';"
    "CREATE TABLE IF NOT EXISTS audit(seq INTEGER PRIMARY KEY, time_ms INTEGER NOT NULL,"
    " kind TEXT NOT NULL, subject TEXT NOT NULL, actor TEXT NOT NULL, detail TEXT NOT NULL,"
    " prev_hash TEXT NOT NULL, hash TEXT NOT NULL, leaf BLOB);"
    "CREATE TABLE IF NOT EXISTS audit_checkpoint(id INTEGER PRIMARY KEY CHECK (id = 1),"
    " size INTEGER NOT NULL, note TEXT NOT NULL, signed_ms INTEGER NOT "
    "NULL);" AUDIT_NO_UPDATE_TRIGGER
    /* the vault witness (vault_witness.c): the latest checkpoint fleetd cosigned per vault, and
     * the evidence; created on open of a database from before (the migration adds nothing
     * else) */
    "CREATE TABLE IF NOT EXISTS vault_witness(vm_id TEXT PRIMARY KEY, node_id TEXT NOT NULL,"
    " vault_key TEXT NOT NULL, host_key TEXT NOT NULL, size INTEGER NOT NULL, root TEXT NOT NULL,"
    " note TEXT NOT NULL, state TEXT NOT NULL, evidence_seen INTEGER NOT NULL DEFAULT 0,"
    " updated_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS vault_evidence(id INTEGER PRIMARY KEY, vm_id TEXT NOT NULL,"
    " node_id TEXT NOT NULL, kind TEXT NOT NULL, size INTEGER NOT NULL,"
    " held_size INTEGER NOT NULL, note TEXT NOT NULL, detail TEXT NOT NULL,"
    " at_ms INTEGER NOT NULL);"
    "CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit"
    " BEGIN SELECT RAISE(ABORT, 'the audit record is append-only'); END;";

static int store_exec(struct store *s, const char *sql)
{
        return sqlite3_exec(s->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -EIO;
}

static bool store_has_column(struct store *s, const char *table, const char *column)
{
        char sql[96];
        sqlite3_stmt *st = NULL;
        bool found = false;

        snprintf(sql, sizeof(sql), "PRAGMA table_info(%s)", table);
        if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
                return false;
        while (!found && sqlite3_step(st) == SQLITE_ROW)
                found = strcmp((const char *)sqlite3_column_text(st, 1), column) == 0;
        sqlite3_finalize(st);
        return found;
}

/* Stores made before tokens could expire get the two columns (NULL: never expires, never
 * used); a store of this version is left as it is. */
static int store_migrate_tokens(struct store *s)
{
        int r = 0;

        if (!store_has_column(s, "tokens", "expires_ms"))
                r = store_exec(s, "ALTER TABLE tokens ADD COLUMN expires_ms INTEGER");
        if (r == 0 && !store_has_column(s, "tokens", "last_used_ms"))
                r = store_exec(s, "ALTER TABLE tokens ADD COLUMN last_used_ms INTEGER");
        return r;
}

/* Step 1: the tables as every unversioned store (user_version 0, before 0.9) has them, with
 * what earlier stores lack added (token expiry, audit leaves); on an empty file it creates all. */
static int store_migrate_v1(struct store *s)
{
        int r = store_exec(s, store_schema);

        r = r ?: store_migrate_tokens(s);
        return r ?: audit_migrate(s);
}

/* Step 2: a key/value table naming what the store belongs to (the fleet id). */
static int store_migrate_v2(struct store *s)
{
        return store_exec(
            s, "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);");
}

/* Step 3: import plans that outlive a restart (they were kept in memory). */
static int store_migrate_v3(struct store *s)
{
        return store_exec(s, "CREATE TABLE IF NOT EXISTS import_plans(id TEXT PRIMARY KEY,"
                             " doc TEXT NOT NULL, expires_ms INTEGER NOT NULL);");
}

/* The migrations, one row per schema version in order: row i takes version i to i + 1. */
static const struct store_migration {
        int (*run)(struct store *s);
        const char *what;
} store_migrations[STORE_SCHEMA_VERSION] = {
    {store_migrate_v1, "the unversioned tables, token expiry and audit leaves"},
    {store_migrate_v2, "the meta table (fleet id)"},
    {store_migrate_v3, "the import_plans table (import plans outlive a restart)"},
};

static int store_user_version(sqlite3 *db, int *ret)
{
        sqlite3_stmt *st = NULL;
        int r = -EIO;

        if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW) {
                *ret = sqlite3_column_int(st, 0);
                r = 0;
        }
        sqlite3_finalize(st);
        return r;
}

/* Runs each step from the file's version on, each in its own transaction with the version it
 * reaches, so a crash leaves the store at a version it had. */
static int store_migrate(struct store *s)
{
        int v, r = store_user_version(s->db, &v);

        if (r < 0)
                return r;
        if (v > STORE_SCHEMA_VERSION || v < 0)
                return -EPROTONOSUPPORT;
        for (; r == 0 && v < STORE_SCHEMA_VERSION; v++) {
                char sql[48];

                r = store_begin(s);
                if (r < 0)
                        return r;
                snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", v + 1);
                r = store_migrations[v].run(s);
                r = r ?: store_exec(s, sql);
                if (r < 0) {
                        store_rollback(s);
                        return r;
                }
                r = store_commit(s);
        }
        return r;
}

int store_file_version(const char *dir, int *ret)
{
        char *path = small_file_path(dir, STORE_FILE);
        sqlite3 *db = NULL;
        int v, r;

        if (!path)
                return -ENOMEM;
        if (access(path, F_OK) < 0)
                r = -errno;
        else if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
                r = -EIO;
        else
                r = store_user_version(db, &v);
        sqlite3_close(db);
        free(path);
        if (r == 0)
                *ret = v;
        return r;
}

const char *store_migration_what(int version)
{
        return version >= 1 && version <= STORE_SCHEMA_VERSION ? store_migrations[version - 1].what
                                                               : NULL;
}

int store_open(const char *dir, struct store **ret)
{
        char *path = NULL;
        struct store *s;
        int r = -ENOMEM;

        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                return -errno;
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        {
                pthread_mutexattr_t a;

                /* recursive: reads take it too, also from inside a transaction of their thread */
                pthread_mutexattr_init(&a);
                pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
                pthread_mutex_init(&s->mu, &a);
                pthread_mutexattr_destroy(&a);
        }
        path = small_file_path(dir, STORE_FILE);
        if (!path)
                goto cleanup;
        if (sqlite3_open_v2(path, &s->db,
                            SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                            NULL) != SQLITE_OK) {
                r = -EIO;
                goto cleanup;
        }
        chmod(path, 0600);
        sqlite3_busy_timeout(s->db, 5000);
        r = store_exec(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                          " PRAGMA foreign_keys=ON;");
        r = r ?: store_migrate(s);
        r = r ?: audit_load_head(s);
cleanup:
        free(path);
        if (r < 0) {
                store_close(s);
                return r;
        }
        *ret = s;
        return 0;
}

void store_close(struct store *s)
{
        if (!s)
                return;
        sqlite3_close(s->db);
        pthread_mutex_destroy(&s->mu);
        free(s);
}

int store_begin(struct store *s)
{
        pthread_mutex_lock(&s->mu);
        if (store_exec(s, "BEGIN IMMEDIATE") < 0) {
                pthread_mutex_unlock(&s->mu);
                return -EIO;
        }
        return 0;
}

int store_commit(struct store *s)
{
        int r = store_exec(s, "COMMIT");

        if (r < 0) {
                store_exec(s, "ROLLBACK");
                audit_load_head(s);
        }
        pthread_mutex_unlock(&s->mu);
        return r;
}

void store_rollback(struct store *s)
{
        store_exec(s, "ROLLBACK");
        audit_load_head(s);
        pthread_mutex_unlock(&s->mu);
}

/* Prepares sql and binds "t" text / "i" int64 arguments from a format string. */
static sqlite3_stmt *store_prepare(struct store *s, const char *sql, const char *fmt, ...)
{
        sqlite3_stmt *st = NULL;
        va_list ap;

        if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
                return NULL;
        va_start(ap, fmt);
        for (int i = 0; fmt[i]; i++) {
                if (fmt[i] == 't')
                        sqlite3_bind_text(st, i + 1, va_arg(ap, const char *), -1,
                                          SQLITE_TRANSIENT);
                else
                        sqlite3_bind_int64(st, i + 1, (sqlite3_int64)va_arg(ap, uint64_t));
        }
        va_end(ap);
        return st;
}

static int store_step_done(sqlite3_stmt *st)
{
        int rc = st ? sqlite3_step(st) : SQLITE_ERROR;

        sqlite3_finalize(st);
        if (rc == SQLITE_CONSTRAINT)
                return -EEXIST;
        return rc == SQLITE_DONE ? 0 : -EIO;
}

int store_plan_insert(struct store *s, const struct plan_row *p)
{
        return store_step_done(store_prepare(
            s,
            "INSERT INTO plans(id, entity, memory_mib, vcpus, image, vault_disk_mib, node_id,"
            " state, vm_id, created_ms, expires_ms, body) VALUES (?,?,?,?,?,?,?,?,NULL,?,?,?)",
            "ttiitittiit", p->id, p->req.entity, p->req.memory_mib, p->req.vcpus, p->req.image,
            p->req.vault_disk_mib, p->node_id, p->state, p->created_ms, p->expires_ms, p->body));
}

static void store_copy_col(sqlite3_stmt *st, int col, char *buf, size_t size)
{
        const unsigned char *t = sqlite3_column_text(st, col);

        snprintf(buf, size, "%s", t ? (const char *)t : "");
}

/* A plan's columns, entity to expires_ms in the order both plan queries select them, from
 * column c on. */
static void store_plan_cols(sqlite3_stmt *st, int c, struct plan_row *p)
{
        store_copy_col(st, c, p->req.entity, sizeof(p->req.entity));
        p->req.memory_mib = (uint64_t)sqlite3_column_int64(st, c + 1);
        p->req.vcpus = (uint64_t)sqlite3_column_int64(st, c + 2);
        store_copy_col(st, c + 3, p->req.image, sizeof(p->req.image));
        p->req.vault_disk_mib = (uint64_t)sqlite3_column_int64(st, c + 4);
        store_copy_col(st, c + 5, p->node_id, sizeof(p->node_id));
        store_copy_col(st, c + 6, p->state, sizeof(p->state));
        store_copy_col(st, c + 7, p->vm_id, sizeof(p->vm_id));
        p->created_ms = (uint64_t)sqlite3_column_int64(st, c + 8);
        p->expires_ms = (uint64_t)sqlite3_column_int64(st, c + 9);
}

static int store_plan_get_locked(struct store *s, const char *id, struct plan_row *ret)
{
        sqlite3_stmt *st = store_prepare(
            s,
            "SELECT entity, memory_mib, vcpus, image, vault_disk_mib, node_id, state, vm_id,"
            " created_ms, expires_ms, body FROM plans WHERE id = ?",
            "t", id);
        struct plan_row p = {{0}};
        int rc;

        if (!st)
                return -EIO;
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                snprintf(p.id, sizeof(p.id), "%s", id);
                store_plan_cols(st, 0, &p);
                p.body = strdup((const char *)sqlite3_column_text(st, 10));
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_ROW)
                return rc == SQLITE_DONE ? -ENOENT : -EIO;
        if (!p.body)
                return -ENOMEM;
        *ret = p;
        return 0;
}

int store_plan_list(struct store *s, const char *after, const char *state, uint64_t now_ms,
                    unsigned limit, int (*fn)(void *ctx, const struct plan_row *p), void *ctx)
{
        sqlite3_stmt *st;
        int rc, r = 0;

        pthread_mutex_lock(&s->mu);
        st = store_prepare(
            s,
            "SELECT id, entity, memory_mib, vcpus, image, vault_disk_mib, node_id, st, vm_id,"
            " created_ms, expires_ms FROM (SELECT *, rowid AS rid, CASE WHEN state = 'open' AND"
            " expires_ms < ?3 THEN 'expired' ELSE state END AS st FROM plans)"
            " WHERE (?1 IS NULL OR rid > (SELECT rowid FROM plans WHERE id = ?1))"
            " AND (?2 IS NULL OR st = ?2) ORDER BY rid LIMIT ?4",
            "ttii", after, state, now_ms, (uint64_t)limit);
        while (st && r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                struct plan_row p = {{0}};

                store_copy_col(st, 0, p.id, sizeof(p.id));
                store_plan_cols(st, 1, &p);
                r = fn(ctx, &p);
        }
        if (!st || (r == 0 && rc != SQLITE_DONE))
                r = -EIO;
        sqlite3_finalize(st);
        pthread_mutex_unlock(&s->mu);
        return r;
}

int store_plan_get(struct store *s, const char *id, struct plan_row *ret)
{
        int r;

        pthread_mutex_lock(&s->mu);
        r = store_plan_get_locked(s, id, ret);
        pthread_mutex_unlock(&s->mu);
        return r;
}

int store_plan_set_state(struct store *s, const char *id, const char *state, const char *vm_id)
{
        return store_step_done(store_prepare(s,
                                             "UPDATE plans SET state = ?, vm_id = ? WHERE id = ?",
                                             "ttt", state, vm_id ? vm_id : "", id));
}

int store_plan_prune(struct store *s, uint64_t before_ms)
{
        int r;

        pthread_mutex_lock(&s->mu);
        r = store_step_done(store_prepare(s,
                                          "UPDATE plans SET body = '{}' WHERE state != 'confirmed'"
                                          " AND expires_ms < ? AND body != '{}'",
                                          "i", before_ms));
        if (r == 0)
                r = sqlite3_changes(s->db);
        pthread_mutex_unlock(&s->mu);
        return r;
}

void plan_row_done(struct plan_row *p)
{
        if (!p)
                return;
        free(p->body);
        p->body = NULL;
}

int store_vm_insert(struct store *s, const struct fleet_vm *v)
{
        return store_step_done(store_prepare(
            s,
            "INSERT INTO vms(id, entity, node_id, plan_id, request_id, image, memory_mib,"
            " vcpus, vault_disk_mib, created_ms, status, lifecycle, reason, integrity)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            "ttttttiiiitttt", v->id, v->entity, v->node_id, v->plan_id, v->request_id, v->image,
            v->memory_mib, v->vcpus, v->vault_disk_mib, v->created_ms, vm_status_name(v->status),
            vm_lifecycle_name(v->lifecycle), v->reason,
            v->integrity[0] ? v->integrity : "unknown"));
}

int store_vm_update(struct store *s, const struct fleet_vm *v)
{
        if (!s)
                return -ENODEV;
        return store_step_done(store_prepare(
            s, "UPDATE vms SET status = ?, lifecycle = ?, reason = ?, integrity = ? WHERE id = ?",
            "ttttt", vm_status_name(v->status), vm_lifecycle_name(v->lifecycle), v->reason,
            v->integrity[0] ? v->integrity : "unknown", v->id));
}

int store_vm_update_audited(struct store *s, const struct fleet_vm *vm, const char *kind,
                            const char *actor, json_t *detail)
{
        int r;

        if (!s || store_begin(s) < 0) {
                json_decref(detail);
                return s ? -EIO : -ENODEV;
        }
        r = store_vm_update(s, vm);
        if (r == 0 && kind)
                r = audit_append(s, true, kind, vm->id, actor, detail);
        else
                json_decref(detail);
        if (r < 0) {
                store_rollback(s);
                return r;
        }
        return store_commit(s);
}

int store_vm_rehome_audited(struct store *s, const struct fleet_vm *vm, const char *actor,
                            json_t *detail)
{
        int r;

        if (!s || store_begin(s) < 0) {
                json_decref(detail);
                return s ? -EIO : -ENODEV;
        }
        r = store_step_done(
            store_prepare(s, "UPDATE vms SET node_id = ? WHERE id = ?", "tt", vm->node_id, vm->id));
        r = r ?: store_vm_update(s, vm);
        if (r == 0)
                r = audit_append(s, true, "vm.rehomed", vm->id, actor, detail);
        else
                json_decref(detail);
        if (r < 0) {
                store_rollback(s);
                return r;
        }
        return store_commit(s);
}

static void store_vm_from_row(sqlite3_stmt *st, struct fleet_vm *v)
{
        char status[16], lc[16];

        memset(v, 0, sizeof(*v));
        store_copy_col(st, 0, v->id, sizeof(v->id));
        store_copy_col(st, 1, v->entity, sizeof(v->entity));
        store_copy_col(st, 2, v->node_id, sizeof(v->node_id));
        store_copy_col(st, 3, v->plan_id, sizeof(v->plan_id));
        store_copy_col(st, 4, v->request_id, sizeof(v->request_id));
        store_copy_col(st, 5, v->image, sizeof(v->image));
        v->memory_mib = (uint64_t)sqlite3_column_int64(st, 6);
        v->vcpus = (uint64_t)sqlite3_column_int64(st, 7);
        v->vault_disk_mib = (uint64_t)sqlite3_column_int64(st, 8);
        v->created_ms = (uint64_t)sqlite3_column_int64(st, 9);
        store_copy_col(st, 10, status, sizeof(status));
        store_copy_col(st, 11, lc, sizeof(lc));
        store_copy_col(st, 12, v->reason, sizeof(v->reason));
        store_copy_col(st, 13, v->integrity, sizeof(v->integrity));
        v->status = strcmp(status, "active") == 0   ? VM_ACTIVE
                    : strcmp(status, "failed") == 0 ? VM_FAILED
                                                    : VM_CREATING;
        if (vm_lifecycle_parse(lc, &v->lifecycle) < 0)
                v->lifecycle = VM_LC_ACTIVE;
}

static int store_vm_load_locked(struct store *s, int (*fn)(void *ctx, const struct fleet_vm *vm),
                                void *ctx)
{
        sqlite3_stmt *st = store_prepare(
            s,
            "SELECT id, entity, node_id, plan_id, request_id, image, memory_mib, vcpus,"
            " vault_disk_mib, created_ms, status, lifecycle, reason, integrity FROM vms"
            " ORDER BY created_ms, id",
            "");
        struct fleet_vm v;
        int rc, r = 0;

        if (!st)
                return -EIO;
        while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                store_vm_from_row(st, &v);
                r = fn(ctx, &v);
        }
        sqlite3_finalize(st);
        return r;
}

int store_vm_load(struct store *s, int (*fn)(void *ctx, const struct fleet_vm *vm), void *ctx)
{
        int r;

        pthread_mutex_lock(&s->mu);
        r = store_vm_load_locked(s, fn, ctx);
        pthread_mutex_unlock(&s->mu);
        return r;
}

bool token_name_valid(const char *name)
{
        size_t n = strlen(name);

        if (n == 0 || n > TOKEN_NAME_MAX)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = name[i];

                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '_' || c == '.' || c == '@'))
                        return false;
        }
        return true;
}

static void token_hash_hex(const char *token, char out[65])
{
        uint8_t h[SHA256_LEN];

        sha256_digest((const uint8_t *)token, strlen(token), h);
        sodium_bin2hex(out, 65, h, sizeof(h));
}

int store_token_create(struct store *s, const char *name, char ret_token[TOKEN_TEXT_LEN + 1])
{
        return store_token_create_until(s, name, 0, ret_token);
}

int store_token_create_until(struct store *s, const char *name, uint64_t expires_ms,
                             char ret_token[TOKEN_TEXT_LEN + 1])
{
        uint8_t raw[32];
        char token[TOKEN_TEXT_LEN + 8], hash[65];
        int r;

        if (!token_name_valid(name))
                return -EINVAL;
        randombytes_buf(raw, sizeof(raw));
        memcpy(token, TOKEN_PREFIX, 4);
        sodium_bin2base64(token + 4, sizeof(token) - 4, raw, sizeof(raw),
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        sodium_memzero(raw, sizeof(raw));
        token_hash_hex(token, hash);
        if (store_begin(s) < 0)
                return -EIO;
        r = store_step_done(store_prepare(
            s, "INSERT INTO tokens(name, hash, created_ms, revoked_ms) VALUES (?,?,?,NULL)", "tti",
            name, hash, clock_realtime_ms()));
        if (r == 0 && expires_ms)
                r = store_step_done(store_prepare(
                    s, "UPDATE tokens SET expires_ms = ? WHERE name = ?", "it", expires_ms, name));
        if (r == 0)
                r = audit_append(
                    s, true, "token.created", name, "cli",
                    expires_ms ? json_pack("{s:I}", "expires_ms", (json_int_t)expires_ms) : NULL);
        if (r == 0)
                r = store_commit(s);
        else
                store_rollback(s);
        if (r == 0)
                memcpy(ret_token, token, TOKEN_TEXT_LEN + 1);
        sodium_memzero(token, sizeof(token));
        return r;
}

int store_token_revoke(struct store *s, const char *name)
{
        int r;

        if (store_begin(s) < 0)
                return -EIO;
        r = store_step_done(store_prepare(
            s, "UPDATE tokens SET revoked_ms = ? WHERE name = ? AND revoked_ms IS NULL", "it",
            clock_realtime_ms(), name));
        if (r == 0 && sqlite3_changes(s->db) == 0)
                r = -ENOENT;
        if (r == 0)
                r = audit_append(s, true, "token.revoked", name, "cli", NULL);
        if (r == 0)
                r = store_commit(s);
        else
                store_rollback(s);
        return r;
}

/* Last use is kept to the minute: a request writes to the store at most once a minute per
 * token, not on every call. */
#define TOKEN_LAST_USED_GRAIN_MS 60000

int store_token_check(struct store *s, const char *token, char *ret_name)
{
        char hash[65], name[TOKEN_NAME_MAX + 1];
        uint64_t now = clock_realtime_ms();
        sqlite3_stmt *st;
        int r = -EACCES;

        if (strlen(token) != TOKEN_TEXT_LEN || strncmp(token, TOKEN_PREFIX, 4) != 0)
                return -EACCES;
        token_hash_hex(token, hash);
        pthread_mutex_lock(&s->mu);
        st = store_prepare(s,
                           "SELECT name, expires_ms, last_used_ms FROM tokens WHERE hash = ? AND"
                           " revoked_ms IS NULL",
                           "t", hash);
        if (st && sqlite3_step(st) == SQLITE_ROW) {
                bool expires = sqlite3_column_type(st, 1) != SQLITE_NULL;
                uint64_t last = (uint64_t)sqlite3_column_int64(st, 2);

                store_copy_col(st, 0, name, sizeof(name));
                if (expires && (uint64_t)sqlite3_column_int64(st, 1) <= now)
                        r = -EKEYEXPIRED;
                else
                        r = last + TOKEN_LAST_USED_GRAIN_MS <= now ? 1 : 0;
        }
        sqlite3_finalize(st);
        if (r == 1) {
                /* best effort: a busy store must not refuse a valid token */
                store_step_done(store_prepare(
                    s, "UPDATE tokens SET last_used_ms = ? WHERE name = ?", "it", now, name));
                r = 0;
        }
        pthread_mutex_unlock(&s->mu);
        if (r == 0)
                memcpy(ret_name, name, strlen(name) + 1);
        return r;
}

json_t *store_token_list(struct store *s)
{
        sqlite3_stmt *st;
        json_t *a = json_array();

        pthread_mutex_lock(&s->mu);
        st = store_prepare(
            s,
            "SELECT name, created_ms, revoked_ms, expires_ms, last_used_ms FROM tokens ORDER BY"
            " created_ms, name",
            "");

        while (st && sqlite3_step(st) == SQLITE_ROW) {
                json_t *o = json_pack("{s:s, s:I}", "name", sqlite3_column_text(st, 0),
                                      "created_ms", (json_int_t)sqlite3_column_int64(st, 1));

                for (int c = 2; c <= 4; c++)
                        json_object_set_new(o, sqlite3_column_name(st, c),
                                            sqlite3_column_type(st, c) == SQLITE_NULL
                                                ? json_null()
                                                : json_integer(sqlite3_column_int64(st, c)));
                json_array_append_new(a, o);
        }
        sqlite3_finalize(st);
        pthread_mutex_unlock(&s->mu);
        return a;
}

/* Operations: one row per long operation, its JSON document (operations.c owns its shape). */
int store_op_insert(struct store *s, const char *id, const char *state, uint64_t created_ms,
                    const char *doc)
{
        int r;

        pthread_mutex_lock(&s->mu);
        r = store_step_done(store_prepare(
            s, "INSERT OR IGNORE INTO operations(id, state, created_ms, doc) VALUES (?,?,?,?)",
            "ttit", id, state, created_ms, doc));
        if (r == 0)
                r = sqlite3_changes(s->db) == 1;
        pthread_mutex_unlock(&s->mu);
        return r;
}

int store_op_update(struct store *s, const char *id, const char *state, const char *doc)
{
        int r;

        pthread_mutex_lock(&s->mu);
        r = store_step_done(store_prepare(
            s, "UPDATE operations SET state = ?, doc = ? WHERE id = ?", "ttt", state, doc, id));
        pthread_mutex_unlock(&s->mu);
        return r;
}

int store_import_plan_put(struct store *s, const char *id, const char *doc, uint64_t expires_ms,
                          uint64_t now_ms, unsigned max)
{
        sqlite3_stmt *st;
        int r = store_begin(s);

        if (r < 0)
                return r;
        r = store_step_done(
            store_prepare(s, "DELETE FROM import_plans WHERE expires_ms < ?", "i", now_ms));
        st = r == 0 ? store_prepare(s, "SELECT count(*) FROM import_plans", "") : NULL;
        if (r == 0 && (!st || sqlite3_step(st) != SQLITE_ROW))
                r = -EIO;
        if (r == 0 && sqlite3_column_int64(st, 0) >= (sqlite3_int64)max)
                r = -ENOSPC;
        sqlite3_finalize(st);
        r = r
                ?: store_step_done(store_prepare(
                       s, "INSERT INTO import_plans(id, doc, expires_ms) VALUES (?,?,?)", "tti", id,
                       doc, expires_ms));
        if (r < 0) {
                store_rollback(s);
                return r;
        }
        return store_commit(s);
}

int store_import_plan_take(struct store *s, const char *id, uint64_t now_ms, char **ret_doc)
{
        sqlite3_stmt *st;
        char *doc = NULL;
        int rc;

        pthread_mutex_lock(&s->mu);
        st = store_prepare(s,
                           "DELETE FROM import_plans WHERE id = ? AND expires_ms >= ?"
                           " RETURNING doc",
                           "ti", id, now_ms);
        rc = st ? sqlite3_step(st) : SQLITE_ERROR;
        if (rc == SQLITE_ROW)
                doc = strdup((const char *)sqlite3_column_text(st, 0));
        if (rc == SQLITE_ROW && sqlite3_step(st) != SQLITE_DONE)
                rc = SQLITE_ERROR; /* the delete is done only when the statement ran to its end */
        sqlite3_finalize(st);
        pthread_mutex_unlock(&s->mu);
        if (rc != SQLITE_ROW) {
                free(doc);
                return rc == SQLITE_DONE ? -ENOENT : -EIO;
        }
        if (!doc)
                return -ENOMEM;
        *ret_doc = doc;
        return 0;
}

int store_op_get(struct store *s, const char *id, char **ret_doc)
{
        sqlite3_stmt *st;
        char *doc = NULL;
        int rc;

        pthread_mutex_lock(&s->mu);
        st = store_prepare(s, "SELECT doc FROM operations WHERE id = ?", "t", id);
        rc = st ? sqlite3_step(st) : SQLITE_ERROR;
        if (rc == SQLITE_ROW)
                doc = strdup((const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        pthread_mutex_unlock(&s->mu);
        if (rc != SQLITE_ROW)
                return rc == SQLITE_DONE ? -ENOENT : -EIO;
        if (!doc)
                return -ENOMEM;
        *ret_doc = doc;
        return 0;
}

int store_op_list(struct store *s, const char *after, const char *state, unsigned limit,
                  int (*fn)(void *ctx, const char *doc), void *ctx)
{
        sqlite3_stmt *st;
        int rc = SQLITE_ERROR, r = 0;

        pthread_mutex_lock(&s->mu);
        st = store_prepare(s,
                           "SELECT doc FROM operations WHERE (?1 IS NULL OR rowid > (SELECT rowid"
                           " FROM operations WHERE id = ?1)) AND (?2 IS NULL OR state = ?2)"
                           " ORDER BY rowid LIMIT ?3",
                           "tti", after, state, (uint64_t)limit);
        while (st && r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW)
                r = fn(ctx, (const char *)sqlite3_column_text(st, 0));
        if (!st || (r == 0 && rc != SQLITE_DONE))
                r = -EIO;
        sqlite3_finalize(st);
        pthread_mutex_unlock(&s->mu);
        return r;
}

int store_op_prune(struct store *s, unsigned keep)
{
        int r;

        pthread_mutex_lock(&s->mu);
        r = store_step_done(store_prepare(
            s,
            "DELETE FROM operations WHERE state != 'running' AND rowid <= (SELECT max(rowid)"
            " FROM operations) - ?",
            "i", (uint64_t)keep));
        pthread_mutex_unlock(&s->mu);
        return r;
}

static int store_meta_get_locked(struct store *s, const char *key, char *buf, size_t size)
{
        sqlite3_stmt *st = store_prepare(s, "SELECT value FROM meta WHERE key = ?", "t", key);
        int rc = st ? sqlite3_step(st) : SQLITE_ERROR;
        int r = rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : -EIO;

        if (r == 0)
                store_copy_col(st, 0, buf, size);
        sqlite3_finalize(st);
        return r;
}

int store_meta_get(struct store *s, const char *key, char *buf, size_t size)
{
        int r;

        pthread_mutex_lock(&s->mu);
        r = store_meta_get_locked(s, key, buf, size);
        pthread_mutex_unlock(&s->mu);
        return r;
}

int store_meta_claim(struct store *s, const char *key, const char *value, char *ret_held,
                     size_t size)
{
        int r = store_begin(s);

        if (r < 0)
                return r;
        r = store_meta_get_locked(s, key, ret_held, size);
        if (r == -ENOENT) {
                r = store_step_done(store_prepare(s, "INSERT INTO meta(key, value) VALUES (?, ?)",
                                                  "tt", key, value));
                snprintf(ret_held, size, "%s", value);
        }
        if (r < 0) {
                store_rollback(s);
                return r;
        }
        r = store_commit(s);
        if (r == 0 && strcmp(ret_held, value) != 0)
                return -EXDEV;
        return r;
}
