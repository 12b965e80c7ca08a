/* GET /v1/vms[/{id}] and POST /v1/vms/{id}/suspend|resume|archive|verify. There is no delete
 * and no migrate: a Totebox VM keeps its disks and stays on its node for life. */
#include <string.h>

#include "common/clock.h"
#include "fleetd/api.h"

void api_vms_list(struct api_request *req, struct api_response *resp)
{
        struct fleetd *f = req->f;
        uint64_t now = clock_monotonic_ms();
        json_t *vms = json_array();

        pthread_mutex_lock(&f->lock);
        for (size_t i = 0; i < f->n_vms; i++)
                json_array_append_new(vms, vm_to_json(f, &f->vms[i], now));
        pthread_mutex_unlock(&f->lock);
        api_ok(resp, json_pack("{s:o}", "vms", vms));
}

void api_vms_get(struct api_request *req, struct api_response *resp)
{
        struct fleetd *f = req->f;
        struct fleet_vm *vm;
        json_t *o = NULL;

        if (strlen(req->params[0]) > VM_ID_MAX) {
                api_problem(resp, 404, "unknown-vm", "no VM '%.64s'", req->params[0]);
                return;
        }
        pthread_mutex_lock(&f->lock);
        vm = vm_table_find(f, req->params[0]);
        if (vm)
                o = vm_to_json(f, vm, clock_monotonic_ms());
        pthread_mutex_unlock(&f->lock);
        if (o)
                api_ok(resp, o);
        else
                api_problem(resp, 404, "unknown-vm", "no VM '%s'", req->params[0]);
}

void api_vms_verb(struct api_request *req, struct api_response *resp)
{
        struct plan_outcome o;
        const char *verb = req->params[1];

        if (!dispatch_verb_known(verb)) {
                api_problem(resp, 404, "not-found",
                            "no verb '%.32s' on a VM (suspend, resume, archive, verify; there is "
                            "no delete or migrate)",
                            verb);
                return;
        }
        if (!fleet_vm_id_valid(req->params[0])) {
                api_problem(resp, 400, "invalid-vm-id",
                            "'%.64s' is not a VM id (1..%d of [a-z0-9-])", req->params[0],
                            VM_ID_MAX);
                return;
        }
        if (!api_body_empty(req, resp))
                return;
        dispatch_vm_verb(req->f, req->params[0], verb, req->actor, &o);
        api_from_outcome(resp, &o);
}
