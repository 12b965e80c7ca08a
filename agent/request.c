/* Host-to-guest requests on the channel (docs/contracts.md section 3): strict parsing of
 * consistency-request and verify-request lines. Anything else is refused with a reason. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "agent/agent.h"
#include "common/json_input.h"

static int request_fields(const json_t *o, const char *type, struct agent_request *ret,
                          struct json_input_error *err)
{
        static const char *const consistency_keys[] = {"v",         "type",    "request_id",
                                                       "from_size", "to_size", NULL};
        static const char *const verify_keys[] = {"v", "type", "request_id", NULL};
        int r;

        if (strcmp(type, "verify-request") == 0) {
                ret->type = AGENT_REQ_VERIFY;
                return json_input_check_keys(o, verify_keys, err);
        }
        if (strcmp(type, "consistency-request") != 0)
                return json_input_fail(err, "unknown message type '%.64s'", type);
        ret->type = AGENT_REQ_CONSISTENCY;
        if ((r = json_input_check_keys(o, consistency_keys, err)) < 0 ||
            (r = json_input_get_uint(o, "from_size", true, 0, INT64_MAX, &ret->from_size, err)) <
                0 ||
            (r = json_input_get_uint(o, "to_size", true, 0, INT64_MAX, &ret->to_size, err)) < 0)
                return r;
        return 0;
}

int agent_request_parse(const char *line, size_t len, struct agent_request *ret, char *err,
                        size_t errlen)
{
        struct json_input_error jerr = {{0}};
        const char *type = NULL;
        uint64_t v = 0;
        json_t *o;
        int r = -EINVAL;

        memset(ret, 0, sizeof(*ret));
        o = json_input_parse(line, len, CHANNEL_LINE_MAX, 2, &jerr);
        if (!o)
                goto cleanup;
        if (!json_is_object(o)) {
                json_input_fail(&jerr, "not a JSON object");
                goto cleanup;
        }
        /* The id first, so that an error reply can carry it. */
        if (json_input_copy_string(o, "request_id", true, ret->request_id, sizeof(ret->request_id),
                                   &jerr) < 0) {
                ret->request_id[0] = '\0';
                goto cleanup;
        }
        if (json_input_get_uint(o, "v", true, 1, 1, &v, &jerr) < 0 ||
            json_input_get_string(o, "type", true, 64, &type, &jerr) < 0 ||
            request_fields(o, type, ret, &jerr) < 0)
                goto cleanup;
        r = 0;
cleanup:
        if (r < 0)
                snprintf(err, errlen, "%s", jerr.text);
        json_decref(o);
        return r;
}
