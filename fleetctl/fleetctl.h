/* fleetctl's shared pieces: options, the HTTP client, table output, the command table. */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define CTL_WITNESS_MAX 64

struct store;

struct ctl {
        const char *url;       /* fleetd's REST API */
        const char *token;     /* bearer token */
        const char *state_dir; /* for the local commands */
        bool json, yes;
        const char *entity, *image, *kind, *name;
        const char *memory, *vcpus, *disk, *after, *limit;
        /* audit verify: checkpoints to hold the record against, and fleetd's key */
        const char *witness_files[CTL_WITNESS_MAX], *witness_nodes[CTL_WITNESS_MAX];
        unsigned n_witness_files, n_witness_nodes;
        const char *audit_key;
        bool via_fleetd; /* audit verify: the nodes' checkpoints as fleetd relays them */
        int argc;        /* positional arguments after the command */
        char **argv;
};

struct ctl_command {
        const char *name;
        int (*run)(struct ctl *c);
        const char *usage;
        const char *help;
};

extern const struct ctl_command ctl_commands[];

/* client.c: one call; *ret is the parsed JSON answer (or NULL). Returns the HTTP status, or -1
 * when fleetd did not answer (message printed). */
long ctl_call(struct ctl *c, const char *method, const char *path, json_t *body, json_t **ret);
/* Prints a problem+json answer as "fleetctl: TITLE (STATUS): DETAIL"; returns 1. */
int ctl_problem(long status, json_t *answer);

/* client_get.c */
int ctl_get(struct ctl *c, const char *path, void (*show)(json_t *));
json_t *ctl_row(int n, ...); /* a table row of n strings */
int ctl_path_arg(struct ctl *c, const char *base, char *buf, size_t size);

/* output.c */
void ctl_table(const char *const *heads, size_t ncols, json_t *rows /* arrays of strings */);
void ctl_print_json(json_t *o);
const char *ctl_str(json_t *o, const char *key); /* a field as text ("-" when absent) */

/* cmd_*.c and local.c (token, audit verify) */
int ctl_cmd_nodes(struct ctl *c);
int ctl_cmd_vms(struct ctl *c);
int ctl_cmd_plan(struct ctl *c);
int ctl_cmd_confirm(struct ctl *c);
int ctl_cmd_drop(struct ctl *c);
int ctl_cmd_verb(struct ctl *c);
int ctl_cmd_audit(struct ctl *c);
int ctl_cmd_health(struct ctl *c);
int ctl_cmd_roster(struct ctl *c);
int ctl_cmd_image(struct ctl *c);
int ctl_cmd_token(struct ctl *c);
int ctl_cmd_audit_verify(struct ctl *c);
/* local.c: opens fleetd's store in c->state_dir (message printed on failure). */
int ctl_open_store(struct ctl *c, bool create, struct store **ret);
