/* Placement: the rule and nothing else. A node's available RAM is the smaller of MemAvailable and
 * (total - memory of defined Totebox domains), minus memory promised to confirmed creations that
 * its heartbeats do not reflect yet: guests that have not touched their memory still count (the
 * Shaken Fist lesson). Candidates are nodes that are alive (healthy libvirt) with a heartbeat no
 * older than two intervals, holding the plan's image (or never having said which images they
 * hold); a VM fits where available - memory >= the safety margin. Among the nodes where it fits,
 * the operator's policy (placement_prefer_roles) ranks the roles first (by default an
 * on-premises node before the cloud node); within the best tier the most available RAM wins;
 * ties go to the smallest node id. Pure functions of the table, the config and "now". */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/json_input.h"
#include "fleetd/fleetd.h"

static const char *const cand_reasons[] = {
    [CAND_CHOSEN] = "chosen: most available RAM among the nodes where the VM fits",
    [CAND_FITS] = "fits, but another node has more available RAM",
    [CAND_FITS_ROLE] = "fits, but a node of a role placement_prefer_roles puts first fits too",
    [CAND_NOT_ALIVE] = "not alive (suspect or evicted)",
    [CAND_UNHEALTHY] = "unhealthy: vmhost's last successful libvirt call is too old",
    [CAND_STALE] = "last heartbeat older than two intervals",
    [CAND_NO_HEARTBEAT] = "no heartbeat received yet",
    [CAND_BELOW_MARGIN] = "not enough RAM: what is left after the VM would be below the "
                          "safety margin",
    [CAND_NO_DISK] = "not enough disk: the room for VM disks left after the vault disk and the "
                     "copy-on-write allowance would be below disk_margin_mib",
    [CAND_NO_IMAGE] = "does not hold the plan's image (fleetctl image push)",
};

const char *cand_verdict_reason(enum cand_verdict v)
{
        return cand_reasons[v];
}

/* Calls fn(role, tier) for each role the policy names; stops at fn's first non-zero. */
static int placement_policy_walk(const char *policy, int (*fn)(void *, const char *, unsigned),
                                 void *ctx)
{
        char word[16];
        unsigned tier = 0;
        size_t n = 0;

        for (const char *p = policy;; p++) {
                if (*p != ',' && *p != '+' && *p != '\0' && *p != ' ') {
                        if (n + 1 < sizeof(word))
                                word[n] = *p;
                        n++;
                        continue;
                }
                if (n) {
                        int r;

                        word[n < sizeof(word) ? n : sizeof(word) - 1] = '\0';
                        r = fn(ctx, word, tier);
                        if (r)
                                return r;
                }
                n = 0;
                if (*p == ',')
                        tier++;
                if (*p == '\0')
                        return 0;
        }
}

struct policy_find {
        enum roster_role role;
        unsigned tier, tiers;
        bool found;
        unsigned seen; /* bit per role, for the check */
        char *err;
        size_t errsize;
};

static int policy_find_one(void *ctx, const char *word, unsigned tier)
{
        struct policy_find *q = ctx;
        enum roster_role r;

        q->tiers = tier + 1;
        if (!q->found && roster_role_parse(word, &r) == 0 && r == q->role) {
                q->tier = tier;
                q->found = true;
        }
        return 0;
}

unsigned placement_role_tier(const char *policy, enum roster_role role)
{
        struct policy_find q = {.role = role};

        placement_policy_walk(policy, policy_find_one, &q);
        return q.found ? q.tier : q.tiers;
}

static int policy_check_one(void *ctx, const char *word, unsigned tier)
{
        struct policy_find *q = ctx;
        enum roster_role r;

        (void)tier;
        if (roster_role_parse(word, &r) < 0) {
                snprintf(q->err, q->errsize, "unknown node role '%s' (node, relay or cloud)", word);
                return -EINVAL;
        }
        if (q->seen & (1u << r)) {
                snprintf(q->err, q->errsize, "node role '%s' is named twice", word);
                return -EINVAL;
        }
        q->seen |= 1u << r;
        return 0;
}

int placement_policy_check(const char *policy, char *err, size_t errsize)
{
        struct policy_find q = {.err = err, .errsize = errsize};

        return placement_policy_walk(policy, policy_check_one, &q);
}

void placement_check_node(const struct fleet_node *n, const struct fleetd_config *cfg,
                          const struct plan_request *req, uint64_t now_ms, struct plan_candidate *c)
{
        bool disk = n->seen && n->hb.disk_known;

        c->state = node_state_at(n, cfg, now_ms);
        c->heartbeat_age_ms = n->seen ? node_heartbeat_age(n, now_ms) : 0;
        c->available_mib = n->seen ? node_available_mib(n) : 0;
        c->left_mib = c->available_mib - (int64_t)req->memory_mib;
        c->disk_known = disk;
        c->disk_free_mib = disk ? (int64_t)n->hb.disk_free_mib - (int64_t)n->reserved_disk_mib : 0;
        c->disk_left_mib = c->disk_free_mib - (int64_t)placement_disk_mib(cfg, req->vault_disk_mib);
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
        else if (disk && c->disk_left_mib < (int64_t)cfg->disk_margin_mib)
                c->verdict = CAND_NO_DISK;
        else
                c->verdict = CAND_FITS;
}

long placement_choose(const struct node_table *t, const struct fleetd_config *cfg,
                      const struct plan_request *req, uint64_t now_ms, struct plan_candidate *cands)
{
        unsigned tiers[ROSTER_ROLE_CLOUD + 1];
        long best = -1;

        for (unsigned r = 0; r <= ROSTER_ROLE_CLOUD; r++)
                tiers[r] = placement_role_tier(cfg->placement_prefer_roles, (enum roster_role)r);
        for (size_t i = 0; i < t->roster->n_nodes; i++) {
                struct plan_candidate *c = &cands[i];

                if (i + 8 < t->roster->n_nodes) /* memory-bound: 10,000 nodes of 368 bytes */
                        __builtin_prefetch(&t->nodes[i + 8]);
                c->node = (uint32_t)i;
                placement_check_node(&t->nodes[i], cfg, req, now_ms, c);
                if (c->verdict == CAND_FITS && fleet_node_image(&t->nodes[i], req->image) == 0)
                        c->verdict = CAND_NO_IMAGE;
                c->tier = tiers[t->roster->nodes[i].role];
                if (c->verdict != CAND_FITS)
                        continue;
                if (best < 0 || c->tier < cands[best].tier ||
                    (c->tier == cands[best].tier &&
                     (c->available_mib > cands[best].available_mib ||
                      (c->available_mib == cands[best].available_mib &&
                       strcmp(t->roster->nodes[i].id, t->roster->nodes[best].id) < 0))))
                        best = (long)i;
        }
        if (best < 0)
                return best;
        for (size_t i = 0; i < t->roster->n_nodes; i++)
                if (cands[i].verdict == CAND_FITS && cands[i].tier > cands[best].tier)
                        cands[i].verdict = CAND_FITS_ROLE;
        cands[best].verdict = CAND_CHOSEN;
        return best;
}

static int plan_request_fields(const json_t *o, struct plan_request *p, struct json_input_error *e)
{
        static const char *const fields[] = {"entity",         "memory_mib", "vcpus", "image",
                                             "vault_disk_mib", "node",       NULL};
        int r = 0;

        r = r ?: json_input_check_keys(o, fields, e);
        r = r
                ?: json_input_copy_id(o, "entity", true, IDENT_ENTITY, p->entity, sizeof(p->entity),
                                      e);
        r = r ?: json_input_get_uint(o, "memory_mib", true, 64, 1048576, &p->memory_mib, e);
        r = r ?: json_input_get_uint(o, "vcpus", true, 1, 256, &p->vcpus, e);
        r = r ?: json_input_copy_id(o, "image", true, IDENT_IMAGE, p->image, sizeof(p->image), e);
        r = r
                ?: json_input_get_uint(o, "vault_disk_mib", true, 16, 16777216, &p->vault_disk_mib,
                                       e);
        r = r ?: json_input_copy_id(o, "node", false, IDENT_NODE, p->node, sizeof(p->node), e);
        return r;
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
