/* Plans and confirmations: the operator's placement verbs. A plan is a quote (it changes nothing
 * but its own row); a confirmation is the explicit action that creates a VM. Confirmations run
 * one at a time under f->lock and inside one SQLite transaction: the plan is re-checked against
 * the node's current figures and reservations, the VM row, the plan's new state and the audit
 * entry commit together, and only then is the memory reserved and the creation dispatched. So two
 * back-to-back confirms never oversubscribe a node, and kill -9 either loses the whole
 * confirmation (the client saw no answer and may repeat it) or keeps all of it. */
#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "fleetd/store.h"

/* precondition-failed when the plan has moved past the revision the operator read; true when it may
 * run. */
static bool plan_precondition(const struct plan_row *p, const char *if_match,
                              struct plan_outcome *o)
{
        char tag[FLEET_ETAG_SIZE], what[80];

        plan_etag(p, tag);
        snprintf(what, sizeof(what), "plan '%s' (now '%s')", p->id, p->state);
        return etag_precondition(if_match, tag, what, o);
}

/* True when p was confirmed from the open revision if_match names: a confirm repeated after a
 * lost answer, which is answered as done (RFC 9110 allows a 2xx for a change already applied). */
static bool plan_confirmed_from(const struct plan_row *p, const char *if_match)
{
        struct plan_row open = *p;
        char tag[FLEET_ETAG_SIZE];

        if (!if_match || strcmp(p->state, "confirmed") != 0)
                return false;
        snprintf(open.state, sizeof(open.state), "open");
        open.vm_id[0] = '\0';
        plan_etag(&open, tag);
        return etag_if_match(if_match, tag) && strcmp(if_match, "*") != 0;
}

/* A candidate with what its JSON needs, copied under f->lock so that the (large) answer is built
 * and stored without holding it: heartbeats keep flowing while a 10,000-node plan is written. */
struct plan_cand {
        struct plan_candidate c;
        bool seen;
        enum roster_role role;
        char id[NODE_ID_MAX + 1];
};

static bool cand_fits(enum cand_verdict v)
{
        return v == CAND_CHOSEN || v == CAND_FITS || v == CAND_FITS_ROLE;
}

static json_t *plan_candidate_json(const struct plan_cand *x)
{
        const struct plan_candidate *c = &x->c;

        return json_pack(
            "{s:s, s:o, s:s, s:s, s:I, s:I, s:o, s:b, s:s, s:s}", "node_id", x->id, "disk_free_mib",
            c->disk_known ? json_integer(c->disk_free_mib) : json_null(), "role",
            roster_role_name(x->role), "state", node_state_name(c->state), "available_mib",
            (json_int_t)c->available_mib, "left_after_mib", (json_int_t)c->left_mib,
            "heartbeat_age_ms",
            x->seen ? json_integer((json_int_t)c->heartbeat_age_ms) : json_null(), "chosen",
            c->verdict == CAND_CHOSEN, "verdict", cand_fits(c->verdict) ? "fits" : "refused",
            "reason", cand_verdict_reason(c->verdict));
}

/* Under f->lock: the figures behind node n's verdict c for memory_mib, as the quote of a target
 * node and a refused confirmation show them (new reference). */
static json_t *plan_node_figures(const struct fleetd *f, const struct fleet_node *n,
                                 const struct plan_candidate *c, const struct plan_request *req)
{
        uint64_t memory_mib = req->memory_mib;
        json_t *o = json_pack(
            "{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "node_id", n->rn->id, "role",
            roster_role_name(n->rn->role), "state", node_state_name(c->state), "verdict",
            cand_fits(c->verdict) ? "fits" : "does-not-fit", "reason",
            cand_verdict_reason(c->verdict), "available_mib", (json_int_t)c->available_mib,
            "committed_mib", (json_int_t)(n->seen ? n->hb.mem_committed_mib : 0), "reserved_mib",
            (json_int_t)n->reserved_mib, "needed_mib", (json_int_t)memory_mib, "margin_mib",
            (json_int_t)f->cfg.safety_margin_mib, "left_after_mib", (json_int_t)c->left_mib);

        if (o)
                json_object_update_new(
                    o, json_pack("{s:o, s:I, s:I, s:I, s:o}", "disk_free_mib",
                                 c->disk_known ? json_integer(c->disk_free_mib) : json_null(),
                                 "disk_reserved_mib", (json_int_t)n->reserved_disk_mib,
                                 "disk_needed_mib",
                                 (json_int_t)placement_disk_mib(&f->cfg, req->vault_disk_mib),
                                 "disk_margin_mib", (json_int_t)f->cfg.disk_margin_mib,
                                 "disk_left_after_mib",
                                 c->disk_known ? json_integer(c->disk_left_mib) : json_null()));
        return o;
}

static int plan_cand_cmp(const void *a, const void *b)
{
        const struct plan_cand *x = a, *y = b;

        if (x->c.verdict != y->c.verdict)
                return (int)x->c.verdict - (int)y->c.verdict;
        if (x->c.available_mib != y->c.available_mib)
                return x->c.available_mib > y->c.available_mib ? -1 : 1;
        return strcmp(x->id, y->id);
}

static json_t *plan_candidates_json(struct plan_cand *c, size_t n)
{
        json_t *a = json_array();

        qsort(c, n, sizeof(*c), plan_cand_cmp);
        for (size_t i = 0; i < n; i++)
                json_array_append_new(a, plan_candidate_json(&c[i]));
        return a;
}

static json_t *plan_request_json(const struct plan_request *r)
{
        json_t *o = json_pack("{s:s, s:I, s:I, s:s, s:I}", "entity", r->entity, "memory_mib",
                              (json_int_t)r->memory_mib, "vcpus", (json_int_t)r->vcpus, "image",
                              r->image, "vault_disk_mib", (json_int_t)r->vault_disk_mib);

        if (o && r->node[0])
                json_object_set_new(o, "node", json_string(r->node));
        return o;
}

static json_t *plan_body(struct fleetd *f, const struct plan_row *p, json_t *cands)
{
        char created[40], expires[40];

        clock_format_rfc3339(p->created_ms, created, sizeof(created));
        clock_format_rfc3339(p->expires_ms, expires, sizeof(expires));
        return json_pack("{s:s, s:s, s:o, s:s, s:I, s:s, s:s, s:I, s:o, s:n}", "id", p->id, "state",
                         "open", "request", plan_request_json(&p->req), "node_id", p->node_id,
                         "safety_margin_mib", (json_int_t)f->cfg.safety_margin_mib, "created_at",
                         created, "expires_at", expires, "expires_ms", (json_int_t)p->expires_ms,
                         "candidates", cands, "vm_id");
}

/* Under f->lock: the choice, and a copy of every candidate; returns the chosen index or -1
 * (-2 when out of memory). */
static long plans_choose(struct fleetd *f, const struct plan_request *req, struct plan_cand **ret,
                         size_t *ret_n, char chosen[NODE_ID_MAX + 1])
{
        size_t n = f->table.roster->n_nodes;
        struct plan_candidate *c = calloc(n ? n : 1, sizeof(*c));
        struct plan_cand *x = calloc(n ? n : 1, sizeof(*x));
        long best;

        if (!c || !x) {
                free(c);
                free(x);
                return -2;
        }
        best = placement_choose(&f->table, &f->cfg, req, clock_monotonic_ms(), c);
        for (size_t i = 0; i < n; i++) {
                x[i].c = c[i];
                x[i].seen = f->table.nodes[c[i].node].seen;
                x[i].role = f->table.roster->nodes[c[i].node].role;
                memcpy(x[i].id, f->table.roster->nodes[c[i].node].id, sizeof(x[i].id));
        }
        if (best >= 0)
                memcpy(chosen, f->table.roster->nodes[best].id, NODE_ID_MAX + 1);
        free(c);
        *ret = x;
        *ret_n = n;
        return best;
}

/* Without f->lock: writes the plan (or the refusal) and records it. */
/* The plan row and its audit entry, in one transaction. */
static int plans_insert(struct fleetd *f, const struct plan_row *p, const char *actor)
{
        int r = store_begin(f->store);

        if (r < 0)
                return r;
        r = store_plan_insert(f->store, p);
        r = r
                ?: audit_append(f->store, true, "plan.created", p->id, actor,
                                json_pack("{s:s, s:s, s:I, s:b}", "entity", p->req.entity,
                                          "node_id", p->node_id, "memory_mib",
                                          (json_int_t)p->req.memory_mib, "override",
                                          p->req.node[0] != '\0'));
        if (r < 0) {
                store_rollback(f->store);
                return r;
        }
        return store_commit(f->store);
}

/* target: the figures of the operator's target node (stolen), or NULL when the fleet chooses;
 * chosen: the fleet's own choice, or NULL; no_image: no node holds the plan's image. */
static void plans_quote(struct fleetd *f, const struct plan_request *req, const char *actor,
                        struct plan_cand *c, size_t n, const char *chosen, json_t *target,
                        bool no_image, struct plan_outcome *o)
{
        struct plan_row p = {.req = *req};
        uint8_t raw[PLAN_ID_LEN / 2];

        if (!chosen && !target && no_image) {
                outcome_fail(o, -ENOENT, "no-node-has-image",
                             "no node has image '%s' (fleetctl image push FILE --name %s)",
                             req->image, req->image);
                o->body = json_pack("{s:o}", "candidates", plan_candidates_json(c, n));
                return;
        }
        if (!chosen && !target) {
                outcome_fail(o, -ENOSPC, "no-node-fits",
                             "no node can hold %llu MiB with a safety margin of %llu MiB",
                             (unsigned long long)req->memory_mib,
                             (unsigned long long)f->cfg.safety_margin_mib);
                o->body = json_pack("{s:o}", "candidates", plan_candidates_json(c, n));
                return;
        }
        randombytes_buf(raw, sizeof(raw));
        sodium_bin2hex(p.id, sizeof(p.id), raw, sizeof(raw));
        snprintf(p.node_id, sizeof(p.node_id), "%s", target ? req->node : chosen);
        snprintf(p.state, sizeof(p.state), "open");
        p.created_ms = clock_realtime_ms();
        p.expires_ms = p.created_ms + f->cfg.plan_ttl_ms;
        o->body = plan_body(f, &p, plan_candidates_json(c, n));
        json_object_set_new(o->body, "fleet_choice", chosen ? json_string(chosen) : json_null());
        json_object_set_new(o->body, "target", target ? target : json_null());
        p.body = json_dumps(o->body, JSON_COMPACT);
        if (!p.body || plans_insert(f, &p, actor) < 0) {
                json_decref(o->body);
                o->body = NULL;
                outcome_fail(o, -EIO, "store-failed", "cannot record the plan");
        } else {
                o->done = OUTCOME_CREATED;
                /* a 10,000-node plan is 2 MB: keep old unconfirmed ones' rows, not their lists */
                store_plan_prune(f->store, p.created_ms - 24 * 3600 * 1000);
        }
        free(p.body);
}

/* Under f->lock: the target node's verdict among the candidates c (in node table order), or
 * NULL with unknown-node (a field naming no node: -EINVAL) in o when the roster has none. */
static json_t *plans_target(struct fleetd *f, const struct plan_request *req,
                            const struct plan_cand *c, struct plan_outcome *o)
{
        struct fleet_node *t = node_table_find(&f->table, req->node);

        if (!t) {
                outcome_fail(o, -EINVAL, "unknown-node",
                             "no node '%s' in the roster (version %llu)", req->node,
                             (unsigned long long)f->table.roster->version);
                return NULL;
        }
        return plan_node_figures(f, t, &c[t - f->table.nodes].c, req);
}

void plans_create(struct fleetd *f, const struct plan_request *req, const char *actor,
                  struct plan_outcome *o)
{
        char chosen[NODE_ID_MAX + 1] = "";
        struct plan_cand *c = NULL;
        json_t *target = NULL;
        struct fleet_vm *vm;
        bool no_image = false;
        long best = -1;
        size_t n = 0;

        memset(o, 0, sizeof(*o));
        pthread_mutex_lock(&f->lock);
        vm = vm_table_find_entity(f, req->entity);
        if (vm)
                outcome_fail(o, -EEXIST, "entity-has-vm",
                             "entity '%s' already has Totebox VM '%s' on node '%s'", req->entity,
                             vm->id, vm->node_id);
        else
                best = plans_choose(f, req, &c, &n, chosen);
        no_image = !vm && best < 0 && !fleet_image_anywhere(f, req->image);
        if (best >= -1 && !vm && req->node[0])
                target = plans_target(f, req, c, o);
        pthread_mutex_unlock(&f->lock);
        if (best == -2)
                outcome_fail(o, -ENOMEM, "out-of-memory", "cannot allocate the candidates");
        else if (!vm && !o->problem)
                plans_quote(f, req, actor, c, n, best >= 0 ? chosen : NULL, target, no_image, o);
        free(c);
        pthread_mutex_lock(&f->lock);
        if (o->done == OUTCOME_CREATED)
                f->metrics.plans_created++;
        else
                f->metrics.plans_rejected++;
        pthread_mutex_unlock(&f->lock);
}

/* Checks whether plan p can still be confirmed; with f->lock held and the transaction open. */
static bool plans_recheck(struct fleetd *f, const struct plan_row *p, struct plan_outcome *o)
{
        struct fleet_node *n = node_table_find(&f->table, p->node_id);
        struct plan_candidate c;
        struct fleet_vm *vm;

        if (strcmp(p->state, "dropped") == 0) {
                outcome_fail(o, -ECANCELED, "plan-dropped", "plan '%s' was dropped", p->id);
                return false;
        }
        if (clock_realtime_ms() > p->expires_ms) {
                outcome_fail(o, -ETIME, "plan-expired", "plan '%s' expired; ask for a new plan",
                             p->id);
                return false;
        }
        vm = vm_table_find_entity(f, p->req.entity);
        if (vm) {
                outcome_fail(o, -EEXIST, "entity-has-vm",
                             "entity '%s' already has Totebox VM '%s' on node '%s'", p->req.entity,
                             vm->id, vm->node_id);
                return false;
        }
        if (!n) {
                outcome_fail(o, -ESTALE, "plan-stale",
                             "node '%s' is no longer in the roster; ask for "
                             "a new plan",
                             p->node_id);
                return false;
        }
        placement_check_node(n, &f->cfg, &p->req, clock_monotonic_ms(), &c);
        if (c.verdict == CAND_FITS && fleet_node_image(n, p->req.image) == 0)
                c.verdict = CAND_NO_IMAGE; /* removed from the node since the plan */
        if (c.verdict != CAND_FITS) {
                outcome_fail(o, -ESTALE, "plan-stale",
                             "node '%s' does not fit the VM (%s; %lld MiB available after "
                             "reservations, %llu needed, margin %llu MiB); ask for a new plan",
                             p->node_id, cand_verdict_reason(c.verdict), (long long)c.available_mib,
                             (unsigned long long)p->req.memory_mib,
                             (unsigned long long)f->cfg.safety_margin_mib);
                o->body = json_pack("{s:o}", "figures", plan_node_figures(f, n, &c, &p->req));
                return false;
        }
        return true;
}

static void plans_vm_from_plan(const struct plan_row *p, struct fleet_vm *vm)
{
        memset(vm, 0, sizeof(*vm));
        snprintf(vm->id, sizeof(vm->id), "tbx-%s-%.6s", p->req.entity, p->id);
        snprintf(vm->entity, sizeof(vm->entity), "%s", p->req.entity);
        snprintf(vm->node_id, sizeof(vm->node_id), "%s", p->node_id);
        snprintf(vm->plan_id, sizeof(vm->plan_id), "%s", p->id);
        snprintf(vm->request_id, sizeof(vm->request_id), "%s", p->id);
        snprintf(vm->image, sizeof(vm->image), "%s", p->req.image);
        snprintf(vm->integrity, sizeof(vm->integrity), "unknown");
        vm->memory_mib = p->req.memory_mib;
        vm->vcpus = p->req.vcpus;
        vm->vault_disk_mib = p->req.vault_disk_mib;
        vm->created_ms = clock_realtime_ms();
        vm->status = VM_CREATING;
        vm->lifecycle = VM_LC_ACTIVE;
}

/* With f->lock held and the transaction open; commits or rolls back. */
static void plans_confirm_locked(struct fleetd *f, struct plan_row *p, const char *actor,
                                 struct plan_outcome *o)
{
        struct fleet_vm *vm, *added;
        int r;

        if (strcmp(p->state, "confirmed") == 0) {
                struct fleet_vm *v = vm_table_find(f, p->vm_id);

                store_rollback(f->store);
                o->done = OUTCOME_OK; /* idempotent: the same VM again */
                if (v) {
                        o->body = vm_to_json(f, v, clock_monotonic_ms());
                        vm_etag(v, o->etag);
                } else
                        outcome_fail(o, -EALREADY, "plan-confirmed", "plan '%s' created VM '%s'",
                                     p->id, p->vm_id);
                return;
        }
        if (!plans_recheck(f, p, o)) {
                store_rollback(f->store);
                f->metrics.confirm_rejected++;
                return;
        }
        vm = malloc(sizeof(*vm)); /* 1.5 KiB: on the heap, not in the frame */
        if (!vm) {
                store_rollback(f->store);
                outcome_fail(o, -ENOMEM, "out-of-memory",
                             "cannot record the confirmation of plan '%s'", p->id);
                return;
        }
        plans_vm_from_plan(p, vm);
        r = store_vm_insert(f->store, vm);
        r = r ?: store_plan_set_state(f->store, p->id, "confirmed", vm->id);
        r = r
                ?: audit_append(f->store, true, "vm.confirmed", vm->id, actor,
                                json_pack("{s:s, s:s, s:s, s:I, s:I, s:s}", "plan_id", p->id,
                                          "entity", vm->entity, "node_id", vm->node_id,
                                          "memory_mib", (json_int_t)vm->memory_mib, "vcpus",
                                          (json_int_t)vm->vcpus, "image", vm->image));
        if (r < 0) {
                store_rollback(f->store);
                outcome_fail(o, r, r == -EEXIST ? "entity-has-vm" : "store-failed",
                             "cannot record the confirmation of plan '%s'", p->id);
                goto cleanup;
        }
        if (store_commit(f->store) < 0) {
                outcome_fail(o, -EIO, "store-failed", "cannot commit the confirmation of plan '%s'",
                             p->id);
                goto cleanup;
        }
        added = vm_table_add(f, vm);
        if (added)
                vm_reserve(f, added);
        f->metrics.confirmations++;
        log_info("plan '%s' confirmed by '%s': VM '%s' for entity '%s' on node '%s'", p->id, actor,
                 vm->id, vm->entity, vm->node_id);
        o->done = OUTCOME_CREATED;
        o->body = vm_to_json(f, added ? added : vm, clock_monotonic_ms());
        vm_etag(added ? added : vm, o->etag);
cleanup:
        free(vm);
}

void plans_confirm(struct fleetd *f, const char *plan_id, const char *actor, struct plan_outcome *o)
{
        plans_confirm_if(f, plan_id, actor, NULL, o);
}

void plans_confirm_if(struct fleetd *f, const char *plan_id, const char *actor,
                      const char *if_match, struct plan_outcome *o)
{
        struct plan_row p = {{0}};
        int r;

        memset(o, 0, sizeof(*o));
        if (!ident_valid(IDENT_PLAN, plan_id)) {
                outcome_fail(o, -ENOENT, "unknown-plan", "no plan '%.40s'", plan_id);
                return;
        }
        pthread_mutex_lock(&f->lock);
        r = store_begin(f->store);
        if (r == 0) {
                r = store_plan_get(f->store, plan_id, &p);
                if (r < 0) {
                        store_rollback(f->store);
                        if (r == -ENOENT)
                                outcome_fail(o, -ENOENT, "unknown-plan", "no plan '%s'", plan_id);
                        else
                                outcome_fail(o, -EIO, "store-failed", "cannot read plan '%s'",
                                             plan_id);
                } else if (!plan_confirmed_from(&p, if_match) &&
                           !plan_precondition(&p, if_match, o)) {
                        store_rollback(f->store);
                } else {
                        plans_confirm_locked(f, &p, actor, o);
                }
        } else {
                outcome_fail(o, -EIO, "store-failed", "cannot open a transaction");
        }
        pthread_mutex_unlock(&f->lock);
        plan_row_done(&p);
        if (o->done == OUTCOME_CREATED)
                dispatch_wake(f);
}

void plans_drop(struct fleetd *f, const char *plan_id, const char *actor, struct plan_outcome *o)
{
        plans_drop_if(f, plan_id, actor, NULL, o);
}

void plans_drop_if(struct fleetd *f, const char *plan_id, const char *actor, const char *if_match,
                   struct plan_outcome *o)
{
        struct plan_row p = {{0}};
        int r;

        memset(o, 0, sizeof(*o));
        if (!ident_valid(IDENT_PLAN, plan_id)) {
                outcome_fail(o, -ENOENT, "unknown-plan", "no plan '%.40s'", plan_id);
                return;
        }
        if (store_begin(f->store) < 0) {
                outcome_fail(o, -EIO, "store-failed", "cannot open a transaction");
                return;
        }
        r = store_plan_get(f->store, plan_id, &p);
        if (r < 0) {
                store_rollback(f->store);
                if (r == -ENOENT)
                        outcome_fail(o, -ENOENT, "unknown-plan", "no plan '%s'", plan_id);
                else
                        outcome_fail(o, -EIO, "store-failed", "cannot read plan '%s'", plan_id);
        } else if (!plan_precondition(&p, if_match, o)) {
                store_rollback(f->store);
        } else if (strcmp(p.state, "confirmed") == 0) {
                store_rollback(f->store);
                outcome_fail(o, -EALREADY, "plan-confirmed",
                             "plan '%s' was confirmed (VM '%s'); a Totebox VM is never deleted",
                             plan_id, p.vm_id);
        } else if (strcmp(p.state, "dropped") == 0) {
                store_rollback(f->store);
                o->done = OUTCOME_OK;
        } else if (store_plan_set_state(f->store, plan_id, "dropped", NULL) < 0 ||
                   audit_append(f->store, true, "plan.dropped", plan_id, actor, NULL) < 0) {
                store_rollback(f->store);
                outcome_fail(o, -EIO, "store-failed", "cannot drop plan '%s'", plan_id);
        } else if (store_commit(f->store) < 0) {
                outcome_fail(o, -EIO, "store-failed", "cannot commit the drop of plan '%s'",
                             plan_id);
        } else {
                o->done = OUTCOME_OK;
        }
        if (o->done == OUTCOME_OK) {
                o->body = json_pack("{s:s, s:s}", "id", plan_id, "state", "dropped");
                snprintf(p.state, sizeof(p.state), "dropped");
                plan_etag(&p, o->etag);
        }
        plan_row_done(&p);
}

void plans_get(struct fleetd *f, const char *plan_id, struct plan_outcome *o)
{
        struct plan_row p = {{0}};
        json_t *body;

        memset(o, 0, sizeof(*o));
        if (!ident_valid(IDENT_PLAN, plan_id) || store_plan_get(f->store, plan_id, &p) < 0) {
                outcome_fail(o, -ENOENT, "unknown-plan", "no plan '%.40s'", plan_id);
                return;
        }
        body = json_loads(p.body, 0, NULL);
        if (body && !json_object_get(body, "id")) { /* pruned: the row without its candidates */
                json_decref(body);
                body = json_pack("{s:s, s:o, s:s, s:I, s:s}", "id", p.id, "request",
                                 plan_request_json(&p.req), "node_id", p.node_id, "expires_ms",
                                 (json_int_t)p.expires_ms, "note",
                                 "expired more than a day ago; its candidate list was dropped");
        }
        if (body) {
                plan_etag(&p, o->etag); /* of the stored state: expiry is not a change */
                if (strcmp(p.state, "open") == 0 && clock_realtime_ms() > p.expires_ms)
                        snprintf(p.state, sizeof(p.state), "expired");
                json_object_set_new(body, "state", json_string(p.state));
                json_object_set_new(body, "vm_id", p.vm_id[0] ? json_string(p.vm_id) : json_null());
                o->done = OUTCOME_OK;
                o->body = body;

        } else {
                outcome_fail(o, -EIO, "store-failed", "plan '%s' is unreadable", plan_id);
        }
        plan_row_done(&p);
}

static int plans_list_one(void *ctx, const struct plan_row *p)
{
        char created[40], expires[40];
        json_t *o;

        clock_format_rfc3339(p->created_ms, created, sizeof(created));
        clock_format_rfc3339(p->expires_ms, expires, sizeof(expires));
        o = json_pack("{s:s, s:s, s:o, s:s, s:s, s:s, s:I, s:o}", "id", p->id, "state", p->state,
                      "request", plan_request_json(&p->req), "node_id", p->node_id, "created_at",
                      created, "expires_at", expires, "expires_ms", (json_int_t)p->expires_ms,
                      "vm_id", p->vm_id[0] ? json_string(p->vm_id) : json_null());
        return o && json_array_append_new(ctx, o) == 0 ? 0 : -ENOMEM;
}

void plans_list(struct fleetd *f, const char *after, const char *state, unsigned limit,
                struct plan_outcome *o)
{
        json_t *plans = json_array(), *last;

        memset(o, 0, sizeof(*o));
        if (!plans || store_plan_list(f->store, after, state, clock_realtime_ms(), limit,
                                      plans_list_one, plans) < 0) {
                json_decref(plans);
                outcome_fail(o, -EIO, "store-failed", "the plans cannot be read");
                return;
        }
        last = json_array_size(plans) == limit ? json_array_get(plans, limit - 1) : NULL;
        o->done = OUTCOME_OK;
        o->body = json_pack("{s:o, s:O}", "plans", plans, "next_after",
                            last ? json_object_get(last, "id") : json_null());
}
