/* HKDF (RFC 5869) built on libsodium's HMAC-SHA-256/512. Every intermediate block is wiped. */
#include "common/hkdf.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

/* One HMAC state big enough for both hashes, so the loop below is written once. */
struct hkdf_mac {
        enum hkdf_hash h;
        union {
                crypto_auth_hmacsha256_state s256;
                crypto_auth_hmacsha512_state s512;
        } u;
};

size_t hkdf_hash_len(enum hkdf_hash h)
{
        return h == HKDF_SHA256 ? 32 : 64;
}

static void hkdf_mac_init(struct hkdf_mac *m, enum hkdf_hash h, const uint8_t *key, size_t len)
{
        m->h = h;
        if (h == HKDF_SHA256)
                crypto_auth_hmacsha256_init(&m->u.s256, key, len);
        else
                crypto_auth_hmacsha512_init(&m->u.s512, key, len);
}

static void hkdf_mac_update(struct hkdf_mac *m, const uint8_t *d, size_t len)
{
        if (m->h == HKDF_SHA256)
                crypto_auth_hmacsha256_update(&m->u.s256, d, len);
        else
                crypto_auth_hmacsha512_update(&m->u.s512, d, len);
}

static void hkdf_mac_final(struct hkdf_mac *m, uint8_t *out)
{
        if (m->h == HKDF_SHA256)
                crypto_auth_hmacsha256_final(&m->u.s256, out);
        else
                crypto_auth_hmacsha512_final(&m->u.s512, out);
        sodium_memzero(m, sizeof(*m));
}

void hkdf_extract(enum hkdf_hash h, uint8_t *prk, const uint8_t *salt, size_t salt_len,
                  const uint8_t *ikm, size_t ikm_len)
{
        static const uint8_t zero_salt[HKDF_MAX_HASH_LEN];
        struct hkdf_mac m;

        if (!salt || salt_len == 0) {
                salt = zero_salt;
                salt_len = hkdf_hash_len(h);
        }
        hkdf_mac_init(&m, h, salt, salt_len);
        if (ikm_len)
                hkdf_mac_update(&m, ikm, ikm_len);
        hkdf_mac_final(&m, prk);
}

int hkdf_expand(enum hkdf_hash h, uint8_t *okm, size_t okm_len, const uint8_t *prk,
                const uint8_t *info, size_t info_len)
{
        size_t hl = hkdf_hash_len(h), done = 0;
        uint8_t t[HKDF_MAX_HASH_LEN];
        struct hkdf_mac m;
        uint8_t counter = 1;

        if (okm_len > 255 * hl)
                return -EINVAL;
        while (done < okm_len) {
                size_t n = okm_len - done < hl ? okm_len - done : hl;

                hkdf_mac_init(&m, h, prk, hl);
                if (counter > 1)
                        hkdf_mac_update(&m, t, hl);
                if (info_len)
                        hkdf_mac_update(&m, info, info_len);
                hkdf_mac_update(&m, &counter, 1);
                hkdf_mac_final(&m, t);
                memcpy(okm + done, t, n);
                done += n;
                counter++;
        }
        sodium_memzero(t, sizeof(t));
        return 0;
}

int hkdf_sha512(uint8_t *okm, size_t okm_len, const uint8_t *salt, size_t salt_len,
                const uint8_t *ikm, size_t ikm_len, const uint8_t *info, size_t info_len)
{
        uint8_t prk[HKDF_MAX_HASH_LEN];
        int ret;

        if (okm_len > 255 * 64)
                return -EINVAL;
        hkdf_extract(HKDF_SHA512, prk, salt, salt_len, ikm, ikm_len);
        ret = hkdf_expand(HKDF_SHA512, okm, okm_len, prk, info, info_len);
        sodium_memzero(prk, sizeof(prk));
        return ret;
}
