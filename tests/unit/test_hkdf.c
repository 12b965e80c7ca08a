/* HKDF: RFC 5869 appendix A test cases 1-3 (SHA-256) and the same inputs with SHA-512 (expected
 * values computed independently with Python's hmac module). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include <sodium.h>

#include "common/hkdf.h"

struct hkdf_case {
        enum hkdf_hash h;
        const char *ikm, *salt, *info, *prk, *okm;
};

static size_t unhex(uint8_t *out, size_t cap, const char *hex)
{
        size_t len = 0;

        assert_int_equal(sodium_hex2bin(out, cap, hex, strlen(hex), NULL, &len, NULL), 0);
        return len;
}

static const struct hkdf_case cases[] = {
    {HKDF_SHA256, "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "000102030405060708090a0b0c",
     "f0f1f2f3f4f5f6f7f8f9", "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5",
     "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"},
    {HKDF_SHA256,
     "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b"
     "2c2d2e2f303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f",
     "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f808182838485868788898a8b"
     "8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
     "b0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadb"
     "dcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
     "06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244",
     "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e"
     "590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87"},
    {HKDF_SHA256, "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "", "",
     "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04",
     "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"},
    {HKDF_SHA512, "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "000102030405060708090a0b0c",
     "f0f1f2f3f4f5f6f7f8f9",
     "665799823737ded04a88e47e54a5890bb2c3d247c7a4254a8e61350723590a26c36238127d8661b88cf80ef8"
     "02d57e2f7cebcf1e00e083848be19929c61b4237",
     "832390086cda71fb47625bb5ceb168e4c8e26a1a16ed34d9fc7fe92c1481579338da362cb8d9f925d7cb"},
    {HKDF_SHA512,
     "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b"
     "2c2d2e2f303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f",
     "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f808182838485868788898a8b"
     "8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
     "b0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadb"
     "dcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
     "35672542907d4e142c00e84499e74e1de08be86535f924e022804ad775dde27ec86cd1e5b7d178c74489bdbe"
     "b30712beb82d4f97416c5a94ea81ebdf3e629e4a",
     "ce6c97192805b346e6161e821ed165673b84f400a2b514b2fe23d84cd189ddf1b695b48cbd1c8388441137b3"
     "ce28f16aa64ba33ba466b24df6cfcb021ecff235f6a2056ce3af1de44d572097a8505d9e7a93"},
    {HKDF_SHA512, "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "", "",
     "fd200c4987ac491313bd4a2a13287121247239e11c9ef82802044b66ef357e5b194498d0682611382348572a"
     "7b1611de54764094286320578a863f36562b0df6",
     "f5fa02b18298a72a8c23898a8703472c6eb179dc204c03425c970e3b164bf90fff22d04836d0e2343bac"},
};

static void test_vectors(void **state)
{
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                const struct hkdf_case *c = &cases[i];
                uint8_t ikm[128], salt[128], info[128], prk[64], okm[128], got[128], p[64];
                size_t ikm_len = unhex(ikm, sizeof(ikm), c->ikm);
                size_t salt_len = unhex(salt, sizeof(salt), c->salt);
                size_t info_len = unhex(info, sizeof(info), c->info);
                size_t prk_len = unhex(prk, sizeof(prk), c->prk);
                size_t okm_len = unhex(okm, sizeof(okm), c->okm);

                assert_int_equal(prk_len, hkdf_hash_len(c->h));
                hkdf_extract(c->h, p, salt, salt_len, ikm, ikm_len);
                assert_memory_equal(p, prk, prk_len);
                assert_int_equal(hkdf_expand(c->h, got, okm_len, p, info, info_len), 0);
                assert_memory_equal(got, okm, okm_len);
                if (c->h == HKDF_SHA512) {
                        memset(got, 0, sizeof(got));
                        assert_int_equal(
                            hkdf_sha512(got, okm_len, salt, salt_len, ikm, ikm_len, info, info_len),
                            0);
                        assert_memory_equal(got, okm, okm_len);
                }
        }
}

static void test_limits(void **state)
{
        uint8_t prk[64] = {0}, out[1];

        assert_int_equal(hkdf_expand(HKDF_SHA512, out, 255 * 64 + 1, prk, NULL, 0), -EINVAL);
        assert_int_equal(hkdf_expand(HKDF_SHA256, out, 255 * 32 + 1, prk, NULL, 0), -EINVAL);
        assert_int_equal(hkdf_expand(HKDF_SHA512, out, 0, prk, NULL, 0), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_vectors),
            cmocka_unit_test(test_limits),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
