/* The refusals vmhost makes on its own authority, as pure functions: a domain pinned to another
 * node or archived never starts here, and a creation that would leave less available RAM than
 * the safety margin is refused (the controller's view may be stale). Also virt_type auto and the
 * modes of the state directory's directories. */
#include <string.h>
#include <sys/stat.h>

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

/* qemu:///system, qemu+unix:///system?socket=...: the URI's path, after its authority. */
static bool policy_uri_is_system(const char *uri)
{
        static const char system[] = "/system";
        const char *p = strstr(uri, "://");

        p = p ? strchr(p + 3, '/') : NULL;
        return p && strcspn(p, "?") == sizeof(system) - 1 &&
               strncmp(p, system, sizeof(system) - 1) == 0;
}

mode_t policy_state_dir_mode(const char *libvirt_uri, const char *sub)
{
        static const char *const qemu_opens[] = {"", "vms", "images", "seeds", NULL};

        if (!policy_uri_is_system(libvirt_uri))
                return 0700;
        for (const char *const *d = qemu_opens; *d; d++)
                if (strcmp(*d, sub) == 0)
                        return 0711;
        return 0700;
}
