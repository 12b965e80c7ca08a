/* Hostile JSON in: every parse has a byte limit and a nesting limit, duplicate keys are refused,
 * and typed getters check presence, type and bounds, naming the field in the error. */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/ident.h"

struct json_input_error {
        char text[256];
};

/* Returns a new reference, or NULL with err filled. Refuses input longer than max_len or
 * nested deeper than max_depth (objects and arrays count one level each). */
json_t *json_input_parse(const char *buf, size_t len, size_t max_len, unsigned max_depth,
                         struct json_input_error *err);
/* Nesting depth of a JSON text, scanned without parsing; strings are skipped. */
unsigned json_input_depth(const char *buf, size_t len);

/* obj must be an object whose keys are all in allowed (NULL-terminated); else -EINVAL. */
int json_input_check_keys(const json_t *obj, const char *const *allowed,
                          struct json_input_error *err);
/* A missing optional field leaves *ret untouched and returns 0. Type or bound errors are -EINVAL.
 */
int json_input_get_string(const json_t *obj, const char *key, bool required, size_t max_len,
                          const char **ret, struct json_input_error *err);
int json_input_get_uint(const json_t *obj, const char *key, bool required, uint64_t min,
                        uint64_t max, uint64_t *ret, struct json_input_error *err);
int json_input_get_double(const json_t *obj, const char *key, bool required, double min, double max,
                          double *ret, struct json_input_error *err);
int json_input_get_bool(const json_t *obj, const char *key, bool required, bool *ret,
                        struct json_input_error *err);
/* Copies a string field into a fixed buffer (size includes the NUL). */
int json_input_copy_string(const json_t *obj, const char *key, bool required, char *buf,
                           size_t size, struct json_input_error *err);
/* Copies an id field (common/ident.h) into a fixed buffer; a value that is not an id of that
 * kind is -EINVAL with the rule in the error. */
int json_input_copy_id(const json_t *obj, const char *key, bool required, enum ident_kind kind,
                       char *buf, size_t size, struct json_input_error *err);
/* Error text helper: printf into err, returns -EINVAL. */
int json_input_fail(struct json_input_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
