/* The store's schema versions: a store written by the unversioned fleetd (tests/golden/
 * store-v0.sql, a dump of the state a 0.x fleetd left after a plan, a confirmation and a second
 * token) migrates step by step to STORE_SCHEMA_VERSION with its data and audit chain intact; a
 * step that fails leaves the store at the version it had; a newer store is refused unchanged. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/log.h"
#include "test_fleetd_util.h"

static char *read_file(const char *path)
{
        FILE *fp = fopen(path, "rb");
        char *buf = NULL;
        long n;

        assert_non_null(fp);
        fseek(fp, 0, SEEK_END);
        n = ftell(fp);
        rewind(fp);
        buf = calloc(1, (size_t)n + 1);
        assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
        fclose(fp);
        return buf;
}

/* dir/fleetd.db made from sql (the golden dump when NULL), then extra run on it. */
static char *make_store(const char *extra)
{
        char *dir = tfu_tmpdir(), path[512], *sql;
        sqlite3 *db = NULL;

        snprintf(path, sizeof(path), "%s/tests/golden/store-v0.sql", TOTEBOX_SOURCE_DIR);
        sql = read_file(path);
        snprintf(path, sizeof(path), "%s/%s", dir, STORE_FILE);
        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        if (extra)
                assert_int_equal(sqlite3_exec(db, extra, NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);
        free(sql);
        return dir;
}

static int count_vm(void *ctx, const struct fleet_vm *vm)
{
        assert_string_equal(vm->id, "tbx-acme-82d9f7");
        assert_string_equal(vm->node_id, "n1");
        assert_int_equal(vm->memory_mib, 1024);
        (*(int *)ctx)++;
        return 0;
}

static int count_rows(struct store *s, const char *sql)
{
        sqlite3_stmt *st = NULL;
        int n;

        assert_int_equal(sqlite3_prepare_v2(s->db, sql, -1, &st, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        n = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        return n;
}

static void test_v0_store_migrates_with_its_data(void **state)
{
        char *dir = make_store(NULL), err[256], held[64];
        struct store *s = NULL;
        struct plan_row p = {{0}};
        uint64_t n = 0;
        int v = -1, vms = 0;

        assert_int_equal(store_file_version(dir, &v), 0);
        assert_int_equal(v, 0);
        assert_int_equal(store_open(dir, &s), 0);
        assert_int_equal(count_rows(s, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
        assert_int_equal(audit_verify(s, &n, err, sizeof(err)), 0);
        assert_int_equal(n, 9);
        assert_int_equal(s->last_seq, 9);
        assert_int_equal(store_vm_load(s, count_vm, &vms), 0);
        assert_int_equal(vms, 1);
        assert_int_equal(store_plan_get(s, "82d9f74fe2102da9ea4621459db698a1", &p), 0);
        assert_string_equal(p.state, "confirmed");
        assert_string_equal(p.vm_id, "tbx-acme-82d9f7");
        plan_row_done(&p);
        assert_int_equal(count_rows(s, "SELECT count(*) FROM tokens"), 2);
        assert_int_equal(count_rows(s, "SELECT count(*) FROM plans WHERE state = 'open'"), 1);
        /* the new step's table is there and usable; the fleet id is claimed once */
        assert_int_equal(store_meta_get(s, "fleet_id", held, sizeof(held)), -ENOENT);
        assert_int_equal(store_meta_claim(s, "fleet_id", "f1", held, sizeof(held)), 0);
        assert_int_equal(store_meta_claim(s, "fleet_id", "other", held, sizeof(held)), -EXDEV);
        assert_string_equal(held, "f1");
        /* the append-only triggers survived the migration */
        assert_int_not_equal(
            sqlite3_exec(s->db, "DELETE FROM audit WHERE seq = 1", NULL, NULL, NULL), SQLITE_OK);
        /* the chain goes on from the migrated head */
        assert_int_equal(audit_append(s, false, "test.after", "x", "unit", NULL), 0);
        assert_int_equal(audit_verify(s, &n, err, sizeof(err)), 0);
        assert_int_equal(n, 10);
        store_close(s);
        /* a second open runs no step again */
        assert_int_equal(store_open(dir, &s), 0);
        assert_int_equal(count_rows(s, "SELECT count(*) FROM audit"), 10);
        store_close(s);
        tfu_rmdir(dir);
}

static bool has_leaf_column(const char *dir)
{
        char path[512];
        sqlite3 *db = NULL;
        bool has;

        snprintf(path, sizeof(path), "%s/%s", dir, STORE_FILE);
        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        has = sqlite3_exec(db, "SELECT leaf FROM audit LIMIT 0", NULL, NULL, NULL) == SQLITE_OK;
        sqlite3_close(db);
        return has;
}

static void test_failed_step_keeps_version(void **state)
{
        /* an unversioned store from before audit leaves whose record has a hole: step 1 adds
         * the leaf column, then cannot give the entries positions and fails */
        char *dir = make_store("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;"
                               " DELETE FROM audit WHERE seq = 3;"
                               " ALTER TABLE audit DROP COLUMN leaf;");
        struct store *s = NULL;
        int v = -1;

        assert_int_equal(store_open(dir, &s), -EBADMSG);
        assert_null(s);
        assert_int_equal(store_file_version(dir, &v), 0);
        assert_int_equal(v, 0);
        assert_false(has_leaf_column(dir)); /* the step's ALTER TABLE was rolled back */
        tfu_rmdir(dir);
}

static void test_newer_store_refused_unchanged(void **state)
{
        char *dir = make_store("PRAGMA user_version = 99;");
        struct store *s = NULL;
        int v = -1;

        assert_int_equal(store_open(dir, &s), -EPROTONOSUPPORT);
        assert_null(s);
        assert_int_equal(store_file_version(dir, &v), 0);
        assert_int_equal(v, 99);
        assert_non_null(store_migration_what(STORE_SCHEMA_VERSION));
        assert_null(store_migration_what(STORE_SCHEMA_VERSION + 1));
        tfu_rmdir(dir);
}

static void test_fresh_store_is_current(void **state)
{
        char *dir = tfu_tmpdir();
        struct store *s = NULL;
        int v = -1;

        assert_int_equal(store_file_version(dir, &v), -ENOENT);
        assert_int_equal(store_open(dir, &s), 0);
        store_close(s);
        assert_int_equal(store_file_version(dir, &v), 0);
        assert_int_equal(v, STORE_SCHEMA_VERSION);
        tfu_rmdir(dir);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_v0_store_migrates_with_its_data),
            cmocka_unit_test(test_failed_step_keeps_version),
            cmocka_unit_test(test_newer_store_refused_unchanged),
            cmocka_unit_test(test_fresh_store_is_current),
        };

        log_init("test", LOG_LEVEL_ERROR);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
