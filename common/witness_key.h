/* A cosigner key (C2SP tlog-cosignature cosignature/v1) kept in a file: the signer-key text of
 * tlog_skey_format ("PRIVATE+KEY+<name>+<id>+<base64(0x01 || seed)>"), mode 0600, created on
 * first use. vmhost and fleetd each witness vault checkpoints with one. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/tlog_checkpoint.h"

struct witness_key {
        struct tlog_key pub; /* id: the cosignature key id (0x04) */
        uint8_t sk[TLOG_SECRET_KEY_LEN];
};

/* Loads path, or creates it (O_EXCL, 0600) when absent and create. The key's name is the one in
 * the file; a new key is named name. -EPERM when group or others can read it, -EBADMSG when it
 * is no signer key; err says which file and why. */
int witness_key_load(const char *path, const char *name, bool create, struct witness_key *ret,
                     char *err, size_t errsize);
/* Appends k's cosignature at time_s to the note in buf (see tlog_note_cosign). */
int witness_key_cosign(const struct witness_key *k, char *buf, size_t len, size_t size,
                       uint64_t time_s);
void witness_key_wipe(struct witness_key *k);
