/* The admin REST API's plumbing: a route table, request and response types, problem+json. */
#pragma once
#include <jansson.h>
#include <stddef.h>

#include "fleetd/fleetd.h"

#define API_MAX_PARAMS 2

struct api_request {
        struct fleetd *f;
        const char *method;
        const char *path;
        const char *params[API_MAX_PARAMS]; /* the {…} segments of the route, in order */
        char param_buf[512];
        const char *body;                   /* NUL-terminated, may be empty */
        size_t body_len;
        char request_id[40];
};

struct api_response {
        unsigned status;
        json_t *body;        /* owned; JSON object */
        const char *content_type;
};

typedef void (*api_handler)(struct api_request *req, struct api_response *resp);

struct api_route {
        const char *method;
        const char *pattern; /* "/v1/nodes/{id}" */
        api_handler handler;
        const char *summary;
};

extern const struct api_route api_routes[];

/* Fills resp with an RFC 9457 problem: type is a short slug ("not-found"). */
void api_problem(struct api_response *resp, unsigned status, const char *type, const char *fmt,
                 ...) __attribute__((format(printf, 4, 5)));
/* Fills resp with 200 and body (takes the reference). */
void api_ok(struct api_response *resp, json_t *body);

/* api_nodes.c */
void api_nodes_list(struct api_request *req, struct api_response *resp);
void api_nodes_get(struct api_request *req, struct api_response *resp);
json_t *api_node_to_json(const struct fleet_node *n, const struct fleetd_config *cfg,
                         uint64_t now_ms);
