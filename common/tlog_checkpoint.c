/* C2SP tlog-checkpoint and signed-note encoding, parsing, signing and verification (see the
 * header). The parser follows Go's sumdb/note Open: the text ends at the last "\n\n", each
 * signature line is "— name base64", unknown keys are skipped, the first line of the wanted key
 * decides. Every base64 field must be in canonical form so that one note has one spelling. */
#include "common/tlog_checkpoint.h"

#include <errno.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sha256.h"

#define TLOG_ALG_ED25519 0x01
#define TLOG_ALG_COSIG   0x04 /* tlog-cosignature cosignature/v1, Ed25519 */
#define TLOG_COSIG_HEAD  "cosignature/v1\ntime "
#define TLOG_SIG_PREFIX  "\xe2\x80\x94 " /* U+2014 EM DASH, space */

int tlog_name_valid(const char *name)
{
        size_t n = strnlen(name, TLOG_NAME_MAX + 1);

        if (n == 0 || n > TLOG_NAME_MAX)
                return 0;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char)name[i] <= 0x20 || (unsigned char)name[i] >= 0x7f ||
                    name[i] == '+')
                        return 0;
        return 1;
}

static void tlog_key_id_alg(const char *name, uint8_t alg, const uint8_t pk[TLOG_PUBLIC_KEY_LEN],
                            uint8_t ret[TLOG_KEY_ID_LEN])
{
        struct sha256 st;
        uint8_t h[SHA256_LEN];
        const uint8_t sep[2] = {'\n', alg};

        sha256_init(&st);
        sha256_update(&st, (const uint8_t *)name, strlen(name));
        sha256_update(&st, sep, sizeof(sep));
        sha256_update(&st, pk, TLOG_PUBLIC_KEY_LEN);
        sha256_final(&st, h);
        memcpy(ret, h, TLOG_KEY_ID_LEN);
}

void tlog_key_id(const char *name, const uint8_t pk[TLOG_PUBLIC_KEY_LEN],
                 uint8_t ret[TLOG_KEY_ID_LEN])
{
        tlog_key_id_alg(name, TLOG_ALG_ED25519, pk, ret);
}

void tlog_cosig_key_id(const char *name, const uint8_t pk[TLOG_PUBLIC_KEY_LEN],
                       uint8_t ret[TLOG_KEY_ID_LEN])
{
        tlog_key_id_alg(name, TLOG_ALG_COSIG, pk, ret);
}

static int tlog_key_init_alg(const char *name, uint8_t alg, const uint8_t pk[TLOG_PUBLIC_KEY_LEN],
                             struct tlog_key *ret)
{
        size_t n = strnlen(name, TLOG_NAME_MAX + 1);

        if (!tlog_name_valid(name))
                return -EINVAL;
        memmove(ret->name, name, n); /* name may be ret->name */
        ret->name[n] = '\0';
        memmove(ret->pk, pk, TLOG_PUBLIC_KEY_LEN);
        tlog_key_id_alg(ret->name, alg, ret->pk, ret->id);
        return 0;
}

int tlog_key_init(const char *name, const uint8_t pk[TLOG_PUBLIC_KEY_LEN], struct tlog_key *ret)
{
        return tlog_key_init_alg(name, TLOG_ALG_ED25519, pk, ret);
}

int tlog_cosig_key_init(const char *name, const uint8_t pk[TLOG_PUBLIC_KEY_LEN],
                        struct tlog_key *ret)
{
        return tlog_key_init_alg(name, TLOG_ALG_COSIG, pk, ret);
}

/* Decodes standard base64 of exactly want bytes, refusing any non-canonical spelling. */
static int tlog_b64_decode(const char *text, size_t len, uint8_t *out, size_t want)
{
        char again[128];
        size_t got = 0;

        if (want > TLOG_COSIG_BLOB_LEN ||
            len != sodium_base64_ENCODED_LEN(want, sodium_base64_VARIANT_ORIGINAL) - 1)
                return -EBADMSG;
        if (sodium_base642bin(out, want, text, len, NULL, &got, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0 ||
            got != want)
                return -EBADMSG;
        sodium_bin2base64(again, sizeof(again), out, want, sodium_base64_VARIANT_ORIGINAL);
        return memcmp(again, text, len) == 0 ? 0 : -EBADMSG;
}

/* "<name>+<hex id>+<base64(0x01 || 32 bytes)>" after an optional prefix. */
static int tlog_keytext_format(const char *prefix, uint8_t alg, const char *name,
                               const uint8_t id[4], const uint8_t key[32], char *buf, size_t size)
{
        uint8_t raw[33];
        char b64[64], hex[9];
        int n;

        raw[0] = alg;
        memcpy(raw + 1, key, 32);
        sodium_bin2base64(b64, sizeof(b64), raw, sizeof(raw), sodium_base64_VARIANT_ORIGINAL);
        sodium_bin2hex(hex, sizeof(hex), id, TLOG_KEY_ID_LEN);
        sodium_memzero(raw, sizeof(raw));
        n = snprintf(buf, size, "%s%s+%s+%s", prefix, name, hex, b64);
        sodium_memzero(b64, sizeof(b64));
        return n < 0 || (size_t)n >= size ? -ENOSPC : 0;
}

static int tlog_keytext_parse(const char *text, uint8_t alg, char name[TLOG_NAME_MAX + 1],
                              uint8_t id[4], uint8_t key[32])
{
        const char *p1 = strchr(text, '+'), *p2;
        uint8_t raw[33];
        size_t bin_len = 0;
        int r;

        if (!p1 || (size_t)(p1 - text) > TLOG_NAME_MAX)
                return -EBADMSG;
        p2 = p1 + 1 + 2 * TLOG_KEY_ID_LEN;
        if (strnlen(p1 + 1, 2 * TLOG_KEY_ID_LEN + 1) < 2 * TLOG_KEY_ID_LEN + 1 || *p2 != '+')
                return -EBADMSG;
        memcpy(name, text, (size_t)(p1 - text));
        name[p1 - text] = '\0';
        for (const char *h = p1 + 1; h < p2; h++)
                if (!((*h >= '0' && *h <= '9') || (*h >= 'a' && *h <= 'f')))
                        return -EBADMSG;
        if (!tlog_name_valid(name) ||
            sodium_hex2bin(id, TLOG_KEY_ID_LEN, p1 + 1, 2 * TLOG_KEY_ID_LEN, NULL, &bin_len,
                           NULL) != 0 ||
            bin_len != TLOG_KEY_ID_LEN)
                return -EBADMSG;
        r = tlog_b64_decode(p2 + 1, strlen(p2 + 1), raw, sizeof(raw));
        if (r == 0 && raw[0] != alg)
                r = -EBADMSG;
        if (r == 0)
                memcpy(key, raw + 1, 32);
        sodium_memzero(raw, sizeof(raw));
        return r;
}

int tlog_vkey_format(const struct tlog_key *k, char *buf, size_t size)
{
        return tlog_keytext_format("", TLOG_ALG_ED25519, k->name, k->id, k->pk, buf, size);
}

static int tlog_vkey_parse_alg(const char *text, uint8_t alg, struct tlog_key *ret)
{
        struct tlog_key k;
        uint8_t want[TLOG_KEY_ID_LEN];

        if (tlog_keytext_parse(text, alg, k.name, k.id, k.pk) < 0)
                return -EBADMSG;
        tlog_key_id_alg(k.name, alg, k.pk, want);
        if (memcmp(want, k.id, TLOG_KEY_ID_LEN) != 0)
                return -EBADMSG;
        *ret = k;
        return 0;
}

int tlog_vkey_parse(const char *text, struct tlog_key *ret)
{
        return tlog_vkey_parse_alg(text, TLOG_ALG_ED25519, ret);
}

int tlog_cosig_vkey_format(const struct tlog_key *k, char *buf, size_t size)
{
        return tlog_keytext_format("", TLOG_ALG_COSIG, k->name, k->id, k->pk, buf, size);
}

int tlog_cosig_vkey_parse(const char *text, struct tlog_key *ret)
{
        return tlog_vkey_parse_alg(text, TLOG_ALG_COSIG, ret);
}

int tlog_skey_format(const char *name, const uint8_t sk[TLOG_SECRET_KEY_LEN], char *buf,
                     size_t size)
{
        uint8_t id[TLOG_KEY_ID_LEN];

        if (!tlog_name_valid(name))
                return -EINVAL;
        tlog_key_id(name, sk + 32, id);
        return tlog_keytext_format("PRIVATE+KEY+", TLOG_ALG_ED25519, name, id, sk, buf, size);
}

int tlog_skey_parse(const char *text, struct tlog_key *ret_key, uint8_t ret_sk[TLOG_SECRET_KEY_LEN])
{
        static const char prefix[] = "PRIVATE+KEY+";
        uint8_t seed[32], pk[32], sk[TLOG_SECRET_KEY_LEN], id[TLOG_KEY_ID_LEN];
        struct tlog_key k;
        int r = -EBADMSG;

        if (strncmp(text, prefix, sizeof(prefix) - 1) != 0)
                return -EBADMSG;
        if (tlog_keytext_parse(text + sizeof(prefix) - 1, TLOG_ALG_ED25519, k.name, id, seed) < 0)
                goto cleanup;
        crypto_sign_seed_keypair(pk, sk, seed);
        if (tlog_key_init(k.name, pk, &k) < 0 || memcmp(id, k.id, TLOG_KEY_ID_LEN) != 0)
                goto cleanup;
        *ret_key = k;
        memcpy(ret_sk, sk, sizeof(sk));
        r = 0;
cleanup:
        sodium_memzero(seed, sizeof(seed));
        sodium_memzero(sk, sizeof(sk));
        return r;
}

int tlog_checkpoint_text(const struct tlog_checkpoint *c, char *buf, size_t size)
{
        char b64[sodium_base64_ENCODED_LEN(MERKLE_HASH_LEN, sodium_base64_VARIANT_ORIGINAL)];
        int n;

        if (!tlog_name_valid(c->origin) || c->size > INT64_MAX)
                return -EINVAL;
        sodium_bin2base64(b64, sizeof(b64), c->root, MERKLE_HASH_LEN,
                          sodium_base64_VARIANT_ORIGINAL);
        n = snprintf(buf, size, "%s\n%llu\n%s\n", c->origin, (unsigned long long)c->size, b64);
        return n < 0 || (size_t)n >= size ? -ENOSPC : n;
}

/* The next line of [*p, end) without its '\n'; false when no '\n' ends it. */
static bool tlog_next_line(const char **p, const char *end, const char **ret_line, size_t *ret_len)
{
        const char *nl = memchr(*p, '\n', (size_t)(end - *p));

        if (!nl)
                return false;
        *ret_line = *p;
        *ret_len = (size_t)(nl - *p);
        *p = nl + 1;
        return true;
}

static int tlog_parse_size(const char *s, size_t len, uint64_t *ret)
{
        uint64_t v = 0;

        if (len == 0 || len > 19 || (len > 1 && s[0] == '0'))
                return -EBADMSG;
        for (size_t i = 0; i < len; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EBADMSG;
                v = v * 10 + (uint64_t)(s[i] - '0');
        }
        if (v > INT64_MAX)
                return -EBADMSG;
        *ret = v;
        return 0;
}

int tlog_checkpoint_parse_text(const char *text, size_t len, struct tlog_checkpoint *ret)
{
        const char *p = text, *end = text + len, *line;
        struct tlog_checkpoint c;
        size_t n;

        memset(&c, 0, sizeof(c));
        if (!tlog_next_line(&p, end, &line, &n) || n == 0 || n > TLOG_NAME_MAX)
                return -EBADMSG;
        memcpy(c.origin, line, n);
        c.origin[n] = '\0';
        if (!tlog_name_valid(c.origin) || !tlog_next_line(&p, end, &line, &n) ||
            tlog_parse_size(line, n, &c.size) < 0 || !tlog_next_line(&p, end, &line, &n) ||
            tlog_b64_decode(line, n, c.root, MERKLE_HASH_LEN) < 0)
                return -EBADMSG;
        while (p < end) /* extension lines: non-empty, each ended by '\n' */
                if (!tlog_next_line(&p, end, &line, &n) || n == 0)
                        return -EBADMSG;
        *ret = c;
        return 0;
}

int tlog_note_sign(const char *text, size_t len, const struct tlog_key *key,
                   const uint8_t sk[TLOG_SECRET_KEY_LEN], char *buf, size_t size)
{
        uint8_t blob[TLOG_KEY_ID_LEN + crypto_sign_BYTES];
        char b64[sodium_base64_ENCODED_LEN(sizeof(blob), sodium_base64_VARIANT_ORIGINAL)];
        int m;

        if (len == 0 || text[len - 1] != '\n' || len >= size)
                return -EINVAL;
        memmove(buf, text, len);
        memcpy(blob, key->id, TLOG_KEY_ID_LEN);
        crypto_sign_detached(blob + TLOG_KEY_ID_LEN, NULL, (const uint8_t *)buf, len, sk);
        sodium_bin2base64(b64, sizeof(b64), blob, sizeof(blob), sodium_base64_VARIANT_ORIGINAL);
        m = snprintf(buf + len, size - len, "\n" TLOG_SIG_PREFIX "%s %s\n", key->name, b64);
        if (m < 0 || (size_t)m >= size - len)
                return -ENOSPC;
        return (int)len + m;
}

int tlog_checkpoint_sign(const struct tlog_checkpoint *c, const struct tlog_key *key,
                         const uint8_t sk[TLOG_SECRET_KEY_LEN], char *buf, size_t size)
{
        int n = tlog_checkpoint_text(c, buf, size);

        return n < 0 ? n : tlog_note_sign(buf, (size_t)n, key, sk, buf, size);
}

/* Bytes below 0x20 but '\n', DEL, and malformed UTF-8 are refused. */
static bool tlog_text_clean(const uint8_t *s, size_t len)
{
        for (size_t i = 0; i < len;) {
                uint8_t c = s[i];
                size_t more = c < 0x80             ? 0
                              : (c & 0xe0) == 0xc0 ? 1
                              : (c & 0xf0) == 0xe0 ? 2
                              : (c & 0xf8) == 0xf0 ? 3
                                                   : 4;

                if ((c < 0x20 && c != '\n') || c == 0x7f || more == 4 || c == 0xc0 || c == 0xc1)
                        return false;
                for (size_t k = 1; k <= more; k++)
                        if (i + k >= len || (s[i + k] & 0xc0) != 0x80)
                                return false;
                i += more + 1;
        }
        return true;
}

struct tlog_sig {
        char name[TLOG_NAME_MAX + 1];
        uint8_t blob[TLOG_COSIG_BLOB_LEN];
        size_t blob_len;
};

/* One signature line "— name base64" (without '\n'). Any blob of 5..76 bytes is well formed
 * (other algorithms have other lengths); only Ed25519's (68) and cosignature/v1's (76) are ever
 * verified. */
static int tlog_sig_parse(const char *line, size_t n, struct tlog_sig *ret)
{
        const size_t plen = sizeof(TLOG_SIG_PREFIX) - 1;
        const char *sp, *b64;
        size_t name_len, b64_len;

        if (n < plen || memcmp(line, TLOG_SIG_PREFIX, plen) != 0)
                return -EBADMSG;
        sp = memchr(line + plen, ' ', n - plen);
        if (!sp)
                return -EBADMSG;
        name_len = (size_t)(sp - line - (ptrdiff_t)plen);
        b64 = sp + 1;
        b64_len = n - (size_t)(b64 - line);
        if (name_len == 0 || name_len > TLOG_NAME_MAX || b64_len == 0 ||
            b64_len > sodium_base64_ENCODED_LEN(sizeof(ret->blob), sodium_base64_VARIANT_ORIGINAL))
                return -EBADMSG;
        memcpy(ret->name, line + plen, name_len);
        ret->name[name_len] = '\0';
        if (!tlog_name_valid(ret->name) ||
            sodium_base642bin(ret->blob, sizeof(ret->blob), b64, b64_len, NULL, &ret->blob_len,
                              NULL, sodium_base64_VARIANT_ORIGINAL) != 0 ||
            ret->blob_len < TLOG_KEY_ID_LEN + 1)
                return -EBADMSG;
        return 0;
}

static void tlog_put_u64be(uint8_t *p, uint64_t v)
{
        for (int i = 7; i >= 0; i--, v >>= 8)
                p[i] = (uint8_t)(v & 0xff);
}

static uint64_t tlog_get_u64be(const uint8_t *p)
{
        uint64_t v = 0;

        for (int i = 0; i < 8; i++)
                v = v << 8 | p[i];
        return v;
}

/* The cosignature/v1 signed message, "cosignature/v1\ntime <t>\n" || text (malloc'd). */
static uint8_t *tlog_cosig_message(uint64_t t, const char *text, size_t len, size_t *ret_len)
{
        char head[48];
        int hl = snprintf(head, sizeof(head), TLOG_COSIG_HEAD "%llu\n", (unsigned long long)t);
        uint8_t *msg = malloc((size_t)hl + len);

        if (!msg)
                return NULL;
        memcpy(msg, head, (size_t)hl);
        memcpy(msg + hl, text, len);
        *ret_len = (size_t)hl + len;
        return msg;
}

static int tlog_cosig_check(const struct tlog_sig *sig, const char *text, size_t len,
                            const struct tlog_key *key, uint64_t *ret_time)
{
        size_t mlen = 0;
        uint8_t *msg;
        uint64_t t;
        int r;

        if (sig->blob_len != TLOG_COSIG_BLOB_LEN)
                return -EKEYREJECTED;
        t = tlog_get_u64be(sig->blob + TLOG_KEY_ID_LEN);
        if (t > INT64_MAX)
                return -EKEYREJECTED;
        msg = tlog_cosig_message(t, text, len, &mlen);
        if (!msg)
                return -ENOMEM;
        r = crypto_sign_verify_detached(sig->blob + TLOG_KEY_ID_LEN + 8, msg, mlen, key->pk);
        free(msg);
        if (r != 0)
                return -EKEYREJECTED;
        *ret_time = t;
        return 0;
}

static int tlog_sig_check(const struct tlog_sig *sig, const char *text, size_t len,
                          const struct tlog_key *key, bool cosig, uint64_t *ret_time)
{
        if (cosig)
                return tlog_cosig_check(sig, text, len, key, ret_time);
        return sig->blob_len == TLOG_KEY_ID_LEN + crypto_sign_BYTES &&
                       crypto_sign_verify_detached(sig->blob + TLOG_KEY_ID_LEN,
                                                   (const uint8_t *)text, len, key->pk) == 0
                   ? 0
                   : -EKEYREJECTED;
}

/* Splits a note and checks every signature line; the first line of key (when not NULL)
 * decides. */
static int tlog_note_scan(const char *note, size_t len, const struct tlog_key *key, bool cosig,
                          size_t *ret_text_len, uint64_t *ret_time)
{
        const char *split = NULL, *p, *end = note + len, *line;
        struct tlog_sig sig;
        unsigned count = 0;
        size_t n, text_len;
        int r = key ? -ENOKEY : 0;
        bool decided = false;

        if (len == 0 || len > TLOG_NOTE_MAX || !tlog_text_clean((const uint8_t *)note, len))
                return -EBADMSG;
        for (const char *q = note; q + 1 < end; q++)
                if (q[0] == '\n' && q[1] == '\n')
                        split = q;
        if (!split || end[-1] != '\n')
                return -EBADMSG;
        text_len = (size_t)(split - note) + 1;
        for (p = split + 2; p < end;) {
                if (!tlog_next_line(&p, end, &line, &n) || tlog_sig_parse(line, n, &sig) < 0 ||
                    ++count > TLOG_SIGNATURES_MAX)
                        return -EBADMSG;
                if (!key || decided || strcmp(sig.name, key->name) != 0 ||
                    memcmp(sig.blob, key->id, TLOG_KEY_ID_LEN) != 0)
                        continue;
                decided = true; /* the first line of the key decides */
                r = tlog_sig_check(&sig, note, text_len, key, cosig, ret_time);
        }
        if (count == 0)
                return -EBADMSG;
        *ret_text_len = text_len;
        return r;
}

int tlog_note_verify(const char *note, size_t len, const struct tlog_key *key, size_t *ret_text_len)
{
        uint64_t unused = 0;

        return tlog_note_scan(note, len, key, false, ret_text_len, &unused);
}

int tlog_note_cosig_verify(const char *note, size_t len, const struct tlog_key *key,
                           uint64_t *ret_time_s)
{
        size_t text_len = 0;
        uint64_t t = 0;
        int r = tlog_note_scan(note, len, key, true, &text_len, &t);

        if (r == 0)
                *ret_time_s = t;
        return r;
}

int tlog_note_cosign(char *buf, size_t len, size_t size, const struct tlog_key *key,
                     const uint8_t sk[TLOG_SECRET_KEY_LEN], uint64_t time_s)
{
        uint8_t blob[TLOG_COSIG_BLOB_LEN], *msg;
        char b64[sodium_base64_ENCODED_LEN(sizeof(blob), sodium_base64_VARIANT_ORIGINAL)];
        size_t text_len = 0, mlen = 0;
        int m;

        if (time_s > INT64_MAX)
                return -EINVAL;
        if (tlog_note_verify(buf, len, NULL, &text_len) < 0)
                return -EBADMSG;
        msg = tlog_cosig_message(time_s, buf, text_len, &mlen);
        if (!msg)
                return -ENOMEM;
        memcpy(blob, key->id, TLOG_KEY_ID_LEN);
        tlog_put_u64be(blob + TLOG_KEY_ID_LEN, time_s);
        crypto_sign_detached(blob + TLOG_KEY_ID_LEN + 8, NULL, msg, mlen, sk);
        free(msg);
        sodium_bin2base64(b64, sizeof(b64), blob, sizeof(blob), sodium_base64_VARIANT_ORIGINAL);
        if (len >= size)
                return -ENOSPC;
        m = snprintf(buf + len, size - len, TLOG_SIG_PREFIX "%s %s\n", key->name, b64);
        if (m < 0 || (size_t)m >= size - len || len + (size_t)m > TLOG_NOTE_MAX) {
                buf[len] = '\0';
                return -ENOSPC;
        }
        return (int)len + m;
}

int tlog_checkpoint_open(const char *note, size_t len, const struct tlog_key *key,
                         struct tlog_checkpoint *ret)
{
        size_t text_len = 0;
        int r = tlog_note_verify(note, len, key, &text_len);

        if (r < 0)
                return r;
        return tlog_checkpoint_parse_text(note, text_len, ret);
}

int tlog_checkpoint_open_unverified(const char *note, size_t len, struct tlog_checkpoint *ret)
{
        return tlog_checkpoint_open(note, len, NULL, ret);
}
