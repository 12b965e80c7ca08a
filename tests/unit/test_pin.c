/* Unit tests: the pin codec and its verification, played as the adversary who holds a node's
 * root account: another key, another node, another WireGuard key, an edited field, a truncated
 * or flipped signature, a valid pin of another VM, a pin signed as a roster, an unsigned pin;
 * the roster field that publishes the controller's key; and the pin in the domain metadata. */
#include <errno.h>
#include <setjmp.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/pin.h"
#include "vmhost/vmhost.h"

#define WG_A "JHR0dMmP+2aDSCiGnJ3VmXmIxSNjSqN3qMm6XuZW9RM="
#define WG_B "sbl+yj4UhuqVlf0f8Uz9jXEsySoH5QcTuUP8aoUGyRs="

static uint8_t pk[32], sk[64], other_pk[32], other_sk[64];

static int setup(void **state)
{
        if (sodium_init() < 0)
                return -1;
        crypto_sign_keypair(pk, sk);
        crypto_sign_keypair(other_pk, other_sk);
        return 0;
}

static struct pin make_pin(const char *vm_id, const char *node, const char *wg)
{
        struct pin p = {0};

        snprintf(p.fleet_id, sizeof(p.fleet_id), "fleet-1");
        snprintf(p.vm_id, sizeof(p.vm_id), "%s", vm_id);
        snprintf(p.node_id, sizeof(p.node_id), "%s", node);
        snprintf(p.node_wg_key, sizeof(p.node_wg_key), "%s", wg);
        snprintf(p.entity, sizeof(p.entity), "acme-co");
        snprintf(p.image, sizeof(p.image), "test");
        snprintf(p.request_id, sizeof(p.request_id), "0123456789abcdef0123456789abcdef");
        assert_int_equal(pin_sign(&p, sk), 0);
        return p;
}

static const struct pin_expect expect_a = {.fleet_id = "fleet-1",
                                           .vm_id = "vm-a",
                                           .node_id = "node-a",
                                           .node_wg_key = WG_A,
                                           .entity = "acme-co",
                                           .image = "test"};

/* Formats, parses back, and checks: what vmhost does with the metadata attribute. */
static enum pin_verdict check_text(const char *text, const uint8_t *key, const struct pin_expect *e)
{
        struct pin p;

        if (pin_parse(text, strlen(text), &p, NULL, 0) < 0)
                return PIN_MISSING; /* vmhost treats an unparsable pin as none */
        return pin_check(&p, key, e);
}

static void test_round_trip(void **state)
{
        struct pin p = make_pin("vm-a", "node-a", WG_A), q;
        char *text = pin_format(&p), err[256];

        assert_non_null(text);
        assert_int_equal(pin_parse(text, strlen(text), &q, err, sizeof(err)), 0);
        assert_memory_equal(&p, &q, sizeof(p));
        assert_int_equal(pin_check(&q, pk, &expect_a), PIN_OK);
        /* signing is deterministic: a retried dispatch carries the same pin */
        struct pin again = make_pin("vm-a", "node-a", WG_A);
        assert_memory_equal(again.signature, p.signature, 64);
        free(text);
}

static void test_wrong_key_node_wg(void **state)
{
        struct pin p = make_pin("vm-a", "node-a", WG_A);
        struct pin_expect e = expect_a;

        assert_int_equal(pin_check(&p, other_pk, &expect_a), PIN_BAD_SIGNATURE);
        assert_int_equal(pin_check(&p, NULL, &expect_a), PIN_NO_KEY);
        e.node_id = "node-b";
        assert_int_equal(pin_check(&p, pk, &e), PIN_OTHER_NODE);
        e = expect_a;
        e.node_wg_key = WG_B; /* a node that took node-a's id, not its WireGuard key */
        assert_int_equal(pin_check(&p, pk, &e), PIN_OTHER_WG_KEY);
        e = expect_a;
        e.fleet_id = "fleet-2";
        assert_int_equal(pin_check(&p, pk, &e), PIN_OTHER_FLEET);
        e = expect_a;
        e.entity = "other";
        assert_int_equal(pin_check(&p, pk, &e), PIN_OTHER_ENTITY);
        e = expect_a;
        e.image = "other";
        assert_int_equal(pin_check(&p, pk, &e), PIN_OTHER_IMAGE);
        /* a pin signed by another key (the attacker's own) for the right node */
        struct pin forged = make_pin("vm-a", "node-a", WG_A);
        assert_int_equal(pin_sign(&forged, other_sk), 0);
        assert_int_equal(pin_check(&forged, pk, &expect_a), PIN_BAD_SIGNATURE);
}

/* Every field edited in the JSON text, the signature kept: each one breaks the signature. */
static void test_edited_fields(void **state)
{
        static const char *const edits[][2] = {
            {"\"node_id\":\"node-a\"", "\"node_id\":\"node-b\""},
            {"\"vm_id\":\"vm-a\"", "\"vm_id\":\"vm-b\""},
            {"\"fleet_id\":\"fleet-1\"", "\"fleet_id\":\"fleet-2\""},
            {WG_A, WG_B},
            {"\"image\":\"test\"", "\"image\":\"tesu\""},
            {"acme-co", "acne-co"},
            {"0123456789abcdef0123", "f123456789abcdef0123"},
        };
        struct pin p = make_pin("vm-a", "node-a", WG_A);
        char *text = pin_format(&p);
        unsigned n = 0;

        for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
                char buf[PIN_MAX_BYTES];
                const char *at = strstr(text, edits[i][0]);
                struct pin q;
                struct pin_expect e = {0}; /* no field expectations: the signature alone */

                assert_non_null(at);
                snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(at - text), text, edits[i][1],
                         at + strlen(edits[i][0]));
                assert_int_equal(pin_parse(buf, strlen(buf), &q, NULL, 0), 0);
                assert_int_equal(pin_check(&q, pk, &e), PIN_BAD_SIGNATURE);
                n++;
        }
        assert_int_equal(n, 7);
        free(text);
}

static void test_truncated_and_flipped_signature(void **state)
{
        struct pin p = make_pin("vm-a", "node-a", WG_A);
        char *text = pin_format(&p), buf[PIN_MAX_BYTES];
        char *sig = strstr(text, "\"signature\":\"") + 13;
        char *end = strchr(sig, '"');

        /* truncated by 4 base64 characters: no longer 64 bytes, refused by the parser */
        snprintf(buf, sizeof(buf), "%.*s%s", (int)(end - 4 - text), text, end);
        assert_int_equal(check_text(buf, pk, &expect_a), PIN_MISSING);
        /* truncated to nothing */
        snprintf(buf, sizeof(buf), "%.*s%s", (int)(sig - text), text, end);
        assert_int_equal(check_text(buf, pk, &expect_a), PIN_MISSING);
        /* one signature bit flipped */
        p.signature[17] ^= 0x01;
        assert_int_equal(pin_check(&p, pk, &expect_a), PIN_BAD_SIGNATURE);
        /* no signature at all */
        p.signed_ = false;
        assert_int_equal(pin_check(&p, pk, &expect_a), PIN_UNSIGNED);
        assert_int_equal(pin_check(NULL, pk, &expect_a), PIN_MISSING);
        free(text);
}

/* A valid pin of another VM on the same node, spliced into this VM's metadata. */
static void test_replayed_pin_of_another_vm(void **state)
{
        struct pin other = make_pin("vm-b", "node-a", WG_A);
        char *text = pin_format(&other);

        assert_int_equal(check_text(text, pk, &expect_a), PIN_OTHER_VM);
        free(text);
}

/* The signature covers the domain string: the same canonical JSON signed bare (as a roster
 * is) does not verify as a pin. */
static void test_domain_separation(void **state)
{
        struct pin p = make_pin("vm-a", "node-a", WG_A);
        size_t len = 0;
        char *msg = pin_message(&p, &len);
        const char *bare = msg + strlen(PIN_DOMAIN);

        assert_memory_equal(msg, PIN_DOMAIN, strlen(PIN_DOMAIN));
        crypto_sign_detached(p.signature, NULL, (const uint8_t *)bare, strlen(bare), sk);
        assert_int_equal(pin_check(&p, pk, &expect_a), PIN_BAD_SIGNATURE);
        free(msg);
}

static void test_strict_parse(void **state)
{
        struct pin p = make_pin("vm-a", "node-a", WG_A), q;
        char *text = pin_format(&p), buf[PIN_MAX_BYTES * 2];
        static const char *const bad[] = {
            "[]",
            "{}",
            "{\"v\":2,\"fleet_id\":\"f\",\"vm_id\":\"v\",\"node_id\":\"n\",\"node_wg_key\":\"" WG_A
            "\",\"entity\":\"e\",\"image\":\"i\",\"request_id\":\"r\"}",
            "{\"v\":1,\"fleet_id\":\"F\",\"vm_id\":\"v\",\"node_id\":\"n\",\"node_wg_key\":\"" WG_A
            "\",\"entity\":\"e\",\"image\":\"i\",\"request_id\":\"r\"}",
            "{\"v\":1,\"fleet_id\":\"f\",\"vm_id\":\"v\",\"node_id\":\"n\",\"node_wg_key\":\"abc\","
            "\"entity\":\"e\",\"image\":\"i\",\"request_id\":\"r\"}",
            "{\"v\":1,\"fleet_id\":\"f\",\"vm_id\":\"v\",\"node_id\":\"n\",\"node_wg_key\":\"" WG_A
            "\",\"entity\":\"\",\"image\":\"i\",\"request_id\":\"r\"}",
            "{\"v\":1,\"v\":1,\"fleet_id\":\"f\",\"vm_id\":\"v\",\"node_id\":\"n\",\"node_wg_key\":"
            "\"" WG_A "\",\"entity\":\"e\",\"image\":\"i\",\"request_id\":\"r\"}",
        };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_equal(pin_parse(bad[i], strlen(bad[i]), &q, NULL, 0), -EINVAL);
        /* an unknown field */
        snprintf(buf, sizeof(buf), "{\"extra\":1,%s", text + 1);
        assert_int_equal(pin_parse(buf, strlen(buf), &q, NULL, 0), -EINVAL);
        /* over the size limit */
        memset(buf, ' ', sizeof(buf));
        memcpy(buf, text, strlen(text));
        assert_int_equal(pin_parse(buf, sizeof(buf), &q, NULL, 0), -EINVAL);
        free(text);
}

#define ROSTER_BASE                                                                                \
        "{\"v\":1,\"version\":2,\"fleet_id\":\"fleet-1\",\"controller\":\"node-a\",\"nodes\":["    \
        "{\"id\":\"node-a\",\"role\":\"cloud\",\"mesh_address\":\"10.77.0.1\"}]"

static void test_roster_controller_key(void **state)
{
        char err[256], b64[WG_KEY_B64_LEN + 1], text[1024];
        struct roster *legacy = roster_parse(ROSTER_BASE "}", strlen(ROSTER_BASE "}"), err, 256);
        struct roster *r;
        char *canon = roster_canonical(legacy);
        uint8_t got[32];

        /* a roster without the field: its canonical form has no such key, so old signatures
         * verify unchanged, and it names no pin key */
        assert_null(strstr(canon, "controller_pin_key"));
        assert_int_equal(pin_roster_key(legacy, got), -ENOKEY);
        free(canon);
        sodium_bin2base64(b64, sizeof(b64), pk, 32, sodium_base64_VARIANT_ORIGINAL);
        snprintf(text, sizeof(text), ROSTER_BASE ",\"controller_pin_key\":\"%s\"}", b64);
        r = roster_parse(text, strlen(text), err, sizeof(err));
        assert_non_null(r);
        assert_int_equal(pin_roster_key(r, got), 0);
        assert_memory_equal(got, pk, 32);
        /* the key is signed with the rest: replacing it breaks the genesis signature */
        assert_int_equal(roster_sign(r, other_sk), 0);
        assert_int_equal(roster_verify(r, other_pk), 0);
        sodium_bin2base64(r->controller_pin_key, sizeof(r->controller_pin_key), other_pk, 32,
                          sodium_base64_VARIANT_ORIGINAL);
        assert_int_equal(roster_verify(r, other_pk), -EBADMSG);
        roster_free(r);
        roster_free(legacy);
}

/* The metadata element carries the pin; an edited or broken pin attribute leaves the domain
 * listed (vm_meta_parse succeeds) but marked, so the gate refuses it and fleetd still sees it. */
static void test_metadata_attribute(void **state)
{
        struct vm_meta m = {.lifecycle = VM_LC_ACTIVE}, back;
        char *xml, *at, buf[8192];

        snprintf(m.fleet_id, sizeof(m.fleet_id), "fleet-1");
        snprintf(m.node_id, sizeof(m.node_id), "node-a");
        snprintf(m.entity, sizeof(m.entity), "acme-co");
        snprintf(m.request_id, sizeof(m.request_id), "r1");
        snprintf(m.image, sizeof(m.image), "test");
        m.has_pin = true;
        m.pin = make_pin("vm-a", "node-a", WG_A);
        xml = vm_meta_format(&m);
        assert_non_null(xml);
        assert_int_equal(vm_meta_parse(xml, strlen(xml), &back), 0);
        assert_true(back.has_pin);
        assert_false(back.pin_bad);
        assert_memory_equal(&back.pin, &m.pin, sizeof(m.pin));
        assert_int_equal(pin_check(&back.pin, pk, &expect_a), PIN_OK);
        /* the signature cut short inside the attribute */
        at = strstr(xml, "signature&quot;:&quot;");
        assert_non_null(at);
        snprintf(buf, sizeof(buf), "%.*s%s", (int)(at - xml) + 22, xml, at + 30);
        assert_int_equal(vm_meta_parse(buf, strlen(buf), &back), 0);
        assert_false(back.has_pin);
        assert_true(back.pin_bad);
        /* no pin attribute at all: a legacy domain */
        m.has_pin = false;
        free(xml);
        xml = vm_meta_format(&m);
        assert_int_equal(vm_meta_parse(xml, strlen(xml), &back), 0);
        assert_false(back.has_pin);
        assert_false(back.pin_bad);
        free(xml);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_round_trip),
            cmocka_unit_test(test_wrong_key_node_wg),
            cmocka_unit_test(test_edited_fields),
            cmocka_unit_test(test_truncated_and_flipped_signature),
            cmocka_unit_test(test_replayed_pin_of_another_vm),
            cmocka_unit_test(test_domain_separation),
            cmocka_unit_test(test_strict_parse),
            cmocka_unit_test(test_roster_controller_key),
            cmocka_unit_test(test_metadata_attribute),
        };

        return cmocka_run_group_tests(tests, setup, NULL);
}
