/* The store: the audit record's hash chain (intact, rewritten, truncated in the middle), the
 * append-only triggers, tokens stored only as hashes, and a restart that brings back a confirmed
 * creation still in flight with its reservation and the same request id; import plans that
 * outlive a restart and are taken once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/clock.h"
#include "common/log.h"
#include "test_fleetd_util.h"

static void test_audit_chain(void **state)
{
        char *dir = tfu_tmpdir();
        struct store *s = NULL;
        char err[256];
        uint64_t n = 0;

        assert_int_equal(store_open(dir, &s), 0);
        for (int i = 0; i < 20; i++)
                assert_int_equal(
                    audit_append(s, false, "test.entry", "x", "unit", json_pack("{s:i}", "i", i)),
                    0);
        assert_int_equal(audit_verify(s, &n, err, sizeof(err)), 0);
        assert_int_equal(n, 20);
        /* the triggers refuse edits */
        assert_int_not_equal(
            sqlite3_exec(s->db, "UPDATE audit SET subject='y' WHERE seq=5", NULL, NULL, NULL),
            SQLITE_OK);
        assert_int_not_equal(sqlite3_exec(s->db, "DELETE FROM audit WHERE seq=5", NULL, NULL, NULL),
                             SQLITE_OK);
        /* someone who drops them is still caught */
        assert_int_equal(sqlite3_exec(s->db,
                                      "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;"
                                      "UPDATE audit SET detail='{\"i\":99}' WHERE seq=7",
                                      NULL, NULL, NULL),
                         SQLITE_OK);
        assert_int_equal(audit_verify(s, &n, err, sizeof(err)), -EBADMSG);
        assert_non_null(strstr(err, "entry 7"));
        store_close(s);
        tfu_rmdir(dir);
}

static void test_audit_deleted_entry(void **state)
{
        char *dir = tfu_tmpdir();
        struct store *s = NULL;
        char err[256];
        uint64_t n = 0;

        assert_int_equal(store_open(dir, &s), 0);
        for (int i = 0; i < 5; i++)
                audit_append(s, false, "test.entry", "x", "unit", NULL);
        sqlite3_exec(s->db, "DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq=3", NULL,
                     NULL, NULL);
        assert_int_equal(audit_verify(s, &n, err, sizeof(err)), -EBADMSG);
        assert_non_null(strstr(err, "entry 3 is missing"));
        store_close(s);
        tfu_rmdir(dir);
}

static void test_tokens(void **state)
{
        char *dir = tfu_tmpdir();
        struct store *s = NULL;
        char token[TOKEN_TEXT_LEN + 1], name[TOKEN_NAME_MAX + 1], other[TOKEN_TEXT_LEN + 1];
        sqlite3_stmt *st;

        assert_int_equal(store_open(dir, &s), 0);
        assert_int_equal(store_token_create(s, "alice", token), 0);
        assert_int_equal(strlen(token), TOKEN_TEXT_LEN);
        assert_int_equal(store_token_create(s, "alice", other), -EEXIST);
        assert_int_equal(store_token_create(s, "bad name", other), -EINVAL);
        assert_int_equal(store_token_check(s, token, name), 0);
        assert_string_equal(name, "alice");
        token[10] ^= 1;
        assert_int_equal(store_token_check(s, token, name), -EACCES);
        token[10] ^= 1;
        /* only the hash is stored */
        assert_int_equal(sqlite3_prepare_v2(s->db, "SELECT hash FROM tokens", -1, &st, NULL),
                         SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        assert_null(strstr((const char *)sqlite3_column_text(st, 0), token + 4));
        assert_int_equal(strlen((const char *)sqlite3_column_text(st, 0)), 64);
        sqlite3_finalize(st);
        assert_int_equal(store_token_revoke(s, "alice"), 0);
        assert_int_equal(store_token_check(s, token, name), -EACCES);
        assert_int_equal(store_token_revoke(s, "alice"), -ENOENT);
        assert_int_equal(store_token_check(s, "", name), -EACCES);
        store_close(s);
        tfu_rmdir(dir);
}

/* A store made before tokens could expire (no expires_ms / last_used_ms columns) opens with its
 * tokens intact and gains the columns; an expired token is refused with -EKEYEXPIRED. */
static void test_token_migration_and_expiry(void **state)
{
        char *dir = tfu_tmpdir(), path[4200];
        char token[TOKEN_TEXT_LEN + 1], old[TOKEN_TEXT_LEN + 1], name[TOKEN_NAME_MAX + 1];
        struct store *s = NULL;
        sqlite3 *db;
        json_t *list;

        assert_int_equal(store_open(dir, &s), 0);
        assert_int_equal(store_token_create(s, "old", old), 0);
        store_close(s);
        /* back to the previous schema: the tokens table as it was */
        snprintf(path, sizeof(path), "%s/%s", dir, STORE_FILE);
        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        assert_int_equal(sqlite3_exec(db,
                                      "CREATE TABLE t2(name TEXT PRIMARY KEY, hash TEXT NOT NULL"
                                      " UNIQUE, created_ms INTEGER NOT NULL, revoked_ms INTEGER);"
                                      "INSERT INTO t2 SELECT name, hash, created_ms, revoked_ms"
                                      " FROM tokens; DROP TABLE tokens;"
                                      "ALTER TABLE t2 RENAME TO tokens;"
                                      "PRAGMA user_version = 0;", /* unversioned */
                                      NULL, NULL, NULL),
                         SQLITE_OK);
        sqlite3_close(db);

        assert_int_equal(store_open(dir, &s), 0);
        assert_int_equal(store_token_check(s, old, name), 0);
        assert_string_equal(name, "old");
        list = store_token_list(s);
        assert_true(json_is_integer(json_object_get(json_array_get(list, 0), "last_used_ms")));
        assert_true(json_is_null(json_object_get(json_array_get(list, 0), "expires_ms")));
        json_decref(list);

        assert_int_equal(store_token_create_until(s, "later", clock_realtime_ms() + 3600000, token),
                         0);
        assert_int_equal(store_token_check(s, token, name), 0);
        assert_int_equal(store_token_create_until(s, "past", clock_realtime_ms() - 1, token), 0);
        assert_int_equal(store_token_check(s, token, name), -EKEYEXPIRED);
        store_close(s);
        tfu_rmdir(dir);
}

static int refuse(void *ctx, const char *address, uint16_t port, const char *method,
                  const char *path, const char *body, uint64_t timeout_ms, long *ret_status,
                  char **ret_body)
{
        return -ECONNREFUSED;
}

static void test_restart_keeps_creation(void **state)
{
        char *dir = tfu_tmpdir();
        struct fleet_transport tr = {refuse, NULL};
        struct plan_request r = {.memory_mib = 2048,
                                 .vcpus = 1,
                                 .vault_disk_mib = 64,
                                 .entity = "acme",
                                 .image = "base"};
        struct plan_outcome p, c;
        struct fleetd f;
        char vm_id[VM_ID_MAX + 1], req_id[PLAN_ID_LEN + 1], plan_id[64];

        assert_int_equal(tfu_fleetd_open(&f, dir, 1, &tr), 0);
        tfu_heartbeat(&f.table, 1, 1, 16000, 10, NULL, clock_monotonic_ms());
        plans_create(&f, &r, "test", &p);
        snprintf(plan_id, sizeof(plan_id), "%s", json_string_value(json_object_get(p.body, "id")));
        plans_confirm(&f, plan_id, "test", &c);
        assert_int_equal(api_outcome_status(&c), 201);
        snprintf(vm_id, sizeof(vm_id), "%s", f.vms[0].id);
        snprintf(req_id, sizeof(req_id), "%s", f.vms[0].request_id);
        json_decref(p.body);
        json_decref(c.body);
        fleetd_close(&f); /* as after a crash: nothing but the store survives */

        assert_int_equal(tfu_fleetd_open(&f, dir, 1, &tr), 0);
        assert_int_equal(f.n_vms, 1);
        assert_string_equal(f.vms[0].id, vm_id);
        assert_string_equal(f.vms[0].request_id, req_id);
        assert_int_equal(f.vms[0].status, VM_CREATING);
        assert_true(f.vms[0].reserved);
        assert_int_equal(node_table_find(&f.table, "n1")->reserved_mib, 2048);
        /* confirming again answers the same VM, creates nothing */
        plans_confirm(&f, plan_id, "test", &c);
        assert_int_equal(api_outcome_status(&c), 200);
        assert_string_equal(json_string_value(json_object_get(c.body, "id")), vm_id);
        assert_int_equal(f.n_vms, 1);
        json_decref(c.body);
        fleetd_close(&f);
        tfu_rmdir(dir);
}

static void test_roster_reload_keeps_state(void **state)
{
        char *dir = tfu_tmpdir();
        struct fleetd f;
        char *text;
        FILE *fp;

        assert_int_equal(tfu_fleetd_open(&f, dir, 2, NULL), 0);
        assert_int_equal(tfu_heartbeat(&f.table, 1, 1, 8000, 10, NULL, 5), 0);
        node_table_find(&f.table, "n1")->reserved_mib = 77;
        text = tfu_roster_text(3, 2);
        fp = fopen(f.cfg.roster_file, "w");
        fputs(text, fp);
        fclose(fp);
        free(text);
        assert_int_equal(roster_reload(&f, true), 0);
        assert_int_equal(f.table.roster->n_nodes, 4);
        assert_true(node_table_find(&f.table, "n1")->seen);
        assert_int_equal(node_table_find(&f.table, "n1")->reserved_mib, 77);
        assert_non_null(node_table_find(&f.table, "n3"));
        /* a lower version is refused */
        text = tfu_roster_text(1, 1);
        fp = fopen(f.cfg.roster_file, "w");
        fputs(text, fp);
        fclose(fp);
        free(text);
        assert_int_equal(roster_reload(&f, true), -ESTALE);
        assert_int_equal(f.table.roster->n_nodes, 4);
        fleetd_close(&f);
        tfu_rmdir(dir);
}

/* fleetctl appends (token.created) through its own connection while fleetd runs */
static void test_audit_two_writers(void **state)
{
        char *dir = tfu_tmpdir(), token[TOKEN_TEXT_LEN + 1], err[256];
        struct store *a = NULL, *b = NULL;
        uint64_t n = 0;

        assert_int_equal(store_open(dir, &a), 0);
        assert_int_equal(store_open(dir, &b), 0);
        assert_int_equal(audit_append(a, false, "test.a", "1", "unit", NULL), 0);
        assert_int_equal(store_token_create(b, "robot", token), 0);
        assert_int_equal(audit_append(a, false, "test.a", "2", "unit", NULL), 0);
        assert_int_equal(store_begin(a), 0);
        assert_int_equal(audit_append(a, true, "test.a", "3", "unit", NULL), 0);
        assert_int_equal(store_commit(a), 0);
        assert_int_equal(store_token_revoke(b, "robot"), 0);
        assert_int_equal(audit_append(a, false, "test.a", "4", "unit", NULL), 0);
        assert_int_equal(audit_verify(b, &n, err, sizeof(err)), 0);
        assert_int_equal(n, 6);
        store_close(a);
        store_close(b);
        tfu_rmdir(dir);
}

static void test_plan_prune(void **state)
{
        char *dir = tfu_tmpdir();
        struct store *s = NULL;
        struct plan_row old = {.id = "00000000000000000000000000000001",
                               .node_id = "n1",
                               .state = "open",
                               .created_ms = 1,
                               .expires_ms = 2,
                               .body = "{\"id\":\"x\",\"candidates\":[1,2,3]}"};
        struct plan_row kept = old, conf = old, got = {{0}};

        snprintf(kept.id, sizeof(kept.id), "00000000000000000000000000000002");
        kept.expires_ms = 5000;
        snprintf(conf.id, sizeof(conf.id), "00000000000000000000000000000003");
        snprintf(conf.state, sizeof(conf.state), "confirmed");
        assert_int_equal(store_open(dir, &s), 0);
        assert_int_equal(store_plan_insert(s, &old), 0);
        assert_int_equal(store_plan_insert(s, &kept), 0);
        assert_int_equal(store_plan_insert(s, &conf), 0);
        assert_int_equal(store_plan_prune(s, 1000), 1);
        assert_int_equal(store_plan_get(s, old.id, &got), 0);
        assert_string_equal(got.body, "{}");
        plan_row_done(&got);
        assert_int_equal(store_plan_get(s, conf.id, &got), 0);
        assert_non_null(strstr(got.body, "candidates"));
        plan_row_done(&got);
        store_close(s);
        tfu_rmdir(dir);
}

/* Import plans outlive a restart, are taken once, expire, and at most max are open. */
static void test_import_plans(void **state)
{
        char *dir = tfu_tmpdir(), *doc = NULL;
        struct store *s = NULL;

        assert_int_equal(store_open(dir, &s), 0);
        assert_int_equal(store_import_plan_put(s, "p1", "{\"a\":1}", 2000, 1000, 2), 0);
        assert_int_equal(store_import_plan_put(s, "p2", "{\"a\":2}", 1500, 1000, 2), 0);
        assert_int_equal(store_import_plan_put(s, "p3", "{}", 2000, 1000, 2), -ENOSPC);
        assert_int_equal(store_import_plan_put(s, "p1", "{}", 2000, 1000, 3), -EEXIST);
        store_close(s);
        s = NULL;
        assert_int_equal(store_open(dir, &s), 0); /* a restart between plan and confirm */
        assert_int_equal(store_import_plan_take(s, "p2", 1600, &doc), -ENOENT); /* expired */
        /* an expired plan no longer counts against the bound */
        assert_int_equal(store_import_plan_put(s, "p3", "{}", 3000, 1600, 2), 0);
        assert_int_equal(store_import_plan_take(s, "p1", 1600, &doc), 0);
        assert_string_equal(doc, "{\"a\":1}");
        free(doc);
        doc = NULL;
        assert_int_equal(store_import_plan_take(s, "p1", 1600, &doc), -ENOENT); /* once */
        assert_null(doc);
        store_close(s);
        tfu_rmdir(dir);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_audit_chain),
            cmocka_unit_test(test_audit_deleted_entry),
            cmocka_unit_test(test_tokens),
            cmocka_unit_test(test_token_migration_and_expiry),
            cmocka_unit_test(test_restart_keeps_creation),
            cmocka_unit_test(test_roster_reload_keeps_state),
            cmocka_unit_test(test_plan_prune),
            cmocka_unit_test(test_import_plans),
            cmocka_unit_test(test_audit_two_writers),
        };

        log_init("test", LOG_LEVEL_ERROR);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
