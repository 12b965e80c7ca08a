/* BLAKE2b-256 (RFC 7693, unkeyed, as `b2sum -l 256`) of several independent messages at once.
 *
 * One BLAKE2b compression is a long chain of dependent 64-bit additions, xors and rotations, so
 * a single message cannot keep a core's vector units busy. Full verification hashes thousands of
 * files, so the verifier gives each SIMD lane its own file: lane i of every vector belongs to
 * message i. The digests are exactly those of ordinary BLAKE2b-256; only the schedule differs.
 *
 * The caller streams blocks: for each step it passes one 128-byte block per lane (an idle lane
 * passes anything; its state is garbage until b2l_lane_init). A lane's last block is passed with
 * its byte count (0..128, zero-padded by the caller) and last = true, then b2l_lane_digest reads
 * the result. Non-final blocks are always full, as RFC 7693 requires. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define B2L_LANES      8
#define B2L_BLOCK      128
#define B2L_DIGEST_LEN 32

struct b2l_state {
        uint64_t h[8][B2L_LANES]; /* chaining value, word-major: h[word][lane] */
        uint64_t t[B2L_LANES];    /* bytes compressed so far, per lane */
};

/* One step for every lane: the block of each lane, how many of its bytes are message bytes
 * (128 unless last), and whether it is that lane's last block. */
struct b2l_step {
        const uint8_t *block[B2L_LANES];
        unsigned len[B2L_LANES];
        bool last[B2L_LANES];
};

/* The instruction set the compression runs with on this CPU ("avx512", "avx2" or "generic"),
 * chosen once; b2l_force() pins one for tests and benchmarks and fails (-ENOTSUP) when the CPU
 * lacks it. */
const char *b2l_impl_name(void);
int b2l_force(const char *name);

void b2l_lane_init(struct b2l_state *s, unsigned lane);
void b2l_compress(struct b2l_state *s, const struct b2l_step *step);
void b2l_lane_digest(const struct b2l_state *s, unsigned lane, uint8_t ret[B2L_DIGEST_LEN]);
