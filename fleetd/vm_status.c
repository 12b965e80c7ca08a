/* The words for a VM's creation status, as the store keeps them and the API shows them. Part of
 * fleetd_store (fleetd/CMakeLists.txt): the store writes them, and fleetctl links the store. */
#include "fleetd/fleetd.h"

static const char *const vm_status_names[] = {"creating", "active", "failed"};

const char *vm_status_name(enum vm_status s)
{
        return vm_status_names[s];
}
