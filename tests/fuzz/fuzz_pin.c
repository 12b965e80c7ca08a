/* Fuzz target: the pin parser (pins arrive in create bodies and in domain metadata a node's root
 * can edit). A pin that parses must format and parse back to the same pin, and checking it
 * under a fixed key must not crash. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/pin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const uint8_t pk[32] = {1};
        struct pin p, q;
        struct pin_expect e = {.vm_id = "vm-a", .node_id = "node1"};
        char *text;

        if (pin_parse((const char *)data, size, &p, NULL, 0) < 0)
                return 0;
        text = pin_format(&p);
        if (!text || pin_parse(text, strlen(text), &q, NULL, 0) < 0 || memcmp(&p, &q, sizeof(p)))
                abort();
        (void)pin_check(&p, pk, &e);
        free(text);
        return 0;
}
