/* Shared by fleetd's benchmarks: synthetic rosters and heartbeats, and a sender that floods a
 * UDP port from many 127.x source addresses through one socket (IP_PKTINFO picks the source). */
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/heartbeat.h"

static inline double bench_now(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline struct in_addr bench_addr(unsigned i)
{
        struct in_addr a = {
            htonl((127u << 24) | ((1 + i / 65536) << 16) | (((i / 256) % 256) << 8) | (i % 256))};

        return a;
}

/* A roster of n nodes n1..nN at bench_addr(i) plus "ctl" at 127.0.0.1 (malloc'd JSON). */
static inline char *bench_roster(unsigned n)
{
        size_t cap = 256 + (size_t)n * 96, len;
        char *s = malloc(cap);

        len =
            (size_t)snprintf(s, cap,
                             "{\"v\":1,\"version\":1,\"fleet_id\":\"bench\",\"controller\":\"ctl\","
                             "\"nodes\":[{\"id\":\"ctl\",\"role\":\"cloud\",\"mesh_address\":"
                             "\"127.0.0.1\"}");
        for (unsigned i = 1; i <= n; i++) {
                char a[INET_ADDRSTRLEN];
                struct in_addr in = bench_addr(i);

                inet_ntop(AF_INET, &in, a, sizeof(a));
                len += (size_t)snprintf(
                    s + len, cap - len,
                    ",{\"id\":\"n%u\",\"role\":\"node\",\"mesh_address\":\"%s\"}", i, a);
        }
        snprintf(s + len, cap - len, "]}");
        return s;
}

static inline int bench_heartbeat(unsigned i, uint64_t seq, char *buf, size_t size)
{
        struct heartbeat hb = {.epoch = 1000,
                               .seq = seq,
                               .interval_ms = 10000,
                               .cpus = 8,
                               .cpu_percent = 12.5,
                               .mem_total_mib = 65536,
                               .mem_available_mib = 20000 + (i * 7919u) % 30000,
                               .mem_committed_mib = 1024,
                               .libvirt_age_ms = 20,
                               .vm_count = 3};

        snprintf(hb.node_id, sizeof(hb.node_id), "n%u", i);
        memset(hb.inventory_digest, 'a', DIGEST_HEX_LEN);
        return heartbeat_encode(&hb, buf, size);
}

struct bench_flood {
        unsigned nodes, rounds;
        char (*bufs)[HEARTBEAT_MAX_BYTES];
        int *lens;
};

/* Pre-encodes rounds x nodes heartbeats (round r carries seq r + 1). */
static inline int bench_flood_init(struct bench_flood *fl, unsigned nodes, unsigned rounds)
{
        size_t n = (size_t)nodes * rounds;

        fl->nodes = nodes;
        fl->rounds = rounds;
        fl->bufs = malloc(n * sizeof(*fl->bufs));
        fl->lens = malloc(n * sizeof(*fl->lens));
        if (!fl->bufs || !fl->lens)
                return -1;
        for (unsigned r = 0; r < rounds; r++)
                for (unsigned i = 0; i < nodes; i++) {
                        size_t k = (size_t)r * nodes + i;

                        fl->lens[k] =
                            bench_heartbeat(i + 1, r + 1, fl->bufs[k], HEARTBEAT_MAX_BYTES);
                        if (fl->lens[k] < 0)
                                return -1;
                }
        return 0;
}

/* Sends every pre-encoded datagram to port on 127.0.0.1, each from its node's address. */
static inline double bench_flood_send(const struct bench_flood *fl, uint16_t port)
{
        enum { BATCH = 64 };
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in dst = {
            .sin_family = AF_INET, .sin_port = htons(port), .sin_addr = {htonl(INADDR_LOOPBACK)}};
        struct mmsghdr msgs[BATCH];
        struct iovec iov[BATCH];
        char cbuf[BATCH][CMSG_SPACE(sizeof(struct in_pktinfo))];
        size_t total = (size_t)fl->nodes * fl->rounds;
        double t0 = bench_now();

        for (size_t k = 0; k < total;) {
                unsigned n = 0;

                memset(msgs, 0, sizeof(msgs));
                for (; n < BATCH && k < total; n++, k++) {
                        struct cmsghdr *c;
                        struct in_pktinfo *pi;

                        iov[n] = (struct iovec){fl->bufs[k], (size_t)fl->lens[k]};
                        msgs[n].msg_hdr.msg_name = &dst;
                        msgs[n].msg_hdr.msg_namelen = sizeof(dst);
                        msgs[n].msg_hdr.msg_iov = &iov[n];
                        msgs[n].msg_hdr.msg_iovlen = 1;
                        msgs[n].msg_hdr.msg_control = cbuf[n];
                        msgs[n].msg_hdr.msg_controllen = sizeof(cbuf[n]);
                        c = CMSG_FIRSTHDR(&msgs[n].msg_hdr);
                        c->cmsg_level = IPPROTO_IP;
                        c->cmsg_type = IP_PKTINFO;
                        c->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
                        pi = (struct in_pktinfo *)CMSG_DATA(c);
                        memset(pi, 0, sizeof(*pi));
                        pi->ipi_spec_dst = bench_addr((unsigned)(k % fl->nodes) + 1);
                }
                if (sendmmsg(fd, msgs, n, 0) < 0) {
                        perror("sendmmsg");
                        break;
                }
        }
        close(fd);
        return bench_now() - t0;
}
