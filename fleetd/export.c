/* A Totebox as one file, at the fleet (docs/fleetd.md "Exports"): POST /v1/vms/{id}/export on
 * a suspended or archived Totebox is a long operation (kind export). fleetd gives the pinned
 * node its record of the Totebox (entity, fleet, image, the signed pin, the pin history from the
 * audit record) and the vault checkpoint it witnessed last; the node writes
 * exports/{id}.tar and its `sha256sum` line, which fleetd signs with its Ed25519 pin key (the
 * key the roster names as the controller's) and hands back to the node as {id}.tar.sig. The
 * export is audited (vm.exported). The file stays on its node: fleetd never moves it. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/json_input.h"
#include "common/log.h"
#include "common/sth.h"
#include "common/tlog_checkpoint.h"
#include "fleetd/api.h"
#include "fleetd/store.h"

#define EXPORT_NOTE_MAX        8192
#define EXPORT_TIMEOUT_MIN     600000 /* a disk is read twice and written once */
#define EXPORT_HISTORY_PAGE    1000
#define EXPORT_RETIRE_AGAIN_MS 30000 /* a retired copy not at rest is asked again after this */
#define EXPORT_WATCH_MS        1000  /* the node's export progress is asked for this often */

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

        if (!vm)
                outcome_fail(o, -ENOENT, "unknown-vm", "no VM '%s'", vm_id);
        else if (vm->lifecycle != VM_LC_SUSPENDED && vm->lifecycle != VM_LC_ARCHIVED)
                outcome_fail(o, -EBUSY, "vm-not-stopped",
                             "VM '%s' is '%s': only a suspended or archived Totebox is exported "
                             "(suspend or archive it first)",
                             vm_id, vm_lifecycle_name(vm->lifecycle));
        else if (vm->verb_busy)
                outcome_fail(o, -EBUSY, "vm-busy", "VM '%s' has a verb call in flight", vm_id);
        else if (!node || ns != NODE_ALIVE)
                outcome_fail(o, -EHOSTUNREACH, "node-unreachable",
                             "VM '%s' is pinned to node '%s', which is '%s'; its export is "
                             "written there",
                             vm_id, vm->node_id, node ? node_state_name(ns) : "not in the roster");
        if (o->problem)
                return o->err;
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
                outcome_fail(o, -ECONNREFUSED, "node-unavailable", "node '%s' gave no answer to %s",
                             t->node_id, path);
        } else if (status != 200 && status != 201) {
                outcome_fail(o, -EPROTO, "export-failed", "node '%s': %s", t->node_id,
                             json_string_value(json_object_get(a, "detail")) ?: "no detail");
                o->node_status = status; /* the node's refusal is relayed as it came */
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
                outcome_fail(o, -EPROTO, "node-error", "node '%s' named no SHA-256 for %s",
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

/* The node's export followed while export_run waits for its answer: every second its
 * GET /v1/vms/{id}/export (the vault disk's bytes read, over both passes) becomes the operation's
 * progress. An older node without it answers 404; the progress then stays at 0 until the end. */
struct export_watch {
        struct fleetd *f;
        const struct export_task *t;
        struct op_call *op;
        pthread_mutex_t lock;
        pthread_cond_t cond; /* CLOCK_MONOTONIC */
        bool stop;
        pthread_t thread;
};

static void export_watch_poll(struct export_watch *w, const char *path)
{
        long status = 0;
        char *answer = NULL;
        json_t *a = NULL;

        if (w->f->transport.call(w->f->transport.ctx, w->t->address, w->f->cfg.node_api_port, "GET",
                                 path, NULL, EXPORT_WATCH_MS, &status, &answer) == 0 &&
            status == 200)
                a = json_loads(answer ? answer : "", JSON_REJECT_DUPLICATES, NULL);
        free(answer);
        if (json_is_integer(json_object_get(a, "done_bytes")) &&
            json_is_integer(json_object_get(a, "total_bytes")))
                ops_task_progress(w->op,
                                  (uint64_t)json_integer_value(json_object_get(a, "done_bytes")),
                                  (uint64_t)json_integer_value(json_object_get(a, "total_bytes")));
        json_decref(a);
}

static void *export_watch_thread(void *arg)
{
        struct export_watch *w = arg;
        char path[160];
        struct timespec at;

        snprintf(path, sizeof(path), "/v1/vms/%s/export", w->t->vm_id);
        pthread_mutex_lock(&w->lock);
        while (!w->stop) {
                clock_gettime(CLOCK_MONOTONIC, &at);
                at.tv_sec += EXPORT_WATCH_MS / 1000;
                pthread_cond_timedwait(&w->cond, &w->lock, &at);
                if (w->stop)
                        break;
                pthread_mutex_unlock(&w->lock);
                export_watch_poll(w, path);
                pthread_mutex_lock(&w->lock);
        }
        pthread_mutex_unlock(&w->lock);
        return NULL;
}

/* 0 when the watcher runs (export_watch_end then stops it); without one the export goes on. */
static int export_watch_begin(struct export_watch *w)
{
        pthread_condattr_t a;

        if (!w->op)
                return -ENOENT;
        pthread_mutex_init(&w->lock, NULL);
        pthread_condattr_init(&a);
        pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
        pthread_cond_init(&w->cond, &a);
        pthread_condattr_destroy(&a);
        if (pthread_create(&w->thread, NULL, export_watch_thread, w) == 0)
                return 0;
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->lock);
        return -EAGAIN;
}

static void export_watch_end(struct export_watch *w)
{
        pthread_mutex_lock(&w->lock);
        w->stop = true;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->lock);
        pthread_join(w->thread, NULL);
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->lock);
}

static void export_run(struct fleetd *f, void *arg, const char *actor, struct op_call *op,
                       struct plan_outcome *o)
{
        struct export_task *t = arg;
        struct export_watch watch = {.f = f, .t = t, .op = op};
        char path[160], pem[200];
        json_t *body, *w = NULL, *s = NULL;
        bool watching;

        memset(o, 0, sizeof(*o));
        snprintf(path, sizeof(path), "/v1/vms/%s/export", t->vm_id);
        body = json_pack("{s:O, s:s}", "manifest", t->record, "checkpoint", t->note);
        watching = body && export_watch_begin(&watch) == 0;
        w = body ? export_call(f, t, path, body, o) : NULL;
        if (watching)
                export_watch_end(&watch);
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
                o->done = OUTCOME_OK;
                o->body = json_incref(w);
        } else {
                if (!o->problem) /* no body to send */
                        outcome_fail(o, -ENOMEM, "out-of-memory", "cannot export VM '%s'",
                                     t->vm_id);
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
                outcome_fail(o, -EAGAIN, "out-of-memory", "cannot export '%s' now", vm_id);
                return;
        }
        pthread_mutex_lock(&f->lock);
        r = export_prepare(f, vm_id, t, o);
        pthread_mutex_unlock(&f->lock);
        if (r == 0) {
                r = vault_witness_held(f, vm_id, t->note, sizeof(t->note), &t->cp_size);
                if (r < 0)
                        outcome_fail(o, -ENOENT, "no-witnessed-checkpoint",
                                     "fleetd holds no witnessed checkpoint of VM '%s''s vault: "
                                     "it is exported only with one",
                                     vm_id);
        }
        if (r == 0) {
                json_object_set_new(t->record, "pin_history", export_pin_history(f, vm_id));
                json_object_set_new(t->record, "checkpoint_size",
                                    json_integer((json_int_t)t->cp_size));
                export_witness_vkey(f, t->record);
                ops_task_start(f, "export", vm_id, actor, export_run, t, o);
                return;
        }
        if (!o->problem) /* export_prepare could not build the record */
                outcome_fail(o, -ENOMEM, "out-of-memory", "cannot describe VM '%s'", vm_id);
        json_decref(t->record);
        free(t);
}

/* ---- import: the operator re-homes a Totebox from its export, already on the target node ----
 * POST /v1/imports {file, node} asks that node to check the file (the fleet's signature, the
 * checksum, the layout) and checks the export's checkpoint against the one fleetd witnessed
 * last: the same size and root, or it is refused (smaller: rollback; same size, another root:
 * fork; larger: never witnessed). The answer is a plan (kind import), kept in memory for
 * IMPORT_PLAN_TTL in the store (a restart loses none); nothing happens until it is confirmed. The
 * confirmation is an operation (kind import): the node copies the vault disk in and creates the VM
 * with a new pin for itself; fleetd re-pins the VM to that node and retires the old pin in the
 * audit record (vm.rehomed), then archives the VM on the old node when it answers, so that node
 * never starts it again. */
#define IMPORT_PLANS    16
#define IMPORT_PLAN_TTL 600000 /* ms */

struct import_plan {
        char id[PLAN_ID_LEN + 1];
        char vm_id[VM_ID_MAX + 1], from_node[NODE_ID_MAX + 1], node[NODE_ID_MAX + 1];
        char file[256], sha256[65];
        uint64_t cp_size, expires_ms;
};

static json_t *import_plan_json(const struct import_plan *p)
{
        char when[40];

        clock_format_rfc3339(p->expires_ms, when, sizeof(when));
        return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:s}", "id", p->id, "kind",
                         "import", "vm_id", p->vm_id, "from_node", p->from_node, "node", p->node,
                         "file", p->file, "sha256", p->sha256, "checkpoint_size",
                         (json_int_t)p->cp_size, "expires_at", when);
}

/* A stored plan's document back into p (the store wrote what import_plan_json made). */
static int import_plan_from_json(const char *doc, struct import_plan *p)
{
        json_t *j = json_loads(doc, JSON_REJECT_DUPLICATES, NULL);
        const char *id = NULL, *vm_id = NULL, *from = NULL, *node = NULL, *file = NULL, *sha = NULL;
        json_int_t cp = -1;
        int r = json_unpack(j, "{s:s, s:s, s:s, s:s, s:s, s:s, s:I}", "id", &id, "vm_id", &vm_id,
                            "from_node", &from, "node", &node, "file", &file, "sha256", &sha,
                            "checkpoint_size", &cp) == 0 &&
                        cp >= 0 && ident_valid(IDENT_VM, vm_id)
                    ? 0
                    : -EPROTO;

        if (r == 0) {
                *p = (struct import_plan){.cp_size = (uint64_t)cp};
                snprintf(p->id, sizeof(p->id), "%s", id);
                snprintf(p->vm_id, sizeof(p->vm_id), "%s", vm_id);
                snprintf(p->from_node, sizeof(p->from_node), "%s", from);
                snprintf(p->node, sizeof(p->node), "%s", node);
                snprintf(p->file, sizeof(p->file), "%s", file);
                snprintf(p->sha256, sizeof(p->sha256), "%s", sha);
        }
        json_decref(j);
        return r;
}

/* The export's checkpoint against the held one: 0 when they are the same tree head. */
static int import_consistent(struct fleetd *f, const char *vm_id, const char *note,
                             struct plan_outcome *o, uint64_t *ret_size)
{
        char *held = malloc(EXPORT_NOTE_MAX), key[64]; /* 8 KiB: not on the stack */
        struct tlog_checkpoint h, c;
        uint8_t pk[STH_PUBLIC_KEY_LEN];
        uint64_t hs = 0;
        size_t n = 0;
        int r;

        r = !held                                                          ? -ENOMEM
            : vault_witness_held(f, vm_id, held, EXPORT_NOTE_MAX, &hs) < 0 ? -ENOENT
                                                                           : 0;
        if (r == 0 && vault_witness_rehome(f, vm_id, NULL, key) < 0)
                r = -ENOENT;
        if (r == 0 && tlog_checkpoint_open_unverified(held, strlen(held), &h) < 0)
                r = -EINVAL;
        free(held);
        if (r < 0) {
                outcome_fail(o, -ENOENT, "no-witnessed-checkpoint",
                             "fleetd holds no checkpoint of VM '%s''s vault to check the "
                             "export against",
                             vm_id);
                return -EINVAL;
        }
        if (sodium_base642bin(pk, sizeof(pk), key, strlen(key), NULL, &n, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0 ||
            n != sizeof(pk) || sth_checkpoint_open(note, strlen(note), pk, &c) < 0) {
                outcome_fail(o, -EINVAL, "bad-checkpoint",
                             "the export's checkpoint is not signed by VM '%s''s vault key", vm_id);
                return -EINVAL;
        }
        *ret_size = c.size;
        if (c.size < h.size)
                outcome_fail(o, -EBADMSG, "rollback",
                             "the export's vault checkpoint (size %" PRIu64
                             ") is older than the one the fleet witnessed (size %" PRIu64
                             "): refused, a rollback",
                             c.size, h.size);
        else if (c.size == h.size && sodium_memcmp(c.root, h.root, MERKLE_HASH_LEN) != 0)
                outcome_fail(o, -EBADMSG, "fork",
                             "the export's vault checkpoint has size %" PRIu64
                             " with another root than the one the fleet witnessed: "
                             "refused, a fork",
                             c.size);
        else if (c.size > h.size)
                outcome_fail(o, -EBADMSG, "unwitnessed-checkpoint",
                             "the export's vault checkpoint (size %" PRIu64
                             ") is newer than any the fleet witnessed (size %" PRIu64
                             "), with no proof: refused",
                             c.size, h.size);
        return o->problem ? -EINVAL : 0;
}

/* Under f->lock: the VM may be re-homed to node now. */
static int import_vm_check(struct fleetd *f, const char *vm_id, const char *node,
                           struct import_plan *p, struct plan_outcome *o)
{
        struct fleet_vm *vm = vm_table_find(f, vm_id);
        struct fleet_node *n = node_table_find(&f->table, node);

        if (!vm)
                outcome_fail(o, -ENOENT, "unknown-vm",
                             "the export names VM '%s', which this fleet does not record", vm_id);
        else if (vm->lifecycle != VM_LC_SUSPENDED && vm->lifecycle != VM_LC_ARCHIVED)
                outcome_fail(o, -EBUSY, "vm-not-stopped",
                             "VM '%s' is '%s': only a suspended or archived Totebox is "
                             "re-homed",
                             vm_id, vm_lifecycle_name(vm->lifecycle));
        else if (strcmp(vm->node_id, node) == 0)
                outcome_fail(o, -EEXIST, "same-node", "VM '%s' is already pinned to node '%s'",
                             vm_id, node);
        else if (!n || node_state_at(n, &f->cfg, clock_monotonic_ms()) != NODE_ALIVE)
                outcome_fail(o, -EHOSTUNREACH, "node-unreachable", "node '%s' is not alive", node);
        else if (p)
                snprintf(p->from_node, sizeof(p->from_node), "%s", vm->node_id);
        return o->problem ? -EINVAL : 0;
}

static int import_node_address(struct fleetd *f, const char *node, struct export_task *t)
{
        struct fleet_node *n;
        int r = -ENOENT;

        pthread_mutex_lock(&f->lock);
        n = node_table_find(&f->table, node);
        if (n) {
                snprintf(t->address, sizeof(t->address), "%s", n->rn->mesh_address);
                snprintf(t->node_id, sizeof(t->node_id), "%s", node);
                r = 0;
        }
        pthread_mutex_unlock(&f->lock);
        return r;
}

static void import_plan_store(struct fleetd *f, struct import_plan *p, struct plan_outcome *o)
{
        uint64_t now = clock_realtime_ms();
        uint8_t raw[PLAN_ID_LEN / 2];
        json_t *doc;
        char *text;
        int r;

        randombytes_buf(raw, sizeof(raw));
        sodium_bin2hex(p->id, sizeof(p->id), raw, sizeof(raw));
        p->expires_ms = now + IMPORT_PLAN_TTL;
        doc = import_plan_json(p);
        text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
        r = text ? store_import_plan_put(f->store, p->id, text, p->expires_ms, now, IMPORT_PLANS)
                 : -ENOMEM;
        free(text);
        if (r == -ENOSPC)
                outcome_fail(o, -EAGAIN, "too-many-plans", "%d import plans are open",
                             IMPORT_PLANS);
        else if (r < 0)
                outcome_fail(o, -EIO, "store-failed", "the import plan is not recorded: %s",
                             strerror(-r));
        if (r < 0) {
                json_decref(doc);
                return;
        }
        o->done = OUTCOME_CREATED;
        o->body = doc;
}

void import_plan(struct fleetd *f, const char *body, size_t len, const char *actor,
                 struct plan_outcome *o)
{
        static const char *const fields[] = {"file", "node", NULL};
        struct json_input_error jerr = {{0}};
        struct import_plan p = {0};
        struct export_task *t = calloc(1, sizeof(*t)); /* 8 KiB note: not on the stack */
        json_t *in = json_input_parse(body, len, 4096, 2, &jerr), *a = NULL, *req;
        const char *file = NULL, *vm_id, *note;
        int r = in ? 0 : -EINVAL;

        memset(o, 0, sizeof(*o));
        r = r ?: json_input_check_keys(in, fields, &jerr);
        r = r ?: json_input_get_string(in, "file", true, 200, &file, &jerr);
        r = r ?: json_input_copy_id(in, "node", true, IDENT_NODE, p.node, sizeof(p.node), &jerr);
        if (r < 0) {
                outcome_fail(o, -EINVAL, "bad-request", "%s", jerr.text);
                json_decref(in);
                free(t);
                return;
        }
        snprintf(p.file, sizeof(p.file), "%s", file);
        json_decref(in);
        if (!t || import_node_address(f, p.node, t) < 0) {
                if (t)
                        outcome_fail(o, -ENOENT, "unknown-node", "no node '%s' in the roster",
                                     p.node);
                else
                        outcome_fail(o, -ENOMEM, "out-of-memory", "out of memory");
                free(t);
                return;
        }
        req = json_pack("{s:s}", "file", p.file);
        a = req ? export_call(f, t, "/v1/imports/inspect", req, o) : NULL;
        json_decref(req);
        vm_id = json_string_value(json_object_get(json_object_get(a, "manifest"), "vm_id"));
        note = json_string_value(json_object_get(a, "checkpoint"));
        if (a && (!vm_id || !note || !ident_valid(IDENT_VM, vm_id)))
                outcome_fail(o, -EINVAL, "not-an-export", "'%s' names no VM", p.file);
        if (a && !o->problem) {
                snprintf(p.vm_id, sizeof(p.vm_id), "%s", vm_id);
                snprintf(p.sha256, sizeof(p.sha256), "%s",
                         json_string_value(json_object_get(a, "sha256")) ?: "");
                pthread_mutex_lock(&f->lock);
                r = import_vm_check(f, vm_id, p.node, &p, o);
                pthread_mutex_unlock(&f->lock);
                if (r == 0 && import_consistent(f, vm_id, note, o, &p.cp_size) == 0)
                        import_plan_store(f, &p, o);
        }
        if (o->problem)
                log_warn("import of '%s' on node '%s' refused (by '%s'): %s", p.file, p.node, actor,
                         o->detail);
        json_decref(a);
        free(t);
}

/* The create request for the new node, with a pin for it (under f->lock). */
static json_t *import_create_req(struct fleetd *f, const struct import_plan *p)
{
        struct fleet_vm *vm = vm_table_find(f, p->vm_id), next;

        if (!vm)
                return NULL;
        next = *vm;
        snprintf(next.node_id, sizeof(next.node_id), "%s", p->node);
        return json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:o*}", "request_id",
                         vm->request_id, "vm_id", vm->id, "entity", vm->entity, "image", vm->image,
                         "fleet_id", f->table.roster ? f->table.roster->fleet_id : "", "memory_mib",
                         (json_int_t)vm->memory_mib, "vcpus", (json_int_t)vm->vcpus,
                         "vault_disk_mib", (json_int_t)vm->vault_disk_mib, "pin",
                         pin_sign_vm(f, &next));
}

/* Under f->lock: node joins vm's retired nodes (once). */
static void export_retire_node(struct fleet_vm *vm, const char *node)
{
        size_t i;
        json_t *n;

        if (!node || !*node)
                return;
        if (!vm->retired_nodes)
                vm->retired_nodes = json_array();
        json_array_foreach(vm->retired_nodes, i,
                           n) if (strcmp(json_string_value(n), node) == 0) return;
        json_array_append_new(vm->retired_nodes, json_string(node));
}

/* Re-pins the VM (audited, with the retired pin), then archives it on the old node. */
static int import_repin(struct fleetd *f, const struct import_plan *p, const char *actor)
{
        struct fleet_vm *vm, next;
        json_t *old_pin;
        int r = -ENOENT;

        pthread_mutex_lock(&f->lock);
        vm = vm_table_find(f, p->vm_id);
        if (vm) {
                old_pin = pin_sign_vm(f, vm);
                next = *vm;
                snprintf(next.node_id, sizeof(next.node_id), "%s", p->node);
                next.lifecycle = VM_LC_ACTIVE;
                r = store_vm_rehome_audited(
                    f->store, &next, actor,
                    json_pack("{s:s, s:s, s:s, s:s, s:I, s:o*}", "node_id", p->node, "from_node",
                              p->from_node, "file", p->file, "sha256", p->sha256, "checkpoint_size",
                              (json_int_t)p->cp_size, "retired_pin", old_pin));
                if (r == 0) {
                        snprintf(vm->node_id, sizeof(vm->node_id), "%s", p->node);
                        vm->lifecycle = VM_LC_ACTIVE;
                        export_retire_node(vm, p->from_node);
                }
        }
        pthread_mutex_unlock(&f->lock);
        if (r == 0)
                vault_witness_rehome(f, p->vm_id, p->node, NULL);
        return r;
}

static void import_retire_old(struct fleetd *f, const struct import_plan *p)
{
        struct export_task *t = calloc(1, sizeof(*t));
        struct plan_outcome o = {0};
        char path[160];
        json_t *body = json_object(), *a = NULL;

        snprintf(path, sizeof(path), "/v1/vms/%s/archive", p->vm_id);
        if (t && import_node_address(f, p->from_node, t) == 0)
                a = export_call(f, t, path, body, &o);
        free(t);
        if (a)
                log_info("VM '%s' archived on its old node '%s': it never starts there again",
                         p->vm_id, p->from_node);
        else
                log_warn("VM '%s' not archived on its old node '%s' (%s); its pin there is retired "
                         "in the audit record and fleetd sends it nothing",
                         p->vm_id, p->from_node, o.detail);
        json_decref(a);
        json_decref(o.body);
        json_decref(body);
}

int export_load_retired(struct fleetd *f)
{
        uint64_t after = 0;
        size_t i, n;
        json_t *page, *e;

        do {
                page = audit_list(f->store, after, EXPORT_HISTORY_PAGE, "vm.rehomed");
                if (!page)
                        return -EIO;
                pthread_mutex_lock(&f->lock);
                json_array_foreach(page, i, e)
                {
                        struct fleet_vm *vm = vm_table_find(
                            f, json_string_value(json_object_get(e, "subject")) ?: "");

                        after = (uint64_t)json_integer_value(json_object_get(e, "seq"));
                        if (vm)
                                export_retire_node(vm,
                                                   json_string_value(json_object_get(
                                                       json_object_get(e, "detail"), "from_node")));
                }
                pthread_mutex_unlock(&f->lock);
                n = json_array_size(page);
                json_decref(page);
        } while (n == EXPORT_HISTORY_PAGE);
        return 0;
}

struct retire_call {
        struct fleetd *f;
        struct import_plan p; /* vm_id and from_node */
};

/* Counted in f->op_threads, so that a stop waits for it (ops_wait_idle). */
static void *export_retire_thread(void *arg)
{
        struct retire_call *c = arg;
        struct fleetd *f = c->f;

        import_retire_old(f, &c->p);
        free(c);
        pthread_mutex_lock(&f->lock);
        f->op_threads--;
        pthread_cond_broadcast(&f->wake);
        pthread_mutex_unlock(&f->lock);
        return NULL;
}

bool export_retired_copy(struct fleetd *f, struct fleet_vm *vm, const char *node_id,
                         const json_t *v)
{
        const char *lc = json_string_value(json_object_get(v, "lifecycle")) ?: "";
        const char *st = json_string_value(json_object_get(v, "state")) ?: "";
        uint64_t now = clock_monotonic_ms();
        struct retire_call *c;
        pthread_attr_t a;
        pthread_t t;
        size_t i;
        json_t *n;
        bool retired = false;

        json_array_foreach(vm->retired_nodes, i, n) retired |=
            strcmp(json_string_value(n), node_id) == 0;
        if (!retired)
                return false;
        if (strcmp(lc, "archived") == 0 && strcmp(st, "running") != 0 && strcmp(st, "paused") != 0)
                return true;
        if (vm->retire_asked_ms && now - vm->retire_asked_ms < EXPORT_RETIRE_AGAIN_MS)
                return false;
        vm->retire_asked_ms = now;
        c = calloc(1, sizeof(*c));
        if (!c)
                return false;
        c->f = f;
        snprintf(c->p.vm_id, sizeof(c->p.vm_id), "%s", vm->id);
        snprintf(c->p.from_node, sizeof(c->p.from_node), "%s", node_id);
        log_warn("node '%s' holds VM '%s' %s (%s), which was re-homed from it to node '%s': "
                 "asking it to archive its copy",
                 node_id, vm->id, *lc ? lc : "in no lifecycle", *st ? st : "no state", vm->node_id);
        f->op_threads++;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &a, export_retire_thread, c) != 0) {
                f->op_threads--;
                free(c);
        }
        pthread_attr_destroy(&a);
        return false;
}

static void import_run(struct fleetd *f, void *arg, const char *actor, struct op_call *op,
                       struct plan_outcome *o)
{
        (void)op; /* the node answers once it has copied the disk in */
        struct import_plan *p = arg;
        struct export_task *t = calloc(1, sizeof(*t));
        json_t *create, *body = NULL, *a = NULL;

        memset(o, 0, sizeof(*o));
        pthread_mutex_lock(&f->lock);
        create =
            import_vm_check(f, p->vm_id, p->node, NULL, o) == 0 ? import_create_req(f, p) : NULL;
        pthread_mutex_unlock(&f->lock);
        if (create && t && import_node_address(f, p->node, t) == 0)
                body = json_pack("{s:s, s:o}", "file", p->file, "create", create);
        else
                json_decref(create);
        a = body ? export_call(f, t, "/v1/imports", body, o) : NULL;
        free(t);
        if (!a && !o->problem)
                outcome_fail(o, -EBUSY, "import-refused", "VM '%s' cannot be imported now",
                             p->vm_id);
        if (a && import_repin(f, p, actor) < 0)
                outcome_fail(o, -EIO, "store-failed",
                             "VM '%s' was created on node '%s' but its new pin is not "
                             "recorded",
                             p->vm_id, p->node);
        if (a && !o->problem) {
                import_retire_old(f, p);
                log_info("VM '%s' re-homed from node '%s' to node '%s' (by '%s')", p->vm_id,
                         p->from_node, p->node, actor);
                o->done = OUTCOME_OK;
                o->body = json_pack("{s:O, s:s, s:s}", "vm", a, "from_node", p->from_node,
                                    "node_id", p->node);
        }
        json_decref(a);
        json_decref(body);
        free(p);
}

void import_confirm(struct fleetd *f, const char *plan_id, const char *actor,
                    struct plan_outcome *o)
{
        struct import_plan *p = malloc(sizeof(*p));
        char *doc = NULL;
        int r = p ? store_import_plan_take(f->store, plan_id, clock_realtime_ms(), &doc) : -ENOMEM;

        memset(o, 0, sizeof(*o));
        r = r ?: import_plan_from_json(doc, p);
        free(doc);
        if (r < 0) {
                free(p);
                if (r == -ENOENT)
                        outcome_fail(o, -ENOENT, "unknown-plan",
                                     "no open import plan '%s' (plans expire after %d s)", plan_id,
                                     IMPORT_PLAN_TTL / 1000);
                else
                        outcome_fail(o, r == -ENOMEM ? -ENOMEM : -EIO, "store-failed",
                                     "import plan '%s' cannot be read: %s", plan_id, strerror(-r));
                return;
        }
        ops_task_start(f, "import", p->vm_id, actor, import_run, p, o);
}

void import_drop(struct fleetd *f, const char *plan_id, struct plan_outcome *o)
{
        char *doc = NULL;
        int r = store_import_plan_take(f->store, plan_id, clock_realtime_ms(), &doc);

        memset(o, 0, sizeof(*o));
        free(doc);
        if (r == -ENOENT)
                outcome_fail(o, -ENOENT, "unknown-plan", "no open import plan '%s'", plan_id);
        else if (r < 0)
                outcome_fail(o, r == -ENOMEM ? -ENOMEM : -EIO, "store-failed",
                             "import plan '%s' cannot be dropped: %s", plan_id, strerror(-r));
        else {
                o->done = OUTCOME_OK;
                o->body = json_pack("{s:s, s:s}", "id", plan_id, "state", "dropped");
        }
}
