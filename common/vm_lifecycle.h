/* A Totebox VM's lifecycle, the same words in fleetd, vmhost and the node API: active,
 * suspended (RAM freed, resumable) and archived (kept with its disks, never started again).
 * fleetd alone uses retired: a VM whose creation failed, set aside by the operator (its record
 * and audit trail stay, nothing on its node is deleted); no node reports it. There is no
 * "deleted". */
#pragma once
#include <stdbool.h>

enum vm_lifecycle { VM_LC_ACTIVE, VM_LC_SUSPENDED, VM_LC_ARCHIVED, VM_LC_RETIRED };
#define VM_LIFECYCLES 4 /* how many there are: arrays indexed by lifecycle */

const char *vm_lifecycle_name(enum vm_lifecycle l);
/* 0, or -EINVAL for any other word. */
int vm_lifecycle_parse(const char *s, enum vm_lifecycle *ret);
/* Whether a domain in lifecycle l and libvirt state (the node API's word: running, paused,
 * shutoff, crashed, saved; NULL when unknown) holds its memory on its node, as vmhost's
 * mem_committed_mib counts it: whatever runs holds it (an archived VM in its grace period, a
 * suspend whose managed save is still being written), and an active domain that does not run
 * holds it too, since a retry may start it at any moment. Only a stopped domain that is
 * suspended (saved) or archived holds nothing. */
bool vm_holds_memory(enum vm_lifecycle l, const char *state);
