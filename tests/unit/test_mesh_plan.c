/* The relay-as-hub topology: who peers with whom, which allowed IPs go where, keepalives. */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include <sodium.h>

#include "common/mesh.h"

static char keys[5][WG_KEY_B64_SIZE];

/* Nodes: g (genesis, endpoint), r (relay, endpoint), c (cloud, endpoint), a and b (laptops
 * behind NAT, no endpoint). */
static struct roster *make_roster(bool with_relay)
{
        char buf[4096];
        int n;

        n = snprintf(buf, sizeof(buf),
                     "{\"v\":1,\"version\":3,\"fleet_id\":\"f1\",\"controller\":\"c\","
                     "\"genesis_public_key\":\"\",\"nodes\":["
                     "{\"id\":\"g\",\"role\":\"node\",\"wg_public_key\":\"%s\","
                     "\"mesh_address\":\"10.77.0.1\",\"endpoint\":\"192.0.2.1:51820\"},"
                     "{\"id\":\"r\",\"role\":\"%s\",\"wg_public_key\":\"%s\","
                     "\"mesh_address\":\"10.77.0.2\",\"endpoint\":\"%s\"},"
                     "{\"id\":\"c\",\"role\":\"cloud\",\"wg_public_key\":\"%s\","
                     "\"mesh_address\":\"10.77.0.3\",\"endpoint\":\"192.0.2.3:51820\"},"
                     "{\"id\":\"a\",\"role\":\"node\",\"wg_public_key\":\"%s\","
                     "\"mesh_address\":\"10.77.0.4\",\"endpoint\":\"\"},"
                     "{\"id\":\"b\",\"role\":\"node\",\"wg_public_key\":\"%s\","
                     "\"mesh_address\":\"10.77.0.5\",\"endpoint\":\"\"}]}",
                     keys[0], with_relay ? "relay" : "node", keys[1],
                     with_relay ? "192.0.2.2:51820" : "", keys[2], keys[3], keys[4]);
        return roster_parse(buf, (size_t)n, NULL, 0);
}

static int setup(void **state)
{
        uint8_t priv[WG_KEY_LEN], pub[WG_KEY_LEN];

        assert_int_equal(sodium_init() < 0, 0);
        for (int i = 0; i < 5; i++) {
                wg_key_generate_private(priv);
                wg_key_public_from_private(pub, priv);
                wg_key_to_base64(keys[i], pub);
        }
        return 0;
}

static const struct wg_peer *peer_of(const struct wg_device *d, int k)
{
        uint8_t pub[WG_KEY_LEN];

        wg_key_from_base64(pub, keys[k]);
        for (size_t i = 0; i < d->n_peers; i++) {
                if (memcmp(d->peers[i].public_key, pub, WG_KEY_LEN) == 0)
                        return &d->peers[i];
        }
        return NULL;
}

static void test_reachable_node(void **state)
{
        struct roster *r = make_roster(true);
        struct wg_device *d = wg_device_new("wgt");

        assert_non_null(r);
        assert_int_equal(mesh_plan_peers(r, "g", d), 0);
        assert_int_equal(d->n_peers, 4); /* everyone: g has an endpoint */
        assert_int_equal(peer_of(d, 3)->n_allowed_ips, 1);
        assert_false(peer_of(d, 3)->has_endpoint);
        assert_int_equal(peer_of(d, 1)->keepalive_s, 0);
        wg_device_free(d);
        roster_free(r);
}

static void test_nat_node_uses_hub(void **state)
{
        struct roster *r = make_roster(true);
        struct wg_device *d = wg_device_new("wgt");
        const struct wg_peer *hub;

        assert_int_equal(mesh_plan_peers(r, "a", d), 0);
        assert_int_equal(d->n_peers, 3); /* g, r, c direct; b through r */
        assert_null(peer_of(d, 4));
        hub = peer_of(d, 1);
        assert_int_equal(hub->n_allowed_ips, 2);
        assert_int_equal(hub->allowed_ips[1].addr.s_addr, inet_addr("10.77.0.5"));
        assert_int_equal(hub->keepalive_s, MESH_KEEPALIVE_S);
        assert_int_equal(peer_of(d, 0)->keepalive_s, MESH_KEEPALIVE_S);
        wg_device_free(d);
        roster_free(r);
}

static void test_hub_without_relay_is_controller(void **state)
{
        struct roster *r = make_roster(false);
        struct wg_device *d = wg_device_new("wgt");

        assert_string_equal(mesh_hub(r)->id, "c");
        assert_int_equal(mesh_plan_peers(r, "a", d), 0);
        assert_int_equal(peer_of(d, 2)->n_allowed_ips, 3); /* c, r and b */
        assert_null(peer_of(d, 1));                        /* r has no endpoint either: through c */
        wg_device_free(d);
        d = wg_device_new("wgt");
        assert_int_equal(mesh_plan_peers(r, "c", d), 0);
        assert_int_equal(d->n_peers, 4); /* the hub peers with everyone */
        wg_device_free(d);
        roster_free(r);
}

static void test_unknown_self(void **state)
{
        struct roster *r = make_roster(true);
        struct wg_device *d = wg_device_new("wgt");

        assert_int_equal(mesh_plan_peers(r, "zz", d), -ENOENT);
        wg_device_free(d);
        roster_free(r);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_reachable_node),
            cmocka_unit_test(test_nat_node_uses_hub),
            cmocka_unit_test(test_hub_without_relay_is_controller),
            cmocka_unit_test(test_unknown_self),
        };

        return cmocka_run_group_tests(tests, setup, NULL);
}
