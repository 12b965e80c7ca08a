/* fleetctl's shared pieces: options, the HTTP client, table output, the command table. */
#pragma once
#include <curl/curl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define CTL_WITNESS_MAX 64
#define CTL_COLUMNS_MAX 24
#define CTL_FILTERS_MAX 8

enum ctl_format { CTL_FORMAT_TABLE, CTL_FORMAT_JSON, CTL_FORMAT_YAML, CTL_FORMAT_CSV };

struct store;

struct ctl {
        const char *url;        /* fleetd's REST API */
        const char *token;      /* bearer token */
        const char *state_dir;  /* for the local commands */
        enum ctl_format format; /* -f */
        bool json;              /* -f json or yaml: the API's objects, not a table */
        bool yes;
        const char *columns; /* -c: comma-separated column names */
        const char *expires; /* token create --expires DURATION */
        bool no_wait;        /* answer 202 at once instead of following the operation */
        const char *entity, *image, *kind;
        const char *memory, *vcpus, *disk, *after, *limit;
        /* audit verify: checkpoints to hold the record against, and fleetd's key; plan: the
         * one --node is the target node */
        const char *witness_files[CTL_WITNESS_MAX], *witness_nodes[CTL_WITNESS_MAX];
        unsigned n_witness_files, n_witness_nodes;
        const char *audit_key;
        bool via_fleetd; /* audit verify: the nodes' checkpoints as fleetd relays them */
        /* deposit / read: the record's name, what it corrects, the deposit id to retry with,
         * where a read goes, the vault key to hold answers against (base64) */
        const char *name, *supersedes, *deposit_id, *output, *vault_key;
        /* backup / restore: the passphrase's file, the roster the restore must match */
        const char *passphrase_file, *roster_file;
        const char *node_port; /* rebuild: the nodes' node API port */
        int argc;              /* positional arguments after the command */
        char **argv;
};

/* A column of a table or CSV: its -c name, its heading, and its text: the object's field key,
 * or what get writes (into buf, or a string it returns). extra: shown only when -c names it. */
struct ctl_column {
        const char *name;
        const char *head;
        const char *key;
        const char *(*get)(json_t *o, char *buf, size_t size);
        bool extra;
};

/* What a GET shows: the rows (the answer's array list_key, or the answer itself as one row)
 * under the columns, or show's own text (health). Filters: the list's query parameters that
 * "KEY=VALUE" arguments map to. */
struct ctl_view {
        const char *list_key;
        const struct ctl_column *cols;
        void (*show)(json_t *answer);
        const char *const *filters;
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
/* Aims e at fleetd's path (c->url + path, built on the heap: --url has no bound) and appends the
 * bearer token's header, when there is a token, to *h. CURLE_OUT_OF_MEMORY: the caller reports
 * it as it reports a failed transfer. */
CURLcode ctl_curl_target(const struct ctl *c, CURL *e, const char *path, struct curl_slist **h);
/* Prints a problem+json answer as "fleetctl: TITLE (STATUS): DETAIL" on stderr, or under
 * -f json / yaml the problem object itself on stdout; returns 1. */
int ctl_problem(const struct ctl *c, long status, json_t *answer);

/* client_get.c: GET path (with the view's filters from the arguments) and show it. Returns the
 * exit status. */
int ctl_get(struct ctl *c, const char *path, const struct ctl_view *v);
int ctl_path_arg(struct ctl *c, const char *base, char *buf, size_t size);

/* cmd_operations.c: follows a 202's operation until it ends (unless --no-wait): 0, 1 or 3 as a
 * command's exit status when it is shown (running, failed, unreachable); -1 when it succeeded,
 * its result in *ret_result for the caller to show. */
int ctl_operation_outcome(struct ctl *c, json_t *op, json_t **ret_result);
int ctl_operation_follow(struct ctl *c, json_t *op, json_t **ret);
int ctl_cmd_operations(struct ctl *c);

/* output.c */
int ctl_format_parse(const char *name, enum ctl_format *ret);
int ctl_columns_check(const struct ctl *c, const struct ctl_column *cols); /* -1: message printed */
/* A table or CSV of objects (an array) under cols; -1 for an unknown -c column. */
int ctl_render(const struct ctl *c, const struct ctl_column *cols, json_t *objects);
void ctl_print(const struct ctl *c, json_t *o); /* JSON or YAML per -f */
void ctl_yaml(FILE *out, json_t *v);
const char *ctl_str(json_t *o, const char *key); /* a field as text ("-" when absent) */
/* Milliseconds since the epoch as "2026-12-02T01:02:03Z" ("-" when not a positive integer). */
const char *ctl_time_ms(json_t *ms, char *buf, size_t size);

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
int ctl_cmd_deposit(struct ctl *c);
int ctl_cmd_records(struct ctl *c);
int ctl_cmd_read(struct ctl *c);
int ctl_cmd_backup(struct ctl *c); /* cmd_backup.c */
int ctl_cmd_restore(struct ctl *c);
int ctl_cmd_rebuild(struct ctl *c); /* cmd_rebuild.c */
/* True when dir is absent or an empty directory; remove then removes the empty one. */
bool ctl_dir_empty_or_absent(const char *dir, bool remove);
int ctl_cmd_export(struct ctl *c);
int ctl_cmd_import(struct ctl *c);
/* cmd_plan.c: asks question on stdout and reads y/N from stdin. */
bool ctl_ask(const char *question);
/* local.c: opens fleetd's store in c->state_dir (message printed on failure). */
int ctl_open_store(struct ctl *c, bool create, struct store **ret);
