/* mesh_roster_update(), what vmhost's POST /v1/roster calls: malformed bodies, foreign
 * signatures and stale versions are refused before anything is stored; a good roster is stored
 * even when the interface is missing (and that is reported). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <sodium.h>

#include "common/mesh.h"

static char *body_for(uint64_t version, const uint8_t sk[64])
{
        char buf[512];
        int n = snprintf(buf, sizeof(buf),
                         "{\"v\":1,\"version\":%llu,\"fleet_id\":\"f\",\"controller\":\"g\","
                         "\"nodes\":[{\"id\":\"g\",\"role\":\"node\",\"mesh_address\":"
                         "\"10.77.0.1\"}]}",
                         (unsigned long long)version);
        struct roster *r = roster_parse(buf, (size_t)n, NULL, 0);
        json_t *o;
        char *s;

        assert_non_null(r);
        roster_sign(r, sk);
        o = roster_to_json(r);
        s = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        roster_free(r);
        return s;
}

static void test_update(void **state)
{
        char dir[] = "/tmp/test_mesh_roster.XXXXXX", path[128], b64[64], err[256];
        uint8_t pk[32], sk[64], pk2[32], sk2[64];
        char *b;
        FILE *f;

        assert_non_null(mkdtemp(dir));
        crypto_sign_keypair(pk, sk);
        crypto_sign_keypair(pk2, sk2);
        b = body_for(2, sk);
        assert_int_equal(mesh_roster_update(dir, b, strlen(b), "tbnone0", "g", err, sizeof(err)),
                         -ENOKEY);
        snprintf(path, sizeof(path), "%s/genesis.pub", dir);
        f = fopen(path, "w");
        sodium_bin2base64(b64, sizeof(b64), pk, 32, sodium_base64_VARIANT_ORIGINAL);
        fprintf(f, "%s\n", b64);
        fclose(f);
        assert_int_equal(mesh_roster_update(dir, "{", 1, "tbnone0", "g", err, sizeof(err)),
                         -EINVAL);
        /* Stored, then the missing interface is reported. */
        assert_int_equal(mesh_roster_update(dir, b, strlen(b), "tbnone0", "g", err, sizeof(err)),
                         -ENODEV);
        assert_non_null(strstr(err, "stored but not applied"));
        assert_int_equal(mesh_roster_update(dir, b, strlen(b), "tbnone0", "g", err, sizeof(err)),
                         -ESTALE);
        free(b);
        b = body_for(9, sk2);
        assert_int_equal(mesh_roster_update(dir, b, strlen(b), "tbnone0", "g", err, sizeof(err)),
                         -EBADMSG);
        free(b);
        unlink(path);
        snprintf(path, sizeof(path), "%s/roster.json", dir);
        unlink(path);
        rmdir(dir);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_update),
        };

        if (sodium_init() < 0)
                return 1;
        return cmocka_run_group_tests(tests, NULL, NULL);
}
