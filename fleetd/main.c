/* fleetd (service-vm-fleet): start-up, the main loop (heartbeats, the liveness tick, roster
 * reloads, signals) and shutdown. The REST API runs on libmicrohttpd's threads and creations on
 * the dispatcher thread; all share the node and VM tables under f->lock. */
#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <curl/curl.h>

#include "common/clock.h"
#include "common/daemon.h"
#include "common/log.h"
#include "fleetd/fleetd.h"

static int fleetd_setup(struct fleetd *f)
{
        int r = fleetd_open(f);

        if (r < 0)
                return r;
        r = heartbeat_listener_open(&f->cfg, &f->udp_fd);
        if (r < 0) {
                log_error("cannot listen for heartbeats on '%s' port %llu: %s",
                          f->cfg.heartbeat_listen, (unsigned long long)f->cfg.heartbeat_port,
                          strerror(-r));
                return r;
        }
        log_info("heartbeats on UDP '%s' port %llu", f->cfg.heartbeat_listen,
                 (unsigned long long)f->cfg.heartbeat_port);
        r = dispatch_start(f);
        if (r == 0)
                r = audit_push_start(f);
        return r < 0 ? r : api_start(f);
}

static int fleetd_run(struct fleetd *f, int sfd)
{
        struct pollfd fds[2] = {{.fd = f->udp_fd, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
        uint64_t next_roster_check = 0;

        for (;;) {
                uint64_t now;

                if (poll(fds, 2, 250) < 0 && errno != EINTR)
                        return -errno;
                /* record silences before a heartbeat can end them, so that every state a
                 * node went through is logged and audited */
                liveness_tick(f, clock_monotonic_ms());
                if (fds[0].revents & POLLIN)
                        heartbeat_listener_drain(f);
                now = clock_monotonic_ms();
                liveness_tick(f, now);
                if (now >= next_roster_check) {
                        roster_reload(f, false);
                        next_roster_check = now + 1000;
                }
                if (fds[1].revents & POLLIN) {
                        struct signalfd_siginfo si;

                        if (read(sfd, &si, sizeof(si)) != sizeof(si))
                                continue;
                        if (si.ssi_signo == SIGHUP) {
                                log_info("SIGHUP: reloading the roster");
                                roster_reload(f, true);
                                continue;
                        }
                        log_info("signal %u: shutting down", si.ssi_signo);
                        return 0;
                }
        }
}

int main(int argc, char **argv)
{
        static struct fleetd f = {.lock = PTHREAD_MUTEX_INITIALIZER, .udp_fd = -1};
        const struct daemon_args args = {
            .program = "fleetd",
            .summary = "Totebox fleet controller: liveness, placement and the admin REST API.",
            .table = fleetd_config_table,
            .cfg = &f.cfg,
            .default_config = "/etc/totebox/fleetd.conf",
            .check = fleetd_config_check,
        };
        enum log_level level = LOG_LEVEL_INFO;
        int r, sfd;

        r = daemon_parse_args(&args, argc, argv);
        if (r != 0)
                return r < 0 ? 2 : 0;
        if (log_level_parse(f.cfg.log_level, &level) < 0) {
                fprintf(stderr, "fleetd: unknown log_level '%s'\n", f.cfg.log_level);
                return 2;
        }
        log_init("fleetd", level);
        /* REST threads build large answers (a plan lists every node): two malloc arenas keep
         * the resident set near the node table instead of one arena per thread */
        mallopt(M_ARENA_MAX, 2);
        curl_global_init(CURL_GLOBAL_DEFAULT);
        sfd = daemon_signalfd();
        r = sfd < 0 ? sfd : fleetd_setup(&f);
        if (r == 0)
                r = fleetd_run(&f, sfd);
        api_stop(&f);
        if (f.udp_fd >= 0)
                close(f.udp_fd);
        fleetd_close(&f);
        curl_global_cleanup();
        return r < 0 ? 1 : 0;
}
