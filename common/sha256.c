/* SHA-256 (FIPS 180-4): the padding and block feeding, and two block functions: portable C, and
 * the x86 SHA extensions (SHA256RNDS2 does two rounds, SHA256MSG1/2 the message schedule; the
 * layout follows Intel's "Intel SHA Extensions" paper). The CPU picks one at first use. */
#include "common/sha256.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#define SHA256_HAVE_NI 1
#endif

static const uint32_t sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static const uint32_t sha256_iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                      0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

typedef void sha256_blocks_fn(uint32_t h[8], const uint8_t *p, size_t blocks);

static inline uint32_t sha256_rotr(uint32_t x, unsigned n)
{
        return (x >> n) | (x << (32 - n));
}

static inline uint32_t sha256_load_be(const uint8_t *p)
{
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void sha256_blocks_generic(uint32_t h[8], const uint8_t *p, size_t blocks)
{
        for (; blocks--; p += 64) {
                uint32_t w[64], v[8];

                for (unsigned t = 0; t < 16; t++)
                        w[t] = sha256_load_be(p + 4 * t);
                for (unsigned t = 16; t < 64; t++) {
                        uint32_t s0 = sha256_rotr(w[t - 15], 7) ^ sha256_rotr(w[t - 15], 18) ^
                                      (w[t - 15] >> 3);
                        uint32_t s1 = sha256_rotr(w[t - 2], 17) ^ sha256_rotr(w[t - 2], 19) ^
                                      (w[t - 2] >> 10);

                        w[t] = w[t - 16] + s0 + w[t - 7] + s1;
                }
                memcpy(v, h, sizeof(v));
                for (unsigned t = 0; t < 64; t++) {
                        uint32_t s1 =
                            sha256_rotr(v[4], 6) ^ sha256_rotr(v[4], 11) ^ sha256_rotr(v[4], 25);
                        uint32_t ch = (v[4] & v[5]) ^ (~v[4] & v[6]);
                        uint32_t t1 = v[7] + s1 + ch + sha256_k[t] + w[t];
                        uint32_t s0 =
                            sha256_rotr(v[0], 2) ^ sha256_rotr(v[0], 13) ^ sha256_rotr(v[0], 22);
                        uint32_t maj = (v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]);

                        v[7] = v[6], v[6] = v[5], v[5] = v[4], v[4] = v[3] + t1;
                        v[3] = v[2], v[2] = v[1], v[1] = v[0], v[0] = t1 + s0 + maj;
                }
                for (unsigned i = 0; i < 8; i++)
                        h[i] += v[i];
        }
}

#ifdef SHA256_HAVE_NI
/* The extensions keep the state as two registers, ABEF and CDGH; each 4-round group adds K to
 * its four message words and runs SHA256RNDS2 twice. Groups 4..15 derive their words from the
 * four before: W[t] = s1(W[t-2]) + W[t-7] + s0(W[t-15]) + W[t-16]. */
__attribute__((target("sha,sse4.1"))) static void sha256_blocks_ni(uint32_t h[8], const uint8_t *p,
                                                                   size_t blocks)
{
        const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
        __m128i abef, cdgh, tmp;

        tmp = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[0]), 0xB1);  /* CDAB */
        cdgh = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[4]), 0x1B); /* EFGH */
        abef = _mm_alignr_epi8(tmp, cdgh, 8);
        cdgh = _mm_blend_epi16(cdgh, tmp, 0xF0);
        for (; blocks--; p += 64) {
                __m128i save_abef = abef, save_cdgh = cdgh, m[4];

                for (unsigned g = 0; g < 16; g++) {
                        __m128i *w = &m[g % 4];

                        if (g < 4)
                                *w = _mm_shuffle_epi8(
                                    _mm_loadu_si128((const __m128i *)(p + 16 * g)), bswap);
                        else
                                *w = _mm_sha256msg2_epu32(
                                    _mm_add_epi32(
                                        _mm_sha256msg1_epu32(*w, m[(g + 1) % 4]),
                                        _mm_alignr_epi8(m[(g + 3) % 4], m[(g + 2) % 4], 4)),
                                    m[(g + 3) % 4]);
                        tmp = _mm_add_epi32(*w, _mm_loadu_si128((const __m128i *)&sha256_k[4 * g]));
                        cdgh = _mm_sha256rnds2_epu32(cdgh, abef, tmp);
                        abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(tmp, 0x0E));
                }
                abef = _mm_add_epi32(abef, save_abef);
                cdgh = _mm_add_epi32(cdgh, save_cdgh);
        }
        tmp = _mm_shuffle_epi32(abef, 0x1B);  /* FEBA */
        cdgh = _mm_shuffle_epi32(cdgh, 0xB1); /* DCHG */
        _mm_storeu_si128((__m128i *)&h[0], _mm_blend_epi16(tmp, cdgh, 0xF0));
        _mm_storeu_si128((__m128i *)&h[4], _mm_alignr_epi8(cdgh, tmp, 8));
}
#endif

static const struct {
        const char *name;
        sha256_blocks_fn *fn;
} sha256_impls[] = {
#ifdef SHA256_HAVE_NI
    {"sha-ni", sha256_blocks_ni},
#endif
    {"generic", sha256_blocks_generic},
};

static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;
static size_t sha256_chosen;

static bool sha256_cpu_has(const char *name)
{
#ifdef SHA256_HAVE_NI
        /* CPUID itself: clang 14's __builtin_cpu_supports() does not know "sha". */
        unsigned a, b, c, d;

        if (strcmp(name, "sha-ni") == 0)
                return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_SSE4_1) &&
                       __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & bit_SHA);
#endif
        return strcmp(name, "generic") == 0;
}

static void sha256_choose(void)
{
        size_t i = 0;

        while (!sha256_cpu_has(sha256_impls[i].name))
                i++; /* "generic" is last and always there */
        sha256_chosen = i;
}

const char *sha256_impl_name(void)
{
        pthread_once(&sha256_once, sha256_choose);
        return sha256_impls[sha256_chosen].name;
}

int sha256_force(const char *name)
{
        pthread_once(&sha256_once, sha256_choose);
        for (size_t i = 0; i < sizeof(sha256_impls) / sizeof(sha256_impls[0]); i++)
                if (strcmp(sha256_impls[i].name, name) == 0) {
                        if (!sha256_cpu_has(name))
                                return -ENOTSUP;
                        sha256_chosen = i;
                        return 0;
                }
        return -ENOENT;
}

static void sha256_blocks(uint32_t h[8], const uint8_t *p, size_t blocks)
{
        pthread_once(&sha256_once, sha256_choose);
        sha256_impls[sha256_chosen].fn(h, p, blocks);
}

void sha256_init(struct sha256 *s)
{
        memcpy(s->h, sha256_iv, sizeof(s->h));
        s->bytes = 0;
        s->fill = 0;
}

void sha256_update(struct sha256 *s, const void *data, size_t len)
{
        const uint8_t *p = data;

        if (len == 0)
                return;
        s->bytes += len;
        if (s->fill) {
                size_t take = 64 - s->fill < len ? 64 - s->fill : len;

                memcpy(s->buf + s->fill, p, take);
                s->fill += take;
                p += take;
                len -= take;
                if (s->fill < 64)
                        return;
                sha256_blocks(s->h, s->buf, 1);
                s->fill = 0;
        }
        if (len >= 64)
                sha256_blocks(s->h, p, len / 64);
        p += len - len % 64;
        len %= 64;
        memcpy(s->buf, p, len);
        s->fill = len;
}

void sha256_final(struct sha256 *s, uint8_t ret[SHA256_LEN])
{
        uint64_t bits = s->bytes * 8;

        /* 0x80, zeros up to 56 mod 64, then the length in bits, big-endian */
        s->buf[s->fill++] = 0x80;
        if (s->fill > 56) {
                memset(s->buf + s->fill, 0, 64 - s->fill);
                sha256_blocks(s->h, s->buf, 1);
                s->fill = 0;
        }
        memset(s->buf + s->fill, 0, 56 - s->fill);
        for (unsigned i = 0; i < 8; i++)
                s->buf[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
        sha256_blocks(s->h, s->buf, 1);
        for (unsigned i = 0; i < 8; i++) {
                ret[4 * i] = (uint8_t)(s->h[i] >> 24);
                ret[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
                ret[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
                ret[4 * i + 3] = (uint8_t)s->h[i];
        }
        memset(s, 0, sizeof(*s));
}

void sha256_digest(const void *data, size_t len, uint8_t ret[SHA256_LEN])
{
        struct sha256 s;

        sha256_init(&s);
        sha256_update(&s, data, len);
        sha256_final(&s, ret);
}
