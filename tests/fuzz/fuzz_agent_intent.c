/* Fuzz target: the agent's seal-intent parser (.totebox-agent/intent is read back after a crash,
 * from a disk anyone holding the vault can write). An intent that parses names an entry that
 * obeys the path rule and an inbox name without '/' or NUL, and stores back to the same bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct seal_intent in, again;
        char line[LEDGER_LINE_MAX + 1];
        int n;

        if (intent_parse((const char *)data, size, &in) != 0)
                return 0;
        if (!ledger_path_matches_seq(in.e.path, in.e.seq) || in.inbox[0] == '\0' ||
            strchr(in.inbox, '/') || strlen(in.inbox) > 255)
                abort();
        n = ledger_entry_format(&in.e, line, sizeof(line));
        if (n <= 0 || ledger_entry_parse(line, (size_t)n, &again.e, NULL, 0) != 0 ||
            memcmp(&again.e, &in.e, sizeof(in.e)) != 0)
                abort();
        return 0;
}
