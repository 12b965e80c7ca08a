/* The admin REST API's plumbing: a route table, request and response types, problem+json. */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/problem.h"
#include "fleetd/fleetd.h"

#define API_MAX_PARAMS 2
#define API_QUERY_MAX  8

/* A request's query parameters (api_query.c): the route's names, which were given, the values
 * (borrowed from the connection; NULL for a name given without "="). */
struct api_query {
        const char *const *takes; /* the route's names, NULL-terminated, at most API_QUERY_MAX */
        unsigned seen;            /* bit i: takes[i] was given */
        const char *value[API_QUERY_MAX];
};

/* Why a query is refused: a problem type ("unknown-query", "invalid-query") and its detail. */
struct api_query_error {
        const char *type;
        char detail[256];
};

void api_query_init(struct api_query *q, const char *const *takes);
/* Takes one decoded (name, value) pair of the request's query: 0, or -EINVAL (e filled) for a
 * name the route does not take or one given twice. method and pattern name the route in e. */
int api_query_add(struct api_query *q, const char *method, const char *pattern, const char *name,
                  const char *value, struct api_query_error *e);
/* The value given for name, or NULL. */
const char *api_query_get(const struct api_query *q, const char *name);
/* v (NULL: absent, then def) as an integer in min..max: 0, or -EINVAL with e filled. */
int api_query_parse_uint(const char *name, const char *v, uint64_t def, uint64_t min, uint64_t max,
                         uint64_t *ret, struct api_query_error *e);
/* v (NULL: absent) when valid accepts it ("what" says what is expected): 0, or -EINVAL. */
int api_query_parse_string(const char *name, const char *v, bool (*valid)(const char *),
                           const char *what, const char **ret, struct api_query_error *e);
int api_query_parse_id(const char *name, const char *v, enum ident_kind kind, const char **ret,
                       struct api_query_error *e);
#define API_LIST_MAX 100000 /* the largest page of a list (and its default, but for plans) */

struct api_request {
        struct fleetd *f;
        const char *method;
        const char *path;
        const char *params[API_MAX_PARAMS]; /* the {…} segments of the route, in order */
        char param_buf[512];
        const char *body; /* NUL-terminated, may be empty */
        size_t body_len;
        char request_id[IDENT_REQUEST_MAX + 1];
        struct MHD_Connection *conn;
        char actor[64];         /* the token's name, "anonymous" when auth is off */
        struct api_query query; /* checked against the route before its handler runs */
        unsigned route; /* for /metrics: the api_routes index that matched, or METRICS_ROUTE_* */
        /* API_BODY_FILE: the body in an unlinked spool file (owned by the connection) */
        int body_fd;
        bool body_in_file, body_too_large;
        uint64_t body_size;
        uint8_t body_hash[32];     /* BLAKE2b-256 of the spooled body */
        struct api_upload *upload; /* an API_BODY_STREAM route's connection state */
};

/* A streamed body (API_BODY_STREAM): the route's handler runs once the headers are in and
 * either answers (a refusal: the body is never read) or sets feed, end and drop. feed takes
 * each chunk as it arrives, end answers once the body is complete, drop frees the state when
 * the connection ends (also when it was cut). */
struct api_response;
struct api_upload {
        void *state;
        int (*feed)(void *state, const char *data, size_t n);
        void (*end)(void *state, struct api_request *req, struct api_response *resp);
        void (*drop)(void *state);
};

/* An answer's bytes shared by every request that sends them (the cached node list): counted
 * references, the ETag computed once. */
struct api_shared {
        int refs;
        size_t len;
        char etag[35];
        char *text; /* owned */
};
/* Takes ownership of text (malloc'd, len bytes), also on failure; one reference, or NULL. */
struct api_shared *api_shared_new(char *text, size_t len);
struct api_shared *api_shared_ref(struct api_shared *s);
void api_shared_unref(void *s); /* accepts NULL; the last reference frees */

struct api_response {
        unsigned status;
        json_t *body; /* owned; JSON object */
        char *raw;    /* owned; a non-JSON body (metrics, files), sent instead of body */
        struct api_shared *shared; /* one reference; sent instead of body and raw */
        size_t raw_len;
        const char *content_type;
        const char *header_name, *header_value; /* one extra header (Allow, WWW-Authenticate) */
        bool etag; /* a list route's 200: tagged, and 304 when If-None-Match names the tag */
        char tag[FLEET_ETAG_SIZE]; /* one resource's revision (etag.c), sent as its ETag */
        char location[64];         /* a Location header (202: the operation to poll), or "" */
        char *header_owned;        /* header_value's storage when it is malloc'd (owned) */
        bool has_file;             /* send file_fd's file_len bytes (the response takes the fd) */
        int file_fd;
        uint64_t file_len;
        char allow[64];
        unsigned sent_status; /* the status api_send sent (304 for a matched If-None-Match) */
};

typedef void (*api_handler)(struct api_request *req, struct api_response *resp);

/* What a route takes as a body: none (a body is refused: 400 unexpected-body), or JSON. */
enum api_body { API_BODY_NONE, API_BODY_JSON, API_BODY_FILE, API_BODY_STREAM };

struct api_route {
        const char *method;
        const char *pattern; /* "/v1/nodes/{id}" */
        api_handler handler;
        bool auth; /* needs a bearer token (when the auth key is on) */
        enum api_body body;
        const char *query[API_QUERY_MAX]; /* the query parameters it takes; any other is a 400 */
        bool etag; /* a list: answers carry an ETag, If-None-Match gets a 304 */
        const char *summary;
};

/* Longest path and largest request header block fleetd answers; longer ones get 414 / 431 as
 * problem+json (libmicrohttpd's own HTML page only past API_CONN_MEMORY, its buffer limit). */
#define API_PATH_MAX    4096
#define API_HEADERS_MAX 16384
#define API_CONN_MEMORY (128 * 1024)

extern const struct api_route api_routes[];

/* api_problems.c: the problem types domain code produces and their HTTP statuses, the one place
 * a domain outcome becomes a status (docs/fleetd.md, "Errors"). err 0 in a row matches any
 * errno. */
extern const struct problem_row api_problem_table[];
extern const size_t api_problem_table_len;
/* The row for type with err, or NULL when the table has no such type. */
const struct problem_row *api_problem_find(const char *type, int err);
/* Fills resp with an RFC 9457 problem: type is a short slug ("not-found"). For what the edge
 * itself refuses (a malformed request); a domain problem goes through api_fail. */
void api_problem(struct api_response *resp, unsigned status, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* As api_problem, the status from the table for type and err (a negative errno). */
void api_fail(struct api_response *resp, int err, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Fills resp with 200 and body (takes the reference). */
void api_ok(struct api_response *resp, json_t *body);
/* As api_ok, with 202: the work goes on after the answer. */
void api_accepted(struct api_response *resp, json_t *body);

/* Parses the body as a JSON object within the limits; a problem in resp and NULL on error. */
json_t *api_body_object(struct api_request *req, struct api_response *resp, bool allow_empty);
/* A verb's body: empty or {}; false (problem in resp) otherwise. */
bool api_body_empty(struct api_request *req, struct api_response *resp);
/* Query argument as a string matching valid (or absent: *ret NULL); false with a problem. */
bool api_query_string(struct api_request *req, struct api_response *resp, const char *name,
                      bool (*valid)(const char *), const char *what, const char **ret);
/* The query parameter `name` when absent (NULL) or an id of that kind; else answers 400. */
bool api_query_id(struct api_request *req, struct api_response *resp, const char *name,
                  enum ident_kind kind, const char **ret);
/* Query argument as an unsigned integer in min..max (def when absent); false with a problem. */
bool api_query_uint(struct api_request *req, struct api_response *resp, const char *name,
                    uint64_t def, uint64_t min, uint64_t max, uint64_t *ret);
void api_from_outcome(struct api_response *resp, struct plan_outcome *o);
/* The request's If-Match header, or NULL. */
const char *api_if_match(struct api_request *req);

/* api_nodes.c */
void api_nodes_list(struct api_request *req, struct api_response *resp);
void api_nodes_get(struct api_request *req, struct api_response *resp);
#define API_HISTORY_WINDOW_MS (3600 * 1000ull)
void api_nodes_history(struct api_request *req, struct api_response *resp);
/* api_vms.c */
void api_vms_list(struct api_request *req, struct api_response *resp);
void api_vms_get(struct api_request *req, struct api_response *resp);
void api_vms_verb(struct api_request *req, struct api_response *resp);
void api_vms_export(struct api_request *req, struct api_response *resp);
void api_imports_plan(struct api_request *req, struct api_response *resp);
void api_imports_confirm(struct api_request *req, struct api_response *resp);
void api_imports_drop(struct api_request *req, struct api_response *resp);
/* api_records.c: the Diode, forwarded to the VM's node */
void api_records_deposit(struct api_request *req, struct api_response *resp);
void api_records_list(struct api_request *req, struct api_response *resp);
void api_records_read(struct api_request *req, struct api_response *resp);
/* A record's spool: an unlinked file in state_dir/diode (made 0700 when absent); the fd, or -1
 * with errno set. */
int api_spool_open(const struct fleetd *f);
/* Makes s valid UTF-8 in place: a byte that does not start or continue a well-formed sequence
 * (including a sequence cut short by truncation) becomes '?'. */
void api_utf8_sanitise(char *s);

/* api_plans.c */
void api_plans_list(struct api_request *req, struct api_response *resp);
void api_plans_create(struct api_request *req, struct api_response *resp);
void api_plans_get(struct api_request *req, struct api_response *resp);
void api_plans_confirm(struct api_request *req, struct api_response *resp);
void api_plans_drop(struct api_request *req, struct api_response *resp);
/* images.c */
void api_images_list(struct api_request *req, struct api_response *resp);
void api_images_upload_get(struct api_request *req, struct api_response *resp);
void api_images_upload_put(struct api_request *req, struct api_response *resp);
void api_images_push_get(struct api_request *req, struct api_response *resp);
void api_images_remove(struct api_request *req, struct api_response *resp);
/* api_operations.c */
void api_operations_list(struct api_request *req, struct api_response *resp);
void api_operations_get(struct api_request *req, struct api_response *resp);
/* As api_from_outcome, with Location naming the operation of a 202. */
void api_operation_accepted(struct api_response *resp, struct plan_outcome *o);
/* api_fleet.c */
void api_audit_list(struct api_request *req, struct api_response *resp);
void api_audit_checkpoint_get(struct api_request *req, struct api_response *resp);
void api_audit_witnesses_get(struct api_request *req, struct api_response *resp);
void api_roster_get(struct api_request *req, struct api_response *resp);
void api_health_get(struct api_request *req, struct api_response *resp);
void api_openapi_get(struct api_request *req, struct api_response *resp);
void api_metrics_get(struct api_request *req, struct api_response *resp);
/* backup.c: GET /v1/backup, the archive as a file answer */
void api_backup_get(struct api_request *req, struct api_response *resp);
/* api_panel.c: static files of the web panel */
void api_panel_get(struct api_request *req, struct api_response *resp);
/* the OpenAPI document, embedded at build time from schemas/openapi.json */
extern const unsigned char fleetd_openapi_json[];
extern const size_t fleetd_openapi_json_len;
