/* Unit tests for common/tlog_checkpoint: the C2SP signed-note encoding matches Go's sumdb/note
 * reference vector byte for byte (key id, verifier and signer keys, signature line), checkpoints
 * round-trip, and a forger's notes are refused: a changed byte, a note signed by another key
 * under the same name, a wrong key id, extra or malformed signature lines, non-canonical
 * base64, control bytes, an oversized note, sizes with leading zeros or past 2^63.
 * Cosignatures (c2sp.org/tlog-cosignature cosignature/v1): a vector computed by hand with an
 * independent implementation (Python's cryptography package: Go's PeterNeumann seed as the
 * cosigner "witness.example.com/w1", key id SHA-256(name || "\n" || 0x04 || pk)[:4], time
 * 1679315147 over the tlog-checkpoint example) matches byte for byte, and every forgery of one
 * (other time, other text, a note signature in its place, a truncated blob) is refused. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "common/tlog_checkpoint.h"

/* golang.org/x/mod/sumdb/note note_test.go */
static const char go_vkey[] = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
static const char go_skey[] =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
static const char go_text[] = "If you think cryptography is the answer to your problem,\n"
                              "then you don't know what your problem is.\n";
static const char go_sig[] = "\xe2\x80\x94 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZ"
                             "InNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

/* c2sp.org/tlog-checkpoint's example */
static const char c2sp_example[] =
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n"
    "\xe2\x80\x94 example.com/behind-the-sofa "
    "Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7"
    "u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";

static void test_go_vector_keys(void **state)
{
        struct tlog_key v, s;
        uint8_t sk[TLOG_SECRET_KEY_LEN];
        char text[TLOG_SKEY_MAX + 1];

        assert_int_equal(tlog_vkey_parse(go_vkey, &v), 0);
        assert_string_equal(v.name, "PeterNeumann");
        assert_memory_equal(v.id, "\xc7\x4f\x20\xa3", 4);
        assert_int_equal(tlog_skey_parse(go_skey, &s, sk), 0);
        assert_memory_equal(s.pk, v.pk, 32);
        assert_memory_equal(s.id, v.id, 4);
        assert_int_equal(tlog_vkey_format(&s, text, sizeof(text)), 0);
        assert_string_equal(text, go_vkey);
        assert_int_equal(tlog_skey_format("PeterNeumann", sk, text, sizeof(text)), 0);
        assert_string_equal(text, go_skey);
        /* a wrong key id, a mangled name, an unknown algorithm byte */
        assert_int_equal(tlog_vkey_parse("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/"
                                         "LDE4izWy10TW",
                                         &v),
                         -EBADMSG);
        assert_int_equal(tlog_vkey_parse("PeterNeumanm+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/"
                                         "LDE4izWy10TW",
                                         &v),
                         -EBADMSG);
        assert_int_equal(tlog_vkey_parse("PeterNeumann+c74f20a3+Apc2QcUPDhMQegwxbzhKqiBfsVkmqq/"
                                         "LDE4izWy10TW",
                                         &v),
                         -EBADMSG);
        assert_int_equal(tlog_vkey_parse("PeterNeumann+c74f20a3", &v), -EBADMSG);
        sodium_memzero(sk, sizeof(sk));
}

static void test_go_vector_note(void **state)
{
        struct tlog_key k;
        uint8_t sk[TLOG_SECRET_KEY_LEN];
        char note[512], want[512];
        size_t text_len = 0;
        int n;

        assert_int_equal(tlog_skey_parse(go_skey, &k, sk), 0);
        n = tlog_note_sign(go_text, strlen(go_text), &k, sk, note, sizeof(note));
        snprintf(want, sizeof(want), "%s\n%s", go_text, go_sig);
        assert_int_equal(n, (int)strlen(want));
        assert_string_equal(note, want); /* Ed25519 is deterministic: byte for byte */
        assert_int_equal(tlog_note_verify(want, strlen(want), &k, &text_len), 0);
        assert_int_equal(text_len, strlen(go_text));
        want[5] ^= 0x20;
        assert_int_equal(tlog_note_verify(want, strlen(want), &k, &text_len), -EKEYREJECTED);
        /* the text is no checkpoint: refused after the signature verified */
        snprintf(want, sizeof(want), "%s\n%s", go_text, go_sig);
        assert_int_equal(tlog_checkpoint_open(want, strlen(want), &k, &(struct tlog_checkpoint){0}),
                         -EBADMSG);
}

static void test_c2sp_example_parses(void **state)
{
        struct tlog_checkpoint c;
        struct tlog_key other;
        uint8_t pk[32], sk[64];

        assert_int_equal(tlog_checkpoint_open_unverified(c2sp_example, strlen(c2sp_example), &c),
                         0);
        assert_string_equal(c.origin, "example.com/behind-the-sofa");
        assert_int_equal(c.size, 20852163);
        assert_int_equal(c.root[0], 0x0a);
        assert_int_equal(c.root[1], 0xc5);
        crypto_sign_keypair(pk, sk);
        assert_int_equal(tlog_key_init("example.com/behind-the-sofa", pk, &other), 0);
        /* the line's key id is not ours: no signature from this key */
        assert_int_equal(tlog_checkpoint_open(c2sp_example, strlen(c2sp_example), &other, &c),
                         -ENOKEY);
}

static void keypair(const char *name, struct tlog_key *k, uint8_t sk[64])
{
        uint8_t pk[32];

        crypto_sign_keypair(pk, sk);
        assert_int_equal(tlog_key_init(name, pk, k), 0);
}

static void test_roundtrip_and_forgeries(void **state)
{
        struct tlog_checkpoint c = {.origin = "fleetd.totebox/f1", .size = 33}, got;
        struct tlog_key k, mallory;
        uint8_t sk[64], msk[64];
        char note[1024], forged[TLOG_NOTE_MAX];
        int n;

        memset(c.root, 0x5a, sizeof(c.root));
        keypair("fleetd.totebox/f1", &k, sk);
        keypair("fleetd.totebox/f1", &mallory, msk);
        n = tlog_checkpoint_sign(&c, &k, sk, note, sizeof(note));
        assert_true(n > 0);
        assert_int_equal(tlog_checkpoint_open(note, (size_t)n, &k, &got), 0);
        assert_string_equal(got.origin, c.origin);
        assert_int_equal(got.size, 33);
        assert_memory_equal(got.root, c.root, 32);
        assert_memory_equal(note, "fleetd.totebox/f1\n33\nWlpa", 25);
        /* same name, another key: its line is skipped, so ours is missing */
        n = tlog_checkpoint_sign(&c, &mallory, msk, forged, sizeof(forged));
        assert_int_equal(tlog_checkpoint_open(forged, (size_t)n, &k, &got), -ENOKEY);
        /* the forger keeps our key id in front of its own signature */
        n = tlog_checkpoint_sign(&c, &k, msk, forged, sizeof(forged));
        assert_int_equal(tlog_checkpoint_open(forged, (size_t)n, &k, &got), -EKEYREJECTED);
        /* a size changed after signing */
        memcpy(forged, note, sizeof(note));
        forged[19] = '4';
        assert_int_equal(tlog_checkpoint_open(forged, strlen(forged), &k, &got), -EKEYREJECTED);
        /* a second, unknown signature line is fine; a malformed one is not */
        snprintf(forged, sizeof(forged), "%s\xe2\x80\x94 other AAAAAAAA\n", note);
        assert_int_equal(tlog_checkpoint_open(forged, strlen(forged), &k, &got), 0);
        snprintf(forged, sizeof(forged), "%s-- other AAAAAAAA\n", note);
        assert_int_equal(tlog_checkpoint_open(forged, strlen(forged), &k, &got), -EBADMSG);
        snprintf(forged, sizeof(forged), "%s\xe2\x80\x94 other AAAA\n", note);
        assert_int_equal(tlog_checkpoint_open(forged, strlen(forged), &k, &got), -EBADMSG);
        /* no final newline, no signature at all */
        assert_int_equal(tlog_checkpoint_open(note, strlen(note) - 1, &k, &got), -EBADMSG);
        assert_int_equal(tlog_checkpoint_open("a\n1\nx\n\n", 7, &k, &got), -EBADMSG);
}

static void test_text_rules(void **state)
{
        static const char *bad[] = {
            "o\n01\nWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo=\n", /* leading zero */
            "o\n9223372036854775808\nWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo=\n",
            "o\n-1\nWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo=\n",
            "o\n1\nWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlp=\n",   /* non-canonical */
            "o\n1\nWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo\n",    /* unpadded */
            "o\n1\nWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWg==\n",   /* 31 bytes */
            "o o\n1\nWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo=\n", /* space in origin */
            "\n1\nWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo=\n",
            "o\n1\nWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo=", /* no final newline */
        };
        struct tlog_checkpoint c;

        assert_int_equal(tlog_checkpoint_parse_text(
                             "o\n0\nWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo=\next 1\n", 55, &c),
                         0);
        assert_int_equal(c.size, 0);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_equal(tlog_checkpoint_parse_text(bad[i], strlen(bad[i]), &c), -EBADMSG);
}

static void test_note_limits(void **state)
{
        struct tlog_checkpoint c = {.origin = "o", .size = 1}, got;
        struct tlog_key k;
        uint8_t sk[64];
        static char big[TLOG_NOTE_MAX + 64];
        char note[512];
        int n;

        keypair("o", &k, sk);
        n = tlog_checkpoint_sign(&c, &k, sk, note, sizeof(note));
        assert_true(n > 0);
        note[1] = '\t'; /* a control byte in the text */
        assert_int_equal(tlog_checkpoint_open(note, (size_t)n, &k, &got), -EBADMSG);
        memset(big, 'a', sizeof(big));
        big[sizeof(big) - 1] = '\n';
        assert_int_equal(tlog_checkpoint_open(big, sizeof(big), &k, &got), -EBADMSG);
        assert_int_equal(tlog_checkpoint_sign(&c, &k, sk, note, 20), -ENOSPC);
        /* 101 signature lines */
        n = tlog_checkpoint_text(&c, big, sizeof(big));
        big[n++] = '\n';
        for (int i = 0; i < 101; i++)
                n += snprintf(big + n, sizeof(big) - (size_t)n, "\xe2\x80\x94 x AAAAAAAA\n");
        assert_int_equal(tlog_checkpoint_open_unverified(big, (size_t)n, &got), -EBADMSG);
}

/* the hand-computed cosignature vector (see the top of the file) */
static const char cosig_vkey[] =
    "witness.example.com/w1+d46a2b1b+BBpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
static const char cosig_line[] =
    "\xe2\x80\x94 witness.example.com/w1 1GorGwAAAABkGFDLJeR//pqzhnEKVvEm2wWbh2RJ6oru5+cUUfm5X9N"
    "nlaGr8aSH9QE5RVZD4QGlxl2F5UpVIIi94p178KLfqPPsAA==\n";

static void test_cosignature_vector(void **state)
{
        struct tlog_key go, w, parsed, wrong_alg;
        uint8_t sk[TLOG_SECRET_KEY_LEN];
        char note[TLOG_NOTE_MAX + 1], text[TLOG_VKEY_MAX + 1];
        size_t base = sizeof(c2sp_example) - 1;
        uint64_t t = 0;
        int n;

        (void)state;
        assert_int_equal(tlog_skey_parse(go_skey, &go, sk), 0);
        assert_int_equal(tlog_cosig_key_init("witness.example.com/w1", go.pk, &w), 0);
        assert_memory_equal(w.id, "\xd4\x6a\x2b\x1b", 4);
        assert_int_equal(tlog_cosig_vkey_format(&w, text, sizeof(text)), 0);
        assert_string_equal(text, cosig_vkey);
        assert_int_equal(tlog_cosig_vkey_parse(cosig_vkey, &parsed), 0);
        assert_memory_equal(parsed.id, w.id, 4);
        /* a 0x04 key is not a note key and the other way round */
        assert_int_equal(tlog_vkey_parse(cosig_vkey, &wrong_alg), -EBADMSG);
        assert_int_equal(tlog_cosig_vkey_parse(go_vkey, &wrong_alg), -EBADMSG);

        memcpy(note, c2sp_example, base + 1);
        n = tlog_note_cosign(note, base, sizeof(note), &w, sk, 1679315147);
        assert_int_equal(n, (int)(base + sizeof(cosig_line) - 1));
        assert_string_equal(note + base, cosig_line);
        assert_int_equal(tlog_note_cosig_verify(note, (size_t)n, &parsed, &t), 0);
        assert_int_equal(t, 1679315147);
        /* the log's own signature line is still there and still verifies as a checkpoint */
        assert_int_equal(
            tlog_checkpoint_open_unverified(note, (size_t)n, &(struct tlog_checkpoint){0}), 0);
        /* the same key as a note key (id with 0x01) finds no line of its own */
        assert_int_equal(tlog_note_cosig_verify(note, (size_t)n, &go, &t), -ENOKEY);
}

static void test_cosignature_forgeries(void **state)
{
        struct tlog_key go, w;
        uint8_t sk[TLOG_SECRET_KEY_LEN];
        char note[TLOG_NOTE_MAX + 1], forged[TLOG_NOTE_MAX + 1];
        size_t base = sizeof(c2sp_example) - 1;
        uint64_t t = 0;
        char *p;
        int n;

        (void)state;
        assert_int_equal(tlog_skey_parse(go_skey, &go, sk), 0);
        assert_int_equal(tlog_cosig_key_init("witness.example.com/w1", go.pk, &w), 0);
        memcpy(note, c2sp_example, base + 1);
        n = tlog_note_cosign(note, base, sizeof(note), &w, sk, 1679315147);
        assert_true(n > 0);
        /* another time in the blob: the signature covered the first */
        memcpy(forged, note, (size_t)n + 1);
        p = strstr(forged, "1GorGwAAAABkGFDL");
        p[15] = 'M';
        assert_int_equal(tlog_note_cosig_verify(forged, (size_t)n, &w, &t), -EKEYREJECTED);
        /* another size in the text */
        memcpy(forged, note, (size_t)n + 1);
        forged[sizeof("example.com/behind-the-sofa\n2085216") - 1] = '4';
        assert_int_equal(tlog_note_cosig_verify(forged, (size_t)n, &w, &t), -EKEYREJECTED);
        /* a plain note signature (68 bytes) under the cosigner's name and cosignature id */
        memcpy(forged, c2sp_example, base + 1);
        n = tlog_note_sign(c2sp_example, (size_t)(strstr(c2sp_example, "\n\n") - c2sp_example) + 1,
                           &w, sk, forged, sizeof(forged));
        assert_true(n > 0);
        assert_int_equal(tlog_note_cosig_verify(forged, (size_t)n, &w, &t), -EKEYREJECTED);
        /* a time past 2^63 - 1 is never signed */
        memcpy(note, c2sp_example, base + 1);
        assert_int_equal(
            tlog_note_cosign(note, base, sizeof(note), &w, sk, (uint64_t)INT64_MAX + 1), -EINVAL);
        /* no room */
        assert_int_equal(tlog_note_cosign(note, base, base + 10, &w, sk, 1), -ENOSPC);
        /* not a note */
        assert_int_equal(tlog_note_cosign(note, 5, sizeof(note), &w, sk, 1), -EBADMSG);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_go_vector_keys),
            cmocka_unit_test(test_go_vector_note),
            cmocka_unit_test(test_c2sp_example_parses),
            cmocka_unit_test(test_roundtrip_and_forgeries),
            cmocka_unit_test(test_text_rules),
            cmocka_unit_test(test_note_limits),
            cmocka_unit_test(test_cosignature_vector),
            cmocka_unit_test(test_cosignature_forgeries),
        };

        if (sodium_init() < 0)
                return 1;
        return cmocka_run_group_tests(tests, NULL, NULL);
}
