/* The checks vmhost makes on a vault's reports, without I/O: trust on first use of the vault's
 * Ed25519 key, the signature of every signed tree head (STH), no rollback, and RFC 9162
 * consistency from the last accepted STH to each larger one (asked of the agent, verified
 * here). Every failure is a mismatch that is kept; nothing clears it. This is the only file that
 * calls common/merkle.c. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "common/merkle.h"
#include "vmhost/vmhost.h"

#define INTEGRITY_MAX_KEPT 256

void integrity_init(struct integrity *in)
{
        memset(in, 0, sizeof(*in));
        in->mismatches = json_array();
}

void integrity_clear(struct integrity *in)
{
        if (!in)
                return;
        json_decref(in->mismatches);
        in->mismatches = NULL;
}

void integrity_add_mismatch(struct integrity *in, const char *kind, const char *path,
                            const char *detail)
{
        json_t *o;

        if (!in->mismatches || json_array_size(in->mismatches) >= INTEGRITY_MAX_KEPT)
                return; /* the first ones are kept; the status already says mismatch */
        o = json_pack("{s:s, s:s, s:s}", "kind", kind, "path", path ? path : "", "detail",
                      detail ? detail : "");
        if (o)
                json_array_append_new(in->mismatches, o);
}

static void integrity_accept(struct integrity *in, const struct sth *s)
{
        in->sth = *s;
        in->has_sth = true;
        in->sth_accepted_now = true;
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

static enum verify_action integrity_compare(struct integrity *in, const struct sth *s)
{
        char detail[160];

        if (!in->has_sth || in->sth.size == 0) {
                integrity_accept(in, s);
                return VERIFY_DONE;
        }
        if (s->size < in->sth.size) {
                snprintf(detail, sizeof(detail), "tree size %llu is smaller than the accepted %llu",
                         (unsigned long long)s->size, (unsigned long long)in->sth.size);
                integrity_add_mismatch(in, "rollback", "", detail);
                return VERIFY_DONE;
        }
        if (s->size == in->sth.size) {
                if (sodium_memcmp(s->root, in->sth.root, MERKLE_HASH_LEN) != 0)
                        integrity_add_mismatch(in, "inconsistent-tree-head", "",
                                               "same tree size, different root");
                else
                        integrity_accept(in, s);
                return VERIFY_DONE;
        }
        in->pending = true;
        in->pending_sth = *s;
        randombytes_buf(detail, 8);
        sodium_bin2hex(in->pending_id, sizeof(in->pending_id), (const uint8_t *)detail, 8);
        return VERIFY_NEED_CONSISTENCY;
}

enum verify_action integrity_on_report(struct integrity *in, const struct agent_msg *m,
                                       uint64_t now_ms)
{
        size_t n = m->mismatches ? json_array_size(m->mismatches) : 0;

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
        if (in->pending)
                return VERIFY_DONE; /* one proof at a time; the next report asks again */
        return integrity_compare(in, &m->sth);
}

void integrity_on_consistency(struct integrity *in, const struct agent_msg *m, uint64_t now_ms)
{
        char detail[200];
        int r;

        if (!in->pending || strcmp(m->request_id, in->pending_id) != 0)
                return; /* unsolicited or late: ignored */
        in->pending = false;
        in->checked_at_ms = now_ms;
        if (m->from_size != in->sth.size || m->to_size != in->pending_sth.size) {
                integrity_add_mismatch(in, "inconsistent-tree-head", "",
                                       "the consistency proof is for other tree sizes");
                return;
        }
        r = integrity_verify_consistency(in->sth.size, in->pending_sth.size, in->sth.root,
                                         in->pending_sth.root, m->proof, m->proof_len);
        if (r == 0) {
                integrity_accept(in, &in->pending_sth);
                return;
        }
        snprintf(detail, sizeof(detail), "no valid consistency proof from size %llu to %llu (%s)",
                 (unsigned long long)in->sth.size, (unsigned long long)in->pending_sth.size,
                 r == -ENOSYS ? "verifier not built in" : "proof rejected");
        integrity_add_mismatch(in, "inconsistent-tree-head", "", detail);
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
        return o;
}
