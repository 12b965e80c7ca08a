/* vmhost: POST /v1/roster's verification (genesis signature, higher version only, stored under
 * state_dir) and the controller address the node API answers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/roster.h"
#include "vmhost/helper.h"
#include "vmhost/vmhost.h"

static uint8_t gpk[32], gsk[64], opk[32], osk[64];

static char *roster_text(uint64_t version, const uint8_t *sk)
{
        char err[256], *text;
        static const char base[] =
            "{\"v\":1,\"version\":1,\"fleet_id\":\"f\",\"controller\":\"n1\",\"nodes\":["
            "{\"id\":\"n1\",\"role\":\"cloud\",\"mesh_address\":\"10.77.0.1\"},"
            "{\"id\":\"n2\",\"role\":\"node\",\"mesh_address\":\"10.77.0.2\"}]}";
        struct roster *r = roster_parse(base, strlen(base), err, sizeof(err));
        json_t *j;

        assert_non_null(r);
        r->version = version;
        if (sk)
                assert_int_equal(roster_sign(r, sk), 0);
        j = roster_to_json(r);
        text = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        roster_free(r);
        return text;
}

static void store_text(const char *path, const char *text)
{
        FILE *f = fopen(path, "w");

        assert_non_null(f);
        assert_int_equal(fputs(text, f) >= 0, 1);
        assert_int_equal(fclose(f), 0);
}

static int apply(struct vmhost *vh, const char *text, struct vm_problem *p)
{
        json_t *ret = NULL;
        int r = roster_update_apply(vh, text, strlen(text), &ret, p);

        json_decref(ret);
        return r;
}

static void test_roster_push(void **state)
{
        static struct vmhost vh = {.ops_lock = PTHREAD_MUTEX_INITIALIZER,
                                   .state_lock = PTHREAD_MUTEX_INITIALIZER,
                                   .helper_lock = PTHREAD_MUTEX_INITIALIZER,
                                   .helper_fd = -1};
        char dir[] = "/tmp/tbx-roster-XXXXXX", path[128];
        char *v2 = roster_text(2, gsk), *v1 = roster_text(1, gsk), *forged = roster_text(3, osk);
        char *unsigned_ = roster_text(4, NULL);
        struct vm_problem p;

        assert_non_null(mkdtemp(dir));
        snprintf(vh.cfg.state_dir, sizeof(vh.cfg.state_dir), "%s", dir);
        assert_int_equal(apply(&vh, v2, &p), -ENOKEY); /* no genesis key configured */
        assert_string_equal(p.type, "no-genesis-key");
        sodium_bin2base64(vh.cfg.genesis_public_key, sizeof(vh.cfg.genesis_public_key), gpk, 32,
                          sodium_base64_VARIANT_ORIGINAL);
        assert_int_equal(apply(&vh, v2, &p), 0);
        assert_int_equal(vh.roster->version, 2);
        snprintf(path, sizeof(path), "%s/roster.json", dir);
        assert_int_equal(access(path, R_OK), 0);
        assert_true(roster_update_allowed(&vh, "10.77.0.1"));  /* the controller */
        assert_false(roster_update_allowed(&vh, "10.77.0.2")); /* a node, not the controller */
        assert_int_equal(apply(&vh, v1, &p), -ESTALE);
        assert_string_equal(p.type, "stale-roster");
        assert_int_equal(apply(&vh, v2, &p), -EALREADY); /* sent again: held, same answer */
        assert_string_equal(p.type, "stale-roster");
        assert_int_equal(apply(&vh, forged, &p), -EACCES);
        assert_string_equal(p.type, "bad-signature");
        assert_int_equal(apply(&vh, unsigned_, &p), -EACCES);
        assert_string_equal(p.type, "bad-signature");
        assert_int_equal(apply(&vh, "{\"v\":1}", &p), -EINVAL);
        assert_string_equal(p.type, "bad-roster");
        assert_int_equal(vh.roster->version, 2); /* nothing changed */
        /* With an interface configured, the roster goes to the helper process, which reads the
         * stored copy, checks it and calls mesh_apply_roster(): an interface that does not exist
         * is an error the caller reports (the roster stays stored). Without the helper: none. */
        snprintf(vh.cfg.wg_interface, sizeof(vh.cfg.wg_interface), "tbx-none0");
        assert_int_equal(roster_apply_wireguard(&vh, vh.roster), -ENOTCONN);
        assert_int_equal(vmh_start(&vh), 0);
        assert_int_equal(roster_apply_wireguard(&vh, vh.roster), -ENOENT);
        /* the helper trusts the stored file no more than the network: another version than
         * asked, or a copy not signed by the genesis key, is never applied */
        assert_int_equal(vmh_apply_peers(&vh, 3), -ESTALE);
        store_text(path, forged);
        assert_int_equal(vmh_apply_peers(&vh, 3), -EBADMSG);
        store_text(path, unsigned_);
        assert_int_equal(vmh_apply_peers(&vh, 4), -EBADMSG);
        vmh_stop(&vh);
        assert_int_equal(vmh_apply_peers(&vh, 2), -ENOTCONN);
        unlink(path);
        rmdir(dir);
        roster_free(vh.roster);
        free(v2), free(v1), free(forged), free(unsigned_);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_roster_push),
        };

        if (sodium_init() < 0)
                return 1;
        crypto_sign_keypair(gpk, gsk);
        crypto_sign_keypair(opk, osk);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
