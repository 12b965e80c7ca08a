/* vmhost (service-vm-host): start-up, the heartbeat loop and shutdown. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/daemon.h"
#include "common/log.h"
#include "vmhost/vmhost.h"

/* The inventory digest: SHA-256 of the canonical inventory JSON ("[]" while it is empty). */
static void vmhost_inventory_digest(char *hex, size_t size)
{
        uint8_t d[crypto_hash_sha256_BYTES];

        crypto_hash_sha256(d, (const uint8_t *)"[]", 2);
        sodium_bin2hex(hex, size, d, sizeof(d));
}

static void vmhost_beat(struct heartbeat_sender *s, const struct vmhost_config *cfg)
{
        struct heartbeat hb;
        int r = heartbeat_sender_sample(s, cfg, &hb);

        if (r == 0) {
                vmhost_inventory_digest(hb.inventory_digest, sizeof(hb.inventory_digest));
                r = heartbeat_sender_send(s, &hb);
        }
        if (r < 0)
                log_warn("heartbeat %llu to '%s' port %llu not sent: %s",
                         (unsigned long long)s->seq, cfg->fleetd_address,
                         (unsigned long long)cfg->fleetd_port, strerror(-r));
        else
                log_debug("heartbeat %llu sent: cpu %.1f%% available %llu MiB",
                          (unsigned long long)hb.seq, hb.cpu_percent,
                          (unsigned long long)hb.mem_available_mib);
}

static int vmhost_run(const struct vmhost_config *cfg, struct heartbeat_sender *s, int sfd)
{
        struct pollfd pfd = {.fd = sfd, .events = POLLIN};
        uint64_t next = clock_monotonic_ms();

        for (;;) {
                uint64_t now = clock_monotonic_ms();

                if (now >= next) {
                        vmhost_beat(s, cfg);
                        next += cfg->heartbeat_interval_ms;
                        if (next <= now)
                                next = now + cfg->heartbeat_interval_ms;
                        continue;
                }
                if (poll(&pfd, 1, (int)(next - now)) < 0 && errno != EINTR)
                        return -errno;
                if (pfd.revents & POLLIN) {
                        struct signalfd_siginfo si;

                        if (read(sfd, &si, sizeof(si)) == sizeof(si) && si.ssi_signo != SIGHUP) {
                                log_info("signal %u: shutting down", si.ssi_signo);
                                return 0;
                        }
                }
        }
}

int main(int argc, char **argv)
{
        static struct vmhost_config cfg;
        const struct daemon_args args = {
                .program = "vmhost",
                .summary = "Totebox node daemon: node figures, heartbeats and the node's VMs.",
                .table = vmhost_config_table,
                .cfg = &cfg,
                .default_config = "/etc/totebox/vmhost.conf",
        };
        struct heartbeat_sender s = {.fd = -1};
        enum log_level level = LOG_LEVEL_INFO;
        int r, sfd;

        r = daemon_parse_args(&args, argc, argv);
        if (r != 0)
                return r < 0 ? 2 : 0;
        if (log_level_parse(cfg.log_level, &level) < 0 || !node_id_valid(cfg.node_id)) {
                fprintf(stderr, "vmhost: invalid log_level '%s' or node_id '%s'\n", cfg.log_level,
                        cfg.node_id);
                return 2;
        }
        if (sodium_init() < 0)
                return 1;
        log_init("vmhost", level);
        sfd = daemon_signalfd();
        r = sfd < 0 ? sfd : heartbeat_sender_open(&s, &cfg);
        if (r < 0) {
                log_error("cannot open the heartbeat socket to '%s' port %llu: %s",
                          cfg.fleetd_address, (unsigned long long)cfg.fleetd_port, strerror(-r));
                return 1;
        }
        log_info("node '%s' sends heartbeats to '%s' port %llu every %llu ms", cfg.node_id,
                 cfg.fleetd_address, (unsigned long long)cfg.fleetd_port,
                 (unsigned long long)cfg.heartbeat_interval_ms);
        r = vmhost_run(&cfg, &s, sfd);
        heartbeat_sender_close(&s);
        return r < 0 ? 1 : 0;
}
