/* Bounded JSON parsing on jansson. jansson's own depth limit is a compile-time 2048, far too
 * deep for messages that are two or three levels deep, so the depth is checked first by a
 * linear scan that never recurses. */
#include "common/json_input.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int json_input_fail(struct json_input_error *err, const char *fmt, ...)
{
        va_list ap;

        if (err) {
                va_start(ap, fmt);
                vsnprintf(err->text, sizeof(err->text), fmt, ap);
                va_end(ap);
        }
        return -EINVAL;
}

unsigned json_input_depth(const char *buf, size_t len)
{
        unsigned depth = 0, max = 0;
        bool in_string = false;

        for (size_t i = 0; i < len; i++) {
                char c = buf[i];

                if (in_string) {
                        if (c == '\\')
                                i++;
                        else if (c == '"')
                                in_string = false;
                        continue;
                }
                if (c == '"') {
                        in_string = true;
                } else if (c == '{' || c == '[') {
                        if (++depth > max)
                                max = depth;
                } else if ((c == '}' || c == ']') && depth > 0) {
                        depth--;
                }
        }
        return max;
}

json_t *json_input_parse(const char *buf, size_t len, size_t max_len, unsigned max_depth,
                         struct json_input_error *err)
{
        json_error_t jerr;
        json_t *root;

        if (len > max_len) {
                json_input_fail(err, "body of %zu bytes exceeds the limit of %zu bytes", len,
                                max_len);
                return NULL;
        }
        if (json_input_depth(buf, len) > max_depth) {
                json_input_fail(err, "JSON nested deeper than %u levels", max_depth);
                return NULL;
        }
        root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!root) {
                json_input_fail(err, "malformed JSON at line %d column %d: %s", jerr.line,
                                jerr.column, jerr.text);
                return NULL;
        }
        return root;
}

int json_input_check_keys(const json_t *obj, const char *const *allowed,
                          struct json_input_error *err)
{
        const char *key;
        json_t *value;

        if (!json_is_object(obj))
                return json_input_fail(err, "expected a JSON object");
        json_object_foreach((json_t *)obj, key, value)
        {
                bool known = false;

                for (const char *const *a = allowed; *a && !known; a++)
                        known = strcmp(*a, key) == 0;
                if (!known)
                        return json_input_fail(err, "unknown field '%.64s'", key);
        }
        return 0;
}

/* Looks up key; returns 1 when present, 0 when absent and optional, -EINVAL when required. */
static int json_input_lookup(const json_t *obj, const char *key, bool required, json_t **ret,
                             struct json_input_error *err)
{
        json_t *v = json_object_get(obj, key);

        if (!v || json_is_null(v)) {
                if (required)
                        return json_input_fail(err, "missing field '%s'", key);
                return 0;
        }
        *ret = v;
        return 1;
}

int json_input_get_string(const json_t *obj, const char *key, bool required, size_t max_len,
                          const char **ret, struct json_input_error *err)
{
        json_t *v = NULL;
        int r = json_input_lookup(obj, key, required, &v, err);

        if (r <= 0)
                return r;
        if (!json_is_string(v))
                return json_input_fail(err, "field '%s' must be a string", key);
        if (json_string_length(v) > max_len)
                return json_input_fail(err, "field '%s' is longer than %zu bytes", key, max_len);
        if (strlen(json_string_value(v)) != json_string_length(v))
                return json_input_fail(err, "field '%s' contains a NUL character", key);
        *ret = json_string_value(v);
        return 0;
}

int json_input_copy_string(const json_t *obj, const char *key, bool required, char *buf,
                           size_t size, struct json_input_error *err)
{
        const char *s = NULL;
        int r = json_input_get_string(obj, key, required, size - 1, &s, err);

        if (r < 0 || !s)
                return r;
        memcpy(buf, s, strlen(s) + 1);
        return 0;
}

int json_input_copy_id(const json_t *obj, const char *key, bool required, enum ident_kind kind,
                       char *buf, size_t size, struct json_input_error *err)
{
        const json_t *v = json_object_get(obj, key);
        const char *s = json_string_value(v);

        if (v && s && !ident_valid(kind, s))
                return json_input_fail(err, "field '%s' = '%.64s' is not a valid %s (%s)", key, s,
                                       ident_name(kind), ident_pattern(kind));
        return json_input_copy_string(obj, key, required, buf, size, err);
}

int json_input_get_uint(const json_t *obj, const char *key, bool required, uint64_t min,
                        uint64_t max, uint64_t *ret, struct json_input_error *err)
{
        json_t *v = NULL;
        json_int_t n;
        int r = json_input_lookup(obj, key, required, &v, err);

        if (r <= 0)
                return r;
        if (!json_is_integer(v))
                return json_input_fail(err, "field '%s' must be an integer", key);
        n = json_integer_value(v);
        if (n < 0 || (uint64_t)n < min || (uint64_t)n > max)
                return json_input_fail(err, "field '%s' = %lld is outside %llu..%llu", key,
                                       (long long)n, (unsigned long long)min,
                                       (unsigned long long)max);
        *ret = (uint64_t)n;
        return 0;
}

int json_input_get_double(const json_t *obj, const char *key, bool required, double min, double max,
                          double *ret, struct json_input_error *err)
{
        json_t *v = NULL;
        double d;
        int r = json_input_lookup(obj, key, required, &v, err);

        if (r <= 0)
                return r;
        if (!json_is_number(v))
                return json_input_fail(err, "field '%s' must be a number", key);
        d = json_number_value(v);
        if (!isfinite(d) || d < min || d > max)
                return json_input_fail(err, "field '%s' = %g is outside %g..%g", key, d, min, max);
        *ret = d;
        return 0;
}

int json_input_get_bool(const json_t *obj, const char *key, bool required, bool *ret,
                        struct json_input_error *err)
{
        json_t *v = NULL;
        int r = json_input_lookup(obj, key, required, &v, err);

        if (r <= 0)
                return r;
        if (!json_is_boolean(v))
                return json_input_fail(err, "field '%s' must be true or false", key);
        *ret = json_is_true(v);
        return 0;
}
