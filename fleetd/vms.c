/* The VM table: every VM fleetd confirmed, mirrored from the store, plus what the last inventory
 * of its node said (soft state). A VM is pinned to node_id for life. Reservations: a confirmed
 * VM holds its memory on its node until the node's figures reflect it, that is until a heartbeat
 * carries a creation counter at least the one the node's acknowledgement (or an inventory that
 * lists the VM) named; a listing alone is not enough, since the figures may be older than it.
 * A resume is a start: the VM's memory is reserved again before the call, until figures at the
 * counter its acknowledgement names (a listing made before the call ended never counts, since
 * a VM's memory comes and goes with suspends). A suspend frees nothing here: the node's own
 * figures show it once they are sampled after it.
 * The rule and why it never oversubscribes a node: docs/fleetd.md, "Reservations". */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "fleetd/fleetd.h"

struct fleet_vm *vm_table_find(struct fleetd *f, const char *id)
{
        for (size_t i = 0; i < f->n_vms; i++)
                if (strcmp(f->vms[i].id, id) == 0)
                        return &f->vms[i];
        return NULL;
}

struct fleet_vm *vm_table_find_entity(struct fleetd *f, const char *entity)
{
        for (size_t i = 0; i < f->n_vms; i++)
                if (f->vms[i].status != VM_FAILED && strcmp(f->vms[i].entity, entity) == 0)
                        return &f->vms[i];
        return NULL;
}

struct fleet_vm *vm_table_add(struct fleetd *f, const struct fleet_vm *vm)
{
        if (f->n_vms == f->cap_vms) {
                size_t nc = f->cap_vms ? f->cap_vms * 2 : 16;
                struct fleet_vm *nv = realloc(f->vms, nc * sizeof(*nv));

                if (!nv)
                        return NULL;
                f->vms = nv;
                f->cap_vms = nc;
        }
        f->vms[f->n_vms] = *vm;
        f->vms[f->n_vms].integrity_obj = json_incref(vm->integrity_obj);
        f->vms[f->n_vms].verification = json_incref(vm->verification);
        f->vms[f->n_vms].retired_nodes = json_incref(vm->retired_nodes);
        return &f->vms[f->n_vms++];
}

void vm_table_free(struct fleetd *f)
{
        for (size_t i = 0; i < f->n_vms; i++) {
                json_decref(f->vms[i].integrity_obj);
                json_decref(f->vms[i].verification);
                json_decref(f->vms[i].retired_nodes);
        }
        free(f->vms);
        f->vms = NULL;
        f->n_vms = f->cap_vms = 0;
}

void vm_reserve(struct fleetd *f, struct fleet_vm *vm)
{
        struct fleet_node *n = node_table_find(&f->table, vm->node_id);

        if (vm->reserved || !n)
                return;
        n->reserved_mib += vm->memory_mib;
        vm->reserved_disk = placement_disk_mib(&f->cfg, vm->vault_disk_mib);
        n->reserved_disk_mib += vm->reserved_disk;
        vm->reserved = true;
        vm->reserve_until = 0;
        vm->settle_fetch = 0;
}

void vm_release(struct fleetd *f, struct fleet_vm *vm)
{
        struct fleet_node *n = node_table_find(&f->table, vm->node_id);

        if (!vm->reserved)
                return;
        vm->reserved = false;
        if (n) {
                n->reserved_mib =
                    n->reserved_mib > vm->memory_mib ? n->reserved_mib - vm->memory_mib : 0;
                n->reserved_disk_mib = n->reserved_disk_mib > vm->reserved_disk
                                           ? n->reserved_disk_mib - vm->reserved_disk
                                           : 0;
        }
}

/* The lowest counter known to reflect the VM wins: each one named is sound. */
static void vm_reflect_at(struct fleet_vm *vm, uint64_t creations)
{
        if (!vm->reserved || creations == 0)
                return;
        if (!vm->reserve_until || creations < vm->reserve_until)
                vm->reserve_until = creations;
        vm->settle_fetch = 0;
}

static uint64_t vm_answer_creations(const char *answer)
{
        json_t *o = answer ? json_loads(answer, JSON_REJECT_DUPLICATES, NULL) : NULL;
        json_t *c = json_object_get(o, "creations");
        uint64_t v =
            json_is_integer(c) && json_integer_value(c) > 0 ? (uint64_t)json_integer_value(c) : 0;

        json_decref(o);
        return v;
}

void vm_acknowledged(struct fleetd *f, struct fleet_vm *vm, const char *answer)
{
        struct fleet_node *n = node_table_find(&f->table, vm->node_id);

        vm_reflect_at(vm, vm_answer_creations(answer));
        if (n)
                vm_settle_node(f, n, 0, NULL);
}

bool vm_listing_holds(json_t *v)
{
        const char *lc = json_string_value(json_object_get(v, "lifecycle"));
        enum vm_lifecycle l = VM_LC_ACTIVE; /* unknown: it may hold */

        if (lc && vm_lifecycle_parse(lc, &l) < 0)
                l = VM_LC_ACTIVE;
        return vm_holds_memory(l, json_string_value(json_object_get(v, "state")));
}

void vm_listed(struct fleetd *f, struct fleet_vm *vm, uint64_t creations, uint64_t fetch,
               bool holds)
{
        /* a listing that shows the VM holding nothing reflects nothing: it may predate a start */
        if (!holds)
                return;
        if (!vm->reserved && vm->status == VM_FAILED)
                vm_reserve(f, vm); /* refused, yet there: it holds memory after all */
        if (fetch >= vm->reflect_fetch)
                vm_reflect_at(vm, creations);
}

void vm_reserve_start(struct fleetd *f, struct fleet_vm *vm)
{
        vm_reserve(f, vm);
        /* an earlier counter (its creation's) says nothing of this start */
        vm->reserve_until = 0;
        vm->settle_fetch = 0;
        vm->reflect_fetch = UINT64_MAX;
}

void vm_start_done(struct fleetd *f, struct fleet_vm *vm, const char *answer)
{
        struct fleet_node *n = node_table_find(&f->table, vm->node_id);

        vm->reflect_fetch = n ? n->inv_fetches + 1 : 0;
        if (!vm->reserved)
                vm_reserve(f, vm); /* released meanwhile (its node's counter reset): held again */
        if (answer)
                vm_acknowledged(f, vm, answer);
        /* no counter named (refused, no answer, an older vmhost): an inventory decides */
        vm_hold_until_listed(f, vm);
}

void vm_hold_until_listed(struct fleetd *f, struct fleet_vm *vm)
{
        struct fleet_node *n = node_table_find(&f->table, vm->node_id);

        if (!vm->reserved || vm->reserve_until)
                return;
        if (!n) {
                vm_release(f, vm);
                return;
        }
        vm->settle_fetch = n->inv_fetches + 1;
        if (n->inv == INV_OK || n->inv == INV_NONE) {
                n->inv = INV_WANTED;
                n->inv_next_ms = 0;
        }
}

void vm_reserve_again(struct fleetd *f, struct fleet_vm *vm)
{
        struct fleet_node *n = node_table_find(&f->table, vm->node_id);

        if (vm->reserved && vm->verb_busy)
                return; /* a start in flight: its answer decides */
        vm_reserve(f, vm);
        vm->reserve_until = 0;
        /* a creation in flight is dispatched again: its acknowledgement gives the counter */
        vm->settle_fetch = vm->status == VM_CREATING || !n ? 0 : n->inv_fetches + 1;
        vm->reflect_fetch = vm->settle_fetch;
        if (n && n->seen) {
                n->inv = INV_WANTED;
                n->inv_next_ms = 0;
        }
}

/* Listed, and holding memory there. */
static bool vm_listed_holding(json_t *vms, const char *id)
{
        for (size_t i = 0; i < json_array_size(vms); i++) {
                json_t *v = json_array_get(vms, i);

                if (strcmp(json_string_value(json_object_get(v, "id")), id) == 0)
                        return vm_listing_holds(v);
        }
        return false;
}

void vm_settle_node(struct fleetd *f, struct fleet_node *n, uint64_t fetch, json_t *vms_listed)
{
        if (n->counter_reset) {
                /* its counter file was lost: values before and after do not compare */
                n->counter_reset = false;
                log_warn("node '%s' restarted with creation counter %llu, lower than before: "
                         "its counter was reset (state_dir lost?); its VMs are reserved again "
                         "until its inventory tells",
                         n->rn->id, (unsigned long long)n->hb.creations);
                for (size_t i = 0; i < f->n_vms; i++)
                        if (strcmp(f->vms[i].node_id, n->rn->id) == 0)
                                vm_reserve_again(f, &f->vms[i]);
        }
        for (size_t i = 0; n->reserved_mib && i < f->n_vms; i++) {
                struct fleet_vm *vm = &f->vms[i];

                if (!vm->reserved || strcmp(vm->node_id, n->rn->id) != 0)
                        continue;
                if (vm->reserve_until && n->hb.creations >= vm->reserve_until)
                        vm_release(f, vm);
                else if (fetch && vm->settle_fetch && fetch >= vm->settle_fetch &&
                         !vm_listed_holding(vms_listed, vm->id))
                        vm_release(f, vm);
        }
}

static const char *vm_observed_state(struct fleetd *f, const struct fleet_vm *vm,
                                     enum node_state ns)
{
        if (ns == NODE_EVICTED || ns == NODE_UNSEEN)
                return "unreachable";
        if (vm->missing)
                return "missing";
        return vm->observed[0] ? vm->observed : "unknown";
}

/* What the operator asked for and what the node last reported: pending until a report carries
 * the request id fleetd was given. */
static json_t *vm_verification_json(const struct fleet_vm *vm)
{
        json_t *o = json_object(), *req = json_null();
        char when[40];

        if (vm->verify_request_id[0]) {
                clock_format_rfc3339(vm->verify_requested_ms, when, sizeof(when));
                req = json_pack("{s:s, s:s, s:s}", "request_id", vm->verify_request_id, "at", when,
                                "by", vm->verify_actor);
        }
        json_object_set_new(o, "requested", req);
        json_object_set_new(o, "pending",
                            json_boolean(vm->verify_request_id[0] &&
                                         strcmp(vm->verify_done_id, vm->verify_request_id)));
        json_object_set_new(o, "last",
                            vm->verification ? json_copy(vm->verification) : json_null());
        return o;
}

json_t *vm_to_json(struct fleetd *f, const struct fleet_vm *vm, uint64_t now_ms)
{
        struct fleet_node *n = node_table_find(&f->table, vm->node_id);
        enum node_state ns = n ? node_state_at(n, &f->cfg, now_ms) : NODE_UNSEEN;
        char when[40];
        json_t *o;

        clock_format_rfc3339(vm->created_ms, when, sizeof(when));
        o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:s, s:s, s:s, s:s, "
                      "s:{s:s, s:s}, s:b}",
                      "id", vm->id, "entity", vm->entity, "node_id", vm->node_id, "plan_id",
                      vm->plan_id, "request_id", vm->request_id, "image", vm->image, "memory_mib",
                      (json_int_t)vm->memory_mib, "vcpus", (json_int_t)vm->vcpus, "vault_disk_mib",
                      (json_int_t)vm->vault_disk_mib, "created_at", when, "status",
                      vm_status_name(vm->status), "lifecycle", vm_lifecycle_name(vm->lifecycle),
                      "state", vm_observed_state(f, vm, ns), "node_state",
                      n ? node_state_name(ns) : node_absent_name(&f->table, vm->node_id), "pin",
                      "fleet_id", f->table.roster ? f->table.roster->fleet_id : "", "node_id",
                      vm->node_id, "reserved", vm->reserved);
        json_object_set_new(o, "reason", vm->reason[0] ? json_string(vm->reason) : json_null());
        if (vm->integrity_obj)
                json_object_set(o, "integrity", vm->integrity_obj);
        else
                json_object_set_new(
                    o, "integrity",
                    json_pack("{s:s}", "status", vm->integrity[0] ? vm->integrity : "unknown"));
        json_object_set_new(o, "verification", vm_verification_json(vm));
        json_object_set_new(o, "lifecycle_unconfirmed",
                            vm->lc_unsure[0] ? json_string(vm->lc_unsure) : json_null());
        json_object_set_new(o, "misplaced_on", fleet_vm_misplaced_on(f, vm->id));
        json_object_set_new(o, "witness", vault_witness_vm_json(f, vm, clock_realtime_ms()));
        return o;
}
