/* The pairing session without sockets: two sessions (joiner, genesis) run the handshake in
 * memory. Same code: same SAS, tags verify, sealed messages flow both ways. Wrong code: tags
 * fail. Replayed, reordered and reflected boxes fail; a version mismatch in AD is reported;
 * codes normalise; messages decode strictly; rosters are accepted only when newer and signed. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <sodium.h>

#include "provision/pairing.h"

static void share_of(const struct pair_session *s, struct pair_msg *m)
{
        memset(m, 0, sizeof(*m));
        m->type = PAIR_MSG_SHARE;
        memcpy(m->point, s->point_self, CPACE_POINT_LEN);
        m->ad_len = strlen(pair_ad_for(s->initiator));
        memcpy(m->ad, pair_ad_for(s->initiator), m->ad_len);
}

static void run(struct pair_session *j, struct pair_session *g, const char *cj, const char *cg)
{
        struct pair_msg mj, mg;

        pair_session_init(j, true, "laptop-b");
        pair_session_init(g, false, "genesis");
        assert_int_equal(pair_session_start(j, cj, "genesis", g->nonce_self), 0);
        assert_int_equal(pair_session_start(g, cg, "laptop-b", j->nonce_self), 0);
        share_of(j, &mj);
        share_of(g, &mg);
        assert_int_equal(pair_session_finish(j, &mg), 0);
        assert_int_equal(pair_session_finish(g, &mj), 0);
}

static void test_same_code(void **state)
{
        struct pair_session j, g;
        uint8_t tj[CPACE_TAG_LEN], tg[CPACE_TAG_LEN];

        run(&j, &g, "ABCDE-FGHJK", "abcde fghjk");
        assert_string_equal(j.sas, g.sas);
        assert_int_equal(strlen(j.sas), 7);
        pair_session_tag(&j, true, tj);
        pair_session_tag(&g, true, tg);
        assert_int_equal(pair_session_check_tag(&g, tj), 0);
        assert_int_equal(pair_session_check_tag(&j, tg), 0);
        /* Reflection: a party's own tag is not the peer's. */
        assert_int_equal(pair_session_check_tag(&g, tg), -EBADMSG);
        assert_true(pair_sas_matches(&j, g.sas));
        assert_false(pair_sas_matches(&j, "000000") && strcmp(j.sas, "000 000") != 0);
        assert_false(pair_sas_matches(&j, "abc"));
        assert_memory_equal(j.key_send, g.key_recv, PAIR_KEY_LEN);
        assert_memory_not_equal(j.key_send, j.key_recv, PAIR_KEY_LEN);
        pair_session_wipe(&j);
        pair_session_wipe(&g);
}

static void test_wrong_code(void **state)
{
        struct pair_session j, g;
        uint8_t tj[CPACE_TAG_LEN], tg[CPACE_TAG_LEN];

        run(&j, &g, "ABCDE-FGHJK", "ABCDE-FGHJM");
        pair_session_tag(&j, true, tj);
        pair_session_tag(&g, true, tg);
        assert_int_equal(pair_session_check_tag(&g, tj), -EBADMSG);
        assert_int_equal(pair_session_check_tag(&j, tg), -EBADMSG);
}

static void test_sealed(void **state)
{
        struct pair_session j, g;
        struct pair_msg m1, m2;
        char *plain = NULL;
        size_t len = 0;

        run(&j, &g, "ABCDE-FGHJK", "ABCDE-FGHJK");
        assert_int_equal(pair_session_seal(&j, "{\"a\":1}", &m1), 0);
        assert_int_equal(pair_session_seal(&j, "{\"a\":2}", &m2), 0);
        /* Reordered: the second box first fails. */
        assert_int_equal(pair_session_open(&g, &m2, &plain, &len), -EBADMSG);
        assert_int_equal(pair_session_open(&g, &m1, &plain, &len), 0);
        assert_string_equal(plain, "{\"a\":1}");
        free(plain);
        /* Replayed. */
        assert_int_equal(pair_session_open(&g, &m1, &plain, &len), -EBADMSG);
        /* Reflected: the joiner cannot open its own box (other direction's key). */
        j.seq_recv = 1;
        assert_int_equal(pair_session_open(&j, &m2, &plain, &len), -EBADMSG);
        /* Tampered. */
        m2.box[0] ^= 1;
        assert_int_equal(pair_session_open(&g, &m2, &plain, &len), -EBADMSG);
        m2.box[0] ^= 1;
        assert_int_equal(pair_session_open(&g, &m2, &plain, &len), 0);
        free(plain);
        pair_msg_clear(&m1);
        pair_msg_clear(&m2);
}

static void test_version_and_reflection(void **state)
{
        struct pair_session j, g;
        struct pair_msg m;

        pair_session_init(&j, true, "laptop-b");
        pair_session_init(&g, false, "genesis");
        /* Our own nonce back is refused. */
        assert_int_equal(pair_session_start(&g, "ABCDE-FGHJK", "x", g.nonce_self), -EINVAL);
        assert_int_equal(pair_session_start(&j, "ABCDE-FGHJK", "genesis", g.nonce_self), 0);
        assert_int_equal(pair_session_start(&g, "ABCDE-FGHJK", "laptop-b", j.nonce_self), 0);
        share_of(&j, &m);
        memcpy(m.ad, "totebox-pair/2", 14);
        assert_int_equal(pair_session_finish(&g, &m), -EPROTONOSUPPORT);
        /* The joiner receiving its own share (reflection) aborts. */
        share_of(&j, &m);
        m.ad_len = strlen(pair_ad_for(false));
        memcpy(m.ad, pair_ad_for(false), m.ad_len);
        assert_int_equal(pair_session_finish(&j, &m), -EINVAL);
}

static void test_codes(void **state)
{
        char code[PAIR_CODE_SIZE], norm[PAIR_CODE_CHARS + 1];

        for (int i = 0; i < 100; i++) {
                pair_code_generate(code);
                assert_int_equal(strlen(code), 11);
                assert_int_equal(code[5], '-');
                assert_int_equal(pair_code_normalize(code, norm), 0);
        }
        assert_int_equal(pair_code_normalize("abcde-fghjk", norm), 0);
        assert_string_equal(norm, "ABCDEFGHJK");
        assert_int_equal(pair_code_normalize("O0OIL-11111", norm), 0);
        assert_string_equal(norm, "0001111111");
        assert_int_equal(pair_code_normalize("ABCDE-FGHJ", norm), -EINVAL);
        assert_int_equal(pair_code_normalize("ABCDE-FGHJKX", norm), -EINVAL);
        assert_int_equal(pair_code_normalize("ABCDE-FGHJU", norm), -EINVAL); /* no U */
}

static void test_decode(void **state)
{
        static const char *const bad[] = {
            "",
            "[]",
            "{\"v\":2,\"type\":\"hello\"}",
            "{\"v\":1,\"type\":\"nope\"}",
            "{\"v\":1,\"type\":\"hello\",\"proto\":\"totebox-pair/1\",\"id\":\"a\","
            "\"nonce\":\"AAAA\"}",
            "{\"v\":1,\"type\":\"hello\",\"proto\":\"totebox-pair/1\",\"id\":\"A!\","
            "\"nonce\":\"AAAAAAAAAAAAAAAAAAAAAA==\"}",
            "{\"v\":1,\"type\":\"hello\",\"proto\":\"totebox-pair/1\",\"id\":\"a\","
            "\"nonce\":\"AAAAAAAAAAAAAAAAAAAAAA==\",\"extra\":1}",
            "{\"v\":1,\"type\":\"share\",\"point\":\"AAAA\",\"ad\":\"AA==\"}",
            "{\"v\":1,\"type\":\"error\",\"code\":\"bogus\"}",
            "{\"v\":1,\"type\":\"sealed\",\"seq\":1,\"box\":\"AA==\"}",
            "{\"v\":1,\"type\":\"join-request\",\"name\":\"n\",\"role\":\"king\","
            "\"wg_public_key\":\"x\",\"endpoint\":\"\"}",
            "{\"v\":1,\"type\":\"hello\",\"v\":1}",
            "[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]",
        };
        struct json_input_error err;
        struct pair_msg m;
        const char *ok = "{\"v\":1,\"type\":\"hello\",\"proto\":\"totebox-pair/1\",\"id\":\"a\","
                         "\"nonce\":\"AAAAAAAAAAAAAAAAAAAAAA==\"}";
        const char *v2 = "{\"v\":1,\"type\":\"hello\",\"proto\":\"totebox-pair/2\",\"id\":\"a\","
                         "\"nonce\":\"AAAAAAAAAAAAAAAAAAAAAA==\"}";
        char *enc;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                assert_true(pair_msg_decode(bad[i], strlen(bad[i]), &m, &err) < 0);
                assert_true(err.text[0] != '\0');
        }
        assert_int_equal(pair_msg_decode(v2, strlen(v2), &m, &err), -EPROTONOSUPPORT);
        assert_int_equal(pair_msg_decode(ok, strlen(ok), &m, &err), 0);
        assert_int_equal(m.type, PAIR_MSG_HELLO);
        enc = pair_msg_encode(&m);
        assert_string_equal(enc, "{\"id\":\"a\",\"nonce\":\"AAAAAAAAAAAAAAAAAAAAAA==\","
                                 "\"proto\":\"totebox-pair/1\",\"type\":\"hello\",\"v\":1}");
        free(enc);
        pair_msg_clear(&m);
}

static struct roster *roster_signed(uint64_t version, const uint8_t sk[64])
{
        char buf[512];
        int n = snprintf(buf, sizeof(buf),
                         "{\"v\":1,\"version\":%llu,\"fleet_id\":\"f\",\"controller\":\"g\","
                         "\"nodes\":[{\"id\":\"g\",\"role\":\"node\",\"mesh_address\":"
                         "\"10.77.0.1\"}]}",
                         (unsigned long long)version);
        struct roster *r = roster_parse(buf, (size_t)n, NULL, 0);

        assert_non_null(r);
        assert_int_equal(roster_sign(r, sk), 0);
        return r;
}

static void test_roster_accept(void **state)
{
        char dir[] = "/tmp/test_pairing.XXXXXX", err[256], path[128];
        uint8_t pk[32], sk[64], pk2[32], sk2[64];
        struct roster *r;

        assert_non_null(mkdtemp(dir));
        crypto_sign_keypair(pk, sk);
        crypto_sign_keypair(pk2, sk2);
        r = roster_signed(2, sk);
        assert_int_equal(pair_roster_accept(dir, r, err, sizeof(err)), -ENOKEY);
        assert_int_equal(pair_genesis_pub_save(dir, pk), 0);
        assert_int_equal(pair_roster_accept(dir, r, err, sizeof(err)), 0);
        assert_int_equal(pair_roster_accept(dir, r, err, sizeof(err)), -ESTALE);
        roster_free(r);
        r = roster_signed(1, sk);
        assert_int_equal(pair_roster_accept(dir, r, err, sizeof(err)), -ESTALE);
        roster_free(r);
        r = roster_signed(5, sk2);
        assert_int_equal(pair_roster_accept(dir, r, err, sizeof(err)), -EBADMSG);
        assert_non_null(strstr(err, "not signed"));
        roster_free(r);
        r = roster_signed(3, sk);
        r->version = 4; /* signature over version 3 */
        assert_int_equal(pair_roster_accept(dir, r, err, sizeof(err)), -EBADMSG);
        roster_free(r);
        r = pair_roster_load(dir, err, sizeof(err));
        assert_int_equal(r->version, 2);
        roster_free(r);
        /* A genesis key readable by others is refused. */
        assert_int_equal(pair_genesis_key_save(dir, sk), 0);
        assert_int_equal(pair_genesis_key_load(dir, sk2), 0);
        assert_memory_equal(sk, sk2, 64);
        snprintf(path, sizeof(path), "%s/genesis.key", dir);
        chmod(path, 0640);
        assert_int_equal(pair_genesis_key_load(dir, sk2), -EPERM);
        for (const char *f = "genesis.key\0genesis.pub\0roster.json\0"; *f; f += strlen(f) + 1) {
                snprintf(path, sizeof(path), "%s/%s", dir, f);
                unlink(path);
        }
        rmdir(dir);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_same_code),     cmocka_unit_test(test_wrong_code),
            cmocka_unit_test(test_sealed),        cmocka_unit_test(test_version_and_reflection),
            cmocka_unit_test(test_codes),         cmocka_unit_test(test_decode),
            cmocka_unit_test(test_roster_accept),
        };

        if (sodium_init() < 0)
                return 1;
        return cmocka_run_group_tests(tests, NULL, NULL);
}
