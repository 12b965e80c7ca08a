/* Fuzz target: problem documents that echo hostile bytes (paths, ids, field names, headers).
 * Whatever the bytes, and wherever a truncation cuts them, api_problem must give a complete,
 * valid problem document (never NULL, never {}): every field present and the text valid UTF-8
 * that jansson encodes and parses back. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fleetd/api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_check(struct api_response *resp)
{
        char *text = resp->body ? json_dumps(resp->body, JSON_COMPACT) : NULL;
        json_t *back = text ? json_loads(text, 0, NULL) : NULL;

        if (!back || !json_is_string(json_object_get(back, "detail")) ||
            !json_is_string(json_object_get(back, "type")) ||
            !json_is_string(json_object_get(back, "title")) ||
            json_integer_value(json_object_get(back, "status")) != 400)
                abort(); /* an echoed value broke the problem document */
        json_decref(back);
        free(text);
        json_decref(resp->body);
        resp->body = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct api_response resp = {0};
        char *s = malloc(size + 1);

        if (!s)
                return 0;
        memcpy(s, data, size);
        s[size] = '\0';
        api_problem(&resp, 400, "invalid-node-id", "'%.64s' is not a valid node id", s);
        fuzz_check(&resp);
        api_problem(&resp, 400, "unknown-query", "unknown query parameter '%s'", s);
        fuzz_check(&resp);
        api_utf8_sanitise(s);
        resp.body = json_string(s); /* NULL only for invalid UTF-8 */
        if (!resp.body)
                abort();
        json_decref(resp.body);
        free(s);
        return 0;
}
