/* The heartbeat sender: one UDP socket connected to fleetd, one datagram per interval. A random
 * boot id, drawn at start, and the sequence let fleetd drop replayed or reordered heartbeats
 * whatever the node's clock does; the epoch (start time) is informational. */
#include <arpa/inet.h>
#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/small_file.h"
#include "vmhost/vmhost.h"

static void heartbeat_sender_draw_boot(struct heartbeat_sender *s)
{
        uint8_t raw[HEARTBEAT_BOOT_LEN / 2];

        randombytes_buf(raw, sizeof(raw));
        sodium_bin2hex(s->boot, sizeof(s->boot), raw, sizeof(raw));
}

int heartbeat_sender_open(struct heartbeat_sender *s, const struct vmhost_config *cfg)
{
        struct sockaddr_in dst = {.sin_family = AF_INET,
                                  .sin_port = htons((uint16_t)cfg->fleetd_port)};
        struct sockaddr_in src = {.sin_family = AF_INET};
        int fd, r;

        if (inet_pton(AF_INET, cfg->fleetd_address, &dst.sin_addr) != 1)
                return -EINVAL;
        if (cfg->heartbeat_source[0] &&
            inet_pton(AF_INET, cfg->heartbeat_source, &src.sin_addr) != 1)
                return -EINVAL;
        fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        /* not connected: the destination follows the roster's controller (sendto) */
        if (cfg->heartbeat_source[0] && bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        memset(s, 0, sizeof(*s));
        s->fd = fd;
        s->dst = dst;
        s->epoch = clock_realtime_ms();
        heartbeat_sender_draw_boot(s);
        sample_read_cpu(&s->last_cpu);
        return 0;
}

int heartbeat_sender_set_destination(struct heartbeat_sender *s, const char *address)
{
        struct in_addr a;

        if (inet_pton(AF_INET, address, &a) != 1)
                return -EINVAL;
        if (a.s_addr == s->dst.sin_addr.s_addr)
                return 0;
        s->dst.sin_addr = a;
        return 1;
}

void heartbeat_sender_close(struct heartbeat_sender *s)
{
        if (s->fd >= 0)
                close(s->fd);
        s->fd = -1;
}

int heartbeat_sender_sample(struct heartbeat_sender *s, const struct vmhost_config *cfg,
                            struct heartbeat *hb)
{
        struct cpu_sample cpu;
        struct mem_sample mem;
        char *vms_dir = small_file_path(cfg->state_dir, "vms");
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        int r;

        r = vms_dir ? sample_read_cpu(&cpu) : -ENOMEM;
        if (r == 0)
                r = sample_read_mem(&mem);
        if (r < 0) {
                free(vms_dir);
                return r;
        }
        memset(hb, 0, sizeof(*hb));
        snprintf(hb->node_id, sizeof(hb->node_id), "%s", cfg->node_id);
        hb->epoch = s->epoch;
        memcpy(hb->boot, s->boot, sizeof(hb->boot));
        hb->seq = ++s->seq;
        hb->interval_ms = cfg->heartbeat_interval_ms;
        hb->cpus = cpus > 0 ? (uint32_t)cpus : 1;
        hb->cpu_percent = sample_cpu_percent(&s->last_cpu, &cpu);
        hb->mem_total_mib = mem.total_kib / 1024;
        hb->mem_available_mib = mem.available_kib / 1024;
        hb->libvirt_age_ms = -1;
        hb->disk_known = sample_read_disk(vms_dir, cfg->state_dir, &hb->disk_free_mib) == 0;
        free(vms_dir);
        s->last_cpu = cpu;
        return 0;
}

int heartbeat_sender_send(struct heartbeat_sender *s, const struct heartbeat *hb)
{
        char buf[HEARTBEAT_MAX_BYTES];
        int n = heartbeat_encode(hb, buf, sizeof(buf));

        if (n < 0)
                return n;
        if (sendto(s->fd, buf, (size_t)n, 0, (const struct sockaddr *)&s->dst, sizeof(s->dst)) < 0)
                return -errno;
        return 0;
}
