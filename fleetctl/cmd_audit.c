/* fleetctl audit [--after N] [--limit N] [--kind K]; "audit verify" runs locally (local.c). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleetctl/fleetctl.h"

static void ctl_show_audit(json_t *a)
{
        static const char *const h[] = {"SEQ", "TIME", "KIND", "SUBJECT", "ACTOR", "DETAIL"};
        json_t *rows = json_array(), *e;
        size_t i;

        json_array_foreach(json_object_get(a, "entries"), i, e)
        {
                char *d = json_dumps(json_object_get(e, "detail"), JSON_COMPACT | JSON_SORT_KEYS);

                json_array_append_new(rows, ctl_row(6, ctl_str(e, "seq"), ctl_str(e, "time"),
                                                    ctl_str(e, "kind"), ctl_str(e, "subject"),
                                                    ctl_str(e, "actor"), d ? d : "{}"));
                free(d);
        }
        ctl_table(h, 6, rows);
        json_decref(rows);
}

int ctl_cmd_audit(struct ctl *c)
{
        char path[256];

        if (c->argc == 1 && strcmp(c->argv[0], "verify") == 0)
                return ctl_cmd_audit_verify(c);
        if (c->argc) {
                fprintf(stderr, "fleetctl: audit takes 'verify' or options only\n");
                return 2;
        }
        snprintf(path, sizeof(path), "/v1/audit?after=%.20s&limit=%.8s%s%.32s",
                 c->after ? c->after : "0", c->limit ? c->limit : "100", c->kind ? "&kind=" : "",
                 c->kind ? c->kind : "");
        return ctl_get(c, path, ctl_show_audit);
}
