/* What fleetd keeps of a node, and the node list's shared answer (docs/fleetd.md, "Memory
 * budget"): every figure of a heartbeat survives the compact copy (struct node_figures), and
 * the list's answer is one buffer shared by the requests of one rendering, never freed under a
 * connection still sending it, and let go by the cache once superseded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "fleetd/api.h"
#include "test_fleetd_util.h"

static int setup(void **state)
{
        return tfu_setup(state, 3, NULL);
}

/* A heartbeat with a distinct value in every field: each one reaches the node, and the boot id
 * its replay slot. */
static void test_every_figure_kept(void **state)
{
        struct tfu_fixture *fx = *state;
        struct heartbeat hb = {.epoch = 1234,
                               .seq = 7,
                               .boot = "0123456789abcdef",
                               .interval_ms = 9000,
                               .cpus = 6,
                               .cpu_percent = 42.5,
                               .mem_total_mib = 65536,
                               .mem_available_mib = 40000,
                               .mem_committed_mib = 3000,
                               .libvirt_age_ms = 33,
                               .vm_count = 9,
                               .creations = 5,
                               .disk_known = true,
                               .disk_free_mib = 777,
                               .node_id = "n2"};
        char buf[HEARTBEAT_MAX_BYTES], err[256];
        struct fleet_node *n = node_table_find(&fx->f.table, "n2");
        int len;
        bool boot = false;

        memset(hb.inventory_digest, 'b', DIGEST_HEX_LEN);
        len = heartbeat_encode(&hb, buf, sizeof(buf));
        assert_true(len > 0);
        assert_int_equal(
            node_table_ingest(&fx->f.table, buf, (size_t)len, tfu_addr(2), 100, err, sizeof(err)),
            0);
        assert_int_equal(n->hb.epoch, 1234);
        assert_int_equal(n->hb.seq, 7);
        assert_int_equal(n->hb.interval_ms, 9000);
        assert_int_equal(n->hb.cpus, 6);
        assert_true(n->hb.cpu_percent == 42.5);
        assert_int_equal(n->hb.mem_total_mib, 65536);
        assert_int_equal(n->hb.mem_available_mib, 40000);
        assert_int_equal(n->hb.mem_committed_mib, 3000);
        assert_int_equal(n->hb.libvirt_age_ms, 33);
        assert_int_equal(n->hb.vm_count, 9);
        assert_int_equal(n->hb.creations, 5);
        assert_true(n->hb.disk_known);
        assert_int_equal(n->hb.disk_free_mib, 777);
        assert_string_equal(n->hb.inventory_digest, hb.inventory_digest);
        assert_int_equal(n->hb_avail_mib, 40000);
        for (unsigned i = 0; i < NODE_BOOTS; i++)
                boot |= n->boots[i].last_ms && strcmp(n->boots[i].boot, hb.boot) == 0 &&
                        n->boots[i].epoch == 1234 && n->boots[i].seq == 7;
        assert_true(boot);
        /* the same datagram again is a replay, the figures stay */
        assert_true(node_table_ingest(&fx->f.table, buf, (size_t)len, tfu_addr(2), 200, err,
                                      sizeof(err)) < 0);
        assert_int_equal(n->hb.seq, 7);
        assert_true(sizeof(struct fleet_node) <= 608); /* 600 + the roster anti-entropy's 8 */
}

static struct api_shared *list(struct fleetd *f)
{
        struct api_request req = {.f = f};
        struct api_response resp = {0};

        api_nodes_list(&req, &resp);
        assert_int_equal(resp.status, 200);
        assert_non_null(resp.shared);
        return resp.shared;
}

static void beat_all(struct fleetd *f, uint64_t seq)
{
        for (unsigned i = 1; i <= 3; i++)
                assert_int_equal(
                    tfu_heartbeat(&f->table, i, seq, 8000, 10, NULL, clock_monotonic_ms()), 0);
}

static void test_list_answer_shared(void **state)
{
        struct tfu_fixture *fx = *state;
        uint64_t t0;
        struct api_shared *a, *b, *c, *d;
        char *copy;

        beat_all(&fx->f, 1);
        t0 = clock_monotonic_ms();
        a = list(&fx->f);
        b = list(&fx->f);
        /* one rendering, one buffer, whatever the number of requests (within its freshness) */
        if (clock_monotonic_ms() - t0 < 200)
                assert_ptr_equal(a, b);
        assert_non_null(strstr(a->text, "\"id\":\"n3\""));
        copy = strndup(a->text, a->len);
        /* the table changes and the freshness bound passes: a new rendering */
        beat_all(&fx->f, 2);
        usleep(300 * 1000);
        c = list(&fx->f);
        assert_ptr_not_equal(c, a);
        assert_string_not_equal(c->etag, a->etag);
        /* the superseded answer is the holders' alone now, and intact */
        assert_int_equal(a->refs, a == b ? 2 : 1);
        assert_memory_equal(a->text, copy, a->len);
        beat_all(&fx->f, 3);
        usleep(300 * 1000);
        d = list(&fx->f);
        assert_ptr_not_equal(d, c);
        assert_int_equal(c->refs, 1);
        assert_int_equal(d->refs, 2); /* this caller and the cache */
        api_shared_unref(a);
        api_shared_unref(b);
        api_shared_unref(c);
        api_shared_unref(d);
        free(copy);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_every_figure_kept, setup, tfu_teardown),
            cmocka_unit_test_setup_teardown(test_list_answer_shared, setup, tfu_teardown),
        };

        log_init("test", LOG_LEVEL_ERROR);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
