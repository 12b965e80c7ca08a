/* GET /v1/vms[/{id}] and POST /v1/vms/{id}/suspend|resume|archive|verify|retire. There is no delete
 * and no migrate: a Totebox VM keeps its disks and stays on its node for life. */
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "fleetd/api.h"

static bool api_vm_status_valid(const char *s)
{
        for (unsigned i = VM_CREATING; i <= VM_FAILED; i++)
                if (strcmp(s, vm_status_name((enum vm_status)i)) == 0)
                        return true;
        return false;
}

static bool api_vm_lifecycle_valid(const char *s)
{
        enum vm_lifecycle l;

        return vm_lifecycle_parse(s, &l) == 0;
}

static int api_vm_cmp(const void *a, const void *b)
{
        return strcmp((*(const struct fleet_vm *const *)a)->id,
                      (*(const struct fleet_vm *const *)b)->id);
}

struct api_vm_filter {
        const char *node, *status, *lifecycle, *entity, *after;
};

static bool api_vm_wanted(const struct api_vm_filter *q, const struct fleet_vm *vm)
{
        return (!q->after || strcmp(vm->id, q->after) > 0) &&
               (!q->node || strcmp(q->node, vm->node_id) == 0) &&
               (!q->status || strcmp(q->status, vm_status_name(vm->status)) == 0) &&
               (!q->lifecycle || strcmp(q->lifecycle, vm_lifecycle_name(vm->lifecycle)) == 0) &&
               (!q->entity || strcmp(q->entity, vm->entity) == 0);
}

static bool api_vm_query(struct api_request *req, struct api_response *resp,
                         struct api_vm_filter *q, uint64_t *limit)
{
        return api_query_id(req, resp, "node", IDENT_NODE, &q->node) &&
               api_query_string(req, resp, "status", api_vm_status_valid,
                                "creating, active or failed", &q->status) &&
               api_query_string(req, resp, "lifecycle", api_vm_lifecycle_valid,
                                "active, suspended, archived or retired", &q->lifecycle) &&
               api_query_id(req, resp, "entity", IDENT_ENTITY, &q->entity) &&
               api_query_id(req, resp, "after", IDENT_VM, &q->after) &&
               api_query_uint(req, resp, "limit", API_LIST_MAX, 1, API_LIST_MAX, limit);
}

/* GET /v1/vms[?node=&status=&lifecycle=&entity=&after=ID&limit=N]: by id; next_after names the
 * last VM of a full page (null on the last page). */
void api_vms_list(struct api_request *req, struct api_response *resp)
{
        struct fleetd *f = req->f;
        struct api_vm_filter q = {0};
        uint64_t now = clock_monotonic_ms(), limit;
        json_t *vms, *next = json_null();
        const struct fleet_vm **order, *last = NULL;

        if (!api_vm_query(req, resp, &q, &limit))
                return;
        vms = json_array();
        pthread_mutex_lock(&f->lock);
        order = malloc((f->n_vms ? f->n_vms : 1) * sizeof(*order));
        for (size_t i = 0; order && i < f->n_vms; i++)
                order[i] = &f->vms[i];
        if (order)
                qsort(order, f->n_vms, sizeof(*order), api_vm_cmp);
        for (size_t i = 0; order && i < f->n_vms; i++) {
                if (!api_vm_wanted(&q, order[i]))
                        continue;
                if (json_array_size(vms) == limit) {
                        json_decref(next);
                        next = json_string(last->id);
                        break;
                }
                json_array_append_new(vms, vm_to_json(f, order[i], now));
                last = order[i];
        }
        pthread_mutex_unlock(&f->lock);
        if (!order) {
                json_decref(vms);
                api_problem(resp, 503, "out-of-memory", "cannot list the VMs now");
                return;
        }
        free(order);
        api_ok(resp, json_pack("{s:o, s:o}", "vms", vms, "next_after", next));
}

/* 400 unless the path's VM id is an id. */
static bool api_vm_id_ok(struct api_request *req, struct api_response *resp)
{
        if (ident_valid(IDENT_VM, req->params[0]))
                return true;
        api_problem(resp, 400, "invalid-vm-id", "'%.64s' is not a VM id (1..%d of [a-z0-9-])",
                    req->params[0], VM_ID_MAX);
        return false;
}

void api_vms_get(struct api_request *req, struct api_response *resp)
{
        struct fleetd *f = req->f;
        struct fleet_vm *vm;
        char tag[FLEET_ETAG_SIZE] = "";
        json_t *o = NULL;

        if (!api_vm_id_ok(req, resp))
                return;
        pthread_mutex_lock(&f->lock);
        vm = vm_table_find(f, req->params[0]);
        if (vm) {
                o = vm_to_json(f, vm, clock_monotonic_ms());
                vm_etag(vm, tag);
        }
        pthread_mutex_unlock(&f->lock);
        if (o) {
                api_ok(resp, o);
                memcpy(resp->tag, tag, sizeof(tag));
        } else
                api_problem(resp, 404, "unknown-vm", "no VM '%s'", req->params[0]);
}

void api_vms_verb(struct api_request *req, struct api_response *resp)
{
        struct plan_outcome o;
        const char *verb = req->params[1];

        if (!dispatch_verb_known(verb)) {
                api_problem(resp, 404, "not-found",
                            "no verb '%.32s' on a VM (suspend, resume, archive, verify, retire; "
                            "there is no delete or migrate)",
                            verb);
                return;
        }
        if (!api_vm_id_ok(req, resp))
                return;
        if (!api_body_empty(req, resp))
                return;
        if (strcmp(verb, "retire") == 0) { /* fleetd's own record: done at once, an operation */
                dispatch_vm_verb_if(req->f, req->params[0], verb, req->actor, api_if_match(req),
                                    &o);
                if (!o.problem)
                        ops_finished(req->f, verb, req->params[0], req->actor, &o);
                api_operation_accepted(resp, &o);
                return;
        }
        ops_verb_start(req->f, req->params[0], verb, req->actor, api_if_match(req), &o);
        api_operation_accepted(resp, &o);
}

void api_vms_export(struct api_request *req, struct api_response *resp)
{
        struct plan_outcome o;

        if (!api_vm_id_ok(req, resp))
                return;
        if (!api_body_empty(req, resp))
                return;
        export_start(req->f, req->params[0], req->actor, &o);
        api_operation_accepted(resp, &o);
}

void api_imports_plan(struct api_request *req, struct api_response *resp)
{
        struct plan_outcome o;

        import_plan(req->f, req->body, req->body_len, req->actor, &o);
        api_from_outcome(resp, &o);
}

static bool api_import_id_ok(struct api_request *req, struct api_response *resp)
{
        if (ident_valid(IDENT_PLAN, req->params[0]))
                return true;
        api_problem(resp, 400, "invalid-plan-id", "'%.64s' is not a plan id", req->params[0]);
        return false;
}

void api_imports_confirm(struct api_request *req, struct api_response *resp)
{
        struct plan_outcome o;

        if (!api_import_id_ok(req, resp) || !api_body_empty(req, resp))
                return;
        import_confirm(req->f, req->params[0], req->actor, &o);
        api_operation_accepted(resp, &o);
}

void api_imports_drop(struct api_request *req, struct api_response *resp)
{
        struct plan_outcome o;

        if (!api_import_id_ok(req, resp))
                return;
        import_drop(req->f, req->params[0], &o);
        api_from_outcome(resp, &o);
}
