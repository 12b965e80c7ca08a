/* The consolidated audit record: append-only (SQLite triggers refuse UPDATE and DELETE),
 * hash-chained, and the leaves of an RFC 9162 Merkle tree whose checkpoints fleetd signs and the
 * nodes witness (audit_log.c), so that a rewritten, cut or rolled-back history is detectable
 * even by someone who drops the triggers. Entry bytes = canonical JSON of {seq, time_ms, kind,
 * subject, actor, detail, prev_hash} (sorted keys, compact); entry hash = SHA-256(bytes), the
 * first entry's prev_hash is 64 zeros; leaf hash = SHA-256(0x00 || bytes), kept in the row. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/merkle.h"
#include "common/sha256.h"
#include "fleetd/store.h"

static const char audit_genesis[] =
    "0000000000000000000000000000000000000000000000000000000000000000";

/* Computes the entry hash and the leaf hash; detail is borrowed. */
static int audit_hash(uint64_t seq, uint64_t time_ms, const char *kind, const char *subject,
                      const char *actor, json_t *detail, const char *prev,
                      char out[AUDIT_HASH_HEX + 1], merkle_hash ret_leaf)
{
        uint8_t h[SHA256_LEN];
        json_t *o = json_pack("{s:I, s:I, s:s, s:s, s:s, s:O, s:s}", "seq", (json_int_t)seq,
                              "time_ms", (json_int_t)time_ms, "kind", kind, "subject", subject,
                              "actor", actor, "detail", detail, "prev_hash", prev);
        char *text = o ? json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT) : NULL;

        json_decref(o);
        if (!text)
                return -ENOMEM;
        sha256_digest((const uint8_t *)text, strlen(text), h);
        sodium_bin2hex(out, AUDIT_HASH_HEX + 1, h, sizeof(h));
        merkle_leaf_hash((const uint8_t *)text, strlen(text), ret_leaf);
        free(text);
        return 0;
}

int audit_load_head(struct store *s)
{
        sqlite3_stmt *st = NULL;
        int rc;

        snprintf(s->last_hash, sizeof(s->last_hash), "%s", audit_genesis);
        s->last_seq = 0;
        if (sqlite3_prepare_v2(s->db, "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", -1,
                               &st, NULL) != SQLITE_OK)
                return -EIO;
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                s->last_seq = (uint64_t)sqlite3_column_int64(st, 0);
                snprintf(s->last_hash, sizeof(s->last_hash), "%s", sqlite3_column_text(st, 1));
        }
        sqlite3_finalize(st);
        return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -EIO;
}

static int audit_insert(struct store *s, const char *kind, const char *subject, const char *actor,
                        json_t *detail)
{
        uint64_t seq, now = clock_realtime_ms();
        char hash[AUDIT_HASH_HEX + 1], *text;
        merkle_hash leaf;
        sqlite3_stmt *st = NULL;
        int r = audit_load_head(s); /* fleetctl (another process) may have appended since */

        if (r < 0)
                return r;
        seq = s->last_seq + 1;
        r = audit_hash(seq, now, kind, subject, actor, detail, s->last_hash, hash, leaf);
        if (r < 0)
                return r;
        text = json_dumps(detail, JSON_SORT_KEYS | JSON_COMPACT);
        if (!text)
                return -ENOMEM;
        r = -EIO;
        if (sqlite3_prepare_v2(s->db,
                               "INSERT INTO audit(seq, time_ms, kind, subject, actor, detail,"
                               " prev_hash, hash, leaf) VALUES (?,?,?,?,?,?,?,?,?)",
                               -1, &st, NULL) == SQLITE_OK) {
                sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
                sqlite3_bind_int64(st, 2, (sqlite3_int64)now);
                sqlite3_bind_text(st, 3, kind, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 4, subject, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 5, actor, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 6, text, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 7, s->last_hash, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 8, hash, -1, SQLITE_STATIC);
                sqlite3_bind_blob(st, 9, leaf, MERKLE_HASH_LEN, SQLITE_STATIC);
                if (sqlite3_step(st) == SQLITE_DONE)
                        r = 0;
        }
        sqlite3_finalize(st);
        free(text);
        if (r == 0) {
                s->last_seq = seq;
                memcpy(s->last_hash, hash, sizeof(hash));
        }
        return r;
}

int audit_append(struct store *s, bool in_tx, const char *kind, const char *subject,
                 const char *actor, json_t *detail)
{
        int r;

        if (!s) {
                json_decref(detail);
                return -ENODEV;
        }
        if (!detail)
                detail = json_object();
        /* a write transaction: the head read and the insert are atomic across processes */
        if (!in_tx && store_begin(s) < 0) {
                json_decref(detail);
                return -EIO;
        }
        r = audit_insert(s, kind, subject ? subject : "", actor ? actor : "fleetd", detail);
        if (!in_tx && r == 0)
                r = store_commit(s);
        else if (!in_tx)
                store_rollback(s);
        json_decref(detail);
        return r;
}

static json_t *audit_row_json(sqlite3_stmt *st)
{
        char when[40];
        uint64_t t = (uint64_t)sqlite3_column_int64(st, 1);
        json_t *detail = json_loads((const char *)sqlite3_column_text(st, 5), 0, NULL);

        clock_format_rfc3339(t, when, sizeof(when));
        return json_pack("{s:I, s:I, s:s, s:s, s:s, s:s, s:o, s:s, s:s}", "seq",
                         (json_int_t)sqlite3_column_int64(st, 0), "time_ms", (json_int_t)t, "time",
                         when, "kind", sqlite3_column_text(st, 2), "subject",
                         sqlite3_column_text(st, 3), "actor", sqlite3_column_text(st, 4), "detail",
                         detail ? detail : json_object(), "prev_hash", sqlite3_column_text(st, 6),
                         "hash", sqlite3_column_text(st, 7));
}

static void audit_list_locked(struct store *s, uint64_t after, unsigned limit, const char *kind,
                              json_t *a)
{
        sqlite3_stmt *st = NULL;

        if (sqlite3_prepare_v2(s->db,
                               "SELECT seq, time_ms, kind, subject, actor, detail, prev_hash, hash"
                               " FROM audit WHERE seq > ? AND (?2 IS NULL OR kind = ?2)"
                               " ORDER BY seq LIMIT ?3",
                               -1, &st, NULL) != SQLITE_OK)
                return;
        sqlite3_bind_int64(st, 1, (sqlite3_int64)after);
        if (kind)
                sqlite3_bind_text(st, 2, kind, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 3, limit);
        while (sqlite3_step(st) == SQLITE_ROW)
                json_array_append_new(a, audit_row_json(st));
        sqlite3_finalize(st);
}

json_t *audit_list(struct store *s, uint64_t after, unsigned limit, const char *kind)
{
        json_t *a = json_array();

        pthread_mutex_lock(&s->mu);
        audit_list_locked(s, after, limit, kind, a);
        pthread_mutex_unlock(&s->mu);
        return a;
}

struct audit_walk {
        char prev[AUDIT_HASH_HEX + 1];
        merkle_hash *leaves; /* from the rows' content, not from their leaf column */
        uint64_t n, cap;
        char *err;
        size_t errsize;
        bool broken, gap;
};

static void audit_walk_fail(struct audit_walk *w, unsigned long long seq, const char *why)
{
        if (!w->broken)
                snprintf(w->err, w->errsize, "entry %llu %s", seq, why);
        w->broken = true;
}

/* Checks one row (columns as in audit_walk_locked) and appends its leaf to w. */
static int audit_walk_row(sqlite3_stmt *st, struct audit_walk *w)
{
        uint64_t seq = (uint64_t)sqlite3_column_int64(st, 0);
        const char *stored_prev = (const char *)sqlite3_column_text(st, 6);
        const char *stored = (const char *)sqlite3_column_text(st, 7);
        const void *stored_leaf = sqlite3_column_blob(st, 8);
        json_t *detail = json_loads((const char *)sqlite3_column_text(st, 5), 0, NULL);
        const char *col[3] = {(const char *)sqlite3_column_text(st, 2),
                              (const char *)sqlite3_column_text(st, 3),
                              (const char *)sqlite3_column_text(st, 4)};
        char hash[AUDIT_HASH_HEX + 1];

        if (w->n == w->cap) {
                uint64_t cap = w->cap ? 2 * w->cap : 1024;
                merkle_hash *nl = realloc(w->leaves, cap * sizeof(*nl));

                if (!nl) {
                        json_decref(detail);
                        return -ENOMEM;
                }
                w->leaves = nl;
                w->cap = cap;
        }
        if (seq != w->n + 1) {
                w->gap = true;
                audit_walk_fail(w, (unsigned long long)w->n + 1,
                                "is missing (tampered: rows were removed from the middle)");
        }
        if (!detail || !col[0] || !col[1] || !col[2] ||
            audit_hash(seq, (uint64_t)sqlite3_column_int64(st, 1), col[0], col[1], col[2], detail,
                       stored_prev ? stored_prev : "", hash, w->leaves[w->n]) < 0) {
                /* unreadable: a leaf no content hashes to, so the tree shows it too */
                memset(w->leaves[w->n], 0, MERKLE_HASH_LEN);
                audit_walk_fail(w, seq, "cannot be read (tampered)");
        } else if (!stored_prev || strcmp(stored_prev, w->prev) != 0)
                audit_walk_fail(w, seq, "does not link to the previous entry's hash (tampered)");
        else if (!stored || strcmp(hash, stored) != 0)
                audit_walk_fail(w, seq, "does not match its hash (tampered: edited)");
        else if (sqlite3_column_bytes(st, 8) != MERKLE_HASH_LEN || !stored_leaf ||
                 memcmp(stored_leaf, w->leaves[w->n], MERKLE_HASH_LEN) != 0)
                audit_walk_fail(w, seq, "does not match its leaf hash (tampered: edited)");
        json_decref(detail);
        snprintf(w->prev, sizeof(w->prev), "%s", stored ? stored : "");
        w->n++;
        return 0;
}

static int audit_walk_locked(struct store *s, struct audit_walk *w)
{
        sqlite3_stmt *st = NULL;
        int r = 0, rc;

        snprintf(w->prev, sizeof(w->prev), "%s", audit_genesis);
        if (sqlite3_prepare_v2(s->db,
                               "SELECT seq, time_ms, kind, subject, actor, detail, prev_hash, hash,"
                               " leaf FROM audit ORDER BY seq",
                               -1, &st, NULL) != SQLITE_OK) {
                snprintf(w->err, w->errsize, "cannot read the audit record");
                return -EIO;
        }
        while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW)
                r = audit_walk_row(st, w);
        sqlite3_finalize(st);
        if (r == -ENOMEM)
                snprintf(w->err, w->errsize, "out of memory reading the audit record");
        return r;
}

int audit_walk(struct store *s, merkle_hash **ret_leaves, uint64_t *ret_n, char *err,
               size_t errsize)
{
        struct audit_walk w = {.err = err, .errsize = errsize};
        int r;

        pthread_mutex_lock(&s->mu);
        r = audit_walk_locked(s, &w);
        pthread_mutex_unlock(&s->mu);
        if (r == -EIO || r == -ENOMEM) {
                free(w.leaves);
                return r;
        }
        *ret_leaves = w.leaves;
        *ret_n = w.n;
        return w.broken || r < 0 ? -EBADMSG : 0;
}

int audit_verify(struct store *s, uint64_t *ret_count, char *err, size_t errsize)
{
        merkle_hash *leaves = NULL;
        uint64_t n = 0;
        int r = audit_walk(s, &leaves, &n, err, errsize);

        free(leaves);
        if (r == 0)
                *ret_count = n;
        return r;
}

int audit_leaves_load(struct store *s, uint64_t after, merkle_hash **ret_leaves, uint64_t *ret_n)
{
        sqlite3_stmt *st = NULL;
        merkle_hash *leaves = NULL;
        uint64_t n = 0, cap = 0;
        int r = 0;

        pthread_mutex_lock(&s->mu);
        if (sqlite3_prepare_v2(s->db, "SELECT seq, leaf FROM audit WHERE seq > ? ORDER BY seq", -1,
                               &st, NULL) != SQLITE_OK)
                r = -EIO;
        else
                sqlite3_bind_int64(st, 1, (sqlite3_int64)after);
        while (r == 0 && sqlite3_step(st) == SQLITE_ROW) {
                if (n == cap) {
                        merkle_hash *nl =
                            realloc(leaves, (cap = cap ? 2 * cap : 1024) * sizeof(*nl));

                        if (!nl) {
                                r = -ENOMEM;
                                break;
                        }
                        leaves = nl;
                }
                if ((uint64_t)sqlite3_column_int64(st, 0) != after + n + 1 ||
                    sqlite3_column_bytes(st, 1) != MERKLE_HASH_LEN)
                        r = -EBADMSG;
                else
                        memcpy(leaves[n++], sqlite3_column_blob(st, 1), MERKLE_HASH_LEN);
        }
        sqlite3_finalize(st);
        pthread_mutex_unlock(&s->mu);
        if (r < 0) {
                free(leaves);
                return r;
        }
        *ret_leaves = leaves;
        *ret_n = n;
        return 0;
}

/* Schema 2: the leaf column, filled for the rows of the hash-chain record (schema 1), which
 * become the tree's first leaves in their order. The update trigger is lifted for this one
 * transaction only. */
static int audit_migrate_rows(struct store *s)
{
        struct audit_walk w = {.err = (char[128]){0}, .errsize = 128};
        sqlite3_stmt *st = NULL;
        int r = audit_walk_locked(s, &w);

        if (r == 0 && w.gap)
                r = -EBADMSG; /* a record with holes cannot be given leaf positions */
        if (r == 0 && sqlite3_prepare_v2(s->db, "UPDATE audit SET leaf = ? WHERE seq = ?", -1, &st,
                                         NULL) != SQLITE_OK)
                r = -EIO;
        for (uint64_t i = 0; r == 0 && i < w.n; i++) {
                sqlite3_bind_blob(st, 1, w.leaves[i], MERKLE_HASH_LEN, SQLITE_STATIC);
                sqlite3_bind_int64(st, 2, (sqlite3_int64)(i + 1));
                if (sqlite3_step(st) != SQLITE_DONE)
                        r = -EIO;
                sqlite3_reset(st);
        }
        sqlite3_finalize(st);
        free(w.leaves);
        return r;
}

int audit_migrate(struct store *s)
{
        sqlite3_stmt *probe = NULL;
        int r = 0;

        if (sqlite3_prepare_v2(s->db, "SELECT leaf FROM audit LIMIT 0", -1, &probe, NULL) ==
            SQLITE_OK) {
                sqlite3_finalize(probe);
                return 0; /* schema 2 already */
        }
        if (sqlite3_exec(s->db,
                         "DROP TRIGGER IF EXISTS audit_no_update;"
                         " ALTER TABLE audit ADD COLUMN leaf BLOB;",
                         NULL, NULL, NULL) != SQLITE_OK)
                r = -EIO;
        r = r ?: audit_migrate_rows(s);
        if (r == 0 && sqlite3_exec(s->db, AUDIT_NO_UPDATE_TRIGGER, NULL, NULL, NULL) != SQLITE_OK)
                r = -EIO;
        return r;
}
