/* The admin REST API server (libmicrohttpd, a thread per connection). Every request is matched
 * against api_routes; a body is read up to max_body_bytes; bearer tokens are checked against the
 * store's hashes; every response carries X-Request-Id; every error is application/problem+json
 * (RFC 9457). Handlers never see partial bodies. */
#include "fleetd/api.h"

#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <microhttpd.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/clock.h"
#include "common/json_input.h"
#include "common/http_body.h"
#include "common/log.h"
#include "fleetd/store.h"

const struct api_route api_routes[] = {
    {"GET", "/v1/nodes", api_nodes_list, true, "list nodes with state and figures"},
    {"GET", "/v1/nodes/{id}", api_nodes_get, true, "one node"},
    {"GET", "/v1/vms", api_vms_list, true, "list Totebox VMs"},
    {"GET", "/v1/vms/{id}", api_vms_get, true, "one VM"},
    {"POST", "/v1/vms/{id}/{verb}", api_vms_verb, true, "suspend, resume, archive or verify a VM"},
    {"POST", "/v1/plans", api_plans_create, true, "ask for a placement plan (changes nothing)"},
    {"GET", "/v1/plans/{id}", api_plans_get, true, "one plan"},
    {"DELETE", "/v1/plans/{id}", api_plans_drop, true, "drop an unconfirmed plan"},
    {"POST", "/v1/plans/{id}/confirm", api_plans_confirm, true, "confirm: create the VM"},
    {"GET", "/v1/audit", api_audit_list, true, "the audit record"},
    {"GET", "/v1/audit/checkpoint", api_audit_checkpoint_get, true,
     "the latest signed audit checkpoint and what each node witnessed"},
    {"GET", "/v1/audit/witnesses", api_audit_witnesses_get, true,
     "each node's witnessed audit checkpoint, fetched from its node API now"},
    {"GET", "/v1/roster", api_roster_get, true, "the roster fleetd uses"},
    {"GET", "/v1/health", api_health_get, true, "fleet health, integrity first"},
    {"GET", "/v1/openapi.json", api_openapi_get, false, "this API's OpenAPI 3.1 document"},
    {"GET", "/metrics", api_metrics_get, true, "Prometheus metrics"},
    {NULL, NULL, NULL, false, NULL},
};

struct api_conn {
        struct http_body body;
};

void api_problem(struct api_response *resp, unsigned status, const char *type, const char *fmt, ...)
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
                      {413, "Content Too Large"},
                      {414, "URI Too Long"},
                      {415, "Unsupported Media Type"},
                      {422, "Unprocessable Content"},
                      {429, "Too Many Requests"},
                      {500, "Internal Server Error"},
                      {502, "Bad Gateway"},
                      {503, "Service Unavailable"},
                      {504, "Gateway Timeout"}};
        const char *title = "Error";
        char detail[512], type_uri[128];
        va_list ap;

        for (size_t i = 0; i < sizeof(titles) / sizeof(titles[0]); i++)
                if (titles[i].status == status)
                        title = titles[i].title;
        va_start(ap, fmt);
        vsnprintf(detail, sizeof(detail), fmt, ap);
        va_end(ap);
        snprintf(type_uri, sizeof(type_uri), "https://totebox.example/problems/%s", type);
        json_decref(resp->body);
        resp->status = status;
        resp->content_type = "application/problem+json";
        resp->body = json_pack("{s:s, s:s, s:i, s:s}", "type", type_uri, "title", title, "status",
                               (int)status, "detail", detail);
}

json_t *api_body_object(struct api_request *req, struct api_response *resp, bool allow_empty)
{
        struct json_input_error e = {{0}};
        const char *ct = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Content-Type");
        json_t *o;

        if (req->body_len == 0) {
                if (allow_empty)
                        return json_object();
                api_problem(resp, 400, "missing-body", "this call needs a JSON object body");
                return NULL;
        }
        if (ct && strncmp(ct, "application/json", 16) != 0) {
                api_problem(resp, 415, "unsupported-media-type",
                            "content type '%.64s' is not application/json", ct);
                return NULL;
        }
        o = json_input_parse(req->body, req->body_len, req->f->cfg.max_body_bytes,
                             (unsigned)req->f->cfg.max_json_depth, &e);
        if (!o) {
                api_problem(resp, 400, "invalid-json", "%s", e.text);
                return NULL;
        }
        if (!json_is_object(o)) {
                json_decref(o);
                api_problem(resp, 400, "invalid-json", "the body must be a JSON object");
                return NULL;
        }
        return o;
}

bool api_body_empty(struct api_request *req, struct api_response *resp)
{
        json_t *o = api_body_object(req, resp, true);
        bool ok = o && json_object_size(o) == 0;

        if (o && !ok)
                api_problem(resp, 400, "unexpected-body", "this call takes no fields");
        json_decref(o);
        return ok;
}

bool api_query_uint(struct api_request *req, struct api_response *resp, const char *name,
                    uint64_t def, uint64_t min, uint64_t max, uint64_t *ret)
{
        const char *v = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
        unsigned long long n = 0;
        size_t len = v ? strlen(v) : 0;

        if (!v) {
                *ret = def;
                return true;
        }
        for (size_t i = 0; i < len && len <= 19; i++) {
                if (v[i] < '0' || v[i] > '9') {
                        len = 0;
                        break;
                }
                n = n * 10 + (unsigned)(v[i] - '0');
        }
        if (len == 0 || len > 19 || n < min || n > max) {
                api_problem(resp, 400, "invalid-query",
                            "query '%s' must be an integer in %llu..%llu", name,
                            (unsigned long long)min, (unsigned long long)max);
                return false;
        }
        *ret = n;
        return true;
}

void api_from_outcome(struct api_response *resp, struct plan_outcome *o)
{
        if (o->problem) {
                api_problem(resp, o->status, o->problem, "%s", o->detail);
                if (o->body) {
                        json_object_update(resp->body, o->body);
                        json_decref(o->body);
                }
        } else {
                api_ok(resp, o->body ? o->body : json_object());
                resp->status = o->status;
        }
        o->body = NULL;
}

void api_ok(struct api_response *resp, json_t *body)
{
        json_decref(resp->body);
        resp->status = 200;
        resp->content_type = "application/json";
        resp->body = body;
}

/* Matches path against pattern; copies {…} segments into req->params. */
static bool api_match(const char *pattern, const char *path, struct api_request *req)
{
        char *out = req->param_buf, *end = req->param_buf + sizeof(req->param_buf);
        unsigned np = 0;

        while (*pattern && *path) {
                if (*pattern == '{') {
                        const char *seg_end = strchr(path, '/');
                        size_t n = seg_end ? (size_t)(seg_end - path) : strlen(path);

                        if (n == 0 || np >= API_MAX_PARAMS || out + n + 1 > end)
                                return false;
                        memcpy(out, path, n);
                        out[n] = '\0';
                        req->params[np++] = out;
                        out += n + 1;
                        path += n;
                        pattern = strchr(pattern, '}') + 1;
                        continue;
                }
                if (*pattern++ != *path++)
                        return false;
        }
        return *pattern == '\0' && *path == '\0';
}

static bool api_authorize(struct api_request *req, struct api_response *resp)
{
        const char *h = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Authorization");
        char name[TOKEN_NAME_MAX + 1];

        if (!req->f->cfg.auth) {
                snprintf(req->actor, sizeof(req->actor), "anonymous");
                return true;
        }
        if (h && strncasecmp(h, "Bearer ", 7) == 0 &&
            store_token_check(req->f->store, h + 7, name) == 0) {
                snprintf(req->actor, sizeof(req->actor), "token:%s", name);
                return true;
        }
        api_problem(resp, 401, "unauthorized",
                    h ? "the bearer token is not valid (unknown or revoked)"
                      : "this call needs 'Authorization: Bearer TOKEN' (fleetctl token create)");
        resp->header_name = "WWW-Authenticate";
        resp->header_value = "Bearer realm=\"fleetd\"";
        return false;
}

static bool api_is_panel_path(const char *path)
{
        return strcmp(path, "/") == 0 || strcmp(path, "/panel") == 0 ||
               strncmp(path, "/panel/", 7) == 0;
}

static void api_dispatch(struct api_request *req, struct api_response *resp)
{
        bool path_known = false;

        if (api_is_panel_path(req->path)) {
                if (strcmp(req->method, "GET") == 0) {
                        api_panel_get(req, resp);
                        return;
                }
                snprintf(resp->allow, sizeof(resp->allow), "GET");
                path_known = true;
        }
        for (const struct api_route *r = api_routes; r->pattern; r++) {
                if (!api_match(r->pattern, req->path, req))
                        continue;
                if (strcmp(r->method, req->method) == 0) {
                        if (!r->auth || api_authorize(req, resp))
                                r->handler(req, resp);
                        return;
                }
                if (strlen(resp->allow) + strlen(r->method) + 3 < sizeof(resp->allow))
                        snprintf(resp->allow + strlen(resp->allow),
                                 sizeof(resp->allow) - strlen(resp->allow), "%s%s",
                                 resp->allow[0] ? ", " : "", r->method);
                path_known = true;
        }
        if (path_known) {
                api_problem(resp, 405, "method-not-allowed",
                            "method '%.16s' is not allowed on '%.128s'", req->method, req->path);
                resp->header_name = "Allow";
                resp->header_value = resp->allow;
        } else {
                api_problem(resp, 404, "not-found", "no resource at '%.128s'", req->path);
        }
}

static void api_new_request_id(struct MHD_Connection *conn, char *buf, size_t size)
{
        const char *given = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
        uint8_t raw[16];
        bool ok = given && strlen(given) > 0 && strlen(given) < size;

        for (const char *p = given; ok && *p; p++)
                ok = (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
                     (*p >= 'A' && *p <= 'Z') || *p == '-' || *p == '_';
        if (ok) {
                snprintf(buf, size, "%s", given);
                return;
        }
        randombytes_buf(raw, sizeof(raw));
        sodium_bin2hex(buf, size, raw, sizeof(raw));
}

static enum MHD_Result api_send(struct MHD_Connection *conn, struct api_request *req,
                                struct api_response *resp)
{
        struct MHD_Response *r;
        enum MHD_Result ret;
        char *text = NULL;
        size_t len;

        if (resp->raw) {
                text = resp->raw;
                len = resp->raw_len;
                resp->raw = NULL;
        } else {
                text = resp->body ? json_dumps(resp->body, JSON_COMPACT) : strdup("{}");
                len = text ? strlen(text) : 0;
        }
        if (!text)
                return MHD_NO;
        r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
        if (!r) {
                free(text);
                return MHD_NO;
        }
        MHD_add_response_header(r, "Content-Type",
                                resp->content_type ? resp->content_type : "application/json");
        MHD_add_response_header(r, "X-Request-Id", req->request_id);
        MHD_add_response_header(r, "Cache-Control", "no-store");
        MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
        if (resp->header_name)
                MHD_add_response_header(r, resp->header_name, resp->header_value);
        ret = MHD_queue_response(conn, resp->status ? resp->status : 200, r);
        MHD_destroy_response(r);
        return ret;
}

static enum MHD_Result api_access(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
        struct fleetd *f = cls;
        struct api_conn *c = *con_cls;
        struct api_request req = {.f = f, .method = method, .path = url, .body = "", .conn = conn};
        struct api_response resp = {0};
        enum MHD_Result ret;
        struct timespec t0, t1;
        bool big;

        if (!c) {
                c = calloc(1, sizeof(*c));
                if (!c)
                        return MHD_NO;
                *con_cls = c;
                return MHD_YES;
        }
        if (!http_body_feed(&c->body, upload_data, upload_data_size, f->cfg.max_body_bytes))
                return MHD_YES;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        api_new_request_id(conn, req.request_id, sizeof(req.request_id));
        if (c->body.too_large) {
                api_problem(&resp, 413, "body-too-large", "request body exceeds %llu bytes",
                            (unsigned long long)f->cfg.max_body_bytes);
        } else {
                req.body = http_body_text(&c->body);
                req.body_len = c->body.len;
                api_dispatch(&req, &resp);
        }
        big = json_array_size(json_object_get(resp.body, "candidates")) > 1000;
        ret = api_send(conn, &req, &resp);
        json_decref(resp.body);
        free(resp.raw);
        if (big)
                malloc_trim(0); /* give a big answer's memory back to the system */
        clock_gettime(CLOCK_MONOTONIC, &t1);
        metrics_observe_latency(f, (double)(t1.tv_sec - t0.tv_sec) +
                                       (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
        return ret;
}

static void api_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                          enum MHD_RequestTerminationCode toe)
{
        struct api_conn *c = *con_cls;

        if (c) {
                http_body_done(&c->body);
                free(c);
                *con_cls = NULL;
        }
}

static int api_listen_one(struct fleetd *f, const char *address)
{
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)f->cfg.api_port)};
        struct MHD_Daemon *d;

        if (inet_pton(AF_INET, address, &sa.sin_addr) != 1 || f->n_http >= FLEETD_LISTEN_MAX)
                return -EINVAL;
        d = MHD_start_daemon(
            MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, NULL, NULL,
            api_access, f, MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_NOTIFY_COMPLETED, api_completed, f,
            MHD_OPTION_CONNECTION_LIMIT, (unsigned)64, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)65536, MHD_OPTION_END);
        if (!d)
                return -EADDRNOTAVAIL;
        f->http[f->n_http++] = d;
        return 0;
}

int api_start(struct fleetd *f)
{
        char list[sizeof(f->cfg.api_listen)], *save = NULL;

        snprintf(list, sizeof(list), "%s", f->cfg.api_listen);
        for (char *a = strtok_r(list, ", ", &save); a; a = strtok_r(NULL, ", ", &save)) {
                int r = api_listen_one(f, a);

                if (r < 0) {
                        log_error("cannot serve the REST API on '%s' port %llu", a,
                                  (unsigned long long)f->cfg.api_port);
                        api_stop(f);
                        return r;
                }
                log_info("REST API listening on '%s' port %llu", a,
                         (unsigned long long)f->cfg.api_port);
        }
        return 0;
}

void api_stop(struct fleetd *f)
{
        for (unsigned i = 0; i < f->n_http; i++)
                MHD_stop_daemon(f->http[i]);
        f->n_http = 0;
}
