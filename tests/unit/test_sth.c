/* Unit tests for common/sth: the signed bytes are exactly the contract's layout, a signature
 * verifies with its key only, and any change to size, root or time breaks it. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "common/sth.h"

static void test_message_layout(void **state)
{
        struct sth s = {.size = 0x0102030405060708ULL, .time_ms = 0x1122334455667788ULL};
        uint8_t msg[STH_MESSAGE_LEN];

        memset(s.root, 0xab, sizeof(s.root));
        sth_message(&s, msg);
        assert_int_equal(STH_MESSAGE_LEN, 63);
        assert_memory_equal(msg, "totebox-sth-v1\n", 15);
        assert_memory_equal(msg + 15, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
        assert_int_equal(msg[23], 0xab);
        assert_int_equal(msg[54], 0xab);
        assert_memory_equal(msg + 55, "\x11\x22\x33\x44\x55\x66\x77\x88", 8);
}

static void test_sign_verify_tamper(void **state)
{
        uint8_t pk[STH_PUBLIC_KEY_LEN], sk[STH_SECRET_KEY_LEN], pk2[32], sk2[64];
        struct sth s = {.size = 3, .time_ms = 1700000000000ULL}, t;

        assert_true(sodium_init() >= 0);
        crypto_sign_keypair(pk, sk);
        crypto_sign_keypair(pk2, sk2);
        memset(s.root, 7, sizeof(s.root));
        sth_sign(&s, sk);
        assert_int_equal(sth_verify(&s, pk), 0);
        assert_int_equal(sth_verify(&s, pk2), -EBADMSG);
        t = s;
        t.size++;
        assert_int_equal(sth_verify(&t, pk), -EBADMSG);
        t = s;
        t.root[31] ^= 1;
        assert_int_equal(sth_verify(&t, pk), -EBADMSG);
        t = s;
        t.time_ms--;
        assert_int_equal(sth_verify(&t, pk), -EBADMSG);
        t = s;
        t.signature[0] ^= 1;
        assert_int_equal(sth_verify(&t, pk), -EBADMSG);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_message_layout),
            cmocka_unit_test(test_sign_verify_tamper),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
