/* CPace: every ristretto255 vector of draft-irtf-cfrg-cpace-21 (tests/vectors/), read from the
 * JSON file at run time, plus the string-utility vectors, invalid points, and a full
 * initiator/responder run with matching and mismatching codes. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>

#include "common/cpace.h"

static json_t *vectors;

static size_t unhex(uint8_t *out, size_t cap, const char *hex)
{
        size_t len = 0;

        assert_int_equal(sodium_hex2bin(out, cap, hex, strlen(hex), NULL, &len, NULL), 0);
        return len;
}

static size_t vec(const char *key, uint8_t *out, size_t cap)
{
        json_t *s = json_object_get(json_object_get(vectors, "G_Coffee25519"), key);

        assert_non_null(s);
        return unhex(out, cap, json_string_value(s));
}

static void assert_hex(const uint8_t *got, size_t len, const char *hex)
{
        uint8_t want[512];
        size_t n = unhex(want, sizeof(want), hex);

        assert_int_equal(n, len);
        assert_memory_equal(got, want, len);
}

static int setup(void **state)
{
        json_error_t e;

        vectors = json_load_file(TOTEBOX_VECTORS_DIR "/cpace-testvectors.json", 0, &e);
        assert_non_null(vectors);
        assert_int_equal(sodium_init() < 0, 0);
        return 0;
}

static int teardown(void **state)
{
        json_decref(vectors);
        return 0;
}

static void test_prepend_len(void **state)
{
        uint8_t in[128], out[200];
        ssize_t n;

        for (int i = 0; i < 128; i++)
                in[i] = (uint8_t)i;
        n = cpace_prepend_len(out, sizeof(out), in, 0);
        assert_hex(out, (size_t)n, "00");
        n = cpace_prepend_len(out, sizeof(out), (const uint8_t *)"1234", 4);
        assert_hex(out, (size_t)n, "0431323334");
        n = cpace_prepend_len(out, sizeof(out), in, 127);
        assert_int_equal(n, 128);
        assert_int_equal(out[0], 0x7f);
        assert_memory_equal(out + 1, in, 127);
        n = cpace_prepend_len(out, sizeof(out), in, 128);
        assert_int_equal(n, 130);
        assert_int_equal(out[0], 0x80);
        assert_int_equal(out[1], 0x01);
        assert_memory_equal(out + 2, in, 128);
        assert_int_equal(cpace_prepend_len(out, 4, in, 4), -ENOSPC);
}

static void test_lv_cat(void **state)
{
        uint8_t out[64];
        ssize_t n1 =
            cpace_lv_cat2(out, sizeof(out), (const uint8_t *)"1234", 4, (const uint8_t *)"5", 1);
        ssize_t n2 = cpace_lv_cat2(out + n1, sizeof(out) - (size_t)n1, (const uint8_t *)"", 0,
                                   (const uint8_t *)"678", 3);

        assert_hex(out, (size_t)(n1 + n2), "043132333401350003363738");
}

static void test_o_cat(void **state)
{
        uint8_t out[64];
        ssize_t n;

        assert_false(
            cpace_lexiographically_larger((const uint8_t *)"\0", 1, (const uint8_t *)"\0\0", 2));
        assert_true(
            cpace_lexiographically_larger((const uint8_t *)"\1", 1, (const uint8_t *)"\0\0", 2));
        assert_true(
            cpace_lexiographically_larger((const uint8_t *)"\0\0", 2, (const uint8_t *)"\0", 1));
        assert_false(
            cpace_lexiographically_larger((const uint8_t *)"\0\0", 2, (const uint8_t *)"\1", 1));
        assert_false(
            cpace_lexiographically_larger((const uint8_t *)"\0\1", 2, (const uint8_t *)"\1", 1));
        assert_false(
            cpace_lexiographically_larger((const uint8_t *)"ABCD", 4, (const uint8_t *)"BCD", 3));
        n = cpace_o_cat(out, sizeof(out), (const uint8_t *)"ABCD", 4, (const uint8_t *)"BCD", 3);
        assert_hex(out, (size_t)n, "6f6342434441424344");
        n = cpace_o_cat(out, sizeof(out), (const uint8_t *)"BCD", 3, (const uint8_t *)"ABCDE", 5);
        assert_hex(out, (size_t)n, "6f634243444142434445");
}

static void test_transcripts(void **state)
{
        uint8_t out[64];
        ssize_t n;

        n = cpace_transcript_ir(out, sizeof(out), (const uint8_t *)"123", 3,
                                (const uint8_t *)"PartyA", 6, (const uint8_t *)"234", 3,
                                (const uint8_t *)"PartyB", 6);
        assert_hex(out, (size_t)n, "03313233065061727479410332333406506172747942");
        n = cpace_transcript_ir(out, sizeof(out), (const uint8_t *)"3456", 4,
                                (const uint8_t *)"PartyA", 6, (const uint8_t *)"2345", 4,
                                (const uint8_t *)"PartyB", 6);
        assert_hex(out, (size_t)n, "043334353606506172747941043233343506506172747942");
        n = cpace_transcript_oc(out, sizeof(out), (const uint8_t *)"123", 3,
                                (const uint8_t *)"PartyA", 6, (const uint8_t *)"234", 3,
                                (const uint8_t *)"PartyB", 6);
        assert_hex(out, (size_t)n, "6f6303323334065061727479420331323306506172747941");
        n = cpace_transcript_oc(out, sizeof(out), (const uint8_t *)"3456", 4,
                                (const uint8_t *)"PartyA", 6, (const uint8_t *)"2345", 4,
                                (const uint8_t *)"PartyB", 6);
        assert_hex(out, (size_t)n, "6f63043334353606506172747941043233343506506172747942");
}

static void test_generator(void **state)
{
        uint8_t prs[64], ci[64], sid[64], g[32], buf[256];
        size_t prs_len = vec("PRS", prs, sizeof(prs)), ci_len = vec("CI", ci, sizeof(ci));
        size_t sid_len = vec("sid", sid, sizeof(sid));
        ssize_t n =
            cpace_generator_string(buf, sizeof(buf), prs, prs_len, ci, ci_len, sid, sid_len);
        uint8_t h[64];

        assert_hex(buf, (size_t)n,
                   "11435061636552697374726574746f3235350850617373776f726464"
                   "00000000000000000000000000000000000000000000000000000000"
                   "00000000000000000000000000000000000000000000000000000000"
                   "00000000000000000000000000000000000000000000000000000000"
                   "00000000000000000000000000000000180b415f696e69746961746f"
                   "720b425f726573706f6e646572107e4b4791d6a8ef019b936c79fb7f"
                   "2c57");
        crypto_hash_sha512(h, buf, (unsigned long long)n);
        assert_hex(h, 64,
                   "da6d3ddc8802fca9058755ffd3ebde08a9c2c74945901a258482a288"
                   "b6663af06bf645c93cd1c51512307199c80e84908916d983b34af772"
                   "05f90851a657ee27");
        assert_int_equal(cpace_calculate_generator(g, prs, prs_len, ci, ci_len, sid, sid_len), 0);
        assert_hex(
            g, 32,
            json_string_value(json_object_get(json_object_get(vectors, "G_Coffee25519"), "g")));
}

/* The whole exchange with the vector's fixed scalars: Ya, Yb, K (via ISK), ISK_IR, ISK_SY and
 * both sid outputs, byte for byte. */
static void test_protocol_vector(void **state)
{
        uint8_t prs[64], ci[64], sid[64], ya[32], yb[32], ada[8], adb[8], want[64];
        uint8_t Ya[32], Yb[32], K[32], isk_a[64], isk_b[64], out[64];
        size_t prs_len = vec("PRS", prs, sizeof(prs)), ci_len = vec("CI", ci, sizeof(ci));
        size_t sid_len = vec("sid", sid, sizeof(sid));
        size_t ada_len = vec("ADa", ada, sizeof(ada)), adb_len = vec("ADb", adb, sizeof(adb));
        struct cpace_ctx a, b;

        vec("ya", ya, sizeof(ya));
        vec("yb", yb, sizeof(yb));
        assert_int_equal(cpace_start(&a, CPACE_INITIATOR, prs, prs_len, ci, ci_len, sid, sid_len,
                                     ada, ada_len, ya, Ya),
                         0);
        assert_int_equal(cpace_start(&b, CPACE_RESPONDER, prs, prs_len, ci, ci_len, sid, sid_len,
                                     adb, adb_len, yb, Yb),
                         0);
        vec("Ya", want, sizeof(want));
        assert_memory_equal(Ya, want, 32);
        vec("Yb", want, sizeof(want));
        assert_memory_equal(Yb, want, 32);
        assert_int_equal(cpace_scalar_mult_vfy(K, ya, Yb), 0);
        vec("K", want, sizeof(want));
        assert_memory_equal(K, want, 32);
        assert_int_equal(cpace_scalar_mult_vfy(K, yb, Ya), 0);
        assert_memory_equal(K, want, 32);
        assert_int_equal(cpace_finish(&a, Yb, adb, adb_len, isk_a), 0);
        assert_int_equal(cpace_finish(&b, Ya, ada, ada_len, isk_b), 0);
        vec("ISK_IR", want, sizeof(want));
        assert_memory_equal(isk_a, want, 64);
        assert_memory_equal(isk_b, want, 64);
        assert_int_equal(cpace_isk(out, false, sid, sid_len, K, Ya, ada, ada_len, Yb, adb, adb_len),
                         0);
        vec("ISK_SY", want, sizeof(want));
        assert_memory_equal(out, want, 64);
        assert_int_equal(cpace_sid_output(out, true, Ya, ada, ada_len, Yb, adb, adb_len), 0);
        vec("sid_output_ir", want, sizeof(want));
        assert_memory_equal(out, want, 64);
        assert_int_equal(cpace_sid_output(out, false, Ya, ada, ada_len, Yb, adb, adb_len), 0);
        vec("sid_output_oc", want, sizeof(want));
        assert_memory_equal(out, want, 64);
}

static void test_points(void **state)
{
        json_t *p = json_object_get(vectors, "G_Coffee25519_points");
        json_t *valid = json_object_get(p, "Valid");
        uint8_t s[32], x[32], out[32], want[32];

        unhex(s, sizeof(s), json_string_value(json_object_get(valid, "s")));
        unhex(x, sizeof(x), json_string_value(json_object_get(valid, "X")));
        unhex(want, sizeof(want),
              json_string_value(json_object_get(valid, "G.scalar_mult_vfy(s,X)")));
        assert_int_equal(cpace_scalar_mult_vfy(out, s, x), 0);
        assert_memory_equal(out, want, 32);
        unhex(want, sizeof(want),
              json_string_value(json_object_get(valid, "G.scalar_mult(s,decode(X))")));
        assert_memory_equal(out, want, 32);
        for (int i = 1; i <= 2; i++) {
                char key[16];

                snprintf(key, sizeof(key), "Invalid Y%d", i);
                unhex(x, sizeof(x), json_string_value(json_object_get(p, key)));
                memset(out, 0xaa, sizeof(out));
                assert_int_equal(cpace_scalar_mult_vfy(out, s, x), -EINVAL);
                assert_true(sodium_is_zero(out, 32));
        }
}

/* A peer that sends an invalid point, the identity, or our own share back makes us abort. */
static void test_abort_on_bad_peer(void **state)
{
        uint8_t Y[32], isk[64], bad[32];
        struct cpace_ctx c;

        assert_int_equal(cpace_start(&c, CPACE_RESPONDER, (const uint8_t *)"pw", 2, NULL, 0,
                                     (const uint8_t *)"sid", 3, NULL, 0, NULL, Y),
                         0);
        memset(bad, 0, sizeof(bad));
        assert_int_equal(cpace_finish(&c, bad, NULL, 0, isk), -EINVAL);
        assert_int_equal(cpace_start(&c, CPACE_RESPONDER, (const uint8_t *)"pw", 2, NULL, 0,
                                     (const uint8_t *)"sid", 3, NULL, 0, NULL, Y),
                         0);
        assert_int_equal(cpace_finish(&c, Y, NULL, 0, isk), -EINVAL);
        assert_int_equal(cpace_start(&c, CPACE_RESPONDER, (const uint8_t *)"pw", 2, NULL, 0,
                                     (const uint8_t *)"sid", 3, NULL, 0, NULL, Y),
                         0);
        unhex(bad, sizeof(bad), "2b3c6b8c4f3800e7aef6864025b4ed79bd599117e427c41bd47d93d654b4a51c");
        assert_int_equal(cpace_finish(&c, bad, NULL, 0, isk), -EINVAL);
        cpace_wipe(&c);
}

static void run_pair(const char *pa, const char *pb, uint8_t ia[64], uint8_t ib[64])
{
        struct cpace_ctx a, b;
        uint8_t Ya[32], Yb[32];
        const uint8_t sid[16] = {1, 2, 3};

        assert_int_equal(cpace_start(&a, CPACE_INITIATOR, (const uint8_t *)pa, strlen(pa),
                                     (const uint8_t *)"ci", 2, sid, 16, (const uint8_t *)"v1", 2,
                                     NULL, Ya),
                         0);
        assert_int_equal(cpace_start(&b, CPACE_RESPONDER, (const uint8_t *)pb, strlen(pb),
                                     (const uint8_t *)"ci", 2, sid, 16, (const uint8_t *)"v1", 2,
                                     NULL, Yb),
                         0);
        assert_int_equal(cpace_finish(&a, Yb, (const uint8_t *)"v1", 2, ia), 0);
        assert_int_equal(cpace_finish(&b, Ya, (const uint8_t *)"v1", 2, ib), 0);
}

static void test_random_run(void **state)
{
        uint8_t ia[64], ib[64], ta[64], tb[64];

        run_pair("ABCD-EFGH", "ABCD-EFGH", ia, ib);
        assert_memory_equal(ia, ib, 64);
        cpace_confirmation_tag(ta, (const uint8_t *)"s", 1, ia, (const uint8_t[32]){1}, NULL, 0);
        cpace_confirmation_tag(tb, (const uint8_t *)"s", 1, ib, (const uint8_t[32]){1}, NULL, 0);
        assert_int_equal(cpace_tag_verify(ta, tb), 0);
        run_pair("ABCD-EFGH", "ABCD-EFGX", ia, ib);
        assert_memory_not_equal(ia, ib, 64);
        cpace_confirmation_tag(ta, (const uint8_t *)"s", 1, ia, (const uint8_t[32]){1}, NULL, 0);
        cpace_confirmation_tag(tb, (const uint8_t *)"s", 1, ib, (const uint8_t[32]){1}, NULL, 0);
        assert_int_equal(cpace_tag_verify(ta, tb), -EBADMSG);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_prepend_len), cmocka_unit_test(test_lv_cat),
            cmocka_unit_test(test_o_cat),       cmocka_unit_test(test_transcripts),
            cmocka_unit_test(test_generator),   cmocka_unit_test(test_protocol_vector),
            cmocka_unit_test(test_points),      cmocka_unit_test(test_abort_on_bad_peer),
            cmocka_unit_test(test_random_run),
        };

        return cmocka_run_group_tests(tests, setup, teardown);
}
