/* The consolidated audit record: append-only (SQLite triggers refuse UPDATE and DELETE) and
 * hash-chained, so that a rewritten history is detectable even by someone who drops the triggers.
 * Entry hash = SHA-256(canonical JSON of {seq, time_ms, kind, subject, actor, detail, prev_hash}),
 * canonical = sorted keys, compact; the first entry's prev_hash is 64 zeros. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "fleetd/store.h"

static const char audit_genesis[] =
    "0000000000000000000000000000000000000000000000000000000000000000";

/* Computes the entry hash; detail is borrowed. */
static int audit_hash(uint64_t seq, uint64_t time_ms, const char *kind, const char *subject,
                      const char *actor, json_t *detail, const char *prev,
                      char out[AUDIT_HASH_HEX + 1])
{
        uint8_t h[crypto_hash_sha256_BYTES];
        json_t *o = json_pack("{s:I, s:I, s:s, s:s, s:s, s:O, s:s}", "seq", (json_int_t)seq,
                              "time_ms", (json_int_t)time_ms, "kind", kind, "subject", subject,
                              "actor", actor, "detail", detail, "prev_hash", prev);
        char *text = o ? json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT) : NULL;

        json_decref(o);
        if (!text)
                return -ENOMEM;
        crypto_hash_sha256(h, (const uint8_t *)text, strlen(text));
        sodium_bin2hex(out, AUDIT_HASH_HEX + 1, h, sizeof(h));
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
        sqlite3_stmt *st = NULL;
        int r = audit_load_head(s); /* fleetctl (another process) may have appended since */

        if (r < 0)
                return r;
        seq = s->last_seq + 1;
        r = audit_hash(seq, now, kind, subject, actor, detail, s->last_hash, hash);
        if (r < 0)
                return r;
        text = json_dumps(detail, JSON_SORT_KEYS | JSON_COMPACT);
        if (!text)
                return -ENOMEM;
        r = -EIO;
        if (sqlite3_prepare_v2(s->db,
                               "INSERT INTO audit(seq, time_ms, kind, subject, actor, detail,"
                               " prev_hash, hash) VALUES (?,?,?,?,?,?,?,?)",
                               -1, &st, NULL) == SQLITE_OK) {
                sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
                sqlite3_bind_int64(st, 2, (sqlite3_int64)now);
                sqlite3_bind_text(st, 3, kind, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 4, subject, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 5, actor, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 6, text, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 7, s->last_hash, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 8, hash, -1, SQLITE_STATIC);
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

static int audit_verify_row(sqlite3_stmt *st, uint64_t expect_seq, char prev[AUDIT_HASH_HEX + 1],
                            char *err, size_t errsize)
{
        uint64_t seq = (uint64_t)sqlite3_column_int64(st, 0);
        const char *stored_prev = (const char *)sqlite3_column_text(st, 6);
        const char *stored = (const char *)sqlite3_column_text(st, 7);
        json_t *detail = json_loads((const char *)sqlite3_column_text(st, 5), 0, NULL);
        char hash[AUDIT_HASH_HEX + 1];
        int r = -EBADMSG;

        if (seq != expect_seq)
                snprintf(err, errsize, "entry %llu is missing (found %llu next)",
                         (unsigned long long)expect_seq, (unsigned long long)seq);
        else if (!detail || !stored_prev || strcmp(stored_prev, prev) != 0)
                snprintf(err, errsize, "entry %llu does not link to the previous entry's hash",
                         (unsigned long long)seq);
        else if (audit_hash(seq, (uint64_t)sqlite3_column_int64(st, 1),
                            (const char *)sqlite3_column_text(st, 2),
                            (const char *)sqlite3_column_text(st, 3),
                            (const char *)sqlite3_column_text(st, 4), detail, prev, hash) < 0 ||
                 !stored || strcmp(hash, stored) != 0)
                snprintf(err, errsize, "entry %llu does not match its hash (rewritten)",
                         (unsigned long long)seq);
        else
                r = 0;
        if (r == 0)
                memcpy(prev, hash, sizeof(hash));
        json_decref(detail);
        return r;
}

static int audit_verify_locked(struct store *s, uint64_t *ret_count, char *err, size_t errsize)
{
        char prev[AUDIT_HASH_HEX + 1];
        sqlite3_stmt *st = NULL;
        uint64_t n = 0;
        int r = 0;

        snprintf(prev, sizeof(prev), "%s", audit_genesis);
        if (sqlite3_prepare_v2(s->db,
                               "SELECT seq, time_ms, kind, subject, actor, detail, prev_hash, hash"
                               " FROM audit ORDER BY seq",
                               -1, &st, NULL) != SQLITE_OK) {
                snprintf(err, errsize, "cannot read the audit record");
                return -EIO;
        }
        while (r == 0 && sqlite3_step(st) == SQLITE_ROW) {
                r = audit_verify_row(st, n + 1, prev, err, errsize);
                if (r == 0)
                        n++;
        }
        sqlite3_finalize(st);
        if (r == 0)
                *ret_count = n;
        return r;
}

int audit_verify(struct store *s, uint64_t *ret_count, char *err, size_t errsize)
{
        int r;

        pthread_mutex_lock(&s->mu);
        r = audit_verify_locked(s, ret_count, err, errsize);
        pthread_mutex_unlock(&s->mu);
        return r;
}
