/* The pairing session: short codes, CPace (common/cpace.c) with the ceremony's PRS, CI, sid and
 * AD (each side's id, role, WireGuard public key and endpoint), the genesis' commitment to its
 * share (so that the side that speaks last chose its share before it saw the other's: the SAS
 * cannot be ground), explicit key confirmation, and the key schedule from the ISK:
 *   PRK       = HKDF-Extract(salt = sid, IKM = ISK)            (HKDF-SHA-512)
 *   k_i2r     = HKDF-Expand(PRK, "totebox-pair/2 key initiator->responder", 32)
 *   k_r2i     = HKDF-Expand(PRK, "totebox-pair/2 key responder->initiator", 32)
 *   SAS       = u32be(HKDF-Expand(PRK, "totebox-pair/2 sas", 4)) mod 10^6, shown "123 456"
 * Sealed messages are XChaCha20-Poly1305 with the nonce = seq (u64 little-endian, zero padded)
 * and AD = "totebox-pair/2" || u64be(seq): out-of-order, replayed or reflected boxes fail. */
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

/* lv_cat of n items into out; the length or -ENOSPC. */
static ssize_t pair_lv_cat(uint8_t *out, size_t cap, const uint8_t *const *items,
                           const size_t *lens, size_t n)
{
        size_t off = 0;

        for (size_t i = 0; i < n; i++) {
                ssize_t k = cpace_prepend_len(out + off, cap - off, items[i], lens[i]);

                if (k < 0)
                        return k;
                off += (size_t)k;
        }
        return (ssize_t)off;
}

ssize_t pair_ad_build(uint8_t out[CPACE_AD_MAX], bool initiator, const char *id,
                      const struct pair_binding *b)
{
        const char *cpace_role = initiator ? "initiator" : "responder";
        const char *role = roster_role_name(b->role);
        uint8_t key[WG_KEY_LEN];
        const uint8_t *items[] = {(const uint8_t *)PAIR_PROTO,
                                  (const uint8_t *)cpace_role,
                                  (const uint8_t *)id,
                                  (const uint8_t *)role,
                                  key,
                                  (const uint8_t *)b->endpoint};
        const size_t lens[] = {strlen(PAIR_PROTO), strlen(cpace_role), strlen(id),
                               strlen(role),       sizeof(key),        strlen(b->endpoint)};

        if (wg_key_from_base64(key, b->wg_public_key) < 0)
                return -EINVAL;
        return pair_lv_cat(out, CPACE_AD_MAX, items, lens, sizeof(lens) / sizeof(lens[0]));
}

void pair_commitment(uint8_t out[PAIR_COMMIT_LEN], const uint8_t *sid, size_t sid_len,
                     const uint8_t y[CPACE_POINT_LEN], const uint8_t *ad, size_t ad_len)
{
        static const char dsi[] = PAIR_PROTO " commit";
        uint8_t buf[2 * 10 + sizeof(dsi) + CPACE_SID_MAX + CPACE_POINT_LEN + CPACE_AD_MAX];
        const uint8_t *items[] = {(const uint8_t *)dsi, sid, y, ad};
        const size_t lens[] = {sizeof(dsi) - 1, sid_len, CPACE_POINT_LEN, ad_len};
        ssize_t n = pair_lv_cat(buf, sizeof(buf), items, lens, 4);

        crypto_hash_sha512(out, buf, n < 0 ? 0 : (size_t)n);
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
                       const uint8_t peer_nonce[PAIR_NONCE_LEN], const struct pair_binding *self,
                       const uint8_t *peer_commit)
{
        char prs[PAIR_CODE_CHARS + 1];
        uint8_t sid[2 * PAIR_NONCE_LEN], ci[CPACE_CI_MAX];
        ssize_t ci_len, ad_len;
        int ret;

        /* A party never runs against its own nonce (loopback/reflection); the joiner never
         * sends its share before the genesis committed to its own. */
        if (sodium_memcmp(peer_nonce, s->nonce_self, PAIR_NONCE_LEN) == 0 ||
            (s->initiator && !peer_commit))
                return -EINVAL;
        if (pair_code_normalize(code, prs) < 0)
                return -EINVAL;
        snprintf(s->peer_id, sizeof(s->peer_id), "%s", peer_id);
        memcpy(s->nonce_peer, peer_nonce, PAIR_NONCE_LEN);
        s->bind_self = *self;
        ad_len = pair_ad_build(s->ad_self, s->initiator, s->self_id, self);
        pair_sid(s, sid);
        ci_len = pair_ci(s, ci, sizeof(ci));
        if (ci_len < 0 || ad_len < 0) {
                ret = ci_len < 0 ? (int)ci_len : (int)ad_len;
                goto cleanup;
        }
        s->ad_self_len = (size_t)ad_len;
        ret = cpace_start(&s->cpace, s->initiator ? CPACE_INITIATOR : CPACE_RESPONDER,
                          (const uint8_t *)prs, strlen(prs), ci, (size_t)ci_len, sid, sizeof(sid),
                          s->ad_self, s->ad_self_len, NULL, s->point_self);
        if (ret == 0 && s->initiator)
                memcpy(s->commit, peer_commit, PAIR_COMMIT_LEN);
        else if (ret == 0)
                pair_commitment(s->commit, sid, sizeof(sid), s->point_self, s->ad_self,
                                s->ad_self_len);
cleanup:
        sodium_memzero(prs, sizeof(prs));
        return ret;
}

void pair_session_share(const struct pair_session *s, struct pair_msg *ret)
{
        memset(ret, 0, sizeof(*ret));
        ret->type = PAIR_MSG_SHARE;
        memcpy(ret->point, s->point_self, CPACE_POINT_LEN);
        ret->role = s->bind_self.role;
        snprintf(ret->wg_public_key, sizeof(ret->wg_public_key), "%s", s->bind_self.wg_public_key);
        snprintf(ret->endpoint, sizeof(ret->endpoint), "%s", s->bind_self.endpoint);
        if (!s->initiator) {
                ret->has_tag = true;
                pair_session_tag(s, true, ret->tag);
        }
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
        uint8_t ad[CPACE_AD_MAX], sid[2 * PAIR_NONCE_LEN], want[PAIR_COMMIT_LEN];
        ssize_t ad_len;
        int ret;

        s->bind_peer.role = share->role;
        snprintf(s->bind_peer.wg_public_key, sizeof(s->bind_peer.wg_public_key), "%s",
                 share->wg_public_key);
        snprintf(s->bind_peer.endpoint, sizeof(s->bind_peer.endpoint), "%s", share->endpoint);
        ad_len = pair_ad_build(ad, !s->initiator, s->peer_id, &s->bind_peer);
        if (ad_len < 0) {
                cpace_wipe(&s->cpace);
                return -EINVAL;
        }
        if (s->initiator) {
                /* The genesis chose its share before it saw ours: it must open what it sent. */
                pair_sid(s, sid);
                pair_commitment(want, sid, sizeof(sid), share->point, ad, (size_t)ad_len);
                if (sodium_memcmp(want, s->commit, PAIR_COMMIT_LEN) != 0) {
                        cpace_wipe(&s->cpace);
                        return -EBADE;
                }
        }
        memcpy(s->point_peer, share->point, CPACE_POINT_LEN);
        ret = cpace_finish(&s->cpace, share->point, ad, (size_t)ad_len, s->isk);
        cpace_wipe(&s->cpace);
        if (ret < 0)
                return ret;
        ret = pair_session_keys(s);
        s->keyed = ret == 0;
        return ret;
}

void pair_session_tag(const struct pair_session *s, bool own, uint8_t tag[CPACE_TAG_LEN])
{
        uint8_t sid[2 * PAIR_NONCE_LEN], peer_ad[CPACE_AD_MAX];
        ssize_t n = own ? 0 : pair_ad_build(peer_ad, !s->initiator, s->peer_id, &s->bind_peer);

        pair_sid(s, sid);
        cpace_confirmation_tag(tag, sid, sizeof(sid), s->isk, own ? s->point_self : s->point_peer,
                               own ? s->ad_self : peer_ad,
                               own ? s->ad_self_len : (size_t)(n < 0 ? 0 : n));
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
