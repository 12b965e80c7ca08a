/* fleetd's audit record as a transparency log (see audit_log.h): the key files, signing and
 * keeping checkpoints, and the check of the record against every checkpoint that exists. */
#include "fleetd/audit_log.h"

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
#include "common/small_file.h"
#include "fleetd/store.h"

/* dir/name on the heap (small_file_path): no 4 KiB path in these frames. */
static char *audit_path(const char *dir, const char *name)
{
        return small_file_path(dir, name);
}

/* Reads a small file into buf (NUL-terminated); returns its length. */
static int audit_read_small(const char *path, bool private, char *buf, size_t size)
{
        char *text = NULL;
        size_t len = 0;
        int r = small_file_read(path, size - 1, private, &text, &len);

        if (r < 0)
                return r;
        memcpy(buf, text, len + 1);
        sodium_memzero(text, len);
        free(text);
        return (int)len;
}

static void audit_chomp(char *s)
{
        size_t n = strlen(s);

        while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
                s[--n] = '\0';
}

/* audit.pub follows audit.key: written when absent or when it names another key. */
static int audit_pub_sync(const char *dir, const struct tlog_key *pub)
{
        char *path, want[TLOG_VKEY_MAX + 2], have[TLOG_VKEY_MAX + 8];
        int r;

        r = tlog_vkey_format(pub, want, sizeof(want) - 1);
        if (r < 0)
                return r;
        strcat(want, "\n");
        path = audit_path(dir, AUDIT_PUB_FILE);
        if (!path)
                return -ENOMEM;
        r = audit_read_small(path, false, have, sizeof(have));
        if (r >= 0 && strcmp(have, want) == 0)
                r = 0;
        else
                r = small_file_write(path, want, strlen(want), 0644);
        free(path);
        return r;
}

static int audit_key_create(const char *dir, const char *fleet_id, struct audit_key *ret, char *err,
                            size_t errsize)
{
        char name[TLOG_NAME_MAX + 1], text[TLOG_SKEY_MAX + 2], *path;
        uint8_t pk[TLOG_PUBLIC_KEY_LEN];
        int r;

        snprintf(name, sizeof(name), "%s%s", AUDIT_ORIGIN_PREFIX, fleet_id ? fleet_id : "");
        crypto_sign_keypair(pk, ret->sk);
        r = tlog_key_init(name, pk, &ret->pub);
        if (r == 0)
                r = tlog_skey_format(name, ret->sk, text, sizeof(text) - 1);
        if (r < 0) {
                snprintf(err, errsize, "cannot name the audit key '%s'", name);
                return -EINVAL;
        }
        strcat(text, "\n");
        path = audit_path(dir, AUDIT_KEY_FILE);
        r = path ? small_file_write(path, text, strlen(text), 0600) : -ENOMEM;
        sodium_memzero(text, sizeof(text));
        if (r < 0)
                snprintf(err, errsize, "cannot write '%s/%s': %s", dir, AUDIT_KEY_FILE,
                         strerror(-r));
        free(path);
        return r;
}

static int audit_key_load_from(const char *dir, const char *path, bool create, const char *fleet_id,
                               struct audit_key *ret, char *err, size_t errsize)
{
        char text[TLOG_SKEY_MAX + 8];
        struct audit_key k;
        int r;

        r = audit_read_small(path, true, text, sizeof(text));
        if (r == -ENOENT && create) {
                r = audit_key_create(dir, fleet_id, &k, err, errsize);
                if (r == 0 && (r = audit_pub_sync(dir, &k.pub)) < 0)
                        snprintf(err, errsize, "cannot write '%s/%s': %s", dir, AUDIT_PUB_FILE,
                                 strerror(-r));
                if (r == 0)
                        *ret = k;
                sodium_memzero(&k, sizeof(k));
                return r;
        }
        if (r == -EPERM)
                snprintf(err, errsize, "audit key '%s' is readable by others: refused (chmod 600)",
                         path);
        else if (r < 0)
                snprintf(err, errsize, "cannot read the audit key '%s': %s", path, strerror(-r));
        if (r < 0)
                return r;
        audit_chomp(text);
        r = tlog_skey_parse(text, &k.pub, k.sk);
        sodium_memzero(text, sizeof(text));
        if (r < 0) {
                snprintf(err, errsize, "'%s' is not a C2SP signer key", path);
                return -EBADMSG;
        }
        if (create && audit_pub_sync(dir, &k.pub) < 0) /* fleetctl (create false) writes nothing */
                snprintf(err, errsize, "cannot write '%s/%s'", dir, AUDIT_PUB_FILE);
        *ret = k;
        sodium_memzero(&k, sizeof(k));
        return 0;
}

int audit_key_load(const char *dir, bool create, const char *fleet_id, struct audit_key *ret,
                   char *err, size_t errsize)
{
        char *path = audit_path(dir, AUDIT_KEY_FILE);
        int r =
            path ? audit_key_load_from(dir, path, create, fleet_id, ret, err, errsize) : -ENOMEM;

        if (!path)
                snprintf(err, errsize, "out of memory");
        free(path);
        return r;
}

void audit_key_wipe(struct audit_key *k)
{
        if (k)
                sodium_memzero(k, sizeof(*k));
}

int audit_pub_load(const char *dir, struct tlog_key *ret, char *err, size_t errsize)
{
        char *path = audit_path(dir, AUDIT_PUB_FILE), text[TLOG_VKEY_MAX + 8];
        int r = path ? audit_read_small(path, false, text, sizeof(text)) : -ENOMEM;

        if (r < 0) {
                snprintf(err, errsize, "cannot read fleetd's audit key '%s/%s': %s", dir,
                         AUDIT_PUB_FILE, strerror(-r));
        } else {
                audit_chomp(text);
                r = 0;
                if (tlog_vkey_parse(text, ret) < 0) {
                        snprintf(err, errsize, "'%s' is not a C2SP verifier key", path);
                        r = -EBADMSG;
                }
        }
        free(path);
        return r;
}

static int audit_checkpoint_store_row(struct store *s, uint64_t size, const char *note)
{
        sqlite3_stmt *st = NULL;
        int r = -EIO;

        pthread_mutex_lock(&s->mu);
        /* never backwards: a checkpoint of a smaller tree does not replace a larger one */
        if (sqlite3_prepare_v2(s->db,
                               "INSERT INTO audit_checkpoint(id, size, note, signed_ms)"
                               " VALUES (1, ?1, ?2, ?3) ON CONFLICT(id) DO UPDATE SET"
                               " size = ?1, note = ?2, signed_ms = ?3 WHERE ?1 >= size",
                               -1, &st, NULL) == SQLITE_OK) {
                sqlite3_bind_int64(st, 1, (sqlite3_int64)size);
                sqlite3_bind_text(st, 2, note, -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 3, (sqlite3_int64)clock_realtime_ms());
                if (sqlite3_step(st) == SQLITE_DONE)
                        r = 0;
        }
        sqlite3_finalize(st);
        pthread_mutex_unlock(&s->mu);
        return r;
}

int audit_checkpoint_sign(struct store *s, const char *dir, const struct audit_key *k,
                          const merkle_hash *leaves, uint64_t n, char *buf, size_t size)
{
        struct tlog_checkpoint c = {.size = n};
        char *path;
        int len, r;

        snprintf(c.origin, sizeof(c.origin), "%s", k->pub.name);
        merkle_root(leaves, n, c.root);
        len = tlog_checkpoint_sign(&c, &k->pub, k->sk, buf, size);
        if (len < 0)
                return len;
        r = audit_checkpoint_store_row(s, n, buf);
        if (r == 0 && dir) {
                path = audit_path(dir, AUDIT_CHECKPOINT_FILE);
                r = path ? small_file_write(path, buf, (size_t)len, 0644) : -ENOMEM;
                free(path);
        }
        return r;
}

char *audit_checkpoint_stored(struct store *s)
{
        sqlite3_stmt *st = NULL;
        char *note = NULL;

        pthread_mutex_lock(&s->mu);
        if (sqlite3_prepare_v2(s->db, "SELECT note FROM audit_checkpoint WHERE id = 1", -1, &st,
                               NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
                note = strdup((const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        pthread_mutex_unlock(&s->mu);
        return note;
}

const char *audit_finding_name(enum audit_finding_kind k)
{
        static const char *const names[] = {
            [AUDIT_TAMPERED] = "tampered",       [AUDIT_TRUNCATED] = "truncation",
            [AUDIT_ROLLED_BACK] = "rollback",    [AUDIT_FORKED] = "fork",
            [AUDIT_BAD_WITNESS] = "bad-witness", [AUDIT_REFUSED] = "refused-checkpoint",
        };

        return (size_t)k < sizeof(names) / sizeof(names[0]) ? names[k] : "unknown";
}

__attribute__((format(printf, 3, 4))) static void
audit_report_add(struct audit_report *rep, enum audit_finding_kind kind, const char *fmt, ...)
{
        struct audit_finding *f;
        va_list ap;

        if (rep->n_findings == AUDIT_FINDINGS_MAX)
                return;
        f = &rep->findings[rep->n_findings++];
        f->kind = kind;
        va_start(ap, fmt);
        vsnprintf(f->text, sizeof(f->text), fmt, ap);
        va_end(ap);
}

static void audit_root_b64(const merkle_hash root, char out[48])
{
        sodium_bin2base64(out, 48, root, MERKLE_HASH_LEN, sodium_base64_VARIANT_ORIGINAL);
}

struct audit_check {
        const merkle_hash *leaves;
        uint64_t n;
        const struct tlog_key *key;
        bool own_cut;  /* the database's own checkpoint is larger than the record */
        bool have_own; /* the database's own checkpoint verified */
        struct audit_report *rep;
};

/* One checkpoint against the record. own: it is the database's own row. */
static void audit_check_one(struct audit_check *c, const struct audit_witness *w, bool own)
{
        struct tlog_checkpoint cp;
        merkle_hash root;
        char want[48], got[48];
        int r = tlog_checkpoint_open(w->note, w->len, c->key, &cp);

        if (r < 0) {
                audit_report_add(
                    c->rep, AUDIT_BAD_WITNESS,
                    "%s holds a checkpoint that %s key '%s': replaced or forged", w->holder,
                    r == -EBADMSG ? "does not parse as a C2SP checkpoint for" : "is not signed by",
                    c->key->name);
                return;
        }
        if (strcmp(cp.origin, c->key->name) != 0) {
                audit_report_add(c->rep, AUDIT_BAD_WITNESS,
                                 "%s holds a checkpoint of origin '%s', not '%s'", w->holder,
                                 cp.origin, c->key->name);
                return;
        }
        if (w->evidence) {
                audit_report_add(c->rep, AUDIT_REFUSED,
                                 "%s refused a checkpoint of %llu entries signed by '%s' as "
                                 "inconsistent with the one it holds, and kept it: fleetd signed "
                                 "two histories (fork or rollback)",
                                 w->holder, (unsigned long long)cp.size, c->key->name);
                return;
        }
        if (cp.size > c->rep->largest)
                c->rep->largest = cp.size;
        if (own)
                c->have_own = true;
        if (cp.size > c->n) {
                if (own)
                        c->own_cut = true;
                if (own || c->own_cut)
                        audit_report_add(c->rep, AUDIT_TRUNCATED,
                                         "the record holds %llu entries, but %s holds a "
                                         "checkpoint of %llu: entries %llu..%llu were cut",
                                         (unsigned long long)c->n, w->holder,
                                         (unsigned long long)cp.size, (unsigned long long)c->n + 1,
                                         (unsigned long long)cp.size);
                else
                        audit_report_add(c->rep, AUDIT_ROLLED_BACK,
                                         "%s holds a checkpoint of %llu entries, but the "
                                         "record %s at %llu: %s",
                                         w->holder, (unsigned long long)cp.size,
                                         c->have_own ? "and its own checkpoint stop" : "stops",
                                         (unsigned long long)c->n,
                                         c->have_own ? "the database is an older copy"
                                                     : "the database is an older copy, or its "
                                                       "tail was cut and its own checkpoint "
                                                       "removed");
                return;
        }
        merkle_root(c->leaves, cp.size, root);
        if (sodium_memcmp(root, cp.root, MERKLE_HASH_LEN) != 0) {
                audit_root_b64(cp.root, want);
                audit_root_b64(root, got);
                audit_report_add(c->rep, AUDIT_FORKED,
                                 "%s holds a checkpoint of %llu entries with root %s, but the "
                                 "record's first %llu entries hash to %s: its history was "
                                 "rewritten",
                                 w->holder, (unsigned long long)cp.size, want,
                                 (unsigned long long)cp.size, got);
                return;
        }
        c->rep->checked++;
}

static void audit_check_file(struct audit_check *c, const char *dir)
{
        char *path = audit_path(dir, AUDIT_CHECKPOINT_FILE), *note = malloc(TLOG_NOTE_MAX + 1);
        struct audit_witness w = {.holder = "the checkpoint file " AUDIT_CHECKPOINT_FILE};
        int n;

        if (!note || !path) {
                free(note);
                free(path);
                return;
        }
        n = audit_read_small(path, false, note, TLOG_NOTE_MAX + 1);
        if (n >= 0) {
                w.note = note;
                w.len = (size_t)n;
                audit_check_one(c, &w, false);
        } else if (n != -ENOENT)
                audit_report_add(c->rep, AUDIT_BAD_WITNESS, "cannot read '%s': %s", path,
                                 strerror(-n));
        free(note);
        free(path);
}

int audit_log_check(struct store *s, const char *dir, const struct tlog_key *key,
                    const struct audit_witness *w, size_t n_w, struct audit_report *ret)
{
        struct audit_report *rep = ret;
        struct audit_check c = {.key = key, .rep = rep};
        merkle_hash *leaves = NULL;
        char err[256] = "", *own;
        int r;

        memset(rep, 0, sizeof(*rep));
        r = audit_walk(s, &leaves, &c.n, err, sizeof(err));
        if (r == -EIO || r == -ENOMEM)
                return r;
        if (r < 0)
                audit_report_add(rep, AUDIT_TAMPERED, "%s", err);
        c.leaves = leaves;
        rep->entries = c.n;
        own = audit_checkpoint_stored(s);
        if (own) {
                struct audit_witness ow = {
                    .holder = "the database", .note = own, .len = strlen(own)};

                audit_check_one(&c, &ow, true);
        }
        if (dir)
                audit_check_file(&c, dir);
        for (size_t i = 0; i < n_w; i++)
                audit_check_one(&c, &w[i], false);
        free(own);
        free(leaves);
        return rep->n_findings ? -EBADMSG : 0;
}
