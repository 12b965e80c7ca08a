/* The dispatcher: delivers confirmed creations to the nodes' vmhost (POST /v1/vms, idempotent by
 * request_id, retried with exponential backoff until dispatch_attempts) and fetches inventories
 * whose digest changed. One thread finds the nodes with a call due and gives each its own worker
 * thread, which calls that node serially and applies each outcome as its call returns: a node that
 * does not answer holds up only itself. Calls to nodes never hold f->lock: jobs are copied out,
 * run, and their outcomes applied under the lock; an outcome is shown once it is recorded with
 * its audit entry. The VM verbs (suspend, resume, archive, verify) run on the request's own
 * thread, since the operator waits for their answer; a lifecycle call without a clear answer asks
 * for the node's inventory, which then decides. A resume is a start: it is refused when the node
 * has no room for the VM (the placement rule, reservations counted) and otherwise reserves the
 * VM's memory like a creation (docs/fleetd.md, "Reservations"). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "fleetd/store.h"

#define DISPATCH_BATCH   64     /* creations sent to one node in one round */
#define DISPATCH_WORKERS 64     /* nodes called at once; beyond that, due nodes wait their turn */
#define VERIFY_POLL_MS   120000 /* how long an awaited verification's node is polled */
#define ROSTER_AGAIN_MS  30000  /* a roster send that got no answer is tried again after this */

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
        char *s;

        if (o)
                json_object_set_new(o, "pin", pin_sign_vm(f, vm));
        s = o ? json_dumps(o, JSON_COMPACT) : NULL;

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

/* The end of the "detail" of a node's error answer, at most max - 1 bytes (QEMU says why last). */
static void dispatch_answer_tail(const char *answer, char *buf, size_t max)
{
        json_t *o = answer ? json_loads(answer, 0, NULL) : NULL;
        const char *d = json_string_value(json_object_get(o, "detail"));
        size_t n = d ? strlen(d) : 0;

        if (n < max)
                snprintf(buf, max, "%s", d ? d : "no detail");
        else
                snprintf(buf, max, "...%s", d + n - (max - 4));
        json_decref(o);
}

static size_t dispatch_collect_creations(struct fleetd *f, const struct fleet_node *node,
                                         uint64_t now, struct dispatch_job *jobs)
{
        size_t n = 0;

        for (size_t i = 0; i < f->n_vms && n < DISPATCH_BATCH; i++) {
                struct fleet_vm *vm = &f->vms[i];

                if (vm->status != VM_CREATING || vm->next_attempt_ms > now ||
                    strcmp(vm->node_id, node->rn->id) != 0)
                        continue;
                memset(&jobs[n], 0, sizeof(jobs[n]));
                snprintf(jobs[n].id, sizeof(jobs[n].id), "%s", vm->id);
                snprintf(jobs[n].address, sizeof(jobs[n].address), "%s", node->rn->mesh_address);
                jobs[n].body = dispatch_create_body(f, vm);
                vm->attempts++;
                f->metrics.dispatch_attempts++;
                n++;
        }
        return n;
}

/* Records the outcome with its audit entry first: what fleetd shows is what it has recorded. A
 * store that refuses leaves the VM creating, asked again after the backoff. */
static int dispatch_vm_outcome(struct fleetd *f, struct fleet_vm *vm, enum vm_status st,
                               const char *reason, const char *kind, uint64_t now)
{
        struct fleet_vm next = *vm;

        next.status = st;
        snprintf(next.reason, sizeof(next.reason), "%s", reason);
        if (store_vm_update_audited(f->store, &next, kind, "fleetd",
                                    json_pack("{s:s, s:s, s:I}", "node_id", vm->node_id, "reason",
                                              reason, "attempts", (json_int_t)vm->attempts)) < 0) {
                log_error("cannot record the outcome of VM '%s' ('%s'); asked again later", vm->id,
                          vm_status_name(st));
                vm->next_attempt_ms = now + dispatch_backoff(&f->cfg, vm->attempts);
                return -EIO;
        }
        vm->status = st;
        snprintf(vm->reason, sizeof(vm->reason), "%s", reason);
        if (st == VM_FAILED) {
                /* the caller decides about the reservation: the node may hold the VM */
                f->metrics.dispatch_failures++;
                log_warn("creation of VM '%s' on node '%s' failed: %s", vm->id, vm->node_id,
                         reason);
        } else {
                log_info("VM '%s' created on node '%s'", vm->id, vm->node_id);
        }
        return 0;
}

/* What a node's answer says: its problem type without the URI prefix, and the state and lifecycle
 * of the VM it describes ("" where it says nothing). */
struct node_reply {
        char type[48];
        char state[16];
        char lifecycle[16];
};

static void dispatch_reply_parse(const char *answer, struct node_reply *r)
{
        json_t *o = answer ? json_loads(answer, 0, NULL) : NULL;
        const char *t = json_string_value(json_object_get(o, "type"));
        const char *st = json_string_value(json_object_get(o, "state"));
        const char *lc = json_string_value(json_object_get(o, "lifecycle"));
        const char *slash = t ? strrchr(t, '/') : NULL;

        snprintf(r->type, sizeof(r->type), "%s", slash ? slash + 1 : t ? t : "");
        snprintf(r->state, sizeof(r->state), "%s", st ? st : "");
        snprintf(r->lifecycle, sizeof(r->lifecycle), "%s", lc ? lc : "");
        json_decref(o);
}

/* The node holds the VM: created when it runs, or when its lifecycle moved on since. A domain
 * that should run and does not (its start failed) is not a created VM, whatever the status. */
static void dispatch_apply_held(struct fleetd *f, struct fleet_vm *vm, const char *answer,
                                uint64_t now)
{
        struct node_reply rep;
        char reason[REASON_MAX];

        /* running or not, the domain is defined: figures at the node's counter count it */
        vm_acknowledged(f, vm, answer);
        dispatch_reply_parse(answer, &rep);
        if (rep.state[0])
                snprintf(vm->observed, sizeof(vm->observed), "%s", rep.state);
        if (rep.state[0] && strcmp(rep.state, "running") != 0 && strcmp(rep.state, "paused") != 0 &&
            (!rep.lifecycle[0] || strcmp(rep.lifecycle, "active") == 0)) {
                snprintf(reason, sizeof(reason),
                         "node '%s' holds VM '%s' but it is '%s', not running", vm->node_id, vm->id,
                         rep.state);
                dispatch_vm_outcome(f, vm, VM_FAILED, reason, "vm.failed", now);
                return;
        }
        dispatch_vm_outcome(f, vm, VM_ACTIVE, "", "vm.created", now);
}

static void dispatch_apply_creation(struct fleetd *f, struct dispatch_job *j, uint64_t now)
{
        struct fleet_vm *vm = vm_table_find(f, j->id);
        char reason[REASON_MAX], detail[240];
        struct node_reply rep;

        if (!vm || vm->status != VM_CREATING)
                return;
        if (j->err == 0 && (j->status == 200 || j->status == 201)) {
                dispatch_apply_held(f, vm, j->answer, now);
                return;
        }
        if (j->err == 0 && j->status >= 400 && j->status < 500 && j->status != 408 &&
            j->status != 429) {
                dispatch_answer_detail(j->answer, detail, sizeof(detail));
                snprintf(reason, sizeof(reason), "node '%s' refused the creation (%ld %.150s)",
                         vm->node_id, j->status, detail);
                if (dispatch_vm_outcome(f, vm, VM_FAILED, reason, "vm.failed", now) == 0)
                        vm_release(f, vm); /* refused: the node holds nothing for it */
                return;
        }
        dispatch_reply_parse(j->err ? NULL : j->answer, &rep);
        if (j->err == 0 && j->status >= 500 && strcmp(rep.type, "start") == 0) {
                /* the node defined it and QEMU would not start it: its word is the outcome */
                dispatch_answer_tail(j->answer, detail, 181);
                snprintf(reason, sizeof(reason), "node '%.40s' could not start the VM: %.180s",
                         vm->node_id, detail);
                /* the domain is defined: the node's figures count it until it says otherwise */
                if (dispatch_vm_outcome(f, vm, VM_FAILED, reason, "vm.failed", now) == 0)
                        vm_hold_until_listed(f, vm);
                return;
        }
        if (j->err)
                snprintf(reason, sizeof(reason), "node '%s' did not answer at '%s': %s",
                         vm->node_id, j->address, strerror(-j->err));
        else {
                dispatch_answer_detail(j->answer, detail, sizeof(detail));
                snprintf(reason, sizeof(reason), "node '%s' answered %ld (%.150s)", vm->node_id,
                         j->status, detail);
        }
        if (vm->attempts >= f->cfg.dispatch_attempts) {
                char final[REASON_MAX];

                snprintf(final, sizeof(final), "gave up after %u attempts; last: %.200s",
                         vm->attempts, reason);
                if (dispatch_vm_outcome(f, vm, VM_FAILED, final, "vm.failed", now) == 0)
                        vm_hold_until_listed(f, vm); /* the node may hold it all the same */
                return;
        }
        snprintf(vm->reason, sizeof(vm->reason), "retrying: %.230s", reason);
        vm->next_attempt_ms = now + dispatch_backoff(&f->cfg, vm->attempts);
        log_info("creation of VM '%s' not delivered (attempt %u): %s", vm->id, vm->attempts,
                 reason);
}

static bool dispatch_fetch_due(const struct fleetd *f, const struct fleet_node *node, uint64_t now)
{
        enum node_state s;

        if ((node->inv != INV_WANTED && node->inv != INV_FAILED) || node->inv_next_ms > now)
                return false;
        s = node_state_at(node, &f->cfg, now);
        return s != NODE_EVICTED && s != NODE_UNSEEN;
}

static size_t dispatch_collect_fetch(struct fleetd *f, struct fleet_node *node, uint64_t now,
                                     struct dispatch_job *j)
{
        if (!dispatch_fetch_due(f, node, now))
                return 0;
        memset(j, 0, sizeof(*j));
        snprintf(j->id, sizeof(j->id), "%s", node->rn->id);
        snprintf(j->address, sizeof(j->address), "%s", node->rn->mesh_address);
        node->inv_verb_mark = f->verb_events;
        node->inv_fetch_sent = ++node->inv_fetches;
        /* until it answers, do not ask again sooner than the backoff */
        node->inv_next_ms = now + dispatch_backoff(&f->cfg, node->inv_failures + 1);
        f->metrics.inventory_fetches++;
        return 1;
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
        if (strstr(err, "inventory version")) /* an upgrade two steps apart: the operator's */
                log_warn("inventory of node '%s' at '%s' refused: %s", j->id, j->address, err);
        else
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

/* Roster anti-entropy (issue 16). The genesis pushes each new roster to every member once; a
 * member that was switched off or unreachable then keeps its older roster for good, and its
 * vmhost refuses what the newer one allows (the controller's pin key, a new member). fleetd holds
 * the roster that names it the controller: to each alive node that was not sent (or found to
 * hold) the current version, it sends it once (POST /v1/roster; the node checks the genesis'
 * signature and takes only a newer one: 409 stale-roster says it holds this one or newer). No
 * answer: again after ROSTER_AGAIN_MS. */
static bool dispatch_roster_due(const struct fleetd *f, const struct fleet_node *node, uint64_t now)
{
        enum node_state s;

        if (!f->table.roster || node->roster_synced >= f->table.roster->version ||
            node->roster_next_ms > now)
                return false;
        s = node_state_at(node, &f->cfg, now);
        return s == NODE_ALIVE || s == NODE_UNHEALTHY;
}

/* With f->lock held: j aimed at node with the current roster as its body, or false. */
static bool dispatch_collect_roster(struct fleetd *f, struct fleet_node *node, uint64_t now,
                                    struct dispatch_job *j, uint64_t *ret_version)
{
        json_t *o;

        if (!dispatch_roster_due(f, node, now))
                return false;
        node->roster_next_ms = now + ROSTER_AGAIN_MS;
        o = roster_to_json(f->table.roster);
        memset(j, 0, sizeof(*j));
        j->body = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        json_decref(o);
        snprintf(j->id, sizeof(j->id), "%s", node->rn->id);
        snprintf(j->address, sizeof(j->address), "%s", node->rn->mesh_address);
        *ret_version = f->table.roster->version;
        return j->body != NULL;
}

static void dispatch_roster_round(struct fleetd *f, const char *node_id, uint64_t now)
{
        struct dispatch_job j;
        struct fleet_node *node;
        uint64_t version = 0;
        bool due;

        pthread_mutex_lock(&f->lock);
        node = f->stopping ? NULL : node_table_find(&f->table, node_id);
        due = node && dispatch_collect_roster(f, node, now, &j, &version);
        pthread_mutex_unlock(&f->lock);
        if (!due)
                return;
        dispatch_call(f, &j, "POST", "/v1/roster");
        if (j.err == 0 && j.status == 200)
                log_info("node '%s' held an older roster: sent it version %llu", node_id,
                         (unsigned long long)version);
        else if (j.err == 0 && j.status != 409)
                log_warn("node '%s' refused roster version %llu (%ld): %.200s", node_id,
                         (unsigned long long)version, j.status, j.answer ? j.answer : "");
        if (j.err == 0) { /* taken, held already, or refused for good: not sent again */
                pthread_mutex_lock(&f->lock);
                node = node_table_find(&f->table, node_id);
                if (node && node->roster_synced < version)
                        node->roster_synced = version;
                pthread_mutex_unlock(&f->lock);
        }
        dispatch_jobs_free(&j, 1);
}

/* A node reports only an agent's last report, and the next scheduled one may replace the one
 * asked for: while a verification is awaited, its node's inventory is fetched every backoff
 * interval rather than only when the digest changes. */
static void dispatch_poll_verifications(struct fleetd *f, uint64_t now)
{
        for (size_t i = 0; i < f->n_vms; i++) {
                struct fleet_vm *vm = &f->vms[i];
                struct fleet_node *node;

                if (!vm->verify_poll_until_ms)
                        continue;
                if (now > vm->verify_poll_until_ms) {
                        vm->verify_poll_until_ms = 0;
                        log_warn("VM '%s': no report for the verification '%s' within %d s", vm->id,
                                 vm->verify_request_id, VERIFY_POLL_MS / 1000);
                        continue;
                }
                node = node_table_find(&f->table, vm->node_id);
                if (node && node->inv == INV_OK)
                        node->inv = INV_WANTED;
        }
}

/* One node's share of a round: its due creations, then its inventory fetch if due, one call
 * after another, each outcome applied as soon as its call returns. Returns how many calls. */
static size_t dispatch_node_round(struct fleetd *f, const char *node_id, uint64_t now)
{
        struct dispatch_job *jobs = calloc(DISPATCH_BATCH, sizeof(*jobs)); /* 8 KiB */
        struct fleet_node *node;
        size_t n = 0, k = 0;

        if (!jobs)
                return 0; /* the next round tries again */
        pthread_mutex_lock(&f->lock);
        node = f->stopping ? NULL : node_table_find(&f->table, node_id);
        if (node)
                n = dispatch_collect_creations(f, node, now, jobs);
        pthread_mutex_unlock(&f->lock);
        for (size_t i = 0; i < n; i++) {
                dispatch_call(f, &jobs[i], "POST", "/v1/vms");
                pthread_mutex_lock(&f->lock);
                dispatch_apply_creation(f, &jobs[i], now);
                pthread_mutex_unlock(&f->lock);
        }
        dispatch_jobs_free(jobs, n);
        pthread_mutex_lock(&f->lock);
        node = f->stopping ? NULL : node_table_find(&f->table, node_id);
        if (node)
                k = dispatch_collect_fetch(f, node, now, jobs);
        pthread_mutex_unlock(&f->lock);
        if (k) {
                dispatch_call(f, jobs, "GET", "/v1/inventory");
                dispatch_apply_fetch(f, jobs, now);
                dispatch_jobs_free(jobs, 1);
        }
        free(jobs);
        dispatch_roster_round(f, node_id, now);
        return n + k;
}

/* With f->lock held: the ids (a malloc'd array, *ret_n of them) of the nodes with a call due and
 * no worker on them. */
static char (*dispatch_due_nodes(struct fleetd *f, uint64_t now, size_t *ret_n))[NODE_ID_MAX + 1]
{
        size_t nn = f->table.roster ? f->table.roster->n_nodes : 0, n = 0, k = 0;
        bool *due = calloc(nn + 1, sizeof(*due));
        char(*ids)[NODE_ID_MAX + 1] = NULL;

        for (size_t i = 0; due && i < f->n_vms; i++) {
                const struct fleet_vm *vm = &f->vms[i];
                struct fleet_node *node;

                if (vm->status != VM_CREATING || vm->next_attempt_ms > now)
                        continue;
                /* a VM whose node left the roster waits for it; it is not moved */
                node = node_table_find(&f->table, vm->node_id);
                if (node)
                        due[node - f->table.nodes] = true;
        }
        for (size_t i = 0; due && i < nn; i++) {
                due[i] = (due[i] || dispatch_fetch_due(f, &f->table.nodes[i], now) ||
                          dispatch_roster_due(f, &f->table.nodes[i], now)) &&
                         !f->table.nodes[i].dispatch_busy;
                n += due[i];
        }
        ids = due && n ? calloc(n, sizeof(*ids)) : NULL;
        for (size_t i = 0; ids && i < nn; i++)
                if (due[i])
                        snprintf(ids[k++], sizeof(ids[0]), "%s", f->table.nodes[i].rn->id);
        free(due);
        *ret_n = k;
        return ids;
}

void dispatch_run_once(struct fleetd *f, uint64_t now_ms)
{
        char(*ids)[NODE_ID_MAX + 1];
        size_t n = 0;

        pthread_mutex_lock(&f->lock);
        dispatch_poll_verifications(f, now_ms);
        ids = dispatch_due_nodes(f, now_ms, &n);
        pthread_mutex_unlock(&f->lock);
        for (size_t i = 0; i < n; i++)
                dispatch_node_round(f, ids[i], now_ms);
        free(ids);
}

/* A worker calls one node until it has nothing due, then leaves: a node that does not answer
 * holds only its own worker. */
struct dispatch_worker {
        struct fleetd *f;
        char node_id[NODE_ID_MAX + 1];
};

static void *dispatch_worker_main(void *arg)
{
        struct dispatch_worker *w = arg;
        struct fleetd *f = w->f;
        struct fleet_node *node;

        while (dispatch_node_round(f, w->node_id, clock_monotonic_ms()) > 0)
                ;
        pthread_mutex_lock(&f->lock);
        node = node_table_find(&f->table, w->node_id);
        if (node)
                node->dispatch_busy = false;
        f->dispatch_workers--;
        pthread_cond_broadcast(&f->wake);
        pthread_mutex_unlock(&f->lock);
        free(w);
        return NULL;
}

/* With f->lock held: a detached worker for each node with a call due and none on it yet. */
static void dispatch_spawn_workers(struct fleetd *f, uint64_t now)
{
        pthread_attr_t a;
        size_t n = 0;
        char(*ids)[NODE_ID_MAX + 1] = dispatch_due_nodes(f, now, &n);

        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&a, 512 * 1024);
        for (size_t i = 0; ids && i < n && f->dispatch_workers < DISPATCH_WORKERS; i++) {
                struct dispatch_worker *w = calloc(1, sizeof(*w));
                struct fleet_node *node = node_table_find(&f->table, ids[i]);
                pthread_t t;

                if (!w)
                        break;
                w->f = f;
                snprintf(w->node_id, sizeof(w->node_id), "%s", ids[i]);
                if (pthread_create(&t, &a, dispatch_worker_main, w) != 0) {
                        free(w);
                        log_warn("cannot start a dispatch worker for node '%s'", ids[i]);
                        break;
                }
                node->dispatch_busy = true;
                f->dispatch_workers++;
        }
        pthread_attr_destroy(&a);
        free(ids);
}

static void *dispatch_thread(void *arg)
{
        struct fleetd *f = arg;

        pthread_mutex_lock(&f->lock);
        while (!f->stopping) {
                struct timespec ts;
                uint64_t now = clock_monotonic_ms();

                dispatch_poll_verifications(f, now);
                dispatch_spawn_workers(f, now);
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

/* Waits for the workers too: each ends after the call it is in (at most the node timeout). */
void dispatch_stop(struct fleetd *f)
{
        if (!f->dispatcher_running)
                return;
        pthread_mutex_lock(&f->lock);
        f->stopping = true;
        pthread_cond_broadcast(&f->wake);
        pthread_mutex_unlock(&f->lock);
        pthread_join(f->dispatcher, NULL);
        pthread_mutex_lock(&f->lock);
        while (f->dispatch_workers > 0)
                pthread_cond_wait(&f->wake, &f->lock);
        pthread_mutex_unlock(&f->lock);
        f->dispatcher_running = false;
}

void dispatch_wake(struct fleetd *f)
{
        if (!f->dispatcher_running)
                return;
        pthread_mutex_lock(&f->lock);
        pthread_cond_broadcast(&f->wake);
        pthread_mutex_unlock(&f->lock);
}

/* The VM verbs: in which lifecycles they apply, where they lead, what the node answers when it
 * did it, and what is done with that answer. */
struct vm_verb;
typedef void (*vm_verb_apply)(struct fleetd *f, struct fleet_vm *vm, const struct vm_verb *v,
                              const struct dispatch_job *j, const char *actor,
                              struct plan_outcome *o);

struct vm_verb {
        const char *name;
        enum vm_lifecycle from_a, from_b, to;
        long success; /* the node's status when it did it */
        vm_verb_apply apply;
        bool starts; /* it starts the VM: room is checked and its memory reserved */
};

static void verb_apply_lifecycle(struct fleetd *f, struct fleet_vm *vm, const struct vm_verb *v,
                                 const struct dispatch_job *j, const char *actor,
                                 struct plan_outcome *o);
static void verb_apply_verify(struct fleetd *f, struct fleet_vm *vm, const struct vm_verb *v,
                              const struct dispatch_job *j, const char *actor,
                              struct plan_outcome *o);

static const struct vm_verb vm_verbs[] = {
    {"suspend", VM_LC_ACTIVE, VM_LC_ACTIVE, VM_LC_SUSPENDED, 200, verb_apply_lifecycle, false},
    {"resume", VM_LC_SUSPENDED, VM_LC_SUSPENDED, VM_LC_ACTIVE, 200, verb_apply_lifecycle, true},
    {"archive", VM_LC_ACTIVE, VM_LC_SUSPENDED, VM_LC_ARCHIVED, 200, verb_apply_lifecycle, false},
    {"verify", VM_LC_ACTIVE, VM_LC_ACTIVE, VM_LC_ACTIVE, 202, verb_apply_verify, false},
};
#define N_VM_VERBS (sizeof(vm_verbs) / sizeof(vm_verbs[0]))

static const struct vm_verb *verb_find(const char *name)
{
        for (size_t i = 0; i < N_VM_VERBS; i++)
                if (strcmp(vm_verbs[i].name, name) == 0)
                        return &vm_verbs[i];
        return NULL;
}

bool dispatch_verb_leads_to(const char *verb, enum vm_lifecycle *ret)
{
        const struct vm_verb *v = verb_find(verb);

        if (!v || v->apply != verb_apply_lifecycle)
                return false;
        *ret = v->to;
        return true;
}

bool dispatch_verb_known(const char *verb)
{
        return verb_find(verb) != NULL || strcmp(verb, "retire") == 0;
}

/* precondition-failed when the VM has moved past the revision the operator read; true when the verb
 * may run. */
static bool verb_precondition(const struct fleet_vm *vm, const char *if_match,
                              struct plan_outcome *o)
{
        char tag[FLEET_ETAG_SIZE], what[160];

        vm_etag(vm, tag);
        snprintf(what, sizeof(what), "VM '%s' (now '%s', '%s'%s)", vm->id,
                 vm_status_name(vm->status), vm_lifecycle_name(vm->lifecycle),
                 vm->verb_busy ? ", a call to its node in flight" : "");
        return etag_precondition(if_match, tag, what, o);
}

/* A start needs room as a placement would: what is available after the reservations (the VM's
 * own, if it has one, given back) minus its memory stays at or above the safety margin. */
static int verb_room_check(struct fleetd *f, const struct fleet_vm *vm, const struct fleet_node *n,
                           const struct vm_verb *v, struct plan_outcome *o)
{
        int64_t avail = node_available_mib(n) + (vm->reserved ? (int64_t)vm->memory_mib : 0);
        int64_t left = avail - (int64_t)vm->memory_mib;

        if (left >= (int64_t)f->cfg.safety_margin_mib)
                return 0;
        outcome_fail(o, -ENOSPC, "insufficient-memory",
                     "cannot %s VM '%s': node '%s' has %lld MiB available (%llu MiB committed, "
                     "%llu MiB reserved), the VM needs %llu MiB, which would leave %lld MiB, "
                     "below the safety margin of %llu MiB",
                     v->name, vm->id, vm->node_id, (long long)avail,
                     (unsigned long long)n->hb.mem_committed_mib,
                     (unsigned long long)n->reserved_mib, (unsigned long long)vm->memory_mib,
                     (long long)left, (unsigned long long)f->cfg.safety_margin_mib);
        o->body = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I}", "node_id", vm->node_id,
                            "available_mib", (json_int_t)avail, "committed_mib",
                            (json_int_t)n->hb.mem_committed_mib, "reserved_mib",
                            (json_int_t)n->reserved_mib, "needed_mib", (json_int_t)vm->memory_mib,
                            "safety_margin_mib", (json_int_t)f->cfg.safety_margin_mib);
        return -ENOSPC;
}

/* Checks the verb under f->lock; fills job and marks the VM busy on success (a start's memory
 * is reserved then, before the call, as a confirmation's is). */
static int verb_check(struct fleetd *f, const char *vm_id, const struct vm_verb *v,
                      const char *if_match, struct dispatch_job *job, struct plan_outcome *o)
{
        struct fleet_vm *vm = vm_table_find(f, vm_id);
        struct fleet_node *node;
        enum node_state ns;

        if (!vm) {
                outcome_fail(o, -ENOENT, "unknown-vm", "no VM '%.64s'", vm_id);
                return -ENOENT;
        }
        if (!verb_precondition(vm, if_match, o))
                return -EBUSY;
        node = node_table_find(&f->table, vm->node_id);
        ns = node ? node_state_at(node, &f->cfg, clock_monotonic_ms()) : NODE_UNSEEN;
        if (vm->status != VM_ACTIVE)
                outcome_fail(o, -EBUSY, "vm-not-active", "VM '%s' is '%s', not created yet", vm->id,
                             vm_status_name(vm->status));
        else if (vm->lifecycle != v->from_a && vm->lifecycle != v->from_b)
                outcome_fail(o, -EBUSY,
                             vm->lifecycle == VM_LC_ARCHIVED ? "archived" : "wrong-lifecycle",
                             "cannot %s VM '%s': it is '%s'", v->name, vm->id,
                             vm_lifecycle_name(vm->lifecycle));
        else if (vm->verb_busy)
                outcome_fail(o, -EBUSY, "vm-busy", "VM '%s' has a call to its node in flight",
                             vm->id);
        else if (!node || ns == NODE_EVICTED || ns == NODE_UNSEEN || ns == NODE_SUSPECT)
                outcome_fail(o, -EHOSTUNREACH, "node-unreachable",
                             "VM '%s' is pinned to node '%s', which is '%s'; it is not moved",
                             vm->id, vm->node_id,
                             node ? node_state_name(ns) : node_absent_name(&f->table, vm->node_id));
        else if (v->starts && verb_room_check(f, vm, node, v, o) < 0)
                return -ENOSPC;
        else {
                if (v->starts)
                        vm_reserve_start(f, vm);
                snprintf(job->id, sizeof(job->id), "%s", vm->id);
                snprintf(job->address, sizeof(job->address), "%s", node->rn->mesh_address);
                vm->verb_busy = true;
                vm->verb_mark = ++f->verb_events;
                return 0;
        }
        return -EBUSY;
}

/* A call that did not do the verb: the node's refusal (node-refused) with its reason; no answer
 * (node-timeout, or node-unavailable with the connection's errno), or a 5xx or an answer that
 * makes no sense (node-error). */
static void verb_failed(const struct fleet_vm *vm, const struct vm_verb *v,
                        const struct dispatch_job *j, struct plan_outcome *o)
{
        char detail[240];

        if (j->err == -ETIMEDOUT) {
                outcome_fail(o, -ETIMEDOUT, "node-timeout",
                             "node '%s' did not answer the %s of VM '%s' in time", vm->node_id,
                             v->name, vm->id);
        } else if (j->err) {
                outcome_fail(o, j->err, "node-unavailable", "node '%s' did not %s VM '%s': %s",
                             vm->node_id, v->name, vm->id, strerror(-j->err));
        } else if (j->status >= 400 && j->status < 500) {
                dispatch_answer_detail(j->answer, detail, sizeof(detail));
                outcome_fail(o, -EPERM, "node-refused", "node '%s' refused to %s VM '%s' (%ld %s)",
                             vm->node_id, v->name, vm->id, j->status, detail);
        } else {
                dispatch_answer_detail(j->answer, detail, sizeof(detail));
                outcome_fail(o, -EPROTO, "node-error",
                             "node '%s' answered the %s of VM '%s' with %ld (%s)", vm->node_id,
                             v->name, vm->id, j->status, detail);
        }
}

/* The node may or may not have done it: its next inventory decides (fetched at once). */
static void verb_lifecycle_unsure(struct fleetd *f, struct fleet_vm *vm, const struct vm_verb *v,
                                  const struct plan_outcome *o)
{
        struct fleet_node *node = node_table_find(&f->table, vm->node_id);

        snprintf(vm->lc_unsure, sizeof(vm->lc_unsure), "%s: %.200s", v->name, o->detail);
        if (node && node->inv != INV_WANTED) {
                node->inv = INV_WANTED;
                node->inv_next_ms = 0;
        }
        log_warn("VM '%s': %s; its node's next inventory decides its lifecycle", vm->id, o->detail);
}

static void verb_apply_lifecycle(struct fleetd *f, struct fleet_vm *vm, const struct vm_verb *v,
                                 const struct dispatch_job *j, const char *actor,
                                 struct plan_outcome *o)
{
        bool done = !j->err && j->status == v->success;

        if (v->starts)
                vm_start_done(f, vm, done ? j->answer : NULL);
        if (!done) {
                verb_failed(vm, v, j, o);
                verb_lifecycle_unsure(f, vm, v, o);
                return;
        }
        vm->lifecycle = v->to;
        vm->lc_unsure[0] = '\0';
        if (store_vm_update_audited(f->store, vm, "vm.lifecycle", actor,
                                    json_pack("{s:s, s:s, s:s}", "verb", v->name, "node_id",
                                              vm->node_id, "lifecycle",
                                              vm_lifecycle_name(vm->lifecycle))) < 0)
                log_error("cannot record the lifecycle of VM '%s'", vm->id);
        log_info("VM '%s' is now '%s' (by '%s')", vm->id, vm_lifecycle_name(vm->lifecycle), actor);
        o->done = OUTCOME_OK;
        o->body = vm_to_json(f, vm, clock_monotonic_ms());
}

/* The node's request id (common/ident.h), else the answer makes no sense. */
static const char *verb_request_id(const char *answer, json_t **ret_o)
{
        json_t *o = answer ? json_loads(answer, JSON_REJECT_DUPLICATES, NULL) : NULL;
        const char *rid = json_string_value(json_object_get(o, "request_id"));

        *ret_o = o;
        return ident_valid(IDENT_REQUEST, rid) ? rid : NULL;
}

static void verb_apply_verify(struct fleetd *f, struct fleet_vm *vm, const struct vm_verb *v,
                              const struct dispatch_job *j, const char *actor,
                              struct plan_outcome *o)
{
        json_t *answer = NULL;
        const char *rid = NULL;

        f->metrics.verify_requests++;
        if (!j->err && j->status == v->success)
                rid = verb_request_id(j->answer, &answer);
        if (!rid) {
                if (!j->err && j->status == v->success)
                        outcome_fail(o, -EPROTO, "node-error",
                                     "node '%s' accepted the verification of VM '%s' but gave no "
                                     "valid request id",
                                     vm->node_id, vm->id);
                else
                        verb_failed(vm, v, j, o);
                f->metrics.verify_failures++;
                audit_append(f->store, false, "vm.verify", vm->id, actor,
                             json_pack("{s:s, s:s, s:I, s:s}", "node_id", vm->node_id, "outcome",
                                       o->problem, "status", (json_int_t)api_outcome_status(o),
                                       "detail", o->detail));
                log_warn("verification of VM '%s' not requested (by '%s'): %s", vm->id, actor,
                         o->detail);
                json_decref(answer);
                return;
        }
        snprintf(vm->verify_request_id, sizeof(vm->verify_request_id), "%s", rid);
        snprintf(vm->verify_actor, sizeof(vm->verify_actor), "%s", actor);
        vm->verify_requested_ms = clock_realtime_ms();
        vm->verify_poll_until_ms = clock_monotonic_ms() + VERIFY_POLL_MS;
        audit_append(f->store, false, "vm.verify", vm->id, actor,
                     json_pack("{s:s, s:s, s:s}", "node_id", vm->node_id, "outcome", "requested",
                               "request_id", rid));
        log_info("verification of VM '%s' requested on node '%s' ('%s', by '%s')", vm->id,
                 vm->node_id, rid, actor);
        o->done = OUTCOME_ACCEPTED;
        o->body = json_pack("{s:s, s:s, s:s, s:o}", "vm_id", vm->id, "node_id", vm->node_id,
                            "request_id", rid, "vm", vm_to_json(f, vm, clock_monotonic_ms()));
        json_decref(answer);
}

/* Retire: fleetd's own verb, under f->lock; no node is called and nothing is deleted. Only a
 * failed VM: one that exists, or may, on its node is suspended or archived there instead. */
static void verb_retire(struct fleetd *f, const char *vm_id, const char *actor,
                        const char *if_match, struct plan_outcome *o)
{
        struct fleet_vm *vm = vm_table_find(f, vm_id);

        if (!vm) {
                outcome_fail(o, -ENOENT, "unknown-vm", "no VM '%.64s'", vm_id);
                return;
        }
        if (!verb_precondition(vm, if_match, o))
                return;
        if (vm->lifecycle == VM_LC_RETIRED) {
                o->done = OUTCOME_OK; /* idempotent */
        } else if (vm->status != VM_FAILED) {
                outcome_fail(o, -EBUSY, "vm-not-failed",
                             "cannot retire VM '%s': it is '%s' ('%s'); only a failed VM is "
                             "retired (archive keeps an active one with its disks)",
                             vm->id, vm_status_name(vm->status), vm_lifecycle_name(vm->lifecycle));
                return;
        } else {
                vm->lifecycle = VM_LC_RETIRED;
                if (store_vm_update_audited(f->store, vm, "vm.retired", actor,
                                            json_pack("{s:s, s:s}", "node_id", vm->node_id,
                                                      "reason", vm->reason)) < 0) {
                        vm->lifecycle = VM_LC_ACTIVE;
                        outcome_fail(o, -EIO, "store-failed",
                                     "cannot record the retirement of VM "
                                     "'%s'",
                                     vm->id);
                        return;
                }
                log_info("VM '%s' (failed: %s) retired by '%s'; its record stays", vm->id,
                         vm->reason, actor);
                o->done = OUTCOME_OK;
        }
        o->body = vm_to_json(f, vm, clock_monotonic_ms());
        vm_etag(vm, o->etag);
}

void dispatch_vm_verb(struct fleetd *f, const char *vm_id, const char *verb, const char *actor,
                      struct plan_outcome *o)
{
        dispatch_vm_verb_if(f, vm_id, verb, actor, NULL, o);
}

void dispatch_vm_verb_if(struct fleetd *f, const char *vm_id, const char *verb, const char *actor,
                         const char *if_match, struct plan_outcome *o)
{
        struct verb_call *call;

        if (strcmp(verb, "retire") == 0) {
                memset(o, 0, sizeof(*o));
                pthread_mutex_lock(&f->lock);
                verb_retire(f, vm_id, actor, if_match, o);
                pthread_mutex_unlock(&f->lock);
                return;
        }
        call = dispatch_verb_begin(f, vm_id, verb, if_match, o);
        if (call)
                dispatch_verb_finish(f, call, actor, o);
}

struct verb_call {
        const struct vm_verb *v;
        struct dispatch_job job;
};

struct verb_call *dispatch_verb_begin(struct fleetd *f, const char *vm_id, const char *verb,
                                      const char *if_match, struct plan_outcome *o)
{
        const struct vm_verb *v = verb_find(verb);
        struct verb_call *call;

        memset(o, 0, sizeof(*o));
        if (!v) {
                outcome_fail(o, -ENOENT, "unknown-verb", "no verb '%.32s'", verb);
                return NULL;
        }
        call = calloc(1, sizeof(*call));
        if (!call) {
                outcome_fail(o, -EAGAIN, "out-of-memory", "cannot start the %s now", verb);
                return NULL;
        }
        call->v = v;
        pthread_mutex_lock(&f->lock);
        if (verb_check(f, vm_id, v, if_match, &call->job, o) < 0) {
                pthread_mutex_unlock(&f->lock);
                free(call);
                return NULL;
        }
        pthread_mutex_unlock(&f->lock);
        return call;
}

void dispatch_verb_finish(struct fleetd *f, struct verb_call *call, const char *actor,
                          struct plan_outcome *o)
{
        const struct vm_verb *v = call->v;
        struct fleet_vm *vm;
        char path[128];

        memset(o, 0, sizeof(*o));
        snprintf(path, sizeof(path), "/v1/vms/%s/%s", call->job.id, v->name);
        call->job.body = strdup("{}");
        dispatch_call(f, &call->job, "POST", path);
        pthread_mutex_lock(&f->lock);
        vm = vm_table_find(f, call->job.id); /* the table may have moved, never shrunk */
        vm->verb_busy = false;
        vm->verb_mark = ++f->verb_events;
        v->apply(f, vm, v, &call->job, actor, o);
        vm_etag(vm, o->etag);
        pthread_mutex_unlock(&f->lock);
        dispatch_jobs_free(&call->job, 1);
        free(call);
}
