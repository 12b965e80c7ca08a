/* Operations left running by a crash, settled at start from what the store recorded: a verb
 * whose lifecycle was written had been answered by the node (succeeded, the VM as result); one
 * whose lifecycle was not is failed as interrupted; a creation follows its VM (running while it
 * is dispatched, succeeded when active, failed with the reason when given up); a deposit names
 * the retry that seals it once. Tasks (a deposit) end with their outcome, the node's problem as
 * the error; a call done at once (retire) is a succeeded operation; an image push fleetd no longer
 * holds is failed as interrupted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/log.h"
#include "test_fleetd_util.h"

static int setup(void **state)
{
        return tfu_setup(state, 2, NULL);
}

static void add_vm(struct fleetd *f, const char *id, enum vm_status st, enum vm_lifecycle lc)
{
        struct fleet_vm vm = {.status = st, .lifecycle = lc, .memory_mib = 256};

        snprintf(vm.id, sizeof(vm.id), "%s", id);
        snprintf(vm.entity, sizeof(vm.entity), "%s", id);
        snprintf(vm.node_id, sizeof(vm.node_id), "n1");
        snprintf(vm.reason, sizeof(vm.reason), "%s", st == VM_FAILED ? "image missing" : "");
        assert_non_null(vm_table_add(f, &vm));
}

/* A running operation as fleetd stores it, id made of c. */
static void add_op(struct fleetd *f, char c, const char *kind, const char *vm_id)
{
        char id[OP_ID_LEN + 1], *text;
        json_t *doc;

        memset(id, c, OP_ID_LEN);
        id[OP_ID_LEN] = '\0';
        doc = json_pack("{s:s, s:s, s:s, s:i, s:s, s:n, s:s, s:n, s:n, s:s, s:I, s:s, s:I}", "id",
                        id, "kind", kind, "state", "running", "progress", 0, "vm_id", vm_id,
                        "plan_id", "actor", "test", "result", "error", "created_at",
                        "2026-12-02T00:00:00.000Z", "created_ms", (json_int_t)1, "updated_at",
                        "2026-12-02T00:00:00.000Z", "updated_ms", (json_int_t)1);
        text = json_dumps(doc, JSON_COMPACT);
        assert_int_equal(store_op_insert(f->store, id, "running", 1, text), 1);
        assert_int_equal(store_op_insert(f->store, id, "running", 1, text), 0); /* once */
        free(text);
        json_decref(doc);
}

static json_t *get_op(struct fleetd *f, char c)
{
        char id[OP_ID_LEN + 1];
        struct plan_outcome o;

        memset(id, c, OP_ID_LEN);
        id[OP_ID_LEN] = '\0';
        ops_get(f, id, &o);
        assert_int_equal(api_outcome_status(&o), 200);
        return o.body;
}

static const char *str(json_t *o, const char *k)
{
        return json_string_value(json_object_get(o, k));
}

static void test_recover(void **state)
{
        struct tfu_fixture *fx = *state;
        struct fleetd *f = &fx->f;
        json_t *o;

        add_vm(f, "tbx-a-000001", VM_ACTIVE, VM_LC_SUSPENDED); /* suspend recorded */
        add_vm(f, "tbx-b-000002", VM_ACTIVE, VM_LC_SUSPENDED); /* resume not recorded */
        add_vm(f, "tbx-c-000003", VM_CREATING, VM_LC_ACTIVE);
        add_vm(f, "tbx-d-000004", VM_FAILED, VM_LC_ACTIVE);
        add_op(f, 'a', "suspend", "tbx-a-000001");
        add_op(f, 'b', "resume", "tbx-b-000002");
        add_op(f, 'c', "create", "tbx-c-000003");
        add_op(f, 'd', "create", "tbx-d-000004");
        add_op(f, 'e', "verify", "tbx-a-000001");
        ops_recover(f);

        o = get_op(f, 'a');
        assert_string_equal(str(o, "state"), "succeeded");
        assert_string_equal(str(json_object_get(o, "result"), "lifecycle"), "suspended");
        json_decref(o);
        o = get_op(f, 'b');
        assert_string_equal(str(o, "state"), "failed");
        assert_non_null(strstr(str(json_object_get(o, "error"), "type"), "/interrupted"));
        assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "error"), "status")),
                         503);
        json_decref(o);
        o = get_op(f, 'e'); /* a verification cut short is not known to have been asked */
        assert_string_equal(str(o, "state"), "failed");
        json_decref(o);
        o = get_op(f, 'c');
        assert_string_equal(str(o, "state"), "running");
        assert_int_equal(json_integer_value(json_object_get(o, "progress")), 10);
        json_decref(o);
        o = get_op(f, 'd');
        assert_string_equal(str(o, "state"), "failed");
        assert_non_null(strstr(str(json_object_get(o, "error"), "detail"), "image missing"));
        json_decref(o);

        /* the creation ends when its VM does, and the end is stored */
        vm_table_find(f, "tbx-c-000003")->status = VM_ACTIVE;
        o = get_op(f, 'c');
        assert_string_equal(str(o, "state"), "succeeded");
        json_decref(o);
        {
                struct plan_outcome l;

                ops_list(f, NULL, "running", 100, &l);
                assert_int_equal(api_outcome_status(&l), 200);
                assert_int_equal(json_array_size(json_object_get(l.body, "operations")), 0);
                json_decref(l.body);
                ops_list(f, NULL, NULL, 2, &l);
                assert_int_equal(json_array_size(json_object_get(l.body, "operations")), 2);
                assert_string_equal(str(l.body, "next_after"), "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
                json_decref(l.body);
        }
}

/* A deposit's task: its outcome is what records_deposit_run makes of the node's answer. */
static void task_sealed(struct fleetd *f, void *arg, const char *actor, struct op_call *op,
                        struct plan_outcome *o)
{
        (void)f;
        (void)actor;
        (void)op;
        memset(o, 0, sizeof(*o));
        o->done = OUTCOME_CREATED;
        o->body = json_pack("{s:s, s:i}", "vm", (const char *)arg, "seq", 7);
}

static void task_refused(struct fleetd *f, void *arg, const char *actor, struct op_call *op,
                         struct plan_outcome *o)
{
        (void)f;
        (void)actor;
        (void)arg;
        (void)op;
        memset(o, 0, sizeof(*o));
        outcome_fail(o, -EPROTO, "node-error", "record 999 to supersede is not in the ledger");
        o->node_status = 400; /* the node's refusal, relayed */
        o->body = json_pack("{s:s, s:s}", "type", "https://totebox.example/problems/bad-supersedes",
                            "detail", "record 999 to supersede is not in the ledger");
}

/* What GET /v1/operations showed of a running task after it told its progress (read by the
 * task's own thread; the test checks it after the task ended). */
static json_t *seen_running;

static void task_halfway(struct fleetd *f, void *arg, const char *actor, struct op_call *op,
                         struct plan_outcome *o)
{
        struct plan_outcome listed;

        (void)arg;
        (void)actor;
        ops_task_progress(op, 1, 0);       /* no total: nothing shown */
        ops_task_progress(op, 512, 1024);  /* 49 % */
        ops_task_progress(op, 4096, 1024); /* past the total: 99 % at most while running */
        ops_task_progress(op, 300 << 20, 1u << 30);
        ops_list(f, NULL, "running", 10, &listed);
        seen_running = json_incref(json_array_get(json_object_get(listed.body, "operations"), 0));
        json_decref(listed.body);
        memset(o, 0, sizeof(*o));
        o->done = OUTCOME_OK;
        o->body = json_object();
}

static json_t *ended(struct fleetd *f, const char *id)
{
        struct plan_outcome o;

        ops_wait_idle(f);
        ops_get(f, id, &o);
        assert_int_equal(api_outcome_status(&o), 200);
        return o.body;
}

static void test_tasks(void **state)
{
        struct tfu_fixture *fx = *state;
        struct fleetd *f = &fx->f;
        struct plan_outcome o;
        json_t *doc;

        /* a task's answer: 202 and the operation, running; it ends with the task's outcome */
        ops_task_start(f, "deposit", "tbx-a-000001", "token:t", task_sealed, "tbx-a-000001", &o);
        assert_int_equal(api_outcome_status(&o), 202);
        assert_string_equal(str(o.body, "kind"), "deposit");
        assert_string_equal(str(o.body, "state"), "running"); /* a copy: the thread's is its own */
        doc = ended(f, str(o.body, "id"));
        assert_string_equal(str(doc, "state"), "succeeded");
        assert_int_equal(json_integer_value(json_object_get(json_object_get(doc, "result"), "seq")),
                         7);
        json_decref(doc);
        json_decref(o.body);

        /* refused by the node: failed, the node's problem (type, detail, status) as the error */
        ops_task_start(f, "deposit", "tbx-a-000001", "token:t", task_refused, NULL, &o);
        doc = ended(f, str(o.body, "id"));
        assert_string_equal(str(doc, "state"), "failed");
        assert_string_equal(str(json_object_get(doc, "error"), "type"),
                            "https://totebox.example/problems/bad-supersedes");
        assert_int_equal(
            json_integer_value(json_object_get(json_object_get(doc, "error"), "status")), 400);
        assert_true(json_is_null(json_object_get(doc, "result")));
        json_decref(doc);
        json_decref(o.body);

        /* a task's progress (an export's bytes): shown while it runs, 100 when it ended */
        ops_task_start(f, "export", "tbx-a-000001", "token:t", task_halfway, NULL, &o);
        doc = ended(f, str(o.body, "id"));
        assert_non_null(seen_running);
        assert_string_equal(str(seen_running, "id"), str(o.body, "id"));
        assert_int_equal(json_integer_value(json_object_get(seen_running, "progress")), 29);
        assert_int_equal(
            json_integer_value(json_object_get(json_object_get(seen_running, "bytes"), "done")),
            300 << 20);
        assert_int_equal(
            json_integer_value(json_object_get(json_object_get(seen_running, "bytes"), "total")),
            1u << 30);
        assert_string_equal(str(doc, "state"), "succeeded");
        assert_int_equal(json_integer_value(json_object_get(doc, "progress")), 100);
        json_decref(seen_running);
        json_decref(doc);
        json_decref(o.body);

        /* done at once (retire): a succeeded operation, its result the body given */
        memset(&o, 0, sizeof(o));
        o.done = OUTCOME_OK;
        o.body = json_pack("{s:s}", "lifecycle", "retired");
        ops_finished(f, "retire", "tbx-d-000004", "token:t", &o);
        assert_int_equal(api_outcome_status(&o), 202);
        assert_string_equal(str(o.body, "state"), "succeeded");
        assert_string_equal(str(json_object_get(o.body, "result"), "lifecycle"), "retired");
        doc = ended(f, str(o.body, "id"));
        assert_string_equal(str(doc, "state"), "succeeded");
        json_decref(doc);
        json_decref(o.body);

        /* an image push fleetd no longer knows (a restart): failed as interrupted, no VM */
        doc = ops_image_push(f, "base", "token:t");
        assert_non_null(doc);
        assert_true(json_is_null(json_object_get(doc, "vm_id")));
        assert_string_equal(str(json_object_get(doc, "resources"), "push"), "/v1/images/base/push");
        assert_string_equal(str(doc, "state"), "failed");
        assert_non_null(strstr(str(json_object_get(doc, "error"), "type"), "/interrupted"));
        json_decref(doc);
}

/* A deposit cut short by a restart names the retry that seals it once. */
static void test_recover_deposit(void **state)
{
        struct tfu_fixture *fx = *state;
        struct fleetd *f = &fx->f;
        json_t *o;

        add_vm(f, "tbx-a-000001", VM_ACTIVE, VM_LC_ACTIVE);
        add_op(f, 'f', "deposit", "tbx-a-000001");
        ops_recover(f);
        o = get_op(f, 'f');
        assert_string_equal(str(o, "state"), "failed");
        assert_non_null(strstr(str(json_object_get(o, "error"), "detail"), "same deposit_id"));
        json_decref(o);
}

static void test_unknown(void **state)
{
        struct tfu_fixture *fx = *state;
        struct plan_outcome o;

        ops_get(&fx->f, "0123456789abcdef0123456789abcdef", &o);
        assert_int_equal(api_outcome_status(&o), 404);
        assert_false(op_id_valid("0123"));
        assert_false(op_id_valid("0123456789ABCDEF0123456789abcdef"));
        assert_true(op_id_valid("0123456789abcdef0123456789abcdef"));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_recover, setup, tfu_teardown),
            cmocka_unit_test_setup_teardown(test_tasks, setup, tfu_teardown),
            cmocka_unit_test_setup_teardown(test_recover_deposit, setup, tfu_teardown),
            cmocka_unit_test_setup_teardown(test_unknown, setup, tfu_teardown),
        };

        log_init("test", LOG_LEVEL_ERROR);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
