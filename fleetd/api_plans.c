/* POST /v1/plans (a quote; changes nothing), GET /v1/plans/{id}, POST /v1/plans/{id}/confirm
 * (the explicit operator action that creates a VM; idempotent), DELETE /v1/plans/{id}. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleetd/api.h"

void api_plans_create(struct api_request *req, struct api_response *resp)
{
        struct plan_request pr;
        struct plan_outcome o;
        char err[256];
        json_t *body = api_body_object(req, resp, false);
        char *text;

        if (!body)
                return;
        text = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        if (!text || plan_request_parse(text, strlen(text), (unsigned)req->f->cfg.max_json_depth,
                                        &pr, err, sizeof(err)) < 0) {
                api_problem(resp, 422, "invalid-request", "%s", text ? err : "out of memory");
                free(text);
                return;
        }
        free(text);
        plans_create(req->f, &pr, req->actor, &o);
        api_from_outcome(resp, &o);
}

static bool api_plan_state_valid(const char *s)
{
        static const char *const states[] = {"open", "expired", "confirmed", "dropped"};

        for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++)
                if (strcmp(s, states[i]) == 0)
                        return true;
        return false;
}

/* GET /v1/plans[?state=S&after=ID&limit=N]: oldest first, 100 a page by default. */
void api_plans_list(struct api_request *req, struct api_response *resp)
{
        const char *state, *after;
        struct plan_outcome o;
        uint64_t limit;

        if (!api_query_string(req, resp, "state", api_plan_state_valid,
                              "open, expired, confirmed or dropped", &state) ||
            !api_query_id(req, resp, "after", IDENT_PLAN, &after) ||
            !api_query_uint(req, resp, "limit", 100, 1, 1000, &limit))
                return;
        plans_list(req->f, after, state, (unsigned)limit, &o);
        api_from_outcome(resp, &o);
}

/* A malformed plan id is bad input (400), as a malformed node or VM id is; a well-formed one
 * that names no plan is 404. */
static bool api_plan_param(struct api_request *req, struct api_response *resp)
{
        if (ident_valid(IDENT_PLAN, req->params[0]))
                return true;
        api_problem(resp, 400, "invalid-plan-id", "'%.64s' is not a plan id (32 hex digits)",
                    req->params[0]);
        return false;
}

void api_plans_get(struct api_request *req, struct api_response *resp)
{
        struct plan_outcome o;

        if (!api_plan_param(req, resp))
                return;
        plans_get(req->f, req->params[0], &o);
        api_from_outcome(resp, &o);
}

void api_plans_confirm(struct api_request *req, struct api_response *resp)
{
        char vm_id[VM_ID_MAX + 1];
        struct plan_outcome o;

        if (!api_plan_param(req, resp) || !api_body_empty(req, resp))
                return;
        plans_confirm_if(req->f, req->params[0], req->actor, api_if_match(req), &o);
        if (o.problem) {
                api_from_outcome(resp, &o);
                return;
        }
        /* the VM is recorded; its creation on the node is the operation to poll */
        snprintf(vm_id, sizeof(vm_id), "%s", json_string_value(json_object_get(o.body, "id")));
        json_decref(o.body);
        ops_confirmed(req->f, req->params[0], vm_id, req->actor, &o);
        api_operation_accepted(resp, &o);
}

void api_plans_drop(struct api_request *req, struct api_response *resp)
{
        struct plan_outcome o;

        if (!api_plan_param(req, resp))
                return;
        plans_drop_if(req->f, req->params[0], req->actor, api_if_match(req), &o);
        api_from_outcome(resp, &o);
}
