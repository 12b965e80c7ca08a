/* Differential fuzz target: fleetd's fast heartbeat decoder must never accept what the strict
 * common decoder refuses, and must decode exactly the same values when it accepts. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fleetd/fleetd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct heartbeat fast, slow;
        char err[256];

        if (size > HEARTBEAT_MAX_BYTES)
                return 0;
        memset(&fast, 0, sizeof(fast));
        memset(&slow, 0, sizeof(slow));
        if (!heartbeat_decode_fast((const char *)data, size, &fast))
                return 0;
        if (heartbeat_decode((const char *)data, size, &slow, err, sizeof(err)) < 0)
                abort(); /* the fast path accepted what the strict decoder refuses */
        if (strcmp(fast.node_id, slow.node_id) || fast.epoch != slow.epoch ||
            fast.seq != slow.seq || strcmp(fast.boot, slow.boot) ||
            fast.interval_ms != slow.interval_ms || fast.cpus != slow.cpus ||
            fast.cpu_percent != slow.cpu_percent || fast.mem_total_mib != slow.mem_total_mib ||
            fast.mem_available_mib != slow.mem_available_mib ||
            fast.mem_committed_mib != slow.mem_committed_mib ||
            fast.libvirt_age_ms != slow.libvirt_age_ms || fast.vm_count != slow.vm_count ||
            strcmp(fast.inventory_digest, slow.inventory_digest))
                abort(); /* the two decoders disagree */
        return 0;
}
