/* fleetd and the pin: the creation it dispatches carries a pin signed by its own key that
 * names the node and that node's WireGuard key; and a VM reported by a node it is not pinned to
 * is a fleet-level alarm (health list, gauge, counter) with one audit entry per occurrence, not
 * one per inventory: played as the node that keeps reporting a copied VM, stops, then reports it
 * again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <sodium.h>

#include "common/pin.h"
#include "test_fleetd_util.h"

#define WG_N1 "JHR0dMmP+2aDSCiGnJ3VmXmIxSNjSqN3qMm6XuZW9RM="
#define WG_N2 "sbl+yj4UhuqVlf0f8Uz9jXEsySoH5QcTuUP8aoUGyRs="

static char create_body[4096];

static int fake_call(void *ctx, const char *address, uint16_t port, const char *method,
                     const char *path, const char *body, uint64_t timeout_ms, long *ret_status,
                     char **ret_body)
{
        if (strcmp(path, "/v1/vms") == 0)
                snprintf(create_body, sizeof(create_body), "%s", body ? body : "");
        *ret_status = strcmp(path, "/v1/vms") == 0 ? 201 : 404;
        *ret_body = NULL;
        return 0;
}

/* The roster of tfu_fleetd_open with WireGuard keys and this fleetd's pin key named. */
static int write_roster(struct fleetd *f, const char *dir)
{
        char path[512];
        FILE *fp;

        snprintf(path, sizeof(path), "%s/roster.json", dir);
        fp = fopen(path, "w");
        if (!fp)
                return -1;
        fprintf(fp,
                "{\"v\":1,\"version\":2,\"fleet_id\":\"f1\",\"controller\":\"ctl\","
                "\"controller_pin_key\":\"%s\",\"nodes\":[{\"id\":\"ctl\",\"role\":\"cloud\","
                "\"mesh_address\":\"127.0.0.1\"},{\"id\":\"n1\",\"role\":\"node\","
                "\"wg_public_key\":\"" WG_N1 "\",\"mesh_address\":\"127.1.0.1\"},"
                "{\"id\":\"n2\",\"role\":\"node\",\"wg_public_key\":\"" WG_N2 "\","
                "\"mesh_address\":\"127.1.0.2\"}]}",
                f->pin_pk);
        fclose(fp);
        return roster_reload(f, true);
}

static int setup(void **state)
{
        struct fleet_transport tr = {fake_call, NULL};
        struct tfu_fixture *fx;

        if (tfu_setup(state, 2, &tr) < 0)
                return -1;
        fx = *state;
        return write_roster(&fx->f, fx->dir);
}

static struct fleet_vm *create_on_n1(struct fleetd *f, uint64_t now)
{
        struct plan_request r = {.memory_mib = 1024, .vcpus = 1, .vault_disk_mib = 64};
        struct plan_outcome p, c;
        char id[64];

        tfu_heartbeat(&f->table, 1, 1, 16000, 10, NULL, now);
        snprintf(r.entity, sizeof(r.entity), "acme");
        snprintf(r.image, sizeof(r.image), "base");
        plans_create(f, &r, "test", &p);
        assert_int_equal(api_outcome_status(&p), 201);
        snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(p.body, "id")));
        plans_confirm(f, id, "test", &c);
        assert_int_equal(api_outcome_status(&c), 201);
        json_decref(p.body);
        json_decref(c.body);
        dispatch_run_once(f, now);
        return &f->vms[f->n_vms - 1];
}

static void test_dispatch_carries_a_signed_pin(void **state)
{
        struct tfu_fixture *fx = *state;
        struct fleetd *f = &fx->f;
        struct fleet_vm *vm;
        json_t *body;
        struct pin pin;
        char err[256];
        struct pin_expect e = {.fleet_id = "f1", .node_id = "n1", .node_wg_key = WG_N1};

        assert_true(pin_key_in_roster(f));
        vm = create_on_n1(f, clock_monotonic_ms());
        assert_int_equal(vm->status, VM_ACTIVE);
        body = json_loads(create_body, 0, NULL);
        assert_non_null(body);
        assert_int_equal(pin_from_json(json_object_get(body, "pin"), &pin, err, sizeof(err)), 0);
        e.vm_id = vm->id;
        e.entity = "acme";
        e.image = "base";
        /* under the key the roster names; the secret key's second half is the public key */
        assert_int_equal(pin_check(&pin, f->pin_sk + 32, &e), PIN_OK);
        assert_string_equal(pin.request_id, vm->request_id);
        e.node_id = "n2";
        assert_int_equal(pin_check(&pin, f->pin_sk + 32, &e), PIN_OTHER_NODE);
        json_decref(body);
}

static void apply(struct fleetd *f, const char *node, const char *vm_id)
{
        char text[512], err[256];

        snprintf(text, sizeof(text), "{\"node\":\"%s\",\"digest\":\"%064d\",\"vms\":[%s%s%s]}",
                 node, 0, vm_id ? "{\"id\":\"" : "", vm_id ? vm_id : "",
                 vm_id ? "\",\"state\":\"shutoff\",\"lifecycle\":\"active\"}" : "");
        assert_int_equal(inventory_apply(f, node, NULL, text, strlen(text), err, sizeof(err)), 0);
}

static size_t misplaced_now(struct fleetd *f)
{
        json_t *m = fleet_misplaced_vms(f);
        size_t n = json_array_size(m);

        json_decref(m);
        return n;
}

static void test_misplaced_is_one_occurrence(void **state)
{
        struct tfu_fixture *fx = *state;
        struct fleetd *f = &fx->f;
        struct fleet_vm *vm = create_on_n1(f, clock_monotonic_ms());
        char id[VM_ID_MAX + 1];
        json_t *m, *on;
        char *metrics;

        snprintf(id, sizeof(id), "%s", vm->id);
        apply(f, "n1", id); /* at home: no alarm */
        assert_int_equal(misplaced_now(f), 0);
        /* the copy shows up on n2 and stays there for five inventories */
        for (int i = 0; i < 5; i++)
                apply(f, "n2", id);
        assert_int_equal(tfu_audit_count(f, "vm.misplaced"), 1);
        assert_int_equal(f->metrics.misplaced_occurrences, 1);
        m = fleet_misplaced_vms(f);
        assert_int_equal(json_array_size(m), 1);
        assert_string_equal(json_string_value(json_object_get(json_array_get(m, 0), "reported_by")),
                            "n2");
        assert_string_equal(json_string_value(json_object_get(json_array_get(m, 0), "pinned_to")),
                            "n1");
        json_decref(m);
        on = fleet_vm_misplaced_on(f, id);
        assert_int_equal(json_array_size(on), 1);
        json_decref(on);
        metrics = metrics_render(f);
        assert_non_null(strstr(metrics, "\ntotebox_fleetd_misplaced_vms 1\n"));
        assert_non_null(strstr(metrics, "\ntotebox_fleetd_misplaced_total 1\n"));
        free(metrics);
        /* the VM itself is untouched: still pinned to n1 */
        assert_string_equal(vm_table_find(f, id)->node_id, "n1");
        /* n2 stops reporting it: the occurrence ends, nothing more is audited */
        apply(f, "n2", NULL);
        assert_int_equal(misplaced_now(f), 0);
        assert_int_equal(tfu_audit_count(f, "vm.misplaced"), 1);
        metrics = metrics_render(f);
        assert_non_null(strstr(metrics, "\ntotebox_fleetd_misplaced_vms 0\n"));
        free(metrics);
        /* and reports it again: a second occurrence, audited once more */
        apply(f, "n2", id);
        apply(f, "n2", id);
        assert_int_equal(tfu_audit_count(f, "vm.misplaced"), 2);
        assert_int_equal(f->metrics.misplaced_occurrences, 2);
        /* the node table survives a roster reload with the alarm in it */
        assert_int_equal(write_roster(f, fx->dir), 0);
        assert_int_equal(misplaced_now(f), 1);
        apply(f, "n2", id);
        assert_int_equal(tfu_audit_count(f, "vm.misplaced"), 2);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_dispatch_carries_a_signed_pin, setup,
                                            tfu_teardown),
            cmocka_unit_test_setup_teardown(test_misplaced_is_one_occurrence, setup, tfu_teardown),
        };

        if (sodium_init() < 0)
                return 1;
        return cmocka_run_group_tests(tests, NULL, NULL);
}
