/* The pairing session without sockets: two sessions (joiner, genesis) run the handshake in
 * memory. Same code: same SAS, tags verify, sealed messages flow both ways. Wrong code: tags
 * fail. A tampered binding or a share that does not open the genesis' commitment fails; SAS
 * grinding works in the old message order and fails in the new one; replayed, reordered and
 * reflected boxes fail; other versions are named; codes normalise; messages decode strictly;
 * rosters are accepted only when newer and signed. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <sodium.h>

#include "provision/pairing.h"

static struct pair_binding binding(enum roster_role role, const char *endpoint)
{
        struct pair_binding b = {.role = role};
        uint8_t k[WG_KEY_LEN], pub[WG_KEY_LEN];

        wg_key_generate_private(k);
        wg_key_public_from_private(pub, k);
        wg_key_to_base64(b.wg_public_key, pub);
        snprintf(b.endpoint, sizeof(b.endpoint), "%s", endpoint);
        return b;
}

/* The genesis hello carries its commitment; the joiner starts from it. */
static void run(struct pair_session *j, struct pair_session *g, const char *cj, const char *cg)
{
        struct pair_binding bj = binding(ROSTER_ROLE_NODE, "192.0.2.2:51820");
        struct pair_binding bg = binding(ROSTER_ROLE_NODE, "192.0.2.1:51820");
        struct pair_msg mj, mg;

        pair_session_init(j, true, "laptop-b");
        pair_session_init(g, false, "genesis");
        assert_int_equal(pair_session_start(g, cg, "laptop-b", j->nonce_self, &bg, NULL), 0);
        assert_int_equal(pair_session_start(j, cj, "genesis", g->nonce_self, &bj, g->commit), 0);
        pair_session_share(j, &mj);
        assert_int_equal(pair_session_finish(g, &mj), 0);
        pair_session_share(g, &mg);
        assert_int_equal(pair_session_finish(j, &mg), 0);
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
        /* Each side learned what the other bound. */
        assert_string_equal(j.bind_peer.wg_public_key, g.bind_self.wg_public_key);
        assert_string_equal(g.bind_peer.endpoint, j.bind_self.endpoint);
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

/* A binding changed in transit (another WireGuard key or endpoint): the joiner sees the
 * genesis' share not open its commitment; the genesis computes another ISK than the joiner,
 * so the key confirmation fails. */
static void test_binding_tampered(void **state)
{
        struct pair_binding bj = binding(ROSTER_ROLE_NODE, "192.0.2.2:51820");
        struct pair_binding bg = binding(ROSTER_ROLE_RELAY, "");
        struct pair_binding evil = binding(ROSTER_ROLE_NODE, "");
        struct pair_session j, g;
        struct pair_msg mj, mg;
        uint8_t tg[CPACE_TAG_LEN];

        pair_session_init(&j, true, "laptop-b");
        pair_session_init(&g, false, "genesis");
        assert_int_equal(pair_session_start(&g, "ABCDE-FGHJK", "laptop-b", j.nonce_self, &bg, NULL),
                         0);
        /* No commitment, no share from the joiner. */
        assert_int_equal(pair_session_start(&j, "ABCDE-FGHJK", "genesis", g.nonce_self, &bj, NULL),
                         -EINVAL);
        assert_int_equal(
            pair_session_start(&j, "ABCDE-FGHJK", "genesis", g.nonce_self, &bj, g.commit), 0);
        pair_session_share(&j, &mj);
        snprintf(mj.wg_public_key, sizeof(mj.wg_public_key), "%s", evil.wg_public_key);
        assert_int_equal(pair_session_finish(&g, &mj), 0);
        pair_session_share(&g, &mg);
        snprintf(mg.endpoint, sizeof(mg.endpoint), "203.0.113.9:51820");
        assert_int_equal(pair_session_finish(&j, &mg), -EBADE);
        pair_session_share(&g, &mg);
        assert_int_equal(
            pair_session_start(&j, "ABCDE-FGHJK", "genesis", g.nonce_self, &bj, g.commit), 0);
        assert_int_equal(pair_session_finish(&j, &mg), 0);
        pair_session_tag(&g, true, tg);
        assert_int_equal(pair_session_check_tag(&j, tg), -EBADMSG);
}

static unsigned sas_value(const char *sas)
{
        return (unsigned)atoi(sas) * 1000 + (unsigned)atoi(sas + 4);
}

/* The man in the middle who knows the code, playing the genesis towards the joiner: after the
 * joiner's share, it draws fresh shares of its own until the SAS agrees with target modulo mod.
 * Returns the number of tries (ret holds the winning session), or -1 past budget. */
static int grind(const struct pair_session *m0, const char *code, const struct pair_msg *jshare,
                 const char *target, unsigned mod, int budget, struct pair_session *ret)
{
        for (int i = 1; i <= budget; i++) {
                pair_session_init(ret, false, m0->self_id);
                memcpy(ret->nonce_self, m0->nonce_self, PAIR_NONCE_LEN);
                assert_int_equal(pair_session_start(ret, code, m0->peer_id, m0->nonce_peer,
                                                    &m0->bind_self, NULL),
                                 0);
                assert_int_equal(pair_session_finish(ret, jshare), 0);
                if (sas_value(ret->sas) % mod == sas_value(target) % mod)
                        return i;
        }
        return -1;
}

/* The man in the middle's two sessions: as a joiner with the real genesis g (m_g; g->sas is
 * what the genesis operator will see), and as the genesis towards the victim j (m, which has
 * committed to its share in its hello); mj is the victim's share. */
static void mitm_setup(const char *code, struct pair_session *m_g, struct pair_session *g,
                       struct pair_session *j, struct pair_session *m, struct pair_msg *mj)
{
        struct pair_binding bj = binding(ROSTER_ROLE_NODE, "192.0.2.2:51820");
        struct pair_binding bm = binding(ROSTER_ROLE_NODE, "192.0.2.1:51820");

        run(m_g, g, code, code);
        pair_session_init(j, true, "laptop-b");
        pair_session_init(m, false, "genesis");
        assert_int_equal(pair_session_start(m, code, "laptop-b", j->nonce_self, &bm, NULL), 0);
        assert_int_equal(pair_session_start(j, code, "genesis", m->nonce_self, &bj, m->commit), 0);
        pair_session_share(j, mj);
}

/* SAS grinding, the attack of issue 14, on a model SAS of two digits (the full six cost 10^6
 * tries: tests/integration/pair_mitm.c measures the rate). In totebox-pair/1 the genesis sent
 * its share after seeing the joiner's, so the man in the middle could pick, among fresh shares,
 * one whose SAS equals the one the real genesis shows; a joiner that receives the commitment
 * only after the share is chosen (j_old, the old order) accepts it and shows the matching SAS.
 * In totebox-pair/2 the joiner holds the commitment from before its own share: every ground
 * share is refused, and the committed one gives a SAS the attacker did not choose. */
static void test_sas_grinding(void **state)
{
        const char *code = "ABCDE-FGHJK";
        struct pair_session *m_g = calloc(1, sizeof(*m_g)), *g = calloc(1, sizeof(*g));
        struct pair_session *j = calloc(1, sizeof(*j)), *j_old = calloc(1, sizeof(*j_old));
        struct pair_session *m = calloc(1, sizeof(*m)), *t = calloc(1, sizeof(*t));
        struct pair_session *j2 = calloc(1, sizeof(*j2));
        struct pair_msg mj, mt, m0;
        int tries;

        mitm_setup(code, m_g, g, j, m, &mj);
        *j_old = *j;
        *j2 = *j;
        tries = grind(m, code, &mj, g->sas, 100, 5000, t);
        assert_true(tries > 0); /* fails with probability 0.99^5000 < 10^-21 */
        pair_session_share(t, &mt);
        /* The old order: the share arrives with a commitment made after it. */
        memcpy(j_old->commit, t->commit, PAIR_COMMIT_LEN);
        assert_int_equal(pair_session_finish(j_old, &mt), 0);
        assert_int_equal(sas_value(j_old->sas) % 100, sas_value(g->sas) % 100);
        print_message("old order: SAS steered on 2 digits after %d tries\n", tries);
        /* The new order: the ground share does not open the commitment. */
        assert_int_equal(pair_session_finish(j, &mt), -EBADE);
        assert_int_equal(pair_session_finish(m, &mj), 0);
        pair_session_share(m, &m0);
        assert_int_equal(pair_session_finish(j2, &m0), 0);
        assert_string_equal(j2->sas, m->sas); /* fixed before the joiner's share was known */
        free(m_g), free(g), free(j), free(j_old), free(j2), free(m), free(t);
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
        struct pair_binding bj = binding(ROSTER_ROLE_NODE, ""), bg = binding(ROSTER_ROLE_NODE, "");
        struct pair_session j, g;
        struct pair_msg m;

        pair_session_init(&j, true, "laptop-b");
        pair_session_init(&g, false, "genesis");
        /* Our own nonce back is refused. */
        assert_int_equal(pair_session_start(&g, "ABCDE-FGHJK", "x", g.nonce_self, &bg, NULL),
                         -EINVAL);
        assert_int_equal(pair_session_start(&g, "ABCDE-FGHJK", "laptop-b", j.nonce_self, &bg, NULL),
                         0);
        assert_int_equal(
            pair_session_start(&j, "ABCDE-FGHJK", "genesis", g.nonce_self, &bj, g.commit), 0);
        /* The genesis receiving its own share (reflection) aborts before any key. */
        pair_session_share(&g, &m);
        assert_int_equal(pair_session_finish(&g, &m), -EINVAL);
        /* The joiner receiving its own share: it opens no commitment. */
        pair_session_share(&j, &m);
        assert_int_equal(pair_session_finish(&j, &m), -EBADE);
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
            "{\"v\":3,\"type\":\"hello\"}",
            "{\"v\":2,\"type\":\"nope\"}",
            "{\"type\":\"hello\"}",
            "{\"v\":2,\"type\":\"hello\",\"proto\":\"totebox-pair/2\",\"id\":\"a\","
            "\"nonce\":\"AAAA\"}",
            "{\"v\":2,\"type\":\"hello\",\"proto\":\"totebox-pair/2\",\"id\":\"A!\","
            "\"nonce\":\"AAAAAAAAAAAAAAAAAAAAAA==\"}",
            "{\"v\":2,\"type\":\"hello\",\"proto\":\"totebox-pair/2\",\"id\":\"a\","
            "\"nonce\":\"AAAAAAAAAAAAAAAAAAAAAA==\",\"extra\":1}",
            "{\"v\":2,\"type\":\"hello\",\"proto\":\"totebox-pair/2\",\"id\":\"a\","
            "\"nonce\":\"AAAAAAAAAAAAAAAAAAAAAA==\",\"commit\":\"AAAA\"}",
            "{\"v\":2,\"type\":\"share\",\"point\":\"AAAA\",\"ad\":\"AA==\"}",
            "{\"v\":2,\"type\":\"share\",\"point\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
            "\","
            "\"role\":\"node\",\"wg_public_key\":\"x\",\"endpoint\":\"\"}",
            "{\"v\":2,\"type\":\"error\",\"code\":\"bogus\"}",
            "{\"v\":2,\"type\":\"sealed\",\"seq\":1,\"box\":\"AA==\"}",
            "{\"v\":2,\"type\":\"join-request\",\"name\":\"n\",\"role\":\"king\","
            "\"wg_public_key\":\"x\",\"endpoint\":\"\"}",
            "{\"v\":2,\"type\":\"hello\",\"v\":2}",
            "[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]",
        };
        struct json_input_error err;
        struct pair_msg m;
        const char *ok = "{\"v\":2,\"type\":\"hello\",\"proto\":\"totebox-pair/2\",\"id\":\"a\","
                         "\"nonce\":\"AAAAAAAAAAAAAAAAAAAAAA==\"}";
        const char *v1 = "{\"v\":1,\"type\":\"hello\",\"proto\":\"totebox-pair/1\",\"id\":\"a\","
                         "\"nonce\":\"AAAAAAAAAAAAAAAAAAAAAA==\"}";
        const char *p3 = "{\"v\":2,\"type\":\"hello\",\"proto\":\"totebox-pair/3\",\"id\":\"a\","
                         "\"nonce\":\"AAAAAAAAAAAAAAAAAAAAAA==\"}";
        char *enc;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                assert_true(pair_msg_decode(bad[i], strlen(bad[i]), &m, &err) < 0);
                assert_true(err.text[0] != '\0');
        }
        /* An older or newer version is named, and the refusal can be framed in it. */
        assert_int_equal(pair_msg_decode(v1, strlen(v1), &m, &err), -EPROTONOSUPPORT);
        assert_non_null(strstr(err.text, "version 1 is not supported"));
        assert_int_equal(m.v, 1);
        m = (struct pair_msg){.type = PAIR_MSG_ERROR, .v = 1, .error = PAIR_ERR_VERSION};
        enc = pair_msg_encode(&m);
        assert_non_null(strstr(enc, "\"v\":1"));
        free(enc);
        assert_int_equal(pair_msg_decode(p3, strlen(p3), &m, &err), -EPROTONOSUPPORT);
        assert_int_equal(pair_msg_decode(ok, strlen(ok), &m, &err), 0);
        assert_int_equal(m.type, PAIR_MSG_HELLO);
        enc = pair_msg_encode(&m);
        assert_string_equal(enc, "{\"id\":\"a\",\"nonce\":\"AAAAAAAAAAAAAAAAAAAAAA==\","
                                 "\"proto\":\"totebox-pair/2\",\"type\":\"hello\",\"v\":2}");
        free(enc);
        pair_msg_clear(&m);
}

/* One trial of the attack on a model SAS of one digit: returns whether the victim, in the old
 * order (*old) and in the new one (*now), shows the same SAS as the genesis. The grinder gets
 * 100 tries; in the new order a share that does not open the commitment is refused, so the best
 * the attacker can still send is its committed share. */
static void grind_trial(bool *old, bool *now)
{
        const char *code = "ABCDE-FGHJK";
        struct pair_session *ss = calloc(7, sizeof(*ss));
        struct pair_session *m_g = &ss[0], *g = &ss[1], *j = &ss[2], *j_old = &ss[3], *m = &ss[4];
        struct pair_session *t = &ss[5], *j_try = &ss[6];
        struct pair_msg mj, mt;
        int tries;

        mitm_setup(code, m_g, g, j, m, &mj);
        *j_old = *j;
        *j_try = *j;
        tries = grind(m, code, &mj, g->sas, 10, 100, t);
        *old = false;
        if (tries > 0) {
                pair_session_share(t, &mt);
                memcpy(j_old->commit, t->commit, PAIR_COMMIT_LEN);
                *old = pair_session_finish(j_old, &mt) == 0 &&
                       sas_value(j_old->sas) % 10 == sas_value(g->sas) % 10;
                assert_int_equal(pair_session_finish(j_try, &mt), -EBADE);
        }
        assert_int_equal(pair_session_finish(m, &mj), 0);
        pair_session_share(m, &mt);
        assert_int_equal(pair_session_finish(j, &mt), 0);
        *now = sas_value(j->sas) % 10 == sas_value(g->sas) % 10;
        free(ss);
}

/* 200 trials: grinding wins (nearly) every time in the old order, and only by chance (about
 * 1 in 10 on one digit) in the new. A trial's grinding fails with probability 0.9^100 < 3*10^-5,
 * so fewer than 190 old wins needs 11 such failures (below 10^-40); 45 or more new wins at
 * p = 0.1 has a probability below 10^-8. */
static void test_sas_grinding_beyond_chance(void **state)
{
        int old_wins = 0, new_wins = 0;

        for (int i = 0; i < 200; i++) {
                bool o, n;

                grind_trial(&o, &n);
                old_wins += o;
                new_wins += n;
        }
        print_message("one-digit SAS, 200 ceremonies: grinding matched %d in the old order, %d "
                      "(chance: ~20) in the new\n",
                      old_wins, new_wins);
        assert_true(old_wins >= 190);
        assert_true(new_wins < 45);
}

/* Frame reads end at an absolute deadline however the bytes trickle, and every failure has a
 * reason: a partial frame, an HTTP request, a zero length, a closed peer. */
static void test_frame_errors(void **state)
{
        static const struct {
                const char *bytes;
                size_t len;
                int ret;
                const char *reason;
        } cases[] = {
            {"\0\0\0\x64partial", 11, -ETIMEDOUT, "timed out"},
            {"GET / HTTP/1.1\r\n", 16, -EPROTO, "an HTTP request"},
            {"\0\0\0\0", 4, -EPROTO, "bad frame length 0"},
            {"\x7f\xff\xff\xff", 4, -EPROTO, "bad frame length 2147483647"},
            {"\0\0\0\x05{nope", 9, -EINVAL, "malformed message"},
            {"\0\0\0\x12{\"v\":1,\"type\":\"x\"}", 22, -EPROTONOSUPPORT, "version 1"},
            {"", 0, -ECONNRESET, "closed the connection"},
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct pair_msg m;
                char err[256] = "";
                int sv[2];

                assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
                assert_int_equal(write(sv[1], cases[i].bytes, cases[i].len), (ssize_t)cases[i].len);
                if (cases[i].ret != -ETIMEDOUT)
                        shutdown(sv[1], SHUT_WR);
                assert_int_equal(pair_recv(sv[0], pair_clock_ms() + 100, &m, err, sizeof(err)),
                                 cases[i].ret);
                assert_non_null(strstr(err, cases[i].reason));
                close(sv[0]);
                close(sv[1]);
        }
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
            cmocka_unit_test(test_same_code),
            cmocka_unit_test(test_wrong_code),
            cmocka_unit_test(test_sealed),
            cmocka_unit_test(test_version_and_reflection),
            cmocka_unit_test(test_codes),
            cmocka_unit_test(test_decode),
            cmocka_unit_test(test_roster_accept),
            cmocka_unit_test(test_binding_tampered),
            cmocka_unit_test(test_sas_grinding),
            cmocka_unit_test(test_frame_errors),
            cmocka_unit_test(test_sas_grinding_beyond_chance),
        };

        if (sodium_init() < 0)
                return 1;
        return cmocka_run_group_tests(tests, NULL, NULL);
}
