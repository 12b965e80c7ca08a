/* The admin REST API's plumbing: a route table, request and response types, problem+json. */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fleetd/fleetd.h"

#define API_MAX_PARAMS 2

struct api_request {
        struct fleetd *f;
        const char *method;
        const char *path;
        const char *params[API_MAX_PARAMS]; /* the {…} segments of the route, in order */
        char param_buf[512];
        const char *body; /* NUL-terminated, may be empty */
        size_t body_len;
        char request_id[40];
        struct MHD_Connection *conn;
        char actor[64]; /* the token's name, "anonymous" when auth is off */
};

struct api_response {
        unsigned status;
        json_t *body; /* owned; JSON object */
        char *raw;    /* owned; a non-JSON body (metrics, files), sent instead of body */
        size_t raw_len;
        const char *content_type;
        const char *header_name, *header_value; /* one extra header (Allow, WWW-Authenticate) */
        char allow[64];
};

typedef void (*api_handler)(struct api_request *req, struct api_response *resp);

struct api_route {
        const char *method;
        const char *pattern; /* "/v1/nodes/{id}" */
        api_handler handler;
        bool auth; /* needs a bearer token (when the auth key is on) */
        const char *summary;
};

extern const struct api_route api_routes[];

/* Fills resp with an RFC 9457 problem: type is a short slug ("not-found"). */
void api_problem(struct api_response *resp, unsigned status, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Fills resp with 200 and body (takes the reference). */
void api_ok(struct api_response *resp, json_t *body);

/* Parses the body as a JSON object within the limits; a problem in resp and NULL on error. */
json_t *api_body_object(struct api_request *req, struct api_response *resp, bool allow_empty);
/* A verb's body: empty or {}; false (problem in resp) otherwise. */
bool api_body_empty(struct api_request *req, struct api_response *resp);
/* Query argument as an unsigned integer in min..max (def when absent); false with a problem. */
bool api_query_uint(struct api_request *req, struct api_response *resp, const char *name,
                    uint64_t def, uint64_t min, uint64_t max, uint64_t *ret);
void api_from_outcome(struct api_response *resp, struct plan_outcome *o);

/* api_nodes.c */
void api_nodes_list(struct api_request *req, struct api_response *resp);
void api_nodes_get(struct api_request *req, struct api_response *resp);
json_t *api_node_to_json(const struct fleet_node *n, const struct fleetd_config *cfg,
                         uint64_t now_ms);
/* api_vms.c */
void api_vms_list(struct api_request *req, struct api_response *resp);
void api_vms_get(struct api_request *req, struct api_response *resp);
void api_vms_verb(struct api_request *req, struct api_response *resp);
/* api_plans.c */
void api_plans_create(struct api_request *req, struct api_response *resp);
void api_plans_get(struct api_request *req, struct api_response *resp);
void api_plans_confirm(struct api_request *req, struct api_response *resp);
void api_plans_drop(struct api_request *req, struct api_response *resp);
/* api_fleet.c */
void api_audit_list(struct api_request *req, struct api_response *resp);
void api_audit_checkpoint_get(struct api_request *req, struct api_response *resp);
void api_audit_witnesses_get(struct api_request *req, struct api_response *resp);
void api_roster_get(struct api_request *req, struct api_response *resp);
void api_health_get(struct api_request *req, struct api_response *resp);
void api_openapi_get(struct api_request *req, struct api_response *resp);
void api_metrics_get(struct api_request *req, struct api_response *resp);
/* api_panel.c: static files of the web panel */
void api_panel_get(struct api_request *req, struct api_response *resp);
/* the OpenAPI document, embedded at build time from schemas/openapi.json */
extern const unsigned char fleetd_openapi_json[];
extern const size_t fleetd_openapi_json_len;
