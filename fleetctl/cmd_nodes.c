/* fleetctl nodes [ID]: liveness, available RAM after reservations, heartbeat and libvirt ages. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleetctl/fleetctl.h"

static void ctl_show_nodes(json_t *a)
{
        static const char *const h[] = {
            "ID",  "STATE",  "AVAILABLE_MIB", "RESERVED_MIB", "HEARTBEAT_AGE_MS", "LIBVIRT_AGE_MS",
            "VMS", "ADDRESS"};
        json_t *nodes = json_object_get(a, "nodes"), *rows = json_array(), *n;
        size_t i;

        if (!nodes)
                nodes = json_pack("[O]", a);
        else
                json_incref(nodes);
        json_array_foreach(nodes, i, n) json_array_append_new(
            rows, ctl_row(8, ctl_str(n, "id"), ctl_str(n, "state"), ctl_str(n, "available_mib"),
                          ctl_str(n, "reserved_mib"), ctl_str(n, "heartbeat_age_ms"),
                          ctl_str(n, "libvirt_age_ms"), ctl_str(n, "vm_count"),
                          ctl_str(n, "mesh_address")));
        ctl_table(h, 8, rows);
        json_decref(rows);
        json_decref(nodes);
}

int ctl_cmd_nodes(struct ctl *c)
{
        char path[256];

        return ctl_path_arg(c, "/v1/nodes", path, sizeof(path)) < 0
                   ? 2
                   : ctl_get(c, path, ctl_show_nodes);
}
