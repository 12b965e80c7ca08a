/* Fault injection for the crash tests: TOTEBOX_AGENT_CRASH_AT=POINT[:N] makes the agent kill
 * itself with SIGKILL the Nth time (default: the first) it reaches the named point of a seal, as
 * if the machine or the OOM killer had stopped it there. Unset (always, outside tests), every
 * point is one string comparison against nothing. The points are listed in docs/agent.md. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"

static struct {
        bool loaded;
        char point[64];
        unsigned long left;
} agent_fault;

static void agent_fault_load(void)
{
        const char *env = getenv("TOTEBOX_AGENT_CRASH_AT");
        const char *colon;

        agent_fault.loaded = true;
        if (!env || !env[0])
                return;
        colon = strchr(env, ':');
        snprintf(agent_fault.point, sizeof(agent_fault.point), "%.*s",
                 colon ? (int)(colon - env) : (int)strlen(env), env);
        agent_fault.left = colon ? strtoul(colon + 1, NULL, 10) : 1;
        if (agent_fault.left == 0)
                agent_fault.left = 1;
}

bool agent_fault_hit(const char *point)
{
        if (!agent_fault.loaded)
                agent_fault_load();
        if (!agent_fault.point[0] || strcmp(agent_fault.point, point) != 0)
                return false;
        return --agent_fault.left == 0;
}

void agent_fault_die(void)
{
        kill(getpid(), SIGKILL);
        for (;;)
                pause();
}

void agent_fault_point(const char *point)
{
        if (agent_fault_hit(point))
                agent_fault_die();
}
