/* vmhost (service-vm-host): start-up, the heartbeat loop and shutdown. The heartbeat carries the
 * node figures, the inventory digest and the age of the last successful libvirt call, all read
 * from the cache the refresher thread keeps, so a wedged libvirt never stops heartbeats. */
#include <errno.h>
#include <malloc.h>
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
#include "common/small_file.h"
#include "vmhost/helper.h"
#include "vmhost/vmhost.h"

/* Heartbeats go to the controller the roster names (it moves when a cloud node joins), else to
 * the configured fleetd_address. */
static void vmhost_follow_controller(struct vmhost *vh, struct heartbeat_sender *s)
{
        char addr[INET_ADDRSTRLEN] = "", id[NODE_ID_MAX + 1] = "";
        const struct roster_node *n;

        pthread_mutex_lock(&vh->state_lock);
        if (vh->roster && (n = roster_find_by_id(vh->roster, vh->roster->controller))) {
                snprintf(addr, sizeof(addr), "%s", n->mesh_address);
                snprintf(id, sizeof(id), "%s", n->id);
        }
        pthread_mutex_unlock(&vh->state_lock);
        if (heartbeat_sender_set_destination(s, addr[0] ? addr : vh->cfg.fleetd_address) > 0)
                log_info("heartbeats now go to '%s' (%s)", addr[0] ? addr : vh->cfg.fleetd_address,
                         addr[0] ? id : "fleetd_address");
}

static void vmhost_beat(struct vmhost *vh, struct heartbeat_sender *s)
{
        struct heartbeat hb;
        int r;

        vmhost_follow_controller(vh, s);
        r = heartbeat_sender_sample(s, &vh->cfg, &hb);

        if (r == 0) {
                pthread_mutex_lock(&vh->state_lock);
                memcpy(hb.inventory_digest, vh->digest, sizeof(hb.inventory_digest));
                hb.mem_committed_mib = vh->committed_mib;
                hb.vm_count = vh->vm_count;
                hb.creations = vh->cache_creations;
                pthread_mutex_unlock(&vh->state_lock);
                hb.libvirt_age_ms = virt_age_ms(vh);
                r = heartbeat_sender_send(s, &hb);
        }
        if (r < 0)
                log_warn("heartbeat %llu to '%s' port %llu not sent: %s",
                         (unsigned long long)s->seq, vh->cfg.fleetd_address,
                         (unsigned long long)vh->cfg.fleetd_port, strerror(-r));
        else
                log_debug("heartbeat %llu sent: cpu %.1f%% available %llu MiB libvirt age %lld ms",
                          (unsigned long long)hb.seq, hb.cpu_percent,
                          (unsigned long long)hb.mem_available_mib, (long long)hb.libvirt_age_ms);
}

/* The node API binds the mesh address, which may come up after vmhost (WireGuard); a failed
 * bind is logged once and retried at every heartbeat. */
static void vmhost_api_retry(struct vmhost *vh)
{
        static bool logged;
        int r;

        if (vh->http)
                return;
        r = node_api_start(vh);
        if (r < 0 && !logged)
                log_error("cannot serve the node API on '%s' port %llu: %s; retrying",
                          vh->cfg.node_api_listen, (unsigned long long)vh->cfg.node_api_port,
                          strerror(-r));
        logged = r < 0;
}

static int vmhost_run(struct vmhost *vh, struct heartbeat_sender *s, int sfd)
{
        struct pollfd pfd = {.fd = sfd, .events = POLLIN};
        uint64_t next = clock_monotonic_ms();

        for (;;) {
                uint64_t now = clock_monotonic_ms();

                if (now >= next) {
                        vmhost_beat(vh, s);
                        vmhost_api_retry(vh);
                        next += vh->cfg.heartbeat_interval_ms;
                        if (next <= now)
                                next = now + vh->cfg.heartbeat_interval_ms;
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

static int vmhost_check_config(struct vmhost *vh)
{
        uint8_t pk[32];
        size_t n = 0;
        const char *gk = vh->cfg.genesis_public_key;

        /* resolved by the helper, which starts the guests (auto: KVM, else TCG) */
        vh->virt_type = policy_virt_type(vh->cfg.virt_type, false, false);
        if (!vh->virt_type) {
                fprintf(stderr, "vmhost: virt_type '%s' is not kvm, qemu or auto\n",
                        vh->cfg.virt_type);
                return -EINVAL;
        }
        if (!ident_valid(IDENT_NODE, vh->cfg.fleet_id)) {
                fprintf(stderr, "vmhost: invalid fleet_id '%s'\n", vh->cfg.fleet_id);
                return -EINVAL;
        }
        if (gk[0] && (sodium_base642bin(pk, sizeof(pk), gk, strlen(gk), NULL, &n, NULL,
                                        sodium_base64_VARIANT_ORIGINAL) != 0 ||
                      n != sizeof(pk))) {
                fprintf(stderr, "vmhost: genesis_public_key is not a base64 Ed25519 key\n");
                return -EINVAL;
        }
        return 0;
}

/* The key this node cosigns vault checkpoints with (C2SP tlog-cosignature), named after the
 * node; without it the node still checks every head but cosigns none. */
static void vmhost_witness_start(struct vmhost *vh)
{
        /* the path on the heap; the message names it, and 1 KiB of it is enough for a log line */
        char *path = small_file_path(vh->cfg.state_dir, "vault-witness.key");
        char name[TLOG_NAME_MAX + 1], err[1024] = "out of memory";

        snprintf(name, sizeof(name), "totebox.host/%s", vh->cfg.node_id);
        if (path && witness_key_load(path, name, true, &vh->witness, err, sizeof(err)) == 0)
                vh->have_witness = true;
        else
                log_error("%s; this node cosigns no vault checkpoint", err);
        free(path);
}

/* Without its state directory or libvirt, vmhost still sends heartbeats (libvirt_age_ms -1)
 * and keeps retrying; only what cannot be retried (no helper) is fatal here. */
static int vmhost_start(struct vmhost *vh)
{
        int r, e;

        /* the state directory before the helper, which makes the embedded driver's root and
         * the storage pools in it */
        images_prepare_dirs(vh);
        r = vmh_start(vh);
        if (r < 0) {
                log_error("cannot start the helper: %s", strerror(-r));
                return r;
        }
        r = roster_update_start(vh);

        if (r == 0 && (e = creations_start(vh)) < 0)
                log_error("cannot store the creation counter in '%s': %s; creations are refused "
                          "until it can",
                          vh->cfg.state_dir, strerror(-e));
        if (r == 0)
                vmhost_witness_start(vh);
        /* root's part is done (the helper, the mesh state read): the rest, and every thread,
         * runs unprivileged */
        r = r ?: vmhost_privdrop(vh);
        r = r ?: virt_start(vh);
        r = r ?: agent_chan_start(vh);
        if (r < 0) {
                log_error("cannot start: %s", strerror(-r));
                return r;
        }
        vmhost_api_retry(vh);
        /* Start-up (libvirt's capabilities probe) leaves freed heap behind; give it back. */
        malloc_trim(0);
        return 0;
}

static void vmhost_stop(struct vmhost *vh)
{
        node_api_stop(vh);
        agent_chan_stop(vh);
        virt_stop(vh);
        vmh_stop(vh);
        json_decref(vh->vms);
        json_decref(vh->images);
        roster_free(vh->roster);
        witness_key_wipe(&vh->witness);
}

int main(int argc, char **argv)
{
        static struct vmhost vh = {
            .ops_lock = PTHREAD_MUTEX_INITIALIZER,
            .state_lock = PTHREAD_MUTEX_INITIALIZER,
            .refresh_cond = PTHREAD_COND_INITIALIZER,
            .chan_wake = {-1, -1},
            .helper_fd = -1,
            .helper_event_fd = -1,
            .helper_lock = PTHREAD_MUTEX_INITIALIZER,
        };
        const struct daemon_args args = {
            .program = "vmhost",
            .summary = "Totebox node daemon: node figures, heartbeats and the node's VMs.",
            .table = vmhost_config_table,
            .cfg = &vh.cfg,
            .default_config = "/etc/totebox/vmhost.conf",
        };
        struct heartbeat_sender s = {.fd = -1};
        enum log_level level = LOG_LEVEL_INFO;
        int r, sfd;

        r = daemon_parse_args(&args, argc, argv);
        if (r != 0)
                return r < 0 ? 2 : 0;
        if (log_level_parse(vh.cfg.log_level, &level) < 0 ||
            !ident_valid(IDENT_NODE, vh.cfg.node_id)) {
                fprintf(stderr, "vmhost: invalid log_level '%s' or node_id '%s'\n",
                        vh.cfg.log_level, vh.cfg.node_id);
                return 2;
        }
        if (sodium_init() < 0)
                return 1;
        if (vmhost_check_config(&vh) < 0)
                return 2;
        /* Few threads, small heap: one arena keeps the idle footprint down. */
        mallopt(M_ARENA_MAX, 1);
        log_init("vmhost", level);
        sfd = daemon_signalfd();
        r = sfd < 0 ? sfd : heartbeat_sender_open(&s, &vh.cfg);
        if (r < 0) {
                log_error("cannot open the heartbeat socket to '%s' port %llu: %s",
                          vh.cfg.fleetd_address, (unsigned long long)vh.cfg.fleetd_port,
                          strerror(-r));
                return 1;
        }
        memset(vh.digest, '0', DIGEST_HEX_LEN);
        vh.vms = json_array(); /* "[]" until the first refresh */
        inventory_digest(vh.vms, NULL, vh.digest);
        r = vmhost_start(&vh);
        if (r == 0) {
                log_info("node '%s' sends heartbeats to '%s' port %llu every %llu ms",
                         vh.cfg.node_id, vh.cfg.fleetd_address,
                         (unsigned long long)vh.cfg.fleetd_port,
                         (unsigned long long)vh.cfg.heartbeat_interval_ms);
                r = vmhost_run(&vh, &s, sfd);
        }
        vmhost_stop(&vh);
        heartbeat_sender_close(&s);
        return r < 0 ? 1 : 0;
}
