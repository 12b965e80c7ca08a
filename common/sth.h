/* Signed tree heads of a Totebox vault: Ed25519 over
 * "totebox-sth-v1\n" || u64be(size) || root[32] || u64be(time_ms). */
#pragma once
#include <stdint.h>

#include "common/merkle.h"
#include "common/tlog_checkpoint.h"

#define STH_SIGNATURE_LEN  64
#define STH_PUBLIC_KEY_LEN 32
#define STH_SECRET_KEY_LEN 64

struct sth {
        uint64_t size;
        merkle_hash root;
        uint64_t time_ms;
        uint8_t signature[STH_SIGNATURE_LEN];
};

/* Writes the 63 signed bytes of an STH into buf (size >= STH_MESSAGE_LEN). */
#define STH_MESSAGE_LEN (15 + 8 + 32 + 8)
void sth_message(const struct sth *s, uint8_t buf[STH_MESSAGE_LEN]);
void sth_sign(struct sth *s, const uint8_t sk[STH_SECRET_KEY_LEN]);
/* 0 when the signature is pk's, else -EBADMSG. */
int sth_verify(const struct sth *s, const uint8_t pk[STH_PUBLIC_KEY_LEN]);

/* The same head as a C2SP tlog-checkpoint signed note (docs/contracts.md section 3): origin
 * "totebox.vault/<hex public key>", which is also the note key's name, so a vault's checkpoint
 * names its key and stock note tooling checks it with the vkey of sth_checkpoint_key. */
#define STH_ORIGIN_PREFIX "totebox.vault/"
#define STH_ORIGIN_MAX    (sizeof(STH_ORIGIN_PREFIX) - 1 + 2 * STH_PUBLIC_KEY_LEN)
void sth_checkpoint_origin(const uint8_t pk[STH_PUBLIC_KEY_LEN], char buf[STH_ORIGIN_MAX + 1]);
void sth_checkpoint_key(const uint8_t pk[STH_PUBLIC_KEY_LEN], struct tlog_key *ret);
/* Signs s's size and root as a checkpoint note into buf; returns its length or -errno. */
int sth_checkpoint_sign(const struct sth *s, const uint8_t sk[STH_SECRET_KEY_LEN], char *buf,
                        size_t size);
/* Opens a vault's checkpoint note under pk: 0 with ret filled, or tlog_checkpoint_open's errors
 * and -EBADMSG when the origin is not pk's. */
int sth_checkpoint_open(const char *note, size_t len, const uint8_t pk[STH_PUBLIC_KEY_LEN],
                        struct tlog_checkpoint *ret);
