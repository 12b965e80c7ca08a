/* The kernel backend: WireGuard's generic netlink family (WG_CMD_SET_DEVICE / WG_CMD_GET_DEVICE)
 * and rtnetlink for links and addresses, with libmnl. Builders and parsers work on caller
 * buffers and never touch a socket, so tests/unit/test_wg_netlink.c checks them without the
 * module; the socket functions below them are thin. One SET message carries the whole device
 * (up to WG_NL_BUF_SIZE; -E2BIG beyond): the mesh is small. */
#include "common/wg.h"

#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <linux/wireguard.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static struct nlmsghdr *wg_nl_put_genl(void *buf, uint16_t family, uint32_t seq, uint16_t flags,
                                       uint8_t cmd)
{
        struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
        struct genlmsghdr *g;

        nlh->nlmsg_type = family;
        nlh->nlmsg_flags = flags;
        nlh->nlmsg_seq = seq;
        g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
        g->cmd = cmd;
        g->version = WG_GENL_VERSION;
        return nlh;
}

static bool wg_nl_put_allowed_ips(struct nlmsghdr *nlh, size_t cap, const struct wg_peer *p)
{
        struct nlattr *ips = mnl_attr_nest_start_check(nlh, cap, WGPEER_A_ALLOWEDIPS), *ip;

        if (!ips)
                return false;
        for (size_t i = 0; i < p->n_allowed_ips; i++) {
                ip = mnl_attr_nest_start_check(nlh, cap, 0);
                if (!ip || !mnl_attr_put_u16_check(nlh, cap, WGALLOWEDIP_A_FAMILY, AF_INET) ||
                    !mnl_attr_put_check(nlh, cap, WGALLOWEDIP_A_IPADDR, sizeof(struct in_addr),
                                        &p->allowed_ips[i].addr) ||
                    !mnl_attr_put_u8_check(nlh, cap, WGALLOWEDIP_A_CIDR_MASK,
                                           p->allowed_ips[i].cidr))
                        return false;
                mnl_attr_nest_end(nlh, ip);
        }
        mnl_attr_nest_end(nlh, ips);
        return true;
}

static bool wg_nl_put_peer(struct nlmsghdr *nlh, size_t cap, const struct wg_peer *p)
{
        struct nlattr *nest = mnl_attr_nest_start_check(nlh, cap, 0);
        uint32_t flags = p->remove ? WGPEER_F_REMOVE_ME : WGPEER_F_REPLACE_ALLOWEDIPS;

        if (!nest ||
            !mnl_attr_put_check(nlh, cap, WGPEER_A_PUBLIC_KEY, WG_KEY_LEN, p->public_key) ||
            !mnl_attr_put_u32_check(nlh, cap, WGPEER_A_FLAGS, flags))
                return false;
        if (!p->remove) {
                if (p->has_endpoint &&
                    !mnl_attr_put_check(nlh, cap, WGPEER_A_ENDPOINT, wg_endpoint_len(&p->endpoint),
                                        &p->endpoint))
                        return false;
                if (!mnl_attr_put_u16_check(nlh, cap, WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL,
                                            p->keepalive_s) ||
                    !wg_nl_put_allowed_ips(nlh, cap, p))
                        return false;
        }
        mnl_attr_nest_end(nlh, nest);
        return true;
}

int wg_nl_build_set_device(void *buf, size_t cap, uint16_t family, uint32_t seq,
                           const struct wg_device *d, struct nlmsghdr **ret)
{
        struct nlmsghdr *nlh;
        struct nlattr *peers;

        if (cap < MNL_NLMSG_HDRLEN + MNL_ALIGN(sizeof(struct genlmsghdr)) + 64)
                return -E2BIG;
        nlh = wg_nl_put_genl(buf, family, seq, NLM_F_REQUEST | NLM_F_ACK, WG_CMD_SET_DEVICE);
        if (!mnl_attr_put_strz_check(nlh, cap, WGDEVICE_A_IFNAME, d->ifname) ||
            !mnl_attr_put_u32_check(nlh, cap, WGDEVICE_A_FLAGS,
                                    d->replace_peers ? WGDEVICE_F_REPLACE_PEERS : 0))
                return -E2BIG;
        if (d->has_private_key &&
            !mnl_attr_put_check(nlh, cap, WGDEVICE_A_PRIVATE_KEY, WG_KEY_LEN, d->private_key))
                return -E2BIG;
        if (d->has_listen_port &&
            !mnl_attr_put_u16_check(nlh, cap, WGDEVICE_A_LISTEN_PORT, d->listen_port))
                return -E2BIG;
        if (d->n_peers) {
                peers = mnl_attr_nest_start_check(nlh, cap, WGDEVICE_A_PEERS);
                if (!peers)
                        return -E2BIG;
                for (size_t i = 0; i < d->n_peers; i++) {
                        if (!wg_nl_put_peer(nlh, cap, &d->peers[i]))
                                return -E2BIG;
                }
                mnl_attr_nest_end(nlh, peers);
        }
        *ret = nlh;
        return 0;
}

int wg_nl_build_get_device(void *buf, size_t cap, uint16_t family, uint32_t seq, const char *ifname,
                           struct nlmsghdr **ret)
{
        struct nlmsghdr *nlh;

        if (cap < 256)
                return -E2BIG;
        nlh = wg_nl_put_genl(buf, family, seq, NLM_F_REQUEST | NLM_F_ACK | NLM_F_DUMP,
                             WG_CMD_GET_DEVICE);
        if (!mnl_attr_put_strz_check(nlh, cap, WGDEVICE_A_IFNAME, ifname))
                return -E2BIG;
        *ret = nlh;
        return 0;
}

static int wg_nl_parse_allowed_ip(const struct nlattr *nest, struct wg_peer *p)
{
        const struct nlattr *a;
        uint16_t family = 0;
        uint8_t cidr = 0;
        struct in_addr addr = {0};
        bool have_addr = false;

        mnl_attr_for_each_nested(a, nest)
        {
                switch (mnl_attr_get_type(a)) {
                case WGALLOWEDIP_A_FAMILY:
                        if (mnl_attr_validate(a, MNL_TYPE_U16) < 0)
                                return -EINVAL;
                        family = mnl_attr_get_u16(a);
                        break;
                case WGALLOWEDIP_A_IPADDR:
                        if (mnl_attr_get_payload_len(a) == sizeof(addr)) {
                                memcpy(&addr, mnl_attr_get_payload(a), sizeof(addr));
                                have_addr = true;
                        }
                        break;
                case WGALLOWEDIP_A_CIDR_MASK:
                        if (mnl_attr_validate(a, MNL_TYPE_U8) < 0)
                                return -EINVAL;
                        cidr = mnl_attr_get_u8(a);
                        break;
                }
        }
        if (family != AF_INET)
                return 0; /* IPv6: outside the mesh plan */
        if (!have_addr)
                return -EINVAL;
        return wg_peer_add_allowed_ip(p, addr, cidr);
}

static int wg_nl_parse_peer_attr(const struct nlattr *a, struct wg_peer *p)
{
        const struct nlattr *ip;
        int ret;

        switch (mnl_attr_get_type(a)) {
        case WGPEER_A_ENDPOINT:
                /* The kernel sends a sockaddr_in or a sockaddr_in6, each at its own size. */
                p->endpoint = (union wg_endpoint){0};
                if (mnl_attr_get_payload_len(a) == sizeof(struct sockaddr_in) ||
                    mnl_attr_get_payload_len(a) == sizeof(struct sockaddr_in6)) {
                        memcpy(&p->endpoint, mnl_attr_get_payload(a), mnl_attr_get_payload_len(a));
                        p->has_endpoint =
                            wg_endpoint_len(&p->endpoint) == mnl_attr_get_payload_len(a) &&
                            (p->endpoint.sa.sa_family == AF_INET ||
                             p->endpoint.sa.sa_family == AF_INET6);
                }
                return 0;
        case WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL:
                if (mnl_attr_validate(a, MNL_TYPE_U16) < 0)
                        return -EINVAL;
                p->keepalive_s = mnl_attr_get_u16(a);
                return 0;
        case WGPEER_A_LAST_HANDSHAKE_TIME:
                if (mnl_attr_get_payload_len(a) < sizeof(int64_t))
                        return -EINVAL;
                memcpy(&p->last_handshake_sec, mnl_attr_get_payload(a), sizeof(int64_t));
                return 0;
        case WGPEER_A_RX_BYTES:
        case WGPEER_A_TX_BYTES:
                if (mnl_attr_validate(a, MNL_TYPE_U64) < 0)
                        return -EINVAL;
                *(mnl_attr_get_type(a) == WGPEER_A_RX_BYTES ? &p->rx_bytes : &p->tx_bytes) =
                    mnl_attr_get_u64(a);
                return 0;
        case WGPEER_A_ALLOWEDIPS:
                mnl_attr_for_each_nested(ip, a)
                {
                        ret = wg_nl_parse_allowed_ip(ip, p);
                        if (ret < 0)
                                return ret;
                }
                return 0;
        }
        return 0;
}

/* The kernel may continue one peer in the next message: same public key, more allowed IPs. */
static struct wg_peer *wg_nl_peer_for_key(struct wg_device *d, const uint8_t *key)
{
        struct wg_peer *last = d->n_peers ? &d->peers[d->n_peers - 1] : NULL;
        struct wg_peer *p;

        if (last && memcmp(last->public_key, key, WG_KEY_LEN) == 0)
                return last;
        p = wg_device_add_peer(d);
        if (p)
                memcpy(p->public_key, key, WG_KEY_LEN);
        return p;
}

static int wg_nl_parse_peer(const struct nlattr *nest, struct wg_device *d)
{
        const struct nlattr *a, *key = NULL;
        struct wg_peer *p;
        int ret;

        mnl_attr_for_each_nested(a, nest)
        {
                if (mnl_attr_get_type(a) == WGPEER_A_PUBLIC_KEY &&
                    mnl_attr_get_payload_len(a) == WG_KEY_LEN)
                        key = a;
        }
        if (!key)
                return -EINVAL;
        p = wg_nl_peer_for_key(d, mnl_attr_get_payload(key));
        if (!p)
                return -E2BIG;
        mnl_attr_for_each_nested(a, nest)
        {
                ret = wg_nl_parse_peer_attr(a, p);
                if (ret < 0)
                        return ret;
        }
        return 0;
}

static int wg_nl_parse_device_attr(const struct nlattr *a, struct wg_device *d)
{
        const struct nlattr *peer;
        int ret;

        switch (mnl_attr_get_type(a)) {
        case WGDEVICE_A_PRIVATE_KEY:
        case WGDEVICE_A_PUBLIC_KEY:
                if (mnl_attr_get_payload_len(a) != WG_KEY_LEN)
                        return -EINVAL;
                if (mnl_attr_get_type(a) == WGDEVICE_A_PRIVATE_KEY) {
                        memcpy(d->private_key, mnl_attr_get_payload(a), WG_KEY_LEN);
                        d->has_private_key = !sodium_is_zero(d->private_key, WG_KEY_LEN);
                } else {
                        memcpy(d->public_key, mnl_attr_get_payload(a), WG_KEY_LEN);
                        d->has_public_key = !sodium_is_zero(d->public_key, WG_KEY_LEN);
                }
                return 0;
        case WGDEVICE_A_LISTEN_PORT:
                if (mnl_attr_validate(a, MNL_TYPE_U16) < 0)
                        return -EINVAL;
                d->listen_port = mnl_attr_get_u16(a);
                d->has_listen_port = true;
                return 0;
        case WGDEVICE_A_PEERS:
                mnl_attr_for_each_nested(peer, a)
                {
                        ret = wg_nl_parse_peer(peer, d);
                        if (ret < 0)
                                return ret;
                }
                return 0;
        }
        return 0;
}

int wg_nl_parse_device(const struct nlmsghdr *nlh, struct wg_device *d)
{
        const struct nlattr *a;
        int ret;

        if (!mnl_nlmsg_ok(nlh, (int)nlh->nlmsg_len) ||
            nlh->nlmsg_len < MNL_NLMSG_HDRLEN + MNL_ALIGN(sizeof(struct genlmsghdr)))
                return -EINVAL;
        mnl_attr_for_each(a, nlh, sizeof(struct genlmsghdr))
        {
                if (!mnl_attr_ok(
                        a, (int)((const char *)mnl_nlmsg_get_payload_tail(nlh) - (const char *)a)))
                        return -EINVAL;
                ret = wg_nl_parse_device_attr(a, d);
                if (ret < 0)
                        return ret;
        }
        return 0;
}

static struct nlmsghdr *wg_nl_put_rtnl(void *buf, uint16_t type, uint16_t flags, uint32_t seq)
{
        struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);

        nlh->nlmsg_type = type;
        nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        nlh->nlmsg_seq = seq;
        return nlh;
}

int wg_nl_build_newlink(void *buf, size_t cap, uint32_t seq, const char *ifname,
                        struct nlmsghdr **ret)
{
        struct nlmsghdr *nlh;
        struct ifinfomsg *ifi;
        struct nlattr *info;

        if (cap < 256)
                return -E2BIG;
        nlh = wg_nl_put_rtnl(buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, seq);
        ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
        ifi->ifi_family = AF_UNSPEC;
        if (!mnl_attr_put_strz_check(nlh, cap, IFLA_IFNAME, ifname))
                return -E2BIG;
        info = mnl_attr_nest_start_check(nlh, cap, IFLA_LINKINFO);
        if (!info || !mnl_attr_put_strz_check(nlh, cap, IFLA_INFO_KIND, WG_GENL_NAME))
                return -E2BIG;
        mnl_attr_nest_end(nlh, info);
        *ret = nlh;
        return 0;
}

int wg_nl_build_dellink(void *buf, size_t cap, uint32_t seq, const char *ifname,
                        struct nlmsghdr **ret)
{
        struct nlmsghdr *nlh;
        struct ifinfomsg *ifi;

        if (cap < 128)
                return -E2BIG;
        nlh = wg_nl_put_rtnl(buf, RTM_DELLINK, 0, seq);
        ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
        ifi->ifi_family = AF_UNSPEC;
        if (!mnl_attr_put_strz_check(nlh, cap, IFLA_IFNAME, ifname))
                return -E2BIG;
        *ret = nlh;
        return 0;
}

int wg_nl_build_newaddr(void *buf, size_t cap, uint32_t seq, unsigned ifindex, struct in_addr addr,
                        uint8_t prefix, struct nlmsghdr **ret)
{
        struct nlmsghdr *nlh;
        struct ifaddrmsg *ifa;

        if (cap < 128 || prefix > 32)
                return cap < 128 ? -E2BIG : -EINVAL;
        nlh = wg_nl_put_rtnl(buf, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, seq);
        ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
        ifa->ifa_family = AF_INET;
        ifa->ifa_prefixlen = prefix;
        ifa->ifa_scope = RT_SCOPE_UNIVERSE;
        ifa->ifa_index = ifindex;
        mnl_attr_put(nlh, IFA_LOCAL, sizeof(addr), &addr);
        mnl_attr_put(nlh, IFA_ADDRESS, sizeof(addr), &addr);
        *ret = nlh;
        return 0;
}

int wg_nl_build_setlink_up(void *buf, size_t cap, uint32_t seq, unsigned ifindex,
                           struct nlmsghdr **ret)
{
        struct nlmsghdr *nlh;
        struct ifinfomsg *ifi;

        if (cap < 128)
                return -E2BIG;
        nlh = wg_nl_put_rtnl(buf, RTM_NEWLINK, 0, seq);
        ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
        ifi->ifi_family = AF_UNSPEC;
        ifi->ifi_index = (int)ifindex;
        ifi->ifi_flags = IFF_UP;
        ifi->ifi_change = IFF_UP;
        *ret = nlh;
        return 0;
}

/* --- sockets --- */

struct wg_nl_reply {
        struct wg_device *dev; /* GET replies go here; NULL for plain ACKs */
        uint16_t family_id;    /* CTRL_CMD_GETFAMILY */
        int err;
};

static int wg_nl_data_cb(const struct nlmsghdr *nlh, void *data)
{
        struct wg_nl_reply *r = data;
        int ret;

        if (!r->dev)
                return MNL_CB_OK;
        ret = wg_nl_parse_device(nlh, r->dev);
        if (ret < 0) {
                r->err = ret;
                return MNL_CB_ERROR;
        }
        return MNL_CB_OK;
}

static int wg_nl_family_attr_cb(const struct nlattr *a, void *data)
{
        struct wg_nl_reply *r = data;

        if (mnl_attr_get_type(a) == CTRL_ATTR_FAMILY_ID && mnl_attr_validate(a, MNL_TYPE_U16) == 0)
                r->family_id = mnl_attr_get_u16(a);
        return MNL_CB_OK;
}

static int wg_nl_family_cb(const struct nlmsghdr *nlh, void *data)
{
        return mnl_attr_parse(nlh, sizeof(struct genlmsghdr), wg_nl_family_attr_cb, data);
}

/* Sends nlh on a new socket of bus and runs cb over the replies until the ACK or DONE. */
static int wg_nl_transact(int bus, struct nlmsghdr *nlh, mnl_cb_t cb, struct wg_nl_reply *r)
{
        struct mnl_socket *nl = mnl_socket_open2(bus, SOCK_CLOEXEC);
        char *buf = NULL;
        uint32_t portid;
        int ret = 0;
        ssize_t n;

        if (!nl)
                return -errno;
        buf = malloc(WG_NL_BUF_SIZE);
        if (!buf || mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
                ret = buf ? -errno : -ENOMEM;
                goto cleanup;
        }
        portid = mnl_socket_get_portid(nl);
        if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
                ret = -errno;
                goto cleanup;
        }
        do {
                n = mnl_socket_recvfrom(nl, buf, WG_NL_BUF_SIZE);
                if (n < 0) {
                        ret = -errno;
                        break;
                }
                ret = mnl_cb_run(buf, (size_t)n, nlh->nlmsg_seq, portid, cb, r);
        } while (ret > MNL_CB_STOP);
        ret = ret < 0 ? (r->err ? r->err : -errno) : 0;
cleanup:
        if (buf) {
                sodium_memzero(buf, WG_NL_BUF_SIZE);
                free(buf);
        }
        mnl_socket_close(nl);
        return ret;
}

int wg_rtnl_request(struct nlmsghdr *nlh)
{
        struct wg_nl_reply r = {0};

        nlh->nlmsg_seq = (uint32_t)time(NULL);
        return wg_nl_transact(NETLINK_ROUTE, nlh, NULL, &r);
}

static int wg_genl_family(uint16_t *ret)
{
        char buf[256];
        struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
        struct genlmsghdr *g;
        struct wg_nl_reply r = {0};
        int err;

        nlh->nlmsg_type = GENL_ID_CTRL;
        nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
        nlh->nlmsg_seq = (uint32_t)time(NULL);
        g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
        g->cmd = CTRL_CMD_GETFAMILY;
        g->version = 1;
        mnl_attr_put_strz(nlh, CTRL_ATTR_FAMILY_NAME, WG_GENL_NAME);
        err = wg_nl_transact(NETLINK_GENERIC, nlh, wg_nl_family_cb, &r);
        if (err < 0)
                return err == -ENOENT ? -EPROTONOSUPPORT : err;
        if (!r.family_id)
                return -EPROTONOSUPPORT;
        *ret = r.family_id;
        return 0;
}

int wg_kernel_set(const struct wg_device *d)
{
        struct wg_nl_reply r = {0};
        struct nlmsghdr *nlh;
        uint16_t family;
        char *buf;
        int ret = wg_genl_family(&family);

        if (ret < 0)
                return ret;
        buf = malloc(WG_NL_BUF_SIZE);
        if (!buf)
                return -ENOMEM;
        ret = wg_nl_build_set_device(buf, WG_NL_BUF_SIZE, family, (uint32_t)time(NULL), d, &nlh);
        if (ret == 0)
                ret = wg_nl_transact(NETLINK_GENERIC, nlh, NULL, &r);
        sodium_memzero(buf, WG_NL_BUF_SIZE);
        free(buf);
        return ret;
}

int wg_kernel_get(const char *ifname, struct wg_device **ret)
{
        struct wg_device *d = wg_device_new(ifname);
        struct wg_nl_reply r = {.dev = d};
        struct nlmsghdr *nlh;
        char buf[256];
        uint16_t family;
        int err;

        if (!d)
                return -EINVAL;
        err = wg_genl_family(&family);
        if (err == 0)
                err = wg_nl_build_get_device(buf, sizeof(buf), family, (uint32_t)time(NULL), ifname,
                                             &nlh);
        if (err == 0)
                err = wg_nl_transact(NETLINK_GENERIC, nlh, wg_nl_data_cb, &r);
        if (err < 0) {
                wg_device_free(d);
                return err;
        }
        *ret = d;
        return 0;
}
