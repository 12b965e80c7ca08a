/* WireGuard control: keys, device objects, and the choice of backend (kernel module over netlink,
 * else wireguard-go over UAPI). Links and addresses go over rtnetlink for both backends. */
#include "common/wg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

void wg_key_generate_private(uint8_t key[WG_KEY_LEN])
{
        randombytes_buf(key, WG_KEY_LEN);
        key[0] &= 248;
        key[31] = (uint8_t)((key[31] & 127) | 64);
}

void wg_key_public_from_private(uint8_t pub[WG_KEY_LEN], const uint8_t priv[WG_KEY_LEN])
{
        crypto_scalarmult_curve25519_base(pub, priv);
}

void wg_key_to_base64(char out[WG_KEY_B64_SIZE], const uint8_t key[WG_KEY_LEN])
{
        sodium_bin2base64(out, WG_KEY_B64_SIZE, key, WG_KEY_LEN, sodium_base64_VARIANT_ORIGINAL);
}

int wg_key_from_base64(uint8_t key[WG_KEY_LEN], const char *b64)
{
        uint8_t tmp[WG_KEY_LEN];
        size_t len = 0;

        if (strlen(b64) != WG_KEY_B64_SIZE - 1 ||
            sodium_base642bin(tmp, sizeof(tmp), b64, WG_KEY_B64_SIZE - 1, NULL, &len, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0 ||
            len != WG_KEY_LEN) {
                sodium_memzero(tmp, sizeof(tmp));
                return -EINVAL;
        }
        memcpy(key, tmp, WG_KEY_LEN);
        sodium_memzero(tmp, sizeof(tmp));
        return 0;
}

int wg_key_save(const char *path, const uint8_t key[WG_KEY_LEN])
{
        char b64[WG_KEY_B64_SIZE + 1], *tmp = NULL;
        int fd = -1, ret = 0;

        if (strlen(path) + sizeof(".tmp") > PATH_MAX)
                return -ENAMETOOLONG;
        if (asprintf(&tmp, "%s.tmp", path) < 0)
                return -ENOMEM;
        wg_key_to_base64(b64, key);
        b64[WG_KEY_B64_SIZE - 1] = '\n';
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) {
                ret = -errno;
                goto cleanup;
        }
        if (fchmod(fd, 0600) < 0 || write(fd, b64, WG_KEY_B64_SIZE) != WG_KEY_B64_SIZE ||
            fsync(fd) < 0) {
                ret = errno ? -errno : -EIO;
                goto cleanup;
        }
        if (rename(tmp, path) < 0)
                ret = -errno;
cleanup:
        if (fd >= 0)
                close(fd);
        if (ret < 0)
                unlink(tmp);
        free(tmp);
        sodium_memzero(b64, sizeof(b64));
        return ret;
}

int wg_key_load(const char *path, uint8_t key[WG_KEY_LEN])
{
        char buf[WG_KEY_B64_SIZE + 2];
        struct stat st;
        ssize_t n;
        int fd, ret = 0;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0) {
                ret = -errno;
                goto cleanup;
        }
        if ((st.st_mode & 077) || st.st_uid != geteuid()) {
                ret = -EPERM;
                goto cleanup;
        }
        n = read(fd, buf, sizeof(buf) - 1);
        if (n < WG_KEY_B64_SIZE - 1) {
                ret = n < 0 ? -errno : -EINVAL;
                goto cleanup;
        }
        buf[WG_KEY_B64_SIZE - 1] = '\0';
        ret = wg_key_from_base64(key, buf);
cleanup:
        sodium_memzero(buf, sizeof(buf));
        close(fd);
        return ret;
}

struct wg_device *wg_device_new(const char *ifname)
{
        struct wg_device *d;

        if (!ifname || strlen(ifname) >= IFNAMSIZ || !ifname[0])
                return NULL;
        d = calloc(1, sizeof(*d));
        if (d)
                snprintf(d->ifname, sizeof(d->ifname), "%s", ifname);
        return d;
}

void wg_device_free(struct wg_device *d)
{
        if (!d)
                return;
        if (d->peers)
                sodium_memzero(d->peers, d->n_peers * sizeof(*d->peers));
        free(d->peers);
        sodium_memzero(d, sizeof(*d));
        free(d);
}

struct wg_peer *wg_device_add_peer(struct wg_device *d)
{
        struct wg_peer *p;

        if (d->n_peers >= WG_PEERS_MAX)
                return NULL;
        p = realloc(d->peers, (d->n_peers + 1) * sizeof(*p));
        if (!p)
                return NULL;
        d->peers = p;
        p = &d->peers[d->n_peers++];
        memset(p, 0, sizeof(*p));
        return p;
}

int wg_peer_add_allowed_ip(struct wg_peer *p, struct in_addr addr, uint8_t cidr)
{
        if (cidr > 32 || p->n_allowed_ips >= WG_PEER_ALLOWED_MAX)
                return -EINVAL;
        p->allowed_ips[p->n_allowed_ips].addr = addr;
        p->allowed_ips[p->n_allowed_ips].cidr = cidr;
        p->n_allowed_ips++;
        return 0;
}

/* Splits "host:port" (the last colon) into host and a port in 1..65535. */
static int wg_endpoint_split(const char *s, char *host, size_t size, uint16_t *port)
{
        const char *colon = strrchr(s, ':');
        char *end;
        unsigned long p;

        if (!colon || (size_t)(colon - s) >= size || colon == s)
                return -EINVAL;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        errno = 0;
        p = strtoul(colon + 1, &end, 10);
        if (!colon[1] || *end || errno || p == 0 || p > 65535)
                return -EINVAL;
        *port = (uint16_t)p;
        return 0;
}

int wg_endpoint_parse(const char *s, union wg_endpoint *ret)
{
        char host[INET6_ADDRSTRLEN + 2];
        union wg_endpoint e = {0};
        uint16_t port;
        size_t n;

        if (wg_endpoint_split(s, host, sizeof(host), &port) < 0)
                return -EINVAL;
        n = strlen(host);
        if (host[0] == '[') {
                if (n < 3 || host[n - 1] != ']')
                        return -EINVAL;
                host[n - 1] = '\0';
                if (inet_pton(AF_INET6, host + 1, &e.in6.sin6_addr) != 1)
                        return -EINVAL;
                e.in6.sin6_family = AF_INET6;
                e.in6.sin6_port = htons(port);
        } else {
                if (inet_pton(AF_INET, host, &e.in.sin_addr) != 1)
                        return -EINVAL;
                e.in.sin_family = AF_INET;
                e.in.sin_port = htons(port);
        }
        *ret = e;
        return 0;
}

int wg_endpoint_resolve(const char *s, union wg_endpoint *ret)
{
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM}, *ai = NULL;
        char host[256];
        uint16_t port;
        int r;

        if (wg_endpoint_parse(s, ret) == 0)
                return 0;
        if (wg_endpoint_split(s, host, sizeof(host), &port) < 0 || !host[0] || host[0] == '[' ||
            strchr(host, ':'))
                return -EINVAL; /* a bad literal, or an IPv6 literal without its brackets */
        r = getaddrinfo(host, NULL, &hints, &ai);
        if (r != 0 || !ai)
                return r == EAI_NONAME || r == EAI_NODATA ? -ENOENT : -EAGAIN;
        *ret = (union wg_endpoint){0};
        if (ai->ai_family == AF_INET6) {
                memcpy(&ret->in6, ai->ai_addr, sizeof(ret->in6));
                ret->in6.sin6_port = htons(port);
        } else {
                memcpy(&ret->in, ai->ai_addr, sizeof(ret->in));
                ret->in.sin_port = htons(port);
        }
        freeaddrinfo(ai);
        return 0;
}

bool wg_endpoint_syntax_ok(const char *s)
{
        union wg_endpoint e;
        char host[254];
        uint16_t port;
        size_t n;

        if (wg_endpoint_parse(s, &e) == 0)
                return true;
        if (wg_endpoint_split(s, host, sizeof(host), &port) < 0)
                return false;
        n = strlen(host);
        if (n == 0 || strchr("-.", host[0]) || strchr("-.", host[n - 1]))
                return false;
        return strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.") ==
               n;
}

void wg_endpoint_format(const union wg_endpoint *e, char out[WG_ENDPOINT_STR_SIZE])
{
        char a[INET6_ADDRSTRLEN] = "?";

        if (e->sa.sa_family == AF_INET6) {
                inet_ntop(AF_INET6, &e->in6.sin6_addr, a, sizeof(a));
                snprintf(out, WG_ENDPOINT_STR_SIZE, "[%s]:%u", a, ntohs(e->in6.sin6_port));
        } else {
                inet_ntop(AF_INET, &e->in.sin_addr, a, sizeof(a));
                snprintf(out, WG_ENDPOINT_STR_SIZE, "%s:%u", a, ntohs(e->in.sin_port));
        }
}

size_t wg_endpoint_len(const union wg_endpoint *e)
{
        return e->sa.sa_family == AF_INET6 ? sizeof(e->in6) : sizeof(e->in);
}

/* A UAPI socket's path fits a sockaddr_un, or wg_uapi_connect could not reach it anyway: that
 * bound, not PATH_MAX, sizes the buffers below. */
#define WG_UAPI_PATH_SIZE sizeof(((struct sockaddr_un *)0)->sun_path)

static int wg_uapi_path(const char *ifname, char *buf, size_t size)
{
        if (snprintf(buf, size, "%s/%s.sock", WG_UAPI_DIR, ifname) >= (int)size)
                return -ENAMETOOLONG;
        return 0;
}

enum wg_backend wg_backend_detect(const char *ifname)
{
        char path[WG_UAPI_PATH_SIZE];
        struct stat st;

        if (wg_uapi_path(ifname, path, sizeof(path)) == 0 && stat(path, &st) == 0 &&
            S_ISSOCK(st.st_mode))
                return WG_BACKEND_USERSPACE;
        return WG_BACKEND_KERNEL;
}

const char *wg_backend_name(enum wg_backend b)
{
        return b == WG_BACKEND_KERNEL ? "kernel" : "wireguard-go";
}

/* Starts wireguard-go, which daemonises once the device and its UAPI socket exist. */
static int wg_userspace_spawn(const char *ifname)
{
        const char *prog = getenv("TOTEBOX_WIREGUARD_GO");
        char path[WG_UAPI_PATH_SIZE];
        struct stat st;
        int status, devnull;
        pid_t pid;

        if (!prog || !*prog)
                prog = "wireguard-go";
        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
                if (devnull >= 0) {
                        dup2(devnull, STDIN_FILENO);
                        dup2(devnull, STDOUT_FILENO);
                        dup2(devnull, STDERR_FILENO); /* its banner, not ours to print */
                }
                unsetenv("WG_PROCESS_FOREGROUND");
                execlp(prog, prog, ifname, (char *)NULL);
                _exit(127);
        }
        if (waitpid(pid, &status, 0) < 0)
                return -errno;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                return WIFEXITED(status) && WEXITSTATUS(status) == 127 ? -ENOENT : -EIO;
        if (wg_uapi_path(ifname, path, sizeof(path)) < 0)
                return -ENAMETOOLONG;
        for (int i = 0; i < 100; i++) {
                if (stat(path, &st) == 0)
                        return 0;
                nanosleep(&(struct timespec){.tv_nsec = 20 * 1000 * 1000}, NULL);
        }
        return -ETIMEDOUT;
}

int wg_interface_create(const char *ifname, enum wg_backend *ret_backend)
{
        char buf[1024];
        struct nlmsghdr *nlh;
        int ret;

        if (!ifname || !ifname[0] || strlen(ifname) >= IFNAMSIZ)
                return -EINVAL;
        if (if_nametoindex(ifname) != 0) {
                if (ret_backend)
                        *ret_backend = wg_backend_detect(ifname);
                return 0;
        }
        ret = wg_nl_build_newlink(buf, sizeof(buf), 1, ifname, &nlh);
        if (ret == 0)
                ret = wg_rtnl_request(nlh);
        if (ret == 0) {
                if (ret_backend)
                        *ret_backend = WG_BACKEND_KERNEL;
                return 0;
        }
        /* No module: EOPNOTSUPP from rtnetlink ("Unknown device type"). */
        ret = wg_userspace_spawn(ifname);
        if (ret == 0 && ret_backend)
                *ret_backend = WG_BACKEND_USERSPACE;
        return ret;
}

int wg_interface_delete(const char *ifname)
{
        char buf[1024];
        struct nlmsghdr *nlh;
        int ret;

        if (if_nametoindex(ifname) == 0)
                return 0;
        ret = wg_nl_build_dellink(buf, sizeof(buf), 1, ifname, &nlh);
        return ret < 0 ? ret : wg_rtnl_request(nlh);
}

int wg_interface_set_address(const char *ifname, struct in_addr addr, uint8_t prefix)
{
        unsigned idx = if_nametoindex(ifname);
        char buf[1024];
        struct nlmsghdr *nlh;
        int ret;

        if (idx == 0)
                return -ENODEV;
        ret = wg_nl_build_newaddr(buf, sizeof(buf), 1, idx, addr, prefix, &nlh);
        if (ret == 0)
                ret = wg_rtnl_request(nlh);
        if (ret < 0 && ret != -EEXIST)
                return ret;
        ret = wg_nl_build_setlink_up(buf, sizeof(buf), 2, idx, &nlh);
        return ret < 0 ? ret : wg_rtnl_request(nlh);
}

int wg_device_set(const struct wg_device *d)
{
        if (if_nametoindex(d->ifname) == 0)
                return -ENODEV;
        return wg_backend_detect(d->ifname) == WG_BACKEND_USERSPACE ? wg_uapi_set(d)
                                                                    : wg_kernel_set(d);
}

int wg_device_get(const char *ifname, struct wg_device **ret)
{
        if (if_nametoindex(ifname) == 0)
                return -ENODEV;
        return wg_backend_detect(ifname) == WG_BACKEND_USERSPACE ? wg_uapi_get(ifname, ret)
                                                                 : wg_kernel_get(ifname, ret);
}
