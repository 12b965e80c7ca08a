/* VM lifecycle names. */
#include "common/vm_lifecycle.h"

#include <errno.h>
#include <string.h>

static const char *const vm_lifecycle_names[VM_LIFECYCLES] = {"active", "suspended", "archived",
                                                              "retired"};

const char *vm_lifecycle_name(enum vm_lifecycle l)
{
        return vm_lifecycle_names[l];
}

int vm_lifecycle_parse(const char *s, enum vm_lifecycle *ret)
{
        for (unsigned i = 0; i < sizeof(vm_lifecycle_names) / sizeof(vm_lifecycle_names[0]); i++) {
                if (strcmp(s, vm_lifecycle_names[i]) == 0) {
                        *ret = (enum vm_lifecycle)i;
                        return 0;
                }
        }
        return -EINVAL;
}

bool vm_holds_memory(enum vm_lifecycle l, const char *state)
{
        if (l == VM_LC_ACTIVE || !state)
                return true;
        return strcmp(state, "shutoff") != 0 && strcmp(state, "crashed") != 0 &&
               strcmp(state, "saved") != 0;
}
