/* Long operations, as Incus's /1.0/operations and Proxmox's task ids: a confirmation (the VM's
 * creation on its node), a verb on a VM's node, a retirement, a deposit through the Diode and an
 * image push answer 202 with Location /v1/operations/{id}, and the operation says running,
 * succeeded or failed, with progress, the result (the VM, a receipt, the push) or the error (a
 * problem document). An image push's operation follows the push (images.c), as a creation's
 * follows its VM; a deposit runs on its own thread, as a verb call does. Operations are rows of the
 * store, so they outlive fleetd: a creation's operation follows the VM's dispatch state (the
 * dispatcher resumes it after a restart); a verb call cut short by a restart is settled at start
 * from what the store recorded (its lifecycle written means the node did it) or failed as
 * interrupted, the node's next inventory then telling fleetd what happened. Finished ones beyond
 * OPS_KEEP are pruned. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "fleetd/api.h"
#include "fleetd/store.h"

#define OPS_KEEP 10000

bool op_id_valid(const char *s)
{
        size_t n = strlen(s);

        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return n == OP_ID_LEN;
}

static void op_stamp(json_t *doc, const char *key_at, const char *key_ms, uint64_t ms)
{
        char when[40];

        clock_format_rfc3339(ms, when, sizeof(when));
        json_object_set_new(doc, key_at, json_string(when));
        json_object_set_new(doc, key_ms, json_integer((json_int_t)ms));
}

/* vm_id NULL: an image push, whose resources name the push (image) instead of a VM. */
static json_t *op_new(const char *id, const char *kind, const char *vm_id, const char *plan_id,
                      const char *actor, const char *image)
{
        char path[128];
        json_t *doc;
        uint64_t now = clock_realtime_ms();

        if (vm_id)
                snprintf(path, sizeof(path), "/v1/vms/%s", vm_id);
        else
                snprintf(path, sizeof(path), "/v1/images/%s/push", image);
        doc = json_pack("{s:s, s:s, s:s, s:i, s:o, s:o, s:s, s:n, s:n, s:{s:s}}", "id", id, "kind",
                        kind, "state", "running", "progress", 0, "vm_id",
                        vm_id ? json_string(vm_id) : json_null(), "plan_id",
                        plan_id ? json_string(plan_id) : json_null(), "actor", actor, "result",
                        "error", "resources", vm_id ? "vm" : "push", path);
        if (doc) {
                op_stamp(doc, "created_at", "created_ms", now);
                op_stamp(doc, "updated_at", "updated_ms", now);
        }
        return doc;
}

/* A problem document as the REST API writes it, with extra's fields (new reference). */
static json_t *op_problem(json_t *doc, json_t *extra)
{
        if (doc && extra)
                json_object_update(doc, extra);
        return doc;
}

/* Moves doc to state with progress, result and error (references stolen). */
static void op_set(json_t *doc, const char *state, int progress, json_t *result, json_t *error)
{
        json_object_set_new(doc, "state", json_string(state));
        json_object_set_new(doc, "progress", json_integer(progress));
        json_object_set_new(doc, "result", result ? result : json_null());
        json_object_set_new(doc, "error", error ? error : json_null());
        op_stamp(doc, "updated_at", "updated_ms", clock_realtime_ms());
}

static const char *op_str(json_t *doc, const char *key)
{
        const char *s = json_string_value(json_object_get(doc, key));

        return s ? s : "";
}

static int op_store(struct fleetd *f, json_t *doc)
{
        char *text = json_dumps(doc, JSON_COMPACT);
        int r = text ? store_op_update(f->store, op_str(doc, "id"), op_str(doc, "state"), text)
                     : -ENOMEM;

        free(text);
        return r;
}

/* Under f->lock: a running creation's operation from its VM's status; true when it moved. */
static bool op_follow_create(struct fleetd *f, json_t *doc)
{
        struct fleet_vm *vm = vm_table_find(f, op_str(doc, "vm_id"));
        char detail[REASON_MAX + 160];

        if (!vm) {
                op_set(doc, "failed", 100, NULL,
                       op_problem(api_problem_doc("unknown-vm", -ENOENT,
                                                  "the VM of this operation is not recorded"),
                                  NULL));
                return true;
        }
        if (vm->status == VM_CREATING) {
                int p = vm->attempts ? 50 : 10;

                if (json_integer_value(json_object_get(doc, "progress")) == p)
                        return false;
                json_object_set_new(doc, "progress", json_integer(p));
                return false; /* progress is shown, not stored */
        }
        if (vm->status == VM_ACTIVE) {
                op_set(doc, "succeeded", 100, vm_to_json(f, vm, clock_monotonic_ms()), NULL);
                return true;
        }
        snprintf(detail, sizeof(detail), "node '%s' did not create VM '%s': %s", vm->node_id,
                 vm->id, vm->reason);
        op_set(doc, "failed", 100, NULL,
               op_problem(api_problem_doc("creation-failed", -EIO, detail), NULL));
        return true;
}

/* A running image push's operation from the push (images.c); true when it ended. The push is
 * fleetd's memory only: gone, or a newer one of the name, means a restart cut this one short. */
static bool op_follow_push(struct fleetd *f, json_t *doc)
{
        const char *path =
            json_string_value(json_object_get(json_object_get(doc, "resources"), "push")) ?: "";
        char name[80] = "", detail[320];
        json_t *p, *n;
        uint64_t done = 0, total = 0;
        size_t i;

        sscanf(path, "/v1/images/%79[^/]/push", name);
        p = images_push_get(f, name);
        if (!p || strcmp(json_string_value(json_object_get(p, "started_at")) ?: "",
                         op_str(doc, "created_at")) > 0) { /* none, or a later push */
                json_decref(p);
                snprintf(detail, sizeof(detail),
                         "the push of image '%s' this operation followed is gone (fleetd "
                         "restarted, or a later push replaced it); push it again: fleetd keeps "
                         "the uploaded image and each node resumes where it stopped",
                         name);
                op_set(doc, "failed", 100, NULL,
                       op_problem(api_problem_doc("interrupted", -EINTR, detail), NULL));
                return true;
        }
        json_array_foreach(json_object_get(p, "nodes"), i, n)
        {
                done += (uint64_t)json_integer_value(json_object_get(n, "offset")) +
                        (uint64_t)json_integer_value(json_object_get(n, "bytes_sent"));
                total += (uint64_t)json_integer_value(json_object_get(n, "total"));
        }
        if (strcmp(op_str(p, "state"), "running") == 0) {
                json_object_set_new(doc, "progress",
                                    json_integer(total ? (json_int_t)(done * 99 / total) : 0));
                json_decref(p);
                return false;
        }
        if (strcmp(op_str(p, "state"), "done") == 0) {
                op_set(doc, "succeeded", 100, p, NULL);
                return true;
        }
        snprintf(detail, sizeof(detail), "image '%s' reached %lld of %zu nodes; see 'nodes'", name,
                 (long long)json_integer_value(json_object_get(p, "nodes_done")),
                 json_array_size(json_object_get(p, "nodes")));
        op_set(doc, "failed", 100, NULL,
               op_problem(api_problem_doc("push-failed", -EIO, detail),
                          json_pack("{s:O}", "nodes", json_object_get(p, "nodes"))));
        json_decref(p);
        return true;
}

/* Brings running creations and image pushes up to date (and stores what moved); without
 * f->lock. */
static void op_refresh(struct fleetd *f, json_t *doc)
{
        bool moved;

        if (strcmp(op_str(doc, "state"), "running") != 0)
                return;
        if (strcmp(op_str(doc, "kind"), "image-push") == 0)
                moved = op_follow_push(f, doc);
        else if (strcmp(op_str(doc, "kind"), "create") != 0)
                return;
        else {
                pthread_mutex_lock(&f->lock);
                moved = op_follow_create(f, doc);
                pthread_mutex_unlock(&f->lock);
        }
        if (moved && op_store(f, doc) < 0)
                log_error("cannot record the end of operation '%s'", op_str(doc, "id"));
}

static void op_answer(struct plan_outcome *o, json_t *doc)
{
        o->done = OUTCOME_ACCEPTED;
        o->body = doc;
}

/* Inserts doc (a new operation); 1, 0 when one of its id exists, or a negative errno. */
static int op_insert(struct fleetd *f, json_t *doc)
{
        char *text = json_dumps(doc, JSON_COMPACT);
        int r = text ? store_op_insert(
                           f->store, op_str(doc, "id"), "running",
                           (uint64_t)json_integer_value(json_object_get(doc, "created_ms")), text)
                     : -ENOMEM;

        free(text);
        if (r == 1)
                store_op_prune(f->store, OPS_KEEP);
        return r;
}

void ops_confirmed(struct fleetd *f, const char *plan_id, const char *vm_id, const char *actor,
                   struct plan_outcome *o)
{
        char id[OP_ID_LEN + 1], key[64], *text = NULL;
        uint8_t h[OP_ID_LEN / 2];
        json_t *doc;
        int r;

        memset(o, 0, sizeof(*o));
        snprintf(key, sizeof(key), "create\n%s", plan_id);
        crypto_generichash(h, sizeof(h), (const unsigned char *)key, strlen(key), NULL, 0);
        sodium_bin2hex(id, sizeof(id), h, sizeof(h));
        doc = op_new(id, "create", vm_id, plan_id, actor, NULL);
        r = doc ? op_insert(f, doc) : -ENOMEM;
        if (r == 0) { /* a repeated confirm: the operation its first one started */
                json_decref(doc);
                doc = store_op_get(f->store, id, &text) == 0 ? json_loads(text, 0, NULL) : NULL;
                free(text);
                r = doc ? 1 : -EIO;
        }
        if (r < 0) {
                json_decref(doc);
                outcome_fail(o, -EIO, "store-failed", "cannot record the operation");
                return;
        }
        op_refresh(f, doc);
        op_answer(o, doc);
}

struct op_call {
        struct fleetd *f;
        struct verb_call *call; /* a verb; or: */
        ops_task_fn run;        /* a task, with its argument */
        void *arg;
        json_t *doc;
        char actor[64];
};

void ops_task_progress(struct op_call *c, uint64_t done, uint64_t total)
{
        json_int_t p;

        if (!c || !total)
                return;
        p = done >= total ? 99 : (json_int_t)(done * 99 / total);
        json_object_set_new(
            c->doc, "bytes",
            json_pack("{s:I, s:I}", "done", (json_int_t)done, "total", (json_int_t)total));
        if (json_integer_value(json_object_get(c->doc, "progress")) == p)
                return;
        json_object_set_new(c->doc, "progress", json_integer(p));
        if (op_store(c->f, c->doc) < 0)
                log_warn("cannot record the progress of operation '%s'", op_str(c->doc, "id"));
}

static void op_call_run(struct op_call *c)
{
        struct plan_outcome vo;

        if (c->run)
                c->run(c->f, c->arg, c->actor, c, &vo);
        else
                dispatch_verb_finish(c->f, c->call, c->actor, &vo);
        if (vo.problem)
                op_set(c->doc, "failed", 100, NULL, op_problem(api_outcome_problem(&vo), vo.body));
        else
                op_set(c->doc, "succeeded", 100, vo.body ? vo.body : json_object(), NULL);
        if (vo.problem)
                json_decref(vo.body);
        if (op_store(c->f, c->doc) < 0)
                log_error("cannot record the end of operation '%s'", op_str(c->doc, "id"));
        json_decref(c->doc);
        free(c);
}

static void *op_call_thread(void *arg)
{
        struct op_call *c = arg;
        struct fleetd *f = c->f;

        op_call_run(c);
        pthread_mutex_lock(&f->lock);
        f->op_threads--;
        pthread_cond_broadcast(&f->wake);
        pthread_mutex_unlock(&f->lock);
        return NULL;
}

/* Runs c on its own thread (or, when none can be made, on this one). */
static void op_call_spawn(struct fleetd *f, struct op_call *c)
{
        pthread_attr_t a;
        pthread_t t;
        int r;

        pthread_mutex_lock(&f->lock);
        f->op_threads++;
        pthread_mutex_unlock(&f->lock);
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        r = pthread_create(&t, &a, op_call_thread, c);
        pthread_attr_destroy(&a);
        if (r != 0)
                op_call_thread(c);
}

/* A new operation's id and document, inserted; NULL when it cannot be recorded. */
static json_t *op_begin(struct fleetd *f, const char *kind, const char *vm_id, const char *actor,
                        const char *image)
{
        char id[OP_ID_LEN + 1];
        uint8_t raw[OP_ID_LEN / 2];
        json_t *doc;

        randombytes_buf(raw, sizeof(raw));
        sodium_bin2hex(id, sizeof(id), raw, sizeof(raw));
        doc = op_new(id, kind, vm_id, NULL, actor, image);
        if (doc && op_insert(f, doc) != 1) {
                json_decref(doc);
                doc = NULL;
        }
        return doc;
}

void ops_verb_start(struct fleetd *f, const char *vm_id, const char *verb, const char *actor,
                    const char *if_match, struct plan_outcome *o)
{
        struct op_call *c = calloc(1, sizeof(*c));
        json_t *doc;

        memset(o, 0, sizeof(*o));
        if (!c) {
                outcome_fail(o, -EAGAIN, "out-of-memory", "cannot start the operation now");
                return;
        }
        c->call = dispatch_verb_begin(f, vm_id, verb, if_match, o);
        if (!c->call) {
                free(c);
                return;
        }
        doc = op_begin(f, verb, vm_id, actor, NULL);
        if (!doc) {
                /* not recorded: run it here, and answer as before operations */
                dispatch_verb_finish(f, c->call, actor, o);
                free(c);
                return;
        }
        c->f = f;
        c->doc = doc; /* the thread's; the answer is a copy, written while the thread runs */
        snprintf(c->actor, sizeof(c->actor), "%s", actor);
        op_answer(o, json_deep_copy(doc));
        op_call_spawn(f, c);
}

void ops_task_start(struct fleetd *f, const char *kind, const char *vm_id, const char *actor,
                    ops_task_fn run, void *arg, struct plan_outcome *o)
{
        struct op_call *c = calloc(1, sizeof(*c));
        json_t *doc = c ? op_begin(f, kind, vm_id, actor, NULL) : NULL;

        memset(o, 0, sizeof(*o));
        if (!doc) {
                free(c);
                run(f, arg, actor, NULL, o); /* not recorded: run here, as before operations */
                return;
        }
        c->f = f;
        c->run = run;
        c->arg = arg;
        c->doc = doc; /* the thread's; the answer is a copy, written while the thread runs */
        snprintf(c->actor, sizeof(c->actor), "%s", actor);
        op_answer(o, json_deep_copy(doc));
        op_call_spawn(f, c);
}

void ops_finished(struct fleetd *f, const char *kind, const char *vm_id, const char *actor,
                  struct plan_outcome *o)
{
        json_t *doc = op_begin(f, kind, vm_id, actor, NULL);

        if (!doc)
                return; /* not recorded: o answers as before operations */
        op_set(doc, "succeeded", 100, o->body, NULL);
        o->body = NULL;
        if (op_store(f, doc) < 0)
                log_error("cannot record the end of operation '%s'", op_str(doc, "id"));
        o->etag[0] = '\0';
        op_answer(o, doc);
}

json_t *ops_image_push(struct fleetd *f, const char *name, const char *actor)
{
        json_t *doc = op_begin(f, "image-push", NULL, actor, name);

        if (doc)
                op_refresh(f, doc);
        return doc;
}

void ops_get(struct fleetd *f, const char *id, struct plan_outcome *o)
{
        char *text = NULL;
        json_t *doc;
        int r;

        memset(o, 0, sizeof(*o));
        r = store_op_get(f->store, id, &text);
        doc = r == 0 ? json_loads(text, 0, NULL) : NULL;
        free(text);
        if (!doc) {
                if (r == -ENOENT)
                        outcome_fail(o, -ENOENT, "unknown-operation", "no such operation");
                else
                        outcome_fail(o, -EIO, "store-failed", "the operation cannot be read");
                return;
        }
        op_refresh(f, doc);
        o->done = OUTCOME_OK;
        o->body = doc;
}

static int ops_list_one(void *ctx, const char *text)
{
        json_t *doc = json_loads(text, 0, NULL);

        return doc && json_array_append_new(ctx, doc) == 0 ? 0 : -ENOMEM;
}

void ops_list(struct fleetd *f, const char *after, const char *state, unsigned limit,
              struct plan_outcome *o)
{
        json_t *ops = json_array(), *doc, *last;
        size_t i;

        memset(o, 0, sizeof(*o));
        if (!ops || store_op_list(f->store, after, state, limit, ops_list_one, ops) < 0) {
                json_decref(ops);
                outcome_fail(o, -EIO, "store-failed", "the operations cannot be read");
                return;
        }
        json_array_foreach(ops, i, doc) op_refresh(f, doc);
        last = json_array_size(ops) == limit ? json_array_get(ops, limit - 1) : NULL;
        o->done = OUTCOME_OK;
        o->body = json_pack("{s:o, s:O}", "operations", ops, "next_after",
                            last ? json_object_get(last, "id") : json_null());
}

/* Under f->lock: a verb call a restart cut short, from what the store recorded. */
static void op_settle_verb(struct fleetd *f, json_t *doc)
{
        struct fleet_vm *vm = vm_table_find(f, op_str(doc, "vm_id"));
        enum vm_lifecycle to;
        char detail[256];

        if (vm && dispatch_verb_leads_to(op_str(doc, "kind"), &to) && vm->lifecycle == to) {
                op_set(doc, "succeeded", 100, vm_to_json(f, vm, clock_monotonic_ms()), NULL);
                return;
        }
        if (strcmp(op_str(doc, "kind"), "deposit") == 0)
                snprintf(detail, sizeof(detail),
                         "fleetd restarted while a deposit into VM '%s' was in flight; deposit "
                         "again with the same deposit_id: the agent seals a deposit id once",
                         op_str(doc, "vm_id"));
        else
                snprintf(detail, sizeof(detail),
                         "fleetd restarted while the %s of VM '%s' was in flight; the node's "
                         "next inventory shows whether it ran (GET /v1/vms/%s)",
                         op_str(doc, "kind"), op_str(doc, "vm_id"), op_str(doc, "vm_id"));
        op_set(doc, "failed", 100, NULL,
               op_problem(api_problem_doc("interrupted", -EINTR, detail), NULL));
}

void ops_recover(struct fleetd *f)
{
        json_t *ops = json_array(), *doc;
        unsigned settled = 0;
        size_t i;

        if (!ops || store_op_list(f->store, NULL, "running", OPS_KEEP, ops_list_one, ops) < 0) {
                log_error("cannot read the operations that were running");
                json_decref(ops);
                return;
        }
        json_array_foreach(ops, i, doc)
        {
                if (strcmp(op_str(doc, "kind"), "create") == 0 ||
                    strcmp(op_str(doc, "kind"), "image-push") == 0) {
                        op_refresh(f, doc);
                        continue;
                }
                pthread_mutex_lock(&f->lock);
                op_settle_verb(f, doc);
                pthread_mutex_unlock(&f->lock);
                settled++;
                if (op_store(f, doc) < 0)
                        log_error("cannot record the end of operation '%s'", op_str(doc, "id"));
                else
                        log_warn("operation '%s' (%s of VM '%s') was cut short by a restart: %s",
                                 op_str(doc, "id"), op_str(doc, "kind"), op_str(doc, "vm_id"),
                                 op_str(doc, "state"));
        }
        if (json_array_size(ops))
                log_info("%zu operations were running at the last stop; %u verb calls settled",
                         json_array_size(ops), settled);
        json_decref(ops);
}

void ops_wait_idle(struct fleetd *f)
{
        pthread_mutex_lock(&f->lock);
        while (f->op_threads)
                pthread_cond_wait(&f->wake, &f->lock);
        pthread_mutex_unlock(&f->lock);
}
