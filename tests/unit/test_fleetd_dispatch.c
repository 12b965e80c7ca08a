/* The dispatcher and inventory reconciliation against a fake node transport: creation retried
 * with backoff and the same request id, outcomes visible on the VM, refusals failing with the
 * node's reason, inventories flagging unknown and missing VMs, reservations released when the
 * node reflects the VM, integrity mismatches audited once and raised at fleet level, and the
 * lifecycle verbs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/log.h"
#include "test_fleetd_util.h"

#define FAKE_MAX 32

struct fake {
        unsigned calls;
        char method[FAKE_MAX][8];
        char path[FAKE_MAX][128];
        char body[FAKE_MAX][512];
        /* the next answers, in order; err != 0 means no answer */
        struct {
                int err;
                long status;
                const char *body;
        } script[FAKE_MAX];
        unsigned next;
};

static struct fake fake;

static int fake_call(void *ctx, const char *address, uint16_t port, const char *method,
                     const char *path, const char *body, uint64_t timeout_ms, long *ret_status,
                     char **ret_body)
{
        unsigned i = fake.calls++ % FAKE_MAX, a = fake.next++ % FAKE_MAX;

        snprintf(fake.method[i], sizeof(fake.method[i]), "%s", method);
        snprintf(fake.path[i], sizeof(fake.path[i]), "%s", path);
        snprintf(fake.body[i], sizeof(fake.body[i]), "%s", body ? body : "");
        if (fake.script[a].err)
                return fake.script[a].err;
        *ret_status = fake.script[a].status;
        *ret_body = fake.script[a].body ? strdup(fake.script[a].body) : NULL;
        return 0;
}

struct fixture {
        char *dir;
        struct fleetd f;
};

static int setup(void **state)
{
        struct fixture *fx = calloc(1, sizeof(*fx));
        struct fleet_transport tr = {fake_call, NULL};

        memset(&fake, 0, sizeof(fake));
        fx->dir = tfu_tmpdir();
        if (tfu_fleetd_open(&fx->f, fx->dir, 2, &tr) < 0)
                return -1;
        *state = fx;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *fx = *state;

        fleetd_close(&fx->f);
        tfu_rmdir(fx->dir);
        free(fx);
        return 0;
}

/* Confirms a plan for entity on n1; returns the VM. */
static struct fleet_vm *confirm_one(struct fleetd *f, const char *entity)
{
        struct plan_request r = {.memory_mib = 1024, .vcpus = 1, .vault_disk_mib = 64};
        struct plan_outcome p, c;
        char id[64];

        snprintf(r.entity, sizeof(r.entity), "%s", entity);
        snprintf(r.image, sizeof(r.image), "base");
        plans_create(f, &r, "test", &p);
        assert_int_equal(p.status, 201);
        snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(p.body, "id")));
        plans_confirm(f, id, "test", &c);
        assert_int_equal(c.status, 201);
        json_decref(p.body);
        json_decref(c.body);
        return vm_table_find(f, f->vms[f->n_vms - 1].id);
}

static unsigned audit_count(struct fleetd *f, const char *kind)
{
        json_t *a = audit_list(f->store, 0, 1000, kind);
        unsigned n = (unsigned)json_array_size(a);

        json_decref(a);
        return n;
}

static void test_retry_then_active(void **state)
{
        struct fixture *fx = *state;
        struct fleetd *f = &fx->f;
        struct fleet_vm *vm;
        uint64_t now = clock_monotonic_ms();

        tfu_heartbeat(&f->table, 1, 1, 16000, 10, NULL, now);
        node_table_find(&f->table, "n1")->inv = INV_OK; /* no inventory traffic here */
        memcpy(node_table_find(&f->table, "n1")->inv_digest,
               node_table_find(&f->table, "n1")->hb.inventory_digest, DIGEST_HEX_LEN + 1);
        vm = confirm_one(f, "acme");
        fake.script[0].err = -ECONNREFUSED;
        fake.script[1].status = 503;
        fake.script[2].status = 201;
        fake.script[2].body = "{}";
        dispatch_run_once(f, now);
        assert_int_equal(vm->status, VM_CREATING);
        assert_int_equal(vm->attempts, 1);
        assert_non_null(strstr(vm->reason, "retrying"));
        dispatch_run_once(f, now + 999); /* backoff 1 s: nothing yet */
        assert_int_equal(fake.calls, 1);
        dispatch_run_once(f, now + 1000);
        assert_int_equal(fake.calls, 2);
        assert_int_equal(vm->status, VM_CREATING);
        dispatch_run_once(f, now + 2999); /* then 2 s */
        assert_int_equal(fake.calls, 2);
        dispatch_run_once(f, now + 3000);
        assert_int_equal(fake.calls, 3);
        assert_int_equal(vm->status, VM_ACTIVE);
        assert_string_equal(vm->reason, "");
        /* every attempt carried the same request id */
        for (unsigned i = 0; i < 3; i++) {
                assert_string_equal(fake.path[i], "/v1/vms");
                assert_non_null(strstr(fake.body[i], vm->request_id));
        }
        assert_int_equal(audit_count(f, "vm.created"), 1);
        /* still reserved until the node's inventory shows it */
        assert_true(vm->reserved);
}

static void test_refused_fails_with_reason(void **state)
{
        struct fixture *fx = *state;
        struct fleetd *f = &fx->f;
        struct fleet_vm *vm;
        uint64_t now = clock_monotonic_ms();

        tfu_heartbeat(&f->table, 1, 1, 16000, 10, NULL, now);
        node_table_find(&f->table, "n1")->inv = INV_OK;
        memcpy(node_table_find(&f->table, "n1")->inv_digest,
               node_table_find(&f->table, "n1")->hb.inventory_digest, DIGEST_HEX_LEN + 1);
        vm = confirm_one(f, "acme");
        fake.script[0].status = 422;
        fake.script[0].body = "{\"type\":\"insufficient-memory\",\"detail\":\"only 100 MiB\"}";
        dispatch_run_once(f, now);
        assert_int_equal(vm->status, VM_FAILED);
        assert_non_null(strstr(vm->reason, "insufficient-memory"));
        assert_false(vm->reserved);
        assert_int_equal(node_table_find(&f->table, "n1")->reserved_mib, 0);
        /* a failed creation frees the entity for a new plan */
        confirm_one(f, "acme");
}

static void test_gives_up_after_attempts(void **state)
{
        struct fixture *fx = *state;
        struct fleetd *f = &fx->f;
        struct fleet_vm *vm;
        uint64_t now = clock_monotonic_ms();

        f->cfg.dispatch_attempts = 3;
        tfu_heartbeat(&f->table, 1, 1, 16000, 10, NULL, now);
        node_table_find(&f->table, "n1")->inv = INV_OK;
        memcpy(node_table_find(&f->table, "n1")->inv_digest,
               node_table_find(&f->table, "n1")->hb.inventory_digest, DIGEST_HEX_LEN + 1);
        vm = confirm_one(f, "acme");
        for (int i = 0; i < 3; i++)
                fake.script[i].err = -ETIMEDOUT;
        for (uint64_t t = now; t < now + 10000; t += 500)
                dispatch_run_once(f, t);
        assert_int_equal(fake.calls, 3);
        assert_int_equal(vm->status, VM_FAILED);
        assert_non_null(strstr(vm->reason, "gave up after 3 attempts"));
}

#define INV_FMT                                                                                    \
        "{\"node\":\"n1\",\"digest\":\"%s\",\"vms\":["                                             \
        "{\"id\":\"%s\",\"state\":\"running\",\"lifecycle\":\"active\","                           \
        "\"integrity\":{\"status\":\"%s\",\"root\":\"%s\",\"tree_size\":3,"                        \
        "\"mismatches\":[]}},"                                                                     \
        "{\"id\":\"stranger\",\"state\":\"running\"}]}"

static void test_inventory_reconcile(void **state)
{
        struct fixture *fx = *state;
        struct fleetd *f = &fx->f;
        const char *d1 = "1111111111111111111111111111111111111111111111111111111111111111";
        const char *d2 = "2222222222222222222222222222222222222222222222222222222222222222";
        const char *d3 = "3333333333333333333333333333333333333333333333333333333333333333";
        uint64_t now = clock_monotonic_ms();
        struct fleet_vm *vm, *other;
        char inv1[1024], inv2[1024], inv3[1024];
        json_t *bad;

        tfu_heartbeat(&f->table, 1, 1, 16000, 10, d1, now);
        vm = confirm_one(f, "acme");
        other = confirm_one(f, "beta");
        fake.script[0].status = 201; /* creation of acme */
        fake.script[1].status = 201; /* creation of beta */
        snprintf(inv1, sizeof(inv1), INV_FMT, d1, vm->id, "ok", "aa");
        fake.script[2].status = 200;
        fake.script[2].body = inv1;
        dispatch_run_once(f, now);
        vm = &f->vms[0];
        other = &f->vms[1];
        assert_int_equal(vm->status, VM_ACTIVE);
        assert_string_equal(fake.path[2], "/v1/inventory");
        assert_false(vm->reserved); /* reflected */
        assert_string_equal(vm->observed, "running");
        assert_true(other->missing); /* created, but the node lacks it */
        assert_int_equal(audit_count(f, "vm.missing"), 1);
        assert_int_equal(audit_count(f, "vm.unknown"), 1);
        assert_int_equal(json_array_size(node_table_find(&f->table, "n1")->unknown_vms), 1);
        assert_string_equal(fleet_integrity_status(f, &bad), "unknown");
        json_decref(bad);

        /* a new digest, the same VM now reports a mismatch */
        tfu_heartbeat(&f->table, 1, 2, 16000, 10, d2, now + 100);
        snprintf(inv2, sizeof(inv2), INV_FMT, d2, vm->id, "mismatch", "bb");
        fake.script[3].status = 200;
        fake.script[3].body = inv2;
        dispatch_run_once(f, now + 100);
        assert_string_equal(vm->integrity, "mismatch");
        assert_int_equal(audit_count(f, "integrity.mismatch"), 1);
        assert_int_equal(audit_count(f, "vm.unknown"), 1); /* flagged once */
        assert_string_equal(fleet_integrity_status(f, &bad), "mismatch");
        assert_int_equal(json_array_size(bad), 1);
        json_decref(bad);
        assert_int_equal(f->metrics.integrity_mismatches, 1);

        /* the same mismatch again is not new */
        tfu_heartbeat(&f->table, 1, 3, 16000, 10, d3, now + 200);
        snprintf(inv3, sizeof(inv3), INV_FMT, d3, vm->id, "mismatch", "bb");
        fake.script[4].status = 200;
        fake.script[4].body = inv3;
        dispatch_run_once(f, now + 200);
        assert_int_equal(fake.calls, 5);
        assert_int_equal(audit_count(f, "integrity.mismatch"), 1);
}

static void test_inventory_hostile(void **state)
{
        struct fixture *fx = *state;
        struct fleetd *f = &fx->f;
        const char *bad[] = {
            "",
            "[]",
            "{\"node\":\"n2\",\"digest\":\"x\",\"vms\":[]}",
            "{\"node\":\"n1\",\"digest\":"
            "\"1111111111111111111111111111111111111111111111111111111111111111\",\"vms\":[1]}",
            "{\"node\":\"n1\",\"digest\":"
            "\"1111111111111111111111111111111111111111111111111111111111111111\",\"vms\":[{\"id\":"
            "\"../x\"}]}",
            "{\"node\":\"n1\",\"digest\":"
            "\"1111111111111111111111111111111111111111111111111111111111111111\",\"vms\":[{\"id\":"
            "\"a\",\"integrity\":{\"status\":\"bogus\"}}]}",
            "{\"node\":\"n1\",\"digest\":"
            "\"1111111111111111111111111111111111111111111111111111111111111111\",\"vms\":[],"
            "\"extra\":1}",
            "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
        };
        char err[256];

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_true(
                    inventory_apply(f, "n1", NULL, bad[i], strlen(bad[i]), err, sizeof(err)) < 0);
        assert_int_equal(audit_count(f, "vm.unknown"), 0);
}

static void test_lifecycle(void **state)
{
        struct fixture *fx = *state;
        struct fleetd *f = &fx->f;
        struct plan_outcome o;
        struct fleet_vm *vm;
        uint64_t now = clock_monotonic_ms();

        tfu_heartbeat(&f->table, 1, 1, 16000, 10, NULL, now);
        node_table_find(&f->table, "n1")->inv = INV_OK;
        memcpy(node_table_find(&f->table, "n1")->inv_digest,
               node_table_find(&f->table, "n1")->hb.inventory_digest, DIGEST_HEX_LEN + 1);
        vm = confirm_one(f, "acme");
        dispatch_vm_verb(f, vm->id, "suspend", "test", &o);
        assert_int_equal(o.status, 409); /* still creating */
        assert_string_equal(o.problem, "vm-not-active");
        fake.script[0].status = 201;
        dispatch_run_once(f, now);
        fake.script[1].status = 200;
        dispatch_vm_verb(f, vm->id, "suspend", "test", &o);
        assert_int_equal(o.status, 200);
        json_decref(o.body);
        assert_int_equal(vm->lifecycle, VM_LC_SUSPENDED);
        {
                char want[128];

                snprintf(want, sizeof(want), "/v1/vms/%s/suspend", vm->id);
                assert_string_equal(fake.path[1], want);
        }
        dispatch_vm_verb(f, vm->id, "suspend", "test", &o); /* already suspended */
        assert_int_equal(o.status, 409);
        assert_string_equal(o.problem, "wrong-lifecycle");
        fake.script[2].status = 200;
        dispatch_vm_verb(f, vm->id, "archive", "test", &o);
        assert_int_equal(o.status, 200);
        json_decref(o.body);
        dispatch_vm_verb(f, vm->id, "resume", "test", &o);
        assert_int_equal(o.status, 409);
        assert_string_equal(o.problem, "archived");
        assert_int_equal(fake.calls, 3);
        fake.script[3].status = 409;
        fake.script[3].body = "{\"type\":\"pinned-elsewhere\",\"detail\":\"no\"}";
        dispatch_vm_verb(f, "nope", "suspend", "test", &o);
        assert_int_equal(o.status, 404);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_retry_then_active, setup, teardown),
            cmocka_unit_test_setup_teardown(test_refused_fails_with_reason, setup, teardown),
            cmocka_unit_test_setup_teardown(test_gives_up_after_attempts, setup, teardown),
            cmocka_unit_test_setup_teardown(test_inventory_reconcile, setup, teardown),
            cmocka_unit_test_setup_teardown(test_inventory_hostile, setup, teardown),
            cmocka_unit_test_setup_teardown(test_lifecycle, setup, teardown),
        };

        log_init("test", LOG_LEVEL_ERROR);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
