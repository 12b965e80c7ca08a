/* The raw peer of bench_diode_deposit.py: a guest program in place of the agent that reads the
 * virtio-serial port and throws the bytes away (the "reader that discards" of `cat FILE > port`),
 * or, when the count line ends in " w", writes them to VAULT/raw.bin and fdatasyncs it (`cat port
 * > FILE`: what storing the bytes costs without the Diode). The host first sends one line with
 * the byte count; when that many bytes have arrived the program answers "DONE N" on the port,
 * so the host times the whole copy, not its own writes into socket buffers. Static; takes the
 * agent's arguments and looks only for --channel PATH and --vault DIR. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
        static char buf[1 << 18];
        const char *path = "/dev/virtio-ports/org.totebox.agent.0", *vault = "/vault";
        int out = -1;
        unsigned long long want = 0, got = 0;
        char line[64];
        size_t ll = 0;
        int fd;

        for (int i = 1; i + 1 < argc; i++)
                if (!strcmp(argv[i], "--channel"))
                        path = argv[i + 1];
                else if (!strcmp(argv[i], "--vault"))
                        vault = argv[i + 1];
        fd = open(path, O_RDWR);
        if (fd < 0) {
                perror(path);
                sleep(1);
                return 1;
        }
        for (;;) {
                ssize_t n = read(fd, buf, sizeof(buf));
                size_t off = 0;

                if (n <= 0) {
                        sleep(1);
                        continue;
                }
                while (!want && off < (size_t)n) {
                        char c = buf[off++];

                        if (c == '\n') {
                                line[ll] = '\0';
                                want = strtoull(line, NULL, 10);
                                if (strstr(line, " w")) {
                                        char f[4200];

                                        snprintf(f, sizeof(f), "%s/raw.bin", vault);
                                        out = open(f, O_WRONLY | O_CREAT | O_TRUNC, 0600);
                                }
                                ll = 0;
                                got = 0;
                        } else if (ll + 1 < sizeof(line))
                                line[ll++] = c;
                }
                if (out >= 0 && (size_t)n > off &&
                    write(out, buf + off, (size_t)n - off) != (ssize_t)((size_t)n - off))
                        perror("write");
                got += (size_t)n - off;
                if (want && got >= want) {
                        if (out >= 0) {
                                fdatasync(out);
                                close(out);
                                out = -1;
                        }
                        int k = snprintf(line, sizeof(line), "DONE %llu\n", got);

                        if (write(fd, line, (size_t)k) != k)
                                perror("write");
                        want = 0;
                }
        }
}
