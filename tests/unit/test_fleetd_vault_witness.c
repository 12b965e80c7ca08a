/* fleetd's oversight of scheduled audits (fleetd/vault_witness.c): a running Totebox whose last
 * full verification is older than vault_verify_interval + vault_stall_grace is stalled (and not
 * before, not when it is not running, and never for time before fleetd started); clean
 * scheduled verifications are audited compactly, one entry per VM per UTC day with the count. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "test_fleetd_util.h"

#define DAY_MS 86400000ull

static int no_call(void *ctx, const char *address, uint16_t port, const char *method,
                   const char *path, const char *body, uint64_t timeout_ms, long *ret_status,
                   char **ret_body)
{
        (void)ctx, (void)address, (void)port, (void)method, (void)path, (void)body;
        (void)timeout_ms;
        *ret_status = 404;
        *ret_body = NULL;
        return 0;
}

static void test_stalled_and_clean_verifications(void **state)
{
        struct fleet_transport tr = {no_call, NULL};
        struct fleetd f;
        struct fleet_vm vm = {.status = VM_ACTIVE, .lifecycle = VM_LC_ACTIVE};
        uint64_t t0 = 1000 * DAY_MS; /* midnight UTC */
        char *dir = tfu_tmpdir();
        json_t *result = json_pack("{s:i}", "mismatches", 0);

        (void)state;
        assert_int_equal(tfu_fleetd_open(&f, dir, 1, &tr), 0);
        f.cfg.vault_verify_interval_ms = 3600000;
        f.cfg.vault_stall_grace_ms = 900000;
        f.started_wall_ms = t0;
        snprintf(vm.id, sizeof(vm.id), "tbx-a");
        snprintf(vm.node_id, sizeof(vm.node_id), "n1");
        snprintf(vm.observed, sizeof(vm.observed), "running");
        vm.created_ms = t0 - DAY_MS; /* before fleetd started: fleetd's start counts */
        vm.verification = json_pack("{s:I}", "at_ms", (json_int_t)(t0 + 10000));
        assert_false(vault_vm_stalled(&f, &vm, t0 + 10000 + 4500000)); /* 1h15m: on time */
        assert_true(vault_vm_stalled(&f, &vm, t0 + 10000 + 4500001));
        snprintf(vm.observed, sizeof(vm.observed), "shutoff");
        assert_false(vault_vm_stalled(&f, &vm, t0 + 2 * DAY_MS)); /* not running: nobody waits */
        snprintf(vm.observed, sizeof(vm.observed), "running");
        vm.lifecycle = VM_LC_SUSPENDED;
        assert_false(vault_vm_stalled(&f, &vm, t0 + 2 * DAY_MS));
        vm.lifecycle = VM_LC_ACTIVE;
        json_decref(vm.verification);
        vm.verification = NULL; /* never verified: from fleetd's start */
        assert_false(vault_vm_stalled(&f, &vm, t0 + 4500000));
        assert_true(vault_vm_stalled(&f, &vm, t0 + 4500001));

        /* 24 clean hourly verifications on day 1000, 3 on day 1001: two entries */
        for (uint64_t h = 0; h < 24; h++)
                vault_note_clean(&f, &vm, t0 + h * 3600000, result);
        assert_int_equal(tfu_audit_count(&f, "vm.verifications_clean"), 1);
        for (uint64_t h = 0; h < 3; h++)
                vault_note_clean(&f, &vm, t0 + DAY_MS + h * 3600000, result);
        assert_int_equal(tfu_audit_count(&f, "vm.verifications_clean"), 2);
        {
                json_t *a = audit_list(f.store, 0, 1000, "vm.verifications_clean");
                json_t *d = json_object_get(json_array_get(a, 1), "detail");

                /* the second entry counts the 23 after the first and itself */
                assert_int_equal(json_integer_value(json_object_get(d, "count")), 24);
                assert_int_equal(json_integer_value(json_object_get(d, "day")), 1001);
                json_decref(a);
        }
        assert_int_equal(vm.clean_count, 2);
        json_decref(result);
        fleetd_close(&f);
        tfu_rmdir(dir);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_stalled_and_clean_verifications),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
