/* fleetctl audit [--after N] [--limit N] [--kind K]; "audit verify" runs locally (local.c).
 * The table shows an entry's detail as "key=value" pairs; -f json / yaml the entries as is. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleetctl/fleetctl.h"

/* {"node":"n1","from":"alive"} as "from=alive node=n1" (keys sorted; nested values as JSON). */
static const char *ctl_audit_detail(json_t *e, char *buf, size_t size)
{
        json_t *d = json_object_get(e, "detail"), *v;
        char *text = json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        json_t *sorted = json_is_object(d) && text ? json_loads(text, 0, NULL) : NULL;
        const char *key;
        size_t len = 0;

        snprintf(buf, size, "%s", sorted || !d || json_is_null(d) || !text ? "" : text);
        json_object_foreach(sorted, key, v)
        {
                char *val =
                    json_is_string(v) ? NULL : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

                if (len < size)
                        len += (size_t)snprintf(buf + len, size - len, "%s%s=%s", len ? " " : "",
                                                key, val ? val : json_string_value(v));
                free(val);
        }
        json_decref(sorted);
        free(text);
        return buf[0] ? buf : "-";
}

static const struct ctl_column ctl_audit_columns[] = {
    {"seq", "SEQ", "seq", NULL, false},       {"time", "TIME", "time", NULL, false},
    {"kind", "KIND", "kind", NULL, false},    {"subject", "SUBJECT", "subject", NULL, false},
    {"actor", "ACTOR", "actor", NULL, false}, {"detail", "DETAIL", NULL, ctl_audit_detail, false},
    {"hash", "HASH", "hash", NULL, true},     {NULL, NULL, NULL, NULL, false},
};

int ctl_cmd_audit(struct ctl *c)
{
        static const struct ctl_view v = {"entries", ctl_audit_columns, NULL, NULL};
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
        return ctl_get(c, path, &v);
}
