/* /metrics: fleetd's counters and gauges in the Prometheus text exposition format (0.0.4).
 * Counters live in f->metrics and the node table, gauges are computed at render time. */
#include <sqlite3.h>
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

static void metrics_head(FILE *out, const char *name, const char *type, const char *help)
{
        fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void metrics_nodes(struct fleetd *f, FILE *out, uint64_t now)
{
        uint64_t by_state[NODE_STATE_MAX] = {0};

        for (size_t i = 0; f->table.roster && i < f->table.roster->n_nodes; i++)
                by_state[node_state_at(&f->table.nodes[i], &f->cfg, now)]++;
        metrics_head(out, "totebox_fleetd_nodes", "gauge",
                     "Nodes of the roster by liveness state.");
        for (unsigned s = 0; s < NODE_STATE_MAX; s++)
                fprintf(out, "totebox_fleetd_nodes{state=\"%s\"} %llu\n",
                        node_state_name((enum node_state)s), (unsigned long long)by_state[s]);
        metrics_head(out, "totebox_fleetd_heartbeats_received_total", "counter",
                     "Heartbeat datagrams received.");
        fprintf(out, "totebox_fleetd_heartbeats_received_total %llu\n",
                (unsigned long long)f->table.received);
        metrics_head(out, "totebox_fleetd_heartbeats_accepted_total", "counter",
                     "Heartbeats accepted.");
        fprintf(out, "totebox_fleetd_heartbeats_accepted_total %llu\n",
                (unsigned long long)f->table.accepted);
        metrics_head(out, "totebox_fleetd_heartbeats_newer_version_total", "counter",
                     "Heartbeats accepted from a sender of the next protocol version.");
        fprintf(out, "totebox_fleetd_heartbeats_newer_version_total %llu\n",
                (unsigned long long)f->table.newer);
        metrics_head(out, "totebox_fleetd_heartbeats_dropped_total", "counter",
                     "Heartbeats dropped, by reason.");
        for (unsigned d = 0; d < HB_DROP_MAX; d++)
                fprintf(out, "totebox_fleetd_heartbeats_dropped_total{reason=\"%s\"} %llu\n",
                        hb_drop_name((enum hb_drop)d), (unsigned long long)f->table.dropped[d]);
        metrics_head(out, "totebox_fleetd_node_state_changes_total", "counter",
                     "Node liveness state changes, by the state left and the state entered.");
        for (unsigned a = 0; a < NODE_STATE_MAX; a++)
                for (unsigned b = 0; b < NODE_STATE_MAX; b++)
                        if (a != b)
                                fprintf(out,
                                        "totebox_fleetd_node_state_changes_total{from=\"%s\","
                                        "to=\"%s\"} %llu\n",
                                        node_state_name((enum node_state)a),
                                        node_state_name((enum node_state)b),
                                        (unsigned long long)f->metrics.state_change[a][b]);
        {
                uint64_t ev = 0;

                for (unsigned a = 0; a < NODE_STATE_MAX; a++)
                        ev += f->metrics.state_change[a][NODE_EVICTED];
                metrics_head(out, "totebox_fleetd_node_evictions_total", "counter",
                             "Nodes evicted after a silence longer than evict_after.");
                fprintf(out, "totebox_fleetd_node_evictions_total %llu\n", (unsigned long long)ev);
        }
}

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

static void metrics_node_line(FILE *out, const char *name, const struct fleet_node *n, int decimals,
                              double v)
{
        fprintf(out, "%s{node=\"", name);
        metrics_label(out, n->rn->id);
        fputs("\"} ", out);
        fprintf(out, "%.*f", decimals, v);
        fputc('\n', out);
}

/* Per node: state (one series per state, 1 for the current one), heartbeat age, memory, and
 * placement headroom (the largest VM placement would put there now: available after
 * reservations, less the safety margin). Unseen nodes have state series only. */
static void metrics_per_node(struct fleetd *f, FILE *out, uint64_t now)
{
        static const struct {
                const char *name, *help;
        } g[] = {
            {"totebox_fleetd_node_heartbeat_age_seconds", "Time since the node's last heartbeat."},
            {"totebox_fleetd_node_memory_total_bytes", "The node's memory (last heartbeat)."},
            {"totebox_fleetd_node_memory_available_bytes",
             "The node's MemAvailable (last heartbeat)."},
            {"totebox_fleetd_node_memory_committed_bytes",
             "Memory of the node's defined Totebox domains (last heartbeat)."},
            {"totebox_fleetd_node_memory_reserved_bytes",
             "Memory promised to confirmed creations the node's figures do not show yet."},
            {"totebox_fleetd_node_placement_headroom_bytes",
             "The largest VM placement would put on the node now (available after reservations, "
             "less the safety margin); negative: none."},
            {"totebox_fleetd_node_cpu_utilisation_ratio",
             "CPU utilisation over the last heartbeat interval, 0..1 of all CPUs."},
        };
        size_t nn = f->table.roster ? f->table.roster->n_nodes : 0;
        const double mib = 1048576.0;

        metrics_head(out, "totebox_fleetd_node_state", "gauge",
                     "1 for the node's liveness state, 0 for the others.");
        for (size_t i = 0; i < nn; i++) {
                const struct fleet_node *n = &f->table.nodes[i];
                enum node_state st = node_state_at(n, &f->cfg, now);

                for (unsigned s = 0; s < NODE_STATE_MAX; s++) {
                        fputs("totebox_fleetd_node_state{node=\"", out);
                        metrics_label(out, n->rn->id);
                        fprintf(out, "\",state=\"%s\"} %d\n", node_state_name((enum node_state)s),
                                s == st);
                }
        }
        for (unsigned k = 0; k < sizeof(g) / sizeof(g[0]); k++) {
                metrics_head(out, g[k].name, "gauge", g[k].help);
                for (size_t i = 0; i < nn; i++) {
                        const struct fleet_node *n = &f->table.nodes[i];
                        double v[] = {
                            (double)node_heartbeat_age(n, now) / 1000.0,
                            (double)n->hb.mem_total_mib * mib,
                            (double)n->hb.mem_available_mib * mib,
                            (double)n->hb.mem_committed_mib * mib,
                            (double)n->reserved_mib * mib,
                            ((double)node_available_mib(n) - (double)f->cfg.safety_margin_mib) *
                                mib,
                            n->hb.cpu_percent / 100.0,
                        };

                        if (n->seen)
                                metrics_node_line(out, g[k].name, n, k == 0 || k == 6 ? 3 : 0,
                                                  v[k]);
                }
        }
}

/* The vault witness: VMs by alarm, stalled Toteboxes, cosignatures and alarms raised. */
static void metrics_vaults(struct fleetd *f, FILE *out)
{
        static const char *const kinds[] = {"fork", "rollback", "lying-host"};
        uint64_t by_kind[3] = {0}, stalled = 0, now = clock_realtime_ms();

        for (size_t i = 0; i < f->n_vms; i++) {
                const char *a = vault_witness_alarm(&f->vms[i]);

                for (unsigned k = 0; a && k < 3; k++)
                        by_kind[k] += strcmp(a, kinds[k]) == 0;
                stalled += vault_vm_stalled(f, &f->vms[i], now);
        }
        metrics_head(out, "totebox_fleetd_vault_witness_alarm_vms", "gauge",
                     "VMs whose vault checkpoints are named a fork, a rollback or a lying host.");
        for (unsigned k = 0; k < 3; k++)
                fprintf(out, "totebox_fleetd_vault_witness_alarm_vms{kind=\"%s\"} %llu\n", kinds[k],
                        (unsigned long long)by_kind[k]);
        metrics_head(out, "totebox_fleetd_vaults_stalled", "gauge",
                     "Toteboxes whose full verification is overdue (schedule plus grace).");
        fprintf(out, "totebox_fleetd_vaults_stalled %llu\n", (unsigned long long)stalled);
        metrics_head(out, "totebox_fleetd_vault_cosignatures_total", "counter",
                     "Vault checkpoints fleetd cosigned as a witness.");
        fprintf(out, "totebox_fleetd_vault_cosignatures_total %llu\n",
                (unsigned long long)f->metrics.vault_cosignatures);
        metrics_head(out, "totebox_fleetd_vault_witness_alarms_total", "counter",
                     "Vault witness alarms raised (each piece of evidence once).");
        fprintf(out, "totebox_fleetd_vault_witness_alarms_total %llu\n",
                (unsigned long long)f->metrics.vault_witness_alarms);
}

static void metrics_vms(struct fleetd *f, FILE *out)
{
        uint64_t by_status[3] = {0}, by_lc[VM_LIFECYCLES] = {0}, bad = 0;
        const struct fleet_metrics *m = &f->metrics;
        size_t misplaced = 0;

        for (size_t i = 0; f->table.roster && i < f->table.roster->n_nodes; i++)
                misplaced += json_array_size(f->table.nodes[i].misplaced_vms);

        for (size_t i = 0; i < f->n_vms; i++) {
                by_status[f->vms[i].status]++;
                by_lc[f->vms[i].lifecycle]++;
                bad += strcmp(f->vms[i].integrity, "mismatch") == 0;
        }
        metrics_head(out, "totebox_fleetd_vms", "gauge", "Totebox VMs by creation status.");
        for (unsigned s = 0; s < 3; s++)
                fprintf(out, "totebox_fleetd_vms{status=\"%s\"} %llu\n",
                        vm_status_name((enum vm_status)s), (unsigned long long)by_status[s]);
        metrics_head(out, "totebox_fleetd_vms_lifecycle", "gauge", "Totebox VMs by lifecycle.");
        for (unsigned s = 0; s < VM_LIFECYCLES; s++)
                fprintf(out, "totebox_fleetd_vms_lifecycle{lifecycle=\"%s\"} %llu\n",
                        vm_lifecycle_name((enum vm_lifecycle)s), (unsigned long long)by_lc[s]);
        metrics_head(out, "totebox_fleetd_integrity_mismatch_vms", "gauge",
                     "VMs whose last integrity report is a mismatch.");
        fprintf(out, "totebox_fleetd_integrity_mismatch_vms %llu\n", (unsigned long long)bad);
        metrics_head(out, "totebox_fleetd_integrity_mismatches_total", "counter",
                     "New integrity mismatches raised.");
        fprintf(out, "totebox_fleetd_integrity_mismatches_total %llu\n",
                (unsigned long long)m->integrity_mismatches);
        metrics_head(out, "totebox_fleetd_misplaced_vms", "gauge",
                     "VMs a node reports while they are pinned to another node (per node).");
        fprintf(out, "totebox_fleetd_misplaced_vms %zu\n", misplaced);
        metrics_head(out, "totebox_fleetd_misplaced_total", "counter",
                     "Occurrences of a VM reported from a node it is not pinned to.");
        fprintf(out, "totebox_fleetd_misplaced_total %llu\n",
                (unsigned long long)m->misplaced_occurrences);
        metrics_vaults(f, out);
        metrics_head(out, "totebox_fleetd_plans_total", "counter", "Plans asked for, by outcome.");
        fprintf(out, "totebox_fleetd_plans_total{outcome=\"created\"} %llu\n",
                (unsigned long long)m->plans_created);
        fprintf(out, "totebox_fleetd_plans_total{outcome=\"rejected\"} %llu\n",
                (unsigned long long)m->plans_rejected);
        metrics_head(out, "totebox_fleetd_confirmations_total", "counter",
                     "Plan confirmations, by outcome.");
        fprintf(out, "totebox_fleetd_confirmations_total{outcome=\"accepted\"} %llu\n",
                (unsigned long long)m->confirmations);
        fprintf(out, "totebox_fleetd_confirmations_total{outcome=\"rejected\"} %llu\n",
                (unsigned long long)m->confirm_rejected);
        metrics_head(out, "totebox_fleetd_dispatch_attempts_total", "counter",
                     "Creation calls to nodes.");
        fprintf(out, "totebox_fleetd_dispatch_attempts_total %llu\n",
                (unsigned long long)m->dispatch_attempts);
        metrics_head(out, "totebox_fleetd_dispatch_failures_total", "counter",
                     "Creations that ended failed.");
        fprintf(out, "totebox_fleetd_dispatch_failures_total %llu\n",
                (unsigned long long)m->dispatch_failures);
        metrics_head(out, "totebox_fleetd_inventory_fetches_total", "counter",
                     "Inventory fetches, by outcome.");
        fprintf(out, "totebox_fleetd_inventory_fetches_total{outcome=\"attempted\"} %llu\n",
                (unsigned long long)m->inventory_fetches);
        fprintf(out, "totebox_fleetd_inventory_fetches_total{outcome=\"failed\"} %llu\n",
                (unsigned long long)m->inventory_failures);
        metrics_head(out, "totebox_fleetd_verify_requests_total", "counter",
                     "Full verifications forwarded to a node, by outcome.");
        fprintf(out, "totebox_fleetd_verify_requests_total{outcome=\"accepted\"} %llu\n",
                (unsigned long long)(m->verify_requests - m->verify_failures));
        fprintf(out, "totebox_fleetd_verify_requests_total{outcome=\"failed\"} %llu\n",
                (unsigned long long)m->verify_failures);
        metrics_head(out, "totebox_fleetd_lifecycle_corrections_total", "counter",
                     "VM lifecycles fleetd corrected from its node's inventory.");
        fprintf(out, "totebox_fleetd_lifecycle_corrections_total %llu\n",
                (unsigned long long)m->lifecycle_corrections);
}

static bool metrics_vm_misplaced(const struct fleetd *f, const char *vm_id)
{
        for (size_t i = 0; f->table.roster && i < f->table.roster->n_nodes; i++) {
                json_t *a = f->table.nodes[i].misplaced_vms, *v;
                size_t k;

                json_array_foreach(a, k, v) if (strcmp(json_string_value(v) ?: "", vm_id) ==
                                                0) return true;
        }
        return false;
}

static void metrics_vm_labels(FILE *out, const char *name, const struct fleet_vm *vm)
{
        fprintf(out, "%s{vm=\"", name);
        metrics_label(out, vm->id);
        fputs("\",node=\"", out);
        metrics_label(out, vm->node_id);
        fputc('"', out);
}

/* Per VM: integrity (one series per state), the age of the last full verification the node
 * reported, and whether another node reports it (misplaced). */
static void metrics_per_vm(struct fleetd *f, FILE *out, uint64_t wall)
{
        static const char *const integ[] = {"unknown", "ok", "mismatch"};

        metrics_head(out, "totebox_fleetd_vm_integrity", "gauge",
                     "1 for the VM's last integrity state (unknown, ok, mismatch), 0 for the "
                     "others.");
        for (size_t i = 0; i < f->n_vms; i++)
                for (unsigned s = 0; s < 3; s++) {
                        metrics_vm_labels(out, "totebox_fleetd_vm_integrity", &f->vms[i]);
                        fprintf(out, ",state=\"%s\"} %d\n", integ[s],
                                strcmp(f->vms[i].integrity, integ[s]) == 0);
                }
        metrics_head(out, "totebox_fleetd_vm_last_verification_age_seconds", "gauge",
                     "Time since the VM's last full verification (VMs that had one).");
        for (size_t i = 0; i < f->n_vms; i++) {
                json_t *at = json_object_get(f->vms[i].verification, "at_ms");
                uint64_t ms = json_is_integer(at) ? (uint64_t)json_integer_value(at) : 0;

                if (!ms)
                        continue;
                metrics_vm_labels(out, "totebox_fleetd_vm_last_verification_age_seconds",
                                  &f->vms[i]);
                fprintf(out, "} %.3f\n", wall > ms ? (double)(wall - ms) / 1000.0 : 0.0);
        }
        metrics_head(out, "totebox_fleetd_vm_misplaced", "gauge",
                     "1 while a node other than the VM's pinned node reports it.");
        for (size_t i = 0; i < f->n_vms; i++) {
                metrics_vm_labels(out, "totebox_fleetd_vm_misplaced", &f->vms[i]);
                fprintf(out, "} %d\n", metrics_vm_misplaced(f, f->vms[i].id));
        }
}

/* REST requests by route (the route table's pattern, so ids never become labels) and code. */
static void metrics_http(struct fleetd *f, FILE *out)
{
        metrics_head(out, "totebox_fleetd_http_requests_total", "counter",
                     "REST requests by method, route pattern and status code.");
        for (unsigned r = 0; r <= METRICS_ROUTE_NONE; r++) {
                const char *method = r < METRICS_ROUTES_MAX ? api_routes[r].method : "";
                const char *route = r == METRICS_ROUTE_PANEL  ? "/panel"
                                    : r == METRICS_ROUTE_NONE ? "none"
                                                              : api_routes[r].pattern;

                if (r < METRICS_ROUTES_MAX && !api_routes[r].pattern) {
                        r = METRICS_ROUTES_MAX - 1; /* past the table's end: the two slots */
                        continue;
                }
                for (unsigned c = 0; c <= METRICS_CODES; c++) {
                        char code[8];

                        if (!f->metrics.http_requests[r][c])
                                continue;
                        if (c < METRICS_CODES)
                                snprintf(code, sizeof(code), "%u", metrics_codes[c]);
                        else
                                snprintf(code, sizeof(code), "other");
                        fprintf(out,
                                "totebox_fleetd_http_requests_total{method=\"%s\",route=\"%s\","
                                "code=\"%s\"} %llu\n",
                                method[0] ? method : (r == METRICS_ROUTE_PANEL ? "GET" : "other"),
                                route, code, (unsigned long long)f->metrics.http_requests[r][c]);
                }
        }
}

static void metrics_build(FILE *out)
{
        metrics_head(out, "totebox_fleetd_build_info", "gauge",
                     "fleetd's version and its libraries' (always 1).");
        fprintf(out, "totebox_fleetd_build_info{version=\"%s\",jansson=\"%s\",sqlite=\"%s\"} 1\n",
                TOTEBOX_VERSION, JANSSON_VERSION, sqlite3_libversion());
}

static void metrics_latency(struct fleetd *f, FILE *out)
{
        const struct fleet_metrics *m = &f->metrics;
        uint64_t cum = 0;

        metrics_head(out, "totebox_fleetd_http_request_duration_seconds", "histogram",
                     "REST request latency.");
        for (unsigned b = 0; b < LATENCY_BUCKETS; b++) {
                cum += m->latency_bucket[b];
                fprintf(out,
                        "totebox_fleetd_http_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
                        latency_bounds[b], (unsigned long long)cum);
        }
        cum += m->latency_bucket[LATENCY_BUCKETS];
        fprintf(out, "totebox_fleetd_http_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
                (unsigned long long)cum);
        fprintf(out, "totebox_fleetd_http_request_duration_seconds_sum %.6f\n", m->latency_sum_s);
        fprintf(out, "totebox_fleetd_http_request_duration_seconds_count %llu\n",
                (unsigned long long)m->latency_count);
}

/* The audit log: the size fleetd last signed and its witnesses by what they hold. */
static void metrics_audit(struct fleetd *f, FILE *out)
{
        json_t *st = audit_status_json(f), *w;
        json_int_t size = json_integer_value(json_object_get(st, "size"));
        unsigned current = 0, behind = 0, diverged = 0;
        size_t i;

        json_array_foreach(json_object_get(st, "witnesses"), i, w)
        {
                if (json_is_true(json_object_get(w, "diverged")))
                        diverged++;
                else if (json_integer_value(json_object_get(w, "held")) == size)
                        current++;
                else
                        behind++;
        }
        metrics_head(out, "totebox_fleetd_audit_checkpoint_size", "gauge",
                     "Entries covered by the last audit checkpoint fleetd signed.");
        fprintf(out, "totebox_fleetd_audit_checkpoint_size %lld\n", (long long)size);
        metrics_head(out, "totebox_fleetd_audit_witnesses", "gauge",
                     "Nodes by the audit checkpoint they hold: the last one, an older one, or one "
                     "this record does not extend.");
        fprintf(out, "totebox_fleetd_audit_witnesses{state=\"current\"} %u\n", current);
        fprintf(out, "totebox_fleetd_audit_witnesses{state=\"behind\"} %u\n", behind);
        fprintf(out, "totebox_fleetd_audit_witnesses{state=\"diverged\"} %u\n", diverged);
        json_decref(st);
}

char *metrics_render(struct fleetd *f)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&buf, &len);

        if (!out)
                return NULL;
        pthread_mutex_lock(&f->lock);
        metrics_build(out);
        metrics_nodes(f, out, clock_monotonic_ms());
        metrics_per_node(f, out, clock_monotonic_ms());
        metrics_vms(f, out);
        metrics_per_vm(f, out, clock_realtime_ms());
        metrics_http(f, out);
        metrics_latency(f, out);
        metrics_audit(f, out);
        pthread_mutex_unlock(&f->lock);
        fclose(out);
        return buf;
}
