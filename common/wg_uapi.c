/* The wireguard-go backend: the cross-platform UAPI text protocol over the unix socket
 * /var/run/wireguard/IFNAME.sock ("set=1" / "get=1", key=value lines, an empty line, then
 * "errno=N"). Keys travel as hex; every buffer that held a private key is wiped. */
#include "common/wg.h"
#include "common/daemon.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define WG_UAPI_REPLY_MAX (16 * 1024 * 1024)
#define WG_UAPI_LINE_MAX  256

struct wg_uapi_buf {
        char *p;
        size_t len, cap;
        int err;
};

static void wg_uapi_printf(struct wg_uapi_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void wg_uapi_printf(struct wg_uapi_buf *b, const char *fmt, ...)
{
        va_list ap;
        int n;

        if (b->err)
                return;
        if (b->cap - b->len < 512) {
                size_t cap = b->cap ? b->cap * 2 : 4096;
                char *p = sodium_malloc(cap);

                if (!p) {
                        b->err = -ENOMEM;
                        return;
                }
                if (b->p) {
                        memcpy(p, b->p, b->len);
                        sodium_free(b->p);
                }
                b->p = p;
                b->cap = cap;
        }
        va_start(ap, fmt);
        n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t)n >= b->cap - b->len)
                b->err = -ENOSPC;
        else
                b->len += (size_t)n;
}

static void wg_uapi_hex(char out[2 * WG_KEY_LEN + 1], const uint8_t key[WG_KEY_LEN])
{
        sodium_bin2hex(out, 2 * WG_KEY_LEN + 1, key, WG_KEY_LEN);
}

static void wg_uapi_format_peer(struct wg_uapi_buf *b, const struct wg_peer *p)
{
        char hex[2 * WG_KEY_LEN + 1], addr[INET_ADDRSTRLEN], ep[WG_ENDPOINT_STR_SIZE];

        wg_uapi_hex(hex, p->public_key);
        wg_uapi_printf(b, "public_key=%s\n", hex);
        if (p->remove) {
                wg_uapi_printf(b, "remove=true\n");
                return;
        }
        if (p->has_endpoint) {
                wg_endpoint_format(&p->endpoint, ep);
                wg_uapi_printf(b, "endpoint=%s\n", ep);
        }
        wg_uapi_printf(b, "persistent_keepalive_interval=%u\nreplace_allowed_ips=true\n",
                       p->keepalive_s);
        for (size_t i = 0; i < p->n_allowed_ips; i++) {
                inet_ntop(AF_INET, &p->allowed_ips[i].addr, addr, sizeof(addr));
                wg_uapi_printf(b, "allowed_ip=%s/%u\n", addr, p->allowed_ips[i].cidr);
        }
}

int wg_uapi_format_set(const struct wg_device *d, char **ret_buf, size_t *ret_len)
{
        struct wg_uapi_buf b = {0};
        char hex[2 * WG_KEY_LEN + 1];

        wg_uapi_printf(&b, "set=1\n");
        if (d->has_private_key) {
                wg_uapi_hex(hex, d->private_key);
                wg_uapi_printf(&b, "private_key=%s\n", hex);
                sodium_memzero(hex, sizeof(hex));
        }
        if (d->has_listen_port)
                wg_uapi_printf(&b, "listen_port=%u\n", d->listen_port);
        if (d->replace_peers)
                wg_uapi_printf(&b, "replace_peers=true\n");
        for (size_t i = 0; i < d->n_peers; i++)
                wg_uapi_format_peer(&b, &d->peers[i]);
        wg_uapi_printf(&b, "\n");
        if (b.err) {
                if (b.p)
                        sodium_free(b.p);
                return b.err;
        }
        *ret_buf = b.p;
        *ret_len = b.len;
        return 0;
}

void wg_uapi_parser_init(struct wg_uapi_parser *p, struct wg_device *d)
{
        memset(p, 0, sizeof(*p));
        p->dev = d;
        p->errno_value = -1;
}

static int wg_uapi_parse_u64(const char *v, uint64_t max, uint64_t *ret)
{
        char *end;
        unsigned long long x;

        if (!*v || *v == '-' || *v == '+')
                return -EINVAL;
        errno = 0;
        x = strtoull(v, &end, 10);
        if (*end || errno || x > max)
                return -EINVAL;
        *ret = x;
        return 0;
}

static int wg_uapi_parse_key(const char *v, uint8_t key[WG_KEY_LEN])
{
        size_t len = 0;

        if (strlen(v) != 2 * WG_KEY_LEN ||
            sodium_hex2bin(key, WG_KEY_LEN, v, 2 * WG_KEY_LEN, NULL, &len, NULL) != 0 ||
            len != WG_KEY_LEN)
                return -EINVAL;
        return 0;
}

static int wg_uapi_parse_allowed_ip(struct wg_peer *peer, const char *v)
{
        char addr[INET6_ADDRSTRLEN + 4];
        const char *slash = strchr(v, '/');
        struct in_addr a;
        uint64_t cidr;

        if (!slash || (size_t)(slash - v) >= sizeof(addr))
                return -EINVAL;
        memcpy(addr, v, (size_t)(slash - v));
        addr[slash - v] = '\0';
        if (strchr(addr, ':'))
                return 0; /* IPv6 entries are not part of the mesh plan: ignored */
        if (inet_pton(AF_INET, addr, &a) != 1 || wg_uapi_parse_u64(slash + 1, 32, &cidr) < 0)
                return -EINVAL;
        return wg_peer_add_allowed_ip(peer, a, (uint8_t)cidr);
}

static int wg_uapi_parse_peer_key(struct wg_uapi_parser *p, const char *key, const char *v)
{
        struct wg_peer *peer = p->peer;
        uint64_t x;

        if (!peer)
                return -EINVAL;
        if (strcmp(key, "endpoint") == 0) {
                peer->has_endpoint = wg_endpoint_parse(v, &peer->endpoint) == 0;
                return peer->has_endpoint ? 0 : -EINVAL;
        }
        if (strcmp(key, "allowed_ip") == 0)
                return wg_uapi_parse_allowed_ip(peer, v);
        if (strcmp(key, "persistent_keepalive_interval") == 0) {
                if (wg_uapi_parse_u64(v, 65535, &x) < 0)
                        return -EINVAL;
                peer->keepalive_s = (uint16_t)x;
                return 0;
        }
        if (strcmp(key, "last_handshake_time_sec") == 0) {
                if (wg_uapi_parse_u64(v, INT64_MAX, &x) < 0)
                        return -EINVAL;
                peer->last_handshake_sec = (int64_t)x;
                return 0;
        }
        if (strcmp(key, "rx_bytes") == 0)
                return wg_uapi_parse_u64(v, UINT64_MAX, &peer->rx_bytes);
        if (strcmp(key, "tx_bytes") == 0)
                return wg_uapi_parse_u64(v, UINT64_MAX, &peer->tx_bytes);
        /* last_handshake_time_nsec, preshared_key, protocol_version: not needed here. */
        return 0;
}

static int wg_uapi_parse_pair(struct wg_uapi_parser *p, const char *key, const char *v)
{
        struct wg_device *d = p->dev;
        uint64_t x;
        int ret;

        if (strcmp(key, "errno") == 0) {
                if (wg_uapi_parse_u64(v, INT32_MAX, &x) < 0)
                        return -EINVAL;
                p->errno_value = (int)x;
                return 0;
        }
        if (strcmp(key, "private_key") == 0) {
                ret = wg_uapi_parse_key(v, d->private_key);
                d->has_private_key = ret == 0;
                if (ret == 0) {
                        wg_key_public_from_private(d->public_key, d->private_key);
                        d->has_public_key = true;
                }
                return ret;
        }
        if (strcmp(key, "listen_port") == 0) {
                if (wg_uapi_parse_u64(v, 65535, &x) < 0)
                        return -EINVAL;
                d->listen_port = (uint16_t)x;
                d->has_listen_port = true;
                return 0;
        }
        if (strcmp(key, "fwmark") == 0)
                return 0;
        if (strcmp(key, "public_key") == 0) {
                p->peer = wg_device_add_peer(d);
                if (!p->peer)
                        return -E2BIG;
                return wg_uapi_parse_key(v, p->peer->public_key);
        }
        return wg_uapi_parse_peer_key(p, key, v);
}

int wg_uapi_parser_line(struct wg_uapi_parser *p, const char *line, size_t len)
{
        char buf[WG_UAPI_LINE_MAX];
        char *eq;
        int ret;

        if (p->done)
                return -EINVAL;
        if (len == 0) {
                p->done = true;
                return 0;
        }
        if (len >= sizeof(buf) || memchr(line, '\0', len))
                return -EINVAL;
        memcpy(buf, line, len);
        buf[len] = '\0';
        eq = strchr(buf, '=');
        if (!eq || eq == buf) {
                ret = -EINVAL;
                goto cleanup;
        }
        *eq = '\0';
        ret = wg_uapi_parse_pair(p, buf, eq + 1);
cleanup:
        sodium_memzero(buf, sizeof(buf));
        return ret;
}

static int wg_uapi_connect(const char *ifname)
{
        char path[sizeof(((struct sockaddr_un *)0)->sun_path)];

        if (snprintf(path, sizeof(path), "%s/%s.sock", WG_UAPI_DIR, ifname) >= (int)sizeof(path))
                return -ENAMETOOLONG;
        return daemon_unix_connect(path, 0);
}

static int wg_uapi_write_all(int fd, const char *buf, size_t len)
{
        while (len > 0) {
                ssize_t n = write(fd, buf, len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n < 0 ? -errno : -EIO;
                buf += n;
                len -= (size_t)n;
        }
        return 0;
}

/* Reads the reply line by line into the parser until the blank line that ends it. */
static int wg_uapi_read_reply(int fd, struct wg_uapi_parser *p)
{
        char line[WG_UAPI_LINE_MAX];
        size_t len = 0, total = 0;
        char c;
        int ret = 0;

        while (!p->done) {
                ssize_t n = read(fd, &c, 1);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        ret = n < 0 ? -errno : -EPROTO;
                        break;
                }
                if (++total > WG_UAPI_REPLY_MAX) {
                        ret = -E2BIG;
                        break;
                }
                if (c != '\n') {
                        if (len + 1 >= sizeof(line)) {
                                ret = -EPROTO;
                                break;
                        }
                        line[len++] = c;
                        continue;
                }
                ret = wg_uapi_parser_line(p, line, len);
                len = 0;
                if (ret < 0)
                        break;
        }
        sodium_memzero(line, sizeof(line));
        if (ret == 0 && p->errno_value < 0)
                ret = -EPROTO;
        if (ret == 0 && p->errno_value > 0)
                ret = -p->errno_value;
        return ret;
}

int wg_uapi_set(const struct wg_device *d)
{
        struct wg_device *reply = wg_device_new(d->ifname);
        struct wg_uapi_parser p;
        char *buf = NULL;
        size_t len = 0;
        int fd = -1, ret;

        if (!reply)
                return -ENOMEM;
        ret = wg_uapi_format_set(d, &buf, &len);
        if (ret < 0)
                goto cleanup;
        fd = wg_uapi_connect(d->ifname);
        if (fd < 0) {
                ret = fd;
                goto cleanup;
        }
        ret = wg_uapi_write_all(fd, buf, len);
        if (ret < 0)
                goto cleanup;
        wg_uapi_parser_init(&p, reply);
        ret = wg_uapi_read_reply(fd, &p);
cleanup:
        if (fd >= 0)
                close(fd);
        if (buf)
                sodium_free(buf);
        wg_device_free(reply);
        return ret;
}

int wg_uapi_get(const char *ifname, struct wg_device **ret)
{
        struct wg_device *d = wg_device_new(ifname);
        struct wg_uapi_parser p;
        int fd = -1, r;

        if (!d)
                return -EINVAL;
        fd = wg_uapi_connect(ifname);
        if (fd < 0) {
                r = fd;
                goto cleanup;
        }
        r = wg_uapi_write_all(fd, "get=1\n\n", 7);
        if (r < 0)
                goto cleanup;
        wg_uapi_parser_init(&p, d);
        r = wg_uapi_read_reply(fd, &p);
cleanup:
        if (fd >= 0)
                close(fd);
        if (r < 0) {
                wg_device_free(d);
                return r;
        }
        *ret = d;
        return 0;
}
