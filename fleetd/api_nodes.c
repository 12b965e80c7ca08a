/* GET /v1/nodes and /v1/nodes/{id}: the node table as the operator sees it: liveness, figures,
 * available RAM after reservations, and what the last inventory flagged. */
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "fleetd/api.h"

static const char *const inventory_names[] = {"none", "pending", "ok", "unavailable"};

/* A growing text buffer; an allocation failure sticks (oom) and is checked once at the end. */
struct api_buf {
        char *p;
        size_t len, cap;
        bool oom;
};

static void ab_put(struct api_buf *b, const char *s, size_t n)
{
        if (b->oom)
                return;
        if (b->len + n + 1 > b->cap) {
                size_t cap = b->cap ? b->cap : 4096;
                char *np;

                while (cap < b->len + n + 1)
                        cap *= 2;
                np = realloc(b->p, cap);
                if (!np) {
                        b->oom = true;
                        return;
                }
                b->p = np;
                b->cap = cap;
        }
        memcpy(b->p + b->len, s, n);
        b->len += n;
        b->p[b->len] = '\0';
}

static void ab_lit(struct api_buf *b, const char *s)
{
        ab_put(b, s, strlen(s));
}

static void ab_printf(struct api_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void ab_printf(struct api_buf *b, const char *fmt, ...)
{
        char tmp[64];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
        va_end(ap);
        if (n > 0)
                ab_put(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* A JSON string, escaped as jansson escapes it (the input is valid UTF-8: roster and inventory
 * text went through jansson). */
static void ab_str(struct api_buf *b, const char *s)
{
        const char *run = s;

        ab_put(b, "\"", 1);
        for (; *s; s++) {
                unsigned char c = (unsigned char)*s;
                static const char esc[] = {['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r',
                                           ['\t'] = 't', ['"'] = '"',  ['\\'] = '\\'};

                if (c >= 0x20 && c != '"' && c != '\\')
                        continue;
                ab_put(b, run, (size_t)(s - run));
                if (c < sizeof(esc) && esc[c])
                        ab_printf(b, "\\%c", esc[c]);
                else
                        ab_printf(b, "\\u%04X", c);
                run = s + 1;
        }
        ab_put(b, run, (size_t)(s - run));
        ab_put(b, "\"", 1);
}

/* A real as jansson writes it: %.17g, with ".0" when that reads as an integer. */
static void ab_real(struct api_buf *b, double v)
{
        char tmp[40];
        int n = snprintf(tmp, sizeof(tmp), "%.17g", v);

        ab_put(b, tmp, (size_t)n);
        if (!strpbrk(tmp, ".eE"))
                ab_lit(b, ".0");
}

/* One node as JSON (the same fields, in the same order, as schemas' Node). */
static void api_node_write(struct api_buf *b, const struct fleet_node *n,
                           const struct fleetd_config *cfg, uint64_t now_ms)
{
        const struct roster_node *rn = n->rn;
        enum node_state s = node_state_at(n, cfg, now_ms);
        size_t nu = json_array_size(n->unknown_vms);

        ab_lit(b, "{\"id\":");
        ab_str(b, rn->id);
        ab_lit(b, ",\"name\":");
        ab_str(b, rn->name);
        ab_lit(b, ",\"role\":");
        ab_str(b, roster_role_name(rn->role));
        ab_lit(b, ",\"mesh_address\":");
        ab_str(b, rn->mesh_address);
        ab_printf(b, ",\"state\":\"%s\",\"placeable\":%s,\"reserved_mib\":%llu", node_state_name(s),
                  s == NODE_ALIVE ? "true" : "false", (unsigned long long)n->reserved_mib);
        ab_printf(b, ",\"inventory\":\"%s\",\"unknown_vms\":[", inventory_names[n->inv]);
        for (size_t i = 0; i < nu; i++) {
                if (i)
                        ab_put(b, ",", 1);
                ab_str(b, json_string_value(json_array_get(n->unknown_vms, i)) ?: "");
        }
        ab_lit(b, "],\"misplaced_vms\":[");
        for (size_t i = 0; i < json_array_size(n->misplaced_vms); i++) {
                if (i)
                        ab_put(b, ",", 1);
                ab_str(b, json_string_value(json_array_get(n->misplaced_vms, i)) ?: "");
        }
        if (!n->seen) {
                ab_lit(b, "],\"heartbeat_age_ms\":null}");
                return;
        }
        ab_printf(b, "],\"heartbeat_age_ms\":%llu,\"heartbeats\":%llu",
                  (unsigned long long)node_heartbeat_age(n, now_ms),
                  (unsigned long long)n->heartbeats);
        ab_printf(b, ",\"epoch\":%llu", (unsigned long long)n->hb.epoch);
        ab_printf(b, ",\"seq\":%llu,\"cpus\":%u,\"cpu_percent\":", (unsigned long long)n->hb.seq,
                  n->hb.cpus);
        ab_real(b, n->hb.cpu_percent);
        ab_printf(b, ",\"mem_total_mib\":%llu", (unsigned long long)n->hb.mem_total_mib);
        ab_printf(b, ",\"mem_available_mib\":%llu", (unsigned long long)n->hb.mem_available_mib);
        ab_printf(b, ",\"mem_committed_mib\":%llu", (unsigned long long)n->hb.mem_committed_mib);
        ab_printf(b, ",\"available_mib\":%lld", (long long)node_available_mib(n));
        if (n->hb.disk_known)
                ab_printf(b, ",\"disk_free_mib\":%llu", (unsigned long long)n->hb.disk_free_mib);
        else
                ab_lit(b, ",\"disk_free_mib\":null");
        ab_printf(b, ",\"disk_reserved_mib\":%llu", (unsigned long long)n->reserved_disk_mib);
        ab_printf(b, ",\"libvirt_age_ms\":%lld", (long long)n->hb.libvirt_age_ms);
        ab_printf(b, ",\"vm_count\":%u,\"inventory_digest\":", n->hb.vm_count);
        ab_str(b, n->hb.inventory_digest);
        ab_put(b, "}", 1);
}

/* Hands the buffer's text to resp as its raw answer (or a 503 when it ran out of memory). */
static void api_buf_answer(struct api_buf *b, struct api_response *resp)
{
        if (b->oom || !b->p) {
                free(b->p);
                api_problem(resp, 503, "out-of-memory", "cannot render the answer now");
                return;
        }
        resp->raw = b->p;
        resp->raw_len = b->len;
        resp->status = 200;
        resp->content_type = "application/json";
}

static bool api_node_state_valid(const char *s)
{
        for (unsigned i = 0; i < NODE_STATE_MAX; i++)
                if (strcmp(s, node_state_name((enum node_state)i)) == 0)
                        return true;
        return false;
}

static bool api_role_valid(const char *s)
{
        enum roster_role r;

        return roster_role_parse(s, &r) == 0;
}

/* Index into t->by_id of the first id after `after` (byte order), or 0 without one. */
static size_t api_nodes_first(const struct node_table *t, const char *after)
{
        size_t lo = 0, hi = after ? t->roster->n_nodes : 0;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (strcmp(t->by_id[mid].id, after) <= 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

/* {"nodes":[...],"next_after":...} for the nodes after `after` that pass the filters. */
static void api_nodes_render(struct fleetd *f, const char *state, const char *role,
                             const char *after, uint64_t limit, uint64_t now, struct api_buf *b)
{
        const struct fleet_node *last = NULL;
        uint64_t listed = 0;
        bool more = false;

        ab_lit(b, "{\"nodes\":[");
        pthread_mutex_lock(&f->lock);
        for (size_t i = api_nodes_first(&f->table, after); i < f->table.roster->n_nodes; i++) {
                const struct fleet_node *n = &f->table.nodes[f->table.by_id[i].node];

                if ((state && strcmp(state, node_state_name(node_state_at(n, &f->cfg, now)))) ||
                    (role && strcmp(role, roster_role_name(n->rn->role))))
                        continue;
                if (listed == limit) {
                        more = true;
                        break;
                }
                if (listed++)
                        ab_put(b, ",", 1);
                api_node_write(b, n, &f->cfg, now);
                last = n;
        }
        ab_lit(b, "],\"next_after\":");
        if (more)
                ab_str(b, last->rn->id);
        else
                ab_lit(b, "null");
        pthread_mutex_unlock(&f->lock);
        ab_put(b, "}", 1);
}

/* What the node list shows, apart from ages: a change to any node's heartbeats, reservation,
 * inventory state or unknown VMs, or a new roster, changes it. Called under f->lock. */
static uint64_t api_nodes_fingerprint(const struct fleetd *f)
{
        uint64_t h = (uint64_t)(uintptr_t)f->table.roster ^ f->table.roster->version << 32 ^
                     f->table.roster->n_nodes;

        for (size_t i = 0; i < f->table.roster->n_nodes; i++) {
                const struct fleet_node *n = &f->table.nodes[i];

                h = h * 1099511628211ull ^
                    (n->heartbeats + (n->reserved_mib << 20) + ((uint64_t)n->inv << 60) +
                     (uint64_t)(uintptr_t)n->unknown_vms);
        }
        return h;
}

/* The whole list, the answer most pollers ask for, is rendered once per change of the node
 * table and at most every API_NODES_FRESH_MS (so heartbeat ages are at most that old), and
 * shared by every request meanwhile: one rendering and one buffer, whatever the number of
 * clients. While the table changes faster than it renders (10,000 nodes heartbeating), an
 * answer is served for ten times its rendering time (about 150 ms at 10,000 nodes, 10 ms at
 * 1,000), so rendering takes at most a tenth of a core. Renderings are single-flight under the
 * cache's own lock (taken before f->lock). */
#define API_NODES_FRESH_MS 250
static struct {
        pthread_mutex_t mu;
        const struct fleetd *f;
        uint64_t fingerprint, at_ms;
        uint64_t started; /* renderings begun; the answer is from rendering number `seq` */
        uint64_t seq;
        uint64_t render_ms; /* how long that rendering took */
        size_t last_len;
        struct api_shared *answer;
} api_nodes_cache = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* The cached answer serves a request when it shows the current table within the freshness
 * bound, or when its rendering began after the request arrived (arrival: the rendering count
 * then), so that requests waiting for one rendering all take it. Called under the cache lock. */
static bool api_nodes_cache_serves(const struct fleetd *f, uint64_t arrival, uint64_t fp,
                                   uint64_t now)
{
        if (!api_nodes_cache.answer || api_nodes_cache.f != f)
                return false;
        if (api_nodes_cache.seq > arrival)
                return true;
        if (now < api_nodes_cache.at_ms)
                return false;
        /* rendering takes at most a tenth of the time, however fast the table changes */
        if (now - api_nodes_cache.at_ms < 10 * api_nodes_cache.render_ms)
                return true;
        return api_nodes_cache.fingerprint == fp &&
               now - api_nodes_cache.at_ms < API_NODES_FRESH_MS;
}

static void api_nodes_cached(struct fleetd *f, struct api_response *resp)
{
        uint64_t arrival = __atomic_load_n(&api_nodes_cache.started, __ATOMIC_ACQUIRE), fp, now;
        struct api_buf out = {0};

        pthread_mutex_lock(&api_nodes_cache.mu);
        now = clock_monotonic_ms(); /* after the wait: a rendering may have just finished */
        pthread_mutex_lock(&f->lock);
        fp = api_nodes_fingerprint(f);
        pthread_mutex_unlock(&f->lock);
        /* a rendering shows at least what fp says (it may show more: then the next request
         * renders again) */
        if (!api_nodes_cache_serves(f, arrival, fp, now)) {
                __atomic_add_fetch(&api_nodes_cache.started, 1, __ATOMIC_RELEASE);
                /* the superseded answer goes first: every request that would take it waits on
                 * the cache lock for the new one, so unless a connection is still sending it,
                 * only one answer is alive while the next renders (5.3 MB at 10,000 nodes) */
                api_shared_unref(api_nodes_cache.answer);
                api_nodes_cache.answer = NULL;
                out.p = malloc(api_nodes_cache.last_len + 65536); /* no regrowth on the way */
                out.cap = out.p ? api_nodes_cache.last_len + 65536 : 0;
                api_nodes_render(f, NULL, NULL, NULL, API_LIST_MAX, now, &out);
                api_nodes_cache.answer = out.oom ? NULL : api_shared_new(out.p, out.len);
                if (out.oom)
                        free(out.p);
                api_nodes_cache.f = f;
                api_nodes_cache.fingerprint = fp;
                api_nodes_cache.at_ms = now;
                api_nodes_cache.seq = api_nodes_cache.started;
                api_nodes_cache.last_len = out.len;
                api_nodes_cache.render_ms = clock_monotonic_ms() - now;
        }
        if (api_nodes_cache.answer)
                resp->shared = api_shared_ref(api_nodes_cache.answer);
        pthread_mutex_unlock(&api_nodes_cache.mu);
        if (!resp->shared) {
                api_problem(resp, 503, "out-of-memory", "cannot render the node list now");
                return;
        }
        resp->status = 200;
        resp->content_type = "application/json";
}

/* GET /v1/nodes[?state=S&role=R&after=ID&limit=N]: by id; next_after names the last node of
 * a full page (null on the last page). */
void api_nodes_list(struct api_request *req, struct api_response *resp)
{
        struct fleetd *f = req->f;
        const char *state, *role, *after;
        uint64_t now = clock_monotonic_ms(), limit;
        struct api_buf out = {0};

        if (!api_query_string(req, resp, "state", api_node_state_valid,
                              "a node state (unseen, alive, unhealthy, suspect, evicted)",
                              &state) ||
            !api_query_string(req, resp, "role", api_role_valid, "node, relay or cloud", &role) ||
            !api_query_id(req, resp, "after", IDENT_NODE, &after) ||
            !api_query_uint(req, resp, "limit", API_LIST_MAX, 1, API_LIST_MAX, &limit))
                return;
        if (!state && !role && !after && limit == API_LIST_MAX) {
                api_nodes_cached(f, resp);
                return;
        }
        api_nodes_render(f, state, role, after, limit, now, &out);
        api_buf_answer(&out, resp);
}

/* The {id} of a node route: false (a 400 in resp) when it cannot be a node id. */
static bool api_node_id_checked(struct api_request *req, struct api_response *resp)
{
        if (ident_valid(IDENT_NODE, req->params[0]))
                return true;
        api_problem(resp, 400, "invalid-node-id", "'%.64s' is not a valid node id", req->params[0]);
        return false;
}

void api_nodes_get(struct api_request *req, struct api_response *resp)
{
        struct fleetd *f = req->f;
        struct fleet_node *n;
        struct api_buf out = {0};

        if (!api_node_id_checked(req, resp))
                return;
        pthread_mutex_lock(&f->lock);
        n = node_table_find(&f->table, req->params[0]);
        if (n)
                api_node_write(&out, n, &f->cfg, clock_monotonic_ms());
        pthread_mutex_unlock(&f->lock);
        if (!n)
                api_problem(resp, 404, "unknown-node", "no node '%s' in the roster",
                            req->params[0]);
        else
                api_buf_answer(&out, resp);
}

/* GET /v1/nodes/{id}/history: the node's figures over the last hour, one sample per heartbeat
 * interval, oldest first (fleetd keeps NODE_HISTORY_MAX per node, in memory: a restart starts
 * them again). */
void api_nodes_history(struct api_request *req, struct api_response *resp)
{
        struct fleetd *f = req->f;
        struct fleet_node *n;
        json_t *samples = NULL;
        uint64_t interval = 0;

        if (!api_node_id_checked(req, resp))
                return;
        pthread_mutex_lock(&f->lock);
        n = node_table_find(&f->table, req->params[0]);
        if (n) {
                samples = node_history_json(n, clock_monotonic_ms(), clock_realtime_ms(),
                                            API_HISTORY_WINDOW_MS);
                interval = n->hb.interval_ms;
        }
        pthread_mutex_unlock(&f->lock);
        if (!n) {
                api_problem(resp, 404, "unknown-node", "no node '%s' in the roster",
                            req->params[0]);
                return;
        }
        if (!samples) {
                api_problem(resp, 503, "out-of-memory", "cannot render the answer now");
                return;
        }
        api_ok(resp, json_pack("{s:s, s:I, s:I, s:o}", "node_id", req->params[0], "window_s",
                               (json_int_t)(API_HISTORY_WINDOW_MS / 1000), "interval_ms",
                               (json_int_t)interval, "samples", samples));
}
