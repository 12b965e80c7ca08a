/* fleetd's config keys: one table read by the loader, --help, --print-config and the docs. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>

#include "fleetd/fleetd.h"

#define K(name, type, field, min, max, def, help)                                                  \
        {                                                                                          \
                name, type, offsetof(struct fleetd_config, field), min, max, def, help             \
        }

const struct config_key fleetd_config_table[] = {
    K("api_listen", CONFIG_STRING, api_listen, 256, 256, "127.0.0.1",
      "addresses for the admin REST API, comma-separated (the mesh address and loopback)"),
    K("api_port", CONFIG_UINT, api_port, 1, 65535, "9170", "TCP port of the admin REST API"),
    K("heartbeat_listen", CONFIG_STRING, heartbeat_listen, 64, 64, "0.0.0.0",
      "address the heartbeat listener binds (the mesh address)"),
    K("heartbeat_port", CONFIG_UINT, heartbeat_port, 1, 65535, "9171", "UDP port for heartbeats"),
    K("roster_file", CONFIG_STRING, roster_file, 4096, 4096, "/var/lib/totebox/roster.json",
      "the fleet roster: which mesh address belongs to which node"),
    K("state_dir", CONFIG_STRING, state_dir, 4096, 4096, "/var/lib/totebox/fleetd",
      "directory for fleetd's durable state (SQLite)"),
    K("heartbeat_interval", CONFIG_DURATION, heartbeat_interval_ms, 100, 3600000, "10s",
      "expected heartbeat interval"),
    K("suspect_after", CONFIG_DURATION, suspect_after_ms, 100, 86400000, "20s",
      "a node silent for longer than this, plus a quarter interval of jitter, is suspect"),
    K("evict_after", CONFIG_DURATION, evict_after_ms, 100, 86400000, "30s",
      "a node silent for longer than this is evicted from placement"),
    K("safety_margin_mib", CONFIG_UINT, safety_margin_mib, 0, 1048576, "512",
      "available RAM (MiB) that must remain on a node after a new VM"),
    K("placement_prefer_roles", CONFIG_STRING, placement_prefer_roles, 64, 64, "node+relay,cloud",
      "placement policy: node roles in order of preference, tiers separated by ',', roles of "
      "one tier by '+' (the default puts a Totebox on an on-premises node before the cloud "
      "node; empty: most available RAM only)"),
    K("disk_cow_allowance_mib", CONFIG_UINT, disk_cow_allowance_mib, 0, 1048576, "1024",
      "disk (MiB) placement counts for a new VM's copy-on-write OS overlay, beside its vault disk"),
    K("disk_margin_mib", CONFIG_UINT, disk_margin_mib, 0, 16777216, "1024",
      "room for VM disks (MiB) that must remain on a node after a new VM's disks"),
    K("plan_ttl", CONFIG_DURATION, plan_ttl_ms, 1000, 86400000, "5m",
      "how long a plan (placement quote) can be confirmed"),
    K("node_api_port", CONFIG_UINT, node_api_port, 1, 65535, "9172",
      "TCP port of vmhost's node API on each node's mesh address"),
    K("node_api_timeout", CONFIG_DURATION, node_api_timeout_ms, 100, 600000, "10s",
      "timeout of one call to a node API"),
    K("dispatch_attempts", CONFIG_UINT, dispatch_attempts, 1, 1000, "8",
      "attempts to deliver a creation before the VM is marked failed"),
    K("dispatch_backoff", CONFIG_DURATION, dispatch_backoff_ms, 10, 600000, "1s",
      "delay before the second attempt; doubles after each failure"),
    K("dispatch_backoff_max", CONFIG_DURATION, dispatch_backoff_max_ms, 10, 3600000, "60s",
      "longest delay between attempts"),
    K("auth", CONFIG_BOOL, auth, 0, 1, "true",
      "require a bearer token on every /v1 call and /metrics (false only for tests)"),
    K("panel_dir", CONFIG_STRING, panel_dir, 4096, 4096, "",
      "directory of the web panel's static files, served at / and /panel/ (empty: off)"),
    K("max_body_bytes", CONFIG_UINT, max_body_bytes, 256, 1048576, "65536",
      "largest REST request body accepted"),
    K("max_record_bytes", CONFIG_UINT, max_record_bytes, 1, 68719476736ull, "1073741824",
      "largest record deposited through the Diode (bytes)"),
    K("max_json_depth", CONFIG_UINT, max_json_depth, 2, 64, "8",
      "deepest JSON nesting accepted in a REST body"),
    K("vault_verify_interval", CONFIG_DURATION, vault_verify_interval_ms, 1000, 604800000, "1h",
      "the agents' full verification schedule (their verify_interval)"),
    K("vault_stall_grace", CONFIG_DURATION, vault_stall_grace_ms, 0, 604800000, "15m",
      "a Totebox whose last full verification is older than the schedule plus this is stalled"),
    K("image_max_bytes", CONFIG_UINT, image_max_bytes, 4096, 1ULL << 40, "68719476736",
      "largest base image fleetd stages and pushes (bytes; 64 GiB)"),
    K("log_level", CONFIG_STRING, log_level, 16, 16, "info", "error, warn, info or debug"),
    {0},
};

int fleetd_config_check(const void *cfg, char *err, size_t errsize)
{
        const struct fleetd_config *c = cfg;
        char why[128];

        if (placement_policy_check(c->placement_prefer_roles, why, sizeof(why)) < 0) {
                snprintf(err, errsize, "placement_prefer_roles '%s': %s", c->placement_prefer_roles,
                         why);
                return -EINVAL;
        }
        return 0;
}
