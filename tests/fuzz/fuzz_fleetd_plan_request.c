/* Fuzz target: the plan request parser (POST /v1/plans bodies from any token holder). */
#include <stddef.h>
#include <stdint.h>

#include "fleetd/fleetd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct plan_request r;
        char err[256];

        plan_request_parse((const char *)data, size, 8, &r, err, sizeof(err));
        return 0;
}
