/* /metrics: fleetd's counters and gauges in the Prometheus text exposition format (0.0.4).
 * Counters live in f->metrics and the node table, gauges are computed at render time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "fleetd/fleetd.h"

static const double latency_bounds[LATENCY_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                       0.025,  0.05,  0.1,    0.5,   1.0};

void metrics_observe_latency(struct fleetd *f, double seconds)
{
        unsigned b = 0;

        while (b < LATENCY_BUCKETS && seconds > latency_bounds[b])
                b++;
        pthread_mutex_lock(&f->lock);
        f->metrics.latency_bucket[b]++;
        f->metrics.latency_sum_s += seconds;
        f->metrics.latency_count++;
        f->metrics.requests++;
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
        metrics_head(out, "totebox_fleetd_heartbeats_dropped_total", "counter",
                     "Heartbeats dropped, by reason.");
        for (unsigned d = 0; d < HB_DROP_MAX; d++)
                fprintf(out, "totebox_fleetd_heartbeats_dropped_total{reason=\"%s\"} %llu\n",
                        hb_drop_name((enum hb_drop)d), (unsigned long long)f->table.dropped[d]);
        metrics_head(out, "totebox_fleetd_node_state_changes_total", "counter",
                     "Node liveness state changes.");
        fprintf(out, "totebox_fleetd_node_state_changes_total %llu\n",
                (unsigned long long)f->metrics.state_changes);
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
        metrics_nodes(f, out, clock_monotonic_ms());
        metrics_vms(f, out);
        metrics_latency(f, out);
        metrics_audit(f, out);
        pthread_mutex_unlock(&f->lock);
        fclose(out);
        return buf;
}
