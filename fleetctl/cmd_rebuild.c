/* fleetctl rebuild: a controller's state rebuilt from what the nodes hold, for a controller lost
 * with no backup. Run on the new controller (the node API answers only the roster's controller
 * address, and the calls leave from it): every node of the roster is asked for its inventory,
 * and each VM whose pin verifies under the roster's controller pin key (the old fleetd's) and
 * names this fleet, the node that reports it (id and WireGuard key), the VM, its entity and its
 * image becomes a VM row: its plan and request id (the pin's), memory, vCPUs, image, lifecycle.
 * Anything else is named and left out: a VM with no pin or a pin that does not verify, a second
 * copy of an entity, and the nodes that did not answer. What no node holds (the audit record
 * before the rebuild, plans, tokens, operations) is named in the report and in the new record's
 * first entry. The store is built in a directory beside --state-dir and renamed into place. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/pin.h"
#include "common/roster.h"
#include "common/small_file.h"
#include "common/vm_lifecycle.h"
#include "fleetctl/fleetctl.h"
#include "fleetd/store.h"

static const char *const ctl_rebuild_lost[] = {
    "the audit record before the rebuild (it was the lost controller's alone)",
    "plans: open, dropped, and the plan rows behind the VMs (their ids are kept)",
    "API tokens (make new ones: fleetctl token create)",
    "operations and their history",
    "VMs still being created when the controller was lost (no node holds them yet)",
    "each VM's vault disk size (recorded as 0: the node holds the disk)",
    "the old pin, audit and vault-witness keys: the new fleetd makes its own; the genesis must "
    "publish the new pin key (totebox-pair controller-key)",
    NULL,
};

struct ctl_rebuild {
        const struct roster *ro;
        uint8_t pk[32];
        struct store *s;
        struct fleet_transport t;
        uint16_t port;
        json_t *nodes, *recovered, *refused;
        char why[200];       /* the last pin verdict, as a reason */
        struct fleet_vm *vm; /* the row being recovered: 1.5 KiB, one for the run, on the heap */
};

static void ctl_rebuild_refuse(struct ctl_rebuild *b, const char *vm, const char *node,
                               const char *why)
{
        json_array_append_new(b->refused,
                              json_pack("{s:s, s:s, s:s}", "vm", vm, "node", node, "why", why));
}

/* The pin and fields of one inventory entry as a VM row; NULL with why when it is not one. */
static const char *ctl_rebuild_vm(struct ctl_rebuild *b, const struct roster_node *rn,
                                  const json_t *v, struct fleet_vm *ret)
{
        const char *id = json_string_value(json_object_get(v, "id"));
        const char *lc = json_string_value(json_object_get(v, "lifecycle"));
        json_t *mem = json_object_get(v, "memory_mib"), *cpus = json_object_get(v, "vcpus");
        struct pin p;
        char err[256];
        enum pin_verdict verdict;

        if (!json_is_object(json_object_get(v, "pin")))
                return "no pin";
        if (pin_from_json(json_object_get(v, "pin"), &p, err, sizeof(err)) < 0) {
                snprintf(b->why, sizeof(b->why), "its pin does not parse: %.120s", err);
                return b->why;
        }
        verdict = pin_check(
            &p, b->pk,
            &(struct pin_expect){.fleet_id = b->ro->fleet_id,
                                 .vm_id = id,
                                 .node_id = rn->id,
                                 .node_wg_key = rn->wg_public_key[0] ? rn->wg_public_key : NULL,
                                 .entity = json_string_value(json_object_get(v, "entity")),
                                 .image = json_string_value(json_object_get(v, "image"))});
        if (verdict != PIN_OK) {
                snprintf(b->why, sizeof(b->why),
                         "its pin does not hold under the roster's controller pin key (%s)",
                         pin_verdict_name(verdict));
                return b->why;
        }
        if (!ident_valid(IDENT_PLAN, p.request_id))
                return "the pin's request id is not a plan id fleetd makes";
        if (!json_is_integer(mem) || json_integer_value(mem) <= 0 || !json_is_integer(cpus) ||
            json_integer_value(cpus) <= 0 || !lc || vm_lifecycle_parse(lc, &ret->lifecycle) < 0 ||
            ret->lifecycle == VM_LC_RETIRED)
                return "memory_mib, vcpus or lifecycle missing or out of range";
        snprintf(ret->id, sizeof(ret->id), "%s", p.vm_id);
        snprintf(ret->entity, sizeof(ret->entity), "%s", p.entity);
        snprintf(ret->node_id, sizeof(ret->node_id), "%s", rn->id);
        /* a plan id: 32 hex digits (checked above), fleetd's request id for the creation */
        memcpy(ret->plan_id, p.request_id, PLAN_ID_LEN + 1);
        memcpy(ret->request_id, p.request_id, PLAN_ID_LEN + 1);
        snprintf(ret->image, sizeof(ret->image), "%s", p.image);
        snprintf(ret->reason, sizeof(ret->reason), "rebuilt from node '%s''s inventory", rn->id);
        ret->memory_mib = (uint64_t)json_integer_value(mem);
        ret->vcpus = (uint64_t)json_integer_value(cpus);
        ret->created_ms = clock_realtime_ms();
        ret->status = VM_ACTIVE;
        return NULL;
}

static void ctl_rebuild_record(struct ctl_rebuild *b, const struct roster_node *rn, json_t *v)
{
        const char *id = json_string_value(json_object_get(v, "id"));
        struct fleet_vm *vm = b->vm;
        const char *why;
        int r;

        if (!id || !ident_valid(IDENT_VM, id)) {
                ctl_rebuild_refuse(b, "?", rn->id, "an entry without a valid VM id");
                return;
        }
        memset(vm, 0, sizeof(*vm));
        why = ctl_rebuild_vm(b, rn, v, vm);
        if (why) {
                ctl_rebuild_refuse(b, id, rn->id, why);
                return;
        }
        r = store_begin(b->s);
        if (r == 0) {
                r = store_vm_insert(b->s, vm);
                r = r
                        ?: audit_append(b->s, true, "vm.rebuilt", vm->id, "fleetctl rebuild",
                                        json_pack("{s:s, s:s, s:s}", "node_id", vm->node_id,
                                                  "entity", vm->entity, "lifecycle",
                                                  vm_lifecycle_name(vm->lifecycle)));
                if (r < 0)
                        store_rollback(b->s);
                else
                        r = store_commit(b->s);
        }
        if (r < 0) {
                ctl_rebuild_refuse(b, id, rn->id,
                                   r == -EEXIST ? "its entity (or id) was already recovered from "
                                                  "another node: a copy, never adopted"
                                                : "the store refused it");
                return;
        }
        json_array_append_new(b->recovered, json_string(vm->id));
}

static void ctl_rebuild_node(struct ctl_rebuild *b, const struct roster_node *rn)
{
        char *body = NULL;
        long status = 0;
        json_t *inv = NULL, *vms = NULL;
        int r = b->t.call(b->t.ctx, rn->mesh_address, b->port, "GET", "/v1/inventory", NULL, 5000,
                          &status, &body);
        const char *node;
        char why[160] = "";

        if (r < 0)
                snprintf(why, sizeof(why), "no answer: %s", strerror(-r));
        else if (status != 200)
                snprintf(why, sizeof(why), "answered HTTP %ld", status);
        else if (!(inv = json_loads(body ? body : "", 0, NULL)) ||
                 !(node = json_string_value(json_object_get(inv, "node"))) ||
                 strcmp(node, rn->id) != 0 || !json_is_array(vms = json_object_get(inv, "vms")))
                snprintf(why, sizeof(why), "its inventory is malformed or names another node");
        if (!why[0])
                for (size_t i = 0; i < json_array_size(vms); i++)
                        ctl_rebuild_record(b, rn, json_array_get(vms, i));
        json_array_append_new(b->nodes, json_pack("{s:s, s:b, s:s?, s:I}", "id", rn->id, "answered",
                                                  !why[0], "why", why[0] ? why : NULL, "vms",
                                                  (json_int_t)json_array_size(vms)));
        json_decref(inv);
        free(body);
}

static void ctl_rebuild_print(const struct ctl *c, json_t *report)
{
        size_t i;
        json_t *v;

        if (c->json) {
                ctl_print(c, report);
                return;
        }
        json_array_foreach(json_object_get(report, "nodes"), i, v)
            printf("node %-20s %s\n", json_string_value(json_object_get(v, "id")),
                   json_is_true(json_object_get(v, "answered"))
                       ? "answered"
                       : json_string_value(json_object_get(v, "why")));
        printf("recovered %zu VMs:", json_array_size(json_object_get(report, "recovered")));
        json_array_foreach(json_object_get(report, "recovered"), i, v)
            printf(" %s", json_string_value(v));
        printf("\n");
        json_array_foreach(json_object_get(report, "not_recovered"), i, v)
            printf("not recovered: VM '%s' on node '%s': %s\n",
                   json_string_value(json_object_get(v, "vm")),
                   json_string_value(json_object_get(v, "node")),
                   json_string_value(json_object_get(v, "why")));
        json_array_foreach(json_object_get(report, "lost"), i, v)
            printf("lost: %s\n", json_string_value(v));
}

static int ctl_rebuild_run(struct ctl *c, struct ctl_rebuild *b, const char *dir)
{
        const struct roster_node *ctl_node = roster_find_by_id(b->ro, b->ro->controller);
        char held[128];
        json_t *report, *lost = json_array();
        int r = store_open(dir, &b->s);

        if (r < 0) {
                fprintf(stderr, "fleetctl: cannot make a store in '%s': %s\n", dir, strerror(-r));
                return r;
        }
        store_meta_claim(b->s, "fleet_id", b->ro->fleet_id, held, sizeof(held));
        node_client_init(&b->t, ctl_node ? ctl_node->mesh_address : NULL);
        for (size_t i = 0; i < b->ro->n_nodes; i++)
                ctl_rebuild_node(b, &b->ro->nodes[i]);
        for (const char *const *l = ctl_rebuild_lost; *l; l++)
                json_array_append_new(lost, json_string(*l));
        report =
            json_pack("{s:s, s:O, s:O, s:O, s:o}", "fleet_id", b->ro->fleet_id, "nodes", b->nodes,
                      "recovered", b->recovered, "not_recovered", b->refused, "lost", lost);
        r = audit_append(b->s, false, "fleetd.rebuilt", "", "fleetctl rebuild",
                         json_deep_copy(report));
        store_close(b->s);
        b->s = NULL;
        if (r < 0)
                fprintf(stderr, "fleetctl: cannot record the rebuild in the audit record\n");
        else
                ctl_rebuild_print(c, report);
        json_decref(report);
        return r;
}

int ctl_cmd_rebuild(struct ctl *c)
{
        struct ctl_rebuild b = {.port = 9172};
        char err[256], *tmp = NULL;
        struct roster *ro = NULL;
        int r = -EINVAL;

        if (c->argc != 0 || !c->roster_file) {
                fprintf(stderr, "usage: fleetctl rebuild --roster FILE [--node-port N] (into "
                                "--state-dir, which must be empty or absent)\n");
                return 2;
        }
        if (c->node_port && (atoi(c->node_port) <= 0 || atoi(c->node_port) > 65535)) {
                fprintf(stderr, "fleetctl: --node-port '%s' is not a port\n", c->node_port);
                return 2;
        }
        if (c->node_port)
                b.port = (uint16_t)atoi(c->node_port);
        if (sodium_init() < 0 || !ctl_dir_empty_or_absent(c->state_dir, false)) {
                fprintf(stderr,
                        "fleetctl: the state directory '%s' is not empty: rebuild only "
                        "into a new controller's empty state directory\n",
                        c->state_dir);
                return 1;
        }
        ro = roster_load_file(c->roster_file, err, sizeof(err));
        if (!ro) {
                fprintf(stderr, "fleetctl: cannot read the roster '%s': %s\n", c->roster_file, err);
                return 1;
        }
        b.ro = ro;
        if (pin_roster_key(ro, b.pk) < 0) {
                fprintf(stderr, "fleetctl: the roster names no controller pin key: no node's pin "
                                "can be checked, so nothing would be recovered\n");
                goto cleanup;
        }
        b.vm = malloc(sizeof(*b.vm));
        if (!b.vm) {
                fprintf(stderr, "fleetctl: out of memory\n");
                goto cleanup;
        }
        if (asprintf(&tmp, "%s.rebuild-XXXXXX", c->state_dir) < 0)
                tmp = NULL; /* asprintf leaves it undefined on failure */
        if (!tmp || !mkdtemp(tmp)) {
                fprintf(stderr, "fleetctl: cannot make a directory beside '%s': %s\n", c->state_dir,
                        strerror(errno));
                goto cleanup;
        }
        b.nodes = json_array();
        b.recovered = json_array();
        b.refused = json_array();
        r = ctl_rebuild_run(c, &b, tmp);
        if (r == 0 && (!ctl_dir_empty_or_absent(c->state_dir, true) || rename(tmp, c->state_dir))) {
                fprintf(stderr, "fleetctl: cannot move the rebuilt state to '%s'\n", c->state_dir);
                r = -EEXIST;
        }
        if (r < 0) {
                char *db = small_file_path(tmp, STORE_FILE);

                if (db)
                        unlink(db);
                free(db);
                rmdir(tmp);
        }
cleanup:
        free(tmp);
        free(b.vm);
        json_decref(b.nodes);
        json_decref(b.recovered);
        json_decref(b.refused);
        roster_free(ro);
        return r < 0 ? 1 : 0;
}
