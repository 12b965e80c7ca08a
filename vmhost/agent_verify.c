/* The checks vmhost makes on a vault's reports, without I/O: trust on first use of the vault's
 * Ed25519 key, the signature of every signed tree head (STH), no rollback, and RFC 9162
 * consistency from the last accepted STH to each larger one (asked of the agent, verified
 * here). Every failure is a mismatch that is kept; nothing clears it. This is the only file that
 * calls common/merkle.c.
 *
 * The host is also a witness of each vault's checkpoints (C2SP tlog-witness): a report's
 * checkpoint note must be the vault key's note of the report's tree head; when the head is
 * accepted the host adds its cosignature (cosignature/v1) and keeps the proof it checked, for
 * fleetd, which checks the same from the checkpoint it cosigned last. A refused head's checkpoint
 * is kept as evidence, named `rollback` (smaller) or `fork` (same size with another root, or no
 * valid proof from the accepted one). */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/merkle.h"
#include "vmhost/vmhost.h"

#define INTEGRITY_MAX_KEPT 256
#define WITNESS_NOTE_MAX   2048 /* a vault checkpoint with a few cosignatures */

void integrity_init(struct integrity *in)
{
        memset(in, 0, sizeof(*in));
        in->mismatches = json_array();
        in->evidence = json_array();
}

void integrity_clear(struct integrity *in)
{
        if (!in)
                return;
        json_decref(in->mismatches);
        in->mismatches = NULL;
        json_decref(in->evidence);
        in->evidence = NULL;
        free(in->note);
        free(in->pending_note);
        free(in->fleet_note);
        in->note = in->pending_note = in->fleet_note = NULL;
}

static bool integrity_field_is(const json_t *o, const char *key, const char *want)
{
        const char *v = json_string_value(json_object_get(o, key));

        return strcmp(v ? v : "", want ? want : "") == 0;
}

/* A mismatch is kept once: the agent repeats what it still finds in every report (a file that
 * is still unrecorded, a key that is still another), and a repeat is no new fact. */
void integrity_add_mismatch(struct integrity *in, const char *kind, const char *path,
                            const char *detail)
{
        json_t *o;
        size_t i;

        if (!in->mismatches || json_array_size(in->mismatches) >= INTEGRITY_MAX_KEPT)
                return; /* the first ones are kept; the status already says mismatch */
        json_array_foreach(in->mismatches, i,
                           o) if (integrity_field_is(o, "kind", kind) &&
                                  integrity_field_is(o, "path", path) &&
                                  integrity_field_is(o, "detail", detail)) return;
        o = json_pack("{s:s, s:s, s:s}", "kind", kind, "path", path ? path : "", "detail",
                      detail ? detail : "");
        if (o)
                json_array_append_new(in->mismatches, o);
}

/* Keeps a refused checkpoint (the vault signed it: the evidence cannot be forged by the host). */
static void integrity_evidence(struct integrity *in, const char *reason, const struct sth *s,
                               const char *note, uint64_t now_ms, const char *detail)
{
        json_t *e;

        in->evidence_total++;
        in->witness_changed = true;
        if (!in->evidence || json_array_size(in->evidence) >= WITNESS_EVIDENCE_KEPT)
                return; /* the first ones are kept, the rest counted */
        e = json_pack("{s:s, s:I, s:I, s:s?, s:I, s:s}", "reason", reason, "size",
                      (json_int_t)s->size, "held_size", (json_int_t)in->sth.size, "checkpoint",
                      note, "received_ms", (json_int_t)now_ms, "detail", detail);
        if (e)
                json_array_append_new(in->evidence, e);
}

/* The proof fleetd needs: from the size it holds when that is not the proof we forward. */
static enum verify_action integrity_fleet_wants(struct integrity *in)
{
        uint8_t raw[8];

        if (!in->fleet_known || in->fleet_pending || in->fleet_size == 0 ||
            in->fleet_size >= in->sth.size || in->fleet_size == in->fwd_from)
                return VERIFY_DONE;
        randombytes_buf(raw, sizeof(raw));
        sodium_bin2hex(in->fleet_rid, sizeof(in->fleet_rid), raw, sizeof(raw));
        in->fleet_pending = true;
        return VERIFY_NEED_FLEET_PROOF;
}

/* Accepts s with its checkpoint (may be NULL) and cosigns it; the forwarded proof is the one
 * just checked (from, proof) unless the head did not change. */
static void integrity_accept(struct integrity *in, const struct sth *s, const char *note,
                             uint64_t now_ms, uint64_t from, const merkle_hash *proof, size_t len)
{
        char *buf; /* the cosigned note: WITNESS_NOTE_MAX bytes, on the heap */
        size_t n = note ? strlen(note) : 0;
        bool same = in->has_sth && in->sth.size == s->size;

        in->sth = *s;
        in->has_sth = true;
        in->sth_accepted_now = true;
        if (!same) {
                in->fwd_from = from;
                in->fwd_len = len;
                if (len > 0)
                        memcpy(in->fwd_proof, proof, len * sizeof(merkle_hash));
                in->fleet_pending = false;
        }
        if (!note || !in->signer || n >= WITNESS_NOTE_MAX || !(buf = malloc(WITNESS_NOTE_MAX)))
                return;
        memcpy(buf, note, n + 1);
        if (witness_key_cosign(in->signer, buf, n, WITNESS_NOTE_MAX, now_ms / 1000) >= 0) {
                free(in->note);
                in->note = strdup(buf);
                in->witness_changed = true;
        }
        free(buf);
}

/* A report's checkpoint must be the vault key's note of the report's own head. */
static const char *integrity_check_note(struct integrity *in, const struct agent_msg *m)
{
        struct tlog_checkpoint cp;

        if (!m->checkpoint)
                return NULL;
        if (sth_checkpoint_open(m->checkpoint, strlen(m->checkpoint), in->key, &cp) < 0 ||
            cp.size != m->sth.size || sodium_memcmp(cp.root, m->sth.root, MERKLE_HASH_LEN) != 0) {
                integrity_add_mismatch(in, "forged-tree-head", "",
                                       "the report's checkpoint is not the vault key's note of "
                                       "its signed tree head");
                return NULL;
        }
        return m->checkpoint;
}

static bool integrity_check_key(struct integrity *in, const struct agent_msg *m)
{
        if (!in->has_key) {
                memcpy(in->key, m->public_key, sizeof(in->key));
                in->has_key = true;
                in->key_pinned_now = true;
                return true;
        }
        if (sodium_memcmp(in->key, m->public_key, sizeof(in->key)) != 0) {
                integrity_add_mismatch(in, "key-changed", "",
                                       "the report's public key is not the vault key pinned at "
                                       "its first report");
                return false;
        }
        return true;
}

static int integrity_verify_consistency(uint64_t size1, uint64_t size2, const merkle_hash r1,
                                        const merkle_hash r2, const merkle_hash *proof, size_t len)
{
#ifdef VMHOST_HAVE_MERKLE
        return merkle_verify_consistency(size1, size2, r1, r2, proof, len);
#else
        (void)size1, (void)size2, (void)r1, (void)r2, (void)proof, (void)len;
        return -ENOSYS; /* common/merkle.c not merged yet: reported, never accepted silently */
#endif
}

static enum verify_action integrity_compare(struct integrity *in, const struct sth *s,
                                            const char *note, uint64_t now_ms)
{
        char detail[160];

        if (!in->has_sth || in->sth.size == 0) {
                integrity_accept(in, s, note, now_ms, 0, NULL, 0);
                return integrity_fleet_wants(in);
        }
        if (s->size < in->sth.size) {
                snprintf(detail, sizeof(detail), "tree size %llu is smaller than the accepted %llu",
                         (unsigned long long)s->size, (unsigned long long)in->sth.size);
                integrity_add_mismatch(in, "rollback", "", detail);
                integrity_evidence(in, "rollback", s, note, now_ms, detail);
                return VERIFY_DONE;
        }
        if (s->size == in->sth.size) {
                if (sodium_memcmp(s->root, in->sth.root, MERKLE_HASH_LEN) != 0) {
                        integrity_add_mismatch(in, "inconsistent-tree-head", "",
                                               "same tree size, different root");
                        integrity_evidence(in, "fork", s, note, now_ms,
                                           "same tree size, different root");
                } else
                        integrity_accept(in, s, note, now_ms, 0, NULL, 0);
                return VERIFY_DONE;
        }
        in->pending = true;
        in->pending_sth = *s;
        free(in->pending_note);
        in->pending_note = note ? strdup(note) : NULL;
        randombytes_buf(detail, 8);
        sodium_bin2hex(in->pending_id, sizeof(in->pending_id), (const uint8_t *)detail, 8);
        return VERIFY_NEED_CONSISTENCY;
}

enum verify_action integrity_on_report(struct integrity *in, const struct agent_msg *m,
                                       uint64_t now_ms)
{
        size_t n = m->mismatches ? json_array_size(m->mismatches) : 0;
        const char *note;

        in->key_pinned_now = false;
        in->sth_accepted_now = false;
        in->reports++;
        in->checked_at_ms = now_ms;
        for (size_t i = 0; i < n; i++) {
                json_t *mm = json_array_get(m->mismatches, i);

                integrity_add_mismatch(in, json_string_value(json_object_get(mm, "kind")),
                                       json_string_value(json_object_get(mm, "path")),
                                       json_string_value(json_object_get(mm, "detail")));
        }
        if (!integrity_check_key(in, m))
                return VERIFY_DONE;
        if (sth_verify(&m->sth, in->key) < 0) {
                integrity_add_mismatch(in, "forged-tree-head", "",
                                       "the tree head's signature is not the vault key's");
                return VERIFY_DONE;
        }
        note = integrity_check_note(in, m);
        if (in->pending)
                return VERIFY_DONE; /* one proof at a time; the next report asks again */
        return integrity_compare(in, &m->sth, note, now_ms);
}

/* The answer to the proof fleetd needs: forwarded as it is; fleetd checks it. */
static enum verify_action integrity_on_fleet_proof(struct integrity *in, const struct agent_msg *m)
{
        in->fleet_pending = false;
        if (m->from_size != in->fleet_size || m->to_size != in->sth.size)
                return integrity_fleet_wants(in); /* the head moved on meanwhile: ask again */
        in->fwd_from = m->from_size;
        in->fwd_len = m->proof_len;
        memcpy(in->fwd_proof, m->proof, m->proof_len * sizeof(merkle_hash));
        in->witness_changed = true;
        return VERIFY_DONE;
}

enum verify_action integrity_on_consistency(struct integrity *in, const struct agent_msg *m,
                                            uint64_t now_ms)
{
        char detail[200];
        uint64_t from = in->sth.size;
        int r;

        if (in->fleet_pending && strcmp(m->request_id, in->fleet_rid) == 0)
                return integrity_on_fleet_proof(in, m);
        if (!in->pending || strcmp(m->request_id, in->pending_id) != 0)
                return VERIFY_DONE; /* unsolicited or late: ignored */
        in->pending = false;
        in->checked_at_ms = now_ms;
        if (m->from_size != in->sth.size || m->to_size != in->pending_sth.size) {
                integrity_add_mismatch(in, "inconsistent-tree-head", "",
                                       "the consistency proof is for other tree sizes");
                integrity_evidence(in, "fork", &in->pending_sth, in->pending_note, now_ms,
                                   "the consistency proof is for other tree sizes");
                return VERIFY_DONE;
        }
        r = integrity_verify_consistency(in->sth.size, in->pending_sth.size, in->sth.root,
                                         in->pending_sth.root, m->proof, m->proof_len);
        if (r == 0) {
                integrity_accept(in, &in->pending_sth, in->pending_note, now_ms, from, m->proof,
                                 m->proof_len);
                return integrity_fleet_wants(in);
        }
        snprintf(detail, sizeof(detail), "no valid consistency proof from size %llu to %llu (%s)",
                 (unsigned long long)in->sth.size, (unsigned long long)in->pending_sth.size,
                 r == -ENOSYS ? "verifier not built in" : "proof rejected");
        integrity_add_mismatch(in, "inconsistent-tree-head", "", detail);
        integrity_evidence(in, "fork", &in->pending_sth, in->pending_note, now_ms, detail);
        return VERIFY_DONE;
}

enum verify_action integrity_on_fleet_note(struct integrity *in, const char *note, size_t len,
                                           int *ret_err)
{
        struct tlog_checkpoint cp;
        char origin[STH_ORIGIN_MAX + 1];

        *ret_err = 0;
        if (!in->has_key || len >= WITNESS_NOTE_MAX ||
            tlog_checkpoint_open_unverified(note, len, &cp) < 0) {
                *ret_err = -EBADMSG;
                return VERIFY_DONE;
        }
        sth_checkpoint_origin(in->key, origin);
        if (strcmp(cp.origin, origin) != 0) {
                *ret_err = -EBADMSG;
                return VERIFY_DONE;
        }
        free(in->fleet_note);
        in->fleet_note = strndup(note, len);
        in->fleet_known = true;
        in->fleet_size = cp.size;
        memcpy(in->fleet_root, cp.root, MERKLE_HASH_LEN);
        in->witness_changed = true;
        return integrity_fleet_wants(in);
}

/* What fleetd reads: the cosigned checkpoint, the proof from fwd_from to it, the evidence. */
static json_t *integrity_witness_json(const struct integrity *in)
{
        char vkey[TLOG_VKEY_MAX + 1], b64[64];
        json_t *proof = json_array(), *o;

        for (size_t i = 0; proof && i < in->fwd_len; i++) {
                sodium_bin2base64(b64, sizeof(b64), in->fwd_proof[i], MERKLE_HASH_LEN,
                                  sodium_base64_VARIANT_ORIGINAL);
                json_array_append_new(proof, json_string(b64));
        }
        if (!in->signer || tlog_cosig_vkey_format(&in->signer->pub, vkey, sizeof(vkey)) < 0)
                vkey[0] = '\0';
        o = json_pack("{s:s?, s:s?, s:I, s:o, s:O, s:I}", "key", vkey[0] ? vkey : NULL,
                      "checkpoint", in->note, "from_size", (json_int_t)in->fwd_from, "proof", proof,
                      "evidence", in->evidence, "evidence_total", (json_int_t)in->evidence_total);
        if (o)
                json_object_set_new(o, "fleet_size",
                                    in->fleet_known ? json_integer((json_int_t)in->fleet_size)
                                                    : json_null());
        return o;
}

json_t *integrity_to_json(const struct integrity *in)
{
        char root[MERKLE_HASH_LEN * 2 + 1];
        const char *status = "unknown";
        json_t *o;

        if (json_array_size(in->mismatches) > 0)
                status = "mismatch";
        else if (in->has_sth)
                status = "ok";
        o = json_pack("{s:s, s:O}", "status", status, "mismatches", in->mismatches);
        if (!o)
                return NULL;
        if (in->has_sth) {
                sodium_bin2hex(root, sizeof(root), in->sth.root, MERKLE_HASH_LEN);
                json_object_set_new(o, "tree_size", json_integer((json_int_t)in->sth.size));
                json_object_set_new(o, "root", json_string(root));
        } else {
                json_object_set_new(o, "tree_size", json_null());
                json_object_set_new(o, "root", json_null());
        }
        json_object_set_new(o, "checked_at_ms",
                            in->checked_at_ms ? json_integer((json_int_t)in->checked_at_ms)
                                              : json_null());
        json_object_set_new(o, "witness", integrity_witness_json(in));
        return o;
}

json_t *integrity_witness_save(const struct integrity *in)
{
        return json_pack("{s:s?, s:O, s:I}", "checkpoint", in->note, "evidence", in->evidence,
                         "evidence_total", (json_int_t)in->evidence_total);
}

void integrity_witness_load(struct integrity *in, const json_t *o)
{
        const char *note = json_string_value(json_object_get(o, "checkpoint"));
        json_t *ev = json_object_get(o, "evidence");
        json_t *total = json_object_get(o, "evidence_total");
        struct tlog_checkpoint cp;

        if (json_is_array(ev) && json_array_size(ev) <= WITNESS_EVIDENCE_KEPT) {
                json_decref(in->evidence);
                in->evidence = json_incref(ev);
        }
        if (json_is_integer(total) && json_integer_value(total) >= 0)
                in->evidence_total = (uint64_t)json_integer_value(total);
        /* the cosigned note of the head the metadata says we accepted (no proof: none kept) */
        if (note && in->has_sth && tlog_checkpoint_open_unverified(note, strlen(note), &cp) == 0 &&
            cp.size == in->sth.size && memcmp(cp.root, in->sth.root, MERKLE_HASH_LEN) == 0) {
                free(in->note);
                in->note = strdup(note);
                in->fwd_from = cp.size;
        }
}
