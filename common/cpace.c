/* CPace over ristretto255 and SHA-512, following draft-irtf-cfrg-cpace-21 exactly (the vectors in
 * ../shared/vectors/ are reproduced byte for byte by tests/unit/test_cpace.c). Hashing is
 * streamed so that no transcript buffer holds K; every secret is wiped before return. */
#include "common/cpace.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

#define CPACE_DSI        "CPaceRistretto255"
#define CPACE_DSI_ISK    "CPaceRistretto255_ISK"
#define CPACE_S_IN_BYTES 128

static size_t cpace_leb128(uint8_t out[10], size_t len)
{
        size_t n = 0;

        do {
                out[n] = (uint8_t)(len & 0x7f);
                len >>= 7;
                if (len)
                        out[n] |= 0x80;
                n++;
        } while (len);
        return n;
}

ssize_t cpace_prepend_len(uint8_t *out, size_t cap, const uint8_t *data, size_t len)
{
        uint8_t hdr[10];
        size_t n = cpace_leb128(hdr, len);

        if (cap < n || cap - n < len)
                return -ENOSPC;
        memcpy(out, hdr, n);
        if (len)
                memcpy(out + n, data, len);
        return (ssize_t)(n + len);
}

ssize_t cpace_lv_cat2(uint8_t *out, size_t cap, const uint8_t *a, size_t alen, const uint8_t *b,
                      size_t blen)
{
        ssize_t n1 = cpace_prepend_len(out, cap, a, alen), n2;

        if (n1 < 0)
                return n1;
        n2 = cpace_prepend_len(out + n1, cap - (size_t)n1, b, blen);
        return n2 < 0 ? n2 : n1 + n2;
}

bool cpace_lexiographically_larger(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
        size_t m = alen < blen ? alen : blen;

        for (size_t i = 0; i < m; i++) {
                if (a[i] != b[i])
                        return a[i] > b[i];
        }
        return alen > blen;
}

ssize_t cpace_o_cat(uint8_t *out, size_t cap, const uint8_t *a, size_t alen, const uint8_t *b,
                    size_t blen)
{
        if (cap < 2 || cap - 2 < alen || cap - 2 - alen < blen)
                return -ENOSPC;
        if (!cpace_lexiographically_larger(a, alen, b, blen)) {
                const uint8_t *t = a;
                size_t tl = alen;

                a = b;
                alen = blen;
                b = t;
                blen = tl;
        }
        memcpy(out, "oc", 2);
        if (alen)
                memcpy(out + 2, a, alen);
        if (blen)
                memcpy(out + 2 + alen, b, blen);
        return (ssize_t)(2 + alen + blen);
}

ssize_t cpace_transcript_ir(uint8_t *out, size_t cap, const uint8_t *ya, size_t ya_len,
                            const uint8_t *ada, size_t ada_len, const uint8_t *yb, size_t yb_len,
                            const uint8_t *adb, size_t adb_len)
{
        ssize_t n1 = cpace_lv_cat2(out, cap, ya, ya_len, ada, ada_len), n2;

        if (n1 < 0)
                return n1;
        n2 = cpace_lv_cat2(out + n1, cap - (size_t)n1, yb, yb_len, adb, adb_len);
        return n2 < 0 ? n2 : n1 + n2;
}

ssize_t cpace_transcript_oc(uint8_t *out, size_t cap, const uint8_t *ya, size_t ya_len,
                            const uint8_t *ada, size_t ada_len, const uint8_t *yb, size_t yb_len,
                            const uint8_t *adb, size_t adb_len)
{
        uint8_t a[2 * 10 + CPACE_POINT_LEN + CPACE_AD_MAX], b[sizeof(a)];
        ssize_t na, nb;

        if (ya_len > CPACE_POINT_LEN || yb_len > CPACE_POINT_LEN || ada_len > CPACE_AD_MAX ||
            adb_len > CPACE_AD_MAX)
                return -ENOSPC;
        na = cpace_lv_cat2(a, sizeof(a), ya, ya_len, ada, ada_len);
        nb = cpace_lv_cat2(b, sizeof(b), yb, yb_len, adb, adb_len);
        if (na < 0 || nb < 0)
                return -ENOSPC;
        return cpace_o_cat(out, cap, a, (size_t)na, b, (size_t)nb);
}

ssize_t cpace_generator_string(uint8_t *out, size_t cap, const uint8_t *prs, size_t prs_len,
                               const uint8_t *ci, size_t ci_len, const uint8_t *sid, size_t sid_len)
{
        static const uint8_t zpad[CPACE_S_IN_BYTES];
        const size_t dsi_len = sizeof(CPACE_DSI) - 1;
        uint8_t hdr[10];
        size_t used = cpace_leb128(hdr, prs_len) + prs_len + cpace_leb128(hdr, dsi_len) + dsi_len;
        size_t zlen = used + 1 < CPACE_S_IN_BYTES ? CPACE_S_IN_BYTES - 1 - used : 0;
        ssize_t n, total = 0;
        const uint8_t *parts[] = {(const uint8_t *)CPACE_DSI, prs, zpad, ci, sid};
        size_t lens[] = {dsi_len, prs_len, zlen, ci_len, sid_len};

        for (size_t i = 0; i < 5; i++) {
                n = cpace_prepend_len(out + total, cap - (size_t)total, parts[i], lens[i]);
                if (n < 0)
                        return n;
                total += n;
        }
        return total;
}

int cpace_calculate_generator(uint8_t g[CPACE_POINT_LEN], const uint8_t *prs, size_t prs_len,
                              const uint8_t *ci, size_t ci_len, const uint8_t *sid, size_t sid_len)
{
        uint8_t buf[CPACE_S_IN_BYTES + 2 * 10 + CPACE_CI_MAX + CPACE_SID_MAX + 128];
        uint8_t h[crypto_hash_sha512_BYTES];
        ssize_t n;

        if (prs_len > 128 || ci_len > CPACE_CI_MAX || sid_len > CPACE_SID_MAX)
                return -EINVAL;
        n = cpace_generator_string(buf, sizeof(buf), prs, prs_len, ci, ci_len, sid, sid_len);
        if (n < 0)
                return (int)n;
        crypto_hash_sha512(h, buf, (unsigned long long)n);
        crypto_core_ristretto255_from_hash(g, h);
        sodium_memzero(buf, sizeof(buf));
        sodium_memzero(h, sizeof(h));
        return 0;
}

void cpace_sample_scalar(uint8_t y[CPACE_SCALAR_LEN])
{
        do {
                randombytes_buf(y, CPACE_SCALAR_LEN);
                y[31] &= 0x0f;
        } while (sodium_is_zero(y, CPACE_SCALAR_LEN));
}

int cpace_scalar_mult_vfy(uint8_t out[CPACE_POINT_LEN], const uint8_t y[CPACE_SCALAR_LEN],
                          const uint8_t x[CPACE_POINT_LEN])
{
        /* libsodium returns -1 both for an undecodable point and for an identity result. */
        if (crypto_scalarmult_ristretto255(out, y, x) != 0 ||
            sodium_is_zero(out, CPACE_POINT_LEN)) {
                memset(out, 0, CPACE_POINT_LEN);
                return -EINVAL;
        }
        return 0;
}

static void cpace_hash_lv(crypto_hash_sha512_state *st, const uint8_t *d, size_t len)
{
        uint8_t hdr[10];

        crypto_hash_sha512_update(st, hdr, cpace_leb128(hdr, len));
        if (len)
                crypto_hash_sha512_update(st, d, len);
}

static int cpace_hash_transcript(crypto_hash_sha512_state *st, bool ordered, const uint8_t *ya,
                                 const uint8_t *ada, size_t ada_len, const uint8_t *yb,
                                 const uint8_t *adb, size_t adb_len)
{
        uint8_t t[2 * (2 * 10 + CPACE_POINT_LEN + CPACE_AD_MAX) + 2];
        ssize_t n;

        if (ordered)
                n = cpace_transcript_ir(t, sizeof(t), ya, CPACE_POINT_LEN, ada, ada_len, yb,
                                        CPACE_POINT_LEN, adb, adb_len);
        else
                n = cpace_transcript_oc(t, sizeof(t), ya, CPACE_POINT_LEN, ada, ada_len, yb,
                                        CPACE_POINT_LEN, adb, adb_len);
        if (n < 0)
                return (int)n;
        crypto_hash_sha512_update(st, t, (unsigned long long)n);
        return 0;
}

int cpace_isk(uint8_t isk[CPACE_ISK_LEN], bool ordered, const uint8_t *sid, size_t sid_len,
              const uint8_t k[CPACE_POINT_LEN], const uint8_t *ya, const uint8_t *ada,
              size_t ada_len, const uint8_t *yb, const uint8_t *adb, size_t adb_len)
{
        crypto_hash_sha512_state st;
        int ret;

        crypto_hash_sha512_init(&st);
        cpace_hash_lv(&st, (const uint8_t *)CPACE_DSI_ISK, sizeof(CPACE_DSI_ISK) - 1);
        cpace_hash_lv(&st, sid, sid_len);
        cpace_hash_lv(&st, k, CPACE_POINT_LEN);
        ret = cpace_hash_transcript(&st, ordered, ya, ada, ada_len, yb, adb, adb_len);
        if (ret == 0)
                crypto_hash_sha512_final(&st, isk);
        sodium_memzero(&st, sizeof(st));
        return ret;
}

int cpace_sid_output(uint8_t out[64], bool ordered, const uint8_t *ya, const uint8_t *ada,
                     size_t ada_len, const uint8_t *yb, const uint8_t *adb, size_t adb_len)
{
        crypto_hash_sha512_state st;
        int ret;

        crypto_hash_sha512_init(&st);
        crypto_hash_sha512_update(&st, (const uint8_t *)"CPaceSidOutput", 14);
        ret = cpace_hash_transcript(&st, ordered, ya, ada, ada_len, yb, adb, adb_len);
        if (ret == 0)
                crypto_hash_sha512_final(&st, out);
        return ret;
}

int cpace_start(struct cpace_ctx *c, enum cpace_role role, const uint8_t *prs, size_t prs_len,
                const uint8_t *ci, size_t ci_len, const uint8_t *sid, size_t sid_len,
                const uint8_t *ad, size_t ad_len, const uint8_t *scalar,
                uint8_t ret_point[CPACE_POINT_LEN])
{
        uint8_t g[CPACE_POINT_LEN];
        int ret;

        if (ad_len > CPACE_AD_MAX || sid_len > CPACE_SID_MAX)
                return -EINVAL;
        memset(c, 0, sizeof(*c));
        ret = cpace_calculate_generator(g, prs, prs_len, ci, ci_len, sid, sid_len);
        if (ret < 0)
                goto cleanup;
        if (scalar)
                memcpy(c->y, scalar, CPACE_SCALAR_LEN);
        else
                cpace_sample_scalar(c->y);
        ret = cpace_scalar_mult_vfy(c->own_point, c->y, g);
        if (ret < 0)
                goto cleanup;
        c->role = role;
        if (ad_len) /* ad may be NULL when empty; memcpy(dst, NULL, 0) is undefined */
                memcpy(c->own_ad, ad, ad_len);
        c->own_ad_len = ad_len;
        if (sid_len)
                memcpy(c->sid, sid, sid_len);
        c->sid_len = sid_len;
        c->started = true;
        memcpy(ret_point, c->own_point, CPACE_POINT_LEN);
cleanup:
        sodium_memzero(g, sizeof(g));
        if (ret < 0)
                cpace_wipe(c);
        return ret;
}

int cpace_finish(struct cpace_ctx *c, const uint8_t peer_point[CPACE_POINT_LEN],
                 const uint8_t *peer_ad, size_t peer_ad_len, uint8_t ret_isk[CPACE_ISK_LEN])
{
        uint8_t k[CPACE_POINT_LEN];
        bool ini = c->role == CPACE_INITIATOR;
        int ret;

        if (!c->started || peer_ad_len > CPACE_AD_MAX)
                return -EINVAL;
        /* A party never accepts its own share back (reflection). */
        if (sodium_memcmp(peer_point, c->own_point, CPACE_POINT_LEN) == 0)
                return -EINVAL;
        ret = cpace_scalar_mult_vfy(k, c->y, peer_point);
        if (ret < 0)
                goto cleanup;
        ret = cpace_isk(ret_isk, true, c->sid, c->sid_len, k, ini ? c->own_point : peer_point,
                        ini ? c->own_ad : peer_ad, ini ? c->own_ad_len : peer_ad_len,
                        ini ? peer_point : c->own_point, ini ? peer_ad : c->own_ad,
                        ini ? peer_ad_len : c->own_ad_len);
cleanup:
        sodium_memzero(k, sizeof(k));
        sodium_memzero(c->y, sizeof(c->y));
        c->started = false;
        return ret;
}

void cpace_confirmation_tag(uint8_t tag[CPACE_TAG_LEN], const uint8_t *sid, size_t sid_len,
                            const uint8_t isk[CPACE_ISK_LEN], const uint8_t y[CPACE_POINT_LEN],
                            const uint8_t *ad, size_t ad_len)
{
        uint8_t mac_key[crypto_hash_sha512_BYTES];
        uint8_t msg[2 * 10 + CPACE_POINT_LEN + CPACE_AD_MAX];
        crypto_hash_sha512_state st;
        crypto_auth_hmacsha512_state hs;
        ssize_t n;

        crypto_hash_sha512_init(&st);
        crypto_hash_sha512_update(&st, (const uint8_t *)"CPaceMac", 8);
        crypto_hash_sha512_update(&st, sid, sid_len);
        crypto_hash_sha512_update(&st, isk, CPACE_ISK_LEN);
        crypto_hash_sha512_final(&st, mac_key);
        n = cpace_lv_cat2(msg, sizeof(msg), y, CPACE_POINT_LEN, ad,
                          ad_len > CPACE_AD_MAX ? CPACE_AD_MAX : ad_len);
        crypto_auth_hmacsha512_init(&hs, mac_key, sizeof(mac_key));
        crypto_auth_hmacsha512_update(&hs, msg, n < 0 ? 0 : (size_t)n);
        crypto_auth_hmacsha512_final(&hs, tag);
        sodium_memzero(mac_key, sizeof(mac_key));
        sodium_memzero(&st, sizeof(st));
        sodium_memzero(&hs, sizeof(hs));
}

int cpace_tag_verify(const uint8_t a[CPACE_TAG_LEN], const uint8_t b[CPACE_TAG_LEN])
{
        return crypto_verify_64(a, b) == 0 ? 0 : -EBADMSG;
}

void cpace_wipe(struct cpace_ctx *c)
{
        if (c)
                sodium_memzero(c, sizeof(*c));
}
