/* The config parser. Lines are at most 1024 bytes and a file at most 64 KiB; anything else is an
 * error with file, line and the quoted token, never a silent default. */
#include "common/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_LINE_MAX 1024
#define CONFIG_FILE_MAX (64 * 1024)

static int config_fail(struct config_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int config_fail(struct config_error *err, const char *fmt, ...)
{
        va_list ap;

        if (err) {
                va_start(ap, fmt);
                vsnprintf(err->text, sizeof(err->text), fmt, ap);
                va_end(ap);
        }
        return -EINVAL;
}

static const struct config_key *config_find(const struct config_key *table, const char *name)
{
        for (; table->name; table++)
                if (strcmp(table->name, name) == 0)
                        return table;
        return NULL;
}

static int config_parse_uint(const char *s, uint64_t *ret)
{
        char *end;
        unsigned long long v;

        if (!isdigit((unsigned char)*s))
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno || *end)
                return -EINVAL;
        *ret = v;
        return 0;
}

static int config_parse_duration(const char *s, uint64_t *ret)
{
        static const struct {
                const char *suffix;
                uint64_t ms;
        } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"", 1}};
        char *end;
        unsigned long long v;

        if (!isdigit((unsigned char)*s))
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno)
                return -EINVAL;
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
                if (strcmp(end, units[i].suffix) == 0) {
                        if (v > UINT64_MAX / units[i].ms)
                                return -EINVAL;
                        *ret = v * units[i].ms;
                        return 0;
                }
        }
        return -EINVAL;
}

static int config_parse_bool(const char *s, bool *ret)
{
        static const char *const yes[] = {"true", "yes", "on", "1"};
        static const char *const no[] = {"false", "no", "off", "0"};

        for (size_t i = 0; i < 4; i++) {
                if (strcmp(s, yes[i]) == 0) {
                        *ret = true;
                        return 0;
                }
                if (strcmp(s, no[i]) == 0) {
                        *ret = false;
                        return 0;
                }
        }
        return -EINVAL;
}

int config_set_value(const struct config_key *table, void *cfg, const char *key, const char *value,
                     const char *where, struct config_error *err)
{
        const struct config_key *k = config_find(table, key);
        char *field;
        uint64_t n;

        if (!k)
                return config_fail(err, "%s: unknown key '%s'", where, key);
        field = (char *)cfg + k->offset;
        switch (k->type) {
        case CONFIG_STRING:
                if (strlen(value) >= k->max)
                        return config_fail(err, "%s: value for '%s' is longer than %llu bytes",
                                           where, key, (unsigned long long)k->max - 1);
                memcpy(field, value, strlen(value) + 1);
                return 0;
        case CONFIG_BOOL:
                if (config_parse_bool(value, (bool *)field) < 0)
                        return config_fail(err, "%s: '%s' is not a boolean for '%s'", where, value,
                                           key);
                return 0;
        case CONFIG_UINT:
                if (config_parse_uint(value, &n) < 0)
                        return config_fail(err, "%s: '%s' is not a whole number for '%s'", where,
                                           value, key);
                break;
        case CONFIG_DURATION:
                if (config_parse_duration(value, &n) < 0)
                        return config_fail(err, "%s: '%s' is not a duration for '%s' (e.g. 10s)",
                                           where, value, key);
                break;
        default:
                return config_fail(err, "%s: key '%s' has no type", where, key);
        }
        if (n < k->min || n > k->max)
                return config_fail(err, "%s: value '%s' for '%s' is outside %llu..%llu", where,
                                   value, key, (unsigned long long)k->min,
                                   (unsigned long long)k->max);
        memcpy(field, &n, sizeof(n));
        return 0;
}

int config_set_defaults(const struct config_key *table, void *cfg, struct config_error *err)
{
        for (const struct config_key *k = table; k->name; k++) {
                int r = config_set_value(table, cfg, k->name, k->def, "default", err);

                if (r < 0)
                        return r;
        }
        return 0;
}

static char *config_trim(char *s)
{
        char *end;

        while (isspace((unsigned char)*s))
                s++;
        end = s + strlen(s);
        while (end > s && isspace((unsigned char)end[-1]))
                *--end = '\0';
        return s;
}

/* Splits "key = value" and strips one pair of double quotes around the value. */
static int config_parse_line(char *line, char **ret_key, char **ret_value)
{
        char *eq = strchr(line, '=');
        char *key, *value;
        size_t n;

        if (!eq)
                return -EINVAL;
        *eq = '\0';
        key = config_trim(line);
        value = config_trim(eq + 1);
        n = strlen(value);
        if (n >= 2 && value[0] == '"' && value[n - 1] == '"') {
                value[n - 1] = '\0';
                value++;
        }
        if (!*key)
                return -EINVAL;
        *ret_key = key;
        *ret_value = value;
        return 0;
}

int config_load_file(const struct config_key *table, void *cfg, const char *path,
                     struct config_error *err)
{
        char line[CONFIG_LINE_MAX + 2], where[300];
        unsigned lineno = 0;
        size_t total = 0;
        int ret = 0;
        FILE *f = fopen(path, "re");

        if (!f)
                return config_fail(err, "cannot open config '%s': %s", path, strerror(errno));
        while (fgets(line, sizeof(line), f)) {
                char *s, *key, *value;
                size_t n = strlen(line);

                lineno++;
                total += n;
                snprintf(where, sizeof(where), "%s:%u", path, lineno);
                if (total > CONFIG_FILE_MAX) {
                        ret = config_fail(err, "%s: file is larger than %d bytes", where,
                                          CONFIG_FILE_MAX);
                        goto cleanup;
                }
                if (n > CONFIG_LINE_MAX) {
                        ret = config_fail(err, "%s: line is longer than %d bytes", where,
                                          CONFIG_LINE_MAX);
                        goto cleanup;
                }
                s = config_trim(line);
                if (!*s || *s == '#')
                        continue;
                if (config_parse_line(s, &key, &value) < 0) {
                        ret = config_fail(err, "%s: expected 'key = value', got '%.80s'", where, s);
                        goto cleanup;
                }
                ret = config_set_value(table, cfg, key, value, where, err);
                if (ret < 0)
                        goto cleanup;
        }
        if (ferror(f))
                ret = config_fail(err, "%s: read error", path);
cleanup:
        fclose(f);
        return ret;
}

int config_set_option(const struct config_key *table, void *cfg, const char *assignment,
                      struct config_error *err)
{
        char buf[CONFIG_LINE_MAX + 1], *key, *value;

        if (strlen(assignment) > CONFIG_LINE_MAX)
                return config_fail(err, "--set: option is longer than %d bytes", CONFIG_LINE_MAX);
        strcpy(buf, assignment);
        if (config_parse_line(buf, &key, &value) < 0)
                return config_fail(err, "--set: expected 'key=value', got '%.80s'", assignment);
        return config_set_value(table, cfg, key, value, "--set", err);
}

static void config_format_value(const struct config_key *k, const void *cfg, char *buf, size_t size)
{
        const char *field = (const char *)cfg + k->offset;
        uint64_t n;

        switch (k->type) {
        case CONFIG_STRING:
                snprintf(buf, size, "\"%s\"", field);
                return;
        case CONFIG_BOOL:
                snprintf(buf, size, "%s", *(const bool *)field ? "true" : "false");
                return;
        case CONFIG_DURATION:
                memcpy(&n, field, sizeof(n));
                if (n % 1000 == 0)
                        snprintf(buf, size, "%llus", (unsigned long long)(n / 1000));
                else
                        snprintf(buf, size, "%llums", (unsigned long long)n);
                return;
        case CONFIG_UINT:
                memcpy(&n, field, sizeof(n));
                snprintf(buf, size, "%llu", (unsigned long long)n);
                return;
        }
}

void config_print(const struct config_key *table, const void *cfg, FILE *out)
{
        char value[CONFIG_LINE_MAX];

        for (const struct config_key *k = table; k->name; k++) {
                config_format_value(k, cfg, value, sizeof(value));
                fprintf(out, "%s = %s\n", k->name, value);
        }
}

void config_print_help(const struct config_key *table, FILE *out)
{
        static const char *const type_names[] = {"string", "integer", "boolean", "duration"};

        for (const struct config_key *k = table; k->name; k++) {
                fprintf(out, "  %-24s %-8s default %s", k->name, type_names[k->type],
                        *k->def ? k->def : "\"\"");
                if (k->type == CONFIG_UINT)
                        fprintf(out, ", %llu..%llu", (unsigned long long)k->min,
                                (unsigned long long)k->max);
                fprintf(out, "\n      %s\n", k->help);
        }
}
