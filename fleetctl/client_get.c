/* Helpers every REST command uses: one GET shown as a table or as JSON, table rows, and ids
 * checked before they go into a path. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleetctl/fleetctl.h"

int ctl_get(struct ctl *c, const char *path, void (*show)(json_t *))
{
        json_t *a = NULL;
        long st = ctl_call(c, "GET", path, NULL, &a);
        int r = 0;

        if (st < 0)
                r = 3;
        else if (st != 200)
                r = ctl_problem(st, a);
        else if (c->json || !show)
                ctl_print_json(a);
        else
                show(a);
        json_decref(a);
        return r;
}

json_t *ctl_row(int n, ...)
{
        json_t *row = json_array();
        va_list ap;

        va_start(ap, n);
        for (int i = 0; i < n; i++)
                json_array_append_new(row, json_string(va_arg(ap, const char *)));
        va_end(ap);
        return row;
}

int ctl_path_arg(struct ctl *c, const char *base, char *buf, size_t size)
{
        for (const char *p = c->argc ? c->argv[0] : ""; *p; p++)
                if (*p == '/' || *p == '?' || *p == '#' || *p == '%' || *p <= ' ') {
                        fprintf(stderr, "fleetctl: '%s' is not a valid id\n", c->argv[0]);
                        return -1;
                }
        snprintf(buf, size, "%s%s%.200s", base, c->argc ? "/" : "", c->argc ? c->argv[0] : "");
        return 0;
}
