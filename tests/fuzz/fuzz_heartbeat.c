/* Fuzz target: the heartbeat decoder (network input from any mesh peer). */
#include <stddef.h>
#include <stdint.h>

#include "common/heartbeat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct heartbeat hb;
        char err[256];

        heartbeat_decode((const char *)data, size, &hb, err, sizeof(err));
        return 0;
}
