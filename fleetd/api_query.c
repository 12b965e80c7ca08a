/* A REST request's query parameters, as pure functions of the (name, value) pairs libmicrohttpd
 * decoded: every name must be one the route takes, once; values are checked by the handler that
 * reads them (an integer in bounds, a string a validator accepts). No connection, no I/O, no
 * allocation: tests/fuzz/fuzz_fleetd_query.c drives them with the real route table. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "fleetd/api.h"

static void api_query_fail(struct api_query_error *e, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void api_query_fail(struct api_query_error *e, const char *type, const char *fmt, ...)
{
        va_list ap;

        e->type = type;
        va_start(ap, fmt);
        vsnprintf(e->detail, sizeof(e->detail), fmt, ap);
        va_end(ap);
}

/* The names the route takes, "a, b" (or "takes none"), for the refusal's detail. */
static void api_query_takes(const char *const *takes, char *buf, size_t size)
{
        buf[0] = '\0';
        for (unsigned i = 0; i < API_QUERY_MAX && takes[i]; i++)
                snprintf(buf + strlen(buf), size - strlen(buf), "%s%s", i ? ", " : "", takes[i]);
        if (!buf[0])
                snprintf(buf, size, "takes none");
}

void api_query_init(struct api_query *q, const char *const *takes)
{
        memset(q, 0, sizeof(*q));
        q->takes = takes;
}

int api_query_add(struct api_query *q, const char *method, const char *pattern, const char *name,
                  const char *value, struct api_query_error *e)
{
        const char *const *takes = q->takes;
        char list[128];
        unsigned i;

        for (i = 0; i < API_QUERY_MAX && takes[i]; i++)
                if (strcmp(takes[i], name) == 0)
                        break;
        if (i == API_QUERY_MAX || !takes[i]) {
                api_query_takes(takes, list, sizeof(list));
                api_query_fail(e, "unknown-query", "unknown query parameter '%.64s' (%s %s: %s)",
                               name, method, pattern, list);
                return -EINVAL;
        }
        if (q->seen & (1u << i)) {
                api_query_fail(e, "invalid-query", "query '%.64s' is given more than once", name);
                return -EINVAL;
        }
        q->seen |= 1u << i;
        q->value[i] = value; /* "?a" without "=": as if absent */
        return 0;
}

const char *api_query_get(const struct api_query *q, const char *name)
{
        for (unsigned i = 0; q->takes && i < API_QUERY_MAX && q->takes[i]; i++)
                if (strcmp(q->takes[i], name) == 0)
                        return q->value[i];
        return NULL;
}

int api_query_parse_uint(const char *name, const char *v, uint64_t def, uint64_t min, uint64_t max,
                         uint64_t *ret, struct api_query_error *e)
{
        unsigned long long n = 0;
        size_t len = v ? strlen(v) : 0;

        if (!v) {
                *ret = def;
                return 0;
        }
        for (size_t i = 0; i < len && len <= 19; i++) {
                if (v[i] < '0' || v[i] > '9') {
                        len = 0;
                        break;
                }
                n = n * 10 + (unsigned)(v[i] - '0');
        }
        if (len == 0 || len > 19 || n < min || n > max) {
                api_query_fail(e, "invalid-query", "query '%s' must be an integer in %llu..%llu",
                               name, (unsigned long long)min, (unsigned long long)max);
                return -EINVAL;
        }
        *ret = n;
        return 0;
}

int api_query_parse_string(const char *name, const char *v, bool (*valid)(const char *),
                           const char *what, const char **ret, struct api_query_error *e)
{
        if (v && !valid(v)) {
                api_query_fail(e, "invalid-query", "query '%s' must be %s", name, what);
                return -EINVAL;
        }
        *ret = v;
        return 0;
}

int api_query_parse_id(const char *name, const char *v, enum ident_kind kind, const char **ret,
                       struct api_query_error *e)
{
        if (v && !ident_valid(kind, v)) {
                api_query_fail(e, "invalid-query", "query '%s' must be a %s (%s)", name,
                               ident_name(kind), ident_pattern(kind));
                return -EINVAL;
        }
        *ret = v;
        return 0;
}
