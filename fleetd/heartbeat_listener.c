/* The UDP heartbeat listener: receives datagrams in batches (recvmmsg) and hands each to the
 * node table. A dropped heartbeat is counted and logged at debug level (a refused protocol
 * version as a warning), never fatal. */
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "fleetd/fleetd.h"

#define HB_BATCH 64
#define HB_BUF   (HEARTBEAT_MAX_BYTES + 1) /* one more byte to detect oversized datagrams */

int heartbeat_listener_open(const struct fleetd_config *cfg, int *ret_fd)
{
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)cfg->heartbeat_port)};
        int fd, one = 1, rcvbuf = 4 * 1024 * 1024;

        if (inet_pton(AF_INET, cfg->heartbeat_listen, &sa.sin_addr) != 1)
                return -EINVAL;
        fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                int r = -errno;

                close(fd);
                return r;
        }
        *ret_fd = fd;
        return 0;
}

int heartbeat_listener_apply(struct fleetd *f, const char *buf, size_t len, struct in_addr src,
                             uint64_t now_ms, char *err, size_t errsize)
{
        int r = node_table_ingest(&f->table, buf, len, src, now_ms, err, errsize);

        if (r == 0)
                vm_settle_node(f, &f->table.nodes[f->table.last_accepted], 0, NULL);
        return r;
}

/* A refused version is an operator's matter (a node upgraded two steps, or fleetd left behind):
 * a warning, at the 1st, 2nd, 4th, 8th ... refusal so a steady stream does not flood the log;
 * every other drop at debug level. */
static void heartbeat_listener_log(struct fleetd *f, int r, const char *addr, const char *err)
{
        uint64_t n = f->table.dropped[HB_DROP_VERSION];

        if (r != -(1 + (int)HB_DROP_VERSION)) {
                log_debug("heartbeat from '%s' dropped: %s", addr, err);
                return;
        }
        if ((n & (n - 1)) == 0)
                log_warn("heartbeat from '%s' dropped: %s (refusal %llu; see "
                         "docs/operations.md, \"Upgrade\")",
                         addr, err, (unsigned long long)n);
}

void heartbeat_listener_drain(struct fleetd *f)
{
        /* static, as bufs always was: the one listener thread drains (6 KiB off its stack) */
        static char bufs[HB_BATCH][HB_BUF];
        static struct sockaddr_in from[HB_BATCH];
        static struct mmsghdr msgs[HB_BATCH];
        static struct iovec iov[HB_BATCH];
        char err[256], addr[INET_ADDRSTRLEN];
        int n;

        do {
                memset(msgs, 0, sizeof(msgs));
                for (int i = 0; i < HB_BATCH; i++) {
                        iov[i] = (struct iovec){.iov_base = bufs[i], .iov_len = HB_BUF};
                        msgs[i].msg_hdr.msg_iov = &iov[i];
                        msgs[i].msg_hdr.msg_iovlen = 1;
                        msgs[i].msg_hdr.msg_name = &from[i];
                        msgs[i].msg_hdr.msg_namelen = sizeof(from[i]);
                }
                n = recvmmsg(f->udp_fd, msgs, HB_BATCH, MSG_DONTWAIT, NULL);
                if (n <= 0)
                        return;
                uint64_t now = clock_monotonic_ms();

                pthread_mutex_lock(&f->lock);
                for (int i = 0; i < n; i++) {
                        size_t len = msgs[i].msg_len;

                        if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC)
                                len = HB_BUF + 1;
                        int r = heartbeat_listener_apply(f, bufs[i], len, from[i].sin_addr, now,
                                                         err, sizeof(err));

                        if (r < 0) {
                                inet_ntop(AF_INET, &from[i].sin_addr, addr, sizeof(addr));
                                heartbeat_listener_log(f, r, addr, err);
                        }
                }
                pthread_mutex_unlock(&f->lock);
        } while (n == HB_BATCH);
}
