/* Unit tests for agent/blake2b_lanes: every instruction set this CPU has gives the digests of
 * coreutils `b2sum -l 256` (two fixed answers) and of libsodium's BLAKE2b-256, for messages of
 * every length around the block and buffer boundaries, with lanes that start, finish and stay
 * idle at different steps, as the verifier drives them. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "agent/blake2b_lanes.h"

static const char *const impls[] = {"avx512", "avx2", "generic"};

/* A driver like verify.c's, over messages in memory: lane l hashes msgs[l], msgs[l + 8] ...
 * in turn; a lane whose turn has no message stays idle. */
struct lanes_run {
        const uint8_t *const *msgs;
        const size_t *lens;
        size_t n;
        uint8_t (*out)[B2L_DIGEST_LEN];
};

static void lanes_hash(const struct lanes_run *run)
{
        static const uint8_t idle[B2L_BLOCK];
        uint8_t pad[B2L_LANES][B2L_BLOCK];
        size_t cur[B2L_LANES], off[B2L_LANES] = {0};
        struct b2l_state s = {0};
        bool busy = true;

        for (unsigned l = 0; l < B2L_LANES; l++) {
                cur[l] = l;
                if (l < run->n)
                        b2l_lane_init(&s, l);
        }
        while (busy) {
                struct b2l_step step;

                busy = false;
                for (unsigned l = 0; l < B2L_LANES; l++) {
                        size_t left;

                        if (cur[l] >= run->n) {
                                step.block[l] = idle;
                                step.len[l] = 0;
                                step.last[l] = false;
                                continue;
                        }
                        busy = true;
                        left = run->lens[cur[l]] - off[l];
                        step.last[l] = left <= B2L_BLOCK;
                        step.len[l] = step.last[l] ? (unsigned)left : B2L_BLOCK;
                        memset(pad[l], 0, sizeof(pad[l]));
                        memcpy(pad[l], run->msgs[cur[l]] + off[l], step.len[l]);
                        step.block[l] = pad[l];
                        off[l] += step.len[l];
                }
                if (!busy)
                        break;
                b2l_compress(&s, &step);
                for (unsigned l = 0; l < B2L_LANES; l++) {
                        if (cur[l] >= run->n || !step.last[l])
                                continue;
                        b2l_lane_digest(&s, l, run->out[cur[l]]);
                        cur[l] += B2L_LANES;
                        off[l] = 0;
                        if (cur[l] < run->n)
                                b2l_lane_init(&s, l);
                }
        }
}

static void check_against_libsodium(const uint8_t *const *msgs, const size_t *lens, size_t n)
{
        uint8_t(*out)[B2L_DIGEST_LEN] = calloc(n, B2L_DIGEST_LEN);
        struct lanes_run run = {msgs, lens, n, out};
        uint8_t want[B2L_DIGEST_LEN];

        assert_non_null(out);
        lanes_hash(&run);
        for (size_t i = 0; i < n; i++) {
                crypto_generichash(want, sizeof(want), msgs[i], lens[i], NULL, 0);
                if (memcmp(want, out[i], sizeof(want)) != 0)
                        fail_msg("message %zu of %zu bytes: digest differs from libsodium's (%s)",
                                 i, lens[i], b2l_impl_name());
        }
        free(out);
}

static int force_or_skip(const char *name)
{
        int r = b2l_force(name);

        if (r == -ENOTSUP)
                print_message("this CPU has no %s; skipped\n", name);
        else
                assert_int_equal(r, 0);
        return r;
}

static void test_known_answers(void **state)
{
        static const char *const want[] = {
            "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8", /* "" */
            "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319", /* "abc" */
        };
        const uint8_t *msgs[] = {(const uint8_t *)"", (const uint8_t *)"abc"};
        size_t lens[] = {0, 3};
        uint8_t out[2][B2L_DIGEST_LEN];
        struct lanes_run run = {msgs, lens, 2, out};
        char hex[2 * B2L_DIGEST_LEN + 1];

        (void)state;
        for (size_t i = 0; i < sizeof(impls) / sizeof(impls[0]); i++) {
                if (force_or_skip(impls[i]) < 0)
                        continue;
                memset(out, 0, sizeof(out));
                lanes_hash(&run);
                for (size_t k = 0; k < 2; k++)
                        assert_string_equal(
                            sodium_bin2hex(hex, sizeof(hex), out[k], sizeof(out[k])), want[k]);
        }
}

/* Every length from 0 to 3 blocks and some around 32 KiB, in one run, so lanes finish at
 * different steps and restart with the next message. */
static void test_lengths_and_lane_turns(void **state)
{
        enum { N = 3 * B2L_BLOCK + 1 + 6 };
        static const size_t big[] = {32767, 32768, 32769, 32768 + 128, 65536 + 1, 100000};
        uint8_t *data = malloc(200000);
        const uint8_t *msgs[N];
        size_t lens[N];

        (void)state;
        assert_non_null(data);
        randombytes_buf(data, 200000);
        for (size_t i = 0; i < N; i++) {
                lens[i] = i < N - 6 ? i : big[i - (N - 6)];
                msgs[i] = data + (i * 7919) % 1000; /* unaligned, overlapping starts */
        }
        for (size_t i = 0; i < sizeof(impls) / sizeof(impls[0]); i++)
                if (force_or_skip(impls[i]) == 0)
                        check_against_libsodium(msgs, lens, N);
        free(data);
}

/* Fewer messages than lanes: the idle lanes must not disturb the busy ones. */
static void test_idle_lanes(void **state)
{
        uint8_t data[1000];
        const uint8_t *msgs[3] = {data, data + 1, data + 2};
        size_t lens[3] = {999, 129, 0};

        (void)state;
        randombytes_buf(data, sizeof(data));
        for (size_t i = 0; i < sizeof(impls) / sizeof(impls[0]); i++)
                if (force_or_skip(impls[i]) == 0)
                        for (size_t n = 1; n <= 3; n++)
                                check_against_libsodium(msgs, lens, n);
}

static void test_force_names(void **state)
{
        (void)state;
        assert_int_equal(b2l_force("generic"), 0);
        assert_string_equal(b2l_impl_name(), "generic");
        assert_int_equal(b2l_force("sse9"), -ENOENT);
        assert_string_equal(b2l_impl_name(), "generic");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_known_answers),
            cmocka_unit_test(test_lengths_and_lane_turns),
            cmocka_unit_test(test_idle_lanes),
            cmocka_unit_test(test_force_names),
        };

        if (sodium_init() < 0)
                return 1;
        print_message("instruction set chosen on this CPU: %s\n", b2l_impl_name());
        return cmocka_run_group_tests(tests, NULL, NULL);
}
