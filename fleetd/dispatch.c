/* The dispatcher: one thread that delivers confirmed creations to the nodes' vmhost (POST
 * /v1/vms, idempotent by request_id, retried with exponential backoff until dispatch_attempts)
 * and fetches inventories whose digest changed. Calls to nodes never hold f->lock: jobs are
 * copied out, run, and their outcomes applied under the lock. Lifecycle verbs run on the
 * request's own thread, since the operator waits for their answer. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "fleetd/store.h"

#define DISPATCH_BATCH 64

struct dispatch_job {
        char id[VM_ID_MAX + 1]; /* VM id, or node id for an inventory fetch */
        char address[INET_ADDRSTRLEN];
        char *body;
        long status;
        char *answer;
        int err;
};

static uint64_t dispatch_backoff(const struct fleetd_config *cfg, unsigned attempts)
{
        uint64_t d = cfg->dispatch_backoff_ms;

        for (unsigned i = 1; i < attempts && d < cfg->dispatch_backoff_max_ms; i++)
                d *= 2;
        return d < cfg->dispatch_backoff_max_ms ? d : cfg->dispatch_backoff_max_ms;
}

static char *dispatch_create_body(const struct fleetd *f, const struct fleet_vm *vm)
{
        json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:I, s:s}", "request_id",
                              vm->request_id, "vm_id", vm->id, "entity", vm->entity, "memory_mib",
                              (json_int_t)vm->memory_mib, "vcpus", (json_int_t)vm->vcpus, "image",
                              vm->image, "vault_disk_mib", (json_int_t)vm->vault_disk_mib,
                              "fleet_id", f->table.roster ? f->table.roster->fleet_id : "");
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;

        json_decref(o);
        return s;
}

/* Reads "detail" (or the raw text) of a node's error answer into buf. */
static void dispatch_answer_detail(const char *answer, char *buf, size_t size)
{
        json_t *o = answer ? json_loads(answer, 0, NULL) : NULL;
        const char *d = json_string_value(json_object_get(o, "detail"));
        const char *t = json_string_value(json_object_get(o, "type"));

        if (d)
                snprintf(buf, size, "%.80s%s%.160s", t ? t : "", t ? ": " : "", d);
        else
                snprintf(buf, size, "%.160s", answer ? answer : "no body");
        json_decref(o);
}

static size_t dispatch_collect_creations(struct fleetd *f, uint64_t now, struct dispatch_job *jobs)
{
        size_t n = 0;

        for (size_t i = 0; i < f->n_vms && n < DISPATCH_BATCH; i++) {
                struct fleet_vm *vm = &f->vms[i];
                struct fleet_node *node;

                if (vm->status != VM_CREATING || vm->next_attempt_ms > now)
                        continue;
                node = node_table_find(&f->table, vm->node_id);
                memset(&jobs[n], 0, sizeof(jobs[n]));
                snprintf(jobs[n].id, sizeof(jobs[n].id), "%s", vm->id);
                snprintf(jobs[n].address, sizeof(jobs[n].address), "%s",
                         node ? node->rn->mesh_address : "");
                jobs[n].body = dispatch_create_body(f, vm);
                vm->attempts++;
                f->metrics.dispatch_attempts++;
                n++;
        }
        return n;
}

static void dispatch_vm_outcome(struct fleetd *f, struct fleet_vm *vm, enum vm_status st,
                                const char *reason, const char *kind)
{
        vm->status = st;
        snprintf(vm->reason, sizeof(vm->reason), "%s", reason);
        if (st == VM_FAILED) {
                vm_release(f, vm);
                f->metrics.dispatch_failures++;
                log_warn("creation of VM '%s' on node '%s' failed: %s", vm->id, vm->node_id,
                         reason);
        } else {
                log_info("VM '%s' created on node '%s'", vm->id, vm->node_id);
        }
        if (store_vm_update(f->store, vm) < 0)
                log_error("cannot record the outcome of VM '%s'", vm->id);
        audit_append(f->store, false, kind, vm->id, "fleetd",
                     json_pack("{s:s, s:s, s:I}", "node_id", vm->node_id, "reason", reason,
                               "attempts", (json_int_t)vm->attempts));
}

static void dispatch_apply_creation(struct fleetd *f, struct dispatch_job *j, uint64_t now)
{
        struct fleet_vm *vm = vm_table_find(f, j->id);
        char reason[REASON_MAX], detail[240];

        if (!vm || vm->status != VM_CREATING)
                return;
        if (j->err == 0 && (j->status == 200 || j->status == 201)) {
                dispatch_vm_outcome(f, vm, VM_ACTIVE, "", "vm.created");
                return;
        }
        if (j->err == 0 && j->status >= 400 && j->status < 500 && j->status != 408 &&
            j->status != 429) {
                dispatch_answer_detail(j->answer, detail, sizeof(detail));
                snprintf(reason, sizeof(reason), "node '%s' refused the creation (%ld %.150s)",
                         vm->node_id, j->status, detail);
                dispatch_vm_outcome(f, vm, VM_FAILED, reason, "vm.failed");
                return;
        }
        if (j->err)
                snprintf(reason, sizeof(reason), "node '%s' did not answer at '%s': %s",
                         vm->node_id, j->address, strerror(-j->err));
        else
                snprintf(reason, sizeof(reason), "node '%s' answered %ld", vm->node_id, j->status);
        if (vm->attempts >= f->cfg.dispatch_attempts) {
                char final[REASON_MAX];

                snprintf(final, sizeof(final), "gave up after %u attempts; last: %.200s",
                         vm->attempts, reason);
                dispatch_vm_outcome(f, vm, VM_FAILED, final, "vm.failed");
                return;
        }
        snprintf(vm->reason, sizeof(vm->reason), "retrying: %.230s", reason);
        vm->next_attempt_ms = now + dispatch_backoff(&f->cfg, vm->attempts);
        log_info("creation of VM '%s' not delivered (attempt %u): %s", vm->id, vm->attempts,
                 reason);
}

static size_t dispatch_collect_fetches(struct fleetd *f, uint64_t now, struct dispatch_job *jobs)
{
        size_t n = 0;

        for (size_t i = 0; f->table.roster && i < f->table.roster->n_nodes && n < DISPATCH_BATCH;
             i++) {
                struct fleet_node *node = &f->table.nodes[i];
                enum node_state s;

                if ((node->inv != INV_WANTED && node->inv != INV_FAILED) || node->inv_next_ms > now)
                        continue;
                s = node_state_at(node, &f->cfg, now);
                if (s == NODE_EVICTED || s == NODE_UNSEEN)
                        continue;
                memset(&jobs[n], 0, sizeof(jobs[n]));
                snprintf(jobs[n].id, sizeof(jobs[n].id), "%s", node->rn->id);
                snprintf(jobs[n].address, sizeof(jobs[n].address), "%s", node->rn->mesh_address);
                /* until it answers, do not ask again sooner than the backoff */
                node->inv_next_ms = now + dispatch_backoff(&f->cfg, node->inv_failures + 1);
                f->metrics.inventory_fetches++;
                n++;
        }
        return n;
}

static void dispatch_apply_fetch(struct fleetd *f, struct dispatch_job *j, uint64_t now)
{
        char err[256] = "";
        struct fleet_node *node;
        int r = -EIO;

        if (j->err == 0 && j->status == 200 && j->answer)
                r = inventory_apply(f, j->id, NULL, j->answer, strlen(j->answer), err, sizeof(err));
        else if (j->err)
                snprintf(err, sizeof(err), "%s", strerror(-j->err));
        else
                snprintf(err, sizeof(err), "answered %ld", j->status);
        if (r == 0)
                return;
        pthread_mutex_lock(&f->lock);
        node = node_table_find(&f->table, j->id);
        f->metrics.inventory_failures++;
        if (node) {
                node->inv = INV_FAILED;
                node->inv_failures++;
                node->inv_next_ms = now + dispatch_backoff(&f->cfg, node->inv_failures);
        }
        pthread_mutex_unlock(&f->lock);
        log_debug("inventory of node '%s' at '%s' not fetched: %s", j->id, j->address, err);
}

static void dispatch_call(struct fleetd *f, struct dispatch_job *j, const char *method,
                          const char *path)
{
        if (!j->address[0]) {
                j->err = -EHOSTUNREACH;
                return;
        }
        j->err =
            f->transport.call(f->transport.ctx, j->address, (uint16_t)f->cfg.node_api_port, method,
                              path, j->body, f->cfg.node_api_timeout_ms, &j->status, &j->answer);
}

static void dispatch_jobs_free(struct dispatch_job *jobs, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                free(jobs[i].body);
                free(jobs[i].answer);
        }
}

void dispatch_run_once(struct fleetd *f, uint64_t now_ms)
{
        static __thread struct dispatch_job jobs[DISPATCH_BATCH];
        size_t n;

        pthread_mutex_lock(&f->lock);
        n = dispatch_collect_creations(f, now_ms, jobs);
        pthread_mutex_unlock(&f->lock);
        for (size_t i = 0; i < n; i++)
                dispatch_call(f, &jobs[i], "POST", "/v1/vms");
        pthread_mutex_lock(&f->lock);
        for (size_t i = 0; i < n; i++)
                dispatch_apply_creation(f, &jobs[i], now_ms);
        pthread_mutex_unlock(&f->lock);
        dispatch_jobs_free(jobs, n);

        pthread_mutex_lock(&f->lock);
        n = dispatch_collect_fetches(f, now_ms, jobs);
        pthread_mutex_unlock(&f->lock);
        for (size_t i = 0; i < n; i++) {
                dispatch_call(f, &jobs[i], "GET", "/v1/inventory");
                dispatch_apply_fetch(f, &jobs[i], now_ms);
        }
        dispatch_jobs_free(jobs, n);
}

static void *dispatch_thread(void *arg)
{
        struct fleetd *f = arg;

        pthread_mutex_lock(&f->lock);
        while (!f->stopping) {
                struct timespec ts;

                pthread_mutex_unlock(&f->lock);
                dispatch_run_once(f, clock_monotonic_ms());
                pthread_mutex_lock(&f->lock);
                if (f->stopping)
                        break;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                ts.tv_nsec += 200 * 1000000L;
                if (ts.tv_nsec >= 1000000000L) {
                        ts.tv_sec++;
                        ts.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&f->wake, &f->lock, &ts);
        }
        pthread_mutex_unlock(&f->lock);
        return NULL;
}

int dispatch_start(struct fleetd *f)
{
        pthread_condattr_t a;

        pthread_condattr_init(&a);
        pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
        pthread_cond_init(&f->wake, &a);
        pthread_condattr_destroy(&a);
        if (pthread_create(&f->dispatcher, NULL, dispatch_thread, f) != 0)
                return -EAGAIN;
        f->dispatcher_running = true;
        return 0;
}

void dispatch_stop(struct fleetd *f)
{
        if (!f->dispatcher_running)
                return;
        pthread_mutex_lock(&f->lock);
        f->stopping = true;
        pthread_cond_signal(&f->wake);
        pthread_mutex_unlock(&f->lock);
        pthread_join(f->dispatcher, NULL);
        f->dispatcher_running = false;
}

void dispatch_wake(struct fleetd *f)
{
        if (!f->dispatcher_running)
                return;
        pthread_mutex_lock(&f->lock);
        pthread_cond_signal(&f->wake);
        pthread_mutex_unlock(&f->lock);
}

/* Lifecycle: which verbs apply in which lifecycle, and where they lead. */
static const struct {
        const char *verb;
        enum vm_lifecycle from_a, from_b, to;
} lifecycle_verbs[] = {
    {"suspend", VM_LC_ACTIVE, VM_LC_ACTIVE, VM_LC_SUSPENDED},
    {"resume", VM_LC_SUSPENDED, VM_LC_SUSPENDED, VM_LC_ACTIVE},
    {"archive", VM_LC_ACTIVE, VM_LC_SUSPENDED, VM_LC_ARCHIVED},
};

/* Checks the verb under f->lock; fills job on success. */
static int lifecycle_check(struct fleetd *f, const char *vm_id, unsigned verb,
                           struct dispatch_job *job, struct plan_outcome *o)
{
        struct fleet_vm *vm = vm_table_find(f, vm_id);
        struct fleet_node *node;
        enum node_state ns;

        o->status = 409;
        if (!vm) {
                o->status = 404;
                o->problem = "unknown-vm";
                snprintf(o->detail, sizeof(o->detail), "no VM '%.64s'", vm_id);
                return -ENOENT;
        }
        node = node_table_find(&f->table, vm->node_id);
        ns = node ? node_state_at(node, &f->cfg, clock_monotonic_ms()) : NODE_UNSEEN;
        if (vm->status != VM_ACTIVE) {
                o->problem = "vm-not-active";
                snprintf(o->detail, sizeof(o->detail), "VM '%s' is '%s', not created yet", vm->id,
                         vm_status_name(vm->status));
        } else if (vm->lifecycle != lifecycle_verbs[verb].from_a &&
                   vm->lifecycle != lifecycle_verbs[verb].from_b) {
                o->problem = vm->lifecycle == VM_LC_ARCHIVED ? "archived" : "wrong-lifecycle";
                snprintf(o->detail, sizeof(o->detail), "cannot %s VM '%s': it is '%s'",
                         lifecycle_verbs[verb].verb, vm->id, vm_lifecycle_name(vm->lifecycle));
        } else if (!node || ns == NODE_EVICTED || ns == NODE_UNSEEN || ns == NODE_SUSPECT) {
                o->problem = "node-unreachable";
                snprintf(o->detail, sizeof(o->detail),
                         "VM '%s' is pinned to node '%s', which is '%s'; it is not moved", vm->id,
                         vm->node_id, node ? node_state_name(ns) : "not in the roster");
        } else {
                snprintf(job->id, sizeof(job->id), "%s", vm->id);
                snprintf(job->address, sizeof(job->address), "%s", node->rn->mesh_address);
                return 0;
        }
        return -EBUSY;
}

static void lifecycle_apply(struct fleetd *f, const struct dispatch_job *j, unsigned verb,
                            const char *actor, struct plan_outcome *o)
{
        struct fleet_vm *vm = vm_table_find(f, j->id);
        char detail[240];

        if (!vm) {
                o->status = 404;
                o->problem = "unknown-vm";
                snprintf(o->detail, sizeof(o->detail), "no VM '%s'", j->id);
                return;
        }
        if (j->err == 0 && j->status == 200) {
                vm->lifecycle = lifecycle_verbs[verb].to;
                store_vm_update(f->store, vm);
                audit_append(f->store, false, "vm.lifecycle", vm->id, actor,
                             json_pack("{s:s, s:s, s:s}", "verb", lifecycle_verbs[verb].verb,
                                       "node_id", vm->node_id, "lifecycle",
                                       vm_lifecycle_name(vm->lifecycle)));
                log_info("VM '%s' is now '%s' (by '%s')", vm->id, vm_lifecycle_name(vm->lifecycle),
                         actor);
                o->status = 200;
                o->body = vm_to_json(f, vm, clock_monotonic_ms());
                return;
        }
        o->status = 409;
        if (j->err == 0 && j->status >= 400 && j->status < 500) {
                dispatch_answer_detail(j->answer, detail, sizeof(detail));
                o->problem = "node-refused";
                snprintf(o->detail, sizeof(o->detail), "node '%s' refused to %s VM '%s' (%ld %s)",
                         vm->node_id, lifecycle_verbs[verb].verb, vm->id, j->status, detail);
        } else {
                o->problem = "node-unavailable";
                snprintf(o->detail, sizeof(o->detail), "node '%s' did not %s VM '%s': %s",
                         vm->node_id, lifecycle_verbs[verb].verb, vm->id,
                         j->err ? strerror(-j->err) : "unexpected answer");
        }
}

void dispatch_lifecycle(struct fleetd *f, const char *vm_id, const char *verb, const char *actor,
                        struct plan_outcome *o)
{
        struct dispatch_job job = {{0}};
        char path[128];
        unsigned v = 0;

        memset(o, 0, sizeof(*o));
        while (v < 3 && strcmp(lifecycle_verbs[v].verb, verb) != 0)
                v++;
        if (v == 3) {
                o->status = 404;
                o->problem = "unknown-verb";
                snprintf(o->detail, sizeof(o->detail), "no verb '%.32s'", verb);
                return;
        }
        pthread_mutex_lock(&f->lock);
        if (lifecycle_check(f, vm_id, v, &job, o) < 0) {
                pthread_mutex_unlock(&f->lock);
                return;
        }
        pthread_mutex_unlock(&f->lock);
        snprintf(path, sizeof(path), "/v1/vms/%s/%s", job.id, verb);
        job.body = strdup("{}");
        dispatch_call(f, &job, "POST", path);
        pthread_mutex_lock(&f->lock);
        lifecycle_apply(f, &job, v, actor, o);
        pthread_mutex_unlock(&f->lock);
        dispatch_jobs_free(&job, 1);
}
