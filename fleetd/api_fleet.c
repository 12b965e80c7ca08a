/* Fleet-wide reads: GET /v1/audit, /v1/roster, /v1/health (misplaced VMs, then integrity, first),
 * /v1/openapi.json and /metrics. */
#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "fleetd/api.h"
#include "fleetd/store.h"

static bool audit_kind_valid(const char *k)
{
        size_t n = strlen(k);

        if (n == 0 || n > 32)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((k[i] >= 'a' && k[i] <= 'z') || k[i] == '.' || k[i] == '_'))
                        return false;
        return true;
}

void api_audit_list(struct api_request *req, struct api_response *resp)
{
        const char *kind = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "kind");
        uint64_t after, limit;
        json_t *entries;

        if (!api_query_uint(req, resp, "after", 0, 0, INT64_MAX, &after) ||
            !api_query_uint(req, resp, "limit", 100, 1, 1000, &limit))
                return;
        if (kind && !audit_kind_valid(kind)) {
                api_problem(resp, 400, "invalid-query", "query 'kind' must be like 'vm.confirmed'");
                return;
        }
        entries = audit_list(req->f->store, after, (unsigned)limit, kind);
        api_ok(resp,
               json_pack("{s:o, s:I}", "entries", entries, "next_after",
                         json_array_size(entries)
                             ? json_integer_value(json_object_get(
                                   json_array_get(entries, json_array_size(entries) - 1), "seq"))
                             : (json_int_t)after));
}

/* The checkpoint, and the chain checked now from the first entry (audit_verify: each entry's
 * hash over its content and the one before), for the panel's audit view. */
void api_audit_checkpoint_get(struct api_request *req, struct api_response *resp)
{
        json_t *o = audit_status_json(req->f);
        char err[256] = "";
        uint64_t n = 0;
        int r = audit_verify(req->f->store, &n, err, sizeof(err));

        if (json_is_object(o))
                json_object_set_new(o, "chain",
                                    json_pack("{s:b, s:I, s:s?}", "intact", r == 0, "entries",
                                              (json_int_t)n, "problem", r == 0 ? NULL : err));
        api_ok(resp, o);
}

void api_audit_witnesses_get(struct api_request *req, struct api_response *resp)
{
        api_ok(resp, audit_witnesses_fetch(req->f));
}

void api_roster_get(struct api_request *req, struct api_response *resp)
{
        struct fleetd *f = req->f;
        json_t *o;

        pthread_mutex_lock(&f->lock);
        o = roster_to_json(f->table.roster);
        pthread_mutex_unlock(&f->lock);
        api_ok(resp, o);
}

void api_health_get(struct api_request *req, struct api_response *resp)
{
        struct fleetd *f = req->f;
        uint64_t now = clock_monotonic_ms(), by_state[NODE_STATE_MAX] = {0};
        json_t *mismatched, *misplaced, *nodes = json_object(), *o, *alarms, *stalled;
        const char *integrity, *status, *vault;
        char vkey[TLOG_VKEY_MAX + 1];

        pthread_mutex_lock(&f->lock);
        integrity = fleet_integrity_status(f, &mismatched);
        misplaced = fleet_misplaced_vms(f);
        vault = fleet_vault_status(f, clock_realtime_ms(), &alarms, &stalled);
        for (size_t i = 0; i < f->table.roster->n_nodes; i++)
                by_state[node_state_at(&f->table.nodes[i], &f->cfg, now)]++;
        for (unsigned s = 0; s < NODE_STATE_MAX; s++)
                json_object_set_new(nodes, node_state_name((enum node_state)s),
                                    json_integer((json_int_t)by_state[s]));
        /* worst first: a VM where it is not pinned (a copy of an entity's vault running or
         * defined on another node) outranks a vault that failed its own checks */
        status = json_array_size(misplaced)           ? "misplaced"
                 : strcmp(vault, "lying-host") == 0   ? "lying-host"
                 : strcmp(vault, "rollback") == 0     ? "vault-rollback"
                 : strcmp(vault, "fork") == 0         ? "vault-fork"
                 : strcmp(integrity, "mismatch") == 0 ? "integrity-mismatch"
                 : audit_diverged(f)                  ? "audit-diverged"
                 : json_array_size(stalled)           ? "stalled"
                 : by_state[NODE_SUSPECT] || by_state[NODE_EVICTED] || by_state[NODE_UNHEALTHY]
                     ? "degraded"
                     : "ok";
        o = json_pack("{s:s, s:{s:s, s:o}, s:o, s:I, s:I, s:I, s:s}", "status", status, "integrity",
                      "status", integrity, "mismatched_vms", mismatched, "nodes", nodes, "vms",
                      (json_int_t)f->n_vms, "roster_version", (json_int_t)f->table.roster->version,
                      "uptime_ms", (json_int_t)(now - f->started_ms), "version", TOTEBOX_VERSION);
        json_object_set_new(o, "misplaced",
                            json_pack("{s:s, s:o}", "status",
                                      json_array_size(misplaced) ? "misplaced" : "ok", "vms",
                                      misplaced));
        if (!f->have_vault_witness ||
            tlog_cosig_vkey_format(&f->vault_witness.pub, vkey, sizeof(vkey)) < 0)
                vkey[0] = '\0';
        json_object_set_new(o, "vault_witness",
                            json_pack("{s:s, s:s?, s:o}", "status", vault, "key",
                                      vkey[0] ? vkey : NULL, "vms", alarms));
        json_object_set_new(o, "stalled",
                            json_pack("{s:s, s:o}", "status",
                                      json_array_size(stalled) ? "stalled" : "ok", "vms", stalled));
        json_object_set_new(o, "heartbeat_protocol",
                            json_pack("{s:i, s:[i, i], s:I, s:I}", "version", HEARTBEAT_VERSION,
                                      "reads", HEARTBEAT_VERSION_MIN, HEARTBEAT_VERSION_MAX,
                                      "newer_accepted", (json_int_t)f->table.newer, "refused",
                                      (json_int_t)f->table.dropped[HB_DROP_VERSION]));
        json_object_set_new(
            o, "pin_key",
            json_pack("{s:s, s:b}", "public_key", f->pin_pk, "in_roster", pin_key_in_roster(f)));
        pthread_mutex_unlock(&f->lock);
        api_ok(resp, o);
}

void api_openapi_get(struct api_request *req, struct api_response *resp)
{
        resp->raw = malloc(fleetd_openapi_json_len);
        if (!resp->raw) {
                api_problem(resp, 500, "out-of-memory", "cannot copy the OpenAPI document");
                return;
        }
        memcpy(resp->raw, fleetd_openapi_json, fleetd_openapi_json_len);
        resp->raw_len = fleetd_openapi_json_len;
        resp->status = 200;
        resp->content_type = "application/json";
}

void api_metrics_get(struct api_request *req, struct api_response *resp)
{
        resp->raw = metrics_render(req->f);
        if (!resp->raw) {
                api_problem(resp, 500, "out-of-memory", "cannot render the metrics");
                return;
        }
        resp->raw_len = strlen(resp->raw);
        resp->status = 200;
        resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
}
