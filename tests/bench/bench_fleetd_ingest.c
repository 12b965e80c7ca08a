/* Heartbeat ingest: floods fleetd's real listener (heartbeat_listener_open/drain and the node
 * table: recvmmsg, strict JSON decode, roster address check, replay check) with heartbeats from
 * N synthetic nodes, and, in the same run, a minimal UDP sink (recvmmsg and discard) with the same
 * flood: the kernel's limit on this machine. Prints both rates and the ratio (target >= 50%).
 * usage: bench_fleetd_ingest [NODES] [ROUNDS] */
#include <errno.h>
#include <poll.h>
#include <pthread.h>

#include "bench_fleetd_util.h"
#include "common/log.h"
#include "fleetd/fleetd.h"

struct receiver {
        int fd;
        struct fleetd *f; /* NULL: the bare sink */
        uint64_t count;
        double first, last;
        double cpu_s; /* CPU time the receiving thread used */
        volatile int stop;
};

static double thread_cpu(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *sink_thread(void *arg)
{
        enum { BATCH = 64 };
        struct receiver *r = arg;
        static char bufs[BATCH][HEARTBEAT_MAX_BYTES + 1];
        struct mmsghdr msgs[BATCH];
        struct iovec iov[BATCH];
        double cpu0 = thread_cpu();

        while (!r->stop) {
                struct pollfd p = {r->fd, POLLIN, 0};
                int n;

                if (poll(&p, 1, 50) <= 0)
                        continue;
                memset(msgs, 0, sizeof(msgs));
                for (int i = 0; i < BATCH; i++) {
                        iov[i] = (struct iovec){bufs[i], sizeof(bufs[i])};
                        msgs[i].msg_hdr.msg_iov = &iov[i];
                        msgs[i].msg_hdr.msg_iovlen = 1;
                }
                if (!r->first)
                        r->first = bench_now();
                while ((n = recvmmsg(r->fd, msgs, BATCH, MSG_DONTWAIT, NULL)) > 0) {
                        r->count += (uint64_t)n;
                        r->last = bench_now();
                }
        }
        r->cpu_s = thread_cpu() - cpu0;
        return NULL;
}

static void *fleetd_thread(void *arg)
{
        struct receiver *r = arg;
        double cpu0 = thread_cpu();

        while (!r->stop) {
                struct pollfd p = {r->fd, POLLIN, 0};
                uint64_t before;
                double t;

                if (poll(&p, 1, 50) <= 0)
                        continue;
                t = bench_now();
                before = r->f->table.received;
                heartbeat_listener_drain(r->f);
                if (r->f->table.received == before)
                        continue;
                if (!r->first)
                        r->first = t;
                r->count = r->f->table.accepted;
                r->last = bench_now();
        }
        r->cpu_s = thread_cpu() - cpu0;
        return NULL;
}

static double bench_run(struct receiver *r, void *(*fn)(void *), const struct bench_flood *fl,
                        uint16_t port, double *ret_sent_rate)
{
        pthread_t t;
        double send_s;
        uint64_t last = (uint64_t)-1;

        pthread_create(&t, NULL, fn, r);
        send_s = bench_flood_send(fl, port);
        while (last != r->count) { /* until the receiver is idle */
                last = r->count;
                usleep(200000);
        }
        r->stop = 1;
        pthread_join(t, NULL);
        *ret_sent_rate = (double)fl->nodes * fl->rounds / send_s;
        return r->last > r->first ? (double)r->count / (r->last - r->first) : 0;
}

int main(int argc, char **argv)
{
        unsigned nodes = argc > 1 ? (unsigned)atoi(argv[1]) : 1000;
        unsigned rounds = argc > 2 ? (unsigned)atoi(argv[2]) : 200;
        static struct fleetd f = {.lock = PTHREAD_MUTEX_INITIALIZER, .udp_fd = -1};
        struct receiver sink = {0}, fr = {0};
        struct bench_flood fl;
        struct config_error cerr;
        char err[256], *text = bench_roster(nodes);
        struct roster *roster = roster_parse(text, strlen(text), err, sizeof(err));
        double sink_rate, fleetd_rate, sent_sink, sent_fleetd;

        log_init("bench", LOG_LEVEL_ERROR);
        free(text);
        if (!roster || bench_flood_init(&fl, nodes, rounds) < 0 ||
            node_table_init(&f.table, roster) < 0) {
                fprintf(stderr, "bench setup failed: %s\n", err);
                return 1;
        }
        config_set_defaults(fleetd_config_table, &f.cfg, &cerr);
        snprintf(f.cfg.heartbeat_listen, sizeof(f.cfg.heartbeat_listen), "127.0.0.1");
        /* the sink binds the same way fleetd does (same options, port 0 = any free port) */
        for (int pass = 0; pass < 2; pass++) {
                struct receiver *r = pass ? &fr : &sink;
                struct sockaddr_in sa;
                socklen_t sl = sizeof(sa);

                f.cfg.heartbeat_port = 0;
                if (heartbeat_listener_open(&f.cfg, &r->fd) < 0)
                        return 1;
                getsockname(r->fd, (struct sockaddr *)&sa, &sl);
                if (pass) {
                        f.udp_fd = r->fd;
                        r->f = &f;
                        fleetd_rate =
                            bench_run(r, fleetd_thread, &fl, ntohs(sa.sin_port), &sent_fleetd);
                } else {
                        sink_rate = bench_run(r, sink_thread, &fl, ntohs(sa.sin_port), &sent_sink);
                }
                close(r->fd);
        }
        printf("heartbeat ingest, %u nodes x %u rounds = %u datagrams (%d bytes each)\n", nodes,
               rounds, nodes * rounds, fl.lens[0]);
        printf("  bare UDP sink (recvmmsg, discard): %10.0f datagrams/s received (%llu of %u; "
               "sender %0.f/s)\n",
               sink_rate, (unsigned long long)sink.count, nodes * rounds, sent_sink);
        printf("  fleetd listener (decode + checks): %10.0f heartbeats/s accepted (%llu of %u; "
               "sender %0.f/s; dropped replayed %llu malformed %llu)\n",
               fleetd_rate, (unsigned long long)fr.count, nodes * rounds, sent_fleetd,
               (unsigned long long)f.table.dropped[HB_DROP_REPLAYED],
               (unsigned long long)f.table.dropped[HB_DROP_MALFORMED]);
        printf("  ratio fleetd / sink (wall-clock rates): %.0f%% (target >= 50%%)\n",
               sink_rate > 0 ? 100.0 * fleetd_rate / sink_rate : 0.0);
        /* on a loaded machine the sender limits both wall-clock rates; the receiving thread's
         * CPU time per datagram is the capacity that does not depend on it */
        printf("  receiver CPU: sink %.2f us/datagram (%.0f/s per core), fleetd %.2f us/heartbeat "
               "(%.0f/s per core); ratio %.0f%%\n",
               1e6 * sink.cpu_s / (double)sink.count, (double)sink.count / sink.cpu_s,
               1e6 * fr.cpu_s / (double)fr.count, (double)fr.count / fr.cpu_s,
               100.0 * ((double)fr.count / fr.cpu_s) / ((double)sink.count / sink.cpu_s));
        node_table_done(&f.table);
        return 0;
}
