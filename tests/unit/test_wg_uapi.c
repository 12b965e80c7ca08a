/* The wireguard-go backend's text protocol: the "set" request for a device, the streaming parser
 * of "get" replies (including hostile lines), and key files (0600, refused when readable by
 * others, base64 round trip). */
#include <arpa/inet.h>
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

#include "common/wg.h"

static void test_format_set(void **state)
{
        struct wg_device *d = wg_device_new("wgtest0");
        struct wg_peer *p;
        char *buf = NULL;
        size_t len = 0;

        d->has_private_key = true;
        memset(d->private_key, 0xab, WG_KEY_LEN);
        d->has_listen_port = true;
        d->listen_port = 51820;
        p = wg_device_add_peer(d);
        memset(p->public_key, 0x01, WG_KEY_LEN);
        wg_endpoint_parse("10.0.0.2:51820", &p->endpoint);
        p->has_endpoint = true;
        p->keepalive_s = 25;
        wg_peer_add_allowed_ip(p, (struct in_addr){htonl(0x0a4d0002)}, 32);
        p = wg_device_add_peer(d);
        memset(p->public_key, 0x02, WG_KEY_LEN);
        p->remove = true;
        assert_int_equal(wg_uapi_format_set(d, &buf, &len), 0);
        assert_string_equal(
            buf, "set=1\n"
                 "private_key=abababababababababababababababababababababababababababababababab\n"
                 "listen_port=51820\n"
                 "public_key=0101010101010101010101010101010101010101010101010101010101010101\n"
                 "endpoint=10.0.0.2:51820\n"
                 "persistent_keepalive_interval=25\n"
                 "replace_allowed_ips=true\n"
                 "allowed_ip=10.77.0.2/32\n"
                 "public_key=0202020202020202020202020202020202020202020202020202020202020202\n"
                 "remove=true\n"
                 "\n");
        assert_int_equal(strlen(buf), len);
        sodium_free(buf);
        wg_device_free(d);
}

static int feed(struct wg_uapi_parser *p, const char *text)
{
        const char *line = text;
        int ret = 0;

        while (*line && ret == 0) {
                const char *nl = strchr(line, '\n');

                ret = wg_uapi_parser_line(p, line, (size_t)(nl - line));
                line = nl + 1;
        }
        return ret;
}

static void test_parse_get(void **state)
{
        struct wg_device *d = wg_device_new("wgtest0");
        struct wg_uapi_parser p;

        wg_uapi_parser_init(&p, d);
        assert_int_equal(
            feed(&p,
                 "private_key=abababababababababababababababababababababababababababababababab\n"
                 "listen_port=51820\n"
                 "public_key=0101010101010101010101010101010101010101010101010101010101010101\n"
                 "endpoint=10.0.0.2:51820\n"
                 "last_handshake_time_sec=1700000001\n"
                 "last_handshake_time_nsec=5\n"
                 "rx_bytes=92\ntx_bytes=148\n"
                 "persistent_keepalive_interval=25\n"
                 "allowed_ip=10.77.0.2/32\nallowed_ip=fd00::1/128\n"
                 "protocol_version=1\n"
                 "errno=0\n\n"),
            0);
        assert_true(p.done);
        assert_int_equal(p.errno_value, 0);
        assert_true(d->has_public_key);
        assert_int_equal(d->listen_port, 51820);
        assert_int_equal(d->n_peers, 1);
        assert_int_equal(d->peers[0].last_handshake_sec, 1700000001);
        assert_int_equal(d->peers[0].rx_bytes, 92);
        assert_int_equal(d->peers[0].keepalive_s, 25);
        assert_int_equal(d->peers[0].n_allowed_ips, 1);
        assert_true(d->peers[0].has_endpoint);
        wg_device_free(d);
}

static void test_parse_hostile(void **state)
{
        static const char *const bad[] = {
            "listen_port=70000\n",
            "listen_port=-1\n",
            "endpoint=10.0.0.2:1\n", /* a peer key before any peer */
            "public_key=zz\n",
            "noequals\n",
            "=x\n",
            ("public_key=0101010101010101010101010101010101010101010101010101010101010101\n"
             "allowed_ip=10.77.0.2/33\n"), /* one entry: a peer, then its bad allowed IP */
            "errno=abc\n",
        };
        char longline[1024];

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct wg_device *d = wg_device_new("wgtest0");
                struct wg_uapi_parser p;

                wg_uapi_parser_init(&p, d);
                assert_int_equal(feed(&p, bad[i]), -EINVAL);
                wg_device_free(d);
        }
        memset(longline, 'a', sizeof(longline));
        {
                struct wg_device *d = wg_device_new("wgtest0");
                struct wg_uapi_parser p;

                wg_uapi_parser_init(&p, d);
                assert_int_equal(wg_uapi_parser_line(&p, longline, sizeof(longline)), -EINVAL);
                wg_device_free(d);
        }
}

static void test_keys(void **state)
{
        char dir[] = "/tmp/test_wg_uapi.XXXXXX", path[128], b64[WG_KEY_B64_SIZE];
        uint8_t k[WG_KEY_LEN], k2[WG_KEY_LEN], pub[WG_KEY_LEN];
        struct stat st;

        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/private.key", dir);
        wg_key_generate_private(k);
        assert_int_equal(k[0] & 7, 0);
        assert_int_equal(k[31] & 0xc0, 0x40);
        wg_key_public_from_private(pub, k);
        assert_int_equal(wg_key_save(path, k), 0);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        assert_int_equal(wg_key_load(path, k2), 0);
        assert_memory_equal(k, k2, WG_KEY_LEN);
        chmod(path, 0644);
        assert_int_equal(wg_key_load(path, k2), -EPERM);
        wg_key_to_base64(b64, pub);
        assert_int_equal(strlen(b64), 44);
        assert_int_equal(wg_key_from_base64(k2, b64), 0);
        assert_memory_equal(pub, k2, WG_KEY_LEN);
        assert_int_equal(wg_key_from_base64(k2, "short"), -EINVAL);
        unlink(path);
        rmdir(dir);
}

static void test_endpoint(void **state)
{
        static const char *const bad[] = {"10.0.0.1",
                                          "10.0.0.1:0",
                                          "10.0.0.1:65536",
                                          "host:1",
                                          ":1",
                                          "2001:db8::1:51820",
                                          "[2001:db8::1]",
                                          "[2001:db8::1:51820",
                                          "2001:db8::1]:51820",
                                          "[]:1",
                                          "[10.0.0.1]:1",
                                          "[fe80::1%eth0]:1",
                                          "[2001:db8::1]:",
                                          "[[::1]]:1",
                                          "[::1]x:1"};
        union wg_endpoint e;
        char out[WG_ENDPOINT_STR_SIZE];

        assert_int_equal(wg_endpoint_parse("10.0.0.1:51820", &e), 0);
        assert_int_equal(e.sa.sa_family, AF_INET);
        assert_int_equal(ntohs(e.in.sin_port), 51820);
        assert_int_equal(wg_endpoint_len(&e), sizeof(struct sockaddr_in));
        wg_endpoint_format(&e, out);
        assert_string_equal(out, "10.0.0.1:51820");
        assert_int_equal(wg_endpoint_parse("[2001:db8::1]:51820", &e), 0);
        assert_int_equal(e.sa.sa_family, AF_INET6);
        assert_int_equal(ntohs(e.in6.sin6_port), 51820);
        assert_int_equal(e.in6.sin6_addr.s6_addr[15], 1);
        assert_int_equal(wg_endpoint_len(&e), sizeof(struct sockaddr_in6));
        wg_endpoint_format(&e, out);
        assert_string_equal(out, "[2001:db8::1]:51820");
        assert_int_equal(wg_endpoint_parse("[::ffff:10.0.0.1]:1", &e), 0);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_equal(wg_endpoint_parse(bad[i], &e), -EINVAL);
        /* Resolving: literals as parsed (IPv6 too), malformed input and a bare IPv6 literal
         * refused with no lookup (a host name is resolved through /etc/hosts in
         * tests/integration/test_rig.py). */
        assert_int_equal(wg_endpoint_resolve("10.0.0.1:51820", &e), 0);
        assert_int_equal(e.in.sin_addr.s_addr, htonl(0x0a000001));
        assert_int_equal(wg_endpoint_resolve("[2001:db8::1]:51820", &e), 0);
        assert_int_equal(e.sa.sa_family, AF_INET6);
        assert_int_equal(wg_endpoint_resolve("2001:db8::1:51820", &e), -EINVAL);
        assert_int_equal(wg_endpoint_resolve("[2001:db8::1]:0", &e), -EINVAL);
        assert_int_equal(wg_endpoint_resolve("localhost:0", &e), -EINVAL);
        assert_int_equal(wg_endpoint_resolve("localhost", &e), -EINVAL);
        /* The shape the roster and the pairing messages are held to. */
        assert_true(wg_endpoint_syntax_ok("10.0.0.1:51820"));
        assert_true(wg_endpoint_syntax_ok("[2001:db8::1]:51820"));
        assert_true(wg_endpoint_syntax_ok("cloud-1.example.net:51820"));
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                if (strcmp(bad[i], "host:1") != 0)
                        assert_false(wg_endpoint_syntax_ok(bad[i]));
        assert_false(wg_endpoint_syntax_ok("-host:1"));
        assert_false(wg_endpoint_syntax_ok("host.:1"));
        assert_false(wg_endpoint_syntax_ok("a b:1"));
        assert_false(wg_endpoint_syntax_ok("a;reboot:1"));
        assert_false(wg_endpoint_syntax_ok("host:0"));
}

int main(void)
{
        if (sodium_init() < 0)
                return 1;
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_format_set),    cmocka_unit_test(test_parse_get),
            cmocka_unit_test(test_parse_hostile), cmocka_unit_test(test_keys),
            cmocka_unit_test(test_endpoint),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
