/* The fleet as a witness of every vault (C2SP tlog-witness, docs/fleetd.md "Witnessed vault
 * checkpoints"). Each inventory brings, per VM, the vault's checkpoint (signed by the vault key)
 * as the node's vmhost cosigned it, the RFC 9162 consistency proof the node forwards (from the
 * size named in from_size) and the checkpoints the node refused, kept as evidence. fleetd keeps
 * the latest checkpoint it cosigned per vault durably (table vault_witness) and:
 *   - cosigns a node-cosigned checkpoint only when it extends the one held (a proof from the held
 *     size that verifies against the held root); a proof from another size makes it tell the
 *     node the size it holds (POST /v1/vms/{id}/witness) so the node asks the agent for that one;
 *   - names `lying-host` a node that cosigned a checkpoint inconsistent with the held one
 *     (smaller, same size with another root, or a proof that fails) or cosigns with another key;
 *   - names `rollback` (smaller than held) and `fork` (same size, another root; or larger with
 *     no valid proof) the vault-signed checkpoints an honest node refused, checking each itself.
 * Every alarm is sticky, kept in vault_evidence, audited once per piece of evidence, shown in the
 * VM view, /v1/health and /metrics. A Totebox whose last full verification is older than
 * vault_verify_interval + vault_stall_grace is `stalled`. Clean scheduled verifications are
 * audited compactly: one `vm.verifications_clean` entry per VM per UTC day. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/small_file.h"
#include "common/sth.h"
#include "common/witness_key.h"
#include "fleetd/store.h"

#define VW_NOTE_MAX 4096
#define VW_DAY_MS   86400000ull

struct vw_row {
        bool have;
        char vault_key[64];
        char host_key[TLOG_VKEY_MAX + 1];
        uint64_t size;
        merkle_hash root;
        char note[VW_NOTE_MAX];
        char state[16];
        uint64_t evidence_seen;
};

/* What one inventory entry claims, parsed. */
struct vw_claim {
        const json_t *w;
        uint8_t pk[STH_PUBLIC_KEY_LEN];
        char vault_key[64];
        struct tlog_key host;
        const char *host_vkey;
};

static const char *const vw_rank[] = {"none",     "ok",         "pending", "fork",
                                      "rollback", "lying-host", NULL};

static int vw_rank_of(const char *state)
{
        for (int i = 0; vw_rank[i]; i++)
                if (strcmp(vw_rank[i], state) == 0)
                        return i;
        return 0;
}

int vault_witness_open(struct fleetd *f)
{
        /* the message names the path: 1 KiB of it is enough for a log line */
        char *path = small_file_path(f->cfg.state_dir, "vault-witness.key");
        char name[TLOG_NAME_MAX + 1], err[1024] = "out of memory";
        int r;

        snprintf(name, sizeof(name), "totebox.fleet/%s",
                 f->table.roster && f->table.roster->fleet_id[0] ? f->table.roster->fleet_id
                                                                 : "fleet");
        r = path ? witness_key_load(path, name, true, &f->vault_witness, err, sizeof(err))
                 : -ENOMEM;
        free(path);
        if (r < 0) {
                log_error("%s; fleetd cosigns no vault checkpoint", err);
                return -EIO;
        }
        f->have_vault_witness = true;
        return 0;
}

static int vw_row_load(struct store *s, const char *vm_id, struct vw_row *ret)
{
        sqlite3_stmt *st = NULL;
        int r = 0;

        memset(ret, 0, sizeof(*ret));
        pthread_mutex_lock(&s->mu);
        if (sqlite3_prepare_v2(s->db,
                               "SELECT vault_key, host_key, size, root, note, state, evidence_seen"
                               " FROM vault_witness WHERE vm_id = ?",
                               -1, &st, NULL) != SQLITE_OK) {
                r = -EIO;
                goto cleanup;
        }
        sqlite3_bind_text(st, 1, vm_id, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) {
                size_t n = 0;

                ret->have = true;
                snprintf(ret->vault_key, sizeof(ret->vault_key), "%s",
                         (const char *)sqlite3_column_text(st, 0));
                snprintf(ret->host_key, sizeof(ret->host_key), "%s",
                         (const char *)sqlite3_column_text(st, 1));
                ret->size = (uint64_t)sqlite3_column_int64(st, 2);
                if (sodium_hex2bin(ret->root, MERKLE_HASH_LEN,
                                   (const char *)sqlite3_column_text(st, 3), 64, NULL, &n,
                                   NULL) != 0 ||
                    n != MERKLE_HASH_LEN)
                        r = -EBADMSG;
                snprintf(ret->note, sizeof(ret->note), "%s",
                         (const char *)sqlite3_column_text(st, 4));
                snprintf(ret->state, sizeof(ret->state), "%s",
                         (const char *)sqlite3_column_text(st, 5));
                ret->evidence_seen = (uint64_t)sqlite3_column_int64(st, 6);
        }
cleanup:
        sqlite3_finalize(st);
        pthread_mutex_unlock(&s->mu);
        return r;
}

static int vw_row_store(struct store *s, const char *vm_id, const char *node_id,
                        const struct vw_row *w)
{
        char root[2 * MERKLE_HASH_LEN + 1];
        sqlite3_stmt *st = NULL;
        int r = 0;

        sodium_bin2hex(root, sizeof(root), w->root, MERKLE_HASH_LEN);
        pthread_mutex_lock(&s->mu);
        if (sqlite3_prepare_v2(s->db,
                               "INSERT OR REPLACE INTO vault_witness(vm_id, node_id, vault_key,"
                               " host_key, size, root, note, state, evidence_seen, updated_ms)"
                               " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                               -1, &st, NULL) != SQLITE_OK) {
                r = -EIO;
                goto cleanup;
        }
        sqlite3_bind_text(st, 1, vm_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, node_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, w->vault_key, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, w->host_key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, (sqlite3_int64)w->size);
        sqlite3_bind_text(st, 6, root, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 7, w->note, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 8, w->state, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 9, (sqlite3_int64)w->evidence_seen);
        sqlite3_bind_int64(st, 10, (sqlite3_int64)clock_realtime_ms());
        r = sqlite3_step(st) == SQLITE_DONE ? 0 : -EIO;
cleanup:
        sqlite3_finalize(st);
        pthread_mutex_unlock(&s->mu);
        return r;
}

int vault_witness_held(struct fleetd *f, const char *vm_id, char *note, size_t size,
                       uint64_t *ret_size)
{
        struct vw_row *row = malloc(sizeof(*row));
        int r = row ? vw_row_load(f->store, vm_id, row) : -ENOMEM;

        if (r == 0 && (!row->have || !row->note[0]))
                r = -ENOENT;
        if (r == 0 && strlen(row->note) >= size)
                r = -ENOSPC;
        if (r == 0) {
                memcpy(note, row->note, strlen(row->note) + 1);
                *ret_size = row->size;
        }
        free(row);
        return r;
}

int vault_witness_rehome(struct fleetd *f, const char *vm_id, const char *node_id,
                         char ret_vault_key[64])
{
        struct vw_row *row = malloc(sizeof(*row));
        int r = row ? vw_row_load(f->store, vm_id, row) : -ENOMEM;

        if (r == 0 && !row->have)
                r = -ENOENT;
        if (r == 0 && ret_vault_key)
                memcpy(ret_vault_key, row->vault_key, sizeof(row->vault_key));
        if (r == 0 && node_id) {
                row->host_key[0] = '\0'; /* the next node's cosigner key is pinned at first use */
                r = vw_row_store(f->store, vm_id, node_id, row);
        }
        free(row);
        return r;
}

/* The alarms named in the stored evidence (after a restart the VM's soft state has none). */
static unsigned vw_named_load(struct store *s, const char *vm_id)
{
        sqlite3_stmt *st = NULL;
        unsigned mask = 0;

        pthread_mutex_lock(&s->mu);
        if (sqlite3_prepare_v2(s->db, "SELECT DISTINCT kind FROM vault_evidence WHERE vm_id = ?",
                               -1, &st, NULL) == SQLITE_OK) {
                sqlite3_bind_text(st, 1, vm_id, -1, SQLITE_STATIC);
                while (sqlite3_step(st) == SQLITE_ROW) {
                        int k = vw_rank_of((const char *)sqlite3_column_text(st, 0)) -
                                vw_rank_of("fork");

                        if (k >= 0)
                                mask |= 1u << k;
                }
        }
        sqlite3_finalize(st);
        pthread_mutex_unlock(&s->mu);
        return mask;
}

static void vw_evidence_store(struct store *s, const char *vm_id, const char *node_id,
                              const char *kind, uint64_t size, uint64_t held, const char *note,
                              const char *detail)
{
        sqlite3_stmt *st = NULL;

        pthread_mutex_lock(&s->mu);
        if (sqlite3_prepare_v2(s->db,
                               "INSERT INTO vault_evidence(vm_id, node_id, kind, size, held_size,"
                               " note, detail, at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                               -1, &st, NULL) == SQLITE_OK) {
                sqlite3_bind_text(st, 1, vm_id, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 2, node_id, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 3, kind, -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 4, (sqlite3_int64)size);
                sqlite3_bind_int64(st, 5, (sqlite3_int64)held);
                sqlite3_bind_text(st, 6, note ? note : "", -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 7, detail, -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 8, (sqlite3_int64)clock_realtime_ms());
                sqlite3_step(st);
        }
        sqlite3_finalize(st);
        pthread_mutex_unlock(&s->mu);
}

/* An alarm: kept (row state, evidence row), audited, logged, counted, shown. */
static void vw_alarm(struct fleetd *f, struct fleet_vm *vm, struct vw_row *row, const char *kind,
                     uint64_t size, const char *note, const char *detail)
{
        char audit_kind[32];
        uint8_t digest[16];
        crypto_generichash_state st;

        /* the same claim in the next inventory is the same occurrence */
        crypto_generichash_init(&st, NULL, 0, sizeof(digest));
        crypto_generichash_update(&st, (const uint8_t *)kind, strlen(kind) + 1);
        crypto_generichash_update(&st, (const uint8_t *)detail, strlen(detail) + 1);
        if (note)
                crypto_generichash_update(&st, (const uint8_t *)note, strlen(note));
        crypto_generichash_final(&st, digest, sizeof(digest));
        if (memcmp(digest, vm->witness_last_alarm, sizeof(digest)) == 0)
                return;
        memcpy(vm->witness_last_alarm, digest, sizeof(digest));

        log_error("VM '%s' on node '%s': vault checkpoint %s: %s", vm->id, vm->node_id, kind,
                  detail);
        vw_evidence_store(f->store, vm->id, vm->node_id, kind, size, row->size, note, detail);
        if (vw_rank_of(kind) > vw_rank_of(row->state))
                snprintf(row->state, sizeof(row->state), "%s", kind);
        vm->witness_named |= 1u << (vw_rank_of(kind) - vw_rank_of("fork"));
        snprintf(vm->witness, sizeof(vm->witness), "%s", row->state);
        snprintf(vm->witness_detail, sizeof(vm->witness_detail), "%s", detail);
        vm->witness_alarms++;
        f->metrics.vault_witness_alarms++;
        snprintf(audit_kind, sizeof(audit_kind), "vault.%s", kind);
        for (char *c = audit_kind; *c; c++)
                if (*c == '-')
                        *c = '_'; /* audit kinds are [a-z_] words: vault.lying_host */
        audit_append(f->store, false, audit_kind, vm->id, "fleetd",
                     json_pack("{s:s, s:I, s:I, s:s, s:s?}", "node_id", vm->node_id, "size",
                               (json_int_t)size, "held_size", (json_int_t)row->size, "detail",
                               detail, "checkpoint", note));
}

static int vw_claim_parse(const json_t *v, struct vw_claim *c)
{
        const char *pk = json_string_value(json_object_get(v, "vault_public_key"));
        size_t n = 0;

        c->w = json_object_get(json_object_get(v, "integrity"), "witness");
        c->host_vkey = json_string_value(json_object_get(c->w, "key"));
        if (!json_is_object(c->w) || !pk || !c->host_vkey || strlen(pk) >= sizeof(c->vault_key) ||
            sodium_base642bin(c->pk, sizeof(c->pk), pk, strlen(pk), NULL, &n, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0 ||
            n != sizeof(c->pk) || tlog_cosig_vkey_parse(c->host_vkey, &c->host) < 0)
                return -EBADMSG;
        snprintf(c->vault_key, sizeof(c->vault_key), "%s", pk);
        return 0;
}

/* Each refused checkpoint the node kept, checked here: it must be the vault's, and its name is
 * fleetd's own comparison with the checkpoint it holds. */
static void vw_take_evidence(struct fleetd *f, struct fleet_vm *vm, struct vw_row *row,
                             const struct vw_claim *c)
{
        const json_t *ev = json_object_get(c->w, "evidence");
        uint64_t seen = row->evidence_seen > vm->witness_evidence_seen ? row->evidence_seen
                                                                       : vm->witness_evidence_seen;
        char detail[240];

        if (json_array_size(ev) < seen)
                seen = 0; /* the node lost its evidence (its state was wiped): take it anew */
        for (size_t i = seen; i < json_array_size(ev); i++) {
                const json_t *e = json_array_get(ev, i);
                const char *note = json_string_value(json_object_get(e, "checkpoint"));
                const char *why = json_string_value(json_object_get(e, "reason"));
                struct tlog_checkpoint cp;
                const char *kind;

                if (!note || sth_checkpoint_open(note, strlen(note), c->pk, &cp) < 0) {
                        log_warn("VM '%s': node '%s' kept a refused checkpoint the vault did not "
                                 "sign ('%s'); not evidence of the vault",
                                 vm->id, vm->node_id, why ? why : "");
                        continue;
                }
                if (!row->have)
                        kind = why && strcmp(why, "rollback") == 0 ? "rollback" : "fork";
                else if (cp.size < row->size)
                        kind = "rollback";
                else if (cp.size == row->size &&
                         sodium_memcmp(cp.root, row->root, MERKLE_HASH_LEN) == 0)
                        kind = why && strcmp(why, "rollback") == 0 ? "rollback" : "fork";
                else
                        kind = "fork";
                snprintf(detail, sizeof(detail),
                         "the vault signed a checkpoint of size %llu that the node refused (%s); "
                         "fleetd holds size %llu",
                         (unsigned long long)cp.size, why ? why : "?",
                         (unsigned long long)row->size);
                vw_alarm(f, vm, row, kind, cp.size, note, detail);
        }
        row->evidence_seen = vm->witness_evidence_seen = json_array_size(ev);
}

/* A proof's hashes, decoded: 3 KiB, so on the heap rather than in vw_proof_check's frame. */
struct vw_proof {
        struct merkle_span spans[MERKLE_MAX_PROOF];
        uint8_t raw[MERKLE_MAX_PROOF][MERKLE_HASH_LEN];
};

/* 0 when the node's proof leads from the held root to cp's; -EBADMSG when not, -ENOMEM. */
static int vw_proof_check(const struct vw_row *row, const struct tlog_checkpoint *cp,
                          const json_t *w)
{
        const json_t *proof = json_object_get(w, "proof");
        size_t n = json_array_size(proof);
        struct vw_proof *p;
        int r = 0;

        if (row->size == 0)
                return 0; /* the empty tree is a prefix of every tree */
        if (n > MERKLE_MAX_PROOF)
                return -EBADMSG;
        p = malloc(sizeof(*p));
        if (!p)
                return -ENOMEM;
        for (size_t i = 0; r == 0 && i < n; i++) {
                const char *h = json_string_value(json_array_get(proof, i));
                size_t got = 0;

                if (!h || sodium_base642bin(p->raw[i], MERKLE_HASH_LEN, h, strlen(h), NULL, &got,
                                            NULL, sodium_base64_VARIANT_ORIGINAL) != 0)
                        r = -EBADMSG;
                else
                        p->spans[i] = (struct merkle_span){p->raw[i], got};
        }
        r = r
                ?: merkle_verify_consistency_span(
                       row->size, cp->size, (struct merkle_span){row->root, MERKLE_HASH_LEN},
                       (struct merkle_span){cp->root, MERKLE_HASH_LEN}, p->spans, n);
        free(p);
        return r;
}

/* Cosigns the node-cosigned note and keeps it as the vault's latest. */
static void vw_cosign(struct fleetd *f, struct fleet_vm *vm, struct vw_row *row,
                      const struct vw_claim *c, const char *note, const struct tlog_checkpoint *cp)
{
        size_t n = strlen(note);
        bool first = !row->have;

        if (!f->have_vault_witness || n >= sizeof(row->note))
                return;
        memcpy(row->note, note, n + 1);
        if (witness_key_cosign(&f->vault_witness, row->note, n, sizeof(row->note),
                               clock_realtime_ms() / 1000) < 0)
                return;
        row->have = true;
        row->size = cp->size;
        memcpy(row->root, cp->root, MERKLE_HASH_LEN);
        snprintf(row->vault_key, sizeof(row->vault_key), "%s", c->vault_key);
        snprintf(row->host_key, sizeof(row->host_key), "%s", c->host_vkey);
        if (!row->state[0] || strcmp(row->state, "pending") == 0 || strcmp(row->state, "none") == 0)
                snprintf(row->state, sizeof(row->state), "ok");
        vm->witness_post = true;
        vm->witness_size = cp->size;
        vm->witness_cosigned_ms = clock_realtime_ms();
        f->metrics.vault_cosignatures++;
        if (first)
                audit_append(f->store, false, "vault.witnessed", vm->id, "fleetd",
                             json_pack("{s:s, s:I, s:s}", "node_id", vm->node_id, "size",
                                       (json_int_t)cp->size, "host_key", c->host_vkey));
}

/* The node's cosigned checkpoint against the one fleetd holds; true while fleetd waits for a
 * proof from the size it holds. */
static bool vw_take_checkpoint(struct fleetd *f, struct fleet_vm *vm, struct vw_row *row,
                               const struct vw_claim *c)
{
        const char *note = json_string_value(json_object_get(c->w, "checkpoint"));
        json_int_t from = json_integer_value(json_object_get(c->w, "from_size"));
        struct tlog_checkpoint cp;
        uint64_t t = 0;
        char detail[240];
        int r;

        if (!note || sth_checkpoint_open(note, strlen(note), c->pk, &cp) < 0 ||
            tlog_note_cosig_verify(note, strlen(note), &c->host, &t) < 0)
                return false; /* not the vault's, or not cosigned by the node: nothing to witness */
        if (row->have && !row->host_key[0]) /* re-homed: the new node's key is pinned now */
                snprintf(row->host_key, sizeof(row->host_key), "%s", c->host_vkey);
        if (row->have && strcmp(row->host_key, c->host_vkey) != 0) {
                vw_alarm(f, vm, row, "lying-host", cp.size, note,
                         "the node cosigns with another key than the one fleetd pinned");
                return false;
        }
        if (!row->have) {
                vw_cosign(f, vm, row, c, note, &cp); /* first use */
                return false;
        }
        if (cp.size < row->size ||
            (cp.size == row->size && sodium_memcmp(cp.root, row->root, MERKLE_HASH_LEN) != 0)) {
                snprintf(detail, sizeof(detail),
                         "the node cosigned a checkpoint of size %llu %s the one of size %llu "
                         "fleetd cosigned",
                         (unsigned long long)cp.size,
                         cp.size < row->size ? "smaller than" : "with another root than",
                         (unsigned long long)row->size);
                vw_alarm(f, vm, row, "lying-host", cp.size, note, detail);
                return false;
        }
        if (cp.size == row->size)
                return false; /* the same head, cosigned again */
        /* from the empty tree no proof is needed (and the node asks for none: fleet_size 0) */
        if (row->size != 0 && (from < 0 || (uint64_t)from != row->size)) {
                vm->witness_post = true; /* tell the node which size we hold: it gets that proof */
                return true;
        }
        r = vw_proof_check(row, &cp, c->w);
        if (r == -ENOMEM)
                return false; /* not checked: the next inventory brings the claim again */
        if (r < 0) {
                snprintf(detail, sizeof(detail),
                         "the node cosigned a checkpoint of size %llu whose proof from size %llu "
                         "does not verify against fleetd's root",
                         (unsigned long long)cp.size, (unsigned long long)row->size);
                vw_alarm(f, vm, row, "lying-host", cp.size, note, detail);
                return false;
        }
        vw_cosign(f, vm, row, c, note, &cp);
        return false;
}

void vault_witness_on_vm(struct fleetd *f, struct fleet_vm *vm, const json_t *v)
{
        struct vw_claim c;
        struct vw_row *row = malloc(sizeof(*row));
        bool pending;
        json_t *fs;

        if (!row)
                return;
        if (vw_claim_parse(v, &c) < 0 || vw_row_load(f->store, vm->id, row) < 0)
                goto cleanup;
        if (row->have && strcmp(row->vault_key, c.vault_key) != 0) {
                if (strcmp(vm->witness, "lying-host") != 0)
                        vw_alarm(f, vm, row, "lying-host", 0, NULL,
                                 "the node reports another vault key than the one fleetd pinned");
                goto cleanup;
        }
        if (!vm->witness_named && vw_rank_of(row->state) >= vw_rank_of("fork"))
                vm->witness_named = vw_named_load(f->store, vm->id);
        vw_take_evidence(f, vm, row, &c);
        pending = vw_take_checkpoint(f, vm, row, &c);
        fs = json_object_get(c.w, "fleet_size");
        if (row->have && (!json_is_integer(fs) || (uint64_t)json_integer_value(fs) != row->size))
                vm->witness_post = true; /* the node does not know what we hold (it restarted) */
        if (row->have)
                vw_row_store(f->store, vm->id, vm->node_id, row);
        if (row->have) {
                vm->witness_size = row->size;
                snprintf(vm->witness, sizeof(vm->witness), "%s",
                         pending && strcmp(row->state, "ok") == 0 ? "pending" : row->state);
        } else if (vw_rank_of(vm->witness) < vw_rank_of("fork"))
                snprintf(vm->witness, sizeof(vm->witness), "none");
cleanup:
        free(row);
}

/* One post: the cosigned note to the node (outside f->lock). */
struct vw_post {
        char vm_id[VM_ID_MAX + 1];
        char address[INET_ADDRSTRLEN];
};

void vault_witness_push(struct fleetd *f)
{
        struct vw_post *p;
        size_t n = 0;

        pthread_mutex_lock(&f->lock);
        p = calloc(f->n_vms + 1, sizeof(*p));
        for (size_t i = 0; p && i < f->n_vms; i++) {
                struct fleet_vm *vm = &f->vms[i];
                struct fleet_node *node = node_table_find(&f->table, vm->node_id);

                if (!vm->witness_post || !node || !node->rn->mesh_address[0])
                        continue;
                vm->witness_post = false;
                snprintf(p[n].vm_id, sizeof(p[n].vm_id), "%s", vm->id);
                snprintf(p[n].address, sizeof(p[n].address), "%s", node->rn->mesh_address);
                n++;
        }
        pthread_mutex_unlock(&f->lock);
        for (size_t i = 0; p && i < n; i++) {
                struct vw_row *row = malloc(sizeof(*row));
                char path[VM_ID_MAX + 32], *body = NULL, *answer = NULL;
                long status = 0;

                if (row && vw_row_load(f->store, p[i].vm_id, row) == 0 && row->have &&
                    (body = json_dumps(json_pack("{s:i, s:s}", "v", 1, "checkpoint", row->note),
                                       JSON_COMPACT | JSON_SORT_KEYS)) != NULL) {
                        snprintf(path, sizeof(path), "/v1/vms/%s/witness", p[i].vm_id);
                        if (f->transport.call(f->transport.ctx, p[i].address,
                                              (uint16_t)f->cfg.node_api_port, "POST", path, body,
                                              f->cfg.node_api_timeout_ms, &status, &answer) < 0 ||
                            status != 200)
                                log_warn("VM '%s': node at '%s' did not take fleetd's cosigned "
                                         "checkpoint (status %ld)",
                                         p[i].vm_id, p[i].address, status);
                }
                free(answer);
                free(body);
                free(row);
        }
        free(p);
}

bool vault_vm_stalled(const struct fleetd *f, const struct fleet_vm *vm, uint64_t now_ms)
{
        json_int_t at = json_integer_value(json_object_get(vm->verification, "at_ms"));
        uint64_t since = at > 0 ? (uint64_t)at : vm->created_ms;

        if (vm->status != VM_ACTIVE || vm->lifecycle != VM_LC_ACTIVE ||
            strcmp(vm->observed, "running") != 0)
                return false;
        if (since < f->started_wall_ms)
                since = f->started_wall_ms; /* fleetd was not watching before it started */
        return now_ms > since + f->cfg.vault_verify_interval_ms + f->cfg.vault_stall_grace_ms;
}

void vault_note_clean(struct fleetd *f, struct fleet_vm *vm, uint64_t at_ms, json_t *result)
{
        uint64_t day = at_ms / VW_DAY_MS;

        vm->clean_count++;
        if (vm->clean_day == day)
                return;
        audit_append(f->store, false, "vm.verifications_clean", vm->id, "fleetd",
                     json_pack("{s:s, s:I, s:I, s:O}", "node_id", vm->node_id, "count",
                               (json_int_t)vm->clean_count, "day", (json_int_t)day, "last",
                               result));
        vm->clean_day = day;
        vm->clean_count = 0;
}

static json_t *vw_named(const struct fleet_vm *vm)
{
        json_t *a = json_array();

        for (int k = 0; k < 3; k++)
                if (vm->witness_named & (1u << k))
                        json_array_append_new(a, json_string(vw_rank[vw_rank_of("fork") + k]));
        return a;
}

/* The VM view's "witness": the state (the worst alarm, else ok/pending/none), every alarm named
 * so far, and the checkpoint fleetd holds (the vault's note with the node's and fleetd's
 * cosignatures). */
json_t *vault_witness_vm_json(const struct fleetd *f, const struct fleet_vm *vm, uint64_t now_ms)
{
        struct vw_row *row = malloc(sizeof(*row));
        json_t *o = json_pack(
            "{s:s, s:o, s:I, s:s?, s:I, s:b}", "state", vm->witness[0] ? vm->witness : "none",
            "named", vw_named(vm), "size", (json_int_t)vm->witness_size, "detail",
            vm->witness_detail[0] ? vm->witness_detail : NULL, "alarms",
            (json_int_t)vm->witness_alarms, "stalled", vault_vm_stalled(f, vm, now_ms));

        if (o && row && vw_row_load(f->store, vm->id, row) == 0 && row->have)
                json_object_set_new(o, "checkpoint", json_string(row->note));
        else if (o)
                json_object_set_new(o, "checkpoint", json_null());
        free(row);
        return o;
}

const char *vault_witness_alarm(const struct fleet_vm *vm)
{
        return vw_rank_of(vm->witness) >= vw_rank_of("fork") ? vm->witness : NULL;
}

const char *fleet_vault_status(struct fleetd *f, uint64_t now_ms, json_t **ret_alarms,
                               json_t **ret_stalled)
{
        json_t *alarms = json_array(), *stalled = json_array();
        int worst = 0;

        for (size_t i = 0; i < f->n_vms; i++) {
                const struct fleet_vm *vm = &f->vms[i];
                const char *a = vault_witness_alarm(vm);

                if (a) {
                        json_array_append_new(alarms, json_pack("{s:s, s:s, s:s, s:o}", "id",
                                                                vm->id, "node_id", vm->node_id,
                                                                "state", a, "named", vw_named(vm)));
                        if (vw_rank_of(a) > worst)
                                worst = vw_rank_of(a);
                }
                if (vault_vm_stalled(f, vm, now_ms))
                        json_array_append_new(stalled, json_string(vm->id));
        }
        *ret_alarms = alarms;
        *ret_stalled = stalled;
        return worst ? vw_rank[worst] : "ok";
}
