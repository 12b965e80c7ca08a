/* Fuzz target: vmhost's agent-channel line parser and the integrity checks behind it (guest
 * input). Each input is split at newlines; every line is parsed and, when valid, applied. */
#include <sodium.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "vmhost/vmhost.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const char *p = (const char *)data, *end = p + size;
        struct integrity in;

        if (sodium_init() < 0)
                return 0;
        integrity_init(&in);
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
                struct agent_msg m;
                char err[256];

                if (agent_line_parse(p, len, &m, err, sizeof(err)) == 0) {
                        if (m.type == AGENT_MSG_REPORT)
                                integrity_on_report(&in, &m, 1);
                        else if (m.type == AGENT_MSG_CONSISTENCY)
                                integrity_on_consistency(&in, &m, 2);
                        agent_msg_clear(&m);
                }
                p += len + 1;
        }
        json_decref(integrity_to_json(&in));
        integrity_clear(&in);
        return 0;
}
