/* fleetctl's commands over the REST API: nodes, vms, plan (shows the plan and asks y/N),
 * confirm, drop, suspend/resume/archive, audit, health, roster. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fleetctl/fleetctl.h"

/* Runs one GET and prints it as JSON (--json) or through show. */
static int ctl_get(struct ctl *c, const char *path, void (*show)(json_t *))
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

static json_t *ctl_row(int n, ...)
{
        json_t *row = json_array();
        va_list ap;

        va_start(ap, n);
        for (int i = 0; i < n; i++)
                json_array_append_new(row, json_string(va_arg(ap, const char *)));
        va_end(ap);
        return row;
}

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

static void ctl_show_vms(json_t *a)
{
        static const char *const h[] = {"ID",        "ENTITY", "NODE",      "STATUS",
                                        "LIFECYCLE", "STATE",  "INTEGRITY", "REASON"};
        json_t *vms = json_object_get(a, "vms"), *rows = json_array(), *v;
        size_t i;

        if (!vms)
                vms = json_pack("[O]", a);
        else
                json_incref(vms);
        json_array_foreach(vms, i, v) json_array_append_new(
            rows,
            ctl_row(8, ctl_str(v, "id"), ctl_str(v, "entity"), ctl_str(v, "node_id"),
                    ctl_str(v, "status"), ctl_str(v, "lifecycle"), ctl_str(v, "state"),
                    ctl_str(json_object_get(v, "integrity"), "status"), ctl_str(v, "reason")));
        ctl_table(h, 8, rows);
        json_decref(rows);
        json_decref(vms);
}

static int ctl_path_arg(struct ctl *c, const char *base, char *buf, size_t size)
{
        for (const char *p = c->argc ? c->argv[0] : ""; *p; p++)
                if (*p == '/' || *p == '?' || *p == '#' || *p == '%' || *p <= ' ') {
                        fprintf(stderr, "fleetctl: '%s' is not a valid id\n", c->argv[0]);
                        return -1;
                }
        snprintf(buf, size, "%s%s%.200s", base, c->argc ? "/" : "", c->argc ? c->argv[0] : "");
        return 0;
}

int ctl_cmd_nodes(struct ctl *c)
{
        char path[256];

        return ctl_path_arg(c, "/v1/nodes", path, sizeof(path)) < 0
                   ? 2
                   : ctl_get(c, path, ctl_show_nodes);
}

int ctl_cmd_vms(struct ctl *c)
{
        char path[256];

        return ctl_path_arg(c, "/v1/vms", path, sizeof(path)) < 0 ? 2
                                                                  : ctl_get(c, path, ctl_show_vms);
}

static void ctl_show_plan(json_t *p)
{
        static const char *const h[] = {
            "NODE",    "STATE", "AVAILABLE_MIB", "LEFT_AFTER_MIB", "HEARTBEAT_AGE_MS",
            "VERDICT", "REASON"};
        json_t *req = json_object_get(p, "request"), *rows = json_array(), *cand;
        size_t i;

        if (json_object_get(p, "id"))
                printf("plan %s: entity '%s', %s MiB, %s vCPUs, image '%s', vault disk %s MiB\n"
                       "chosen node: %s   safety margin: %s MiB   expires: %s\n\n",
                       ctl_str(p, "id"), ctl_str(req, "entity"), ctl_str(req, "memory_mib"),
                       ctl_str(req, "vcpus"), ctl_str(req, "image"), ctl_str(req, "vault_disk_mib"),
                       ctl_str(p, "node_id"), ctl_str(p, "safety_margin_mib"),
                       ctl_str(p, "expires_at"));
        json_array_foreach(json_object_get(p, "candidates"), i, cand) json_array_append_new(
            rows, ctl_row(7, ctl_str(cand, "node_id"), ctl_str(cand, "state"),
                          ctl_str(cand, "available_mib"), ctl_str(cand, "left_after_mib"),
                          ctl_str(cand, "heartbeat_age_ms"),
                          json_is_true(json_object_get(cand, "chosen")) ? "CHOSEN"
                                                                        : ctl_str(cand, "verdict"),
                          ctl_str(cand, "reason")));
        ctl_table(h, 7, rows);
        json_decref(rows);
}

static bool ctl_ask(const char *question)
{
        char line[16];

        printf("%s [y/N] ", question);
        fflush(stdout);
        if (!fgets(line, sizeof(line), stdin))
                return false;
        return line[0] == 'y' || line[0] == 'Y';
}

static int ctl_confirm_id(struct ctl *c, const char *id)
{
        char path[128];
        json_t *a = NULL;
        long st;

        snprintf(path, sizeof(path), "/v1/plans/%.40s/confirm", id);
        st = ctl_call(c, "POST", path, NULL, &a);
        if (st < 0)
                return 3;
        if (st != 200 && st != 201) {
                ctl_problem(st, a);
                json_decref(a);
                return 1;
        }
        if (c->json)
                ctl_print_json(a);
        else
                printf("VM '%s' for entity '%s' is being created on node '%s' (status '%s')\n",
                       ctl_str(a, "id"), ctl_str(a, "entity"), ctl_str(a, "node_id"),
                       ctl_str(a, "status"));
        json_decref(a);
        return 0;
}

int ctl_cmd_plan(struct ctl *c)
{
        json_t *body, *a = NULL;
        long st;
        int r = 0;

        if (!c->entity || !c->memory || !c->vcpus || !c->image || !c->disk) {
                fprintf(stderr, "fleetctl: plan needs --entity, --memory, --vcpus, --image and "
                                "--disk\n");
                return 2;
        }
        body = json_pack("{s:s, s:I, s:I, s:s, s:I}", "entity", c->entity, "memory_mib",
                         (json_int_t)strtoll(c->memory, NULL, 10), "vcpus",
                         (json_int_t)strtoll(c->vcpus, NULL, 10), "image", c->image,
                         "vault_disk_mib", (json_int_t)strtoll(c->disk, NULL, 10));
        st = ctl_call(c, "POST", "/v1/plans", body, &a);
        json_decref(body);
        if (st < 0)
                return 3;
        if (st != 201) {
                if (!c->json && json_object_get(a, "candidates"))
                        ctl_show_plan(a);
                r = ctl_problem(st, a);
        } else if (c->json && !c->yes) {
                ctl_print_json(a);
        } else {
                if (!c->json)
                        ctl_show_plan(a);
                if (c->yes || ctl_ask("\nCreate this Totebox VM (pinned to the chosen node for "
                                      "life)?"))
                        r = ctl_confirm_id(c, ctl_str(a, "id"));
                else
                        printf("not confirmed; plan %s expires at %s (fleetctl drop %s)\n",
                               ctl_str(a, "id"), ctl_str(a, "expires_at"), ctl_str(a, "id"));
        }
        json_decref(a);
        return r;
}

int ctl_cmd_confirm(struct ctl *c)
{
        if (c->argc != 1) {
                fprintf(stderr, "fleetctl: confirm needs a plan id\n");
                return 2;
        }
        return ctl_confirm_id(c, c->argv[0]);
}

int ctl_cmd_drop(struct ctl *c)
{
        char path[128];
        json_t *a = NULL;
        long st;

        if (c->argc != 1 || ctl_path_arg(c, "/v1/plans", path, sizeof(path)) < 0) {
                fprintf(stderr, "fleetctl: drop needs a plan id\n");
                return 2;
        }
        st = ctl_call(c, "DELETE", path, NULL, &a);
        if (st < 0)
                return 3;
        if (st != 200) {
                ctl_problem(st, a);
        } else if (c->json) {
                ctl_print_json(a);
        } else {
                printf("plan %s dropped\n", c->argv[0]);
        }
        json_decref(a);
        return st == 200 ? 0 : 1;
}

int ctl_cmd_verb(struct ctl *c)
{
        char path[256], base[64];
        json_t *a = NULL;
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
        if (st != 200)
                ctl_problem(st, a);
        else if (c->json)
                ctl_print_json(a);
        else
                printf("VM '%s' is now '%s'\n", ctl_str(a, "id"), ctl_str(a, "lifecycle"));
        json_decref(a);
        return st == 200 ? 0 : 1;
}

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
