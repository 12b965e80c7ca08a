/* Liveness with a fake clock: the exact 22.5 s / 30 s boundaries, the libvirt-age rule (3
 * intervals), recovery on a heartbeat, replay and address checks, and one log/audit entry per
 * state change. The replay tests play a node's own address sending far-future epochs, replays
 * after a clock step, restarts and a churn of made-up boots; the jitter test plays a network
 * that loses one datagram in thousands of jittered sequences. */
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
        /* suspect_after (20 s) plus a quarter interval of jitter */
        assert_int_equal(node_state_at(n, &c, t0 + 22500), NODE_ALIVE);
        assert_int_equal(node_state_at(n, &c, t0 + 22501), NODE_SUSPECT);
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

        c.heartbeat_interval_ms = 2000;
        c.suspect_after_ms = 4000;
        c.evict_after_ms = 7000;
        assert_int_equal(tfu_heartbeat(t, 1, 1, 8000, 10, NULL, 100), 0);
        assert_int_equal(node_state_at(n, &c, 4600), NODE_ALIVE);
        assert_int_equal(node_state_at(n, &c, 4601), NODE_SUSPECT);
        assert_int_equal(node_state_at(n, &c, 7100), NODE_SUSPECT);
        assert_int_equal(node_state_at(n, &c, 7101), NODE_EVICTED);
        /* the jitter allowance never reaches past evict_after */
        c.suspect_after_ms = 6900;
        assert_int_equal(node_state_at(n, &c, 7100), NODE_ALIVE);
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

/* One heartbeat of node 1 with a given boot id ("" for none), epoch and seq. */
/* The genesis removes n2: in the next roster version it is revoked. Its heartbeats (from its
 * old address, whatever id they name) are dropped as `revoked`, counted apart from strangers';
 * the members' soft state carries over; a VM's node id names it as removed. */
static void test_revoked_node(void **state)
{
        const char *v2 = "{\"v\":1,\"version\":2,\"fleet_id\":\"f\",\"controller\":\"n1\","
                         "\"nodes\":[{\"id\":\"n1\",\"role\":\"node\",\"mesh_address\":"
                         "\"127.1.0.1\"}],\"revoked\":[{\"id\":\"n2\",\"mesh_address\":"
                         "\"127.1.0.2\"}]}";
        struct node_table *t = table_new(2), *next = calloc(1, sizeof(*next));
        char err[256];
        struct roster *r = roster_parse(v2, strlen(v2), err, sizeof(err));

        assert_non_null(r);
        assert_int_equal(tfu_heartbeat(t, 1, 1, 8000, 10, NULL, 1), 0);
        assert_int_equal(tfu_heartbeat(t, 2, 1, 8000, 10, NULL, 1), 0);
        assert_string_equal(node_absent_name(t, "n2"), "not-in-roster");
        assert_int_equal(node_table_init(next, r), 0);
        node_table_carry(next, t);
        table_free(t);
        t = next;
        assert_int_equal(tfu_heartbeat(t, 2, 2, 8000, 10, NULL, 2), -(1 + HB_DROP_REVOKED));
        assert_int_equal(tfu_heartbeat(t, 2, 3, 8000, 10, NULL, 3), -(1 + HB_DROP_REVOKED));
        assert_int_equal(tfu_heartbeat(t, 77, 1, 8000, 10, NULL, 3),
                         -(1 + HB_DROP_UNKNOWN_ADDRESS));
        assert_int_equal(tfu_heartbeat(t, 1, 2, 8000, 10, NULL, 3), 0);
        assert_int_equal(t->dropped[HB_DROP_REVOKED], 2);
        assert_int_equal(t->dropped[HB_DROP_UNKNOWN_ADDRESS], 1);
        assert_null(node_table_find(t, "n2"));
        assert_string_equal(node_absent_name(t, "n2"), "removed");
        assert_string_equal(node_absent_name(t, "n9"), "not-in-roster");
        assert_string_equal(hb_drop_name(HB_DROP_REVOKED), "revoked");
        table_free(t);
}

static int hb_boot(struct node_table *t, const char *boot, uint64_t epoch, uint64_t seq,
                   uint64_t now)
{
        struct heartbeat hb = {.epoch = epoch,
                               .seq = seq,
                               .interval_ms = 10000,
                               .cpus = 1,
                               .mem_total_mib = 100,
                               .mem_available_mib = 50,
                               .libvirt_age_ms = 10,
                               .node_id = "n1"};
        char buf[HEARTBEAT_MAX_BYTES], err[256];
        int len;

        snprintf(hb.boot, sizeof(hb.boot), "%s", boot);
        memset(hb.inventory_digest, 'a', DIGEST_HEX_LEN);
        len = heartbeat_encode(&hb, buf, sizeof(buf));
        assert_true(len > 0);
        len = node_table_ingest(t, buf, (size_t)len, tfu_addr(1), now, err, sizeof(err));
        if (len < 0 && getenv("HB_DEBUG"))
                fprintf(stderr, "dropped: %s\n", err);
        return len;
}

#define REPLAYED (-(1 + HB_DROP_REPLAYED))
#define BOOT_A   "aaaaaaaaaaaaaaaa"
#define BOOT_B   "bbbbbbbbbbbbbbbb"
#define BOOT_X   "0123456789abcdef"

/* One datagram with a far-future epoch from the node's own address: it does not lock the
 * node out; the real heartbeats that follow are accepted. */
static void test_far_future_epoch_no_lockout(void **state)
{
        struct node_table *t = table_new(1);
        uint64_t now = 1000000, s;

        for (s = 1; s <= 3; s++)
                assert_int_equal(hb_boot(t, BOOT_A, 1795000000000ull, s, now += 10000), 0);
        /* a far-future epoch, as its own boot and as the real boot's */
        assert_int_equal(hb_boot(t, BOOT_X, INT64_MAX, 1, now += 1), 0);
        assert_int_equal(hb_boot(t, "", 4000000000000000000ull, 2, now += 1), 0);
        assert_int_equal(hb_boot(t, "fedcba9876543210", INT64_MAX, 999999, now += 1), REPLAYED);
        for (; s <= 10; s++)
                assert_int_equal(hb_boot(t, BOOT_A, 1795000000000ull, s, now += 10000), 0);
        assert_int_equal(node_table_find(t, "n1")->hb.seq, 10);
        table_free(t);
        /* the same without boot ids (an older sender): the epoch names the boot */
        t = table_new(1);
        for (s = 1; s <= 3; s++)
                assert_int_equal(hb_boot(t, "", 1795000000000ull, s, now += 10000), 0);
        assert_int_equal(hb_boot(t, "", 4000000000000000001ull, 1, now += 1), 0);
        for (; s <= 10; s++)
                assert_int_equal(hb_boot(t, "", 1795000000000ull, s, now += 10000), 0);
        assert_int_equal(hb_boot(t, "", 1795000000000ull, 10, now += 1), REPLAYED);
        table_free(t);
}

/* vmhost restarts with its clock stepped back: the new boot is accepted, and no datagram of
 * either boot is accepted twice or out of order. */
static void test_replay_after_clock_step_back(void **state)
{
        struct node_table *t = table_new(1);
        uint64_t now = 5000, s;

        for (s = 1; s <= 10; s++)
                assert_int_equal(hb_boot(t, BOOT_A, 1795000000000ull, s, now += 10000), 0);
        /* restart; the node's clock is now an hour behind */
        assert_int_equal(hb_boot(t, BOOT_B, 1794996400000ull, 1, now += 12000), 0);
        assert_int_equal(hb_boot(t, BOOT_A, 1795000000000ull, 10, now += 1), REPLAYED);
        assert_int_equal(hb_boot(t, BOOT_A, 1795000000000ull, 3, now += 1), REPLAYED);
        assert_int_equal(hb_boot(t, BOOT_B, 1794996400000ull, 1, now += 1), REPLAYED);
        assert_int_equal(hb_boot(t, BOOT_B, 1794996400000ull, 2, now += 10000), 0);
        assert_int_equal(hb_boot(t, BOOT_B, 1794996400000ull, 2, now += 1), REPLAYED);
        assert_int_equal(hb_boot(t, BOOT_B, 1794996400000ull, 1, now += 1), REPLAYED);
        assert_int_equal(node_table_find(t, "n1")->hb.seq, 2);
        assert_int_equal(t->dropped[HB_DROP_REPLAYED], 5);
        table_free(t);
}

/* A new boot must start fresh: an old boot's late datagram (a high seq) is refused while the
 * node is heard, and a restart that fleetd could not hear for a long time is accepted. */
static void test_new_boot_needs_fresh_seq(void **state)
{
        struct node_table *t = table_new(1);
        uint64_t now = 1000, s;

        for (s = 1; s <= 5; s++)
                assert_int_equal(hb_boot(t, BOOT_A, 1000, s, now += 10000), 0);
        /* an unknown boot at seq 500, 1 s after the last heartbeat: a replay of an old run */
        assert_int_equal(hb_boot(t, BOOT_X, 900, 500, now += 1000), REPLAYED);
        /* restart with the same epoch (same wall-clock ms) but a new boot id: accepted */
        assert_int_equal(hb_boot(t, BOOT_B, 1000, 1, now += 10000), 0);
        assert_int_equal(hb_boot(t, BOOT_B, 1000, 2, now += 10000), 0);
        /* restarted during a partition of 1000 s: about 100 heartbeats in */
        assert_int_equal(hb_boot(t, BOOT_X, 900, 103, now += 1000000), 0);
        assert_int_equal(hb_boot(t, BOOT_X, 900, 104, now += 10000), 0);
        table_free(t);
}

/* A burst of datagrams naming made-up boots does not push out the node's real boot. */
static void test_boot_churn_keeps_real_boot(void **state)
{
        struct node_table *t = table_new(1);
        uint64_t now = 1000;

        for (uint64_t s = 1; s <= 50; s++) {
                char fake[HEARTBEAT_BOOT_LEN + 1];

                assert_int_equal(hb_boot(t, BOOT_A, 1000, s, now += 10000), 0);
                for (unsigned k = 0; k < 3 * NODE_BOOTS; k++) {
                        snprintf(fake, sizeof(fake), "%016llx", (unsigned long long)(s * 100 + k));
                        hb_boot(t, fake, 1000 + k, 1, now += 1);
                }
                assert_int_equal(hb_boot(t, BOOT_A, 1000, s, now), REPLAYED);
        }
        table_free(t);
}

/* splitmix64: a seeded, reproducible stream for the jitter sequences */
static uint64_t rnd_next(uint64_t *x)
{
        uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
}

/* Heartbeat k is sent at k * interval and arrives up to a quarter interval late. In 4,000
 * sequences of 40 heartbeats each losing one datagram (never two in a row), the node is never
 * suspect, checked at the last millisecond before every arrival; losing two in a row makes it
 * suspect before the next arrives; eviction stays exactly at evict_after. */
static void test_one_lost_never_suspect(void **state)
{
        struct fleetd_config c = cfg_defaults();
        const uint64_t iv = c.heartbeat_interval_ms, jit = iv / 4;
        uint64_t x = 0x70c3b0, suspects = 0, two_lost_suspect = 0;
        const unsigned runs = 4000, beats = 40;

        for (unsigned run = 0; run < runs; run++) {
                struct node_table *t = table_new(1);
                struct fleet_node *n = node_table_find(t, "n1");
                unsigned lost = 1 + (unsigned)(rnd_next(&x) % (beats - 2));
                bool two = run % 4 == 3; /* every fourth run loses two in a row */

                if (two)
                        lost = 1 + (unsigned)(rnd_next(&x) % (beats - 3));
                uint64_t seq = 0;

                for (unsigned k = 0; k < beats; k++) {
                        uint64_t at = 100000 + k * iv + rnd_next(&x) % (jit + 1);

                        seq++;
                        if (k == lost || (two && k == lost + 1))
                                continue;
                        if (k > 0 && node_state_at(n, &c, at - 1) != NODE_ALIVE) {
                                /* two lost: suspect once the bound passes, before this one */
                                if (two && k == lost + 2 &&
                                    n->last_seen_ms + node_suspect_bound(&c) + 1 < at &&
                                    node_state_at(n, &c,
                                                  n->last_seen_ms + node_suspect_bound(&c) + 1) ==
                                        NODE_SUSPECT)
                                        two_lost_suspect++;
                                else
                                        suspects++;
                        }
                        assert_int_equal(hb_boot(t, BOOT_A, 1000, seq, at), 0);
                }
                assert_int_equal(node_state_at(n, &c, n->last_seen_ms + c.evict_after_ms),
                                 NODE_SUSPECT);
                assert_int_equal(node_state_at(n, &c, n->last_seen_ms + c.evict_after_ms + 1),
                                 NODE_EVICTED);
                table_free(t);
        }
        fprintf(stderr, "jitter: %u sequences, %llu suspect with one lost, %llu/%u with two\n",
                runs, (unsigned long long)suspects, (unsigned long long)two_lost_suspect, runs / 4);
        assert_int_equal(suspects, 0);
        assert_int_equal(two_lost_suspect, runs / 4);
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
        assert_int_equal(liveness_tick(&f, t0 + 22501), 1); /* suspect */
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

/* The history ring: one sample per interval (datagrams in between add none), NODE_HISTORY_MAX
 * kept (the oldest dropped first), oldest first, and only the window asked for. */
static void test_history_ring(void **state)
{
        struct node_table *t = table_new(1);
        uint64_t now = 1000000, seq = 1;
        json_t *a;

        for (unsigned i = 0; i < NODE_HISTORY_MAX + 40; i++) {
                assert_int_equal(hb_boot(t, BOOT_A, 5, seq++, now), 0);
                assert_int_equal(hb_boot(t, BOOT_A, 5, seq++, now + 100), 0); /* too soon */
                now += 10000;
        }
        a = node_history_json(node_table_find(t, "n1"), now, 1800000000000ull, 3600 * 1000ull * 2);
        assert_int_equal(json_array_size(a), NODE_HISTORY_MAX);
        json_decref(a);
        a = node_history_json(node_table_find(t, "n1"), now, 1800000000000ull, 60 * 1000);
        assert_int_equal(json_array_size(a), 6); /* 10 s apart, the last 10 s ago */
        /* wall clock now 1800000000000 ms; the last sample 10 s before */
        assert_string_equal(json_string_value(json_object_get(json_array_get(a, 5), "at")),
                            "2027-01-15T07:59:50.000Z");
        assert_string_equal(json_string_value(json_object_get(json_array_get(a, 0), "at")),
                            "2027-01-15T07:59:00.000Z");
        assert_int_equal(json_integer_value(json_object_get(json_array_get(a, 0), "total_mib")),
                         100);
        json_decref(a);
        table_free(t);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_boundaries_exact),
            cmocka_unit_test(test_boundaries_configurable),
            cmocka_unit_test(test_libvirt_age),
            cmocka_unit_test(test_replay_and_address),
            cmocka_unit_test(test_revoked_node),
            cmocka_unit_test(test_far_future_epoch_no_lockout),
            cmocka_unit_test(test_replay_after_clock_step_back),
            cmocka_unit_test(test_new_boot_needs_fresh_seq),
            cmocka_unit_test(test_boot_churn_keeps_real_boot),
            cmocka_unit_test(test_one_lost_never_suspect),
            cmocka_unit_test(test_digest_change_wants_inventory),
            cmocka_unit_test(test_tick_logs_once),
            cmocka_unit_test(test_id_index),
            cmocka_unit_test(test_history_ring),
        };

        log_init("test", LOG_LEVEL_ERROR);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
