/* fleetctl vms [ID], the lifecycle verbs suspend / resume / archive VM, verify VM (a full
 * verification of the vault, forwarded to the VM's node; its result shows in 'vms'), each an
 * operation followed to its end, and retire VM (a failed one; fleetd's record only). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleetctl/fleetctl.h"

/* When the last full verification ran, or "pending" while the one asked for is awaited. */
static const char *ctl_verified(json_t *v)
{
        json_t *ver = json_object_get(v, "verification");

        if (json_is_true(json_object_get(ver, "pending")))
                return "pending";
        return ctl_str(json_object_get(ver, "last"), "at");
}

/* "-", or the nodes that report the VM while it is pinned elsewhere ("MISPLACED:n2,n3"). */
static const char *ctl_misplaced(json_t *v, char *buf, size_t size)
{
        json_t *on = json_object_get(v, "misplaced_on"), *n;
        size_t i, len;

        if (!json_array_size(on))
                return "-";
        len = (size_t)snprintf(buf, size, "MISPLACED:");
        json_array_foreach(on, i, n) if (len < size) len +=
            (size_t)snprintf(buf + len, size - len, "%s%s", i ? "," : "", json_string_value(n));
        return buf;
}

static void ctl_show_vms(json_t *a)
{
        static const char *const h[] = {"ID",    "ENTITY",    "NODE",     "STATUS", "LIFECYCLE",
                                        "STATE", "INTEGRITY", "VERIFIED", "PIN",    "REASON"};
        char mis[256];
        json_t *vms = json_object_get(a, "vms"), *rows = json_array(), *v;
        size_t i;

        if (!vms)
                vms = json_pack("[O]", a);
        else
                json_incref(vms);
        json_array_foreach(vms, i, v) json_array_append_new(
            rows, ctl_row(10, ctl_str(v, "id"), ctl_str(v, "entity"), ctl_str(v, "node_id"),
                          ctl_str(v, "status"), ctl_str(v, "lifecycle"), ctl_str(v, "state"),
                          ctl_str(json_object_get(v, "integrity"), "status"), ctl_verified(v),
                          ctl_misplaced(v, mis, sizeof(mis)), ctl_str(v, "reason")));
        ctl_table(h, 10, rows);
        json_decref(rows);
        json_decref(vms);
}

int ctl_cmd_vms(struct ctl *c)
{
        char path[256];

        return ctl_path_arg(c, "/v1/vms", path, sizeof(path)) < 0 ? 2
                                                                  : ctl_get(c, path, ctl_show_vms);
}

int ctl_cmd_verb(struct ctl *c)
{
        char path[256], base[64];
        json_t *a = NULL, *res = NULL;
        long st;

        /* argv[-1] is the verb itself: main passes "suspend VM" as the command and its argument */
        if (c->argc != 1) {
                fprintf(stderr, "fleetctl: %s needs a VM id\n", c->argv[-1]);
                return 2;
        }
        snprintf(base, sizeof(base), "/v1/vms");
        if (ctl_path_arg(c, base, path, sizeof(path)) < 0)
                return 2;
        strncat(path, "/", sizeof(path) - strlen(path) - 1);
        strncat(path, c->argv[-1], sizeof(path) - strlen(path) - 1);
        st = ctl_call(c, "POST", path, NULL, &a);
        if (st < 0)
                return 3;
        if (st == 202) { /* an operation: followed to its end unless --no-wait */
                int r = ctl_operation_outcome(c, a, &res);

                json_decref(a);
                if (r >= 0)
                        return r;
                a = res;
                st = strcmp(c->argv[-1], "verify") == 0 ? 202 : 200;
        }
        if (st != 200 && st != 202)
                ctl_problem(st, a);
        else if (c->json)
                ctl_print_json(a);
        else if (st == 202)
                printf("verification of VM '%s' requested on node '%s' (request '%s'); its result "
                       "shows in 'fleetctl vms %s'\n",
                       ctl_str(a, "vm_id"), ctl_str(a, "node_id"), ctl_str(a, "request_id"),
                       ctl_str(a, "vm_id"));
        else
                printf("VM '%s' is now '%s'\n", ctl_str(a, "id"), ctl_str(a, "lifecycle"));
        json_decref(a);
        return st == 200 || st == 202 ? 0 : 1;
}
