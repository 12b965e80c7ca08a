/* The dispatcher and inventory reconciliation against a fake node transport: creation retried
 * with backoff and the same request id, outcomes visible on the VM, refusals failing with the
 * node's reason, inventories flagging unknown and missing VMs, reservations released when the
 * node reflects the VM, integrity mismatches audited once and raised at fleet level, the
 * lifecycle verbs, the verify verb and its report, and a lifecycle corrected from the node's
 * inventory after a call that got no answer (but not from an inventory that may predate a call).
 * The clock is the now_ms passed to dispatch_run_once. */
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
        /* POST /v1/roster (the roster anti-entropy) is answered apart, uncounted above: how
         * many came, and the answer (0: 409, the node holds it; <0: no answer) */
        unsigned roster_posts;
        long roster_status;
        /* run before answering call number hook_at (1-based), with no lock held */
        void (*hook)(void);
        unsigned hook_at;
};

static struct fake fake;

static int fake_call(void *ctx, const char *address, uint16_t port, const char *method,
                     const char *path, const char *body, uint64_t timeout_ms, long *ret_status,
                     char **ret_body)
{
        unsigned i, a;

        if (strcmp(path, "/v1/roster") == 0) {
                fake.roster_posts++;
                if (fake.roster_status < 0)
                        return -ETIMEDOUT;
                *ret_status = fake.roster_status ? fake.roster_status : 409;
                *ret_body = NULL;
                return 0;
        }
        i = fake.calls++ % FAKE_MAX;
        a = fake.next++ % FAKE_MAX;
        snprintf(fake.method[i], sizeof(fake.method[i]), "%s", method);
        snprintf(fake.path[i], sizeof(fake.path[i]), "%s", path);
        snprintf(fake.body[i], sizeof(fake.body[i]), "%s", body ? body : "");
        if (fake.hook && fake.calls == fake.hook_at)
                fake.hook();
        if (fake.script[a].err)
                return fake.script[a].err;
        *ret_status = fake.script[a].status;
        *ret_body = fake.script[a].body ? strdup(fake.script[a].body) : NULL;
        return 0;
}

static int setup(void **state)
{
        struct fleet_transport tr = {fake_call, NULL};

        memset(&fake, 0, sizeof(fake));
        return tfu_setup(state, 2, &tr);
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
        assert_int_equal(api_outcome_status(&p), 201);
        snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(p.body, "id")));
        plans_confirm(f, id, "test", &c);
        assert_int_equal(api_outcome_status(&c), 201);
        json_decref(p.body);
        json_decref(c.body);
        return vm_table_find(f, f->vms[f->n_vms - 1].id);
}

/* Roster anti-entropy: each alive node is sent the current roster once; one that did not answer
 * is sent it again after 30 s, not sooner; a new version is sent again to every node. */
static void test_roster_sent_once_to_each_alive_node(void **state)
{
        struct tfu_fixture *fx = *state;
        struct fleetd *f = &fx->f;
        uint64_t now = clock_monotonic_ms();
        struct fleet_node *n1 = node_table_find(&f->table, "n1");

        n1->inv = INV_OK; /* no inventory traffic here */
        dispatch_run_once(f, now);
        assert_int_equal(fake.roster_posts, 0); /* no node alive yet */
        tfu_heartbeat(&f->table, 1, 1, 16000, 10, NULL, now);
        memcpy(n1->inv_digest, n1->hb.inventory_digest, DIGEST_HEX_LEN + 1);
        fake.roster_status = -1; /* no answer */
        dispatch_run_once(f, now);
        assert_int_equal(fake.roster_posts, 1);
        dispatch_run_once(f, now + 29000);
        assert_int_equal(fake.roster_posts, 1);                       /* not before 30 s */
        fake.roster_status = 200;                                     /* taken */
        tfu_heartbeat(&f->table, 1, 2, 16000, 10, NULL, now + 31000); /* still alive */
        dispatch_run_once(f, now + 31000);
        assert_int_equal(fake.roster_posts, 2);
        tfu_heartbeat(&f->table, 1, 3, 16000, 10, NULL, now + 70000);
        dispatch_run_once(f, now + 70000);
        assert_int_equal(fake.roster_posts, 2); /* sent: never again for this version */
        assert_int_equal(n1->roster_synced, f->table.roster->version);
        f->table.roster->version++; /* what a roster reload brings */
        fake.roster_status = 0;     /* 409: held (or newer) */
        dispatch_run_once(f, now + 71000);
        assert_int_equal(fake.roster_posts, 3);
        tfu_heartbeat(&f->table, 1, 4, 16000, 10, NULL, now + 100000);
        dispatch_run_once(f, now + 100000);
        assert_int_equal(fake.roster_posts, 3);
        for (unsigned i = 0; i < fake.calls; i++) /* the other calls: the heartbeats' fetches */
                assert_string_equal(fake.path[i], "/v1/inventory");
}

static void test_retry_then_active(void **state)
{
        struct tfu_fixture *fx = *state;
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
        assert_int_equal(tfu_audit_count(f, "vm.created"), 1);
        /* still reserved until the node's inventory shows it */
        assert_true(vm->reserved);
}

static void test_refused_fails_with_reason(void **state)
{
        struct tfu_fixture *fx = *state;
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
        struct tfu_fixture *fx = *state;
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
        for (uint64_t t = now; t < now + 3000; t += 500)
                dispatch_run_once(f, t);
        assert_int_equal(fake.calls, 2);
        /* the last attempt gets no answer either: the node may hold the VM all the same, so its
         * memory stays reserved until an inventory asked for from now on tells */
        fake.script[3].status = 200;
        fake.script[3].body = "{\"node\":\"n1\",\"digest\":"
                              "\"0000000000000000000000000000000000000000000000000000000000000000\""
                              ",\"vms\":[],\"creations\":9}";
        fake.hook = NULL;
        f->cfg.dispatch_backoff_ms = 100000; /* one fetch only */
        dispatch_run_once(f, now + 3000);
        assert_int_equal(fake.calls, 4);
        assert_string_equal(fake.path[2], "/v1/vms");
        assert_string_equal(fake.path[3], "/v1/inventory");
        assert_int_equal(vm->status, VM_FAILED);
        assert_non_null(strstr(vm->reason, "gave up after 3 attempts"));
        assert_false(vm->reserved); /* the node's inventory lacks it */
        assert_int_equal(node_table_find(&f->table, "n1")->reserved_mib, 0);
}

/* The same, but the node did create the VM: its listing names the counter that reflects it. */
static void test_gave_up_but_created(void **state)
{
        struct tfu_fixture *fx = *state;
        struct fleetd *f = &fx->f;
        struct fleet_vm *vm;
        uint64_t now = clock_monotonic_ms();
        char inv[512];

        f->cfg.dispatch_attempts = 1;
        f->cfg.dispatch_backoff_ms = 100000;
        tfu_heartbeat_f(f, 1, 1, 16000, 0, 5, NULL, now);
        node_table_find(&f->table, "n1")->inv = INV_OK;
        memcpy(node_table_find(&f->table, "n1")->inv_digest,
               node_table_find(&f->table, "n1")->hb.inventory_digest, DIGEST_HEX_LEN + 1);
        vm = confirm_one(f, "acme");
        fake.script[0].err = -ETIMEDOUT;
        snprintf(inv, sizeof(inv),
                 "{\"node\":\"n1\",\"digest\":\"%064d\",\"vms\":[{\"id\":\"%s\","
                 "\"state\":\"running\"}],\"creations\":6}",
                 1, vm->id);
        fake.script[1].status = 200;
        fake.script[1].body = inv;
        dispatch_run_once(f, now);
        assert_int_equal(fake.calls, 2);
        assert_int_equal(vm->status, VM_ACTIVE); /* the node holds it */
        assert_true(vm->reserved);               /* the figures (counter 5) predate it */
        assert_int_equal(vm->reserve_until, 6);
        tfu_heartbeat_f(f, 1, 2, 16000, 0, 5, NULL, now + 10);
        assert_true(vm->reserved);
        tfu_heartbeat_f(f, 1, 3, 14000, 1024, 6, NULL, now + 20);
        assert_false(vm->reserved);
        assert_int_equal(node_available_mib(node_table_find(&f->table, "n1")), 14000);
}

/* A heartbeat of n1 from vmhost run epoch, through fleetd's own path. */
static void beat_n1(struct fleetd *f, uint64_t epoch, uint64_t seq, uint64_t avail,
                    uint64_t committed, uint64_t creations, uint64_t now)
{
        char buf[HEARTBEAT_MAX_BYTES], err[256];
        int len = tfu_heartbeat_encode(1, epoch, seq, avail, committed, creations, 10, NULL, buf);

        assert_true(len > 0);
        pthread_mutex_lock(&f->lock);
        assert_int_equal(
            heartbeat_listener_apply(f, buf, (size_t)len, tfu_addr(1), now, err, sizeof(err)), 0);
        pthread_mutex_unlock(&f->lock);
}

/* Figures never go back to a sample older than the ones a reservation was released against;
 * a counter that went back across a vmhost restart takes every reservation on the node again. */
static void test_figures_never_go_back(void **state)
{
        struct tfu_fixture *fx = *state;
        struct fleetd *f = &fx->f;
        struct fleet_node *n1 = node_table_find(&f->table, "n1");
        struct fleet_vm *vm;
        uint64_t now = clock_monotonic_ms();

        beat_n1(f, 1000, 1, 16000, 0, 5, now);
        n1->inv = INV_OK;
        memcpy(n1->inv_digest, n1->hb.inventory_digest, DIGEST_HEX_LEN + 1);
        vm = confirm_one(f, "acme");
        fake.script[0].status = 201;
        fake.script[0].body = "{\"creations\":6}";
        dispatch_run_once(f, now);
        assert_int_equal(vm->status, VM_ACTIVE);
        assert_true(vm->reserved);
        assert_int_equal(node_available_mib(n1), 16000 - 1024);
        beat_n1(f, 1000, 2, 15000, 1024, 6, now + 10); /* sampled after: reflects it */
        assert_false(vm->reserved);
        assert_int_equal(node_available_mib(n1), 15000);
        beat_n1(f, 1000, 3, 16000, 0, 5, now + 20); /* an older sample: liveness only */
        assert_int_equal(node_available_mib(n1), 15000);
        assert_int_equal(n1->last_seen_ms, now + 20);
        /* a new vmhost run whose counter went back (its file was lost): a late datagram of an
         * earlier boot is no different at first, so the figures stay for two heartbeats */
        beat_n1(f, 2000, 1, 15000, 1024, 2, now + 30);
        beat_n1(f, 2000, 2, 15000, 1024, 2, now + 40);
        assert_false(vm->reserved);
        assert_int_equal(n1->hb.creations, 6);
        beat_n1(f, 2000, 3, 15000, 1024, 2, now + 50); /* the third: a reset */
        assert_int_equal(n1->hb.creations, 2);
        assert_true(vm->reserved);
        assert_int_equal(vm->reserve_until, 0);
        assert_int_equal(node_available_mib(n1), 15000 - 1024);
        assert_int_equal(n1->inv, INV_WANTED);
}

#define INV_FMT                                                                                    \
        "{\"node\":\"n1\",\"digest\":\"%s\",\"vms\":["                                             \
        "{\"id\":\"%s\",\"state\":\"running\",\"lifecycle\":\"active\","                           \
        "\"integrity\":{\"status\":\"%s\",\"root\":\"%s\",\"tree_size\":3,"                        \
        "\"mismatches\":[]}},"                                                                     \
        "{\"id\":\"stranger\",\"state\":\"running\"}],\"creations\":4}"

static void test_inventory_reconcile(void **state)
{
        struct tfu_fixture *fx = *state;
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
        assert_true(vm->reserved); /* listed, but the figures may predate it */
        assert_int_equal(vm->reserve_until, 4);
        assert_string_equal(vm->observed, "running");
        assert_true(other->missing); /* created, but the node lacks it */
        assert_int_equal(tfu_audit_count(f, "vm.missing"), 1);
        assert_int_equal(tfu_audit_count(f, "vm.unknown"), 1);
        assert_int_equal(json_array_size(node_table_find(&f->table, "n1")->unknown_vms), 1);
        assert_string_equal(fleet_integrity_status(f, &bad), "unknown");
        json_decref(bad);

        /* a new digest, the same VM now reports a mismatch */
        tfu_heartbeat_f(f, 1, 2, 16000, 0, 3, d2, now + 100);
        assert_true(vm->reserved); /* sampled before the creation that made counter 4 */
        snprintf(inv2, sizeof(inv2), INV_FMT, d2, vm->id, "mismatch", "bb");
        fake.script[3].status = 200;
        fake.script[3].body = inv2;
        dispatch_run_once(f, now + 100);
        assert_string_equal(vm->integrity, "mismatch");
        assert_int_equal(tfu_audit_count(f, "integrity.mismatch"), 1);
        assert_int_equal(tfu_audit_count(f, "vm.unknown"), 1); /* flagged once */
        assert_string_equal(fleet_integrity_status(f, &bad), "mismatch");
        assert_int_equal(json_array_size(bad), 1);
        json_decref(bad);
        assert_int_equal(f->metrics.integrity_mismatches, 1);

        /* the same mismatch again is not new */
        tfu_heartbeat_f(f, 1, 3, 16000, 1024, 4, d3, now + 200);
        assert_false(vm->reserved); /* reflected */
        snprintf(inv3, sizeof(inv3), INV_FMT, d3, vm->id, "mismatch", "bb");
        fake.script[4].status = 200;
        fake.script[4].body = inv3;
        dispatch_run_once(f, now + 200);
        assert_int_equal(fake.calls, 5);
        assert_int_equal(tfu_audit_count(f, "integrity.mismatch"), 1);
        assert_false(vm->reserved);
}

static void test_inventory_hostile(void **state)
{
        struct tfu_fixture *fx = *state;
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
        assert_int_equal(tfu_audit_count(f, "vm.unknown"), 0);
}

static void test_lifecycle(void **state)
{
        struct tfu_fixture *fx = *state;
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
        assert_int_equal(api_outcome_status(&o), 409); /* still creating */
        assert_string_equal(o.problem, "vm-not-active");
        fake.script[0].status = 201;
        dispatch_run_once(f, now);
        fake.script[1].status = 200;
        dispatch_vm_verb(f, vm->id, "suspend", "test", &o);
        assert_int_equal(api_outcome_status(&o), 200);
        json_decref(o.body);
        assert_int_equal(vm->lifecycle, VM_LC_SUSPENDED);
        {
                char want[128];

                snprintf(want, sizeof(want), "/v1/vms/%s/suspend", vm->id);
                assert_string_equal(fake.path[1], want);
        }
        dispatch_vm_verb(f, vm->id, "suspend", "test", &o); /* already suspended */
        assert_int_equal(api_outcome_status(&o), 409);
        assert_string_equal(o.problem, "wrong-lifecycle");
        fake.script[2].status = 200;
        dispatch_vm_verb(f, vm->id, "archive", "test", &o);
        assert_int_equal(api_outcome_status(&o), 200);
        json_decref(o.body);
        dispatch_vm_verb(f, vm->id, "resume", "test", &o);
        assert_int_equal(api_outcome_status(&o), 409);
        assert_string_equal(o.problem, "archived");
        assert_int_equal(fake.calls, 3);
        fake.script[3].status = 409;
        fake.script[3].body = "{\"type\":\"pinned-elsewhere\",\"detail\":\"no\"}";
        dispatch_vm_verb(f, "nope", "suspend", "test", &o);
        assert_int_equal(api_outcome_status(&o), 404);
}

/* An inventory of n1 holding vm_id with that lifecycle and, when trigger is set, an agent report.
 */
static const char *inv_text(const char *digest_char, const char *vm_id, const char *lifecycle,
                            const char *trigger, const char *request_id)
{
        static char buf[4][1024];
        static unsigned k;
        char *b = buf[k++ % 4], digest[65], agent[400] = "null";

        memset(digest, digest_char[0], 64);
        digest[64] = '\0';
        if (trigger)
                snprintf(agent, sizeof(agent),
                         "{\"connected\":true,\"last_report_ms\":1700000000000,\"last_report\":{"
                         "\"v\":1,\"type\":\"report\",\"trigger\":\"%s\"%s%s%s,"
                         "\"duration_ms\":42,\"records\":7,\"bytes\":900,\"mismatches\":[]}}",
                         trigger, request_id ? ",\"request_id\":\"" : "",
                         request_id ? request_id : "", request_id ? "\"" : "");
        snprintf(b, sizeof(buf[0]),
                 "{\"node\":\"n1\",\"digest\":\"%s\",\"vms\":[{\"id\":\"%s\",\"state\":"
                 "\"running\",\"lifecycle\":\"%s\",\"agent\":%s}]}",
                 digest, vm_id, lifecycle, agent);
        return b;
}

/* n1 alive at now with an active VM, its inventory reconciled; the fake's next answer is
 * script[1]. */
static struct fleet_vm *active_vm(struct fleetd *f, uint64_t now)
{
        struct fleet_vm *vm;

        tfu_heartbeat(&f->table, 1, 1, 16000, 10, NULL, now);
        node_table_find(&f->table, "n1")->inv = INV_OK;
        memcpy(node_table_find(&f->table, "n1")->inv_digest,
               node_table_find(&f->table, "n1")->hb.inventory_digest, DIGEST_HEX_LEN + 1);
        vm = confirm_one(f, "acme");
        fake.script[0].status = 201;
        dispatch_run_once(f, now);
        assert_int_equal(vm->status, VM_ACTIVE);
        return vm;
}

static void test_verify_forwarded_and_reported(void **state)
{
        struct tfu_fixture *fx = *state;
        struct fleetd *f = &fx->f;
        uint64_t now = clock_monotonic_ms();
        struct fleet_vm *vm = active_vm(f, now);
        struct plan_outcome o;
        char want[128];
        json_t *j, *a;

        fake.script[1].status = 202;
        fake.script[1].body = "{\"vm\":\"x\",\"request_id\":\"0a1b2c3d4e5f6071\"}";
        dispatch_vm_verb(f, vm->id, "verify", "token:ops", &o);
        assert_int_equal(api_outcome_status(&o), 202);
        assert_null(o.problem);
        assert_string_equal(json_string_value(json_object_get(o.body, "request_id")),
                            "0a1b2c3d4e5f6071");
        assert_string_equal(json_string_value(json_object_get(o.body, "node_id")), "n1");
        json_decref(o.body);
        snprintf(want, sizeof(want), "/v1/vms/%s/verify", vm->id);
        assert_string_equal(fake.path[1], want);
        assert_string_equal(fake.method[1], "POST");
        assert_int_equal(vm->lifecycle, VM_LC_ACTIVE); /* verify changes no lifecycle */
        a = audit_list(f->store, 0, 10, "vm.verify");
        assert_int_equal(json_array_size(a), 1);
        j = json_array_get(a, 0);
        assert_string_equal(json_string_value(json_object_get(j, "actor")), "token:ops");
        assert_string_equal(json_string_value(json_object_get(j, "subject")), vm->id);
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(j, "detail"), "outcome")),
            "requested");
        json_decref(a);
        j = vm_to_json(f, vm, now);
        assert_true(json_is_true(json_object_get(json_object_get(j, "verification"), "pending")));
        json_decref(j);

        /* a seal report is not a verification; the requested one arrives in the next inventory */
        tfu_heartbeat(&f->table, 1, 2, 16000, 10,
                      "2222222222222222222222222222222222222222222222222222222222222222", now + 10);
        fake.script[2].status = 200;
        fake.script[2].body = inv_text("2", vm->id, "active", "seal", NULL);
        dispatch_run_once(f, now + 10);
        assert_null(vm->verification);
        assert_int_not_equal(vm->verify_poll_until_ms, 0); /* still awaited: the node is polled */
        tfu_heartbeat(&f->table, 1, 3, 16000, 10,
                      "3333333333333333333333333333333333333333333333333333333333333333", now + 20);
        fake.script[3].status = 200;
        fake.script[3].body = inv_text("3", vm->id, "active", "request", "0a1b2c3d4e5f6071");
        dispatch_run_once(f, now + 20);
        assert_non_null(vm->verification);
        assert_int_equal(vm->verify_poll_until_ms, 0);
        j = vm_to_json(f, vm, now);
        a = json_object_get(j, "verification");
        assert_false(json_is_true(json_object_get(a, "pending")));
        assert_int_equal(
            json_integer_value(json_object_get(json_object_get(a, "last"), "duration_ms")), 42);
        assert_int_equal(
            json_integer_value(json_object_get(json_object_get(a, "last"), "mismatches")), 0);
        json_decref(j);
        assert_int_equal(tfu_audit_count(f, "vm.verified"), 1);
        /* the same report again is not audited twice */
        tfu_heartbeat(&f->table, 1, 4, 16000, 10,
                      "4444444444444444444444444444444444444444444444444444444444444444", now + 30);
        fake.script[4].status = 200;
        fake.script[4].body = inv_text("4", vm->id, "active", "request", "0a1b2c3d4e5f6071");
        dispatch_run_once(f, now + 30);
        assert_int_equal(fake.calls, 5);
        assert_int_equal(tfu_audit_count(f, "vm.verified"), 1);
}

/* An inventory whose last report is a scheduled one, with the requested one kept apart by vmhost
 * (agent.last_requested_report): the requested one is audited once, the scheduled one is "last". */
#define REPORT_FMT                                                                                 \
        "{\"v\":1,\"type\":\"report\",\"trigger\":\"%s\"%s%s%s,\"duration_ms\":%d,\"records\":7,"  \
        "\"bytes\":900,\"mismatches\":[]}"

static const char *inv_text_both(const char *digest_char, const char *vm_id, const char *rid)
{
        static char b[2048];
        char digest[65];
        char sched[300], req[300];

        memset(digest, digest_char[0], 64);
        digest[64] = '\0';
        snprintf(sched, sizeof(sched), REPORT_FMT, "schedule", "", "", "", 50);
        snprintf(req, sizeof(req), REPORT_FMT, "request", ",\"request_id\":\"", rid, "\"", 42);
        snprintf(b, sizeof(b),
                 "{\"node\":\"n1\",\"digest\":\"%s\",\"vms\":[{\"id\":\"%s\",\"state\":"
                 "\"running\",\"lifecycle\":\"active\",\"agent\":{\"connected\":true,"
                 "\"last_report_ms\":1700000002000,\"last_report\":%s,"
                 "\"last_requested_report_ms\":1700000001000,\"last_requested_report\":%s}}]}",
                 digest, vm_id, sched, req);
        return b;
}

static void test_verify_report_kept_apart_by_the_node(void **state)
{
        struct tfu_fixture *fx = *state;
        struct fleetd *f = &fx->f;
        uint64_t now = clock_monotonic_ms();
        struct fleet_vm *vm = active_vm(f, now);
        struct plan_outcome o;
        json_t *j, *v;

        fake.script[1].status = 202;
        fake.script[1].body = "{\"vm\":\"x\",\"request_id\":\"77aa\"}";
        dispatch_vm_verb(f, vm->id, "verify", "token:ops", &o);
        assert_int_equal(api_outcome_status(&o), 202);
        json_decref(o.body);
        for (unsigned k = 2; k <= 3; k++) { /* the same inventory twice: one audit entry */
                char d[2] = {(char)('0' + k), 0}, digest[65];

                memset(digest, d[0], 64);
                digest[64] = '\0';
                tfu_heartbeat(&f->table, 1, k, 16000, 10, digest, now + 10 * k);
                fake.script[k].status = 200;
                fake.script[k].body = inv_text_both(d, vm->id, "77aa");
                dispatch_run_once(f, now + 10 * k);
                assert_int_equal(tfu_audit_count(f, "vm.verified"), 1);
                j = vm_to_json(f, vm, now);
                v = json_object_get(j, "verification");
                assert_false(json_is_true(json_object_get(v, "pending")));
                assert_string_equal(
                    json_string_value(json_object_get(json_object_get(v, "last"), "trigger")),
                    "schedule");
                json_decref(j);
        }
        assert_int_equal(vm->verify_poll_until_ms, 0);
        assert_int_equal(fake.calls, 4);
}

static void test_verify_refusals(void **state)
{
        struct tfu_fixture *fx = *state;
        struct fleetd *f = &fx->f;
        uint64_t now = clock_monotonic_ms();
        struct fleet_vm *vm = active_vm(f, now);
        static const struct {
                int err;
                long status;
                const char *body;
                unsigned want;
                const char *problem;
        } cases[] = {
            {-ETIMEDOUT, 0, NULL, 504, "node-timeout"},
            {-ECONNREFUSED, 0, NULL, 502, "node-unavailable"},
            {0, 409, "{\"type\":\"agent-not-connected\",\"detail\":\"no channel\"}", 409,
             "node-refused"},
            {0, 500, "{\"detail\":\"libvirt\"}", 502, "node-error"},
            {0, 202, "{\"request_id\":\"../../x\"}", 502, "node-error"},
            {0, 202, "not json", 502, "node-error"},
        };
        struct plan_outcome o;
        unsigned calls;

        for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                fake.script[1 + i].err = cases[i].err;
                fake.script[1 + i].status = cases[i].status;
                fake.script[1 + i].body = cases[i].body;
                dispatch_vm_verb(f, vm->id, "verify", "test", &o);
                assert_int_equal(api_outcome_status(&o), cases[i].want);
                assert_string_equal(o.problem, cases[i].problem);
                assert_null(o.body);
        }
        assert_int_equal(tfu_audit_count(f, "vm.verify"), 6); /* each failed forward is recorded */
        assert_string_equal(vm->verify_request_id, "");
        calls = fake.calls;
        /* refused before any call: unknown, suspended, archived, node evicted */
        dispatch_vm_verb(f, "tbx-nope-000000", "verify", "test", &o);
        assert_int_equal(api_outcome_status(&o), 404);
        vm->lifecycle = VM_LC_SUSPENDED;
        dispatch_vm_verb(f, vm->id, "verify", "test", &o);
        assert_int_equal(api_outcome_status(&o), 409);
        assert_string_equal(o.problem, "wrong-lifecycle");
        vm->lifecycle = VM_LC_ARCHIVED;
        dispatch_vm_verb(f, vm->id, "verify", "test", &o);
        assert_int_equal(api_outcome_status(&o), 409);
        assert_string_equal(o.problem, "archived");
        vm->lifecycle = VM_LC_ACTIVE;
        node_table_find(&f->table, "n1")->last_seen_ms = now - 31000;
        dispatch_vm_verb(f, vm->id, "verify", "test", &o);
        assert_int_equal(api_outcome_status(&o), 409);
        assert_string_equal(o.problem, "node-unreachable");
        assert_int_equal(fake.calls, calls);
        assert_int_equal(tfu_audit_count(f, "vm.verify"), 6);
        assert_true(dispatch_verb_known("verify"));
        assert_false(dispatch_verb_known("migrate"));
        assert_false(dispatch_verb_known("delete"));
}

static unsigned corrections(struct fleetd *f)
{
        json_t *a = audit_list(f->store, 0, 1000, "vm.lifecycle");
        unsigned n = 0;

        for (size_t i = 0; i < json_array_size(a); i++)
                if (json_object_get(json_object_get(json_array_get(a, i), "detail"), "source"))
                        n++;
        json_decref(a);
        return n;
}

static void test_lifecycle_timeout_corrected_by_inventory(void **state)
{
        struct tfu_fixture *fx = *state;
        struct fleetd *f = &fx->f;
        uint64_t now = clock_monotonic_ms();
        struct fleet_vm *vm = active_vm(f, now);
        struct fleet_node *n1 = node_table_find(&f->table, "n1");
        struct plan_outcome o;
        json_t *a, *d;

        fake.script[1].err = -ETIMEDOUT; /* the node suspended it, but the answer never came */
        dispatch_vm_verb(f, vm->id, "suspend", "token:ops", &o);
        assert_int_equal(api_outcome_status(&o), 504);
        assert_string_equal(o.problem, "node-timeout");
        assert_int_equal(vm->lifecycle, VM_LC_ACTIVE);
        assert_non_null(strstr(vm->lc_unsure, "suspend"));
        assert_int_equal(n1->inv, INV_WANTED); /* asked at once, without a digest change */
        fake.script[2].status = 200;
        fake.script[2].body = inv_text("1", vm->id, "suspended", NULL, NULL);
        dispatch_run_once(f, now + 5);
        assert_string_equal(fake.path[2], "/v1/inventory");
        assert_int_equal(vm->lifecycle, VM_LC_SUSPENDED);
        assert_string_equal(vm->lc_unsure, "");
        assert_int_equal(f->metrics.lifecycle_corrections, 1);
        a = audit_list(f->store, 0, 10, "vm.lifecycle");
        assert_int_equal(json_array_size(a), 1);
        d = json_object_get(json_array_get(a, 0), "detail");
        assert_string_equal(json_string_value(json_object_get(d, "source")), "inventory");
        assert_string_equal(json_string_value(json_object_get(d, "was")), "active");
        assert_string_equal(json_string_value(json_object_get(d, "lifecycle")), "suspended");
        assert_non_null(strstr(json_string_value(json_object_get(d, "after")), "suspend"));
        assert_string_equal(json_string_value(json_object_get(json_array_get(a, 0), "actor")),
                            "fleetd");
        json_decref(a);
        /* the correction is durable: reopening the store reads it back */
        {
                struct fleetd g;
                char dir[512];

                snprintf(dir, sizeof(dir), "%s", fx->dir);
                fleetd_close(f);
                assert_int_equal(tfu_fleetd_open(&g, dir, 2, NULL), 0);
                assert_int_equal(vm_table_find(&g, g.vms[0].id)->lifecycle, VM_LC_SUSPENDED);
                fleetd_close(&g);
                memset(f, 0, sizeof(*f));
                assert_int_equal(tfu_fleetd_open(f, dir, 2, NULL), 0);
        }
}

static void test_lifecycle_timeout_confirmed_by_inventory(void **state)
{
        struct tfu_fixture *fx = *state;
        struct fleetd *f = &fx->f;
        uint64_t now = clock_monotonic_ms();
        struct fleet_vm *vm = active_vm(f, now);
        struct plan_outcome o;

        fake.script[1].err = -ECONNREFUSED; /* never reached the node */
        dispatch_vm_verb(f, vm->id, "archive", "test", &o);
        assert_int_equal(api_outcome_status(&o), 502);
        assert_string_equal(o.problem, "node-unavailable");
        fake.script[2].status = 200;
        fake.script[2].body = inv_text("1", vm->id, "active", NULL, NULL);
        dispatch_run_once(f, now + 5);
        assert_int_equal(vm->lifecycle, VM_LC_ACTIVE);
        assert_string_equal(vm->lc_unsure, "");
        assert_int_equal(corrections(f), 0);
        assert_int_equal(f->metrics.lifecycle_corrections, 0);
}

/* The inventory fetch overlaps a suspend that succeeds: the node may have answered the fetch
 * before the suspend, so its "active" is not believed; the next fetch decides. */
static struct fleetd *hook_f;
static char hook_vm[VM_ID_MAX + 1];

static void hook_suspend(void)
{
        struct plan_outcome o;

        fake.hook = NULL;
        dispatch_vm_verb(hook_f, hook_vm, "suspend", "test", &o);
        assert_int_equal(api_outcome_status(&o), 200);
        json_decref(o.body);
}

static void test_inventory_overlapping_a_call_is_not_believed(void **state)
{
        struct tfu_fixture *fx = *state;
        struct fleetd *f = &fx->f;
        uint64_t now = clock_monotonic_ms();
        struct fleet_vm *vm = active_vm(f, now);
        struct fleet_node *n1 = node_table_find(&f->table, "n1");

        tfu_heartbeat(&f->table, 1, 2, 16000, 10,
                      "2222222222222222222222222222222222222222222222222222222222222222", now + 10);
        hook_f = f;
        snprintf(hook_vm, sizeof(hook_vm), "%s", vm->id);
        fake.hook = hook_suspend;
        fake.hook_at = 2;            /* the inventory fetch */
        fake.script[1].status = 200; /* answers the fetch: from before the suspend */
        fake.script[1].body = inv_text("2", vm->id, "active", NULL, NULL);
        fake.script[2].status = 200; /* answers the suspend */
        dispatch_run_once(f, now + 10);
        assert_int_equal(fake.calls, 3);
        assert_int_equal(vm->lifecycle, VM_LC_SUSPENDED);
        assert_int_equal(corrections(f), 0);
        assert_int_equal(n1->inv, INV_WANTED); /* fetched again, after the backoff */
        dispatch_run_once(f, now + 10 + 999);
        assert_int_equal(fake.calls, 3);
        fake.script[3].status = 200;
        fake.script[3].body = inv_text("3", vm->id, "suspended", NULL, NULL);
        dispatch_run_once(f, now + 10 + 1000);
        assert_int_equal(fake.calls, 4);
        assert_int_equal(vm->lifecycle, VM_LC_SUSPENDED);
        assert_int_equal(corrections(f), 0);
        assert_int_equal(n1->inv, INV_WANTED); /* its digest is not the heartbeat's: once more */
}

/* n1 as a node whose inventory is current: no inventory traffic unless its digest changes. */
static void n1_quiet(struct fleetd *f, uint64_t now)
{
        tfu_heartbeat(&f->table, 1, 1, 16000, 10, NULL, now);
        node_table_find(&f->table, "n1")->inv = INV_OK;
        memcpy(node_table_find(&f->table, "n1")->inv_digest,
               node_table_find(&f->table, "n1")->hb.inventory_digest, DIGEST_HEX_LEN + 1);
}

/* The status stored for vm_id (what a restarted fleetd would load). */
static enum vm_status stored_status(struct fleetd *f, const char *vm_id);

#define START_FAILED                                                                               \
        "{\"type\":\"https://totebox.example/problems/start\",\"title\":\"start\",\"status\":500," \
        "\"detail\":\"VM 'x' is defined but did not start: Could not open kernel: Permission "     \
        "denied\"}"

/* The node defined the VM and QEMU would not start it: failed at once with the node's reason,
 * audited as vm.failed, never vm.created; its inventory (the domain defined, shut off) does not
 * turn it into a created VM, and shows what the node observes. */
static void test_start_failure_is_failed_with_reason(void **state)
{
        struct tfu_fixture *fx = *state;
        struct fleetd *f = &fx->f;
        uint64_t now = clock_monotonic_ms();
        struct fleet_vm *vm;
        char inv[512], digest[65];

        n1_quiet(f, now);
        vm = confirm_one(f, "acme");
        memset(digest, '7', 64);
        digest[64] = '\0';
        fake.script[0].status = 500;
        fake.script[0].body = START_FAILED;
        /* the domain is defined: its memory stays reserved and the node's inventory is asked at
         * once; it lists the domain, shut off */
        snprintf(inv, sizeof(inv),
                 "{\"node\":\"n1\",\"digest\":\"%s\",\"vms\":[{\"id\":\"%s\",\"state\":"
                 "\"shutoff\",\"lifecycle\":\"active\"}],\"creations\":4}",
                 digest, vm->id);
        fake.script[1].status = 200;
        fake.script[1].body = inv;
        dispatch_run_once(f, now);
        assert_int_equal(fake.calls, 2);
        assert_string_equal(fake.path[1], "/v1/inventory");
        assert_int_equal(vm->status, VM_FAILED);
        assert_non_null(strstr(vm->reason, "could not start"));
        assert_non_null(strstr(vm->reason, "Could not open kernel"));
        assert_int_equal(stored_status(f, vm->id), VM_FAILED);
        assert_int_equal(tfu_audit_count(f, "vm.failed"), 1);
        assert_int_equal(tfu_audit_count(f, "vm.created"), 0);
        /* the inventory does not turn it into a created VM, and shows what the node observes */
        assert_string_equal(vm->observed, "shutoff");
        assert_int_equal(vm->status, VM_FAILED);
        /* listed: its memory is in the node's figures from counter 4 on */
        assert_true(vm->reserved);
        assert_int_equal(vm->reserve_until, 4);
        tfu_heartbeat_f(f, 1, 2, 16000, 1024, 4, digest, now + 200);
        assert_false(vm->reserved);
        assert_int_equal(tfu_audit_count(f, "vm.created"), 0);
}

/* A node that answers a retry with 200 for a domain that should run and does not (the old
 * behaviour this guards against): not a created VM. */
static void test_held_but_not_running_is_not_created(void **state)
{
        struct tfu_fixture *fx = *state;
        struct fleetd *f = &fx->f;
        uint64_t now = clock_monotonic_ms();
        struct fleet_vm *vm;

        n1_quiet(f, now);
        vm = confirm_one(f, "acme");
        fake.script[0].err = -ETIMEDOUT; /* the first answer is lost */
        fake.script[1].status = 200;
        fake.script[1].body = "{\"state\":\"shutoff\",\"lifecycle\":\"active\"}";
        dispatch_run_once(f, now);
        assert_int_equal(vm->status, VM_CREATING);
        dispatch_run_once(f, now + 1000);
        assert_int_equal(fake.calls, 2);
        assert_int_equal(vm->status, VM_FAILED);
        assert_non_null(strstr(vm->reason, "'shutoff', not running"));
        assert_int_equal(tfu_audit_count(f, "vm.created"), 0);
        /* the node running it is a created VM, and shows as running */
        vm = confirm_one(f, "beta");
        fake.script[2].status = 200;
        fake.script[2].body = "{\"state\":\"running\",\"lifecycle\":\"active\"}";
        dispatch_run_once(f, now + 2000);
        assert_int_equal(vm->status, VM_ACTIVE);
        assert_string_equal(vm->observed, "running");
}

/* While a creation is retried, an inventory holding the domain shut off does not make it
 * created; one holding it running does. */
static void test_inventory_promotes_only_a_running_vm(void **state)
{
        struct tfu_fixture *fx = *state;
        struct fleetd *f = &fx->f;
        uint64_t now = clock_monotonic_ms();
        struct fleet_vm *vm;
        char inv[2][512], d0[65], d1[65];
        char *digest[2] = {d0, d1};
        const char *states[2] = {"shutoff", "running"};

        n1_quiet(f, now);
        vm = confirm_one(f, "acme");
        fake.script[0].status = 503;
        dispatch_run_once(f, now);
        assert_int_equal(vm->status, VM_CREATING);
        for (int i = 0; i < 2; i++) {
                memset(digest[i], 'a' + i, 64);
                digest[i][64] = '\0';
                snprintf(inv[i], sizeof(inv[i]),
                         "{\"node\":\"n1\",\"digest\":\"%s\",\"vms\":[{\"id\":\"%s\",\"state\":"
                         "\"%s\",\"lifecycle\":\"active\"}]}",
                         digest[i], vm->id, states[i]);
                fake.script[1 + i].status = 200;
                fake.script[1 + i].body = inv[i];
                tfu_heartbeat(&f->table, 1, 2 + (uint64_t)i, 16000, 10, digest[i], now + 10);
                vm->next_attempt_ms = UINT64_MAX; /* only the inventory speaks here */
                dispatch_run_once(f, now + 10 + (uint64_t)i);
                assert_int_equal(fake.calls, 2 + i);
                assert_string_equal(fake.path[1 + i], "/v1/inventory");
                assert_int_equal(vm->status, i == 0 ? VM_CREATING : VM_ACTIVE);
        }
        assert_int_equal(tfu_audit_count(f, "vm.created"), 1);
}

static int stored_find(void *ctx, const struct fleet_vm *vm)
{
        struct fleet_vm *want = ctx;

        if (strcmp(vm->id, want->id) == 0)
                want->status = vm->status;
        return 0;
}

static enum vm_status stored_status(struct fleetd *f, const char *vm_id)
{
        struct fleet_vm want = {.status = (enum vm_status) - 1};

        snprintf(want.id, sizeof(want.id), "%s", vm_id);
        assert_int_equal(store_vm_load(f->store, stored_find, &want), 0);
        return want.status;
}

/* An audit entry that cannot be written takes its state change with it: the outcome is either
 * stored with its entry or not at all (what a crash between the two writes would leave). */
static void test_outcome_and_audit_commit_together(void **state)
{
        struct tfu_fixture *fx = *state;
        struct fleetd *f = &fx->f;
        uint64_t now = clock_monotonic_ms();
        struct fleet_vm *vm;

        n1_quiet(f, now);
        vm = confirm_one(f, "acme");
        assert_int_equal(sqlite3_exec(f->store->db,
                                      "CREATE TEMP TRIGGER no_created BEFORE INSERT ON main.audit"
                                      " WHEN NEW.kind = 'vm.created'"
                                      " BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
                                      NULL, NULL, NULL),
                         SQLITE_OK);
        fake.script[0].status = 201;
        fake.script[0].body = "{}";
        dispatch_run_once(f, now);
        assert_int_equal(stored_status(f, vm->id), VM_CREATING); /* not active without its entry */
        assert_int_equal(vm->status, VM_CREATING);               /* nor shown as active */
        assert_int_equal(tfu_audit_count(f, "vm.created"), 0);
        assert_int_equal(
            sqlite3_exec(f->store->db, "DROP TRIGGER temp.no_created", NULL, NULL, NULL),
            SQLITE_OK);
        fake.script[1].status = 200; /* asked again after the backoff: recorded with its entry */
        fake.script[1].body = "{}";
        dispatch_run_once(f, now + 1000);
        assert_int_equal(fake.calls, 2);
        assert_int_equal(stored_status(f, vm->id), VM_ACTIVE);
        assert_int_equal(vm->status, VM_ACTIVE);
        assert_int_equal(tfu_audit_count(f, "vm.created"), 1);
        assert_int_equal(audit_verify(f->store, &(uint64_t){0}, (char[128]){0}, 128), 0);
}

/* The real dispatcher threads, with n1 wedged (its call answers only when its 5 s bound runs
 * out) and n2 healthy: n2's creation is delivered and recorded while n1's call is still in
 * flight. A dispatcher that batches calls and waits for the slowest would send n2's creation
 * only after n1's call returned. */
static struct {
        pthread_mutex_t mu;
        pthread_cond_t cv;
        struct fleetd *f;
        char vm_b[VM_ID_MAX + 1];
        bool n1_in_flight, n1_returned, n2_called;
        bool n2_called_while_n1_in_flight, b_active_while_n1_in_flight;
} wedge = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};

static bool wedge_b_active(void)
{
        struct fleet_vm *b;
        bool active;

        pthread_mutex_lock(&wedge.f->lock);
        b = vm_table_find(wedge.f, wedge.vm_b);
        active = b && b->status == VM_ACTIVE;
        pthread_mutex_unlock(&wedge.f->lock);
        return active;
}

static int wedge_call(void *ctx, const char *address, uint16_t port, const char *method,
                      const char *path, const char *body, uint64_t timeout_ms, long *ret_status,
                      char **ret_body)
{
        uint64_t bound = clock_monotonic_ms() + 5000;

        (void)ctx, (void)port, (void)method, (void)path, (void)body, (void)timeout_ms;
        if (strcmp(path, "/v1/roster") == 0) { /* the roster anti-entropy: held already */
                *ret_status = 409;
                *ret_body = NULL;
                return 0;
        }
        if (strcmp(address, "127.1.0.2") == 0) {
                pthread_mutex_lock(&wedge.mu);
                wedge.n2_called = true;
                wedge.n2_called_while_n1_in_flight = wedge.n1_in_flight && !wedge.n1_returned;
                pthread_cond_broadcast(&wedge.cv);
                pthread_mutex_unlock(&wedge.mu);
                *ret_status = 201;
                *ret_body = strdup("{\"state\":\"running\",\"lifecycle\":\"active\"}");
                return 0;
        }
        pthread_mutex_lock(&wedge.mu);
        wedge.n1_in_flight = true;
        pthread_cond_broadcast(&wedge.cv);
        pthread_mutex_unlock(&wedge.mu);
        /* wedged: no answer until the bound, unless n2's creation is recorded meanwhile */
        while (clock_monotonic_ms() < bound && !wedge_b_active())
                usleep(1000);
        pthread_mutex_lock(&wedge.mu);
        wedge.b_active_while_n1_in_flight = wedge_b_active();
        wedge.n1_returned = true;
        pthread_cond_broadcast(&wedge.cv);
        pthread_mutex_unlock(&wedge.mu);
        return -ETIMEDOUT;
}

static void test_wedged_node_delays_only_itself(void **state)
{
        struct tfu_fixture *fx = *state;
        struct fleetd *f = &fx->f;
        uint64_t now = clock_monotonic_ms();
        struct fleet_vm *a, *b;

        wedge.f = f;
        f->transport.call = wedge_call;
        n1_quiet(f, now);
        a = confirm_one(f, "acme");
        assert_string_equal(a->node_id, "n1");
        assert_int_equal(dispatch_start(f), 0);
        pthread_mutex_lock(&wedge.mu);
        while (!wedge.n1_in_flight)
                pthread_cond_wait(&wedge.cv, &wedge.mu);
        pthread_mutex_unlock(&wedge.mu);
        /* n1's call is in flight: now a creation for the healthy n2 */
        tfu_heartbeat(&f->table, 2, 1, 30000, 10, NULL, clock_monotonic_ms());
        pthread_mutex_lock(&f->lock);
        node_table_find(&f->table, "n2")->inv = INV_OK;
        memcpy(node_table_find(&f->table, "n2")->inv_digest,
               node_table_find(&f->table, "n2")->hb.inventory_digest, DIGEST_HEX_LEN + 1);
        pthread_mutex_unlock(&f->lock);
        b = confirm_one(f, "beta");
        assert_string_equal(b->node_id, "n2");
        snprintf(wedge.vm_b, sizeof(wedge.vm_b), "%s", b->id);
        pthread_mutex_lock(&wedge.mu);
        while (!wedge.n1_returned)
                pthread_cond_wait(&wedge.cv, &wedge.mu);
        pthread_mutex_unlock(&wedge.mu);
        dispatch_stop(f);
        assert_true(wedge.n2_called);
        assert_true(wedge.n2_called_while_n1_in_flight);
        assert_true(wedge.b_active_while_n1_in_flight);
        a = vm_table_find(f, a->id);
        assert_int_equal(a->status, VM_CREATING);
        assert_non_null(strstr(a->reason, "retrying"));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_retry_then_active, setup, tfu_teardown),
            cmocka_unit_test_setup_teardown(test_refused_fails_with_reason, setup, tfu_teardown),
            cmocka_unit_test_setup_teardown(test_gives_up_after_attempts, setup, tfu_teardown),
            cmocka_unit_test_setup_teardown(test_gave_up_but_created, setup, tfu_teardown),
            cmocka_unit_test_setup_teardown(test_figures_never_go_back, setup, tfu_teardown),
            cmocka_unit_test_setup_teardown(test_inventory_reconcile, setup, tfu_teardown),
            cmocka_unit_test_setup_teardown(test_inventory_hostile, setup, tfu_teardown),
            cmocka_unit_test_setup_teardown(test_lifecycle, setup, tfu_teardown),
            cmocka_unit_test_setup_teardown(test_verify_report_kept_apart_by_the_node, setup,
                                            tfu_teardown),
            cmocka_unit_test_setup_teardown(test_verify_forwarded_and_reported, setup,
                                            tfu_teardown),
            cmocka_unit_test_setup_teardown(test_verify_refusals, setup, tfu_teardown),
            cmocka_unit_test_setup_teardown(test_lifecycle_timeout_corrected_by_inventory, setup,
                                            tfu_teardown),
            cmocka_unit_test_setup_teardown(test_lifecycle_timeout_confirmed_by_inventory, setup,
                                            tfu_teardown),
            cmocka_unit_test_setup_teardown(test_inventory_overlapping_a_call_is_not_believed,
                                            setup, tfu_teardown),
            cmocka_unit_test_setup_teardown(test_start_failure_is_failed_with_reason, setup,
                                            tfu_teardown),
            cmocka_unit_test_setup_teardown(test_held_but_not_running_is_not_created, setup,
                                            tfu_teardown),
            cmocka_unit_test_setup_teardown(test_inventory_promotes_only_a_running_vm, setup,
                                            tfu_teardown),
            cmocka_unit_test_setup_teardown(test_outcome_and_audit_commit_together, setup,
                                            tfu_teardown),
            cmocka_unit_test_setup_teardown(test_roster_sent_once_to_each_alive_node, setup,
                                            tfu_teardown),
            cmocka_unit_test_setup_teardown(test_wedged_node_delays_only_itself, setup,
                                            tfu_teardown),
        };

        log_init("test", LOG_LEVEL_ERROR);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
