/* Benchmark: the hash functions under verification, beside libsodium's, in one run, on the same
 * 64 MiB of random data in memory (no I/O):
 *   - BLAKE2b-256: agent/blake2b_lanes (8 messages at once) on each instruction set this CPU
 *     has, against libsodium's crypto_generichash (one message, its best code for this CPU);
 *   - SHA-256: common/sha256 on each implementation, against libsodium's crypto_hash_sha256,
 *     in bulk and as Merkle node hashes (65 bytes each, the tree's unit of work).
 * Prints MB/s (best of 3) and the ratio to libsodium. usage: bench_agent_hashing [MiB] */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/blake2b_lanes.h"
#include "common/sha256.h"

static double bench_now(void)
{
        struct timespec t;

        clock_gettime(CLOCK_MONOTONIC, &t);
        return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* B2L_LANES messages of len bytes each, every one a whole number of blocks plus one byte. */
static void bench_lanes_run(const uint8_t *data, size_t len)
{
        static const uint8_t tail[B2L_BLOCK];
        struct b2l_state s = {0};
        struct b2l_step step;
        size_t blocks = len / B2L_BLOCK;

        for (unsigned l = 0; l < B2L_LANES; l++)
                b2l_lane_init(&s, l);
        for (size_t b = 0; b <= blocks; b++) {
                for (unsigned l = 0; l < B2L_LANES; l++) {
                        step.last[l] = b == blocks;
                        step.block[l] = b == blocks ? tail : data + l * len + b * B2L_BLOCK;
                        step.len[l] = b == blocks ? 1 : B2L_BLOCK;
                }
                b2l_compress(&s, &step);
        }
}

typedef void bench_fn(const uint8_t *data, size_t total);

static void bench_lanes(const uint8_t *data, size_t total)
{
        bench_lanes_run(data, total / B2L_LANES);
}

static void bench_sodium_blake2b(const uint8_t *data, size_t total)
{
        uint8_t d[32];

        for (unsigned l = 0; l < B2L_LANES; l++)
                crypto_generichash(d, sizeof(d), data + l * (total / B2L_LANES), total / B2L_LANES,
                                   NULL, 0);
}

static void bench_sha256(const uint8_t *data, size_t total)
{
        uint8_t d[SHA256_LEN];

        sha256_digest(data, total, d);
}

static void bench_sodium_sha256(const uint8_t *data, size_t total)
{
        uint8_t d[crypto_hash_sha256_BYTES];

        crypto_hash_sha256(d, data, total);
}

static void bench_sha256_nodes(const uint8_t *data, size_t total)
{
        uint8_t d[SHA256_LEN];

        for (size_t off = 0; off + 65 <= total; off += 65)
                sha256_digest(data + off, 65, d);
}

static void bench_sodium_sha256_nodes(const uint8_t *data, size_t total)
{
        uint8_t d[crypto_hash_sha256_BYTES];

        for (size_t off = 0; off + 65 <= total; off += 65)
                crypto_hash_sha256(d, data + off, 65);
}

static double bench_best(bench_fn *fn, const uint8_t *data, size_t total)
{
        double best = 1e9;

        for (int i = 0; i < 3; i++) {
                double t = bench_now();

                fn(data, total);
                t = bench_now() - t;
                if (t < best)
                        best = t;
        }
        return (double)total / best / 1e6;
}

int main(int argc, char **argv)
{
        static const char *const lanes[] = {"avx512", "avx2", "generic"};
        static const char *const shas[] = {"sha-ni", "generic"};
        size_t total = (size_t)(argc > 1 ? atoi(argv[1]) : 64) << 20;
        uint8_t *data;
        double peer, own;

        if (sodium_init() < 0 || total == 0 || !(data = malloc(total)))
                return 1;
        randombytes_buf(data, total);
        printf("%zu MiB in memory, best of 3, MB/s\n", total >> 20);
        peer = bench_best(bench_sodium_blake2b, data, total);
        printf("BLAKE2b-256  libsodium, one message at a time:  %7.0f\n", peer);
        for (size_t i = 0; i < sizeof(lanes) / sizeof(lanes[0]); i++) {
                if (b2l_force(lanes[i]) < 0) {
                        printf("BLAKE2b-256  lanes, %-8s (not on this CPU)\n", lanes[i]);
                        continue;
                }
                own = bench_best(bench_lanes, data, total);
                printf("BLAKE2b-256  lanes, %-8s %d at once:       %7.0f  (%.2fx)\n", lanes[i],
                       B2L_LANES, own, own / peer);
        }
        peer = bench_best(bench_sodium_sha256, data, total);
        printf("SHA-256      libsodium, bulk:                   %7.0f\n", peer);
        for (size_t i = 0; i < sizeof(shas) / sizeof(shas[0]); i++)
                if (sha256_force(shas[i]) == 0) {
                        own = bench_best(bench_sha256, data, total);
                        printf("SHA-256      common/sha256 %-8s bulk:       %7.0f  (%.2fx)\n",
                               shas[i], own, own / peer);
                }
        peer = bench_best(bench_sodium_sha256_nodes, data, total / 16);
        printf("SHA-256      libsodium, 65-byte node hashes:    %7.0f\n", peer);
        for (size_t i = 0; i < sizeof(shas) / sizeof(shas[0]); i++)
                if (sha256_force(shas[i]) == 0) {
                        own = bench_best(bench_sha256_nodes, data, total / 16);
                        printf("SHA-256      common/sha256 %-8s nodes:      %7.0f  (%.2fx)\n",
                               shas[i], own, own / peer);
                }
        free(data);
        return 0;
}
