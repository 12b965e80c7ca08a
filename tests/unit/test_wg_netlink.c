/* The kernel backend at message level (no module here): WG_CMD_SET_DEVICE and rtnetlink messages
 * are built and checked attribute by attribute, and a GET reply built the way the kernel builds
 * one (a peer split across two messages) is parsed back. */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <linux/wireguard.h>

#include "common/wg.h"

static struct wg_device *sample_device(void)
{
        struct wg_device *d = wg_device_new("wgtest0");
        struct wg_peer *p;

        d->has_private_key = true;
        memset(d->private_key, 0x11, WG_KEY_LEN);
        d->has_listen_port = true;
        d->listen_port = 51820;
        d->replace_peers = true;
        p = wg_device_add_peer(d);
        memset(p->public_key, 0x22, WG_KEY_LEN);
        assert_int_equal(wg_endpoint_parse("192.0.2.7:51821", &p->endpoint), 0);
        p->has_endpoint = true;
        p->keepalive_s = 25;
        wg_peer_add_allowed_ip(p, (struct in_addr){htonl(0x0a4d0002)}, 32);
        wg_peer_add_allowed_ip(p, (struct in_addr){htonl(0x0a4d0005)}, 32);
        p = wg_device_add_peer(d);
        memset(p->public_key, 0x33, WG_KEY_LEN);
        p->remove = true;
        return d;
}

static void check_allowed(const struct nlattr *ips, uint32_t a0, uint32_t a1)
{
        const struct nlattr *ip, *f;
        uint32_t want[2] = {a0, a1};
        int i = 0;

        mnl_attr_for_each_nested(ip, ips)
        {
                mnl_attr_for_each_nested(f, ip)
                {
                        if (mnl_attr_get_type(f) == WGALLOWEDIP_A_FAMILY)
                                assert_int_equal(mnl_attr_get_u16(f), AF_INET);
                        if (mnl_attr_get_type(f) == WGALLOWEDIP_A_IPADDR)
                                assert_int_equal(mnl_attr_get_u32(f), htonl(want[i]));
                        if (mnl_attr_get_type(f) == WGALLOWEDIP_A_CIDR_MASK)
                                assert_int_equal(mnl_attr_get_u8(f), 32);
                }
                i++;
        }
        assert_int_equal(i, 2);
}

static void check_peer(const struct nlattr *peer, int index)
{
        const struct nlattr *a;
        int seen = 0;

        mnl_attr_for_each_nested(a, peer)
        {
                switch (mnl_attr_get_type(a)) {
                case WGPEER_A_PUBLIC_KEY:
                        assert_int_equal(mnl_attr_get_payload_len(a), WG_KEY_LEN);
                        assert_int_equal(((const uint8_t *)mnl_attr_get_payload(a))[0],
                                         index ? 0x33 : 0x22);
                        seen |= 1;
                        break;
                case WGPEER_A_FLAGS:
                        assert_int_equal(mnl_attr_get_u32(a),
                                         index ? WGPEER_F_REMOVE_ME : WGPEER_F_REPLACE_ALLOWEDIPS);
                        seen |= 2;
                        break;
                case WGPEER_A_ENDPOINT: {
                        const struct sockaddr_in *sa = mnl_attr_get_payload(a);

                        assert_int_equal(sa->sin_port, htons(51821));
                        assert_int_equal(sa->sin_addr.s_addr, htonl(0xc0000207));
                        seen |= 4;
                        break;
                }
                case WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL:
                        assert_int_equal(mnl_attr_get_u16(a), 25);
                        seen |= 8;
                        break;
                case WGPEER_A_ALLOWEDIPS:
                        check_allowed(a, 0x0a4d0002, 0x0a4d0005);
                        seen |= 16;
                        break;
                default:
                        fail_msg("unexpected peer attribute %u", mnl_attr_get_type(a));
                }
        }
        assert_int_equal(seen, index ? 3 : 31);
}

static void test_build_set(void **state)
{
        static char buf[WG_NL_BUF_SIZE];
        struct wg_device *d = sample_device();
        struct genlmsghdr *g;
        struct nlmsghdr *nlh;
        const struct nlattr *a, *peer;
        int peers = 0, seen = 0;

        assert_int_equal(wg_nl_build_set_device(buf, sizeof(buf), 27, 5, d, &nlh), 0);
        assert_int_equal(nlh->nlmsg_type, 27);
        assert_int_equal(nlh->nlmsg_seq, 5);
        assert_int_equal(nlh->nlmsg_flags, NLM_F_REQUEST | NLM_F_ACK);
        g = mnl_nlmsg_get_payload(nlh);
        assert_int_equal(g->cmd, WG_CMD_SET_DEVICE);
        assert_int_equal(g->version, WG_GENL_VERSION);
        mnl_attr_for_each(a, nlh, sizeof(*g))
        {
                switch (mnl_attr_get_type(a)) {
                case WGDEVICE_A_IFNAME:
                        assert_string_equal(mnl_attr_get_str(a), "wgtest0");
                        seen |= 1;
                        break;
                case WGDEVICE_A_FLAGS:
                        assert_int_equal(mnl_attr_get_u32(a), WGDEVICE_F_REPLACE_PEERS);
                        seen |= 2;
                        break;
                case WGDEVICE_A_PRIVATE_KEY:
                        assert_int_equal(mnl_attr_get_payload_len(a), WG_KEY_LEN);
                        seen |= 4;
                        break;
                case WGDEVICE_A_LISTEN_PORT:
                        assert_int_equal(mnl_attr_get_u16(a), 51820);
                        seen |= 8;
                        break;
                case WGDEVICE_A_PEERS:
                        mnl_attr_for_each_nested(peer, a) check_peer(peer, peers++);
                        seen |= 16;
                        break;
                default:
                        fail();
                }
        }
        assert_int_equal(seen, 31);
        assert_int_equal(peers, 2);
        /* Too small a buffer is refused, never overrun. */
        assert_int_equal(wg_nl_build_set_device(buf, 200, 27, 5, d, &nlh), -E2BIG);
        wg_device_free(d);
}

/* Builds a kernel-style GET reply: device attributes, then the first peer with one allowed IP;
 * a second message continues the same peer with another allowed IP. */
static struct nlmsghdr *reply_msg(char *buf, bool first)
{
        struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
        struct genlmsghdr *g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
        struct nlattr *peers, *peer, *ips, *ip;
        uint8_t key[WG_KEY_LEN];
        struct sockaddr_in ep = {.sin_family = AF_INET, .sin_port = htons(9)};
        int64_t ts[2] = {1700000000, 5};

        g->cmd = WG_CMD_GET_DEVICE;
        mnl_attr_put_strz(nlh, WGDEVICE_A_IFNAME, "wgtest0");
        if (first) {
                memset(key, 0x44, sizeof(key));
                mnl_attr_put(nlh, WGDEVICE_A_PUBLIC_KEY, WG_KEY_LEN, key);
                mnl_attr_put_u16(nlh, WGDEVICE_A_LISTEN_PORT, 51820);
        }
        peers = mnl_attr_nest_start(nlh, WGDEVICE_A_PEERS);
        peer = mnl_attr_nest_start(nlh, 0);
        memset(key, 0x55, sizeof(key));
        mnl_attr_put(nlh, WGPEER_A_PUBLIC_KEY, WG_KEY_LEN, key);
        if (first) {
                ep.sin_addr.s_addr = htonl(0xc0000201);
                mnl_attr_put(nlh, WGPEER_A_ENDPOINT, sizeof(ep), &ep);
                mnl_attr_put(nlh, WGPEER_A_LAST_HANDSHAKE_TIME, sizeof(ts), ts);
                mnl_attr_put_u64(nlh, WGPEER_A_RX_BYTES, 1000);
                mnl_attr_put_u64(nlh, WGPEER_A_TX_BYTES, 2000);
        }
        ips = mnl_attr_nest_start(nlh, WGPEER_A_ALLOWEDIPS);
        ip = mnl_attr_nest_start(nlh, 0);
        mnl_attr_put_u16(nlh, WGALLOWEDIP_A_FAMILY, AF_INET);
        mnl_attr_put_u32(nlh, WGALLOWEDIP_A_IPADDR, htonl(first ? 0x0a4d0002 : 0x0a4d0003));
        mnl_attr_put_u8(nlh, WGALLOWEDIP_A_CIDR_MASK, 32);
        mnl_attr_nest_end(nlh, ip);
        mnl_attr_nest_end(nlh, ips);
        mnl_attr_nest_end(nlh, peer);
        mnl_attr_nest_end(nlh, peers);
        return nlh;
}

static void test_parse_get(void **state)
{
        char b1[1024] = {0}, b2[1024] = {0};
        struct wg_device *d = wg_device_new("wgtest0");

        assert_int_equal(wg_nl_parse_device(reply_msg(b1, true), d), 0);
        assert_int_equal(wg_nl_parse_device(reply_msg(b2, false), d), 0);
        assert_true(d->has_public_key);
        assert_int_equal(d->public_key[0], 0x44);
        assert_int_equal(d->listen_port, 51820);
        assert_int_equal(d->n_peers, 1);
        assert_int_equal(d->peers[0].public_key[0], 0x55);
        assert_true(d->peers[0].has_endpoint);
        assert_int_equal(d->peers[0].last_handshake_sec, 1700000000);
        assert_int_equal(d->peers[0].rx_bytes, 1000);
        assert_int_equal(d->peers[0].tx_bytes, 2000);
        assert_int_equal(d->peers[0].n_allowed_ips, 2);
        assert_int_equal(d->peers[0].allowed_ips[1].addr.s_addr, htonl(0x0a4d0003));
        wg_device_free(d);
}

static void test_parse_truncated(void **state)
{
        char b[1024] = {0};
        struct wg_device *d = wg_device_new("wgtest0");
        struct nlmsghdr *nlh = reply_msg(b, true);

        nlh->nlmsg_len = 10; /* shorter than the headers */
        assert_int_equal(wg_nl_parse_device(nlh, d), -EINVAL);
        wg_device_free(d);
}

static void test_rtnl(void **state)
{
        char buf[1024];
        struct nlmsghdr *nlh;
        struct ifaddrmsg *ifa;
        struct ifinfomsg *ifi;
        const struct nlattr *a, *k;
        bool kind = false;

        assert_int_equal(wg_nl_build_newlink(buf, sizeof(buf), 1, "wgtest0", &nlh), 0);
        assert_int_equal(nlh->nlmsg_type, RTM_NEWLINK);
        assert_true(nlh->nlmsg_flags & NLM_F_CREATE);
        mnl_attr_for_each(a, nlh, sizeof(struct ifinfomsg))
        {
                if (mnl_attr_get_type(a) == IFLA_IFNAME)
                        assert_string_equal(mnl_attr_get_str(a), "wgtest0");
                if (mnl_attr_get_type(a) == IFLA_LINKINFO) {
                        mnl_attr_for_each_nested(k, a)
                        {
                                assert_string_equal(mnl_attr_get_str(k), "wireguard");
                                kind = true;
                        }
                }
        }
        assert_true(kind);
        assert_int_equal(wg_nl_build_newaddr(buf, sizeof(buf), 1, 7,
                                             (struct in_addr){htonl(0x0a4d0001)}, 24, &nlh),
                         0);
        ifa = mnl_nlmsg_get_payload(nlh);
        assert_int_equal(ifa->ifa_prefixlen, 24);
        assert_int_equal(ifa->ifa_index, 7);
        assert_int_equal(wg_nl_build_setlink_up(buf, sizeof(buf), 1, 7, &nlh), 0);
        ifi = mnl_nlmsg_get_payload(nlh);
        assert_int_equal(ifi->ifi_index, 7);
        assert_int_equal(ifi->ifi_flags & IFF_UP, IFF_UP);
        assert_int_equal(wg_nl_build_dellink(buf, sizeof(buf), 1, "wgtest0", &nlh), 0);
        assert_int_equal(nlh->nlmsg_type, RTM_DELLINK);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_build_set),
            cmocka_unit_test(test_parse_get),
            cmocka_unit_test(test_parse_truncated),
            cmocka_unit_test(test_rtnl),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
