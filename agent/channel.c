/* The host channel: a virtio-serial port (any character device) or, for tests and for hosts
 * that expose one, a unix stream socket the agent connects to. Nothing here ever blocks: the fd
 * is O_NONBLOCK, writes go through a bounded queue of lines (the oldest is dropped when full;
 * a newer report supersedes it), a disconnected or hung-up channel is closed and reopened a
 * second later, and an over-long incoming line is discarded up to its newline. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent/agent.h"

#define CHANNEL_RETRY_MS 1000

int channel_init(struct channel *c, const char *path, size_t queue_max)
{
        memset(c, 0, sizeof(*c));
        c->fd = -1;
        c->q_max = queue_max ? queue_max : 1;
        snprintf(c->path, sizeof(c->path), "%s", path);
        c->queue = calloc(c->q_max, sizeof(*c->queue));
        c->rbuf = malloc(CHANNEL_LINE_MAX + 1);
        if (!c->queue || !c->rbuf) {
                channel_done(c);
                return -ENOMEM;
        }
        return 0;
}

void channel_reset(struct channel *c, uint64_t now_ms)
{
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
        c->retry_at_ms = now_ms + CHANNEL_RETRY_MS;
        c->q_off = 0; /* a new connection gets whole lines */
        c->rlen = 0;
        c->discarding = false;
}

void channel_done(struct channel *c)
{
        if (!c)
                return;
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
        for (size_t i = 0; c->queue && i < c->q_count; i++)
                free(c->queue[(c->q_head + i) % c->q_max]);
        free(c->queue);
        free(c->rbuf);
        c->queue = NULL;
        c->rbuf = NULL;
        c->q_count = 0;
}

static int channel_connect(const char *path)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

int channel_ensure_open(struct channel *c, uint64_t now_ms)
{
        struct stat st;
        int fd;

        if (c->fd >= 0)
                return 0;
        if (!c->path[0] || now_ms < c->retry_at_ms)
                return -EAGAIN;
        c->retry_at_ms = now_ms + CHANNEL_RETRY_MS;
        if (stat(c->path, &st) < 0)
                return -errno;
        c->is_socket = S_ISSOCK(st.st_mode);
        if (c->is_socket)
                fd = channel_connect(c->path);
        else
                fd = open(c->path, O_RDWR | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (fd < 0)
                return fd == -1 ? -errno : fd;
        c->fd = fd;
        return 0;
}

int channel_send(struct channel *c, const char *line)
{
        size_t len = strlen(line);
        char *copy;

        if (len >= CHANNEL_LINE_MAX)
                return -EMSGSIZE;
        copy = malloc(len + 2);
        if (!copy)
                return -ENOMEM;
        memcpy(copy, line, len);
        copy[len] = '\n';
        copy[len + 1] = '\0';
        if (c->q_count == c->q_max) {
                /* Drop the oldest line that is not half-written. */
                size_t victim = c->q_off ? 1 : 0;
                size_t at = (c->q_head + victim) % c->q_max;

                free(c->queue[at]);
                for (size_t i = victim; i + 1 < c->q_count; i++)
                        c->queue[(c->q_head + i) % c->q_max] =
                            c->queue[(c->q_head + i + 1) % c->q_max];
                c->q_count--;
                c->dropped++;
        }
        c->queue[(c->q_head + c->q_count) % c->q_max] = copy;
        c->q_count++;
        return 0;
}

int channel_flush(struct channel *c, uint64_t now_ms)
{
        while (c->fd >= 0 && c->q_count > 0) {
                char *msg = c->queue[c->q_head];
                size_t len = strlen(msg);
                ssize_t n = write(c->fd, msg + c->q_off, len - c->q_off);

                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                return 0;
                        channel_reset(c, now_ms);
                        return -EPIPE;
                }
                c->q_off += (size_t)n;
                if (c->q_off < len)
                        return 0;
                free(msg);
                c->queue[c->q_head] = NULL;
                c->q_head = (c->q_head + 1) % c->q_max;
                c->q_count--;
                c->q_off = 0;
        }
        return 0;
}

short channel_poll_events(const struct channel *c)
{
        if (c->fd < 0)
                return 0;
        return POLLIN | (c->q_count ? POLLOUT : 0);
}

static void channel_take(struct channel *c, const char *buf, size_t n, channel_line_fn fn,
                         void *ctx)
{
        for (size_t i = 0; i < n; i++) {
                if (buf[i] == '\n') {
                        if (!c->discarding)
                                fn(ctx, c->rbuf, c->rlen);
                        c->rlen = 0;
                        c->discarding = false;
                } else if (c->discarding) {
                        continue;
                } else if (c->rlen == CHANNEL_LINE_MAX) {
                        c->discarding = true;
                        c->rlen = 0;
                        fn(ctx, NULL, 0);
                } else {
                        c->rbuf[c->rlen++] = buf[i];
                }
        }
}

int channel_read(struct channel *c, uint64_t now_ms, channel_line_fn fn, void *ctx)
{
        char buf[4096];

        while (c->fd >= 0) {
                ssize_t n = read(c->fd, buf, sizeof(buf));

                if (n > 0) {
                        channel_take(c, buf, (size_t)n, fn, ctx);
                        continue;
                }
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        return 0;
                int e = n == 0 ? ENOTCONN : errno;

                channel_reset(c, now_ms); /* EOF or error: the host went away */
                return -e;
        }
        return -ENOTCONN;
}
