/* Fuzz target: the config file parser, fed through a temporary file like a real config. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz_cfg {
        char name[32];
        uint64_t port;
        uint64_t interval_ms;
        bool on;
};

static const struct config_key fuzz_table[] = {
    {"name", CONFIG_STRING, offsetof(struct fuzz_cfg, name), 32, 32, "x", "a string"},
    {"port", CONFIG_UINT, offsetof(struct fuzz_cfg, port), 1, 65535, "1", "a number"},
    {"interval", CONFIG_DURATION, offsetof(struct fuzz_cfg, interval_ms), 1, 86400000, "1s",
     "a duration"},
    {"on", CONFIG_BOOL, offsetof(struct fuzz_cfg, on), 0, 0, "no", "a switch"},
    {0},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char path[] = "/tmp/fuzz-config-XXXXXX";
        struct config_error err;
        struct fuzz_cfg cfg;
        int fd = mkstemp(path);

        if (fd < 0)
                return 0;
        if (write(fd, data, size) == (ssize_t)size) {
                config_set_defaults(fuzz_table, &cfg, &err);
                config_load_file(fuzz_table, &cfg, path, &err);
        }
        close(fd);
        unlink(path);
        return 0;
}
