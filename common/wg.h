/* WireGuard control: one API over two backends, chosen automatically. The kernel module is driven
 * over generic netlink (libmnl) and links/addresses over rtnetlink; where the module is missing,
 * userspace wireguard-go is started and driven over its UAPI socket
 * /var/run/wireguard/IFNAME.sock. The mesh inside is IPv4 (allowed IPs, addresses); endpoints,
 * the underlay a peer is reached at, are IPv4 or IPv6. Private keys are generated
 * with libsodium, stored 0600, never logged, and wiped: wg_device_free() zeroes them. Callers
 * must have called sodium_init() (UAPI buffers come from sodium_malloc). */
#pragma once
#include <linux/netlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define WG_KEY_LEN          32
#define WG_KEY_B64_SIZE     45 /* 44 characters and the NUL */
#define WG_PEER_ALLOWED_MAX 64
#define WG_PEERS_MAX        4096
#define WG_UAPI_DIR         "/var/run/wireguard"
#define WG_NL_BUF_SIZE      (128 * 1024)

enum wg_backend { WG_BACKEND_KERNEL, WG_BACKEND_USERSPACE };

struct wg_allowed_ip {
        struct in_addr addr;
        uint8_t cidr;
};

/* A peer's endpoint: sa.sa_family says which member holds it (AF_INET or AF_INET6). */
union wg_endpoint {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
};

/* "a.b.c.d:port" or "[v6]:port", and the NUL. */
#define WG_ENDPOINT_STR_SIZE (INET6_ADDRSTRLEN + 8)

struct wg_peer {
        uint8_t public_key[WG_KEY_LEN];
        bool remove; /* wg_device_set: remove this peer */
        bool has_endpoint;
        union wg_endpoint endpoint;
        uint16_t keepalive_s; /* 0: off */
        size_t n_allowed_ips;
        struct wg_allowed_ip allowed_ips[WG_PEER_ALLOWED_MAX];
        /* Read back by wg_device_get. */
        int64_t last_handshake_sec;
        uint64_t rx_bytes, tx_bytes;
};

struct wg_device {
        char ifname[IFNAMSIZ];
        bool has_private_key;
        uint8_t private_key[WG_KEY_LEN];
        bool has_public_key; /* read back only */
        uint8_t public_key[WG_KEY_LEN];
        bool has_listen_port;
        uint16_t listen_port;
        bool replace_peers; /* wg_device_set: peers not listed are removed */
        size_t n_peers;
        struct wg_peer *peers;
};

/* Keys. */
void wg_key_generate_private(uint8_t key[WG_KEY_LEN]);
void wg_key_public_from_private(uint8_t pub[WG_KEY_LEN], const uint8_t priv[WG_KEY_LEN]);
void wg_key_to_base64(char out[WG_KEY_B64_SIZE], const uint8_t key[WG_KEY_LEN]);
int wg_key_from_base64(uint8_t key[WG_KEY_LEN], const char *b64);
/* Writes base64 + newline to path with mode 0600 (atomically, via a temporary file). */
int wg_key_save(const char *path, const uint8_t key[WG_KEY_LEN]);
/* Refuses (-EPERM) a key file that group or others can read or that another user owns. */
int wg_key_load(const char *path, uint8_t key[WG_KEY_LEN]);

/* Devices. */
struct wg_device *wg_device_new(const char *ifname);
void wg_device_free(struct wg_device *d);
/* Appends a zeroed peer; NULL when WG_PEERS_MAX is reached or out of memory. */
struct wg_peer *wg_device_add_peer(struct wg_device *d);
int wg_peer_add_allowed_ip(struct wg_peer *p, struct in_addr addr, uint8_t cidr);
/* Parses "a.b.c.d:port" or "[v6]:port" (a literal; no scope id); -EINVAL otherwise. */
int wg_endpoint_parse(const char *s, union wg_endpoint *ret);
/* A literal as wg_endpoint_parse takes it, or "hostname:port" resolved now to the first address
 * the system's resolver gives (/etc/hosts first; IPv4 or IPv6): -EINVAL when malformed, -ENOENT
 * when the name has no address, -EAGAIN when the resolver failed. */
int wg_endpoint_resolve(const char *s, union wg_endpoint *ret);
/* Whether s has an endpoint's shape, resolving nothing: a literal wg_endpoint_parse takes, or
 * "hostname:port" (letters, digits, '-' and '.', at most 253, not starting or ending in '-' or
 * '.'). What the roster and the pairing messages carry. */
bool wg_endpoint_syntax_ok(const char *s);
/* Writes e as wg_endpoint_parse reads it back ("[v6]:port" for IPv6). */
void wg_endpoint_format(const union wg_endpoint *e, char out[WG_ENDPOINT_STR_SIZE]);
/* The bytes of e that the kernel takes (WGPEER_A_ENDPOINT): sizeof of its family's sockaddr. */
size_t wg_endpoint_len(const union wg_endpoint *e);

/* Interfaces and configuration; the backend is found from the interface. */
enum wg_backend wg_backend_detect(const char *ifname);
const char *wg_backend_name(enum wg_backend b);
/* Creates ifname unless it exists: the kernel module first, else wireguard-go (the program named
 * by $TOTEBOX_WIREGUARD_GO, default "wireguard-go"). */
int wg_interface_create(const char *ifname, enum wg_backend *ret_backend);
int wg_interface_delete(const char *ifname);
/* Adds addr/prefix (an existing identical address is fine) and sets the link up. */
int wg_interface_set_address(const char *ifname, struct in_addr addr, uint8_t prefix);
int wg_device_set(const struct wg_device *d);
int wg_device_get(const char *ifname, struct wg_device **ret);

/* Userspace backend (wg_uapi.c). The text protocol is built and parsed here; the parser is
 * streaming (one line at a time) so that it is easy to test and fuzz. */
int wg_uapi_set(const struct wg_device *d);
int wg_uapi_get(const char *ifname, struct wg_device **ret);
/* Appends the "set=1" request for d to a malloc'd buffer (wipe and free it). */
int wg_uapi_format_set(const struct wg_device *d, char **ret_buf, size_t *ret_len);
struct wg_uapi_parser {
        struct wg_device *dev;
        struct wg_peer *peer;
        int errno_value; /* the "errno=" line, -1 until seen */
        bool done;
};
void wg_uapi_parser_init(struct wg_uapi_parser *p, struct wg_device *d);
/* One line without its newline; an empty line ends the reply. -EINVAL on a malformed line. */
int wg_uapi_parser_line(struct wg_uapi_parser *p, const char *line, size_t len);

/* Kernel backend (wg_netlink.c): message builders and parsers are separate from the socket code
 * so that unit tests check the netlink messages byte by byte without the module. */
int wg_nl_build_set_device(void *buf, size_t cap, uint16_t family, uint32_t seq,
                           const struct wg_device *d, struct nlmsghdr **ret);
int wg_nl_build_get_device(void *buf, size_t cap, uint16_t family, uint32_t seq, const char *ifname,
                           struct nlmsghdr **ret);
/* Merges one WG_CMD_GET_DEVICE reply message into d (a dump can split peers across messages). */
int wg_nl_parse_device(const struct nlmsghdr *nlh, struct wg_device *d);
int wg_nl_build_newlink(void *buf, size_t cap, uint32_t seq, const char *ifname,
                        struct nlmsghdr **ret);
int wg_nl_build_dellink(void *buf, size_t cap, uint32_t seq, const char *ifname,
                        struct nlmsghdr **ret);
int wg_nl_build_newaddr(void *buf, size_t cap, uint32_t seq, unsigned ifindex, struct in_addr addr,
                        uint8_t prefix, struct nlmsghdr **ret);
int wg_nl_build_setlink_up(void *buf, size_t cap, uint32_t seq, unsigned ifindex,
                           struct nlmsghdr **ret);
int wg_kernel_set(const struct wg_device *d);
int wg_kernel_get(const char *ifname, struct wg_device **ret);
/* Runs one rtnetlink request and waits for its ACK. */
int wg_rtnl_request(struct nlmsghdr *nlh);
