/* Standard daemon start-up, shared by fleetd and vmhost so that both have one command line. */
#include "common/daemon.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void daemon_usage(const struct daemon_args *d, FILE *out)
{
        fprintf(out,
                "usage: %s [--config FILE] [--set KEY=VALUE]... [--check-config] [--print-config]\n"
                "%s\n\n"
                "  -c, --config FILE     read FILE (default '%s' when it exists)\n"
                "  -s, --set KEY=VALUE   override one key after the file\n"
                "      --check-config    validate the configuration and exit\n"
                "      --print-config    print the effective configuration and exit\n"
                "  -h, --help            this text\n"
                "  -V, --version         print the version\n\nconfiguration keys:\n",
                d->program, d->summary, d->default_config);
        config_print_help(d->table, out);
}

static int daemon_load(const struct daemon_args *d, const char *path, int argc, char **argv)
{
        struct config_error err;
        int r = config_set_defaults(d->table, d->cfg, &err);

        if (r == 0 && !path && access(d->default_config, R_OK) == 0)
                path = d->default_config;
        if (r == 0 && path)
                r = config_load_file(d->table, d->cfg, path, &err);
        for (int i = 1; r == 0 && i < argc; i++) {
                if ((strcmp(argv[i], "--set") == 0 || strcmp(argv[i], "-s") == 0) && i + 1 < argc)
                        r = config_set_option(d->table, d->cfg, argv[++i], &err);
                else if (strncmp(argv[i], "--set=", 6) == 0)
                        r = config_set_option(d->table, d->cfg, argv[i] + 6, &err);
        }
        if (r < 0)
                fprintf(stderr, "%s: %s\n", d->program, err.text);
        return r;
}

int daemon_parse_args(const struct daemon_args *d, int argc, char **argv)
{
        static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                             {"set", required_argument, NULL, 's'},
                                             {"check-config", no_argument, NULL, 'C'},
                                             {"print-config", no_argument, NULL, 'P'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"version", no_argument, NULL, 'V'},
                                             {NULL, 0, NULL, 0}};
        const char *path = NULL;
        int check = 0, print = 0, c, r;

        optind = 1;
        while ((c = getopt_long(argc, argv, "c:s:hV", opts, NULL)) != -1) {
                switch (c) {
                case 'c':
                        path = optarg;
                        break;
                case 's':
                        break; /* applied in order after the file */
                case 'C':
                        check = 1;
                        break;
                case 'P':
                        print = 1;
                        break;
                case 'h':
                        daemon_usage(d, stdout);
                        return 1;
                case 'V':
                        printf("%s %s\n", d->program, TOTEBOX_VERSION);
                        return 1;
                default:
                        daemon_usage(d, stderr);
                        return -EINVAL;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "%s: unexpected argument '%s'\n", d->program, argv[optind]);
                return -EINVAL;
        }
        r = daemon_load(d, path, argc, argv);
        if (r < 0)
                return r;
        if (d->check) {
                char err[256] = "";

                r = d->check(d->cfg, err, sizeof(err));
                if (r < 0) {
                        fprintf(stderr, "%s: %s\n", d->program, err);
                        return r;
                }
        }
        if (print)
                config_print(d->table, d->cfg, stdout);
        if (check && !print)
                printf("%s: configuration OK\n", d->program);
        return check || print ? 1 : 0;
}

int daemon_signalfd(void)
{
        sigset_t set;

        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGHUP);
        if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
                return -errno;
        signal(SIGPIPE, SIG_IGN);
        return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

int daemon_unix_connect(const char *path, int flags)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        size_t n = strlen(path);
        int fd;

        if (n >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, n + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                int e = -errno;

                close(fd);
                return e;
        }
        return fd;
}
