/* The test guest's stand-in agent: writes one fixed, validly signed report line to the
 * virtio-serial port org.totebox.agent.0, then repeats it every 5 s (trigger "schedule") and
 * answers each host request line with an "error" line, until the real totebox-agent replaces it.
 * Writes use poll() + O_NONBLOCK: with no host side connected a blocking write() hangs forever.
 * The key is derived from a fixed seed (0x42 * 32); the STH covers one ledger line,
 * {"v":1,"type":"vault-created"}. Build: cc -static -Os -o fixed-report fixed-report.c */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PORT "/dev/virtio-ports/org.totebox.agent.0"

static const char report_line[] =
    "{\"v\":1,\"type\":\"report\",\"trigger\":\"%s\",\"vault_id\":\"test-vault\","
    "\"public_key\":\"IVL40Zt5HSRFMkLhXy6rbLfP+ntqXtMAl5YOBpiB2xI=\",\"sth\":{\"size\":1,"
    "\"root\":\"4af229a98ad34f4efd7cfadea1f7a153d3a629f3cbab9c610be67c790351d401\","
    "\"time_ms\":1795000000000,\"signature\":\"4eYXdyxhWeBmKVOQlhptGbSETnsl6Rvx/"
    "SrwFYQMV9S1HgbzrgzsaDkBwUkktJ/daMo3fC1NwV39Wzurv1QeDw==\"},\"records\":0,\"bytes\":0,"
    "\"duration_ms\":0,\"mismatches\":[]}\n";

static int write_all(int fd, const char *buf, size_t len)
{
        while (len > 0) {
                struct pollfd p = {.fd = fd, .events = POLLOUT};
                ssize_t n;

                if (poll(&p, 1, 1000) <= 0)
                        continue;
                n = write(fd, buf, len);
                if (n < 0 && errno != EAGAIN && errno != EINTR)
                        return -1;
                if (n > 0) {
                        buf += n;
                        len -= (size_t)n;
                }
        }
        return 0;
}

static void send_report(int fd, const char *trigger)
{
        char line[1024];
        int n = snprintf(line, sizeof(line), report_line, trigger);

        if (n > 0 && (size_t)n < sizeof(line))
                write_all(fd, line, (size_t)n);
}

int main(void)
{
        static const char unsupported[] =
            "{\"v\":1,\"type\":\"error\",\"detail\":\"the test guest answers no requests\"}\n";
        char buf[4096];
        int fd;

        while ((fd = open(PORT, O_RDWR | O_NONBLOCK | O_CLOEXEC)) < 0)
                sleep(1);
        fprintf(stderr, "fixed-report: writing to %s\n", PORT);
        send_report(fd, "start");
        for (;;) {
                struct pollfd p = {.fd = fd, .events = POLLIN};
                int r = poll(&p, 1, 5000);

                if (r == 0) {
                        send_report(fd, "schedule");
                } else if (r > 0 && (p.revents & POLLIN)) {
                        ssize_t n = read(fd, buf, sizeof(buf));

                        if (n > 0 && memchr(buf, '\n', (size_t)n))
                                write_all(fd, unsupported, sizeof(unsupported) - 1);
                        else if (n <= 0)
                                sleep(1); /* host side closed: wait for it to come back */
                } else if (r > 0) {
                        sleep(1); /* POLLHUP: no host side connected yet */
                }
        }
}
