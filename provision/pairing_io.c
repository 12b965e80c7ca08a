/* Message I/O shared by the genesis server and the joiner: framed JSON in clear before the keys
 * exist, sealed boxes after; and the operator's SAS confirmation, read while the peer socket is
 * watched so that a refusal from the other side is reported at once. */
#include "provision/pairing.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int pair_connect_wait(int fd, const struct sockaddr *sa, socklen_t len, int64_t deadline)
{
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        socklen_t elen = sizeof(int);
        int k, e = 0;

        if (connect(fd, sa, len) == 0)
                return 0;
        if (errno != EINPROGRESS)
                return -errno;
        do {
                k = poll(&p, 1, pair_remaining_ms(deadline));
        } while (k < 0 && errno == EINTR);
        if (k < 0)
                return -errno;
        if (k == 0)
                return -ETIMEDOUT;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &elen) < 0)
                return -errno;
        return -e;
}

/* target ("host[:port]", port 9173 by default) as one IPv4 address; 0 or a negative errno. */
static int pair_lookup(const char *target, struct addrinfo **ret)
{
        char host[256], port[8] = "9173";
        const char *colon = strrchr(target, ':');
        struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};

        if (colon) {
                if ((size_t)(colon - target) >= sizeof(host) || strlen(colon + 1) >= sizeof(port))
                        return -EINVAL;
                memcpy(host, target, (size_t)(colon - target));
                host[colon - target] = '\0';
                snprintf(port, sizeof(port), "%s", colon + 1);
        } else {
                snprintf(host, sizeof(host), "%s", target);
        }
        return getaddrinfo(host, port, &hints, ret) == 0 ? 0 : -EHOSTUNREACH;
}

int pair_resolve(const char *target, char *out, size_t size)
{
        struct addrinfo *ai = NULL;
        const struct sockaddr_in *sin;
        char addr[INET_ADDRSTRLEN];
        int r = pair_lookup(target, &ai);

        if (r < 0)
                return r;
        sin = (const struct sockaddr_in *)ai->ai_addr;
        inet_ntop(AF_INET, &sin->sin_addr, addr, sizeof(addr));
        snprintf(out, size, "%s:%u", addr, (unsigned)ntohs(sin->sin_port));
        freeaddrinfo(ai);
        return 0;
}

/* A non-blocking connect bounded by the deadline (a black-holed genesis answers nothing). */
int pair_connect(const char *target, int64_t deadline)
{
        struct addrinfo *ai = NULL;
        int fd, ret = pair_lookup(target, &ai);

        if (ret < 0)
                return ret;
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
                ret = -errno;
                goto cleanup;
        }
        ret = pair_connect_wait(fd, ai->ai_addr, ai->ai_addrlen, deadline);
        /* Blocking again: every later read and write is bounded by poll() and the deadline. */
        if (ret == 0 && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0)
                ret = -errno;
        if (ret < 0) {
                close(fd);
                goto cleanup;
        }
        ret = fd;
cleanup:
        freeaddrinfo(ai);
        return ret;
}

/* The joiner's side of a dialling genesis (one behind NAT): listens on addr:port and takes the
 * first connection before the deadline; the listening socket is closed either way. */
int pair_accept_one(const char *addr, unsigned port, int64_t deadline)
{
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        struct pollfd p = {.events = POLLIN};
        int one = 1, k, fd = -1;

        if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
                return -EINVAL;
        p.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (p.fd < 0)
                return -errno;
        setsockopt(p.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(p.fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(p.fd, 1) < 0) {
                fd = -errno;
                goto cleanup;
        }
        do {
                k = poll(&p, 1, pair_remaining_ms(deadline));
        } while (k < 0 && errno == EINTR);
        if (k <= 0)
                fd = k < 0 ? -errno : -ETIMEDOUT;
        else if ((fd = accept4(p.fd, NULL, NULL, SOCK_CLOEXEC)) < 0)
                fd = -errno;
cleanup:
        close(p.fd);
        return fd;
}

int pair_send(int fd, const struct pair_msg *m)
{
        char *s = pair_msg_encode(m);
        int ret;

        if (!s)
                return -ENOMEM;
        ret = pair_frame_write(fd, s, strlen(s));
        sodium_memzero(s, strlen(s));
        free(s);
        return ret;
}

/* Why a frame could not be read, for the operator: never an empty string. */
static void pair_frame_error(int r, size_t len, const uint8_t head[4], char *err, size_t errsize)
{
        static const char *const http[] = {"GET ", "POST", "HEAD", "PUT ", "OPTI", "DELE", NULL};

        if (r == -ETIMEDOUT) {
                snprintf(err, errsize, "timed out: no complete message before the deadline");
        } else if (r == -ECONNRESET) {
                snprintf(err, errsize, "the other side closed the connection");
        } else if (r == -EPROTO) {
                for (size_t i = 0; http[i]; i++) {
                        if (memcmp(head, http[i], 4) == 0) {
                                snprintf(err, errsize,
                                         "an HTTP request on the pairing port (not a "
                                         "totebox-pair client)");
                                return;
                        }
                }
                snprintf(err, errsize, "bad frame length %zu (1..%d allowed)", len, PAIR_FRAME_MAX);
        } else {
                snprintf(err, errsize, "cannot read from the other side: %s", strerror(-r));
        }
}

/* The decoder may quote the peer's bytes: only printable ASCII reaches a console or a frame. */
void pair_printable(char *s)
{
        for (; *s; s++) {
                if (*s < 0x20 || *s > 0x7e)
                        *s = '?';
        }
}

int pair_recv(int fd, int64_t deadline_ms, struct pair_msg *ret, char *err, size_t errsize)
{
        struct json_input_error jerr = {{0}};
        uint8_t head[4] = {0};
        char *buf = NULL;
        size_t len = 0;
        int r = pair_frame_read(fd, deadline_ms, &buf, &len, head);

        if (r < 0) {
                memset(ret, 0, sizeof(*ret));
                pair_frame_error(r, len, head, err, errsize);
                return r;
        }
        r = pair_msg_decode(buf, len, ret, &jerr);
        if (r < 0) {
                snprintf(err, errsize, "malformed message: %s",
                         jerr.text[0] ? jerr.text : "undecodable");
                pair_printable(err);
        }
        free(buf);
        return r;
}

int pair_send_sealed(int fd, struct pair_session *s, const struct pair_msg *inner)
{
        struct pair_msg sealed;
        char *plain = pair_msg_encode(inner);
        int ret;

        if (!plain)
                return -ENOMEM;
        ret = pair_session_seal(s, plain, &sealed);
        sodium_memzero(plain, strlen(plain));
        free(plain);
        if (ret < 0)
                return ret;
        ret = pair_send(fd, &sealed);
        pair_msg_clear(&sealed);
        return ret;
}

int pair_recv_sealed(int fd, int64_t deadline_ms, struct pair_session *s, struct pair_msg *ret,
                     char *err, size_t errsize)
{
        struct json_input_error jerr = {{0}};
        struct pair_msg box;
        char *plain = NULL;
        size_t len = 0;
        int r = pair_recv(fd, deadline_ms, &box, err, errsize);

        if (r < 0)
                return r;
        if (box.type == PAIR_MSG_ERROR) {
                *ret = box; /* a clear-text refusal is still a precise answer */
                return 0;
        }
        r = box.type == PAIR_MSG_SEALED ? pair_session_open(s, &box, &plain, &len) : -EBADMSG;
        pair_msg_clear(&box);
        if (r < 0) {
                snprintf(err, errsize,
                         "a sealed message failed authentication (replayed, "
                         "reordered, reflected or forged)");
                return -EBADMSG;
        }
        r = pair_msg_decode(plain, len, ret, &jerr);
        if (r < 0) {
                snprintf(err, errsize, "malformed sealed message: %s",
                         jerr.text[0] ? jerr.text : "undecodable");
                pair_printable(err);
        }
        sodium_memzero(plain, len);
        free(plain);
        return r;
}

int pair_send_error(int fd, struct pair_session *s, enum pair_error e, const char *detail)
{
        struct pair_msg m = {.type = s && s->keyed ? PAIR_MSG_ABORT : PAIR_MSG_ERROR, .error = e};

        snprintf(m.detail, sizeof(m.detail), "%s", detail ? detail : pair_error_text(e));
        if (s && s->keyed)
                return pair_send_sealed(fd, s, &m);
        return pair_send(fd, &m);
}

int pair_send_error_v(int fd, unsigned v, enum pair_error e, const char *detail)
{
        struct pair_msg m = {.type = PAIR_MSG_ERROR, .v = v, .error = e};

        snprintf(m.detail, sizeof(m.detail), "%s", detail ? detail : pair_error_text(e));
        return pair_send(fd, &m);
}

void pair_close_gently(int fd)
{
        char buf[512];
        struct pollfd p = {.fd = fd, .events = POLLIN};

        /* Closing with unread input sends a reset that can destroy our last message (the
         * reason for a refusal) before the peer reads it: finish writing, drain, then close. */
        shutdown(fd, SHUT_WR);
        for (int i = 0; i < 20 && poll(&p, 1, 100) > 0; i++) {
                if (read(fd, buf, sizeof(buf)) <= 0)
                        break;
        }
        close(fd);
}

int pair_read_line(int fd, int timeout_ms, char *buf, size_t size)
{
        size_t n = 0;

        while (n + 1 < size) {
                struct pollfd p = {.fd = fd, .events = POLLIN};
                ssize_t r;
                int k = poll(&p, 1, timeout_ms);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return k == 0 ? -ETIMEDOUT : -errno;
                r = read(fd, buf + n, 1);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0 || buf[n] == '\n')
                        break;
                n++;
        }
        buf[n] = '\0';
        return 0;
}

static bool pair_typed_refusal(const char *s)
{
        while (*s == ' ')
                s++;
        return !*s || strncmp(s, "no", 2) == 0 || strncmp(s, "n", 2) == 0;
}

enum pair_error pair_confirm_sas(const struct pair_session *s, int in_fd, int sock, int timeout_ms,
                                 FILE *out, bool *peer_spoke)
{
        struct pollfd p[2] = {{.fd = in_fd, .events = POLLIN}, {.fd = sock, .events = POLLIN}};
        char line[64];
        int k;

        *peer_spoke = false;
        fprintf(out, "SAS: %s\n", s->sas);
        fprintf(out, "Compare with the other node, then type the SAS it shows (or 'no'):\n");
        fflush(out);
        do {
                k = poll(p, 2, timeout_ms);
        } while (k < 0 && errno == EINTR);
        if (k <= 0)
                return PAIR_ERR_SAS_NOT_CONFIRMED;
        if (!(p[0].revents & (POLLIN | POLLHUP))) {
                *peer_spoke = true;
                return PAIR_ERR_SAS_NOT_CONFIRMED;
        }
        if (pair_read_line(in_fd, timeout_ms, line, sizeof(line)) < 0 || pair_typed_refusal(line))
                return PAIR_ERR_SAS_NOT_CONFIRMED;
        return pair_sas_matches(s, line) ? PAIR_ERR_NONE : PAIR_ERR_SAS_MISMATCH;
}
