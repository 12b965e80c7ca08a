/* wg_kernel_probe: drives the project's WireGuard control code (common/wg*.c) against whatever
 * kernel it runs on, as vmhost-helper and totebox-pair do: create wg0, give it an address, set
 * a private key, a port and PEERS peers, read them back, then change the set (remove every third
 * peer, move two endpoints, one of them from IPv4 to IPv6, drop a keepalive; a quarter of the
 * endpoints are IPv6) and read it back again. test_wg_kernel.py runs it
 * inside a small TCG guest whose kernel has the real wireguard module, and holds what it set
 * against what it read and against `wg show wg0 dump` (wireguard-tools, a separate reader).
 *
 * Output, one fact per line:
 *   backend kernel|userspace
 *   device PUBLIC-KEY LISTEN-PORT
 *   set|got PHASE PUBLIC-KEY ENDPOINT KEEPALIVE ALLOWED-IP,...
 *   done */
#include <arpa/inet.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/wg.h"

#define PEERS       300
#define ALLOWED_PER 4

static void print_peer(const char *what, int phase, const struct wg_peer *p)
{
        char key[WG_KEY_B64_SIZE], ep[WG_ENDPOINT_STR_SIZE] = "(none)";

        wg_key_to_base64(key, p->public_key);
        if (p->has_endpoint)
                wg_endpoint_format(&p->endpoint, ep);
        printf("%s %d %s %s %u ", what, phase, key, ep, p->keepalive_s);
        for (size_t i = 0; i < p->n_allowed_ips; i++) {
                char a[INET_ADDRSTRLEN];

                inet_ntop(AF_INET, &p->allowed_ips[i].addr, a, sizeof(a));
                printf("%s%s/%u", i ? "," : "", a, p->allowed_ips[i].cidr);
        }
        printf("\n");
}

static int read_back(int phase)
{
        struct wg_device *got = NULL;
        char key[WG_KEY_B64_SIZE];
        int r = wg_device_get("wg0", &got);

        if (r < 0) {
                fprintf(stderr, "wg_device_get: %s\n", strerror(-r));
                return r;
        }
        if (phase == 1) {
                wg_key_to_base64(key, got->public_key);
                printf("device %s %u\n", key, got->listen_port);
        }
        for (size_t i = 0; i < got->n_peers; i++)
                print_peer("got", phase, &got->peers[i]);
        wg_device_free(got);
        return 0;
}

static int fill(struct wg_device *d)
{
        for (unsigned i = 0; i < PEERS; i++) {
                struct wg_peer *p = wg_device_add_peer(d);
                uint8_t priv[WG_KEY_LEN];
                char ep[WG_ENDPOINT_STR_SIZE];

                if (!p)
                        return -ENOMEM;
                wg_key_generate_private(priv);
                wg_key_public_from_private(p->public_key, priv);
                /* Every fourth endpoint is IPv6: [fd00:78::N]:PORT, else 10.78.x.y:PORT. */
                snprintf(ep, sizeof(ep), i % 4 == 3 ? "[fd00:78::%x]:%u" : "10.78.%u.%u:%u",
                         i % 4 == 3 ? i + 1 : (i + 1) / 256, i % 4 == 3 ? 40000 + i : (i + 1) % 256,
                         40000 + i);
                p->has_endpoint = wg_endpoint_parse(ep, &p->endpoint) == 0;
                if (!p->has_endpoint)
                        return -EINVAL;
                p->keepalive_s = i % 2 ? 0 : 25;
                for (unsigned a = 0; a < ALLOWED_PER; a++) {
                        struct in_addr ip = {htonl(0x0a640000u | (i << 4) | (a << 2))};

                        if (wg_peer_add_allowed_ip(p, ip, a == 0 ? 32 : 30) < 0)
                                return -EINVAL;
                }
        }
        return 0;
}

int main(void)
{
        struct wg_device *d;
        enum wg_backend backend;
        struct in_addr addr = {htonl(0x0a4d0001u)}; /* 10.77.0.1 */
        int r;

        if (sodium_init() < 0)
                return 1;
        setvbuf(stdout, NULL, _IOLBF, 0);
        r = wg_interface_create("wg0", &backend);
        if (r < 0 || (r = wg_interface_set_address("wg0", addr, 24)) < 0) {
                fprintf(stderr, "wg0: %s\n", strerror(-r));
                return 1;
        }
        printf("backend %s\n", wg_backend_name(backend));
        d = wg_device_new("wg0");
        if (!d)
                return 1;
        wg_key_generate_private(d->private_key);
        d->has_private_key = d->has_listen_port = d->replace_peers = true;
        d->listen_port = 51820;
        if ((r = fill(d)) < 0 || (r = wg_device_set(d)) < 0) {
                fprintf(stderr, "set 1: %s\n", strerror(-r));
                return 1;
        }
        for (size_t i = 0; i < d->n_peers; i++)
                print_peer("set", 1, &d->peers[i]);
        if (read_back(1) < 0)
                return 1;

        /* Phase 2: an update, not a replacement: removals, one moved endpoint, one keepalive off.
         */
        d->replace_peers = false;
        d->has_private_key = d->has_listen_port = false;
        for (size_t i = 0; i < d->n_peers; i++)
                d->peers[i].remove = i % 3 == 0;
        if (wg_endpoint_parse("10.79.0.1:40001", &d->peers[1].endpoint) < 0 ||
            wg_endpoint_parse("[fd00:79::4]:40004", &d->peers[4].endpoint) < 0)
                return 1; /* one endpoint moved within IPv4, one from IPv4 to IPv6 */
        d->peers[2].keepalive_s = 0;
        if ((r = wg_device_set(d)) < 0) {
                fprintf(stderr, "set 2: %s\n", strerror(-r));
                return 1;
        }
        for (size_t i = 0; i < d->n_peers; i++)
                if (!d->peers[i].remove)
                        print_peer("set", 2, &d->peers[i]);
        if (read_back(2) < 0)
                return 1;
        wg_device_free(d);
        printf("done\n");
        return 0;
}
