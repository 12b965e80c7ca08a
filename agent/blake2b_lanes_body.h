/* The BLAKE2b compression over B2L_W lanes at a time, included by blake2b_lanes.c once per
 * instruction set (it is a template: B2L_W, B2L_FN and B2L_TARGET are defined by the includer).
 * B2L_W is as many 64-bit lanes as the widest register of that set holds, so the 16-word state
 * stays in registers; B2L_FN walks the B2L_LANES lanes B2L_W at a time. */
#ifndef B2L_W
#error "blake2b_lanes_body.h is included by blake2b_lanes.c only"
#endif

B2L_TARGET static void B2L_FN(struct b2l_state *s, const struct b2l_step *step)
{
        typedef uint64_t vec __attribute__((vector_size(8 * B2L_W)));
        /* A row of s->h as one vector. v[] is read and written through this type, not memcpy, and
         * in unrolled loops, so it stays in registers: taking its address or indexing it in a loop
         * would give it a stack copy (1 KiB with AVX-512). m[] lives on the stack in any case, as
         * b2l_sigma indexes it at run time. */
        typedef uint64_t hrow __attribute__((vector_size(8 * B2L_W), aligned(8)));

        for (unsigned base = 0; base < B2L_LANES; base += B2L_W) {
                vec m[16], v[16], t, f;

                for (unsigned l = 0; l < B2L_W; l++) {
                        const uint8_t *p = step->block[base + l];

                        /* a file of 2^64 bytes would carry into the counter's high word; none is */
                        s->t[base + l] += step->len[base + l];
                        t[l] = s->t[base + l];
                        f[l] = step->last[base + l] ? UINT64_MAX : 0;
                        for (unsigned w = 0; w < 16; w++)
                                m[w][l] = b2l_load64(p + 8 * w);
                }
#pragma GCC unroll 8
                for (unsigned i = 0; i < 8; i++) {
                        v[i] = *(const hrow *)&s->h[i][base];
                        v[i + 8] = (vec){0} + b2l_iv[i];
                }
                v[12] ^= t;
                v[14] ^= f;
                for (unsigned r = 0; r < 12; r++) {
                        const uint8_t *sg = b2l_sigma[r];

                        B2L_G(v[0], v[4], v[8], v[12], m[sg[0]], m[sg[1]]);
                        B2L_G(v[1], v[5], v[9], v[13], m[sg[2]], m[sg[3]]);
                        B2L_G(v[2], v[6], v[10], v[14], m[sg[4]], m[sg[5]]);
                        B2L_G(v[3], v[7], v[11], v[15], m[sg[6]], m[sg[7]]);
                        B2L_G(v[0], v[5], v[10], v[15], m[sg[8]], m[sg[9]]);
                        B2L_G(v[1], v[6], v[11], v[12], m[sg[10]], m[sg[11]]);
                        B2L_G(v[2], v[7], v[8], v[13], m[sg[12]], m[sg[13]]);
                        B2L_G(v[3], v[4], v[9], v[14], m[sg[14]], m[sg[15]]);
                }
#pragma GCC unroll 8
                for (unsigned i = 0; i < 8; i++)
                        *(hrow *)&s->h[i][base] ^= v[i] ^ v[i + 8];
        }
}

#undef B2L_W
#undef B2L_FN
#undef B2L_TARGET
