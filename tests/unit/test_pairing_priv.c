/* The privileged half of the pairing server against a hostile network process: over a real
 * socketpair, every message that is not exactly one of the protocol's (unknown type, other
 * version, wrong size, unterminated or invalid fields, a message that only goes the other way)
 * is refused; a join is signed once (a second is refused), by the genesis key, with the joiner
 * in it; an apply before a signature, of another version or twice is refused. The network
 * process's decoder refuses a reply whose roster length disagrees with its size. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>
#include <sodium.h>

#include "provision/pairing.h"

struct fx {
        char dir[64];
        int fds[2]; /* [0] the parent's end, [1] the network process's */
        struct pair_server_opts o;
        struct pair_priv_parent p;
        FILE *out;
};

static int setup(void **state)
{
        struct fx *fx = calloc(1, sizeof(*fx));
        struct pair_genesis_opts g = {.name = "gen",
                                      .endpoint = "127.0.0.1:51820",
                                      .role = ROSTER_ROLE_NODE,
                                      .ifname = "tbtest-none0",
                                      .wg_port = 51820,
                                      .subnet = "10.77.0.0/24",
                                      .no_wg = true};

        snprintf(fx->dir, sizeof(fx->dir), "/tmp/tbpriv-XXXXXX");
        if (!mkdtemp(fx->dir) || imsg_socketpair(fx->fds) < 0)
                return -1;
        strcat(fx->dir, "/gen");
        fx->out = fopen("/dev/null", "w");
        g.state_dir = fx->dir;
        g.out = fx->out;
        if (pair_genesis_init(&g) < 0)
                return -1;
        fx->o = (struct pair_server_opts){.state_dir = fx->dir, .out = fx->out};
        fx->p.o = &fx->o;
        if (pair_conf_load(fx->dir, &fx->p.conf) < 0)
                return -1;
        *state = fx;
        return 0;
}

static int teardown(void **state)
{
        struct fx *fx = *state;
        char cmd[160];

        close(fx->fds[0]);
        close(fx->fds[1]);
        fclose(fx->out);
        snprintf(cmd, sizeof(cmd), "rm -rf '%.*s'", (int)(strlen(fx->dir) - 4), fx->dir);
        assert_int_equal(system(cmd), 0);
        free(fx);
        return 0;
}

/* A raw message: header fields as given, then payload. */
static size_t raw(uint8_t *buf, uint16_t version, uint16_t type, uint32_t len, const void *p,
                  size_t plen)
{
        struct imsg_hdr h = {.version = version, .type = type, .len = len};

        memcpy(buf, &h, sizeof(h));
        memcpy(buf + sizeof(h), p, plen);
        return sizeof(h) + plen;
}

static struct pair_priv_sign_join joiner(const char *name)
{
        struct pair_priv_sign_join j = {.role = ROSTER_ROLE_NODE};
        uint8_t k[WG_KEY_LEN], pub[WG_KEY_LEN];

        wg_key_generate_private(k);
        wg_key_public_from_private(pub, k);
        wg_key_to_base64(j.wg_public_key, pub);
        snprintf(j.name, sizeof(j.name), "%s", name);
        snprintf(j.endpoint, sizeof(j.endpoint), "127.0.0.2:51820");
        return j;
}

static int handle(struct fx *fx, const uint8_t *buf, size_t n, char *err)
{
        return pair_priv_handle(&fx->p, fx->fds[0], buf, n, err, 256);
}

/* The reply the parent sent, decoded as the network process decodes it. */
static uint16_t reply(struct fx *fx, union pair_priv_msg *m, char **roster)
{
        static uint8_t
            buf[sizeof(struct imsg_hdr) + sizeof(struct pair_priv_signed) + PAIR_FRAME_MAX];
        char err[256];
        uint16_t type = 0;
        ssize_t n = imsg_recv(fx->fds[1], buf, sizeof(buf), 1000);

        assert_true(n > 0);
        assert_int_equal(pair_priv_decode(buf, (size_t)n, &type, m, roster, err, sizeof(err)), 0);
        return type;
}

static void test_malformed_refused(void **state)
{
        struct fx *fx = *state;
        struct pair_priv_sign_join j = joiner("n1");
        struct pair_priv_apply a = {.version = 2};
        struct pair_priv_signed s = {0};
        uint8_t buf[1024];
        char err[256];

        assert_int_equal(handle(fx, buf, raw(buf, 1, 99, sizeof(a), &a, sizeof(a)), err), -EPROTO);
        assert_non_null(strstr(err, "unknown pairing message type 99"));
        assert_int_equal(
            handle(fx, buf, raw(buf, 2, PAIR_PRIV_APPLY, sizeof(a), &a, sizeof(a)), err), -EPROTO);
        assert_non_null(strstr(err, "version 2"));
        assert_int_equal(handle(fx, buf,
                                raw(buf, 1, PAIR_PRIV_SIGN_JOIN, sizeof(j) - 1, &j, sizeof(j) - 1),
                                err),
                         -EPROTO);
        assert_non_null(strstr(err, "'sign-join'"));
        /* the header says one size, the datagram has another */
        assert_int_equal(
            handle(fx, buf, raw(buf, 1, PAIR_PRIV_SIGN_JOIN, sizeof(j), &j, sizeof(j) - 8), err),
            -EPROTO);
        assert_int_equal(handle(fx, buf, 3, err), -EPROTO);
        /* a message that only goes from the parent */
        assert_int_equal(
            handle(fx, buf, raw(buf, 1, PAIR_PRIV_SIGNED, sizeof(s), &s, sizeof(s)), err), -EPROTO);
        memset(j.name, 'a', sizeof(j.name)); /* unterminated */
        assert_int_equal(
            handle(fx, buf, raw(buf, 1, PAIR_PRIV_SIGN_JOIN, sizeof(j), &j, sizeof(j)), err),
            -EPROTO);
        j = joiner("Not-An-Id");
        assert_int_equal(
            handle(fx, buf, raw(buf, 1, PAIR_PRIV_SIGN_JOIN, sizeof(j), &j, sizeof(j)), err),
            -EPROTO);
        j = joiner("n1");
        j.role = 7;
        assert_int_equal(
            handle(fx, buf, raw(buf, 1, PAIR_PRIV_SIGN_JOIN, sizeof(j), &j, sizeof(j)), err),
            -EPROTO);
        j = joiner("n1");
        snprintf(j.wg_public_key, sizeof(j.wg_public_key), "not a key");
        assert_int_equal(
            handle(fx, buf, raw(buf, 1, PAIR_PRIV_SIGN_JOIN, sizeof(j), &j, sizeof(j)), err),
            -EPROTO);
        assert_false(fx->p.signed_once); /* nothing malformed reached the key */
}

static void test_sign_once_then_apply(void **state)
{
        struct fx *fx = *state;
        struct pair_priv_sign_join j = joiner("n1");
        struct pair_priv_apply a = {.version = 2};
        union pair_priv_msg m;
        struct roster *r;
        char *roster = NULL, err[256];
        uint8_t buf[1024], pk[32];

        /* apply before any signature */
        assert_int_equal(
            handle(fx, buf, raw(buf, 1, PAIR_PRIV_APPLY, sizeof(a), &a, sizeof(a)), err), 0);
        assert_int_equal(reply(fx, &m, NULL), PAIR_PRIV_APPLIED);
        assert_int_equal(m.applied.result, -EPERM);
        assert_int_equal(
            handle(fx, buf, raw(buf, 1, PAIR_PRIV_SIGN_JOIN, sizeof(j), &j, sizeof(j)), err), 0);
        assert_int_equal(reply(fx, &m, &roster), PAIR_PRIV_SIGNED);
        assert_int_equal(m.signed_.error, PAIR_ERR_NONE);
        assert_int_equal(m.signed_.version, 2);
        assert_string_equal(m.signed_.mesh_address, "10.77.0.2");
        r = roster_parse(roster, strlen(roster), err, sizeof(err));
        assert_non_null(r);
        assert_int_equal(pair_genesis_pub_load(fx->dir, pk), 0);
        assert_int_equal(roster_verify(r, pk), 0);
        assert_non_null(roster_find_by_id(r, "n1"));
        roster_free(r);
        free(roster);
        /* a second join in the same run: refused, whatever the name */
        j = joiner("n2");
        assert_int_equal(
            handle(fx, buf, raw(buf, 1, PAIR_PRIV_SIGN_JOIN, sizeof(j), &j, sizeof(j)), err), 0);
        assert_int_equal(reply(fx, &m, &roster), PAIR_PRIV_SIGNED);
        assert_int_equal(m.signed_.error, PAIR_ERR_USED);
        assert_null(roster);
        /* apply: only the signed version, only once */
        a.version = 3;
        assert_int_equal(
            handle(fx, buf, raw(buf, 1, PAIR_PRIV_APPLY, sizeof(a), &a, sizeof(a)), err), 0);
        assert_int_equal(reply(fx, &m, NULL), PAIR_PRIV_APPLIED);
        assert_int_equal(m.applied.result, -EPERM);
        a.version = 2;
        assert_int_equal(
            handle(fx, buf, raw(buf, 1, PAIR_PRIV_APPLY, sizeof(a), &a, sizeof(a)), err), 0);
        assert_int_equal(reply(fx, &m, NULL), PAIR_PRIV_APPLIED);
        assert_int_equal(m.applied.result, 0);
        assert_int_equal(
            handle(fx, buf, raw(buf, 1, PAIR_PRIV_APPLY, sizeof(a), &a, sizeof(a)), err), 0);
        assert_int_equal(reply(fx, &m, NULL), PAIR_PRIV_APPLIED);
        assert_int_equal(m.applied.result, -EPERM);
}

static void test_name_taken(void **state)
{
        struct fx *fx = *state;
        struct pair_priv_sign_join j = joiner("gen");
        union pair_priv_msg m;
        char *roster = NULL, err[256];
        uint8_t buf[1024];

        assert_int_equal(
            handle(fx, buf, raw(buf, 1, PAIR_PRIV_SIGN_JOIN, sizeof(j), &j, sizeof(j)), err), 0);
        assert_int_equal(reply(fx, &m, &roster), PAIR_PRIV_SIGNED);
        assert_int_equal(m.signed_.error, PAIR_ERR_NAME_TAKEN);
        assert_null(roster);
}

/* A node the genesis removed (revoked, address 10.77.0.5) rejoins under its name after a
 * reinstall: it is a member again, out of the revoked list, and gets a fresh address above
 * every member's and revoked one (a removed address is never handed out again). */
static void test_rejoin_after_removal(void **state)
{
        struct fx *fx = *state;
        struct pair_priv_sign_join j = joiner("old");
        union pair_priv_msg m;
        struct roster *cur, *v2, *r;
        char *roster = NULL, err[256];
        uint8_t buf[1024], sk[64];
        json_t *o;

        cur = pair_roster_load(fx->dir, err, sizeof(err));
        assert_non_null(cur);
        assert_int_equal(pair_genesis_key_load(fx->dir, sk), 0);
        o = roster_to_json(cur);
        json_object_del(o, "signature");
        json_object_set_new(o, "version", json_integer(2));
        json_object_set_new(o, "revoked",
                            json_pack("[{s:s, s:s, s:s}]", "id", "old", "wg_public_key", "",
                                      "mesh_address", "10.77.0.5"));
        v2 = roster_from_json_signed(o, sk, err, sizeof(err));
        assert_non_null(v2);
        assert_int_equal(pair_roster_store(fx->dir, v2), 0);
        assert_int_equal(
            handle(fx, buf, raw(buf, 1, PAIR_PRIV_SIGN_JOIN, sizeof(j), &j, sizeof(j)), err), 0);
        assert_int_equal(reply(fx, &m, &roster), PAIR_PRIV_SIGNED);
        assert_int_equal(m.signed_.error, PAIR_ERR_NONE);
        assert_int_equal(m.signed_.version, 3);
        assert_string_equal(m.signed_.mesh_address, "10.77.0.6");
        r = roster_parse(roster, strlen(roster), err, sizeof(err));
        assert_non_null(r);
        assert_non_null(roster_find_by_id(r, "old"));
        assert_int_equal(r->n_revoked, 0);
        assert_null(strstr(roster, "revoked"));
        roster_free(r);
        roster_free(v2);
        roster_free(cur);
        free(roster);
}

/* The network process's decoder: a SIGNED reply whose roster length disagrees. */
static void test_reply_lengths(void **state)
{
        struct pair_priv_signed *s = calloc(1, sizeof(*s) + 4);
        union pair_priv_msg m;
        uint16_t type;
        char *roster = NULL, err[256];
        uint8_t buf[1024];

        (void)state;
        memcpy(s->roster, "{}{}", 4);
        s->roster_len = 5;
        assert_int_equal(
            pair_priv_decode(buf, raw(buf, 1, PAIR_PRIV_SIGNED, sizeof(*s) + 4, s, sizeof(*s) + 4),
                             &type, &m, &roster, err, sizeof(err)),
            -EBADMSG);
        s->roster_len = 4;
        assert_int_equal(
            pair_priv_decode(buf, raw(buf, 1, PAIR_PRIV_SIGNED, sizeof(*s) + 4, s, sizeof(*s) + 4),
                             &type, &m, &roster, err, sizeof(err)),
            0);
        assert_string_equal(roster, "{}{}");
        free(roster);
        s->error = PAIR_ERR_NAME_TAKEN; /* an error with a roster */
        assert_int_equal(
            pair_priv_decode(buf, raw(buf, 1, PAIR_PRIV_SIGNED, sizeof(*s) + 4, s, sizeof(*s) + 4),
                             &type, &m, &roster, err, sizeof(err)),
            -EBADMSG);
        free(s);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_malformed_refused, setup, teardown),
            cmocka_unit_test_setup_teardown(test_sign_once_then_apply, setup, teardown),
            cmocka_unit_test_setup_teardown(test_name_taken, setup, teardown),
            cmocka_unit_test_setup_teardown(test_rejoin_after_removal, setup, teardown),
            cmocka_unit_test(test_reply_lengths),
        };

        if (sodium_init() < 0)
                return 1;
        return cmocka_run_group_tests(tests, NULL, NULL);
}
