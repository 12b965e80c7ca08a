/* Guest-to-host messages (docs/contracts.md section 3): report, consistency and error lines,
 * built with jansson so every string is escaped, and each kept under CHANNEL_LINE_MAX bytes. */
#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "agent/agent.h"

static char *report_dump(json_t *o)
{
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;

        json_decref(o);
        if (s && strlen(s) >= CHANNEL_LINE_MAX) {
                free(s);
                return NULL;
        }
        return s;
}

static json_t *report_sth(const struct sth *s)
{
        char root[65], sig[96];

        sth_to_json_fields(s, root, sig);
        return json_pack("{s:I, s:s, s:I, s:s}", "size", (json_int_t)s->size, "root", root,
                         "time_ms", (json_int_t)s->time_ms, "signature", sig);
}

static json_t *report_mismatches(const struct mismatch_list *mm)
{
        json_t *a = json_array();

        for (size_t i = 0; a && i < mm->n && i < AGENT_REPORT_MISMATCH; i++)
                json_array_append_new(a, json_pack("{s:s, s:s, s:s}", "kind", mm->items[i].kind,
                                                   "path", mm->items[i].path, "detail",
                                                   mm->items[i].detail));
        return a;
}

char *report_build(const char *trigger, const char *request_id, const char *vault_id,
                   const uint8_t sk[STH_SECRET_KEY_LEN], const struct sth *sth,
                   const struct verify_result *vr)
{
        char pkb[sodium_base64_ENCODED_LEN(STH_PUBLIC_KEY_LEN, sodium_base64_VARIANT_ORIGINAL)];
        char note[1024];
        const uint8_t *pk = sk + 32;
        json_t *o;

        sodium_bin2base64(pkb, sizeof(pkb), pk, STH_PUBLIC_KEY_LEN, sodium_base64_VARIANT_ORIGINAL);
        o = json_pack("{s:i, s:s, s:s, s:s, s:s, s:o, s:I, s:I, s:I, s:o}", "v", 1, "type",
                      "report", "trigger", trigger, "vault_id", vault_id, "public_key", pkb, "sth",
                      report_sth(sth), "records", (json_int_t)vr->records, "bytes",
                      (json_int_t)vr->bytes, "duration_ms", (json_int_t)vr->duration_ms,
                      "mismatches", report_mismatches(&vr->mm));
        if (o && request_id && request_id[0])
                json_object_set_new(o, "request_id", json_string(request_id));
        /* the same head as a C2SP checkpoint (for every head, the empty tree's included), which
         * the host and the fleet cosign as witnesses */
        if (o && sth_checkpoint_sign(sth, sk, note, sizeof(note)) > 0)
                json_object_set_new(o, "checkpoint", json_string(note));
        return report_dump(o);
}

char *report_build_consistency(const char *request_id, uint64_t from, uint64_t to,
                               const merkle_hash *proof, size_t len)
{
        json_t *a = json_array();
        char hex[65];

        for (size_t i = 0; a && i < len; i++) {
                sodium_bin2hex(hex, sizeof(hex), proof[i], MERKLE_HASH_LEN);
                json_array_append_new(a, json_string(hex));
        }
        return report_dump(json_pack("{s:i, s:s, s:s, s:I, s:I, s:o}", "v", 1, "type",
                                     "consistency", "request_id", request_id, "from_size",
                                     (json_int_t)from, "to_size", (json_int_t)to, "proof", a));
}

char *report_build_error(const char *request_id, const char *detail)
{
        json_t *o = json_pack("{s:i, s:s, s:s}", "v", 1, "type", "error", "detail", detail);

        if (o && request_id && request_id[0])
                json_object_set_new(o, "request_id", json_string(request_id));
        return report_dump(o);
}

char *report_answer_consistency(const struct ledger *l, const struct agent_request *req, char *err,
                                size_t errlen)
{
        merkle_hash *proof; /* MERKLE_MAX_PROOF hashes, 2 KiB: on the heap */
        size_t len = 0;
        char *ret;

        if (req->from_size == 0 || req->from_size > req->to_size || req->to_size > l->n) {
                snprintf(err, errlen,
                         "no consistency proof from size %" PRIu64 " to %" PRIu64
                         ": the ledger holds %zu entries and from_size must be 1..to_size",
                         req->from_size, req->to_size, l->n);
                return NULL;
        }
        proof = calloc(MERKLE_MAX_PROOF, sizeof(*proof));
        if (!proof || !l->leaves || req->to_size > l->kept ||
            merkle_consistency_proof(l->leaves, req->to_size, req->from_size, proof, &len) < 0) {
                snprintf(err, errlen, "cannot build the proof");
                free(proof);
                return NULL;
        }
        ret = report_build_consistency(req->request_id, req->from_size, req->to_size, proof, len);
        free(proof);
        return ret;
}
