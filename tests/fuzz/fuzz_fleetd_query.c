/* Fuzz target: REST query strings. The input is a raw query ("a=1&b=%41"), split and
 * percent-decoded the way libmicrohttpd does it for GET arguments (its own MHD_http_unescape),
 * then checked against every route of the real table (api_query.c): names the route takes,
 * once; every value as an integer and as a string under fleetd's validators. Every refusal is
 * made into a problem document by api_problem and must be valid JSON with a detail. */
#include <microhttpd.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fleetd/api.h"

#define FUZZ_QUERY_PAIRS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_query_refused(const struct api_query_error *e)
{
        struct api_response resp = {0};
        char *text;

        if (strcmp(e->type, "unknown-query") != 0 && strcmp(e->type, "invalid-query") != 0)
                abort();
        api_problem(&resp, 400, e->type, "%s", e->detail);
        text = json_dumps(resp.body, JSON_COMPACT);
        if (!text || !json_is_string(json_object_get(resp.body, "detail")))
                abort(); /* not a valid problem document */
        free(text);
        json_decref(resp.body);
}

/* Splits buf in place into (name, value) pairs: '&' between pairs, the first '=' in a pair;
 * both decoded. Returns how many. */
static size_t fuzz_query_split(char *buf, char **names, char **values)
{
        size_t n = 0;

        for (char *p = buf, *next; p && n < FUZZ_QUERY_PAIRS; p = next) {
                char *eq;

                next = strchr(p, '&');
                if (next)
                        *next++ = '\0';
                if (!*p)
                        continue;
                eq = strchr(p, '=');
                if (eq)
                        *eq++ = '\0';
                MHD_http_unescape(p);
                if (eq)
                        MHD_http_unescape(eq);
                names[n] = p;
                values[n++] = eq;
        }
        return n;
}

static void fuzz_query_values(const struct api_query *q)
{
        struct api_query_error e;
        const char *s;
        uint64_t v;

        for (unsigned i = 0; i < API_QUERY_MAX && q->takes[i]; i++) {
                const char *val = api_query_get(q, q->takes[i]);

                if (api_query_parse_uint(q->takes[i], val, 100, 1, 1000, &v, &e) < 0)
                        fuzz_query_refused(&e);
                else if (val && (v < 1 || v > 1000))
                        abort();
                if (api_query_parse_id(q->takes[i], val, IDENT_VM, &s, &e) < 0)
                        fuzz_query_refused(&e);
                if (api_query_parse_id(q->takes[i], val, IDENT_ENTITY, &s, &e) < 0)
                        fuzz_query_refused(&e);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *buf = malloc(size + 1), *names[FUZZ_QUERY_PAIRS], *values[FUZZ_QUERY_PAIRS];
        size_t n;

        if (!buf)
                return 0;
        memcpy(buf, data, size);
        buf[size] = '\0';
        n = fuzz_query_split(buf, names, values);
        for (const struct api_route *r = api_routes; r->pattern; r++) {
                struct api_query q;
                struct api_query_error e;
                size_t i;

                api_query_init(&q, r->query);
                for (i = 0; i < n; i++)
                        if (api_query_add(&q, r->method, r->pattern, names[i], values[i], &e) < 0)
                                break;
                if (i < n)
                        fuzz_query_refused(&e);
                else
                        fuzz_query_values(&q);
        }
        free(buf);
        return 0;
}
