/* fleetctl plan (shows the plan with every candidate and asks y/N; --yes for scripts; --node N
 * names a target node, whose verdict shows beside the fleet's choice), plan list, confirm PLAN
 * and drop PLAN. A declined plan exits 1: nothing was created. */
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

static void ctl_show_figures(json_t *t)
{
        printf("node '%s' (%s): %s: %s\n  available %s MiB, committed %s MiB, reserved %s MiB, "
               "needed %s MiB, margin %s MiB, left after %s MiB\n",
               ctl_str(t, "node_id"), ctl_str(t, "role"), ctl_str(t, "verdict"),
               ctl_str(t, "reason"), ctl_str(t, "available_mib"), ctl_str(t, "committed_mib"),
               ctl_str(t, "reserved_mib"), ctl_str(t, "needed_mib"), ctl_str(t, "margin_mib"),
               ctl_str(t, "left_after_mib"));
}

/* The operator's target node beside the fleet's own choice. */
static void ctl_show_target(json_t *p)
{
        json_t *t = json_object_get(p, "target");

        if (!json_is_object(t))
                return;
        printf("\ntarget ");
        ctl_show_figures(t);
        printf("the fleet's own choice (CHOSEN above): %s\n", ctl_str(p, "fleet_choice"));
}

static void ctl_show_plan(struct ctl *c, json_t *p)
{
        json_t *req = json_object_get(p, "request");

        if (json_object_get(p, "id") && c->format == CTL_FORMAT_TABLE)
                printf("plan %s: entity '%s', %s MiB, %s vCPUs, image '%s', vault disk %s MiB\n"
                       "%s node: %s   safety margin: %s MiB   expires: %s\n\n",
                       ctl_str(p, "id"), ctl_str(req, "entity"), ctl_str(req, "memory_mib"),
                       ctl_str(req, "vcpus"), ctl_str(req, "image"), ctl_str(req, "vault_disk_mib"),
                       json_is_object(json_object_get(p, "target")) ? "target" : "chosen",
                       ctl_str(p, "node_id"), ctl_str(p, "safety_margin_mib"),
                       ctl_str(p, "expires_at"));
        ctl_render(c, ctl_candidate_columns, json_object_get(p, "candidates"));
        if (c->format == CTL_FORMAT_TABLE)
                ctl_show_target(p);
}

bool ctl_ask(const char *question)
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
        json_t *a = NULL, *vm = NULL;
        long st;
        int r;

        snprintf(path, sizeof(path), "/v1/plans/%.40s/confirm", id);
        st = ctl_call(c, "POST", path, NULL, &a);
        if (st < 0)
                return 3;
        if (st != 202) {
                ctl_problem(c, st, a);
                if (!c->json && json_is_object(json_object_get(a, "figures")))
                        ctl_show_figures(json_object_get(a, "figures"));
                json_decref(a);
                return 1;
        }
        if (!c->json)
                printf("VM '%s' recorded; creating it on its node (operation %s)\n",
                       ctl_str(a, "vm_id"), ctl_str(a, "id"));
        r = ctl_operation_outcome(c, a, &vm);
        json_decref(a);
        if (r >= 0)
                return r;
        if (c->json)
                ctl_print(c, vm);
        else
                printf("VM '%s' for entity '%s' is %s on node '%s'\n", ctl_str(vm, "id"),
                       ctl_str(vm, "entity"), ctl_str(vm, "status"), ctl_str(vm, "node_id"));
        json_decref(vm);
        return 0;
}

static const char *ctl_plan_entity(json_t *p, char *buf, size_t size)
{
        snprintf(buf, size, "%s", ctl_str(json_object_get(p, "request"), "entity"));
        return buf;
}

static const char *ctl_plan_memory(json_t *p, char *buf, size_t size)
{
        snprintf(buf, size, "%s", ctl_str(json_object_get(p, "request"), "memory_mib"));
        return buf;
}

static const struct ctl_column ctl_plan_columns[] = {
    {"id", "ID", "id", NULL, false},
    {"state", "STATE", "state", NULL, false},
    {"entity", "ENTITY", NULL, ctl_plan_entity, false},
    {"memory", "MEMORY_MIB", NULL, ctl_plan_memory, false},
    {"node", "NODE", "node_id", NULL, false},
    {"created", "CREATED", "created_at", NULL, false},
    {"expires", "EXPIRES", "expires_at", NULL, false},
    {"vm", "VM", "vm_id", NULL, false},
    {NULL, NULL, NULL, NULL, false},
};

/* plan list [state=S after=ID limit=N]: the plans, newest state first as fleetd pages them. */
static int ctl_plan_list(struct ctl *c)
{
        static const char *const filters[] = {"state", "after", "limit", NULL};
        static const struct ctl_view v = {"plans", ctl_plan_columns, NULL, filters};

        c->argv++;
        c->argc--;
        for (int i = 0; i < c->argc; i++)
                if (!strchr(c->argv[i], '=')) { /* an id: 'fleetctl plan PLAN' shows one */
                        fprintf(stderr, "fleetctl: plan list takes filters only (state=, after=, "
                                        "limit=)\n");
                        return 2;
                }
        return ctl_get(c, "/v1/plans", &v);
}

int ctl_cmd_plan(struct ctl *c)
{
        json_t *body, *a = NULL;
        long st;
        int r = 0;

        if (c->argc >= 1 && strcmp(c->argv[0], "list") == 0)
                return ctl_plan_list(c);
        if (c->argc != 0) {
                fprintf(stderr, "fleetctl: plan takes options, or 'list'\n");
                return 2;
        }
        if (c->n_witness_nodes > 1) {
                fprintf(stderr, "fleetctl: plan takes one --node\n");
                return 2;
        }
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
        if (c->n_witness_nodes == 1)
                json_object_set_new(body, "node", json_string(c->witness_nodes[0]));
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
        } else if (json_is_object(json_object_get(a, "target")) &&
                   strcmp(ctl_str(json_object_get(a, "target"), "verdict"), "fits") != 0) {
                if (!c->json)
                        ctl_show_plan(c, a);
                fprintf(stderr,
                        "fleetctl: target node '%s' does not fit the VM; not confirmed (plan %s "
                        "expires at %s)\n",
                        ctl_str(a, "node_id"), ctl_str(a, "id"), ctl_str(a, "expires_at"));
                r = 1;
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
