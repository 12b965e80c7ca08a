/* fleetctl health (integrity first) and roster. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleetctl/fleetctl.h"

static void ctl_show_health(json_t *a)
{
        json_t *integ = json_object_get(a, "integrity"), *v;
        size_t i;

        printf("fleet: %s\nintegrity: %s\n", ctl_str(a, "status"), ctl_str(integ, "status"));
        json_array_foreach(json_object_get(integ, "mismatched_vms"), i, v)
            printf("  MISMATCH: VM '%s' (entity '%s') on node '%s'\n", ctl_str(v, "vm_id"),
                   ctl_str(v, "entity"), ctl_str(v, "node_id"));
        {
                const char *key;
                json_t *n;

                printf("nodes:");
                json_object_foreach(json_object_get(a, "nodes"), key, n)
                    printf(" %s=%lld", key, (long long)json_integer_value(n));
                printf("\nvms: %s   roster version: %s\n", ctl_str(a, "vms"),
                       ctl_str(a, "roster_version"));
        }
}

int ctl_cmd_health(struct ctl *c)
{
        return ctl_get(c, "/v1/health", ctl_show_health);
}

int ctl_cmd_roster(struct ctl *c)
{
        return ctl_get(c, "/v1/roster", NULL);
}
