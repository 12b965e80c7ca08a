/* /metrics: fleetd's counters and gauges in the Prometheus text exposition format (0.0.4).
 * Counters live in f->metrics and the node table, gauges are computed at render time. Each
 * metric family is one row of metric_rows (name, type, help, labels, a getter); the writer is
 * one loop over the table. */
#include <sqlite3.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "fleetd/api.h"
#include "fleetd/fleetd.h"

static const double latency_bounds[LATENCY_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                       0.025,  0.05,  0.1,    0.5,   1.0};

/* The status codes counted one by one; any other is "other". */
static const unsigned metrics_codes[METRICS_CODES] = {200, 201, 202, 204, 304, 400, 401, 403,
                                                      404, 405, 406, 409, 412, 413, 414, 415,
                                                      422, 428, 429, 431, 500, 502, 503, 504};

static unsigned metrics_code_index(unsigned status)
{
        for (unsigned i = 0; i < METRICS_CODES; i++)
                if (metrics_codes[i] == status)
                        return i;
        return METRICS_CODES;
}

void metrics_observe_request(struct fleetd *f, unsigned route, unsigned status, double seconds)
{
        unsigned b = 0, code = metrics_code_index(status);

        if (route > METRICS_ROUTE_NONE ||
            (route < METRICS_ROUTES_MAX && !api_routes[route].pattern))
                route = METRICS_ROUTE_NONE;
        while (b < LATENCY_BUCKETS && seconds > latency_bounds[b])
                b++;
        pthread_mutex_lock(&f->lock);
        f->metrics.latency_bucket[b]++;
        f->metrics.latency_sum_s += seconds;
        f->metrics.latency_count++;
        f->metrics.requests++;
        f->metrics.http_requests[route][code]++;
        pthread_mutex_unlock(&f->lock);
}

/* What the rows read, gathered once under f->lock: the fleet, the clocks, and the counts that
 * take a walk over nodes or VMs. */
struct metrics_ctx {
        struct fleetd *f;
        FILE *out;
        uint64_t mono, wall;
        size_t n_nodes;
        uint64_t by_state[NODE_STATE_MAX];
        uint64_t vm_status[3], vm_lifecycle[VM_LIFECYCLES], vm_mismatch, misplaced;
        uint64_t alarm_vms[3], stalled;
        json_int_t audit_size;
        uint64_t audit_witnesses[3]; /* current, behind, diverged */
};

/* One metric family a row: its name, type and help; then how its samples are written, one of
 * a value (no labels), a value per label value (label, labels or label_name with n), a value per
 * seen node (node_value, with decimals), or a writer of its own (write). */
struct metric_row;

struct metric_row {
        const char *name, *type, *help;
        uint64_t (*value)(const struct metrics_ctx *c, const struct metric_row *m, unsigned i);
        size_t offset; /* for the getters that read a field (GATHERED, COUNTER, TABLE) */
        const char *label;
        const char *const *labels; /* NULL-terminated; or label_name and n */
        const char *(*label_name)(unsigned i);
        unsigned n;
        double (*node_value)(const struct metrics_ctx *c, const struct fleet_node *n);
        int decimals;
        void (*write)(const struct metrics_ctx *c, const struct metric_row *m);
};

static const char *const metrics_alarm_kinds[] = {"fork", "rollback", "lying-host", NULL};
static const char *const metrics_vm_integrity[] = {"unknown", "ok", "mismatch", NULL};

/* A label value as the exposition format wants it: backslash, quote and newline escaped. */
static void metrics_label(FILE *out, const char *v)
{
        for (; *v; v++) {
                if (*v == '\\' || *v == '"')
                        fputc('\\', out);
                if (*v == '\n')
                        fputs("\\n", out);
                else
                        fputc(*v, out);
        }
}

/* --- gathering --- */

static void metrics_collect_vms(struct metrics_ctx *c)
{
        struct fleetd *f = c->f;

        for (size_t i = 0; i < c->n_nodes; i++)
                c->misplaced += json_array_size(f->table.nodes[i].misplaced_vms);
        for (size_t i = 0; i < f->n_vms; i++) {
                const char *a = vault_witness_alarm(&f->vms[i]);

                c->vm_status[f->vms[i].status]++;
                c->vm_lifecycle[f->vms[i].lifecycle]++;
                c->vm_mismatch += strcmp(f->vms[i].integrity, "mismatch") == 0;
                for (unsigned k = 0; a && k < 3; k++)
                        c->alarm_vms[k] += strcmp(a, metrics_alarm_kinds[k]) == 0;
                c->stalled += vault_vm_stalled(f, &f->vms[i], c->wall);
        }
}

/* The audit log: the size fleetd last signed and its witnesses by what they hold. */
static void metrics_collect_audit(struct metrics_ctx *c)
{
        json_t *st = audit_status_json(c->f), *w;
        size_t i;

        c->audit_size = json_integer_value(json_object_get(st, "size"));
        json_array_foreach(json_object_get(st, "witnesses"), i, w)
        {
                if (json_is_true(json_object_get(w, "diverged")))
                        c->audit_witnesses[2]++;
                else if (json_integer_value(json_object_get(w, "held")) == c->audit_size)
                        c->audit_witnesses[0]++;
                else
                        c->audit_witnesses[1]++;
        }
        json_decref(st);
}

static void metrics_collect(struct metrics_ctx *c)
{
        struct fleetd *f = c->f;

        c->mono = clock_monotonic_ms();
        c->wall = clock_realtime_ms();
        c->n_nodes = f->table.roster ? f->table.roster->n_nodes : 0;
        for (size_t i = 0; i < c->n_nodes; i++)
                c->by_state[node_state_at(&f->table.nodes[i], &f->cfg, c->mono)]++;
        metrics_collect_vms(c);
        metrics_collect_audit(c);
}

/* --- label values of the enumerations --- */

static const char *metrics_node_state(unsigned i)
{
        return node_state_name((enum node_state)i);
}

static const char *metrics_hb_drop(unsigned i)
{
        return hb_drop_name((enum hb_drop)i);
}

static const char *metrics_vm_status(unsigned i)
{
        return vm_status_name((enum vm_status)i);
}

static const char *metrics_lifecycle(unsigned i)
{
        return vm_lifecycle_name((enum vm_lifecycle)i);
}

/* --- the getters: i is the index of the label value (0 without labels) --- */

/* A uint64_t at m->offset in the gathered counts, the fleet's counters or the node table; with
 * labels, element i of the uint64_t array there. */
static uint64_t metrics_at(const void *base, const struct metric_row *m, unsigned i)
{
        return ((const uint64_t *)((const char *)base + m->offset))[i];
}

static uint64_t metrics_gathered(const struct metrics_ctx *c, const struct metric_row *m,
                                 unsigned i)
{
        return metrics_at(c, m, i);
}

static uint64_t metrics_counter(const struct metrics_ctx *c, const struct metric_row *m, unsigned i)
{
        return metrics_at(&c->f->metrics, m, i);
}

static uint64_t metrics_table(const struct metrics_ctx *c, const struct metric_row *m, unsigned i)
{
        return metrics_at(&c->f->table, m, i);
}

static uint64_t metrics_evictions(const struct metrics_ctx *c, const struct metric_row *m,
                                  unsigned i)
{
        uint64_t ev = 0;

        for (unsigned a = 0; a < NODE_STATE_MAX; a++)
                ev += c->f->metrics.state_change[a][NODE_EVICTED];
        return ev;
}

/* Counters by outcome, two fields each (not an array: no reading past a member). */
static uint64_t metrics_plans(const struct metrics_ctx *c, const struct metric_row *m, unsigned i)
{
        return i == 0 ? c->f->metrics.plans_created : c->f->metrics.plans_rejected;
}

static uint64_t metrics_confirmations(const struct metrics_ctx *c, const struct metric_row *m,
                                      unsigned i)
{
        return i == 0 ? c->f->metrics.confirmations : c->f->metrics.confirm_rejected;
}

static uint64_t metrics_inventory(const struct metrics_ctx *c, const struct metric_row *m,
                                  unsigned i)
{
        return i == 0 ? c->f->metrics.inventory_fetches : c->f->metrics.inventory_failures;
}

static uint64_t metrics_verify(const struct metrics_ctx *c, const struct metric_row *m, unsigned i)
{
        const struct fleet_metrics *fm = &c->f->metrics;

        return i == 0 ? fm->verify_requests - fm->verify_failures : fm->verify_failures;
}

static uint64_t metrics_audit_size(const struct metrics_ctx *c, const struct metric_row *m,
                                   unsigned i)
{
        return (uint64_t)c->audit_size;
}

#define GATHERED(field) .value = metrics_gathered, .offset = offsetof(struct metrics_ctx, field)
#define COUNTER(field)  .value = metrics_counter, .offset = offsetof(struct fleet_metrics, field)
#define TABLE(field)    .value = metrics_table, .offset = offsetof(struct node_table, field)

/* Per node (seen nodes only): heartbeat age, memory, placement headroom (the largest VM
 * placement would put there now: available after reservations, less the safety margin), CPU. */
#define METRICS_MIB 1048576.0

static double metrics_node_age(const struct metrics_ctx *c, const struct fleet_node *n)
{
        return (double)node_heartbeat_age(n, c->mono) / 1000.0;
}

static double metrics_node_mem_total(const struct metrics_ctx *c, const struct fleet_node *n)
{
        return (double)n->hb.mem_total_mib * METRICS_MIB;
}

static double metrics_node_mem_available(const struct metrics_ctx *c, const struct fleet_node *n)
{
        return (double)n->hb.mem_available_mib * METRICS_MIB;
}

static double metrics_node_mem_committed(const struct metrics_ctx *c, const struct fleet_node *n)
{
        return (double)n->hb.mem_committed_mib * METRICS_MIB;
}

static double metrics_node_mem_reserved(const struct metrics_ctx *c, const struct fleet_node *n)
{
        return (double)n->reserved_mib * METRICS_MIB;
}

static double metrics_node_headroom(const struct metrics_ctx *c, const struct fleet_node *n)
{
        return ((double)node_available_mib(n) - (double)c->f->cfg.safety_margin_mib) * METRICS_MIB;
}

static double metrics_node_cpu(const struct metrics_ctx *c, const struct fleet_node *n)
{
        return n->hb.cpu_percent / 100.0;
}

/* --- the writers of their own --- */

static void metrics_build(const struct metrics_ctx *c, const struct metric_row *m)
{
        fprintf(c->out, "%s{version=\"%s\",jansson=\"%s\",sqlite=\"%s\"} 1\n", m->name,
                TOTEBOX_VERSION, JANSSON_VERSION, sqlite3_libversion());
}

static void metrics_state_changes(const struct metrics_ctx *c, const struct metric_row *m)
{
        for (unsigned a = 0; a < NODE_STATE_MAX; a++)
                for (unsigned b = 0; b < NODE_STATE_MAX; b++)
                        if (a != b)
                                fprintf(c->out, "%s{from=\"%s\",to=\"%s\"} %llu\n", m->name,
                                        metrics_node_state(a), metrics_node_state(b),
                                        (unsigned long long)c->f->metrics.state_change[a][b]);
}

/* One series per state, 1 for the node's current one; unseen nodes have these only. */
static void metrics_node_state_series(const struct metrics_ctx *c, const struct metric_row *m)
{
        for (size_t i = 0; i < c->n_nodes; i++) {
                const struct fleet_node *n = &c->f->table.nodes[i];
                enum node_state st = node_state_at(n, &c->f->cfg, c->mono);

                for (unsigned s = 0; s < NODE_STATE_MAX; s++) {
                        fprintf(c->out, "%s{node=\"", m->name);
                        metrics_label(c->out, n->rn->id);
                        fprintf(c->out, "\",state=\"%s\"} %d\n", metrics_node_state(s), s == st);
                }
        }
}

static void metrics_vm_labels(FILE *out, const char *name, const struct fleet_vm *vm)
{
        fprintf(out, "%s{vm=\"", name);
        metrics_label(out, vm->id);
        fputs("\",node=\"", out);
        metrics_label(out, vm->node_id);
        fputc('"', out);
}

static void metrics_vm_integrity_series(const struct metrics_ctx *c, const struct metric_row *m)
{
        for (size_t i = 0; i < c->f->n_vms; i++)
                for (unsigned s = 0; s < 3; s++) {
                        metrics_vm_labels(c->out, m->name, &c->f->vms[i]);
                        fprintf(c->out, ",state=\"%s\"} %d\n", metrics_vm_integrity[s],
                                strcmp(c->f->vms[i].integrity, metrics_vm_integrity[s]) == 0);
                }
}

/* The age of the last full verification the node reported (VMs that had one). */
static void metrics_vm_verification_age(const struct metrics_ctx *c, const struct metric_row *m)
{
        for (size_t i = 0; i < c->f->n_vms; i++) {
                json_t *at = json_object_get(c->f->vms[i].verification, "at_ms");
                uint64_t ms = json_is_integer(at) ? (uint64_t)json_integer_value(at) : 0;

                if (!ms)
                        continue;
                metrics_vm_labels(c->out, m->name, &c->f->vms[i]);
                fprintf(c->out, "} %.3f\n", c->wall > ms ? (double)(c->wall - ms) / 1000.0 : 0.0);
        }
}

static bool metrics_vm_misplaced(const struct metrics_ctx *c, const char *vm_id)
{
        for (size_t i = 0; i < c->n_nodes; i++) {
                json_t *a = c->f->table.nodes[i].misplaced_vms, *v;
                size_t k;

                json_array_foreach(a, k, v) if (strcmp(json_string_value(v) ?: "", vm_id) ==
                                                0) return true;
        }
        return false;
}

/* 1 while another node than the VM's pinned one reports it. */
static void metrics_vm_misplaced_series(const struct metrics_ctx *c, const struct metric_row *m)
{
        for (size_t i = 0; i < c->f->n_vms; i++) {
                metrics_vm_labels(c->out, m->name, &c->f->vms[i]);
                fprintf(c->out, "} %d\n", metrics_vm_misplaced(c, c->f->vms[i].id));
        }
}

/* REST requests by route (the route table's pattern, so ids never become labels) and code. */
static void metrics_http(const struct metrics_ctx *c, const struct metric_row *m)
{
        for (unsigned r = 0; r <= METRICS_ROUTE_NONE; r++) {
                const char *method = r < METRICS_ROUTES_MAX ? api_routes[r].method : "";
                const char *route = r == METRICS_ROUTE_PANEL  ? "/panel"
                                    : r == METRICS_ROUTE_NONE ? "none"
                                                              : api_routes[r].pattern;

                if (r < METRICS_ROUTES_MAX && !api_routes[r].pattern) {
                        r = METRICS_ROUTES_MAX - 1; /* past the table's end: the two slots */
                        continue;
                }
                for (unsigned k = 0; k <= METRICS_CODES; k++) {
                        char code[8];

                        if (!c->f->metrics.http_requests[r][k])
                                continue;
                        if (k < METRICS_CODES)
                                snprintf(code, sizeof(code), "%u", metrics_codes[k]);
                        else
                                snprintf(code, sizeof(code), "other");
                        fprintf(c->out, "%s{method=\"%s\",route=\"%s\",code=\"%s\"} %llu\n",
                                m->name,
                                method[0] ? method : (r == METRICS_ROUTE_PANEL ? "GET" : "other"),
                                route, code, (unsigned long long)c->f->metrics.http_requests[r][k]);
                }
        }
}

static void metrics_latency(const struct metrics_ctx *c, const struct metric_row *m)
{
        const struct fleet_metrics *fm = &c->f->metrics;
        uint64_t cum = 0;

        for (unsigned b = 0; b < LATENCY_BUCKETS; b++) {
                cum += fm->latency_bucket[b];
                fprintf(c->out, "%s_bucket{le=\"%g\"} %llu\n", m->name, latency_bounds[b],
                        (unsigned long long)cum);
        }
        cum += fm->latency_bucket[LATENCY_BUCKETS];
        fprintf(c->out, "%s_bucket{le=\"+Inf\"} %llu\n", m->name, (unsigned long long)cum);
        fprintf(c->out, "%s_sum %.6f\n", m->name, fm->latency_sum_s);
        fprintf(c->out, "%s_count %llu\n", m->name, (unsigned long long)fm->latency_count);
}

#define M(name) "totebox_fleetd_" name
static const char *const metrics_outcome_created[] = {"created", "rejected", NULL};
static const char *const metrics_outcome_accepted[] = {"accepted", "rejected", NULL};
static const char *const metrics_outcome_attempted[] = {"attempted", "failed", NULL};
static const char *const metrics_outcome_verified[] = {"accepted", "failed", NULL};
static const char *const metrics_witness_states[] = {"current", "behind", "diverged", NULL};

/* The exposition, in this order (docs/fleetd.md lists the same metrics). */
static const struct metric_row metric_rows[] = {
    {M("build_info"), "gauge", "fleetd's version and its libraries' (always 1).",
     .write = metrics_build},
    {M("nodes"), "gauge", "Nodes of the roster by liveness state.", GATHERED(by_state),
     .label = "state", .label_name = metrics_node_state, .n = NODE_STATE_MAX},
    {M("heartbeats_received_total"), "counter", "Heartbeat datagrams received.", TABLE(received)},
    {M("heartbeats_accepted_total"), "counter", "Heartbeats accepted.", TABLE(accepted)},
    {M("heartbeats_newer_version_total"), "counter",
     "Heartbeats accepted from a sender of the next protocol version.", TABLE(newer)},
    {M("heartbeats_dropped_total"), "counter", "Heartbeats dropped, by reason.", TABLE(dropped),
     .label = "reason", .label_name = metrics_hb_drop, .n = HB_DROP_MAX},
    {M("node_state_changes_total"), "counter",
     "Node liveness state changes, by the state left and the state entered.",
     .write = metrics_state_changes},
    {M("node_evictions_total"), "counter", "Nodes evicted after a silence longer than evict_after.",
     .value = metrics_evictions},
    {M("node_state"), "gauge", "1 for the node's liveness state, 0 for the others.",
     .write = metrics_node_state_series},
    {M("node_heartbeat_age_seconds"), "gauge", "Time since the node's last heartbeat.",
     .node_value = metrics_node_age, .decimals = 3},
    {M("node_memory_total_bytes"), "gauge", "The node's memory (last heartbeat).",
     .node_value = metrics_node_mem_total},
    {M("node_memory_available_bytes"), "gauge", "The node's MemAvailable (last heartbeat).",
     .node_value = metrics_node_mem_available},
    {M("node_memory_committed_bytes"), "gauge",
     "Memory of the node's defined Totebox domains (last heartbeat).",
     .node_value = metrics_node_mem_committed},
    {M("node_memory_reserved_bytes"), "gauge",
     "Memory promised to confirmed creations the node's figures do not show yet.",
     .node_value = metrics_node_mem_reserved},
    {M("node_placement_headroom_bytes"), "gauge",
     "The largest VM placement would put on the node now (available after reservations, less "
     "the safety margin); negative: none.",
     .node_value = metrics_node_headroom},
    {M("node_cpu_utilisation_ratio"), "gauge",
     "CPU utilisation over the last heartbeat interval, 0..1 of all CPUs.",
     .node_value = metrics_node_cpu, .decimals = 3},
    {M("vms"), "gauge", "Totebox VMs by creation status.", GATHERED(vm_status), .label = "status",
     .label_name = metrics_vm_status, .n = 3},
    {M("vms_lifecycle"), "gauge", "Totebox VMs by lifecycle.", GATHERED(vm_lifecycle),
     .label = "lifecycle", .label_name = metrics_lifecycle, .n = VM_LIFECYCLES},
    {M("integrity_mismatch_vms"), "gauge", "VMs whose last integrity report is a mismatch.",
     GATHERED(vm_mismatch)},
    {M("integrity_mismatches_total"), "counter", "New integrity mismatches raised.",
     COUNTER(integrity_mismatches)},
    {M("misplaced_vms"), "gauge",
     "VMs a node reports while they are pinned to another node (per node).", GATHERED(misplaced)},
    {M("misplaced_total"), "counter",
     "Occurrences of a VM reported from a node it is not pinned to.",
     COUNTER(misplaced_occurrences)},
    {M("vault_witness_alarm_vms"), "gauge",
     "VMs whose vault checkpoints are named a fork, a rollback or a lying host.",
     GATHERED(alarm_vms), .label = "kind", .labels = metrics_alarm_kinds},
    {M("vaults_stalled"), "gauge",
     "Toteboxes whose full verification is overdue (schedule plus grace).", GATHERED(stalled)},
    {M("vault_cosignatures_total"), "counter", "Vault checkpoints fleetd cosigned as a witness.",
     COUNTER(vault_cosignatures)},
    {M("vault_witness_alarms_total"), "counter",
     "Vault witness alarms raised (each piece of evidence once).", COUNTER(vault_witness_alarms)},
    {M("plans_total"), "counter", "Plans asked for, by outcome.", .value = metrics_plans,
     .label = "outcome", .labels = metrics_outcome_created},
    {M("confirmations_total"), "counter", "Plan confirmations, by outcome.",
     .value = metrics_confirmations, .label = "outcome", .labels = metrics_outcome_accepted},
    {M("dispatch_attempts_total"), "counter", "Creation calls to nodes.",
     COUNTER(dispatch_attempts)},
    {M("dispatch_failures_total"), "counter", "Creations that ended failed.",
     COUNTER(dispatch_failures)},
    {M("inventory_fetches_total"), "counter", "Inventory fetches, by outcome.",
     .value = metrics_inventory, .label = "outcome", .labels = metrics_outcome_attempted},
    {M("verify_requests_total"), "counter", "Full verifications forwarded to a node, by outcome.",
     .value = metrics_verify, .label = "outcome", .labels = metrics_outcome_verified},
    {M("lifecycle_corrections_total"), "counter",
     "VM lifecycles fleetd corrected from its node's inventory.", COUNTER(lifecycle_corrections)},
    {M("vm_integrity"), "gauge",
     "1 for the VM's last integrity state (unknown, ok, mismatch), 0 for the others.",
     .write = metrics_vm_integrity_series},
    {M("vm_last_verification_age_seconds"), "gauge",
     "Time since the VM's last full verification (VMs that had one).",
     .write = metrics_vm_verification_age},
    {M("vm_misplaced"), "gauge", "1 while a node other than the VM's pinned node reports it.",
     .write = metrics_vm_misplaced_series},
    {M("http_requests_total"), "counter", "REST requests by method, route pattern and status code.",
     .write = metrics_http},
    {M("http_request_duration_seconds"), "histogram", "REST request latency.",
     .write = metrics_latency},
    {M("audit_checkpoint_size"), "gauge",
     "Entries covered by the last audit checkpoint fleetd signed.", .value = metrics_audit_size},
    {M("audit_witnesses"), "gauge",
     "Nodes by the audit checkpoint they hold: the last one, an older one, or one this record "
     "does not extend.",
     GATHERED(audit_witnesses), .label = "state", .labels = metrics_witness_states},
};
#undef M
#undef GATHERED
#undef COUNTER
#undef TABLE

static void metrics_node_series(const struct metrics_ctx *c, const struct metric_row *m)
{
        for (size_t i = 0; i < c->n_nodes; i++) {
                const struct fleet_node *n = &c->f->table.nodes[i];

                if (!n->seen)
                        continue;
                fprintf(c->out, "%s{node=\"", m->name);
                metrics_label(c->out, n->rn->id);
                fprintf(c->out, "\"} %.*f\n", m->decimals, m->node_value(c, n));
        }
}

static void metrics_labelled_series(const struct metrics_ctx *c, const struct metric_row *m)
{
        for (unsigned i = 0; m->labels ? m->labels[i] != NULL : i < m->n; i++)
                fprintf(c->out, "%s{%s=\"%s\"} %llu\n", m->name, m->label,
                        m->labels ? m->labels[i] : m->label_name(i),
                        (unsigned long long)m->value(c, m, i));
}

static void metrics_row(const struct metrics_ctx *c, const struct metric_row *m)
{
        fprintf(c->out, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name, m->type);
        if (m->write)
                m->write(c, m);
        else if (m->node_value)
                metrics_node_series(c, m);
        else if (m->label)
                metrics_labelled_series(c, m);
        else
                fprintf(c->out, "%s %llu\n", m->name, (unsigned long long)m->value(c, m, 0));
}

char *metrics_render(struct fleetd *f)
{
        struct metrics_ctx c = {.f = f};
        char *buf = NULL;
        size_t len = 0;

        c.out = open_memstream(&buf, &len);
        if (!c.out)
                return NULL;
        pthread_mutex_lock(&f->lock);
        metrics_collect(&c);
        for (size_t i = 0; i < sizeof(metric_rows) / sizeof(metric_rows[0]); i++)
                metrics_row(&c, &metric_rows[i]);
        pthread_mutex_unlock(&f->lock);
        fclose(c.out);
        return buf;
}
