/* Unit tests: roster parsing, address lookup, canonical form and genesis signatures. */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/roster.h"

#define ROSTER3                                                                                    \
        "{\"v\":1,\"version\":3,\"fleet_id\":\"fleet\",\"controller\":\"cloud\",\"nodes\":["       \
        "{\"id\":\"laptop-a\",\"role\":\"node\",\"mesh_address\":\"10.77.0.1\"},"                  \
        "{\"id\":\"laptop-b\",\"role\":\"relay\",\"mesh_address\":\"10.77.0.2\"},"                 \
        "{\"id\":\"cloud\",\"role\":\"cloud\",\"mesh_address\":\"10.77.0.3\","                     \
        "\"endpoint\":\"192.0.2.1:51820\"}]}"

static struct roster *parse(const char *text, char *err)
{
        return roster_parse(text, strlen(text), err, 256);
}

static void test_parse_and_lookup(void **state)
{
        char err[256];
        struct roster *r = parse(ROSTER3, err);
        struct in_addr a;

        assert_non_null(r);
        assert_int_equal(r->version, 3);
        assert_int_equal(r->n_nodes, 3);
        inet_pton(AF_INET, "10.77.0.2", &a);
        assert_string_equal(roster_find_by_address(r, a)->id, "laptop-b");
        inet_pton(AF_INET, "10.77.0.9", &a);
        assert_null(roster_find_by_address(r, a));
        assert_int_equal(roster_find_by_id(r, "cloud")->role, ROSTER_ROLE_CLOUD);
        assert_string_equal(roster_find_by_id(r, "laptop-a")->name, "laptop-a");
        roster_free(r);
}

static void expect_bad(const char *text, const char *reason)
{
        char err[256] = "";

        assert_null(parse(text, err));
        if (!strstr(err, reason))
                fail_msg("rejected with '%s', expected '%s'", err, reason);
}

static void test_rejects(void **state)
{
        expect_bad("{\"v\":1,\"version\":1,\"fleet_id\":\"f\",\"controller\":\"x\",\"nodes\":[]}",
                   "controller 'x' is not a node");
        expect_bad("{\"v\":1,\"version\":1,\"fleet_id\":\"f\",\"controller\":\"a\",\"nodes\":["
                   "{\"id\":\"a\",\"role\":\"node\",\"mesh_address\":\"10.0.0.1\"},"
                   "{\"id\":\"a\",\"role\":\"node\",\"mesh_address\":\"10.0.0.2\"}]}",
                   "appears twice");
        expect_bad("{\"v\":1,\"version\":1,\"fleet_id\":\"f\",\"controller\":\"a\",\"nodes\":["
                   "{\"id\":\"a\",\"role\":\"node\",\"mesh_address\":\"10.0.0.1\"},"
                   "{\"id\":\"b\",\"role\":\"node\",\"mesh_address\":\"10.0.0.1\"}]}",
                   "mesh address '10.0.0.1' appears twice");
        expect_bad("{\"v\":1,\"version\":1,\"fleet_id\":\"f\",\"controller\":\"a\",\"nodes\":["
                   "{\"id\":\"a\",\"role\":\"king\",\"mesh_address\":\"10.0.0.1\"}]}",
                   "unknown role 'king'");
        expect_bad("{\"v\":1,\"version\":1,\"fleet_id\":\"f\",\"controller\":\"a\",\"nodes\":["
                   "{\"id\":\"a\",\"role\":\"node\",\"mesh_address\":\"10.0.0.1\","
                   "\"endpoint\":\"2001:db8::1:51820\"}]}",
                   "not IPV4:PORT, [IPV6]:PORT or HOSTNAME:PORT");
        expect_bad("{\"v\":1,\"version\":1,\"fleet_id\":\"f\",\"controller\":\"a\",\"nodes\":["
                   "{\"id\":\"a\",\"role\":\"node\",\"mesh_address\":\"10.0.0.300\"}]}",
                   "invalid mesh_address");
        expect_bad("{\"v\":1,\"version\":0,\"fleet_id\":\"f\",\"controller\":\"a\",\"nodes\":[]}",
                   "'version' = 0");
        expect_bad("{\"v\":1,\"version\":1,\"fleet_id\":\"f\",\"controller\":\"a\",\"nodes\":{}}",
                   "'nodes' must be an array");
        expect_bad("{\"v\":1,\"version\":1,\"fleet_id\":\"f\",\"controller\":\"a\",\"extra\":1,"
                   "\"nodes\":[]}",
                   "unknown field 'extra'");
        expect_bad("{\"v\":1,\"version\":1,\"fleet_id\":\"f\",\"controller\":\"a\",\"nodes\":[],"
                   "\"signature\":\"not base64!\"}",
                   "not a base64 Ed25519 signature");
}

static void test_sign_verify(void **state)
{
        uint8_t pk[32], sk[64], other_pk[32], other_sk[64];
        char err[256], *text;
        struct roster *r = parse(ROSTER3, err), *again;
        json_t *o;

        assert_int_equal(sodium_init() >= 0, 1);
        crypto_sign_keypair(pk, sk);
        crypto_sign_keypair(other_pk, other_sk);
        assert_int_equal(roster_verify(r, pk), -ENOKEY);
        assert_int_equal(roster_sign(r, sk), 0);
        assert_int_equal(roster_verify(r, pk), 0);
        assert_int_equal(roster_verify(r, other_pk), -EBADMSG);

        /* serialise, parse back: the signature still holds; a changed field breaks it */
        o = roster_to_json(r);
        text = json_dumps(o, JSON_COMPACT);
        again = parse(text, err);
        assert_non_null(again);
        assert_int_equal(roster_verify(again, pk), 0);
        again->version = 4;
        assert_int_equal(roster_verify(again, pk), -EBADMSG);
        free(text);
        json_decref(o);
        roster_free(again);
        roster_free(r);
}

#define ROSTER_REVOKED                                                                             \
        "{\"v\":1,\"version\":4,\"fleet_id\":\"fleet\",\"controller\":\"cloud\",\"nodes\":["       \
        "{\"id\":\"laptop-a\",\"role\":\"node\",\"mesh_address\":\"10.77.0.1\"},"                  \
        "{\"id\":\"cloud\",\"role\":\"cloud\",\"mesh_address\":\"10.77.0.3\"}],"                   \
        "\"revoked\":[{\"id\":\"laptop-b\",\"wg_public_key\":\"\",\"mesh_address\":\"10.77.0.2\"}" \
        "]}"

/* A removed node: found by id and by address, not a member; the list is signed with the rest
 * and left out of the canonical form when empty (older rosters verify unchanged). */
static void test_revoked(void **state)
{
        uint8_t pk[32], sk[64];
        char err[256] = "", *canon;
        struct roster *r = parse(ROSTER_REVOKED, err), *plain = parse(ROSTER3, err);
        struct in_addr a;

        assert_non_null(r);
        assert_non_null(plain);
        assert_int_equal(r->n_revoked, 1);
        inet_pton(AF_INET, "10.77.0.2", &a);
        assert_null(roster_find_by_address(r, a));
        assert_null(roster_find_by_id(r, "laptop-b"));
        assert_string_equal(roster_find_revoked_by_address(r, a)->id, "laptop-b");
        assert_string_equal(roster_find_revoked(r, "laptop-b")->mesh_address, "10.77.0.2");
        assert_null(roster_find_revoked(r, "laptop-a"));
        canon = roster_canonical(plain);
        assert_null(strstr(canon, "revoked"));
        free(canon);
        assert_int_equal(sodium_init() >= 0, 1);
        crypto_sign_keypair(pk, sk);
        assert_int_equal(roster_sign(r, sk), 0);
        assert_int_equal(roster_verify(r, pk), 0);
        r->n_revoked = 0; /* dropping the entry (re-admitting the node) breaks the signature */
        assert_int_equal(roster_verify(r, pk), -EBADMSG);
        r->n_revoked = 1;
        roster_free(r);
        roster_free(plain);
}

static void test_revoked_rejects(void **state)
{
#define HEAD                                                                                       \
        "{\"v\":1,\"version\":2,\"fleet_id\":\"f\",\"controller\":\"a\",\"nodes\":["               \
        "{\"id\":\"a\",\"role\":\"node\",\"mesh_address\":\"10.0.0.1\"}],"
        expect_bad(HEAD "\"revoked\":[{\"id\":\"a\",\"mesh_address\":\"10.0.0.9\"}]}",
                   "revoked node 'a' is a member or revoked twice");
        expect_bad(HEAD "\"revoked\":[{\"id\":\"b\",\"mesh_address\":\"10.0.0.1\"}]}",
                   "revoked node 'b' has a member's address '10.0.0.1'");
        expect_bad(HEAD "\"revoked\":[{\"id\":\"b\",\"mesh_address\":\"10.0.0.2\"},"
                        "{\"id\":\"b\",\"mesh_address\":\"10.0.0.3\"}]}",
                   "revoked node 'b' is a member or revoked twice");
        expect_bad(HEAD "\"revoked\":[{\"id\":\"b\",\"mesh_address\":\"10.0.0.2\",\"x\":1}]}",
                   "unknown field 'x'");
        expect_bad(HEAD "\"revoked\":[{\"id\":\"b\",\"mesh_address\":\"nowhere\"}]}",
                   "revoked node 'b' has invalid mesh_address");
        expect_bad(HEAD "\"revoked\":[{\"id\":\"../b\",\"mesh_address\":\"10.0.0.2\"}]}",
                   "revoked node id '../b' is not valid");
        expect_bad(HEAD "\"revoked\":{}}", "field 'revoked' must be an array");
#undef HEAD
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_parse_and_lookup), cmocka_unit_test(test_rejects),
            cmocka_unit_test(test_sign_verify),      cmocka_unit_test(test_revoked),
            cmocka_unit_test(test_revoked_rejects),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
