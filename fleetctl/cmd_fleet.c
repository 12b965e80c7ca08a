/* fleetctl health (misplaced VMs and integrity first) and roster. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleetctl/fleetctl.h"

static void ctl_show_health(json_t *a)
{
        json_t *integ = json_object_get(a, "integrity"), *v;
        json_t *mis = json_object_get(a, "misplaced"), *pin = json_object_get(a, "pin_key");
        size_t i;

        printf("fleet: %s\n", ctl_str(a, "status"));
        if (mis) {
                printf("misplaced: %s\n", ctl_str(mis, "status"));
                json_array_foreach(json_object_get(mis, "vms"), i, v)
                    printf("  MISPLACED: VM '%s' (entity '%s') pinned to node '%s' is reported by "
                           "node '%s'\n",
                           ctl_str(v, "vm_id"), ctl_str(v, "entity"), ctl_str(v, "pinned_to"),
                           ctl_str(v, "reported_by"));
        }
        printf("integrity: %s\n", ctl_str(integ, "status"));
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
                if (pin)
                        printf("pin key: %s (%s)\n", ctl_str(pin, "public_key"),
                               json_is_true(json_object_get(pin, "in_roster"))
                                   ? "named by the roster"
                                   : "NOT named by the roster: nodes refuse new VMs");
        }
}

int ctl_cmd_health(struct ctl *c)
{
        static const struct ctl_view v = {NULL, NULL, ctl_show_health, NULL};

        return ctl_get(c, "/v1/health", &v);
}

int ctl_cmd_roster(struct ctl *c)
{
        static const struct ctl_view v = {NULL, NULL, NULL, NULL};

        return ctl_get(c, "/v1/roster", &v);
}
