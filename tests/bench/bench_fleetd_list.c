/* GET /v1/nodes under load, beside a named peer. For each fleet size N (1,000 and 10,000 by
 * default), the real fleetd binary with an N-node roster, every node heartbeating once per 10 s
 * over UDP (spread evenly), and C clients on keep-alive connections polling GET /v1/nodes for
 * S seconds each run:
 *   1. fleetd, full answers;
 *   2. fleetd, each client sending back the ETag of its last answer (If-None-Match);
 *   3. the peer: a libmicrohttpd daemon set up as fleetd's (thread per connection, the same
 *      limits), in its own process, serving the same bytes as a static buffer.
 * Prints requests/s, p50/p99 latency, the server's CPU and its peak RSS (VmHWM) for each, then
 * per fleet size the base RSS (VmRSS before the clients: fleetd with every node heard once, the
 * peer holding its bytes) and the peak RSS (VmHWM) of fleetd beside the peer's.
 * Targets: p99 < 50 ms with 20 clients at 1,000 nodes; fleetd's peak RSS < 48 MiB at 10,000.
 * Loopback only; every loop is bounded by the run's time.
 * usage: bench_fleetd_list [NODES[,NODES...]] [CLIENTS] [SECONDS] */
#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/wait.h>

#include "bench_fleetd_util.h"
#include "fleetd/api.h"

#define MAX_CLIENTS 64
#define MAX_SAMPLES 200000

struct client {
        uint16_t port;
        bool etag;
        double until;
        double *lat; /* seconds */
        size_t n, not_modified, errors, bytes;
};

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;

        return x < y ? -1 : x > y;
}

static int client_connect(uint16_t port)
{
        struct sockaddr_in sa = {
            .sin_family = AF_INET, .sin_port = htons(port), .sin_addr = {htonl(INADDR_LOOPBACK)}};
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct timeval tv = {5, 0};

        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                close(fd);
                return -1;
        }
        return fd;
}

/* One request on fd; returns the status (0 on a transport error); copies the ETag. */
static int client_get(int fd, const char *etag, char *ret_etag, size_t *ret_bytes, char *buf,
                      size_t cap)
{
        char req[256];
        size_t have = 0, body = 0, need;
        int n = snprintf(req, sizeof(req), "GET /v1/nodes HTTP/1.1\r\nHost: bench\r\n%s%s%s\r\n",
                         etag[0] ? "If-None-Match: " : "", etag, etag[0] ? "\r\n" : "");
        char *end = NULL, *cl, *et;
        int status;

        if (write(fd, req, (size_t)n) != n)
                return 0;
        while (!end) {
                ssize_t r = read(fd, buf + have, cap - 1 - have);

                if (r <= 0)
                        return 0;
                have += (size_t)r;
                buf[have] = '\0';
                end = strstr(buf, "\r\n\r\n");
        }
        status = atoi(buf + 9);
        cl = strcasestr(buf, "\r\nContent-Length:");
        body = cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
        et = strcasestr(buf, "\r\nETag: ");
        if (et && et < end)
                sscanf(et + 8, "%63[^\r]", ret_etag);
        need = (size_t)(end + 4 - buf) + body;
        while (have < need) {
                ssize_t r = read(fd, buf, cap - 1 < need - have ? cap - 1 : need - have);

                if (r <= 0)
                        return 0;
                have += (size_t)r;
        }
        *ret_bytes = body;
        return status;
}

static void *client_run(void *arg)
{
        struct client *c = arg;
        size_t cap = 8 << 20;
        char *buf = malloc(cap), etag[64] = "", last[64] = "";
        int fd = client_connect(c->port);

        while (buf && fd >= 0 && bench_now() < c->until && c->n < MAX_SAMPLES) {
                double t0 = bench_now();
                size_t bytes = 0;
                int st = client_get(fd, c->etag ? last : "", etag, &bytes, buf, cap);

                if (st == 0) {
                        c->errors++;
                        close(fd);
                        fd = client_connect(c->port);
                        continue;
                }
                c->lat[c->n++] = bench_now() - t0;
                c->bytes += bytes;
                c->not_modified += st == 304;
                c->errors += st != 200 && st != 304;
                memcpy(last, etag, sizeof(last));
        }
        if (fd >= 0)
                close(fd);
        free(buf);
        return NULL;
}

static double proc_cpu_s(pid_t pid)
{
        char path[64], text[1024], *p;
        unsigned long ut = 0, st = 0;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        f = fopen(path, "r");
        if (!f)
                return 0;
        text[fread(text, 1, sizeof(text) - 1, f)] = '\0';
        fclose(f);
        p = strrchr(text, ')');
        if (p)
                sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st);
        return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* C clients for `seconds` against port; prints one line of figures for `name`. */
static struct run_figures {
        double req_s, p50_ms, p99_ms, peak_mib;
} bench_clients(const char *name, pid_t server, uint16_t port, unsigned clients, double seconds,
                bool etag)
{
        struct client c[MAX_CLIENTS];
        pthread_t th[MAX_CLIENTS];
        double cpu0 = proc_cpu_s(server), t0 = bench_now(), wall, *all;
        size_t total = 0, nm = 0, errors = 0, bytes = 0, k = 0;
        struct run_figures fig;

        for (unsigned i = 0; i < clients; i++) {
                c[i] = (struct client){.port = port, .etag = etag, .until = t0 + seconds};
                c[i].lat = malloc(MAX_SAMPLES * sizeof(double));
                pthread_create(&th[i], NULL, client_run, &c[i]);
        }
        for (unsigned i = 0; i < clients; i++) {
                pthread_join(th[i], NULL);
                total += c[i].n;
                nm += c[i].not_modified;
                errors += c[i].errors;
                bytes += c[i].bytes;
        }
        wall = bench_now() - t0;
        all = malloc((total ? total : 1) * sizeof(double));
        for (unsigned i = 0; i < clients; i++) {
                memcpy(all + k, c[i].lat, c[i].n * sizeof(double));
                k += c[i].n;
                free(c[i].lat);
        }
        qsort(all, total, sizeof(double), cmp_double);
        fig = (struct run_figures){(double)total / wall, total ? all[total / 2] * 1e3 : 0,
                                   total ? all[total * 99 / 100] * 1e3 : 0,
                                   (double)bench_proc_kib(server, "VmHWM:") / 1024};
        printf("%-34s %7.0f req/s  p50 %7.2f ms  p99 %7.2f ms  cpu %5.1f%%  peak RSS %6.1f MiB  "
               "%zu req, %zu 304, %zu errors, %.0f KB/answer\n",
               name, (double)total / wall, total ? all[total / 2] * 1e3 : 0,
               total ? all[total * 99 / 100] * 1e3 : 0, 100 * (proc_cpu_s(server) - cpu0) / wall,
               (double)bench_proc_kib(server, "VmHWM:") / 1024, total, nm, errors,
               total - nm ? (double)bytes / (double)(total - nm) / 1000 : 0);
        free(all);
        return fig;
}

/* The peer: the same bytes as a persistent buffer, behind libmicrohttpd set up as fleetd's. */
static enum MHD_Result peer_access(void *cls, struct MHD_Connection *conn, const char *url,
                                   const char *method, const char *version, const char *data,
                                   size_t *size, void **con_cls)
{
        static int first_call;

        if (!*con_cls) { /* as fleetd: answer once the request is read, so keep-alive holds */
                *con_cls = &first_call;
                return MHD_YES;
        }
        return MHD_queue_response(conn, 200, cls);
}

/* Forked before the bench allocates anything, so that its RSS is its own: it reads the bytes
 * to serve from fd (a length, then the bytes), then serves them. */
static pid_t peer_spawn(int fd, uint16_t port)
{
        pid_t pid = fork();

        if (pid == 0) {
                struct sockaddr_in sa = {.sin_family = AF_INET,
                                         .sin_port = htons(port),
                                         .sin_addr = {htonl(INADDR_LOOPBACK)}};
                size_t len = 0, got = 0;
                struct MHD_Response *r;
                char *body;
                ssize_t n;

                if (read(fd, &len, sizeof(len)) != sizeof(len) || len > (64u << 20) ||
                    !(body = malloc(len + 1)))
                        _exit(1);
                while (got < len && (n = read(fd, body + got, len - got)) > 0)
                        got += (size_t)n;
                r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_PERSISTENT);
                MHD_add_response_header(r, "Content-Type", "application/json");
                MHD_add_response_header(r, "Cache-Control", "no-cache");
                if (got != len ||
                    !MHD_start_daemon(
                        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, NULL,
                        NULL, peer_access, r, MHD_OPTION_SOCK_ADDR, &sa,
                        MHD_OPTION_CONNECTION_LIMIT, (unsigned)64, MHD_OPTION_CONNECTION_TIMEOUT,
                        (unsigned)30, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)API_CONN_MEMORY,
                        MHD_OPTION_END))
                        _exit(1);
                pause();
                _exit(0);
        }
        close(fd);
        return pid;
}

/* Heartbeats from every node once per 10 s, spread in 100 ms steps, until `until`. */
struct hb_feed {
        struct bench_flood fl;
        uint16_t port;
        double until;
};

static void *hb_run(void *arg)
{
        struct hb_feed *h = arg;
        size_t total = (size_t)h->fl.nodes * h->fl.rounds, step = h->fl.nodes / 100 + 1, k = 0;

        while (bench_now() < h->until && k < total) {
                size_t k1 = k + step < total ? k + step : total;

                bench_flood_send_range(&h->fl, h->port, k, k1);
                k = k1;
                usleep(100000);
        }
        return NULL;
}

static char *fetch_nodes(uint16_t port, size_t *ret_len)
{
        size_t cap = 8 << 20, bytes = 0;
        char *buf = malloc(cap), etag[64] = "";
        int fd = client_connect(port), st;
        char *body;

        st = fd >= 0 && buf ? client_get(fd, "", etag, &bytes, buf, cap) : 0;
        if (fd >= 0)
                close(fd);
        if (st != 200 || !buf) {
                free(buf);
                return NULL;
        }
        /* client_get leaves the tail of the answer in buf; fetch again into a fresh copy */
        body = malloc(bytes + 1);
        fd = client_connect(port);
        if (body && fd >= 0) {
                size_t off;

                snprintf(buf, cap,
                         "GET /v1/nodes HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n");
                if (write(fd, buf, strlen(buf)) > 0) {
                        size_t have = 0;
                        ssize_t r;

                        while ((r = read(fd, buf + have, cap - 1 - have)) > 0)
                                have += (size_t)r;
                        buf[have] = '\0';
                        off = (size_t)(strstr(buf, "\r\n\r\n") + 4 - buf);
                        memcpy(body, buf + off, have - off < bytes ? have - off : bytes);
                }
        }
        if (fd >= 0)
                close(fd);
        free(buf);
        *ret_len = bytes;
        return body;
}

/* What one fleet size measured, for the summary. */
struct size_figures {
        unsigned nodes;
        double fleetd_base, peer_base;
        struct run_figures full, inm, peer;
};

/* A peer forked at the start, before the bench allocates anything (so that its RSS is its own),
 * waiting for the bytes of one fleet size on its pipe. */
struct peer {
        pid_t pid;
        uint16_t port;
        int fd; /* the pipe's writing end */
};

/* One fleet size: fleetd's two runs, then the peer's with the bytes fleetd served. */
static int bench_size(unsigned nodes, unsigned clients, double seconds, struct peer *pe,
                      struct size_figures *sf)
{
        char dir[] = "/tmp/fleetd-bench-XXXXXX", cmd[PATH_MAX + 16];
        uint16_t api = bench_free_port(SOCK_STREAM), hbp = bench_free_port(SOCK_DGRAM);
        uint16_t peer_port = pe->port;
        struct hb_feed feed = {.port = hbp};
        pthread_t hb;
        size_t len = 0;
        char *body, (*bufs0)[HEARTBEAT_MAX_BYTES];
        int *lens0;
        pid_t pid, peer = pe->pid;

        *sf = (struct size_figures){.nodes = nodes};
        if (!mkdtemp(dir))
                return 2;
        pid = bench_fleetd_start(nodes, dir, api, hbp);
        usleep(500000);
        /* every node heartbeats once first, then once per 10 s through both fleetd runs */
        if (bench_flood_init(&feed.fl, nodes, (unsigned)(2 * seconds / 10) + 3) < 0)
                return 1;
        bench_flood_send_range(&feed.fl, hbp, 0, nodes);
        usleep(1000000);
        feed.until = bench_now() + 2 * seconds + 1;
        bufs0 = feed.fl.bufs;
        lens0 = feed.fl.lens;
        feed.fl.bufs += nodes; /* round 1 is sent */
        feed.fl.lens += nodes;
        feed.fl.rounds--;
        sf->fleetd_base = (double)bench_proc_kib(pid, "VmRSS:") / 1024;
        printf("fleetd before the clients: VmRSS %.1f MiB, VmHWM %.1f MiB\n", sf->fleetd_base,
               (double)bench_proc_kib(pid, "VmHWM:") / 1024);
        pthread_create(&hb, NULL, hb_run, &feed);
        printf("bench_fleetd_list: %u nodes heartbeating every 10 s, %u clients on keep-alive "
               "connections, %.0f s a run, GET /v1/nodes\n",
               nodes, clients, seconds);
        sf->full = bench_clients("fleetd GET /v1/nodes", pid, api, clients, seconds, false);
        sf->inm =
            bench_clients("fleetd GET /v1/nodes If-None-Match", pid, api, clients, seconds, true);
        pthread_join(hb, NULL);
        body = fetch_nodes(api, &len);
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        if (body && write(pe->fd, &len, sizeof(len)) == sizeof(len) &&
            write(pe->fd, body, len) == (ssize_t)len) {
                usleep(300000);
                sf->peer_base = (double)bench_proc_kib(peer, "VmRSS:") / 1024;
                printf("peer before the clients: VmRSS %.1f MiB\n", sf->peer_base);
                sf->peer = bench_clients("peer: MHD static, same bytes", peer, peer_port, clients,
                                         seconds, false);
        }
        close(pe->fd);
        kill(peer, SIGTERM);
        waitpid(peer, NULL, 0);
        free(body);
        free(bufs0);
        free(lens0);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        return system(cmd) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
        const char *sizes = argc > 1 ? argv[1] : "1000,10000";
        unsigned clients = argc > 2 ? (unsigned)atoi(argv[2]) : 20;
        double seconds = argc > 3 ? atof(argv[3]) : 10;
        struct size_figures sf[8];
        struct peer peers[8];
        unsigned nodes[8], n = 0;
        int rc = 0;

        if (clients < 1 || clients > MAX_CLIENTS || seconds <= 0 || seconds > 120)
                return 2;
        for (const char *p = sizes; *p && n < 8; p = strchr(p, ',') ? strchr(p, ',') + 1 : "") {
                nodes[n] = (unsigned)atoi(p);
                if (nodes[n] < 1 || nodes[n] > 100000)
                        return 2;
                n++;
        }
        for (unsigned i = 0; i < n; i++) {
                int pipefd[2];

                if (pipe(pipefd) < 0)
                        return 1;
                peers[i].port = bench_free_port(SOCK_STREAM);
                peers[i].pid = peer_spawn(pipefd[0], peers[i].port);
                peers[i].fd = pipefd[1];
        }
        for (unsigned i = 0; i < n; i++)
                rc |= bench_size(nodes[i], clients, seconds, &peers[i], &sf[i]);
        printf("\nsummary, %u clients (peak RSS: VmHWM; base RSS: VmRSS before the clients)\n",
               clients);
        for (unsigned i = 0; i < n; i++)
                printf(
                    "%6u nodes: fleetd base %5.1f MiB, peak %5.1f MiB; full answers %6.0f req/s, "
                    "p50 %6.2f ms, p99 %7.2f ms; If-None-Match %6.0f req/s, p99 %7.2f ms | "
                    "peer base %5.1f MiB, peak %5.1f MiB; %6.0f req/s, p50 %6.2f ms, p99 %7.2f "
                    "ms\n",
                    sf[i].nodes, sf[i].fleetd_base, sf[i].inm.peak_mib, sf[i].full.req_s,
                    sf[i].full.p50_ms, sf[i].full.p99_ms, sf[i].inm.req_s, sf[i].inm.p99_ms,
                    sf[i].peer_base, sf[i].peer.peak_mib, sf[i].peer.req_s, sf[i].peer.p50_ms,
                    sf[i].peer.p99_ms);
        return rc;
}
