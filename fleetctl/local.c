/* fleetctl's commands on fleetd's state directory (run on the controller, as the user that owns
 * the state): token create [--expires DURATION] / revoke / list (audit verify is audit_verify.c).
 * A token is printed once; only its SHA-256 is stored. These work whether fleetd runs or not
 * (SQLite WAL). */
#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/small_file.h"
#include "fleetctl/fleetctl.h"
#include "fleetd/store.h"

int ctl_open_store(struct ctl *c, bool create, struct store **ret)
{
        char *path = small_file_path(c->state_dir, STORE_FILE);
        int r;

        if (!path) {
                fprintf(stderr, "fleetctl: cannot open '%s/%s': %s\n", c->state_dir, STORE_FILE,
                        strerror(ENOMEM));
                return -ENOMEM;
        }
        if (!create && access(path, R_OK) < 0) {
                r = -errno;
                fprintf(stderr, "fleetctl: no fleetd state at '%s': %s\n", path, strerror(-r));
        } else {
                r = store_open(c->state_dir, ret);
                if (r < 0)
                        fprintf(stderr, "fleetctl: cannot open '%s': %s\n", path, strerror(-r));
        }
        free(path);
        return r;
}

/* "30d", "12h", "90m", "3600s", "2w": milliseconds, or 0 when not a duration of at most ten
 * years. */
static uint64_t ctl_duration_ms(const char *s)
{
        static const struct {
                char unit;
                uint64_t ms;
        } units[] = {{'s', 1000}, {'m', 60000}, {'h', 3600000}, {'d', 86400000}, {'w', 604800000}};
        char *end = NULL;
        unsigned long long n;

        if (!s || *s < '0' || *s > '9')
                return 0;
        n = strtoull(s, &end, 10);
        for (unsigned i = 0; i < sizeof(units) / sizeof(units[0]); i++)
                if (end && end[0] == units[i].unit && end[1] == '\0' && n > 0 &&
                    n <= 3650ull * 86400000 / units[i].ms)
                        return n * units[i].ms;
        return 0;
}

static int ctl_token_create(struct ctl *c, struct store *s, const char *name)
{
        char token[TOKEN_TEXT_LEN + 1], when[32];
        uint64_t life = c->expires ? ctl_duration_ms(c->expires) : 0;
        uint64_t expires = life ? clock_realtime_ms() + life : 0;
        int r;

        if (c->expires && !life) {
                fprintf(stderr,
                        "fleetctl: --expires '%s' is not a duration: N followed by s, m, "
                        "h, d or w (at most ten years), e.g. 30d\n",
                        c->expires);
                return 2;
        }
        r = store_token_create_until(s, name, expires, token);
        if (r == -EINVAL)
                fprintf(stderr, "fleetctl: token name '%s' must be 1..%d of [A-Za-z0-9._@-]\n",
                        name, TOKEN_NAME_MAX);
        else if (r == -EEXIST)
                fprintf(stderr, "fleetctl: a token named '%s' exists already\n", name);
        else if (r < 0)
                fprintf(stderr, "fleetctl: cannot store the token: %s\n", strerror(-r));
        if (r < 0)
                return 1;
        if (c->json) {
                json_t *ms = json_integer((json_int_t)expires);
                json_t *o =
                    json_pack("{s:s, s:s, s:s?}", "name", name, "token", token, "expires_at",
                              expires ? ctl_time_ms(ms, when, sizeof(when)) : NULL);

                ctl_print(c, o);
                json_decref(o);
                json_decref(ms);
        } else {
                printf("%s\n", token);
        }
        sodium_memzero(token, sizeof(token));
        return 0;
}

static const char *ctl_token_state(json_t *t, char *buf, size_t size)
{
        json_t *exp = json_object_get(t, "expires_ms");

        if (!json_is_null(json_object_get(t, "revoked_ms")))
                return "revoked";
        if (json_is_integer(exp) && (uint64_t)json_integer_value(exp) <= clock_realtime_ms())
                return "expired";
        snprintf(buf, size, "live");
        return buf;
}

static const char *ctl_token_created(json_t *t, char *buf, size_t size)
{
        return ctl_time_ms(json_object_get(t, "created_ms"), buf, size);
}

static const char *ctl_token_used(json_t *t, char *buf, size_t size)
{
        json_t *ms = json_object_get(t, "last_used_ms");

        return json_is_integer(ms) ? ctl_time_ms(ms, buf, size) : "never";
}

static const char *ctl_token_expires(json_t *t, char *buf, size_t size)
{
        json_t *ms = json_object_get(t, "expires_ms");

        return json_is_integer(ms) ? ctl_time_ms(ms, buf, size) : "never";
}

static const struct ctl_column ctl_token_columns[] = {
    {"name", "NAME", "name", NULL, false},
    {"state", "STATE", NULL, ctl_token_state, false},
    {"created", "CREATED", NULL, ctl_token_created, false},
    {"last_used", "LAST_USED", NULL, ctl_token_used, false},
    {"expires", "EXPIRES", NULL, ctl_token_expires, false},
    {NULL, NULL, NULL, NULL, false},
};

int ctl_cmd_token(struct ctl *c)
{
        const char *verb = c->argc ? c->argv[0] : "";
        struct store *s = NULL;
        int r = 2;

        if (!((strcmp(verb, "create") == 0 && c->argc == 2) ||
              (strcmp(verb, "revoke") == 0 && c->argc == 2) ||
              (strcmp(verb, "list") == 0 && c->argc == 1))) {
                fprintf(stderr, "fleetctl: usage: token create NAME [--expires DURATION] | token "
                                "revoke NAME | token list\n");
                return 2;
        }
        if (strcmp(verb, "list") == 0 && ctl_columns_check(c, ctl_token_columns) < 0)
                return 2;
        if (ctl_open_store(c, strcmp(verb, "create") == 0, &s) < 0)
                return 1;
        if (strcmp(verb, "create") == 0) {
                r = ctl_token_create(c, s, c->argv[1]);
        } else if (strcmp(verb, "revoke") == 0) {
                r = store_token_revoke(s, c->argv[1]);
                if (r < 0)
                        fprintf(stderr, "fleetctl: no live token named '%s'\n", c->argv[1]);
                else if (!c->json)
                        printf("token '%s' revoked\n", c->argv[1]);
                r = r < 0 ? 1 : 0;
        } else {
                json_t *list = store_token_list(s);

                if (c->json)
                        ctl_print(c, list);
                else
                        ctl_render(c, ctl_token_columns, list);
                json_decref(list);
                r = 0;
        }
        store_close(s);
        return r;
}
