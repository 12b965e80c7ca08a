/* Fuzz target: inventory reconciliation (GET /v1/inventory answers from a node's vmhost, which
 * may be buggy or compromised), against a fleetd with one node and one VM, no store. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "fleetd/fleetd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct fleetd *fuzz_fleetd(void)
{
        static struct fleetd f = {.lock = PTHREAD_MUTEX_INITIALIZER, .udp_fd = -1};
        static const char roster[] = "{\"v\":1,\"version\":1,\"fleet_id\":\"f\",\"controller\":"
                                     "\"n1\",\"nodes\":[{\"id\":\"n1\",\"role\":\"node\","
                                     "\"mesh_address\":\"127.0.0.2\"}]}";
        struct fleet_vm vm = {.id = "tbx-acme-000000",
                              .entity = "acme",
                              .node_id = "n1",
                              .status = VM_ACTIVE,
                              .integrity = "ok",
                              .memory_mib = 64};
        struct config_error cerr;
        char err[256];

        if (f.table.roster)
                return &f;
        log_init("fuzz", LOG_LEVEL_ERROR);
        config_set_defaults(fleetd_config_table, &f.cfg, &cerr);
        node_table_init(&f.table, roster_parse(roster, strlen(roster), err, sizeof(err)));
        vm_table_add(&f, &vm);
        return &f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct fleetd *f = fuzz_fleetd();
        char err[256];

        inventory_apply(f, "n1", NULL, (const char *)data, size, err, sizeof(err));
        return 0;
}
