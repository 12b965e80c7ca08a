/* totebox-pair: the pairing tool. Subcommands come from one table (name, handler, usage); each
 * parses its own options. See docs/mesh.md for the ceremony and the state directory. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <sodium.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "common/mesh.h"
#include "provision/pairing.h"

struct pair_args {
        const char *state_dir, *name, *endpoint, *role, *ifname, *subnet, *fleet_id, *listen;
        const char *genesis, *code, *field, *connect, *passphrase_file;
        unsigned wg_port, pair_port, code_ttl, sas_timeout, io_timeout, node_api_port;
        bool no_wg;
};

/* The options: one row drives getopt, the bounds and the default. A STRING stores its argument
 * in the field at offset (def: the default, NULL for none); a UINT parses a number in min..max
 * into the unsigned at offset (dflt); a FLAG sets the bool at offset. */
enum pair_option_kind { PAIR_OPT_STRING, PAIR_OPT_UINT, PAIR_OPT_FLAG };

struct pair_option {
        const char *name;
        enum pair_option_kind kind;
        size_t offset;
        const char *def;
        unsigned dflt, min, max;
};

#define PAIR_STR(n, field, d)                                                                      \
        {                                                                                          \
                n, PAIR_OPT_STRING, offsetof(struct pair_args, field), d, 0, 0, 0                  \
        }
#define PAIR_UINT(n, field, d, lo, hi)                                                             \
        {                                                                                          \
                n, PAIR_OPT_UINT, offsetof(struct pair_args, field), NULL, d, lo, hi               \
        }

static const struct pair_option pair_options[] = {
    PAIR_STR("state-dir", state_dir, "/var/lib/totebox/mesh"),
    PAIR_STR("name", name, NULL),
    PAIR_STR("endpoint", endpoint, NULL),
    PAIR_STR("role", role, "node"),
    PAIR_STR("ifname", ifname, "wg0"),
    PAIR_UINT("wg-port", wg_port, 51820, 1, 65535),
    PAIR_STR("subnet", subnet, "10.77.0.0/24"),
    PAIR_STR("fleet-id", fleet_id, NULL),
    /* join: given, the joiner listens for the genesis; serve: the address it listens on */
    PAIR_STR("listen", listen, NULL),
    PAIR_UINT("pair-port", pair_port, PAIR_DEFAULT_PORT, 1, 65535),
    PAIR_UINT("code-ttl", code_ttl, 600, 1, 86400),
    PAIR_UINT("sas-timeout", sas_timeout, 300, 1, 3600),
    PAIR_UINT("io-timeout", io_timeout, 30, 1, 600),
    PAIR_UINT("node-api-port", node_api_port, 9172, 1, 65535),
    PAIR_STR("genesis", genesis, NULL),
    PAIR_STR("code", code, NULL),
    {"no-wg", PAIR_OPT_FLAG, offsetof(struct pair_args, no_wg), NULL, 0, 0, 0},
    PAIR_STR("field", field, NULL),
    PAIR_STR("connect", connect, NULL),
    /* backup-genesis-key, restore-genesis-key: the passphrase is this file's first line */
    PAIR_STR("passphrase-file", passphrase_file, NULL),
};

#define PAIR_N_OPTIONS (sizeof(pair_options) / sizeof(pair_options[0]))
#define PAIR_OPT_KEY   1000 /* getopt's value for row i: PAIR_OPT_KEY + i, past every letter */

static int pair_parse_uint(const char *s, unsigned min, unsigned max, unsigned *ret)
{
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (!*s || *end || errno || v < min || v > max) {
                fprintf(stderr, "'%s' is not a number in %u..%u\n", s, min, max);
                return -EINVAL;
        }
        *ret = (unsigned)v;
        return 0;
}

static int pair_option_set(struct pair_args *a, const struct pair_option *o, const char *value)
{
        char *field = (char *)a + o->offset;

        switch (o->kind) {
        case PAIR_OPT_STRING:
                *(const char **)field = value;
                return 0;
        case PAIR_OPT_UINT:
                if (!value) {
                        *(unsigned *)field = o->dflt;
                        return 0;
                }
                return pair_parse_uint(value, o->min, o->max, (unsigned *)field);
        case PAIR_OPT_FLAG:
                *(bool *)field = value != NULL;
                return 0;
        }
        return -EINVAL;
}

static int pair_parse_args(int argc, char **argv, struct pair_args *a)
{
        struct option opts[PAIR_N_OPTIONS + 1] = {{0}};
        int c, r = 0;

        *a = (struct pair_args){0};
        for (size_t i = 0; i < PAIR_N_OPTIONS; i++) {
                const struct pair_option *o = &pair_options[i];

                opts[i] = (struct option){
                    o->name, o->kind == PAIR_OPT_FLAG ? no_argument : required_argument, NULL,
                    PAIR_OPT_KEY + (int)i};
                if (o->kind != PAIR_OPT_FLAG)
                        pair_option_set(a, o, o->def);
        }
        optind = 1;
        while (r == 0 && (c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
                if (c < PAIR_OPT_KEY || (size_t)(c - PAIR_OPT_KEY) >= PAIR_N_OPTIONS)
                        return -EINVAL;
                r = pair_option_set(a, &pair_options[c - PAIR_OPT_KEY], optarg ? optarg : "");
        }
        return r;
}

static int pair_need(const char *value, const char *option)
{
        if (value && *value)
                return 0;
        fprintf(stderr, "missing %s\n", option);
        return -EINVAL;
}

/* This node's --endpoint goes into the roster: refused here, before anything is made, unless it
 * has an endpoint's shape (docs/mesh.md). */
static int pair_endpoint(const char *s)
{
        if (!s || !*s || wg_endpoint_syntax_ok(s))
                return 0;
        fprintf(stderr, "--endpoint '%s' is not IPV4:PORT, [IPV6]:PORT or HOSTNAME:PORT\n", s);
        return -EINVAL;
}

static int pair_role(const char *s, enum roster_role *ret)
{
        if (roster_role_parse(s, ret) == 0)
                return 0;
        fprintf(stderr, "unknown role '%s' (node, relay or cloud)\n", s);
        return -EINVAL;
}

static int cmd_genesis(const struct pair_args *a, const char *arg)
{
        struct pair_genesis_opts o = {.state_dir = a->state_dir,
                                      .name = a->name,
                                      .endpoint = a->endpoint,
                                      .ifname = a->ifname,
                                      .wg_port = a->wg_port,
                                      .subnet = a->subnet,
                                      .fleet_id = a->fleet_id,
                                      .no_wg = a->no_wg,
                                      .out = stdout};

        if (pair_need(a->name, "--name") < 0 || pair_role(a->role, &o.role) < 0 ||
            pair_endpoint(a->endpoint) < 0)
                return -EINVAL;
        if (!ident_valid(IDENT_NODE, a->name)) {
                fprintf(stderr, "'%s' is not a valid node name (a-z, 0-9, '-')\n", a->name);
                return -EINVAL;
        }
        return pair_genesis_init(&o);
}

static int cmd_serve(const struct pair_args *a, const char *arg)
{
        struct pair_server_opts o = {.state_dir = a->state_dir,
                                     .listen_addr = a->listen ? a->listen : "0.0.0.0",
                                     .port = a->pair_port,
                                     .code_ttl_s = a->code_ttl,
                                     .sas_timeout_s = a->sas_timeout,
                                     .io_timeout_s = a->io_timeout,
                                     .node_api_port = a->node_api_port,
                                     .out = stdout,
                                     .confirm_in = stdin,
                                     .code = a->code,
                                     .connect = a->connect};

        return pair_server_run(&o);
}

static int cmd_join(const struct pair_args *a, const char *arg)
{
        const char *code = arg;
        struct pair_join_opts o = {.state_dir = a->state_dir,
                                   .genesis = a->genesis,
                                   .listen = a->listen,
                                   .listen_port = a->pair_port,
                                   .name = a->name,
                                   .endpoint = a->endpoint,
                                   .ifname = a->ifname,
                                   .wg_port = a->wg_port,
                                   .no_wg = a->no_wg,
                                   .io_timeout_s = a->io_timeout,
                                   .sas_timeout_s = a->sas_timeout,
                                   .out = stdout,
                                   .confirm_in = stdin};
        char line[64];
        int ret;

        if (pair_need(code, "CODE") < 0 ||
            (!a->listen && pair_need(a->genesis, "--genesis HOST[:PORT] or --listen ADDR") < 0) ||
            pair_need(a->name, "--name") < 0 || pair_role(a->role, &o.role) < 0 ||
            pair_endpoint(a->endpoint) < 0)
                return -EINVAL;
        if (strcmp(code, "-") == 0) {
                /* The code from the first line of stdin keeps it out of the process list. */
                if (pair_read_line(STDIN_FILENO, a->sas_timeout * 1000, line, sizeof(line)) < 0)
                        return -EINVAL;
                code = line;
        }
        o.code = code;
        ret = pair_join_run(&o);
        sodium_memzero(line, sizeof(line));
        return ret;
}

static int cmd_apply_roster(const struct pair_args *a, const char *arg)
{
        const char *file = arg;
        char err[320];
        int ret;

        if (pair_need(file, "ROSTER-FILE") < 0)
                return -EINVAL;
        ret = pair_apply_roster_file(a->state_dir, file, a->no_wg, err, sizeof(err));
        if (ret < 0)
                fprintf(stderr, "apply-roster: %s\n", err);
        else
                printf("roster from '%s' accepted\n", file);
        return ret;
}

static int cmd_controller_key(const struct pair_args *a, const char *arg)
{
        if (pair_need(arg, "PIN-PUBLIC-KEY") < 0)
                return -EINVAL;
        return pair_controller_key_set(a->state_dir, arg, a->node_api_port, a->no_wg, stdout);
}

static int cmd_remove_node(const struct pair_args *a, const char *arg)
{
        if (pair_need(arg, "NODE-ID") < 0)
                return -EINVAL;
        return pair_node_remove(a->state_dir, arg, a->node_api_port, a->no_wg, stdout);
}

/* backup-genesis-key and restore-genesis-key: FILE and --passphrase-file F */
static int pair_need_sealed(const struct pair_args *a, const char *file)
{
        return pair_need(file, "FILE") ?: pair_need(a->passphrase_file, "--passphrase-file F");
}

static int cmd_backup_genesis_key(const struct pair_args *a, const char *arg)
{
        return pair_need_sealed(a, arg)
                   ?: pair_genkey_backup(a->state_dir, arg, a->passphrase_file, stdout);
}

static int cmd_restore_genesis_key(const struct pair_args *a, const char *arg)
{
        return pair_need_sealed(a, arg)
                   ?: pair_genkey_restore(a->state_dir, arg, a->passphrase_file, stdout);
}

static int cmd_up(const struct pair_args *a, const char *arg)
{
        char err[320];
        int ret = pair_mesh_up(a->state_dir, err, sizeof(err));

        if (ret < 0)
                fprintf(stderr, "up: %s\n", err);
        return ret;
}

/* Prints node.conf and what the roster says (controller and its mesh address, the hub that
 * forwards between nodes without an endpoint). */
static int cmd_show(const struct pair_args *a, const char *arg)
{
        struct pair_node_conf c;
        struct roster *r;
        const struct roster_node *ctl;
        char err[256], version[24];
        const char *fields[][2] = {{"node_id", c.node_id},
                                   {"ifname", c.ifname},
                                   {"role", c.role},
                                   {"mesh_address", c.mesh_address},
                                   {"endpoint", c.endpoint},
                                   {"controller", ""},
                                   {"controller_address", ""},
                                   {"roster_version", version},
                                   {"fleet_id", ""},
                                   {"controller_pin_key", ""},
                                   {"hub", ""}};

        if (pair_conf_load(a->state_dir, &c) < 0) {
                fprintf(stderr, "show: no node state in '%s'\n", a->state_dir);
                return -ENOENT;
        }
        r = pair_roster_load(a->state_dir, err, sizeof(err));
        ctl = r ? roster_find_by_id(r, r->controller) : NULL;
        snprintf(version, sizeof(version), "%llu", r ? (unsigned long long)r->version : 0ULL);
        if (r) {
                fields[5][1] = r->controller;
                fields[6][1] = ctl ? ctl->mesh_address : "";
                fields[8][1] = r->fleet_id;
                fields[9][1] = r->controller_pin_key;
                fields[10][1] = mesh_hub(r) ? mesh_hub(r)->id : "";
        }
        for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
                if (!a->field)
                        printf("%s=%s\n", fields[i][0], fields[i][1]);
                else if (strcmp(a->field, fields[i][0]) == 0)
                        printf("%s\n", fields[i][1]);
        }
        roster_free(r);
        return 0;
}

/* Lists the interface's peers as WireGuard reports them: key, endpoint, allowed IPs, age of the
 * latest handshake (the read side of common/wg.h). */
static int cmd_peers(const struct pair_args *a, const char *arg)
{
        struct pair_node_conf c;
        struct wg_device *d = NULL;
        char key[WG_KEY_B64_SIZE], addr[INET_ADDRSTRLEN];
        int ret = pair_conf_load(a->state_dir, &c);

        if (ret == 0)
                ret = wg_device_get(c.ifname, &d);
        if (ret < 0) {
                fprintf(stderr, "peers: cannot read the mesh interface: %s\n", strerror(-ret));
                return ret;
        }
        printf("interface %s backend %s listen_port %u peers %zu\n", d->ifname,
               wg_backend_name(wg_backend_detect(d->ifname)), d->listen_port, d->n_peers);
        for (size_t i = 0; i < d->n_peers; i++) {
                const struct wg_peer *p = &d->peers[i];

                wg_key_to_base64(key, p->public_key);
                printf("peer %s", key);
                if (p->has_endpoint) {
                        char ep[WG_ENDPOINT_STR_SIZE];

                        wg_endpoint_format(&p->endpoint, ep);
                        printf(" endpoint %s", ep);
                }
                for (size_t k = 0; k < p->n_allowed_ips; k++) {
                        inet_ntop(AF_INET, &p->allowed_ips[k].addr, addr, sizeof(addr));
                        printf(" allowed %s/%u", addr, p->allowed_ips[k].cidr);
                }
                printf(" keepalive %u latest_handshake %lld\n", p->keepalive_s,
                       (long long)p->last_handshake_sec);
        }
        wg_device_free(d);
        return 0;
}

static const struct pair_command {
        const char *name;
        int nargs;
        int (*run)(const struct pair_args *a, const char *arg);
        const char *usage;
} pair_commands[] = {
    {"genesis", 0, cmd_genesis,
     "genesis --name N [--endpoint HOST:PORT] [--role node|relay|cloud] "
     "[--ifname wg0] [--wg-port 51820] [--subnet 10.77.0.0/24] [--fleet-id ID] "
     "[--no-wg]"},
    {"serve", 0, cmd_serve,
     "serve [--listen 0.0.0.0] [--pair-port 9173] [--connect HOST[:9173]] [--code-ttl 600] "
     "[--sas-timeout 300] [--io-timeout 30] [--node-api-port 9172]"},
    {"join", 1, cmd_join,
     "join CODE|- --genesis HOST[:9173]|--listen ADDR [--pair-port 9173] --name N "
     "[--role node|relay|cloud] "
     "[--endpoint HOST:PORT] [--ifname wg0] [--wg-port 51820] [--no-wg]"},
    {"apply-roster", 1, cmd_apply_roster, "apply-roster ROSTER-FILE [--no-wg]"},
    {"controller-key", 1, cmd_controller_key,
     "controller-key PIN-PUBLIC-KEY [--node-api-port 9172] (genesis: publish fleetd's pin key)"},
    {"remove-node", 1, cmd_remove_node,
     "remove-node NODE-ID [--node-api-port 9172] [--no-wg] (genesis: revoke a node; its key "
     "leaves every peer)"},
    {"backup-genesis-key", 1, cmd_backup_genesis_key,
     "backup-genesis-key FILE --passphrase-file F (genesis: seal its key into FILE, never over "
     "a file)"},
    {"restore-genesis-key", 1, cmd_restore_genesis_key,
     "restore-genesis-key FILE --passphrase-file F (a member, after losing the genesis: this "
     "node signs the roster from now on)"},
    {"up", 0, cmd_up, "up (create the interface from the state and apply the stored roster)"},
    {"peers", 0, cmd_peers, "peers (the interface's peers and their latest handshakes)"},
    {"show", 0, cmd_show,
     "show [--field node_id|mesh_address|controller_address|roster_version|...]"},
};

static void pair_usage(FILE *f)
{
        fprintf(f, "usage: totebox-pair COMMAND [--state-dir DIR] ...\n");
        for (size_t i = 0; i < sizeof(pair_commands) / sizeof(pair_commands[0]); i++)
                fprintf(f, "  totebox-pair %s\n", pair_commands[i].usage);
        fprintf(f, "SAS confirmation: type the SAS shown by the other node on stdin.\n");
}

int main(int argc, char **argv)
{
        const struct pair_command *cmd = NULL;
        struct pair_args a;
        const char *arg = NULL;
        int ret;

        if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
                pair_usage(argc < 2 ? stderr : stdout);
                return argc < 2 ? 2 : 0;
        }
        for (size_t i = 0; i < sizeof(pair_commands) / sizeof(pair_commands[0]); i++) {
                if (strcmp(argv[1], pair_commands[i].name) == 0)
                        cmd = &pair_commands[i];
        }
        if (!cmd) {
                fprintf(stderr, "unknown command '%s'\n", argv[1]);
                pair_usage(stderr);
                return 2;
        }
        if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
                return 1;
        signal(SIGPIPE, SIG_IGN);
        setvbuf(stdout, NULL, _IOLBF, 0);
        if (pair_parse_args(argc - 1, argv + 1, &a) < 0) {
                pair_usage(stderr);
                return 2;
        }
        if (cmd->nargs) {
                if (optind + 1 != argc - 1) {
                        fprintf(stderr, "usage: totebox-pair %s\n", cmd->usage);
                        return 2;
                }
                arg = argv[optind + 1];
        }
        ret = cmd->run(&a, arg);
        curl_global_cleanup();
        return ret < 0 ? 1 : 0;
}
