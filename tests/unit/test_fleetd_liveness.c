/* Liveness with a fake clock: the exact 20 s / 30 s boundaries, the libvirt-age rule (3
 * intervals), recovery on a heartbeat, replay and address checks, and one log/audit entry per
 * state change. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/log.h"
#include "test_fleetd_util.h"

static struct fleetd_config cfg_defaults(void)
{
        struct fleetd_config c;
        struct config_error err;

        config_set_defaults(fleetd_config_table, &c, &err);
        return c;
}

static struct node_table *table_new(unsigned n)
{
        char err[256];
        char *text = tfu_roster_text(n, 1);
        struct roster *r = roster_parse(text, strlen(text), err, sizeof(err));
        struct node_table *t = calloc(1, sizeof(*t));

        free(text);
        assert_non_null(r);
        assert_int_equal(node_table_init(t, r), 0);
        return t;
}

static void table_free(struct node_table *t)
{
        node_table_done(t);
        free(t);
}

static void test_boundaries_exact(void **state)
{
        struct fleetd_config c = cfg_defaults();
        struct node_table *t = table_new(1);
        struct fleet_node *n = node_table_find(t, "n1");
        const uint64_t t0 = 1000000;

        assert_int_equal(node_state_at(n, &c, t0), NODE_UNSEEN);
        assert_int_equal(tfu_heartbeat(t, 1, 1, 8000, 10, NULL, t0), 0);
        assert_int_equal(node_state_at(n, &c, t0), NODE_ALIVE);
        assert_int_equal(node_state_at(n, &c, t0 + 20000), NODE_ALIVE);
        assert_int_equal(node_state_at(n, &c, t0 + 20001), NODE_SUSPECT);
        assert_int_equal(node_state_at(n, &c, t0 + 30000), NODE_SUSPECT);
        assert_int_equal(node_state_at(n, &c, t0 + 30001), NODE_EVICTED);
        /* a heartbeat brings it back */
        assert_int_equal(tfu_heartbeat(t, 1, 2, 8000, 10, NULL, t0 + 90000), 0);
        assert_int_equal(node_state_at(n, &c, t0 + 90000), NODE_ALIVE);
        table_free(t);
}

static void test_boundaries_configurable(void **state)
{
        struct fleetd_config c = cfg_defaults();
        struct node_table *t = table_new(1);
        struct fleet_node *n = node_table_find(t, "n1");

        c.suspect_after_ms = 5000;
        c.evict_after_ms = 7000;
        assert_int_equal(tfu_heartbeat(t, 1, 1, 8000, 10, NULL, 100), 0);
        assert_int_equal(node_state_at(n, &c, 5100), NODE_ALIVE);
        assert_int_equal(node_state_at(n, &c, 5101), NODE_SUSPECT);
        assert_int_equal(node_state_at(n, &c, 7100), NODE_SUSPECT);
        assert_int_equal(node_state_at(n, &c, 7101), NODE_EVICTED);
        table_free(t);
}

static void test_libvirt_age(void **state)
{
        struct fleetd_config c = cfg_defaults();
        struct node_table *t = table_new(3);

        assert_int_equal(tfu_heartbeat(t, 1, 1, 8000, 30000, NULL, 0), 0);
        assert_int_equal(tfu_heartbeat(t, 2, 1, 8000, 30001, NULL, 0), 0);
        assert_int_equal(tfu_heartbeat(t, 3, 1, 8000, -1, NULL, 0), 0);
        assert_int_equal(node_state_at(node_table_find(t, "n1"), &c, 0), NODE_ALIVE);
        assert_int_equal(node_state_at(node_table_find(t, "n2"), &c, 0), NODE_UNHEALTHY);
        assert_int_equal(node_state_at(node_table_find(t, "n3"), &c, 0), NODE_UNHEALTHY);
        /* silence outranks a wedged libvirt */
        assert_int_equal(node_state_at(node_table_find(t, "n2"), &c, 30001), NODE_EVICTED);
        table_free(t);
}

static void test_replay_and_address(void **state)
{
        struct node_table *t = table_new(2);
        struct heartbeat hb = {.epoch = 5,
                               .seq = 1,
                               .interval_ms = 10000,
                               .cpus = 1,
                               .mem_total_mib = 100,
                               .node_id = "n1"};
        char buf[HEARTBEAT_MAX_BYTES], err[256];
        int len;

        memset(hb.inventory_digest, 'a', DIGEST_HEX_LEN);
        assert_int_equal(tfu_heartbeat(t, 1, 5, 8000, 10, NULL, 0), 0);
        assert_int_equal(tfu_heartbeat(t, 1, 5, 8000, 10, NULL, 1), -(1 + HB_DROP_REPLAYED));
        assert_int_equal(tfu_heartbeat(t, 1, 4, 8000, 10, NULL, 1), -(1 + HB_DROP_REPLAYED));
        assert_int_equal(tfu_heartbeat(t, 1, 6, 8000, 10, NULL, 1), 0);
        /* n1's heartbeat from n2's address */
        len = heartbeat_encode(&hb, buf, sizeof(buf));
        assert_true(len > 0);
        assert_int_equal(node_table_ingest(t, buf, (size_t)len, tfu_addr(2), 2, err, sizeof(err)),
                         -(1 + HB_DROP_NODE_MISMATCH));
        assert_int_equal(node_table_ingest(t, buf, (size_t)len, tfu_addr(77), 2, err, sizeof(err)),
                         -(1 + HB_DROP_UNKNOWN_ADDRESS));
        assert_int_equal(node_table_ingest(t, "{", 1, tfu_addr(1), 2, err, sizeof(err)),
                         -(1 + HB_DROP_MALFORMED));
        assert_int_equal(t->dropped[HB_DROP_REPLAYED], 2);
        assert_int_equal(t->accepted, 2);
        table_free(t);
}

static void test_digest_change_wants_inventory(void **state)
{
        struct node_table *t = table_new(1);
        struct fleet_node *n = node_table_find(t, "n1");
        const char *d2 = "1111111111111111111111111111111111111111111111111111111111111111";

        assert_int_equal(tfu_heartbeat(t, 1, 1, 8000, 10, NULL, 0), 0);
        assert_int_equal(n->inv, INV_WANTED);
        n->inv = INV_OK;
        memcpy(n->inv_digest, n->hb.inventory_digest, sizeof(n->inv_digest));
        assert_int_equal(tfu_heartbeat(t, 1, 2, 8000, 10, NULL, 10), 0);
        assert_int_equal(n->inv, INV_OK);
        assert_int_equal(tfu_heartbeat(t, 1, 3, 8000, 10, d2, 20), 0);
        assert_int_equal(n->inv, INV_WANTED);
        table_free(t);
}

static void test_tick_logs_once(void **state)
{
        char *dir = tfu_tmpdir();
        struct fleetd f;
        json_t *entries;
        uint64_t t0 = clock_monotonic_ms();

        assert_int_equal(tfu_fleetd_open(&f, dir, 2, NULL), 0);
        assert_int_equal(tfu_heartbeat(&f.table, 1, 1, 8000, 10, NULL, t0), 0);
        assert_int_equal(liveness_tick(&f, t0), 1);         /* n1 unseen -> alive */
        assert_int_equal(liveness_tick(&f, t0 + 1000), 0);  /* nothing new */
        assert_int_equal(liveness_tick(&f, t0 + 20001), 1); /* suspect */
        assert_int_equal(liveness_tick(&f, t0 + 25000), 0);
        assert_int_equal(liveness_tick(&f, t0 + 30001), 1); /* evicted */
        assert_int_equal(liveness_tick(&f, t0 + 60000), 0);
        entries = audit_list(f.store, 0, 100, "node.state");
        assert_int_equal(json_array_size(entries), 3);
        assert_string_equal(json_string_value(json_object_get(
                                json_object_get(json_array_get(entries, 2), "detail"), "to")),
                            "evicted");
        json_decref(entries);
        fleetd_close(&f);
        tfu_rmdir(dir);
}

static void test_id_index(void **state)
{
        struct node_table *t = table_new(1000);

        for (unsigned i = 1; i <= 1000; i += 37) {
                char id[16];

                snprintf(id, sizeof(id), "n%u", i);
                assert_non_null(node_table_find(t, id));
                assert_string_equal(node_table_find(t, id)->rn->id, id);
        }
        assert_null(node_table_find(t, "n1001"));
        assert_null(node_table_find(t, ""));
        table_free(t);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_boundaries_exact),
            cmocka_unit_test(test_boundaries_configurable),
            cmocka_unit_test(test_libvirt_age),
            cmocka_unit_test(test_replay_and_address),
            cmocka_unit_test(test_digest_change_wants_inventory),
            cmocka_unit_test(test_tick_logs_once),
            cmocka_unit_test(test_id_index),
        };

        log_init("test", LOG_LEVEL_ERROR);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
