/* BLAKE2b-256 of B2L_LANES messages at once, one SIMD lane per message (see blake2b_lanes.h).
 *
 * The compression is written once, in blake2b_lanes_body.h, with GCC vector types, and compiled
 * three times: for AVX-512 (8 lanes per register: the whole state fits in the 32 zmm registers),
 * for AVX2 (4 lanes, twice) and for any CPU (2 lanes, four times). The CPU picks one at first
 * use. The algorithm is RFC 7693's: the same IV, parameter block, message schedule and G. */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "agent/blake2b_lanes.h"

static const uint64_t b2l_iv[8] = {
    0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL, 0xa54ff53a5f1d36f1ULL,
    0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL, 0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL,
};

/* RFC 7693 section 2.7; rounds 10 and 11 reuse rows 0 and 1 */
static const uint8_t b2l_sigma[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
};

static inline uint64_t b2l_load64(const uint8_t *p)
{
        uint64_t w;

        memcpy(&w, p, sizeof(w));
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        w = __builtin_bswap64(w);
#endif
        return w;
}

#define B2L_ROTR(x, n) (((x) >> (n)) | ((x) << (64 - (n))))
#define B2L_G(a, b, c, d, x, y)                                                                    \
        do {                                                                                       \
                a += b + (x);                                                                      \
                d = B2L_ROTR(d ^ a, 32);                                                           \
                c += d;                                                                            \
                b = B2L_ROTR(b ^ c, 24);                                                           \
                a += b + (y);                                                                      \
                d = B2L_ROTR(d ^ a, 16);                                                           \
                c += d;                                                                            \
                b = B2L_ROTR(b ^ c, 63);                                                           \
        } while (0)

typedef void b2l_compress_fn(struct b2l_state *s, const struct b2l_step *step);

#define B2L_W  2 /* SSE2, which every x86-64 has; other CPUs get what GCC makes of it */
#define B2L_FN b2l_compress_generic
#define B2L_TARGET
#include "agent/blake2b_lanes_body.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define B2L_W      4
#define B2L_FN     b2l_compress_avx2
#define B2L_TARGET __attribute__((target("avx2")))
#include "agent/blake2b_lanes_body.h"

#define B2L_W      8 /* AVX-512F also rotates a 64-bit lane in one instruction (vprorq) */
#define B2L_FN     b2l_compress_avx512
#define B2L_TARGET __attribute__((target("avx512f")))
#include "agent/blake2b_lanes_body.h"
#endif

static const struct {
        const char *name;
        b2l_compress_fn *fn;
} b2l_impls[] = {
#if defined(__x86_64__) && defined(__GNUC__)
    {"avx512", b2l_compress_avx512},
    {"avx2", b2l_compress_avx2},
#endif
    {"generic", b2l_compress_generic},
};

static pthread_once_t b2l_once = PTHREAD_ONCE_INIT;
static size_t b2l_chosen;

static bool b2l_cpu_has(const char *name)
{
#if defined(__x86_64__) && defined(__GNUC__)
        __builtin_cpu_init();
        if (strcmp(name, "avx512") == 0)
                return __builtin_cpu_supports("avx512f");
        if (strcmp(name, "avx2") == 0)
                return __builtin_cpu_supports("avx2");
#endif
        return strcmp(name, "generic") == 0;
}

static void b2l_choose(void)
{
        size_t i = 0;

        while (!b2l_cpu_has(b2l_impls[i].name))
                i++; /* "generic" is last and always there */
        b2l_chosen = i;
}

const char *b2l_impl_name(void)
{
        pthread_once(&b2l_once, b2l_choose);
        return b2l_impls[b2l_chosen].name;
}

int b2l_force(const char *name)
{
        pthread_once(&b2l_once, b2l_choose);
        for (size_t i = 0; i < sizeof(b2l_impls) / sizeof(b2l_impls[0]); i++)
                if (strcmp(b2l_impls[i].name, name) == 0) {
                        if (!b2l_cpu_has(name))
                                return -ENOTSUP;
                        b2l_chosen = i;
                        return 0;
                }
        return -ENOENT;
}

void b2l_lane_init(struct b2l_state *s, unsigned lane)
{
        for (unsigned i = 0; i < 8; i++)
                s->h[i][lane] = b2l_iv[i];
        /* parameter block: digest length 32, no key, fanout 1, depth 1 */
        s->h[0][lane] ^= 0x01010000ULL | B2L_DIGEST_LEN;
        s->t[lane] = 0;
}

void b2l_compress(struct b2l_state *s, const struct b2l_step *step)
{
        pthread_once(&b2l_once, b2l_choose);
        b2l_impls[b2l_chosen].fn(s, step);
}

void b2l_lane_digest(const struct b2l_state *s, unsigned lane, uint8_t ret[B2L_DIGEST_LEN])
{
        for (unsigned i = 0; i < B2L_DIGEST_LEN / 8; i++) {
                uint64_t w = s->h[i][lane];

                for (unsigned k = 0; k < 8; k++)
                        ret[8 * i + k] = (uint8_t)(w >> (8 * k));
        }
}
