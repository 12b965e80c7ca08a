/* What every daemon does at start: the standard command line (--config, --set, --check-config,
 * --print-config, --help, --version), config loading, logging set-up, and a signalfd for
 * SIGINT/SIGTERM/SIGHUP. */
#pragma once
#include "common/config.h"

struct daemon_args {
        const char *program;
        const char *summary;
        const struct config_key *table;
        void *cfg;
        const char *default_config; /* used when present and no --config is given */
        /* checks across keys once loaded (NULL: none): 0, or -EINVAL with a reason in err;
         * --check-config reports it too */
        int (*check)(const void *cfg, char *err, size_t errsize);
};

/* Returns 0 to run, 1 when the command line asked for something already done (help, check),
 * or a negative errno after printing the error. */
int daemon_parse_args(const struct daemon_args *d, int argc, char **argv);
/* Blocks SIGINT, SIGTERM, SIGHUP and returns a signalfd that reports them. */
int daemon_signalfd(void);
/* A SOCK_STREAM unix socket connected to path (flags: SOCK_NONBLOCK and the like, beside
 * SOCK_CLOEXEC): the descriptor, or -ENAMETOOLONG / a negative errno. */
int daemon_unix_connect(const char *path, int flags);
