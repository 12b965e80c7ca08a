/* Shared by fleetd's benchmarks: synthetic rosters and heartbeats, and a sender that floods a
 * UDP port from many 127.x source addresses through one socket (IP_PKTINFO picks the source). */
#pragma once
#include <arpa/inet.h>
#include <libgen.h>
#include <limits.h>
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

/* Sends pre-encoded datagrams k0..k1-1 to port on 127.0.0.1, each from its node's address. */
static inline double bench_flood_send_range(const struct bench_flood *fl, uint16_t port, size_t k0,
                                            size_t k1)
{
        enum { BATCH = 64 };
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in dst = {
            .sin_family = AF_INET, .sin_port = htons(port), .sin_addr = {htonl(INADDR_LOOPBACK)}};
        struct mmsghdr msgs[BATCH];
        struct iovec iov[BATCH];
        char cbuf[BATCH][CMSG_SPACE(sizeof(struct in_pktinfo))];
        size_t total = k1;
        double t0 = bench_now();

        for (size_t k = k0; k < total;) {
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

/* Sends every pre-encoded datagram. */
static inline double bench_flood_send(const struct bench_flood *fl, uint16_t port)
{
        return bench_flood_send_range(fl, port, 0, (size_t)fl->nodes * fl->rounds);
}

static inline uint16_t bench_free_port(int type)
{
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr = {htonl(INADDR_LOOPBACK)}};
        socklen_t sl = sizeof(sa);
        int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);

        bind(fd, (struct sockaddr *)&sa, sizeof(sa));
        getsockname(fd, (struct sockaddr *)&sa, &sl);
        close(fd);
        return ntohs(sa.sin_port);
}

/* A field of /proc/PID/status in KiB ("VmRSS:", "VmHWM:"), or -1. */
static inline long bench_proc_kib(pid_t pid, const char *field)
{
        char path[64], line[256];
        long kib = -1;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
        f = fopen(path, "r");
        while (f && fgets(line, sizeof(line), f))
                if (strncmp(line, field, strlen(field)) == 0)
                        kib = strtol(line + strlen(field), NULL, 10);
        if (f)
                fclose(f);
        return kib;
}

/* Starts the real fleetd on loopback (auth off, state in dir); returns its pid. */
static inline pid_t bench_fleetd_spawn(const char *fleetd, const char *roster_path, const char *dir,
                                       uint16_t api, uint16_t hbp)
{
        char o[8][PATH_MAX + 32], *args[20];
        int a = 0;
        pid_t pid;

        snprintf(o[0], sizeof(o[0]), "roster_file=%s", roster_path);
        snprintf(o[1], sizeof(o[1]), "state_dir=%s/state", dir);
        snprintf(o[2], sizeof(o[2]), "api_port=%u", api);
        snprintf(o[3], sizeof(o[3]), "heartbeat_port=%u", hbp);
        snprintf(o[4], sizeof(o[4]), "heartbeat_listen=127.0.0.1");
        snprintf(o[5], sizeof(o[5]), "auth=false");
        snprintf(o[6], sizeof(o[6]), "log_level=warn");
        snprintf(o[7], sizeof(o[7]), "dispatch_backoff=60s");
        args[a++] = (char *)fleetd;
        for (int i = 0; i < 8; i++) {
                args[a++] = "--set";
                args[a++] = o[i];
        }
        args[a] = NULL;
        pid = fork();
        if (pid == 0) {
                execv(fleetd, args);
                _exit(127);
        }
        return pid;
}

/* Writes an n-node roster into dir and starts the fleetd binary built beside this benchmark
 * (../../fleetd/fleetd from the bench's own path) on it; returns its pid, or -1. */
static inline pid_t bench_fleetd_start(unsigned nodes, const char *dir, uint16_t api, uint16_t hbp)
{
        char exe[PATH_MAX], fleetd[PATH_MAX + 32], roster_path[PATH_MAX + 16];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        char *text = bench_roster(nodes);
        FILE *fp;

        if (n < 0 || !text) {
                free(text);
                return -1;
        }
        exe[n] = '\0';
        snprintf(fleetd, sizeof(fleetd), "%s/../../fleetd/fleetd", dirname(exe));
        snprintf(roster_path, sizeof(roster_path), "%s/roster.json", dir);
        fp = fopen(roster_path, "w");
        if (fp) {
                fputs(text, fp);
                fclose(fp);
        }
        free(text);
        return fp ? bench_fleetd_spawn(fleetd, roster_path, dir, api, hbp) : -1;
}
