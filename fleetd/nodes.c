/* The node table: one entry per roster node, fed by heartbeats. A heartbeat counts only when the
 * roster maps its source address to the node id it names, and when it is newer than the last.
 * An id index (sorted, bsearch) gives O(log n) lookups by node id; the roster's own is linear.
 * When the inventory digest changes, the node is marked for an inventory fetch. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "fleetd/fleetd.h"

static const char *const node_state_names[] = {"unseen", "alive", "unhealthy", "suspect",
                                               "evicted"};
static const char *const hb_drop_names[] = {
    "malformed", "oversized", "unknown_address", "node_mismatch", "replayed", "version", "revoked"};

const char *node_state_name(enum node_state s)
{
        return node_state_names[s];
}

const char *hb_drop_name(enum hb_drop d)
{
        return hb_drop_names[d];
}

const char *node_absent_name(const struct node_table *t, const char *id)
{
        return t->roster && roster_find_revoked(t->roster, id) ? "removed" : "not-in-roster";
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
                        json_decref(t->nodes[i].images);
                        free(t->nodes[i].history);
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
        t->newer = old->newer;
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
                n->images = json_incref(o->images);
                /* the history moves: the old table is freed next (node_table_done) */
                ((struct fleet_node *)o)->history = NULL;
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

#define NODE_RESET_BEATS 3 /* heartbeats in a row of one boot with a lower counter: a reset */

/* A heartbeat whose creation counter is lower than the one of the figures fleetd holds was
 * sampled before them (the counter never goes back; an earlier boot's datagram may arrive late):
 * it counts for liveness, but the newer figures stay, so that no reservation released against
 * them comes back uncovered. When one boot keeps sending lower counters, the node lost its
 * counter file: its figures are taken and every reservation on the node is taken again, as
 * after a fleetd restart (vm_settle_node). */
static void node_keep_figures(struct heartbeat *hb, const struct node_figures *old)
{
        hb->mem_total_mib = old->mem_total_mib;
        hb->mem_available_mib = old->mem_available_mib;
        hb->mem_committed_mib = old->mem_committed_mib;
        hb->creations = old->creations;
}

static int node_table_drop(struct node_table *t, enum hb_drop reason)
{
        t->dropped[reason]++;
        return -(1 + (int)reason);
}

static bool node_boot_same(const struct node_boot *b, const struct heartbeat *hb)
{
        return b->last_ms && b->epoch == hb->epoch && strcmp(b->boot, hb->boot) == 0;
}

/* The slot a new boot takes: a free one, else the least recently heard, but never the boot
 * that has been heard most (the node's real one), so that no datagram, nor a handful of
 * datagrams naming fresh boots, pushes out the boot whose heartbeats keep coming. */
static struct node_boot *node_boot_slot(struct fleet_node *n)
{
        struct node_boot *est = &n->boots[0], *lru = NULL;

        for (unsigned i = 0; i < NODE_BOOTS; i++) {
                if (!n->boots[i].last_ms)
                        return &n->boots[i];
                if (n->boots[i].accepted > est->accepted)
                        est = &n->boots[i];
        }
        for (unsigned i = 0; i < NODE_BOOTS; i++)
                if (&n->boots[i] != est && (!lru || n->boots[i].last_ms < lru->last_ms))
                        lru = &n->boots[i];
        return lru;
}

/* Replay check. Within a known boot, seq must grow. A boot not known is a restart: it is
 * taken only with a fresh seq, at most NODE_FRESH_SEQ plus two per interval of the node's
 * silence (a vmhost that restarted while fleetd could not hear it has counted on), so an old
 * boot's datagram replayed later is refused. Neither the epoch's value nor the node's clock
 * orders anything: a far-future epoch is just another boot. */
static struct node_boot *node_boot_admit(struct fleet_node *n, const struct heartbeat *hb,
                                         uint64_t now_ms, char *err, size_t errsize)
{
        uint64_t interval = n->hb.interval_ms >= 100 ? n->hb.interval_ms : 100, fresh;
        struct node_boot *b;

        if (!n->seen)
                memset(n->boots, 0, sizeof(n->boots));
        for (unsigned i = 0; i < NODE_BOOTS; i++) {
                b = &n->boots[i];
                if (!node_boot_same(b, hb))
                        continue;
                if (hb->seq > b->seq)
                        return b;
                snprintf(err, errsize, "seq %llu of boot '%s' epoch %llu is not newer than %llu",
                         (unsigned long long)hb->seq, hb->boot, (unsigned long long)hb->epoch,
                         (unsigned long long)b->seq);
                return NULL;
        }
        fresh = NODE_FRESH_SEQ + 2 * (node_heartbeat_age(n, now_ms) / interval);
        if (n->seen && hb->seq > fresh) {
                snprintf(err, errsize,
                         "new boot '%s' epoch %llu starts at seq %llu, past the fresh bound %llu",
                         hb->boot, (unsigned long long)hb->epoch, (unsigned long long)hb->seq,
                         (unsigned long long)fresh);
                return NULL;
        }
        b = node_boot_slot(n);
        *b = (struct node_boot){.epoch = hb->epoch};
        memcpy(b->boot, hb->boot, sizeof(b->boot));
        return b;
}

/* Samples per node for a fleet of n nodes: NODE_HISTORY_MAX while the whole history fits in
 * NODE_HISTORY_BUDGET, else as many as fit (at least NODE_HISTORY_MIN). */
unsigned node_history_capacity(size_t n)
{
        size_t per = NODE_HISTORY_BUDGET / (n ? n : 1) / sizeof(struct node_sample);

        return per >= NODE_HISTORY_MAX   ? NODE_HISTORY_MAX
               : per <= NODE_HISTORY_MIN ? NODE_HISTORY_MIN
                                         : (unsigned)per;
}

/* One sample per heartbeat interval (a tenth early for jitter) -- per NODE_HISTORY_MAX /
 * capacity intervals when the ring is smaller -- so that it spans NODE_HISTORY_MAX intervals
 * however fast datagrams come. Without memory, no history. */
static void node_history_add(struct fleet_node *n, size_t fleet_size, uint64_t now_ms)
{
        struct node_history *h = n->history;
        uint64_t step;
        double cpu = n->hb.cpu_percent * 100.0;

        if (!h) {
                unsigned cap = node_history_capacity(fleet_size);

                h = n->history = calloc(1, sizeof(*h) + cap * sizeof(h->s[0]));
                if (!h)
                        return;
                h->capacity = cap;
        }
        step = n->hb.interval_ms / 10 * 9 * (NODE_HISTORY_MAX / h->capacity);
        if (h->count &&
            now_ms < (uint64_t)h->s[(h->next + h->capacity - 1) % h->capacity].at_ds * 100 + step)
                return;
        h->total_mib = (uint32_t)n->hb.mem_total_mib;
        h->s[h->next] = (struct node_sample){(uint32_t)(now_ms / 100),
                                             (uint16_t)(cpu < 0       ? 0
                                                        : cpu > 10000 ? 10000
                                                                      : cpu + 0.5),
                                             0, (uint32_t)n->hb.mem_available_mib,
                                             (uint32_t)n->hb.mem_committed_mib};
        h->next = (h->next + 1) % h->capacity;
        if (h->count < h->capacity)
                h->count++;
}

json_t *node_history_json(const struct fleet_node *n, uint64_t now_ms, uint64_t wall_ms,
                          uint64_t window_ms)
{
        const struct node_history *h = n->history;
        json_t *a = json_array();
        unsigned first = h ? (h->next + h->capacity - h->count) % h->capacity : 0;

        for (unsigned i = 0; h && a && i < h->count; i++) {
                const struct node_sample *p = &h->s[(first + i) % h->capacity];
                uint64_t at_ms = (uint64_t)p->at_ds * 100;
                uint64_t age = now_ms > at_ms ? now_ms - at_ms : 0;
                char when[40];

                if (age > window_ms || age > wall_ms)
                        continue;
                clock_format_rfc3339(wall_ms - age, when, sizeof(when));
                json_array_append_new(a, json_pack("{s:s, s:f, s:I, s:I, s:I}", "at", when,
                                                   "cpu_percent", p->cpu_centi / 100.0,
                                                   "available_mib", (json_int_t)p->available_mib,
                                                   "committed_mib", (json_int_t)p->committed_mib,
                                                   "total_mib", (json_int_t)h->total_mib));
        }
        return a;
}

int node_table_ingest(struct node_table *t, const char *buf, size_t len, struct in_addr src,
                      uint64_t now_ms, char *err, size_t errsize)
{
        const struct roster_node *rn;
        struct fleet_node *n;
        struct node_boot *boot;
        struct heartbeat hb;

        t->received++;
        if (len > HEARTBEAT_MAX_BYTES) {
                snprintf(err, errsize, "datagram of %zu bytes exceeds %d", len,
                         HEARTBEAT_MAX_BYTES);
                return node_table_drop(t, HB_DROP_OVERSIZED);
        }
        rn = roster_find_by_address(t->roster, src);
        if (!rn && roster_find_revoked_by_address(t->roster, src)) {
                snprintf(err, errsize, "node '%s' was removed from the roster",
                         roster_find_revoked_by_address(t->roster, src)->id);
                return node_table_drop(t, HB_DROP_REVOKED);
        }
        if (!rn) {
                snprintf(err, errsize, "address is not in the roster");
                return node_table_drop(t, HB_DROP_UNKNOWN_ADDRESS);
        }
        if (!heartbeat_decode_fast(buf, len, &hb)) {
                int r = heartbeat_decode(buf, len, &hb, err, errsize);

                if (r < 0)
                        return node_table_drop(t,
                                               r == -EPROTO ? HB_DROP_VERSION : HB_DROP_MALFORMED);
        }
        if (strcmp(hb.node_id, rn->id) != 0) {
                snprintf(err, errsize, "names node '%s' but the roster says '%s'", hb.node_id,
                         rn->id);
                return node_table_drop(t, HB_DROP_NODE_MISMATCH);
        }
        n = &t->nodes[rn - t->roster->nodes];
        boot = node_boot_admit(n, &hb, now_ms, err, errsize);
        if (!boot)
                return node_table_drop(t, HB_DROP_REPLAYED);
        boot->seq = hb.seq;
        boot->accepted++;
        boot->last_ms = now_ms ? now_ms : 1;
        if (strcmp(hb.inventory_digest, n->inv_digest) != 0 && n->inv != INV_WANTED &&
            n->inv != INV_FAILED) {
                n->inv = INV_WANTED;
                n->inv_next_ms = now_ms;
        }
        if (n->seen && hb.creations < n->hb.creations) {
                unsigned slot = (unsigned)(boot - n->boots);

                n->low_beats = n->low_beats && n->low_boot == slot ? n->low_beats + 1 : 1;
                n->low_boot = slot;
                if (n->low_beats < NODE_RESET_BEATS) {
                        node_keep_figures(&hb, &n->hb);
                } else {
                        n->counter_reset = true;
                        n->low_beats = 0;
                }
        } else {
                n->low_beats = 0;
        }
        n->hb = (struct node_figures){.epoch = hb.epoch,
                                      .seq = hb.seq,
                                      .interval_ms = hb.interval_ms,
                                      .mem_total_mib = hb.mem_total_mib,
                                      .mem_available_mib = hb.mem_available_mib,
                                      .mem_committed_mib = hb.mem_committed_mib,
                                      .libvirt_age_ms = hb.libvirt_age_ms,
                                      .creations = hb.creations,
                                      .disk_free_mib = hb.disk_free_mib,
                                      .cpu_percent = hb.cpu_percent,
                                      .cpus = hb.cpus,
                                      .vm_count = hb.vm_count,
                                      .disk_known = hb.disk_known};
        memcpy(n->hb.inventory_digest, hb.inventory_digest, sizeof(n->hb.inventory_digest));
        node_refresh_figures(n);
        n->seen = true;
        n->last_seen_ms = now_ms;
        n->heartbeats++;
        node_history_add(n, t->roster->n_nodes, now_ms);
        t->accepted++;
        t->newer += hb.version > HEARTBEAT_VERSION;
        t->last_accepted = (uint32_t)(rn - t->roster->nodes);
        return 0;
}
