/* Liveness: a node's state is a pure function of its last heartbeat and "now" (node_state_at,
 * inline in fleetd.h because placement scans every node with it; unit tests drive it with a fake
 * clock). Silent for more than suspect_after plus a quarter interval of jitter: suspect; more than
 * evict_after: evicted; heartbeats arriving but libvirt_age_ms older than 3 intervals (or no
 * libvirt call yet): unhealthy. The tick notices changes and logs and audits each one once. */
#include <errno.h>
#include <stdlib.h>

#include "common/log.h"
#include "fleetd/store.h"

struct liveness_event {
        uint32_t node;
        enum node_state from, to;
        uint64_t age_ms;
        int64_t libvirt_age_ms;
};

static void liveness_report(struct fleetd *f, const struct liveness_event *ev, size_t n)
{
        int r = f->store ? store_begin(f->store) : -ENODEV;

        for (size_t i = 0; i < n; i++) {
                const char *id = f->table.roster->nodes[ev[i].node].id;

                log_info("node '%s' is now '%s' (was '%s'; last heartbeat %llu ms ago, libvirt "
                         "age %lld ms)",
                         id, node_state_name(ev[i].to), node_state_name(ev[i].from),
                         (unsigned long long)ev[i].age_ms, (long long)ev[i].libvirt_age_ms);
                if (r == 0)
                        audit_append(f->store, true, "node.state", id, "fleetd",
                                     json_pack("{s:s, s:s, s:I, s:I}", "from",
                                               node_state_name(ev[i].from), "to",
                                               node_state_name(ev[i].to), "heartbeat_age_ms",
                                               (json_int_t)ev[i].age_ms, "libvirt_age_ms",
                                               (json_int_t)ev[i].libvirt_age_ms));
        }
        if (r == 0 && store_commit(f->store) < 0)
                log_error("cannot record %zu node state changes in the audit record", n);
}

unsigned liveness_tick(struct fleetd *f, uint64_t now_ms)
{
        struct liveness_event *ev = NULL;
        size_t n = 0, cap = 0;

        pthread_mutex_lock(&f->lock);
        for (size_t i = 0; f->table.roster && i < f->table.roster->n_nodes; i++) {
                struct fleet_node *node = &f->table.nodes[i];
                enum node_state s = node_state_at(node, &f->cfg, now_ms);

                if (s == node->reported)
                        continue;
                if (n == cap) {
                        size_t nc = cap ? cap * 2 : 64;
                        struct liveness_event *ne = realloc(ev, nc * sizeof(*ev));

                        if (!ne)
                                break; /* the rest is noticed on the next tick */
                        ev = ne;
                        cap = nc;
                }
                ev[n++] = (struct liveness_event){(uint32_t)i, node->reported, s,
                                                  node_heartbeat_age(node, now_ms),
                                                  node->hb.libvirt_age_ms};
                f->metrics.state_change[node->reported][s]++;
                node->reported = s;
        }
        f->metrics.state_changes += n;
        if (n)
                liveness_report(f, ev, n);
        pthread_mutex_unlock(&f->lock);
        free(ev);
        return (unsigned)n;
}
