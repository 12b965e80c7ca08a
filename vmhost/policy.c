/* The refusals vmhost makes on its own authority, as pure functions: a domain pinned to another
 * node or archived never starts here, and a creation that would leave less available RAM than
 * the safety margin is refused (the controller's view may be stale). */
#include <string.h>

#include "vmhost/vmhost.h"

const char *refusal_name(enum refusal r)
{
        static const char *const names[] = {"none",        "pinned-elsewhere",
                                            "archived",    "insufficient-memory",
                                            "wrong-state", "not-totebox"};

        return names[r];
}

enum refusal policy_check_start(const struct vm_meta *m, const char *node_id)
{
        if (!m)
                return REFUSE_NOT_TOTEBOX;
        if (strcmp(m->node_id, node_id) != 0)
                return REFUSE_PINNED_ELSEWHERE;
        if (m->lifecycle == VM_LC_ARCHIVED)
                return REFUSE_ARCHIVED;
        return REFUSE_NONE;
}

enum refusal policy_check_memory(uint64_t available_mib, uint64_t want_mib, uint64_t margin_mib)
{
        if (want_mib > available_mib || available_mib - want_mib < margin_mib)
                return REFUSE_INSUFFICIENT_MEMORY;
        return REFUSE_NONE;
}

const char *policy_virt_type(const char *configured, bool kvm_usable, bool kvm_pvm)
{
        if (strcmp(configured, "kvm") == 0 || strcmp(configured, "qemu") == 0)
                return configured;
        if (strcmp(configured, "auto") != 0)
                return NULL;
        return kvm_usable && !kvm_pvm ? "kvm" : "qemu";
}
