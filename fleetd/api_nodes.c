/* GET /v1/nodes and /v1/nodes/{id}: the node table as the operator sees it: liveness, figures,
 * available RAM after reservations, and what the last inventory flagged. */
#include <stdint.h>
#include <string.h>

#include "common/clock.h"
#include "fleetd/api.h"

static const char *const inventory_names[] = {"none", "pending", "ok", "unavailable"};

json_t *api_node_to_json(const struct fleet_node *n, const struct fleetd_config *cfg,
                         uint64_t now_ms)
{
        const struct roster_node *rn = n->rn;
        enum node_state s = node_state_at(n, cfg, now_ms);
        json_t *o =
            json_pack("{s:s, s:s, s:s, s:s, s:s, s:b, s:I, s:s}", "id", rn->id, "name", rn->name,
                      "role", roster_role_name(rn->role), "mesh_address", rn->mesh_address, "state",
                      node_state_name(s), "placeable", s == NODE_ALIVE, "reserved_mib",
                      (json_int_t)n->reserved_mib, "inventory", inventory_names[n->inv]);

        json_object_set_new(o, "unknown_vms",
                            n->unknown_vms ? json_copy(n->unknown_vms) : json_array());
        json_object_set_new(o, "misplaced_vms",
                            n->misplaced_vms ? json_copy(n->misplaced_vms) : json_array());
        if (!n->seen) {
                json_object_set_new(o, "heartbeat_age_ms", json_null());
                return o;
        }
        json_object_set_new(o, "heartbeat_age_ms",
                            json_integer((json_int_t)node_heartbeat_age(n, now_ms)));
        json_object_set_new(o, "heartbeats", json_integer((json_int_t)n->heartbeats));
        json_object_set_new(o, "epoch", json_integer((json_int_t)n->hb.epoch));
        json_object_set_new(o, "seq", json_integer((json_int_t)n->hb.seq));
        json_object_set_new(o, "cpus", json_integer(n->hb.cpus));
        json_object_set_new(o, "cpu_percent", json_real(n->hb.cpu_percent));
        json_object_set_new(o, "mem_total_mib", json_integer((json_int_t)n->hb.mem_total_mib));
        json_object_set_new(o, "mem_available_mib",
                            json_integer((json_int_t)n->hb.mem_available_mib));
        json_object_set_new(o, "mem_committed_mib",
                            json_integer((json_int_t)n->hb.mem_committed_mib));
        json_object_set_new(o, "available_mib", json_integer((json_int_t)node_available_mib(n)));
        json_object_set_new(o, "libvirt_age_ms", json_integer(n->hb.libvirt_age_ms));
        json_object_set_new(o, "vm_count", json_integer(n->hb.vm_count));
        json_object_set_new(o, "inventory_digest", json_string(n->hb.inventory_digest));
        return o;
}

void api_nodes_list(struct api_request *req, struct api_response *resp)
{
        struct fleetd *f = req->f;
        uint64_t now = clock_monotonic_ms();
        json_t *nodes = json_array();

        pthread_mutex_lock(&f->lock);
        for (size_t i = 0; i < f->table.roster->n_nodes; i++)
                json_array_append_new(nodes, api_node_to_json(&f->table.nodes[i], &f->cfg, now));
        pthread_mutex_unlock(&f->lock);
        api_ok(resp, json_pack("{s:o}", "nodes", nodes));
}

void api_nodes_get(struct api_request *req, struct api_response *resp)
{
        struct fleetd *f = req->f;
        struct fleet_node *n;
        json_t *o = NULL;

        if (!node_id_valid(req->params[0])) {
                api_problem(resp, 400, "invalid-node-id", "'%.64s' is not a valid node id",
                            req->params[0]);
                return;
        }
        pthread_mutex_lock(&f->lock);
        n = node_table_find(&f->table, req->params[0]);
        if (n)
                o = api_node_to_json(n, &f->cfg, clock_monotonic_ms());
        pthread_mutex_unlock(&f->lock);
        if (!o)
                api_problem(resp, 404, "unknown-node", "no node '%s' in the roster",
                            req->params[0]);
        else
                api_ok(resp, o);
}
