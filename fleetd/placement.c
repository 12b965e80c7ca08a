/* Placement: the rule and nothing else. A node's available RAM is the smaller of MemAvailable and
 * (total - memory of defined Totebox domains), minus memory promised to confirmed creations that
 * its heartbeats do not reflect yet: guests that have not touched their memory still count (the
 * Shaken Fist lesson). Candidates are nodes that are alive (healthy libvirt) with a heartbeat no
 * older than two intervals, holding the plan's image (or never having said which images they
 * hold); a VM fits where available - memory >= the safety margin. The most
 * available RAM wins; ties go to the smallest node id. Pure functions of the table and "now". */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/json_input.h"
#include "fleetd/fleetd.h"

static const char *const cand_reasons[] = {
    [CAND_CHOSEN] = "chosen: most available RAM among the nodes where the VM fits",
    [CAND_FITS] = "fits, but another node has more available RAM",
    [CAND_NOT_ALIVE] = "not alive (suspect or evicted)",
    [CAND_UNHEALTHY] = "unhealthy: vmhost's last successful libvirt call is too old",
    [CAND_STALE] = "last heartbeat older than two intervals",
    [CAND_NO_HEARTBEAT] = "no heartbeat received yet",
    [CAND_BELOW_MARGIN] = "not enough RAM: what is left after the VM would be below the "
                          "safety margin",
    [CAND_NO_IMAGE] = "does not hold the plan's image (fleetctl image push)",
};

const char *cand_verdict_reason(enum cand_verdict v)
{
        return cand_reasons[v];
}

void placement_check_node(const struct fleet_node *n, const struct fleetd_config *cfg,
                          uint64_t memory_mib, uint64_t now_ms, struct plan_candidate *c)
{
        c->state = node_state_at(n, cfg, now_ms);
        c->heartbeat_age_ms = n->seen ? node_heartbeat_age(n, now_ms) : 0;
        c->available_mib = n->seen ? node_available_mib(n) : 0;
        c->left_mib = c->available_mib - (int64_t)memory_mib;
        if (c->state == NODE_UNSEEN)
                c->verdict = CAND_NO_HEARTBEAT;
        else if (c->state == NODE_SUSPECT || c->state == NODE_EVICTED)
                c->verdict = CAND_NOT_ALIVE;
        else if (c->state == NODE_UNHEALTHY)
                c->verdict = CAND_UNHEALTHY;
        else if (c->heartbeat_age_ms > 2 * cfg->heartbeat_interval_ms)
                c->verdict = CAND_STALE;
        else if (c->left_mib < (int64_t)cfg->safety_margin_mib)
                c->verdict = CAND_BELOW_MARGIN;
        else
                c->verdict = CAND_FITS;
}

long placement_choose(const struct node_table *t, const struct fleetd_config *cfg,
                      const struct plan_request *req, uint64_t now_ms, struct plan_candidate *cands)
{
        long best = -1;

        for (size_t i = 0; i < t->roster->n_nodes; i++) {
                struct plan_candidate *c = &cands[i];

                if (i + 8 < t->roster->n_nodes) /* memory-bound: 10,000 nodes of 368 bytes */
                        __builtin_prefetch(&t->nodes[i + 8]);
                c->node = (uint32_t)i;
                placement_check_node(&t->nodes[i], cfg, req->memory_mib, now_ms, c);
                if (c->verdict == CAND_FITS && fleet_node_image(&t->nodes[i], req->image) == 0)
                        c->verdict = CAND_NO_IMAGE;
                if (c->verdict != CAND_FITS)
                        continue;
                if (best < 0 || c->available_mib > cands[best].available_mib ||
                    (c->available_mib == cands[best].available_mib &&
                     strcmp(t->roster->nodes[i].id, t->roster->nodes[best].id) < 0))
                        best = (long)i;
        }
        if (best >= 0)
                cands[best].verdict = CAND_CHOSEN;
        return best;
}

bool entity_valid(const char *s)
{
        size_t n = strlen(s);

        if (n == 0 || n > ENTITY_MAX || s[0] == '-' || s[n - 1] == '-')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
                        return false;
        return true;
}

static bool image_valid(const char *s)
{
        size_t n = strlen(s);

        if (n == 0 || n > IMAGE_MAX || s[0] == '.' || s[0] == '-')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                      (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_' || s[i] == '.'))
                        return false;
        return true;
}

static int plan_request_fields(const json_t *o, struct plan_request *p, struct json_input_error *e)
{
        static const char *const fields[] = {"entity", "memory_mib",     "vcpus",
                                             "image",  "vault_disk_mib", NULL};
        int r = 0;

        r = r ?: json_input_check_keys(o, fields, e);
        r = r ?: json_input_copy_string(o, "entity", true, p->entity, sizeof(p->entity), e);
        r = r ?: json_input_get_uint(o, "memory_mib", true, 64, 1048576, &p->memory_mib, e);
        r = r ?: json_input_get_uint(o, "vcpus", true, 1, 256, &p->vcpus, e);
        r = r ?: json_input_copy_string(o, "image", true, p->image, sizeof(p->image), e);
        r = r
                ?: json_input_get_uint(o, "vault_disk_mib", true, 16, 16777216, &p->vault_disk_mib,
                                       e);
        if (r < 0)
                return r;
        if (!entity_valid(p->entity))
                return json_input_fail(e,
                                       "field 'entity' must be 1..%d of [a-z0-9-], not "
                                       "starting or ending with '-'",
                                       ENTITY_MAX);
        if (!image_valid(p->image))
                return json_input_fail(e, "field 'image' must be a name of [A-Za-z0-9._-]");
        return 0;
}

int plan_request_parse(const char *body, size_t len, unsigned max_depth, struct plan_request *ret,
                       char *err, size_t errsize)
{
        struct json_input_error e = {{0}};
        struct plan_request p = {{0}};
        json_t *o = json_input_parse(body, len, len + 1, max_depth, &e);
        int r = o ? plan_request_fields(o, &p, &e) : -EINVAL;

        json_decref(o);
        if (r < 0) {
                snprintf(err, errsize, "%s", e.text);
                return r;
        }
        *ret = p;
        return 0;
}
