/* fleetctl nodes [ID] [state=S] [role=R]: liveness, CPU, RAM (total, available after
 * reservations), heartbeat age, VMs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleetctl/fleetctl.h"

static const char *ctl_node_cpu(json_t *n, char *buf, size_t size)
{
        json_t *v = json_object_get(n, "cpu_percent");

        if (!json_is_number(v))
                return "-";
        snprintf(buf, size, "%.0f%%", round(json_number_value(v)));
        return buf;
}

static const char *const ctl_node_filters[] = {"state", "role", NULL};

static const struct ctl_column ctl_node_columns[] = {
    {"id", "ID", "id", NULL, false},
    {"name", "NAME", "name", NULL, true},
    {"role", "ROLE", "role", NULL, true},
    {"state", "STATE", "state", NULL, false},
    {"cpu", "CPU", NULL, ctl_node_cpu, false},
    {"cpus", "CPUS", "cpus", NULL, true},
    {"ram", "RAM_MIB", "mem_total_mib", NULL, false},
    {"available", "AVAILABLE_MIB", "available_mib", NULL, false},
    {"reserved", "RESERVED_MIB", "reserved_mib", NULL, false},
    {"committed", "COMMITTED_MIB", "mem_committed_mib", NULL, true},
    {"heartbeat", "HEARTBEAT_AGE_MS", "heartbeat_age_ms", NULL, false},
    {"libvirt", "LIBVIRT_AGE_MS", "libvirt_age_ms", NULL, true},
    {"placeable", "PLACEABLE", "placeable", NULL, true},
    {"vms", "VMS", "vm_count", NULL, false},
    {"address", "ADDRESS", "mesh_address", NULL, false},
    {NULL, NULL, NULL, NULL, false},
};

int ctl_cmd_nodes(struct ctl *c)
{
        static const struct ctl_view v = {"nodes", ctl_node_columns, NULL, ctl_node_filters};

        return ctl_get(c, "/v1/nodes", &v);
}
