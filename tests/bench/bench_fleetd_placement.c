/* Placement latency and fleetd's memory at 10,000 nodes.
 * 1. In process: placement_choose over a node table of N nodes that all sent a heartbeat
 *    (target < 100 us per plan at 10,000 nodes).
 * 2. The real fleetd binary with an N-node roster, one heartbeat from every node over UDP:
 *    its resident memory (VmRSS, target < 64 MiB) and the time of POST /v1/plans over HTTP,
 *    whose answer lists all N candidates.
 * usage: bench_fleetd_placement [NODES] */
#include <curl/curl.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "bench_fleetd_util.h"
#include "common/log.h"
#include "fleetd/fleetd.h"

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;

        return x < y ? -1 : x > y;
}

static void bench_inprocess(unsigned nodes)
{
        enum { RUNS = 2000 };
        struct fleetd_config cfg;
        struct config_error cerr;
        struct node_table t;
        char err[256], buf[HEARTBEAT_MAX_BYTES], *text = bench_roster(nodes);
        struct plan_request req = {.entity = "acme",
                                   .memory_mib = 4096,
                                   .vcpus = 2,
                                   .vault_disk_mib = 1024,
                                   .image = "base"};
        struct plan_candidate *c = calloc(nodes + 1, sizeof(*c));
        static double lat[RUNS];
        long chosen = -1;
        double sum = 0, cpu0, cpu1;
        struct timespec ts;

        config_set_defaults(fleetd_config_table, &cfg, &cerr);
        node_table_init(&t, roster_parse(text, strlen(text), err, sizeof(err)));
        free(text);
        for (unsigned i = 1; i <= nodes; i++) {
                int n = bench_heartbeat(i, 1, buf, sizeof(buf));

                node_table_ingest(&t, buf, (size_t)n, bench_addr(i), 1000, err, sizeof(err));
        }
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        cpu0 = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
        for (int r = 0; r < RUNS; r++) {
                double t0 = bench_now();

                chosen = placement_choose(&t, &cfg, &req, 2000, c);
                lat[r] = (bench_now() - t0) * 1e6;
                sum += lat[r];
        }
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        cpu1 = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
        qsort(lat, RUNS, sizeof(lat[0]), cmp_double);
        printf("placement_choose over %u nodes (%lu accepted heartbeats), %d runs: mean %.1f us, "
               "median %.1f us, p99 %.1f us (target < 100 us); chosen '%s'\n",
               nodes, (unsigned long)t.accepted, RUNS, sum / RUNS, lat[RUNS / 2],
               lat[RUNS * 99 / 100], chosen >= 0 ? t.roster->nodes[chosen].id : "none");
        printf("  CPU time per placement (immune to other processes' load): %.1f us; fastest run "
               "%.1f us\n",
               (cpu1 - cpu0) * 1e6 / RUNS, lat[0]);
        free(c);
        node_table_done(&t);
}

static size_t discard(char *p, size_t s, size_t n, void *arg)
{
        *(size_t *)arg += s * n;
        return s * n;
}

/* POST /v1/plans; returns seconds, or -1. */
static double http_plan(uint16_t port, unsigned i, size_t *ret_bytes, long *ret_status)
{
        char url[128], body[256];
        struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
        CURL *e = curl_easy_init();
        double t0 = bench_now(), t;

        snprintf(url, sizeof(url), "http://127.0.0.1:%u/v1/plans", port);
        snprintf(body, sizeof(body),
                 "{\"entity\":\"e%u\",\"memory_mib\":4096,\"vcpus\":2,\"image\":\"base\","
                 "\"vault_disk_mib\":1024}",
                 i);
        *ret_bytes = 0;
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, ret_bytes);
        t = curl_easy_perform(e) == CURLE_OK ? bench_now() - t0 : -1;
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, ret_status);
        curl_slist_free_all(h);
        curl_easy_cleanup(e);
        return t;
}

static int bench_daemon(unsigned nodes)
{
        char cmd[PATH_MAX + 16], dir[] = "/tmp/fleetd-bench-XXXXXX";
        uint16_t api = bench_free_port(SOCK_STREAM), hbp = bench_free_port(SOCK_DGRAM);
        struct bench_flood fl;
        pid_t pid;

        if (!mkdtemp(dir))
                return -1;
        pid = bench_fleetd_start(nodes, dir, api, hbp);
        usleep(500000);
        printf("fleetd (pid %d) with a %u-node roster: VmRSS %ld KiB before heartbeats\n", (int)pid,
               nodes, bench_proc_kib(pid, "VmRSS:"));
        bench_flood_init(&fl, nodes, 1);
        bench_flood_send(&fl, hbp);
        usleep(1500000);            /* the liveness tick audits every node's first state change */
        bench_flood_send(&fl, hbp); /* replays: dropped, not stored */
        usleep(500000);
        printf("fleetd with %u nodes alive: VmRSS %ld KiB = %.1f MiB (target < 64 MiB)\n", nodes,
               bench_proc_kib(pid, "VmRSS:"), (double)bench_proc_kib(pid, "VmRSS:") / 1024);
        for (unsigned i = 0; i < 5; i++) {
                size_t bytes;
                long st = 0;
                double s = http_plan(api, i, &bytes, &st);

                printf("  POST /v1/plans over HTTP: %ld in %.1f ms (%zu bytes, %u candidates)\n",
                       st, s * 1e3, bytes, nodes + 1);
        }
        printf("fleetd after 5 plans: VmRSS %ld KiB = %.1f MiB\n", bench_proc_kib(pid, "VmRSS:"),
               (double)bench_proc_kib(pid, "VmRSS:") / 1024);
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        return system(cmd);
}

int main(int argc, char **argv)
{
        unsigned nodes = argc > 1 ? (unsigned)atoi(argv[1]) : 10000;

        log_init("bench", LOG_LEVEL_ERROR);
        curl_global_init(CURL_GLOBAL_DEFAULT);
        bench_inprocess(nodes);
        bench_daemon(nodes);
        curl_global_cleanup();
        return 0;
}
