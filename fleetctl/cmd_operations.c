/* Long operations: what confirm and the VM verbs answer (202 and the operation), followed to its
 * end by default (--no-wait returns at once, as 'incus --no-wait' does), and fleetctl operations
 * [ID] to read them. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "fleetctl/fleetctl.h"

#define CTL_POLL_MS 200

static void ctl_sleep_ms(long ms)
{
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

        nanosleep(&ts, NULL);
}

/* An operation that counts bytes (an export) shows them on stderr as they move. */
static void ctl_operation_progress(const struct ctl *c, json_t *op, json_int_t *shown)
{
        json_t *b = json_object_get(op, "bytes");
        json_int_t p = json_integer_value(json_object_get(op, "progress"));

        if (c->json || !json_is_object(b) || p == *shown)
                return;
        *shown = p;
        fprintf(stderr, "%s: %" JSON_INTEGER_FORMAT " %% (%.1f of %.1f MiB)\n", ctl_str(op, "kind"),
                p, (double)json_integer_value(json_object_get(b, "done")) / (1 << 20),
                (double)json_integer_value(json_object_get(b, "total")) / (1 << 20));
}

int ctl_operation_follow(struct ctl *c, json_t *op, json_t **ret)
{
        char path[96];
        json_t *cur = json_incref(op);
        json_int_t shown = -1;

        snprintf(path, sizeof(path), "/v1/operations/%.40s", ctl_str(op, "id"));
        while (!c->no_wait && strcmp(ctl_str(cur, "state"), "running") == 0) {
                json_t *next = NULL;
                long st;

                ctl_sleep_ms(CTL_POLL_MS);
                st = ctl_call(c, "GET", path, NULL, &next);
                if (st < 0) {
                        json_decref(cur);
                        return 3;
                }
                if (st != 200) {
                        ctl_problem(c, st, next);
                        json_decref(next);
                        json_decref(cur);
                        return 1;
                }
                json_decref(cur);
                cur = next;
                ctl_operation_progress(c, cur, &shown);
        }
        *ret = cur;
        return 0;
}

int ctl_operation_outcome(struct ctl *c, json_t *op, json_t **ret_result)
{
        json_t *done = NULL;
        int r = ctl_operation_follow(c, op, &done);

        if (r)
                return r;
        if (c->json && (c->no_wait || strcmp(ctl_str(done, "state"), "succeeded") != 0))
                ctl_print(c, done);
        if (strcmp(ctl_str(done, "state"), "running") == 0) {
                json_t *img = json_object_get(json_object_get(done, "resources"), "push");

                if (!c->json && img) /* an image push names no VM */
                        printf("operation %s (%s, %s) is running; follow it with "
                               "'fleetctl operations %s'\n",
                               ctl_str(done, "id"), ctl_str(done, "kind"), json_string_value(img),
                               ctl_str(done, "id"));
                else if (!c->json)
                        printf("operation %s (%s of VM '%s') is running; follow it with "
                               "'fleetctl operations %s'\n",
                               ctl_str(done, "id"), ctl_str(done, "kind"), ctl_str(done, "vm_id"),
                               ctl_str(done, "id"));
                json_decref(done);
                return 0;
        }
        if (strcmp(ctl_str(done, "state"), "failed") == 0) {
                json_t *e = json_object_get(done, "error");

                ctl_problem(c, (long)json_integer_value(json_object_get(e, "status")), e);
                json_decref(done);
                return 1;
        }
        *ret_result = json_incref(json_object_get(done, "result"));
        json_decref(done);
        return -1; /* succeeded: the caller shows the result */
}

static const char *ctl_op_error(json_t *o, char *buf, size_t size)
{
        snprintf(buf, size, "%s", ctl_str(json_object_get(o, "error"), "detail"));
        return buf;
}

static const struct ctl_column ctl_operation_columns[] = {
    {"id", "ID", "id", NULL, false},
    {"kind", "KIND", "kind", NULL, false},
    {"vm", "VM", "vm_id", NULL, false},
    {"state", "STATE", "state", NULL, false},
    {"progress", "PROGRESS", "progress", NULL, false},
    {"created", "CREATED", "created_at", NULL, false},
    {"updated", "UPDATED", "updated_at", NULL, false},
    {"error", "ERROR", NULL, ctl_op_error, false},
    {NULL, NULL, NULL, NULL, false},
};

int ctl_cmd_operations(struct ctl *c)
{
        static const struct ctl_view v = {"operations", ctl_operation_columns, NULL, NULL};

        return ctl_get(c, "/v1/operations", &v);
}
