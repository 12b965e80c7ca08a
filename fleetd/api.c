/* The admin REST API server (libmicrohttpd, a thread per connection). Every request is matched
 * against api_routes; a body is read up to max_body_bytes; bearer tokens are checked against the
 * store's hashes; every response carries X-Request-Id; every error is application/problem+json
 * (RFC 9457). Handlers never see partial bodies. */
#include "fleetd/api.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
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
#include "common/small_file.h"
#include "fleetd/store.h"

#define Q(...)                                                                                     \
        {                                                                                          \
                __VA_ARGS__, NULL                                                                  \
        }
const struct api_route api_routes[] = {
    {"GET", "/v1/nodes", api_nodes_list, true, API_BODY_NONE, Q("state", "role", "after", "limit"),
     true, "list nodes with state and figures (by id; filters, pages)"},
    {"GET", "/v1/nodes/{id}", api_nodes_get, true, API_BODY_NONE, {NULL}, false, "one node"},
    {"GET",
     "/v1/nodes/{id}/history",
     api_nodes_history,
     true,
     API_BODY_NONE,
     {NULL},
     false,
     "the node's CPU and RAM over the last hour"},
    {"GET", "/v1/vms", api_vms_list, true, API_BODY_NONE,
     Q("node", "status", "lifecycle", "entity", "after", "limit"), true,
     "list Totebox VMs (by id; filters, pages)"},
    {"GET", "/v1/vms/{id}", api_vms_get, true, API_BODY_NONE, {NULL}, false, "one VM"},
    {"POST", "/v1/vms/{id}/records", api_records_deposit, true, API_BODY_FILE,
     Q("name", "supersedes", "deposit_id", "blake2b_256"), false,
     "deposit a record (the body) into the Totebox's vault: a receipt"},
    {"GET", "/v1/vms/{id}/records", api_records_list, true, API_BODY_NONE, Q("after", "limit"),
     false, "the Totebox's ledger, a page at a time"},
    {"GET",
     "/v1/vms/{id}/records/{seq}",
     api_records_read,
     true,
     API_BODY_NONE,
     {NULL},
     false,
     "one record's bytes; its entry, proof and tree head in Totebox-Record"},
    {"POST",
     "/v1/vms/{id}/export",
     api_vms_export,
     true,
     API_BODY_JSON,
     {NULL},
     false,
     "write a suspended or archived Totebox as one signed file on its node (an operation)"},
    {"POST",
     "/v1/vms/{id}/{verb}",
     api_vms_verb,
     true,
     API_BODY_JSON,
     {NULL},
     false,
     "suspend, resume, archive or verify a VM"},
    {"GET", "/v1/plans", api_plans_list, true, API_BODY_NONE, Q("state", "after", "limit"), true,
     "list plans, oldest first (filters, pages)"},
    {"POST",
     "/v1/plans",
     api_plans_create,
     true,
     API_BODY_JSON,
     {NULL},
     false,
     "ask for a placement plan (changes nothing)"},
    {"GET", "/v1/plans/{id}", api_plans_get, true, API_BODY_NONE, {NULL}, false, "one plan"},
    {"DELETE",
     "/v1/plans/{id}",
     api_plans_drop,
     true,
     API_BODY_NONE,
     {NULL},
     false,
     "drop an unconfirmed plan"},
    {"POST",
     "/v1/plans/{id}/confirm",
     api_plans_confirm,
     true,
     API_BODY_JSON,
     {NULL},
     false,
     "confirm: create the VM"},
    {"POST",
     "/v1/imports",
     api_imports_plan,
     true,
     API_BODY_JSON,
     {NULL},
     false,
     "plan the import of an export already on a node (checked; changes nothing)"},
    {"POST",
     "/v1/imports/{id}/confirm",
     api_imports_confirm,
     true,
     API_BODY_JSON,
     {NULL},
     false,
     "confirm an import plan: re-home the Totebox (an operation)"},
    {"DELETE",
     "/v1/imports/{id}",
     api_imports_drop,
     true,
     API_BODY_NONE,
     {NULL},
     false,
     "drop an unconfirmed import plan (nothing was done)"},
    {"GET", "/v1/operations", api_operations_list, true, API_BODY_NONE,
     Q("state", "after", "limit"), true, "list long operations, oldest first (filters, pages)"},
    {"GET",
     "/v1/operations/{id}",
     api_operations_get,
     true,
     API_BODY_NONE,
     {NULL},
     false,
     "one operation: state, progress, result or error"},
    {"GET",
     "/v1/images",
     api_images_list,
     true,
     API_BODY_NONE,
     {NULL},
     false,
     "base images the nodes hold, and the pushes since fleetd started"},
    {"GET", "/v1/images/{name}/upload", api_images_upload_get, true, API_BODY_NONE, Q("sha256"),
     false, "how many bytes of an upload (name + sha256) fleetd holds"},
    {"PUT", "/v1/images/{name}/upload", api_images_upload_put, true, API_BODY_STREAM,
     Q("sha256", "size", "offset", "nodes"), false,
     "stream an image from an offset; checked, then pushed to the nodes"},
    {"GET",
     "/v1/images/{name}/push",
     api_images_push_get,
     true,
     API_BODY_NONE,
     {NULL},
     false,
     "a push's progress per node"},
    {"DELETE", "/v1/images/{name}", api_images_remove, true, API_BODY_NONE, Q("node"), false,
     "remove an image from the nodes (refused where a VM uses it)"},
    {"GET",
     "/v1/backup",
     api_backup_get,
     true,
     API_BODY_NONE,
     {NULL},
     false,
     "a consistent copy of fleetd's state, keys included (docs/operations.md)"},
    {"GET", "/v1/audit", api_audit_list, true, API_BODY_NONE, Q("after", "limit", "kind"), true,
     "the audit record"},
    {"GET",
     "/v1/audit/checkpoint",
     api_audit_checkpoint_get,
     true,
     API_BODY_NONE,
     {NULL},
     false,
     "the latest signed audit checkpoint and what each node witnessed"},
    {"GET",
     "/v1/audit/witnesses",
     api_audit_witnesses_get,
     true,
     API_BODY_NONE,
     {NULL},
     false,
     "each node's witnessed audit checkpoint, fetched from its node API now"},
    {"GET",
     "/v1/roster",
     api_roster_get,
     true,
     API_BODY_NONE,
     {NULL},
     false,
     "the roster fleetd uses"},
    {"GET",
     "/v1/health",
     api_health_get,
     true,
     API_BODY_NONE,
     {NULL},
     false,
     "fleet health, integrity first"},
    {"GET",
     "/v1/openapi.json",
     api_openapi_get,
     false,
     API_BODY_NONE,
     {NULL},
     false,
     "this API's OpenAPI 3.1 document"},
    {"GET", "/metrics", api_metrics_get, true, API_BODY_NONE, {NULL}, false, "Prometheus metrics"},
    {NULL, NULL, NULL, false, API_BODY_NONE, {NULL}, false, NULL},
};
#undef Q

struct api_conn {
        struct http_body body;
        /* an API_BODY_FILE route's body: spooled, hashed on the way, bounded */
        bool spool;
        int spool_fd;
        uint64_t spooled;
        bool too_large;
        crypto_generichash_state hs;
        struct api_upload upload; /* feed set: a streamed body */
        unsigned route;           /* a streamed body's route, for /metrics */
        char request_id[IDENT_REQUEST_MAX + 1];
};

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlong forms, no surrogates,
 * nothing past U+10FFFF), or 0. */
static size_t api_utf8_seq(const unsigned char *s)
{
        unsigned char c = s[0];
        size_t n = c < 0x80                 ? 1
                   : c >= 0xc2 && c <= 0xdf ? 2
                   : c >= 0xe0 && c <= 0xef ? 3
                   : c >= 0xf0 && c <= 0xf4 ? 4
                                            : 0;
        unsigned char lo = 0x80, hi = 0xbf;

        if (c == 0xe0)
                lo = 0xa0;
        else if (c == 0xed)
                hi = 0x9f;
        else if (c == 0xf0)
                lo = 0x90;
        else if (c == 0xf4)
                hi = 0x8f;
        for (size_t i = 1; i < n; i++) {
                if (s[i] < (i == 1 ? lo : 0x80) || s[i] > (i == 1 ? hi : 0xbf))
                        return 0;
        }
        return n;
}

void api_utf8_sanitise(char *s)
{
        unsigned char *p = (unsigned char *)s;

        while (*p) {
                size_t n = api_utf8_seq(p);

                if (n == 0)
                        *p++ = '?';
                else
                        p += n;
        }
}

/* True when the body is well-formed JSON within the limits whose only fault is an integer
 * beyond 64 bits: that is a value out of range (422), as -2^63 or a negative memory size is,
 * not malformed JSON (400). */
static bool api_body_only_overflows(const struct api_request *req)
{
        json_t *o;

        if (json_input_depth(req->body, req->body_len) > req->f->cfg.max_json_depth)
                return false;
        o = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL,
                       NULL);
        json_decref(o);
        return o != NULL;
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
        if (!o && api_body_only_overflows(req)) {
                api_problem(resp, 422, "invalid-request", "a number is outside -2^63..2^63-1 (%s)",
                            e.text);
                return NULL;
        }
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

        /* any field is the mistake here, whatever its value (even an integer past 64 bits) */
        if ((o && !ok) || (!o && resp->status == 422))
                api_problem(resp, 400, "unexpected-body", "this call takes no fields");
        json_decref(o);
        return ok;
}

bool api_query_string(struct api_request *req, struct api_response *resp, const char *name,
                      bool (*valid)(const char *), const char *what, const char **ret)
{
        struct api_query_error e;

        if (api_query_parse_string(name, api_query_get(&req->query, name), valid, what, ret, &e) ==
            0)
                return true;
        api_problem(resp, 400, e.type, "%s", e.detail);
        return false;
}

bool api_query_id(struct api_request *req, struct api_response *resp, const char *name,
                  enum ident_kind kind, const char **ret)
{
        struct api_query_error e;

        if (api_query_parse_id(name, api_query_get(&req->query, name), kind, ret, &e) == 0)
                return true;
        api_problem(resp, 400, e.type, "%s", e.detail);
        return false;
}

bool api_query_uint(struct api_request *req, struct api_response *resp, const char *name,
                    uint64_t def, uint64_t min, uint64_t max, uint64_t *ret)
{
        struct api_query_error e;

        if (api_query_parse_uint(name, api_query_get(&req->query, name), def, min, max, ret, &e) ==
            0)
                return true;
        api_problem(resp, 400, e.type, "%s", e.detail);
        return false;
}

const char *api_if_match(struct api_request *req)
{
        return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "If-Match");
}

void api_ok(struct api_response *resp, json_t *body)
{
        json_decref(resp->body);
        resp->status = 200;
        resp->content_type = "application/json";
        resp->body = body;
}

void api_accepted(struct api_response *resp, json_t *body)
{
        api_ok(resp, body);
        resp->status = 202;
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
        int r = h && strncasecmp(h, "Bearer ", 7) == 0
                    ? store_token_check(req->f->store, h + 7, name)
                    : -EACCES;

        if (r == 0) {
                snprintf(req->actor, sizeof(req->actor), "token:%s", name);
                return true;
        }
        if (r == -EKEYEXPIRED)
                api_problem(resp, 401, "token-expired",
                            "the bearer token has expired (fleetctl token create NAME --expires "
                            "DURATION makes a new one)");
        else
                api_problem(resp, 401, "unauthorized",
                            h ? "the bearer token is not valid (unknown or revoked)"
                              : "this call needs 'Authorization: Bearer TOKEN' (fleetctl token "
                                "create)");
        resp->header_name = "WWW-Authenticate";
        resp->header_value = "Bearer realm=\"fleetd\"";
        return false;
}

static bool api_is_panel_path(const char *path)
{
        return strcmp(path, "/") == 0 || strcmp(path, "/panel") == 0 ||
               strncmp(path, "/panel/", 7) == 0;
}

struct api_query_scan {
        struct api_query *q;
        const struct api_route *route;
        struct api_query_error e;
        bool bad;
};

static enum MHD_Result api_query_one(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
        struct api_query_scan *s = cls;

        (void)kind;
        if (!s->bad &&
            api_query_add(s->q, s->route->method, s->route->pattern, key, value, &s->e) < 0)
                s->bad = true;
        return MHD_YES;
}

/* Every query parameter must be one the route takes, once (api_query.c). */
static bool api_query_check(const struct api_route *r, struct api_request *req,
                            struct api_response *resp)
{
        struct api_query_scan s = {.q = &req->query, .route = r};

        api_query_init(&req->query, r->query);
        MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, api_query_one, &s);
        if (!s.bad)
                return true;
        api_problem(resp, 400, s.e.type, "%s", s.e.detail);
        return false;
}

static void api_run(const struct api_route *r, struct api_request *req, struct api_response *resp)
{
        if (r->auth && !api_authorize(req, resp))
                return;
        if (!api_query_check(r, req, resp))
                return;
        if (r->body != API_BODY_FILE && req->body_in_file) {
                api_problem(resp, 400, "unexpected-body", "%s %s takes no record body", req->method,
                            r->pattern);
                return;
        }
        if (r->body == API_BODY_NONE && req->body_len > 0) {
                api_problem(resp, 400, "unexpected-body", "%s %s takes no request body",
                            req->method, r->pattern);
                return;
        }
        resp->etag = r->etag;
        r->handler(req, resp);
}

static void api_allow_add(struct api_response *resp, const char *method)
{
        size_t used = strlen(resp->allow);

        if (used + strlen(method) + 3 < sizeof(resp->allow))
                snprintf(resp->allow + used, sizeof(resp->allow) - used, "%s%s", used ? ", " : "",
                         method);
}

static void api_dispatch(struct api_request *req, struct api_response *resp)
{
        /* HEAD is GET without the body (libmicrohttpd sends only the headers) */
        const char *method = strcmp(req->method, "HEAD") == 0 ? "GET" : req->method;
        bool path_known = false;

        req->route = METRICS_ROUTE_NONE;
        if (api_is_panel_path(req->path)) {
                req->route = METRICS_ROUTE_PANEL;
                if (strcmp(method, "GET") == 0) {
                        api_panel_get(req, resp);
                        return;
                }
                snprintf(resp->allow, sizeof(resp->allow), "GET, HEAD");
                path_known = true;
        }
        for (const struct api_route *r = api_routes; r->pattern; r++) {
                if (!api_match(r->pattern, req->path, req))
                        continue;
                if (strcmp(r->method, method) == 0) {
                        req->route = (unsigned)(r - api_routes);
                        api_run(r, req, resp);
                        return;
                }
                api_allow_add(resp, r->method);
                if (strcmp(r->method, "GET") == 0)
                        api_allow_add(resp, "HEAD");
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

static enum MHD_Result api_header_bytes(void *cls, enum MHD_ValueKind kind, const char *key,
                                        const char *value)
{
        *(size_t *)cls += strlen(key) + (value ? strlen(value) : 0) + 4;
        return MHD_YES;
}

/* The request's own size limits, before anything else looks at it: fleetd's answer, as
 * problem+json, for what libmicrohttpd's buffer still held. */
static bool api_request_fits(struct api_request *req, struct api_response *resp)
{
        size_t headers = 0, query = 0;

        MHD_get_connection_values(req->conn, MHD_HEADER_KIND, api_header_bytes, &headers);
        MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, api_header_bytes, &query);
        if (strlen(req->path) + query > API_PATH_MAX) {
                api_problem(resp, 414, "uri-too-long",
                            "the request target exceeds %d bytes (path '%.64s...')", API_PATH_MAX,
                            req->path);
                return false;
        }
        if (headers > API_HEADERS_MAX) {
                api_problem(resp, 431, "headers-too-large",
                            "the request headers take %zu bytes, more than %d", headers,
                            API_HEADERS_MAX);
                return false;
        }
        return true;
}

static void api_new_request_id(struct MHD_Connection *conn, char *buf, size_t size)
{
        const char *given = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
        uint8_t raw[16];

        if (ident_valid(IDENT_REQUEST, given) && strlen(given) < size) {
                snprintf(buf, size, "%s", given);
                return;
        }
        randombytes_buf(raw, sizeof(raw));
        sodium_bin2hex(buf, size, raw, sizeof(raw));
}

/* The answer as text (takes resp->raw); a body that cannot be encoded is a 500 problem, never
 * an empty or schema-less answer. */
static char *api_text(struct api_response *resp, size_t *ret_len)
{
        char *text;

        if (resp->raw) {
                text = resp->raw;
                *ret_len = resp->raw_len;
                resp->raw = NULL;
                return text;
        }
        text = resp->body ? json_dumps(resp->body, JSON_COMPACT) : NULL;
        if (!text) {
                api_problem(resp, 500, "unencodable-answer", "the answer could not be encoded");
                text = resp->body ? json_dumps(resp->body, JSON_COMPACT) : NULL;
        }
        *ret_len = text ? strlen(text) : 0;
        return text;
}

/* A strong ETag: BLAKE2b-128 of the answer's bytes, quoted. */
static void api_etag(const char *text, size_t len, char buf[35]);

struct api_shared *api_shared_new(char *text, size_t len)
{
        struct api_shared *s = text ? malloc(sizeof(*s)) : NULL;

        if (!s) {
                free(text);
                return NULL;
        }
        s->refs = 1;
        s->len = len;
        s->text = text;
        api_etag(s->text, len, s->etag);
        return s;
}

struct api_shared *api_shared_ref(struct api_shared *s)
{
        __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
        return s;
}

void api_shared_unref(void *p)
{
        struct api_shared *s = p;

        if (s && __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0) {
                free(s->text);
                free(s);
        }
}

static void api_etag(const char *text, size_t len, char buf[35])
{
        fleet_etag(text, len, buf);
}

static bool api_etag_matches(struct MHD_Connection *conn, const char *etag)
{
        const char *inm = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "If-None-Match");

        return inm && (strcmp(inm, "*") == 0 || strstr(inm, etag) != NULL);
}

static enum MHD_Result api_send(struct MHD_Connection *conn, struct api_request *req,
                                struct api_response *resp)
{
        unsigned status = resp->status ? resp->status : 200;
        bool tagged = resp->etag && status == 200;
        struct MHD_Response *r;
        enum MHD_Result ret;
        char etag[35];
        size_t len = 0;
        char *text = resp->shared ? NULL : api_text(resp, &len);

        if (!text && !resp->shared)
                return MHD_NO;
        if (tagged && resp->shared)
                memcpy(etag, resp->shared->etag, sizeof(etag));
        else if (tagged)
                api_etag(text, len, etag);
        if (tagged && api_etag_matches(conn, etag)) {
                free(text);
                text = NULL;
                api_shared_unref(resp->shared);
                resp->shared = NULL;
                status = 304;
        }
        if (resp->has_file) {
                free(text);
                r = MHD_create_response_from_fd_at_offset64(resp->file_len, resp->file_fd, 0);
                if (r)
                        resp->has_file = false; /* the response owns the fd */
        } else if (resp->shared) {
                r = MHD_create_response_from_buffer_with_free_callback_cls(
                    resp->shared->len, resp->shared->text, api_shared_unref, resp->shared);
                if (r)
                        resp->shared = NULL; /* the response holds the reference now */
        } else {
                r = text ? MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE)
                         : MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
                if (!r)
                        free(text);
        }
        if (!r)
                return MHD_NO;
        resp->sent_status = status;
        if (status != 304)
                MHD_add_response_header(r, "Content-Type",
                                        resp->content_type ? resp->content_type
                                                           : "application/json");
        MHD_add_response_header(r, "X-Request-Id", req->request_id);
        MHD_add_response_header(r, "Cache-Control", tagged ? "no-cache" : "no-store");
        MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
        if (tagged)
                MHD_add_response_header(r, "ETag", etag);
        else if (resp->tag[0] && status < 300)
                MHD_add_response_header(r, "ETag", resp->tag);
        if (resp->location[0])
                MHD_add_response_header(r, "Location", resp->location);
        if (resp->header_name)
                MHD_add_response_header(r, resp->header_name, resp->header_value);
        ret = MHD_queue_response(conn, status, r);
        MHD_destroy_response(r);
        return ret;
}

static enum MHD_Result api_answer(struct fleetd *f, struct MHD_Connection *conn,
                                  struct api_request *req, struct api_response *resp,
                                  const struct timespec *t0)
{
        bool big = json_array_size(json_object_get(resp->body, "candidates")) > 1000;
        enum MHD_Result ret = api_send(conn, req, resp);
        struct timespec t1;

        json_decref(resp->body);
        free(resp->raw);
        api_shared_unref(resp->shared);
        if (resp->has_file)
                close(resp->file_fd);
        free(resp->header_owned);
        if (big)
                malloc_trim(0); /* give a big answer's memory back to the system */
        clock_gettime(CLOCK_MONOTONIC, &t1);
        metrics_observe_request(f, req->route, resp->sent_status,
                                (double)(t1.tv_sec - t0->tv_sec) +
                                    (double)(t1.tv_nsec - t0->tv_nsec) / 1e9);
        return ret;
}

int api_spool_open(const struct fleetd *f)
{
        char *dir = small_file_path(f->cfg.state_dir, "diode");
        int fd, e;

        if (!dir) {
                errno = ENOMEM;
                return -1;
        }
        mkdir(dir, 0700);
        fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        e = errno;
        free(dir);
        errno = e;
        return fd;
}

/* A route whose body is a record (API_BODY_FILE) spools it to an unlinked file in
 * state_dir/diode; the caller's token is checked first, so nobody else can fill the disk. */
static bool api_spool_start(struct fleetd *f, struct api_conn *c, struct api_request *req,
                            struct api_response *resp)
{
        for (const struct api_route *r = api_routes; r->method; r++) {
                if (r->body != API_BODY_FILE || strcmp(r->method, req->method) != 0 ||
                    !api_match(r->pattern, req->path, req))
                        continue;
                if (r->auth && !api_authorize(req, resp))
                        return false;
                c->spool = true;
                c->spool_fd = api_spool_open(f);
                crypto_generichash_init(&c->hs, NULL, 0, 32);
                if (c->spool_fd < 0) {
                        api_problem(resp, 503, "no-spool",
                                    "cannot spool the record in '%s/diode': %s", f->cfg.state_dir,
                                    strerror(errno));
                        return false;
                }
                return true;
        }
        return true;
}

static void api_spool_feed(struct fleetd *f, struct api_conn *c, const char *data, size_t *size)
{
        if (c->spooled + *size > f->cfg.max_record_bytes)
                c->too_large = true;
        if (!c->too_large && pwrite(c->spool_fd, data, *size, (off_t)c->spooled) != (ssize_t)*size)
                c->too_large = true;
        if (!c->too_large) {
                crypto_generichash_update(&c->hs, (const uint8_t *)data, *size);
                c->spooled += *size;
        }
        *size = 0;
}

/* A streamed route's start, with only the headers in: true when it takes the body. */
static bool api_stream_begin(struct api_conn *c, struct api_request *req, struct api_response *resp)
{
        for (const struct api_route *r = api_routes; r->pattern; r++) {
                if (r->body != API_BODY_STREAM || strcmp(r->method, req->method) != 0 ||
                    !api_match(r->pattern, req->path, req))
                        continue;
                api_new_request_id(req->conn, c->request_id, sizeof(c->request_id));
                memcpy(req->request_id, c->request_id, sizeof(req->request_id));
                req->route = c->route = (unsigned)(r - api_routes);
                req->upload = &c->upload;
                api_run(r, req, resp);
                if (!c->upload.feed && !resp->status)
                        api_problem(resp, 500, "internal", "the upload was not taken");
                return c->upload.feed != NULL;
        }
        return false;
}

static enum MHD_Result api_access(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
        struct fleetd *f = cls;
        struct api_conn *c = *con_cls;
        struct api_request req = {.f = f,
                                  .method = method,
                                  .path = url,
                                  .body = "",
                                  .conn = conn,
                                  .route = METRICS_ROUTE_NONE};
        struct api_response resp = {0};
        struct timespec t0;

        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (!c) {
                c = calloc(1, sizeof(*c));
                if (!c)
                        return MHD_NO;
                *con_cls = c;
                c->spool_fd = -1;
                if (api_request_fits(&req, &resp) && api_spool_start(f, c, &req, &resp) &&
                    (api_stream_begin(c, &req, &resp) || !c->request_id[0]))
                        return MHD_YES;
                if (c->request_id[0]) /* a streamed route refused before the body */
                        return api_answer(f, conn, &req, &resp, &t0);
                /* answered before its body is read; libmicrohttpd then closes the connection */
                api_new_request_id(conn, req.request_id, sizeof(req.request_id));
                return api_answer(f, conn, &req, &resp, &t0);
        }
        if (c->upload.feed) {
                if (*upload_data_size) {
                        c->upload.feed(c->upload.state, upload_data, *upload_data_size);
                        *upload_data_size = 0;
                        return MHD_YES;
                }
                memcpy(req.request_id, c->request_id, sizeof(req.request_id));
                req.route = c->route;
                c->upload.end(c->upload.state, &req, &resp);
                c->upload.feed = NULL; /* answered once */
                return api_answer(f, conn, &req, &resp, &t0);
        }
        if (c->spool && *upload_data_size) {
                api_spool_feed(f, c, upload_data, upload_data_size);
                return MHD_YES;
        }
        if (!c->spool &&
            !http_body_feed(&c->body, upload_data, upload_data_size, f->cfg.max_body_bytes))
                return MHD_YES;
        api_new_request_id(conn, req.request_id, sizeof(req.request_id));
        if (c->spool) {
                req.body_in_file = true;
                req.body_fd = c->spool_fd;
                req.body_size = c->spooled;
                req.body_too_large = c->too_large;
                crypto_generichash_final(&c->hs, req.body_hash, sizeof(req.body_hash));
                api_dispatch(&req, &resp);
        } else if (c->body.too_large) {
                api_problem(&resp, 413, "body-too-large", "request body exceeds %llu bytes",
                            (unsigned long long)f->cfg.max_body_bytes);
        } else {
                req.body = http_body_text(&c->body);
                req.body_len = c->body.len;
                api_dispatch(&req, &resp);
        }
        return api_answer(f, conn, &req, &resp, &t0);
}

static void api_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                          enum MHD_RequestTerminationCode toe)
{
        struct api_conn *c = *con_cls;

        if (c) {
                http_body_done(&c->body);
                if (c->spool_fd >= 0)
                        close(c->spool_fd);
                if (c->upload.drop)
                        c->upload.drop(c->upload.state);
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
            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)API_CONN_MEMORY, MHD_OPTION_END);
        if (!d)
                return -EADDRNOTAVAIL;
        f->http[f->n_http++] = d;
        return 0;
}

int api_start(struct fleetd *f)
{
        /* answers of megabytes (lists of 10,000 nodes) are mapped and unmapped whole, and a few
         * arenas serve the connection threads: memory goes back to the system after a burst */
        mallopt(M_MMAP_THRESHOLD, 256 * 1024);
        mallopt(M_ARENA_MAX, 4);
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
