/* Placement with a fake clock: most available RAM wins, ties go to the smallest node id, the
 * safety margin is exact, reservations of confirmed creations count, stale and unhealthy nodes
 * are not candidates, and two back-to-back confirmations never oversubscribe a node. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/log.h"
#include "test_fleetd_util.h"

static int fake_refuse(void *ctx, const char *address, uint16_t port, const char *method,
                       const char *path, const char *body, uint64_t timeout_ms, long *ret_status,
                       char **ret_body)
{
        return -ECONNREFUSED;
}

static int setup(void **state)
{
        struct fleet_transport tr = {fake_refuse, NULL};

        return tfu_setup(state, 4, &tr);
}

static struct plan_request req_of(const char *entity, uint64_t mib)
{
        struct plan_request r = {.memory_mib = mib, .vcpus = 1, .vault_disk_mib = 1024};

        snprintf(r.entity, sizeof(r.entity), "%s", entity);
        snprintf(r.image, sizeof(r.image), "base");
        return r;
}

static long choose(struct fleetd *f, uint64_t mib, uint64_t now, struct plan_candidate *c)
{
        struct plan_request r = req_of("e", mib);

        return placement_choose(&f->table, &f->cfg, &r, now, c);
}

static const char *chosen_id(struct fleetd *f, long idx)
{
        return idx < 0 ? "none" : f->table.roster->nodes[idx].id;
}

static void test_most_ram_and_ties(void **state)
{
        struct tfu_fixture *fx = *state;
        struct fleetd *f = &fx->f;
        struct plan_candidate c[5];

        tfu_heartbeat(&f->table, 1, 1, 8000, 10, NULL, 1000);
        tfu_heartbeat(&f->table, 2, 1, 9000, 10, NULL, 1000);
        tfu_heartbeat(&f->table, 3, 1, 9000, 10, NULL, 1000);
        tfu_heartbeat(&f->table, 4, 1, 2000, 10, NULL, 1000);
        assert_string_equal(chosen_id(f, choose(f, 1024, 1000, c)), "n2"); /* n2 < n3 */
        assert_int_equal(c[4].verdict, CAND_FITS);         /* 2000 - 1024 leaves 976 */
        assert_int_equal(c[0].verdict, CAND_NO_HEARTBEAT); /* ctl */
        /* deterministic: the same answer every time */
        for (int i = 0; i < 10; i++)
                assert_string_equal(chosen_id(f, choose(f, 1024, 1000, c)), "n2");
}

static void test_margin_exact(void **state)
{
        struct tfu_fixture *fx = *state;
        struct fleetd *f = &fx->f;
        struct plan_candidate c[5];

        tfu_heartbeat(&f->table, 1, 1, 4096, 10, NULL, 0);
        /* 4096 - 3584 = 512: exactly the margin, fits */
        assert_string_equal(chosen_id(f, choose(f, 3584, 0, c)), "n1");
        /* one MiB more leaves 511 */
        assert_int_equal(choose(f, 3585, 0, c), -1);
        assert_int_equal(c[1].verdict, CAND_BELOW_MARGIN);
        assert_int_equal(c[1].left_mib, 511);
}

static void test_committed_memory_counts(void **state)
{
        struct tfu_fixture *fx = *state;
        struct fleetd *f = &fx->f;
        struct fleet_node *n1 = node_table_find(&f->table, "n1");
        struct plan_candidate c[5];

        tfu_heartbeat(&f->table, 1, 1, 30000, 10, NULL, 0);
        n1->hb.mem_committed_mib = 30000; /* guests defined but not touching their memory */
        node_refresh_figures(n1);
        assert_int_equal(node_available_mib(n1), 32768 - 30000);
        assert_int_equal(choose(f, 4096, 0, c), -1);
}

static void test_reservations(void **state)
{
        struct tfu_fixture *fx = *state;
        struct fleetd *f = &fx->f;
        struct plan_candidate c[5];

        tfu_heartbeat(&f->table, 1, 1, 9000, 10, NULL, 0);
        tfu_heartbeat(&f->table, 2, 1, 8000, 10, NULL, 0);
        node_table_find(&f->table, "n1")->reserved_mib = 2000;
        assert_string_equal(chosen_id(f, choose(f, 1024, 0, c)), "n2");
        assert_int_equal(c[1].available_mib, 7000);
}

static void test_stale_and_unhealthy(void **state)
{
        struct tfu_fixture *fx = *state;
        struct fleetd *f = &fx->f;
        struct plan_candidate c[5];

        f->cfg.suspect_after_ms = 60000; /* so that staleness shows on its own */
        f->cfg.evict_after_ms = 90000;
        tfu_heartbeat(&f->table, 1, 1, 9000, 10, NULL, 0);
        tfu_heartbeat(&f->table, 2, 1, 8000, 10, NULL, 1);
        tfu_heartbeat(&f->table, 3, 1, 20000, 40000, NULL, 20000); /* wedged libvirt */
        assert_string_equal(chosen_id(f, choose(f, 1024, 20000, c)), "n1");
        assert_int_equal(c[3].verdict, CAND_UNHEALTHY);
        /* 20001 ms after n1's heartbeat it is older than two intervals; n2 is 1 ms younger */
        assert_string_equal(chosen_id(f, choose(f, 1024, 20001, c)), "n2");
        assert_int_equal(c[1].verdict, CAND_STALE);
        assert_int_equal(choose(f, 1024, 20002, c), -1);
}

static void heartbeat_now(struct fleetd *f, unsigned i, uint64_t seq, uint64_t avail)
{
        tfu_heartbeat(&f->table, i, seq, avail, 10, NULL, clock_monotonic_ms());
}

static void test_back_to_back_confirms(void **state)
{
        struct tfu_fixture *fx = *state;
        struct fleetd *f = &fx->f;
        struct plan_request a = req_of("alpha", 3000), b = req_of("beta", 3000);
        struct plan_outcome pa, pb, ca, cb;
        char ida[64], idb[64];

        heartbeat_now(f, 1, 1, 6000); /* room for one 3000 MiB VM with a 512 margin, not two */
        plans_create(f, &a, "test", &pa);
        plans_create(f, &b, "test", &pb);
        assert_int_equal(api_outcome_status(&pa), 201);
        assert_int_equal(api_outcome_status(&pb), 201);
        snprintf(ida, sizeof(ida), "%s", json_string_value(json_object_get(pa.body, "id")));
        snprintf(idb, sizeof(idb), "%s", json_string_value(json_object_get(pb.body, "id")));
        assert_string_equal(json_string_value(json_object_get(pa.body, "node_id")), "n1");
        assert_string_equal(json_string_value(json_object_get(pb.body, "node_id")), "n1");
        plans_confirm(f, ida, "test", &ca);
        assert_int_equal(api_outcome_status(&ca), 201);
        plans_confirm(f, idb, "test", &cb);
        assert_int_equal(api_outcome_status(&cb), 409);
        assert_string_equal(cb.problem, "plan-stale");
        assert_int_equal(node_table_find(&f->table, "n1")->reserved_mib, 3000);
        json_decref(pa.body);
        json_decref(pb.body);
        json_decref(ca.body);
        json_decref(cb.body);
}

static void test_confirm_idempotent_and_one_per_entity(void **state)
{
        struct tfu_fixture *fx = *state;
        struct fleetd *f = &fx->f;
        struct plan_request a = req_of("alpha", 1024);
        struct plan_outcome p, c1, c2, p2;
        char id[64];

        heartbeat_now(f, 1, 1, 16000);
        plans_create(f, &a, "test", &p);
        assert_int_equal(api_outcome_status(&p), 201);
        snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(p.body, "id")));
        plans_confirm(f, id, "test", &c1);
        plans_confirm(f, id, "test", &c2);
        assert_int_equal(api_outcome_status(&c1), 201);
        assert_int_equal(api_outcome_status(&c2), 200);
        assert_string_equal(json_string_value(json_object_get(c1.body, "id")),
                            json_string_value(json_object_get(c2.body, "id")));
        assert_int_equal(f->n_vms, 1);
        assert_int_equal(node_table_find(&f->table, "n1")->reserved_mib, 1024);
        plans_create(f, &a, "test", &p2); /* one Totebox VM per entity */
        assert_int_equal(api_outcome_status(&p2), 409);
        assert_string_equal(p2.problem, "entity-has-vm");
        json_decref(p.body);
        json_decref(c1.body);
        json_decref(c2.body);
        json_decref(p2.body);
}

static void test_no_fit_says_why(void **state)
{
        struct tfu_fixture *fx = *state;
        struct fleetd *f = &fx->f;
        struct plan_request a = req_of("alpha", 100000);
        struct plan_outcome p;

        heartbeat_now(f, 1, 1, 16000);
        plans_create(f, &a, "test", &p);
        assert_int_equal(api_outcome_status(&p), 422);
        assert_string_equal(p.problem, "no-node-fits");
        assert_int_equal(json_array_size(json_object_get(p.body, "candidates")), 5);
        json_decref(p.body);
}

/* Nodes that list their images are candidates only with the plan's image; one that never listed
 * any (an older vmhost) is not ruled out; with no node holding it the plan is refused by name. */
static void test_image_holders(void **state)
{
        struct tfu_fixture *fx = *state;
        struct fleetd *f = &fx->f;
        struct plan_request a = req_of("alpha", 1024);
        struct plan_candidate c[5];
        struct plan_outcome p;

        heartbeat_now(f, 1, 1, 16000);
        heartbeat_now(f, 2, 1, 8000);
        f->table.nodes[1].images =
            json_pack("[{s:s, s:s, s:i}]", "name", "other", "sha256", "00", "size", 1);
        f->table.nodes[2].images =
            json_pack("[{s:s, s:s, s:i}]", "name", "base", "sha256", "00", "size", 1);
        assert_string_equal(chosen_id(f, choose(f, 1024, clock_monotonic_ms(), c)), "n2");
        assert_int_equal(c[1].verdict, CAND_NO_IMAGE); /* more RAM, but not the image */
        json_array_clear(f->table.nodes[2].images);
        plans_create(f, &a, "test", &p);
        assert_int_equal(api_outcome_status(&p), 422);
        assert_string_equal(p.problem, "no-node-has-image");
        assert_non_null(strstr(p.detail, "no node has image 'base'"));
        json_decref(p.body);
        json_decref(f->table.nodes[2].images);
        f->table.nodes[2].images = NULL; /* heard from, images never listed: might hold it */
        plans_create(f, &a, "test", &p);
        assert_int_equal(api_outcome_status(&p), 201);
        json_decref(p.body);
}

static void test_drop_and_expired(void **state)
{
        struct tfu_fixture *fx = *state;
        struct fleetd *f = &fx->f;
        struct plan_row row = {.id = "00000000000000000000000000000001",
                               .node_id = "n1",
                               .state = "open",
                               .created_ms = 1,
                               .expires_ms = 2,
                               .body = "{}"};
        struct plan_outcome o;

        row.req = req_of("old", 1024);
        heartbeat_now(f, 1, 1, 16000);
        assert_int_equal(store_plan_insert(f->store, &row), 0);
        plans_confirm(f, row.id, "test", &o);
        assert_int_equal(api_outcome_status(&o), 410);
        assert_string_equal(o.problem, "plan-expired");
        plans_drop(f, row.id, "test", &o);
        assert_int_equal(api_outcome_status(&o), 200);
        json_decref(o.body);
        plans_confirm(f, row.id, "test", &o);
        assert_int_equal(api_outcome_status(&o), 410);
        assert_string_equal(o.problem, "plan-dropped");
        plans_confirm(f, "not-hex", "test", &o);
        assert_int_equal(api_outcome_status(&o), 404);
}

/* The policy ranks roles before RAM: an on-premises node (role node) wins over a cloud node
 * with more room, the cloud node's verdict says why, and the policy can say otherwise. */
static void test_role_preference(void **state)
{
        struct tfu_fixture *fx = *state;
        struct fleetd *f = &fx->f;
        struct plan_candidate c[5];

        f->table.roster->nodes[4].role = ROSTER_ROLE_CLOUD; /* n4 */
        f->table.roster->nodes[3].role = ROSTER_ROLE_RELAY; /* n3 */
        tfu_heartbeat(&f->table, 1, 1, 4000, 10, NULL, 0);
        tfu_heartbeat(&f->table, 3, 1, 6000, 10, NULL, 0);
        tfu_heartbeat(&f->table, 4, 1, 30000, 10, NULL, 0);
        assert_string_equal(f->cfg.placement_prefer_roles, "node+relay,cloud");
        assert_string_equal(chosen_id(f, choose(f, 1024, 0, c)), "n3"); /* on-prem, most RAM */
        assert_int_equal(c[1].verdict, CAND_FITS);
        assert_int_equal(c[4].verdict, CAND_FITS_ROLE);
        assert_int_equal(c[4].tier, 1);
        /* the preferred tier full: the cloud node takes it */
        assert_string_equal(chosen_id(f, choose(f, 8192, 0, c)), "n4");
        snprintf(f->cfg.placement_prefer_roles, sizeof(f->cfg.placement_prefer_roles), "node");
        assert_string_equal(chosen_id(f, choose(f, 1024, 0, c)), "n1"); /* relay unnamed: after */
        snprintf(f->cfg.placement_prefer_roles, sizeof(f->cfg.placement_prefer_roles), "%s", "");
        assert_string_equal(chosen_id(f, choose(f, 1024, 0, c)), "n4"); /* most RAM only */
        snprintf(f->cfg.placement_prefer_roles, sizeof(f->cfg.placement_prefer_roles),
                 "cloud,node+relay");
        assert_string_equal(chosen_id(f, choose(f, 1024, 0, c)), "n4");
}

/* The vault disk plus the copy-on-write allowance must leave disk_margin_mib of the node's room
 * for VM disks, after the disks promised to creations in flight; a node that reports no disk
 * figure is not checked. */
static void test_disk_space(void **state)
{
        struct tfu_fixture *fx = *state;
        struct fleetd *f = &fx->f;
        struct fleet_node *n1 = node_table_find(&f->table, "n1");
        struct plan_candidate c[5];

        tfu_heartbeat(&f->table, 1, 1, 30000, 10, NULL, 0);
        tfu_heartbeat(&f->table, 2, 1, 8000, 10, NULL, 0);
        n1->hb.disk_known = true;
        n1->hb.disk_free_mib = 1024 + 1024 + 1024; /* vault 1024 + allowance 1024 + margin */
        assert_string_equal(chosen_id(f, choose(f, 1024, 0, c)), "n1"); /* exactly the margin */
        assert_int_equal(c[1].disk_left_mib, 1024);
        assert_false(c[2].disk_known);
        n1->reserved_disk_mib = 1;
        assert_string_equal(chosen_id(f, choose(f, 1024, 0, c)), "n2");
        assert_int_equal(c[1].verdict, CAND_NO_DISK);
        assert_int_equal(c[1].disk_free_mib, 3071);
        n1->reserved_disk_mib = 0;
        f->cfg.disk_cow_allowance_mib = 1025;
        assert_string_equal(chosen_id(f, choose(f, 1024, 0, c)), "n2");
}

static void test_policy_check(void **state)
{
        static const char *const good[] = {"", "node+relay,cloud", "cloud", "node, relay, cloud",
                                           "relay+cloud+node"};
        static const char *const bad[] = {"onprem,cloud", "node,node", "node+cloud,cloud", "nodes"};
        char err[128];

        (void)state;
        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
                assert_int_equal(placement_policy_check(good[i], err, sizeof(err)), 0);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_equal(placement_policy_check(bad[i], err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "'nodes'"));
        assert_int_equal(placement_role_tier("node+relay,cloud", ROSTER_ROLE_RELAY), 0);
        assert_int_equal(placement_role_tier("node+relay,cloud", ROSTER_ROLE_CLOUD), 1);
        assert_int_equal(placement_role_tier("node", ROSTER_ROLE_CLOUD), 1);
        assert_int_equal(placement_role_tier("", ROSTER_ROLE_CLOUD), 0);
}

static void test_request_parse(void **state)
{
        struct plan_request r;
        char err[256];
        const char *ok = "{\"entity\":\"acme-1\",\"memory_mib\":2048,\"vcpus\":2,\"image\":"
                         "\"base.qcow2\",\"vault_disk_mib\":1024}";
        const char *target = "{\"entity\":\"acme-1\",\"memory_mib\":2048,\"vcpus\":2,"
                             "\"image\":\"b\",\"vault_disk_mib\":1024,\"node\":\"n1\"}";
        const char *bad[] = {
            "{\"entity\":\"Acme\",\"memory_mib\":2048,\"vcpus\":2,\"image\":\"b\","
            "\"vault_disk_mib\":1024}",
            "{\"entity\":\"a\",\"memory_mib\":-1,\"vcpus\":2,\"image\":\"b\","
            "\"vault_disk_mib\":1024}",
            "{\"entity\":\"a\",\"memory_mib\":2048,\"vcpus\":2,\"image\":\"../x\","
            "\"vault_disk_mib\":1024}",
            "{\"entity\":\"a\",\"memory_mib\":2048,\"vcpus\":2,\"image\":\"b\","
            "\"vault_disk_mib\":1024,\"node\":\"N1\"}",
            "{\"entity\":\"a\",\"memory_mib\":2048,\"vcpus\":2,\"image\":\"b\","
            "\"vault_disk_mib\":1024,\"node\":7}",
            "{\"entity\":\"a\",\"memory_mib\":2048,\"vcpus\":2,\"image\":\"b\","
            "\"vault_disk_mib\":1024,\"zone\":\"n1\"}",
            "{\"entity\":\"a\",\"memory_mib\":\"2048\",\"vcpus\":2,\"image\":\"b\","
            "\"vault_disk_mib\":1024}",
            "[1]",
            "",
            "{\"entity\":\"a\"}",
        };

        assert_int_equal(plan_request_parse(ok, strlen(ok), 8, &r, err, sizeof(err)), 0);
        assert_string_equal(r.entity, "acme-1");
        assert_string_equal(r.node, "");
        assert_int_equal(plan_request_parse(target, strlen(target), 8, &r, err, sizeof(err)), 0);
        assert_string_equal(r.node, "n1");
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_equal(
                    plan_request_parse(bad[i], strlen(bad[i]), 8, &r, err, sizeof(err)), -EINVAL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_most_ram_and_ties, setup, tfu_teardown),
            cmocka_unit_test_setup_teardown(test_margin_exact, setup, tfu_teardown),
            cmocka_unit_test_setup_teardown(test_committed_memory_counts, setup, tfu_teardown),
            cmocka_unit_test_setup_teardown(test_reservations, setup, tfu_teardown),
            cmocka_unit_test_setup_teardown(test_stale_and_unhealthy, setup, tfu_teardown),
            cmocka_unit_test_setup_teardown(test_back_to_back_confirms, setup, tfu_teardown),
            cmocka_unit_test_setup_teardown(test_confirm_idempotent_and_one_per_entity, setup,
                                            tfu_teardown),
            cmocka_unit_test_setup_teardown(test_no_fit_says_why, setup, tfu_teardown),
            cmocka_unit_test_setup_teardown(test_drop_and_expired, setup, tfu_teardown),
            cmocka_unit_test_setup_teardown(test_image_holders, setup, tfu_teardown),
            cmocka_unit_test(test_request_parse),
            cmocka_unit_test_setup_teardown(test_role_preference, setup, tfu_teardown),
            cmocka_unit_test(test_policy_check),
            cmocka_unit_test_setup_teardown(test_disk_space, setup, tfu_teardown),
        };

        log_init("test", LOG_LEVEL_ERROR);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
