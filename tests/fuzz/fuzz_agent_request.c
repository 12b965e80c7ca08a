/* Fuzz target: the agent's channel-request parser (every line the host sends) and the reply
 * built from it, against a small in-memory ledger. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct ledger fuzz_ledger;
static int fuzz_ready;

static void fuzz_setup(void)
{
        ledger_init(&fuzz_ledger);
        fuzz_ledger.seq_only = true;
        for (uint64_t i = 1; i <= 9; i++) {
                struct ledger_entry e = {.seq = i};
                char line[32];
                int n = snprintf(line, sizeof(line), "line %llu", (unsigned long long)i);

                ledger_push(&fuzz_ledger, &e, line, (size_t)n);
        }
        fuzz_ready = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct agent_request req;
        char err[320];
        char *out;

        if (!fuzz_ready)
                fuzz_setup();
        if (agent_request_parse((const char *)data, size, &req, err, sizeof(err)) != 0) {
                out = report_build_error(req.request_id, err);
        } else if (req.type == AGENT_REQ_CONSISTENCY) {
                out = report_answer_consistency(&fuzz_ledger, &req, err, sizeof(err));
                if (!out)
                        out = report_build_error(req.request_id, err);
        } else {
                out = NULL;
        }
        free(out);
        return 0;
}
