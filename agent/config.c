/* totebox-agent's config keys: one table read by the loader, --help, --print-config and the
 * docs (docs/agent.md lists the same keys). */
#include <stddef.h>

#include "agent/agent.h"

#define K(name, type, field, min, max, def, help)                                                  \
        {                                                                                          \
                name, type, offsetof(struct agent_config, field), min, max, def, help              \
        }

const struct config_key agent_config_table[] = {
    K("vault_dir", CONFIG_STRING, vault_dir, 4096, 4096, "/srv/totebox/vault",
      "the vault: app-console-input/, assets/, ledger/ (created when absent)"),
    K("channel", CONFIG_STRING, channel, 4096, 4096, "/dev/virtio-ports/org.totebox.agent.0",
      "host channel: a virtio-serial port or character device, or a unix stream socket; "
      "empty: no channel"),
    K("key_file", CONFIG_STRING, key_file, 4096, 4096, "",
      "Ed25519 vault key (seed, mode 0600); empty: VAULT/.totebox-agent/vault.key"),
    K("vault_id", CONFIG_STRING, vault_id, 128, 128, "",
      "vault id in reports; empty: the host name"),
    K("verify_interval", CONFIG_DURATION, verify_interval_ms, 1000, 604800000, "1h",
      "full verification interval"),
    K("scan_interval", CONFIG_DURATION, scan_interval_ms, 100, 3600000, "5s",
      "inbox rescan interval (inotify does the prompt work)"),
    K("verify_threads", CONFIG_UINT, verify_threads, 0, 256, "0",
      "hashing threads for full verification; 0: one per online CPU"),
    K("queue_max", CONFIG_UINT, queue_max, 1, 4096, "64",
      "messages queued for the host before the oldest is dropped"),
    K("max_record_bytes", CONFIG_UINT, max_record_bytes, 1, UINT64_MAX / 2, "68719476736",
      "largest record sealed; bigger ones stay in the inbox"),
    K("seal_batch", CONFIG_UINT, seal_batch, 1, 256, "256",
      "records sealed together (one intent, one ledger write, one head); 1: one at a time"),
    K("log_level", CONFIG_STRING, log_level, 16, 16, "info", "error, warn, info or debug"),
    {0},
};
