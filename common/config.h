/* One config format for every daemon: "key = value" lines, '#' comments. Each daemon describes
 * its keys in a table (name, type, bounds, default, help); loading, --help, --check-config,
 * --print-config and the docs all read the same table. */
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum config_type {
        CONFIG_STRING,   /* char[] in the struct; max = sizeof the array */
        CONFIG_UINT,     /* uint64_t, bounds min..max */
        CONFIG_BOOL,     /* bool: true/false/yes/no/on/off/1/0 */
        CONFIG_DURATION, /* uint64_t milliseconds; value like "10s", "250ms", "2m" or plain ms */
};

struct config_key {
        const char *name;
        enum config_type type;
        size_t offset; /* offsetof() into the daemon's config struct */
        uint64_t min, max;
        const char *def; /* default, in the same syntax as the file */
        const char *help;
};

struct config_error {
        char text[320];
};

/* Sets every key of table to its default. */
int config_set_defaults(const struct config_key *table, void *cfg, struct config_error *err);
/* Reads path over what cfg holds. Errors name the file, line and quoted token. */
int config_load_file(const struct config_key *table, void *cfg, const char *path,
                     struct config_error *err);
/* Applies one "key=value" (command-line override). */
int config_set_option(const struct config_key *table, void *cfg, const char *assignment,
                      struct config_error *err);
/* Applies one key; where names the origin in errors ("file.conf:3", "--set"). */
int config_set_value(const struct config_key *table, void *cfg, const char *key, const char *value,
                     const char *where, struct config_error *err);
/* Writes every key and its current value, in file syntax (golden-testable). */
void config_print(const struct config_key *table, const void *cfg, FILE *out);
/* Writes the key reference: name, type, bounds, default, help. */
void config_print_help(const struct config_key *table, FILE *out);
