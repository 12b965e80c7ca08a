/* Fuzz target (differential): the input is cut into up to B2L_LANES messages, hashed together by
 * agent/blake2b_lanes on this CPU's instruction set, and each digest must equal libsodium's
 * BLAKE2b-256 of the same message. The first byte of each piece picks its length. */
#include <sodium.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/blake2b_lanes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const uint8_t idle[B2L_BLOCK];
        const uint8_t *msg[B2L_LANES];
        size_t len[B2L_LANES], off[B2L_LANES] = {0}, n = 0;
        uint8_t pad[B2L_LANES][B2L_BLOCK], got[B2L_DIGEST_LEN], want[B2L_DIGEST_LEN];
        bool done[B2L_LANES] = {false};
        struct b2l_state s = {0};

        while (n < B2L_LANES && size > 0) {
                size_t take = (size_t)data[0] * 3; /* 0..765: up to six blocks */

                data++, size--;
                if (take > size)
                        take = size;
                msg[n] = data, len[n] = take;
                b2l_lane_init(&s, (unsigned)n++);
                data += take, size -= take;
        }
        for (bool busy = n > 0; busy;) {
                struct b2l_step step;

                busy = false;
                for (size_t l = 0; l < B2L_LANES; l++) {
                        size_t left = l < n && !done[l] ? len[l] - off[l] : 0;

                        step.block[l] = idle, step.len[l] = 0, step.last[l] = false;
                        if (l >= n || done[l])
                                continue;
                        busy = true;
                        step.last[l] = left <= B2L_BLOCK;
                        step.len[l] = step.last[l] ? (unsigned)left : B2L_BLOCK;
                        memset(pad[l], 0, sizeof(pad[l]));
                        memcpy(pad[l], msg[l] + off[l], step.len[l]);
                        step.block[l] = pad[l];
                        off[l] += step.len[l];
                }
                if (!busy)
                        break;
                b2l_compress(&s, &step);
                for (size_t l = 0; l < n; l++) {
                        if (done[l] || !step.last[l])
                                continue;
                        done[l] = true;
                        b2l_lane_digest(&s, (unsigned)l, got);
                        crypto_generichash(want, sizeof(want), msg[l], len[l], NULL, 0);
                        if (memcmp(got, want, sizeof(got)) != 0)
                                abort();
                }
        }
        return 0;
}
