/* Helpers every REST command uses: one GET shown per -f (a table or CSV of the view's columns,
 * or the API's answer as JSON or YAML), "KEY=VALUE" arguments as the list's filters, and ids
 * checked before they go into a path. */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleetctl/fleetctl.h"

static void ctl_show(struct ctl *c, const struct ctl_view *v, json_t *a)
{
        json_t *rows = v->list_key ? json_incref(json_object_get(a, v->list_key)) : NULL;

        if (c->json || (!v->cols && !v->show)) {
                ctl_print(c, a);
        } else if (v->show) {
                v->show(a);
        } else {
                if (!rows)
                        rows = json_pack("[O]", a); /* one object: one row */
                ctl_render(c, v->cols, rows);
        }
        json_decref(rows);
}

/* Appends "?k=v&..." for the KEY=VALUE arguments; the one argument without '=' stays the id
 * (c->argv[0] after this). -1 (message printed) for a key the list does not filter by. */
static int ctl_filters(struct ctl *c, const struct ctl_view *v, char *path, size_t size)
{
        int kept = 0, n = 0;

        for (int i = 0; i < c->argc; i++) {
                const char *eq = strchr(c->argv[i], '=');
                char *val;
                size_t klen;
                bool known = false;

                if (!eq) {
                        c->argv[kept++] = c->argv[i];
                        continue;
                }
                klen = (size_t)(eq - c->argv[i]);
                for (const char *const *f = v->filters; f && *f && !known; f++)
                        known = strlen(*f) == klen && strncmp(*f, c->argv[i], klen) == 0;
                if (!known || n == CTL_FILTERS_MAX) {
                        fprintf(stderr, "fleetctl: cannot filter by '%.*s'; filters:", (int)klen,
                                c->argv[i]);
                        for (const char *const *f = v->filters; f && *f; f++)
                                fprintf(stderr, " %s=...", *f);
                        fprintf(stderr, "%s\n", v->filters ? "" : " none");
                        return -1;
                }
                val = curl_easy_escape(NULL, eq + 1, 0);
                if (!val)
                        return -1;
                snprintf(path + strlen(path), size - strlen(path), "%s%.*s=%s", n++ ? "&" : "?",
                         (int)klen, c->argv[i], val);
                curl_free(val);
        }
        c->argc = kept;
        return 0;
}

int ctl_get(struct ctl *c, const char *base, const struct ctl_view *v)
{
        char path[1024];
        json_t *a = NULL;
        long st;
        int r = 0;

        if (v->cols && ctl_columns_check(c, v->cols) < 0)
                return 2;
        snprintf(path, sizeof(path), "%s", base);
        if (ctl_filters(c, v, path, sizeof(path)) < 0)
                return 2;
        if (c->argc > 1) {
                fprintf(stderr, "fleetctl: one id at most ('%s' and '%s' given)\n", c->argv[0],
                        c->argv[1]);
                return 2;
        }
        if (c->argc && strchr(path, '?')) {
                fprintf(stderr, "fleetctl: filters go with a list, not with an id\n");
                return 2;
        }
        if (c->argc && ctl_path_arg(c, base, path, sizeof(path)) < 0)
                return 2;
        st = ctl_call(c, "GET", path, NULL, &a);
        if (st < 0)
                r = 3;
        else if (st != 200)
                r = ctl_problem(c, st, a);
        else
                ctl_show(c, v, a);
        json_decref(a);
        return r;
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
