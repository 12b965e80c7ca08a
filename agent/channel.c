/* The host channel: a virtio-serial port (any character device) or, for tests and for hosts
 * that expose one, a unix stream socket the agent connects to. Nothing here ever blocks: the fd
 * is O_NONBLOCK, writes go through a bounded queue of lines (the oldest is dropped when full;
 * a newer report supersedes it), a disconnected or hung-up channel is closed and reopened a
 * second later, and an over-long incoming line is discarded up to its newline. The Diode's data
 * frames (common/diode_frame.h) share the channel: incoming ones are decoded as they stream in,
 * and one outgoing record at a time is sent frame by frame between the queued lines. */
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
        c->src_fd = -1;
        c->queue = calloc(c->q_max, sizeof(*c->queue));
        c->fbuf = malloc(DIODE_HEADER_MAX + CHANNEL_FRAME_DATA);
        if (!c->queue || !c->fbuf || diode_decoder_init(&c->dec, CHANNEL_LINE_MAX) < 0) {
                channel_done(c);
                return -ENOMEM;
        }
        return 0;
}

/* A record being sent is abandoned: the host asks again on its new connection. */
static void channel_stream_stop(struct channel *c)
{
        if (c->src_fd >= 0)
                close(c->src_fd);
        c->src_fd = -1;
        free(c->src_end);
        c->src_end = NULL;
        c->flen = c->foff = 0;
}

void channel_reset(struct channel *c, uint64_t now_ms)
{
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
        c->retry_at_ms = now_ms + CHANNEL_RETRY_MS;
        c->q_off = 0; /* a new connection gets whole lines */
        diode_decoder_reset(&c->dec);
        channel_stream_stop(c);
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
        if (c->fbuf)
                channel_stream_stop(c);
        free(c->fbuf);
        diode_decoder_done(&c->dec);
        c->queue = NULL;
        c->fbuf = NULL;
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

/* The next data frame of the record being sent (header and up to CHANNEL_FRAME_DATA bytes);
 * after the last one the end line is queued. */
static int channel_stream_fill(struct channel *c)
{
        size_t want = c->src_size - c->src_off < CHANNEL_FRAME_DATA
                          ? (size_t)(c->src_size - c->src_off)
                          : CHANNEL_FRAME_DATA;
        int h;
        ssize_t n;

        if (want == 0) {
                char *end = c->src_end;

                c->src_end = NULL;
                channel_stream_stop(c);
                if (end)
                        channel_send(c, end);
                free(end);
                return 0;
        }
        h = diode_frame_header((char *)c->fbuf, DIODE_HEADER_MAX, c->src_id, c->src_off, want);
        n = h < 0 ? -1 : pread(c->src_fd, c->fbuf + h, want, (off_t)c->src_off);
        if (n != (ssize_t)want) {
                /* the record cannot be read (it was sealed and hashed; the disk failed): the host
                 * sees a short transfer and its hash check refuses it */
                channel_stream_stop(c);
                return -EIO;
        }
        c->flen = (size_t)h + want;
        c->foff = 0;
        c->src_off += want;
        return 0;
}

/* Writes the current frame; 1 when it is out, 0 when the channel is full, <0 on error. */
static int channel_write_frame(struct channel *c, uint64_t now_ms)
{
        ssize_t n = write(c->fd, c->fbuf + c->foff, c->flen - c->foff);

        if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                        return 0;
                channel_reset(c, now_ms);
                return -EPIPE;
        }
        c->foff += (size_t)n;
        if (c->foff < c->flen)
                return 0;
        c->flen = c->foff = 0;
        return 1;
}

/* Lines go first (reports are never starved by a long record); a frame, once started, is
 * finished before anything else is written. */
int channel_flush(struct channel *c, uint64_t now_ms)
{
        while (c->fd >= 0) {
                int r;

                if (c->foff < c->flen) {
                        r = channel_write_frame(c, now_ms);
                        if (r <= 0)
                                return r;
                        continue;
                }
                if (c->q_count == 0) {
                        if (c->src_fd < 0)
                                return 0;
                        channel_stream_fill(c);
                        continue;
                }
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

int channel_send_stream(struct channel *c, int fd, uint64_t size, const char *id,
                        const char *end_line)
{
        if (c->src_fd >= 0 || c->flen) {
                close(fd);
                return -EBUSY;
        }
        c->src_end = strdup(end_line);
        if (!c->src_end) {
                close(fd);
                return -ENOMEM;
        }
        c->src_fd = fd;
        c->src_off = 0;
        c->src_size = size;
        snprintf(c->src_id, sizeof(c->src_id), "%s", id);
        return 0;
}

short channel_poll_events(const struct channel *c)
{
        if (c->fd < 0)
                return 0;
        return POLLIN | (c->q_count || c->flen || c->src_fd >= 0 ? POLLOUT : 0);
}

int channel_read(struct channel *c, uint64_t now_ms, const struct diode_frame_ops *ops, void *ctx)
{
        static uint8_t buf[256 * 1024]; /* one channel per agent; deposits arrive in bulk */

        /* at most 256 reads a call (a port read is one page), so a deposit in full flow does
         * not starve the loop */
        for (int i = 0; c->fd >= 0; i++) {
                ssize_t n = i < 256 ? read(c->fd, buf, sizeof(buf)) : -2;

                if (n == -2)
                        return 0;
                if (n > 0) {
                        diode_decoder_feed(&c->dec, buf, (size_t)n, ops, ctx);
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
