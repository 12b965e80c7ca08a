/* GET /v1/operations[?state=&after=&limit=] and GET /v1/operations/{id}: the long operations
 * that confirm and the VM verbs start (operations.c). */
#include <errno.h>
#include <string.h>

#include "fleetd/api.h"

static bool api_op_state_valid(const char *s)
{
        return strcmp(s, "running") == 0 || strcmp(s, "succeeded") == 0 || strcmp(s, "failed") == 0;
}

void api_operations_list(struct api_request *req, struct api_response *resp)
{
        const char *state, *after;
        struct plan_outcome o;
        uint64_t limit;

        if (!api_query_string(req, resp, "state", api_op_state_valid,
                              "running, succeeded or failed", &state) ||
            !api_query_string(req, resp, "after", op_id_valid, "an operation id (32 hex digits)",
                              &after) ||
            !api_query_uint(req, resp, "limit", 100, 1, 1000, &limit))
                return;
        ops_list(req->f, after, state, (unsigned)limit, &o);
        api_from_outcome(resp, &o);
}

void api_operations_get(struct api_request *req, struct api_response *resp)
{
        struct plan_outcome o;

        if (!op_id_valid(req->params[0])) {
                api_problem(resp, 400, "invalid-operation-id",
                            "'%.64s' is not an operation id (32 hex digits)", req->params[0]);
                return;
        }
        ops_get(req->f, req->params[0], &o);
        if (o.err == -ENOENT)
                snprintf(o.detail, sizeof(o.detail), "no operation '%s'", req->params[0]);
        api_from_outcome(resp, &o);
}

void api_operation_accepted(struct api_response *resp, struct plan_outcome *o)
{
        const char *id = json_string_value(json_object_get(o->body, "id"));

        if (o->done == OUTCOME_ACCEPTED && id)
                snprintf(resp->location, sizeof(resp->location), "/v1/operations/%s", id);
        api_from_outcome(resp, o);
}
