/* The pairing session: short codes, CPace (common/cpace.c) with the ceremony's PRS, CI, sid and
 * AD, explicit key confirmation, and the key schedule from the ISK:
 *   PRK       = HKDF-Extract(salt = sid, IKM = ISK)            (HKDF-SHA-512)
 *   k_i2r     = HKDF-Expand(PRK, "totebox-pair/1 key initiator->responder", 32)
 *   k_r2i     = HKDF-Expand(PRK, "totebox-pair/1 key responder->initiator", 32)
 *   SAS       = u32be(HKDF-Expand(PRK, "totebox-pair/1 sas", 4)) mod 10^6, shown "123 456"
 * Sealed messages are XChaCha20-Poly1305 with the nonce = seq (u64 little-endian, zero padded)
 * and AD = "totebox-pair/1" || u64be(seq): out-of-order, replayed or reflected boxes fail. */
#include "provision/pairing.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/hkdf.h"

static const char pair_alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"; /* Crockford */

void pair_code_generate(char out[PAIR_CODE_SIZE])
{
        size_t j = 0;

        for (int i = 0; i < PAIR_CODE_CHARS; i++) {
                if (i == PAIR_CODE_CHARS / 2)
                        out[j++] = '-';
                out[j++] = pair_alphabet[randombytes_uniform(32)];
        }
        out[j] = '\0';
}

static int pair_code_symbol(char c)
{
        if (c >= 'a' && c <= 'z')
                c = (char)(c - 'a' + 'A');
        if (c == 'I' || c == 'L')
                c = '1';
        if (c == 'O')
                c = '0';
        for (int i = 0; i < 32; i++) {
                if (pair_alphabet[i] == c)
                        return i;
        }
        return -1;
}

int pair_code_normalize(const char *in, char out[PAIR_CODE_CHARS + 1])
{
        size_t n = 0;

        for (const char *p = in; *p; p++) {
                int v;

                if (*p == '-' || *p == ' ')
                        continue;
                v = pair_code_symbol(*p);
                if (v < 0 || n >= PAIR_CODE_CHARS)
                        return -EINVAL;
                out[n++] = pair_alphabet[v];
        }
        out[n] = '\0';
        return n == PAIR_CODE_CHARS ? 0 : -EINVAL;
}

void pair_session_init(struct pair_session *s, bool initiator, const char *self_id)
{
        memset(s, 0, sizeof(*s));
        s->initiator = initiator;
        snprintf(s->self_id, sizeof(s->self_id), "%s", self_id);
        randombytes_buf(s->nonce_self, sizeof(s->nonce_self));
}

void pair_session_wipe(struct pair_session *s)
{
        if (s)
                sodium_memzero(s, sizeof(*s));
}

const char *pair_ad_for(bool initiator)
{
        return initiator ? PAIR_PROTO ";initiator" : PAIR_PROTO ";responder";
}

/* sid = initiator nonce || responder nonce; CI = lv_cat("joiner:" id, "genesis:" id). */
static void pair_sid(const struct pair_session *s, uint8_t sid[2 * PAIR_NONCE_LEN])
{
        memcpy(sid, s->initiator ? s->nonce_self : s->nonce_peer, PAIR_NONCE_LEN);
        memcpy(sid + PAIR_NONCE_LEN, s->initiator ? s->nonce_peer : s->nonce_self, PAIR_NONCE_LEN);
}

static ssize_t pair_ci(const struct pair_session *s, uint8_t *ci, size_t cap)
{
        char a[NODE_ID_MAX + 16], b[NODE_ID_MAX + 16];
        int na = snprintf(a, sizeof(a), "joiner:%s", s->initiator ? s->self_id : s->peer_id);
        int nb = snprintf(b, sizeof(b), "genesis:%s", s->initiator ? s->peer_id : s->self_id);

        return cpace_lv_cat2(ci, cap, (const uint8_t *)a, (size_t)na, (const uint8_t *)b,
                             (size_t)nb);
}

int pair_session_start(struct pair_session *s, const char *code, const char *peer_id,
                       const uint8_t peer_nonce[PAIR_NONCE_LEN])
{
        char prs[PAIR_CODE_CHARS + 1];
        uint8_t sid[2 * PAIR_NONCE_LEN], ci[CPACE_CI_MAX];
        const char *ad = pair_ad_for(s->initiator);
        ssize_t ci_len;
        int ret;

        /* A party never runs against its own nonce (loopback/reflection). */
        if (sodium_memcmp(peer_nonce, s->nonce_self, PAIR_NONCE_LEN) == 0)
                return -EINVAL;
        if (pair_code_normalize(code, prs) < 0)
                return -EINVAL;
        snprintf(s->peer_id, sizeof(s->peer_id), "%s", peer_id);
        memcpy(s->nonce_peer, peer_nonce, PAIR_NONCE_LEN);
        pair_sid(s, sid);
        ci_len = pair_ci(s, ci, sizeof(ci));
        if (ci_len < 0) {
                ret = (int)ci_len;
                goto cleanup;
        }
        ret = cpace_start(&s->cpace, s->initiator ? CPACE_INITIATOR : CPACE_RESPONDER,
                          (const uint8_t *)prs, strlen(prs), ci, (size_t)ci_len, sid, sizeof(sid),
                          (const uint8_t *)ad, strlen(ad), NULL, s->point_self);
cleanup:
        sodium_memzero(prs, sizeof(prs));
        return ret;
}

static int pair_session_keys(struct pair_session *s)
{
        static const char i2r[] = PAIR_PROTO " key initiator->responder";
        static const char r2i[] = PAIR_PROTO " key responder->initiator";
        static const char sas_info[] = PAIR_PROTO " sas";
        uint8_t sid[2 * PAIR_NONCE_LEN], prk[64], sas[4];
        uint32_t v;
        int ret = 0;

        pair_sid(s, sid);
        hkdf_extract(HKDF_SHA512, prk, sid, sizeof(sid), s->isk, sizeof(s->isk));
        ret = ret
                  ?: hkdf_expand(HKDF_SHA512, s->initiator ? s->key_send : s->key_recv,
                                 PAIR_KEY_LEN, prk, (const uint8_t *)i2r, sizeof(i2r) - 1);
        ret = ret
                  ?: hkdf_expand(HKDF_SHA512, s->initiator ? s->key_recv : s->key_send,
                                 PAIR_KEY_LEN, prk, (const uint8_t *)r2i, sizeof(r2i) - 1);
        ret = ret
                  ?: hkdf_expand(HKDF_SHA512, sas, sizeof(sas), prk, (const uint8_t *)sas_info,
                                 sizeof(sas_info) - 1);
        v = ((uint32_t)sas[0] << 24 | (uint32_t)sas[1] << 16 | (uint32_t)sas[2] << 8 | sas[3]) %
            1000000u;
        snprintf(s->sas, sizeof(s->sas), "%03u %03u", v / 1000, v % 1000);
        sodium_memzero(prk, sizeof(prk));
        sodium_memzero(sas, sizeof(sas));
        return ret;
}

int pair_session_finish(struct pair_session *s, const struct pair_msg *share)
{
        const char *want = pair_ad_for(!s->initiator);
        int ret;

        if (share->ad_len != strlen(want) || memcmp(share->ad, want, share->ad_len) != 0) {
                cpace_wipe(&s->cpace);
                return -EPROTONOSUPPORT;
        }
        memcpy(s->point_peer, share->point, CPACE_POINT_LEN);
        ret = cpace_finish(&s->cpace, share->point, share->ad, share->ad_len, s->isk);
        cpace_wipe(&s->cpace);
        if (ret < 0)
                return ret;
        ret = pair_session_keys(s);
        s->keyed = ret == 0;
        return ret;
}

void pair_session_tag(const struct pair_session *s, bool own, uint8_t tag[CPACE_TAG_LEN])
{
        uint8_t sid[2 * PAIR_NONCE_LEN];
        bool ini = own ? s->initiator : !s->initiator;
        const char *ad = pair_ad_for(ini);

        pair_sid(s, sid);
        cpace_confirmation_tag(tag, sid, sizeof(sid), s->isk, own ? s->point_self : s->point_peer,
                               (const uint8_t *)ad, strlen(ad));
}

int pair_session_check_tag(const struct pair_session *s, const uint8_t tag[CPACE_TAG_LEN])
{
        uint8_t want[CPACE_TAG_LEN];
        int ret;

        if (!s->keyed)
                return -EBADMSG;
        pair_session_tag(s, false, want);
        ret = cpace_tag_verify(want, tag);
        sodium_memzero(want, sizeof(want));
        return ret;
}

static void pair_nonce_ad(uint64_t seq, uint8_t nonce[24], uint8_t ad[sizeof(PAIR_PROTO) + 7])
{
        memset(nonce, 0, 24);
        for (int i = 0; i < 8; i++)
                nonce[i] = (uint8_t)(seq >> (8 * i));
        memcpy(ad, PAIR_PROTO, sizeof(PAIR_PROTO) - 1);
        for (int i = 0; i < 8; i++)
                ad[sizeof(PAIR_PROTO) - 1 + i] = (uint8_t)(seq >> (56 - 8 * i));
}

int pair_session_seal(struct pair_session *s, const char *plain, struct pair_msg *ret_sealed)
{
        uint8_t nonce[24], ad[sizeof(PAIR_PROTO) + 7];
        size_t len = strlen(plain);
        unsigned long long clen = 0;
        uint8_t *box;

        if (!s->keyed)
                return -EINVAL;
        if (len > PAIR_FRAME_MAX / 2)
                return -EMSGSIZE;
        box = malloc(len + crypto_aead_xchacha20poly1305_ietf_ABYTES);
        if (!box)
                return -ENOMEM;
        pair_nonce_ad(s->seq_send, nonce, ad);
        crypto_aead_xchacha20poly1305_ietf_encrypt(box, &clen, (const uint8_t *)plain, len, ad,
                                                   sizeof(ad), NULL, nonce, s->key_send);
        memset(ret_sealed, 0, sizeof(*ret_sealed));
        ret_sealed->type = PAIR_MSG_SEALED;
        ret_sealed->seq = s->seq_send++;
        ret_sealed->box = box;
        ret_sealed->box_len = (size_t)clen;
        return 0;
}

int pair_session_open(struct pair_session *s, const struct pair_msg *sealed, char **ret_plain,
                      size_t *ret_len)
{
        uint8_t nonce[24], ad[sizeof(PAIR_PROTO) + 7];
        unsigned long long plen = 0;
        char *plain;

        if (!s->keyed || sealed->type != PAIR_MSG_SEALED || sealed->seq != s->seq_recv ||
            sealed->box_len < crypto_aead_xchacha20poly1305_ietf_ABYTES)
                return -EBADMSG;
        plain = malloc(sealed->box_len + 1);
        if (!plain)
                return -ENOMEM;
        pair_nonce_ad(sealed->seq, nonce, ad);
        if (crypto_aead_xchacha20poly1305_ietf_decrypt((uint8_t *)plain, &plen, NULL, sealed->box,
                                                       sealed->box_len, ad, sizeof(ad), nonce,
                                                       s->key_recv) != 0) {
                free(plain);
                return -EBADMSG;
        }
        plain[plen] = '\0';
        s->seq_recv++;
        *ret_plain = plain;
        *ret_len = (size_t)plen;
        return 0;
}

bool pair_sas_matches(const struct pair_session *s, const char *typed)
{
        char a[8] = {0}, b[8] = {0};
        size_t na = 0, nb = 0;
        bool ok;

        for (const char *p = typed; *p && na < 7; p++) {
                if (*p >= '0' && *p <= '9')
                        a[na++] = *p;
                else if (*p != ' ' && *p != '-' && *p != '\n' && *p != '\r')
                        return false;
        }
        for (const char *p = s->sas; *p && nb < 7; p++) {
                if (*p >= '0' && *p <= '9')
                        b[nb++] = *p;
        }
        ok = s->keyed && na == 6 && nb == 6 && sodium_memcmp(a, b, 6) == 0;
        sodium_memzero(a, sizeof(a));
        return ok;
}
