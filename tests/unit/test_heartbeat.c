/* Unit tests: the heartbeat codec (golden encoding, strict decoding, limits). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/heartbeat.h"

#define DIGEST "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static struct heartbeat sample_hb(void)
{
        struct heartbeat hb = {.epoch = 1795000000000ull,
                               .seq = 42,
                               .interval_ms = 10000,
                               .cpus = 2,
                               .cpu_percent = 12.5,
                               .mem_total_mib = 24000,
                               .mem_available_mib = 20000,
                               .mem_committed_mib = 1024,
                               .libvirt_age_ms = 150,
                               .vm_count = 1,
                               .creations = 7};

        strcpy(hb.node_id, "laptop-a");
        strcpy(hb.boot, "5a1e0c0ffee0b007");
        strcpy(hb.inventory_digest, DIGEST);
        return hb;
}

static char *read_golden(const char *name)
{
        char path[1024];
        static char buf[4096];
        FILE *f;
        size_t n;

        snprintf(path, sizeof(path), "%s/tests/golden/%s", TOTEBOX_SOURCE_DIR, name);
        f = fopen(path, "r");
        assert_non_null(f);
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        while (n > 0 && buf[n - 1] == '\n')
                buf[--n] = '\0';
        return buf;
}

static void test_encode_golden(void **state)
{
        struct heartbeat hb = sample_hb();
        char buf[HEARTBEAT_MAX_BYTES];
        int n = heartbeat_encode(&hb, buf, sizeof(buf));

        assert_true(n > 0);
        buf[n] = '\0';
        assert_string_equal(buf, read_golden("heartbeat.json"));
}

static void test_roundtrip(void **state)
{
        struct heartbeat hb = sample_hb(), out;
        char buf[HEARTBEAT_MAX_BYTES], err[256];
        int n = heartbeat_encode(&hb, buf, sizeof(buf));

        assert_int_equal(heartbeat_decode(buf, (size_t)n, &out, err, sizeof(err)), 0);
        assert_string_equal(out.node_id, "laptop-a");
        assert_int_equal(out.seq, 42);
        assert_int_equal(out.libvirt_age_ms, 150);
        assert_true(out.cpu_percent == 12.5);
        assert_string_equal(out.inventory_digest, DIGEST);
        assert_string_equal(out.boot, "5a1e0c0ffee0b007");
}

static void expect_reject(const char *text, const char *reason)
{
        struct heartbeat out;
        char err[256] = "";

        memset(&out, 0x5a, sizeof(out));
        assert_int_equal(heartbeat_decode(text, strlen(text), &out, err, sizeof(err)), -EINVAL);
        if (!strstr(err, reason))
                fail_msg("'%s' rejected with '%s', expected '%s'", text, err, reason);
        assert_int_equal(((unsigned char *)&out)[0], 0x5a); /* untouched on failure */
}

#define HB_PREFIX "{\"v\":1,\"node\":\"n1\",\"epoch\":1,\"seq\":1,\"interval_ms\":10000,\"cpus\":2,"
#define HB_MEM    "\"mem_total_mib\":100,\"mem_available_mib\":50,\"mem_committed_mib\":0,"
#define HB_TAIL0  "\"libvirt_age_ms\":-1,\"vm_count\":0,\"inventory_digest\":\"" DIGEST "\""
#define HB_TAIL   HB_TAIL0 ",\"creations\":0}"

static void test_strict_decoding(void **state)
{
        expect_reject("not json", "malformed JSON");
        expect_reject("[]", "expected a JSON object");
        expect_reject(HB_PREFIX "\"cpu_percent\":1," HB_MEM HB_TAIL "x", "malformed JSON");
        expect_reject(HB_PREFIX "\"cpu_percent\":101," HB_MEM HB_TAIL, "'cpu_percent' = 101");
        expect_reject(HB_PREFIX "\"cpu_percent\":\"1\"," HB_MEM HB_TAIL, "must be a number");
        expect_reject(HB_PREFIX "\"cpu_percent\":1,\"extra\":1," HB_MEM HB_TAIL,
                      "unknown field 'extra'");
        expect_reject(HB_PREFIX "\"cpu_percent\":1,\"mem_total_mib\":100,\"mem_available_mib\":"
                                "200,\"mem_committed_mib\":0," HB_TAIL,
                      "'mem_available_mib' = 200");
        expect_reject(HB_PREFIX "\"cpu_percent\":1," HB_MEM HB_TAIL0 "}", "'creations'");
        expect_reject(HB_PREFIX "\"cpu_percent\":1," HB_MEM HB_TAIL0 ",\"creations\":-1}",
                      "'creations'");
        expect_reject("{\"v\":1,\"node\":\"Bad Id\"}", "not a valid node id");
        expect_reject("{\"v\":1,\"node\":\"n1\",\"node\":\"n2\"}", "malformed JSON");
        expect_reject("{\"v\":[[[1]]]}", "nested deeper");
        expect_reject("{\"v\":1,\"node\":\"n1\",\"epoch\":1,\"boot\":\"ABCDEF0123456789\"}",
                      "'boot' is not 16 hex digits");
        expect_reject("{\"v\":1,\"node\":\"n1\",\"epoch\":1,\"boot\":\"0123\"}",
                      "'boot' is not 16 hex digits");
        expect_reject("{\"v\":1,\"node\":\"n1\",\"epoch\":1,\"boot\":7}", "'boot'");
}

static void expect_version_refused(const char *text, const char *reason)
{
        struct heartbeat out;
        char err[256] = "";

        assert_int_equal(heartbeat_decode(text, strlen(text), &out, err, sizeof(err)), -EPROTO);
        if (!strstr(err, reason))
                fail_msg("'%s' refused with '%s', expected '%s'", text, err, reason);
}

/* One version step either side is read (common/heartbeat.h): version N+1 with fields this build
 * does not know, as a newer vmhost sends it, is read by the fields it knows; N-1 (a 0.x vmhost's
 * heartbeat: version 1 without boot or disk_free_mib) is read as before; two steps away is
 * refused as a version, not as malformed, whatever else it holds. */
static void test_versions(void **state)
{
        static const char newer[] =
            "{\"v\":2,\"node\":\"n1\",\"epoch\":1,\"seq\":1,"
            "\"interval_ms\":10000,\"cpus\":2,\"cpu_percent\":1,"
            "\"gpu_percent\":7," HB_MEM HB_TAIL0 ",\"creations\":0,\"numa\":[1,2]}";
        static const char older[] = HB_PREFIX "\"cpu_percent\":1," HB_MEM HB_TAIL;
        struct heartbeat out;
        char err[256] = "";

        assert_int_equal(heartbeat_decode(newer, strlen(newer), &out, err, sizeof(err)), 0);
        assert_int_equal(out.version, 2);
        assert_int_equal(out.mem_available_mib, 50);
        assert_false(out.disk_known);
        assert_int_equal(heartbeat_decode(older, strlen(older), &out, err, sizeof(err)), 0);
        assert_int_equal(out.version, 1);
        /* a newer version's known fields keep their bounds */
        expect_reject("{\"v\":2,\"node\":\"n1\",\"epoch\":0}", "'epoch'");
        expect_version_refused("{\"v\":3,\"node\":\"n1\",\"future\":1}",
                               "heartbeat version 3 is outside the versions 1..2");
        expect_version_refused("{\"v\":0}", "version 0 is outside");
}

/* boot is optional: a sender without one (older vmhost, test tools) still decodes */
static void test_boot_optional(void **state)
{
        static const char text[] = HB_PREFIX "\"cpu_percent\":1," HB_MEM HB_TAIL;
        struct heartbeat hb = sample_hb(), out;
        char buf[HEARTBEAT_MAX_BYTES], err[256];
        int n;

        assert_int_equal(heartbeat_decode(text, strlen(text), &out, err, sizeof(err)), 0);
        assert_string_equal(out.boot, "");
        hb.boot[0] = '\0';
        n = heartbeat_encode(&hb, buf, sizeof(buf));
        assert_true(n > 0);
        buf[n] = '\0';
        assert_null(strstr(buf, "boot"));
}

static void test_oversized_refused(void **state)
{
        char big[HEARTBEAT_MAX_BYTES + 10];
        struct heartbeat out;
        char err[128];

        memset(big, ' ', sizeof(big));
        big[0] = '{';
        big[sizeof(big) - 1] = '}';
        assert_int_equal(heartbeat_decode(big, sizeof(big), &out, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "exceeds the limit"));
}

static void test_encode_refuses_bad_fields(void **state)
{
        struct heartbeat hb = sample_hb();
        char buf[HEARTBEAT_MAX_BYTES];

        strcpy(hb.node_id, "UPPER");
        assert_int_equal(heartbeat_encode(&hb, buf, sizeof(buf)), -EINVAL);
        hb = sample_hb();
        hb.inventory_digest[3] = 'x';
        assert_int_equal(heartbeat_encode(&hb, buf, sizeof(buf)), -EINVAL);
        hb = sample_hb();
        strcpy(hb.boot, "0123");
        assert_int_equal(heartbeat_encode(&hb, buf, sizeof(buf)), -EINVAL);
        hb = sample_hb();
        assert_int_equal(heartbeat_encode(&hb, buf, 20), -EMSGSIZE);
}

static void test_node_id_rules(void **state)
{
        assert_true(ident_valid(IDENT_NODE, "laptop-a"));
        assert_true(ident_valid(IDENT_NODE, "n1"));
        assert_false(ident_valid(IDENT_NODE, ""));
        assert_false(ident_valid(IDENT_NODE, "-a"));
        assert_false(ident_valid(IDENT_NODE, "a_b"));
        assert_false(ident_valid(
            IDENT_NODE, "0123456789012345678901234567890123456789012345678901234567890123"));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_encode_golden),
            cmocka_unit_test(test_roundtrip),
            cmocka_unit_test(test_strict_decoding),
            cmocka_unit_test(test_boot_optional),
            cmocka_unit_test(test_versions),
            cmocka_unit_test(test_oversized_refused),
            cmocka_unit_test(test_encode_refuses_bad_fields),
            cmocka_unit_test(test_node_id_rules),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
