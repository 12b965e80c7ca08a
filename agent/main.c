/* totebox-agent: the subcommand table and dispatch (run, verify, seal). */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "agent/agent.h"

struct agent_cmd {
        const char *name;
        int (*fn)(int argc, char **argv);
        const char *help;
};

static const struct agent_cmd agent_cmds[] = {
    {"run", agent_cmd_run, "run the vault agent (--vault DIR --channel PATH, --help)"},
    {"verify", agent_cmd_verify, "verify a vault offline (--json, exit 0 only when clean)"},
    {"seal", agent_cmd_seal, "seal what is in the inbox once and exit"},
};

static void agent_usage(FILE *out)
{
        fprintf(out, "usage: totebox-agent COMMAND [ARGS]\n\n");
        for (size_t i = 0; i < sizeof(agent_cmds) / sizeof(agent_cmds[0]); i++)
                fprintf(out, "  %-8s %s\n", agent_cmds[i].name, agent_cmds[i].help);
}

int main(int argc, char **argv)
{
        if (sodium_init() < 0) {
                fprintf(stderr, "totebox-agent: libsodium failed to initialise\n");
                return 2;
        }
        if (argc < 2) {
                agent_usage(stderr);
                return 2;
        }
        if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
                agent_usage(stdout);
                return 0;
        }
        if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
                printf("totebox-agent %s\n", TOTEBOX_VERSION);
                return 0;
        }
        for (size_t i = 0; i < sizeof(agent_cmds) / sizeof(agent_cmds[0]); i++)
                if (!strcmp(argv[1], agent_cmds[i].name))
                        return agent_cmds[i].fn(argc - 1, argv + 1);
        fprintf(stderr, "totebox-agent: unknown command '%s'\n", argv[1]);
        agent_usage(stderr);
        return 2;
}
