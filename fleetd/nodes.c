/* The node table: one entry per roster node, fed by heartbeats. A heartbeat counts only when the
 * roster maps its source address to the node id it names, and when it is newer than the last. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleetd/fleetd.h"

static const char *const node_state_names[] = {"unseen", "alive", "suspect", "evicted"};
static const char *const hb_drop_names[] = {"malformed", "oversized", "unknown_address",
                                            "node_mismatch", "replayed"};

const char *node_state_name(enum node_state s)
{
        return node_state_names[s];
}

const char *hb_drop_name(enum hb_drop d)
{
        return hb_drop_names[d];
}

int node_table_init(struct node_table *t, struct roster *roster)
{
        memset(t, 0, sizeof(*t));
        t->nodes = calloc(roster->n_nodes ? roster->n_nodes : 1, sizeof(*t->nodes));
        if (!t->nodes)
                return -ENOMEM;
        t->roster = roster;
        for (size_t i = 0; i < roster->n_nodes; i++)
                t->nodes[i].rn = &roster->nodes[i];
        return 0;
}

void node_table_done(struct node_table *t)
{
        free(t->nodes);
        roster_free(t->roster);
        memset(t, 0, sizeof(*t));
}

static int node_table_drop(struct node_table *t, enum hb_drop reason)
{
        t->dropped[reason]++;
        return -(1 + (int)reason);
}

int node_table_ingest(struct node_table *t, const char *buf, size_t len, struct in_addr src,
                      uint64_t now_ms, char *err, size_t errsize)
{
        const struct roster_node *rn;
        struct fleet_node *n;
        struct heartbeat hb;

        t->received++;
        if (len > HEARTBEAT_MAX_BYTES) {
                snprintf(err, errsize, "datagram of %zu bytes exceeds %d", len,
                         HEARTBEAT_MAX_BYTES);
                return node_table_drop(t, HB_DROP_OVERSIZED);
        }
        rn = roster_find_by_address(t->roster, src);
        if (!rn) {
                snprintf(err, errsize, "address is not in the roster");
                return node_table_drop(t, HB_DROP_UNKNOWN_ADDRESS);
        }
        if (heartbeat_decode(buf, len, &hb, err, errsize) < 0)
                return node_table_drop(t, HB_DROP_MALFORMED);
        if (strcmp(hb.node_id, rn->id) != 0) {
                snprintf(err, errsize, "names node '%s' but the roster says '%s'", hb.node_id,
                         rn->id);
                return node_table_drop(t, HB_DROP_NODE_MISMATCH);
        }
        n = &t->nodes[rn - t->roster->nodes];
        if (n->seen && (hb.epoch < n->hb.epoch || (hb.epoch == n->hb.epoch && hb.seq <= n->hb.seq))) {
                snprintf(err, errsize, "epoch %llu seq %llu is not newer than %llu/%llu",
                         (unsigned long long)hb.epoch, (unsigned long long)hb.seq,
                         (unsigned long long)n->hb.epoch, (unsigned long long)n->hb.seq);
                return node_table_drop(t, HB_DROP_REPLAYED);
        }
        n->hb = hb;
        n->seen = true;
        n->last_seen_ms = now_ms;
        n->heartbeats++;
        t->accepted++;
        return 0;
}

enum node_state node_state_at(const struct fleet_node *n, const struct fleetd_config *cfg,
                              uint64_t now_ms)
{
        uint64_t age;

        if (!n->seen)
                return NODE_UNSEEN;
        age = now_ms > n->last_seen_ms ? now_ms - n->last_seen_ms : 0;
        if (age > cfg->evict_after_ms)
                return NODE_EVICTED;
        if (age > cfg->suspect_after_ms)
                return NODE_SUSPECT;
        return NODE_ALIVE;
}
