/* The agent channel's guest-to-host messages (docs/contracts.md section 3), parsed strictly:
 * one JSON object per line of at most AGENT_LINE_MAX bytes, depth 4, "v": 1, a known "type",
 * no unknown fields, every field typed and bounded. The guest is not trusted. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json_input.h"
#include "vmhost/vmhost.h"

#define AGENT_MAX_DEPTH      4
#define AGENT_STR_MAX        4096
#define AGENT_CHECKPOINT_MAX 1024 /* a vault checkpoint: origin, size, root, one signature */

static const char *const agent_mismatch_kinds[] = {"modified-asset",
                                                   "deleted-asset",
                                                   "unrecorded-file",
                                                   "ledger-edited",
                                                   "ledger-truncated",
                                                   "ledger-reordered",
                                                   "ledger-deleted",
                                                   "flag-cleared",
                                                   "forged-tree-head",
                                                   "rollback",
                                                   "inconsistent-tree-head",
                                                   "key-changed",
                                                   "malformed-report",
                                                   "unsigned",
                                                   "mode-changed",
                                                   "owner-changed",
                                                   "hard-linked",
                                                   "unverified",
                                                   NULL};

bool agent_mismatch_kind_valid(const char *kind)
{
        for (const char *const *k = agent_mismatch_kinds; *k; k++)
                if (strcmp(*k, kind) == 0)
                        return true;
        return false;
}

void agent_msg_clear(struct agent_msg *m)
{
        if (!m)
                return;
        json_decref(m->mismatches);
        m->mismatches = NULL;
        free(m->checkpoint);
        m->checkpoint = NULL;
        free(m->proof);
        m->proof = NULL;
}

static int agent_get_b64(const json_t *o, const char *key, uint8_t *out, size_t n,
                         struct json_input_error *err)
{
        const char *s = NULL;
        size_t bin_len = 0;
        int r = json_input_get_string(o, key, true, 128, &s, err);

        if (r < 0)
                return r;
        if (sodium_base642bin(out, n, s, strlen(s), NULL, &bin_len, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0 ||
            bin_len != n)
                return json_input_fail(err, "field '%s' is not %zu bytes of base64", key, n);
        return 0;
}

static int agent_hex32(const char *s, uint8_t out[32])
{
        size_t bin_len = 0;

        if (!ident_hex_valid(s, 64) || sodium_hex2bin(out, 32, s, 64, NULL, &bin_len, NULL) != 0)
                return -EINVAL;
        return 0;
}

static int agent_parse_sth(const json_t *o, struct sth *s, struct json_input_error *err)
{
        static const char *const fields[] = {"size", "root", "time_ms", "signature", NULL};
        const char *root = NULL;
        int r = 0;

        if (!json_is_object(o))
                return json_input_fail(err, "field 'sth' must be an object");
        r = r ?: json_input_check_keys(o, fields, err);
        r = r ?: json_input_get_uint(o, "size", true, 0, INT64_MAX, &s->size, err);
        r = r ?: json_input_get_string(o, "root", true, 64, &root, err);
        r = r ?: json_input_get_uint(o, "time_ms", true, 0, INT64_MAX, &s->time_ms, err);
        r = r ?: agent_get_b64(o, "signature", s->signature, sizeof(s->signature), err);
        if (r == 0 && agent_hex32(root, s->root) < 0)
                return json_input_fail(err, "field 'sth.root' is not 64 lowercase hex digits");
        return r;
}

static int agent_parse_mismatch(const json_t *o, struct json_input_error *err)
{
        static const char *const fields[] = {"kind", "path", "detail", NULL};
        const char *kind = NULL, *s = NULL;
        int r = 0;

        if (!json_is_object(o))
                return json_input_fail(err, "a mismatch must be an object");
        r = r ?: json_input_check_keys(o, fields, err);
        r = r ?: json_input_get_string(o, "kind", true, 64, &kind, err);
        r = r ?: json_input_get_string(o, "path", false, AGENT_STR_MAX, &s, err);
        r = r ?: json_input_get_string(o, "detail", false, AGENT_STR_MAX, &s, err);
        if (r == 0 && !agent_mismatch_kind_valid(kind))
                return json_input_fail(err, "unknown mismatch kind '%.64s'", kind);
        return r;
}

static int agent_parse_report(const json_t *o, struct agent_msg *m, struct json_input_error *err)
{
        static const char *const fields[] = {
            "v",       "type",  "trigger",     "request_id", "vault_id",   "public_key", "sth",
            "records", "bytes", "duration_ms", "mismatches", "checkpoint", NULL};
        static const char *const triggers[] = {"start", "seal", "schedule", "request", NULL};
        json_t *mm = json_object_get(o, "mismatches");
        const char *note = NULL;
        int r = 0;

        r = r ?: json_input_check_keys(o, fields, err);
        r = r ?: json_input_copy_string(o, "trigger", true, m->trigger, sizeof(m->trigger), err);
        r = r
                ?: json_input_copy_id(o, "request_id", false, IDENT_REQUEST, m->request_id,
                                      sizeof(m->request_id), err);
        r = r ?: json_input_copy_string(o, "vault_id", true, m->vault_id, sizeof(m->vault_id), err);
        r = r ?: agent_get_b64(o, "public_key", m->public_key, sizeof(m->public_key), err);
        r = r ?: agent_parse_sth(json_object_get(o, "sth"), &m->sth, err);
        r = r ?: json_input_get_uint(o, "records", true, 0, INT64_MAX, &m->records, err);
        r = r ?: json_input_get_uint(o, "bytes", true, 0, INT64_MAX, &m->bytes, err);
        r = r ?: json_input_get_uint(o, "duration_ms", true, 0, INT64_MAX, &m->duration_ms, err);
        r = r ?: json_input_get_string(o, "checkpoint", false, AGENT_CHECKPOINT_MAX, &note, err);
        if (r < 0)
                return r;
        if (note && !(m->checkpoint = strdup(note)))
                return json_input_fail(err, "out of memory");
        r = -EINVAL;
        for (const char *const *t = triggers; *t; t++)
                if (strcmp(*t, m->trigger) == 0)
                        r = 0;
        if (r < 0)
                return json_input_fail(err, "unknown trigger '%s'", m->trigger);
        if (!json_is_array(mm) || json_array_size(mm) > AGENT_MAX_MISMATCHES)
                return json_input_fail(err, "field 'mismatches' must be an array of at most %d",
                                       AGENT_MAX_MISMATCHES);
        for (size_t i = 0; i < json_array_size(mm); i++)
                if ((r = agent_parse_mismatch(json_array_get(mm, i), err)) < 0)
                        return r;
        m->mismatches = json_incref(mm);
        return 0;
}

static int agent_parse_consistency(const json_t *o, struct agent_msg *m,
                                   struct json_input_error *err)
{
        static const char *const fields[] = {"v",       "type",  "request_id", "from_size",
                                             "to_size", "proof", NULL};
        json_t *proof = json_object_get(o, "proof");
        int r = 0;

        r = r ?: json_input_check_keys(o, fields, err);
        r = r
                ?: json_input_copy_id(o, "request_id", true, IDENT_REQUEST, m->request_id,
                                      sizeof(m->request_id), err);
        r = r ?: json_input_get_uint(o, "from_size", true, 0, INT64_MAX, &m->from_size, err);
        r = r ?: json_input_get_uint(o, "to_size", true, 0, INT64_MAX, &m->to_size, err);
        if (r < 0)
                return r;
        if (!json_is_array(proof) || json_array_size(proof) > MERKLE_MAX_PROOF)
                return json_input_fail(err, "field 'proof' must be an array of at most %d hashes",
                                       MERKLE_MAX_PROOF);
        /* one hash at least: an empty proof is a valid pointer too (memcpy of 0 from it) */
        m->proof = calloc(json_array_size(proof) ?: 1, sizeof(merkle_hash));
        if (!m->proof)
                return json_input_fail(err, "out of memory");
        for (size_t i = 0; i < json_array_size(proof); i++) {
                const char *h = json_string_value(json_array_get(proof, i));

                if (!h || agent_hex32(h, m->proof[i]) < 0)
                        return json_input_fail(err, "proof[%zu] is not a 64-digit hex hash", i);
        }
        m->proof_len = json_array_size(proof);
        return 0;
}

static int agent_parse_error(const json_t *o, struct agent_msg *m, struct json_input_error *err)
{
        static const char *const fields[] = {"v", "type", "request_id", "detail", NULL};
        int r = 0;

        r = r ?: json_input_check_keys(o, fields, err);
        r = r
                ?: json_input_copy_id(o, "request_id", false, IDENT_REQUEST, m->request_id,
                                      sizeof(m->request_id), err);
        r = r ?: json_input_copy_string(o, "detail", true, m->detail, sizeof(m->detail), err);
        return r;
}

static int agent_parse_object(const json_t *o, struct agent_msg *m, struct json_input_error *err)
{
        const char *type = NULL;
        uint64_t v = 0;
        int r = 0;

        if (!json_is_object(o))
                return json_input_fail(err, "a message must be a JSON object");
        r = r ?: json_input_get_uint(o, "v", true, 0, UINT32_MAX, &v, err);
        r = r ?: json_input_get_string(o, "type", true, 32, &type, err);
        if (r < 0)
                return r;
        if (v != 1)
                return json_input_fail(err, "unsupported message version %llu",
                                       (unsigned long long)v);
        if (strcmp(type, "report") == 0) {
                m->type = AGENT_MSG_REPORT;
                return agent_parse_report(o, m, err);
        }
        if (strcmp(type, "consistency") == 0) {
                m->type = AGENT_MSG_CONSISTENCY;
                return agent_parse_consistency(o, m, err);
        }
        if (strcmp(type, "error") == 0) {
                m->type = AGENT_MSG_ERROR;
                return agent_parse_error(o, m, err);
        }
        return json_input_fail(err, "unknown message type '%s'", type);
}

int agent_line_parse(const char *line, size_t len, struct agent_msg *ret, char *err, size_t errsize)
{
        struct json_input_error jerr = {{0}};
        struct agent_msg m;
        json_t *o;
        int r;

        memset(&m, 0, sizeof(m));
        if (memchr(line, '\0', len)) {
                snprintf(err, errsize, "line contains a NUL byte");
                return -EINVAL;
        }
        o = json_input_parse(line, len, AGENT_LINE_MAX, AGENT_MAX_DEPTH, &jerr);
        r = o ? agent_parse_object(o, &m, &jerr) : -EINVAL;
        json_decref(o);
        if (r < 0) {
                agent_msg_clear(&m);
                snprintf(err, errsize, "%s", jerr.text);
                return r;
        }
        *ret = m;
        return 0;
}
