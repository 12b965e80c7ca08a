/* fleetctl: the operator's client for fleetd. Options anywhere, then a command from the table
 * below; tables for people by default, -f json|yaml (the API's objects) or csv for scripts.
 * Exit status: 0 done, 1 refused, declined or failed, 2 usage, 3 fleetd unreachable. */
#include <curl/curl.h>
#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleetctl/fleetctl.h"

const struct ctl_command ctl_commands[] = {
    {"nodes", ctl_cmd_nodes, "nodes [ID | state=S role=R]",
     "list nodes (or one) with liveness, CPU and RAM"},
    {"vms", ctl_cmd_vms, "vms [ID | node=N status=S lifecycle=L entity=E]",
     "list Totebox VMs (or one)"},
    {"plan", ctl_cmd_plan,
     "plan --entity E --memory MIB --vcpus N --image NAME --disk MIB [--node N] [--yes] | "
     "plan list [state=S after=ID limit=N]",
     "ask for a plan (on node N when given), show it, and confirm it on 'y' (or --yes); or "
     "list the plans"},
    {"confirm", ctl_cmd_confirm, "confirm PLAN", "confirm a plan: create the VM"},
    {"drop", ctl_cmd_drop, "drop PLAN", "drop an unconfirmed plan"},
    {"suspend", ctl_cmd_verb, "suspend VM", "suspend an active VM"},
    {"resume", ctl_cmd_verb, "resume VM", "resume a suspended VM"},
    {"archive", ctl_cmd_verb, "archive VM", "archive a VM (kept with its disks, never started)"},
    {"retire", ctl_cmd_verb, "retire VM",
     "retire a failed VM (its record and audit trail stay; nothing is deleted)"},
    {"verify", ctl_cmd_verb, "verify VM",
     "ask the VM's node for a full verification of its vault (result: 'vms VM')"},
    {"operations", ctl_cmd_operations, "operations [ID]",
     "long operations (confirmations, verbs): state, progress, error"},
    {"audit", ctl_cmd_audit,
     "audit [--after N] [--limit N] [--kind K] | audit verify [--node ADDR:PORT]... "
     "[--witness FILE]... [--via-fleetd] [--key VKEY]",
     "read the audit record, or verify it (state dir) against fleetd's signed checkpoints and "
     "those the nodes witnessed"},
    {"deposit", ctl_cmd_deposit,
     "deposit VM FILE [--name N] [--supersedes SEQ] [--deposit-id ID] [--vault-key B64]",
     "put a record into the Totebox's vault through the Diode; prints the checked receipt"},
    {"records", ctl_cmd_records, "records VM [--after SEQ] [--limit N]",
     "the Totebox's ledger, a page at a time"},
    {"read", ctl_cmd_read, "read VM SEQ --output FILE [--vault-key B64]",
     "read a record back; written only when its hash and inclusion proof verify"},
    {"export", ctl_cmd_export, "export VM",
     "write a suspended or archived Totebox as one signed file on its node"},
    {"import", ctl_cmd_import, "import FILE --node N [--yes]",
     "re-home a Totebox from its export, already put on node N by hand (a plan, then y/N)"},
    {"image", ctl_cmd_image, "image push FILE --name NAME [--node N ...] | list | remove NAME",
     "push a base image to the nodes (checksummed, resumable), list or remove images"},
    {"health", ctl_cmd_health, "health", "fleet health, integrity first"},
    {"roster", ctl_cmd_roster, "roster", "the roster fleetd uses"},
    {"backup", ctl_cmd_backup, "backup FILE [--passphrase-file F]",
     "a consistent copy of fleetd's state, taken online (keys included: 0600, or sealed with "
     "the passphrase)"},
    {"restore", ctl_cmd_restore, "restore FILE [--passphrase-file F] [--roster FILE]",
     "restore a backup into an empty --state-dir, after checking it (integrity, schema, audit "
     "chain, fleet id)"},
    {"rebuild", ctl_cmd_rebuild, "rebuild --roster FILE [--node-port N]",
     "with no backup: rebuild the state in an empty --state-dir from the nodes' inventories and "
     "pins (run on the new controller); names what could not be recovered"},
    {"token", ctl_cmd_token, "token create NAME [--expires 30d] | token revoke NAME | token list",
     "API tokens (state dir; the token is printed once; list: created, last used, expiry)"},
    {NULL, NULL, NULL, NULL},
};

/* The options: one row drives getopt, the assignment and the usage text. A STRING stores its
 * argument in the field at offset; a FLAG stores value into the bool at offset; a LIST appends
 * to the array at offset (CTL_WITNESS_MAX long) counted at count; an ACTION is handled by
 * ctl_option_action. Rows without help are command options, shown in the commands' usage. */
enum ctl_option_kind { CTL_OPT_STRING, CTL_OPT_FLAG, CTL_OPT_LIST, CTL_OPT_ACTION };

struct ctl_option {
        const char *name;
        int key; /* getopt's value, and the short option's letter where has_short */
        bool has_short;
        enum ctl_option_kind kind;
        size_t offset, count;
        bool value;
        const char *usage, *help;
};

#define CTL_STR(n, k, field)                                                                       \
        {                                                                                          \
                .name = n, .key = k, .kind = CTL_OPT_STRING, .offset = offsetof(struct ctl, field) \
        }
#define CTL_LIST(n, k, field, cnt)                                                                 \
        {                                                                                          \
                .name = n, .key = k, .kind = CTL_OPT_LIST, .offset = offsetof(struct ctl, field),  \
                .count = offsetof(struct ctl, cnt)                                                 \
        }

static const struct ctl_option ctl_options[] = {
    {"url", 'u', true, CTL_OPT_STRING, offsetof(struct ctl, url), 0, false, "--url URL",
     "fleetd's REST API (env FLEETCTL_URL; default http://127.0.0.1:9170)"},
    {"token", 't', true, CTL_OPT_STRING, offsetof(struct ctl, token), 0, false, "--token TOKEN",
     "bearer token (env FLEETCTL_TOKEN)"},
    {"state-dir", 'S', true, CTL_OPT_STRING, offsetof(struct ctl, state_dir), 0, false,
     "--state-dir DIR",
     "fleetd's state directory for token and audit verify (env FLEETCTL_STATE_DIR; default "
     "/var/lib/totebox/fleetd)"},
    {"format", 'f', true, CTL_OPT_ACTION, 0, 0, false, "-f, --format F",
     "table (default), csv, or json / yaml: the API's objects (errors too, as problem objects "
     "on stdout)"},
    {"json", 'j', true, CTL_OPT_ACTION, 0, 0, false, "--json", "the same as -f json"},
    {"columns", 'c', true, CTL_OPT_STRING, offsetof(struct ctl, columns), 0, false,
     "-c, --columns L",
     "the table's or CSV's columns, e.g. -c id,state,cpu,ram (an unknown name lists the "
     "command's columns)"},
    {"yes", 'y', true, CTL_OPT_FLAG, offsetof(struct ctl, yes), 0, true, "--yes", "do not ask"},
    {"wait", 'w', false, CTL_OPT_FLAG, offsetof(struct ctl, no_wait), 0, false, "--wait",
     "follow an operation (confirm, verbs) to its end (the default)"},
    {"no-wait", 'n', false, CTL_OPT_FLAG, offsetof(struct ctl, no_wait), 0, true, "--no-wait",
     "return once fleetd accepted it"},
    {"version", 'R', false, CTL_OPT_ACTION, 0, 0, false, "--version", "fleetctl's version"},
    {"help", 'h', true, CTL_OPT_ACTION, 0, 0, false, "-h, --help", "this text"},
    CTL_STR("expires", 'E', expires),
    CTL_STR("entity", 'e', entity),
    CTL_STR("memory", 'm', memory),
    CTL_STR("vcpus", 'P', vcpus),
    CTL_STR("image", 'i', image),
    CTL_STR("disk", 'd', disk),
    CTL_STR("after", 'a', after),
    CTL_STR("limit", 'l', limit),
    CTL_STR("kind", 'k', kind),
    CTL_STR("name", 'A', name),
    CTL_LIST("node", 'N', witness_nodes, n_witness_nodes),
    CTL_LIST("witness", 'W', witness_files, n_witness_files),
    CTL_STR("key", 'K', audit_key),
    {"via-fleetd", 'V', false, CTL_OPT_FLAG, offsetof(struct ctl, via_fleetd), 0, true, NULL, NULL},
    CTL_STR("supersedes", 's', supersedes),
    CTL_STR("deposit-id", 'D', deposit_id),
    {"output", 'o', true, CTL_OPT_STRING, offsetof(struct ctl, output), 0, false, NULL, NULL},
    CTL_STR("vault-key", 'Q', vault_key),
    CTL_STR("passphrase-file", 'p', passphrase_file),
    CTL_STR("roster", 'r', roster_file),
    CTL_STR("node-port", 'O', node_port),
};

#define CTL_N_OPTIONS (sizeof(ctl_options) / sizeof(ctl_options[0]))

/* "  USAGE            HELP", the help wrapped at word boundaries under itself. */
static void ctl_usage_line(FILE *out, const char *usage, const char *help)
{
        enum { INDENT = 19, WIDTH = 98 };
        int col = fprintf(out, "  %-16s", usage);

        while (*help) {
                size_t word = strcspn(help, " ");

                if (col + 1 + (int)word > WIDTH && col > INDENT)
                        col = fprintf(out, "\n%*s", INDENT - 1, "") - 1;
                col += fprintf(out, " %.*s", (int)word, help);
                help += word;
                help += strspn(help, " ");
        }
        fputc('\n', out);
}

static void ctl_usage(FILE *out)
{
        fprintf(out, "usage: fleetctl [OPTION]... COMMAND ...\n\n");
        for (size_t i = 0; i < CTL_N_OPTIONS; i++)
                if (ctl_options[i].help)
                        ctl_usage_line(out, ctl_options[i].usage, ctl_options[i].help);
        fprintf(out, "\ncommands:\n");
        for (const struct ctl_command *c = ctl_commands; c->name; c++)
                fprintf(out, "  %-62s %s\n", c->usage, c->help);
}

/* -f, --json, --version, --help. 1: done (exit 0), -1: usage error. */
static int ctl_option_action(struct ctl *c, int key)
{
        switch (key) {
        case 'f':
                if (ctl_format_parse(optarg, &c->format) == 0)
                        return 0;
                fprintf(stderr, "fleetctl: format '%s' is not one of table, json, yaml, csv\n",
                        optarg);
                return -1;
        case 'j':
                c->format = CTL_FORMAT_JSON;
                return 0;
        case 'R':
                printf("fleetctl %s\n", TOTEBOX_VERSION);
                return 1;
        default:
                ctl_usage(stdout);
                return 1;
        }
}

static int ctl_option_set(struct ctl *c, const struct ctl_option *o)
{
        char *base = (char *)c;
        unsigned *n;

        switch (o->kind) {
        case CTL_OPT_STRING:
                *(const char **)(base + o->offset) = optarg;
                return 0;
        case CTL_OPT_FLAG:
                *(bool *)(base + o->offset) = o->value;
                return 0;
        case CTL_OPT_LIST:
                n = (unsigned *)(base + o->count);
                if (*n == CTL_WITNESS_MAX) {
                        fprintf(stderr, "fleetctl: --%s at most %d times\n", o->name,
                                CTL_WITNESS_MAX);
                        return -1;
                }
                ((const char **)(base + o->offset))[(*n)++] = optarg;
                return 0;
        case CTL_OPT_ACTION:
                return ctl_option_action(c, o->key);
        }
        return -1;
}

static int ctl_parse(struct ctl *c, int argc, char **argv)
{
        /* on the heap: a row per option would put 1 KiB into main's frame */
        struct option *opts = calloc(CTL_N_OPTIONS + 1, sizeof(*opts));
        char shorts[3 * CTL_N_OPTIONS + 1], *sp = shorts;
        int o, r = 0;

        if (!opts) {
                fprintf(stderr, "fleetctl: out of memory\n");
                return -1;
        }
        for (size_t i = 0; i < CTL_N_OPTIONS; i++) {
                const struct ctl_option *t = &ctl_options[i];
                bool arg = t->kind == CTL_OPT_STRING || t->kind == CTL_OPT_LIST || t->key == 'f';

                opts[i] =
                    (struct option){t->name, arg ? required_argument : no_argument, NULL, t->key};
                if (t->has_short) {
                        *sp++ = (char)t->key;
                        if (arg)
                                *sp++ = ':';
                }
        }
        *sp = '\0';
        while (r == 0 && (o = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
                size_t i = 0;

                while (i < CTL_N_OPTIONS && ctl_options[i].key != o)
                        i++;
                if (i == CTL_N_OPTIONS) {
                        ctl_usage(stderr);
                        r = -1;
                } else {
                        r = ctl_option_set(c, &ctl_options[i]);
                }
        }
        free(opts);
        return r;
}

int main(int argc, char **argv)
{
        struct ctl c = {
            .url = getenv("FLEETCTL_URL") ? getenv("FLEETCTL_URL") : "http://127.0.0.1:9170",
            .token = getenv("FLEETCTL_TOKEN"),
            .state_dir = getenv("FLEETCTL_STATE_DIR") ? getenv("FLEETCTL_STATE_DIR")
                                                      : "/var/lib/totebox/fleetd",
        };
        int r = ctl_parse(&c, argc, argv);

        if (r != 0)
                return r < 0 ? 2 : 0;
        c.json = c.format == CTL_FORMAT_JSON || c.format == CTL_FORMAT_YAML;
        if (optind >= argc) {
                ctl_usage(stderr);
                return 2;
        }
        for (const struct ctl_command *cmd = ctl_commands; cmd->name; cmd++) {
                if (strcmp(cmd->name, argv[optind]) != 0)
                        continue;
                c.argv = &argv[optind + 1];
                c.argc = argc - optind - 1;
                curl_global_init(CURL_GLOBAL_DEFAULT);
                r = cmd->run(&c);
                curl_global_cleanup();
                return r;
        }
        fprintf(stderr, "fleetctl: unknown command '%s' (fleetctl --help)\n", argv[optind]);
        return 2;
}
