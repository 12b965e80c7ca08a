/* fleetctl plan (shows the plan with every candidate and asks y/N; --yes for scripts),
 * confirm PLAN and drop PLAN. A declined plan exits 1: nothing was created. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleetctl/fleetctl.h"

static const char *ctl_verdict(json_t *cand, char *buf, size_t size)
{
        snprintf(buf, size, "%s",
                 json_is_true(json_object_get(cand, "chosen")) ? "CHOSEN"
                                                               : ctl_str(cand, "verdict"));
        return buf;
}

static const struct ctl_column ctl_candidate_columns[] = {
    {"node", "NODE", "node_id", NULL, false},
    {"state", "STATE", "state", NULL, false},
    {"available", "AVAILABLE_MIB", "available_mib", NULL, false},
    {"left", "LEFT_AFTER_MIB", "left_after_mib", NULL, false},
    {"heartbeat", "HEARTBEAT_AGE_MS", "heartbeat_age_ms", NULL, false},
    {"verdict", "VERDICT", NULL, ctl_verdict, false},
    {"reason", "REASON", "reason", NULL, false},
    {NULL, NULL, NULL, NULL, false},
};

static void ctl_show_plan(struct ctl *c, json_t *p)
{
        json_t *req = json_object_get(p, "request");

        if (json_object_get(p, "id") && c->format == CTL_FORMAT_TABLE)
                printf("plan %s: entity '%s', %s MiB, %s vCPUs, image '%s', vault disk %s MiB\n"
                       "chosen node: %s   safety margin: %s MiB   expires: %s\n\n",
                       ctl_str(p, "id"), ctl_str(req, "entity"), ctl_str(req, "memory_mib"),
                       ctl_str(req, "vcpus"), ctl_str(req, "image"), ctl_str(req, "vault_disk_mib"),
                       ctl_str(p, "node_id"), ctl_str(p, "safety_margin_mib"),
                       ctl_str(p, "expires_at"));
        ctl_render(c, ctl_candidate_columns, json_object_get(p, "candidates"));
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
                ctl_problem(c, st, a);
                json_decref(a);
                return 1;
        }
        if (c->json)
                ctl_print(c, a);
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

        if (ctl_columns_check(c, ctl_candidate_columns) < 0)
                return 2;
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
                        ctl_show_plan(c, a);
                r = ctl_problem(c, st, a);
        } else if (c->json && !c->yes) {
                ctl_print(c, a);
        } else {
                if (!c->json)
                        ctl_show_plan(c, a);
                if (c->yes || ctl_ask("\nCreate this Totebox VM (pinned to the chosen node for "
                                      "life)?")) {
                        r = ctl_confirm_id(c, ctl_str(a, "id"));
                } else {
                        /* declined: nothing was created, and a script must see that */
                        printf("not confirmed; plan %s expires at %s (fleetctl drop %s)\n",
                               ctl_str(a, "id"), ctl_str(a, "expires_at"), ctl_str(a, "id"));
                        r = 1;
                }
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
                ctl_problem(c, st, a);
        } else if (c->json) {
                ctl_print(c, a);
        } else {
                printf("plan %s dropped\n", c->argv[0]);
        }
        json_decref(a);
        return st == 200 ? 0 : 1;
}
