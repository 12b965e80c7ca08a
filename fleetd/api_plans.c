/* POST /v1/plans (a quote; changes nothing), GET /v1/plans/{id}, POST /v1/plans/{id}/confirm
 * (the explicit operator action that creates a VM; idempotent), DELETE /v1/plans/{id}. */
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

void api_plans_get(struct api_request *req, struct api_response *resp)
{
        struct plan_outcome o;

        plans_get(req->f, req->params[0], &o);
        api_from_outcome(resp, &o);
}

void api_plans_confirm(struct api_request *req, struct api_response *resp)
{
        struct plan_outcome o;

        if (!api_body_empty(req, resp))
                return;
        plans_confirm(req->f, req->params[0], req->actor, &o);
        api_from_outcome(resp, &o);
}

void api_plans_drop(struct api_request *req, struct api_response *resp)
{
        struct plan_outcome o;

        plans_drop(req->f, req->params[0], req->actor, &o);
        api_from_outcome(resp, &o);
}
