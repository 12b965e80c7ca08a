/* A Totebox as one file, at the fleet (docs/fleetd.md "Exports"): POST /v1/vms/{id}/export on
 * a suspended or archived Totebox is a long operation (kind export). fleetd gives the pinned
 * node its record of the Totebox (entity, fleet, image, the signed pin, the pin history from the
 * audit record) and the vault checkpoint it witnessed last; the node writes
 * exports/{id}.tar and its `sha256sum` line, which fleetd signs with its Ed25519 pin key (the
 * key the roster names as the controller's) and hands back to the node as {id}.tar.sig. The
 * export is audited (vm.exported). The file stays on its node: fleetd never moves it. */
#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "fleetd/api.h"
#include "fleetd/store.h"

#define EXPORT_NOTE_MAX     8192
#define EXPORT_TIMEOUT_MIN  600000 /* a disk is read twice and written once */
#define EXPORT_HISTORY_PAGE 1000

struct export_task {
        char vm_id[VM_ID_MAX + 1];
        char node_id[NODE_ID_MAX + 1];
        char address[64];
        json_t *record; /* the manifest's fleet part */
        char note[EXPORT_NOTE_MAX];
        uint64_t cp_size;
};

int export_public_pem(const struct fleetd *f, char *buf, size_t size)
{
        static const uint8_t spki[12] = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03,
                                         0x2b, 0x65, 0x70, 0x03, 0x21, 0x00};
        uint8_t der[44];
        char b64[64];
        int n;

        memcpy(der, spki, sizeof(spki));
        memcpy(der + sizeof(spki), f->pin_sk + 32, 32);
        sodium_bin2base64(b64, sizeof(b64), der, sizeof(der), sodium_base64_VARIANT_ORIGINAL);
        n = snprintf(buf, size, "-----BEGIN PUBLIC KEY-----\n%s\n-----END PUBLIC KEY-----\n", b64);
        return n > 0 && (size_t)n < size ? 0 : -ENOSPC;
}

/* Where the Totebox has been pinned: its creation and every re-homing, from the audit record. */
static json_t *export_pin_history(struct fleetd *f, const char *vm_id)
{
        static const char *const kinds[] = {"vm.created", "vm.rehomed", NULL};
        json_t *h = json_array(), *page, *e;
        size_t i;

        for (const char *const *k = kinds; *k; k++) {
                uint64_t after = 0;

                do {
                        page = audit_list(f->store, after, EXPORT_HISTORY_PAGE, *k);
                        json_array_foreach(page, i, e)
                        {
                                json_t *d = json_object_get(e, "detail");

                                after = (uint64_t)json_integer_value(json_object_get(e, "seq"));
                                if (strcmp(json_string_value(json_object_get(e, "subject")) ?: "",
                                           vm_id) != 0)
                                        continue;
                                json_array_append_new(
                                    h, json_pack("{s:O, s:O, s:s, s:O?, s:O?}", "audit_seq",
                                                 json_object_get(e, "seq"), "time_ms",
                                                 json_object_get(e, "time_ms"), "kind", *k,
                                                 "node_id", json_object_get(d, "node_id"),
                                                 "from_node", json_object_get(d, "from_node")));
                        }
                        i = json_array_size(page);
                        json_decref(page);
                } while (i == EXPORT_HISTORY_PAGE);
        }
        return h;
}

/* Under f->lock: the checks and what the node needs; 0, or a problem in o. */
static int export_prepare(struct fleetd *f, const char *vm_id, struct export_task *t,
                          struct plan_outcome *o)
{
        struct fleet_vm *vm = vm_table_find(f, vm_id);
        struct fleet_node *node = vm ? node_table_find(&f->table, vm->node_id) : NULL;
        enum node_state ns =
            node ? node_state_at(node, &f->cfg, clock_monotonic_ms()) : NODE_UNSEEN;

        o->status = 409;
        if (!vm) {
                o->status = 404;
                o->problem = "unknown-vm";
                snprintf(o->detail, sizeof(o->detail), "no VM '%s'", vm_id);
        } else if (vm->lifecycle != VM_LC_SUSPENDED && vm->lifecycle != VM_LC_ARCHIVED) {
                o->problem = "vm-not-stopped";
                snprintf(o->detail, sizeof(o->detail),
                         "VM '%s' is '%s': only a suspended or archived Totebox is exported "
                         "(suspend or archive it first)",
                         vm_id, vm_lifecycle_name(vm->lifecycle));
        } else if (vm->verb_busy) {
                o->problem = "vm-busy";
                snprintf(o->detail, sizeof(o->detail), "VM '%s' has a verb call in flight", vm_id);
        } else if (!node || ns != NODE_ALIVE) {
                o->problem = "node-unreachable";
                snprintf(o->detail, sizeof(o->detail),
                         "VM '%s' is pinned to node '%s', which is '%s'; its export is written "
                         "there",
                         vm_id, vm->node_id, node ? node_state_name(ns) : "not in the roster");
        }
        if (o->problem)
                return -EINVAL;
        snprintf(t->vm_id, sizeof(t->vm_id), "%s", vm->id);
        snprintf(t->node_id, sizeof(t->node_id), "%s", vm->node_id);
        snprintf(t->address, sizeof(t->address), "%s", node->rn->mesh_address);
        t->record =
            json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:s, s:o*}", "fleet_id",
                      f->table.roster ? f->table.roster->fleet_id : "", "entity", vm->entity,
                      "node_id", vm->node_id, "image", vm->image, "memory_mib",
                      (json_int_t)vm->memory_mib, "vcpus", (json_int_t)vm->vcpus, "vault_disk_mib",
                      (json_int_t)vm->vault_disk_mib, "created_ms", (json_int_t)vm->created_ms,
                      "lifecycle", vm_lifecycle_name(vm->lifecycle), "pin", pin_sign_vm(f, vm));
        o->status = 0;
        return t->record ? 0 : -ENOMEM;
}

/* One JSON call to the node; the answer object (new reference) or NULL with a problem in o. */
static json_t *export_call(struct fleetd *f, struct export_task *t, const char *path, json_t *body,
                           struct plan_outcome *o)
{
        char *text = json_dumps(body, JSON_COMPACT), *answer = NULL;
        uint64_t timeout = f->cfg.node_api_timeout_ms > EXPORT_TIMEOUT_MIN
                               ? f->cfg.node_api_timeout_ms
                               : EXPORT_TIMEOUT_MIN;
        long status = 0;
        json_t *a = NULL;
        int r = text ? f->transport.call(f->transport.ctx, t->address, f->cfg.node_api_port, "POST",
                                         path, text, timeout, &status, &answer)
                     : -ENOMEM;

        free(text);
        if (r == 0)
                a = json_loads(answer ? answer : "", JSON_REJECT_DUPLICATES, NULL);
        free(answer);
        if (r < 0 || !json_is_object(a)) {
                plan_outcome_fail(o, 502, "node-unavailable", "node '%s' gave no answer to %s",
                                  t->node_id, path);
        } else if (status != 200) {
                o->status = status >= 400 && status < 600 ? (unsigned)status : 502;
                o->problem = "export-failed";
                snprintf(o->detail, sizeof(o->detail), "node '%s': %s", t->node_id,
                         json_string_value(json_object_get(a, "detail")) ?: "no detail");
                o->body = json_pack("{s:O?}", "node_problem", a);
        } else {
                return a;
        }
        json_decref(a);
        return NULL;
}

/* Signs the node's `sha256sum` line and gives the node the signature. */
static json_t *export_sign(struct fleetd *f, struct export_task *t, json_t *w,
                           struct plan_outcome *o)
{
        const char *sha = json_string_value(json_object_get(w, "sha256"));
        char line[200], path[160], b64[100];
        uint8_t sig[crypto_sign_BYTES];
        json_t *body, *a;
        int n;

        if (!sha || strlen(sha) != 64) {
                plan_outcome_fail(o, 502, "node-error", "node '%s' named no SHA-256 for %s",
                                  t->node_id, t->vm_id);
                return NULL;
        }
        n = snprintf(line, sizeof(line), "%s  %s.tar\n", sha, t->vm_id);
        crypto_sign_detached(sig, NULL, (const uint8_t *)line, (size_t)n, f->pin_sk);
        sodium_bin2base64(b64, sizeof(b64), sig, sizeof(sig), sodium_base64_VARIANT_ORIGINAL);
        snprintf(path, sizeof(path), "/v1/vms/%s/export-signature", t->vm_id);
        body = json_pack("{s:s}", "signature", b64);
        a = body ? export_call(f, t, path, body, o) : NULL;
        json_decref(body);
        if (a)
                json_object_set_new(a, "signature", json_string(b64));
        return a;
}

static void export_run(struct fleetd *f, void *arg, const char *actor, struct plan_outcome *o)
{
        struct export_task *t = arg;
        char path[160], pem[200];
        json_t *body, *w = NULL, *s = NULL;

        memset(o, 0, sizeof(*o));
        snprintf(path, sizeof(path), "/v1/vms/%s/export", t->vm_id);
        body = json_pack("{s:O, s:s}", "manifest", t->record, "checkpoint", t->note);
        w = body ? export_call(f, t, path, body, o) : NULL;
        json_decref(body);
        s = w ? export_sign(f, t, w, o) : NULL;
        if (s) {
                export_public_pem(f, pem, sizeof(pem));
                json_object_set(w, "signature_file", json_object_get(s, "signature_file"));
                json_object_set(w, "signature", json_object_get(s, "signature"));
                json_object_set_new(w, "node_id", json_string(t->node_id));
                json_object_set_new(w, "checkpoint_size", json_integer((json_int_t)t->cp_size));
                json_object_set_new(w, "fleet_public_key_pem", json_string(pem));
                audit_append(f->store, false, "vm.exported", t->vm_id, actor,
                             json_pack("{s:s, s:O, s:O, s:O, s:I}", "node_id", t->node_id, "file",
                                       json_object_get(w, "file"), "size",
                                       json_object_get(w, "size"), "sha256",
                                       json_object_get(w, "sha256"), "checkpoint_size",
                                       (json_int_t)t->cp_size));
                log_info("VM '%s' exported on node '%s' (by '%s')", t->vm_id, t->node_id, actor);
                o->status = 200;
                o->body = json_incref(w);
        } else {
                log_warn("export of VM '%s' failed: %s", t->vm_id, o->detail);
        }
        json_decref(w);
        json_decref(s);
        json_decref(t->record);
        free(t);
}

/* The cosigner key fleetd's cosignature on the checkpoint verifies under (C2SP vkey text). */
static void export_witness_vkey(struct fleetd *f, json_t *record)
{
        char vkey[TLOG_VKEY_MAX + 1];

        if (f->have_vault_witness &&
            tlog_cosig_vkey_format(&f->vault_witness.pub, vkey, sizeof(vkey)) >= 0)
                json_object_set_new(record, "fleet_witness_vkey", json_string(vkey));
}

void export_start(struct fleetd *f, const char *vm_id, const char *actor, struct plan_outcome *o)
{
        struct export_task *t = calloc(1, sizeof(*t));
        int r;

        memset(o, 0, sizeof(*o));
        if (!t) {
                plan_outcome_fail(o, 503, "out-of-memory", "cannot export '%s' now", vm_id);
                return;
        }
        pthread_mutex_lock(&f->lock);
        r = export_prepare(f, vm_id, t, o);
        pthread_mutex_unlock(&f->lock);
        if (r == 0) {
                r = vault_witness_held(f, vm_id, t->note, sizeof(t->note), &t->cp_size);
                if (r < 0)
                        plan_outcome_fail(
                            o, 409, "no-witnessed-checkpoint",
                            "fleetd holds no witnessed checkpoint of VM '%s''s vault: "
                            "it is exported only with one",
                            vm_id);
        }
        if (r == 0) {
                json_object_set_new(t->record, "pin_history", export_pin_history(f, vm_id));
                json_object_set_new(t->record, "checkpoint_size",
                                    json_integer((json_int_t)t->cp_size));
                export_witness_vkey(f, t->record);
                ops_task_start(f, vm_id, "export", actor, export_run, t, o);
                return;
        }
        json_decref(t->record);
        free(t);
}
