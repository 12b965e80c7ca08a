/* Fuzz target: the agent's ledger-line parser (a ledger file is untrusted once a vault has been
 * copied or tampered with). A line that parses must format back and parse again identically, and
 * whatever the canonical fast path accepts the JSON path must read as the same entry. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct ledger_entry e, again;
        char err[256], line[LEDGER_LINE_MAX + 1];
        int n;

        if (ledger_entry_parse_canonical((const char *)data, size, &e) == 0 &&
            (ledger_entry_parse_json((const char *)data, size, &again, err, sizeof(err)) != 0 ||
             memcmp(&e, &again, sizeof(e)) != 0))
                abort();
        if (ledger_entry_parse((const char *)data, size, &e, err, sizeof(err)) != 0)
                return 0;
        n = ledger_entry_format(&e, line, sizeof(line));
        if (n > 0 && ledger_entry_parse(line, (size_t)n, &again, err, sizeof(err)) != 0)
                abort();
        return 0;
}
