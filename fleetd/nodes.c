/* The node table: one entry per roster node, fed by heartbeats. A heartbeat counts only when the
 * roster maps its source address to the node id it names, and when it is newer than the last.
 * An id index (sorted, bsearch) gives O(log n) lookups by node id; the roster's own is linear.
 * When the inventory digest changes, the node is marked for an inventory fetch. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleetd/fleetd.h"

static const char *const node_state_names[] = {"unseen", "alive", "unhealthy", "suspect",
                                               "evicted"};
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

static int node_id_index_cmp(const void *a, const void *b)
{
        return strcmp(((const struct node_id_index *)a)->id, ((const struct node_id_index *)b)->id);
}

int node_table_init(struct node_table *t, struct roster *roster)
{
        size_t n = roster->n_nodes ? roster->n_nodes : 1;

        memset(t, 0, sizeof(*t));
        t->nodes = calloc(n, sizeof(*t->nodes));
        t->by_id = calloc(n, sizeof(*t->by_id));
        if (!t->nodes || !t->by_id) {
                free(t->nodes);
                free(t->by_id);
                t->nodes = NULL;
                t->by_id = NULL;
                return -ENOMEM;
        }
        t->roster = roster;
        for (size_t i = 0; i < roster->n_nodes; i++) {
                t->nodes[i].rn = &roster->nodes[i];
                t->by_id[i].id = roster->nodes[i].id;
                t->by_id[i].node = (uint32_t)i;
        }
        qsort(t->by_id, roster->n_nodes, sizeof(*t->by_id), node_id_index_cmp);
        return 0;
}

void node_table_done(struct node_table *t)
{
        if (t->nodes && t->roster)
                for (size_t i = 0; i < t->roster->n_nodes; i++) {
                        json_decref(t->nodes[i].unknown_vms);
                        json_decref(t->nodes[i].misplaced_vms);
                }
        free(t->nodes);
        free(t->by_id);
        roster_free(t->roster);
        memset(t, 0, sizeof(*t));
}

struct fleet_node *node_table_find(const struct node_table *t, const char *id)
{
        struct node_id_index key = {.id = id};
        const struct node_id_index *hit;

        if (!t->roster)
                return NULL;
        hit = bsearch(&key, t->by_id, t->roster->n_nodes, sizeof(key), node_id_index_cmp);
        return hit ? &t->nodes[hit->node] : NULL;
}

void node_table_carry(struct node_table *t, const struct node_table *old)
{
        t->received = old->received;
        t->accepted = old->accepted;
        memcpy(t->dropped, old->dropped, sizeof(t->dropped));
        for (size_t i = 0; old->roster && i < old->roster->n_nodes; i++) {
                const struct fleet_node *o = &old->nodes[i];
                struct fleet_node *n = node_table_find(t, o->rn->id);
                const struct roster_node *rn;

                if (!n)
                        continue;
                rn = n->rn;
                *n = *o;
                n->rn = rn;
                n->unknown_vms = json_incref(o->unknown_vms);
                n->misplaced_vms = json_incref(o->misplaced_vms);
                /* a node that moved to another address must prove itself again */
                if (strcmp(rn->mesh_address, o->rn->mesh_address) != 0)
                        n->inv = n->seen ? INV_WANTED : INV_NONE;
        }
}

void node_refresh_figures(struct fleet_node *n)
{
        int64_t by_commit = (int64_t)n->hb.mem_total_mib - (int64_t)n->hb.mem_committed_mib;
        int64_t avail = (int64_t)n->hb.mem_available_mib;

        n->hb_avail_mib = by_commit < avail ? by_commit : avail;
        n->hb_libvirt_age_ms = n->hb.libvirt_age_ms;
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
        if (!heartbeat_decode_fast(buf, len, &hb) &&
            heartbeat_decode(buf, len, &hb, err, errsize) < 0)
                return node_table_drop(t, HB_DROP_MALFORMED);
        if (strcmp(hb.node_id, rn->id) != 0) {
                snprintf(err, errsize, "names node '%s' but the roster says '%s'", hb.node_id,
                         rn->id);
                return node_table_drop(t, HB_DROP_NODE_MISMATCH);
        }
        n = &t->nodes[rn - t->roster->nodes];
        if (n->seen &&
            (hb.epoch < n->hb.epoch || (hb.epoch == n->hb.epoch && hb.seq <= n->hb.seq))) {
                snprintf(err, errsize, "epoch %llu seq %llu is not newer than %llu/%llu",
                         (unsigned long long)hb.epoch, (unsigned long long)hb.seq,
                         (unsigned long long)n->hb.epoch, (unsigned long long)n->hb.seq);
                return node_table_drop(t, HB_DROP_REPLAYED);
        }
        if (strcmp(hb.inventory_digest, n->inv_digest) != 0 && n->inv != INV_WANTED &&
            n->inv != INV_FAILED) {
                n->inv = INV_WANTED;
                n->inv_next_ms = now_ms;
        }
        n->hb = hb;
        node_refresh_figures(n);
        n->seen = true;
        n->last_seen_ms = now_ms;
        n->heartbeats++;
        t->accepted++;
        return 0;
}
