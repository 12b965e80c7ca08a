/* The message layer between privilege-separated processes (common/imsg.h). SOCK_SEQPACKET keeps
 * message boundaries, so a short or long read is a size error, not a framing state to resync. */
#include "common/imsg.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

const struct imsg_type *imsg_type_find(const struct imsg_proto *p, uint16_t type)
{
        for (size_t i = 0; i < p->n_types; i++)
                if (p->types[i].type == type)
                        return &p->types[i];
        return NULL;
}

static int imsg_fail(char *err, size_t errsize, int r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int imsg_fail(char *err, size_t errsize, int r, const char *fmt, ...)
{
        va_list ap;

        if (err && errsize) {
                va_start(ap, fmt);
                vsnprintf(err, errsize, fmt, ap);
                va_end(ap);
        }
        return r;
}

int imsg_check(const struct imsg_proto *p, const void *buf, size_t n, struct imsg_hdr *ret_hdr,
               const void **ret_payload, char *err, size_t errsize)
{
        const struct imsg_type *t;
        struct imsg_hdr h;

        if (n < sizeof(h))
                return imsg_fail(err, errsize, -EPROTO, "%s message of %zu bytes has no header",
                                 p->name, n);
        memcpy(&h, buf, sizeof(h));
        if (h.version != p->version)
                return imsg_fail(err, errsize, -EPROTONOSUPPORT,
                                 "%s message version %u, expected %u", p->name, h.version,
                                 p->version);
        t = imsg_type_find(p, h.type);
        if (!t)
                return imsg_fail(err, errsize, -EBADMSG, "unknown %s message type %u", p->name,
                                 h.type);
        if (h.len != n - sizeof(h) || h.len < t->min_len || h.len > t->max_len)
                return imsg_fail(err, errsize, -EMSGSIZE,
                                 "%s message '%s' of %zu payload bytes (header says %u), needs "
                                 "%u..%u",
                                 p->name, t->name, n - sizeof(h), h.len, t->min_len, t->max_len);
        *ret_hdr = h;
        *ret_payload = (const char *)buf + sizeof(h);
        return 0;
}

int imsg_send_fd(int fd, const struct imsg_proto *p, uint16_t type, const void *payload, size_t len,
                 int pass_fd)
{
        const struct imsg_type *t = imsg_type_find(p, type);
        struct imsg_hdr h = {.version = p->version, .type = type, .len = (uint32_t)len};
        struct iovec iov[2] = {{&h, sizeof(h)}, {(void *)payload, len}};
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};
        union {
                struct cmsghdr c;
                char buf[CMSG_SPACE(sizeof(int))];
        } ctl;
        ssize_t w;

        if (!t || len < t->min_len || len > t->max_len)
                return -EINVAL;
        if (pass_fd >= 0) {
                memset(&ctl, 0, sizeof(ctl));
                mh.msg_control = ctl.buf;
                mh.msg_controllen = sizeof(ctl.buf);
                ctl.c.cmsg_level = SOL_SOCKET;
                ctl.c.cmsg_type = SCM_RIGHTS;
                ctl.c.cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(&ctl.c), &pass_fd, sizeof(int));
        }
        do
                w = sendmsg(fd, &mh, MSG_NOSIGNAL);
        while (w < 0 && errno == EINTR);
        if (w < 0)
                return -errno;
        return (size_t)w == sizeof(h) + len ? 0 : -EIO;
}

int imsg_send(int fd, const struct imsg_proto *p, uint16_t type, const void *payload, size_t len)
{
        return imsg_send_fd(fd, p, type, payload, len, -1);
}

/* The descriptors a datagram carried: the first one to *ret_fd (when asked for), every other
 * one closed, so a peer cannot fill this process's table. */
static void imsg_take_fds(struct msghdr *mh, int *ret_fd)
{
        for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
                size_t n;

                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                        continue;
                n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < n; i++) {
                        int got;

                        memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                        if (ret_fd && *ret_fd < 0)
                                *ret_fd = got;
                        else
                                close(got);
                }
        }
}

ssize_t imsg_recv_fd(int fd, void *buf, size_t size, int timeout_ms, int *ret_fd)
{
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        struct iovec iov = {buf, size};
        union {
                struct cmsghdr c;
                char buf[CMSG_SPACE(4 * sizeof(int))];
        } ctl;
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
        ssize_t n;
        int r;

        if (ret_fd)
                *ret_fd = -1;
        do
                r = poll(&pfd, 1, timeout_ms);
        while (r < 0 && errno == EINTR);
        if (r < 0)
                return -errno;
        if (r == 0)
                return -ETIMEDOUT;
        do {
                mh.msg_control = ctl.buf;
                mh.msg_controllen = sizeof(ctl.buf);
                n = recvmsg(fd, &mh, MSG_TRUNC | MSG_CMSG_CLOEXEC);
        } while (n < 0 && errno == EINTR);
        if (n < 0)
                return -errno;
        imsg_take_fds(&mh, ret_fd);
        if ((size_t)n > size || (mh.msg_flags & MSG_CTRUNC)) {
                if (ret_fd && *ret_fd >= 0)
                        close(*ret_fd);
                if (ret_fd)
                        *ret_fd = -1;
                return -EMSGSIZE;
        }
        return n;
}

ssize_t imsg_recv(int fd, void *buf, size_t size, int timeout_ms)
{
        return imsg_recv_fd(fd, buf, size, timeout_ms, NULL);
}

int imsg_socketpair(int ret_fds[2])
{
        return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ret_fds) < 0 ? -errno : 0;
}

bool imsg_string_ok(const char *s, size_t size)
{
        return memchr(s, '\0', size) != NULL;
}
