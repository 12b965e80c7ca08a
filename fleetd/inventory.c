/* Inventory reconciliation: what a node's vmhost says it holds against what fleetd placed there.
 * A VM the node reports that fleetd never placed is flagged "unknown" (never adopted); a VM
 * fleetd created there that the node lacks is flagged "missing" (never dropped). A VM pinned
 * elsewhere is "misplaced", a fleet-level alarm (health, metrics, the VM and node views) for as
 * long as the node reports it: one occurrence, audited once when it begins. A new integrity
 * mismatch is appended to the audit record and raised at fleet level (/v1/health, /metrics). Each
 * flag is logged and audited once. The node is the source of truth for a VM's lifecycle: fleetd's
 * record follows it (audited) unless the inventory may predate a verb call to that VM. The last
 * full verification the agent reported is kept, and the one fleetd asked for is audited when it
 * arrives. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/clock.h"
#include "common/json_input.h"
#include "common/log.h"
#include "fleetd/store.h"

#define INVENTORY_MAX_BYTES  (8u * 1024 * 1024)
#define INVENTORY_MAX_DEPTH  8
#define INVENTORY_MAX_VMS    10000
#define INVENTORY_MAX_IMAGES 1000

/* One of agent.last_report and agent.last_requested_report, when there is one: a report as
 * vmhost received it from the agent; "key" names it, "at_key" its arrival time. */
static int inventory_check_one_report(const json_t *agent, const char *key, const char *at_key,
                                      const char *id, struct json_input_error *e)
{
        const char *trigger = NULL, *rid = NULL;
        json_t *rep, *at = json_object_get(agent, at_key);
        uint64_t n;
        int r = 0;

        if (at && !json_is_null(at))
                r = json_input_get_uint(agent, at_key, true, 0, UINT64_MAX / 2, &n, e);
        rep = json_object_get(agent, key);
        if (r < 0 || !rep || json_is_null(rep))
                return r;
        if (!json_is_object(rep))
                return json_input_fail(e, "VM '%s': 'agent.%s' must be an object", id, key);
        r = r ?: json_input_get_string(rep, "trigger", true, 15, &trigger, e);
        r = r ?: json_input_get_string(rep, "request_id", false, IDENT_REQUEST_MAX, &rid, e);
        r = r ?: json_input_get_uint(rep, "duration_ms", true, 0, UINT64_MAX / 2, &n, e);
        r = r ?: json_input_get_uint(rep, "records", true, 0, UINT64_MAX / 2, &n, e);
        r = r ?: json_input_get_uint(rep, "bytes", true, 0, UINT64_MAX / 2, &n, e);
        if (r < 0)
                return r;
        if (rid && !ident_valid(IDENT_REQUEST, rid))
                return json_input_fail(e, "VM '%s': report request id '%.40s' is not valid", id,
                                       rid);
        if (!json_is_array(json_object_get(rep, "mismatches")))
                return json_input_fail(e, "VM '%s': 'agent.%s.mismatches' must be an array", id,
                                       key);
        return 0;
}

static int inventory_check_report(const json_t *v, const char *id, struct json_input_error *e)
{
        json_t *agent = json_object_get(v, "agent");

        if (!agent || json_is_null(agent))
                return 0;
        if (!json_is_object(agent))
                return json_input_fail(e, "VM '%s': 'agent' must be an object", id);
        return inventory_check_one_report(agent, "last_report", "last_report_ms", id, e)
                   ?: inventory_check_one_report(agent, "last_requested_report",
                                                 "last_requested_report_ms", id, e);
}

/* Checks the fields fleetd uses; other fields of a vm object are vmhost's business. */
static int inventory_check_vm(const json_t *v, struct json_input_error *e)
{
        const char *id = NULL, *state = NULL, *lc = NULL, *st = NULL;
        json_t *integ;
        int r = 0;

        if (!json_is_object(v))
                return json_input_fail(e, "every entry of 'vms' must be an object");
        r = r ?: json_input_get_string(v, "id", true, VM_ID_MAX, &id, e);
        r = r ?: json_input_get_string(v, "state", false, 15, &state, e);
        r = r ?: json_input_get_string(v, "lifecycle", false, 15, &lc, e);
        if (r < 0)
                return r;
        if (!ident_valid(IDENT_VM, id))
                return json_input_fail(e, "VM id '%.64s' is not valid", id);
        if (lc) {
                enum vm_lifecycle l;

                if (vm_lifecycle_parse(lc, &l) < 0 || l == VM_LC_RETIRED)
                        return json_input_fail(e, "VM '%s': lifecycle '%.16s' is unknown", id, lc);
        }
        r = inventory_check_report(v, id, e);
        if (r < 0)
                return r;
        integ = json_object_get(v, "integrity");
        if (integ && !json_is_null(integ)) {
                if (!json_is_object(integ))
                        return json_input_fail(e, "VM '%s': 'integrity' must be an object", id);
                r = json_input_get_string(integ, "status", true, 15, &st, e);
                if (r < 0)
                        return r;
                if (strcmp(st, "ok") && strcmp(st, "mismatch") && strcmp(st, "unknown"))
                        return json_input_fail(e, "VM '%s': integrity status '%.16s' is unknown",
                                               id, st);
        }
        return 0;
}

/* The base images a node holds (optional: a vmhost without image reports sends none). */
static int inventory_check_images(const json_t *images, struct json_input_error *e)
{
        if (!images)
                return 0;
        if (!json_is_array(images) || json_array_size(images) > INVENTORY_MAX_IMAGES)
                return json_input_fail(e, "field 'images' must be an array of at most %d images",
                                       INVENTORY_MAX_IMAGES);
        for (size_t i = 0; i < json_array_size(images); i++) {
                static const char *const fields[] = {"name", "sha256", "size", NULL};
                json_t *im = json_array_get(images, i);
                const char *name = NULL, *sha = NULL;
                uint64_t size;
                int r =
                    json_is_object(im) ? 0 : json_input_fail(e, "every image must be an object");

                r = r ?: json_input_check_keys(im, fields, e);
                r = r ?: json_input_get_string(im, "name", true, IDENT_IMAGE_MAX, &name, e);
                r = r ?: json_input_get_string(im, "sha256", true, IMAGE_TRANSFER_HEX_LEN, &sha, e);
                r = r ?: json_input_get_uint(im, "size", true, 0, INT64_MAX, &size, e);
                if (r < 0)
                        return r;
                if (!ident_valid(IDENT_IMAGE, name) ||
                    !ident_hex_valid(sha, IMAGE_TRANSFER_HEX_LEN))
                        return json_input_fail(e, "image '%.64s' has an invalid name or sha256",
                                               name);
        }
        return 0;
}

/* The inventory's protocol version, by the heartbeat's rule (docs/contracts.md, "Protocol
 * versions"): "v" absent is version 1 (every vmhost so far); one step newer is read by the fields
 * known here, its other top-level fields ignored; anything else is refused, naming the version. */
#define INVENTORY_VERSION 1

static int inventory_check_version(const json_t *o, struct json_input_error *e, bool *ret_newer)
{
        uint64_t v = INVENTORY_VERSION;
        int r = json_input_get_uint(o, "v", false, 0, UINT32_MAX, &v, e);

        if (r == 0 && (v < INVENTORY_VERSION || v > INVENTORY_VERSION + 1))
                return json_input_fail(e,
                                       "inventory version %llu is outside the versions %d..%d "
                                       "this fleetd reads",
                                       (unsigned long long)v, INVENTORY_VERSION,
                                       INVENTORY_VERSION + 1);
        *ret_newer = v > INVENTORY_VERSION;
        return r;
}

static int inventory_check(const json_t *o, const char *node_id, struct json_input_error *e)
{
        static const char *const fields[] = {"v",         "node",   "digest", "vms",
                                             "creations", "images", NULL};
        const char *node = NULL, *digest = NULL;
        json_t *vms = json_object_get(o, "vms");
        uint64_t creations;
        bool newer = false;
        int r = json_is_object(o) ? 0 : json_input_fail(e, "expected a JSON object");

        r = r ?: inventory_check_version(o, e, &newer);
        if (r == 0 && !newer)
                r = json_input_check_keys(o, fields, e);
        r = r ?: json_input_get_string(o, "node", true, NODE_ID_MAX, &node, e);
        r = r ?: json_input_get_string(o, "digest", true, DIGEST_HEX_LEN, &digest, e);
        r = r ?: json_input_get_uint(o, "creations", false, 0, INT64_MAX, &creations, e);
        if (r < 0)
                return r;
        if (strcmp(node, node_id) != 0)
                return json_input_fail(e, "inventory names node '%s', expected '%s'", node,
                                       node_id);
        if (strlen(digest) != DIGEST_HEX_LEN)
                return json_input_fail(e, "field 'digest' is not 64 hex digits");
        if (!json_is_array(vms) || json_array_size(vms) > INVENTORY_MAX_VMS)
                return json_input_fail(e, "field 'vms' must be an array of at most %d VMs",
                                       INVENTORY_MAX_VMS);
        for (size_t i = 0; i < json_array_size(vms); i++) {
                r = inventory_check_vm(json_array_get(vms, i), e);
                if (r < 0)
                        return r;
        }
        return inventory_check_images(json_object_get(o, "images"), e);
}

/* The node's integrity report for vm. A mismatch stands until a verification says otherwise:
 * "unknown" (no agent report on that node yet: after a vmhost restart, or on the node a
 * re-homing moved the Totebox to) leaves it as it is, so the alarm is not lost meanwhile. */
static void inventory_integrity(struct fleetd *f, struct fleet_vm *vm, json_t *integ)
{
        const char *st = json_string_value(json_object_get(integ, "status"));
        const char *root = json_string_value(json_object_get(integ, "root"));
        const char *old_root = json_string_value(json_object_get(vm->integrity_obj, "root"));
        bool was = strcmp(vm->integrity, "mismatch") == 0;
        bool is = st && strcmp(st, "mismatch") == 0;
        bool changed_root =
            vm->integrity_obj && (root ? !old_root || strcmp(root, old_root) : old_root != NULL);
        bool persist = st && strcmp(st, vm->integrity) != 0;
        const char *kind = NULL;
        json_t *detail = NULL;

        if (was && st && strcmp(st, "unknown") == 0)
                return;
        if (is && (!was || changed_root)) {
                f->metrics.integrity_mismatches++;
                log_warn("integrity mismatch in VM '%s' on node '%s' (entity '%s')", vm->id,
                         vm->node_id, vm->entity);
                kind = "integrity.mismatch";
                detail = json_pack("{s:s, s:s, s:O}", "node_id", vm->node_id, "entity", vm->entity,
                                   "integrity", integ);
        } else if (was && st && !is) {
                log_info("VM '%s' integrity is now '%s'", vm->id, st);
                kind = "integrity.status";
                detail = json_pack("{s:s, s:s}", "node_id", vm->node_id, "status", st);
        }
        if (st)
                snprintf(vm->integrity, sizeof(vm->integrity), "%s", st);
        json_decref(vm->integrity_obj);
        vm->integrity_obj = json_deep_copy(integ);
        /* the stored status and the entry that says why it changed commit together */
        if (persist)
                store_vm_update_audited(f->store, vm, kind, "fleetd", detail);
        else if (kind)
                audit_append(f->store, false, kind, vm->id, "fleetd", detail);
}

/* Follows the node's lifecycle. Returns true when the inventory may predate a verb call to the
 * VM and disagrees: then it is fetched again rather than believed. */
static bool inventory_lifecycle(struct fleetd *f, const struct fleet_node *node,
                                struct fleet_vm *vm, const char *lc)
{
        enum vm_lifecycle l, was = vm->lifecycle;
        json_t *detail;

        if (!lc || vm_lifecycle_parse(lc, &l) < 0 || l == VM_LC_RETIRED ||
            vm->lifecycle == VM_LC_RETIRED)
                return false; /* retired is fleetd's own word, and final */
        if (vm->verb_busy || vm->verb_mark > node->inv_verb_mark)
                return l != vm->lifecycle;
        if (l == was) {
                if (vm->lc_unsure[0])
                        log_info("VM '%s': node '%s' confirms it is '%s' after '%s'", vm->id,
                                 vm->node_id, lc, vm->lc_unsure);
                vm->lc_unsure[0] = '\0';
                return false;
        }
        vm->lifecycle = l;
        f->metrics.lifecycle_corrections++;
        log_warn("VM '%s': node '%s' says it is '%s', fleetd had '%s'%s%s; corrected", vm->id,
                 vm->node_id, lc, vm_lifecycle_name(was), vm->lc_unsure[0] ? " after " : "",
                 vm->lc_unsure);
        detail = json_pack("{s:s, s:s, s:s, s:s, s:s?}", "source", "inventory", "node_id",
                           vm->node_id, "was", vm_lifecycle_name(was), "lifecycle", lc, "after",
                           vm->lc_unsure[0] ? vm->lc_unsure : NULL);
        vm->lc_unsure[0] = '\0';
        store_vm_update_audited(f->store, vm, "vm.lifecycle", "fleetd", detail);
        return false;
}

/* Keeps the last full verification (a report whose trigger is not "seal"); audits, once, the
 * arrival of the one fleetd asked for. Shapes were checked by inventory_check_report. */
static void inventory_take_report(struct fleetd *f, struct fleet_vm *vm, json_t *rep, json_t *at)
{
        const char *trigger = json_string_value(json_object_get(rep, "trigger"));
        const char *rid = json_string_value(json_object_get(rep, "request_id"));
        json_int_t at_ms = json_is_integer(at) ? json_integer_value(at) : 0;
        char when[40];
        json_t *n;

        if (!json_is_object(rep) || !trigger || strcmp(trigger, "seal") == 0)
                return;
        clock_format_rfc3339((uint64_t)at_ms, when, sizeof(when));
        n = json_pack(
            "{s:s, s:s?, s:I, s:s, s:O, s:O, s:O, s:I}", "trigger", trigger, "request_id", rid,
            "at_ms", at_ms, "at", when, "duration_ms", json_object_get(rep, "duration_ms"),
            "records", json_object_get(rep, "records"), "bytes", json_object_get(rep, "bytes"),
            "mismatches", (json_int_t)json_array_size(json_object_get(rep, "mismatches")));
        if (!n || (vm->verification && json_equal(n, vm->verification))) {
                json_decref(n);
                return;
        }
        if (rid && strcmp(rid, vm->verify_request_id) == 0 &&
            strcmp(rid, vm->verify_done_id) != 0) {
                vm->verify_poll_until_ms = 0;
                snprintf(vm->verify_done_id, sizeof(vm->verify_done_id), "%s", rid);
                log_info(
                    "VM '%s': the verification '%s' asked by '%s' is done: %" JSON_INTEGER_FORMAT
                    " mismatches",
                    vm->id, rid, vm->verify_actor,
                    json_integer_value(json_object_get(n, "mismatches")));
                audit_append(f->store, false, "vm.verified", vm->id, "fleetd",
                             json_pack("{s:s, s:s, s:O}", "node_id", vm->node_id, "requested_by",
                                       vm->verify_actor, "result", n));
        }
        if (strcmp(trigger, "schedule") == 0 &&
            json_integer_value(json_object_get(n, "mismatches")) == 0)
                vault_note_clean(f, vm, (uint64_t)at_ms, n);
        json_decref(vm->verification);
        vm->verification = n;
}

/* vmhost keeps the last report that answered a request apart from the last report of any kind,
 * since a scheduled one may follow it before this inventory: the awaited one is taken first. */
static void inventory_verification(struct fleetd *f, struct fleet_vm *vm, json_t *v)
{
        json_t *agent = json_object_get(v, "agent");
        json_t *req = json_object_get(agent, "last_requested_report");
        const char *rid = json_string_value(json_object_get(req, "request_id"));

        if (rid && vm->verify_request_id[0] && strcmp(rid, vm->verify_request_id) == 0 &&
            strcmp(rid, vm->verify_done_id) != 0)
                inventory_take_report(f, vm, req,
                                      json_object_get(agent, "last_requested_report_ms"));
        inventory_take_report(f, vm, json_object_get(agent, "last_report"),
                              json_object_get(agent, "last_report_ms"));
}

/* Started, or used since: a domain that should run and never did (its start failed) is not a
 * created VM; while fleetd creates it, the retry starts it or answers why it cannot. */
static bool inventory_vm_started(json_t *v)
{
        const char *st = json_string_value(json_object_get(v, "state"));
        const char *lc = json_string_value(json_object_get(v, "lifecycle"));

        return (st && (strcmp(st, "running") == 0 || strcmp(st, "paused") == 0)) ||
               (lc && strcmp(lc, "active") != 0);
}

static bool inventory_known_vm(struct fleetd *f, struct fleet_node *node, struct fleet_vm *vm,
                               json_t *v, uint64_t creations)
{
        const char *node_id = node->rn->id;
        const char *state = json_string_value(json_object_get(v, "state"));
        json_t *integ = json_object_get(v, "integrity");
        bool again;

        /* held until a heartbeat at that counter, when the listing shows it holding memory and
         * was asked for after any start of it */
        vm_listed(f, vm, creations, node->inv_fetch_sent, vm_listing_holds(v));
        if (vm->missing) {
                vm->missing = false;
                log_info("VM '%s' is back in node '%s''s inventory", vm->id, node_id);
                audit_append(f->store, false, "vm.found", vm->id, "fleetd",
                             json_pack("{s:s}", "node_id", node_id));
        }
        if (vm->status != VM_ACTIVE && vm->lifecycle != VM_LC_RETIRED && inventory_vm_started(v)) {
                /* the node holds it: a lost answer, a restart, or a creation given up on */
                vm->status = VM_ACTIVE;
                vm->reason[0] = '\0';
                store_vm_update_audited(
                    f->store, vm, "vm.created", "fleetd",
                    json_pack("{s:s, s:s}", "node_id", node_id, "source", "inventory"));
        }
        snprintf(vm->observed, sizeof(vm->observed), "%s", state ? state : "");
        again =
            inventory_lifecycle(f, node, vm, json_string_value(json_object_get(v, "lifecycle")));
        if (json_is_object(integ))
                inventory_integrity(f, vm, integ);
        inventory_verification(f, vm, v);
        vault_witness_on_vm(f, vm, v);
        return again;
}

static bool inventory_has(json_t *vms, const char *id)
{
        for (size_t i = 0; i < json_array_size(vms); i++)
                if (strcmp(json_string_value(json_object_get(json_array_get(vms, i), "id")), id) ==
                    0)
                        return true;
        return false;
}

static bool json_array_has_string(json_t *a, const char *s)
{
        for (size_t i = 0; i < json_array_size(a); i++)
                if (strcmp(json_string_value(json_array_get(a, i)), s) == 0)
                        return true;
        return false;
}

/* A node reports a VM pinned to another node: a copy of its disks and definition, or worse.
 * Audited when the occurrence begins (the id is not in the node's last misplaced list). */
static void inventory_misplaced(struct fleetd *f, struct fleet_node *node, struct fleet_vm *vm,
                                json_t *v, json_t *misplaced)
{
        const char *state = json_string_value(json_object_get(v, "state"));

        json_array_append_new(misplaced, json_string(vm->id));
        if (json_array_has_string(node->misplaced_vms, vm->id))
                return;
        f->metrics.misplaced_occurrences++;
        log_error("node '%s' reports VM '%s' (entity '%s', state '%s'), which is pinned to node "
                  "'%s': misplaced",
                  node->rn->id, vm->id, vm->entity, state ? state : "unknown", vm->node_id);
        audit_append(f->store, false, "vm.misplaced", vm->id, "fleetd",
                     json_pack("{s:s, s:s, s:s, s:s}", "reported_by", node->rn->id, "pinned_to",
                               vm->node_id, "entity", vm->entity, "state",
                               state ? state : "unknown"));
}

/* The occurrences that ended: ids of the node's last misplaced list it no longer reports. */
static void inventory_misplaced_end(struct fleet_node *node, json_t *misplaced)
{
        for (size_t i = 0; i < json_array_size(node->misplaced_vms); i++) {
                const char *id = json_string_value(json_array_get(node->misplaced_vms, i));

                if (!json_array_has_string(misplaced, id))
                        log_warn("node '%s' no longer reports VM '%s', which is pinned elsewhere; "
                                 "the misplaced alarm for it ends",
                                 node->rn->id, id);
        }
        json_decref(node->misplaced_vms);
        node->misplaced_vms = misplaced;
}

/* Returns true when the inventory must be fetched again (see inventory_lifecycle). */
static bool inventory_reconcile(struct fleetd *f, struct fleet_node *node, json_t *vms,
                                uint64_t creations)
{
        const char *node_id = node->rn->id;
        json_t *unknown = json_array(), *misplaced = json_array();
        bool again = false;

        for (size_t i = 0; i < json_array_size(vms); i++) {
                json_t *v = json_array_get(vms, i);
                const char *id = json_string_value(json_object_get(v, "id"));
                struct fleet_vm *vm = vm_table_find(f, id);

                if (vm && strcmp(vm->node_id, node_id) != 0) {
                        if (!export_retired_copy(f, vm, node_id, v))
                                inventory_misplaced(f, node, vm, v, misplaced);
                        continue;
                }
                if (vm) {
                        again |= inventory_known_vm(f, node, vm, v, creations);
                        continue;
                }
                json_array_append_new(unknown, json_string(id));
                if (json_array_has_string(node->unknown_vms, id))
                        continue;
                log_warn("node '%s' reports VM '%s', which fleetd never placed; flagged, not "
                         "adopted",
                         node_id, id);
                audit_append(f->store, false, "vm.unknown", id, "fleetd",
                             json_pack("{s:s}", "node_id", node_id));
        }
        json_decref(node->unknown_vms);
        node->unknown_vms = unknown;
        inventory_misplaced_end(node, misplaced);
        for (size_t i = 0; i < f->n_vms; i++) {
                struct fleet_vm *vm = &f->vms[i];

                if (strcmp(vm->node_id, node_id) != 0 || vm->status != VM_ACTIVE || vm->missing ||
                    inventory_has(vms, vm->id))
                        continue;
                vm->missing = true;
                log_warn("node '%s' lacks VM '%s' that fleetd placed there; flagged, not dropped",
                         node_id, vm->id);
                audit_append(f->store, false, "vm.missing", vm->id, "fleetd",
                             json_pack("{s:s}", "node_id", node_id));
        }
        return again;
}

int inventory_apply(struct fleetd *f, const char *node_id, const char *expected_digest,
                    const char *text, size_t len, char *err, size_t errsize)
{
        struct json_input_error e = {{0}};
        json_t *o = json_input_parse(text, len, INVENTORY_MAX_BYTES, INVENTORY_MAX_DEPTH, &e);
        struct fleet_node *node;
        int r = o ? inventory_check(o, node_id, &e) : -EINVAL;

        if (r < 0) {
                snprintf(err, errsize, "%s", e.text);
                json_decref(o);
                return r;
        }
        pthread_mutex_lock(&f->lock);
        node = node_table_find(&f->table, node_id);
        if (!node) {
                snprintf(err, errsize, "node '%s' is not in the roster", node_id);
                r = -ENOENT;
        } else {
                const char *digest = json_string_value(json_object_get(o, "digest"));
                json_t *c = json_object_get(o, "creations");
                json_t *vms = json_object_get(o, "vms");
                bool again =
                    inventory_reconcile(f, node, vms, c ? (uint64_t)json_integer_value(c) : 0);

                snprintf(node->inv_digest, sizeof(node->inv_digest), "%s", digest);
                if (json_object_get(o, "images")) {
                        json_decref(node->images);
                        node->images = json_incref(json_object_get(o, "images"));
                }
                node->inv =
                    expected_digest && strcmp(expected_digest, digest) ? INV_WANTED : INV_OK;
                node->inv_failures = 0;
                if (strcmp(node->hb.inventory_digest, digest) != 0 && node->inv == INV_OK) {
                        /* changed again since the heartbeat: fetch once more */
                        node->inv = INV_WANTED;
                }
                if (again)
                        node->inv = INV_WANTED; /* after the backoff set when it was sent */
                vm_settle_node(f, node, node->inv_fetch_sent, vms);
        }
        pthread_mutex_unlock(&f->lock);
        json_decref(o);
        return r;
}

const char *fleet_integrity_status(struct fleetd *f, json_t **ret_mismatched)
{
        json_t *bad = json_array();
        bool unknown = false;

        for (size_t i = 0; i < f->n_vms; i++) {
                const struct fleet_vm *vm = &f->vms[i];

                if (strcmp(vm->integrity, "mismatch") == 0)
                        json_array_append_new(bad, json_pack("{s:s, s:s, s:s}", "vm_id", vm->id,
                                                             "entity", vm->entity, "node_id",
                                                             vm->node_id));
                else if (vm->status == VM_ACTIVE && strcmp(vm->integrity, "ok") != 0)
                        unknown = true;
        }
        *ret_mismatched = bad;
        if (json_array_size(bad))
                return "mismatch";
        return unknown ? "unknown" : "ok";
}

json_t *fleet_misplaced_vms(struct fleetd *f)
{
        json_t *out = json_array();

        for (size_t i = 0; f->table.roster && i < f->table.roster->n_nodes; i++) {
                const struct fleet_node *n = &f->table.nodes[i];

                for (size_t k = 0; k < json_array_size(n->misplaced_vms); k++) {
                        const char *id = json_string_value(json_array_get(n->misplaced_vms, k));
                        const struct fleet_vm *vm = vm_table_find(f, id);

                        json_array_append_new(out, json_pack("{s:s, s:s, s:s, s:s}", "vm_id", id,
                                                             "entity", vm ? vm->entity : "",
                                                             "pinned_to", vm ? vm->node_id : "",
                                                             "reported_by", n->rn->id));
                }
        }
        return out;
}

json_t *fleet_vm_misplaced_on(struct fleetd *f, const char *vm_id)
{
        json_t *out = json_array();

        for (size_t i = 0; f->table.roster && i < f->table.roster->n_nodes; i++)
                if (json_array_has_string(f->table.nodes[i].misplaced_vms, vm_id))
                        json_array_append_new(out, json_string(f->table.nodes[i].rn->id));
        return out;
}
