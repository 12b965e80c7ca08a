/* Fuzz target: the agent's seal-intent parser (.totebox-agent/intent is read back after a crash,
 * from a disk anyone holding the vault can write). An intent that parses names 1..SEAL_BATCH_MAX
 * records with consecutive sequence numbers, each an entry that obeys the path rule and an inbox
 * name without '/' or NUL, whose entry formats back to the same fields. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct seal_intent_set s;
        struct ledger_entry again;
        char line[LEDGER_LINE_MAX + 1];
        int n;

        if (intent_parse((const char *)data, size, &s) != 0)
                return 0;
        if (s.n == 0 || s.n > SEAL_BATCH_MAX)
                abort();
        for (size_t i = 0; i < s.n; i++) {
                const struct seal_intent *in = &s.items[i];

                if (!ledger_path_matches_seq(in->e.path, in->e.seq) || in->inbox[0] == '\0' ||
                    strchr(in->inbox, '/') || strlen(in->inbox) > 255 ||
                    in->e.seq != s.items[0].e.seq + i)
                        abort();
                n = ledger_entry_format(&in->e, line, sizeof(line));
                if (n <= 0 || ledger_entry_parse(line, (size_t)n, &again, NULL, 0) != 0 ||
                    memcmp(&again, &in->e, sizeof(in->e)) != 0)
                        abort();
        }
        intent_set_done(&s);
        return 0;
}
