/* fleetd's audit record as a transparency log: the migration from the hash-chain table (schema
 * 1, no leaf column) keeps every entry as a leaf in its place; the key file is made 0600 and
 * refused when others can read it or it is not a key; and the check names each adversary: a
 * cut tail (truncation), a record older than a checkpoint (rollback), a checkpoint whose root is
 * not the record's (fork), an edited entry (tampered), a checkpoint under another key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "common/log.h"
#include "fleetd/audit_log.h"
#include "test_fleetd_util.h"

static void fill(struct store *s, int n)
{
        for (int i = 0; i < n; i++)
                assert_int_equal(
                    audit_append(s, false, "test.entry", "x", "unit", json_pack("{s:i}", "i", i)),
                    0);
}

static void test_migration_from_hash_chain(void **state)
{
        char *dir = tfu_tmpdir();
        struct store *s = NULL;
        merkle_hash *before = NULL, *after = NULL;
        uint64_t n1 = 0, n2 = 0;
        char err[256];

        assert_int_equal(store_open(dir, &s), 0);
        fill(s, 25);
        assert_int_equal(audit_leaves_load(s, 0, &before, &n1), 0);
        /* back to schema 1: the same rows without the leaf column */
        assert_int_equal(
            sqlite3_exec(s->db,
                         "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;"
                         "CREATE TABLE old(seq INTEGER PRIMARY KEY, time_ms INTEGER NOT NULL,"
                         " kind TEXT NOT NULL, subject TEXT NOT NULL, actor TEXT NOT NULL,"
                         " detail TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);"
                         "INSERT INTO old SELECT seq, time_ms, kind, subject, actor, detail,"
                         " prev_hash, hash FROM audit; DROP TABLE audit;"
                         "ALTER TABLE old RENAME TO audit; PRAGMA user_version = 0;",
                         NULL, NULL, NULL),
            SQLITE_OK);
        store_close(s);
        s = NULL;
        assert_int_equal(store_open(dir, &s), 0); /* migrates */
        assert_int_equal(audit_leaves_load(s, 0, &after, &n2), 0);
        assert_int_equal(n2, 25);
        assert_memory_equal(before, after, 25 * sizeof(merkle_hash));
        assert_int_equal(audit_verify(s, &n2, err, sizeof(err)), 0);
        /* the triggers are back, and new entries follow the old ones */
        assert_int_not_equal(
            sqlite3_exec(s->db, "UPDATE audit SET subject='y' WHERE seq=5", NULL, NULL, NULL),
            SQLITE_OK);
        assert_int_not_equal(sqlite3_exec(s->db, "DELETE FROM audit WHERE seq=5", NULL, NULL, NULL),
                             SQLITE_OK);
        fill(s, 1);
        assert_int_equal(audit_verify(s, &n2, err, sizeof(err)), 0);
        assert_int_equal(n2, 26);
        free(before);
        free(after);
        store_close(s);
        tfu_rmdir(dir);
}

static void test_key_file(void **state)
{
        char *dir = tfu_tmpdir(), path[512], err[512];
        struct audit_key k, again;
        struct tlog_key pub;
        struct stat st;
        FILE *fp;

        assert_int_equal(audit_key_load(dir, false, "f1", &k, err, sizeof(err)), -ENOENT);
        assert_int_equal(audit_key_load(dir, true, "f1", &k, err, sizeof(err)), 0);
        assert_string_equal(k.pub.name, "fleetd.totebox/f1");
        snprintf(path, sizeof(path), "%s/%s", dir, AUDIT_KEY_FILE);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        assert_int_equal(audit_key_load(dir, true, "f1", &again, err, sizeof(err)), 0);
        assert_memory_equal(k.pub.pk, again.pub.pk, 32); /* loaded, not made again */
        assert_int_equal(audit_pub_load(dir, &pub, err, sizeof(err)), 0);
        assert_memory_equal(pub.pk, k.pub.pk, 32);
        /* a lost or replaced audit.pub is written again from the key at the next start */
        snprintf(path, sizeof(path), "%s/%s", dir, AUDIT_PUB_FILE);
        fp = fopen(path, "w");
        fputs("fleetd.totebox/f1+00000000+AQ==\n", fp);
        fclose(fp);
        assert_int_equal(audit_key_load(dir, true, "f1", &again, err, sizeof(err)), 0);
        assert_int_equal(audit_pub_load(dir, &pub, err, sizeof(err)), 0);
        assert_memory_equal(pub.pk, k.pub.pk, 32);
        snprintf(path, sizeof(path), "%s/%s", dir, AUDIT_KEY_FILE);
        assert_int_equal(chmod(path, 0640), 0);
        assert_int_equal(audit_key_load(dir, true, "f1", &again, err, sizeof(err)), -EPERM);
        assert_non_null(strstr(err, "readable by others"));
        assert_int_equal(chmod(path, 0600), 0);
        fp = fopen(path, "w");
        fputs("PRIVATE+KEY+nonsense\n", fp);
        fclose(fp);
        assert_int_equal(audit_key_load(dir, true, "f1", &again, err, sizeof(err)), -EBADMSG);
        audit_key_wipe(&k);
        tfu_rmdir(dir);
}

struct fx {
        char *dir;
        struct store *s;
        struct audit_key k;
        char note[TLOG_NOTE_MAX];
};

static void fx_open(struct fx *fx, int entries)
{
        merkle_hash *leaves = NULL;
        uint64_t n = 0;
        char err[256];

        fx->dir = tfu_tmpdir();
        assert_int_equal(store_open(fx->dir, &fx->s), 0);
        assert_int_equal(audit_key_load(fx->dir, true, "f1", &fx->k, err, sizeof(err)), 0);
        fill(fx->s, entries);
        assert_int_equal(audit_leaves_load(fx->s, 0, &leaves, &n), 0);
        assert_int_equal(
            audit_checkpoint_sign(fx->s, fx->dir, &fx->k, leaves, n, fx->note, sizeof(fx->note)),
            0);
        free(leaves);
}

static void fx_close(struct fx *fx)
{
        store_close(fx->s);
        audit_key_wipe(&fx->k);
        tfu_rmdir(fx->dir);
}

static unsigned findings_of(const struct audit_report *rep, enum audit_finding_kind kind)
{
        unsigned n = 0;

        for (unsigned i = 0; i < rep->n_findings; i++)
                n += rep->findings[i].kind == kind;
        return n;
}

/* A checkpoint of n leaves over the entries' own leaves, then fake ones, signed by k. */
static void sign_fake(struct fx *fx, const struct audit_key *k, uint64_t n, bool fork, char *buf)
{
        merkle_hash *leaves = NULL, *all = calloc(n, sizeof(merkle_hash));
        struct tlog_checkpoint c = {.size = n};
        uint64_t have = 0;

        assert_int_equal(audit_leaves_load(fx->s, 0, &leaves, &have), 0);
        memcpy(all, leaves, (have < n ? have : n) * sizeof(merkle_hash));
        if (fork)
                all[2][0] ^= 1;
        snprintf(c.origin, sizeof(c.origin), "%s", k->pub.name);
        merkle_root(all, n, c.root);
        assert_true(tlog_checkpoint_sign(&c, &k->pub, k->sk, buf, TLOG_NOTE_MAX) > 0);
        free(leaves);
        free(all);
}

static void test_check_intact_and_truncated(void **state)
{
        struct fx fx;
        struct audit_report rep;
        struct audit_witness w = {.holder = "node 'n1'"};

        fx_open(&fx, 33);
        w.note = fx.note;
        w.len = strlen(fx.note);
        assert_int_equal(audit_log_check(fx.s, fx.dir, &fx.k.pub, &w, 1, &rep), 0);
        assert_int_equal(rep.entries, 33);
        assert_int_equal(rep.checked, 3); /* the row, the file, the node */
        assert_int_equal(rep.largest, 33);
        assert_int_equal(
            sqlite3_exec(fx.s->db, "DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq > 20",
                         NULL, NULL, NULL),
            SQLITE_OK);
        assert_int_equal(audit_log_check(fx.s, fx.dir, &fx.k.pub, &w, 1, &rep), -EBADMSG);
        assert_int_equal(findings_of(&rep, AUDIT_TRUNCATED), 3);
        assert_non_null(strstr(rep.findings[0].text, "entries 21..33 were cut"));
        assert_int_equal(findings_of(&rep, AUDIT_TAMPERED), 0);
        fx_close(&fx);
}

static void test_check_rollback_fork_and_keys(void **state)
{
        struct fx fx;
        struct audit_report rep;
        struct audit_key other;
        char newer[TLOG_NOTE_MAX], forked[TLOG_NOTE_MAX], foreign[TLOG_NOTE_MAX], err[256];
        char *odir = tfu_tmpdir();
        struct audit_witness w[3] = {
            {.holder = "node 'n1'", .note = newer},
            {.holder = "node 'n2'", .note = forked},
            {.holder = "node 'n3'", .note = foreign},
        };

        fx_open(&fx, 33);
        assert_int_equal(audit_key_load(odir, true, "f1", &other, err, sizeof(err)), 0);
        sign_fake(&fx, &fx.k, 40, false, newer);    /* the nodes saw 7 more: a rollback */
        sign_fake(&fx, &fx.k, 30, true, forked);    /* entry 3 differs: a fork */
        sign_fake(&fx, &other, 33, false, foreign); /* the same tree under another key */
        for (int i = 0; i < 3; i++)
                w[i].len = strlen(w[i].note);
        assert_int_equal(audit_log_check(fx.s, fx.dir, &fx.k.pub, w, 3, &rep), -EBADMSG);
        assert_int_equal(findings_of(&rep, AUDIT_ROLLED_BACK), 1);
        assert_int_equal(findings_of(&rep, AUDIT_FORKED), 1);
        assert_int_equal(findings_of(&rep, AUDIT_BAD_WITNESS), 1);
        assert_int_equal(findings_of(&rep, AUDIT_TRUNCATED), 0);
        assert_int_equal(rep.checked, 2); /* fleetd's row and file agree */
        /* an edited entry: tampered, and every checkpoint over it forks */
        assert_int_equal(sqlite3_exec(fx.s->db,
                                      "DROP TRIGGER audit_no_update;"
                                      "UPDATE audit SET detail='{\"i\":99}' WHERE seq=7",
                                      NULL, NULL, NULL),
                         SQLITE_OK);
        assert_int_equal(audit_log_check(fx.s, fx.dir, &fx.k.pub, NULL, 0, &rep), -EBADMSG);
        assert_int_equal(findings_of(&rep, AUDIT_TAMPERED), 1);
        assert_non_null(strstr(rep.findings[0].text, "entry 7"));
        assert_int_equal(findings_of(&rep, AUDIT_FORKED), 2);
        audit_key_wipe(&other);
        tfu_rmdir(odir);
        fx_close(&fx);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_migration_from_hash_chain),
            cmocka_unit_test(test_key_file),
            cmocka_unit_test(test_check_intact_and_truncated),
            cmocka_unit_test(test_check_rollback_fork_and_keys),
        };

        log_init("test", LOG_LEVEL_ERROR);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
