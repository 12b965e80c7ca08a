/* wg_peer_up: brings up one WireGuard interface with one peer through the project's WireGuard
 * control code (common/wg*.c: the kernel module when there is one, else wireguard-go over UAPI),
 * the way mesh.c does for a roster entry: the endpoint is resolved with wg_endpoint_resolve, so it
 * may be IPV4:PORT, [IPV6]:PORT or HOSTNAME:PORT. test_wg_ipv6.py runs it in two namespaces.
 *
 *   wg_peer_up IFNAME PRIVATE-KEY-FILE PORT ADDRESS/PREFIX PEER-PUBLIC-KEY ENDPOINT|-
 * ALLOWED/PREFIX
 *
 * Prints "backend NAME" and "endpoint RESOLVED" (as the backend reads it back). */
#include <arpa/inet.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/wg.h"

static int cidr(const char *s, struct in_addr *addr, uint8_t *prefix)
{
        char buf[INET_ADDRSTRLEN];
        const char *slash = strchr(s, '/');

        if (!slash || (size_t)(slash - s) >= sizeof(buf))
                return -EINVAL;
        memcpy(buf, s, (size_t)(slash - s));
        buf[slash - s] = '\0';
        *prefix = (uint8_t)atoi(slash + 1);
        return inet_pton(AF_INET, buf, addr) == 1 && *prefix <= 32 ? 0 : -EINVAL;
}

int main(int argc, char **argv)
{
        struct wg_device *d, *got = NULL;
        struct wg_peer *p;
        struct in_addr addr, allowed;
        uint8_t prefix, allowed_prefix;
        enum wg_backend backend;
        char ep[WG_ENDPOINT_STR_SIZE] = "(none)";
        int r;

        if (argc != 8 || sodium_init() < 0) {
                fprintf(stderr, "usage: wg_peer_up IFNAME KEYFILE PORT ADDR/PREFIX PEER-KEY "
                                "ENDPOINT|- ALLOWED/PREFIX\n");
                return 2;
        }
        d = wg_device_new(argv[1]);
        p = d ? wg_device_add_peer(d) : NULL;
        if (!p || wg_key_load(argv[2], d->private_key) < 0 || cidr(argv[4], &addr, &prefix) < 0 ||
            wg_key_from_base64(p->public_key, argv[5]) < 0 ||
            cidr(argv[7], &allowed, &allowed_prefix) < 0 ||
            wg_peer_add_allowed_ip(p, allowed, allowed_prefix) < 0) {
                fprintf(stderr, "wg_peer_up: bad arguments\n");
                wg_device_free(d);
                return 2;
        }
        if (strcmp(argv[6], "-") != 0) {
                r = wg_endpoint_resolve(argv[6], &p->endpoint);
                if (r < 0) {
                        fprintf(stderr, "wg_peer_up: endpoint '%s': %s\n", argv[6], strerror(-r));
                        wg_device_free(d);
                        return 1;
                }
                p->has_endpoint = true;
        }
        p->keepalive_s = 1;
        d->has_private_key = d->has_listen_port = d->replace_peers = true;
        d->listen_port = (uint16_t)atoi(argv[3]);
        if ((r = wg_interface_create(argv[1], &backend)) < 0 ||
            (r = wg_interface_set_address(argv[1], addr, prefix)) < 0 ||
            (r = wg_device_set(d)) < 0 || (r = wg_device_get(argv[1], &got)) < 0) {
                fprintf(stderr, "wg_peer_up: %s: %s\n", argv[1], strerror(-r));
                wg_device_free(d);
                return 1;
        }
        if (got->n_peers == 1 && got->peers[0].has_endpoint)
                wg_endpoint_format(&got->peers[0].endpoint, ep);
        printf("backend %s\nendpoint %s\n", wg_backend_name(backend), ep);
        wg_device_free(got);
        wg_device_free(d);
        return 0;
}
