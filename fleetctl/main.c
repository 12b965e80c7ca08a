/* fleetctl: the operator's client for fleetd. Options anywhere, then a command from the table
 * below; tables for people by default, -f json|yaml (the API's objects) or csv for scripts.
 * Exit status: 0 done, 1 refused, declined or failed, 2 usage, 3 fleetd unreachable. */
#include <curl/curl.h>
#include <getopt.h>
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
    {"token", ctl_cmd_token, "token create NAME [--expires 30d] | token revoke NAME | token list",
     "API tokens (state dir; the token is printed once; list: created, last used, expiry)"},
    {NULL, NULL, NULL, NULL},
};

static void ctl_usage(FILE *out)
{
        fprintf(out,
                "usage: fleetctl [--url URL] [--token TOKEN] [--state-dir DIR] [-f FORMAT] "
                "[-c COLUMNS] COMMAND ...\n\n"
                "  --url URL        fleetd's REST API (env FLEETCTL_URL; default "
                "http://127.0.0.1:9170)\n"
                "  --token TOKEN    bearer token (env FLEETCTL_TOKEN)\n"
                "  --state-dir DIR  fleetd's state directory for token and audit verify\n"
                "                   (env FLEETCTL_STATE_DIR; default /var/lib/totebox/fleetd)\n"
                "  -f, --format F   table (default), csv, or json / yaml: the API's objects\n"
                "                   (errors too, as problem objects on stdout)\n"
                "  --json           the same as -f json\n"
                "  -c, --columns L  the table's or CSV's columns, e.g. -c id,state,cpu,ram\n"
                "                   (an unknown name lists the command's columns)\n"
                "  --yes            do not ask\n  --version        fleetctl's version\n"
                "  --wait           follow an operation (confirm, verbs) to its end (the "
                "default)\n  --no-wait        return once fleetd accepted it\n\n"
                "commands:\n");
        for (const struct ctl_command *c = ctl_commands; c->name; c++)
                fprintf(out, "  %-62s %s\n", c->usage, c->help);
}

static int ctl_parse(struct ctl *c, int argc, char **argv)
{
        static const struct option opts[] = {{"url", required_argument, NULL, 'u'},
                                             {"token", required_argument, NULL, 't'},
                                             {"state-dir", required_argument, NULL, 'S'},
                                             {"json", no_argument, NULL, 'j'},
                                             {"format", required_argument, NULL, 'f'},
                                             {"columns", required_argument, NULL, 'c'},
                                             {"expires", required_argument, NULL, 'E'},
                                             {"version", no_argument, NULL, 'R'},
                                             {"yes", no_argument, NULL, 'y'},
                                             {"wait", no_argument, NULL, 'w'},
                                             {"no-wait", no_argument, NULL, 'n'},
                                             {"entity", required_argument, NULL, 'e'},
                                             {"memory", required_argument, NULL, 'm'},
                                             {"vcpus", required_argument, NULL, 'P'},
                                             {"image", required_argument, NULL, 'i'},
                                             {"disk", required_argument, NULL, 'd'},
                                             {"after", required_argument, NULL, 'a'},
                                             {"limit", required_argument, NULL, 'l'},
                                             {"kind", required_argument, NULL, 'k'},
                                             {"name", required_argument, NULL, 'A'},
                                             {"node", required_argument, NULL, 'N'},
                                             {"witness", required_argument, NULL, 'W'},
                                             {"key", required_argument, NULL, 'K'},
                                             {"via-fleetd", no_argument, NULL, 'V'},
                                             {"supersedes", required_argument, NULL, 's'},
                                             {"deposit-id", required_argument, NULL, 'D'},
                                             {"output", required_argument, NULL, 'o'},
                                             {"vault-key", required_argument, NULL, 'Q'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
        int o;

        while ((o = getopt_long(argc, argv, "u:t:S:f:c:jyho:", opts, NULL)) != -1) {
                switch (o) {
                case 'u':
                        c->url = optarg;
                        break;
                case 't':
                        c->token = optarg;
                        break;
                case 'S':
                        c->state_dir = optarg;
                        break;
                case 'j':
                        c->format = CTL_FORMAT_JSON;
                        break;
                case 'f':
                        if (ctl_format_parse(optarg, &c->format) < 0) {
                                fprintf(stderr,
                                        "fleetctl: format '%s' is not one of table, json, "
                                        "yaml, csv\n",
                                        optarg);
                                return -1;
                        }
                        break;
                case 'c':
                        c->columns = optarg;
                        break;
                case 'E':
                        c->expires = optarg;
                        break;
                case 'R':
                        printf("fleetctl %s\n", TOTEBOX_VERSION);
                        return 1;
                case 'y':
                        c->yes = true;
                        break;
                case 'w':
                case 'n':
                        c->no_wait = o == 'n';
                        break;
                case 'e':
                        c->entity = optarg;
                        break;
                case 'm':
                        c->memory = optarg;
                        break;
                case 'P':
                        c->vcpus = optarg;
                        break;
                case 'i':
                        c->image = optarg;
                        break;
                case 'd':
                        c->disk = optarg;
                        break;
                case 'a':
                        c->after = optarg;
                        break;
                case 'l':
                        c->limit = optarg;
                        break;
                case 'k':
                        c->kind = optarg;
                        break;
                case 'A':
                        c->name = optarg;
                        break;
                case 'N':
                case 'W':
                        if ((o == 'N' ? c->n_witness_nodes : c->n_witness_files) ==
                            CTL_WITNESS_MAX) {
                                fprintf(stderr, "fleetctl: at most %d --node and %d --witness\n",
                                        CTL_WITNESS_MAX, CTL_WITNESS_MAX);
                                return -1;
                        }
                        if (o == 'N')
                                c->witness_nodes[c->n_witness_nodes++] = optarg;
                        else
                                c->witness_files[c->n_witness_files++] = optarg;
                        break;
                case 'K':
                        c->audit_key = optarg;
                        break;
                case 'V':
                        c->via_fleetd = true;
                        break;
                case 's':
                        c->supersedes = optarg;
                        break;
                case 'D':
                        c->deposit_id = optarg;
                        break;
                case 'o':
                        c->output = optarg;
                        break;
                case 'Q':
                        c->vault_key = optarg;
                        break;
                case 'h':
                        ctl_usage(stdout);
                        return 1;
                default:
                        ctl_usage(stderr);
                        return -1;
                }
        }
        return 0;
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
