/* A Totebox VM's lifecycle, the same words in fleetd, vmhost and the node API: active,
 * suspended (RAM freed, resumable) and archived (kept with its disks, never started again).
 * fleetd alone uses retired: a VM whose creation failed, set aside by the operator (its record
 * and audit trail stay, nothing on its node is deleted); no node reports it. There is no
 * "deleted". */
#pragma once

enum vm_lifecycle { VM_LC_ACTIVE, VM_LC_SUSPENDED, VM_LC_ARCHIVED, VM_LC_RETIRED };
#define VM_LIFECYCLES 4 /* how many there are: arrays indexed by lifecycle */

const char *vm_lifecycle_name(enum vm_lifecycle l);
/* 0, or -EINVAL for any other word. */
int vm_lifecycle_parse(const char *s, enum vm_lifecycle *ret);
