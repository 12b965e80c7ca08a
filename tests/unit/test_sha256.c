/* Unit tests for common/sha256: the FIPS 180-4 examples (empty, "abc", the 448-bit message and
 * a million 'a') and agreement with libsodium for every length up to 300 bytes fed in one call,
 * byte by byte and in uneven pieces, on every implementation this CPU has. */
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

#include "common/sha256.h"

static const char *const impls[] = {"sha-ni", "generic"};

static int force_or_skip(const char *name)
{
        int r = sha256_force(name);

        if (r == -ENOTSUP)
                print_message("this CPU has no %s; skipped\n", name);
        else
                assert_int_equal(r, 0);
        return r;
}

static void assert_hex(const uint8_t d[SHA256_LEN], const char *want)
{
        char hex[2 * SHA256_LEN + 1];

        assert_string_equal(sodium_bin2hex(hex, sizeof(hex), d, SHA256_LEN), want);
}

static void test_fips_examples(void **state)
{
        static const struct {
                const char *msg;
                const char *want;
        } cases[] = {
            {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
            {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
            {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
             "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        };
        uint8_t d[SHA256_LEN], chunk[1000];

        (void)state;
        memset(chunk, 'a', sizeof(chunk));
        for (size_t i = 0; i < sizeof(impls) / sizeof(impls[0]); i++) {
                struct sha256 s;

                if (force_or_skip(impls[i]) < 0)
                        continue;
                for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
                        sha256_digest(cases[k].msg, strlen(cases[k].msg), d);
                        assert_hex(d, cases[k].want);
                }
                sha256_init(&s);
                for (unsigned k = 0; k < 1000; k++)
                        sha256_update(&s, chunk, sizeof(chunk));
                sha256_final(&s, d);
                assert_hex(d, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
        }
}

static void test_pieces_agree_with_libsodium(void **state)
{
        uint8_t msg[300], want[SHA256_LEN], got[SHA256_LEN];

        (void)state;
        randombytes_buf(msg, sizeof(msg));
        for (size_t i = 0; i < sizeof(impls) / sizeof(impls[0]); i++) {
                if (force_or_skip(impls[i]) < 0)
                        continue;
                for (size_t len = 0; len <= sizeof(msg); len++) {
                        struct sha256 s;

                        crypto_hash_sha256(want, msg, len);
                        sha256_digest(msg, len, got);
                        assert_memory_equal(got, want, SHA256_LEN);
                        sha256_init(&s);
                        for (size_t k = 0; k < len; k++)
                                sha256_update(&s, msg + k, 1);
                        sha256_final(&s, got);
                        assert_memory_equal(got, want, SHA256_LEN);
                        sha256_init(&s);
                        for (size_t k = 0, step = 1; k < len; k += step, step = step * 3 + 1)
                                sha256_update(&s, msg + k, step < len - k ? step : len - k);
                        sha256_update(&s, NULL, 0);
                        sha256_final(&s, got);
                        assert_memory_equal(got, want, SHA256_LEN);
                }
        }
}

static void test_force_names(void **state)
{
        (void)state;
        assert_int_equal(sha256_force("generic"), 0);
        assert_string_equal(sha256_impl_name(), "generic");
        assert_int_equal(sha256_force("sha-3000"), -ENOENT);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_fips_examples),
            cmocka_unit_test(test_pieces_agree_with_libsodium),
            cmocka_unit_test(test_force_names),
        };

        if (sodium_init() < 0)
                return 1;
        print_message("implementation chosen on this CPU: %s\n", sha256_impl_name());
        return cmocka_run_group_tests(tests, NULL, NULL);
}
