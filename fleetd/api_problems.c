/* The API edge's one table of problem types and HTTP statuses. Domain code (plans.c, dispatch.c,
 * export.c, images.c, operations.c, ...) says what went wrong as a negative errno and a problem
 * type (the stable slug the API contract names, docs/fleetd.md and schemas/openapi.json); this
 * file alone turns that into a status, and builds every problem document (RFC 9457) fleetd
 * answers or stores. A type has one status; the two that have two keep them apart by errno (a
 * row with err 0 matches any errno, so the specific rows come first). A problem that relays a
 * node's own refusal (a deposit's, an export's) keeps the node's status. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "fleetd/api.h"

/* Sorted by type; rows of one type with a specific errno before its err 0 row. */
const struct problem_row api_problem_table[] = {
    {"archived", 0, 409},
    {"backup-failed", 0, 500},
    {"bad-checkpoint", 0, 422},
    {"bad-request", 0, 400},
    {"body-too-large", 0, 413},
    {"checksum-mismatch", 0, 422},
    {"creation-failed", 0, 502},
    {"entity-has-vm", 0, 409},
    {"export-failed", 0, 502}, /* or the node's own status, relayed */
    {"fork", 0, 409},
    {"image-name-reused", 0, 409},
    {"image-too-large", 0, 413},
    {"import-refused", 0, 409},
    {"insufficient-memory", 0, 409},
    {"interrupted", 0, 503},
    {"invalid-image-name", 0, 400},
    {"invalid-query", 0, 400},
    {"length-required", 0, 411},
    {"no-alive-node", 0, 409},
    {"no-node-fits", 0, 422},
    {"no-node-has-image", 0, 422},
    {"no-witnessed-checkpoint", 0, 409},
    {"node-error", 0, 502},
    {"node-not-alive", 0, 409},
    {"node-refused", 0, 409},
    {"node-timeout", 0, 504},
    {"node-unavailable", 0, 502},
    {"node-unreachable", 0, 409},
    {"not-an-export", 0, 422},
    {"not-found", 0, 404},
    {"not-removed-everywhere", 0, 409},
    {"offset-mismatch", 0, 409},
    {"out-of-memory", -EAGAIN, 503}, /* cannot start it now: try again */
    {"out-of-memory", 0, 500},       /* ran out while doing it */
    {"plan-confirmed", 0, 409},
    {"plan-dropped", 0, 410},
    {"plan-expired", 0, 410},
    {"plan-stale", 0, 409},
    {"precondition-failed", 0, 412},
    {"push-failed", 0, 502},
    {"push-in-progress", 0, 409},
    {"rollback", 0, 409},
    {"same-node", 0, 409},
    {"staging-failed", 0, 500},
    {"store-failed", 0, 500},
    {"too-many-plans", 0, 503},
    {"unknown-node", -EINVAL, 422}, /* a field of the request names no node */
    {"unknown-node", 0, 404},       /* the node the call is about */
    {"unknown-operation", 0, 404},
    {"unknown-plan", 0, 404},
    {"unknown-verb", 0, 404},
    {"unknown-vm", 0, 404},
    {"unwitnessed-checkpoint", 0, 409},
    {"upload-failed", -EFBIG, 413},
    {"upload-failed", 0, 500},
    {"upload-in-progress", 0, 409},
    {"vm-busy", 0, 409},
    {"vm-not-active", 0, 409},
    {"vm-not-failed", 0, 409},
    {"vm-not-stopped", 0, 409},
    {"wrong-lifecycle", 0, 409},
};
const size_t api_problem_table_len = sizeof(api_problem_table) / sizeof(api_problem_table[0]);

const struct problem_row *api_problem_find(const char *type, int err)
{
        return problem_row_find(api_problem_table, api_problem_table_len, type, err, false);
}

unsigned api_problem_status(const char *type, int err)
{
        const struct problem_row *row = api_problem_find(type, err);

        return row && row->status ? row->status : 500;
}

static const char *api_problem_title(unsigned status)
{
        static const struct {
                unsigned status;
                const char *title;
        } titles[] = {{400, "Bad Request"},
                      {401, "Unauthorized"},
                      {403, "Forbidden"},
                      {404, "Not Found"},
                      {405, "Method Not Allowed"},
                      {409, "Conflict"},
                      {410, "Gone"},
                      {411, "Length Required"},
                      {412, "Precondition Failed"},
                      {413, "Content Too Large"},
                      {414, "URI Too Long"},
                      {415, "Unsupported Media Type"},
                      {422, "Unprocessable Content"},
                      {429, "Too Many Requests"},
                      {431, "Request Header Fields Too Large"},
                      {500, "Internal Server Error"},
                      {502, "Bad Gateway"},
                      {503, "Service Unavailable"},
                      {504, "Gateway Timeout"},
                      {507, "Insufficient Storage"}};

        for (size_t i = 0; i < sizeof(titles) / sizeof(titles[0]); i++)
                if (titles[i].status == status)
                        return titles[i].title;
        return "Error";
}

/* The one builder of problem documents; detail is copied and made valid UTF-8. */
static json_t *api_problem_json(unsigned status, const char *type, const char *detail)
{
        char text[512], type_uri[128];

        snprintf(text, sizeof(text), "%s", detail);
        api_utf8_sanitise(text); /* echoed paths, ids and names may be any bytes */
        snprintf(type_uri, sizeof(type_uri), "https://totebox.example/problems/%s", type);
        return json_pack("{s:s, s:s, s:i, s:s}", "type", type_uri, "title",
                         api_problem_title(status), "status", (int)status, "detail", text);
}

json_t *api_problem_doc(const char *type, int err, const char *detail)
{
        return api_problem_json(api_problem_status(type, err), type, detail);
}

static void api_problem_set(struct api_response *resp, unsigned status, const char *type,
                            const char *detail)
{
        json_decref(resp->body);
        resp->status = status;
        resp->content_type = "application/problem+json";
        resp->body = api_problem_json(status, type, detail);
}

static void api_problem_vset(struct api_response *resp, unsigned status, const char *type,
                             const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));

static void api_problem_vset(struct api_response *resp, unsigned status, const char *type,
                             const char *fmt, va_list ap)
{
        char detail[512];

        vsnprintf(detail, sizeof(detail), fmt, ap);
        api_problem_set(resp, status, type, detail);
}

void api_problem(struct api_response *resp, unsigned status, const char *type, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        api_problem_vset(resp, status, type, fmt, ap);
        va_end(ap);
}

void api_fail(struct api_response *resp, int err, const char *type, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        api_problem_vset(resp, api_problem_status(type, err), type, fmt, ap);
        va_end(ap);
}

unsigned api_outcome_status(const struct plan_outcome *o)
{
        static const unsigned done_status[] = {[OUTCOME_NONE] = 500,
                                               [OUTCOME_OK] = 200,
                                               [OUTCOME_CREATED] = 201,
                                               [OUTCOME_ACCEPTED] = 202,
                                               [OUTCOME_FAILED] = 500};

        if (o->problem && o->node_status >= 400 && o->node_status < 600)
                return (unsigned)o->node_status; /* a node's refusal relayed as it came */
        if (o->problem)
                return api_problem_status(o->problem, o->err);
        return (unsigned)o->done < sizeof(done_status) / sizeof(done_status[0])
                   ? done_status[o->done]
                   : 500;
}

json_t *api_outcome_problem(const struct plan_outcome *o)
{
        return api_problem_json(api_outcome_status(o), o->problem, o->detail);
}

void api_from_outcome(struct api_response *resp, struct plan_outcome *o)
{
        if (o->problem) {
                api_problem_set(resp, api_outcome_status(o), o->problem, o->detail);
                if (o->body) {
                        json_object_update(resp->body, o->body);
                        json_decref(o->body);
                }
        } else {
                api_ok(resp, o->body ? o->body : json_object());
                resp->status = api_outcome_status(o);
                memcpy(resp->tag, o->etag, sizeof(resp->tag));
        }
        o->body = NULL;
}
