/* Checks on the Diode's record answers: see diode_record.h. */
#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/diode_record.h"
#include "common/merkle.h"
#include "common/sth.h"

static int diode_hex32(const char *s, uint8_t out[32])
{
        return s && strlen(s) == 64 && sodium_hex2bin(out, 32, s, 64, NULL, NULL, NULL) == 0
                   ? 0
                   : -EBADMSG;
}

static int diode_check_sth(const json_t *o, const uint8_t pk[STH_PUBLIC_KEY_LEN], struct sth *s)
{
        const char *sig = json_string_value(json_object_get(o, "signature"));
        size_t n = 0;

        memset(s, 0, sizeof(*s));
        s->size = (uint64_t)json_integer_value(json_object_get(o, "size"));
        s->time_ms = (uint64_t)json_integer_value(json_object_get(o, "time_ms"));
        if (diode_hex32(json_string_value(json_object_get(o, "root")), s->root) < 0 || !sig ||
            sodium_base642bin(s->signature, sizeof(s->signature), sig, strlen(sig), NULL, &n, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0 ||
            n != sizeof(s->signature))
                return -EBADMSG;
        return sth_verify(s, pk);
}

/* A receipt or record answer: the head is the pinned key's, the line is the record's entry
 * (seq, size, hash as the answer says), and the proof leads from the line to the head's root. */
int diode_record_check(const json_t *o, const char *pk_b64, char *why, size_t whylen)
{
        uint8_t pk[STH_PUBLIC_KEY_LEN], hash[32];
        merkle_hash leaf, *proof = NULL; /* up to MERKLE_MAX_PROOF: 2 KiB, on the heap */
        const char *line = json_string_value(json_object_get(o, "line"));
        const char *own = json_string_value(json_object_get(o, "public_key"));
        json_t *a = json_object_get(o, "proof"), *e = NULL, *h;
        struct sth s;
        size_t n = 0, i;
        int r = -EBADMSG;

        if (!pk_b64 || !own || strcmp(own, pk_b64) != 0 ||
            sodium_base642bin(pk, sizeof(pk), pk_b64, strlen(pk_b64), NULL, &n, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0 ||
            n != sizeof(pk)) {
                snprintf(why, whylen, "the answer is not signed by the VM's pinned vault key");
                return -EBADMSG;
        }
        if (diode_check_sth(json_object_get(o, "sth"), pk, &s) < 0) {
                snprintf(why, whylen, "the tree head's signature does not verify");
                return -EBADMSG;
        }
        e = line ? json_loads(line, JSON_REJECT_DUPLICATES, NULL) : NULL;
        if (!json_is_array(a) || json_array_size(a) > MERKLE_MAX_PROOF || !json_is_object(e) ||
            !json_equal(json_object_get(e, "seq"), json_object_get(o, "seq")) ||
            !json_equal(json_object_get(e, "size"), json_object_get(o, "size")) ||
            !json_equal(json_object_get(e, "blake2b_256"), json_object_get(o, "blake2b_256")) ||
            diode_hex32(json_string_value(json_object_get(o, "blake2b_256")), hash) < 0) {
                snprintf(why, whylen, "the ledger line does not match the answer");
                goto cleanup;
        }
        proof = calloc(json_array_size(a) + 1, sizeof(*proof)); /* + 1: never calloc(0) */
        if (!proof) {
                snprintf(why, whylen, "out of memory for the inclusion proof");
                r = -ENOMEM;
                goto cleanup;
        }
        json_array_foreach(a, i, h) if (diode_hex32(json_string_value(h), proof[i]) < 0)
        {
                snprintf(why, whylen, "a proof hash is not 64 hex digits");
                goto cleanup;
        }
        merkle_leaf_hash((const uint8_t *)line, strlen(line), leaf);
        if (merkle_verify_inclusion((uint64_t)json_integer_value(json_object_get(o, "leaf_index")),
                                    s.size, leaf, (const merkle_hash *)proof, json_array_size(a),
                                    s.root) != 0) {
                snprintf(why, whylen, "the inclusion proof does not lead to the signed root");
                goto cleanup;
        }
        r = 0;
cleanup:
        free(proof);
        json_decref(e);
        return r;
}

char *diode_record_header(const char *line, size_t len)
{
        size_t k = 15;
        char *v;

        if (len <= 15 || strncasecmp(line, "Totebox-Record:", 15) != 0)
                return NULL;
        while (k < len && line[k] == ' ')
                k++;
        v = strndup(line + k, len - k);
        if (v)
                v[strcspn(v, "\r\n")] = '\0';
        return v;
}

int diode_record_check_content(const json_t *o, uint64_t size, const uint8_t hash[32], char *why,
                               size_t whylen)
{
        uint8_t want[32];
        char got[65];

        if (diode_hex32(json_string_value(json_object_get(o, "blake2b_256")), want) < 0) {
                snprintf(why, whylen, "the answer names no BLAKE2b-256");
                return -EBADMSG;
        }
        if ((uint64_t)json_integer_value(json_object_get(o, "size")) != size) {
                snprintf(why, whylen, "%" PRIu64 " bytes came back, the ledger entry says %" PRIu64,
                         size, (uint64_t)json_integer_value(json_object_get(o, "size")));
                return -EBADMSG;
        }
        if (sodium_memcmp(want, hash, 32) != 0) {
                sodium_bin2hex(got, sizeof(got), hash, 32);
                snprintf(why, whylen,
                         "the bytes' BLAKE2b-256 is %s, the ledger entry says %s: the record "
                         "was changed",
                         got, json_string_value(json_object_get(o, "blake2b_256")));
                return -EBADMSG;
        }
        return 0;
}
